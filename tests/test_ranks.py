"""1-D and 3-D inputs ([C, L], [C, D, H, W]) and the rank-generic kinds (issue 10): random
stacks held to real torch modules (shapes, parameter counts, accept/reject verdicts), ONNX
Runtime against PyTorch on random stacks in every padding mode, and PyTorch's M5 tutorial net.

The PyTorch side is built here from the spec's own arguments (PyTorch's names), never from
archgen's lowering: nn.Conv1d(in_channels, **args) and so on."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import archgen
from archgen import parity
from archgen.diagnostics import SpecError

ROOT = Path(__file__).resolve().parent.parent
MODES = ("zeros", "reflect", "replicate", "circular")


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(_text(i) for i in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _axes(rng, dims, lo, hi):
    """One value, or one per axis."""
    if rng.random() < 0.6:
        return rng.randint(lo, hi)
    return tuple(rng.randint(lo, hi) for _ in range(dims))


def _layer(rng, dims: int) -> tuple[str, dict]:
    op = rng.choice(["conv", "conv", "conv", "maxpool", "avgpool", "batchnorm", "relu", "pad",
                     "conv_transpose", "adaptive_avgpool", "adaptive_maxpool", "upsample",
                     "instancenorm"])
    a: dict = {}
    if op == "conv":
        a["out_channels"] = rng.choice([2, 4])
        a["kernel_size"] = _axes(rng, dims, 1, 4)
        if rng.random() < 0.4:
            a["stride"] = _axes(rng, dims, 1, 2)
        if rng.random() < 0.6:
            a["padding"] = rng.choice([0, 1, 2, "same", "valid", _axes(rng, dims, 0, 2)])
        if rng.random() < 0.2:
            a["dilation"] = 2
        if rng.random() < 0.5:
            a["padding_mode"] = rng.choice(MODES[1:])
        if rng.random() < 0.2:
            a["groups"] = 2
        if rng.random() < 0.2:
            a["bias"] = False
    elif op == "conv_transpose":
        a["out_channels"] = rng.choice([2, 4])
        a["kernel_size"] = _axes(rng, dims, 1, 3)
        if rng.random() < 0.5:
            a["stride"] = 2
        if rng.random() < 0.3:
            a["padding"] = 1
        if a.get("stride") == 2 and rng.random() < 0.4:
            a["output_padding"] = 1
        if rng.random() < 0.2:
            a["dilation"] = 2
        if rng.random() < 0.2:
            a["groups"] = 2
        if rng.random() < 0.2:
            a["bias"] = False
    elif op in ("maxpool", "avgpool"):
        a["kernel_size"] = _axes(rng, dims, 1, 3)
        if rng.random() < 0.4:
            a["stride"] = _axes(rng, dims, 1, 2)
        if rng.random() < 0.3:
            a["padding"] = 1
        if rng.random() < 0.3:
            a["ceil_mode"] = True
        if op == "avgpool" and rng.random() < 0.3:
            a["count_include_pad"] = False
        if op == "avgpool" and dims > 1 and rng.random() < 0.2:
            a["divisor_override"] = rng.choice([1, 3])
        if op == "maxpool" and rng.random() < 0.4:
            a["dilation"] = 2
    elif op.startswith("adaptive"):
        a["output_size"] = _axes(rng, dims, 1, 4)
    elif op == "batchnorm":
        for key, v in (("eps", 1e-3), ("momentum", 0.2), ("affine", False),
                       ("track_running_stats", False)):
            if rng.random() < 0.25:
                a[key] = v
    elif op == "instancenorm":
        for key, v in (("eps", 1e-3), ("momentum", 0.2), ("affine", True),
                       ("track_running_stats", True)):
            if rng.random() < 0.3:
                a[key] = v
    elif op == "pad":
        a["padding"] = rng.choice([1, 2, tuple(rng.randint(0, 2) for _ in range(2 * dims))])
        a["mode"] = rng.choice(MODES)
        if a["mode"] == "zeros" and rng.random() < 0.6:
            a["value"] = 0.5
    elif op == "upsample":
        if rng.random() < 0.5:
            a["scale_factor"] = rng.choice([2, 1.5, 0.5])
        else:
            a["size"] = _axes(rng, dims, 2, 7)
        a["mode"] = rng.choice(["nearest", {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]])
        if a["mode"] != "nearest" and rng.random() < 0.3:
            a["align_corners"] = True
    return op, a


def _name(op: str, dims: int) -> str:
    return op if op in ("relu", "upsample") else f"{op}{dims}d"


def _spec(shape, layers, dims) -> str:
    lines = [f"network R\ninput [{', '.join(map(str, shape))}]"]
    for op, a in layers:
        lines.append(f"{_name(op, dims)}({', '.join(f'{k}={_text(v)}' for k, v in a.items())})")
    return "\n".join(lines) + "\n"


class _Pad(nn.Module):
    def __init__(self, padding, mode="zeros", dims=1):
        super().__init__()
        self.pads = (padding,) * (2 * dims) if isinstance(padding, int) else padding
        self.mode = "constant" if mode == "zeros" else mode

    def forward(self, x):
        return F.pad(x, self.pads, mode=self.mode)


def _torch_layer(op: str, a: dict, x: torch.Tensor, dims: int) -> nn.Module:
    c = x.shape[1]
    d = f"{dims}d"
    if op == "conv":
        return getattr(nn, f"Conv{d}")(c, **a)
    if op == "conv_transpose":
        return getattr(nn, f"ConvTranspose{d}")(c, **a)
    if op == "batchnorm":
        return getattr(nn, f"BatchNorm{d}")(c, **a)
    if op == "instancenorm":
        return getattr(nn, f"InstanceNorm{d}")(c, **a)
    if op == "relu":
        return nn.ReLU()
    if op == "pad":
        return _Pad(a["padding"], a["mode"], dims)
    if op == "upsample":
        return nn.Upsample(**a)
    names = {"maxpool": "MaxPool", "avgpool": "AvgPool", "adaptive_avgpool": "AdaptiveAvgPool",
             "adaptive_maxpool": "AdaptiveMaxPool"}
    return getattr(nn, f"{names[op]}{d}")(**a)


def random_rank_spec(seed: int) -> str:
    """A random 1-D (even seeds) or 3-D stack that checks, for the PyTorch target's tests
    (tests/test_emit_torch.py: generated code, determinism, every option covered)."""
    rng = random.Random(5000 + seed)
    dims = 1 if seed % 2 == 0 else 3
    shape = (rng.choice([1, 2, 4]), *(rng.randint(6, 12) for _ in range(dims)))
    layers: list = []
    if seed % 10 == 1:  # options random choices seldom reach at the few seeds the tests use
        layers.append(("pad", {"padding": 1, "mode": "zeros", "value": 0.5}))
    if seed % 10 == 2:
        layers.append(("batchnorm", {"track_running_stats": False}))
    if seed % 10 == 3:
        layers.append(("instancenorm", {"eps": 1e-3, "momentum": 0.2, "affine": True,
                                        "track_running_stats": True}))
    for _ in range(rng.randint(3, 6)):
        for _attempt in range(30):
            layer = _layer(rng, dims)
            if archgen.parse(_spec(shape, [*layers, layer], dims), "r.cnn").ok:
                layers.append(layer)
                break
    return _spec(shape, layers, dims).replace("network R\n", f"network Rank{seed}\n")


def _cases(dims: int, count: int, seed: int):
    rng = random.Random(seed)
    for i in range(count):
        shape = (rng.choice([1, 2, 3]), *(rng.randint(3, 12) for _ in range(dims)))
        yield pytest.param(dims, shape, [_layer(rng, dims) for _ in range(rng.randint(1, 3))],
                           id=f"{dims}d-{i}")


def _torch_verdict(shape, layers, dims):
    """(output shape, parameter count) from PyTorch, or None where PyTorch refuses."""
    x = torch.zeros(2, *shape)
    params = 0
    try:
        with torch.no_grad():
            for op, a in layers:
                m = _torch_layer(op, a, x, dims).eval()
                params += sum(p.numel() for p in m.parameters())
                x = m(x)
                if x.numel() == 0:
                    return None
    except (RuntimeError, ValueError, NotImplementedError):
        return None
    return tuple(x.shape[1:]), params


@pytest.mark.parametrize("dims,shape,layers", [*_cases(1, 120, 11), *_cases(3, 80, 33)])
def test_random_stacks_match_pytorch(dims, shape, layers):
    spec = _spec(shape, layers, dims)
    want = _torch_verdict(shape, layers, dims)
    arch = archgen.parse(spec, "r.cnn")
    errors = [d for d in arch.check() if d.is_error]
    if want is None:
        assert errors, f"PyTorch refuses but archgen accepts:\n{spec}"
        return
    assert not errors, f"PyTorch accepts but archgen refuses:\n{spec}\n" + \
        "\n".join(d.render(spec) for d in errors)
    net = arch.network
    assert (tuple(net.output_shape), net.total_params) == want, spec


def _parity_cases():
    rng = random.Random(7)
    for dims in (1, 3):
        for mode in MODES:
            for i in range(3):
                shape = (2, *(rng.randint(5, 9) for _ in range(dims)))
                layers = [("conv", {"out_channels": 3, "kernel_size": 3, "padding": 1,
                                    "padding_mode": mode}),
                          ("pad", {"padding": rng.choice([1, tuple(
                              rng.randint(0, 2) for _ in range(2 * dims))]), "mode": mode}),
                          _layer(rng, dims), ("batchnorm", {}), ("relu", {}), _layer(rng, dims)]
                yield pytest.param(dims, shape, layers, id=f"{dims}d-{mode}-{i}")


@pytest.mark.parametrize("dims,shape,layers", list(_parity_cases()))
def test_onnx_parity_of_random_stacks_in_every_padding_mode(dims, shape, layers):
    spec = _spec(shape, layers, dims)
    arch = archgen.parse(spec, "p.cnn")
    if not arch.ok:  # a random layer the map cannot take: PyTorch must refuse it too
        assert _torch_verdict(shape, layers, dims) is None, spec
        return
    report = parity.run_parity(arch.network, batch=2)
    assert report.ok, spec + report.to_text()


# -- PyTorch's M5 (speech-commands tutorial) ---------------------------------------------------

class M5(nn.Module):
    """Verbatim from PyTorch's speech-commands tutorial."""

    def __init__(self, n_input=1, n_output=35, stride=16, n_channel=32):
        super().__init__()
        self.conv1 = nn.Conv1d(n_input, n_channel, kernel_size=80, stride=stride)
        self.bn1 = nn.BatchNorm1d(n_channel)
        self.pool1 = nn.MaxPool1d(4)
        self.conv2 = nn.Conv1d(n_channel, n_channel, kernel_size=3)
        self.bn2 = nn.BatchNorm1d(n_channel)
        self.pool2 = nn.MaxPool1d(4)
        self.conv3 = nn.Conv1d(n_channel, 2 * n_channel, kernel_size=3)
        self.bn3 = nn.BatchNorm1d(2 * n_channel)
        self.pool3 = nn.MaxPool1d(4)
        self.conv4 = nn.Conv1d(2 * n_channel, 2 * n_channel, kernel_size=3)
        self.bn4 = nn.BatchNorm1d(2 * n_channel)
        self.pool4 = nn.MaxPool1d(4)
        self.fc1 = nn.Linear(2 * n_channel, n_output)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.bn2(self.conv2(x))))
        x = self.pool3(F.relu(self.bn3(self.conv3(x))))
        x = self.pool4(F.relu(self.bn4(self.conv4(x))))
        x = F.avg_pool1d(x, x.shape[-1])
        x = x.permute(0, 2, 1)
        x = self.fc1(x)
        return F.log_softmax(x, dim=2)


