"""Diagnostics for CI: GitHub workflow commands (`check --format github`) and SARIF 2.1.0 for
code scanning (`check --format sarif`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from .diagnostics import Diagnostic

SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
INFORMATION_URI = "https://pypi.org/project/archgen/"


def _full_text(d: Diagnostic) -> str:
    """The message with its notes and help lines, as the text format shows them."""
    lines = [d.message]
    lines += [f"note: {note}" for note in d.notes]
    lines += [f"help: {help_}" for help_ in d.helps]
    return "\n".join(lines)


def relative_path(file: str, base: str | Path | None = None) -> str:
    """`file` relative to `base` (the current directory), with '/' separators; a file outside
    it keeps its absolute path.

    >>> relative_path("/repo/examples/a.cnn", "/repo")
    'examples/a.cnn'
    """
    if file.startswith("<"):  # <stdin>, <spec>
        return file
    base = Path(base) if base is not None else Path.cwd()
    path = Path(file)
    absolute = path if path.is_absolute() else base / path
    try:
        rel = os.path.relpath(absolute, base)
    except ValueError:  # another drive on Windows
        return absolute.as_posix()
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return Path(os.path.normpath(absolute)).as_posix()
    return Path(rel).as_posix()


# ---------------------------------------------------------------------------------------------
# GitHub workflow commands


def escape_data(text: str) -> str:
    """A workflow command's message: '%', CR and LF are escaped (as @actions/core does).

    >>> escape_data("50% of\\nthe map")
    '50%25 of%0Athe map'
    """
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value: as a message, and ':' and ',' too, which separate properties.

    >>> escape_property("a:b,c.cnn")
    'a%3Ab%2Cc.cnn'
    """
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(d: Diagnostic, file: str, base: str | Path | None = None) -> str:
    """`::error file=F,line=L,col=C,endLine=L,endColumn=E,title=archgen CODE::message`.

    GitHub's columns are 1-based and endColumn is the last column of the range (inclusive).
    """
    props = {"file": relative_path(d.span.file if d.span else file, base)}
    span = d.span
    if span is not None:
        props.update(line=span.line, col=span.column, endLine=span.line,
                     endColumn=max(span.column, span.end_column - 1))
    props["title"] = f"archgen {d.code}"
    head = ",".join(f"{key}={escape_property(str(value))}" for key, value in props.items())
    return f"::{'error' if d.is_error else 'warning'} {head}::{escape_data(_full_text(d))}"


def github_annotations(results, base: str | Path | None = None) -> str:
    """`results`: (file, diagnostics) pairs; one workflow command per diagnostic."""
    return "\n".join(github_command(d, file, base) for file, diags in results for d in diags)


# ---------------------------------------------------------------------------------------------
# SARIF 2.1.0


def sarif_rules() -> list[dict]:
    """One reportingDescriptor per code of archgen/codes.py."""
    from .codes import CODES
    rules = []
    for code, (title, text) in CODES.items():
        level = "warning" if code.startswith("W") else "error"
        body = text.strip("\n")
        rules.append({
            "id": code,
            "name": "".join(w.capitalize() for w in re.findall(r"[A-Za-z0-9]+", title)),
            "shortDescription": {"text": title},
            "fullDescription": {"text": body.split("\n\n")[0].replace("\n", " ")},
            "help": {"text": f"{body}\n\n`archgen explain {code}` shows this text."},
            "defaultConfiguration": {"level": level},
            "properties": {"tags": [level]},
        })
    return rules


def sarif_log(results, *, version: str, base: str | Path | None = None) -> dict:
    """A SARIF 2.1.0 log with one run. `results`: (file, diagnostics) pairs. Artifact URIs are
    relative to `base` (the current directory), resolved against the uriBaseId %SRCROOT%."""
    base = Path(base) if base is not None else Path.cwd()
    rules = sarif_rules()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    sarif_results = []
    for file, diags in results:
        for d in diags:
            result = {
                "ruleId": d.code,
                "level": "error" if d.is_error else "warning",
                "message": {"text": _full_text(d)},
                "locations": [_location(d, file, base)],
            }
            if d.code in index:
                result["ruleIndex"] = index[d.code]
            sarif_results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "archgen",
                "version": version,
                "semanticVersion": version,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": base.resolve().as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": sarif_results,
        }],
    }


def _location(d: Diagnostic, file: str, base: Path) -> dict:
    path = relative_path(d.span.file if d.span else file, base)
    if Path(path).is_absolute():
        artifact = {"uri": Path(path).as_uri()}
    else:
        artifact = {"uri": quote(path), "uriBaseId": "%SRCROOT%"}
    physical: dict = {"artifactLocation": artifact}
    if d.span is not None:
        physical["region"] = {
            "startLine": d.span.line,
            "startColumn": d.span.column,
            "endLine": d.span.line,
            "endColumn": max(d.span.end_column, d.span.column + 1),  # exclusive, as in SARIF
        }
    return {"physicalLocation": physical}
