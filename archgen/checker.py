"""AST -> resolved model: expands blocks, repeats and ifs, binds arguments to the layer kinds'
schemas, infers every shape and collects every independent error in one run.

After an error the shape is unknown (None) and the layers after it are still looked up and
bound, so misspelt layers and arguments further down are reported too, without a cascade of
shape errors that the first one caused.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any

from . import symbolic
from . import syntax as ast
from .diagnostics import Diagnostic, Span, did_you_mean
from .hints import argument_hint, layer_hint
from .ir import Layer, Merge, Network, Node, Seq, walk
from .layers import REGISTRY
from .layers.base import (REQUIRED, RF, LayerError, LayerKind, Shape, check_inferred, coerce,
                          describe)
from .limits import (MAX_ELEMENTS, MAX_EXPANDED, MAX_INT, MAX_LAYERS, MAX_NESTING, MAX_SAME_LINE,
                     MAX_SIZE, RF_CAP)
from .naming import assign_paths, check_name
from .record import factory, record

MAX_DEPTH = 32


class _Word(str):
    """A bare word that named no variable: an enumeration value such as same, or a typo.
    Remembers where it was written and which names were defined there, for E202."""

    span: Span
    names: list[str]


@record
class _Value:
    value: Any
    span: Span
    arg_span: Span | None = None  # the whole `name=value` it was passed as


@record
class _Flow:
    """What flows between statements: the shape (None once unknown), its receptive field and
    where it was produced (for notes)."""

    shape: Shape | None
    rf: RF
    origin: str

    @property
    def known(self) -> bool:
        return self.shape is not None


@record
class _Scope:
    env: dict[str, Any]
    stack: list[str] = factory(list)  # block names being expanded


class Checker:
    def __init__(self, spec: ast.Spec, input_shape: tuple | None = None):
        self.spec = spec
        # --input: ints and symbol names that replace the spec's input line
        self.input_override = input_shape
        self.symbolic = False  # some input size is a symbol (`input [3, H, W]`)
        self.file = spec.file
        self.diags: list[Diagnostic] = list(spec.diagnostics)
        self.expanded = 0  # statements, arguments and values so far (MAX_EXPANDED)
        self.layers = 0  # layer calls so far (MAX_LAYERS)
        self.nesting = 0  # compound statements and block instances enclosing this one
        self._min_sizes: dict[int, tuple[Any, int]] = {}  # id -> (the AST node, its size)
        self._layer_cache: dict[tuple, tuple] = {}  # _call_key -> what Checker.layer reuses

    # -- diagnostics ---------------------------------------------------------------------------
    def error(self, code: str, message: str, span: Span | None, notes=(), helps=()) -> None:
        self.diags.append(Diagnostic("error", code, message, span, list(notes),
                                     [h for h in helps if h]))

    def warn(self, code: str, message: str, span: Span | None, notes=(), helps=()) -> None:
        self.diags.append(Diagnostic("warning", code, message, span, list(notes),
                                     [h for h in helps if h]))

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
        flow = _Flow(shape, RF.identity(shape[1:] if shape and len(shape) == 3
                                        and not self.symbolic else None), "the input")
        scope = _Scope({})
        if shape is not None:
            scope.env.update(_builtins(shape))
        start = Span(self.file, 1, 1, 2)
        recorder = symbolic.recording() if self.symbolic else contextlib.nullcontext()
        try:
            with recorder as record:
                items, out = self.sequence(spec.body, scope, flow)
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
        if self.symbolic and len(values) in (1, 3) and all(
                isinstance(v, symbolic.Sym) or (_is_int(v) and 0 < v <= MAX_SIZE)
                for v in values):
            return tuple(values)
        if len(values) not in (1, 3) or not all(_is_int(v) and v > 0 for v in values):
            self.error("E300", f"input must be [channels, height, width] or [features] in "
                       f"positive integers; received {values}", spec.input_span,
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

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, e: ast.Expr, scope: _Scope) -> _Value | None:
        """Evaluate an expression; None after reporting an error, or silently when it uses a
        value unknown after an earlier error (in_channels after an unknown layer)."""
        try:
            return _Value(self._eval(e, scope), e.span)
        except _EvalError as err:
            self.error(err.code, err.message, err.span, helps=err.helps)
            return None
        except _Unknown:
            return None

    def _eval(self, e: ast.Expr, scope: _Scope) -> Any:
        try:
            value = self._eval_any(e, scope)
        except (OverflowError, ZeroDivisionError):  # float // and % of extreme operands
            raise _EvalError("E302", f"{_text(e)} is not a finite number", e.span) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _EvalError("E302", f"{_text(e)} is not a finite number", e.span)
        if _is_int(value) and not -MAX_INT - 1 <= value <= MAX_INT:
            raise _EvalError("E303", f"{_text(e)} is larger than 2**63 - 1 = {MAX_INT:,}, "
                             f"the largest integer archgen computes with", e.span,
                             ["sizes, counts and strides are far smaller; check the "
                              "arithmetic"])
        return value

    def _eval_any(self, e: ast.Expr, scope: _Scope) -> Any:
        self._visit(e.span)  # every value computed is a step of the bounded expansion
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Str):
            return e.value
        if isinstance(e, ast.Word):
            if e.name in scope.env:
                if scope.env[e.name] is _UNKNOWN:  # an earlier error already said why
                    raise _Unknown
                return scope.env[e.name]
            if e.name in _CONSTANTS:
                return _CONSTANTS[e.name]
            word = _Word(e.name)
            word.span, word.names = e.span, list(scope.env)
            return word
        if isinstance(e, ast.TupleExpr):
            return tuple(self._eval(i, scope) for i in e.items)
        if isinstance(e, ast.UnaryOp):
            v = self._eval(e.operand, scope)
            if e.op == "not":
                return not self._truth(v, e.operand, scope)
            self._need_number(v, e.operand, scope)
            return -v if e.op == "-" else v
        if isinstance(e, ast.BinOp):
            left = self._eval(e.left, scope)
            if e.op in ("and", "or"):
                lv = self._truth(left, e.left, scope)
                if (e.op == "and") != lv:
                    return lv
                return self._truth(self._eval(e.right, scope), e.right, scope)
            right = self._eval(e.right, scope)
            if e.op in ("==", "!="):
                return (left == right) == (e.op == "==")
            self._need_number(left, e.left, scope)
            self._need_number(right, e.right, scope)
            if e.op in ("<", "<=", ">", ">="):
                return {"<": left < right, "<=": left <= right, ">": left > right,
                        ">=": left >= right}[e.op]
            if e.op in ("//", "%") and right == 0:
                raise _EvalError("E302", f"division by zero in {_text(e)}", e.span)
            if e.op == "/":
                if right == 0:
                    raise _EvalError("E302", "division by zero", e.span)
                if _is_int(left) and _is_int(right):  # exact: never through a float
                    if left % right:
                        raise _EvalError(
                            "E302", f"{left} / {right} is not a whole number", e.span,
                            [f"use // for integer division ({left} // {right} = "
                             f"{left // right})"])
                    return left // right
                return left / right
            return {"+": lambda: left + right, "-": lambda: left - right,
                    "*": lambda: left * right, "//": lambda: left // right,
                    "%": lambda: left % right}[e.op]()
        raise AssertionError(type(e))

    def _need_number(self, v: Any, e: ast.Expr, scope: _Scope) -> None:
        if isinstance(v, symbolic.Sym):
            raise symbolic.SymbolicBranch(f"{_text(e)} is the symbolic size {v}; arithmetic "
                                          f"on it in a spec is not followed")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, _Word):
                raise self._undefined(v, e, scope)
            raise _EvalError("E300", f"arithmetic needs numbers, received {describe(v)}", e.span)

    def _truth(self, v: Any, e: ast.Expr, scope: _Scope) -> bool:
        if isinstance(v, _Word):
            raise self._undefined(v, e, scope)
        if not isinstance(v, bool):
            raise _EvalError("E300", f"a condition must be true or false, received "
                             f"{describe(v)}", e.span,
                             ["compare explicitly, e.g. if stride == 1:"])
        return v

    def _undefined(self, word: str, e: ast.Expr, scope: _Scope) -> _EvalError:
        hint = did_you_mean(word, scope.env)
        return _EvalError("E202", f"'{word}' is not defined", e.span,
                          [hint or f"the names defined here are: "
                                   f"{', '.join(sorted(scope.env)) or 'none'}"])

    # -- statements ----------------------------------------------------------------------------
    def sequence(self, stmts: list[ast.Stmt], scope: _Scope, flow: _Flow) -> tuple[list[Node], _Flow]:
        items: list[Node] = []
        for stmt in stmts:
            for node_or_none, flow in self.statement(stmt, scope, flow):
                if node_or_none is not None:
                    items.append(node_or_none)
        return items, flow

    def statement(self, stmt: ast.Stmt, scope: _Scope, flow: _Flow):
        """Yields (node, flow after it) for each node the statement produces. A rule that
        would decide on a symbolic size other than by a requirement stops here (E414)."""
        try:
            yield from self._bounded_statement(stmt, scope, flow)
        except symbolic.SymbolicBranch as err:
            self.error("E414", f"archgen cannot state the valid input sizes here: {err}",
                       stmt.span, notes=["symbolic sizes are followed through the layers' "
                                         "shape rules, never by trying sizes one by one"],
                       helps=["give concrete sizes: `archgen check --input 3,224,224 FILE`, "
                              "or numbers in the input line"])
            yield None, _Flow(None, flow.rf, "a symbolic size")

    def _bounded_statement(self, stmt: ast.Stmt, scope: _Scope, flow: _Flow):
        """Work is bounded: every statement visited counts toward MAX_EXPANDED, and compound
        statements and block instances nest at most MAX_NESTING deep after expansion."""
        if isinstance(stmt, ast.Call) and stmt.func not in self.spec.blocks:
            reused = self._reuse(stmt, scope, flow)
            if reused is not None:
                yield reused
                return
            self._visit(stmt.span, 1 + len(stmt.args))
            yield from self._statement(stmt, scope, flow)
            return
        self._visit(stmt.span, 1 + len(stmt.args) if isinstance(stmt, ast.Call) else 1)
        if self.nesting >= MAX_NESTING:
            self.error("E305", f"the expanded network nests deeper than {MAX_NESTING} levels "
                       f"here (blocks, groups, merges, repeats and ifs all count), archgen's "
                       f"limit", stmt.span,
                       helps=["flatten the structure: a repeat stacks copies without nesting "
                              "them"])
            yield None, _Flow(None, flow.rf, "a statement nested too deeply")
            return
        self.nesting += 1
        try:
            yield from self._statement(stmt, scope, flow)
        finally:
            self.nesting -= 1

    def _reuse(self, call: ast.Call, scope: _Scope, flow: _Flow):
        """(node, flow) for a layer call identical to an earlier clean one that said nothing
        (same kind, same written arguments, same input shape): binding, coercion, argument
        checks, shape, counts and warnings depend on nothing else, and repeats and flat specs
        make the same call thousands of times. Only the receptive field (it depends on the
        layers before) and the node are made again. It costs no step of MAX_EXPANDED (it
        computes no value), only a layer of MAX_LAYERS. None: check the call in full."""
        kind = REGISTRY.get(call.func)
        if kind is None or self.symbolic or hasattr(call, "overrides"):
            return None
        key = _call_key(call, kind, scope, flow.shape)
        hit = self._layer_cache.get(key) if key is not None else None
        if hit is None or (call.name is not None and check_name(call.name, kind="layer")):
            return None
        self._count_layer(call)
        args, y, params, macs = hit
        args = dict(args)
        x = flow.shape
        rf = _capped(kind.receptive_field(args, flow.rf, x, y))
        node = Layer(call.span, x, y, rf, params, macs, name=call.name, kind=kind, args=args)
        return node, _Flow(y, rf, f"{kind.name} at line {call.span.line}")

    def _count_layer(self, call: ast.Call) -> None:
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise _TooLarge(call.span, Diagnostic(
                "error", "E305", f"checking stops here: the expanded network has more than "
                f"{MAX_LAYERS:,} layers, archgen's limit", call.span,
                helps=["lower the repeat counts; no real CNN comes near this"]))

    def _visit(self, span: Span, steps: int = 1) -> None:
        """Counts steps of the expansion: statements, arguments and values computed."""
        self.expanded += steps
        if self.expanded > MAX_EXPANDED:
            raise _TooLarge(span)

    def _min_size(self, stmts: list[ast.Stmt], depth: int = 0) -> int:
        """A lower bound on the calls that expanding `stmts` visits, computed without expanding
        them (repeat counts that are not written as numbers count as 0), so that a repeat can be
        refused before it runs. Linear in the AST: results are kept per node and per block."""
        total = 0
        for stmt in stmts:
            key = id(stmt)
            if key not in self._min_sizes:  # the node is kept too, so that its id stays unique
                self._min_sizes[key] = (stmt, self._min_size_of(stmt, depth))
            total += self._min_sizes[key][1]
            if total > MAX_EXPANDED:
                return MAX_EXPANDED + 1
        return total

    def _min_size_of(self, stmt: ast.Stmt, depth: int) -> int:
        if depth > MAX_NESTING:  # deeper is refused anyway; 1 is still a lower bound
            return 1
        if isinstance(stmt, ast.Call):
            block = self.spec.blocks.get(stmt.func)
            if block is None:
                return 1
            key = id(block)
            if key not in self._min_sizes:
                self._min_sizes[key] = (block, 1)  # a block that uses itself (E205) counts 1
                self._min_sizes[key] = (block, 1 + self._min_size(block.body, depth + 1))
            return self._min_sizes[key][1]
        if isinstance(stmt, ast.Group):
            return self._min_size(stmt.body, depth + 1)
        if isinstance(stmt, ast.Merge):
            return self._min_size(stmt.branches, depth + 1)
        if isinstance(stmt, ast.Repeat):
            count = stmt.count.value if isinstance(stmt.count, ast.Num) else 0
            count = count if _is_int(count) and count > 0 else 0
            return min(count * self._min_size(stmt.body, depth + 1), MAX_EXPANDED + 1)
        if isinstance(stmt, ast.If):  # the smallest clause; an elif chain without recursion
            smallest = None
            while True:
                body = self._min_size(stmt.body, depth + 1)
                smallest = body if smallest is None else min(smallest, body)
                if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If):
                    stmt = stmt.orelse[0]
                    continue
                return min(smallest, self._min_size(stmt.orelse, depth + 1))
        raise AssertionError(type(stmt))

    def _statement(self, stmt: ast.Stmt, scope: _Scope, flow: _Flow):
        if isinstance(stmt, ast.Call):
            yield self.call(stmt, scope, flow)
        elif isinstance(stmt, ast.Group):
            self._check_group_name(stmt)
            items, out = self.sequence(stmt.body, scope, flow)
            yield self._seq(items, flow, out, stmt.span, label=stmt.name or "branch",
                            module=stmt.name is not None, name=stmt.name), out
        elif isinstance(stmt, ast.Merge):
            yield self.merge(stmt, scope, flow)
        elif isinstance(stmt, ast.Repeat):  # each copy starts from the flow the last one left
            for _, copy in self._repeat_copies(stmt, scope):
                for node, flow in self.statement(copy, scope, flow):  # noqa: B020
                    yield node, flow
        elif isinstance(stmt, ast.If):
            for chosen in self._chosen(stmt, scope):
                for node, flow in self.statement(chosen, scope, flow):  # noqa: B020
                    yield node, flow
        else:
            raise AssertionError(type(stmt))

    def _check_group_name(self, stmt: ast.Group) -> None:
        problem = stmt.name and check_name(stmt.name, kind="layer")
        if problem:
            self.error("E204", f"name {stmt.name!r} {problem}", stmt.span,
                       helps=["use a lower-case identifier such as stem or layer1"])

    def _chosen(self, stmt: ast.If, scope: _Scope) -> list[ast.Stmt]:
        """The clause an if chooses. An elif chain (an If alone in the orelse of the one
        before) is followed in a loop, each condition counting toward MAX_EXPANDED."""
        while True:
            cond = self.eval(stmt.cond, scope)
            if cond is None:
                return []
            if not isinstance(cond.value, bool):
                self.error("E300", f"a condition must be true or false, received "
                           f"{describe(cond.value)}", stmt.cond.span,
                           helps=["compare explicitly, e.g. if stride == 1:"])
                return []
            if cond.value:
                return stmt.body
            if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], ast.If):
                stmt = stmt.orelse[0]
                self._visit(stmt.span)
                continue
            return stmt.orelse

    def _repeat_copies(self, stmt: ast.Repeat, scope: _Scope):
        count = self.eval(stmt.count, scope)
        if count is None:
            return
        n = count.value
        if not _is_int(n) or n < 0:
            self.error("E300", f"repeat needs a count >= 0, received {describe(n)}",
                       stmt.count.span)
            return
        if not stmt.body:  # only after a syntax error; nothing would count the copies
            return
        per_copy = self._min_size(stmt.body) if n else 0
        # each call costs a step (a block call, a layer call checked in full) or a layer (a
        # reused one) or both, so this many calls cannot fit: refused before expanding anything
        if self.expanded + self.layers + n * per_copy > MAX_EXPANDED + MAX_LAYERS:
            raise _TooLarge(stmt.count.span, Diagnostic(
                "error", "E305", f"repeat {n:,} would take checking past archgen's limits of "
                f"{MAX_LAYERS:,} layers and {MAX_EXPANDED:,} steps (statements, arguments and "
                f"values): each copy holds at least {per_copy:,} layer or block "
                f"call{'s' * (per_copy != 1)}",
                stmt.count.span, helps=["no real CNN comes near this; check the count"]))
        if stmt.first and not (len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Call)):
            self.error("E300", "first(...) overrides the arguments of a single call; this "
                       "repeat has a body of several statements", stmt.span,
                       helps=["write repeat 3 first(stride=2): block(64)"])
            return
        for i in range(n):  # each copy is counted as its statements are checked
            for s in stmt.body:
                if i == 0 and stmt.first:
                    s = ast.Call(s.span, s.func, s.args + [
                        ast.Arg(a.name, a.value, a.span, a.name_span) for a in stmt.first],
                        s.name, s.func_span, s.name_span)
                    s.overrides = {a.name for a in stmt.first}
                yield i, s

    # -- merges --------------------------------------------------------------------------------
    def merge(self, stmt: ast.Merge, scope: _Scope, flow: _Flow):
        branches: list[Seq] = []
        spans: list[Span] = []
        for s in self._branch_stmts(stmt.branches, scope):
            if isinstance(s, ast.Group):
                self._check_group_name(s)
                items, out = self.sequence(s.body, scope, flow)
                seq = self._seq(items, flow, out, s.span, label=s.name or "branch",
                                module=s.name is not None, name=s.name)
            else:
                items, out = self.sequence([s], scope, flow)
                seq = self._seq(items, flow, out, s.span, label="branch")
            branches.append(seq)
            spans.append(s.span)
        if len(branches) < 2:  # one branch would merge a tensor with nothing: not a merge
            self.error("E409", f"{stmt.mode}: has "
                       f"{'only one branch' if branches else 'no branches'}; it needs at "
                       f"least two", stmt.span,
                       helps=["add at least two branches; identity() is the shortcut branch"]
                       if stmt.mode == "add" else
                       ["add at least two branches, or drop the concat: around a single one"])
            return None, _Flow(None, flow.rf, stmt.mode)
        if any(b.out_shape is None for b in branches) or not flow.known:
            return None, _Flow(None, flow.rf, stmt.mode)
        shapes = [b.out_shape for b in branches]
        produced = [f"branch {i + 1} (line {sp.line}) gives {list(sh)}"
                    for i, (sh, sp) in enumerate(zip(shapes, spans))]
        symbolic.at(stmt.span, f"{stmt.mode} at line {stmt.span.line} (its branches give "
                    f"{' and '.join(str(list(sh)) for sh in shapes)})")
        if stmt.mode == "add":
            out_shape = shapes[0]
            bad = [i for i, sh in enumerate(shapes) if not _same(sh, shapes[0])]
            if bad:
                i = bad[0]
                self.error("E406", f"add needs the same shape on every branch, but branch "
                           f"{i + 1} gives {list(shapes[i])} and branch 1 gives "
                           f"{list(shapes[0])}", spans[i], notes=produced,
                           helps=[_add_fix(shapes[0], shapes[i])])
                return None, _Flow(None, flow.rf, "add")
        else:
            ranks = {len(sh) for sh in shapes}
            bad = [i for i, sh in enumerate(shapes)
                   if len(sh) != len(shapes[0]) or not _same(sh[1:], shapes[0][1:])]
            if bad or ranks - {1, 3}:
                i = bad[0] if bad else 0
                self.error("E407", f"concat joins along channels and needs the same spatial "
                           f"size on every branch, but branch {i + 1} gives {list(shapes[i])} "
                           f"and branch 1 gives {list(shapes[0])}", spans[i], notes=produced,
                           helps=["pad, pool or stride the branches so that height and width "
                                  "agree"])
                return None, _Flow(None, flow.rf, "concat")
            out_shape = (sum(sh[0] for sh in shapes), *shapes[0][1:])
        if len(branches) > 1:
            for branch in branches:
                self._check_inplace_on_shared_input(branch, stmt.mode)
        try:
            _within_element_limits(0, out_shape)
        except LayerError as err:
            self.error(err.code, f"{stmt.mode}: {err.message}", stmt.span, helps=err.helps)
            return None, _Flow(None, flow.rf, stmt.mode)
        rf = _capped(RF.union([b.rf for b in branches]))
        node = Merge(stmt.span, flow.shape, out_shape, rf,
                     params=sum(b.params for b in branches), macs=sum(b.macs for b in branches),
                     mode=stmt.mode, branches=branches)
        return node, _Flow(out_shape, rf, f"{stmt.mode} at line {stmt.span.line}")

    def _check_inplace_on_shared_input(self, branch: Seq, mode: str) -> None:
        """An in-place layer that reads the merge's input overwrites what the other branches
        read (identity, flatten and dropout in eval mode pass the same tensor on)."""
        for layer in _leading_layers(branch):
            if layer.args.get("inplace"):
                self.error("E410", f"{layer.op}(inplace=true) overwrites the input that the "
                           f"other branches of this {mode} also read", layer.span,
                           helps=["drop inplace=true here (it is safe after a conv or "
                                  "another layer that makes a new tensor)"])
                return
            if layer.op not in _ALIASING:
                return

    def _branch_stmts(self, stmts: list[ast.Stmt], scope: _Scope):
        """The branches of a merge, each copy of a repeat one branch; yielded one at a time
        (and each counted when it is checked), so that a huge count is stopped by the
        expansion limit instead of first filling memory."""
        for s in stmts:
            if isinstance(s, ast.If):
                self._visit(s.span)
                yield from self._branch_stmts(self._chosen(s, scope), scope)
            elif isinstance(s, ast.Repeat):
                self._visit(s.span)
                body: list[ast.Stmt] = []
                last = None
                for i, copy in self._repeat_copies(s, scope):
                    if i != last and body:
                        yield body[0] if len(body) == 1 else ast.Group(s.span, None, body)
                        body = []
                    last = i
                    body.append(copy)
                if body:
                    yield body[0] if len(body) == 1 else ast.Group(s.span, None, body)
            else:
                yield s

    # -- calls ---------------------------------------------------------------------------------
    def call(self, call: ast.Call, scope: _Scope, flow: _Flow) -> tuple[Node | None, _Flow]:
        if call.name is not None:
            problem = check_name(call.name, kind="layer")
            if problem:
                self.error("E204", f"layer name {call.name!r} {problem}", call.name_span,
                           helps=["use a lower-case identifier such as conv1"])
        if call.func in self.spec.blocks:
            return self.block(call, scope, flow)
        kind = REGISTRY.get(call.func)
        if kind is None:
            hint = layer_hint(call.func, list(REGISTRY) + list(self.spec.blocks))
            self.error("E200", f"unknown layer or block '{call.func}'", call.func_span,
                       helps=[hint or f"known layers: {', '.join(sorted(REGISTRY))}"])
            return None, _Flow(None, flow.rf, call.func)
        return self.layer(call, kind, scope, flow)

    def bind(self, call: ast.Call, names: list[str], allowed: list[str], scope: _Scope,
             what: str) -> dict[str, _Value] | None:
        """Positional and keyword arguments -> {name: value}; reports and returns None on error."""
        bound, failed, lost = self._bind(call.args, names, allowed, scope, what,
                                         getattr(call, "overrides", set()))
        return None if failed or lost else bound

    def _bind(self, args: list[ast.Arg], names: list[str], allowed: list[str], scope: _Scope,
              what: str, overrides=(), kind: LayerKind | None = None
              ) -> tuple[dict[str, _Value], set[str], bool]:
        """Binds every argument it can and reports the others. Returns the bound values, the
        names whose value failed, and whether some argument could not be placed at all (an
        unknown keyword, a positional too many)."""
        bound: dict[str, _Value] = {}
        failed: set[str] = set()
        lost = False
        positional = 0
        extra = [a for a in args if a.name is None][len(names):]
        if extra:
            lost = True
            self._too_many_positional(args, names, extra, what, kind)
        for arg in args:
            if arg.name is None:
                if positional >= len(names):
                    continue
                key = names[positional]
                positional += 1
                if key in bound:  # a keyword before it already gave it: f(p=0.5, 0.3)
                    self.error("E300", f"argument '{key}' given twice (by name, then by "
                               f"position)", arg.span,
                               helps=["write positional arguments before the named ones"])
                    continue
            else:
                key = arg.name
                if key not in allowed:
                    self.error("E201", f"{what} has no argument '{key}'", arg.name_span,
                               helps=[argument_hint(key, allowed) or
                                      f"its arguments are: {', '.join(allowed) or 'none'}"])
                    lost = True
                    continue
                if key in bound and key not in overrides:
                    self.error("E300", f"argument '{key}' given twice", arg.span)
                    continue
            value = self.eval(arg.value, scope)
            if value is None:
                failed.add(key)
                continue
            value.arg_span = arg.span
            bound[key] = value
        return bound, failed, lost

    def _too_many_positional(self, args: list[ast.Arg], names: list[str], extra: list[ast.Arg],
                             what: str, kind: LayerKind | None) -> None:
        """E307 for a layer (the extra values belong to keyword-only arguments: name them), E300
        for a block."""
        takes = (f"{what} takes {len(names) or 'no'} positional argument"
                 f"{'s' if len(names) != 1 else ''}" + (f" ({', '.join(names)})" if names else ""))
        if kind is None:
            self.error("E300", f"{takes}, received more", extra[0].span,
                       helps=[f"the positional order is: {', '.join(names)}" if names
                              else "it takes no positional arguments"])
            return
        rest = [p.name for p in kind.keyword_only]
        given = {a.name for a in args if a.name}
        free = [n for n in rest if n not in given]
        parts, named = [], []
        extra_ids = {id(a) for a in extra}  # a set: `a in extra` made 10,000 extras quadratic
        for a in args:
            if a.name is None and id(a) in extra_ids:
                if len(named) < len(free):
                    named.append(free[len(named)])
                    parts.append(f"{named[-1]}={_text(a.value)}")
                else:
                    parts.append(_text(a.value))
            elif a.name is None or a.name != (kind.inferred.name if kind.inferred else None):
                parts.append(_arg_text(a))
        if kind.name == "upsample":
            helps = ["name it: upsample(scale_factor=2) doubles the map, upsample(size=(64, 64)) "
                     "sets its size (PyTorch's first positional argument is size)"]
        elif named:
            helps = [f"{', '.join(named)} {'is' if len(named) == 1 else 'are'} keyword-only "
                     f"in archgen: write {kind.name}({', '.join(parts)})"]
        else:
            helps = [f"the signature is {kind.signature()}"]
        self.error("E307", f"{takes}, received {len(names) + len(extra)}", extra[0].span,
                   notes=["only the arguments that define the shape may be positional; the "
                          "others are named, so that a value never lands on another argument"],
                   helps=helps)

    def _peek(self, e: ast.Expr, scope: _Scope) -> Any:
        """An expression's value without reporting anything (None when it has an error)."""
        try:
            return self._eval(e, scope)
        except (_EvalError, _Unknown):
            return None

    def _pytorch_reading(self, call: ast.Call, kind: LayerKind, scope: _Scope,
                         flow: _Flow) -> list[ast.Arg] | None:
        """PyTorch's signatures start with the argument archgen infers (in_channels,
        in_features, num_features). When a call can be read that way, decide which meaning it
        has, never silently another one:

        - only PyTorch's reading fits the arguments (linear(4096, 10), batchnorm2d(64),
          conv2d(3, 32, kernel_size=3)): the leading value is in_channels; accepted when it
          equals the inferred value, else E306;
        - both readings fit (conv2d(3, 32, 3): out_channels=3, kernel_size=32, stride=3 in
          archgen's): E306 when the leading value equals the inferred one (the call is
          ambiguous), archgen's reading otherwise (PyTorch's would contradict the input);
        - the input is unknown (after an error): the archgen reading when it fits, else the
          PyTorch one, without a word.

        Returns the arguments to bind, the leading one turned into `in_channels=` or dropped;
        None after an ambiguous call (E306), whose arguments are not checked further.
        """
        inferred = kind.inferred
        pos = [a for a in call.args if a.name is None]
        overrides = getattr(call, "overrides", set())  # repeat's first(...) may re-give one
        given_names = {a.name for a in call.args if a.name and a.name not in overrides}
        if inferred is None or not pos or inferred.name in given_names:
            return call.args
        names = list(kind.positional_args)
        required = {p.name for p in kind.params if p.default is REQUIRED and not p.inferred}

        def fits(slots: list[str]) -> bool:
            taken = set(slots[:len(pos)])
            return len(pos) <= len(slots) and not taken & given_names and \
                required <= taken | given_names

        ours, theirs = fits(names), fits([inferred.name] + names)
        first = pos[0]
        value = self._peek(first.value, scope)
        x = flow.shape
        actual = x[0] if x is not None and (kind.rank is None or len(x) == kind.rank) else None
        as_keyword = [ast.Arg(inferred.name, first.value, first.span, first.span)] + \
            [a for a in call.args if a is not first]
        if isinstance(actual, symbolic.Sym):  # in_features over symbolic sizes: the reading
            # that fits; PyTorch's then requires the sizes to give that many (check_inferred)
            return call.args if ours or not theirs else as_keyword
        if not theirs:
            # too many positionals either way: a matching leading value is still in_channels
            # (batchnorm2d(64, 1e-3)), so that E307 names the right keyword-only arguments
            if not ours and len(pos) > len(names) and actual is not None and value == actual:
                return as_keyword
            return call.args
        if actual is None or value is None:
            return call.args if ours else [a for a in call.args if a is not first]
        if value == actual and not ours:
            return as_keyword
        if value != actual and ours:
            return call.args
        rest = [a for a in call.args if a is not first]
        torch_names = [inferred.name] + names[:len(pos) - 1]
        text = ", ".join(_arg_text(a) for a in call.args)
        helps = []
        if ours:
            ours_text = [_arg_text(a) for a in pos[:2]] + [
                f"{names[i]}={_text(a.value)}" for i, a in enumerate(pos) if i >= 2] + [
                _arg_text(a) for a in call.args if a.name]
            helps.append(f"if {_text(first.value)} is meant as {names[0]}, name the arguments "
                         f"after the second: {kind.name}({', '.join(ours_text)})")
        self.error("E306", f"{kind.name}({text}) reads like PyTorch's ({', '.join(torch_names)}); "
                   f"archgen infers {inferred.name} ({actual} here): write "
                   f"{kind.name}({', '.join(_arg_text(a) for a in rest)})", first.span,
                   notes=[f"archgen's positional arguments are ({', '.join(names)})"
                          if names else f"{kind.name} takes no positional arguments in archgen"],
                   helps=helps)
        # ambiguous: neither reading is safe to go on with (each could report what the
        # other would not); a mismatch: the rest is what the PyTorch reading meant
        return None if ours else rest

    def layer(self, call: ast.Call, kind: LayerKind, scope: _Scope, flow: _Flow):
        """Checks one layer call (counted toward MAX_LAYERS) and keeps a clean outcome for
        Checker._reuse."""
        self._count_layer(call)
        key = None if self.symbolic or hasattr(call, "overrides") else \
            _call_key(call, kind, scope, flow.shape)
        said = len(self.diags)
        node, out = self._layer(call, kind, scope, flow)
        if key is not None and node is not None and len(self.diags) == said and \
                out.origin == f"{kind.name} at line {call.span.line}":  # Checker._reuse
            self._layer_cache[key] = (dict(node.args), node.out_shape, node.params, node.macs)
        return node, out

    def _layer(self, call: ast.Call, kind: LayerKind, scope: _Scope, flow: _Flow):
        """Binds and checks one layer call. Every problem is reported, and checking goes on
        with the best-known shape: an argument that does not affect the shape (groups, bias,
        p) may be wrong and the output is still computed; the shape is unknown (None) only
        when an argument it depends on is wrong or the output would be empty."""
        unknown = None, _Flow(None, flow.rf, kind.name)
        schema = {p.name: p for p in kind.params}
        call_args = self._pytorch_reading(call, kind, scope, flow)
        if call_args is None:
            return unknown
        bound, failed, lost = self._bind(call_args, [p.name for p in kind.positional],
                                         list(schema), scope, f"{kind.name}()",
                                         getattr(call, "overrides", set()), kind)
        args: dict[str, Any] = {}
        spans = {name: v.arg_span or v.span for name, v in bound.items()}
        for p in kind.params:
            if p.name in bound:
                v = bound[p.name]
                if symbolic.is_symbolic(v.value):
                    raise symbolic.SymbolicBranch(
                        f"{kind.name}'s {p.name} would be {symbolic.to_json(v.value)}, which "
                        f"depends on the input size; a layer's arguments must be numbers")
                try:
                    args[p.name] = _within_limits(p, coerce(p, v.value))  # E304
                    continue
                except LayerError as err:
                    failed.add(p.name)
                    if isinstance(v.value, _Word) and p.type not in ("enum", "padding"):
                        word = v.value
                        self.error("E202", f"'{word}' is not defined", word.span,
                                   helps=[did_you_mean(word, word.names) or
                                          f"{p.name} expects a value; the names defined there "
                                          f"are: {', '.join(sorted(word.names)) or 'none'}"])
                    else:
                        self.error(err.code, f"{kind.name}: {err.message}", v.span,
                                   err.notes, err.helps)
            elif p.default is REQUIRED and p.name not in failed:
                failed.add(p.name)
                if not lost:  # an unplaced argument was probably meant as this one
                    self.error("E300", f"{kind.name}() is missing its argument '{p.name}'",
                               call.span, helps=[f"the signature is {kind.signature()}"])
            if p.default is not REQUIRED:
                args[p.name] = p.default  # the best guess for a failed optional argument
        # the shape is unknown when what it depends on failed; other failures only cost the
        # checks between arguments (they may need the failed value)
        shape_failed = (lost and bool(kind.shape_args)) or any(
            n in kind.shape_args or schema[n].default is REQUIRED for n in failed)
        x = flow.shape

        def report(err: LayerError, severity: str = "error") -> None:
            span = spans.get(err.arg, call.span)
            notes = list(err.notes)
            if err.code in ("E400", "E401", "E402", "E403", "E404") and x is not None:
                notes.append(f"the input {list(x)} comes from {flow.origin}")
            (self.error if severity == "error" else self.warn)(
                err.code, f"{kind.name}: {err.message}", span, notes, err.helps)

        clean = not failed and not lost
        if not lost and not any(schema[n].default is REQUIRED for n in failed):
            try:
                kind.check_args(args)  # whatever the input: it may be unknown
            except LayerError as err:
                report(err)
                clean = False
                shape_failed |= err.arg is None or err.arg in kind.shape_args
        if shape_failed or x is None:
            return unknown
        if kind.rank is not None and len(x) != kind.rank:
            self._rank_error(kind, call, x, flow)
            return unknown
        symbolic.at(call.span, f"{kind.name} at line {call.span.line}")
        mismatch = check_inferred(kind, args, x)
        if mismatch:  # a wrong in_channels: report, then go on with the real one
            report(mismatch)
        try:
            kind.normalise(args, x)
            y = kind.output_shape(args, x)
            _within_element_limits(0, y)  # E411
        except LayerError as err:
            report(err)
            return unknown
        problems = kind.check_input(args, x) if clean else []
        for err in problems:
            report(err)
        sym = self.symbolic and (symbolic.is_symbolic(x) or symbolic.is_symbolic(y))
        # a symbolic network's fields are those of its sample (Checker._solve_sizes)
        rf = flow.rf if sym else _capped(kind.receptive_field(args, flow.rf, x, y))
        origin = f"{kind.name} at line {call.span.line}"
        if kind.name == "flatten" and len(y) == 1 and len(x) > 1:
            origin = f"flatten() at line {call.span.line}: {'*'.join(map(str, x))} = {y[0]}"
        if not clean or problems or mismatch:  # reported: no node, but the shape goes on
            return None, _Flow(y, rf, origin)
        for w in [] if sym else kind.warnings(args, x, y):  # symbolic: _size_warnings
            report(LayerError(w.code, w.message, arg=w.arg, notes=w.notes, helps=w.helps),
                   "warning")
        params = kind.param_count(args)
        try:
            _within_element_limits(params, y)  # E412
        except LayerError as err:
            report(err)
            return None, _Flow(y, rf, origin)
        node = Layer(call.span, x, y, rf, params, kind.macs(args, x, y),
                     name=call.name, kind=kind, args=args)
        return node, _Flow(y, rf, origin)

    def _rank_error(self, kind: LayerKind, call: ast.Call, x: Shape, flow: _Flow) -> None:
        if kind.rank == 1:
            self.error("E405", f"{kind.name} expects flat features but receives the feature "
                       f"map {list(x)}", call.span,
                       notes=[f"the input comes from {flow.origin}"],
                       helps=[f"add flatten() before it (it would give "
                              f"{'*'.join(map(str, x))} = {_prod(x)} features)"])
        else:
            self.error("E405", f"{kind.name} expects a feature map [C, H, W] but receives "
                       f"{list(x)}", call.span,
                       notes=[f"the input comes from {flow.origin}"],
                       helps=["move it before flatten(), or use a layer for flat features "
                              "(linear, dropout)"])

    def block(self, call: ast.Call, scope: _Scope, flow: _Flow):
        block = self.spec.blocks[call.func]
        label = f"{block.name}({', '.join(_arg_text(a) for a in call.args)})"
        if block.name in scope.stack:
            self.error("E205", f"block '{block.name}' uses itself", call.span,
                       notes=[" -> ".join(scope.stack + [block.name])],
                       helps=["a block cannot contain itself; use repeat for stacks"])
            return None, _Flow(None, flow.rf, block.name)
        if len(scope.stack) >= MAX_DEPTH:
            self.error("E205", f"blocks nest deeper than {MAX_DEPTH}", call.span)
            return None, _Flow(None, flow.rf, block.name)
        names = [p.name for p in block.params]
        bound, failed, lost = self._bind(call.args, names, names, scope,
                                         f"block {block.name}()",
                                         getattr(call, "overrides", set()))
        # A wrong argument does not stop the body's own checks: what it would have given is
        # unknown there, and whatever depends on it is skipped without a cascade.
        env: dict[str, Any] = _builtins(flow.shape)
        inner = _Scope(env, scope.stack + [block.name])
        missing = []
        for p in block.params:
            if p.name in bound:
                env[p.name] = bound[p.name].value
            elif p.name in failed or lost:
                env[p.name] = _UNKNOWN
            elif p.default is not None:
                v = self.eval(p.default, inner)
                env[p.name] = _UNKNOWN if v is None else v.value
            else:
                missing.append(p.name)
                env[p.name] = _UNKNOWN
        if missing:  # one diagnostic naming them all, not one per name with every name in it
            listed = ", ".join(f"'{m}'" for m in missing)
            self.error("E300", f"block {block.name}() is missing its argument"
                       f"{'s' * (len(missing) > 1)} {listed}", call.span,
                       helps=[f"it is defined at line {block.span.line} as "
                              f"{block.name}({', '.join(names)})"])
        items, out = self.sequence(block.body, inner, flow)
        seq = self._seq(items, flow, out, call.span, label=label, module=True, name=call.name,
                        block=block.name)
        seq.args = env  # what the PyTorch target passes to the block's class
        return seq, out

    def _seq(self, items: list[Node], flow_in: _Flow, flow_out: _Flow, span: Span, *, label: str,
             module: bool = False, name: str | None = None, block: str | None = None) -> Seq:
        return Seq(span, flow_in.shape, flow_out.shape, flow_out.rf,
                   params=sum(n.params for n in items), macs=sum(n.macs for n in items),
                   name=name, items=items, label=label, block=block, module=module)

    # -- symbolic sizes ------------------------------------------------------------------------
    def _solve_sizes(self, net: Network, requirements: list) -> None:
        """The valid sizes of each symbol (E413 when there are none), then a sample network at
        representative sizes for what is worked out per size: receptive fields and the
        warnings that do not depend on the size; W500 is stated per residue."""
        names = list(dict.fromkeys(str(v) for v in net.input_shape
                                   if isinstance(v, symbolic.Sym)))
        where = self.spec.input_span
        try:
            constraints = symbolic.solve(names, requirements)
        except symbolic.Unsatisfiable as err:
            self.error("E413", f"no input size is valid: {err.message}", err.span or where,
                       notes=["the input is [" + ", ".join(map(str, net.input_shape)) + "]"],
                       helps=["change the layers so that their sizes agree, or give the "
                              "input's size as a number to see the first error it meets"])
            return
        except symbolic.SymbolicBranch as err:
            self.error("E414", f"archgen cannot state the valid input sizes: {err}", where,
                       helps=["give concrete sizes: `archgen check --input 3,224,224 FILE`"])
            return
        net.constraints = constraints
        env = {name: c.sample() for name, c in constraints.items()}
        concrete = tuple(v.eval(env) if isinstance(v, symbolic.Sym) else v
                         for v in net.input_shape)
        sample = Checker(self.spec, concrete).run()
        bad = [d for d in sample.diagnostics if d.is_error]
        if bad:  # cannot happen if the requirements are complete; say so rather than hide it
            self.error("E414", f"archgen's symbolic check admits {concrete} but the concrete "
                       f"check refuses it ({bad[0].code}: {bad[0].message}); please report "
                       f"this", where)
            return
        net.sample = sample
        for mine, theirs in zip(walk(net.root), walk(sample.root)):
            mine.rf = theirs.rf
        self.diags += [d for d in sample.diagnostics if d.code not in _SIZE_WARNINGS]
        self._size_warnings(net, env)

    def _size_warnings(self, net: Network, env: dict) -> None:
        """W500 on a symbolic network: for each strided window and each axis, the residues of
        the symbol for which pixels go unread, found by the kind's own rule at one valid size
        per residue of the window's input size modulo its stride."""
        for layer in net.layers():
            a = layer.args
            if "stride" not in a or "kernel_size" not in a or not symbolic.is_symbolic(
                    layer.in_shape):
                continue
            parts, example = [], None
            for axis, word in ((0, "row"), (1, "column")):
                size = layer.in_shape[1 + axis]
                if not isinstance(size, symbolic.Sym) or len(size.symbols()) != 1 or \
                        a["stride"][axis] == 1:  # consecutive windows read every row
                    continue
                name = next(iter(size.symbols()))
                c = net.constraints[name]
                m = symbolic.period(size.poly) * a["stride"][axis]
                if m > 256:
                    continue
                m = math.lcm(m, c.modulus)
                firing, skips = [], False
                # one size per residue, large enough that the map holds many windows: what
                # happens there happens at every larger size of that residue
                start = c.min + m * (max(a["kernel_size"]) + 2)
                for r in range(m):
                    n = c.first(r, m, start)
                    if n is None:
                        continue
                    at = dict(env, **{name: n})
                    ev = _at_sizes(at)
                    warns = [w for w in layer.kind.warnings(ev(a), ev(layer.in_shape),
                                                            ev(layer.out_shape))
                             if w.code == "W500" and word in w.message]
                    if warns:
                        firing.append(r)
                        skips = skips or " skips " in warns[0].message
                        example = example or (name, n, warns[0])
                if not firing:
                    continue
                valid = [r for r in range(m) if c.first(r, m) is not None]
                what = (f"{word}s between windows are skipped" if skips else
                        f"the last {word} is dropped" if last_only(layer, axis) else
                        f"the last {word}s are dropped")
                parts.append(f"{symbolic.residue_text(name, m, firing, valid)} {what}")
            if parts:
                name, n, w = example
                self.warn("W500", f"{layer.op}: {'; '.join(parts)}",
                          layer.span, [f"at {name} = {n}: {w.message}"] + w.notes, w.helps)

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


