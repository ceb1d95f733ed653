"""The static path at scale: `check --format json` and `summary` written as they are made.

The JSON of a million layers must never exist whole in memory (README, "Reliability"): its
layer records are made one at a time while they are written (report.write_json), and the text
is exactly json.dumps(docs, indent=2)'s. Sizes here stay small; bench/bench_static.py measures
the scaling itself.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen.cli import main
from archgen.report import Lazy, json_text, write_json

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class _Int(int):
    pass


class _Float(float):
    pass


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                     st.integers().map(_Int), st.floats().map(_Float), st.text(max_size=8))
_keys = st.one_of(st.text(max_size=6), st.integers(), st.floats(), st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(_values, st.sampled_from([0, 1, 2, 4]))
def test_write_json_is_json_dumps_indented(value, indent):
    """Every JSON value (NaN and infinities as json writes them, bool and int subclasses,
    non-string keys) is written exactly as json.dumps(value, indent=indent) writes it."""
    assert json_text(value, indent=indent) == json.dumps(value, indent=indent)


def test_lazy_lists_are_written_as_lists_and_made_while_writing():
    made = []

    def items():
        for i in range(3):
            made.append(i)
            yield {"i": i, "x": [i, 0.5]}

    doc = {"a": Lazy(items), "b": Lazy(lambda: iter(())), "c": [Lazy(lambda: iter([1]))]}
    pieces = []

    def write(text):
        pieces.append((text, len(made)))

    write_json(doc, write, buffer=1)
    text = "".join(t for t, _ in pieces)
    assert text == json.dumps({"a": list(items()), "b": [], "c": [[1]]}, indent=2)
    assert pieces[0][1] == 0  # the head was written before any record was made
    assert [n for _, n in pieces if n] == sorted(n for _, n in pieces if n)


def test_write_json_refuses_what_json_refuses():
    for bad in ({"a": object()}, {(1, 2): 3}, [{1, 2}]):
        with pytest.raises(TypeError):
            json_text(bad)


@pytest.mark.parametrize("args", [
    [str(p) for p in sorted(EXAMPLES.glob("*.cnn"))],
    [str(p) for p in sorted((EXAMPLES / "errors").glob("E4*.cnn"))],
    ["--input", "3,H,W", str(EXAMPLES / "resnet18.cnn"), str(EXAMPLES / "unet_small.cnn")],
    ["--batch", "7", "--dtype", "float16", str(EXAMPLES / "vgg16.cnn")],
])
def test_check_json_streams_the_text_of_the_whole_document(args):
    """The streamed output is json.dumps of the documents that to_json() builds whole."""
    result = CliRunner().invoke(main, ["check", "--format", "json", *args])
    files = [a for a in args if a.endswith(".cnn")]
    docs = []
    for f in files:
        arch = archgen.load(f)
        if "--input" in args:
            arch.input_override = (3, "H", "W")
        if "--batch" in args:
            arch.batch, arch.dtype = 7, "float16"
        docs.append(arch.to_json())
    assert result.output == json.dumps(docs, indent=2) + "\n"


def _repeat_spec(n: int) -> str:
    calls = ("conv2d(4, 3, padding=1)\n", "batchnorm2d()\n", "relu()\n")
    return (f"network Flat\ninput [4, 8, 8]\nrepeat {n // 3}:\n"
            + "".join("    " + c for c in calls))


def test_json_of_a_large_network_costs_no_memory_per_layer_beyond_its_figures():
    """Writing the JSON keeps no record: its peak beyond the checked network is the memory
    figures' (~0.6 KB a layer), not the ~7.5 KB a layer of the whole document and its text
    (which set the layer limit at 100,000 before)."""
    n = 1500
    arch = archgen.parse(_repeat_spec(n))
    assert arch.ok
    size = 0

    def write(text):
        nonlocal size
        size += len(text)

    tracemalloc.start()
    try:
        write_json([arch.to_json(lazy=True)], write, level=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 700 * n  # every record was written
    assert peak / n < 1500, peak / n


def test_summary_is_the_same_whether_its_rows_are_kept_or_made_twice(monkeypatch):
    """A table of more than KEEP_ROWS rows is made twice (widths, then lines) instead of kept;
    `archgen summary` writes the same text as Architecture.summary()."""
    from archgen import summary as summary_module
    arch = archgen.load(EXAMPLES / "resnet50.cnn")
    kept = [arch.summary(collapse=c) for c in (False, True)]
    monkeypatch.setattr(summary_module, "KEEP_ROWS", 3)
    assert [arch.summary(collapse=c) for c in (False, True)] == kept
    for collapse, text in zip((False, True), kept):
        args = ["summary", str(EXAMPLES / "resnet50.cnn")] + ["--collapse"] * collapse
        assert CliRunner().invoke(main, args).output == text + "\n"
