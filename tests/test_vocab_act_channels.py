"""hardsigmoid, hardtanh, mish, prelu, log_softmax, channel_shuffle and channel_slice against
PyTorch: accept/reject verdicts, output shapes and parameter counts on randomised arguments
and inputs of every rank, and what autograd saves (saved_tensors_hooks, as test_memory.py).

The kinds' rules are run as the checker runs them (`_apply`: coerce, check_args, normalise,
output_shape, check_input, warnings), so a kind is tested on its own as well as in specs.
"""

from __future__ import annotations

import random
import warnings
from math import prod

import pytest

torch = pytest.importorskip("torch")
from torch import nn

import archgen
from archgen.layers.activation_extra import Hardsigmoid, Hardtanh, LogSoftmax, Mish, PReLU
from archgen.layers.base import REQUIRED, LayerError, coerce
from archgen.layers.channels import ChannelShuffle, ChannelSlice


def _apply(kind, given: dict, x: tuple):
    """What the checker does with one call: ("ok", output shape, params, warnings' codes) or
    ("error", code)."""
    a = {}
    try:
        for p in kind.params:
            if p.name in given:
                a[p.name] = coerce(p, given[p.name])
            else:
                assert p.default is not REQUIRED, p.name
                a[p.name] = p.default
        kind.check_args(a)
        if kind.rank is not None and len(x) != kind.rank:
            return ("error", "E405")
        kind.normalise(a, x)
        y = kind.output_shape(a, x)
        problems = kind.check_input(a, x)
        if problems:
            return ("error", problems[0].code)
    except LayerError as err:
        return ("error", err.code)
    return ("ok", y, kind.param_count(a), [w.code for w in kind.warnings(a, x, y)])


def _torch_verdict(make, x: tuple):
    """("ok", output shape without the batch, parameter count) or ("error",)."""
    try:
        m = make()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # log_softmax's implicit dim is deprecated
            y = m(torch.randn(2, *x))
    except (RuntimeError, AssertionError, ValueError, IndexError):
        return ("error",)
    return ("ok", tuple(y.shape[1:]), sum(p.numel() for p in m.parameters()))


def _shape(rng: random.Random) -> tuple:
    rank = rng.choice([1, 2, 3, 4])
    return (rng.choice([1, 2, 3, 4, 6, 8, 12]),) + tuple(rng.randint(1, 5)
                                                         for _ in range(rank - 1))


def _agree(ours, theirs, case):
    assert ours[0] == theirs[0], (case, ours, theirs)
    if ours[0] == "ok":
        assert ours[1:3] == theirs[1:3], (case, ours, theirs)


# -- verdicts, shapes and counts ---------------------------------------------------------------

def test_elementwise_activations_against_torch():
    rng = random.Random(7)
    for i in range(150):
        x = _shape(rng)
        inplace = rng.random() < 0.5
        lo, hi = rng.uniform(-3, 3), rng.uniform(-3, 3)
        if rng.random() < 0.1:
            hi = lo
        cases = [
            (Hardsigmoid(), {"inplace": inplace}, lambda i=inplace: nn.Hardsigmoid(i)),
            (Mish(), {"inplace": inplace}, lambda i=inplace: nn.Mish(i)),
            (Hardtanh(), {"min_val": lo, "max_val": hi, "inplace": inplace},
             lambda lo=lo, hi=hi, i=inplace: nn.Hardtanh(lo, hi, i)),
        ]
        for kind, args, make in cases:
            ours = _apply(kind, args, x)
            _agree(ours, _torch_verdict(make, x), (i, kind.name, args, x))
            if ours[0] == "ok":
                assert ours[1] == x


def test_hardtanh_bounds_error():
    assert _apply(Hardtanh(), {"min_val": 1, "max_val": 1}, (3, 4, 4)) == ("error", "E301")
    assert _apply(Hardtanh(), {"min_val": 0, "max_val": 6}, (3, 4, 4))[0] == "ok"


