"""Resolved model -> ONNX graph.

This module walks the IR: each layer kind lowers itself (`kind.lower_onnx(graph, layer, x)`, in
its module under layers/) into the graph builder of onnx_graph.py, which decides the ONNX
pattern: which template, with which attribute values, which helper constants; the merges and
the conv+batchnorm folding are lowered here. The templates in templates/onnx/ only format ONNX's
textual syntax; onnx.parser turns the text into a ModelProto, the weights are attached as
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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .budget import MemoryBudgetError, check_memory
from .diagnostics import SpecError
from .extras import MissingExtra, require
from .ir import Layer, Merge, Network, Node, Seq
from .ir import walk as _walk_ir
from .onnx_graph import (INPUT, ONNX_OPS, OUTPUT, Graph, Value, conv_pads, float32,
                         onnx_environment)
from .quoting import InternalError, verify_onnx
from .weights import WeightsError, check_state, initial_state, load_weights

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "Built", "InternalError", "MemoryBudgetError",
           "WeightsError", "build_graph", "build_onnx", "folded_pairs", "load_weights",
           "save_onnx"]

# 21: Gelu is an op (20), Pad has mode=wrap for circular padding and AveragePool has dilations
# (19), and onnxruntime has run this opset since 1.18. Later opsets add nothing archgen uses.
DEFAULT_OPSET = 21
MIN_OPSET = 19

GRAPH_PLACEHOLDER = "archgen_graph"  # the graph's name in the text; the network's is set after

_environment = onnx_environment  # the template environment (tests/test_injection.py)

# -- lowering: the IR tree ---------------------------------------------------------------------

@dataclass
class _NetworkGraph(Graph):
    """A whole network's graph: what `from` branches and named outputs need besides."""

    # `output NAME, ...`: id(the layer or merge whose value an output is) -> the output's name
    finals: dict = field(default_factory=dict)
    read: set = field(default_factory=set)  # id(node) of the values `from` and outputs read
    values: dict = field(default_factory=dict)  # id(node) -> its value, for those read

    def output_of(self, node, name: str) -> str:
        """A named output's value is called so; any other as Graph names it."""
        if id(node) not in self.finals:
            return super().output_of(node, name)
        value = self.finals[id(node)]
        self.expected[value] = (node, node.out_shape)
        self.produced.append((value, node))
        return value


def _lower(g: Graph, node: Node, x: str, module: str) -> str:
    y = _lower_node(g, node, x, module)
    if id(node) in g.read:  # a value that a `from` branch or an output reads
        g.values[id(node)] = y
    return y


def _lower_node(g: Graph, node: Node, x: str, module: str) -> str:
    if isinstance(node, Layer):
        try:
            return node.kind.lower_onnx(g, node, x)
        except NotImplementedError:
            raise InternalError(f"no ONNX lowering for layer kind '{node.op}'") from None
    if isinstance(node, Seq):
        inner = f"{node.path}." if node.module and node.path else module
        if node.source is not None:  # a `from` branch: it reads that value, not the merge's input
            x = g.values[id(node.source)]
        items, i = node.items, 0
        while i < len(items):
            if g.fold and i + 1 < len(items) and foldable(items[i], items[i + 1]) and \
                    id(items[i]) not in g.read:
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
        else:  # add or mul: left to right, as PyTorch's a + b + c (a * b * c broadcasts)
            steps, acc = [], ys[0]
            for i, b in enumerate(ys[1:], start=1):
                last = i == len(ys) - 1
                out = y if last else f"{name}/partial{i}"
                steps.append({"name": name if last else f"{name}/{i}", "a": acc, "b": b, "y": out})
                acc = out
            g.emit(node.mode, steps=steps)
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


# -- conv then batchnorm as one Conv ----------------------------------------------------------


def foldable(conv: Node, bn: Node) -> bool:
    """Whether `bn` is an eval-mode batchnorm right after the conv2d `conv` (in one sequence,
    so that nothing else reads the conv's output): then the two are one Conv."""
    return (isinstance(conv, Layer) and conv.kind.fold_role == "conv" and isinstance(bn, Layer)
            and bn.kind.fold_role == "batchnorm" and bn.args["track_running_stats"])


def read_values(net: Network) -> set[int]:
    """id() of the nodes whose values a `from` branch or a named output reads: such a value
    stays in the graph (a conv there is not folded into the batchnorm after it)."""
    read = {id(o.node) for o in net.outputs}
    for node in _walk_ir(net.root):
        if isinstance(node, Seq) and node.source is not None:
            read.add(id(node.source))
    return read


