"""The PyTorch target: every spec the checker accepts compiles to a module that ruff accepts as
written, that PyTorch runs, and whose every module gives the shape the checker inferred.

The specs: the examples (globbed), hand-written cases for the corners (CASES) and random specs
built from every layer kind and option, merges, blocks and sections (`random_spec`, fixed
seeds). `test_random_specs_cover_every_option` keeps the random ones honest: it fails when an
option of a layer kind stops being exercised.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_ranks import random_rank_spec

import archgen
from archgen.checker import check
from archgen.diagnostics import SpecError
from archgen.emit_torch import layer_call, load_module, module_filename, render_torch
from archgen.extras import MissingExtra
from archgen.ir import Layer, Merge, Seq, walk
from archgen.layers import REGISTRY
from archgen.layers.base import REQUIRED
from archgen.layers.conv import Conv2d
from archgen.syntax import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _unchecked(text: str, file: str = "spec.cnn"):
    """The checker's result whatever its diagnostics (the API refuses a network with errors)."""
    return check(parse(text, file))


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _net(text: str, file: str = "spec.cnn"):
    arch = archgen.parse(text, file)
    assert arch.ok, "\n".join(d.render(text) for d in arch.errors)
    return arch.network


# ---------------------------------------------------------------------------------------------
# Hand-written corners

_PADS = "\n".join(f"conv2d(4, 3, stride=2, padding=same, padding_mode={m})"
                  for m in ("zeros", "reflect", "replicate", "circular"))

CASES = {
    "same_stride_every_mode": f"input [4, 9, 8]\n{_PADS}\n",
    "same_stride_uneven": """
input [3, 11, 7]
conv2d(6, (3, 4), stride=(2, 3), padding=same, dilation=(2, 1), padding_mode=reflect)
conv2d(6, 2, stride=(1, 2), padding=same, groups=3, bias=false)
conv2d(6, 4, padding=same, padding_mode=circular)
conv2d(6, 5, padding=same, dilation=2, padding_mode=replicate)
conv2d(6, 1, stride=2, padding=valid)
""",
    "pads_and_pools": """
input [3, 12, 10]
pad2d(1)
pad2d((1, 2, 3, 4), mode=reflect)
pad2d((2, 1), mode=replicate)
pad2d((0, 1, 2, 0), mode=circular)
pad2d(2, value=-1.5)
maxpool2d(3, stride=2, padding=1, dilation=2, ceil_mode=true)
avgpool2d((3, 2), stride=(1, 2), padding=1, ceil_mode=true, count_include_pad=false,
          divisor_override=5)
avgpool2d(2, stride=2)
adaptive_maxpool2d((3, 2))
adaptive_avgpool2d(1)
""".replace(",\n          ", ", "),
    "resize_and_transpose": """
input [4, 5, 6]
conv_transpose2d(6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=false)
conv_transpose2d(4, (2, 3), stride=(2, 1), dilation=2)
upsample(scale_factor=2)
upsample(scale_factor=(1.5, 2), mode=bilinear, align_corners=true)
upsample(size=(7, 9), mode=bilinear, align_corners=false)
upsample(size=5)
""",
    "activations_and_flat": """
input [6, 4, 4]
relu(inplace=true)
relu6()
leaky_relu(0.2)
leaky_relu(negative_slope=0.1, inplace=true)
elu(alpha=0.5)
gelu(approximate=tanh)
silu()
sigmoid()
tanh()
hardswish()
softmax(dim=1)
softmax(dim=-1)
batchnorm2d(eps=1e-3, momentum=0.3, affine=false, track_running_stats=false)
dropout2d(0.1)
flatten(start_dim=2)
softmax(dim=2)
flatten(1, 2)
dropout(p=0.2, inplace=true)
linear(7, bias=false)
identity()
softmax()
""",
    "features_input": """
input [12]
linear(8)
add:
    linear(8)
    identity()
concat:
    a = linear(3)
    branch:
        b = linear(5)
        sigmoid()
softmax(dim=-1)
""",
    # Names that are legal attributes but also names the generated file or Python uses.
    "names_that_shadow_nothing": """
network Basic
input [4, 9, 7]
block none(out):
    conv2d(out, 1)
    add:
        identity()
        act = relu()
block basic(out):
    torch = conv2d(out, 3, padding=same, stride=2, padding_mode=reflect)
    x1 = relu()
block conv2d_same(out):
    self = conv2d(out, 3, stride=(2, 1), padding=same, dilation=2, padding_mode=replicate)
    nn = batchnorm2d(affine=false)
block exception(out):
    F = conv2d(out, 4, stride=3, padding=same, padding_mode=circular)
    super = leaky_relu(0.2, inplace=true)
a = none(4)
b = none(8)
x = basic(8)
d = conv2d_same(8)
e = exception(8)
""",
    "merges": """
input [4, 8, 8]
block res(out, stride=1):
    add:
        branch:
            conv1 = conv2d(out, 3, stride=stride, padding=1, bias=false)
            bn1 = batchnorm2d()
            relu()
            conv2 = conv2d(out, 3, padding=1, bias=false)
            bn2 = batchnorm2d()
        if stride != 1 or in_channels != out:
            downsample:
                conv2d(out, 1, stride=stride, bias=false)
                batchnorm2d()
        else:
            identity()
    relu()
stage:
    repeat 2 first(stride=2): res(8)
add:
    branch:
        if false:
            relu()
    identity()
    g:
        int = sigmoid()
concat:
    branch:
        add:
            identity()
            branch:
                concat:
                    conv2d(4, 1)
                    conv2d(4, 3, padding=1)
    relu()
    named:
        conv2d(2, 1)
""",
    "wide_merge": "input [2, 3, 3]\nadd:\n" + "    identity()\n" * 24
                  + "concat:\n" + "    identity()\n" * 24,
    "long_names": f"""
input [64, 3, 3]
{"a" * 64} = conv2d(128, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=8, bias=false, padding_mode=reflect)
add:
    {"b" * 64} = identity()
    {"c" * 64} = identity()
""",
    "plain_sequence": "input [1, 6, 6]\nconv2d(2, 3)\nrelu()\n",
    "literals": """
input [2, 4, 4]
pad2d(1, value=1e16)
batchnorm2d(eps=0.0, momentum=2.5e-07)
batchnorm2d(momentum=none, affine=false)
pad2d((1, 0), value=-1e30)
gelu(approximate=none)
leaky_relu(1e-300)
""",
}