def test_prelu_against_torch():
    rng = random.Random(11)
    for i in range(200):
        x = _shape(rng)
        n = rng.choice([1, x[0], rng.randint(0, 13), -1])
        init = rng.uniform(-1, 1)
        ours = _apply(PReLU(), {"num_parameters": n, "init": init}, x)
        theirs = _torch_verdict(lambda n=n, init=init: nn.PReLU(n, init), x)
        _agree(ours, theirs, (i, n, x))
    assert _apply(PReLU(), {"num_parameters": 5}, (6, 3, 3)) == ("error", "E440")
    assert _apply(PReLU(), {"num_parameters": 0}, (6, 3, 3)) == ("error", "E301")
    assert _apply(PReLU(), {}, (6, 3, 3))[:3] == ("ok", (6, 3, 3), 1)


def test_log_softmax_against_torch():
    rng = random.Random(13)
    for i in range(150):
        x = _shape(rng)
        dim = rng.choice([None, *range(-len(x) - 2, len(x) + 2)])
        ours = _apply(LogSoftmax(), {"dim": dim}, x)
        if dim is not None and dim % (len(x) + 1) == 0 and -len(x) - 1 <= dim <= len(x):
            assert ours == ("error", "E301")  # deliberate: a softmax over the batch
            continue
        theirs = _torch_verdict(lambda dim=dim: nn.LogSoftmax(dim), x)
        if dim is None and len(x) + 1 in (1, 3):  # PyTorch's implicit choice is dim 0,
            assert ours == ("error", "E301")       # the batch: refused, as softmax's
            continue
        _agree(ours, theirs, (i, dim, x))


def test_channel_shuffle_against_torch():
    rng = random.Random(17)
    seen = set()
    for i in range(250):
        x = _shape(rng)
        g = rng.choice([1, 2, 3, 4, x[0], -1, 0, 5])
        ours = _apply(ChannelShuffle(), {"groups": g}, x)
        theirs = _torch_verdict(lambda g=g: nn.ChannelShuffle(g), x)
        _agree(ours, theirs, (i, g, x))
        if ours[0] == "error":
            seen.add(ours[1])
        else:
            assert ours[3] == (["W508"] if g in (1, x[0]) else []), (g, x)
    assert seen == {"E301", "E405", "E438"}


def test_channel_slice_shapes_and_rules():
    """x[:, start:stop]: PyTorch clips out-of-range slices and returns empty ones; archgen
    refuses both (start < stop <= channels, non-negative)."""
    rng = random.Random(19)
    for i in range(250):
        x = _shape(rng)
        start, stop = rng.randint(-2, x[0] + 1), rng.randint(-2, x[0] + 2)
        ours = _apply(ChannelSlice(), {"start": start, "stop": stop}, x)
        if not (0 <= start < stop <= x[0]):
            assert ours[0] == "error", (start, stop, x)
            assert ours[1] == ("E439" if 0 <= start < stop else "E301"), (start, stop, x)
            continue
        y = torch.randn(2, *x)[:, start:stop]
        assert ours[:3] == ("ok", tuple(y.shape[1:]), 0), (start, stop, x)
        assert ours[3] == (["W509"] if (start, stop) == (0, x[0]) else [])


# -- what autograd saves -------------------------------------------------------------------------

def _saved_by(module: nn.Module, x: tuple, batch: int = 2):
    """What autograd saves for `module` alone, on an input that requires grad (the output of
    a conv): sorted (which, bytes) per storage, `which` being "input" (the input's storage,
    also when the output shares it), "output" or "new"; and whether the output is the input's
    storage. Parameters are left out."""
    conv = nn.Conv2d(x[0], x[0], 1) if len(x) == 3 else None
    inp = torch.randn(batch, *x, requires_grad=True)
    pre = inp * 1.0 if conv is None else conv(inp)
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(pre)
    ptr_in, ptr_out = pre.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()
    which = {ptr_in: "input", ptr_out: "output"} if ptr_in != ptr_out else {ptr_in: "input"}
    return sorted((which.get(p, "new"), n) for p, n in storages.items()), ptr_in == ptr_out


