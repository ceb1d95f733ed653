"""Benchmarks of issue 13's analyses.

1. Symbolic check of every example as a whole process: `archgen check --input C,H,W FILE`,
   wall and CPU time (the process's user + system), median of --runs; budget 200 ms.
2. What the memory figures add to checking, in-process: per example, `check` and
   `memory.estimate` timed in pairs, one after the other, and the ratio of their medians;
   budget 5%.

    python bench/bench_analysis.py [--runs 7]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As after `pip install`, which compiles bytecode: a PYTHONDONTWRITEBYTECODE=1 environment would
# recompile archgen at every start and add ~50 ms that no installed archgen pays (bench_check).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))


def _process(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=ENV)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def symbolic_check(runs: int) -> None:
    from archgen import load
    exe = [sys.executable, "-m", "archgen", "check"]
    print(f"1. symbolic check as a whole process, interleaved with the concrete check of the "
          f"same file (median of {runs}; budget 200 ms)")
    base = [_process([sys.executable, "-c", "pass"]) for _ in range(runs)]
    print(f"python -c pass: wall {statistics.median(w for w, _ in base) * 1e3:.1f} ms, "
          f"cpu {statistics.median(c for _, c in base) * 1e3:.1f} ms")
    print(f"{'example':<16}{'input':<8}{'wall ms':>9}{'cpu ms':>9}{'concrete cpu':>14}"
          f"  valid sizes")
    for path in EXAMPLES:
        channels = load(path).network.input_shape[0]
        spec = f"{channels},H,W"
        pairs = [(_process(exe + ["--input", spec, str(path)]), _process(exe + [str(path)]))
                 for _ in range(runs)]
        walls, cpus = zip(*(p[0] for p in pairs))
        concrete = statistics.median(p[1][1] for p in pairs)
        arch = load(path)
        arch.input_override = (channels, "H", "W")
        net = arch.network
        valid = " and ".join(c.text(n) for n, c in net.constraints.items())
        print(f"{path.stem:<16}{spec:<8}{statistics.median(walls) * 1e3:>9.1f}"
              f"{statistics.median(cpus) * 1e3:>9.1f}{concrete * 1e3:>14.1f}  {valid}")


def memory_overhead(runs: int) -> None:
    from archgen import syntax
    from archgen.checker import check
    from archgen.memory import estimate
    print(f"\n2. memory figures against checking, in-process (paired, median of {runs}; "
          f"budget 5%)")
    print(f"{'example':<16}{'check ms':>10}{'memory ms':>11}{'ratio':>8}   (check: parse + check)")
    for path in EXAMPLES:
        text = path.read_text()
        checks, mems = [], []
        for _ in range(runs):
            gc.collect()
            gc.disable()  # as archgen check does (api._no_cyclic_gc): no collection lands
            t = time.perf_counter()  # in one of the pair for the other's garbage
            net = check(syntax.parse(text, str(path)))
            t1 = time.perf_counter()
            estimate(net)
            t2 = time.perf_counter()
            gc.enable()
            checks.append(t1 - t)
            mems.append(t2 - t1)
        c, m = statistics.median(checks), statistics.median(mems)
        print(f"{path.stem:<16}{c * 1e3:>10.2f}{m * 1e3:>11.3f}{m / c:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.chdir(ROOT)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    symbolic_check(args.runs)
    memory_overhead(args.runs)


if __name__ == "__main__":
    main()
