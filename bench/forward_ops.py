"""What a generated forward executes against its reference, counted rather than timed (run by
hand; not a test): wall-clock ratios on a shared machine move by a few percent, these do not.

    python bench/forward_ops.py [--models resnet18,resnet34] [--batch 1] [--torchvision]

For each model, both modules (bench_forward's pair: the generated one and the reference with
the same weights) run one no_grad eval forward under

- a TorchDispatchMode that logs every ATen op at the dispatcher's top, with its tensors'
  shapes, strides and storage offsets and its other arguments (the op sequence: an extra
  `add` against `add_`, a `clone`/`contiguous` copy, another memory format or padding shows
  here);
- torch.profiler, whose event names include the nested ops under each top-level one (the
  convolution path actually taken: mkldnn_convolution, _slow_conv2d_forward, _nnpack_...);
- the same profiler's memory records outside any op, in order: the frees that Python's
  reference counting makes between ops, so a local that holds a tensor longer (`x =
  self.layer4(self.layer3(...(x)))` keeps its input until layer4 returns) shows here. It
  matters beyond peak memory: glibc gives heap memory back to the system and maps it again
  at other moments, and the page faults cost several percent at batch 32;
- a global forward pre-hook that counts nn.Module calls by class (Python-level calls such as
  nn.Identity or nn.Flatten, which cost microseconds and no ATen op).

It prints, per model, whether the two op sequences are identical, a unified diff where they
are not, the nested-op counts that differ, and the module calls by class of each side.
`--torchvision` takes the reference from torchvision.models (in an environment that has it,
e.g. /work/tvenv) instead of bench_forward's transcriptions.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_forward

MEMORY_DIFF_LINES = 24  # memory-record diff lines shown


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return (f"T{tuple(value.shape)}s{tuple(value.stride())}"
                f"{'+' + str(value.storage_offset()) if value.storage_offset() else ''}"
                f"{'' if value.dtype == torch.float32 else value.dtype}")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_describe(v) for v in value) + "]"
    return repr(value)


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        text = ", ".join([_describe(a) for a in args]
                         + [f"{k}={_describe(v)}" for k, v in kwargs.items()])
        self.ops.append(f"{func}({text}) -> {_describe(out)}")
        return out


def trace(model: torch.nn.Module, x: torch.Tensor):
    """(top-level op lines, nested op counts, memory records outside ops, module calls by
    class) of one forward."""
    calls: collections.Counter[str] = collections.Counter()

    def hook(module, args):
        calls[type(module).__name__] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            log = _OpLog()
            with log:
                model(x)
            calls_once = dict(calls)
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                model(x)
    finally:
        handle.remove()
    nested = collections.Counter(e.name for e in prof.events()
                                 if e.name.startswith("aten::"))
    # the memory records between top-level ops, each placed after the op it follows
    memory, last = [], "start"
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        if e.name == "[memory]":
            memory.append(f"{e.cpu_memory_usage} after {last}")
        elif e.cpu_parent is None and e.name.startswith("aten::"):
            last = e.name
            memory.append(e.name)
    return log.ops, nested, memory, calls_once


def compare(name: str, batch: int, use_torchvision: bool) -> bool:
    net, generated, reference = bench_forward.pair(name, use_torchvision=use_torchvision)
    x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(1))
    g_ops, g_nested, g_mem, g_calls = trace(generated, x)
    r_ops, r_nested, r_mem, r_calls = trace(reference, x)
    same = g_ops == r_ops
    print(f"## {name}, batch {batch}: {len(g_ops)} ATen ops generated, {len(r_ops)} reference; "
          f"sequences {'IDENTICAL' if same else 'DIFFER'} (op, shapes, strides, arguments)")
    if not same:
        for line in difflib.unified_diff(r_ops, g_ops, "reference", "generated", n=1,
                                         lineterm=""):
            print("  " + line)
    nested_diff = {k: (g_nested[k], r_nested[k]) for k in g_nested | r_nested
                   if g_nested[k] != r_nested[k]}
    print(f"  nested aten ops (profiler), generated vs reference: "
          f"{sum(g_nested.values())} vs {sum(r_nested.values())}"
          + (f"; differing counts {nested_diff}" if nested_diff else "; same counts"))
    g_n, r_n = (sum(" after " in m for m in mem) for mem in (g_mem, r_mem))
    print(f"  memory records between ops (frees, bytes, with the ops around them): "
          f"{g_n} vs {r_n}, {'identical' if g_mem == r_mem else 'DIFFER'}")
    if g_mem != r_mem:
        for line in list(difflib.unified_diff(r_mem, g_mem,
                                              "reference", "generated", n=1,
                                              lineterm=""))[:MEMORY_DIFF_LINES]:
            print("    " + line)
    conv = sorted(k for k in g_nested | r_nested if "conv" in k)
    print("  convolution path: " + ", ".join(f"{k} {g_nested[k]}/{r_nested[k]}" for k in conv))
    print(f"  module calls generated ({sum(g_calls.values())}): {dict(sorted(g_calls.items()))}")
    print(f"  module calls reference ({sum(r_calls.values())}): {dict(sorted(r_calls.items()))}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(bench_forward.REFERENCES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torchvision", action="store_true",
                        help="references from torchvision.models (must be installed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}; references: "
          f"{'torchvision.models' if args.torchvision else 'bench_forward transcriptions'}")
    results = [compare(m, args.batch, args.torchvision) for m in args.models.split(",")]
    print(f"identical op sequences: {sum(results)} of {len(results)}")


if __name__ == "__main__":
    main()
