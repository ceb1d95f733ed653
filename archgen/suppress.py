"""Suppressing warnings, as ruff and mypy do.

Three sources, applied in one place (`Architecture.check()`, which every command and output
format reads):

- `[tool.archgen]` in the nearest pyproject.toml above the spec that has that table:
  `ignore = ["W504"]`, `strict = true`;
- `archgen check --ignore W504,W50` on the command line, added to the file's list (and
  `--strict/--no-strict`, which wins over the file's `strict`);
- a comment on the line a diagnostic points at: `# archgen: ignore[W504]` (several codes comma-
  separated), or a bare `# archgen: ignore` for every warning on that line, as `# noqa` does.

A code may be given by a prefix: `W50` is W500 to W509. Only warnings can be suppressed: an
error means the network cannot be built as written, and hiding it would let compile or export
go on with a broken network (or fail later, without the reason). `--ignore E401` and
`ignore = ["E401"]` are refused (exit 2); a comment that names an error code, an unknown code
or no known directive, or stands on a line of its own, is itself an error (E206), so a typo or
a misplaced comment never silently does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from .diagnostics import Diagnostic, Span, split_lines
from .record import record


class ConfigError(ValueError):
    """A bad `--ignore` value or `[tool.archgen]` table; the message is one line."""


@record
class Settings:
    ignore: tuple = ()  # warning codes or prefixes, upper case
    strict: bool = False
    path: str | None = None  # the pyproject.toml they came from


def _known_codes() -> list[str]:
    from .codes import CODES
    return list(CODES)


def parse_codes(values, where: str) -> tuple[str, ...]:
    """Codes and prefixes from `values` (each may hold several, comma-separated), checked.

    >>> parse_codes(["W504", "w50, W502"], "--ignore")
    ('W504', 'W50', 'W502')
    """
    out: list[str] = []
    known = _known_codes() if values else []
    for value in values:
        for part in str(value).split(","):
            code = part.strip().upper()
            if not code:
                continue
            matches = [c for c in known if c.startswith(code)]
            if not matches:
                raise ConfigError(f"{where}: unknown code {part.strip()!r} "
                                  "(`archgen explain` lists the codes)")
            errors = [c for c in matches if not c.startswith("W")]
            if errors:
                what = (f"{code} is an error" if errors == [code] else
                        f"{part.strip()} names errors ({', '.join(errors[:3])}"
                        f"{', ...' if len(errors) > 3 else ''})")
                raise ConfigError(f"{where}: {what}: errors cannot be ignored, a network with "
                                  "errors cannot be built; only warnings (W...) can")
            if code not in out:
                out.append(code)
    return tuple(out)


def is_ignored(code: str, prefixes) -> bool:
    return any(code.startswith(p) for p in prefixes)


# ---------------------------------------------------------------------------------------------
# [tool.archgen] in pyproject.toml


def find_settings(directory: str | Path) -> Settings:
    """The `[tool.archgen]` settings of the nearest pyproject.toml in `directory` or above it
    that has such a table (a pyproject.toml without one is passed over, as ruff does)."""
    here = Path(directory).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        try:
            text = candidate.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
            continue
        except UnicodeDecodeError:
            raise ConfigError(f"{candidate}: not a UTF-8 text file") from None
        if not _MAY_HAVE_TABLE.search(text):  # spares tomllib (~10 ms) in most projects
            continue
        table = _archgen_table(text, candidate)
        if table is not None:
            return _settings_from(table, candidate)
    return Settings()


# Every way TOML can spell a tool.archgen table: [tool.archgen], [tool."archgen".x], the dotted
# key tool.archgen.ignore = ..., archgen = {...} inside [tool], tool = {archgen = ...}.
_MAY_HAVE_TABLE = re.compile(
    r"""^\s*\[\s*tool\s*\.\s*["']?archgen["']?\s*[\].]"""
    r"""|^\s*tool\s*\.\s*["']?archgen["']?\s*[.=]"""
    r"""|^\s*["']?archgen["']?\s*=\s*\{"""
    r"""|^\s*tool\s*=\s*\{.*archgen""", re.M)


def _archgen_table(text: str, path: Path) -> dict | None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    tool = data.get("tool")
    table = tool.get("archgen") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: tool.archgen must be a table")
    return table


def _settings_from(table: dict, path: Path) -> Settings:
    where = f"{path}: [tool.archgen]"
    unknown = sorted(set(table) - {"ignore", "strict"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: ignore, strict)")
    ignore = table.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(c, str) for c in ignore):
        raise ConfigError(f'{where}: ignore must be a list of codes, e.g. ignore = ["W504"]')
    strict = table.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"{where}: strict must be true or false")
    return Settings(parse_codes(ignore, f"{where} ignore"), strict, str(path))


