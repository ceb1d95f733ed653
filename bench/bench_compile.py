"""Benchmark of `archgen compile` and of the generated modules (run by hand; not a test).

    python bench/bench_compile.py [--runs 7]

1. Compile time of examples/vgg16.cnn: in-process (parse + check + render) and whole process
   (`archgen compile --print`), against `python -c pass`.
2. Forward time of the generated SeedCNN, VGG16 and ResNet-50 against the same networks written
   by hand with nn.Modules (bench/hand_written.py), eval mode, CPU, same weights, one run of
   this script. Generated code should add no overhead: the ratio should be 1.00 within noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_check import ENV, median_ms  # noqa: E402


def in_process_compile_ms(spec: Path, runs: int) -> float:
    import archgen
    archgen.load(spec).to_torch_source()  # warm: templates loaded, jinja compiled
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        archgen.load(spec).to_torch_source()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def interleaved_ms(models, x, runs: int) -> list[float]:
    """Median forward time of each model, the models called in turn on every round so that
    they share the machine's noise."""
    import torch
    times = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            model(x)  # warm-up
        for _ in range(runs):
            for i, model in enumerate(models):
                t = time.perf_counter()
                model(x)
                times[i].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(t) for t in times]


def compare_forward(name: str, spec: str, hand, batch: int, size: int, runs: int) -> None:
    import torch
    import archgen
    generated = archgen.load(ROOT / "examples" / spec).to_torch_module().eval()
    manual = hand().eval()
    # the same weights in both (parameters and buffers in the same order)
    with torch.no_grad():
        for a, b in zip(generated.state_dict().values(), manual.state_dict().values()):
            b.copy_(a)
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        assert torch.allclose(generated(x), manual(x), rtol=1e-4, atol=1e-5)
    g, m = interleaved_ms([generated, manual], x, runs)
    print(f"  {name:<10} batch {batch:>2} {size}x{size}: generated {g:9.2f} ms, "
          f"hand-written {m:9.2f} ms, ratio {g / m:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    import hand_written
    vgg = ROOT / "examples" / "vgg16.cnn"
    floor = median_ms([sys.executable, "-c", "pass"], args.runs)
    whole = median_ms([sys.executable, "-m", "archgen.cli", "compile", "--print", str(vgg)],
                      args.runs)
    print(f"compile examples/vgg16.cnn, median of {args.runs} runs")
    print(f"  in-process (parse, check, render) {in_process_compile_ms(vgg, args.runs):8.1f} ms")
    print(f"  whole process (archgen compile)   {whole:8.1f} ms  (python -c pass: {floor:.1f} ms)")
    print(f"forward, eval mode, CPU, {torch.get_num_threads()} threads, median of "
          f"{args.runs * 3} interleaved rounds")
    compare_forward("SeedCNN", "seed_cnn.cnn", hand_written.seed_cnn, 32, 32, args.runs * 3)
    compare_forward("VGG16", "vgg16.cnn", hand_written.vgg16, 1, 224, args.runs * 3)
    compare_forward("ResNet-50", "resnet50.cnn", hand_written.resnet50, 1, 224, args.runs * 3)


if __name__ == "__main__":
    assert ENV is not None
    main()
