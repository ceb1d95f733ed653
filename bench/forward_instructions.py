"""Instructions executed by one forward of the generated module and of its reference, counted
by valgrind's callgrind (run by hand; not a test). The count does not depend on the machine's
load, so a difference of a fraction of a percent is visible where wall-clock timings on a
shared machine move by several percent.

    python bench/forward_instructions.py [--models resnet18,resnet34] [--batches 1,8]
                                         [--reps 2] [--torchvision]

The script starts itself under `valgrind --tool=callgrind` with instrumentation off (importing
torch is not counted), builds bench_forward's pair, runs one uncounted warm-up forward of each
module, then counts each forward alone: a tiny C helper (compiled here with gcc against
valgrind/callgrind.h, loaded with ctypes) toggles collection on just before `model(x)` and off
just after, and dumps the counters under a label. It prints the instructions (Ir) of each
forward, generated / reference, and the functions whose counts differ most (from
callgrind_annotate), which shows whether a difference lies in the Python interpreter (module
calls), in PyTorch's dispatch, or in the kernels. One thread; perf's hardware counters are not
available in this VM, hence valgrind. Slow: ResNet-18 at batch 1 (two warm-ups, two counted
forwards) took 13 minutes on a loaded 2-core machine, and ResNet-34 did not finish in 40.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


def _helper(workdir: Path) -> ctypes.CDLL:
    src, lib = workdir / "cg.c", workdir / "libcg.so"
    src.write_text(HELPER)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    cg = ctypes.CDLL(str(lib))
    cg.cg_dump.argtypes = [ctypes.c_char_p]
    return cg


def child(args: argparse.Namespace, workdir: Path) -> None:
    """Runs under callgrind: counts each forward into its own dump."""
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_forward

    torch.set_num_threads(1)
    cg = _helper(workdir)
    cg.cg_start()
    for name in args.models.split(","):
        net, generated, reference = bench_forward.pair(name, use_torchvision=args.torchvision)
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                generated(x)  # warm-up: oneDNN's kernels are generated on first use
                reference(x)
                for rep in range(args.reps):
                    for side, model in (("generated", generated), ("reference", reference)):
                        cg.cg_zero()
                        cg.cg_toggle()
                        model(x)
                        cg.cg_toggle()
                        cg.cg_dump(f"{name} {batch} {side} {rep}".encode())


def _totals(path: Path) -> tuple[str, int]:
    label, total = "", 0
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("desc: Trigger: Client Request: "):
            label = line.split("Client Request: ", 1)[1]
        elif line.startswith(("totals:", "summary:")):
            total = int(line.split()[1])
    return label, total


def _by_function(path: Path) -> dict[str, int]:
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no",
                          str(path)], check=False, capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if m and ":" in m.group(2):
            counts[m.group(2).strip()] = int(m.group(1).replace(",", ""))
    return counts


def parent(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
               f"--callgrind-out-file={workdir}/cg.out.%p", sys.executable, __file__,
               "--child", tmp, "--models", args.models, "--batches", args.batches,
               "--reps", str(args.reps)] + ["--torchvision"] * args.torchvision
        run = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if run.returncode:
            sys.exit(f"valgrind failed ({run.returncode}):\n{run.stderr[-3000:]}")
        dumps = {}
        for path in sorted(workdir.glob("cg.out.*")):
            label, total = _totals(path)
            if label:
                dumps[label] = (total, path)
        print(f"instructions per forward (callgrind Ir), one thread; references: "
              f"{'torchvision.models' if args.torchvision else 'bench_forward transcriptions'}")
        print("| model | batch | rep | generated Ir | reference Ir | generated - reference "
              "| ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        worst = None
        for name in args.models.split(","):
            for batch in args.batches.split(","):
                for rep in range(args.reps):
                    g = dumps[f"{name} {batch} generated {rep}"]
                    r = dumps[f"{name} {batch} reference {rep}"]
                    print(f"| {name} | {batch} | {rep} | {g[0]:,} | {r[0]:,} | "
                          f"{g[0] - r[0]:+,} | {g[0] / r[0]:.5f} |")
                    if rep == args.reps - 1 and (worst is None or g[0] - r[0] > worst[0]):
                        worst = (g[0] - r[0], name, batch, g[1], r[1])
        if worst and args.functions:
            _, name, batch, gpath, rpath = worst
            gf, rf = _by_function(gpath), _by_function(rpath)
            diff = sorted(((gf.get(k, 0) - rf.get(k, 0), k) for k in gf.keys() | rf.keys()),
                          key=lambda d: -abs(d[0]))
            print(f"\nfunctions whose self counts differ most, {name} batch {batch} "
                  f"(generated - reference):")
            for d, k in diff[:args.functions]:
                print(f"  {d:+,}  {k[:150]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet34")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--functions", type=int, default=15,
                        help="list this many functions whose counts differ most")
    parser.add_argument("--torchvision", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args, Path(args.child))
    else:
        parent(args)


if __name__ == "__main__":
    main()