# ---------------------------------------------------------------------------------------------
# Inline comments

# Everything before the comment: code and quoted strings (a '#' inside quotes starts nothing).
_CODE = re.compile(r"""(?:[^#"'\n]|"[^"\n]*"|'[^'\n]*')*""")
_DIRECTIVE = re.compile(r"#\s*archgen\s*:\s*")
_IGNORE = re.compile(r"ignore\b(?:\[(?P<codes>[^\]]*)\])?")

ALL = "*"


def comment_column(line: str) -> int | None:
    """0-based index of the '#' that starts the line's comment, or None.

    >>> comment_column('pad2d(1, mode="#")  # why')
    20
    """
    end = _CODE.match(line).end()
    return end if end < len(line) and line[end] == "#" else None


def inline_ignores(source: str, file: str) -> tuple[dict[int, set[str]], list[Diagnostic]]:
    """line -> codes ignored there ({ALL} for a bare `ignore`), and an E206 per bad comment."""
    ignores: dict[int, set[str]] = {}
    diags: list[Diagnostic] = []
    if "archgen" not in source:
        return ignores, diags
    known = _known_codes()
    for number, line in enumerate(split_lines(source), start=1):
        if "archgen" not in line:
            continue
        col = comment_column(line)
        if col is None:
            continue
        for m in _DIRECTIVE.finditer(line, col):
            span = Span(file, number, m.start() + 1, len(line.rstrip()) + 1)
            ig = _IGNORE.match(line, m.end())
            own_line = not line[:col].strip()
            if ig is None and own_line:
                continue  # prose in a comment line ("# archgen: a ResNet for ..."), no directive
            if ig is None:
                word = line[m.end():].split(maxsplit=1)[0] if line[m.end():].strip() else ""
                diags.append(_bad(span, f"unknown archgen directive {word!r}" if word else
                                  "'# archgen:' without a directive"))
                continue
            span = Span(file, number, m.start() + 1, ig.end() + 1)
            if own_line:  # a comment line: there is nothing on it to silence
                diags.append(_bad(span, "'# archgen: ignore' on a line of its own silences "
                                  "nothing", helps=["put it at the end of the line the "
                                                    "warning points at: linear(4096)  "
                                                    "# archgen: ignore[W504]"]))
                continue
            if ig.group("codes") is None:
                if line[ig.end():ig.end() + 1] == "[":
                    diags.append(_bad(span, "unclosed '[' in '# archgen: ignore['"))
                    continue
                ignores.setdefault(number, set()).add(ALL)
                continue
            codes = [c.strip() for c in ig.group("codes").split(",")]
            if not any(codes):
                diags.append(_bad(span, "'# archgen: ignore[]' names no code"))
                continue
            for code in codes:
                upper = code.upper()
                matches = [c for c in known if c.startswith(upper)] if upper else []
                if not matches:
                    diags.append(_bad(span, f"unknown code {code!r} in '# archgen: ignore[...]'"))
                elif any(not c.startswith("W") for c in matches):
                    diags.append(_bad(
                        span, f"{code} is an error: errors cannot be ignored",
                        notes=["an error means the network cannot be built as written"],
                        helps=[f"fix the error (`archgen explain {matches[0]}` explains it); "
                               "only warnings (W...) can be ignored"]))
                else:
                    ignores.setdefault(number, set()).add(upper)
    return ignores, diags


def _bad(span: Span, message: str, notes=(), helps=None) -> Diagnostic:
    return Diagnostic("error", "E206", message, span, notes=list(notes), helps=list(helps or [
        "write # archgen: ignore[W504] (warning codes, comma-separated) or # archgen: ignore"]))


def apply(diagnostics, source: str, file: str, ignore=()) -> list[Diagnostic]:
    """The diagnostics that remain after `ignore` (codes or prefixes) and the inline comments,
    plus an E206 error for each bad suppression comment. Errors are never removed."""
    inline, bad = inline_ignores(source, file)
    kept = []
    for d in diagnostics:
        if not d.is_error:
            if is_ignored(d.code, ignore):
                continue
            here = inline.get(d.span.line) if d.span is not None else None
            if here and (ALL in here or is_ignored(d.code, here)):
                continue
        kept.append(d)
    return kept + bad
