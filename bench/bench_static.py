"""Benchmark of the static path's scaling (run by hand; not a test).

    python bench/bench_static.py [--runs 3] [--sizes 99,999,9999,99999] [--flat]
                                 [--no-gc-trial] [--tracemalloc]

Generated specs of N layers (conv2d, batchnorm2d, relu; `repeat N/3:` over the three, or
written out one per line with --flat, which MAX_LINES bounds at 50,000 lines) through check
(parse + check), summary, JSON (to_json + json.dumps) and compile (the PyTorch source), each
size in a fresh process, CPU time per stage (the machine is shared: CPU time is steadier than
wall time), median of --runs processes, with microseconds per layer and the process's peak RSS.
Each size runs twice: as archgen does (the AST and IR frozen out of the cyclic collector after
checking, api._no_cyclic_gc) and with gc.freeze made a no-op (the collector rescans them;
--no-gc-trial leaves this out). The ratio column is the time over the previous size's, against
the ratio of the sizes: linear growth keeps the two equal. --tracemalloc adds one run per size
of check alone under tracemalloc: the peak of Python allocations per layer.

The limits (archgen/limits.py) admit 100,000 layers (MAX_LAYERS): identical layer calls reuse
the first one's outcome, so a repeat's copies cost a layer each and no step of MAX_EXPANDED.
Check alone would fit 1,000,000 layers (--sizes 999999 runs it with MAX_LAYERS lifted in the
child), but JSON's peak memory per layer puts that network past the 2 GB any spec must fit.
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
import gc, json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[3])
n, freeze, flat, traced = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[4] == "1", sys.argv[5] == "1"
if not freeze:
    gc.freeze = lambda: None
import archgen
from archgen import checker
checker.MAX_LAYERS = max(checker.MAX_LAYERS, n)  # past the limit only when asked for
from archgen.emit_torch import render_torch
calls = ("conv2d(4, 3, padding=1)\n", "batchnorm2d()\n", "relu()\n")
if flat:
    body = "".join(calls[i % 3] for i in range(n))
else:
    body = f"repeat {n // 3}:\n" + "".join("    " + c for c in calls) + "".join(calls[:n % 3])
text = f"network Flat\ninput [4, 8, 8]\n{body}"
out = {}
if traced:
    tracemalloc.start()
    arch = archgen.parse(text)
    arch.check()
    print(json.dumps({"traced": tracemalloc.get_traced_memory()[1] / n}))
    sys.exit()
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
out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

STAGES = ("check", "summary", "json", "compile")


def child(n: int, freeze: bool, flat: bool, traced: bool) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if freeze else "0", str(ROOT),
                        "1" if flat else "0", "1" if traced else "0"],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def measure(n: int, freeze: bool, runs: int, flat: bool) -> dict[str, float]:
    rows = [child(n, freeze, flat, False) for _ in range(runs)]
    return {s: statistics.median(r[s] for r in rows) for s in (*STAGES, "rss")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="99,999,9999,99999")
    ap.add_argument("--flat", action="store_true")
    ap.add_argument("--no-gc-trial", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"CPU seconds per stage ({'flat' if args.flat else 'repeat'} specs), median of",
          args.runs, "processes; (x) = over the previous size, against the sizes' ratio; "
          "us/layer of check; peak RSS of the process")
    for freeze in (True,) if args.no_gc_trial else (True, False):
        print(f"\n== {'IR frozen after checking (archgen)' if freeze else 'gc.freeze a no-op'} ==")
        print(f"{'layers':>8s} " + " ".join(f"{s:>17s}" for s in STAGES) +
              f" {'us/layer':>8s} {'RSS MB':>7s}" + (" traced B/layer" if args.tracemalloc else ""))
        prev = None
        for n in sizes:
            m = measure(n, freeze, args.runs, args.flat)
            cells = []
            for s in STAGES:
                ratio = f"({m[s] / prev[1][s]:.1f}x/{n / prev[0]:.0f}x)" if prev else ""
                cells.append(f"{m[s]:7.3f} {ratio:>9s}")
            traced = (f" {child(n, freeze, args.flat, True)['traced']:14.0f}"
                      if args.tracemalloc else "")
            print(f"{n:8d} " + " ".join(cells) + f" {m['check'] / n * 1e6:8.1f} "
                  f"{m['rss']:7.0f}" + traced, flush=True)
            prev = (n, m)


if __name__ == "__main__":
    main()
