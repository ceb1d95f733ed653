"""One `Diagnostic` type for every stage: position, rule, received values, likely fix.

Rendered like a compiler error::

    examples/bad.cnn:14:5: error[E401]: linear expects 2048 input features but receives 1024
       14 |     linear(500, in_features=2048)
          |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
       = note: flatten() at line 13 gives 64*4*4 = 1024 features
       = help: drop in_features=2048 (it is inferred) or change it to 1024
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .record import factory, record


class Span(NamedTuple):
    """A place in a source file: 1-based line and column, `end_column` exclusive."""

    file: str
    line: int
    column: int
    end_column: int


@record
class Diagnostic:
    severity: str  # "error" or "warning"
    code: str
    message: str
    span: Span | None = None
    notes: list[str] = factory(list)
    helps: list[str] = factory(list)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        span = self.span
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_column": span.end_column if span else None,
            "notes": list(self.notes),
            "helps": list(self.helps),
        }

    def render(self, source: str | None = None, *, lines: list[str] | None = None) -> str:
        """Text form; `source` is the file's text (or `lines`, already split by `split_lines`),
        used to quote the line under a caret."""
        span = self.span
        where = f"{span.file}:{span.line}:{span.column}: " if span else ""
        out = [f"{where}{self.severity}[{self.code}]: {self.message}"]
        if lines is None and source is not None:
            lines = split_lines(source)
        if span and lines is not None:
            if 1 <= span.line <= len(lines):
                text = lines[span.line - 1].rstrip("\n")
                gutter = str(span.line)
                pad = " " * len(gutter)
                width = max(1, min(span.end_column, len(text) + 1) - span.column)
                out.append(f" {gutter} | {text}")
                out.append(f" {pad} | {' ' * (span.column - 1)}{'^' * width}")
        pad = " " * (len(str(span.line)) if span else 1)
        out += [f" {pad} = note: {note}" for note in self.notes]
        out += [f" {pad} = help: {help_}" for help_ in self.helps]
        return "\n".join(out)


class SpecError(Exception):
    """Raised by the API when a spec has errors; carries every diagnostic of the run."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        errors = [d for d in diagnostics if d.is_error]
        super().__init__(render_all(errors or diagnostics, self.sources))


def render_all(diagnostics: list[Diagnostic], sources: dict[str, str]) -> str:
    split: dict[str, list[str]] = {}  # each file split once: output stays linear

    def lines(d: Diagnostic) -> list[str] | None:
        if d.span is None or d.span.file not in sources:
            return None
        if d.span.file not in split:
            split[d.span.file] = split_lines(sources[d.span.file])
        return split[d.span.file]

    return "\n\n".join(d.render(lines=lines(d)) for d in diagnostics)


_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(source: str) -> list[str]:
    """The lines of a spec as editors number them: only \\n, \\r\\n and \\r end a line
    (str.splitlines also breaks at \\x0c, \\x85, \\u2028 and others, which editors show
    inside a line). A leading byte-order mark is not part of the text.

    >>> split_lines("a\\x0cb\\r\\nc\\rd\\u2028e\\n")
    ['a\\x0cb', 'c', 'd\\u2028e']
    """
    if source.startswith("\ufeff"):
        source = source[1:]
    lines = _LINE_END.split(source)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def did_you_mean(word: str, choices, *, what: str = "") -> str | None:
    """A help line naming the closest known word, or None.

    Case is ignored (`Relu` is relu, not elu); a dict of choices maps the spelling compared
    to the one shown.

    >>> did_you_mean("maxpool", ["maxpool2d", "avgpool2d"])
    "did you mean 'maxpool2d'?"
    >>> did_you_mean("Relu", ["elu", "relu"])
    "did you mean 'relu'?"
    >>> did_you_mean("maxpool", ["maxpool1d", "maxpool2d", "maxpool3d"])
    "did you mean 'maxpool2d'?"
    """
    shown = choices if isinstance(choices, dict) else {c: c for c in choices}
    lower: dict[str, str] = {}
    for compared, name in shown.items():
        lower.setdefault(str(compared).lower(), name)
    key = word.lower()
    if key not in lower:
        # only words whose lengths allow a ratio >= 0.6 (2*min / sum): the same answer, and a
        # 500,000-letter word repeated 10,000 times costs nothing instead of hours
        fits = [c for c in lower if 0.6 * (len(key) + len(c)) <= 2 * min(len(key), len(c))]
        import difflib  # here, not above: a clean check never asks (its import costs start-up)

        close = fits and difflib.get_close_matches(key, fits, n=3, cutoff=0.6)
        if not close:
            return None
        # among equally close names, a map's kind (maxpool -> maxpool2d, not maxpool3d)
        def score(c: str) -> float:
            return difflib.SequenceMatcher(None, c, key).ratio()
        best = [c for c in close if score(c) == score(close[0])]
        key = next((c for c in best if c.endswith("2d")), close[0])
    return f"did you mean {what}'{lower[key]}'?"
