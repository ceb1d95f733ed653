"""Real export bugs made on purpose, for tests/test_parity_verdict.py and bench/bench_parity.py.
Each names the spec layer it changes, which parity's localisation must find.

- `scaled_weight`: one weight tensor 1% off, on the ONNX side only (an override for
  run_parity's `onnx_state_dict_override`).
- `shifted_pad`: one Conv/pool/Pad node's spatial padding reversed where it is asymmetric
  (begin and end swapped), else moved by one pixel from the top to the bottom.
- `flipped_ceil`: one pool computed in the other ceil_mode, where that changes its size.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def scaled_weight(state: dict, key: str, factor: float = 1.01) -> dict:
    return {key: state[key] * factor}


def weight_keys(net) -> list[str]:
    """The conv and linear weight tensors, in forward order."""
    return [f"{layer.path}.weight" for layer in net.layers()
            if layer.op in ("conv2d", "conv_transpose2d", "linear")]


def _layer_nodes(model, net, ops: tuple[str, ...]):
    """(node, layer path) of the nodes of `ops` that lower a spec layer: named after its path,
    or after it with a "/helper" suffix."""
    paths = {layer.path for layer in net.layers()}
    for node in model.graph.node:
        path = node.name.split("/")[0]
        if node.op_type in ops and path in paths:
            yield node, path


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _set_ints(node, name, values) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(name, list(values)))


def _set_int(node, name, value) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(name, int(value)))


def _loosen(model) -> None:
    """Drop the declared intermediate and output shapes: the perturbation may change them."""
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")


def _changed_pads(t, l, b, r):
    if (t, l) != (b, r):
        return [b, r, t, l], "reversed"
    if t >= 1:
        return [t - 1, l, b + 1, r], "moved down by one row"
    return None, ""


def shifted_pad(model, net, which: str | int = "middle"):
    """A copy of `model` with one padded node's pads changed (the first, middle or last padded
    node, or the one at an index): (model, layer path, how), or None where none is padded."""
    model = _copy(model)
    inits = {t.name: t for t in model.graph.initializer}
    candidates = []
    for node, path in _layer_nodes(model, net, ("Conv", "MaxPool", "AveragePool", "Pad")):
        if node.op_type == "Pad":
            if len(node.input) < 2 or node.input[1] not in inits:
                continue
            pads = numpy_helper.to_array(inits[node.input[1]]).tolist()
            if len(pads) != 8:
                continue
            t, l, b, r = pads[2], pads[3], pads[6], pads[7]
        else:
            pads = _attr(node, "pads")
            if not pads or len(pads) != 4:
                continue
            t, l, b, r = pads
        new, how = _changed_pads(t, l, b, r)
        if new is not None:
            candidates.append((node, path, new, how))
    if not candidates:
        return None
    index = {"first": 0, "middle": len(candidates) // 2, "last": -1}.get(which, which)
    node, path, (t, l, b, r), how = candidates[index]
    if node.op_type == "Pad":
        arr = np.array([0, 0, t, l, 0, 0, b, r], dtype=np.int64)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(arr, node.input[1]))
    else:
        _set_ints(node, "pads", [t, l, b, r])
    return model, path, f"{node.op_type} '{node.name}' pads {how}"


def flipped_ceil(model, net):
    """A copy of `model` with the first pool whose ceil_mode matters computed in the other
    mode: (model, layer path, how), or None where no pool's does. archgen lowers
    ceil_mode=True to extra end padding; dropping it is the floor mode. Elsewhere ONNX's own
    ceil_mode attribute is set where the size then changes."""
    model = _copy(model)
    shapes = _shapes(model)
    for node, path in _layer_nodes(model, net, ("MaxPool", "AveragePool")):
        hw = shapes.get(node.input[0])
        p = list(_attr(node, "pads", [0, 0, 0, 0]))
        if p[2] > p[0] or p[3] > p[1]:  # archgen's ceil_mode: end padding
            _set_ints(node, "pads", [p[0], p[1], p[0], p[1]])
            _loosen(model)
            return model, path, f"{node.op_type} '{node.name}' without its ceil_mode end pads"
        if hw is None:
            continue
        k = _attr(node, "kernel_shape")
        s = _attr(node, "strides", [1, 1])
        d = _attr(node, "dilations", [1, 1])
        ceil = _attr(node, "ceil_mode", 0)
        spans = [hw[i] + p[i] + p[i + 2] - ((k[i] - 1) * d[i] + 1) for i in range(2)]
        if all(span % stride == 0 for span, stride in zip(spans, s)):
            continue  # ceil_mode makes no difference here
        _set_int(node, "ceil_mode", 1 - ceil)
        _loosen(model)
        return model, path, f"{node.op_type} '{node.name}' ceil_mode {ceil} -> {1 - ceil}"
    return None


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _shapes(model) -> dict[str, list[int]]:
    """The spatial size of every value, by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    found = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            found[vi.name] = [dims[2].dim_value, dims[3].dim_value]
    return found