# ---------------------------------------------------------------------------------------------
# Random specs

BLOCKS = """
block cbr(out, k=3, s=1, mode=zeros):
    conv = conv2d(out, k, stride=s, padding=same, padding_mode=mode, bias=false)
    bn = batchnorm2d()
    act = relu()

block plain(out):
    conv2d(out, 3, padding=1)
    relu6()

block res(out, stride=1):
    add:
        branch:
            conv1 = conv2d(out, 3, stride=stride, padding=1, bias=false)
            bn1 = batchnorm2d()
            relu(inplace=true)
            conv2 = conv2d(out, 3, padding=1, bias=false)
            bn2 = batchnorm2d()
        if stride != 1 or in_channels != out:
            shortcut:
                conv2d(out, 1, stride=stride, bias=false)
                batchnorm2d()
        else:
            identity()
    relu()

block fire(s, e):
    squeeze = conv2d(s, 1)
    relu()
    concat:
        conv2d(e, 1)
        branch:
            conv2d(e, 3, padding=1)
            relu()

block nest(out):
    first = plain(out)
    plain(out)
    second = cbr(out, 1)
"""

ACTIVATIONS = ["relu()", "relu(inplace=true)", "relu6()", "leaky_relu(0.2)",
               "leaky_relu(negative_slope=0.05, inplace=true)", "elu(alpha=0.5)",
               "elu(inplace=true)", "gelu()", "gelu(approximate=tanh)", "silu()",
               "silu(inplace=true)", "sigmoid()", "tanh()", "hardswish()",
               "hardswish(inplace=true)", "relu6(inplace=true)", "softmax(dim=1)",
               "softmax(dim=-1)", "softmax()"]
PAD_MODES = ["zeros", "reflect", "replicate", "circular"]
# legal layer names that also name things in the generated file or in Python
ODD_NAMES = ["torch", "nn", "F", "x", "x1", "self", "super", "int", "layers", "Conv2dSame",
             "forward_", "cls"]


# Each random spec places one of these (seed % len) where it fits, so that every option of every
# layer kind is in some random spec whatever the other draws do.
FOCUS = [
    *(f"conv2d(4, 3, stride=2, padding=same, padding_mode={m})" for m in PAD_MODES),
    "conv2d(4, (3, 2), stride=(2, 1), padding=same, dilation=2, padding_mode=reflect)",
    "conv2d(6, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2, bias=false)",
    "conv2d(4, 2, padding=same, padding_mode=circular)",
    "conv2d(4, 1, padding=valid)",
    "conv_transpose2d(4, 3, stride=2, padding=1, output_padding=1, bias=false)",
    "conv_transpose2d(6, (2, 3), stride=(2, 1), groups=2, dilation=2)",
    "maxpool2d(3, stride=2, padding=1, dilation=2, ceil_mode=true)",
    ("avgpool2d(3, stride=2, padding=1, ceil_mode=true, count_include_pad=false, "
     "divisor_override=2)"),
    "adaptive_avgpool2d((2, 3))",
    "adaptive_maxpool2d(2)",
    "batchnorm2d(eps=1e-3, momentum=0.2, affine=false, track_running_stats=false)",
    "relu(inplace=true)", "relu6(inplace=true)", "leaky_relu(0.2, inplace=true)",
    "elu(alpha=0.5, inplace=true)", "gelu(approximate=tanh)", "gelu()",
    "silu(inplace=true)", "sigmoid()", "tanh()", "hardswish(inplace=true)", "softmax(dim=-1)",
    "hardsigmoid(inplace=true)", "hardtanh(-2.0, 3.0, inplace=true)", "mish(inplace=true)",
    "conv2d(4, 1)\nprelu(4, init=0.1)", "log_softmax(dim=1)", "conv2d(4, 1)\nchannel_shuffle(2)",
    "conv2d(4, 1)\nchannel_slice(1, 3)",
    "adaptive_avgpool2d((5, 6))\nlayernorm((5, 6), eps=1e-6, elementwise_affine=false)",
    "adaptive_avgpool2d(4)\nlayernorm(4, bias=false)",
    "layernorm2d(eps=1e-6, elementwise_affine=false)", "layernorm2d(bias=false)",
    "conv2d(4, 1)\ngroupnorm(2, 4, eps=1e-3, affine=false)",
    "instancenorm2d(eps=1e-3, momentum=0.2, affine=true, track_running_stats=true)",
    ("flatten(start_dim=2)\ninstancenorm1d(eps=1e-3, momentum=0.2, affine=true, "
     "track_running_stats=true)"),
    "conv2d(4, 1)\npermute(1, 2, 0)\nlinear(6, bias=false)\npermute(2, 0, 1)\nlayer_scale(0.5)",
    "stochastic_depth(0.2, batch)",
    "dropout(p=0.1, inplace=true)", "dropout2d(p=0.3, inplace=true)",
    "pad2d((1, 2, 0, 1), value=0.5)", "pad2d(1, mode=zeros)", "pad2d((1, 2), mode=reflect)",
    "pad2d(1, mode=replicate)", "pad2d((0, 1, 1, 0), mode=circular)",
    "upsample(size=(6, 7), mode=bilinear, align_corners=true)",
    "upsample(scale_factor=(1.5, 2), mode=nearest)",
    "flatten(start_dim=2, end_dim=3)",
    "flatten()\nlinear(5, bias=false)",
    "identity()",
]


