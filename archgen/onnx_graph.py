"""The ONNX graph builder: what a layer kind lowers into for the ONNX target.

A kind's `lower_onnx(g, layer, x)` adds its nodes to a `Graph` (through the templates in
templates/onnx/, which only format ONNX's textual syntax) and returns the value it writes. The
conversions several kinds share (conv/pool `pads`, Pad's `pads`, the padding modes) are here,
one helper each; a conversion only one kind uses lives in that kind's module. This module sits
below `layers/` and the emitters: it imports neither.

Names: the node that produces a layer's output is named after the layer's path, its output value
"<path>.out"; helper nodes, values and constants are "<path>/<role>" (`helpers`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .extras import require
from .naming import unique_name
from .quoting import InternalError, onnx_string
from .templating import environment

INPUT, OUTPUT = "input", "output"

Pads = tuple[tuple[int, int], ...]  # (begin, end) per spatial axis: ((top, bottom), (left, right))


# -- PyTorch-to-ONNX conversions that several kinds share ---------------------------------------

def conv_pads(pads: Pads) -> list[int]:
    """Conv/pool `pads` from (begin, end) per axis: every begin, then every end ([top, left,
    bottom, right] for a map).

    >>> conv_pads(((1, 2), (3, 4)))
    [1, 3, 2, 4]
    >>> conv_pads(((1, 2),))
    [1, 2]
    """
    return [b for b, _ in pads] + [e for _, e in pads]


def pad_pads(pads: Pads) -> list[int]:
    """Pad's `pads` input for [N, C, *spatial] data: every axis' begin, then every axis' end.

    >>> pad_pads(((1, 2), (3, 4)))
    [0, 0, 1, 3, 0, 0, 2, 4]
    """
    return [0, 0, *(b for b, _ in pads), 0, 0, *(e for _, e in pads)]


PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pool_pads(in_hw: tuple[int, int], a: dict, out_hw: tuple[int, int]) -> Pads:
    """(begin, end) padding per axis that makes a floor-mode window count equal PyTorch's output:
    `padding` on both sides, plus, under ceil_mode, the overhang of the last window at the end.
    (ONNX's own ceil_mode keeps a last window that starts in the end padding, which PyTorch
    drops, so it is never used.)

    >>> pool_pads((7, 7), {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0),
    ...                     "dilation": (1, 1)}, (4, 4))
    ((0, 1), (0, 1))
    >>> pool_pads((6, 6), {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1),
    ...                     "dilation": (1, 1)}, (3, 3))
    ((1, 1), (1, 1))
    """
    out = []
    for i in range(len(in_hw)):
        k_eff = a.get("dilation", (1,) * len(in_hw))[i] * (a["kernel_size"][i] - 1) + 1
        p = a["padding"][i]
        overhang = (out_hw[i] - 1) * a["stride"][i] + k_eff - (in_hw[i] + 2 * p)
        out.append((p, p + max(overhang, 0)))
    return tuple(out)


def empty_windows(in_hw: tuple[int, int], a: dict, out_hw: tuple[int, int]) -> bool:
    """Whether some pooling window reads only padding, which dilation allows.

    >>> args = {"kernel_size": (1, 2), "stride": (3, 3), "padding": (0, 1), "dilation": (1, 3)}
    >>> empty_windows((2, 2), args, (1, 1))  # the window reads columns -1 and 2 of 0..1
    True
    """
    for i in range(len(in_hw)):
        k, s, d, p = (a[n][i] for n in ("kernel_size", "stride", "dilation", "padding"))
        for o in range(out_hw[i]):
            if not any(0 <= o * s - p + j * d < in_hw[i] for j in range(k)):
                return True
    return False



# -- templates --------------------------------------------------------------------------------

# The operators the lowerings emit (verify_onnx refuses any other in a generated graph).
ONNX_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "ConvTranspose", "Div",
    "Elu", "Erf", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
    "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "LogSoftmax", "MaxPool", "Mish", "Mul",
    "Pad", "PRelu", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
    "Slice", "Softmax", "Sqrt", "Sub", "Tanh", "Transpose", "Unsqueeze",
    "InstanceNormalization", "LayerNormalization", "MatMul",  # normalization.py, linear on N-D
})


def _op(name: str) -> str:
    """An operator name, one of ONNX_OPS."""
    if name not in ONNX_OPS:
        raise InternalError(f"the operator {name!r} is not one archgen emits")
    return name


def _identifier(name: str) -> str:
    if not (name.isidentifier() and name.isascii()):
        raise InternalError(f"{name!r} is not a bare identifier")
    return name


def _elem(elem: str) -> str:
    if elem not in ("float", "int64"):
        raise InternalError(f"unexpected element type {elem!r}")
    return elem


def _dim(d) -> str:
    """A tensor dimension: a size, or the batch's symbolic name (a bare identifier)."""
    if isinstance(d, str) and not (d.isidentifier() and d.isascii()):
        raise InternalError(f"unexpected symbolic dimension {d!r}")
    return d if isinstance(d, str) else str(int(d))


