"""Expanding the spec: statements, blocks (scopes, binding their arguments), repeats and ifs,
bounded by archgen's limits on steps and nesting (E305). Layer calls and merges go on to
Propagator, expressions to Evaluator."""

from __future__ import annotations

from typing import Any

from .. import symbolic
from .. import syntax as ast
from ..diagnostics import Diagnostic, Span, did_you_mean
from ..hints import argument_hint, layer_hint
from ..ir import Node, Seq
from ..layers import REGISTRY
from ..layers.base import LayerKind, describe
from ..limits import MAX_EXPANDED, MAX_NESTING
from ..naming import check_name
from ..record import record
from .common import (
    _UNKNOWN,
    MAX_DEPTH,
    _arg_text,
    _builtins,
    _Flow,
    _is_int,
    _Scope,
    _text,
    _TooLarge,
    _Value,
)


class Expander:
    # -- statements ----------------------------------------------------------------------------
    def sequence(self, stmts: list[ast.Stmt], scope: _Scope, flow: _Flow,
                 names: dict | None = None) -> tuple[list[Node], _Flow]:
        """The nodes of a sequence and the flow after it. In a spec that uses `from` or
        `output`, the values named in it are kept in `names` (a new dict when None) while it
        is checked: what `from NAME` may refer to (Expander.named)."""
        items: list[Node] = []
        if self.dag:
            self.scopes.append((names if names is not None else {}, items))
        try:
            for stmt in stmts:
                for node_or_none, flow in self.statement(stmt, scope, flow):
                    if node_or_none is not None:
                        items.append(node_or_none)
        finally:
            if self.dag:
                self.scopes.pop()
        return items, flow

    def statement(self, stmt: ast.Stmt, scope: _Scope, flow: _Flow):
        """Yields (node, flow after it) for each node the statement produces. A rule that
        would decide on a symbolic size other than by a requirement stops here (E414)."""
        try:
            if self.dag and type(stmt) in (ast.Call, ast.Group) and stmt.name is not None:
                for node, out in self._bounded_statement(stmt, scope, flow):
                    names, items = self.scopes[-1]
                    names[stmt.name] = _Named(node, out, items, len(items))
                    yield node, out
                return
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
        if isinstance(stmt, (ast.From, ast.Output)):
            return 0
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
        elif isinstance(stmt, ast.From):
            self.error("E211", f"`from {stmt.name}` must be the first statement of a branch "
                       f"of add:, concat: or mul:", stmt.span,
                       notes=["a branch that starts `from NAME` reads NAME's output instead of "
                              "the merge's input"],
                       helps=["move it to the head of a branch: add:\n    branch:\n        "
                              f"from {stmt.name}\n        ..."])
            yield None, _Flow(None, flow.rf, f"from {stmt.name}")
        elif isinstance(stmt, ast.Output):
            self.error("E213", "`output` names the network's outputs: it is the last "
                       "statement of the file, at the top level", stmt.span,
                       helps=["move it to the end of the file, outside blocks and groups"])
        else:
            raise AssertionError(type(stmt))

    def _check_group_name(self, stmt: ast.Group) -> None:
        problem = stmt.name and check_name(stmt.name, kind="module")
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
        if self.expanded + self.layers + n * per_copy > MAX_EXPANDED + self.max_layers:
            raise _TooLarge(stmt.count.span, Diagnostic(
                "error", "E305", f"repeat {n:,} would take checking past archgen's limits of "
                f"{self.max_layers:,} layers and {MAX_EXPANDED:,} steps (statements, arguments "
                f"and values): each copy holds at least {per_copy:,} layer or block "
                f"call{'s' * (per_copy != 1)}",
                stmt.count.span, helps=["no real CNN comes near this; check the count"]))
        if stmt.first and not (len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Call)):
            self.error("E300", "first(...) overrides the arguments of a single call; this "
                       "repeat has a body of several statements", stmt.span,
                       helps=["write repeat 3 first(stride=2): block(64)"])
            return
        named = stmt.names is not None and self._names_copies(stmt)
        for i in range(n):  # each copy is counted as its statements are checked
            if named and (len(stmt.body) > 1 or not isinstance(stmt.body[0], ast.Call)):
                # `repeat 2 as stage{1}:` over several statements: each copy a named group
                yield i, ast.Group(stmt.span, _copy_name(stmt, i), stmt.body)
                continue
            for s in stmt.body:
                if i == 0 and stmt.first:
                    s = ast.Call(s.span, s.func, s.args + [
                        ast.Arg(a.name, a.value, a.span, a.name_span) for a in stmt.first],
                        s.name, s.func_span, s.name_span)
                    s.overrides = {a.name for a in stmt.first}
                if named:  # densenet's denselayer1, denselayer2, ...
                    overrides = getattr(s, "overrides", None)
                    s = ast.Call(s.span, s.func, s.args, _copy_name(stmt, i), s.func_span,
                                 stmt.names_span)
                    if overrides is not None:
                        s.overrides = overrides
                yield i, s

    # -- named values: `from NAME`, `output NAME, ...` ----------------------------------------
    def named(self, name: str, span: Span, what: str) -> _Named | None:
        """The value `name` refers to: an earlier named layer, group or block instance of this
        or an enclosing sequence of the same body (network or block definition). E212 when
        there is none, saying where a name defined elsewhere is; None then."""
        for names, _ in reversed(self.scopes):
            if name in names:
                return names[name]
        visible = sorted({n for names, _ in self.scopes for n in names})
        elsewhere = self.spec_names.get(name)
        if elsewhere is not None:
            where = "after this" if (elsewhere.line, elsewhere.column) > (
                span.line, span.column) else "inside a branch, group or block that does not " \
                "enclose this"
            self.error("E212", f"{what} '{name}': no layer or group of that name comes before "
                       f"it in this or an enclosing sequence", span,
                       notes=[f"'{name}' is defined at line {elsewhere.line}, {where}"],
                       helps=["refer to a value computed earlier on the way to this point "
                              "(in a block, to the block's own names)"])
        else:
            hint = did_you_mean(name, visible)
            self.error("E212", f"{what} '{name}': no layer or group is named so", span,
                       helps=[hint or (f"the names defined before it are: {', '.join(visible)}"
                                       if visible else "name the layer or group first: "
                                                       "c3 = conv2d(...), or c3: as a group")])
        return None

    def _names_copies(self, stmt: ast.Repeat) -> bool:
        """Whether `repeat N as NAME{k}` can name its copies: not when its one call already
        has a name of its own (E210)."""
        call = stmt.body[0]
        if len(stmt.body) == 1 and isinstance(call, ast.Call) and call.name is not None:
            self.error("E210", f"this repeat names its copies ({_copy_name(stmt, 0)}, ...), "
                       f"and its call is named '{call.name}' too", call.name_span or call.span,
                       helps=[f"drop '{call.name} =': the copies are named by "
                              f"`as {stmt.names[0]}{{{stmt.names[1]}}}{stmt.names[2]}`"])
            return False
        return True

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
            problem = check_name(call.name, kind="module")
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
        outer, self.scopes = self.scopes, []  # `from` sees only the block's own names
        try:
            items, out = self.sequence(block.body, inner, flow)
        finally:
            self.scopes = outer
        seq = self._seq(items, flow, out, call.span, label=label, module=True, name=call.name,
                        block=block.name)
        seq.args = env  # what the PyTorch target passes to the block's class
        return seq, out

    def _seq(self, items: list[Node], flow_in: _Flow, flow_out: _Flow, span: Span, *, label: str,
             module: bool = False, name: str | None = None, block: str | None = None) -> Seq:
        return Seq(span, flow_in.shape, flow_out.shape, flow_out.rf,
                   params=sum(n.params for n in items), macs=sum(n.macs for n in items),
                   name=name, items=items, label=label, block=block, module=module)