def _v(v) -> str:
    """A value in .cnn syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(_v(i) for i in v) + ")"
    return str(v)


def _call(op: str, *args, **kwargs) -> str:
    parts = [_v(a) for a in args] + [f"{k}={_v(v)}" for k, v in kwargs.items()]
    return f"{op}({', '.join(parts)})"


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.names = 0

    def name(self) -> str:
        self.names += 1
        if self.rng.random() < 0.2:
            return f"{self.rng.choice(ODD_NAMES)}_{self.names}" if self.names > 1 else "torch"
        return f"n{self.names}"

    def maybe(self, p: float) -> bool:
        return self.rng.random() < p

    # -- one layer for a feature map [c, h, w] --------------------------------------------------
    def map_layer(self, c: int) -> str:
        r = self.rng
        op = r.choice(["conv2d"] * 3 + ["maxpool2d", "avgpool2d", "act"] * 2 + [
            "conv_transpose2d", "adaptive", "batchnorm2d", "dropout", "pad2d", "upsample",
            "identity", "flatten"])
        kw: dict = {}
        if op == "conv2d":
            out = r.choice([c, 2, 4, 6, 8, 12])
            k = r.choice([1, 2, 3, 3, (1, 3), (3, 2), 5])
            if self.maybe(0.4):
                kw["stride"] = r.choice([2, (2, 1), 3, (1, 2)])
            if self.maybe(0.7):
                kw["padding"] = r.choice([0, 1, (1, 2), "same", "same", "valid"])
            if self.maybe(0.25):
                kw["dilation"] = r.choice([2, (1, 2)])
            groups = [g for g in (2, 3, 4) if c % g == 0 and out % g == 0]
            if groups and self.maybe(0.3):
                kw["groups"] = r.choice(groups)
            if self.maybe(0.3):
                kw["bias"] = False
            if self.maybe(0.5):
                kw["padding_mode"] = r.choice(PAD_MODES)
            return _call("conv2d", out, k, **kw)
        if op == "conv_transpose2d":
            out = r.choice([c, 2, 4, 6])
            stride = r.choice([1, 2, (2, 1)])
            kw["stride"] = stride
            if self.maybe(0.5):
                kw["padding"] = r.choice([0, 1, (1, 0)])
            if self.maybe(0.4):
                kw["output_padding"] = r.choice([1, (1, 0), (0, 1)])
            if self.maybe(0.3):
                kw["dilation"] = r.choice([2, (1, 2)])
            groups = [g for g in (2, 3) if c % g == 0 and out % g == 0]
            if groups and self.maybe(0.3):
                kw["groups"] = r.choice(groups)
            if self.maybe(0.3):
                kw["bias"] = False
            return _call("conv_transpose2d", out, r.choice([1, 2, 3, (2, 3)]), **kw)
        if op in ("maxpool2d", "avgpool2d"):
            k = r.choice([2, 2, 3, (2, 3), (3, 1)])
            if self.maybe(0.5):
                kw["stride"] = r.choice([1, 2, (1, 2)])
            if self.maybe(0.3):
                kw["padding"] = r.choice([1, (1, 0)])
            if self.maybe(0.3):
                kw["ceil_mode"] = True
            if op == "maxpool2d" and self.maybe(0.3):
                kw["dilation"] = r.choice([2, (1, 2)])
            if op == "avgpool2d" and self.maybe(0.3):
                kw["count_include_pad"] = False
            if op == "avgpool2d" and self.maybe(0.2):
                kw["divisor_override"] = r.choice([1, 3])
            return _call(op, k, **kw)
        if op == "adaptive":
            kind = r.choice(["adaptive_avgpool2d", "adaptive_maxpool2d"])
            return _call(kind, r.choice([1, 2, (2, 3), 4]))
        if op == "batchnorm2d":
            for key, v in (("eps", 1e-3), ("momentum", 0.2), ("affine", False),
                           ("track_running_stats", False)):
                if self.maybe(0.25):
                    kw[key] = v
            return _call("batchnorm2d", **kw)
        if op == "act":
            return r.choice(ACTIVATIONS)
        if op == "dropout":
            kind = r.choice(["dropout", "dropout2d"])
            return r.choice([_call(kind), _call(kind, 0.3), _call(kind, p=0.1, inplace=True)])
        if op == "pad2d":
            padding = r.choice([1, (1, 2), (0, 1, 2, 1), (2, 0, 0, 1)])
            mode = r.choice(PAD_MODES)
            if mode == "zeros" and self.maybe(0.5):
                return _call("pad2d", padding, value=r.choice([0.5, -2, 1e-3]))
            return _call("pad2d", padding, mode=mode) if mode != "zeros" or self.maybe(0.5) \
                else _call("pad2d", padding)
        if op == "upsample":
            if self.maybe(0.3):
                kw["size"] = r.choice([6, (5, 7)])
            else:
                kw["scale_factor"] = r.choice([2, 1.5, (2, 1)])
            if self.maybe(0.5):
                kw["mode"] = "bilinear"
                if self.maybe(0.6):
                    kw["align_corners"] = r.choice([True, False])
            return _call("upsample", **kw)
        if op == "identity":
            return "identity()"
        return r.choice(["flatten()", "flatten(start_dim=2)", "flatten(1, 2)",
                         "flatten(start_dim=1, end_dim=-2)"])

    def flat_layer(self, f: int) -> str:
        r = self.rng
        op = r.choice(["linear", "linear", "act", "dropout", "identity"])
        if op == "linear":
            return _call("linear", r.choice([4, 6, 10]), **({"bias": False}
                                                            if self.maybe(0.3) else {}))
        if op == "act":
            return r.choice(ACTIVATIONS)
        if op == "dropout":
            return r.choice(["dropout()", "dropout(0.25)", "dropout(p=0.1, inplace=true)"])
        return "identity()"

    def layer(self, shape) -> str:
        text = self.map_layer(shape[0]) if len(shape) == 3 else (
            self.flat_layer(shape[0]) if len(shape) == 1 else self.rng.choice(
                ACTIVATIONS[:5] + ["identity()", "flatten()", "dropout()"]))
        return f"{self.name()} = {text}" if self.maybe(0.2) else text

    # -- merges and blocks ----------------------------------------------------------------------
    def branch(self, shape, mode: str, depth: int) -> list[str]:
        """One branch of a merge, as lines relative to the merge's body."""
        r = self.rng
        c = shape[0]
        if len(shape) == 3:
            keep = [_call("conv2d", c, 3, padding="same"), _call("conv2d", c, 1),
                    _call("batchnorm2d"), r.choice(ACTIVATIONS[:6]),
                    _call("maxpool2d", 3, stride=1, padding=1),
                    _call("conv2d", c, 3, padding="same", padding_mode=r.choice(PAD_MODES))]
            grow = [_call("conv2d", r.choice([2, 4]), 1),
                    _call("conv2d", r.choice([2, 4]), 3, padding=1)]
            pool = keep + (grow if mode == "concat" else [])
        else:
            pool = [_call("linear", c), "relu()", "identity()", "dropout()"]
            if mode == "concat":
                pool.append(_call("linear", r.choice([2, 3])))
        kind = r.choice(["call", "call", "branch", "group", "if", "nested"] if depth < 2 else
                        ["call", "branch", "group"])
        lines = [r.choice(pool) for _ in range(r.randint(1, 3))]
        if self.maybe(0.4):
            lines = [f"{self.name()} = {line}" for line in lines]
        if kind == "call":
            return [r.choice(pool + ["identity()"])]
        if kind == "branch":
            return ["branch:"] + [f"    {line}" for line in lines]
        if kind == "group":
            return [f"g{self.name()}:"] + [f"    {line}" for line in lines]
        if kind == "if":
            return ["if false:", "    relu()", "else:", f"    {lines[0]}"] if self.maybe(0.5) \
                else ["branch:", "    if in_channels < 0:", "        relu()"]
        inner = self.merge(shape, r.choice(["add", "concat"]), depth + 1)
        return ["branch:"] + [f"    {line}" for line in inner]

    def merge(self, shape, mode: str, depth: int = 0) -> list[str]:
        lines = [f"{mode}:"]
        for _ in range(self.rng.randint(1, 3)):
            lines += [f"    {line}" for line in self.branch(shape, mode, depth)]
        return lines

    def block_call(self, shape) -> str:
        r = self.rng
        out = r.choice([4, 6, 8])
        text = r.choice([
            _call("cbr", out), _call("cbr", out, s=2, mode=r.choice(PAD_MODES)),
            _call("cbr", out, k=1), _call("plain", out), _call("res", out),
            _call("res", out, stride=2), _call("fire", 2, out), _call("nest", out)])
        return f"{self.name()} = {text}" if self.maybe(0.3) else text

    def statement(self, shape) -> list[str]:
        r = self.rng.random()
        if len(shape) == 3 and r < 0.15:
            return [self.block_call(shape)]
        if len(shape) == 3 and r < 0.2:
            return [f"repeat 2 first(s=2): cbr({self.rng.choice([4, 8])})"]
        if len(shape) in (1, 3) and r < 0.4:
            return self.merge(shape, self.rng.choice(["add", "concat"]))
        return [self.layer(shape)]


