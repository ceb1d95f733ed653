"""`archgen summary`: a per-layer table computed statically, nesting shown with tree lines.

Every layer is counted once, wherever it sits (branches, repeats, nested blocks); a row for a
block or a merge shows the sums of what lies inside it.
"""

from __future__ import annotations

from collections.abc import Iterator

from .ir import Layer, Merge, Network, Node, Seq, children
from .report import call_text


def _label(node: Node) -> str:
    if isinstance(node, Layer):
        text = call_text(node)
    elif isinstance(node, Merge):
        text = f"{node.mode}: {len(node.branches)} branches"
    else:
        text = node.label if node.module or node.label != "branch" else "branch"
    return f"{node.attr}: {text}" if node.attr and node.attr != text else text


def _signature(node: Node) -> tuple:
    """Equal for structurally identical subtrees (repeated blocks)."""
    own = (_label(node).split(": ", 1)[-1], node.out_shape, node.params, node.macs)
    return own + tuple(_signature(c) for c in children(node))


def _collapse(items: list[Node]) -> list[tuple[Node, int, int, int, Node]]:
    """Runs of identical siblings -> (first of the run, count, params of all, macs of all,
    last of the run)."""
    runs: list[tuple[Node, int, int, int, Node]] = []
    for item in items:
        if runs and isinstance(item, Seq) and item.block and \
                _signature(runs[-1][0]) == _signature(item):
            first, n, p, m, _ = runs[-1]
            runs[-1] = (first, n + 1, p + item.params, m + item.macs, item)
        else:
            runs.append((item, 1, item.params, item.macs, item))
    return runs


def _run_label(first: Node, last: Node, count: int) -> str:
    """A collapsed run, labelled by the indices (or names) of its first and last copies:
    `0-1: res(16) x 2`."""
    text = _label(first).split(": ", 1)[-1] if first.attr else _label(first)
    where = f"{first.attr}-{last.attr}: " if first.attr and last.attr else ""
    return f"{where}{text} x {count}"


def _rows(node: Node, prefix: str, last: bool, collapse: bool, count: int = 1,
          params: int | None = None, macs: int | None = None, top: bool = False,
          run_end: Node | None = None) -> Iterator[tuple[str, str, str, str, str]]:
    """The table's rows for `node` and what lies inside it, made as they are read: a million
    layers' rows never exist at once (render_summary reads them twice, for the widths first)."""
    branch = "" if top else ("└─ " if last else "├─ ")
    label = _run_label(node, run_end or node, count) if count > 1 else _label(node)
    shape = "[" + ", ".join(map(str, node.out_shape)) + "]"
    yield (prefix + branch + label, shape, f"{node.params if params is None else params:,}",
           f"{node.macs if macs is None else macs:,}", (run_end or node).rf.label())
    if count > 1:
        return
    kids = children(node)
    runs = _collapse(kids) if collapse else [(c, 1, c.params, c.macs, c) for c in kids]
    child_prefix = prefix + ("" if top else ("   " if last else "│  "))
    for i, (child, n, p, m, end) in enumerate(runs):
        yield from _rows(child, child_prefix, i == len(runs) - 1, collapse, n, p, m,
                         run_end=end)


def _fixed2(n: int, unit: int) -> str:
    """n / unit with two decimals and thousands separators, in integers (a float overflows
    past 1e308; the counts here are exact integers of any size).

    >>> _fixed2(3_318_664, 10**6), _fixed2(541_094 * 4, 2**20), _fixed2(10**400, 1)[:6]
    ('3.32', '2.06', '10,000')
    """
    if not isinstance(n, int):  # an expression over symbolic sizes
        return f"({n}) / {unit}"
    hundredths = (200 * n + unit) // (2 * unit)  # rounded half up
    return f"{hundredths // 100:,}.{hundredths % 100:02d}"


def _size(n) -> str:
    if n is None:
        return "unknown (an expression too large to write out)"
    return _fixed2(n, 2**20) if isinstance(n, int) else f"({n}) / 2**20"


