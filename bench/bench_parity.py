"""Measurements behind parity's verdict (run by hand; not a test).

    python bench/bench_parity.py [--seeds 4] [--only resnet18,unet_small] [--batch 1]

Over every example in examples/ (the zoo):

1. Correct exports, for each seed (its own seeded weights and input): the ratio of ONNX
   Runtime's error against float64 PyTorch to float32 PyTorch's own, at the output and at
   every layer, and the factor each tensor would need under parity's floor
   (max(0, onnx - floor) / torch, errors relative to the tensor's magnitude). The factor must
   sit well above the largest of these.
2. Real bugs, at seed 0, which must fail: a 1% change of one weight tensor (first, middle and
   last conv/linear) on the ONNX side only; one padded node's pads reversed or moved by one
   pixel (tests/perturb.py); one pool's ceil_mode flipped where it changes the size. For each:
   the ratio at the output, the verdict, and whether localisation names the changed layer.
   The factor must sit well below the smallest ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def correct_export(net, seed: int, batch: int):
    """The output's measure and every layer's, under parity's rule."""
    import copy

    import numpy as np
    import torch

    from archgen import parity
    from archgen.emit_onnx import build_onnx
    from archgen.emit_torch import load_module
    from archgen.weights import initial_state

    state = initial_state(net, seed)
    module = load_module(net)
    module.load_state_dict(state)
    module.eval()
    model = build_onnx(net, state_dict=state)
    x = parity._input(np, net, seed, batch)
    rule = parity.Rule()
    with torch.no_grad():
        ref = module(torch.from_numpy(x.copy())).numpy()
        ref64 = copy.deepcopy(module).double()(torch.from_numpy(x).double()).numpy()
    got = parity._session(model).run(["output"], {"input": x})[0]
    layers = parity.layer_measures(net, module, model, "input", x, rule, []) or []
    return rule.judge(np, got, ref, ref64), [m for _, m, _ in layers]


def _floor_needed(m, factor: float) -> float:
    """The floor this tensor needs at `factor` (relative to its magnitude)."""
    return max(0.0, m.onnx_error - factor * m.torch_error)


def _factor_needed(m, floor: float) -> float:
    """The factor this tensor needs above `floor`."""
    excess = m.onnx_error - floor
    if excess <= 0:
        return 0.0
    return excess / m.torch_error if m.torch_error else float("inf")