def _fits(net) -> bool:
    """Keep the random networks small: every map at most 24x24 and 32 channels."""
    for node in walk(net.root):
        s = node.out_shape
        if s[0] > 32 or (len(s) == 3 and s[1] * s[2] > 24 * 24) or (len(s) == 2 and
                                                                    s[0] * s[1] > 24 * 24):
            return False
    return True


def _lines(statements: list[list[str]]) -> str:
    return "".join(f"{line}\n" for stmt in statements for line in stmt)


def random_spec(seed: int) -> str:
    gen = _Gen(seed)
    rng = gen.rng
    if seed >= len(FOCUS) and rng.random() < 0.5:  # the first len(FOCUS) seeds need maps
        head = f"input [{rng.randint(3, 12)}]\n"
    else:
        head = f"input [{rng.choice([1, 2, 3, 4, 6])}, {rng.randint(5, 16)}, {rng.randint(5, 16)}]\n"
    head = f"network Random{seed}\n{head}{BLOCKS}\n"
    body: list[list[str]] = []
    shape = archgen.parse(head + "identity()\n").network.output_shape
    focus = FOCUS[seed % len(FOCUS)].split("\n")
    for _ in range(rng.randint(4, 9)):
        for attempt in range(30):
            stmt = focus if focus and attempt == 0 else gen.statement(shape)
            arch = archgen.parse(head + _lines([*body, stmt]))
            if arch.ok and _fits(arch.network):
                focus = [] if stmt is focus else focus
                body.append(stmt)
                shape = arch.network.output_shape
                break
        if len(body) >= 2 and rng.random() < 0.3:  # gather the last statements into a section
            k = rng.randint(1, len(body))
            section = [f"stage{len(body)}:"] + [f"    {line}" for s in body[-k:] for line in s]
            if archgen.parse(head + _lines([*body[:-k], section])).ok:
                body[-k:] = [section]
    if not body:
        body = [["identity()"]]
    return head + _lines(body)


RANDOM_SEEDS = range(max(48, len(FOCUS)))
RANK_SEEDS = range(60)  # 1-D and 3-D stacks (tests/test_ranks.py's generator)


def _specs() -> dict[str, str]:
    specs = {f"example/{p.name}": p.read_text(encoding="utf-8") for p in EXAMPLES}
    specs.update({f"case/{k}": v for k, v in CASES.items()})
    specs.update({f"random/{seed}": random_spec(seed) for seed in RANDOM_SEEDS})
    specs.update({f"random/rank{seed}": random_rank_spec(seed) for seed in RANK_SEEDS})
    return specs


SPECS = _specs()


# ---------------------------------------------------------------------------------------------
# The generated source: ruff, determinism

def _ruff() -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    return ruff


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Every spec's module, written as `archgen compile` names it, one directory per spec."""
    root = tmp_path_factory.mktemp("generated")
    out = {}
    for i, (key, text) in enumerate(SPECS.items()):
        net = _net(text, key)
        path = root / f"s{i}" / module_filename(net)
        path.parent.mkdir()
        path.write_text(render_torch(net), encoding="utf-8")
        out[key] = path
    return out


def _ruff_run(args: list[str], paths: list[Path]) -> subprocess.CompletedProcess:
    # --isolated: ruff's default rules and settings, whatever configuration lies around
    return subprocess.run([_ruff(), *args, "--isolated", "--no-cache", *map(str, paths)],
                          capture_output=True, text=True, check=False)


def test_ruff_check_passes(generated):
    result = _ruff_run(["check", "--output-format", "concise"], list(generated.values()))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("line_length", [88, 100, 120])
def test_ruff_format_leaves_it_unchanged(generated, line_length):
    """Formatted by construction, and stays so under longer line lengths (a project's own
    ruff settings): exploded calls carry a trailing comma. Only a value that ruff had to
    parenthesise at 88 columns (an attribute name near the 64-character limit, a sum of 24
    terms) is joined again at a longer length."""
    paths = list(generated.values())
    if line_length > 88:
        parenthesised = {k for k, p in generated.items()
                         if any(line.endswith(" = (") for line in p.read_text().splitlines())}
        assert parenthesised == {"case/long_names", "case/wide_merge"}
        paths = [p for k, p in generated.items() if k not in parenthesised]
    result = _ruff_run(["format", "--check", "--diff", "--line-length", str(line_length)], paths)
    assert result.returncode == 0, result.stdout[:5000] + result.stderr


@pytest.mark.parametrize("key", list(SPECS))
def test_render_is_deterministic(key):
    first = render_torch(_net(SPECS[key], key))
    assert render_torch(_net(SPECS[key], key)) == first


# ---------------------------------------------------------------------------------------------
# The generated module in PyTorch

