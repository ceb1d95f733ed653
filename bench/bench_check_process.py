"""`archgen check examples/X.cnn` as a whole process, for every example (not a test: run by
hand, figures go in the README's Benchmarks section).

    python bench/bench_check_process.py [--runs 15] [--install editable|installed|both]
        [--source CHECKOUT ...] [--instructions] [--importtime 5] [--markdown] [EXAMPLE ...]

Each round runs every command once, in a shuffled order (interleaved, so that a burst of load
from elsewhere hits all commands alike); the figures are medians over --runs rounds of

- wall time (perf_counter around the child), and
- CPU time (user + system of the child, from os.wait4's rusage): the robust figure on a
  shared machine, where wall time also counts the time the child waited for a core.

Commands: `python -c pass` (the interpreter's floor), `python -c "import archgen.cli"` (the
import alone) and `archgen check examples/X.cnn` for each example, through the console script

- `editable`: the development venv's `archgen` (pip install -e: an import hook, the
  __editable__ finder, resolves `archgen`), and/or
- `installed`: `pip install --no-deps --target TMP .` (a regular install with compiled bytecode,
  what a user gets), run with PYTHONPATH=TMP.

The load average before and after is printed: a run is "quiet" when it stays under the core
count. With --importtime N, `python -X importtime -m archgen check` runs N times on the largest
example and the modules with the largest median self time are listed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# As after `pip install`, which compiles bytecode: let the first run write __pycache__.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}


# Every command runs in an empty folder: `python -c` puts the current directory first on
# sys.path, and in the checkout that would import ./archgen instead of the install measured.
NEUTRAL = tempfile.mkdtemp(prefix="archgen-bench-cwd-")


def run_once(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(wall ms, CPU ms, exit status) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=NEUTRAL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t) * 1e3
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, (usage.ru_utime + usage.ru_stime) * 1e3, proc.returncode


def installed_archgen(source: Path = ROOT) -> tuple[list[str], dict, Path]:
    """`archgen` as `pip install .` leaves it (regular install, bytecode compiled), from the
    checkout `source` (e.g. `git archive COMMIT | tar -x -C DIR` for a before/after pair).

    It runs on a fresh virtual environment's interpreter (no .pth files: the development venv's
    editable finder is not loaded), with archgen's folder and then this venv's site-packages
    (click) on PYTHONPATH, whose .pth files Python does not process."""
    tmp = Path(tempfile.mkdtemp(prefix="archgen-bench-"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")],
                   check=True)
    purelib = sysconfig.get_paths()["purelib"]
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(target), purelib]))
    return [str(tmp / "venv" / "bin" / "python"), str(target / "bin" / "archgen")], env, tmp


def editable_archgen() -> tuple[list[str], dict]:
    """The venv's console script (the editable install of a development checkout)."""
    script = Path(sys.executable).parent / "archgen"
    if not script.exists():
        raise SystemExit(f"no console script {script}: pip install -e . first")
    return [sys.executable, str(script)], dict(ENV)