def test_m5_has_the_tutorials_parameters_keys_and_outputs():
    from archgen.emit_torch import load_module
    from archgen.weights import state_shapes
    net = archgen.load(ROOT / "examples" / "m5.cnn").network
    ref = M5().eval()
    assert net.total_params == sum(p.numel() for p in ref.parameters()) == 26915
    assert state_shapes(net) == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ours = load_module(net).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(F.log_softmax(ours(x), dim=1), ref(x)[:, 0])


def test_batchnorm1d_takes_flat_features_and_length_but_not_a_map():
    assert archgen.parse("network B\ninput [6]\nbatchnorm1d()\n").ok
    assert archgen.parse("network B\ninput [6, 10]\nbatchnorm1d()\n").ok
    bad = archgen.parse("network B\ninput [6, 10, 10]\nbatchnorm1d()\n")
    assert [d.code for d in bad.errors] == ["E405"]


def test_upsample_mode_must_fit_the_rank():
    """PyTorch's interpolate refuses bilinear on [N, C, L] and trilinear on a map."""
    with pytest.raises(NotImplementedError):
        nn.Upsample(scale_factor=2, mode="bilinear")(torch.zeros(1, 1, 4))
    bad = archgen.parse("network U\ninput [1, 4]\nupsample(scale_factor=2, mode=bilinear)\n")
    assert [d.code for d in bad.errors] == ["E427"]