@pytest.mark.parametrize("key", list(SPECS))
def test_module_runs_with_the_checked_shapes_and_counts(key):
    torch = pytest.importorskip("torch")
    net = _net(SPECS[key], key)
    torch.manual_seed(0)
    model = load_module(net).eval()
    assert type(model).__name__ == net.name
    assert sum(p.numel() for p in model.parameters()) == net.total_params

    seen: dict[str, tuple] = {}
    nodes = [n for n in walk(net.root) if isinstance(n, (Layer, Seq)) and n.path and
             not (isinstance(n, Layer) and n.kind.parameter)]  # layer_scale: no module
    for node in nodes:
        model.get_submodule(node.path).register_forward_hook(
            lambda _m, _i, out, path=node.path: seen.__setitem__(path, tuple(out.shape)))
    # batch 2: batchnorm2d(track_running_stats=false) normalises over the batch even in eval
    batch = 1 if key.startswith("example/") else 2
    with torch.no_grad():
        y = model(torch.randn(batch, *net.input_shape))
    ys = y if isinstance(y, tuple) else (y,)  # output A, B: a tuple in the order written
    assert [tuple(o.shape) for o in ys] == [(batch, *s) for _, s in net.output_shapes]
    # an identity that a class's forward does not call (it uses x itself) sees nothing
    uncalled = [n for n in nodes if n.path not in seen]
    assert all(isinstance(n, Layer) and n.kind.torch_forward("m", "x") == "x" for n in uncalled)
    wrong = [(n.path, seen.get(n.path), (batch, *n.out_shape)) for n in nodes
             if n.path in seen and seen[n.path] != (batch, *n.out_shape)]
    assert not wrong, wrong


def test_state_dict_keys_are_torchvisions():
    pytest.importorskip("torch")
    ref = json.loads((FIXTURES / "torchvision_reference.json").read_text())["resnet18"]
    model = load_module(archgen.load(ROOT / "examples" / "resnet18.cnn").network)
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == ref["state_dict"]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_same_with_stride_is_same_upper(mode):
    """Conv2dSame pads SAME_UPPER (the odd pixel at the end) in the layer's padding mode and
    keeps nn.Conv2d's parameters."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    net = _net(f"input [3, 9, 8]\nconv2d(4, 4, stride=(2, 3), padding=same, dilation=(1, 2), "
               f"padding_mode={mode})\n")
    model = load_module(net)
    conv = model.get_submodule(next(net.layers()).path)
    assert type(conv).__name__ == "Conv2dSame" and isinstance(conv, torch.nn.Conv2d)
    assert set(conv.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 3, 9, 8)
    pads = next(net.layers()).args["pads"]  # ((top, bottom), (left, right))
    padded = F.pad(x, (*pads[1], *pads[0]), mode="constant" if mode == "zeros" else mode)
    expected = F.conv2d(padded, conv.weight, conv.bias, stride=(2, 3), dilation=(1, 2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
    assert pads == ((1, 2), (2, 3))  # uneven: the odd pixel at the bottom and the right


def test_load_module_without_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtra, match=r"archgen\[torch\]"):
        load_module(_net("input [3, 8, 8]\nrelu()\n"))


# ---------------------------------------------------------------------------------------------
# What the source says

SEED = ROOT / "examples" / "seed_cnn.cnn"


def test_file_docstring_and_imports():
    net = archgen.load(SEED).network
    source = render_torch(net, command="archgen compile --target torch seed_cnn.cnn")
    head = source.split('"""')[1]
    for text in ("SeedCNN", "[N, 3, 32, 32]", "[N, 10]", f"{net.total_params:,}",
                 f"{net.total_macs:,}", "archgen compile --target torch seed_cnn.cnn"):
        assert text in head
    assert f"archgen compile {SEED}" in render_torch(net)  # the default command
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import torch", "from torch import nn"]
    assert "class SeedCNN(nn.Module):" in source
    assert "self.backbone = nn.Sequential(" in source and "self.head = nn.Sequential(" in source
    assert module_filename(net) == "seed_cnn.py"


def test_layer_lines_carry_shape_and_spec_line():
    source = render_torch(archgen.load(SEED).network)
    assert "nn.MaxPool2d(2),  # -> [N, 16, 16, 16]  (line 12)" in source
    assert "nn.Linear(1024, 500),  # -> [N, 500]  (line 20)" in source
    assert "ConvBlock(3, 16),  # conv_block(16) -> [N, 16, 32, 32]  (line 11)" in source


def _call_text(line: str, input_shape: str = "[4, 16, 16]") -> str:
    net = _net(f"input {input_shape}\n{line}\n")
    call = layer_call(next(net.layers()))
    return f"{call.func}({', '.join(a.head + a.expr for a in call.args)})"


