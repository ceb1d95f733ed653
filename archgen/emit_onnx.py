"""Resolved model -> ONNX graph.

Each layer kind has a lowering function here that decides the ONNX pattern: which template, with
which attribute values, which helper constants. The templates in templates/onnx/ only format
ONNX's textual syntax; onnx.parser turns the text into a ModelProto, the weights are attached as
initializers named by their state_dict keys, and the model is checked (onnx.checker, strict shape
inference) with every inferred shape compared against the checker's.

Names: the node that produces a layer's output is named after the layer's path ("backbone.0.0"),
its output value "<path>.out"; helper nodes, values and constants are "<path>/<role>"; the graph
reads "input" and writes "output". Add/concat nodes are named after their enclosing module
("layer1.0.add").

Spec text reaches the ONNX text only through `quoting.onnx_string` (every name and string is
quoted, the graph's name is set after parsing), and the parsed model is held to
`quoting.verify_onnx` (operators from ONNX_OPS only, plain names) before anything else.

Where ONNX has no exact counterpart for a PyTorch option, the lowering builds an exact one:
ceil_mode as explicit end padding, avgpool2d's divisor_override as a depthwise sum then a
division, uneven adaptive pooling windows as slices, a fractional upsample scale_factor as gathers
with PyTorch's own sampling positions, batchnorm without running stats from batch statistics.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from . import __version__, shapes
from .budget import MemoryBudgetError, check_memory
from .diagnostics import SpecError
from .extras import MissingExtra, require
from .ir import Layer, Merge, Network, Node, Seq
from .quoting import InternalError, onnx_string, verify_onnx
from .templating import environment
from .weights import WeightsError, check_state, initial_state, load_weights

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "Built", "InternalError", "MemoryBudgetError",
           "WeightsError", "build_graph", "build_onnx", "folded_pairs", "load_weights",
           "save_onnx"]

# 21: Gelu is an op (20), Pad has mode=wrap for circular padding and AveragePool has dilations
# (19), and onnxruntime has run this opset since 1.18. Later opsets add nothing archgen uses.
DEFAULT_OPSET = 21
MIN_OPSET = 19

INPUT, OUTPUT = "input", "output"
GRAPH_PLACEHOLDER = "archgen_graph"  # the graph's name in the text; the network's is set after
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


# -- one PyTorch-to-ONNX conversion per helper --------------------------------------------------

def conv_pads(pads: Pads) -> list[int]:
    """Conv/pool `pads` from (begin, end) per axis: [top, left, bottom, right].

    >>> conv_pads(((1, 2), (3, 4)))
    [1, 3, 2, 4]
    """
    (top, bottom), (left, right) = pads
    return [top, left, bottom, right]


def pad_pads(pads: Pads) -> list[int]:
    """Pad's `pads` input for NCHW data: every axis' begin, then every axis' end.

    >>> pad_pads(((1, 2), (3, 4)))
    [0, 0, 1, 3, 0, 0, 2, 4]
    """
    (top, bottom), (left, right) = pads
    return [0, 0, top, left, 0, 0, bottom, right]


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
    for i in range(2):
        k_eff = a.get("dilation", (1, 1))[i] * (a["kernel_size"][i] - 1) + 1
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
    for i in range(2):
        k, s, d, p = (a[n][i] for n in ("kernel_size", "stride", "dilation", "padding"))
        for o in range(out_hw[i]):
            if not any(0 <= o * s - p + j * d < in_hw[i] for j in range(k)):
                return True
    return False


@dataclass
class ConvTransposePlan:
    """ConvTranspose's `pads` and `output_padding`, and `extend`: zero rows/columns to append
    after it (then the bias is added separately, since PyTorch adds it to those too)."""

    pads: Pads
    output_padding: tuple[int, int]
    extend: tuple[int, int]


def conv_transpose_plan(a: dict) -> ConvTransposePlan:
    """PyTorch crops `padding` from both ends of the full transposed convolution and then adds
    `output_padding` at the end; onnxruntime takes output_padding only below the stride, while
    PyTorch allows it below the dilation too. Otherwise the same output comes from cropping
    padding - output_padding at the end, or, where output_padding is larger, from appending
    zeros.

    >>> conv_transpose_plan({"padding": (1, 2), "output_padding": (1, 0), "stride": (2, 2)})
    ConvTransposePlan(pads=((1, 1), (2, 2)), output_padding=(1, 0), extend=(0, 0))
    >>> conv_transpose_plan({"padding": (1, 0), "output_padding": (1, 1), "stride": (1, 1)})
    ConvTransposePlan(pads=((1, 0), (0, 0)), output_padding=(0, 0), extend=(0, 1))
    """
    pads, out_pad, extend = [], [], []
    for p, op, s in zip(a["padding"], a["output_padding"], a["stride"]):
        if op < s:
            pads.append((p, p)), out_pad.append(op), extend.append(0)
        else:
            pads.append((p, max(p - op, 0))), out_pad.append(0), extend.append(max(op - p, 0))
    return ConvTransposePlan(tuple(pads), tuple(out_pad), tuple(extend))


@dataclass
class AvgPoolPlan:
    """How avgpool2d becomes ONNX: an optional zero Pad first (`pre_pads`), then AveragePool
    with `pads` and `count_include_pad`; or, with divisor_override, a window sum (`sum_pads`)."""

    pads: Pads
    count_include_pad: int
    pre_pads: Pads | None = None
    divisor: int | None = None


def avgpool_plan(in_hw: tuple[int, int], a: dict, out_hw: tuple[int, int]) -> AvgPoolPlan:
    """PyTorch divides each window sum by the window's overlap with the input padded by
    `padding` (count_include_pad=true) or with the input alone (false); the extra end padding
    that ceil_mode implies never counts. ONNX counts either all padding or none, so with both
    kinds present the real padding becomes an explicit Pad of zeros.

    >>> avgpool_plan((5, 5), {"kernel_size": (2, 2), "stride": (2, 2), "padding": (1, 1),
    ...     "ceil_mode": True, "count_include_pad": True, "divisor_override": None}, (4, 4))
    AvgPoolPlan(pads=((0, 1), (0, 1)), count_include_pad=0, pre_pads=((1, 1), (1, 1)), divisor=None)
    """
    pads = pool_pads(in_hw, a, out_hw)
    p = a["padding"]
    overhang = any(end > begin for begin, end in pads)
    if a["divisor_override"] is not None:
        return AvgPoolPlan(pads, 0, divisor=a["divisor_override"])
    if a["count_include_pad"] and overhang and any(p):
        pre = ((p[0], p[0]), (p[1], p[1]))
        rest = tuple((0, end - begin) for begin, end in pads)
        return AvgPoolPlan(rest, 0, pre_pads=pre)
    return AvgPoolPlan(pads, int(a["count_include_pad"] and not overhang))


def torch_nearest_indices(n_in: int, n_out: int, scale: float | None) -> list[int]:
    """The source index of each output index in PyTorch's nearest upsampling (CPU), in its
    float32 arithmetic: min(floor(i * float32(1 / scale)), n_in - 1), with 1 / scale replaced
    by n_in / n_out when the size was given.

    >>> torch_nearest_indices(2, 82, None)[40:42]  # float32(2 / 82) * 41 lands below 1
    [0, 0]
    >>> torch_nearest_indices(5, 7, 1.5)
    [0, 0, 1, 2, 2, 3, 4]
    """
    np = require("numpy", "onnx", "ONNX export")
    if n_out == n_in:
        return list(range(n_out))
    if n_out == 2 * n_in:
        return [i >> 1 for i in range(n_out)]
    step = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * step).astype(np.int64)
    return [int(i) for i in np.minimum(idx, n_in - 1)]


def torch_linear_sampling(n_in: int, n_out: int, scale: float | None, align_corners: bool):
    """PyTorch's bilinear sampling along one axis (CPU, float32): per output index the two source
    indices and their weights, out = in[i0] * w0 + in[i1] * w1.

    >>> i0, i1, w0, w1 = torch_linear_sampling(2, 4, 2.0, False)
    >>> i0, i1, [float(w) for w in w1]
    ([0, 0, 0, 1], [1, 1, 1, 1], [0.0, 0.25, 0.75, 0.25])
    """
    np = require("numpy", "onnx", "ONNX export")
    f32 = np.float32
    if n_out == n_in:
        i = list(range(n_out))
        return i, i, np.ones(n_out, f32), np.zeros(n_out, f32)
    if align_corners:
        step = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
        src = step * np.arange(n_out, dtype=f32)
    else:
        step = f32(1.0 / scale) if scale else f32(n_in) / f32(n_out)
        src = step * (np.arange(n_out, dtype=f32) + f32(0.5)) - f32(0.5)
        src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    i1 = i0 + (i0 < n_in - 1)
    return [int(i) for i in i0], [int(i) for i in i1], (f32(1) - w1).astype(f32), w1


def upsample_plan(a: dict, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
    """"resize" where ONNX's Resize to the output size samples exactly PyTorch's source pixels,
    else "gather" (PyTorch's own sampling, precomputed).

    Resize derives its grid from the sizes (out / in); PyTorch from 1 / scale_factor when one
    was given, and for nearest it multiplies by a float32 reciprocal whose rounding can pick a
    different pixel than Resize's exact division (2 -> 82 pixels, index 41). So: bilinear uses
    Resize unless a fractional scale_factor sets a grid the sizes cannot; nearest uses it only
    for integral factors where PyTorch's indices are the exact ones.

    >>> upsample_plan({"mode": "nearest", "scale_factor": (2.0, 2.0), "align_corners": None},
    ...               (8, 8), (16, 16))
    'resize'
    >>> upsample_plan({"mode": "nearest", "scale_factor": (1.5, 1.5), "align_corners": None},
    ...               (5, 5), (7, 7))
    'gather'
    """
    scales = a["scale_factor"] or (None, None)
    if a["mode"] == "bilinear":
        if a["align_corners"]:  # PyTorch's grid is (in - 1) / (out - 1) whatever the scale
            return "resize"
        exact = all(s is None or Fraction(i) * Fraction(s) == o
                    for i, o, s in zip(in_hw, out_hw, scales))
        return "resize" if exact else "gather"
    for i, o, s in zip(in_hw, out_hw, scales):
        if o % i or torch_nearest_indices(i, o, s) != [j // (o // i) for j in range(o)]:
            return "gather"
    return "resize"


def resize_scales(a: dict, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether Resize can take the scale_factor itself rather than the output size: a
    scale_factor given, exact in float32 (Resize's scales are float32), with floor(in * scale)
    the output size, as PyTorch computes it for every input size.

    >>> resize_scales({"scale_factor": (2.0, 2.0)}, (8, 8), (16, 16))
    True
    >>> resize_scales({"scale_factor": (0.3, 0.3)}, (10, 10), (3, 3))  # 0.3 is no float32
    False
    """
    np = require("numpy", "onnx", "ONNX export")
    scales = a.get("scale_factor")
    if not scales:
        return False
    return all(Fraction(float(np.float32(s))) == Fraction(s) and math.floor(i * s) == o
               for s, i, o in zip(scales, in_hw, out_hw))


def resize_modes(a: dict) -> tuple[str, str]:
    """Resize's mode and coordinate_transformation_mode for PyTorch's upsample: nearest picks
    floor(i * in / out) ("asymmetric" with nearest_mode "floor"); bilinear samples pixel
    centres ("half_pixel", clamped at 0 as PyTorch does) or aligns the corner pixels.

    >>> resize_modes({"mode": "bilinear", "align_corners": None})
    ('linear', 'half_pixel')
    """
    if a["mode"] == "nearest":
        return "nearest", "asymmetric"
    return "linear", "align_corners" if a["align_corners"] else "half_pixel"


# -- templates --------------------------------------------------------------------------------

# The operators the lowerings emit (verify_onnx refuses any other in a generated graph).
ONNX_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "ConvTranspose", "Div",
    "Elu", "Erf", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
    "HardSwish", "Identity", "LeakyRelu", "MaxPool", "Mul", "Pad", "ReduceMax", "ReduceMean",
    "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Softmax", "Sqrt", "Sub", "Tanh", "Unsqueeze",
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
def _environment():
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
class _Value:
    """A typed graph input, output or value_info: elem is ONNX's type name, dims the shape."""

    name: str
    elem: str
    dims: list


@dataclass
class _Graph:
    opset: int
    state: dict
    batch: str | int
    final: Node | None
    body: list[str] = field(default_factory=list)
    initializers: dict = field(default_factory=dict)  # name -> numpy array
    expected: dict = field(default_factory=dict)  # value -> (node, shape without batch)
    produced: list = field(default_factory=list)  # (value, node) of every layer and merge
    taken: set = field(default_factory=set)  # node names given to add/concat so far
    fold: bool = False  # batchnorm folded into the conv before it, no Identity nodes
    folded: set = field(default_factory=set)  # initializers made by folding (weights, not constants)

    def emit(self, template: str, **ctx) -> None:
        text = _environment().get_template(f"{template}.onnx.j2").render(**ctx)
        self.body += [line for line in text.splitlines() if line.strip()]

    def output_of(self, node: Node, name: str) -> str:
        """The value a layer or merge writes: "output" for the network's last one."""
        value = OUTPUT if node is self.final else f"{name}.out"
        self.expected[value] = (node, node.out_shape)
        self.produced.append((value, node))
        return value

    def weight(self, layer: Layer, role: str) -> str:
        key = f"{layer.path}.{role}"
        self.initializers[key] = _float32(self.state[key])
        return key

    def const(self, name: str, values, dtype: str = "float32", shape=None) -> str:
        np = require("numpy", "onnx", "ONNX export")
        arr = np.asarray(values, dtype=dtype)
        self.initializers[name] = arr.reshape(shape) if shape is not None else arr
        return name

    def unique(self, name: str) -> str:
        n, cand = 0, name
        while cand in self.taken:
            n += 1
            cand = f"{name}_{n}"
        self.taken.add(cand)
        return cand

    def pad(self, name: str, x: str, y: str, pads: Pads, mode: str, value: float = 0.0) -> str:
        inputs = [x, self.const(f"{name}.pads", pad_pads(pads), "int64")]
        if value != 0.0:
            inputs.append(self.const(f"{name}.value", value))
        self.emit("pad", name=name, y=y, mode=PAD_MODES[mode], inputs=inputs)
        return y


def _float32(t):
    np = require("numpy", "onnx", "ONNX export")
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def _helpers(path: str, *roles: str) -> dict[str, str]:
    return {role: f"{path}/{role}" for role in roles}


# -- lowering: the IR tree ---------------------------------------------------------------------

def _lower(g: _Graph, node: Node, x: str, module: str) -> str:
    if isinstance(node, Layer):
        rule = LOWERINGS.get(node.op)
        if rule is None:
            raise InternalError(f"no ONNX lowering for layer kind '{node.op}'")
        return rule(g, node, x)
    if isinstance(node, Seq):
        inner = f"{node.path}." if node.module and node.path else module
        items, i = node.items, 0
        while i < len(items):
            if g.fold and i + 1 < len(items) and foldable(items[i], items[i + 1]):
                x = _conv_batchnorm(g, items[i], items[i + 1], x)
                i += 2
                continue
            x = _lower(g, items[i], x, inner)
            i += 1
        return x
    if isinstance(node, Merge):
        ys = [_lower(g, b, x, module) for b in node.branches]
        name = g.unique(f"{module}{node.mode}")
        y = g.output_of(node, name)
        if node.mode == "concat":
            g.emit("concat", name=name, y=y, inputs=ys)
        elif len(ys) == 1 and g.fold and node is not g.final:  # nothing to compute
            g.expected.pop(y), g.produced.pop()
            return ys[0]
        elif len(ys) == 1:  # nothing to add to the one branch: pass it on, named
            g.emit("unary", name=name, y=y, x=ys[0], op="Identity")
        else:
            steps, acc = [], ys[0]
            for i, b in enumerate(ys[1:], start=1):
                last = i == len(ys) - 1
                out = y if last else f"{name}/partial{i}"
                steps.append({"name": name if last else f"{name}/{i}", "a": acc, "b": b, "y": out})
                acc = out
            g.emit("add", steps=steps)
        return y
    raise AssertionError(type(node))


def _last_producer(node: Node) -> Node | None:
    """The layer or merge whose value leaves `node` (None when it passes its input through)."""
    if isinstance(node, (Layer, Merge)):
        return node
    for item in reversed(node.items):
        found = _last_producer(item)
        if found is not None:
            return found
    return None


# -- lowering: one function per layer kind ------------------------------------------------------

LOWERINGS: dict[str, Callable[[_Graph, Layer, str], str]] = {}


def lowering(*kinds: str):
    def register(fn):
        for kind in kinds:
            if kind in LOWERINGS:
                raise RuntimeError(f"ONNX lowering for {kind!r} registered twice")
            LOWERINGS[kind] = fn
        return fn
    return register


@lowering("conv2d")
def _conv2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    pads = a["pads"]
    if a["padding_mode"] != "zeros" and any(p for pair in pads for p in pair):
        x = g.pad(f"{layer.path}/pad", x, f"{layer.path}/padded", pads, a["padding_mode"])
        pads = ((0, 0), (0, 0))
    inputs = [x, g.weight(layer, "weight")] + ([g.weight(layer, "bias")] if a["bias"] else [])
    y = g.output_of(layer, layer.path)
    g.emit("conv", name=layer.path, y=y, inputs=inputs, kernel_shape=a["kernel_size"],
           strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"], group=a["groups"])
    return y


def foldable(conv: Node, bn: Node) -> bool:
    """Whether `bn` is an eval-mode batchnorm right after the conv2d `conv` (in one sequence,
    so that nothing else reads the conv's output): then the two are one Conv."""
    return (isinstance(conv, Layer) and conv.op == "conv2d" and isinstance(bn, Layer)
            and bn.op == "batchnorm2d" and bn.args["track_running_stats"])


def folded_pairs(net: Network) -> list[tuple[Layer, Layer]]:
    """Every (conv, batchnorm) pair that export folds into one Conv, in forward order."""
    out = []

    def walk(node):
        if isinstance(node, Seq):
            for a, b in zip(node.items, node.items[1:]):
                if foldable(a, b) and not (out and out[-1][1] is a):
                    out.append((a, b))
            for item in node.items:
                walk(item)
        elif isinstance(node, Merge):
            for b in node.branches:
                walk(b)

    walk(net.root)
    return out


def fold_batchnorm(np, weight, bias, bn_args: dict, gamma, beta, mean, var):
    """Conv weights and bias that compute batchnorm(conv(x)) in eval mode, in float64 then
    rounded once to float32: W' = W * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var +
    eps) per output channel.

    >>> import numpy as np
    >>> w, b = fold_batchnorm(np, np.ones((2, 1, 1, 1), np.float32), None, {"eps": 0.0},
    ...                       np.array([2.0, 1.0]), np.array([0.5, 0.0]),
    ...                       np.array([1.0, 0.0]), np.array([4.0, 1.0]))
    >>> w.ravel().tolist(), b.tolist()
    ([1.0, 1.0], [-0.5, 0.0])
    """
    f64 = np.float64
    scale = np.asarray(gamma, f64) / np.sqrt(np.asarray(var, f64) + f64(bn_args["eps"]))
    w = (np.asarray(weight, f64) * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    b0 = np.zeros_like(scale) if bias is None else np.asarray(bias, f64)
    b = ((b0 - np.asarray(mean, f64)) * scale + np.asarray(beta, f64)).astype(np.float32)
    return w, b


def _conv_batchnorm(g: _Graph, conv: Layer, bn: Layer, x: str) -> str:
    """conv2d then batchnorm2d as one Conv named after the batchnorm (whose output it is:
    parity localises the pair by the batchnorm's name), weights folded."""
    np = require("numpy", "onnx", "ONNX export")
    a, c = conv.args, bn.args["num_features"]
    st = g.state
    bias = _float32(st[f"{conv.path}.bias"]) if a["bias"] else None
    if bn.args["affine"]:
        gamma, beta = _float32(st[f"{bn.path}.weight"]), _float32(st[f"{bn.path}.bias"])
    else:
        gamma, beta = np.ones(c), np.zeros(c)
    w, b = fold_batchnorm(np, _float32(st[f"{conv.path}.weight"]), bias, bn.args, gamma, beta,
                          _float32(st[f"{bn.path}.running_mean"]),
                          _float32(st[f"{bn.path}.running_var"]))
    pads = a["pads"]
    if a["padding_mode"] != "zeros" and any(p for pair in pads for p in pair):
        x = g.pad(f"{conv.path}/pad", x, f"{conv.path}/padded", pads, a["padding_mode"])
        pads = ((0, 0), (0, 0))
    g.initializers[f"{bn.path}/folded.weight"] = w
    g.initializers[f"{bn.path}/folded.bias"] = b
    g.folded.update({f"{bn.path}/folded.weight", f"{bn.path}/folded.bias"})
    y = g.output_of(bn, bn.path)
    g.emit("conv", name=bn.path, y=y, inputs=[x, f"{bn.path}/folded.weight",
                                                f"{bn.path}/folded.bias"],
           kernel_shape=a["kernel_size"], strides=a["stride"], pads=conv_pads(pads),
           dilations=a["dilation"], group=a["groups"])
    return y


@lowering("conv_transpose2d")
def _conv_transpose2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    plan = conv_transpose_plan(a)
    attrs = {"kernel_shape": a["kernel_size"], "strides": a["stride"],
             "pads": conv_pads(plan.pads), "output_padding": plan.output_padding,
             "dilations": a["dilation"], "group": a["groups"]}
    inputs = [x, g.weight(layer, "weight")]
    p = layer.path
    if not any(plan.extend):
        y = g.output_of(layer, p)
        bias = [g.weight(layer, "bias")] if a["bias"] else []
        g.emit("conv_transpose", name=p, y=y, inputs=inputs + bias, **attrs)
        return y
    g.emit("conv_transpose", name=f"{p}/conv", y=f"{p}/conv", inputs=inputs, **attrs)
    extend = ((0, plan.extend[0]), (0, plan.extend[1]))
    if not a["bias"]:
        return g.pad(p, f"{p}/conv", g.output_of(layer, p), extend, "zeros")
    g.pad(f"{p}/pad", f"{p}/conv", f"{p}/padded", extend, "zeros")
    y = g.output_of(layer, p)
    g.emit("add_bias", name=p, y=y, x=f"{p}/padded", bias=g.weight(layer, "bias"),
           h=_helpers(p, "bias"), axes=g.const(f"{p}/bias.axes", [1, 2], "int64"))
    return y


def _spatial(shape) -> tuple[int, int]:
    return shape[1], shape[2]


@lowering("maxpool2d")
def _maxpool2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    pads = pool_pads(_spatial(layer.in_shape), a, _spatial(layer.out_shape))
    # onnxruntime refuses pads >= kernel, which ceil_mode's overhang can reach with dilation,
    # and gives the lowest float where a dilated window reads only padding (PyTorch: -inf):
    # then pad explicitly with -inf
    if any(p >= a["kernel_size"][i] for i, pair in enumerate(pads) for p in pair) or \
            empty_windows(_spatial(layer.in_shape), a, _spatial(layer.out_shape)):
        neg_inf = g.const(f"{layer.path}/pad.value", float("-inf"))
        padded = f"{layer.path}/padded"
        g.emit("pad", name=f"{layer.path}/pad", y=padded, mode="constant",
               inputs=[x, g.const(f"{layer.path}/pad.pads", pad_pads(pads), "int64"), neg_inf])
        x, pads = padded, ((0, 0), (0, 0))
    y = g.output_of(layer, layer.path)
    g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=a["kernel_size"],
           strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"])
    return y


@lowering("avgpool2d")
def _avgpool2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    plan = avgpool_plan(_spatial(layer.in_shape), a, _spatial(layer.out_shape))
    if plan.divisor is not None:
        channels, (kh, kw) = layer.in_shape[0], a["kernel_size"]
        ones = g.const(f"{layer.path}/ones", [1.0] * (channels * kh * kw),
                       shape=(channels, 1, kh, kw))
        y = g.output_of(layer, layer.path)
        g.emit("sum_pool", name=layer.path, y=y, x=x, h=_helpers(layer.path, "sum"),
               ones=ones, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(plan.pads), group=channels,
               divisor=g.const(f"{layer.path}/divisor", float(plan.divisor)))
        return y
    if plan.pre_pads is not None:
        x = g.pad(f"{layer.path}/pad", x, f"{layer.path}/padded", plan.pre_pads, "zeros")
    y = g.output_of(layer, layer.path)
    g.emit("average_pool", name=layer.path, y=y, x=x, kernel_shape=a["kernel_size"],
           strides=a["stride"], pads=conv_pads(plan.pads),
           count_include_pad=plan.count_include_pad)
    return y


@lowering("adaptive_avgpool2d", "adaptive_maxpool2d")
def _adaptive_pool(g: _Graph, layer: Layer, x: str) -> str:
    mean = layer.op == "adaptive_avgpool2d"
    in_hw, out_hw = _spatial(layer.in_shape), tuple(layer.args["output_size"])
    if out_hw == (1, 1):
        y = g.output_of(layer, layer.path)
        g.emit("global_pool", name=layer.path, y=y, x=x,
               op="GlobalAveragePool" if mean else "GlobalMaxPool")
        return y
    if all(i % o == 0 for i, o in zip(in_hw, out_hw)):  # even windows: an ordinary pooling
        kernel = [i // o for i, o in zip(in_hw, out_hw)]
        y = g.output_of(layer, layer.path)
        if mean:
            g.emit("average_pool", name=layer.path, y=y, x=x, kernel_shape=kernel,
                   strides=kernel, pads=[0, 0, 0, 0], count_include_pad=0)
        else:
            g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=kernel, strides=kernel,
                   pads=[0, 0, 0, 0], dilations=[1, 1])
        return y
    axes = []
    todo = [(ax, i, o) for ax, i, o in ((2, in_hw[0], out_hw[0]), (3, in_hw[1], out_hw[1]))
            if i != o]
    for n, (ax, i, o) in enumerate(todo):
        tag = "h" if ax == 2 else "w"
        last = n == len(todo) - 1
        y = g.output_of(layer, layer.path) if last else f"{layer.path}/{tag}"
        windows = []
        for k, (start, end) in enumerate(shapes.adaptive_windows(i, o)):
            p = f"{layer.path}/{tag}{k}"
            windows.append({"slice_name": f"{p}.slice", "slice": f"{p}.slice",
                            "reduce_name": p, "reduced": p,
                            "starts": g.const(f"{p}.starts", [start], "int64"),
                            "ends": g.const(f"{p}.ends", [end], "int64")})
        axes.append({"axis": ax, "x": x, "y": y, "windows": windows,
                     "name": layer.path if last else f"{layer.path}/{tag}",
                     "axes": g.const(f"{layer.path}/{tag}.axes", [ax], "int64")})
        x = y
    g.emit("adaptive_pool", axes=axes, reduce_op="ReduceMean" if mean else "ReduceMax")
    return x


@lowering("batchnorm2d")
def _batchnorm2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    c = a["num_features"]
    if a["affine"]:
        scale, shift = g.weight(layer, "weight"), g.weight(layer, "bias")
    else:
        scale = g.const(f"{layer.path}/scale.ones", [1.0] * c)
        shift = g.const(f"{layer.path}/shift.zeros", [0.0] * c)
    y = g.output_of(layer, layer.path)
    if a["track_running_stats"]:
        g.emit("batchnorm", name=layer.path, y=y, x=x, scale=scale, shift=shift,
               mean=g.weight(layer, "running_mean"), var=g.weight(layer, "running_var"),
               epsilon=a["eps"])
    else:
        g.emit("batchnorm_batch_stats", name=layer.path, y=y, x=x, scale=scale, shift=shift,
               h=_helpers(layer.path, "mean", "centred", "square", "var", "var_eps", "std",
                          "normed", "scale", "shift", "scaled"),
               axes=g.const(f"{layer.path}/axes", [0, 2, 3], "int64"),
               channel_axes=g.const(f"{layer.path}/channel_axes", [1, 2], "int64"),
               epsilon=g.const(f"{layer.path}/eps", a["eps"]))
    return y


_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish",
          "identity": "Identity", "dropout": "Identity", "dropout2d": "Identity"}


def _one_node(g: _Graph, layer: Layer, x: str, template: str, **attrs) -> str:
    """A layer that is a single ONNX node, named after the layer's path."""
    y = g.output_of(layer, layer.path)
    g.emit(template, name=layer.path, y=y, x=x, **attrs)
    return y


@lowering(*_UNARY)
def _unary(g: _Graph, layer: Layer, x: str) -> str:
    # dropout is the identity in eval mode; an Identity node keeps the layer visible and named,
    # unless the graph is folded (then only the network's output needs one, for its name)
    if g.fold and _UNARY[layer.op] == "Identity" and layer is not g.final:
        return x
    return _one_node(g, layer, x, "unary", op=_UNARY[layer.op])


@lowering("relu6")
def _relu6(g: _Graph, layer: Layer, x: str) -> str:
    return _one_node(g, layer, x, "clip", min=g.const(f"{layer.path}/min", 0.0),
                     max=g.const(f"{layer.path}/max", 6.0))


@lowering("leaky_relu")
def _leaky_relu(g: _Graph, layer: Layer, x: str) -> str:
    return _one_node(g, layer, x, "leaky_relu", alpha=layer.args["negative_slope"])


@lowering("elu")
def _elu(g: _Graph, layer: Layer, x: str) -> str:
    return _one_node(g, layer, x, "elu", alpha=layer.args["alpha"])


@lowering("gelu")
def _gelu(g: _Graph, layer: Layer, x: str) -> str:
    approximate = layer.args["approximate"]
    y = g.output_of(layer, layer.path)
    p = layer.path
    if g.opset >= 20:
        g.emit("gelu", name=p, y=y, x=x, approximate=approximate)
    elif approximate == "tanh":
        g.emit("gelu_tanh", name=p, y=y, x=x,
               h=_helpers(p, "square", "cube", "cube_term", "inner", "scaled", "tanh",
                          "plus_one", "half_x"),
               coeff=g.const(f"{p}/coeff", 0.044715),
               sqrt_2_over_pi=g.const(f"{p}/sqrt_2_over_pi", math.sqrt(2 / math.pi)),
               one=g.const(f"{p}/one", 1.0), half=g.const(f"{p}/half", 0.5))
    else:
        g.emit("gelu_erf", name=p, y=y, x=x, h=_helpers(p, "scaled", "erf", "plus_one", "half_x"),
               sqrt2=g.const(f"{p}/sqrt2", math.sqrt(2)), one=g.const(f"{p}/one", 1.0),
               half=g.const(f"{p}/half", 0.5))
    return y


@lowering("silu")
def _silu(g: _Graph, layer: Layer, x: str) -> str:
    return _one_node(g, layer, x, "silu", h=_helpers(layer.path, "sigmoid"))


@lowering("softmax")
def _softmax(g: _Graph, layer: Layer, x: str) -> str:
    return _one_node(g, layer, x, "softmax", axis=layer.args["dim"])


@lowering("flatten")
def _flatten(g: _Graph, layer: Layer, x: str) -> str:
    start, end = layer.args["dims"]
    y = g.output_of(layer, layer.path)
    if start == 0 and end == len(layer.in_shape) - 1:
        g.emit("flatten", name=layer.path, y=y, x=x)
    else:  # Flatten always makes a matrix; Reshape keeps the other axes (0 copies the batch)
        g.emit("reshape", name=layer.path, y=y, x=x,
               shape=g.const(f"{layer.path}/shape", [0, *layer.out_shape], "int64"))
    return y


@lowering("linear")
def _linear(g: _Graph, layer: Layer, x: str) -> str:
    inputs = [x, g.weight(layer, "weight")]
    if layer.args["bias"]:
        inputs.append(g.weight(layer, "bias"))
    y = g.output_of(layer, layer.path)
    g.emit("gemm", name=layer.path, y=y, inputs=inputs)
    return y


@lowering("pad2d")
def _pad2d(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    y = g.output_of(layer, layer.path)
    return g.pad(layer.path, x, y, a["pads"], a["mode"], a["value"])


@lowering("upsample")
def _upsample(g: _Graph, layer: Layer, x: str) -> str:
    a = layer.args
    p = layer.path
    in_hw, out_hw = _spatial(layer.in_shape), _spatial(layer.out_shape)
    plan = upsample_plan(a, in_hw, out_hw)
    scales = a["scale_factor"] or (None, None)
    if plan == "resize":
        y = g.output_of(layer, p)
        mode, coordinates = resize_modes(a)
        if resize_scales(a, in_hw, out_hw):  # the graph then takes any input size
            inputs = [x, "", g.const(f"{p}/scales", [float(s) for s in scales])]
        else:
            inputs = [x, "", "", g.const(f"{p}/sizes", out_hw, "int64")]
        g.emit("resize", name=p, y=y, inputs=inputs, mode=mode,
               coordinate_transformation_mode=coordinates, nearest_mode="floor")
        return y
    if a["mode"] == "nearest":
        y = g.output_of(layer, p)
        g.emit("gather_nearest", name=p, y=y, x=x, h=_helpers(p, "rows"),
               rows=g.const(f"{p}/rows.index",
                            torch_nearest_indices(in_hw[0], out_hw[0], scales[0]), "int64"),
               cols=g.const(f"{p}/cols.index",
                            torch_nearest_indices(in_hw[1], out_hw[1], scales[1]), "int64"))
        return y
    axes = []
    for ax, tag, i, o, s in ((2, "rows", in_hw[0], out_hw[0], scales[0]),
                             (3, "cols", in_hw[1], out_hw[1], scales[1])):
        i0, i1, w0, w1 = torch_linear_sampling(i, o, s, bool(a["align_corners"]))
        shape = (o, 1) if ax == 2 else (o,)
        last = ax == 3
        y = g.output_of(layer, p) if last else f"{p}/{tag}"
        axes.append({"axis": ax, "x": x, "y": y, "name": p if last else f"{p}/{tag}",
                     "h": _helpers(f"{p}/{tag}", "lo", "hi", "lo_w", "hi_w"),
                     "i0": g.const(f"{p}/{tag}.i0", i0, "int64"),
                     "i1": g.const(f"{p}/{tag}.i1", i1, "int64"),
                     "w0": g.const(f"{p}/{tag}.w0", w0, shape=shape),
                     "w1": g.const(f"{p}/{tag}.w1", w1, shape=shape)})
        x = y
    g.emit("gather_linear", axes=axes)
    return x


# -- the model ----------------------------------------------------------------------------------

def build_onnx(net: Network, *, opset: int | None = None, dynamic_batch: bool = True,
               state_dict: Mapping | None = None, seed: int = 0, intermediates: bool = False,
               fold: bool = False):
    """The network as an onnx.ModelProto, weights included: `state_dict` (which must match the
    network's entries exactly, else WeightsError) or a seeded initialisation. The batch is the
    symbolic "N", or 1 with dynamic_batch=False. With intermediates=True every layer's and
    add/concat's output is a graph output too. With fold=True every eval-mode batchnorm right
    after a conv2d is folded into it (one Conv named after the batchnorm) and no Identity
    node is emitted except for the graph's output.

    Raises SpecError for a network with errors, MemoryBudgetError (before allocating) when the
    weights would not fit in the memory available, and InternalError for anything that goes
    wrong inside: the generated graph failing its checks, or an unexpected exception."""
    built = build_graph(net, opset=opset, dynamic_batch=dynamic_batch, state_dict=state_dict,
                        seed=seed, intermediates=intermediates, fold=fold)
    onnx = require("onnx", "onnx", "ONNX export")
    _attach(onnx, built.model, built.weights)
    return built.model


@dataclass
class Built:
    """A checked graph and its weights kept apart: `model` holds every node and constant,
    `weights` (name -> float32 numpy array, in initializer order) the rest of its
    initializers. The file is written from the two without ever holding the serialised
    weights (`parts`): the arrays may be mapped straight from a checkpoint."""

    model: object  # onnx.ModelProto without the weights
    weights: dict

    def parts(self) -> list:
        """The serialised model as buffers, each weight's raw bytes a view of its array: the
        model's fields, then the graph (field 7) with the weights appended as initializers
        (field 5), each a TensorProto whose raw_data (field 9) is the array itself."""
        onnx = require("onnx", "onnx", "ONNX export")
        np = require("numpy", "onnx", "ONNX export")
        head = type(self.model)()
        head.CopyFrom(self.model)
        head.ClearField("graph")
        graph = self.model.graph.SerializeToString()
        entries, size = [], len(graph)
        for name, arr in self.weights.items():
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            t = onnx.TensorProto()
            t.name = name
            t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            t.dims.extend(arr.shape)
            header = t.SerializeToString() + b"\x4a" + _varint(arr.nbytes)
            entry = b"\x2a" + _varint(len(header) + arr.nbytes) + header
            entries += [entry, memoryview(arr).cast("B")]
            size += len(entry) + arr.nbytes
        return [head.SerializeToString(), b"\x3a" + _varint(size), graph, *entries]

    def size(self, parts: list | None = None) -> int:
        return sum(memoryview(p).nbytes for p in (parts or self.parts()))

    def tobytes(self) -> bytes:
        """The serialised model (what onnxruntime's InferenceSession takes): one copy."""
        return _checked_size(b"".join(self.parts()))

    def save(self, path: str | Path) -> bool:
        """Write the model atomically (fsutil.write_atomic), streaming the weights from their
        arrays; True if the file changed."""
        from .fsutil import write_atomic
        parts = self.parts()
        _checked_size(self.size(parts))
        return write_atomic(path, parts)


class _Silent:
    def stage(self, name: str) -> None:
        pass


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint.

    >>> _varint(300)
    b'\\xac\\x02'
    """
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _checked_size(data):
    size = data if isinstance(data, int) else len(data)
    if size >= 2**31:
        raise ValueError("the model is larger than 2 GiB, protobuf's limit for one file")
    return data


def build_graph(net: Network, *, opset: int | None = None, dynamic_batch: bool = True,
                state_dict: Mapping | None = None, seed: int = 0, intermediates: bool = False,
                fold: bool = False, checked: bool = False, progress=None) -> Built:
    """build_onnx's graph and weights kept apart (see Built). `checked`: `state_dict` has
    passed weights.check_state already (its arrays are used as they are). `progress`
    (archgen.progress.Progress) is told the stages."""
    onnx = require("onnx", "onnx", "ONNX export")
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} (archgen's lowerings use Pad's wrap "
                         f"mode and AveragePool's dilations) and {newest} (the newest onnx "
                         f"{onnx.__version__} defines), received {opset}")
    if any(d.is_error for d in net.diagnostics):
        raise SpecError(net.diagnostics, {net.file: net.source})
    # with a state_dict given, its memory is already taken: the graph adds its own copy
    check_memory(net, "export" if state_dict is None else "onnx")
    try:
        return _build(onnx, net, opset, dynamic_batch, state_dict, seed, intermediates, fold,
                      checked, progress or _Silent())
    except (InternalError, WeightsError, MemoryBudgetError, SpecError, MissingExtra):
        raise
    except MemoryError:
        raise MemoryBudgetError(f"{net.name} does not fit in memory: the allocator refused "
                                f"while exporting it") from None
    except Exception as e:  # the last resort: say it is archgen's bug, in one line
        raise InternalError(f"exporting {net.name} failed: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}") from e


def _build(onnx, net: Network, opset: int, dynamic_batch: bool, state_dict: Mapping | None,
           seed: int, intermediates: bool, fold: bool, checked: bool, progress):
    if state_dict is None:
        progress.stage("weights")
        state = initial_state(net, seed)
    else:
        state = state_dict if checked else check_state(net, state_dict)
    progress.stage("render")
    batch = "N" if dynamic_batch else 1
    g = _Graph(opset, state, batch, final=_last_producer(net.root),
               taken={layer.path for layer in net.layers()}, fold=fold)
    y = _lower(g, net.root, INPUT, "")
    if y != OUTPUT:  # nothing in the network computes: pass the input through
        g.final = net.root
        g.emit("unary", name=OUTPUT, y=g.output_of(net.root, OUTPUT), x=y, op="Identity")
    g.expected[INPUT] = (None, net.input_shape)

    def typed(value, shape):
        return _Value(value, "float", [batch, *shape])

    outputs = [typed(OUTPUT, net.output_shape)]
    if intermediates:
        outputs += [typed(v, node.out_shape) for v, node in g.produced if v != OUTPUT]
    listed = {v.name for v in outputs}
    # the checker's shape of every layer's output, so that a viewer shows them on the edges
    value_info = [typed(v, node.out_shape) for v, node in g.produced if v not in listed]
    text = _environment().get_template("model.onnx.j2").render(
        ir_version=_ir_version(onnx, opset), opset=opset, version=__version__,
        graph_name=GRAPH_PLACEHOLDER, inputs=[typed(INPUT, net.input_shape)], outputs=outputs,
        value_info=value_info, body=g.body)
    try:
        model = onnx.parser.parse_model(text)
    except onnx.parser.ParseError as e:
        raise InternalError(f"the generated ONNX text does not parse: {e}") from None
    verify_onnx(model, ONNX_OPS)
    # spec text goes into the model's fields, never through the text
    model.graph.name = net.name
    model.doc_string = f"{net.name}, generated by archgen from {net.file}"
    weights = {k: g.initializers.pop(k) for k in list(g.initializers)
               if k in state or k in g.folded}
    progress.stage("shape inference")
    _validate(onnx, model, g.initializers, weights, g.expected, batch)
    _attach(onnx, model, g.initializers)
    verify_onnx(model, ONNX_OPS)
    return Built(model, weights)


def _ir_version(onnx, opset: int) -> int:
    return onnx.helper.find_min_ir_version_for(
        [onnx.helper.make_opsetid("", opset)], ignore_unknown=True)


def _attach(onnx, model, arrays: dict) -> None:
    """Add the initializers in place (from_array and extend would copy every weight twice)."""
    for name, arr in arrays.items():
        t = model.graph.initializer.add()
        t.name = name
        t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _validate(onnx, model, constants: dict, weights: dict, expected: dict, batch) -> None:
    """Check the graph, then hold every shape ONNX infers to the checker's; any difference is
    archgen's bug. The probe is the model with its weights as typed graph inputs: the same graph
    to the checker and to shape inference, without copying the weights' data around."""
    probe = type(model)()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    _attach(onnx, probe, constants)
    probe.graph.input.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, arr.shape)
        for name, arr in weights.items())
    blind = type(model)()
    blind.CopyFrom(probe)
    for out in blind.graph.output:  # infer the outputs instead of trusting the declared types
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(blind, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except onnx.shape_inference.InferenceError as e:
        raise InternalError(f"ONNX shape inference fails on the generated graph: {e}") from None
    found = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            found[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                              for d in t.shape.dim]
    for value, (node, shape) in expected.items():
        want = [batch, *shape]
        got = found.get(value)
        if got is not None and isinstance(batch, str) and isinstance(got[0], str):
            got = [batch, *got[1:]]  # ONNX loses the batch's name after Resize: still a batch
        if got != want:
            what = "the input" if node is None else _describe(node)
            raise InternalError(
                f"ONNX infers the shape {_dims(got)} for '{value}' ({what}) but the checker "
                f"computed {_dims(want)}")
    try:
        onnx.checker.check_model(probe, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise InternalError(f"the generated ONNX graph is invalid: {e}") from None


def _describe(node: Node) -> str:
    s = node.span
    where = f" at {s.file}:{s.line}:{s.column}" if s else ""
    return f"{node.op}{where}"


def _dims(dims) -> str:
    return "unknown" if dims is None else "[" + ", ".join(str(d) for d in dims) + "]"


def save_onnx(model, path: str | Path) -> bool:
    """Write the model atomically (see fsutil.write_atomic); True if the file changed. The
    model is serialised once (ByteSize() would serialise it a second time under protobuf's
    upb backend)."""
    from .fsutil import write_atomic
    try:
        data = model.SerializeToString()
    except ValueError:  # protobuf refuses messages of 2 GiB and more
        _checked_size(2**31)
        raise
    return write_atomic(path, _checked_size(data))


# -- dynamic spatial sizes ------------------------------------------------------------------------

class DynamicSizeError(Exception):
    """A network whose ONNX graph cannot take other spatial sizes: one line saying why."""


@dataclass
class Dynamic:
    """A graph with symbolic spatial sizes, and the concrete networks it was checked at."""

    built: Built
    sizes: list  # the networks at valid sizes it was checked at (the first's graph is `built`)
    symbols: list[str]
    state: Mapping  # the weights (seeded at the first size when none were given)


def _concrete_at(net: Network, dims: tuple) -> Network:
    """The spec checked again at the input `dims` (analysis' --input path)."""
    from . import syntax
    from .checker import check
    out = check(syntax.parse(net.source, net.file), dims)
    errors = [d for d in out.diagnostics if d.is_error]
    if errors:
        raise DynamicSizeError(f"{net.name} at the input {list(dims)}: {errors[0].message}")
    return out


def valid_sizes(net: Network) -> tuple[list[str], list[tuple]]:
    """The symbols of the spatial sizes and two valid concrete inputs: the spec's own (or its
    representative sample, when symbolic) and the next valid size of every symbol."""
    from . import syntax
    from .checker import check
    c = net.input_shape[0]
    if net.symbols:
        symbolic, names = net, [str(d) for d in net.input_shape[1:]]
        first = tuple(net.sample.input_shape) if net.sample is not None else None
    else:
        names = ["H", "W"]
        symbolic = check(syntax.parse(net.source, net.file), (c, "H", "W"))
        first = tuple(net.input_shape)
    errors = [d for d in symbolic.diagnostics if d.is_error]
    if errors:
        raise DynamicSizeError(f"{net.name} takes no other input size: {errors[0].message}")
    constraints = symbolic.constraints
    for name, constraint in constraints.items():
        values = constraint.values(2)
        if len(values) < 2:
            raise DynamicSizeError(
                f"{net.name} takes only one {name} ({values[0] if values else 'none'}): a "
                f"layer fixes the input size (a linear layer that reads a flattened map, or a "
                f"merge of maps that only agree at one size); export it with fixed sizes")
    if first is None:
        first = (c, *(constraints[n].values(1)[0] for n in names))
    # the next valid size, and one about half as large again: lowerings that depend on the
    # size (an overhang, uneven windows) differ at one of them where they differ at all
    others: list[list[int]] = [[], []]
    for n, d in zip(names, first[1:]):
        con = constraints.get(n)
        for k, start in enumerate((d + 1, d + d // 2 + 1)):
            v = _admitted(con, start)
            if v is None or v == d:
                v = next(x for x in reversed(con.values(8)) if x != d)
            others[k].append(v)
    return names, [first, *((c, *o) for o in others)]


def _admitted(con, start: int) -> int | None:
    """The smallest valid size from `start` on (any size where nothing constrains it)."""
    if con is None:
        return start
    for v in range(start, start + 2 * con.modulus + 1):
        if con.max is not None and v > con.max:
            return None
        if con.admits(v):
            return v
    return None


def build_dynamic(net: Network, *, state_dict: Mapping | None = None, seed: int = 0,
                  opset: int | None = None, dynamic_batch: bool = True, fold: bool = False,
                  checked: bool = False, progress=None) -> Dynamic:
    """The network's graph with symbolic H and W (dim_param) on its input, output and every
    value whose size follows the input's; DynamicSizeError where the network does not take
    other sizes. The graph is built, with strict shape inference, at two valid sizes; it is
    dynamic only when the two graphs are the same apart from their shapes (a lowering that
    depends on the size, such as ceil_mode's end padding or uneven adaptive windows, makes
    them differ, and then the graph is refused rather than wrong at other sizes)."""
    onnx = require("onnx", "onnx", "ONNX export")
    names, sizes = valid_sizes(net)
    first = sizes[0]
    nets = [_concrete_at(net, first) if net.symbols or tuple(net.input_shape) != first
            else net, *(_concrete_at(net, size) for size in sizes[1:])]
    if state_dict is None:
        from .weights import initial_state as seeded
        state_dict, checked = seeded(nets[0], seed), True
    from .weights import state_shapes
    for other in nets[1:]:
        if state_shapes(nets[0]) != state_shapes(other):
            key = next(k for k, v in state_shapes(nets[0]).items()
                       if state_shapes(other).get(k) != v)
            raise DynamicSizeError(f"{net.name}'s weights depend on the input size ({key!r}: "
                                   f"a layer reads a flattened map); export it with fixed sizes")
    builds = [build_graph(n, state_dict=state_dict, opset=opset, dynamic_batch=dynamic_batch,
                          fold=fold, checked=checked, progress=progress) for n in nets]
    a = builds[0].model.graph
    for size, other in zip(sizes[1:], builds[1:]):
        b = other.model.graph
        between = f"between the sizes {list(first[1:])} and {list(size[1:])}"
        for na, nb in zip(a.node, b.node):
            if na != nb:
                raise DynamicSizeError(
                    f"{net.name}'s ONNX graph depends on the input size at the node "
                    f"'{na.name}' ({na.op_type}): its attributes differ {between}; export it "
                    f"with fixed sizes")
        if len(a.node) != len(b.node) or list(a.initializer) != list(b.initializer):
            odd = next((ta.name for ta, tb in zip(a.initializer, b.initializer) if ta != tb),
                       "?")
            raise DynamicSizeError(f"{net.name}'s ONNX graph depends on the input size at the "
                                   f"constant '{odd}': it differs {between}; export it with "
                                   f"fixed sizes")
    # each value's dims from the symbolic check: an expression of the symbols is a dim_param
    symbolic = {f"{layer.path}.out": layer.out_shape for layer in _symbolic_layers(net)}
    symbolic["input"] = (first[0], *names)
    symbolic[OUTPUT] = _symbolic_output(net)
    for vi in [*a.input, *a.output, *a.value_info]:
        sym = symbolic.get(vi.name)
        for d, s in zip(list(vi.type.tensor_type.shape.dim)[1:], sym or ()):
            if not isinstance(s, int) and not str(s).isdigit():
                d.Clear()
                d.dim_param = str(s)
        if sym is None:  # a merge's output: unknown spatial dims where the sizes differ
            dims = [[x.dim_value for x in vi_of(b, vi.name)] for b in builds]
            for i, d in enumerate(vi.type.tensor_type.shape.dim):
                if len({row[i] for row in dims}) > 1:
                    d.Clear()
    _check_dynamic(onnx, builds[0])
    return Dynamic(builds[0], nets, names, state_dict)


def vi_of(built: Built, name: str):
    """The dims of the value `name` in a built graph."""
    g = built.model.graph
    return next(vi for vi in [*g.input, *g.output, *g.value_info]
                if vi.name == name).type.tensor_type.shape.dim


def _symbolic_layers(net: Network):
    """The layers with symbolic shapes: the network's own when its input is symbolic, else
    the spec checked at the input [C, H, W]."""
    if net.symbols:
        return list(net.layers())
    from . import syntax
    from .checker import check
    return list(check(syntax.parse(net.source, net.file),
                      (net.input_shape[0], "H", "W")).layers())


def _symbolic_output(net: Network):
    if net.symbols:
        return net.output_shape
    from . import syntax
    from .checker import check
    return check(syntax.parse(net.source, net.file), (net.input_shape[0], "H", "W")).output_shape


def _check_dynamic(onnx, built: Built) -> None:
    """onnx.checker and strict shape inference on the dynamic graph (weights as typed inputs,
    as in _validate)."""
    probe = type(built.model)()
    probe.CopyFrom(built.model)
    probe.graph.input.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, arr.shape)
        for name, arr in built.weights.items())
    try:
        onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True,
                                          data_prop=True)
        onnx.checker.check_model(probe, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise InternalError(f"the generated ONNX graph with dynamic sizes is invalid: "
                            f"{str(e).splitlines()[0]}") from None
