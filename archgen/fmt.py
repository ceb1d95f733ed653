"""`archgen fmt`: one canonical layout for .cnn specs, as black and ruff format give Python.

- four spaces per indentation level; one statement per line, as written;
- `name = layer(a, b=c)`: ', ' between arguments, no spaces around '=' of a keyword argument or
  inside brackets, spaces around binary operators (`out * 2`, `a == b`) and none after a unary
  minus (`-1`), `input [3, 32, 32]`, no trailing comma except the one of a 1-tuple `(3,)`;
- comments stay on their line: a trailing comment two spaces after the code, a comment line
  indented as the code it sits in; `#comment` becomes `# comment` (not `#!`, `#:`, `##`);
- one blank line around each top-level block or section (above the comments that lead into
  it); elsewhere at most one, where the author put one; none right after a header, none at the
  start or end of the file; no trailing whitespace; the file ends with one newline.

The spec is read by archgen's parser (a spec with syntax errors is not formatted) and each line
is re-scanned here for the comments and brackets the parser drops. Formatting only changes
whitespace, trailing commas and the brackets of `input`, and then proves it: the output is
parsed again, and its syntax tree (positions aside) and check JSON (positions aside) must equal
the input's, or nothing is written (FormatError).
"""

from __future__ import annotations

import re

from .diagnostics import Diagnostic, split_lines
from .record import record
from .syntax import Tok, join_names

INDENT = "    "

