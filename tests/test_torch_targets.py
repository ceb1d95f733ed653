"""The generated PyTorch modules where people take them: TorchScript, torch.export,
torch.compile, pickle and deepcopy, bf16 autocast with channels_last, and DistributedDataParallel
(gloo, two processes on CPU)."""

from __future__ import annotations

import copy
import os
import pickle
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import archgen
from archgen.emit_torch import load_module

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
RUN_BELOW = 2_000_000_000  # MACs: larger examples are scripted and exported, not run

# A block with an if on an argument (both branches used), a merge and a sequential block: the
# constructs of the generated classes, small enough for torch.compile and DDP in the suite.
TINY = """\
network Tiny
input [3, 8, 8]
block unit(out, stride=1):
    conv2d(out, 3, stride=stride, padding=1, bias=false)
    batchnorm2d()
    relu()
block res(planes, stride=1):
    add:
        branch:
            conv1 = conv2d(planes, 3, stride=stride, padding=1, bias=false)
            bn1 = batchnorm2d()
        if stride != 1 or in_channels != planes:
            downsample:
                conv2d(planes, 1, stride=stride, bias=false)
                batchnorm2d()
        else:
            identity()
    relu()
stem = unit(8)
layer1 = res(8)
layer2 = res(16, stride=2)
avgpool = adaptive_avgpool2d(1)
flatten()
fc = linear(5)
"""


def _tiny():
    arch = archgen.parse(TINY, "tiny.cnn")
    assert arch.ok, [d.message for d in arch.errors]
    return arch.network


def test_tiny_uses_one_class_per_block_and_both_branches():
    source = archgen.parse(TINY, "tiny.cnn").to_torch_source()
    assert [line.split("(")[0] for line in source.splitlines() if line.startswith("class ")] \
        == ["class Unit", "class Res", "class Tiny"], source
    assert "if self.downsample is not None:" in source


@pytest.mark.parametrize("spec", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_scripts_and_exports(spec):
    """torch.jit.script and torch.export on every example; where it is small enough to run,
    both give the eager module's outputs."""
    net = archgen.load(spec).network
    x = torch.randn(1, *net.input_shape, generator=torch.Generator().manual_seed(0))
    run = net.total_macs < RUN_BELOW
    if run:
        torch.manual_seed(0)
        model = load_module(net).eval()
    else:  # built without initialising 100M weights: only the graph is of interest
        with torch.device("meta"):
            model = load_module(net)
        model = model.to_empty(device="cpu").eval()
    scripted = torch.jit.script(model)
    exported = torch.export.export(model, (x,))
    if run:
        with torch.no_grad():
            expected = model(x)
            torch.testing.assert_close(scripted(x), expected)
            torch.testing.assert_close(exported.module()(x), expected)


def test_torch_compile_on_the_tiny_net():
    """Inductor compiles the generated classes (gcc on the CPU); outputs match eager mode."""
    torch.manual_seed(0)
    model = load_module(_tiny()).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["resnet18", "mobilenet_v2"])
def test_instances_pickle_and_deepcopy(spec):
    net = archgen.load(ROOT / "examples" / f"{spec}.cnn").network
    model = archgen.load(ROOT / "examples" / f"{spec}.cnn").to_torch_module().eval()
    x = torch.randn(1, 3, 64, 64)  # both end in an adaptive pool
    with torch.no_grad():
        expected = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert type(clone) is type(model)
            assert list(clone.state_dict()) == list(model.state_dict())
            assert torch.equal(clone(x), expected)
    # the same source gives the same class: a pickle made by one call loads into another
    again = load_module(net)
    assert type(again) is type(model)


def test_bf16_autocast_with_channels_last_trains():
    torch.manual_seed(0)
    model = load_module(_tiny()).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    out.float().logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in grads)


_WORKER = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    import archgen
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = archgen.parse(open(sys.argv[1]).read(), "tiny.cnn").to_torch_module()
    if sys.argv[4] == "fsdp":  # FSDP2: each rank holds half of every parameter (a DTensor)
        from torch.distributed.fsdp import fully_shard
        wrapped = fully_shard(model)
        full = lambda t: t.full_tensor()  # noqa: E731
    else:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        full = lambda t: t  # noqa: E731
    data = torch.load(sys.argv[2])
    x, y = data["x"][rank::2], data["y"][rank::2]  # different data on each rank
    loss = torch.nn.functional.cross_entropy(wrapped(x), y)
    loss.backward()
    grads = {n: full(p.grad).clone() for n, p in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    params = {n: full(p.detach()).clone() for n, p in model.named_parameters()}
    torch.save({"grads": grads, "params": params}, sys.argv[3] + f"/rank{rank}.pt")
    dist.barrier()  # neither rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_ddp_with_gloo_averages_the_gradients_of_two_processes(tmp_path, mode):
    """One training step under DistributedDataParallel, and under FSDP2's fully_shard (each
    rank holding half of every parameter), two CPU processes with different data: the
    gradients are equal on both ranks and equal to the mean of the gradients each shard gives
    in one process (batch norm's statistics are per shard in all), and so are the weights
    after the step."""
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    gen = torch.Generator().manual_seed(1)
    data = {"x": torch.randn(8, 3, 8, 8, generator=gen), "y": torch.randint(0, 5, (8,),
                                                                             generator=gen)}
    torch.save(data, tmp_path / "data.pt")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(spec), str(tmp_path / "data.pt"),
                               str(tmp_path), mode], env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    expected = {}
    for r in range(2):
        torch.manual_seed(0)
        model = archgen.parse(TINY, "tiny.cnn").to_torch_module()
        loss = torch.nn.functional.cross_entropy(model(data["x"][r::2]), data["y"][r::2])
        loss.backward()
        for n, p in model.named_parameters():
            expected[n] = expected.get(n, 0) + p.grad / 2
    assert set(expected) == set(ranks[0]["grads"])
    for n, g in expected.items():
        torch.testing.assert_close(ranks[0]["grads"][n], ranks[1]["grads"][n], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0]["grads"][n], g, rtol=1e-5, atol=1e-7)
        assert not torch.equal(g, 2 * g) or not g.any()  # a real gradient somewhere
    for n in expected:
        torch.testing.assert_close(ranks[0]["params"][n], ranks[1]["params"][n], rtol=0, atol=0)


