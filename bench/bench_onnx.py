"""Benchmark of the ONNX target (run by hand; not a test).

    python bench/bench_onnx.py [--runs 3]

1. In-process time to produce the ONNX file of examples/vgg16.cnn through archgen's templates
   (`build_graph(...).save`, export's path, with given weights, checker and strict shape
   inference included; bench/bench_export.py measures whole processes as users run them)
   against `torch.onnx.export` of the generated module with the same weights (the
   TorchScript exporter, dynamo=False). Weight initialisation is outside both timings.
2. Forward time of onnxruntime (CPU provider) against PyTorch for the generated SeedCNN and
   VGG16, same weights, 2 threads each, interleaved rounds.
Medians, measured in one run of this script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch

    import archgen
    from archgen.emit_onnx import DEFAULT_OPSET, build_graph, build_onnx
    from archgen.weights import initial_state

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp())
    nets = {name: archgen.load(ROOT / "examples" / f"{name}.cnn").network
            for name in ("seed_cnn", "vgg16")}
    states = {name: initial_state(net, 0) for name, net in nets.items()}
    modules = {}
    for name, net in nets.items():
        module = archgen.emit_torch.load_module(net).eval()
        module.load_state_dict(states[name])
        modules[name] = module

    vgg = nets["vgg16"]
    x = torch.randn(1, *vgg.input_shape)

    def with_archgen():  # export's path: one serialisation, weights streamed into the file
        build_graph(vgg, state_dict=states["vgg16"], fold=True).save(tmp / "archgen.onnx")

    def with_torch():
        torch.onnx.export(modules["vgg16"], (x,), str(tmp / "torch.onnx"), dynamo=False,
                          opset_version=DEFAULT_OPSET, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})

    a = median_s(with_archgen, args.runs)
    b = median_s(with_torch, args.runs)
    print(f"ONNX file for examples/vgg16.cnn (138M parameters), median of {args.runs} runs")
    print(f"  archgen (templates, checker, strict shape inference) {a:7.2f} s")
    print(f"  torch.onnx.export of the generated module           {b:7.2f} s")
    print(f"  ratio archgen / torch.onnx.export                    {a / b:7.2f}")

    print(f"forward on CPU, 2 threads each, median of {args.runs * 5} interleaved rounds")
    for name, batch in (("seed_cnn", 32), ("vgg16", 1)):
        net = nets[name]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        # onnxruntime's workers spin after each run; on 2 cores that would steal the CPU from
        # the PyTorch run that follows it in the interleaved rounds
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            build_onnx(net, state_dict=states[name]).SerializeToString(), options,
            providers=["CPUExecutionProvider"])
        xs = np.random.default_rng(0).standard_normal((batch, *net.input_shape),
                                                        dtype=np.float32)
        xt = torch.from_numpy(xs)
        module = modules[name]
        ort_t, torch_t = [], []
        with torch.inference_mode():
            session.run(None, {"input": xs})
            module(xt)
            for _ in range(args.runs * 5):
                t = time.perf_counter()
                session.run(None, {"input": xs})
                ort_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                module(xt)
                torch_t.append(time.perf_counter() - t)
        o, p = statistics.median(ort_t) * 1e3, statistics.median(torch_t) * 1e3
        print(f"  {name:<9} batch {batch:>2}: onnxruntime {o:8.2f} ms, PyTorch {p:8.2f} ms, "
              f"ratio {o / p:.2f}")


if __name__ == "__main__":
    main()