_ALIASING = {"identity", "flatten", "dropout", "dropout2d"}  # may return their input itself


def _leading_layers(node: Node):
    """The layers a sequence starts with, in order, looking into nested sequences."""
    if isinstance(node, Layer):
        yield node
    elif isinstance(node, Seq):
        for item in node.items:
            yield from _leading_layers(item)
            if not (isinstance(item, Layer) and item.op in _ALIASING):
                return


def _spatial_kernel(layer: Layer) -> bool:
    k = layer.args.get("kernel_size")
    return k is not None and tuple(k) != (1, 1)


def _call_key(call: ast.Call, kind: LayerKind, scope: _Scope, x: Shape | None) -> tuple | None:
    """What a layer call's outcome depends on when its arguments are numbers, strings, tuples
    of them, constants or names bound to plain numbers or strings: None (no reuse) otherwise.
    Each value carries its type (1, 1.0 and True are equal keys in a dict) and its written
    form (a name and a tuple count different steps)."""
    if x is None or type(x) is not tuple:
        return None
    env = scope.env
    parts: list = [kind.name, x]
    for a in call.args:
        item = _literal_key(a.value, env)
        if item is None:
            return None
        parts.append(a.name)
        parts.append(item)
    return tuple(parts)


_PLAIN = (int, float, str, bool, type(None))