def perturbed(net, batch: int):
    """[(what, layer changed, report)] at seed 0."""
    import perturb

    from archgen import parity
    from archgen.emit_onnx import build_onnx
    from archgen.weights import initial_state

    state = initial_state(net, 0)
    keys = perturb.weight_keys(net)
    picks = {"first": keys[0], "middle": keys[len(keys) // 2], "last": keys[-1]}
    out = []
    for where, key in picks.items():
        report = parity.run_parity(net, state_dict=state, batch=batch,
                                   onnx_state_dict_override=perturb.scaled_weight(state, key))
        out.append((f"1% weight ({where}: {key})", key.rsplit(".", 1)[0], report))
    model = build_onnx(net, state_dict=state)
    for name, change in (("pad", perturb.shifted_pad(model, net)),
                         ("ceil_mode", perturb.flipped_ceil(model, net))):
        if change is None:
            out.append((f"{name}: no such node", None, None))
            continue
        changed, path, how = change
        report = parity.run_parity(net, state_dict=state, batch=batch, onnx_file=changed)
        out.append((f"{name} ({how})", path, report))
    return out


def random_networks(count: int) -> None:
    """The same measures over small random networks (every window layer's options): shallow
    graphs, where float32 PyTorch is often exact and the floor decides."""
    import random

    from test_onnx import _random_spec

    import archgen
    from archgen import parity

    rng = random.Random(1234)
    out_ratios, layer_ratios, floors, factors = [], [], [], []
    exact = total = fails = nets = 0
    for i in range(count):
        spec = archgen.parse(_random_spec(rng), f"random{i}.cnn")
        if not spec.ok:
            continue
        nets += 1
        out, layers = correct_export(spec.network, i, 2)
        out_ratios.append(out.ratio)
        layer_ratios += [m.ratio for m in layers if m.torch_error]
        floors += [_floor_needed(m, parity.FACTOR) for m in [out, *layers]]
        factors += [_factor_needed(m, parity.FLOOR) for m in [out, *layers]]
        exact += sum(1 for m in layers if not m.torch_error)
        total += len(layers)
        fails += sum(1 for m in [out, *layers] if not m.ok)
    finite = [r for r in out_ratios if r != float("inf")]
    print(f"  {nets} random networks (batch 2): output ratio median "
          f"{statistics.median(finite):.2f}, max {max(finite):.2f}; layer ratio max "
          f"{max(layer_ratios):.2f}; factor needed up to {max(factors):.2f}, floor needed up "
          f"to {max(floors):.2g}; float32 PyTorch "
          f"exact at {exact}/{total} layers; {fails} tensors fail\n", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated example names")
    ap.add_argument("--random", type=int, default=300,
                    help="random small networks from tests/test_onnx.py's generator")
    args = ap.parse_args()
    import torch

    import archgen
    from archgen import parity

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    names = [p.stem for p in sorted((ROOT / "examples").glob("*.cnn"))]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print(f"parity rule: max|onnx - f64| <= {parity.FACTOR:g} * max|torch - f64| + "
          f"{parity.FLOOR:g} * max|f64|; batch {args.batch}, seeds 0-{args.seeds - 1}\n")
    print("correct exports, over the seeds: the ratio at the output (min / median / max) and "
          "at any layer (max, where float32 PyTorch is inexact); the factor any tensor needs "
          "above the floor; the floor any tensor needs at the factor; how often float32 "
          "PyTorch is exact at a layer")
    out_ratios, layer_ratios, floors, factors = [], [], [], []
    t0 = time.perf_counter()
    rows = []
    for name in names:
        net = archgen.load(ROOT / "examples" / f"{name}.cnn").network
        results = [correct_export(net, s, args.batch) for s in range(args.seeds)]
        ratios = [out.ratio for out, _ in results]
        layers = [m for _, ms in results for m in ms]
        lr = max((m.ratio for m in layers if m.torch_error), default=0.0)
        fl = max(_floor_needed(m, parity.FACTOR) for out, ms in results for m in [out, *ms])
        fn = max(_factor_needed(m, parity.FLOOR) for out, ms in results for m in [out, *ms])
        factors.append(fn)
        exact = sum(1 for m in layers if not m.torch_error)
        out_ratios += ratios
        layer_ratios.append(lr)
        floors.append(fl)
        fails = sum(1 for out, ms in results for m in [out, *ms] if not m.ok)
        print(f"  {name:14} output {min(ratios):5.2f} / {statistics.median(ratios):5.2f} / "
              f"{max(ratios):5.2f}   layers {lr:5.2f}   needs {fn:4.2f}x / {fl:.2g}   "
              f"exact {exact}/{len(layers)}{f'   {fails} FAIL' if fails else ''}", flush=True)
        rows.append((name, net))
    print(f"  all: output ratio {min(out_ratios):.2f}-{max(out_ratios):.2f}, layer ratio up to "
          f"{max(layer_ratios):.2f}; factor needed up to {max(factors):.2f}, floor needed up "
          f"to {max(floors):.2g}\n")
    if args.random:
        random_networks(args.random)
    print("bugs (seed 0): output ratio, ONNX's error relative to the output's magnitude, "
          "verdict, layer named")
    bug_ratios, bug_errors = [], []
    for name, net in rows:
        for what, path, report in perturbed(net, args.batch):
            if report is None:
                print(f"  {name:14} {what}")
                continue
            d = report.first_divergence
            named = d.path if d else "none"
            hit = "right layer" if d and d.path == path else f"WRONG (changed {path})"
            bug_ratios.append(report.ratio)
            bug_errors.append(report.onnx_error)
            print(f"  {name:14} {what:58} {report.ratio:9.3g}x {report.onnx_error:8.2g} "
                  f"{'ok!' if report.ok else 'MISMATCH'} {named} ({hit})", flush=True)
    print(f"  all: smallest bug ratio {min(bug_ratios):.3g}x, smallest error "
          f"{min(bug_errors):.2g}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
