"""A seeded mutation fuzzer over the example specs, shared by tests/test_fuzz.py (a bounded run
in the suite) and bench/bench_fuzz.py (the figures in README, "Reliability").

Each mutator takes a random generator and a spec's text and returns a mutant; `run_case`
checks one mutant in-process the way `archgen check`, `--format json`, `summary` and `compile`
would, and returns what went wrong (None when nothing did).
"""

from __future__ import annotations

import json
import random
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import archgen
from archgen.diagnostics import SpecError, render_all, split_lines
from archgen.layers import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "examples").glob("*.cnn")) + sorted((ROOT / "examples/errors").glob("*.cnn"))

# Characters that break naive tools: line breaks str.splitlines knows but editors do not, a
# BOM, NUL, tabs, combining marks, right-to-left, astral-plane characters, quotes.
ODD = ["\x0c", "\x0b", "\x85", "\u2028", "\u2029", "\x1c", "\ufeff", "\x00", "\t", "\r", "\r\n",
       "\u0301", "\u202e", "\U0001f600", "é", "ß", "\\", '"', "'", '"""', "#", ":", "(", ")",
       "[", "]", ",", "=", "+", "-", "*", "/", "//", "%", "<", "==", " ", "\n"]
NUMBERS = ["0", "-1", "1", "2", "3", "16777217", "1000000000", "4294967297",
           "9223372036854775807", "9223372036854775808", "99999999999999999999", "9" * 400,
           "1" * 5000, "1e308", "1e999", "0.0", "1.5", "-0.0", "1e-320"]
KEYWORD_LINES = ["add:", "concat:", "branch:", "repeat 3:", "repeat 0:", "repeat 1000000000:",
                 "repeat 16777217: relu()", "if true:", "if x == 1:", "elif false:", "else:",
                 "block b(c):", "b(16)", "network Fuzz", "input [3, 8, 8]", "input [1]",
                 "identity()", "g:", "repeat 2 first(stride=2): relu()"]

# codes the targets (compile, export, parity) give for a spec that checks clean
TARGET_CODES = {"E415"}

_INT = re.compile(r"(?<![\w.])\d+(?![\w.])")


def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete_line(rng, text, corpus):
    lines = _lines(text)
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def duplicate_line(rng, text, corpus):
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines[i:i] = [lines[i]] * rng.choice([1, 2, 50])
    return "\n".join(lines)


def swap_lines(rng, text, corpus):
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def delete_span(rng, text, corpus):
    i = rng.randrange(len(text) + 1)
    return text[:i] + text[i + rng.randrange(1, 40):]


def insert_odd(rng, text, corpus):
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(ODD) + text[i:]


def flip_char(rng, text, corpus):
    i = rng.randrange(len(text))
    return text[:i] + chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) + \
        text[i + 1:]


def huge_number(rng, text, corpus):
    spots = list(_INT.finditer(text))
    if not spots:
        return text + rng.choice(NUMBERS)
    m = rng.choice(spots)
    return text[:m.start()] + rng.choice(NUMBERS) + text[m.end():]


def deep_expression(rng, text, corpus):
    spots = list(_INT.finditer(text)) or [re.match("", text)]
    m = rng.choice(spots)
    k = rng.choice([16, 31, 32, 33, 110, 1000, 20000])
    value = m.group() or "1"
    deep = rng.choice([
        "(" * k + value + ")" * k,
        "-" * k + value,
        "not " * k + value,
        " + ".join([value] * k),
        " * ".join([value] * min(k, 500)),
        "(" * k,
        "(1, " * k + value + ")" * k,
    ])
    return text[:m.start()] + deep + text[m.end():]


def deep_indent(rng, text, corpus):
    lines = _lines(text)
    i = rng.randrange(len(lines) + 1)
    k = rng.choice([8, 31, 32, 33, 250, 330])
    kind = rng.choice(["g", "add", "concat", "repeat 1", "if true"])
    header = [("    " * d) + (f"{kind}{d}:" if kind == "g" else f"{kind}:") for d in range(k)]
    body = ["    " * k + "identity()"] * (2 if kind in ("add", "concat") else 1)
    return "\n".join(lines[:i] + header + body + lines[i:])


def indent_shift(rng, text, corpus):
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines[i] = rng.choice(["    ", "  ", "\t", "        "]) + lines[i] if rng.random() < 0.6 \
        else lines[i].lstrip()
    return "\n".join(lines)


def keyword_line(rng, text, corpus):
    lines = _lines(text)
    i = rng.randrange(len(lines) + 1)
    indent = re.match(r"[ \t]*", lines[i] if i < len(lines) else "").group()
    lines.insert(i, indent + rng.choice(KEYWORD_LINES))
    return "\n".join(lines)


def rename_layer(rng, text, corpus):
    calls = list(re.finditer(r"\b([a-z_][a-z_0-9]*)\(", text))
    if not calls:
        return text
    m = rng.choice(calls)
    new = rng.choice(sorted(REGISTRY) + ["Conv2D", "maxpool", "x" * 1000, "_", "b"])
    return text[:m.start(1)] + new + text[m.end(1):]


