"""Benchmark of `archgen diagram` (not a test: run by hand, figures go in the README).

    python bench/bench_diagram.py [--runs 21]

Whole-process time of `archgen diagram examples/densenet121.cnn` (SVG, DOT, Mermaid; folded
and --expand) as `pip install .` leaves archgen (installed into a temporary folder), against
`python -c pass` and `archgen check` on the same spec; goal: under 300 ms. The commands run
interleaved, round after round, so that a busy machine slows them alike; each is reported as
the median wall time and the median CPU time (user + system) of its process. Then the
in-process time of the drawing alone (the checked network given). Medians of --runs rounds,
measured in one run of this script.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_check import installed_archgen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPEC = str(ROOT / "examples" / "densenet121.cnn")


def interleaved(commands: dict[str, list[str]], runs: int, env: dict) -> dict:
    """label -> (median wall ms, median CPU ms), the commands taking turns in every round."""
    wall: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    for round_ in range(runs + 1):  # round 0 warms the caches and writes __pycache__
        for label, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                           check=True)
            elapsed = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if round_:
                wall[label].append(elapsed * 1e3)
                cpu[label].append((after.ru_utime - before.ru_utime
                                   + after.ru_stime - before.ru_stime) * 1e3)
    return {label: (statistics.median(wall[label]), statistics.median(cpu[label]))
            for label in commands}


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
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "archgen check densenet121.cnn": [*archgen_cmd, "check", SPEC]}
    for extra, label in [([], "-o net.svg"), (["--expand"], "-o net.svg --expand"),
                         (["--to-scale"], "-o net.svg --to-scale"),
                         (["--format", "dot"], "--format dot"),
                         (["--format", "mermaid"], "--format mermaid")]:
        commands[f"archgen diagram densenet121.cnn {label}"] = [
            *archgen_cmd, "diagram", SPEC, "-o", out, *extra]
    results = interleaved(commands, args.runs, env)
    print(f"whole process, medians of {args.runs} interleaved rounds "
          "(archgen as `pip install .` leaves it)")
    print("| command | wall | CPU (user + system) |\n| --- | ---: | ---: |")
    for label, (wall, cpu) in results.items():
        print(f"| `{label}` | {wall:,.0f} ms | {cpu:,.0f} ms |")
    print()
    for label, kwargs in [("svg", {}), ("svg --expand", {"expand": True}),
                          ("dot", {"fmt": "dot"}), ("mermaid", {"fmt": "mermaid"})]:
        print(f"in-process drawing of the checked DenseNet-121, {label}: "
              f"{in_process_ms(args.runs, **kwargs):.1f} ms")


if __name__ == "__main__":
    main()
