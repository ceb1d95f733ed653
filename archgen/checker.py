"""AST -> resolved model: expands blocks, repeats and ifs, binds arguments to the layer kinds'
schemas, infers every shape and collects every independent error in one run.

After an error the shape is unknown (None) and the layers after it are still looked up and
bound, so misspelt layers and arguments further down are reported too, without a cascade of
shape errors that the first one caused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from . import syntax as ast
from .diagnostics import Diagnostic, Span, did_you_mean
from .ir import Layer, Merge, Network, Node, Seq
from .layers import REGISTRY
from .layers.base import REQUIRED, RF, LayerError, LayerKind, Shape, coerce, describe
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
    def __init__(self, spec: ast.Spec):
        self.spec = spec
        self.file = spec.file
        self.diags: list[Diagnostic] = list(spec.diagnostics)

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
        flow = _Flow(shape, RF.identity(), "the input")
        scope = _Scope({})
        if shape is not None:
            scope.env.update(_builtins(shape))
        start = Span(self.file, 1, 1, 2)
        items, out = self.sequence(spec.body, scope, flow)
        root = self._seq(items, flow, out, start, label=name, module=True)
        if not items and not any(d.is_error for d in self.diags):
            self.error("E408", "the spec has no layers", spec.input_span or start,
                       helps=["add layers after the input line, e.g. conv2d(16, 3)"])
        net = Network(name, self.file, spec.source, shape or (), root, self.diags)
        if not any(d.is_error for d in self.diags):
            for problem in assign_paths(net):
                self.error("E203", problem.message, problem.span, problem.notes, problem.helps)
            self._design_warnings(net)
        self.diags = _dedupe(self.diags)
        net.diagnostics = self.diags
        return net

    def _input_shape(self) -> Shape | None:
        spec = self.spec
        if spec.input_shape is None:
            if not any(d.code == "E100" for d in self.diags):
                self.error("E408", "the spec has no input line", Span(self.file, 1, 1, 2),
                           helps=["start with the input size, batch excluded: "
                                  "input [3, 32, 32]"])
            return None
        scope = _Scope({})
        dims = [self.eval(e, scope) for e in spec.input_shape]
        if any(d is None for d in dims):
            return None
        values = [d.value for d in dims]
        if len(values) not in (1, 3) or not all(_is_int(v) and v > 0 for v in values):
            self.error("E300", f"input must be [channels, height, width] or [features] in "
                       f"positive integers; received {values}", spec.input_span,
                       helps=["write input [3, 32, 32] for an RGB 32x32 image"])
            return None
        return tuple(values)

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, e: ast.Expr, scope: _Scope) -> _Value | None:
        """Evaluate an expression; None after reporting an error."""
        try:
            return _Value(self._eval(e, scope), e.span)
        except _EvalError as err:
            self.error(err.code, err.message, err.span, helps=err.helps)
            return None

    def _eval(self, e: ast.Expr, scope: _Scope) -> Any:
        value = self._eval_any(e, scope)
        if isinstance(value, float) and not math.isfinite(value):
            raise _EvalError("E302", f"{_text(e)} is not a finite number", e.span)
        return value

    def _eval_any(self, e: ast.Expr, scope: _Scope) -> Any:
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Str):
            return e.value
        if isinstance(e, ast.Word):
            if e.name in scope.env:
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
                q = left / right
                if _is_int(left) and _is_int(right):
                    if left % right:
                        raise _EvalError(
                            "E302", f"{left} / {right} is not a whole number", e.span,
                            [f"use // for integer division ({left} // {right} = "
                             f"{left // right})"])
                    return left // right
                return q
            return {"+": lambda: left + right, "-": lambda: left - right,
                    "*": lambda: left * right, "//": lambda: left // right,
                    "%": lambda: left % right}[e.op]()
        raise AssertionError(type(e))

    def _need_number(self, v: Any, e: ast.Expr, scope: _Scope) -> None:
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
        """Yields (node, flow after it) for each node the statement produces."""
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
        cond = self.eval(stmt.cond, scope)
        if cond is None:
            return []
        if not isinstance(cond.value, bool):
            self.error("E300", f"a condition must be true or false, received "
                       f"{describe(cond.value)}", stmt.cond.span,
                       helps=["compare explicitly, e.g. if stride == 1:"])
            return []
        return stmt.body if cond.value else stmt.orelse

    def _repeat_copies(self, stmt: ast.Repeat, scope: _Scope):
        count = self.eval(stmt.count, scope)
        if count is None:
            return
        n = count.value
        if not _is_int(n) or n < 0:
            self.error("E300", f"repeat needs a count >= 0, received {describe(n)}",
                       stmt.count.span)
            return
        if stmt.first and not (len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Call)):
            self.error("E300", "first(...) overrides the arguments of a single call; this "
                       "repeat has a body of several statements", stmt.span,
                       helps=["write repeat 3 first(stride=2): block(64)"])
            return
        for i in range(n):
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
        if not branches:
            self.error("E409", f"{stmt.mode}: has no branches", stmt.span,
                       helps=["add at least two branches; identity() is the shortcut branch"])
            return None, _Flow(None, flow.rf, stmt.mode)
        if any(b.out_shape is None for b in branches) or not flow.known:
            return None, _Flow(None, flow.rf, stmt.mode)
        shapes = [b.out_shape for b in branches]
        produced = [f"branch {i + 1} (line {sp.line}) gives {list(sh)}"
                    for i, (sh, sp) in enumerate(zip(shapes, spans))]
        if stmt.mode == "add":
            out_shape = shapes[0]
            bad = [i for i, sh in enumerate(shapes) if sh != shapes[0]]
            if bad:
                i = bad[0]
                self.error("E406", f"add needs the same shape on every branch, but branch "
                           f"{i + 1} gives {list(shapes[i])} and branch 1 gives "
                           f"{list(shapes[0])}", spans[i], notes=produced,
                           helps=[_add_fix(shapes[0], shapes[i])])
                return None, _Flow(None, flow.rf, "add")
        else:
            ranks = {len(sh) for sh in shapes}
            bad = [i for i, sh in enumerate(shapes) if sh[1:] != shapes[0][1:] or len(sh) != len(shapes[0])]
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
        rf = RF.union([b.rf for b in branches])
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
        for s in stmts:
            if isinstance(s, ast.If):
                yield from self._branch_stmts(self._chosen(s, scope), scope)
            elif isinstance(s, ast.Repeat):  # each copy of the body is one branch
                copies: dict[int, list[ast.Stmt]] = {}
                for i, copy in self._repeat_copies(s, scope):
                    copies.setdefault(i, []).append(copy)
                for body in copies.values():
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
            known = list(REGISTRY) + list(self.spec.blocks)
            hint = did_you_mean(call.func, known) or did_you_mean(
                call.func.lower().replace("_", ""), {k.replace("_", ""): k for k in known})
            self.error("E200", f"unknown layer or block '{call.func}'", call.func_span,
                       helps=[hint or f"known layers: {', '.join(sorted(REGISTRY))}"])
            return None, _Flow(None, flow.rf, call.func)
        return self.layer(call, kind, scope, flow)

    def bind(self, call: ast.Call, names: list[str], allowed: list[str], scope: _Scope,
             what: str) -> dict[str, _Value] | None:
        """Positional and keyword arguments -> {name: value}; reports and returns None on error."""
        bound: dict[str, _Value] = {}
        ok = True
        overrides = getattr(call, "overrides", set())
        positional = 0
        for arg in call.args:
            if arg.name is None:
                if positional >= len(names):
                    self.error("E300", f"{what} takes at most {len(names)} positional "
                               f"argument{'s' if len(names) != 1 else ''}, received more",
                               arg.span, helps=[f"the positional order is: {', '.join(names)}"
                                                if names else "it takes no positional arguments"])
                    ok = False
                    continue
                key = names[positional]
                positional += 1
            else:
                key = arg.name
                if key not in allowed:
                    hint = did_you_mean(key, allowed)
                    self.error("E201", f"{what} has no argument '{key}'", arg.name_span,
                               helps=[hint or f"its arguments are: {', '.join(allowed) or 'none'}"])
                    ok = False
                    continue
                if key in bound and key not in overrides:
                    self.error("E300", f"argument '{key}' given twice", arg.span)
                    ok = False
                    continue
            value = self.eval(arg.value, scope)
            if value is None:
                ok = False
                continue
            value.arg_span = arg.span
            bound[key] = value
        return bound if ok else None

    def layer(self, call: ast.Call, kind: LayerKind, scope: _Scope, flow: _Flow):
        schema = {p.name: p for p in kind.params}
        bound = self.bind(call, [p.name for p in kind.positional], list(schema), scope,
                          f"{kind.name}()")
        if bound is None:
            return None, _Flow(None, flow.rf, kind.name)
        args: dict[str, Any] = {}
        spans = {name: v.arg_span or v.span for name, v in bound.items()}
        for p in kind.params:
            if p.name in bound:
                v = bound[p.name]
                try:
                    args[p.name] = coerce(p, v.value)
                except LayerError as err:
                    if isinstance(v.value, _Word) and p.type not in ("enum", "padding"):
                        word = v.value
                        self.error("E202", f"'{word}' is not defined", word.span,
                                   helps=[did_you_mean(word, word.names) or
                                          f"{p.name} expects a value; the names defined there "
                                          f"are: {', '.join(sorted(word.names)) or 'none'}"])
                    else:
                        self.error(err.code, f"{kind.name}: {err.message}", v.span,
                                   err.notes, err.helps)
                    return None, _Flow(None, flow.rf, kind.name)
            elif p.default is REQUIRED:
                self.error("E300", f"{kind.name}() is missing its argument '{p.name}'",
                           call.span, helps=[f"the signature is {kind.signature()}"])
                return None, _Flow(None, flow.rf, kind.name)
            else:
                args[p.name] = p.default
        if not flow.known:
            return None, _Flow(None, flow.rf, kind.name)
        x = flow.shape

        def report(err: LayerError, severity: str = "error") -> None:
            span = spans.get(err.arg, call.span)
            notes = list(err.notes)
            if err.code in ("E400", "E401", "E402", "E403", "E404"):
                notes.append(f"the input {list(x)} comes from {flow.origin}")
            (self.error if severity == "error" else self.warn)(
                err.code, f"{kind.name}: {err.message}", span, notes, err.helps)

        if kind.rank is not None and len(x) != kind.rank:
            self._rank_error(kind, call, x, flow)
            return None, _Flow(None, flow.rf, kind.name)
        try:
            try:
                kind.normalise(args, x)
            except LayerError as err:
                if err.code not in ("E400", "E401"):
                    raise
                report(err)  # a wrong in_channels: report, then go on with the real one
                args[err.arg] = None
                kind.normalise(args, x)
            y = kind.output_shape(args, x)
        except LayerError as err:
            report(err)
            return None, _Flow(None, flow.rf, kind.name)
        for w in kind.warnings(args, x, y):
            report(LayerError(w.code, w.message, arg=w.arg, notes=w.notes, helps=w.helps),
                   "warning")
        rf = kind.receptive_field(args, flow.rf, x, y)
        node = Layer(call.span, x, y, rf, kind.param_count(args), kind.macs(args, x, y),
                     name=call.name, kind=kind, args=args)
        origin = f"{kind.name} at line {call.span.line}"
        if kind.name == "flatten" and len(y) == 1 and len(x) > 1:
            origin = f"flatten() at line {call.span.line}: {'*'.join(map(str, x))} = {y[0]}"
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
        bound = self.bind(call, names, names, scope, f"block {block.name}()")
        if bound is None:
            return None, _Flow(None, flow.rf, block.name)
        env: dict[str, Any] = {}
        if flow.known:
            env.update(_builtins(flow.shape))
        inner = _Scope(env, scope.stack + [block.name])
        for p in block.params:
            if p.name in bound:
                env[p.name] = bound[p.name].value
            elif p.default is not None:
                v = self.eval(p.default, inner)
                if v is None:
                    return None, _Flow(None, flow.rf, block.name)
                env[p.name] = v.value
            else:
                self.error("E300", f"block {block.name}() is missing its argument '{p.name}'",
                           call.span,
                           helps=[f"it is defined at line {block.span.line} as "
                                  f"{block.name}({', '.join(names)})"])
                return None, _Flow(None, flow.rf, block.name)
        items, out = self.sequence(block.body, inner, flow)
        seq = self._seq(items, flow, out, call.span, label=label, module=True, name=call.name,
                        block=block.name)
        return seq, out

    def _seq(self, items: list[Node], flow_in: _Flow, flow_out: _Flow, span: Span, *, label: str,
             module: bool = False, name: str | None = None, block: str | None = None) -> Seq:
        return Seq(span, flow_in.shape, flow_out.shape, flow_out.rf,
                   params=sum(n.params for n in items), macs=sum(n.macs for n in items),
                   name=name, items=items, label=label, block=block, module=module)

    # -- whole-design warnings -----------------------------------------------------------------
    def _design_warnings(self, net: Network) -> None:
        layers = list(net.layers())
        collapsed = None
        for layer in layers:
            x, y = layer.in_shape, layer.out_shape
            if collapsed is None and len(x) == 3 and len(y) == 3 and x[1:] != (1, 1) and \
                    y[1:] == (1, 1):
                collapsed = layer
            elif collapsed is not None and len(x) == 3 and _spatial_kernel(layer):
                self.warn("W503", f"the map is already 1x1 here: this {layer.op} "
                          f"has nothing spatial left to see", layer.span,
                          notes=[f"{collapsed.op} at line {collapsed.span.line} collapsed "
                                 f"{list(collapsed.in_shape)} to {list(collapsed.out_shape)}"],
                          helps=["stride or pool less before this point, or feed a larger "
                                 "input"])
                break
        total = net.total_params
        for layer in layers:
            if layer.op == "linear" and total >= 10_000 and layer.params > total / 2:
                self.warn("W504", f"this linear layer holds {layer.params:,} of the network's "
                          f"{total:,} parameters ({layer.params / total:.0%})", layer.span,
                          notes=[f"it maps {layer.args['in_features']:,} features to "
                                 f"{layer.args['out_features']:,}"],
                          helps=["shrink the map first (more pooling, or "
                                 "adaptive_avgpool2d(1) before flatten())"])


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position; a problem inside a block used several times is reported once, at
    its first use, with the count of the others."""
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
    return sorted(first.values(), key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))


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


class _EvalError(Exception):
    def __init__(self, code: str, message: str, span: Span, helps=None):
        super().__init__(message)
        self.code, self.message, self.span, self.helps = code, message, span, helps or []


_CONSTANTS = {"true": True, "false": False, "none": None, "True": True, "False": False,
              "None": None}


def _builtins(shape: Shape) -> dict[str, int]:
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


def check(spec: ast.Spec) -> Network:
    return Checker(spec).run()


__all__ = ["Checker", "check"]