def _predicted(kind, args: dict, x: tuple, batch: int = 2):
    """The kind's Memory read as memory.estimate reads it, for a layer whose input requires
    grad and is kept by nothing else."""
    status, y, *_ = _apply(kind, args, x)
    assert status == "ok"
    a = {p.name: args.get(p.name, p.default) for p in kind.params}
    kind.normalise(a, x)
    m = kind.memory(a, x, y)
    size = {"input": prod(x) * 4 * batch, "output": prod(y) * 4 * batch}
    saved = {("input" if m.aliases else w, size["input" if m.aliases else w]) for w in m.saves}
    saved = sorted(saved) + [("new", n * 4 * batch) for n, per in m.extra]
    return sorted(saved), m.aliases


@pytest.mark.parametrize("kind, args, make", [
    (Hardsigmoid(), {}, lambda: nn.Hardsigmoid()),
    (Hardsigmoid(), {"inplace": True}, lambda: nn.Hardsigmoid(True)),
    (Hardtanh(), {"min_val": -2.0, "max_val": 0.5}, lambda: nn.Hardtanh(-2.0, 0.5)),
    (Hardtanh(), {"inplace": True}, lambda: nn.Hardtanh(inplace=True)),
    (Mish(), {}, lambda: nn.Mish()),
    (Mish(), {"inplace": True}, lambda: nn.Mish(True)),
    (PReLU(), {}, lambda: nn.PReLU()),
    (PReLU(), {"num_parameters": 6}, lambda: nn.PReLU(6)),
    (LogSoftmax(), {"dim": 1}, lambda: nn.LogSoftmax(1)),
    (LogSoftmax(), {"dim": -1}, lambda: nn.LogSoftmax(-1)),
    (ChannelShuffle(), {"groups": 2}, lambda: nn.ChannelShuffle(2)),
    (ChannelShuffle(), {"groups": 3}, lambda: nn.ChannelShuffle(3)),
    (ChannelSlice(), {"start": 1, "stop": 4}, lambda: (lambda t: t[:, 1:4])),
], ids=lambda v: getattr(v, "name", None) or "")
@pytest.mark.parametrize("x", [(6, 5, 4), (6, 7)], ids=["CHW", "CL"])
def test_saved_for_backward(kind, args, make, x):
    module = make()
    if not isinstance(module, nn.Module):
        module = _Lambda(module)
    assert _saved_by(module, x) == _predicted(kind, args, x)


class _Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


# -- in specs: the checker, the generated module and the ONNX graph -----------------------------


SHUFFLE_SPEC = """\
input [24, 8, 8]

block shuffle_unit():
    concat:
        channel_slice(0, in_channels // 2)
        branch:
            channel_slice(in_channels // 2, in_channels)
            conv2d(in_channels // 2, 1, bias=false)
            batchnorm2d()
            relu(inplace=true)
            conv2d(in_channels // 2, 3, padding=1, groups=in_channels // 2, bias=false)
            batchnorm2d()
            conv2d(in_channels // 2, 1, bias=false)
            batchnorm2d()
            relu(inplace=true)
    channel_shuffle(2)

repeat 2:
    shuffle_unit()
"""


