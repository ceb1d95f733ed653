"""Benchmark of the static path's scaling (run by hand; not a test).

    python bench/bench_static.py [--runs 3] [--sizes 100,1000,10000,100000,1000000]
                                 [--onnx-max 10000] [--flat] [--gc-trial] [--tracemalloc]

Generated specs of N layers (conv2d, batchnorm2d, relu; `repeat N/3:` over the three, the
remainder written after it, or written out one per line with --flat, which MAX_LINES bounds at
50,000 lines) through each stage as the CLI runs it, each size in a fresh process:

- check: parse and check (`archgen check`);
- summary: summary.write_summary into /dev/null (`archgen summary`, rows made as written);
- JSON: report.write_json of to_json(lazy=True) into /dev/null (`archgen check --format json`);
- torch: the PyTorch source (`archgen compile --target torch`: render_torch, which parses and
  verifies the generated file);
- onnx: build_onnx and its serialisation (`archgen compile --target onnx`), up to --onnx-max
  layers (it costs ~1.5 ms a layer, so a million layers would take about half an hour).

The emitters' modules (and torch and onnx) are imported before the clock starts: the stages
measure work, not imports.

CPU time per stage (the machine is shared: CPU time is steadier than wall time), median of
--runs processes; in brackets the time over the previous size's, against the sizes' ratio
(linear growth keeps the two equal). Peak RSS of the process after check, after JSON (summary
and JSON stream, so this is the largest of check, summary and JSON) and after compile.
--gc-trial also runs each size with gc.freeze made a no-op (the collector then rescans the AST
and IR during every later stage). --tracemalloc adds one run per size of check alone under
tracemalloc: the peak of Python allocations per layer.
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
import gc, json, os, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[3])
n, freeze, flat, traced = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[4] == "1", sys.argv[5] == "1"
onnx = sys.argv[6] == "1"
if not freeze:
    gc.freeze = lambda: None
import archgen
from pathlib import Path
if (Path(sys.argv[3]) / "templates").is_dir():  # the measured tree's templates, not those
    import archgen.templating                    # of an editable install elsewhere
    archgen.templating.template_root = lambda: Path(sys.argv[3]) / "templates"
from archgen import checker
checker.MAX_LAYERS = max(checker.MAX_LAYERS, n)  # past the limit only when asked for
from archgen.report import write_json
from archgen.summary import write_summary
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
import jinja2, archgen.emit_torch  # imports are not the stages' work
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sink = open(os.devnull, "w").write
t = time.process_time()
arch = archgen.parse(text)
errors = [d.code for d in arch.check() if d.is_error]
out["check"] = time.process_time() - t
assert not errors, errors
assert len(arch.layers) == n
out["rss_check"] = rss()
t = time.process_time()
write_summary(arch.network, sink)
out["summary"] = time.process_time() - t
t = time.process_time()
write_json([arch.to_json(lazy=True)], sink)
out["json"] = time.process_time() - t
out["rss_json"] = rss()
t = time.process_time()
arch.to_torch_source()
out["torch"] = time.process_time() - t
out["rss_torch"] = rss()
if onnx:  # imported here, so that the RSS figures above are archgen's alone
    import onnx as _onnx, torch as _torch
    from archgen.emit_onnx import build_onnx
    t = time.process_time()
    build_onnx(arch.network).SerializeToString()
    out["onnx"] = time.process_time() - t
    out["rss_onnx"] = rss()
print(json.dumps(out))
"""

STAGES = ("check", "summary", "json", "torch", "onnx")
MEMORY = ("rss_check", "rss_json", "rss_torch", "rss_onnx")


def child(n: int, freeze: bool, flat: bool, traced: bool, onnx: bool) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if freeze else "0", str(ROOT),
                        "1" if flat else "0", "1" if traced else "0", "1" if onnx else "0"],
                       capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"{n} layers: the child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def measure(n: int, freeze: bool, runs: int, flat: bool, onnx: bool) -> dict[str, float]:
    rows = [child(n, freeze, flat, False, onnx) for _ in range(runs)]
    return {k: statistics.median(r[k] for r in rows) for k in (*STAGES, *MEMORY)
            if k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="100,1000,10000,100000,1000000")
    ap.add_argument("--onnx-max", type=int, default=10_000)
    ap.add_argument("--flat", action="store_true")
    ap.add_argument("--gc-trial", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"CPU seconds per stage ({'flat' if args.flat else 'repeat'} specs), median of",
          args.runs, "processes; (x) = over the previous size, against the sizes' ratio; "
          "us/layer of check; peak RSS (MB) after check, after JSON, after compile "
          "(torch; onnx)")
    for freeze in (True, False) if args.gc_trial else (True,):
        print(f"\n== {'IR frozen after checking (archgen)' if freeze else 'gc.freeze a no-op'} ==")
        print("| layers | " + " | ".join(STAGES) + " | check us/layer | RSS check | RSS JSON | "
              "RSS torch | RSS onnx |" + (" traced B/layer |" if args.tracemalloc else ""))
        print("| ---: " * (len(STAGES) + 6 + args.tracemalloc) + "|")
        prev: dict[str, tuple[int, float]] = {}
        for n in sizes:
            m = measure(n, freeze, args.runs, args.flat, n <= args.onnx_max)
            cells = []
            for s in STAGES:
                if s not in m:
                    cells.append("-")
                    continue
                ratio = (f" ({m[s] / prev[s][1]:.1f}x/{n / prev[s][0]:.0f}x)"
                         if s in prev and prev[s][1] > 0 else "")
                cells.append(f"{m[s]:.3f}{ratio}")
                prev[s] = (n, m[s])
            mem = [f"{m[k]:,.0f}" if k in m else "-" for k in MEMORY]
            traced = (f" {child(n, freeze, args.flat, True, False)['traced']:,.0f} |"
                      if args.tracemalloc else "")
            print(f"| {n:,} | " + " | ".join(cells) + f" | {m['check'] / n * 1e6:.1f} | "
                  + " | ".join(mem) + " |" + traced, flush=True)


if __name__ == "__main__":
    main()
