"""Mutation fuzz campaign over every example: the figures in README, "Reliability".

    python bench/bench_fuzz.py [--cases 4000] [--seed 2026] [--limit 20]

Runs the mutators of tests/fuzzing.py (a fresh seed, not the test suite's) and checks each
mutant in-process as `archgen check --format json`, `summary` and `compile` would. Per
category: cases, crashes (an exception escaped, invalid JSON or a diagnostic outside the
file), hangs (no result within --limit seconds), the slowest case and the peak memory one
case allocated (tracemalloc). Prints a Markdown table; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzzing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--limit", type=float, default=20.0, help="seconds before a hang")
    opts = parser.parse_args()

    stats = defaultdict(lambda: {"cases": 0, "crashes": 0, "hangs": 0, "accepted": 0,
                                 "slowest": 0.0, "peak": 0})
    examples = []
    tracemalloc.start()
    start = time.perf_counter()
    for category, text in fuzzing.mutants(opts.seed, opts.cases):
        s = stats[category]
        s["cases"] += 1
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        try:
            with fuzzing.time_limit(opts.limit):
                problem = fuzzing.run_case(text)
        except fuzzing.Hang as e:
            problem, key = f"hang: {e}", "hangs"
        else:
            key = "crashes"
        s["slowest"] = max(s["slowest"], time.perf_counter() - t0)
        s["peak"] = max(s["peak"], tracemalloc.get_traced_memory()[1])
        if problem:
            s[key] += 1
            examples.append((category, problem, text))
    elapsed = time.perf_counter() - start
    tracemalloc.stop()

    print(f"{opts.cases:,} mutants of {len(fuzzing.CORPUS)} examples, seed {opts.seed}, "
          f"{elapsed:.0f} s in all (with tracemalloc)\n")
    print("| category | cases | crashes | hangs | slowest case | peak memory of one case |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total = defaultdict(float)
    for category in sorted(stats):
        s = stats[category]
        print(f"| {category} | {s['cases']:,} | {s['crashes']} | {s['hangs']} | "
              f"{s['slowest']:.2f} s | {s['peak'] / 2**20:.1f} MiB |")
        for k in ("cases", "crashes", "hangs"):
            total[k] += s[k]
        total["slowest"] = max(total["slowest"], s["slowest"])
        total["peak"] = max(total["peak"], s["peak"])
    print(f"| all | {int(total['cases']):,} | {int(total['crashes'])} | {int(total['hangs'])} | "
          f"{total['slowest']:.2f} s | {total['peak'] / 2**20:.1f} MiB |")
    for category, problem, text in examples[:5]:
        print(f"\n{category}: {problem}\n{text[:2000]}")
    return 1 if examples else 0


if __name__ == "__main__":
    sys.exit(main())