def test_strided_same_padding_is_refused_outside_conv2d():
    with pytest.raises(ValueError):
        nn.Conv1d(1, 1, 3, stride=2, padding="same")
    bad = archgen.parse("network S\ninput [1, 16]\nconv1d(4, 3, stride=2, padding=same)\n")
    assert [d.code for d in bad.errors] == ["E426"]
    with pytest.raises(SpecError):
        _ = bad.network


@pytest.mark.parametrize("name", ["m5.cnn", "c3d_small.cnn"])
def test_conv_batchnorm_folding_in_every_rank(name):
    """export --fold folds conv1d/conv3d + batchnorm1d/3d as it folds the 2-D pair; the
    folded graph still computes the module's outputs."""
    import numpy as np
    import onnxruntime as ort

    from archgen.emit_onnx import build_onnx, folded_pairs
    from archgen.emit_torch import load_module
    from archgen.weights import initial_state
    net = archgen.load(ROOT / "examples" / name).network
    assert len(folded_pairs(net)) >= 3
    model = build_onnx(net, fold=True)
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    module = load_module(net)
    module.load_state_dict(initial_state(net, 0))
    module.eval()
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(["output"], {"input": x})[0], ref, rtol=1e-4,
                               atol=1e-5 * max(1.0, float(np.abs(ref).max())))


