"""The Python API: `archgen.load(path)` / `archgen.parse(text)` -> `Architecture`.

Checking imports nothing heavy; the PyTorch and ONNX targets import their packages lazily.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from . import syntax
from .checker import check
from .diagnostics import Diagnostic, SpecError
from .ir import Network


class Architecture:
    """A parsed spec. `.check()` returns every diagnostic; `.network` is the resolved model
    (raises `SpecError` when the spec has errors)."""

    def __init__(self, text: str, file: str = "<spec>", *, ignore=()):
        self.file = file
        self.source = text
        # warning codes or prefixes to suppress besides `# archgen: ignore[...]` comments;
        # `load` sets them (and `settings`) from [tool.archgen] in the nearest pyproject.toml
        self.ignore = tuple(ignore)
        self.settings = None
        self._suppressed: tuple | None = None
        # --input: a shape (ints, and names for symbolic sizes) instead of the input line
        self.input_override: tuple | None = None
        self.batch, self.dtype = 1, "float32"  # what the memory figures are for
        with _no_cyclic_gc():
            self.ast = syntax.parse(text, file)

    @cached_property
    def _checked(self) -> Network:
        with _no_cyclic_gc():
            return check(self.ast, self.input_override)

    def check(self) -> list[Diagnostic]:
        """Every diagnostic, less the suppressed warnings (archgen/suppress.py)."""
        if self._suppressed is None or self._suppressed[0] != self.ignore:
            from .suppress import apply
            kept = apply(self._checked.diagnostics, self.source, self.file, self.ignore)
            self._suppressed = (self.ignore, kept)
        return list(self._suppressed[1])

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.check())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.check() if d.is_error]

    @property
    def network(self) -> Network:
        if not self.ok:
            raise SpecError(self.check(), {self.file: self.source})
        return self._checked

    def target_network(self) -> Network:
        """`network`, for a target (PyTorch, ONNX): refused with E415 where a layer argument
        depends on symbolic input sizes (linear's in_features after flatten), since the
        targets' layers need a number there."""
        from .symbolic import Sym
        net = self.network
        diags = [Diagnostic(
            "error", "E415",
            f"{layer.op}'s {name} would be {value}, which depends on the symbolic input size; "
            f"PyTorch and ONNX need a number there", layer.span,
            helps=["give sizes with --input (e.g. --input 3,224,224), or pool to a fixed size "
                   "first (adaptive_avgpool2d)"])
            for layer in net.layers() for name, value in layer.args.items()
            if isinstance(value, Sym)]
        if diags:
            raise SpecError(diags, {self.file: self.source})
        return net

    @property
    def layers(self):
        return list(self.network.layers())

    def summary(self, *, collapse: bool = False) -> str:
        from .summary import render_summary
        with _gc_paused():
            return render_summary(self.network, collapse=collapse, batch=self.batch,
                                  dtype=self.dtype)

    def to_json(self, *, lazy: bool = False) -> dict:
        """The document of `check --format json`. `lazy`: its "layers" and "blocks" are
        report.Lazy lists, made record by record as report.write_json writes them."""
        from .report import network_json
        with _gc_paused():
            doc = network_json(self._checked, self.file, batch=self.batch, dtype=self.dtype,
                               lazy=lazy)
        doc["diagnostics"] = [d.to_json() for d in self.check()]  # suppressions applied
        if doc["ok"] and not self.ok:  # a bad suppression comment (E206)
            doc.update(ok=False, output_shape=None, total_params=None, total_macs=None,
                       layers=[])
            doc.pop("blocks", None)
        return doc

    # -- targets -------------------------------------------------------------------------------
    def to_torch_source(self, command: str | None = None) -> str:
        from .emit_torch import render_torch
        return render_torch(self.target_network(), command=command)

    def to_torch_module(self):
        from .emit_torch import load_module
        return load_module(self.target_network())

    def to_onnx(self, **kwargs):
        from .emit_onnx import build_onnx
        return build_onnx(self.target_network(), **kwargs)


@contextmanager
def _gc_paused():
    """Summary and JSON build ~10 objects a layer and free none before the end: without a
    pause, the collector's full collections rescan them (JSON 14x the time for 10x the layers
    at 100,000, 10x with it; bench/bench_static.py). What they build is output, not frozen."""
    with _no_cyclic_gc(freeze=False):
        yield


@contextmanager
def _no_cyclic_gc(*, freeze: bool = True):
    """Parsing and checking allocate ~10 objects per layer and free none of them until the end:
    the cyclic collector would rescan them all again and again (15x instead of 10x the time
    for 10x the layers). Reference counting still frees everything that is dropped.

    On the way out, what is alive (the AST, the IR) is frozen (gc.freeze): re-enabled, the
    collector would otherwise scan all of it as young objects, then again in each older
    generation, during summary, JSON or compilation (20-25% of summary and JSON at 27k
    layers, bench/bench_static.py). Frozen objects are still freed by reference counting; only
    reference cycles among them outlive their use, and archgen's AST and IR hold none. Small
    specs (fewer than FREEZE_ABOVE new objects, about 1,300 layers) are not frozen: their
    rescans cost little, and freezing would also keep any cyclic garbage that the caller left
    for the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze and gc.get_count()[0] > FREEZE_ABOVE:
                gc.freeze()
            gc.enable()


FREEZE_ABOVE = 20_000  # objects allocated while the collector was off (~15 per layer)


def parse(text: str, file: str = "<spec>") -> Architecture:
    return Architecture(text, file)


def load(path: str | Path) -> Architecture:
    """Read a spec, with the [tool.archgen] settings of the nearest pyproject.toml above it
    (raises archgen.suppress.ConfigError when those are invalid)."""
    from .suppress import find_settings
    path = Path(path)
    arch = Architecture(path.read_text(encoding="utf-8"), str(path))
    arch.settings = find_settings(path.parent)
    arch.ignore = arch.settings.ignore
    return arch