def many_args(rng, text, corpus):
    calls = list(re.finditer(r"\)", text))
    if not calls:
        return text
    m = rng.choice(calls)
    k = rng.choice([10, 60, 300, 3000])
    extra = rng.choice(["1", "foo=1", "padding=1", "x"])
    return text[:m.start()] + (", " + extra) * k + text[m.start():]


def elif_chain(rng, text, corpus):
    k = rng.choice([3, 100, 500])
    chain = ["block fz(x):", "    if x == 0:", "        relu()"]
    for i in range(1, k):
        chain += [f"    elif x == {i}:", "        identity()"]
    chain += ["    else:", "        relu()"]
    return "\n".join(chain) + "\n" + text + f"\nfz({rng.randrange(k + 2)})\n"


def repeat_bomb(rng, text, corpus):
    lines = _lines(text)
    i = rng.randrange(len(lines) + 1)
    # 30**3 copies are accepted and checked in full; 2,000,000 is refused before expanding
    # (MAX_LAYERS admits 1,000,000 layers, which each case would take seconds to check)
    n = rng.choice(["30", "2000000", "1000000000", "0", "x"])
    depth = rng.choice([1, 3])
    block = [("    " * d) + f"repeat {n}:" for d in range(depth)] + ["    " * depth + "relu()"]
    return "\n".join(lines[:i] + block + lines[i:])


def splice(rng, text, corpus):
    other = _lines(rng.choice(corpus))
    lines = _lines(text)
    a = rng.randrange(len(other))
    i = rng.randrange(len(lines) + 1)
    return "\n".join(lines[:i] + other[a:a + rng.randrange(1, 8)] + lines[i:])


_INPUT = re.compile(r"input \[([^\]]*)\]")


def symbolic_input(rng, text, corpus):
    """Some of the input's sizes become names (`input [3, H, W]`), as a symbolic spec has them."""
    def swap(m):
        sizes = [s.strip() for s in m.group(1).split(",")]
        names = ["H", "W", "D", "L", "C", "x", "N"]
        sizes = [rng.choice(names) if rng.random() < 0.6 else s for s in sizes]
        return "input [" + ", ".join(sizes) + "]"
    return _INPUT.sub(swap, text, count=1)


MUTATORS = {f.__name__: f for f in (
    delete_line, duplicate_line, swap_lines, delete_span, insert_odd, flip_char, huge_number,
    deep_expression, deep_indent, indent_shift, keyword_line, rename_layer, many_args,
    elif_chain, repeat_bomb, splice, symbolic_input)}


def mutants(seed: int, count: int, corpus_files=CORPUS):
    """(category, text) for `count` mutants, deterministic for a seed: each applies 1 to 3
    mutations of one category to one example."""
    rng = random.Random(seed)
    corpus = [p.read_text(encoding="utf-8") for p in corpus_files]
    names = sorted(MUTATORS)
    for i in range(count):
        name = names[i % len(names)]
        text = rng.choice(corpus)
        for _ in range(rng.choice([1, 1, 2, 3])):
            text = MUTATORS[name](rng, text, corpus)
        yield name, text


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raises Hang in the main thread after `seconds` (SIGALRM)."""
    def on_alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _no_constants(name):
    raise ValueError(f"not strict JSON: {name}")


def run_case(text: str, *, compile_accepted: bool = True) -> str | None:
    """What is wrong with how archgen handles `text`, or None. Exceptions are part of the
    answer, not raised."""
    file = "fuzz.cnn"
    try:
        arch = archgen.parse(text, file)
        diags = arch.check()
        doc = arch.to_json()
        dumped = json.dumps(doc, allow_nan=False)
        if json.loads(dumped, parse_constant=_no_constants) != doc:
            return "the JSON report does not round-trip"
        render_all(diags, {file: text})
        lines = split_lines(text)
        for d in diags:
            if d.span is None:
                return f"{d.code} has no location: {d.message[:200]}"
            s = d.span
            if s.file != file or not 1 <= s.line <= len(lines):
                return f"{d.code} points at line {s.line} of {len(lines)}: {d.message[:200]}"
            if not 1 <= s.column <= len(lines[s.line - 1]) + 1 or s.end_column < s.column:
                return (f"{d.code} points at column {s.column}-{s.end_column} of a line of "
                        f"{len(lines[s.line - 1])}: {d.message[:200]}")
        if arch.ok:
            arch.summary()
            if compile_accepted:
                try:
                    arch.to_torch_source()
                except SpecError as e:  # a target's refusal of a clean spec: located, coded
                    if any(d.code not in TARGET_CODES or d.span is None for d in e.diagnostics):
                        return f"the target refused with {[d.code for d in e.diagnostics]}"
    except Hang:
        raise
    except RecursionError:
        return "RecursionError"
    except Exception as e:  # noqa: BLE001  (any escape is the finding)
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None
