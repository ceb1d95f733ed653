"""`archgen summary`: a per-layer table computed statically, nesting shown with tree lines.

Every layer is counted once, wherever it sits (branches, repeats, nested blocks); a row for a
block or a merge shows the sums of what lies inside it.
"""

from __future__ import annotations

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


def _rows(node: Node, prefix: str, last: bool, collapse: bool, out: list, count: int = 1,
          params: int | None = None, macs: int | None = None, top: bool = False,
          run_end: Node | None = None) -> None:
    branch = "" if top else ("└─ " if last else "├─ ")
    label = _run_label(node, run_end or node, count) if count > 1 else _label(node)
    shape = "[" + ", ".join(map(str, node.out_shape)) + "]"
    out.append((prefix + branch + label, shape, node.params if params is None else params,
                node.macs if macs is None else macs, (run_end or node).rf.label()))
    if count > 1:
        return
    kids = children(node)
    runs = _collapse(kids) if collapse else [(c, 1, c.params, c.macs, c) for c in kids]
    child_prefix = prefix + ("" if top else ("   " if last else "│  "))
    for i, (child, n, p, m, end) in enumerate(runs):
        _rows(child, child_prefix, i == len(runs) - 1, collapse, out, n, p, m, run_end=end)


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


def render_summary(net: Network, *, collapse: bool = False, batch: int = 1,
                   dtype: str = "float32") -> str:
    rows: list[tuple[str, str, int, int, str]] = []
    runs = _collapse(net.root.items) if collapse else [
        (c, 1, c.params, c.macs, c) for c in net.root.items]
    for i, (child, n, p, m, end) in enumerate(runs):
        _rows(child, "", i == len(runs) - 1, collapse, rows, n, p, m, top=True, run_end=end)
    header = ("Layer", "Output shape", "Params", "MACs", "RF")
    table = [header] + [(a, b, f"{c:,}", f"{d:,}", e) for a, b, c, d, e in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]

    def line(r) -> str:
        return (f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  "
                f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}").rstrip()

    rule = "=" * len(line(header))
    out = [f"{net.name}: input [N, {', '.join(map(str, net.input_shape))}]", rule,
           line(header), "-" * len(rule)]
    out += [line(r) for r in table[1:]]
    out += [rule,
            f"Total params: {net.total_params:,}",
            f"Total MACs: {net.total_macs:,} ({_fixed2(net.total_macs, 10**6)} M at batch 1)",
            f"Output shape: [N, {', '.join(map(str, net.output_shape))}]",
            f"Parameter memory: {_size(net.total_params * 4)} MiB (float32)"]
    out += _memory_lines(net, batch, dtype)
    same = [layer for layer in net.layers()
            if layer.op == "conv2d" and layer.args["padding"] == "same"
            and layer.args["stride"] != (1, 1)]
    for layer in same:
        (t, b), (left, r) = layer.args["pads"]
        out.append(f"note: {layer.path} (line {layer.span.line}) uses padding=same with stride "
                   f"{layer.args['stride'][0]}: TensorFlow/ONNX SAME_UPPER, pads top/bottom "
                   f"{t}/{b}, left/right {left}/{r}, output ceil(input / stride)")
    out.append("RF: receptive field of one output value, in input pixels")
    return "\n".join(out)