def _memory_lines(net: Network, batch: int, dtype: str) -> list[str]:
    """torchinfo's footer, with autograd's real figure for the forward/backward pass: what it
    saves for backward, each storage once (torchsummary doubles the sum of the outputs)."""
    from .memory import estimate
    m = estimate(net, batch=batch, dtype=dtype)
    total = m.input_bytes + m.parameter_bytes + m.saved_for_backward_bytes
    return [f"Memory at batch {batch}, {dtype} (MB = 2**20 bytes):",
            f"  Input size (MB): {_size(m.input_bytes)}",
            f"  Params size (MB): {_size(m.parameter_bytes)}",
            f"  Forward/backward pass size (MB): {_size(m.saved_for_backward_bytes)} "
            f"(saved for backward in training)",
            f"  Estimated Total Size (MB): {_size(total)}",
            f"  Inference peak (MB): {_size(m.inference_peak_bytes)} (no_grad eval forward)"]


KEEP_ROWS = 50_000  # rows kept between summary_lines' two passes (~300 bytes each)


def render_summary(net: Network, *, collapse: bool = False, batch: int = 1,
                   dtype: str = "float32") -> str:
    return "\n".join(summary_lines(net, collapse=collapse, batch=batch, dtype=dtype))


def summary_lines(net: Network, *, collapse: bool = False, batch: int = 1,
                  dtype: str = "float32") -> Iterator[str]:
    """The lines of render_summary, made one at a time. The column widths need every row
    first: up to KEEP_ROWS rows are kept from that pass; a larger table's rows are made again
    for the lines, so that it takes no memory a row."""
    def rows() -> Iterator[tuple[str, str, str, str, str]]:
        runs = _collapse(net.root.items) if collapse else [
            (c, 1, c.params, c.macs, c) for c in net.root.items]
        for i, (child, n, p, m, end) in enumerate(runs):
            yield from _rows(child, "", i == len(runs) - 1, collapse, n, p, m, top=True,
                             run_end=end)

    header = ("Layer", "Output shape", "Params", "MACs", "RF")
    widths = [len(h) for h in header]
    kept: list | None = []
    for r in rows():
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
        if kept is not None:
            kept.append(r)
            if len(kept) > KEEP_ROWS:
                kept = None

    def line(r) -> str:
        return (f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  "
                f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}").rstrip()

    rule = "=" * len(line(header))
    yield f"{net.name}: input [N, {', '.join(map(str, net.input_shape))}]"
    yield rule
    yield line(header)
    yield "-" * len(rule)
    for r in rows() if kept is None else kept:
        yield line(r)
    yield rule
    yield f"Total params: {net.total_params:,}"
    yield f"Total MACs: {net.total_macs:,} ({_fixed2(net.total_macs, 10**6)} M at batch 1)"
    if net.outputs:  # `output NAME, ...`: each, in order
        yield "Outputs: " + ", ".join(f"{name} [N, {', '.join(map(str, shape))}]"
                                      for name, shape in net.output_shapes)
    else:
        yield f"Output shape: [N, {', '.join(map(str, net.output_shape))}]"
    yield f"Parameter memory: {_size(net.total_params * 4)} MiB (float32)"
    yield from _memory_lines(net, batch, dtype)
    for layer in net.layers():
        if layer.op == "conv2d" and layer.args["padding"] == "same" and \
                layer.args["stride"] != (1, 1):
            (t, b), (left, r) = layer.args["pads"]
            yield (f"note: {layer.path} (line {layer.span.line}) uses padding=same with stride "
                   f"{layer.args['stride'][0]}: TensorFlow/ONNX SAME_UPPER, pads top/bottom "
                   f"{t}/{b}, left/right {left}/{r}, output ceil(input / stride)")
    yield "RF: receptive field of one output value, in input pixels"


def write_summary(net: Network, write, *, collapse: bool = False, batch: int = 1,
                  dtype: str = "float32", lines_per_write: int = 1000) -> None:
    """Writes render_summary's text and a final newline through `write`, in pieces."""
    pending: list[str] = []
    for text in summary_lines(net, collapse=collapse, batch=batch, dtype=dtype):
        pending.append(text)
        if len(pending) >= lines_per_write:
            pending.append("")
            write("\n".join(pending))
            pending.clear()
    pending.append("")
    write("\n".join(pending))