def _channel_shuffle(x, groups: int):  # torchvision.models.shufflenetv2.channel_shuffle
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class _InvertedResidual(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual with stride 1, as written there."""

    def __init__(self, c: int):
        super().__init__()
        b = c // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, 3, 1, 1, groups=b, bias=False), nn.BatchNorm2d(b),
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        return _channel_shuffle(out, 2)


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if t.dim() == 1
                        else torch.randn(t.shape, generator=g) * 0.3)


def _load_in_order(target: nn.Module, source: nn.Module) -> None:
    ours, theirs = target.state_dict(), source.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    target.load_state_dict(dict(zip(ours, theirs.values())))


def test_shufflenet_v2_unit_equals_torchvision_style():
    arch = archgen.parse(SHUFFLE_SPEC, "shuffle.cnn")
    assert arch.ok, [str(d) for d in arch.errors]
    assert arch.network.output_shape == (24, 8, 8)
    ref = nn.Sequential(_InvertedResidual(24), _InvertedResidual(24)).eval()
    _randomise(ref, 3)
    model = arch.to_torch_module().eval()
    _load_in_order(model, ref)
    assert arch.network.total_params == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    torch.jit.script(model)  # the helper class is TorchScript-able


class _Stack(nn.Module):
    def __init__(self, layers: list):
        super().__init__()
        self.order = [name for name, _ in layers]
        for name, m in layers:
            setattr(self, name, m)

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return x


def _random_stack(rng: random.Random, c: int):
    """Spec lines and the torch.nn modules they mean: my kinds among 3x3 convs."""
    lines, mods = [], []

    def add(line, module):
        name = f"l{len(lines)}"
        lines.append(f"{name} = {line}")
        mods.append((name, module))

    out = rng.choice([4, 6, 8, 12])
    add(f"conv2d({out}, 3, padding=1)", nn.Conv2d(c, out, 3, padding=1))
    c = out
    for _ in range(rng.randint(3, 7)):
        pick = rng.randrange(8)
        inplace = rng.random() < 0.5
        flag = "true" if inplace else "false"
        if pick == 0:
            add(f"hardsigmoid(inplace={flag})", nn.Hardsigmoid(inplace))
        elif pick == 1:
            lo = round(rng.uniform(-2, 0), 3)
            hi = round(lo + rng.uniform(0.1, 3), 3)
            add(f"hardtanh({lo}, {hi}, inplace={flag})", nn.Hardtanh(lo, hi, inplace))
        elif pick == 2:
            add(f"mish(inplace={flag})", nn.Mish(inplace))
        elif pick == 3:
            n = rng.choice([1, c])
            init = round(rng.uniform(-0.5, 0.5), 3)
            add(f"prelu({n}, init={init})", nn.PReLU(n, init))
        elif pick == 4:
            add("log_softmax(1)", nn.LogSoftmax(1))
        elif pick == 5:
            g = rng.choice([d for d in range(1, c + 1) if c % d == 0])
            add(f"channel_shuffle({g})", nn.ChannelShuffle(g))
        elif pick == 6:
            start = rng.randrange(c - 1)
            stop = rng.randint(start + 1, c)
            add(f"channel_slice({start}, {stop})", _Lambda(lambda t, a=start, b=stop: t[:, a:b]))
            c = stop - start
        else:
            out = rng.choice([4, 6, 8])
            add(f"conv2d({out}, 3, padding=1)", nn.Conv2d(c, out, 3, padding=1))
            c = out
    return lines, _Stack(mods)


@pytest.mark.parametrize("seed", range(6))
def test_random_stacks_compile_and_export(seed):
    """The generated module equals torch.nn's layers on the same weights, and the ONNX graph
    equals the generated module (onnxruntime, archgen's parity verdict). With symbolic input
    sizes the generated source is the same size-agnostic module, checked at two sizes."""
    from archgen import parity
    rng = random.Random(seed)
    lines, ref = _random_stack(rng, 3)
    _randomise(ref, seed)
    ref.eval()
    body = "\n".join(lines) + "\n"
    arch = archgen.parse("input [3, 9, 7]\n" + body, f"stack{seed}.cnn")
    assert arch.ok, (lines, [str(d) for d in arch.errors])
    assert arch.network.total_params == sum(p.numel() for p in ref.parameters())
    model = arch.to_torch_module().eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(model(x.clone()), ref(x.clone()), rtol=0, atol=0)
    report = parity.run_parity(arch.network, batch=2, seed=seed)
    assert report.ok, report.to_text()

    symbolic = archgen.parse("input [3, H, W]\n" + body, f"stack{seed}.cnn")
    namespace: dict = {}
    exec(symbolic.to_torch_source(), namespace)  # noqa: S102 (archgen's checked output)
    agnostic = namespace[symbolic.network.name]().eval()
    agnostic.load_state_dict(ref.state_dict())
    for size in ((5, 4), (11, 6)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(agnostic(x.clone()), ref(x.clone()), rtol=0, atol=0)


def test_inplace_after_a_slice_of_a_shared_input_is_refused():
    """channel_slice is a view: an in-place layer after it at a branch's head overwrites the
    channels the other branches read (E410), as directly on the merge's input."""
    spec = ("input [8, 6, 6]\nconv2d(8, 1)\nconcat:\n    branch:\n        channel_slice(0, 4)\n"
            "        {act}\n    identity()\n")
    for act in ("relu(inplace=true)", "hardtanh(inplace=true)", "mish(inplace=true)"):
        arch = archgen.parse(spec.format(act=act), "view.cnn")
        assert [(d.code, d.span.line) for d in arch.errors] == [("E410", 6)], act
    assert archgen.parse(spec.format(act="hardsigmoid()"), "view.cnn").ok


@pytest.mark.parametrize("body", [
    "conv2d(8, 3)\nhardsigmoid()\nconv2d(8, 1)\nhardsigmoid(inplace=true)\nmish()\n"
    "conv2d(6, 1)\nmish(inplace=true)",
    "conv2d(8, 3)\nhardtanh(-2.0, 2.0)\nconv2d(8, 1)\nhardtanh(inplace=true)\nprelu()\n"
    "prelu(8)\nlog_softmax(1)",
    "prelu(3)\nconv2d(8, 3)\nchannel_shuffle(4)\nconv2d(8, 1)\nchannel_slice(2, 6)\n"
    "conv2d(4, 1)\nlog_softmax(-1)",
    "conv2d(8, 3)\nconcat:\n    channel_slice(0, 4)\n    branch:\n        channel_slice(4, 8)\n"
    "        conv2d(4, 1)\n        relu(inplace=true)\nchannel_shuffle(2)\nconv2d(4, 1)",
], ids=["hardsigmoid-mish", "hardtanh-prelu-log_softmax", "shuffle-slice", "shufflenet"])
def test_memory_figures_match_autograd(body):
    """archgen's saved-for-backward bytes equal what autograd saves (saved_tensors_hooks),
    and its inference peak what a no_grad forward holds, on stacks of these kinds (the peak
    without branches only, as test_memory compares it)."""
    from test_memory import _Live, _saved_bytes

    from archgen.memory import estimate
    arch = archgen.parse(f"input [3, 12, 10]\n{body}\n", "mem.cnn")
    torch.manual_seed(0)
    model = arch.to_torch_module().train()
    x = torch.randn(3, 3, 12, 10)
    real = _saved_bytes(model, x)
    assert estimate(arch.network, batch=3, device="cpu").saved_for_backward_bytes == real
    if "concat" in body:  # the generated forward keeps branch outputs past the merge
        return            # (test_memory._PEAK_EXACT)
    model.eval()
    assert estimate(arch.network, batch=2, device="cpu").inference_peak_bytes == \
        _Live(model, torch.randn(2, 3, 12, 10)).peak


def _call_text(name: str, args: dict) -> str:
    def lit(v):
        return "true" if v is True else "false" if v is False else "none" if v is None else \
            repr(v)
    return f"{name}({', '.join(f'{k}={lit(v)}' for k, v in args.items())})"


def _input_ranks() -> set:
    """The input ranks the language reads (`input [C, L]` and `[C, D, H, W]` come with the
    1-D/3-D vocabulary)."""
    return {len(x) for x in ((3,), (3, 4), (3, 4, 4), (3, 2, 4, 4))
            if archgen.parse(f"input {list(x)}\nidentity()\n", "rank.cnn").ok}


def test_verdicts_and_shapes_through_the_checker():
    """The same verdicts from specs, inputs of every rank: the checker accepts exactly what
    PyTorch runs (bar the deliberate refusals: a log-softmax over the batch, an empty or
    clipped slice) and gives the shape PyTorch gives."""
    rng = random.Random(23)
    ranks = _input_ranks()
    for i in range(160):
        x = _shape(rng)
        if len(x) not in ranks:
            continue
        c = x[0]
        pick = rng.randrange(6)
        if pick == 0:
            lo, hi = round(rng.uniform(-2, 2), 2), round(rng.uniform(-2, 2), 2)
            name, args, make = "hardtanh", {"min_val": lo, "max_val": hi}, \
                lambda lo=lo, hi=hi: nn.Hardtanh(lo, hi)
        elif pick == 1:
            n = rng.choice([1, c, c + 1, 0])
            name, args, make = "prelu", {"num_parameters": n}, lambda n=n: nn.PReLU(n)
        elif pick == 2:
            g = rng.choice([1, 2, 3, 4, -1])
            name, args, make = "channel_shuffle", {"groups": g}, lambda g=g: nn.ChannelShuffle(g)
        elif pick == 3:
            d = rng.randrange(1, len(x) + 1) * rng.choice([1, -1])
            name, args, make = "log_softmax", {"dim": d}, lambda d=d: nn.LogSoftmax(d)
        elif pick == 4:
            a, b = rng.randint(0, c), rng.randint(1, c + 1)
            name, args = "channel_slice", {"start": a, "stop": b}
            make = (lambda a=a, b=b: _Lambda(lambda t: t[:, a:b])) if a < b <= c else \
                (lambda: (_ for _ in ()).throw(ValueError("refused")))
        else:
            name, args, make = rng.choice([("hardsigmoid", {}, nn.Hardsigmoid),
                                           ("mish", {}, nn.Mish)])
        arch = archgen.parse(f"input {list(x)}\n{_call_text(name, args)}\n", f"case{i}.cnn")
        theirs = _torch_verdict(make, x)
        assert arch.ok == (theirs[0] == "ok"), (i, name, args, x, [str(d) for d in arch.errors])
        if arch.ok:
            assert arch.network.output_shape == theirs[1]
            assert arch.network.total_params == theirs[2]


@pytest.mark.parametrize("body", [
    "input [6, 10]\nprelu(6)\nchannel_shuffle(3)\nhardsigmoid()\nchannel_slice(1, 4)\n"
    "hardtanh(-0.5, 0.5)\nlog_softmax(1)",
    "input [6, 4, 5, 3]\nprelu(6)\nchannel_shuffle(2)\nmish()\nchannel_slice(2, 6)\n"
    "log_softmax(-1)",
    "input [12]\nprelu(12)\nhardsigmoid()\nchannel_slice(3, 9)\nmish()\nlog_softmax(1)",
], ids=["CL", "CDHW", "F"])
def test_parity_at_every_rank(body):
    from archgen import parity
    if body.count(",", 0, body.index("]")) + 1 not in _input_ranks():
        pytest.skip("this input rank is not in the language yet")
    arch = archgen.parse(body + "\n", "ranks.cnn")
    report = parity.run_parity(arch.network, batch=2, seed=1)
    assert report.ok, report.to_text()


def test_a_block_with_slices_is_one_class_at_every_width():
    """channel_slice's output channels (stop - start) carry into a block class's channel
    expressions: one class for every width, as torchvision writes InvertedResidual."""
    spec = ("input [24, 8, 8]\n\nblock unit(out):\n    concat:\n"
            "        channel_slice(0, in_channels // 2)\n        branch:\n"
            "            channel_slice(in_channels // 2, in_channels)\n"
            "            conv2d(out, 1)\n    channel_shuffle(2)\n\nunit(12)\nunit(16)\nunit(10)\n")
    arch = archgen.parse(spec, "widths.cnn")
    source = arch.to_torch_source()
    assert source.count("class Unit") == 1, source
    assert "nn.Conv2d(in_channels - in_channels // 2, out, kernel_size=1)" in source
    assert "[N, in_channels // 2 + out, 8, 8]" in source
    model = arch.to_torch_module().eval()
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        y = model(x)
        first = model.layers[0]
        x1, x2 = x[:, :12], first.conv2d(x[:, 12:])
        assert torch.equal(model.layers[0](x), _channel_shuffle(torch.cat([x1, x2], 1), 2))
    assert tuple(y.shape) == (2, *arch.network.output_shape)


def test_parity_with_symbolic_sizes(tmp_path):
    """The ONNX graph of a symbolic-size spec keeps H and W dynamic (channel_shuffle restores
    the input's own shape) and agrees with PyTorch at the sizes parity draws."""
    from click.testing import CliRunner

    from archgen.cli import main
    spec = tmp_path / "dynamic.cnn"
    spec.write_text("input [3, H, W]\nconv2d(8, 3, padding=1)\nprelu(8)\nchannel_shuffle(4)\n"
                    "hardsigmoid()\nchannel_slice(2, 6)\nmish()\nhardtanh(-1.5, 0.5)\n"
                    "log_softmax(1)\n")
    r = CliRunner().invoke(main, ["parity", str(spec)])
    assert r.exit_code == 0 and "dynamic H and W" in r.output and ": ok:" in r.output, r.output