def folded_pairs(net: Network) -> list[tuple[Layer, Layer]]:
    """Every (conv, batchnorm) pair that export folds into one Conv, in forward order."""
    out = []
    read = read_values(net)

    def walk(node):
        if isinstance(node, Seq):
            for a, b in zip(node.items, node.items[1:]):
                if foldable(a, b) and not (out and out[-1][1] is a) and id(a) not in read:
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
    w = np.asarray(weight, f64)
    w = (w * scale.reshape(-1, *(1,) * (w.ndim - 1))).astype(np.float32)  # per output channel
    b0 = np.zeros_like(scale) if bias is None else np.asarray(bias, f64)
    b = ((b0 - np.asarray(mean, f64)) * scale + np.asarray(beta, f64)).astype(np.float32)
    return w, b


def _conv_batchnorm(g: Graph, conv: Layer, bn: Layer, x: str) -> str:
    """conv2d then batchnorm2d as one Conv named after the batchnorm (whose output it is:
    parity localises the pair by the batchnorm's name), weights folded."""
    np = require("numpy", "onnx", "ONNX export")
    a, c = conv.args, bn.args["num_features"]
    st = g.state
    bias = float32(st[f"{conv.path}.bias"]) if a["bias"] else None
    if bn.args["affine"]:
        gamma, beta = float32(st[f"{bn.path}.weight"]), float32(st[f"{bn.path}.bias"])
    else:
        gamma, beta = np.ones(c), np.zeros(c)
    w, b = fold_batchnorm(np, float32(st[f"{conv.path}.weight"]), bias, bn.args, gamma, beta,
                          float32(st[f"{bn.path}.running_mean"]),
                          float32(st[f"{bn.path}.running_var"]))
    pads = a["pads"]
    if a["padding_mode"] != "zeros" and any(p for pair in pads for p in pair):
        x = g.pad(f"{conv.path}/pad", x, f"{conv.path}/padded", pads, a["padding_mode"])
        pads = ((0, 0),) * len(pads)
    g.initializers[f"{bn.path}/folded.weight"] = w
    g.initializers[f"{bn.path}/folded.bias"] = b
    g.folded.update({f"{bn.path}/folded.weight", f"{bn.path}/folded.bias"})
    y = g.output_of(bn, bn.path)
    g.emit("conv", name=bn.path, y=y, inputs=[x, f"{bn.path}/folded.weight",
                                                f"{bn.path}/folded.bias"],
           kernel_shape=a["kernel_size"], strides=a["stride"], pads=conv_pads(pads),
           dilations=a["dilation"], group=a["groups"])
    return y




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
    g = _NetworkGraph(opset, state, batch,
                      final=None if net.outputs else _last_producer(net.root),
                      taken={layer.path for layer in net.layers()}, fold=fold,
                      read=read_values(net))
    for out in net.outputs:  # each named output is the value of its last layer or merge
        last = _last_producer(out.node)
        if last is not None and id(last) not in g.finals:
            g.finals[id(last)] = out.name
    y = _lower(g, net.root, INPUT, "")
    names = [o.name for o in net.outputs] or [OUTPUT]
    for out in net.outputs:  # one that passes another's value on gets an Identity
        value = g.values[id(out.node)]
        if value != out.name:
            g.emit("unary", name=out.name, y=out.name, x=value, op="Identity")
            g.expected[out.name] = (out.node, out.node.out_shape)
    if not net.outputs and y != OUTPUT:  # nothing in the network computes: pass the input on
        g.final = net.root
        g.emit("unary", name=OUTPUT, y=g.output_of(net.root, OUTPUT), x=y, op="Identity")
    g.expected[INPUT] = (None, net.input_shape)

    def typed(value, shape):
        return Value(value, "float", [batch, *shape])

    outputs = [typed(name, shape) for name, shape in net.output_shapes] if net.outputs \
        else [typed(OUTPUT, net.output_shape)]
    if intermediates:
        outputs += [typed(v, node.out_shape) for v, node in g.produced if v not in names]
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


# the names of the spatial sizes of [C, L], [C, H, W] and [C, D, H, W] in a dynamic graph
SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _symbolic_input(net: Network) -> tuple[list[str], tuple]:
    """The spatial symbols of the network's input and the input with them: (["H", "W"],
    (3, "H", "W")) for a map, (["L"], (1, "L")) for a 1-D input."""
    names = list(SPATIAL_NAMES.get(len(net.input_shape) - 1, ("H", "W")))
    return names, (net.input_shape[0], *names)


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
        names, shape = _symbolic_input(net)
        symbolic = check(syntax.parse(net.source, net.file), shape)
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
    symbolic.update(_symbolic_outputs(net))
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
                      _symbolic_input(net)[1]).layers())


def _symbolic_outputs(net: Network) -> dict:
    """The graph outputs' shapes over the symbols: "output", or each named output."""
    if not net.symbols:
        from . import syntax
        from .checker import check
        net = check(syntax.parse(net.source, net.file), _symbolic_input(net)[1])
    if not net.outputs:
        return {OUTPUT: net.output_shape}
    return dict(net.output_shapes)


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
