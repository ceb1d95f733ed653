"""Propagating shapes: each layer call bound to its kind's schema, its shape rule, counts,
receptive field and warnings (with the reuse of identical calls), and the merges (add,
concat) of branches."""

from __future__ import annotations

from typing import Any

from .. import symbolic
from .. import syntax as ast
from ..diagnostics import Diagnostic, Span, did_you_mean
from ..ir import Layer, Merge, Node, Seq, walk
from ..layers import REGISTRY
from ..layers.base import REQUIRED, RF, LayerError, LayerKind, Shape, check_inferred, coerce
from ..naming import check_name
from .common import (
    _CONSTANTS,
    _arg_text,
    _capped,
    _Flow,
    _prod,
    _same,
    _Scope,
    _text,
    _TooLarge,
    _within_element_limits,
    _within_limits,
    _Word,
)


class Propagator:
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
        if hit is None or (call.name is not None and check_name(call.name, kind="module")):
            return None
        self._count_layer(call)
        # every copy shares the cached arguments (~200 bytes a layer less): nothing after
        # checking changes a layer's args
        args, y, params, macs = hit
        x = flow.shape
        rf = _capped(kind.receptive_field(args, flow.rf, x, y))
        node = Layer(call.span, x, y, rf, params, macs, name=call.name, kind=kind, args=args)
        return node, _Flow(y, rf, f"{kind.name} at line {call.span.line}")

    def _count_layer(self, call: ast.Call) -> None:
        self.layers += 1
        if self.layers > self.max_layers:
            raise _TooLarge(call.span, Diagnostic(
                "error", "E305", f"checking stops here: the expanded network has more than "
                f"{self.max_layers:,} layers, archgen's limit", call.span,
                helps=["lower the repeat counts; no real CNN comes near this"]))

    # -- merges --------------------------------------------------------------------------------
    def merge(self, stmt: ast.Merge, scope: _Scope, flow: _Flow):
        branches: list[Seq] = []
        spans: list[Span] = []
        for s in self._branch_stmts(stmt.branches, scope):
            head = s.body[0] if isinstance(s, ast.Group) and s.body else s
            start, source = flow, None
            if isinstance(head, ast.From):  # the branch starts from an earlier named value
                named = self.named(head.name, head.name_span, "from")
                source = named and named.node
                start = named.flow if source is not None else \
                    _Flow(None, flow.rf, f"from {head.name}")
                if source is not None:
                    self._check_inplace_after(named, head)
            if isinstance(s, ast.Group):
                self._check_group_name(s)
                body = s.body[1:] if isinstance(head, ast.From) else s.body
                items, out = self.sequence(body, scope, start)
                seq = self._seq(items, start, out, s.span, label=s.name or "branch",
                                module=s.name is not None, name=s.name)
            elif isinstance(s, ast.From):
                seq = self._seq([], start, start, s.span, label="branch")
            else:
                items, out = self.sequence([s], scope, flow)
                seq = self._seq(items, flow, out, s.span, label="branch")
            seq.source = source
            branches.append(seq)
            spans.append(s.span)
        if len(branches) < 2:  # one branch would merge a tensor with nothing: not a merge
            self.error("E409", f"{stmt.mode}: has "
                       f"{'only one branch' if branches else 'no branches'}; it needs at "
                       f"least two", stmt.span,
                       helps=["add at least two branches; identity() is the shortcut branch"]
                       if stmt.mode != "concat" else
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
        elif stmt.mode == "mul":
            out_shape = self._broadcast(shapes, spans, produced)
            if out_shape is None:
                return None, _Flow(None, flow.rf, "mul")
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
                if branch.source is None:  # a `from` branch: _check_inplace_on_references
                    self._check_inplace_on_shared_input(branch, stmt.mode)
        try:
            _within_element_limits(0, out_shape)
        except LayerError as err:
            self.error(err.code, f"{stmt.mode}: {err.message}", stmt.span, helps=err.helps)
            return None, _Flow(None, flow.rf, stmt.mode)
        rf = _capped(_merged_field(branches, out_shape))
        node = Merge(stmt.span, flow.shape, out_shape, rf,
                     params=sum(b.params for b in branches), macs=sum(b.macs for b in branches),
                     mode=stmt.mode, branches=branches)
        return node, _Flow(out_shape, rf, f"{stmt.mode} at line {stmt.span.line}")

    def _broadcast(self, shapes: list[Shape], spans: list[Span], produced: list[str]):
        """The shape of the branches' elementwise product, broadcast as PyTorch does (each size
        equal or 1; ranks equal, as the batch dimension leads every one); None after E416,
        which points at the first branch that does not broadcast with those before it."""
        out = shapes[0]
        for i, sh in enumerate(shapes[1:], start=1):
            joined = _broadcast_pair(out, sh)
            if joined is None:
                self.error("E416", f"mul multiplies elementwise with broadcasting, but branch "
                           f"{i + 1} gives {list(sh)}, which does not broadcast with "
                           f"{list(out)}" + (" (branch 1)" if i == 1 else
                                             f" (branches 1 to {i})"), spans[i],
                           notes=produced + ["two sizes broadcast when they are equal or one "
                                             "of them is 1; the ranks must agree, since the "
                                             "batch dimension leads each"],
                           helps=[_mul_fix(out, sh)])
                return None
            out = joined
        return out

    def _check_inplace_after(self, named, stmt: ast.From) -> None:
        """E410 for an in-place layer that already overwrote what `from NAME` reads: the first
        layers after NAME in its sequence (identity, flatten and dropout pass it on)."""
        for node in named.items[named.index + 1:]:
            for layer in _leading_layers(node):
                if layer.args.get("inplace"):
                    self._inplace_on_named(layer, stmt.name, f"`from {stmt.name}` at line "
                                           f"{stmt.span.line}")
                    return
                if layer.op not in _ALIASING:
                    return
            if not (isinstance(node, Layer) and node.op in _ALIASING):
                return

    def _inplace_on_named(self, layer: Layer, name: str, reader: str) -> None:
        self.error("E410", f"{layer.op}(inplace=true) overwrites the output of '{name}', "
                   f"which {reader} reads", layer.span,
                   helps=["drop inplace=true here, or refer to a value that no in-place layer "
                          "reads"])

    def _check_inplace_on_references(self, net) -> None:
        """E410 for an in-place layer reading a value that a `from` branch or an output also
        reads, wherever it sits: at the head of a `from` branch, after an output's layer, or
        inside the group that follows it. One walk, following each tensor through the layers
        that pass it on (identity, flatten, dropout, and in-place layers themselves)."""
        readers: dict[int, tuple[str, str]] = {}  # id(node) -> (its name, who reads it)
        for node in walk(net.root):
            if isinstance(node, Seq) and node.source is not None:
                readers[id(node.source)] = (node.source.name, f"the `from` branch at line "
                                            f"{node.span.line}")
        for out in net.outputs:
            readers.setdefault(id(out.node), (out.name, "the network's output"))
        if not readers:
            return
        said = {d.span for d in self.diags if d.code == "E410"}

        def visit(node, producers: list) -> list:
            if isinstance(node, Layer):
                if node.args.get("inplace") and node.span not in said:
                    hit = next((readers[id(p)] for p in producers if id(p) in readers), None)
                    if hit is not None:
                        said.add(node.span)
                        self._inplace_on_named(node, *hit)
                same = node.op in _ALIASING or node.args.get("inplace")
                return [*producers, node] if same else [node]
            if isinstance(node, Seq):
                cur = [node.source] if node.source is not None else producers
                for item in node.items:
                    cur = visit(item, cur)
                return [*cur, node]
            for branch in node.branches:
                visit(branch, producers)
            return [node]

        visit(net.root, [])

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
        actual = x[kind.inferred_dim] if x is not None and (
            kind.rank is None or len(x) == kind.rank) else None
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
        call_args = _variadic(kind, call_args)
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
            sibling = f"{kind.name[:-2]}{len(x) - 1}d" if kind.name[-2:] in _RANKED else None
            helps = [f"use {sibling}() for an input of rank {len(x)}"] \
                if sibling in REGISTRY and len(x) > 1 else \
                ["move it before flatten(), or use a layer for flat features (linear, dropout)"] \
                if len(x) == 1 else [f"{kind.name} takes rank {kind.rank} (batch excluded)"]
            self.error("E405", f"{kind.name} expects {_RANK_TEXT.get(kind.rank, 'another rank')} "
                       f"but receives {list(x)}", call.span,
                       notes=[f"the input comes from {flow.origin}"], helps=helps)


_RANK_TEXT = {2: "a sequence [C, L]", 3: "a feature map [C, H, W]",
              4: "a volume [C, D, H, W]"}
_RANKED = ("1d", "2d", "3d")  # conv1d, instancenorm3d, ...


# may return their input itself, or a view of it (channel_slice)
_ALIASING = {"identity", "flatten", "dropout", "dropout2d", "channel_slice", "permute",
             "stochastic_depth"}  # permute: a view; stochastic_depth: its input in eval


def _leading_layers(node: Node):
    """The layers a sequence starts with, in order, looking into nested sequences."""
    if isinstance(node, Layer):
        yield node
    elif isinstance(node, Seq):
        for item in node.items:
            yield from _leading_layers(item)
            if not (isinstance(item, Layer) and item.op in _ALIASING):
                return


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


def _broadcast_pair(a: Shape, b: Shape) -> Shape | None:
    """PyTorch's broadcast of two shapes of one rank; a symbolic size meets 1 or an equal
    size (a requirement), never another symbol by chance."""
    if len(a) != len(b):
        return None
    out = []
    for x, y in zip(a, b):
        if isinstance(y, int) and y == 1:
            out.append(x)
        elif isinstance(x, int) and x == 1:
            out.append(y)
        elif isinstance(x, int) and isinstance(y, int):
            if x != y:
                return None
            out.append(x)
        elif symbolic.holds(x == y):
            out.append(x)
        else:
            return None
    return tuple(out)


def _mul_fix(a: Shape, b: Shape) -> str:
    if len(a) != len(b):
        return (f"make the ranks agree: a gate over channels is [C, 1, 1] (adaptive_avgpool2d(1)"
                f" keeps it a map), not {list(b) if len(b) < len(a) else list(a)}")
    return "give every branch the same size, or 1, in each dimension"


def _merged_field(branches: list[Seq], out_shape: Shape) -> RF:
    """What a merge's output sees: the union of its branches' fields. A branch broadcast over
    an axis (mul's [C, 1, 1] gate) adds what it saw but not its spacing: the jump between
    neighbouring outputs along that axis comes from the branches of full size there."""
    rf = RF.union([b.rf for b in branches])
    spatial = out_shape[1:]
    if symbolic.is_symbolic(out_shape) or not any(len(b.out_shape) == len(out_shape) and b.out_shape[1:] != spatial
               for b in branches) or len(spatial) != len(rf.jump):
        return rf
    jump = []
    for a in range(len(rf.jump)):
        full = [b.rf.jump[a] for b in branches if b.out_shape[1 + a] == spatial[a]]
        jump.append(max(full) if full else rf.jump[a])
    return rf._replace(jump=tuple(jump))


def _add_fix(a: Shape, b: Shape) -> str:
    if len(a) == 3 and len(b) == 3 and a[0] != b[0] and a[1:] == b[1:]:
        return (f"the channels differ ({a[0]} vs {b[0]}): project the shortcut with "
                f"conv2d({a[0]}, 1)")
    if len(a) == 3 and len(b) == 3 and a[1:] != b[1:]:
        return ("the spatial sizes differ: give the shortcut the same stride "
                "(conv2d(..., 1, stride=2)) or pad the main branch")
    return "make every branch produce the same shape"


def _variadic(kind: LayerKind, args: list[ast.Arg]) -> list[ast.Arg]:
    """The positional values of a variadic kind as one tuple, as Tensor.permute(*dims) takes
    them: permute(1, 2, 0) is permute((1, 2, 0))."""
    pos = [a for a in args if a.name is None]
    if kind.variadic is None or len(pos) < 2:
        return args
    first, last = pos[0].span, pos[-1].span
    span = Span(first.file, first.line, first.column,
                last.end_column if last.line == first.line else first.end_column)
    packed = ast.Arg(None, ast.TupleExpr(span, [a.value for a in pos]), span)
    return [packed] + [a for a in args if a.name is not None]
