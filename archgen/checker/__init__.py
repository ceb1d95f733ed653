"""AST -> resolved model: expands blocks, repeats and ifs, binds arguments to the layer kinds'
schemas, infers every shape and collects every independent error in one run.

After an error the shape is unknown (None) and the layers after it are still looked up and
bound, so misspelt layers and arguments further down are reported too, without a cascade of
shape errors that the first one caused.

One concern a module, each a part of Checker:

- expand.py     Expander: statements, blocks (scopes, binding arguments), repeats, ifs, limits
- evaluate.py   Evaluator: expressions
- propagate.py  Propagator: layer calls (schemas, shape rules, counts, warnings) and merges
- collect.py    Collector: error/warn, whole-design warnings, sorting and de-duplication
- solve.py      Solver: symbolic input sizes
- common.py     the values passed between them and the helpers they share
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from .. import symbolic
from .. import syntax as ast
from ..diagnostics import Diagnostic, Span
from ..ir import Network, Output
from ..layers.base import RF, Shape
from ..limits import MAX_ELEMENTS, MAX_EXPANDED, MAX_LAYERS, MAX_SIZE
from ..naming import assign_paths, check_name
from .collect import Collector, _dedupe
from .common import _builtins, _camel, _Flow, _is_int, _is_symbol, _prod, _Scope, _TooLarge, _Value
from .evaluate import Evaluator
from .expand import Expander, spec_names
from .propagate import Propagator
from .solve import Solver

_DAG_WORDS = re.compile(r"\b(from|output)\b")


class Checker(Expander, Evaluator, Propagator, Collector, Solver):
    def __init__(self, spec: ast.Spec, input_shape: tuple | None = None):
        self.spec = spec
        # --input: ints and symbol names that replace the spec's input line
        self.input_override = input_shape
        self.symbolic = False  # some input size is a symbol (`input [3, H, W]`)
        self.file = spec.file
        self.diags: list[Diagnostic] = list(spec.diagnostics)
        self.expanded = 0  # statements, arguments and values so far (MAX_EXPANDED)
        self.layers = 0  # layer calls so far (MAX_LAYERS)
        # read here, not where it is used, so that tests and bench_static can lower or raise
        # archgen.checker.MAX_LAYERS
        self.max_layers = MAX_LAYERS
        self.nesting = 0  # compound statements and block instances enclosing this one
        self._min_sizes: dict[int, tuple[Any, int]] = {}  # id -> (the AST node, its size)
        self._layer_cache: dict[tuple, tuple] = {}  # _call_key -> what Checker.layer reuses
        # `from NAME` and `output NAME, ...`: the names the spec writes (for E212's notes),
        # and whether it uses either (only then are named values kept: Expander.named)
        self.spec_names: dict[str, Span] = {}
        self.dag = False
        if _DAG_WORDS.search(spec.source):
            self.spec_names, self.dag = spec_names(spec)
        self.scopes: list[tuple[dict, list]] = []  # (names, items) of the open sequences

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> Network:
        spec = self.spec
        name = spec.network or _camel(Path(self.file).stem) or "Network"
        name_span = spec.network_span or Span(self.file, 1, 1, 2)
        problem = check_name(name, kind="network")
        if problem:
            self.error("E204", f"network name {name!r} {problem}", name_span,
                       helps=["choose a CamelCase name such as MyNet"])
            name = "Network"
        for block in spec.blocks.values():
            problem = check_name(block.name, kind="layer")
            if problem:  # an unnamed block instance is an attribute named after its block
                self.error("E204", f"block name {block.name!r} {problem}", block.span,
                           helps=["use a lower-case identifier such as conv_block"])
        shape = self._input_shape()
        flow = _Flow(shape, RF.identity(shape[1:] if shape and len(shape) in (2, 3, 4)
                                        and not self.symbolic else None,
                                        axes=len(shape) - 1 if shape and len(shape) > 1 else 2),
                     "the input")
        scope = _Scope({})
        if shape is not None:
            scope.env.update(_builtins(shape))
        start = Span(self.file, 1, 1, 2)
        recorder = symbolic.recording() if self.symbolic else contextlib.nullcontext()
        body, output = spec.body, None
        if body and isinstance(body[-1], ast.Output):
            body, output = body[:-1], body[-1]
        top: dict = {}  # the top level's named values, for `output`
        try:
            with recorder as record:
                items, out = self.sequence(body, scope, flow, top)
        except _TooLarge as err:  # checking stops at the first limit reached
            if err.diagnostic is not None:
                self.diags.append(err.diagnostic)
            else:
                self.error("E305", f"checking stops here: expanding blocks, repeats and ifs "
                           f"took more than {MAX_EXPANDED:,} steps (statements, arguments and "
                           f"values), archgen's limit", err.span,
                           helps=["lower the repeat counts; no real CNN comes near this"])
            items, out = [], _Flow(None, flow.rf, "the input")
        root = self._seq(items, flow, out, start, label=name, module=True)
        if not items and not any(d.is_error for d in self.diags):
            self.error("E408", "the spec has no layers", spec.input_span or start,
                       helps=["add layers after the input line, e.g. conv2d(16, 3)"])
        net = Network(name, self.file, spec.source, shape or (), root, self.diags,
                      blocks=spec.blocks)
        if output is not None and items:
            net.outputs = self._outputs(output, top)
        if self.dag and not any(d.is_error for d in self.diags):
            self._check_inplace_on_references(net)
        if self.symbolic and not any(d.is_error for d in self.diags):
            self._solve_sizes(net, record.requirements)
        if not any(d.is_error for d in self.diags):
            for problem in assign_paths(net):
                self.error("E203", problem.message, problem.span, problem.notes, problem.helps)
            if not self.symbolic:  # a symbolic network's come from its sample
                self._design_warnings(net)
        self.diags = _dedupe(self.diags)
        net.diagnostics = self.diags
        return net

    def _outputs(self, stmt: ast.Output, top: dict) -> list[Output]:
        """The named top-level values `output NAME, ...` returns (E212 for a name that is not
        one, E214 for a name listed twice)."""
        outputs: list[Output] = []
        self.scopes.append((top, []))
        try:
            for name, span in zip(stmt.names, stmt.spans):
                if any(o.name == name for o in outputs):
                    self.error("E214", f"output '{name}' is listed twice", span,
                               helps=["list each output once"])
                    continue
                if name == "input":  # the ONNX graph's input is named so
                    self.error("E214", "an output cannot be named 'input', the name of the "
                               "network's input", span, helps=["rename the layer or group"])
                    continue
                named = self.named(name, span, "output")
                if named is not None and named.node is not None:
                    outputs.append(Output(name, named.node, span))
        finally:
            self.scopes.pop()
        return outputs

    def _input_shape(self) -> Shape | None:
        spec = self.spec
        if spec.input_shape is None:
            # any error in reading the text (a syntax error, a number too large, nesting too
            # deep) may be what lost the input line: then it, not E408, is the problem
            if not any(d.is_error for d in spec.diagnostics):
                self.error("E408", "the spec has no input line", Span(self.file, 1, 1, 2),
                           helps=["start with the input size, batch excluded: "
                                  "input [3, 32, 32]"])
            return None
        scope = _Scope({})
        if self.input_override is not None:  # --input, validated by the command line
            dims = [_Value(v, spec.input_span) for v in self.input_override]
        else:  # a name that is not a constant stands for a size: input [3, H, W]
            dims = [_Value(e.name, e.span) if _is_symbol(e) else self.eval(e, scope)
                    for e in spec.input_shape]
        if any(d is None for d in dims):
            return None
        if any(isinstance(d.value, str) for d in dims):
            self.symbolic = True
            dims = [_Value(symbolic.Sym.var(d.value), d.span) if isinstance(d.value, str)
                    else d for d in dims]
        values = [d.value for d in dims]
        if self.symbolic and len(values) in (1, 2, 3, 4) and all(
                isinstance(v, symbolic.Sym) or (_is_int(v) and 0 < v <= MAX_SIZE)
                for v in values):
            return tuple(values)
        if len(values) not in (1, 2, 3, 4) or not all(_is_int(v) and v > 0 for v in values):
            self.error("E300", f"input must be [channels, height, width], [channels, length], "
                       f"[channels, depth, height, width] or [features] in positive integers; "
                       f"received {values}", spec.input_span,
                       helps=["write input [3, 32, 32] for an RGB 32x32 image"])
            return None
        for d in dims:
            if d.value > MAX_SIZE:
                self.error("E304", f"the input size {d.value:,} is beyond {MAX_SIZE:,} (2**24), "
                           f"archgen's limit for a size", d.span,
                           helps=["no real CNN input comes near this; check for a typo"])
                return None
        if _prod(values) > MAX_ELEMENTS:
            self.error("E411", f"the input {values} has {_prod(values):,} elements per "
                       f"sample, beyond {MAX_ELEMENTS:,} (2**32, 16 GiB in float32), archgen's "
                       f"limit for one tensor", spec.input_span)
            return None
        return tuple(values)


def check(spec: ast.Spec, input_shape: tuple | None = None) -> Network:
    """The checked network; `input_shape` (ints, and names for symbolic sizes) replaces the
    spec's input line, as `--input` does."""
    return Checker(spec, input_shape).run()


__all__ = ["Checker", "check"]
