"""A seeded mutation fuzz run over every example (tests/fuzzing.py): no mutant may make archgen
raise, hang, print non-strict JSON or point a diagnostic outside the file; every accepted
mutant compiles to PyTorch source. The crashes earlier runs found are kept as regression tests
in tests/test_trust_frontend.py. `python bench/bench_fuzz.py` runs longer campaigns.
"""

from __future__ import annotations

import fuzzing
import pytest

CASES = 2000  # about 20 s on one core
SEED = 8


def test_the_corpus_is_every_example():
    names = {p.name for p in fuzzing.CORPUS}
    assert {"seed_cnn.cnn", "resnet50.cnn", "E100_missing_comma.cnn"} <= names
    assert len(names) >= 50


def test_mutants_are_deterministic_and_cover_every_mutator():
    first = list(fuzzing.mutants(SEED, 40))
    assert first == list(fuzzing.mutants(SEED, 40))
    assert {c for c, _ in first} == set(fuzzing.MUTATORS)
    assert sum(t not in {p.read_text() for p in fuzzing.CORPUS} for _, t in first) >= 30


def test_run_case_reports_what_a_broken_archgen_would_do(monkeypatch):
    """The oracle itself can fail: an exception, a bad location and non-strict JSON count."""
    import archgen.api
    assert fuzzing.run_case("input [3, 8, 8]\nrelu()\n") is None
    monkeypatch.setattr(archgen.api.Architecture, "summary",
                        lambda self, **k: 1 / 0)
    assert fuzzing.run_case("input [3, 8, 8]\nrelu()\n").startswith("ZeroDivisionError")
    monkeypatch.undo()
    monkeypatch.setattr(archgen.api.Architecture, "to_json",
                        lambda self: {"x": float("nan")})
    assert "ValueError" in fuzzing.run_case("input [3, 8, 8]\nrelu()\n")


def test_mutation_fuzz_finds_no_crash_hang_bad_json_or_bad_location():
    failures = []
    for i, (category, text) in enumerate(fuzzing.mutants(SEED, CASES)):
        try:
            with fuzzing.time_limit(30):
                problem = fuzzing.run_case(text)
        except fuzzing.Hang as e:
            problem = f"hang: {e}"
        if problem:
            failures.append((i, category, problem, text))
    if failures:
        i, category, problem, text = failures[0]
        pytest.fail(f"{len(failures)} of {CASES} mutants fail; the first, case {i} "
                    f"({category}): {problem}\n--- spec ---\n{text[:3000]}")


def test_symbolic_resnet18_reports_in_bounded_time():
    text = (fuzzing.ROOT / "examples/resnet18.cnn").read_text().replace(
        "input [3, 224, 224]", "input [3, H, W]")
    with fuzzing.time_limit(10):
        assert fuzzing.run_case(text) is None
