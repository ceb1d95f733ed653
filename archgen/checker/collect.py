"""Collecting diagnostics: error and warn, the warnings about the whole design (W503, W504,
W510), and the final sorting and de-duplication."""

from __future__ import annotations

from ..diagnostics import Diagnostic, Span
from ..ir import Layer, Network, Node, Seq
from ..limits import MAX_SAME_LINE


class Collector:
    # -- diagnostics ---------------------------------------------------------------------------
    def error(self, code: str, message: str, span: Span | None, notes=(), helps=()) -> None:
        self.diags.append(Diagnostic("error", code, message, span, list(notes),
                                     [h for h in helps if h]))

    def warn(self, code: str, message: str, span: Span | None, notes=(), helps=()) -> None:
        self.diags.append(Diagnostic("warning", code, message, span, list(notes),
                                     [h for h in helps if h]))

    # -- whole-design warnings -----------------------------------------------------------------
    def _design_warnings(self, net: Network) -> None:
        layers = list(net.layers())
        collapsed = None  # the last layer (in spec order) that shrank a map to 1x1
        for layer in layers:
            x, y = layer.in_shape, layer.out_shape
            if len(x) == 3 and len(y) == 3 and x[1:] != (1, 1) and y[1:] == (1, 1):
                collapsed = layer
            # what this layer itself receives: a map restored by upsampling is fine, and so
            # are the 1x1 convs of a squeeze-excitation branch beside a full-size path
            elif len(x) == 3 and x[1:] == (1, 1) and _spatial_kernel(layer):
                notes = [f"{collapsed.op} at line {collapsed.span.line} collapsed "
                         f"{list(collapsed.in_shape)} to {list(collapsed.out_shape)}"] \
                    if collapsed else [f"the input {list(x)} is 1x1"]
                self.warn("W503", f"the map is already 1x1 here: this {layer.op} "
                          f"has nothing spatial left to see", layer.span, notes=notes,
                          helps=["stride or pool less before this point, or feed a larger "
                                 "input"])
                break
        total = net.total_params
        for layer in layers:
            if layer.op == "linear" and total >= 10_000 and 2 * layer.params > total:
                percent = (200 * layer.params + total) // (2 * total)  # integers: no overflow
                self.warn("W504", f"this linear layer holds {layer.params:,} of the network's "
                          f"{total:,} parameters ({percent}%)", layer.span,
                          notes=[f"it maps {layer.args['in_features']:,} features to "
                                 f"{layer.args['out_features']:,}"],
                          helps=["shrink the map first (more pooling, or "
                                 "adaptive_avgpool2d(1) before flatten())"])
        self._inplace_on_saved(net)

    def _inplace_on_saved(self, net: Network) -> None:
        """W510: an in-place layer overwriting a tensor that an earlier layer's backward reads
        (relu, sigmoid, tanh and softmax keep their output; relu_ keeps its result, the
        input's storage). Inference is right, but training's backward raises ("one of the
        variables needed for gradient computation has been modified by an inplace
        operation"). Tensors are followed through the layers that pass their input's storage
        on in training (in-place layers, views); only a value that requires grad counts:
        layers without parameters right after the input are not recorded by autograd."""

        def visit(node: Node, keeper: Layer | None, grad: bool) -> tuple[Layer | None, bool]:
            """`keeper`: the layer whose saved output the current tensor is, if any;
            `grad`: whether the current tensor requires grad. Returns both after `node`."""
            if isinstance(node, Layer):
                memory = node.kind.memory(node.args, node.in_shape, node.out_shape)
                if node.args.get("inplace") and grad and keeper is not None:
                    self.warn("W510", f"{node.op}(inplace=true) overwrites the output of "
                              f"{keeper.op} at line {keeper.span.line}, which its backward "
                              f"reads: training raises 'modified by an inplace operation'",
                              node.span, notes=[f"{keeper.op} keeps its output for its gradient"],
                              helps=[("drop inplace=true here (in place is safe after a "
                                      "conv, a batch norm or a linear layer)")])
                if "output" in memory.saves:
                    keeper = node
                elif not memory.aliases:  # a new tensor
                    keeper = None
                return keeper, grad or node.params > 0
            if isinstance(node, Seq):
                if node.source is not None:  # `from NAME`: that value, which may need grad
                    keeper, grad = None, True
                for item in node.items:
                    keeper, grad = visit(item, keeper, grad)
                return keeper, grad
            grads = [visit(branch, keeper, grad)[1] for branch in node.branches]
            return None, any(grads)  # a merge makes a new tensor

        visit(net.root, None, False)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position; a problem inside a block used several times is reported once, at
    its first use, with the count of the others. Of the diagnostics with one code on one line,
    the first MAX_SAME_LINE are kept and the rest folded into a count ("and 9,997 more like
    this"), so that the output grows with the problems found, not with their product with the
    line's length. Linear time."""
    first: dict[tuple, Diagnostic] = {}
    extra: dict[tuple, int] = {}
    for d in diags:
        key = (d.severity, d.code, d.span)
        if key in first:
            extra[key] = extra.get(key, 0) + 1
        else:
            first[key] = d
    for key, n in extra.items():
        first[key].notes.append(f"the same holds at {n} more use{'s' * (n != 1)} of this line")
    ordered = sorted(first.values(),
                     key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    kept: list[Diagnostic] = []
    on_line: dict[tuple, list] = {}  # (severity, code, file, line) -> [last shown, shown, folded]
    for d in ordered:
        if d.span is None:
            kept.append(d)
            continue
        seen = on_line.setdefault((d.severity, d.code, d.span.file, d.span.line), [d, 0, 0])
        if seen[1] >= MAX_SAME_LINE:
            seen[2] += 1
            continue
        seen[0] = d
        seen[1] += 1
        kept.append(d)
    for (_, code, _, line), (last, _, folded) in on_line.items():
        if folded:
            last.notes.append(f"and {folded:,} more like this ({code} on line {line}), "
                              f"not shown")
    return kept


def _spatial_kernel(layer: Layer) -> bool:
    k = layer.args.get("kernel_size")
    return k is not None and tuple(k) != (1, 1)
