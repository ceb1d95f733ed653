"""Checked networks as JSON (`archgen check --format json`) and layers as short call texts.

The JSON is strict: `json.dumps(doc, allow_nan=False)` always succeeds. Receptive fields
saturate at 2**53 pixels (limits.RF_CAP); a saturated value is null, and the field's
"saturated": true says that it is at least 2**53 pixels (or a jump that large).
"""

from __future__ import annotations

import math

from .ir import Layer, Merge, Network, Seq, walk
from .layers.base import REQUIRED, _show
from .limits import RF_CAP
from .symbolic import to_json as _size


def arg_text(v) -> str:
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return arg_text(v[0])
        return "(" + ", ".join(arg_text(i) for i in v) + ")"
    if isinstance(v, float):
        return repr(v)
    return _show(v)


def call_text(layer: Layer) -> str:
    """The layer as a spec call with its non-default arguments: conv2d(16, 3, padding=same)."""
    parts = []
    for p in layer.kind.params:
        v = layer.args.get(p.name)
        if p.inferred:
            continue
        if p.default is REQUIRED:
            parts.append(arg_text(v))
            continue
        default = layer.args["kernel_size"] if (p.name, p.default) == ("stride", None) else p.default
        if v != default:
            parts.append(f"{p.name}={arg_text(v)}")
    return f"{layer.op}({', '.join(parts)})"


def node_json(node) -> dict:
    out = {
        "path": node.path,
        "op": node.op,
        "line": node.span.line,
        "column": node.span.column,
        "input_shape": _size(tuple(node.in_shape)) if node.in_shape else None,
        "output_shape": _size(tuple(node.out_shape)) if node.out_shape else None,
        "params": _size(node.params),
        "macs": _size(node.macs),
        "receptive_field": rf_json(node.rf),
    }
    if isinstance(node, Layer):
        out["call"] = call_text(node)
        if node.name:
            out["name"] = node.name
    return out


def rf_json(rf) -> dict:
    doc = rf.to_json()
    saturated = False
    for key in ("size", "jump", "start"):
        values = []
        for v in doc.get(key, ()):
            if v is None or not math.isfinite(v) or abs(v) >= RF_CAP:
                values.append(None)
                saturated = True
            else:
                values.append(v)
        doc[key] = values
    if saturated:
        doc["saturated"] = True
    return doc


def network_json(net: Network, file: str, *, batch: int = 1, dtype: str = "float32") -> dict:
    ok = not any(d.is_error for d in net.diagnostics)
    doc = {
        "file": file,
        "ok": ok,
        "network": net.name,
        "input_shape": _size(tuple(net.input_shape)) if net.input_shape else None,
        "output_shape": None,
        "total_params": None,
        "total_macs": None,
        "layers": [],
        "diagnostics": [d.to_json() for d in net.diagnostics],
    }
    if ok:
        doc["output_shape"] = _size(tuple(net.output_shape))
        doc["total_params"] = _size(net.total_params)
        doc["total_macs"] = _size(net.total_macs)
        if net.constraints:  # n is valid iff min <= n (<= max) and n % modulus in residues
            doc["constraints"] = {name: c.to_json() for name, c in net.constraints.items()}
        from .memory import estimate
        memory = estimate(net, batch=batch, dtype=dtype)
        doc["memory"] = memory.to_json()
        doc["layers"] = [dict(node_json(n), memory=memory.of(n).to_json())
                         for n in walk(net.root) if isinstance(n, Layer)]
        doc["blocks"] = [node_json(n) for n in walk(net.root)
                         if isinstance(n, (Seq, Merge)) and n is not net.root]
    return doc
