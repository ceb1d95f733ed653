"""Benchmark of `archgen export --weights` as users run it (run by hand; not a test).

    python bench/bench_export.py [--runs 3] [--nets vgg16,resnet50,densenet121]

For each network, one checkpoint (torch.save of seeded He-uniform weights) and three whole
processes, interleaved round by round so that a busy machine slows all three alike:

- archgen: `python -m archgen export SPEC -o F --weights CK --quiet` (numpy reader, streamed
  file, batchnorm folded: the defaults);
- torchscript: a process that imports torch and the module `archgen compile` generated, loads
  the checkpoint with torch.load, and runs torch.onnx.export(..., dynamo=False);
- dynamo: the same with dynamo=True (needs onnxscript; reported as unavailable without it).

Per process: wall time and peak resident memory (os.wait4's ru_maxrss, that child alone).
Reported: medians, and the ratios of paired medians (torch exporter / archgen) from this one
run; vgg16's archgen peak against its file's size. Then node counts of archgen's graph folded
(the default) and --no-fold, each before and after onnxsim (if installed: pip install onnxsim;
not a dependency), and the float64 parity verdict of the folded graph on every example.
Finally load_state_dict against weights.build_module on a flat sequence of 10,000 convs.
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

TORCH_EXPORT = """
import sys, importlib.util, warnings
warnings.filterwarnings("ignore")
import torch
path, cls, ck, out, dynamo = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("generated", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = getattr(mod, cls)()
model.load_state_dict(torch.load(ck, weights_only=True))
model.eval()
shape = [int(d) for d in sys.argv[6].split(",")]
with torch.no_grad():
    torch.onnx.export(model, (torch.randn(1, *shape),), out, dynamo=dynamo == "1",
                      input_names=["input"], output_names=["output"], external_data=False)
"""


MAKE_CHECKPOINT = """
import sys
sys.path.insert(0, sys.argv[4])
import numpy as np, torch, archgen
from archgen.emit_torch import render_torch
from archgen.weights import state_entries
net = archgen.load(sys.argv[1]).network
rng = np.random.default_rng(0)
state = {}
for e in state_entries(net):
    if e.init[0] == "count":
        state[e.key] = torch.tensor(0)
    else:
        state[e.key] = torch.from_numpy(rng.uniform(-0.05, 0.05, e.shape).astype(np.float32))
        if e.role == "running_var":
            state[e.key] += 1
torch.save(state, sys.argv[2])
open(sys.argv[3], "w").write(render_torch(net))
print(net.name, ",".join(map(str, net.input_shape)))
"""


def run(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in bytes, exit status) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        print(f"  ! {' '.join(cmd[:4])}... exit {p.returncode}: {err.strip()[-300:]}")
    return wall, usage.ru_maxrss * 1024, p.returncode


def have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def exports(nets: list[str], runs: int, tmp: Path) -> None:
    """The parent imports nothing large: on Linux a child's ru_maxrss starts from its parent's
    resident size at fork, so the checkpoints are made in a child of their own."""
    print(f"== export with weights, whole processes, {runs} interleaved rounds (medians) ==")
    dynamo = have("onnxscript")
    if not dynamo:
        print("  (the dynamo exporter needs onnxscript, which is not installed: not measured)")
    for name in nets:
        spec = ROOT / "examples" / f"{name}.cnn"
        ck, source = tmp / f"{name}.pt", tmp / f"{name}_module.py"
        made = subprocess.run([sys.executable, "-c", MAKE_CHECKPOINT, str(spec), str(ck),
                               str(source), str(ROOT)], capture_output=True, text=True,
                              check=True)
        cls, shape = made.stdout.split()
        cmds = {
            "archgen": [sys.executable, "-m", "archgen", "export", str(spec), "-o",
                        str(tmp / f"{name}.archgen.onnx"), "--weights", str(ck), "--quiet"],
            "torchscript": [sys.executable, "-c", TORCH_EXPORT, str(source), cls, str(ck),
                            str(tmp / f"{name}.ts.onnx"), "0", shape],
        }
        if dynamo:
            cmds["dynamo"] = [sys.executable, "-c", TORCH_EXPORT, str(source), cls, str(ck),
                              str(tmp / f"{name}.dynamo.onnx"), "1", shape]
        results: dict[str, list] = {k: [] for k in cmds}
        for _ in range(runs):
            for k, cmd in cmds.items():
                results[k].append(run(cmd))
        med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v),
                   all(r[2] == 0 for r in v)) for k, v in results.items()}
        size = (tmp / f"{name}.archgen.onnx").stat().st_size
        print(f"{name}: file {size / 2**20:.0f} MiB")
        for k, (wall, rss, ok) in med.items():
            extra = "" if k == "archgen" else (
                f"  -> {wall / med['archgen'][0]:.2f}x archgen's time, "
                f"{rss / med['archgen'][1]:.2f}x its peak")
            print(f"  {k:12s} {wall:6.2f} s  peak {rss / 2**20:6.0f} MiB"
                  f"{'' if ok else '  (FAILED)'}{extra}")
        print(f"  archgen peak / file size: {med['archgen'][1] / size:.2f}x")


def node_counts(tmp: Path) -> None:
    import onnx

    import archgen
    from archgen.emit_onnx import build_onnx
    sim = None
    if have("onnxsim"):
        from onnxsim import simplify as sim
    print("\n== node counts (seeded weights): --no-fold / folded, each -> after onnxsim ==")
    if sim is None:
        print("  (onnxsim is not installed: pip install onnxsim; only archgen's own counts)")
    for name in ("resnet50", "densenet121", "mobilenet_v2", "vgg16_bn", "unet_small"):
        net = archgen.load(ROOT / "examples" / f"{name}.cnn").network
        row = []
        for fold in (False, True):
            model = build_onnx(net, fold=fold)
            n = len(model.graph.node)
            if sim is not None:
                simplified, ok = sim(model)
                row.append(f"{n} -> {len(simplified.graph.node)}" + ("" if ok else " (!)"))
            else:
                row.append(str(n))
            del model
        print(f"  {name:14s} unfolded {row[0]:12s} folded {row[1]}")
    del onnx


def folded_parity() -> None:
    import archgen
    from archgen import parity
    print("\n== float64 parity verdict of the folded graph (export's default), every example ==")
    for spec in sorted((ROOT / "examples").glob("*.cnn")):
        net = archgen.load(spec).network
        t = time.perf_counter()
        r = parity.run_parity(net, batch=1, fold=True)
        print(f"  {spec.stem:14s} {'ok' if r.ok else 'MISMATCH'}  ratio {r.ratio:.2g}  "
              f"({time.perf_counter() - t:.1f} s)")


def state_loading() -> None:
    import torch

    import archgen
    from archgen.emit_torch import load_module
    from archgen.weights import build_module, state_shapes
    print("\n== a flat sequence of 10,000 conv2d: load_state_dict vs per-tensor assignment ==")
    for n in (1000, 10000):
        body = "".join("conv2d(2, 1)\n" for _ in range(n))
        net = archgen.parse(f"network Flat\ninput [2, 4, 4]\n{body}").network
        state = {k: torch.zeros(s) for k, s in state_shapes(net).items()}
        module = load_module(net)
        t = time.perf_counter()
        module.load_state_dict(state)
        old = time.perf_counter() - t
        t = time.perf_counter()
        build_module(net, state)
        new = time.perf_counter() - t
        print(f"  {n:6d} layers: load_state_dict {old:.2f} s, build_module (meta device, "
              f"assign per tensor, module construction included) {new:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nets", default="vgg16,resnet50,densenet121")
    ap.add_argument("--skip", default="", help="comma-separated: exports,nodes,parity,state")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="archgen-bench-export-"))
    if "exports" not in skip:
        exports(args.nets.split(","), args.runs, tmp)
    if "nodes" not in skip:
        node_counts(tmp)
    if "parity" not in skip:
        folded_parity()
    if "state" not in skip:
        state_loading()


if __name__ == "__main__":
    main()