RESIDUAL_1D = """network Res1D
input [4, 64]
block basic(planes, stride=1):
    add:
        branch:
            conv1d(planes, 3, stride=stride, padding=1, bias=false)
            batchnorm1d()
            relu(inplace=true)
            conv1d(planes, 3, padding=1, bias=false)
            batchnorm1d()
        if stride != 1 or in_channels != planes:
            downsample:
                conv1d(planes, 1, stride=stride, bias=false)
                batchnorm1d()
        else:
            identity()
    relu(inplace=true)
stem = conv1d(16, 7, stride=2, padding=in_length // 32)
layer1 = basic(16)
layer2 = basic(32, 2)
layer3 = basic(32)
adaptive_avgpool1d(1)
flatten()
fc = linear(5)
"""


def test_blocks_see_the_sizes_of_1d_and_3d_inputs():
    """in_channels in a 1-D block (a ResNet-1D shortcut), in_length and in_depth: one block
    class for every instance, and parity."""
    net = archgen.parse(RESIDUAL_1D, "res1d.cnn").network
    assert net.output_shape == (5,)
    assert parity.run_parity(net, batch=2).ok
    from archgen.emit_torch import render_torch
    assert render_torch(net).count("class Basic(nn.Module)") == 1
    volume = archgen.parse("network V\ninput [2, 4, 6, 6]\nblock flat_time():\n"
                           "    avgpool3d((in_depth, 1, 1))\nflat_time()\n", "v.cnn").network
    assert volume.output_shape == (2, 1, 6, 6)


@pytest.mark.parametrize("name,symbols", [("m5.cnn", ["L"]), ("c3d_small.cnn", ["D", "H", "W"])])
def test_dynamic_size_export_names_every_spatial_axis(name, symbols):
    from archgen.emit_onnx import build_dynamic
    net = archgen.load(ROOT / "examples" / name).network
    d = build_dynamic(net)
    assert d.symbols == symbols
    dims = d.built.model.graph.input[0].type.tensor_type.shape.dim
    assert [x.dim_param for x in dims][2:] == symbols
