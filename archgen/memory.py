"""Memory as PyTorch spends it: parameters, activations, what autograd saves for backward in
training mode, and the peak of a no_grad eval forward.

Each layer kind says what it costs (`LayerKind.memory`, a `layers.base.Memory`): which of its
input and output autograd keeps, whether its output is its input's storage (views, in-place
ops), and which new tensors it keeps (max-pool's int64 indices, dropout's mask, a padded copy).
This module adds that up over the network, counting each storage once: a conv saves its input,
which is the previous layer's output, and a ReLU after it that keeps its own output adds a
second storage; a linear after flatten saves flatten's output, which is a view of the map
before it.

Sizes scale with the batch, except the few tensors a layer keeps per channel (batch norm's
statistics). Sizes over symbolic input sizes are expressions (symbolic.Sym).
"""

from __future__ import annotations

from math import prod

from .ir import Layer, Merge, Network, Node, Seq
from .ir import walk as _walk
from .record import record
from .symbolic import Sym, smax_all

DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}


@record
class LayerMemory:
    parameter_bytes: object = 0
    output_bytes: object = 0
    saved_for_backward_bytes: object = 0
    inference_peak_bytes: object = 0  # activations alive while this layer runs (no_grad)

    def to_json(self) -> dict:
        return {k: _json(getattr(self, k)) for k in
                ("parameter_bytes", "output_bytes", "saved_for_backward_bytes",
                 "inference_peak_bytes")}


@record
class NetworkMemory:
    batch: int
    dtype: str
    input_bytes: object
    parameter_bytes: object
    output_bytes: object  # every layer's output, views included: torchsummary's sum
    saved_for_backward_bytes: object
    inference_peak_bytes: object
    layers: dict  # id(layer) -> [parameter, output, saved, inference peak] bytes

    def of(self, layer: Layer) -> LayerMemory:
        return LayerMemory(*self.layers[id(layer)])

    def to_json(self) -> dict:
        return {"batch": self.batch, "dtype": self.dtype,
                "input_bytes": _json(self.input_bytes),
                "parameter_bytes": _json(self.parameter_bytes),
                "output_bytes": _json(self.output_bytes),
                "saved_for_backward_bytes": _json(self.saved_for_backward_bytes),
                "inference_peak_bytes": _json(self.inference_peak_bytes)}


def _json(v):
    return str(v) if isinstance(v, Sym) else v


class _Storage:
    __slots__ = ("nbytes", "saved", "refs", "grad")

    def __init__(self, nbytes):
        self.nbytes, self.saved, self.refs, self.grad = nbytes, False, 1, False


