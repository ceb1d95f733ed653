"""Benchmark of `archgen diagram` (not a test: run by hand, figures go in the README).

    python bench/bench_diagram.py [--runs 21]

Whole-process time of `archgen diagram examples/densenet121.cnn` (SVG, DOT, Mermaid; folded
and --expand) as `pip install .` leaves archgen (installed into a temporary folder), against
`python -c pass` and `archgen check` on the same spec; goal: under 300 ms. Then the in-process
time of the drawing alone (the checked network given). Medians of --runs runs, measured in one
run of this script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_check import ENV, installed_archgen, median_ms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = str(ROOT / "examples" / "densenet121.cnn")


def in_process_ms(runs: int, **kwargs) -> float:
    import archgen
    from archgen.diagram import render_diagram
    net = archgen.load(SPEC).network
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        render_diagram(net, **kwargs)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    archgen_cmd, env = installed_archgen()
    out = str(Path(tempfile.mkdtemp(prefix="archgen-diagram-")) / "net")
    floor = median_ms([sys.executable, "-c", "pass"], args.runs, ENV)
    rows = [("python -c pass", floor),
            ("archgen check densenet121.cnn",
             median_ms([*archgen_cmd, "check", SPEC], args.runs, env))]
    for extra, label in [([], "svg"), (["--expand"], "svg --expand"),
                         (["--to-scale"], "svg --to-scale"),
                         (["--format", "dot"], "dot"), (["--format", "mermaid"], "mermaid")]:
        cmd = [*archgen_cmd, "diagram", SPEC, "-o", out, *extra]
        rows.append((f"archgen diagram densenet121.cnn {label}", median_ms(cmd, args.runs, env)))
    print(f"whole process, median of {args.runs} runs (archgen as `pip install .` leaves it)")
    print("| command | whole process | vs `python -c pass` |\n| --- | ---: | ---: |")
    for label, ms in rows:
        print(f"| `{label}` | {ms:,.0f} ms | {ms / floor:.1f}x |")
    print()
    for label, kwargs in [("svg", {}), ("svg --expand", {"expand": True}),
                          ("dot", {"fmt": "dot"}), ("mermaid", {"fmt": "mermaid"})]:
        print(f"in-process drawing of the checked DenseNet-121, {label}: "
              f"{in_process_ms(args.runs, **kwargs):.1f} ms")


if __name__ == "__main__":
    main()
