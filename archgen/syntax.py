"""The .cnn language: tokens with positions -> AST.

    network NAME                         optional; defaults to the file name
    input [C, H, W]                      the batch dimension is implicit
    block NAME(a, b=default):            a reusable, parameterised group of statements
    NAME:                                a named group (a section such as backbone:/head:, a named branch)
    [name =] layer_or_block(args)        one layer per line, PyTorch's names and argument order
    repeat N [first(kw=value, ...)]: ... N copies, the first with some arguments overridden
    add: / concat: / mul:                branches summed / concatenated along channels / multiplied
                                         with broadcasting; each child is one branch: a call,
                                         `branch:`, a named group, or an if
    from NAME                            first in a branch: start it from an earlier named value
    output NAME, ...                     last in the file: the network's named outputs
    if COND: ... elif COND: ... else:    inside blocks, on block arguments
    # comment

Nothing is ever evaluated as Python: expressions are parsed here and evaluated by the checker.
"""

from __future__ import annotations

import re

from .diagnostics import Diagnostic, Span, split_lines
from .hints import keyword_typo
from .limits import MAX_ARGS, MAX_INT, MAX_LINES, MAX_NESTING, MAX_SOURCE, MAX_TOKEN
from .record import factory, record

# ---------------------------------------------------------------------------------------------
# AST



@record
class Expr:
    span: Span


@record
class Num(Expr):
    value: int | float


@record
class Word(Expr):
    """A bare word: a block parameter, a builtin (in_channels), or an enumeration value (same)."""

    name: str


@record
class Str(Expr):
    value: str


@record
class TupleExpr(Expr):
    items: list[Expr]


@record
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr


@record
class UnaryOp(Expr):
    op: str
    operand: Expr


@record
class FuncCall(Expr):
    """`max(a, b, ...)` or `min(...)` in an expression; `items` are its arguments (the
    checker refuses other functions, E209)."""

    func: str
    items: list[Expr]
    func_span: Span | None = None


@record
class Arg:
    name: str | None  # None for positional
    value: Expr
    span: Span  # the whole `name=value`
    name_span: Span | None = None


@record
class Stmt:
    span: Span


@record
class Call(Stmt):
    """`[name =] func(args)`: a layer or a block instance."""

    func: str
    args: list[Arg]
    name: str | None = None
    func_span: Span | None = None
    name_span: Span | None = None


@record
class Group(Stmt):
    """`NAME:` (named) or `branch:` (anonymous, only inside add/concat)."""

    name: str | None
    body: list[Stmt]


@record
class Merge(Stmt):
    mode: str  # "add" | "concat" | "mul"
    branches: list[Stmt]


@record
class From(Stmt):
    """`from NAME`, the first statement of a merge's branch: the branch starts from the output
    of the earlier layer or group NAME instead of the merge's input."""

    name: str
    name_span: Span


@record
class Output(Stmt):
    """`output NAME, ...`, the network's last statement: it returns these named values."""

    names: list[str]
    spans: list[Span]


@record
class Repeat(Stmt):
    count: Expr
    body: list[Stmt]
    first: list[Arg] = factory(list)
    # `as denselayer{1}`: the copies' names, (prefix, first number, suffix)
    names: tuple[str, int, str] | None = None
    names_span: Span | None = None


@record
class If(Stmt):
    cond: Expr
    body: list[Stmt]
    orelse: list[Stmt]


@record
class Param:
    name: str
    default: Expr | None
    span: Span


@record
class BlockDef:
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span  # the header


@record
class Spec:
    file: str
    source: str
    network: str | None = None
    network_span: Span | None = None
    input_shape: list[Expr] | None = None
    input_span: Span | None = None
    blocks: dict[str, BlockDef] = factory(dict)
    body: list[Stmt] = factory(list)
    diagnostics: list[Diagnostic] = factory(list)


# ---------------------------------------------------------------------------------------------
# Tokens