def _float(v: float) -> str:
    """A float attribute: repr keeps every digit and always marks it a float (1.0, 1e-05)."""
    if not math.isfinite(v):
        raise InternalError(f"attribute value {v} is not finite")
    return repr(float(v))


@functools.cache
def onnx_environment():
    env = environment("onnx", keep_trailing_newline=False)
    env.filters.update({
        "q": onnx_string,
        "identifier": _identifier,
        "op": _op,
        "int": lambda v: str(int(v)),
        "names": lambda names: ", ".join(onnx_string(n) for n in names),
        "ints": lambda values: "[" + ", ".join(str(int(v)) for v in values) + "]",
        "float": _float,
        "typed": lambda v: f"{_elem(v.elem)}[{', '.join(_dim(d) for d in v.dims)}] "
                           f"{onnx_string(v.name)}",
    })
    return env


# -- the graph under construction --------------------------------------------------------------

@dataclass
class Value:
    """A typed graph input, output or value_info: elem is ONNX's type name, dims the shape."""

    name: str
    elem: str
    dims: list


@dataclass
class Graph:
    opset: int
    state: dict
    batch: str | int
    final: object  # the Node whose value is the graph's output
    body: list[str] = field(default_factory=list)
    initializers: dict = field(default_factory=dict)  # name -> numpy array
    expected: dict = field(default_factory=dict)  # value -> (node, shape without batch)
    produced: list = field(default_factory=list)  # (value, node) of every layer and merge
    taken: set = field(default_factory=set)  # node names given to add/concat so far
    fold: bool = False  # batchnorm folded into the conv before it, no Identity nodes
    folded: set = field(default_factory=set)  # initializers made by folding (weights, not constants)

    def emit(self, template: str, **ctx) -> None:
        text = onnx_environment().get_template(f"{template}.onnx.j2").render(**ctx)
        self.body += [line for line in text.splitlines() if line.strip()]

    def output_of(self, node, name: str) -> str:
        """The value a layer or merge writes: "output" for the network's last one."""
        value = OUTPUT if node is self.final else f"{name}.out"
        self.expected[value] = (node, node.out_shape)
        self.produced.append((value, node))
        return value

    def weight(self, layer, role: str | None) -> str:
        key = layer.path if role is None else f"{layer.path}.{role}"  # None: layer_scale's
        self.initializers[key] = float32(self.state[key])
        return key

    def const(self, name: str, values, dtype: str = "float32", shape=None) -> str:
        np = require("numpy", "onnx", "ONNX export")
        arr = np.asarray(values, dtype=dtype)
        self.initializers[name] = arr.reshape(shape) if shape is not None else arr
        return name

    def unique(self, name: str) -> str:
        return unique_name(name, self.taken)

    def pad(self, name: str, x: str, y: str, pads: Pads, mode: str, value: float = 0.0) -> str:
        inputs = [x, self.const(f"{name}.pads", pad_pads(pads), "int64")]
        if value != 0.0:
            inputs.append(self.const(f"{name}.value", value))
        self.emit("pad", name=name, y=y, mode=PAD_MODES[mode], inputs=inputs)
        return y

    def one_node(self, layer, x: str, template: str, **attrs) -> str:
        """A layer that is a single ONNX node, named after the layer's path."""
        y = self.output_of(layer, layer.path)
        self.emit(template, name=layer.path, y=y, x=x, **attrs)
        return y


def float32(t):
    np = require("numpy", "onnx", "ONNX export")
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def helpers(path: str, *roles: str) -> dict[str, str]:
    return {role: f"{path}/{role}" for role in roles}


def spatial(shape) -> tuple[int, ...]:
    """The spatial sizes of a shape without the batch: [C, H, W] -> (H, W)."""
    return tuple(shape[1:])