@pytest.mark.parametrize("spec, torch_text", [
    ("conv2d(16, 3, padding=1)", "nn.Conv2d(4, 16, kernel_size=3, padding=1)"),
    ("conv2d(16, (3, 5), stride=(2, 2), bias=false)",
     "nn.Conv2d(4, 16, kernel_size=(3, 5), stride=2, bias=False)"),
    ("conv2d(8, 3, padding=same, padding_mode=reflect)",
     'nn.Conv2d(4, 8, kernel_size=3, padding="same", padding_mode="reflect")'),
    ("conv2d(8, 3, stride=2, padding=same)", "Conv2dSame(4, 8, kernel_size=3, stride=2)"),
    ("conv2d(8, 3, padding=valid)", 'nn.Conv2d(4, 8, kernel_size=3, padding="valid")'),
    ("conv_transpose2d(8, 2, stride=2, output_padding=1)",
     "nn.ConvTranspose2d(4, 8, kernel_size=2, stride=2, output_padding=1)"),
    ("maxpool2d(2)", "nn.MaxPool2d(2)"),
    ("maxpool2d(3, stride=2, padding=1)", "nn.MaxPool2d(3, stride=2, padding=1)"),
    ("avgpool2d(2, stride=1, count_include_pad=false, divisor_override=3)",
     "nn.AvgPool2d(2, stride=1, count_include_pad=False, divisor_override=3)"),
    ("adaptive_avgpool2d(1)", "nn.AdaptiveAvgPool2d(1)"),
    ("adaptive_maxpool2d((2, 3))", "nn.AdaptiveMaxPool2d((2, 3))"),
    ("batchnorm2d(momentum=0.01)", "nn.BatchNorm2d(4, momentum=0.01)"),
    ("batchnorm2d(momentum=none)", "nn.BatchNorm2d(4, momentum=None)"),
    ("relu(inplace=true)", "nn.ReLU(inplace=True)"),
    ("leaky_relu(0.2, inplace=true)", "nn.LeakyReLU(0.2, inplace=True)"),
    ("leaky_relu(inplace=true)", "nn.LeakyReLU(inplace=True)"),
    ("gelu(approximate=tanh)", 'nn.GELU(approximate="tanh")'),
    ("softmax()", "nn.Softmax(dim=1)"),
    ("dropout2d(0.2)", "nn.Dropout2d(0.2)"),
    ("dropout(inplace=true)", "nn.Dropout(inplace=True)"),
    ("flatten(start_dim=2)", "nn.Flatten(start_dim=2)"),
    ("identity()", "nn.Identity()"),
    ("upsample(scale_factor=2, mode=bilinear, align_corners=false)",
     'nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False)'),
    ("upsample(size=(8, 9))", "nn.Upsample(size=(8, 9))"),
    ("pad2d(1)", "nn.ZeroPad2d(1)"),
    ("pad2d((1, 2, 0, 0), value=0.5)", "nn.ConstantPad2d((1, 2, 0, 0), 0.5)"),
    ("pad2d((1, 2, 3, 4), mode=reflect)", "nn.ReflectionPad2d((1, 2, 3, 4))"),
    ("pad2d(2, mode=replicate)", "nn.ReplicationPad2d(2)"),
    ("pad2d(2, mode=circular)", "nn.CircularPad2d(2)"),
    ("pad2d(1, value=1e16)", "nn.ConstantPad2d(1, 1e16)"),
    ("pad2d(1, value=-2.5e-07)", "nn.ConstantPad2d(1, -2.5e-07)"),
])
def test_arguments_as_people_write_them(spec, torch_text):
    """Non-default arguments only, PyTorch's order, pairs collapsed, the leading ones
    positional."""
    assert _call_text(spec) == torch_text


def test_defaults_passed_through_block_arguments_are_left_out():
    net = _net("input [3, 8, 8]\nblock b(mode=zeros, bias=true):\n"
               "    conv2d(4, 3, padding_mode=mode, bias=bias)\nb()\n")
    source = render_torch(net)
    assert "nn.Conv2d(in_channels, 4, kernel_size=3, bias=bias, padding_mode=mode)" in source
    assert 'def __init__(self, in_channels: int, mode="zeros", bias: bool = True) -> None:' \
        in source
    assert "B(3),  # b() -> [N, 4, 6, 6]  (line 4)" in source  # the call leaves them out


def test_linear_takes_its_features_positionally():
    assert _call_text("linear(10, bias=false)", "[20]") == "nn.Linear(20, 10, bias=False)"


def test_one_class_per_block_definition_like_torchvision():
    source = render_torch(archgen.load(ROOT / "examples" / "resnet18.cnn").network)
    classes = [line.split("(")[0][6:] for line in source.splitlines()
               if line.startswith("class ")]
    assert classes == ["Basic", "ResNet18"]
    for line in [("        in_channels: int,\n        planes: int,\n        stride: int = 1,\n"
                  "        down: bool = False,\n    ) -> None:"), "self.bn1 = nn.BatchNorm2d(planes)  # -> [N, planes, ?, ?]  (line 11)",
                 "if down:", "self.downsample = None", "if self.downsample is not None:",
                 "x2 = self.downsample(x)", "# basic(64) -> [N, 64, 56, 56]  (line 29)",
                 "*[Basic(64, 64) for _ in range(2)],",  # identical copies: a loop
                 "Basic(64, 128, stride=2, down=True),",  # copies that differ: explicit
                 "Basic(128, 128),  # basic(128) -> [N, 128, 28, 28]  (line 31)"]:
        assert line in source, line


def test_a_repeat_whose_sizes_grow_is_one_loop():
    # densenet121.cnn names its copies as torchvision does (repeat 6 as denselayer{1}): a
    # loop of add_module calls, as torchvision's _DenseBlock; the same repeat unnamed is one
    # loop inside nn.Sequential
    text = (ROOT / "examples" / "densenet121.cnn").read_text(encoding="utf-8")
    assert " as denselayer{1}" in text
    unnamed = render_torch(_net(text.replace(" as denselayer{1}", "")))
    assert "*[DenseLayer(64 + i * 32) for i in range(6)]," in unnamed
    assert "*[DenseLayer(512 + i * 32) for i in range(16)]," in unnamed
    source = render_torch(archgen.load(ROOT / "examples" / "densenet121.cnn").network)
    assert ("        self.denseblock1 = nn.Sequential()  # -> [N, 256, 56, 56]  (line 33)\n"
            "        for i in range(6):\n"
            "            # dense_layer() -> [N, ?, 56, 56]  (line 34)\n"
            '            self.denseblock1.add_module(f"denselayer{i + 1}", DenseLayer(64 + i * 32))'
            ) in source
    assert 'self.denseblock4.add_module(f"denselayer{i + 1}", DenseLayer(512 + i * 32))' \
        in source
    assert [line for line in source.splitlines() if line.startswith("class ")] == [
        "class DenseLayer(nn.Module):", "class Transition(nn.Module):",
        "class Features(nn.Module):", "class DenseNet121(nn.Module):"]
    assert "self.conv1 = nn.Conv2d(in_channels, bn_size * growth, kernel_size=1, bias=False)" \
        in source
    assert "if out is None:\n            out = in_channels // 2" in source  # a computed default
    assert "self.transition1 = Transition(256)" in source