_ACTIVATIONS = ["relu", "relu6", "elu", "leaky_relu", "hardtanh", "hardswish", "hardsigmoid",
                "silu", "mish", "sigmoid", "tanh", "gelu"]


def _trains(spec: str) -> bool:
    """Whether one training step's backward runs (PyTorch raises where an in-place op
    overwrote a tensor autograd saved)."""
    torch.manual_seed(0)
    model = load_module(archgen.parse(spec, "residual.cnn").network).train()
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    try:
        model(x).square().sum().backward()
    except RuntimeError as e:
        assert "modified by an inplace operation" in str(e)
        return False
    return x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("tail", ["", "dropout(0.3)", "dropout(0.3, inplace=true)",
                                  "stochastic_depth(0.3, row)"])
@pytest.mark.parametrize("act", [f"{a}(inplace=true)" if a not in ("sigmoid", "tanh", "gelu")
                                 else f"{a}()" for a in _ACTIVATIONS] + ["batchnorm2d()"])
def test_a_residual_sum_in_place_keeps_autograd_right(act, tail):
    """Where forward adds a residual into a branch's own tensor (`x1 += x`), autograd must not
    need that tensor: training runs backward wherever the branch alone does (an in-place
    dropout after sigmoid fails in PyTorch itself), and eval-mode gradients in float64 pass
    gradcheck."""
    layers = f"            conv2d(3, 3, padding=1)\n            {act}\n" + (
        f"            {tail}\n" if tail else "")
    plain = "input [3, 5, 5]\n" + layers.replace("            ", "") + "flatten()\nlinear(2)\n"
    spec = ("input [3, 5, 5]\nblock b():\n    add:\n        identity()\n        branch:\n"
            + layers + "b()\nb()\nflatten()\nlinear(2)\n")
    if act.startswith(("batchnorm2d", "hardswish", "silu")) and "inplace=true)" not in tail:
        # a new tensor (hardswish_ and silu_ keep a copy of their input, not their output)
        assert "+= " in archgen.parse(spec, "residual.cnn").to_torch_source()
    assert _trains(spec) == _trains(plain)
    torch.manual_seed(0)
    model = load_module(archgen.parse(spec, "residual.cnn").network).eval().double()
    assert torch.autograd.gradcheck(model, (torch.randn(1, 3, 5, 5, dtype=torch.float64,
                                                        requires_grad=True),))


def test_to_torch_module_of_a_symbolic_spec_runs_at_any_size():
    # the memory check before building takes the representative sizes, not the symbols
    model = archgen.parse("input [3, H, W]\nconv2d(4, 3, padding=1)\nrelu()\n",
                          "sym.cnn").to_torch_module().eval()
    for size in [(5, 7), (16, 9)]:
        assert model(torch.randn(1, 3, *size)).shape == (1, 4, *size)


_CHAIN = ["relu", "relu6", "elu", "leaky_relu", "hardtanh", "hardswish", "hardsigmoid", "silu",
          "mish", "sigmoid()", "tanh()", "gelu()", "softmax(dim=1)", "dropout", "identity()",
          "batchnorm2d()"]


@pytest.mark.parametrize("seed", range(6))
def test_w510_warns_exactly_where_training_raises(seed):
    """Random chains of activations (in place or not), dropout, identity and batch norm
    after a conv: archgen's W510 is given exactly where PyTorch's backward raises 'modified
    by an inplace operation' (the oracle), and the generated module trains elsewhere."""
    rng = random.Random(seed)
    for _ in range(40):
        layers = ["conv2d(4, 3, padding=1)"] if rng.random() < 0.9 else []
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(_CHAIN)
            if name == "dropout":
                name = f"dropout(0.3{', inplace=true' if rng.random() < 0.5 else ''})"
            elif not name.endswith(")"):
                name = f"{name}({'inplace=true' if rng.random() < 0.6 else ''})"
            layers.append(name)
        spec = "input [4, 5, 5]\n" + "\n".join(layers) + "\nflatten()\nlinear(2)\n"
        arch = archgen.parse(spec, "chain.cnn")
        warned = any(d.code == "W510" for d in arch.check())
        torch.manual_seed(0)
        model = arch.to_torch_module().train()
        try:
            model(torch.randn(2, 4, 5, 5)).square().sum().backward()
            raised = False
        except RuntimeError as e:
            assert "modified by an inplace operation" in str(e), spec
            raised = True
        assert warned == raised, spec
