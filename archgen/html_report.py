"""`archgen report`: one self-contained HTML page (inline CSS, SVG and script; nothing fetched)
with the totals, the diagram, a sortable per-layer table, the warnings with their source lines
and, when asked, the parity verdict.

The page is rendered from `templates/report/report.html.j2` with Jinja's autoescaping on, so
every piece of spec text is escaped by construction; the diagram comes from `diagram.render_svg`
(which escapes its own text) and is the only value marked safe.
"""

from __future__ import annotations

from .diagnostics import Diagnostic
from .diagram import COLOURS, family, render_svg
from .ir import Layer, Network
from .report import call_text


def _row(index: int, layer: Layer, drawn: Layer, saved) -> dict:
    """One table row; `drawn` is the same layer at the sample sizes of a symbolic network
    (what the columns sort by), `saved` its bytes kept for backward (training, batch 1)."""
    shape = layer.out_shape
    return {
        "index": index,
        "path": layer.path,
        "call": f"{layer.name} = {call_text(layer)}" if layer.name else call_text(layer),
        "family": family(layer),
        "line": layer.span.line,
        "shape": "[" + ", ".join(map(str, shape)) + "]",
        "size": _product(drawn.out_shape),
        "params": drawn.params,
        "params_text": f"{layer.params:,}",
        "macs": drawn.macs,
        "macs_text": f"{layer.macs:,}",
        "memory": saved if isinstance(saved, int) else -1,
        "memory_text": _bytes(saved),
        "rf": layer.rf.label(),
        "rf_size": max(layer.rf.size),
    }


def _bytes(n) -> str:
    if not isinstance(n, int):
        return f"({n}) B"
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,} B"


def _product(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _warning(d: Diagnostic, source: str) -> dict:
    """The code and the diagnostic as the terminal shows it: the source line and a caret."""
    return {"code": d.code, "text": d.render(source)}


def run_parity_verdict(net: Network):
    """`parity.run_parity` with its defaults; a missing onnx extra is a MissingExtra at once,
    before PyTorch is imported and the module generated."""
    from .extras import require
    for package in ("onnx", "onnxruntime", "torch"):
        require(package, "onnx" if package != "torch" else "torch", "report --parity")
    from .parity import run_parity
    return run_parity(net)


def render_report(net: Network, *, source: str, diagnostics: list[Diagnostic],
                  parity=None, expand: bool = False) -> str:
    """The page. `parity` is a `parity.ParityReport` or None (not run)."""
    import jinja2
    from markupsafe import Markup

    from .templating import template_root

    root = template_root() / "report"
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: root.joinpath(name).read_text("utf-8")),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        autoescape=True)
    from .memory import estimate
    layers = list(net.layers())
    drawn = list((net.sample or net).layers())
    mem = estimate(net)
    return env.get_template("report.html.j2").render(
        name=net.name,
        file=net.file,
        input_shape="[" + ", ".join(map(str, net.input_shape)) + "]",
        # `output NAME, ...`: every named output with its shape, not only the first's
        output_shape=(", ".join(f"{o.name} [{', '.join(map(str, o.node.out_shape))}]"
                                for o in net.outputs) if net.outputs else
                      "[" + ", ".join(map(str, net.output_shape)) + "]"),
        params=f"{net.total_params:,}",
        memory=_bytes(net.total_params * 4),
        macs=f"{net.total_macs:,}",
        gmacs=f"{(net.sample or net).total_macs / 1e9:,.3f}",
        saved=_bytes(mem.saved_for_backward_bytes),
        n_layers=len(layers),
        rows=[_row(i, layer, d, mem.of(layer).saved_for_backward_bytes)
              for i, (layer, d) in enumerate(zip(layers, drawn))],
        warnings=[_warning(d, source) for d in diagnostics if not d.is_error],
        parity=None if parity is None else {"ok": parity.ok, "text": parity.to_text()},
        colours=[(fam, stroke) for fam, (_, stroke) in COLOURS.items()],
        diagram=Markup(render_svg(net, expand=expand)),
    )
