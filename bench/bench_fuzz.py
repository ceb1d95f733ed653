"""Mutation fuzz campaign over every example: the figures in README, "Reliability".

    python bench/bench_fuzz.py [--cases 4000] [--seed 2026] [--limit 60]
    python bench/bench_fuzz.py --reproductions

Runs the mutators of tests/fuzzing.py (a fresh seed, not the test suite's) and checks each
mutant in-process as `archgen check --format json`, `summary` and `compile` would. Per
category: cases, crashes (an exception escaped, invalid JSON or a diagnostic outside the
file), hangs (no result within --limit seconds), the slowest case and the peak memory one
case allocated (tracemalloc). Prints a Markdown table; exits 1 if anything failed.

--reproductions runs each input of issue 8 through `archgen check` in a process capped at a
2 GB address space, and reports its exit code, wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzzing  # noqa: E402


H = "input [3, 32, 32]\n"
REPRODUCTIONS = {
    "110 nested parentheses": H + "conv2d(" + "(" * 110 + "16" + ")" * 110 + ", 3)\n",
    "a 494-term sum": H + "block b(c):\n    conv2d(" + "+".join(["c"] * 494) + ", 3)\nb(1)\n",
    "330 nested groups": H + "".join("    " * i + f"g{i}:\n" for i in range(330))
    + "    " * 330 + "relu()\n",
    "a 2,000-branch elif chain": H + "block b(x):\n    if x == 0:\n        relu()\n"
    + "".join(f"    elif x == {i}:\n        relu()\n" for i in range(1, 2000))
    + "    else:\n        relu()\nb(1999)\n",
    "a 4,301-digit literal": H + "conv2d(" + "9" * 4301 + ", 3)\n",
    "stride 10**400": H + "conv2d(16, 3, stride=1" + "0" * 400 + ")\n",
    "padding=B / 3, B of 400 digits": H + "block b(B):\n    conv2d(16, 3, padding=B / 3)\n"
    "b(" + "9" * 400 + ")\n",
    "upsample by 1e300": H + "upsample(scale_factor=1e300)\n",
    "60 strides of 2**24 (receptive field)": "input [3, 8, 8]\n"
    + "conv2d(3, 1, stride=16777216)\n" * 60 + "conv2d(3, 3, padding=1)\n",
    "repeat 1000000000": H + "repeat 1000000000: relu()\n",
    "nested repeat 1000 x3": H + "repeat 1000:\n    repeat 1000:\n        repeat 1000:\n"
    "            relu()\n",
    "adaptive_avgpool2d(1000000000)": H + "adaptive_avgpool2d(1000000000)\n",
    "30,000 extra positional arguments": H + "relu(" + ", ".join(["1"] * 30_000) + ")\n",
    "a one-branch add:": H + "add:\n    relu()\n",
    "10**9-channel convs": H + "conv2d(1000000000, 1)\nconv2d(1000000000, 1)\n",
    "99,990 relu() (near the expansion limit)": H + "repeat 99990: relu()\n",
    "10,000 conv2d-relu pairs (near the limit)": H + "repeat 10000:\n    conv2d(3, 3, padding=1)\n"
    "    relu()\n",
}


def reproductions() -> int:
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    print("| input | exit | first diagnostic | wall time | peak memory |")
    print("| --- | ---: | --- | ---: | ---: |")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in REPRODUCTIONS.items():
            spec = Path(tmp) / "repro.cnn"
            spec.write_text(text, encoding="utf-8")
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "archgen.cli", "check", str(spec)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    preexec_fn=cap)
            out = proc.stdout.read().decode("utf-8", "replace")
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            code = os.waitstatus_to_exitcode(status)
            found = re.search(r"(?:error|warning)\[(\w+)\]", out)
            first = found.group(1) if found else "-"
            bad += "Traceback" in out or code not in (0, 1) or wall > 20
            print(f"| {name} | {code} | {first} | {wall:.2f} s | "
                  f"{usage.ru_maxrss / 1024:.0f} MiB |")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds before a hang")
    parser.add_argument("--reproductions", action="store_true")
    opts = parser.parse_args()
    if opts.reproductions:
        return reproductions()

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