def _literal_key(e: ast.Expr, env: dict) -> tuple | None:
    t = type(e)
    if t is ast.Num or t is ast.Str:
        v = e.value
        return ("n", type(v), v) if type(v) in _PLAIN else None
    if t is ast.Word:
        if e.name in env:
            v = env[e.name]
            return ("w", type(v), v) if type(v) in _PLAIN else None
        if e.name in _CONSTANTS:
            return ("c", e.name)
        return None
    if t is ast.TupleExpr:
        items = [_literal_key(i, env) for i in e.items]
        return None if None in items else ("t", *items)
    return None


def _within_limits(p, v: Any) -> Any:
    """A coerced layer argument, refused (E304) when an integer or a scale factor in it is
    beyond MAX_SIZE (floats such as eps or p may be anything finite)."""
    if p.type in ("float", "float_or_none"):
        return v
    for i in v if isinstance(v, tuple) else (v,):
        if isinstance(i, (int, float)) and not isinstance(i, bool) and abs(i) > MAX_SIZE:
            shown = f"{i:,}" if isinstance(i, int) else f"{i:g}"
            raise LayerError("E304", f"{p.name}={shown} is beyond {MAX_SIZE:,} (2**24), "
                             f"archgen's limit for a size, stride or count", arg=p.name,
                             helps=["no real CNN comes near this; check for a typo"])
    return v


