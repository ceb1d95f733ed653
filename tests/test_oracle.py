"""PyTorch as the oracle for archgen's static checks.

Every case is a spec (`input [C, H, W]` plus layer lines) together with the PyTorch modules
built from the same argument values (archgen uses PyTorch's argument names, so the spec
arguments are passed to the torch classes unchanged; only the inferred in_channels /
num_features / in_features are filled from the input). One runner, `run_layer_test` (in the
spirit of Keras's run_layer_test), does the comparison:

* verdict: PyTorch raises (at construction or in a forward pass of a zero tensor of batch 1,
  eval mode) <=> archgen reports an error;
* when both accept: output shape (batch excluded), trainable parameters (sum of numel) and
  MACs (FlopCounterMode's total // 2; it counts conv, conv_transpose and linear only), for the
  whole network and for every layer.

Deliberate departures from PyTorch are not compared for a verdict but tested as explicit
rejections (`DELIBERATE`), and `padding=same` with a stride > 1 (archgen's SAME_UPPER) is
compared against an explicit F.pad + unpadded conv.

The random cases use random.Random with fixed seeds, so every run checks the same
configurations; a case's id (generator-index) and its spec, printed on failure, reproduce it.
"""

from __future__ import annotations

import collections
import random
import warnings
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import archgen
from archgen import shapes
from archgen.layers import REGISTRY

# ---------------------------------------------------------------------------------------------
# Specs: PyTorch's positional order per op (the inferred first argument removed: it is
# keyword-only in archgen) and rendering of values in the .cnn syntax.

SIGNATURE = {
    "conv2d": ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
               "padding_mode"),
    "conv_transpose2d": ("out_channels", "kernel_size", "stride", "padding", "output_padding",
                         "groups", "bias", "dilation", "padding_mode"),
    "maxpool2d": ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    "avgpool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override"),
    "adaptive_avgpool2d": ("output_size",),
    "adaptive_maxpool2d": ("output_size", "return_indices"),
    "upsample": ("size", "scale_factor", "mode", "align_corners"),
    "pad2d": ("padding", "mode", "value"),
    "batchnorm2d": ("eps", "momentum", "affine", "track_running_stats"),
    "flatten": ("start_dim", "end_dim"),
    "linear": ("out_features", "bias"),
    "softmax": ("dim",),
    "relu": (),
    "gelu": (),
}
INFERRED = {"conv2d": "in_channels", "conv_transpose2d": "in_channels",
            "batchnorm2d": "num_features", "linear": "in_features"}
TORCH_CLASS = {
    "conv2d": nn.Conv2d, "conv_transpose2d": nn.ConvTranspose2d, "maxpool2d": nn.MaxPool2d,
    "avgpool2d": nn.AvgPool2d, "adaptive_avgpool2d": nn.AdaptiveAvgPool2d,
    "adaptive_maxpool2d": nn.AdaptiveMaxPool2d, "upsample": nn.Upsample,
    "batchnorm2d": nn.BatchNorm2d, "flatten": nn.Flatten, "linear": nn.Linear,
    "softmax": nn.Softmax, "relu": nn.ReLU, "gelu": nn.GELU,
}


