"""Benchmark of the static path's scaling (run by hand; not a test).

    python bench/bench_static.py [--runs 3] [--sizes 99,999,9999,27000]

Generated plain specs of N layers (conv2d, batchnorm2d, relu repeated) through check (parse +
check), summary, JSON (to_json + json.dumps) and compile (the PyTorch source), each size in a
fresh process, CPU time per stage (the machine is shared: CPU time is steadier than wall time),
median of --runs processes. Each size runs twice: as archgen does (the AST and IR frozen out
of the cyclic collector after checking, api._no_cyclic_gc) and with gc.freeze made a no-op
(the collector rescans them). The ratio column is the time over the previous size's, against
the ratio of the sizes: linear growth keeps the two equal.

The checker's limit on expansion (archgen/limits.py, MAX_EXPANDED: 100,000 steps; a statement,
an argument and a value computed each count) stops these specs at about 28,000 layers, so
1,000,000 layers are not measured: raising the limit would let an untrusted spec cost minutes
and gigabytes, which is what the limit is for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[3])
n, freeze = int(sys.argv[1]), sys.argv[2] == "1"
if not freeze:
    gc.freeze = lambda: None
import archgen
from archgen.emit_torch import render_torch
body = "".join(("conv2d(4, 3, padding=1)\n", "batchnorm2d()\n", "relu()\n")[i % 3]
               for i in range(n))
text = f"network Flat\ninput [4, 8, 8]\n{body}"
out = {}
t = time.process_time()
arch = archgen.parse(text)
errors = [d.code for d in arch.check() if d.is_error]
out["check"] = time.process_time() - t
assert not errors, errors
t = time.process_time()
arch.summary()
out["summary"] = time.process_time() - t
t = time.process_time()
json.dumps(arch.to_json())
out["json"] = time.process_time() - t
t = time.process_time()
render_torch(arch.network)
out["compile"] = time.process_time() - t
print(json.dumps(out))
"""

STAGES = ("check", "summary", "json", "compile")


def measure(n: int, freeze: bool, runs: int) -> dict[str, float]:
    rows = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if freeze else "0",
                            str(ROOT)], capture_output=True, text=True, check=True)
        rows.append(json.loads(p.stdout))
    return {s: statistics.median(r[s] for r in rows) for s in STAGES}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="99,999,9999,27000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("CPU seconds per stage, median of", args.runs, "processes; (x) = over the previous "
          "size, against the sizes' ratio")
    for freeze in (True, False):
        print(f"\n== {'IR frozen after checking (archgen)' if freeze else 'gc.freeze a no-op'} ==")
        print(f"{'layers':>8s} " + " ".join(f"{s:>17s}" for s in STAGES))
        prev = None
        for n in sizes:
            m = measure(n, freeze, args.runs)
            cells = []
            for s in STAGES:
                ratio = f"({m[s] / prev[1][s]:.1f}x/{n / prev[0]:.0f}x)" if prev else ""
                cells.append(f"{m[s]:7.3f} {ratio:>9s}")
            print(f"{n:8d} " + " ".join(cells), flush=True)
            prev = (n, m)


if __name__ == "__main__":
    main()