def _within_element_limits(params: int, y: Shape) -> None:
    """One layer's weights (E412) and one output per sample (E411) at most MAX_ELEMENTS.
    Symbolic sizes are not bounded here: the sample network checks them at its sizes."""
    if symbolic.is_symbolic(y) or isinstance(params, symbolic.Sym):
        return
    elements = _prod(y)
    if elements > MAX_ELEMENTS:
        raise LayerError("E411", f"the output {list(y)} has {elements:,} elements per sample, "
                         f"beyond {MAX_ELEMENTS:,} (2**32, 16 GiB in float32), archgen's "
                         f"limit for one tensor",
                         helps=["no real CNN comes near this; check the sizes and scales"])
    if params > MAX_ELEMENTS:
        raise LayerError("E412", f"this layer has {params:,} weights, beyond {MAX_ELEMENTS:,} "
                         f"(2**32, 16 GiB in float32), archgen's limit for one layer",
                         helps=["no real CNN comes near this; check the channel counts"])


def _capped(rf: RF) -> RF:
    """The receptive field with every value within +-RF_CAP, so that no stack of strides or
    upsamplings ever reaches infinity (and inf - inf = NaN). A value at the cap means "at least
    this much"; the JSON report says so."""
    def cap(values):
        return tuple(v if -RF_CAP < v < RF_CAP else math.copysign(RF_CAP, v) for v in values)
    values = (*rf.size, *rf.jump, *rf.start)
    total = sum(values)  # NaN when some value is: then min and max cannot be trusted
    if not values or (total == total and -RF_CAP < min(values) and max(values) < RF_CAP):
        return rf  # nothing to cap (the usual case)
    return rf._replace(size=cap(rf.size), jump=cap(rf.jump), start=cap(rf.start))