KEYWORDS = {"network", "input", "block", "repeat", "add", "concat", "mul", "branch", "if", "elif",
            "else", "and", "or", "not", "first"}

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t]+)
  | (?P<comment>\#.*)
  | (?P<float>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<str>"[^"\n]*"|'[^'\n]*')
  | (?P<op>//|==|!=|<=|>=|[-+*/%()\[\],=:<>{}])
    """,
    re.VERBOSE,
)
# A module name with '-' between its parts (regnet's block1-0), and the name of a repeat's
# copies with the first copy's number in braces (densenet's denselayer{1}).
DASHED_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:-[A-Za-z_0-9]+)+")
NAME_TEMPLATE = re.compile(r"([A-Za-z_][A-Za-z_0-9-]*)\{(\d{1,9})\}([A-Za-z_0-9-]*)")


@record
class Tok:
    kind: str  # name int float str op newline end
    text: str
    line: int
    col: int  # 1-based

    def span(self, file: str) -> Span:
        return Span(file, self.line, self.col, self.col + max(1, len(self.text)))


@record
class Line:
    indent: int
    tokens: list[Tok]
    number: int


class ParseError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _tokenize(source: str, file: str) -> tuple[list[Line], list[Diagnostic]]:
    lines, diags = [], []
    if len(source) > MAX_SOURCE:  # read nothing: tokens alone would cost ~200 bytes each
        return [], [Diagnostic(
            "error", "E305", f"the spec has {len(source):,} characters; archgen reads at most "
            f"{MAX_SOURCE:,}", Span(file, 1, 1, 2),
            helps=["a real spec is a few kilobytes; repeat and block say large networks "
                   "briefly"])]
    for number, text in enumerate(split_lines(source), start=1):
        stripped = text.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if len(lines) == MAX_LINES:
            diags.append(Diagnostic(
                "error", "E305", f"the spec has more than {MAX_LINES:,} statements; archgen "
                f"reads at most {MAX_LINES:,}", Span(file, number, 1, 2),
                helps=["repeat and block say large networks briefly"]))
            break
        lead = text[: len(text) - len(stripped)]
        if "\t" in lead:
            diags.append(Diagnostic(
                "error", "E101", "tab in indentation",
                Span(file, number, 1, len(lead) + 1),
                helps=["indent with spaces only (4 per level is usual)"]))
            continue
        tokens, pos, bad = [], len(lead), False
        for m in _TOKEN.finditer(text, pos):
            if m.start() != pos:
                break
            kind = m.lastgroup
            if kind in ("name", "str", "float") and m.end() - m.start() > MAX_TOKEN:
                # checks copy names into messages and hints once per expanded use: bounded
                what = {"name": "name", "str": "string", "float": "number"}[kind]
                diags.append(Diagnostic(
                    "error", "E305", f"a {what} of {m.end() - m.start():,} characters; "
                    f"archgen reads at most {MAX_TOKEN}", Span(file, number, pos + 1, pos + 2),
                    helps=["no layer, argument or value is spelt that long"]))
                bad = True
                break
            if kind != "ws" and kind != "comment":
                tokens.append(Tok(kind, m.group(), number, pos + 1))
            pos = m.end()
        if pos < len(text) and not bad:
            ch = text[pos]
            diags.append(Diagnostic(
                "error", "E100", f"unexpected character {ch!r}",
                Span(file, number, pos + 1, pos + 2),
                helps=["a spec line holds a call like conv2d(16, 3, padding=1); "
                       "strings are quoted with \" or '"]))
            bad = True
        if not bad and tokens:
            lines.append(Line(len(lead), join_names(tokens), number))
    return lines, diags


def join_names(tokens: list) -> list:
    """The tokens with each module name written with '-' (`block1-0`) or a copy number in
    braces (`denselayer{1}`) as one name token, where the grammar has a module name: at the
    head of a statement before '=' or ':', after `from`, after `output` and its commas, and
    after a repeat's `as`. Elsewhere `c-1` stays a subtraction. Works on any tokens with
    kind, text and col (fmt re-scans with its own)."""
    def run(i: int, braces: bool) -> int:
        """The end of the run of adjacent name parts from i."""
        j = i + 1
        while j < len(tokens):
            t, prev = tokens[j], tokens[j - 1]
            if t.col != prev.col + len(prev.text):
                break
            if not (t.kind in ("name", "int", "num") or t.text == "-" or
                    braces and t.text in ("{", "}")):
                break
            j += 1
        return j

    def join(i: int, braces: bool, before: tuple[str, ...] = ()) -> None:
        if i >= len(tokens) or tokens[i].kind != "name":
            return
        end = run(i, braces)
        if end - i < 2 or (before and (end >= len(tokens) or tokens[end].text not in before)):
            return
        text = "".join(t.text for t in tokens[i:end])
        if (NAME_TEMPLATE if braces else DASHED_NAME).fullmatch(text):
            tokens[i:end] = [type(tokens[i])("name", text, tokens[i].line, tokens[i].col)]

    if not tokens or tokens[0].kind != "name":
        return tokens
    head = tokens[0].text
    if head in ("from", "output") and len(tokens) > 1:
        for i in range(len(tokens) - 1, 0, -1):
            if i == 1 or (head == "output" and tokens[i - 1].text == ","):
                join(i, False)
    elif head == "repeat":
        for i in range(len(tokens) - 1, 0, -1):
            if tokens[i - 1].kind == "name" and tokens[i - 1].text == "as":
                join(i, True)
    else:
        join(0, False, ("=", ":"))
    return tokens


# ---------------------------------------------------------------------------------------------
# Parser: one statement per line, blocks by indentation


class _LineParser:
    """Parses the tokens of one line."""

    def __init__(self, line: Line, file: str):
        self.toks = line.tokens
        self.i = 0
        self.file = file
        self.line = line
        last = line.tokens[-1]
        self.end = Tok("end", "", line.number, last.col + len(last.text))
        self.nest = 0  # parentheses, signs and `not`s entered: the parser's recursion depth
        self.depth: dict[int, int] = {}  # id(expr) -> height of its tree (evaluation's depth)

    def peek(self, k: int = 0) -> Tok:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else self.end

    def next(self) -> Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "name") and tok.text == text

    def error(self, tok: Tok, message: str, helps=(), code: str = "E100") -> ParseError:
        what = "end of line" if tok.kind == "end" else repr(tok.text)
        return ParseError(Diagnostic("error", code, message.format(got=what), tok.span(self.file),
                                     helps=list(helps)))

    def expect(self, text: str, helps=()) -> Tok:
        tok = self.peek()
        if tok.kind in ("op", "name") and tok.text == text:
            return self.next()
        raise self.error(tok, f"expected '{text}' but found {{got}}", helps)

    def name(self, what: str = "a name") -> Tok:
        tok = self.peek()
        if tok.kind != "name":
            raise self.error(tok, f"expected {what} but found {{got}}")
        return self.next()

    def done(self) -> None:
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "unexpected {got} after the end of the statement",
                             ["one statement per line; comments start with #"])

    def span_from(self, start: Tok) -> Span:
        prev = self.toks[self.i - 1] if self.i else start
        return Span(self.file, start.line, start.col, prev.col + len(prev.text))

    # expressions -----------------------------------------------------------------------------
    def expr(self) -> Expr:
        return self._or()

    def _or(self) -> Expr:
        left = self._and()
        while self.at("or"):
            op = self.next()
            left = self._bin(op, left, self._and())
        return left

    def _and(self) -> Expr:
        left = self._not()
        while self.at("and"):
            op = self.next()
            left = self._bin(op, left, self._not())
        return left

    def _not(self) -> Expr:
        if self.at("not"):
            start = self.next()
            operand = self._nested(start, self._not)
            return self._node(start, UnaryOp(
                Span(self.file, start.line, start.col, operand.span.end_column), "not", operand),
                operand)
        return self._cmp()

    def _nested(self, tok: Tok, parse):
        """Parses one level deeper, refusing more than MAX_NESTING levels (never a
        RecursionError, whatever the input)."""
        self.nest += 1
        if self.nest > MAX_NESTING:
            raise self._too_deep(tok)
        try:
            return parse()
        finally:
            self.nest -= 1

    def _too_deep(self, tok: Tok) -> ParseError:
        return ParseError(Diagnostic(
            "error", "E305", f"this expression nests deeper than {MAX_NESTING} levels "
            f"(parentheses, operators and signs all count), archgen's limit",
            tok.span(self.file),
            helps=["split it: compute parts in block arguments, e.g. block b(c, w=c * 4):"]))

    def _node(self, tok: Tok, node: Expr, *children: Expr) -> Expr:
        """Records the height of `node`'s tree; deeper than MAX_NESTING is E305."""
        height = 1 + max((self.depth.get(id(c), 1) for c in children), default=0)
        if height > MAX_NESTING:
            raise self._too_deep(tok)
        self.depth[id(node)] = height
        return node

    def _cmp(self) -> Expr:
        left = self._sum()
        while self.peek().kind == "op" and self.peek().text in ("==", "!=", "<", "<=", ">", ">="):
            op = self.next()
            left = self._bin(op, left, self._sum())
        return left

    def _sum(self) -> Expr:
        left = self._term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.next()
            left = self._bin(op, left, self._term())
        return left

    def _term(self) -> Expr:
        left = self._unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "//", "/", "%"):
            op = self.next()
            left = self._bin(op, left, self._unary())
        return left

    def _unary(self) -> Expr:
        if self.peek().kind == "op" and self.peek().text in ("-", "+"):
            start = self.next()
            operand = self._nested(start, self._unary)
            return self._node(start, UnaryOp(
                Span(self.file, start.line, start.col, operand.span.end_column), start.text,
                operand), operand)
        return self._atom()

    def _bin(self, op: Tok, left: Expr, right: Expr) -> BinOp:
        span = Span(self.file, left.span.line, left.span.column, right.span.end_column)
        return self._node(op, BinOp(span, op.text, left, right), left, right)

    def _atom(self) -> Expr:
        tok = self.peek()
        if tok.kind == "int":
            self.next()
            digits = tok.text.lstrip("0") or "0"
            # int() of more than 4,300 digits raises; anything past int64 is refused first
            if len(digits) > len(str(MAX_INT)) or int(digits) > MAX_INT:
                raise ParseError(Diagnostic(
                    "error", "E303", f"the integer {_abridged(digits)} is larger than "
                    f"2**63 - 1 = {MAX_INT:,}, the largest archgen reads", tok.span(self.file),
                    helps=["sizes, counts and strides are far smaller; check for a typo"]))
            return Num(tok.span(self.file), int(digits))
        if tok.kind == "float":
            self.next()
            return Num(tok.span(self.file), float(tok.text))
        if tok.kind == "str":
            self.next()
            return Str(tok.span(self.file), tok.text[1:-1])
        if tok.kind == "name" and tok.text not in ("and", "or", "not"):
            self.next()
            if self.at("("):  # max(a, b): a function of values
                return self._func(tok)
            return Word(tok.span(self.file), tok.text)
        if tok.kind == "op" and tok.text in ("(", "["):
            close = ")" if tok.text == "(" else "]"
            self.next()
            items, trailing_comma = [], False
            while not self.at(close):
                items.append(self._nested(tok, self.expr))
                trailing_comma = False
                if self.at(","):
                    self.next()
                    trailing_comma = True
                elif not self.at(close):
                    raise self.error(self.peek(), f"expected ',' or '{close}' but found {{got}}")
            end = self.next()
            span = Span(self.file, tok.line, tok.col, end.col + 1)
            if tok.text == "(" and len(items) == 1 and not trailing_comma:
                inner = items[0]
                inner.span = span
                return inner
            return self._node(tok, TupleExpr(span, items), *items)
        raise self.error(tok, "expected a value but found {got}",
                         ["values are integers, floats, true/false, words such as same or "
                          "reflect, and tuples such as (3, 5)"])

    def _func(self, name: Tok) -> Expr:
        """`name(value, ...)`: positional values only (max and min take no keywords)."""
        self.next()
        items: list[Expr] = []
        while not self.at(")"):
            if len(items) == MAX_ARGS:
                raise ParseError(Diagnostic(
                    "error", "E305", f"more than {MAX_ARGS} arguments in one call, archgen's "
                    f"limit", self.peek().span(self.file)))
            if self.peek().kind == "name" and self.peek(1).kind == "op" and \
                    self.peek(1).text == "=":
                raise self.error(self.peek(), f"{name.text}() takes values, not named "
                                 f"arguments: found {{got}}=",
                                 [f"write {name.text}(a, b)"])
            items.append(self._nested(name, self.expr))
            if self.at(","):
                self.next()
            elif not self.at(")"):
                raise self.error(self.peek(), "expected ',' or ')' but found {got}")
        end = self.next()
        span = Span(self.file, name.line, name.col, end.col + 1)
        return self._node(name, FuncCall(span, name.text, items, name.span(self.file)), *items)

    # calls -----------------------------------------------------------------------------------
    def args(self, close: str = ")") -> list[Arg]:
        args: list[Arg] = []
        while not self.at(close):
            tok = self.peek()
            if len(args) == MAX_ARGS:  # bounds the per-argument work (checks, hints) of a call
                raise ParseError(Diagnostic(
                    "error", "E305", f"more than {MAX_ARGS} arguments in one call, archgen's "
                    f"limit", tok.span(self.file),
                    helps=["no layer takes more than a dozen; check for a pasted list"]))
            if tok.kind == "name" and self.peek(1).kind == "op" and self.peek(1).text == "=":
                self.next()
                self.next()
                value = self.expr()
                args.append(Arg(tok.text, value,
                                Span(self.file, tok.line, tok.col, value.span.end_column),
                                tok.span(self.file)))
            else:
                value = self.expr()
                args.append(Arg(None, value, value.span))
            if self.at(","):
                self.next()
            elif not self.at(close):
                raise self.error(self.peek(), f"expected ',' or '{close}' but found {{got}}",
                                 ["separate arguments with commas: conv2d(16, 3, stride=2)"])
        self.expect(close)
        return args


class Parser:
    def __init__(self, source: str, file: str):
        self.file = file
        self.source = source
        self.lines, self.diagnostics = _tokenize(source, file)
        self.pos = 0
        self.level = 0  # headers enclosing the current line

    def parse(self) -> Spec:
        spec = Spec(self.file, self.source)
        spec.diagnostics = self.diagnostics
        for stmt in self._suite(0, top=True, spec=spec):
            spec.body.append(stmt)
        return spec

    # A suite is the run of lines indented exactly `indent`.
    def _suite(self, indent: int, *, top: bool = False, spec: Spec | None = None,
               in_merge: bool = False) -> list[Stmt]:
        body: list[Stmt] = []
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            if line.indent < indent:
                break
            if line.indent > indent:
                self._error_line(line, "E101", "unexpected indent",
                                 ["only the line after one ending in ':' is indented further"])
                self.pos += 1
                continue
            self.pos += 1
            try:
                stmt = self._statement(line, top=top, spec=spec, in_merge=in_merge)
            except ParseError as e:
                self.diagnostics.append(e.diagnostic)
                self._skip_children(line.indent)
                continue
            if stmt is not None:
                body.append(stmt)
        return body

    def _skip_children(self, indent: int) -> None:
        while self.pos < len(self.lines) and self.lines[self.pos].indent > indent:
            self.pos += 1

    def _error_line(self, line: Line, code: str, message: str, helps=()) -> None:
        tok = line.tokens[0]
        self.diagnostics.append(Diagnostic("error", code, message, tok.span(self.file),
                                           helps=list(helps)))

    def _body(self, header: Line, lp: _LineParser, *, in_merge: bool = False) -> list[Stmt]:
        """The indented lines under a header ending in ':'."""
        lp.done()
        if self.pos >= len(self.lines) or self.lines[self.pos].indent <= header.indent:
            colon = header.tokens[-1]
            raise ParseError(Diagnostic(
                "error", "E101", "expected an indented block after ':'",
                colon.span(self.file),
                helps=["indent the lines that belong here, e.g. 4 spaces deeper"]))
        if self.level >= MAX_NESTING:
            raise ParseError(Diagnostic(
                "error", "E305", f"this block nests deeper than {MAX_NESTING} levels, "
                "archgen's limit", header.tokens[0].span(self.file),
                helps=["move the inner part into a block definition of its own"]))
        indent = self.lines[self.pos].indent
        self.level += 1
        try:
            return self._suite(indent, in_merge=in_merge)
        finally:
            self.level -= 1

    def _statement(self, line: Line, *, top: bool, spec: Spec | None, in_merge: bool) -> Stmt | None:
        lp = _LineParser(line, self.file)
        first = lp.peek()
        span_all = Span(self.file, line.number, first.col,
                        line.tokens[-1].col + len(line.tokens[-1].text))
        word = first.text if first.kind == "name" else None
        if word is not None and not (lp.peek(1).kind == "op" and lp.peek(1).text in ("(", "=")):
            word = self._keyword_typo(first, word, lp.peek(1), in_merge)
        if first.kind == "str" and lp.peek(1).kind == "op" and lp.peek(1).text == ":":
            lp.next()  # "ad": a group name written as meant, even one close to a keyword
            lp.next()
            return Group(span_all, first.text[1:-1], self._body(line, lp))

        if word == "network" and lp.peek(1).kind == "name":
            lp.next()
            name = lp.next()
            lp.done()
            if not top:
                raise lp.error(first, "'network' is only allowed at the top of the file")
            spec.network, spec.network_span = name.text, name.span(self.file)
            return None
        if word == "input" and lp.peek(1).kind == "op" and lp.peek(1).text in ("[", "("):
            lp.next()
            close = "]" if lp.next().text == "[" else ")"
            dims = lp.args(close)
            lp.done()
            if not top:
                raise lp.error(first, "'input' is only allowed at the top of the file")
            for d in dims:
                if d.name is not None:
                    raise lp.error(first, "input takes plain sizes: input [3, 32, 32]")
            spec.input_shape = [d.value for d in dims]
            spec.input_span = span_all
            return None
        if word == "block" and lp.peek(1).kind == "name":
            lp.next()
            name = lp.next()
            lp.expect("(", ["a block header reads: block conv_block(out, p=0.2):"])
            params: list[Param] = []
            for arg in lp.args(")"):
                if arg.name is None:
                    if not isinstance(arg.value, Word):
                        raise ParseError(Diagnostic(
                            "error", "E100", "a block parameter must be a name", arg.span,
                            helps=["write block NAME(out, p=0.2): with optional defaults"]))
                    param = Param(arg.value.name, None, arg.span)
                else:
                    param = Param(arg.name, arg.value, arg.span)
                if any(p.name == param.name for p in params):
                    self.diagnostics.append(Diagnostic(
                        "error", "E203", f"block parameter '{param.name}' is defined twice",
                        param.span, helps=["rename one of them"]))
                    continue
                params.append(param)
            lp.expect(":", ["a block header ends with ':'"])
            body = self._body(line, lp)
            if not top:
                raise lp.error(first, "blocks are defined at the top level of the file")
            block = BlockDef(name.text, params, body, name.span(self.file))
            if name.text in spec.blocks:
                prev = spec.blocks[name.text].span
                self.diagnostics.append(Diagnostic(
                    "error", "E203", f"block '{name.text}' is defined twice",
                    name.span(self.file), notes=[f"first defined at line {prev.line}"],
                    helps=["rename one of them"]))
            else:
                spec.blocks[name.text] = block
            return None
        if word == "repeat" and not (lp.peek(1).kind == "op" and lp.peek(1).text in ("(", "=")):
            lp.next()
            count = lp.expr()
            names, names_span = None, None
            if lp.at("as"):
                lp.next()
                tok = lp.peek()
                found = NAME_TEMPLATE.fullmatch(tok.text) if tok.kind == "name" else None
                if found is None:
                    raise lp.error(tok, "expected the copies' name with the first copy's "
                                   "number in braces, such as denselayer{{1}}, but found {got}",
                                   ["write repeat 6 as denselayer{1}: dense_layer(32): the "
                                    "copies are denselayer1 to denselayer6"])
                lp.next()
                names = (found.group(1), int(found.group(2)), found.group(3))
                names_span = tok.span(self.file)
            first_args: list[Arg] = []
            if lp.at("first"):
                lp.next()
                lp.expect("(", ["write repeat 3 first(stride=2): block(64)"])
                first_args = lp.args(")")
            lp.expect(":", ["write repeat 3: block(64)"])
            if lp.peek().kind != "end":
                body = [self._call(lp, lp.peek(), line)]
            else:
                body = self._body(line, lp)
            return Repeat(span_all, count, body, first_args, names, names_span)
        if word in ("add", "concat", "mul") and lp.peek(1).kind == "op" and \
                lp.peek(1).text == ":":
            lp.next()
            lp.next()
            return Merge(span_all, word, self._body(line, lp, in_merge=True))
        if word == "from" and lp.peek(1).kind == "name":
            lp.next()
            name = lp.next()
            lp.done()
            return From(span_all, name.text, name.span(self.file))
        if word == "output" and lp.peek(1).kind == "name":
            lp.next()
            names, spans = [], []
            while True:
                tok = lp.name("a named layer or group")
                names.append(tok.text)
                spans.append(tok.span(self.file))
                if not lp.at(","):
                    break
                lp.next()
            lp.done()
            return Output(span_all, names, spans)
        if word == "if":
            return self._if(line, lp, in_merge)
        if word in ("elif", "else"):
            raise lp.error(first, f"'{word}' without a matching 'if' above it")
        if first.kind == "name" and lp.peek(1).kind == "op" and lp.peek(1).text == ":":
            lp.next()
            lp.next()
            name = None if word == "branch" else word
            if name is None and not in_merge:
                raise lp.error(first, "'branch:' is only allowed directly inside add: or concat:",
                               ["inside a sequence, name the group instead: stem:"])
            return Group(span_all, name, self._body(line, lp))
        return self._call(lp, first, line)

    def _keyword_typo(self, first: Tok, word: str, after: Tok, in_merge: bool) -> str:
        """A header word one slip away from a keyword (concta:, ad:, brnach:, reapeat 2:) is
        an error (E208), not a group of that name; parsing goes on with the keyword where the
        line has its form. A group really meant to be called so is quoted: "ad":."""
        meant = keyword_typo(word, KEYWORDS - {"and", "or", "not", "first"})
        if meant is None:
            return word
        colon = after.kind == "op" and after.text == ":"
        helps = [f"did you mean '{meant}'?"]
        notes = []
        if colon:
            notes.append(f"as written it would be a group named {word}: a plain sequence of "
                         f"its lines")
            helps.append(f'to name a group {word} on purpose, quote it: "{word}":')
        diag = Diagnostic("error", "E208", f"'{word}' looks like the keyword '{meant}' misspelt",
                          first.span(self.file), notes=notes, helps=helps)
        if meant in ("elif", "else"):  # its 'if' is on another line: skip it and its body
            raise ParseError(diag)
        self.diagnostics.append(diag)
        fits = {"add": colon, "concat": colon, "branch": colon and in_merge, "repeat": not colon,
                "if": not colon, "network": after.kind == "name", "block": after.kind == "name",
                "input": after.text in ("[", "(")}
        return meant if fits.get(meant, colon) else word

    def _call(self, lp: _LineParser, first: Tok, line: Line) -> Call:
        name = name_span = None
        if first.kind in ("name", "str") and lp.peek(1).kind == "op" and lp.peek(1).text == "=":
            # "block" = body(...): a quoted name, as a quoted group header "block": takes one
            name = first.text if first.kind == "name" else first.text[1:-1]
            name_span = first.span(self.file)
            lp.next()
            lp.next()
        start = lp.peek()
        if start.kind != "name":
            raise lp.error(start, "expected a layer such as conv2d(16, 3) but found {got}")
        func = lp.next()
        if not lp.at("("):
            raise lp.error(lp.peek(), f"expected '(' after '{func.text}' but found {{got}}",
                           [f"call it: {func.text}()"])
        lp.next()
        args = lp.args(")")
        span = lp.span_from(first)
        lp.done()
        return Call(span, func.text, args, name, func.span(self.file), name_span)

    def _if(self, line: Line, lp: _LineParser, in_merge: bool) -> If:
        """`if`, its `elif`s and `else`, read in a loop (an elif chain of any length needs no
        recursion); the elifs nest as `If`s in the orelse of the one before."""
        clauses: list[tuple[Span, Expr, list[Stmt]]] = []
        orelse: list[Stmt] = []
        while True:
            start = lp.next()
            cond = lp.expr()
            lp.expect(":", [f"an {start.text} line ends with ':'"])
            body = self._body(line, lp, in_merge=in_merge)
            clauses.append((Span(self.file, line.number, start.col, cond.span.end_column),
                            cond, body))
            if self.pos >= len(self.lines) or self.lines[self.pos].indent != line.indent:
                break
            line = self.lines[self.pos]
            head = line.tokens[0]
            if head.kind == "name" and head.text == "elif":
                self.pos += 1
                lp = _LineParser(line, self.file)
                continue
            if head.kind == "name" and head.text == "else":
                self.pos += 1
                elp = _LineParser(line, self.file)
                elp.next()
                elp.expect(":")
                orelse = self._body(line, elp, in_merge=in_merge)
            break
        for span, cond, body in reversed(clauses):
            orelse = [If(span, cond, body, orelse)]
        return orelse[0]


def _abridged(digits: str) -> str:
    """A long number as its first and last digits and its length (messages stay short)."""
    if len(digits) <= 30:
        return digits
    return f"{digits[:6]}...{digits[-6:]} ({len(digits):,} digits)"


def parse(source: str, file: str = "<spec>") -> Spec:
    """Parse spec text into an AST; syntax errors are collected in `spec.diagnostics`."""
    return Parser(source, file).parse()