@pytest.mark.parametrize("copies,loop", [
    # names from 0, identical constructors: the loop's variable only numbers the names
    ("repeat 3 as unit{0}: b(8)", 'self.g.add_module(f"unit{i}", B(8, 8))'),
    ("repeat 4 as unit{7}x: d(4)", 'self.g.add_module(f"unit{i + 7}x", D(8 + i * 4, 4))'),
    ("repeat 3 as layer_{1}: d(2)", 'self.g.add_module(f"layer_{i + 1}", D(8 + i * 2, 2))'),
    ("repeat 3 as unit-{1}: b(8)", 'self.g.add_module(f"unit-{i + 1}", B(8, 8))'),
    # torchvision's RegNet stage: the first copy on its own, the others one loop
    ("repeat 4 as s1-{0} first(out=16): b(16)",
     ('self.g.add_module("s1-0", B(8, 16))  # b(16, out=16) -> [N, 16, 6, 6]  (line 10)\n'
      '        for i in range(3):\n            # b(16) -> [N, 16, 6, 6]  (line 10)\n'
      '            self.g.add_module(f"s1-{i + 1}", B(16, 16))')),
    # each on its own: two copies a step apart, a single copy
    ("repeat 3 as unit{1} first(g=4): d(2)", None),
    ("repeat 1 as unit{1}: b(8)", None),
])
def test_named_copies_in_a_group_are_one_add_module_loop(copies, loop):
    torch = pytest.importorskip("torch")
    spec = ("input [8, 6, 6]\nblock b(out):\n    conv2d(out, 3, padding=1)\n    relu()\n"
            "block d(g):\n    concat:\n        identity()\n        conv2d(g, 1)\n"
            f"g:\n    {copies}\nflatten()\n")
    net = _net(spec)
    source = render_torch(net)
    assert "        self.g = nn.Sequential()" in source
    if loop is None:
        assert "add_module(f" not in source and 'self.g.add_module("unit1", ' in source
    else:
        assert "        for i in range(" in source and loop in source, source
    # the paths the checker gave are the state_dict's keys, in order; TorchScript compiles it
    model = load_module(net).eval()
    prefixes = _unique(".".join(k.split(".")[:-1]) for k in model.state_dict())
    assert prefixes == [layer.path for layer in net.layers() if layer.params]
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(torch.jit.script(model)(x), model(x))


def test_an_if_on_an_argument_builds_a_list_in_a_sequential_block():
    source = render_torch(archgen.load(ROOT / "examples" / "mobilenet_v2.cnn").network)
    assert "class Mbconv(nn.Sequential):" in source
    for line in ["layers: list[nn.Module] = []", "if expand != 1:",
                 "layers.append(ConvBn(in_channels, in_channels * expand, kernel=1))",
                 "super().__init__(*layers)", "if stride == 1 and in_channels == out:",
                 "if self.identity is not None:"]:
        assert line in source, line


def test_block_parameters_that_would_hide_names_keep_a_class_per_structure():
    source = render_torch(_net("input [3, 8, 8]\nblock b(nn):\n    conv2d(nn, 3)\n"
                               "b(4)\nb(8)\n"))
    assert "class B(nn.Module)" in source or "class B(nn.Sequential)" not in source
    assert "nn: int" not in source


def test_generated_class_names_avoid_every_taken_name():
    source = render_torch(_net(CASES["names_that_shadow_nothing"]))
    classes = [line[6:].split("(")[0] for line in source.splitlines()
               if line.startswith("class ")]
    # None is a keyword, Exception a builtin, Basic the network and Conv2dSame the helper
    assert classes == ["Conv2dSame", "None2", "Basic2", "Conv2dSame2", "Exception2", "Basic"]


def test_a_shared_class_marks_the_dimensions_its_instances_disagree_on():
    source = render_torch(archgen.load(ROOT / "examples" / "densenet121.cnn").network)
    assert "self.norm2 = nn.BatchNorm2d(bn_size * growth)  # -> [N, 128, ?, ?]  (line 16)" \
        in source
    assert "x = torch.cat([x, x1], dim=1)  # -> [N, in_channels + growth, ?, ?]  (line 10)" \
        in source
    assert source.count("class DenseLayer(") == 1  # one class for all 58 named copies


@pytest.mark.parametrize("file", ['we"ird\\ dir/\u00f1\a\t.cnn', 'a"""b.cnn', "end\\"])
def test_any_file_name_gives_a_valid_docstring(tmp_path, file):
    net = _net("input [3, 4, 4]\nrelu()\n", file)
    source = render_torch(net, command=f"archgen compile {file}  ")
    namespace: dict = {}
    exec(compile(source, "generated.py", "exec"), namespace)  # noqa: S102
    assert file in namespace["__doc__"]
    path = tmp_path / module_filename(net)
    path.write_text(source, encoding="utf-8")
    assert _ruff_run(["format", "--check"], [path]).returncode == 0
    assert _ruff_run(["check"], [path]).returncode == 0


def test_module_filename_is_the_spec_stem_and_shadows_nothing():
    tiny = "input [3, 4, 4]\nrelu()\n"
    assert module_filename(_net(tiny, "examples/resnet18.cnn")) == "resnet18.py"
    assert module_filename(_net(tiny, "mobile-net v2.cnn")) == "mobile_net_v2.py"
    assert module_filename(_net(tiny, "torch.cnn")) == "torch_net.py"
    assert module_filename(_net(tiny, "math.cnn")) == "math_net.py"
    assert module_filename(_net(tiny, "3x3.cnn")) == "net_3x3.py"
    # no usable stem: the network name in snake_case
    assert module_filename(_net("network UNetSmall\n" + tiny, "<stdin>")) == "u_net_small.py"
    assert module_filename(_net("network Torch\n" + tiny, "<stdin>")) == "torch_net.py"


# ---------------------------------------------------------------------------------------------
# Hostile names: refused with a location, nothing generated

@pytest.mark.parametrize("text, line", [
    ("input [3, 8, 8]\nclass = relu()\n", 2),
    ("input [3, 8, 8]\n__init__ = relu()\n", 2),
    ("input [3, 8, 8]\nforward = relu()\n", 2),
    ("input [3, 8, 8]\nimport = relu()\n", 2),
    ("input [3, 8, 8]\nblock b():\n    relu()\ntraining = b()\n", 4),
    ("input [3, 8, 8]\nadd:\n    identity()\n    state_dict = relu()\n", 4),
    ("network torch\ninput [3, 8, 8]\nrelu()\n", 1),
    ("network Conv2dSame\ninput [3, 8, 8]\nrelu()\n", 1),
])
def test_hostile_names_are_errors_with_a_location(text, line):
    arch = archgen.parse(text, "hostile.cnn")
    errors = arch.errors
    assert [d.code for d in errors] == ["E204"] and errors[0].span.line == line
    with pytest.raises(SpecError):
        arch.to_torch_source()


@pytest.mark.parametrize("text", ["input [3, 8, 8]\nnäme = relu()\n",
                                  "network Näme\ninput [3, 8, 8]\nrelu()\n"])
def test_non_ascii_names_are_errors(text):
    # the tokenizer refuses them before naming rules apply (E100, not E204)
    errors = archgen.parse(text, "hostile.cnn").errors
    assert errors and errors[0].code in ("E100", "E204") and errors[0].span.line in (1, 2)