def _copy_name(stmt: ast.Repeat, i: int) -> str:
    """The name of copy i of `repeat N as NAME{k}`: prefix, k + i, suffix."""
    prefix, first, suffix = stmt.names
    return f"{prefix}{first + i}{suffix}"


@record
class _Named:
    """A named value of a sequence: its node (None after an error), the flow after it, and
    the items of its sequence with its index there (what reads it next)."""

    node: Node | None
    flow: _Flow
    items: list
    index: int


def spec_names(spec: ast.Spec) -> tuple[dict[str, Span], bool]:
    """Every module name written in the spec (its first place), and whether the spec uses
    `from` or `output` (only then does checking keep the named values)."""
    found: dict[str, Span] = {}
    dag = False
    stack = [*spec.body, *(s for b in spec.blocks.values() for s in b.body)]
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, (ast.From, ast.Output)):
            dag = True
        elif isinstance(stmt, (ast.Call, ast.Group)) and stmt.name is not None:
            span = stmt.name_span if isinstance(stmt, ast.Call) and stmt.name_span else stmt.span
            if stmt.name not in found or (span.line, span.column) < (
                    found[stmt.name].line, found[stmt.name].column):
                found[stmt.name] = span
        for attr in ("body", "branches", "orelse"):
            stack.extend(getattr(stmt, attr, ()))
    return found, dag