class _TooLarge(Exception):
    """The expansion visited more than MAX_EXPANDED statements; `span` is where."""

    def __init__(self, span: Span, diagnostic: Diagnostic | None = None):
        super().__init__(span)
        self.span, self.diagnostic = span, diagnostic


class _Unknown(Exception):
    """An expression used a value that an earlier error left unknown."""


_UNKNOWN = object()  # the value of a name an earlier error left unknown


class _EvalError(Exception):
    def __init__(self, code: str, message: str, span: Span, helps=None):
        super().__init__(message)
        self.code, self.message, self.span, self.helps = code, message, span, helps or []


_CONSTANTS = {"true": True, "false": False, "none": None, "True": True, "False": False,
              "None": None}


def _builtins(shape: Shape | None) -> dict[str, Any]:
    if shape is None:  # unknown after an error: using them says nothing more
        return dict.fromkeys(("in_channels", "in_height", "in_width", "in_features"), _UNKNOWN)
    if len(shape) == 3:
        return {"in_channels": shape[0], "in_height": shape[1], "in_width": shape[2]}
    return {"in_features": shape[0]}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _prod(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _add_fix(a: Shape, b: Shape) -> str:
    if len(a) == 3 and len(b) == 3 and a[0] != b[0] and a[1:] == b[1:]:
        return (f"the channels differ ({a[0]} vs {b[0]}): project the shortcut with "
                f"conv2d({a[0]}, 1)")
    if len(a) == 3 and len(b) == 3 and a[1:] != b[1:]:
        return ("the spatial sizes differ: give the shortcut the same stride "
                "(conv2d(..., 1, stride=2)) or pad the main branch")
    return "make every branch produce the same shape"


def _camel(stem: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", stem)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return name if name[:1].isalpha() else ""


def _arg_text(a: ast.Arg) -> str:
    return f"{a.name}={_text(a.value)}" if a.name else _text(a.value)


def _text(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value)
    if isinstance(e, ast.Word):
        return e.name
    if isinstance(e, ast.Str):
        return repr(e.value)
    if isinstance(e, ast.TupleExpr):
        return "(" + ", ".join(_text(i) for i in e.items) + ")"
    if isinstance(e, ast.UnaryOp):
        return f"{e.op}{' ' if e.op == 'not' else ''}{_text(e.operand)}"
    if isinstance(e, ast.BinOp):
        return f"{_text(e.left)} {e.op} {_text(e.right)}"
    return "?"


# warnings that depend on the input size: a symbolic network states W500 per residue and
# leaves the others to a check at concrete sizes
_SIZE_WARNINGS = {"W500", "W501", "W503", "W504", "W505"}


def last_only(layer: Layer, axis: int) -> bool:
    """A window that drops what is left over drops at most stride - 1 rows: one for stride 2."""
    return layer.args["stride"][axis] == 2


def _at_sizes(env: dict):
    """A function that evaluates symbolic sizes (in shapes and arguments) at `env`."""
    def ev(v):
        if isinstance(v, symbolic.Sym):
            return v.eval(env)
        if isinstance(v, tuple):
            return tuple(ev(i) for i in v)
        if isinstance(v, dict):
            return {k: ev(i) for k, i in v.items()}
        return v
    return ev


def _same(a: Shape, b: Shape) -> bool:
    """Equal shapes; sizes that are symbolic must then be equal (a requirement)."""
    return len(a) == len(b) and all(symbolic.holds(x == y) for x, y in zip(a, b))


def _is_symbol(e: ast.Expr) -> bool:
    """A bare name in the input line that is not a constant: a symbolic size."""
    return isinstance(e, ast.Word) and e.name not in _CONSTANTS


def check(spec: ast.Spec, input_shape: tuple | None = None) -> Network:
    """The checked network; `input_shape` (ints, and names for symbolic sizes) replaces the
    spec's input line, as `--input` does."""
    return Checker(spec, input_shape).run()


__all__ = ["Checker", "check"]