def instructions(cmd: list[str], env: dict) -> int:
    """Instructions the command executes (valgrind --tool=callgrind's `I refs`)."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                         check=False, env=env, capture_output=True, text=True, cwd=NEUTRAL).stderr
    return int(re.search(r"refs:\s+([\d,]+)", out).group(1).replace(",", ""))


def importtime(cmd: list[str], env: dict, runs: int, top: int = 25) -> list[tuple[str, float, float]]:
    """(module, median self us, median cumulative us) of the `top` modules by self time."""
    selfs: dict[str, list[int]] = {}
    cums: dict[str, list[int]] = {}
    for _ in range(runs):
        out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True,
                             cwd=NEUTRAL).stderr
        for line in out.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            s, c, name = line[len("import time:"):].split("|")
            name = name.strip()
            selfs.setdefault(name, []).append(int(s))
            cums.setdefault(name, []).append(int(c))
    rows = [(name, statistics.median(v), statistics.median(cums[name]))
            for name, v in selfs.items()]
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("examples", nargs="*", help="example names (default: every examples/*.cnn)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--install", choices=("editable", "installed", "both"), default="installed")
    ap.add_argument("--importtime", type=int, default=0, metavar="N")
    ap.add_argument("--source", type=Path, action="append",
                    help="checkout to install for `installed` (default: this one, as it is); "
                         "repeat it to compare checkouts in the same interleaved rounds")
    ap.add_argument("--markdown", action="store_true", help="print a README table too")
    ap.add_argument("--instructions", action="store_true",
                    help="also count each command's instructions once under valgrind's "
                         "callgrind: a figure that does not depend on the machine's load")
    args = ap.parse_args()
    names = args.examples or sorted(p.stem for p in (ROOT / "examples").glob("*.cnn"))
    targets = []
    tmps = []
    if args.install in ("installed", "both"):
        sources = args.source or [ROOT]
        for source in sources:
            cmd, env, tmp = installed_archgen(source)
            tmps.append(tmp)
            label = "installed" if len(sources) == 1 else f"installed {source.name}"
            targets.append((label, cmd, env))
    if args.install in ("editable", "both"):
        cmd, env = editable_archgen()
        targets.append(("editable", cmd, env))
    commands: list[tuple[str, list[str], dict]] = []
    for label, cmd, env in targets:
        commands.append((f"[{label}] python -c pass", [cmd[0], "-c", "pass"], env))
        commands.append((f"[{label}] import archgen.cli", [cmd[0], "-c", "import archgen.cli"],
                         env))
        for name in names:
            spec = ROOT / "examples" / f"{name}.cnn"
            commands.append((f"[{label}] check {name}", [*cmd, "check", str(spec)], env))
    cores = os.cpu_count() or 1
    load0 = os.getloadavg()
    for _, cmd, env in commands:  # warm-up: bytecode written, files cached
        run_once(cmd, env)
    wall: dict[str, list[float]] = {c[0]: [] for c in commands}
    cpu: dict[str, list[float]] = {c[0]: [] for c in commands}
    failed = set()
    for _ in range(args.runs):
        order = list(commands)
        random.shuffle(order)
        for label, cmd, env in order:
            w, c, rc = run_once(cmd, env)
            if rc not in (0,):
                failed.add(f"{label} (exit {rc})")
            wall[label].append(w)
            cpu[label].append(c)
    load1 = os.getloadavg()
    print(f"{cores} cores; load average (1/5/15 min) before {load0[0]:.2f}/{load0[1]:.2f}/"
          f"{load0[2]:.2f}, after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}; "
          f"medians of {args.runs} interleaved rounds")
    def floor(label: str) -> float:  # the same interpreter's `python -c pass`
        return statistics.median(cpu[label.split("]")[0] + "] python -c pass"])

    print(f"  {'command':<44} {'wall':>9} {'CPU':>9} {'CPU - floor':>12} {'max wall':>9}")
    for label, _, _ in commands:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        print(f"  {label:<44} {w:7.1f}ms {c:7.1f}ms {c - floor(label):10.1f}ms {max(wall[label]):7.1f}ms")
    if failed:
        print("non-zero exits: " + ", ".join(sorted(failed)))
    refs = {}
    if args.instructions:
        print("\ninstructions (callgrind, user space, one run each)")
        for label, cmd, env in commands:
            refs[label] = instructions(cmd, env)
            print(f"  {label:<44} {refs[label] / 1e6:8.1f} M")
    if args.markdown:
        print("\n| command | wall | CPU (user + system) |" + (" instructions |" if refs else "")
              + "\n| --- | ---: | ---: |" + (" ---: |" if refs else ""))
        for label, _, _ in commands:
            print(f"| {label} | {statistics.median(wall[label]):.0f} ms | "
                  f"{statistics.median(cpu[label]):.0f} ms |"
                  + (f" {refs[label] / 1e6:.0f} M |" if refs else ""))
    if args.importtime:
        label, cmd, env = targets[0]
        biggest = max(names, key=lambda n: (ROOT / "examples" / f"{n}.cnn").stat().st_size)
        spec = ROOT / "examples" / f"{biggest}.cnn"
        rows = importtime([cmd[0], "-X", "importtime", "-m", "archgen", "check", str(spec)], env,
                          args.importtime)
        print(f"\n-X importtime of [{label}] python -m archgen check {biggest}: "
              f"top modules by self time (medians of {args.importtime})")
        for name, s, c in rows:
            print(f"  {name:<44} self {s / 1e3:6.1f} ms   cumulative {c / 1e3:6.1f} ms")
    for tmp in tmps:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