@pytest.mark.parametrize("text, name, line", [
    ("input [3, 8, 8]\nclass:\n    relu()\n", "class", 2),
    ("input [3, 8, 8]\nforward:\n    relu()\n", "forward", 2),
    ("input [3, 8, 8]\n__init__:\n    relu()\n", "__init__", 2),
    ("input [3, 8, 8]\nblock forward():\n    relu()\nadd:\n    forward()\n    identity()\n",
     "forward", 2),
    ("input [3, 8, 8]\nrelu()\nblock class():\n    relu()\nc = relu()\nclass()\n", "class", 3),
    ("network super\ninput [3, 8, 8]\nrelu()\n", "super", 1),
])
def test_group_block_and_builtin_names_are_refused(text, name, line):
    """Group names, block names (an unnamed block instance is an attribute named after its
    block) and builtin network names: located E204, nothing rendered."""
    arch = archgen.parse(text, "hostile.cnn")
    errors = arch.errors
    assert [d.code for d in errors] == ["E204"] and name in errors[0].message
    assert errors[0].span.line == line
    with pytest.raises(SpecError):
        arch.to_torch_source()


def test_a_network_with_errors_is_not_rendered():
    text = "input [3, 8, 8]\nconv2d(4, 9)\n"
    with pytest.raises(SpecError):
        render_torch(_unchecked(text))


# ---------------------------------------------------------------------------------------------
# The random specs exercise everything

def _features(net) -> set[str]:
    found = set()
    for node in walk(net.root):
        if isinstance(node, Layer):
            found.add(node.op)
            for p in node.kind.params:
                v = node.args.get(p.name)
                if p.inferred or p.default is REQUIRED:
                    continue
                if not (v == p.default and isinstance(v, bool) == isinstance(p.default, bool)):
                    found.add(f"{node.op}.{p.name}")
                if p.type == "enum":
                    found.add(f"{node.op}.{p.name}={v}")
            if node.op == "conv2d" and Conv2d.same_stride(node.args):
                found.add(f"conv2d.same_stride.{node.args['padding_mode']}")
            if node.op == "conv2d" and isinstance(node.args["padding"], str):
                found.add(f"conv2d.padding={node.args['padding']}")
        elif isinstance(node, Merge):
            found.add(node.mode)
            found |= {"branch:named" for b in node.branches if b.module}
            found |= {"merge:nested" for b in node.branches for n in walk(b)
                      if isinstance(n, Merge)}
        elif isinstance(node, Seq) and node.module and node.path:
            found.add(f"module:{node.style}:{'block' if node.block else 'group'}")
    return found


def test_random_specs_cover_every_option():
    found = set().union(*(_features(_net(SPECS[f"random/{s}"])) for s in RANDOM_SEEDS),
                        *(_features(_net(SPECS[f"random/rank{s}"])) for s in RANK_SEEDS))
    expected = {"add", "concat", "branch:named", "merge:nested", "conv2d.padding=same",
                "conv2d.padding=valid", "module:class:block", "module:sequential:block",
                "module:class:group", "module:sequential:group"}
    expected |= {f"conv2d.same_stride.{m}" for m in PAD_MODES}
    for kind in REGISTRY.values():
        expected.add(kind.name)
        for p in kind.params:
            if p.inferred or p.default is REQUIRED or p.name == "return_indices":
                continue
            if kind.name.startswith("conv_transpose") and p.name == "padding_mode":
                continue  # zeros is its only value
            expected.add(f"{kind.name}.{p.name}")
            expected |= {f"{kind.name}.{p.name}={c}" for c in p.choices}
    assert not expected - found, sorted(expected - found)


# ---------------------------------------------------------------------------------------------
# compile: file names, collisions, --print of ONNX

def _compile(*args: str):
    from click.testing import CliRunner

    from archgen.cli import main
    return CliRunner().invoke(main, ["compile", *args])


def test_compile_names_the_file_after_the_spec_and_refuses_two_outputs_at_one_path(tmp_path):
    text = (ROOT / "examples" / "seed_cnn.cnn").read_text()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "net.cnn").write_text(text)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "net.cnn").write_text(text.replace("SeedCNN", "Other"))
    out = tmp_path / "out"
    result = _compile(str(tmp_path / "a" / "net.cnn"), str(tmp_path / "b" / "net.cnn"),
                      "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "would both write" in result.output and "nothing written" in result.output
    assert not out.exists() or not list(out.iterdir())
    result = _compile(str(tmp_path / "a" / "net.cnn"), "-o", str(out), "--target", "all")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["net.onnx", "net.py"]
    result = _compile(str(tmp_path / "b" / "net.cnn"), "-o", str(out), "--name", "other_net")
    assert result.exit_code == 0 and (out / "other_net.py").exists()
    assert "archgen compile " in (out / "other_net.py").read_text()
    assert "--name other_net -o" in (out / "other_net.py").read_text()  # the exact command


@pytest.mark.parametrize("stem", ["../x", "a/b", ".hidden", "", "x" * 101, "a b", "end."])
def test_compile_name_must_be_a_safe_stem(tmp_path, stem):
    result = _compile(str(SEED), "-o", str(tmp_path), "--name", stem)
    assert result.exit_code == 2 and "--name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_compile_print_onnx_prints_the_text_form(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    import onnx.parser
    monkeypatch.chdir(tmp_path)
    result = _compile(str(SEED), "--print", "--target", "onnx")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<" in text and "Conv" in text
    model = onnx.parser.parse_model(text)
    assert model.graph.name and not list(tmp_path.iterdir())  # nothing written


def test_runs_of_copies_are_found_in_linear_work(monkeypatch):
    """A repeat of block calls (named copies and plain) is scanned pair by pair: the number of
    argument comparisons grows with the copies, not with their square (20,000 copies took
    minutes when each run was re-checked from its start)."""
    from archgen import emit_torch
    compared = []
    steps = emit_torch._steps
    monkeypatch.setattr(emit_torch, "_steps", lambda run: compared.append(len(run)) or
                        steps(run))
    for n in (500, 2000):
        compared.clear()
        spec = ("input [4, 8, 8]\nblock b():\n    conv2d(4, 3, padding=1)\ng:\n"
                f"    repeat {n} as u{{1}}: b()\nh:\n    repeat {n}: b()\n")
        source = render_torch(_net(spec))
        assert 'self.g.add_module(f"u{i + 1}", B(4))' in source
        assert f"*[B(4) for _ in range({n})]," in source
        assert sum(compared) <= 10 * n