def estimate(net: Network, *, batch: int = 1, dtype: str = "float32",
             device: str = "cuda") -> NetworkMemory:
    """The network's memory at `batch` samples in `dtype` (parameters too: model.to(dtype)).
    `device` matters for dropout only: CUDA's fused kernel keeps a bool mask, the CPU a noise
    tensor in the activation dtype."""
    act = DTYPES[dtype]
    unit = {"act": act, "param": act, "mask": 1 if device == "cuda" else act}
    layers: dict[int, list] = {}
    totals = {"saved": 0, "outputs": 0}

    def nbytes(elements, per):
        return elements * unit.get(per, per) if isinstance(per, str) else elements * per

    # named values that a `from` branch or an output reads: id(node) -> its reads; a storage
    # they hold lives until the last of them (an output's, to the end)
    reads: dict[int, int] = {}
    for node in _walk(net.root):
        if isinstance(node, Seq) and node.source is not None:
            reads[id(node.source)] = reads.get(id(node.source), 0) + 1
    for out in net.outputs:
        reads[id(out.node)] = reads.get(id(out.node), 0) + 1
    kept: dict[int, _Storage] = {}  # id(node) -> the storage of its output

    def keep(node: Node, y: _Storage) -> _Storage:
        kept[id(node)] = y
        return y

    def start(branch: Seq, x: _Storage) -> _Storage:
        """What a merge's branch reads: the merge's input, or a `from` branch's value."""
        return x if branch.source is None else kept[id(branch.source)]

    # -- training: what autograd keeps, each storage once, charged to the first layer that
    # keeps it. layers[id] holds the layer's Memory in its last slot until inference has read
    # it. The copies of a repeated call share their args dict (the checker's reuse), and so
    # share one Memory and one output size here: a million-layer network keeps ~200 bytes a
    # layer, not ~600.
    shared: dict[int, tuple] = {}  # id(args) -> (args, in_shape, out_shape, Memory, out_bytes)

    def facets(node: Layer) -> tuple:
        """The layer's Memory and output bytes (once per args dict and shapes)."""
        hit = shared.get(id(node.args))
        if hit is not None and hit[0] is node.args and hit[1] is node.in_shape and \
                hit[2] is node.out_shape:
            return hit[3], hit[4]
        m = node.kind.memory(node.args, node.in_shape, node.out_shape)
        out_bytes = prod(node.out_shape) * act * batch
        if len(shared) >= 4096:
            shared.clear()
        shared[id(node.args)] = (node.args, node.in_shape, node.out_shape, m, out_bytes)
        return m, out_bytes

    def train(node: Node, x: _Storage) -> _Storage:
        y = _train(node, x)
        return keep(node, y) if id(node) in reads else y

    def _train(node: Node, x: _Storage) -> _Storage:
        if isinstance(node, Layer):
            m, out_bytes = facets(node)
            y = x if m.aliases else _Storage(out_bytes)
            weights = isinstance(node.params, Sym) or node.params != 0
            y.grad = x.grad or weights
            saved = 0
            recorded = x.grad or weights  # else autograd records nothing
            for which in m.saves if recorded else ():
                s = x if which == "input" else y
                if which == "input" and m.input_needs_grad and not x.grad:
                    continue
                if not s.saved:
                    s.saved = True
                    saved = saved + s.nbytes
            for elements, per in m.extra if recorded else ():
                saved = saved + nbytes(elements, per) * batch
            for elements, per in m.fixed if recorded else ():
                saved = saved + nbytes(elements, per)
            layers[id(node)] = [node.params * act, out_bytes, saved, m]
            totals["saved"] = totals["saved"] + saved
            totals["outputs"] = totals["outputs"] + out_bytes
            return y
        if isinstance(node, Seq):
            for item in node.items:
                x = train(item, x)
            return x
        if isinstance(node, Merge):
            y = _Storage(prod(node.out_shape) * act * batch)
            outs = [train(branch, start(branch, x)) for branch in node.branches]
            y.grad = any(s.grad for s in outs)
            if node.mode == "mul":  # each factor is saved when another needs a gradient
                for i, s in enumerate(outs):
                    if not s.saved and any(o.grad for j, o in enumerate(outs) if j != i):
                        s.saved = True
                        totals["saved"] = totals["saved"] + s.nbytes
            return y
        raise AssertionError(type(node))

    input_bytes = prod(net.input_shape) * act * batch
    train(net.root, _Storage(input_bytes))

    # -- inference: a no_grad eval forward; the caller holds the input, a sequence frees each
    # tensor once the next layer has made its output, a merge's input lives until the merge
    # has made its own
    live = {"now": input_bytes}
    peaks = [input_bytes]

    def release(s: _Storage) -> None:
        s.refs -= 1
        if s.refs == 0:
            live["now"] = live["now"] - s.nbytes

    def infer(node: Node, x: _Storage) -> _Storage:
        y = _infer(node, x)
        if id(node) in reads:  # kept alive for its readers
            y.refs += reads[id(node)]
            keep(node, y)
        return y

    def _infer(node: Node, x: _Storage) -> _Storage:
        if isinstance(node, Layer):
            entry = layers[id(node)]
            m, out_bytes = entry[3], entry[1]
            alias = m.aliases if m.eval_aliases is None else m.eval_aliases
            if alias:
                x.refs += 1
                y = x
            else:
                y = _Storage(out_bytes)
                live["now"] = live["now"] + y.nbytes
            here = live["now"] + m.temp * act * batch
            for elements, per in m.scratch:
                here = here + nbytes(elements, per) * batch
            entry[3] = here
            peaks.append(here)
            release(x)
            return y
        if isinstance(node, Seq):
            for item in node.items:
                x = infer(item, x)
            return x
        if isinstance(node, Merge):
            outs = []
            for branch in node.branches:
                if branch.source is None:  # a `from` branch's value holds a read of its own
                    x.refs += 1
                outs.append(infer(branch, start(branch, x)))
            y = _Storage(prod(node.out_shape) * act * batch)
            live["now"] = live["now"] + y.nbytes
            peaks.append(live["now"])
            for s in outs:
                release(s)
            release(x)
            return y
        raise AssertionError(type(node))

    x0 = _Storage(input_bytes)
    x0.refs += 1  # the caller's reference: never freed
    infer(net.root, x0)
    return NetworkMemory(batch, dtype, input_bytes, net.total_params * act, totals["outputs"],
                         totals["saved"], smax_all(peaks), layers)


def mib(n) -> str:
    """Bytes in MiB with two decimals (torchsummary's "MB" is MiB too)."""
    if isinstance(n, Sym):
        return f"({n}) / 2**20"
    return f"{n / 2**20:,.2f}"