# The tokens of archgen/syntax.py, re-scanned here with the comment kept.
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t]+)
  | (?P<comment>\#.*)
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<str>"[^"\n]*"|'[^'\n]*')
  | (?P<op>//|==|!=|<=|>=|[-+*/%()\[\],=:<>{}])
    """,
    re.VERBOSE,
)

# words after which an expression or a bracket follows with a space: `if (a)`, `input [3]`
_SPACED = {"and", "or", "not", "if", "elif", "repeat", "input", "network", "block"}
_UNARY_AFTER = {"and", "or", "not", "if", "elif", "repeat"}


class FormatError(Exception):
    """Formatting would change the spec's meaning (an archgen bug): nothing is written."""


class SyntaxProblem(Exception):
    """The spec has syntax errors; it is not formatted."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(f"{len(diagnostics)} syntax error(s)")
        self.diagnostics = diagnostics


@record
class _Line:
    number: int
    column: int  # of the first character, 0-based
    tokens: list  # (kind, text) pairs; empty for a comment or blank line
    comment: str | None
    depth: int = 0
    blank: bool = False


def _scan(text: str, number: int) -> _Line:
    stripped = text.lstrip(" \t")
    column = len(text) - len(stripped)
    if not stripped.strip():
        return _Line(number, column, [], None, blank=True)
    tokens, comment, pos = [], None, column
    for m in _TOKEN.finditer(text, pos):
        if m.start() != pos:
            break
        if m.lastgroup == "comment":
            comment = m.group().rstrip()
        elif m.lastgroup != "ws":
            tokens.append(Tok(m.lastgroup, m.group(), number, m.start() + 1))
        pos = m.end()
    if pos < len(text):
        raise FormatError(f"line {number}: cannot re-scan {text[pos]!r}")
    # block1-0 and denselayer{1} are one name where the parser reads them as one
    return _Line(number, column, [(t.kind, t.text) for t in join_names(tokens)], comment)


# ---------------------------------------------------------------------------------------------
# One line


def _matching(tokens: list, i: int) -> int:
    """Index of the bracket that opens the one that closes at `i`."""
    depth = 0
    for j in range(i, -1, -1):
        text = tokens[j][1]
        if text in (")", "]"):
            depth += 1
        elif text in ("(", "["):
            depth -= 1
            if depth == 0:
                return j
    raise FormatError("unbalanced brackets")


def _is_argument_list(tokens: list, open_at: int) -> bool:
    """A bracket after a call's or header's name (or `input`): a trailing comma there means
    nothing, while in `(3,)` it makes a 1-tuple."""
    if tokens[open_at][1] == "[":
        return True
    if open_at == 0:
        return False
    kind, text = tokens[open_at - 1]
    return kind == "name" and (text not in _SPACED or text == "input")


def _canonical_tokens(tokens: list) -> list:
    tokens = list(tokens)
    if len(tokens) > 1 and tokens[0] == ("name", "input") and tokens[1] == ("op", "("):
        close = next((i for i in range(len(tokens) - 1, 1, -1)
                      if tokens[i][1] == ")" and _matching(tokens, i) == 1), None)
        if close is not None:  # input (3, 32, 32) -> input [3, 32, 32]
            tokens[1], tokens[close] = ("op", "["), ("op", "]")
    out: list = []
    for i, tok in enumerate(tokens):
        if tok[1] == "," and i + 1 < len(tokens) and tokens[i + 1][1] in (")", "]"):
            open_at = _matching(tokens, i + 1)
            top_commas = _top_level_commas(tokens, open_at, i + 1)
            if _is_argument_list(tokens, open_at) or top_commas > 1:
                continue  # a trailing comma that means nothing
        out.append(tok)
    return out


def _top_level_commas(tokens: list, open_at: int, close_at: int) -> int:
    depth, count = 0, 0
    for kind, text in tokens[open_at + 1:close_at]:
        if text in ("(", "["):
            depth += 1
        elif text in (")", "]"):
            depth -= 1
        elif text == "," and depth == 0:
            count += 1
    return count


def format_tokens(tokens: list) -> str:
    """The canonical text of one statement.

    >>> format_tokens(_scan("x=conv2d( out*2,3 ,padding = -1,)", 1).tokens)
    'x = conv2d(out * 2, 3, padding=-1)'
    """
    tokens = _canonical_tokens(tokens)
    parts: list[str] = []
    depth = 0
    prev = None
    prev_unary = False
    for kind, text in tokens:
        unary = text in ("-", "+") and (
            prev is None or (prev[0] == "op" and prev[1] not in (")", "]"))
            or (prev[0] == "name" and prev[1] in _UNARY_AFTER))
        if prev is not None:
            parts.append(_space(prev, (kind, text), prev_unary, depth))
        parts.append(text)
        if text in ("(", "["):
            depth += 1
        elif text in (")", "]"):
            depth -= 1
        prev, prev_unary = (kind, text), unary
    return "".join(parts)


def _space(prev, cur, prev_unary: bool, depth: int) -> str:
    pkind, ptext = prev
    ckind, ctext = cur
    if ctext in (",", ")", "]", ":") and ckind == "op":
        return ""
    if ptext in ("(", "[") and pkind == "op":
        return ""
    if ptext in (",", ":") and pkind == "op":
        return " "
    if (ctext == "=" and ckind == "op") or (ptext == "=" and pkind == "op"):
        return "" if depth else " "  # keyword argument, or `name = layer(...)`
    if prev_unary:
        return ""
    if ctext in ("(", "[") and ckind == "op":
        return "" if pkind == "name" and ptext not in _SPACED else " "
    return " "


def _comment(text: str) -> str:
    """`#comment` -> `# comment`, as black does; `#!`, `#:` and `##...` stay."""
    if len(text) > 1 and text[1] not in " !:#":
        return "# " + text[1:]
    return text


# ---------------------------------------------------------------------------------------------
# The file


def _depths(lines: list[_Line]) -> None:
    """Each code line's depth from the indentation stack; each comment line's from its column
    among the levels open around it (those of the code above, and the next line's)."""
    stack = [0]
    following: _Line | None = None
    next_code = {}
    for ln in reversed(lines):
        next_code[ln.number] = following
        if ln.tokens:
            following = ln
    for ln in lines:
        if ln.blank:
            continue
        if ln.tokens:
            while len(stack) > 1 and ln.column < stack[-1]:
                stack.pop()
            if ln.column > stack[-1]:
                stack.append(ln.column)
            ln.depth = len(stack) - 1
            continue
        levels = list(stack)
        nxt = next_code[ln.number]
        if nxt is not None and nxt.column > levels[-1]:
            levels.append(nxt.column)
        ln.depth = max(i for i, level in enumerate(levels) if level <= ln.column)


def _is_header(ln: _Line) -> bool:
    return bool(ln.tokens) and ln.tokens[-1] == ("op", ":")


def layout(source: str) -> str:
    """The canonical text (no meaning check: see format_source)."""
    lines = [_scan(text, n) for n, text in enumerate(split_lines(source), start=1)]
    _depths(lines)
    items = []  # (line, blank lines above it in the source)
    blanks = 0
    for ln in lines:
        if ln.blank:
            blanks += 1
            continue
        items.append((ln, blanks))
        blanks = 0

    # top-level items: depth 0, and the next code line at depth 0 too (a comment at column 0
    # inside a body is not one)
    top = [False] * len(items)
    code_depth = 0  # of the next code line, scanning backwards
    for k in range(len(items) - 1, -1, -1):
        ln = items[k][0]
        if ln.tokens:
            code_depth = ln.depth
        top[k] = ln.depth == 0 and code_depth == 0
    # a top-level header and the comment lines that lead into it (no blank between): the blank
    # line goes above the first of them
    lead_start, attached = set(), set()
    for k, (ln, _) in enumerate(items):
        if top[k] and _is_header(ln):
            j = k
            while j > 0 and items[j][1] == 0 and top[j - 1] and not items[j - 1][0].tokens:
                j -= 1
            lead_start.add(j)
            attached.update(range(j + 1, k + 1))

    out: list[str] = []
    after_header = False  # the last code line opened a body
    after_compound = False  # a top-level body ended, and no top-level line followed yet
    for k, (ln, blank) in enumerate(items):
        if not out or after_header or k in attached:
            want = 0
        elif top[k] and (k in lead_start or after_compound):
            want = 1
        else:
            want = min(blank, 1)
        out.extend([""] * want)
        text = INDENT * ln.depth
        if ln.tokens:
            text += format_tokens(ln.tokens)
            if ln.comment is not None:
                text += "  " + _comment(ln.comment)
            after_header = _is_header(ln)
        else:
            text += _comment(ln.comment)
        if top[k]:
            after_compound = _is_header(ln)
        out.append(text.rstrip())
    return "\n".join(out) + "\n" if out else ""


# ---------------------------------------------------------------------------------------------
# Meaning


_POSITION_KEYS = {"file", "line", "column", "end_column", "end_line"}
_POSITION_FIELDS = {"span", "name_span", "func_span", "network_span", "input_span", "file",
                    "source"}
_LINE_REF = re.compile(r"\blines? \d+|:\d+:\d+")


def _plain(value):
    """A comparable value of an AST node or JSON document, positions left out."""
    if isinstance(value, str):
        return _LINE_REF.sub("line #", value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in _POSITION_KEYS}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return [_plain(v) for v in value]
    fields = getattr(value, "_fields", None)
    if fields is not None and not isinstance(value, tuple):
        return (type(value).__name__,
                {f: _plain(getattr(value, f)) for f in fields if f not in _POSITION_FIELDS})
    if isinstance(value, tuple):  # a Span
        return None
    return value


def meaning(source: str, file: str = "<spec>"):
    """What formatting must keep: the syntax tree and the check JSON, positions aside."""
    from .api import parse
    arch = parse(source, file)
    return _plain(arch.ast), _plain(arch.to_json())


def syntax_errors(source: str, file: str = "<spec>") -> list[Diagnostic]:
    from . import syntax
    return [d for d in syntax.parse(source, file).diagnostics
            if d.is_error and d.code.startswith("E1")]


def format_source(source: str, file: str = "<spec>") -> str:
    """The canonical text of `source`; raises SyntaxProblem for a spec with syntax errors and
    FormatError when the result would not mean exactly what the input means."""
    errors = syntax_errors(source, file)
    if errors:
        raise SyntaxProblem(errors)
    result = layout(source)
    if result == source:
        return result
    if meaning(result, file) != meaning(source, file):
        raise FormatError(f"{file}: formatting would change the spec's meaning (an archgen "
                          "bug); nothing written")
    if layout(result) != result:
        raise FormatError(f"{file}: formatting is not stable (an archgen bug); nothing written")
    return result