def render(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return "(" + ", ".join(render(i) for i in v) + ")"
    return str(v)  # ints, floats (repr), and bare words such as same / reflect / bilinear


@dataclass
class L:
    """One layer: the op and its arguments in PyTorch's order; `positional` leading ones are
    written without their names."""

    op: str
    args: dict
    positional: int = 0

    def line(self) -> str:
        order = [n for n in SIGNATURE[self.op] if n in self.args]
        order += [n for n in self.args if n not in order]
        parts = []
        for i, name in enumerate(order):
            value = render(self.args[name])
            parts.append(value if i < self.positional else f"{name}={value}")
        return f"{self.op}({', '.join(parts)})"


def max_positional(op: str, args: dict, in_channels: int | None = None) -> int:
    """How many leading arguments may be written positionally: the present prefix of the
    signature, within archgen's positional arguments (the ones that define the shape; the
    others are keyword-only). A conv with out_channels equal to its in_channels and a
    positional stride reads like PyTorch's (in_channels, out_channels, kernel_size) and is
    refused as ambiguous (E306, tests/test_habits.py), so it keeps to two there, and where
    the input is not known (stacks)."""
    limit = len(REGISTRY[op].positional_args)
    if op in ("conv2d", "conv_transpose2d") and (
            in_channels is None or args.get("out_channels") == in_channels):
        limit = min(limit, 2)
    n = 0
    for name in SIGNATURE[op][:limit]:
        if name not in args:
            break
        n += 1
    return n


@dataclass
class Case:
    input: tuple
    layers: list[L]
    id: str = ""
    # the error code of a deliberate archgen rejection of a configuration PyTorch accepts
    reject: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return "input [" + ", ".join(map(str, self.input)) + "]\n" + \
            "".join(layer.line() + "\n" for layer in self.layers)


# ---------------------------------------------------------------------------------------------
# The PyTorch side


class Pad(nn.Module):
    """F.pad with (left, right, top, bottom); `mode` in archgen's words."""

    def __init__(self, pads, mode="zeros", value=None):
        super().__init__()
        self.pads, self.value = tuple(pads), value
        self.mode = "constant" if mode == "zeros" else mode

    def forward(self, x):
        if self.value is None:
            return F.pad(x, self.pads, mode=self.mode)
        return F.pad(x, self.pads, mode=self.mode, value=self.value)


def pad4(p):
    """pad2d's padding as (left, right, top, bottom); a 2-tuple is (left, right), as in F.pad."""
    if isinstance(p, int):
        return (p, p, p, p)
    if len(p) == 2:
        return (*p, 0, 0)
    return tuple(p)


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def same_upper_conv(kw: dict, in_shape) -> nn.Module:
    """archgen's padding=same with a stride > 1: explicit SAME_UPPER pads, then a conv without
    padding."""
    k, s, d = pair(kw["kernel_size"]), pair(kw.get("stride", 1)), pair(kw.get("dilation", 1))
    (top, bottom), (left, right) = (shapes.same_pads(in_shape[1 + i], k[i], s[i], d[i])
                                    for i in range(2))
    conv_kw = {n: v for n, v in kw.items() if n not in ("padding", "padding_mode")}
    return nn.Sequential(Pad((left, right, top, bottom), kw.get("padding_mode", "zeros")),
                         nn.Conv2d(**conv_kw, padding=0))


def torch_layer(layer: L, in_shape) -> nn.Module:
    kw = dict(layer.args)
    if layer.op == "linear":  # nn.Linear acts on the last dimension of any input
        kw.setdefault("in_features", in_shape[-1])
    if layer.op in INFERRED:
        kw.setdefault(INFERRED[layer.op], in_shape[0])
    if layer.op == "conv2d" and kw.get("padding") == "same" and pair(kw.get("stride", 1)) != (1, 1):
        return same_upper_conv(kw, in_shape)
    if layer.op == "pad2d":
        mode, value = kw.get("mode", "zeros"), float(kw.get("value", 0.0))
        # value=0.0 is pad2d's default; F.pad refuses any value (even 0.0) for the other modes
        return Pad(pad4(kw["padding"]), mode, value if mode == "zeros" or value != 0.0 else None)
    if layer.op == "upsample":
        kw = {n: (tuple(float(i) for i in v) if isinstance(v, tuple) else float(v))
              if n == "scale_factor" and v is not None else v for n, v in kw.items()}
    return TORCH_CLASS[layer.op](**kw)


def torch_run(case: Case):
    """Build the modules one after the other on the tensor each produces and run a zero tensor
    of batch 1 through them (eval mode). Returns (output shape per layer, parameters per
    layer, flops per layer) or the exception PyTorch raised.

    oneDNN is switched off: ATen's native kernels carry PyTorch's shape checks, while the
    oneDNN conv_transpose2d path skips one of them and returns an empty tensor where the
    output size is 0 (so does the meta backend); see test_conv_transpose_empty_output."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # also the one mkldnn.flags itself raises
            return _torch_run(case)
    except Exception as err:  # noqa: BLE001  (every rejection counts, whatever its type)
        return err


def _torch_run(case: Case):
    x = torch.zeros(1, *case.input)
    outs, params, flops = [], [], []
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        for layer in case.layers:
            m = torch_layer(layer, tuple(x.shape[1:])).eval()
            y = m(x)  # the verdict: outside FlopCounterMode, whose dispatch mode routes some
            # ops (upsample_nearest2d) through decompositions that lack their checks
            with FlopCounterMode(display=False) as counter:
                m(x)
            x = y[0] if isinstance(y, tuple) else y  # return_indices=True
            outs.append(tuple(x.shape[1:]))
            params.append(sum(p.numel() for p in m.parameters()))
            flops.append(counter.get_total_flops())
    return outs, params, flops


# ---------------------------------------------------------------------------------------------
# Known disagreements: archgen bugs this file found, each a reason and a predicate on the case. A
# disagreement that a predicate explains xfails, imperatively, so that the random case simply
# passes once archgen is fixed; any other disagreement fails. The minimal reproducing cases
# are the strict xfails in test_known_disagreement.


def _has(op, test):
    return lambda case: any(layer.op == op and test(layer.args) for layer in case.layers)


@dataclass(frozen=True)
class Known:
    reason: str
    applies: object  # Case -> bool


def _negative(v) -> bool:
    return any(i < 0 for i in (v if isinstance(v, tuple) else (v,))) \
        if isinstance(v, (int, tuple)) else False


KNOWN: list[Known] = []  # none open

# archgen refuses these on purpose, although PyTorch accepts them: negative padding crops
# (write a crop explicitly instead), and zero-sized outputs cannot feed a network.
DELIBERATE_RULES = [
    Known("negative conv2d padding (PyTorch crops with F.pad in non-zero modes)",
          _has("conv2d", lambda a: _negative(a.get("padding", 0)))),
    Known("negative pad2d padding (cropping)", _has("pad2d", lambda a: _negative(a["padding"]))),
    Known("adaptive pooling to output_size 0",
          lambda case: any(layer.op.startswith("adaptive")
                           and 0 in pair(layer.args["output_size"]) for layer in case.layers)),
    Known("linear(out_features=0)", _has("linear", lambda a: a["out_features"] == 0)),
]


def disagree(case: Case, message: str) -> None:
    reasons = [k.reason for k in KNOWN if k.applies(case)]
    if reasons:
        pytest.xfail("known: " + "; ".join(reasons))
    pytest.fail(message + f"\n--- spec ---\n{case.spec}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# The runner


STATS: collections.Counter = collections.Counter()  # what run_layer_test compared, by outcome


def run_layer_test(case: Case) -> str:
    """Compare archgen with PyTorch on one case; returns what was compared ("rejected",
    "accepted" or "deliberate")."""
    outcome = _run_layer_test(case)
    STATS[outcome] += 1
    return outcome


def _run_layer_test(case: Case) -> str:
    arch = archgen.parse(case.spec)
    errors = [d for d in arch.check() if d.is_error]
    codes = [d.code for d in errors]
    result = torch_run(case)
    torch_error = result if isinstance(result, Exception) else None
    if case.reject is not None:
        # not a verdict comparison: where PyTorch accepts, archgen must still refuse, with the
        # code of its deliberate rule
        if torch_error is not None:
            if not errors:
                disagree(case, f"PyTorch rejects ({type(torch_error).__name__}: "
                         f"{torch_error}) but archgen accepts")
        elif case.reject not in codes:
            disagree(case, f"PyTorch accepts; archgen should refuse this deliberately "
                     f"({case.reject}), it reports {codes}")
        return "deliberate"
    if torch_error is not None:
        if not errors:
            disagree(case, f"PyTorch rejects ({type(torch_error).__name__}: "
                     f"{str(torch_error).splitlines()[0]}) but archgen accepts")
        return "rejected"
    outs, params, flops = result
    if errors and codes == ["E301"] and any(k.applies(case) for k in DELIBERATE_RULES):
        return "deliberate"
    if errors:
        disagree(case, f"PyTorch accepts (output {list(outs[-1])}) but archgen reports "
                 f"{[(d.code, d.message) for d in errors]}")
    net = arch.network
    where = f"\n--- spec ---\n{case.spec}"
    assert all(f % 2 == 0 for f in flops)
    got = (tuple(net.output_shape), net.total_params, net.total_macs)
    assert got == (outs[-1], sum(params), sum(flops) // 2), \
        f"(shape, params, MACs): archgen {got}, PyTorch " \
        f"{(outs[-1], sum(params), sum(flops) // 2)}{where}"
    layers = list(net.layers())
    assert [layer.op for layer in layers] == [layer.op for layer in case.layers], where
    for layer, out, p, f in zip(layers, outs, params, flops):
        got = (tuple(layer.out_shape), layer.params, layer.macs)
        assert got == (out, p, f // 2), \
            f"{layer.op}: (shape, params, MACs) archgen {got}, PyTorch {(out, p, f // 2)}{where}"
        if layer.op not in ("conv2d", "conv_transpose2d", "linear"):
            assert layer.macs == 0, where
        if layer.op == "conv2d" and layer.args["padding"] == "same":
            # SAME_UPPER for every stride: ceil(in / stride), whatever the kernel and dilation
            s = layer.args["stride"]
            assert tuple(layer.out_shape[1:]) == tuple(
                -(-n // s[i]) for i, n in enumerate(layer.in_shape[1:])), where
    return "accepted"


# ---------------------------------------------------------------------------------------------
# Random configurations. Each generator takes an rng and returns a Case; sizes are small
# (1..12) so that windows that do not fit, paddings larger than the map and the like are
# common.


def _size(rng) -> int:
    return rng.randint(1, 12) if rng.random() < 0.6 else rng.randint(1, 5)


def _map(rng, channels=(1, 2, 3, 4, 6)) -> tuple:
    return (rng.choice(channels), _size(rng), _size(rng))


def _int_or_pair(rng, lo, hi):
    return rng.randint(lo, hi) if rng.random() < 0.7 else (rng.randint(lo, hi), rng.randint(lo, hi))


def _maybe(rng, p, make, args, name):
    if rng.random() < p:
        args[name] = make()


def _finish(rng, op, x, args, reject=None) -> Case:
    layer = L(op, args, rng.randint(0, max_positional(op, args, x[0])))
    return Case(x, [layer], reject=reject)


def gen_conv2d(rng) -> Case:
    x = _map(rng)
    args: dict = {}
    groups = rng.choice([1, 1, 2, 3, 4]) if rng.random() < 0.5 else None
    args["out_channels"] = (groups or 1) * rng.randint(1, 3) if rng.random() < 0.8 \
        else rng.randint(1, 8)
    args["kernel_size"] = _int_or_pair(rng, 1, 5)
    _maybe(rng, 0.5, lambda: _int_or_pair(rng, 1, 3), args, "stride")
    _maybe(rng, 0.7, lambda: rng.choice(["same", "same", "valid", rng.randint(0, 3),
                                         (rng.randint(0, 3), rng.randint(0, 3))]),
           args, "padding")
    _maybe(rng, 0.35, lambda: _int_or_pair(rng, 1, 3), args, "dilation")
    if groups is not None:
        args["groups"] = groups
    _maybe(rng, 0.3, lambda: rng.random() < 0.5, args, "bias")
    _maybe(rng, 0.6, lambda: rng.choice(["zeros", "reflect", "replicate", "circular"]),
           args, "padding_mode")
    if rng.random() < 0.05:
        args["in_channels"] = x[0] + rng.choice([0, 1])  # a wrong in_channels now and then
    if rng.random() < 0.06:  # values out of range
        name = rng.choice(["kernel_size", "stride", "dilation", "padding", "groups"])
        args[name] = -1 if name == "padding" else 0
    return _finish(rng, "conv2d", x, args)


def gen_conv_transpose2d(rng) -> Case:
    x = _map(rng)
    args: dict = {}
    groups = rng.choice([1, 1, 2, 3]) if rng.random() < 0.4 else None
    args["out_channels"] = (groups or 1) * rng.randint(1, 3) if rng.random() < 0.8 \
        else rng.randint(1, 6)
    args["kernel_size"] = _int_or_pair(rng, 1, 4)
    _maybe(rng, 0.6, lambda: _int_or_pair(rng, 1, 3), args, "stride")
    _maybe(rng, 0.6, lambda: _int_or_pair(rng, 0, 3), args, "padding")
    _maybe(rng, 0.4, lambda: _int_or_pair(rng, 0, 2), args, "output_padding")
    if groups is not None:
        args["groups"] = groups
    _maybe(rng, 0.3, lambda: rng.random() < 0.5, args, "bias")
    _maybe(rng, 0.35, lambda: _int_or_pair(rng, 1, 3), args, "dilation")
    if rng.random() < 0.04:  # values out of range
        args[rng.choice(["padding", "output_padding", "stride"])] = -1
    _maybe(rng, 0.08, lambda: rng.choice(["zeros", "reflect"]), args, "padding_mode")
    return _finish(rng, "conv_transpose2d", x, args)


def gen_maxpool2d(rng) -> Case:
    x = _map(rng)
    args: dict = {"kernel_size": _int_or_pair(rng, 1, 4)}
    _maybe(rng, 0.5, lambda: _int_or_pair(rng, 1, 3) if rng.random() < 0.9 else None, args,
           "stride")
    _maybe(rng, 0.6, lambda: _int_or_pair(rng, 0, 2), args, "padding")
    _maybe(rng, 0.35, lambda: _int_or_pair(rng, 1, 3), args, "dilation")
    _maybe(rng, 0.6, lambda: rng.random() < 0.6, args, "ceil_mode")
    reject = None
    if rng.random() < 0.04:
        args["return_indices"] = True
        reject = "E301"
    return _finish(rng, "maxpool2d", x, args, reject)


def gen_avgpool2d(rng) -> Case:
    x = _map(rng)
    args: dict = {"kernel_size": _int_or_pair(rng, 1, 4)}
    _maybe(rng, 0.5, lambda: _int_or_pair(rng, 1, 3) if rng.random() < 0.9 else None, args,
           "stride")
    _maybe(rng, 0.6, lambda: _int_or_pair(rng, 0, 2), args, "padding")
    _maybe(rng, 0.6, lambda: rng.random() < 0.6, args, "ceil_mode")
    _maybe(rng, 0.4, lambda: rng.random() < 0.5, args, "count_include_pad")
    _maybe(rng, 0.15, lambda: rng.choice([1, 2, 3, 4, 0, -1]), args, "divisor_override")
    return _finish(rng, "avgpool2d", x, args)


def gen_adaptive(rng) -> Case:
    x = _map(rng)
    op = rng.choice(["adaptive_avgpool2d", "adaptive_maxpool2d"])
    args: dict = {"output_size": _int_or_pair(rng, 1, 7) if rng.random() < 0.95 else 0}
    reject = None
    if op == "adaptive_maxpool2d" and rng.random() < 0.1:
        args["return_indices"] = True
        reject = "E301"
    return _finish(rng, op, x, args, reject)


def gen_upsample(rng) -> Case:
    x = _map(rng)
    args: dict = {}
    how = rng.random()
    if how < 0.4 or how >= 0.95:
        args["size"] = _int_or_pair(rng, 1, 12)
    if how >= 0.4:  # 5% both: PyTorch refuses
        args["scale_factor"] = rng.choice([
            rng.randint(1, 3),
            rng.choice([0.5, 1.5, 2.0, 0.3, 1.25, 2.5, 0.1, 0.29, 1.1, 0.7, 2.3]),
            (rng.choice([1, 2, 0.5, 1.5]), rng.choice([1, 3, 0.7, 2.5]))])
    if rng.random() < 0.03:
        args.clear()  # neither: PyTorch refuses
    _maybe(rng, 0.6, lambda: rng.choice(["nearest", "bilinear"]), args, "mode")
    _maybe(rng, 0.25, lambda: rng.choice([True, False, None]), args, "align_corners")
    return _finish(rng, "upsample", x, args)


def gen_pad2d(rng) -> Case:
    x = _map(rng)
    low = -3 if rng.random() < 0.08 else 0  # negative: cropping
    args: dict = {"padding": rng.randint(low, 4) if rng.random() < 0.5
                  else tuple(rng.randint(low, 5) for _ in range(4))}
    _maybe(rng, 0.8, lambda: rng.choice(["zeros", "reflect", "replicate", "circular"]),
           args, "mode")
    _maybe(rng, 0.2, lambda: rng.choice([0.0, 1.5]), args, "value")
    return _finish(rng, "pad2d", x, args)


def gen_batchnorm2d(rng) -> Case:
    x = _map(rng)
    args: dict = {}
    _maybe(rng, 0.3, lambda: rng.choice([1e-05, 0.001, 0.1, 1e-05, 0.001, 0.0, -1.0]),
           args, "eps")
    _maybe(rng, 0.3, lambda: rng.choice([0.1, 0.01, 0.9, 0.1, None]), args, "momentum")
    _maybe(rng, 0.4, lambda: rng.random() < 0.5, args, "affine")
    _maybe(rng, 0.1, lambda: rng.random() < 0.5, args, "track_running_stats")
    if rng.random() < 0.05:
        args["num_features"] = x[0] + rng.choice([0, 1])
    return _finish(rng, "batchnorm2d", x, args)


def gen_flatten(rng) -> Case:
    x = _map(rng) if rng.random() < 0.8 else (rng.randint(1, 20),)
    ndim = len(x) + 1
    args: dict = {}
    _maybe(rng, 0.7, lambda: rng.randint(-ndim - 1, ndim), args, "start_dim")
    _maybe(rng, 0.6, lambda: rng.randint(-ndim - 1, ndim), args, "end_dim")
    start = args.get("start_dim", 1)
    reject = "E301" if -ndim <= start < ndim and start % ndim == 0 and \
        -ndim <= args.get("end_dim", -1) < ndim else None
    return _finish(rng, "flatten", x, args, reject)


def gen_linear(rng) -> Case:
    x = (rng.randint(1, 20),) if rng.random() < 0.9 else _map(rng)
    args: dict = {"out_features": rng.randint(1, 10) if rng.random() < 0.95 else 0}
    _maybe(rng, 0.3, lambda: rng.random() < 0.5, args, "bias")
    if rng.random() < 0.08:
        args["in_features"] = x[-1] + rng.choice([0, 1])
    return _finish(rng, "linear", x, args)  # on a map: the last dimension, as PyTorch


def gen_softmax(rng) -> Case:
    x = _map(rng) if rng.random() < 0.7 else (rng.randint(1, 20),)
    ndim = len(x) + 1
    args: dict = {}
    _maybe(rng, 0.8, lambda: rng.randint(-ndim - 1, ndim), args, "dim")
    dim = args.get("dim")
    reject = "E301" if dim is not None and -ndim <= dim < ndim and dim % ndim == 0 else None
    return _finish(rng, "softmax", x, args, reject)


GENERATORS = {
    "conv2d": (gen_conv2d, 160), "conv_transpose2d": (gen_conv_transpose2d, 60),
    "maxpool2d": (gen_maxpool2d, 80), "avgpool2d": (gen_avgpool2d, 70),
    "adaptive": (gen_adaptive, 25), "upsample": (gen_upsample, 50), "pad2d": (gen_pad2d, 60),
    "batchnorm2d": (gen_batchnorm2d, 40), "flatten": (gen_flatten, 30),
    "linear": (gen_linear, 30), "softmax": (gen_softmax, 25),
}


def single_layer_cases() -> list[Case]:
    cases = []
    for seed, (name, (gen, count)) in enumerate(GENERATORS.items()):
        rng = random.Random(1000 + seed)
        for i in range(count):
            case = gen(rng)
            case.id = f"{name}-{i}"
            cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------
# Random stacks: conv / pool / bn / activation chains, then flatten and one or two linears.


def _stack_layer(rng) -> L:
    op = rng.choice(["conv2d", "conv2d", "conv2d", "maxpool2d", "avgpool2d", "batchnorm2d",
                     "relu", "gelu", "conv_transpose2d"])
    args: dict = {}
    if op == "conv2d":
        args["out_channels"] = rng.choice([2, 4, 6, 8])
        args["kernel_size"] = rng.choice([1, 3, 3, 5, (1, 3), 2])
        _maybe(rng, 0.4, lambda: rng.choice([1, 2, 2, 3]), args, "stride")
        _maybe(rng, 0.6, lambda: rng.choice(["same", 1, 0, 2, "valid"]), args, "padding")
        _maybe(rng, 0.15, lambda: 2, args, "dilation")
        _maybe(rng, 0.2, lambda: 2, args, "groups")
        _maybe(rng, 0.3, lambda: rng.random() < 0.5, args, "bias")
        _maybe(rng, 0.3, lambda: rng.choice(["reflect", "replicate", "circular"]), args,
               "padding_mode")
    elif op == "conv_transpose2d":
        args["out_channels"] = rng.choice([2, 4])
        args["kernel_size"] = rng.choice([2, 3])
        _maybe(rng, 0.5, lambda: 2, args, "stride")
        _maybe(rng, 0.3, lambda: 1, args, "padding")
    elif op in ("maxpool2d", "avgpool2d"):
        args["kernel_size"] = rng.choice([2, 2, 3])
        _maybe(rng, 0.3, lambda: rng.choice([1, 2]), args, "stride")
        _maybe(rng, 0.3, lambda: 1, args, "padding")
        _maybe(rng, 0.3, lambda: True, args, "ceil_mode")
    elif op == "batchnorm2d":
        _maybe(rng, 0.2, lambda: False, args, "affine")
    return L(op, args, rng.randint(0, max_positional(op, args)))


def stack_cases(count=100) -> list[Case]:
    rng = random.Random(2024)
    cases = []
    for i in range(count):
        x = (rng.choice([1, 3, 4]), rng.randint(4, 24), rng.randint(4, 24))
        layers = [_stack_layer(rng) for _ in range(rng.randint(1, 4))]
        layers.append(L("flatten", {}))
        layers.append(L("linear", {"out_features": rng.choice([3, 10])}, rng.randint(0, 1)))
        if rng.random() < 0.3:
            layers.append(L("relu", {}))
            layers.append(L("linear", {"out_features": 2, "bias": rng.random() < 0.5}))
        cases.append(Case(x, layers, id=f"stack-{i}"))
    return cases


# ---------------------------------------------------------------------------------------------
# Tests: the random configurations


SINGLE = single_layer_cases()
STACKS = stack_cases()


@pytest.mark.parametrize("case", SINGLE, ids=[c.id for c in SINGLE])
def test_single_layer(case):
    run_layer_test(case)


@pytest.mark.parametrize("case", STACKS, ids=[c.id for c in STACKS])
def test_stack(case):
    run_layer_test(case)


def test_random_cases_reach_the_edges():
    """The fixed seeds keep producing the interesting cases (guards against a generator edit
    that quietly makes everything valid)."""
    ops = {}
    for case in SINGLE:
        layer = case.layers[0]
        ops.setdefault(layer.op, []).append(case)
    same_strided = [c for c in ops["conv2d"] if c.layers[0].args.get("padding") == "same"
                    and pair(c.layers[0].args.get("stride", 1)) != (1, 1)]
    assert len(same_strided) >= 10
    assert sum(c.reject is not None for c in SINGLE) >= 10
    # archgen's verdict stands for PyTorch's here: test_single_layer checks they agree
    rejected = {op: sum(not archgen.parse(c.spec).ok for c in cases)
                for op, cases in ops.items() if op in ("conv2d", "maxpool2d", "avgpool2d",
                                                       "pad2d", "conv_transpose2d", "upsample")}
    assert all(n >= 5 for n in rejected.values()), rejected


# ---------------------------------------------------------------------------------------------
# Tests: specific rules, swept exhaustively over small sizes


def one(x, op, **args) -> Case:
    return Case(tuple(x), [L(op, args)])


def verdict(case: Case) -> list[str]:
    """Run the oracle comparison; return archgen's error codes."""
    assert run_layer_test(case) in ("accepted", "rejected")
    return [d.code for d in archgen.parse(case.spec).check() if d.is_error]


@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 6])
def test_same_stride_1_is_torch_same(kernel, dilation):
    """padding=same with stride 1 is PyTorch's padding='same' for odd and even kernels and
    dilations: same shape and the same pads, the odd pixel at the end (checked on values)."""
    gen = torch.Generator().manual_seed(kernel * 10 + dilation)
    for h, w in [(1, 1), (1, 7), (2, 3), (5, 5), (6, 9), (11, 4)]:
        case = one((2, h, w), "conv2d", out_channels=3, kernel_size=kernel, padding="same",
                   dilation=dilation)
        assert verdict(case) == []
        ref = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
        total = dilation * (kernel - 1)
        ours = [shapes.same_pads(n, kernel, 1, dilation) for n in (w, h)]
        assert ours == [(total // 2, total - total // 2)] * 2
        assert list(ref._reversed_padding_repeated_twice) == [*ours[0], *ours[1]]
        x = torch.randn(1, 2, h, w, generator=gen)
        with torch.no_grad():
            padded = F.pad(x, (*ours[0], *ours[1]))
            torch.testing.assert_close(ref(x), F.conv2d(padded, ref.weight, ref.bias,
                                                        dilation=dilation))


def test_same_strided_is_same_upper():
    """padding=same with a stride > 1 is TensorFlow/ONNX SAME_UPPER: out = ceil(in / s), total
    padding max((out - 1) * s + d * (k - 1) + 1 - in, 0), the odd pixel at the end; archgen's
    shapes and the pads the oracle takes from shapes.same_pads are checked against this
    formula written out independently."""
    for size in range(1, 13):
        for k in range(1, 6):
            for s in range(1, 4):
                for d in (1, 2):
                    out = -(-size // s)
                    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                    assert shapes.same_pads(size, k, s, d) == (total // 2, total - total // 2)
    for mode in ("zeros", "reflect", "replicate", "circular"):
        for size in range(1, 9):
            case = one((2, size, size + 1), "conv2d", out_channels=2, kernel_size=3, stride=2,
                       padding="same", padding_mode=mode)
            verdict(case)


@pytest.mark.parametrize("where", ["conv2d", "pad2d"])
@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
def test_padding_mode_limits(where, mode):
    """reflect needs pad < size, circular pad <= size, replicate anything: both in
    conv2d's padding_mode and in pad2d, per side and per axis."""
    for size in range(1, 7):
        for pad in range(size + 3):
            for axis in ("h", "w"):
                h, w = (size, 9) if axis == "h" else (9, size)
                if where == "conv2d":
                    p = (pad, 0) if axis == "h" else (0, pad)
                    case = one((2, h, w), "conv2d", out_channels=2, kernel_size=1, padding=p,
                               padding_mode=mode)
                else:
                    p = (0, 0, 0, pad) if axis == "h" else (pad, 0, 0, 0)  # bottom / left
                    case = one((2, h, w), "pad2d", padding=p, mode=mode)
                codes = verdict(case)
                too_much = {"reflect": pad >= size, "circular": pad > size,
                            "replicate": False}[mode]
                assert codes == (["E403"] if too_much else []), case.spec


def test_groups_must_divide():
    for cin in range(1, 7):
        for cout in (1, 2, 3, 4, 6):
            for g in range(1, 5):
                for op in ("conv2d", "conv_transpose2d"):
                    codes = verdict(one((cin, 5, 5), op, out_channels=cout, kernel_size=3,
                                        groups=g))
                    assert codes == ([] if cin % g == 0 and cout % g == 0 else ["E404"])


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_pool_padding_at_most_half_the_kernel(op):
    for k in range(1, 6):
        for p in range(4):
            extra = {"dilation": 2} if op == "maxpool2d" and k == 2 else {}
            codes = verdict(one((1, 12, 12), op, kernel_size=(k, 3), padding=(p, 1), **extra))
            assert codes == (["E403"] if p > k // 2 else [])


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_ceil_mode(op):
    """ceil_mode rounds up, but drops a last window that would start in the right padding
    (or beyond the input): every small size, kernel, stride and legal padding."""
    configs = [(size, k, s, p) for size in range(1, 13) for k in range(1, 5)
               for s in range(1, 5) for p in range(k // 2 + 1)]
    dropped = 0
    for (h, kh, sh, ph), (w, kw, sw, pw) in zip(configs[::2], configs[1::2]):  # one per axis
        case = one((1, h, w), op, kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                   ceil_mode=True)
        verdict(case)
        for size, k, s, p in ((h, kh, sh, ph), (w, kw, sw, pw)):
            rounded_up = (size + 2 * p - k + s - 1) // s + 1
            dropped += rounded_up >= 1 and (rounded_up - 1) * s >= size + p
    assert dropped >= 20
    # 5 rows, 2x2 windows, stride 2, padding 1: rounding up gives 4 windows, but the 4th
    # would start at padded row 6, the right padding, so there are 3
    case = one((1, 5, 5), op, kernel_size=2, stride=2, padding=1, ceil_mode=True)
    assert verdict(case) == []
    assert archgen.parse(case.spec).network.output_shape == (1, 3, 3)


# ---------------------------------------------------------------------------------------------
# Tests: archgen's deliberate departures from PyTorch, which accepts all of these


DELIBERATE = [
    ("E301", one((3, 4, 4), "maxpool2d", kernel_size=2, return_indices=True)),
    ("E301", one((3, 4, 4), "adaptive_maxpool2d", output_size=2, return_indices=True)),
    ("E301", one((3, 4, 4), "flatten", start_dim=0)),
    ("E301", one((3, 4, 4), "flatten", start_dim=-4, end_dim=2)),
    ("E301", one((7,), "flatten", start_dim=0)),
    ("E301", one((3, 4, 4), "softmax", dim=0)),
    ("E301", one((3, 4, 4), "softmax", dim=-4)),
    ("E301", one((7,), "softmax", dim=0)),
    ("E301", one((7,), "softmax", dim=-2)),
]


@pytest.mark.parametrize("code,case", DELIBERATE, ids=[c.layers[0].line() for _, c in DELIBERATE])
def test_deliberate_rejection(code, case):
    assert not isinstance(torch_run(case), Exception), "PyTorch should accept this"
    case.reject = code
    assert run_layer_test(case) == "deliberate"
    assert code in [d.code for d in archgen.parse(case.spec).check() if d.is_error]


# linear on a map was a deliberate E405 until linear acted, as nn.Linear does, on the last
# dimension of any input: these two cases now agree with PyTorch (shape, parameters, MACs)
LINEAR_ON_A_MAP = [
    (one((3, 4, 4), "linear", out_features=5), (3, 4, 5), []),
    (one((2, 1, 1), "linear", out_features=5), (2, 1, 5), ["W507"]),  # size 1: a missing flatten?
]


@pytest.mark.parametrize("case,shape,warnings", LINEAR_ON_A_MAP,
                         ids=[c.layers[0].line() for c, _, _ in LINEAR_ON_A_MAP])
def test_linear_on_a_map_is_pytorchs_last_dimension(case, shape, warnings):
    outs, params, flops = torch_run(case)
    assert outs[-1] == shape
    assert run_layer_test(case) == "accepted"  # archgen's shape and counts equal these
    net = archgen.parse(case.spec).network
    assert (net.output_shape, net.total_params, net.total_macs) == \
        (shape, sum(params), sum(flops) // 2)
    assert [d.code for d in archgen.parse(case.spec).check()] == warnings


def test_padding_same_strided_is_accepted_deliberately():
    """PyTorch refuses padding='same' with a stride > 1; archgen means SAME_UPPER."""
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    case = one((3, 7, 8), "conv2d", out_channels=4, kernel_size=3, stride=2, padding="same")
    assert run_layer_test(case) == "accepted"
    assert archgen.parse(case.spec).network.output_shape == (4, 4, 4)


# ---------------------------------------------------------------------------------------------
# Tests: disagreements with PyTorch found by this file (archgen bugs until fixed)


FIXED_CASES = [  # disagreements this file found, fixed in archgen: PyTorch's verdict holds
    one((3, 5, 5), "batchnorm2d", eps=0.0),
    one((3, 5, 5), "batchnorm2d", momentum=None),
    one((3, 5, 5), "avgpool2d", kernel_size=2, divisor_override=-1),
]


@pytest.mark.parametrize("case", FIXED_CASES, ids=[c.layers[0].line() for c in FIXED_CASES])
def test_fixed_disagreement(case):
    assert run_layer_test(case) == "accepted"


DELIBERATE_CASES = [
    one((3, 5, 5), "conv2d", out_channels=2, kernel_size=1, padding=-1, padding_mode="reflect"),
    one((3, 5, 5), "pad2d", padding=-1),
    one((3, 5, 5), "pad2d", padding=(-1, 0, 0, 0), mode="replicate"),
    one((3, 5, 5), "adaptive_avgpool2d", output_size=0),
    one((7,), "linear", out_features=0),
]


@pytest.mark.parametrize("case", DELIBERATE_CASES,
                         ids=[c.layers[0].line() for c in DELIBERATE_CASES])
def test_deliberate_rule(case):
    assert not isinstance(torch_run(case), Exception), "PyTorch should accept this"
    assert [d.code for d in archgen.parse(case.spec).check() if d.is_error] == ["E301"]
    assert run_layer_test(case) == "deliberate"


def test_batchnorm_batch_statistics_on_1x1_map():
    """batchnorm2d(track_running_stats=false) normalises with the batch's own statistics even in
    eval mode, so on a 1x1 map a batch of 1 has one value per channel and PyTorch refuses.
    archgen cannot know the batch; it warns."""
    case = one((3, 1, 1), "batchnorm2d", track_running_stats=False)
    assert isinstance(torch_run(case), Exception)
    assert [d.code for d in archgen.parse(case.spec).check()] == ["W505"]


# ---------------------------------------------------------------------------------------------
# Tests: documented PyTorch quirks the oracle works around


def test_conv_transpose_empty_output():
    """An output size of exactly 0: ATen's native shape check refuses it (and archgen with it,
    E402); the oneDNN CPU path and the meta backend return an empty tensor instead. The oracle
    runs with oneDNN off."""
    x, w = torch.zeros(1, 3, 1, 5), torch.zeros(3, 2, 4, 4)
    assert tuple(F.conv_transpose2d(x.to("meta"), w.to("meta"), padding=2).shape) == (1, 2, 0, 4)
    case = one((3, 1, 5), "conv_transpose2d", out_channels=2, kernel_size=4, padding=2)
    assert verdict(case) == ["E402"]


def test_pad2d_pair_meaning():
    """pad2d((a, b)) pads the width only, a left and b right, as F.pad and nn.ZeroPad2d do."""
    net = archgen.parse("input [1, 5, 5]\npad2d((1, 2))\n").network
    assert net.output_shape == (1, 5, 8)
    assert tuple(nn.ZeroPad2d((1, 2))(torch.zeros(1, 1, 5, 5)).shape[1:]) == (1, 5, 8)
