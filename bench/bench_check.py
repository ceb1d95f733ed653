"""Benchmark of `archgen check` (not a test: run by hand, figures go in the README).

    python bench/bench_check.py [--runs 15]

1. Whole-process time of `archgen check` on examples (vgg16, resnet50, densenet121), as
   installed by `pip install .` (into a temporary folder), against
   `python -c pass` (the interpreter's floor) and `python -c "import torch"` (the floor of any
   check that runs a model).
2. In-process check time (parse + check) of generated plain specs of 100, 1,000 and 10,000
   layers, to show linear growth.
Medians of --runs runs, measured in one run of this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# As after `pip install`, which compiles bytecode: let the first run write __pycache__.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_ms(cmd: list[str], runs: int, env: dict | None = None) -> float:
    env = env or ENV
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=False)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def installed_archgen() -> tuple[list[str], dict]:
    """`archgen` as `pip install .` leaves it (a regular install with compiled bytecode, not
    the editable one of a development checkout, whose import hook costs start-up time)."""
    target = Path(tempfile.mkdtemp(prefix="archgen-bench-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(ENV, PYTHONPATH=str(target))
    return [sys.executable, str(target / "bin" / "archgen")], env


def generated_spec(n_layers: int) -> str:
    """A plain spec of n layers: conv/relu pairs at constant size, then a small head."""
    lines = ["input [8, 16, 16]"]
    body = n_layers - 3
    for i in range(body):
        lines.append("conv2d(8, 3, padding=1)" if i % 2 == 0 else "relu()")
    lines += ["adaptive_avgpool2d(1)", "flatten()", "linear(10)"]
    return "\n".join(lines) + "\n"


def in_process_ms(text: str, runs: int) -> float:
    import archgen
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        arch = archgen.parse(text, "gen.cnn")
        assert arch.ok
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    archgen_cmd, archgen_env = installed_archgen()
    py = sys.executable
    floor = median_ms([py, "-c", "pass"], args.runs)
    rows = [("python -c pass", floor)]
    try:
        import importlib.util
        if importlib.util.find_spec("torch"):
            rows.append(('python -c "import torch"', median_ms([py, "-c", "import torch"],
                                                                max(3, args.runs // 3))))
    except ImportError:
        pass
    for name in ("seed_cnn", "vgg16", "resnet50", "densenet121"):
        spec = ROOT / "examples" / f"{name}.cnn"
        if spec.exists():
            rows.append((f"archgen check examples/{name}.cnn",
                         median_ms([*archgen_cmd, "check", str(spec)], args.runs, archgen_env)))
    print(f"whole process, median of {args.runs} runs")
    for label, ms in rows:
        print(f"  {label:<42} {ms:8.1f} ms   {ms / floor:5.2f}x python -c pass")
    print("in-process parse + check of generated specs")
    previous = None
    for n in (100, 1_000, 10_000):
        ms = in_process_ms(generated_spec(n), 5 if n < 10_000 else 3)
        growth = f"   x{ms / previous:.1f} for 10x layers" if previous else ""
        print(f"  {n:>6} layers {ms:10.1f} ms  ({ms / n * 1e3:6.1f} us/layer){growth}")
        previous = ms


if __name__ == "__main__":
    main()
