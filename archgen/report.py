"""Checked networks as JSON (`archgen check --format json`) and layers as short call texts.

The JSON is strict: `json.dumps(doc, allow_nan=False)` always succeeds. Receptive fields
saturate at 2**53 pixels (limits.RF_CAP); a saturated value is null, and the field's
"saturated": true says that it is at least 2**53 pixels (or a jump that large).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring_ascii as _json_str

from .ir import Layer, Merge, Network, Seq, walk
from .layers.base import REQUIRED, _show
from .limits import RF_CAP

_RF_SAFE = RF_CAP - 2  # below it, rounding to whole pixels cannot reach RF_CAP
from .symbolic import to_json as _size


def arg_text(v) -> str:
    if isinstance(v, tuple):
        if len(v) in (1, 2, 3) and len(set(v)) == 1:  # one value per spatial axis, all equal
            return arg_text(v[0])
        return "(" + ", ".join(arg_text(i) for i in v) + ")"
    if isinstance(v, float):
        return repr(v)
    return _show(v)


def call_text(layer: Layer) -> str:
    """The layer as a spec call with its non-default arguments: conv2d(16, 3, padding=same).

    The copies of a repeated call share one args dict (the checker reuses the first copy's,
    and no stage changes a checked layer's args), so the text is made once per dict: a
    million-layer summary or JSON asks for it a million times."""
    args = layer.args
    hit = _CALL_TEXTS.get(id(args))
    if hit is not None and hit[0] is args and hit[1] is layer.kind:
        return hit[2]
    text = _call_text(layer)
    if len(_CALL_TEXTS) >= 4096:
        _CALL_TEXTS.clear()
    _CALL_TEXTS[id(args)] = (args, layer.kind, text)  # holding args keeps its id unique
    return text


_CALL_TEXTS: dict[int, tuple] = {}  # id(layer.args) -> (args, kind, call_text)


def _call_text(layer: Layer) -> str:
    parts = []
    for p in layer.kind.params:
        v = layer.args.get(p.name)
        if p.inferred:
            continue
        if p.type == "ints":  # a shape or dims, as written: layernorm(96), permute(1, 2, 0)
            items = ", ".join(map(str, v))
            bare = len(v) == 1 or p.name == layer.kind.variadic
            parts.append(items if bare else f"({items})")
            continue
        if p.default is REQUIRED:
            parts.append(arg_text(v))
            continue
        default = layer.args["kernel_size"] if (p.name, p.default) == ("stride", None) else p.default
        if v != default:
            parts.append(f"{p.name}={arg_text(v)}")
    return f"{layer.op}({', '.join(parts)})"


def _shape(shape) -> list:
    """symbolic.to_json of a shape, without a call for each of its ints."""
    return [v if type(v) is int else _size(v) for v in shape]


def node_json(node) -> dict:
    out = {
        "path": node.path,
        "op": node.op,
        "line": node.span.line,
        "column": node.span.column,
        "input_shape": _shape(node.in_shape) if node.in_shape else None,
        "output_shape": _shape(node.out_shape) if node.out_shape else None,
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
    if all(abs(v) < _RF_SAFE for v in (*rf.size, *rf.jump, *rf.start)):
        return rf.to_json()  # nothing near the cap, NaN or infinite: the usual case, one pass
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


def network_json(net: Network, file: str, *, batch: int = 1, dtype: str = "float32",
                 lazy: bool = False) -> dict:
    """The JSON document of `archgen check --format json`. With `lazy`, "layers" and "blocks"
    are `Lazy` lists whose records are made one at a time as `write_json` writes them, so that
    a million layers' records never exist at once (the memory figures are computed first)."""
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
        doc["output_shape"] = _size(tuple(net.output_shape))  # the first output's
        if net.outputs:  # `output NAME, ...`: each, in order
            doc["outputs"] = [{"name": name, "shape": _size(tuple(shape))}
                              for name, shape in net.output_shapes]
        doc["total_params"] = _size(net.total_params)
        doc["total_macs"] = _size(net.total_macs)
        if net.constraints:  # n is valid iff min <= n (<= max) and n % modulus in residues
            doc["constraints"] = {name: c.to_json() for name, c in net.constraints.items()}
        from .memory import estimate
        memory = estimate(net, batch=batch, dtype=dtype)
        doc["memory"] = memory.to_json()

        def layers() -> Iterator[dict]:
            for n in walk(net.root):
                if isinstance(n, Layer):
                    out = node_json(n)
                    out["memory"] = memory.of(n).to_json()
                    yield out

        def blocks() -> Iterator[dict]:
            return (node_json(n) for n in walk(net.root)
                    if isinstance(n, (Seq, Merge)) and n is not net.root)

        doc["layers"] = Lazy(layers) if lazy else list(layers())
        doc["blocks"] = Lazy(blocks) if lazy else list(blocks())
    return doc


# -- writing JSON as it is made ---------------------------------------------------------------

class Lazy:
    """A list whose items are made as `write_json` writes them (and freed after), for the
    per-layer records of a network of any size. Iterating makes them again each time."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Iterable]):
        self.make = make

    def __iter__(self) -> Iterator:
        return iter(self.make())


def write_json(value, write: Callable[[str], object], *, indent: int = 2, level: int = 0,
               buffer: int = 1 << 16) -> None:
    """Writes exactly the text of `json.dumps(value, indent=indent)` through `write`, in pieces
    of about `buffer` characters, making the items of `Lazy` lists on the way: the output of a
    million-layer check never exists whole in memory. ~2.3x as fast as json's own indented
    encoder, which is pure Python (its C encoder only writes compact JSON). `level`: the value
    sits that many levels deep in an enclosing document (its inner lines indented so)."""
    pending: list[str] = []
    size = 0
    for chunk in _chunks(value, "\n" + " " * (indent * level), " " * indent):
        pending.append(chunk)
        size += len(chunk)
        if size >= buffer:
            write("".join(pending))
            pending.clear()
            size = 0
    if pending:
        write("".join(pending))


def json_text(value, *, indent: int = 2) -> str:
    """`json.dumps(value, indent=indent)`, Lazy lists included."""
    out: list[str] = []
    write_json(value, out.append, indent=indent)
    return "".join(out)


def _chunks(value, nl: str, step: str) -> Iterator[str]:
    """The containers that hold Lazy lists are written item by item; everything else (each
    Lazy item among it) is encoded whole by _encode."""
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        inner = nl + step
        sep = "{" + inner
        for k, v in value.items():
            yield sep + _key(k) + ": "
            yield from _chunks(v, inner, step)
            sep = "," + inner
        yield nl + "}"
    elif isinstance(value, (list, tuple, Lazy)):
        inner = nl + step
        sep = "[" + inner
        whole = isinstance(value, Lazy)
        for item in value:
            yield sep
            if whole:
                yield _encode(item, inner, step)
            else:
                yield from _chunks(item, inner, step)
            sep = "," + inner
        yield "[]" if sep[0] == "[" else nl + "]"
    else:
        yield _encode(value, nl, step)


_irepr = int.__repr__
_INF = float("inf")


def _encode(o, nl: str, step: str) -> str:
    """json.dumps(o, indent=len(step)) for a value at the indentation `nl` ("\n" and the
    spaces before it). Strings and ints, nearly all of a record, are written in line."""
    t = type(o)
    if t is str:
        return _json_str(o)
    if t is int:
        return _irepr(o)
    if t is float:
        return _float(o)
    inner = nl + step
    if t is dict:
        if not o:
            return "{}"
        return "{" + inner + ("," + inner).join([
            (_json_str(k) if type(k) is str else _key(k)) + ": " + (
                _json_str(v) if type(v) is str else _irepr(v) if type(v) is int else
                _encode(v, inner, step)) for k, v in o.items()]) + nl + "}"
    if t is list or t is tuple:
        if not o:
            return "[]"
        return "[" + inner + ("," + inner).join([
            _irepr(v) if type(v) is int else _json_str(v) if type(v) is str else
            _float(v) if type(v) is float else _encode(v, inner, step) for v in o]) + nl + "]"
    if isinstance(o, Lazy):
        return _encode(list(o), nl, step)
    if isinstance(o, dict):
        return _encode(dict(o), nl, step)
    if isinstance(o, (list, tuple)):
        return _encode(list(o), nl, step)
    return _scalar(o)


def _scalar(o) -> str:
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, str):
        return _json_str(o)
    if isinstance(o, int):
        return _irepr(o)
    if isinstance(o, float):
        return _float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _float(o: float) -> str:
    """json's floatstr (allow_nan=True)."""
    if math.isnan(o):
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(o)


def _key(k) -> str:
    """A dict key as json writes it: strings quoted, numbers, booleans and None as text."""
    if isinstance(k, str):
        return _json_str(k)
    if isinstance(k, (int, float)) or k is None:
        return '"' + _scalar(k) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
