"""conv2d and conv_transpose2d."""

from __future__ import annotations

from dataclasses import dataclass

from .. import shapes
from ..onnx_graph import Pads, conv_pads, helpers
from ..symbolic import holds, smax
from ..torch_calls import Call, call_args, torch_call
from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive,
                   register, spatial)

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_fits(mode: str, pads: tuple[tuple[int, int], tuple[int, int]], x: Shape,
                       arg: str = "padding") -> None:
    """PyTorch's limits on non-zero padding modes, per side: reflect needs pad < size,
    circular pad <= size, replicate a non-empty input."""
    h, w = spatial(x)
    for (begin, end), size, axis in ((pads[0], h, "height"), (pads[1], w, "width")):
        worst = smax(begin, end)
        if mode == "reflect" and not holds(worst < size):
            raise LayerError(
                "E403", f"reflect padding of {worst} needs an input larger than {worst}, "
                f"but the {axis} is {size}", arg=arg,
                notes=["reflect mirrors the map without repeating its edge, so it can pad at "
                       "most size - 1 pixels"],
                helps=["use replicate or zeros padding here, or pad less"])
        if mode == "circular" and not holds(worst <= size):
            raise LayerError(
                "E403", f"circular padding of {worst} wraps around more than once: the "
                f"{axis} is only {size}", arg=arg,
                helps=["use at most as much circular padding as the map is wide"])


def _pair_text(v: tuple) -> str:
    return str(v[0]) if v[0] == v[1] else fmt_tuple(v)


@register
class Conv2d(LayerKind):
    name = "conv2d"
    torch_class = "nn.Conv2d"
    doc = "2-D convolution"
    params = (
        P("in_channels", "int", None, inferred=True),
        P("out_channels", "int"),
        P("kernel_size", "pair"),
        P("stride", "pair", (1, 1)),
        P("padding", "padding", (0, 0)),
        P("dilation", "pair", (1, 1)),
        P("groups", "int", 1),
        P("bias", "bool", True),
        P("padding_mode", "enum", "zeros", choices=PADDING_MODES),
    )
    positional_args = ("out_channels", "kernel_size", "stride", "padding")
    shape_args = ("out_channels", "kernel_size", "stride", "padding", "dilation")
    example = "conv2d(16, 3, stride=2, padding=1, groups=2)"
    sum_in_place = True
    channels_rule = "out_channels"
    fold_role = "conv"

    def lower_torch(self, layer, exprs=None) -> Call:
        if self.same_stride(layer.args):  # PyTorch refuses it: SAME_UPPER through the helper
            return Call("Conv2dSame", call_args(layer, 2, skip=("padding",), exprs=exprs))
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        pads = a["pads"]
        if a["padding_mode"] != "zeros" and any(p for pair in pads for p in pair):
            x = g.pad(f"{layer.path}/pad", x, f"{layer.path}/padded", pads, a["padding_mode"])
            pads = ((0, 0), (0, 0))
        inputs = [x, g.weight(layer, "weight")] + (
            [g.weight(layer, "bias")] if a["bias"] else [])
        y = g.output_of(layer, layer.path)
        g.emit("conv", name=layer.path, y=y, inputs=inputs, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"],
               group=a["groups"])
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        kh, kw = a["kernel_size"]
        fan_in = a["in_channels"] // a["groups"] * kh * kw
        shape = (a["out_channels"], a["in_channels"] // a["groups"], kh, kw)
        out = [("weight", shape, ("he", fan_in))]
        if a["bias"]:
            out.append(("bias", (a["out_channels"],), ("bias", fan_in)))
        return out

    def check_args(self, a: dict) -> None:
        positive(a, "out_channels", "kernel_size", "stride", "dilation", "groups")
        positive(a, "padding", allow_zero=True)
        divisible(a, "out_channels")

    def normalise(self, a: dict, x: Shape) -> None:
        a["pads"] = self.pads(a, x)

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        errors = [e for e in (divisible(a, "in_channels", raise_=False),) if e]
        if a["padding_mode"] != "zeros":
            try:
                check_padding_fits(a["padding_mode"], a["pads"], x)
            except LayerError as err:
                errors.append(err)
        return errors

    @staticmethod
    def pads(a: dict, x: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """(begin, end) padding per axis (h, w) that PyTorch (or SAME_UPPER) applies."""
        p = a["padding"]
        if p == "valid":
            return (0, 0), (0, 0)
        if p == "same":
            return tuple(shapes.same_pads(size, a["kernel_size"][i], a["stride"][i],
                                          a["dilation"][i])
                         for i, size in enumerate(spatial(x)))
        return (p[0], p[0]), (p[1], p[1])

    def output_shape(self, a: dict, x: Shape) -> Shape:
        out = []
        for i, size in enumerate(spatial(x)):
            begin, end = a["pads"][i]
            if a["padding"] == "same":  # ceil(size / stride) whatever the size (same_pads)
                n = (size + a["stride"][i] - 1) // a["stride"][i]
            else:
                n = shapes.conv_out(size, a["kernel_size"][i], a["stride"][i], begin, end,
                                    a["dilation"][i])
            if not holds(n >= 1):
                k_eff = a["dilation"][i] * (a["kernel_size"][i] - 1) + 1
                raise LayerError(
                    "E402", f"the output {'height' if i == 0 else 'width'} would be {n}: "
                    f"the kernel spans {k_eff} pixels but the padded input is only "
                    f"{size + begin + end}", arg="kernel_size",
                    notes=[f"the input arriving here is {list(x)}"],
                    helps=["pad more (padding=same keeps the size), use a smaller kernel or "
                           "dilation, or remove a pooling layer before this one"])
            out.append(n)
        return (a["out_channels"], *out)

    def param_count(self, a: dict) -> int:
        kh, kw = a["kernel_size"]
        weights = a["out_channels"] * (a["in_channels"] // a["groups"]) * kh * kw
        return weights + (a["out_channels"] if a["bias"] else 0)

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        kh, kw = a["kernel_size"]
        return y[0] * y[1] * y[2] * (a["in_channels"] // a["groups"]) * kh * kw

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.window(a["kernel_size"], a["stride"], [p[0] for p in a["pads"]], a["dilation"])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        return window_warnings(a["kernel_size"], a["stride"], a["pads"], a["dilation"], x, y)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """The conv keeps what it convolves: its input, or the padded copy that nn.Conv2d
        (padding_mode other than zeros), Conv2dSame (same with a stride) or ATen (same with
        an even kernel) makes first; reflect and replicate padding keep their input too."""
        (t, b), (left, r) = a["pads"]
        explicit = a["padding_mode"] != "zeros" or (
            a["padding"] == "same" and (self.same_stride(a) or t != b or left != r))
        if not explicit:
            return Memory(saves=("input",))
        padded = x[0] * (x[1] + t + b) * (x[2] + left + r)
        keeps_input = a["padding_mode"] in ("reflect", "replicate")
        return Memory(saves=("input",) if keeps_input else (), extra=((padded, "act"),),
                      temp=padded, input_needs_grad=True)

    @staticmethod
    def same_stride(a: dict) -> bool:
        """padding=same with a stride > 1: PyTorch refuses it; archgen means SAME_UPPER."""
        return a["padding"] == "same" and a["stride"] != (1, 1)


def divisible(a: dict, name: str, *, raise_: bool = True) -> LayerError | None:
    """in_channels and out_channels must be divisible by groups (Keras's wording)."""
    if a[name] % a["groups"] == 0:
        return None
    err = LayerError("E404", f"{name} must be divisible by groups. Received: "
                     f"{name}={a[name]}, groups={a['groups']}", arg="groups",
                     helps=[f"choose groups among the common divisors of in_channels and "
                            f"out_channels ({a[name]} here)"])
    if raise_:
        raise err
    return err


def unread(size: int, kernel: int, stride: int, pad_begin: int, out: int,
           dilation: int = 1) -> tuple[int, int]:
    """How many of `size` input rows the `out` windows of a conv or pool never read, and how
    many of those trail the last row read. Window o reads the padded rows
    o * stride + j * dilation (j < kernel), padded row q being input row q - pad_begin.

    >>> unread(7, 2, 2, 0, 3)         # the last row is dropped
    (1, 1)
    >>> unread(28, 2, 3, 0, 9)        # a kernel narrower than the stride skips rows
    (10, 2)
    >>> unread(224, 7, 2, 3, 112)     # what is left over is padding
    (0, 0)
    """
    if out <= 0 or size <= 0:
        return size, size
    lo, hi = pad_begin, pad_begin + size - 1  # the input rows, in padded coordinates
    # rows of one residue modulo the stride: tap j covers t*stride + r for t in [b, b+out-1]
    runs: dict[int, list[tuple[int, int]]] = {}
    for j in range(kernel):
        b, r = divmod(j * dilation, stride)
        runs.setdefault(r, []).append((b, b + out - 1))
    read, last = 0, -1
    for r, spans in runs.items():
        t_lo, t_hi = -((r - lo) // stride), (hi - r) // stride  # ceil, floor
        spans.sort()
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
            a, b = max(a, t_lo), min(b, t_hi)
            if a <= b:
                read += b - a + 1
                last = max(last, b * stride + r)
    trailing = hi - last if last >= lo else size
    return size - read, trailing


_MAX_TAPS = 100_000  # beyond this many kernel taps per axis W500 is not worked out


def window_warnings(kernel, stride, pads, dilation, x: Shape, y: Shape) -> list[Warn]:
    out = []
    h, w = spatial(x)
    k_eff = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    # Input rows/columns that no window reads. A 1x1 window that strides (the projection
    # shortcut of a ResNet) subsamples by design and is left alone.
    lost, trail = [0, 0], [0, 0]
    for i, size in enumerate((h, w)):
        if k_eff[i] > 1 and kernel[i] <= _MAX_TAPS:
            lost[i], trail[i] = unread(size, kernel[i], stride[i], pads[i][0], y[1 + i],
                                       dilation[i])
    if any(lost):
        axes = [(n, t, size, name) for n, t, size, name in
                zip(lost, trail, (h, w), ("row(s)", "column(s)")) if n]
        where = " and ".join(f"the last {n} {name}" if n == t else f"{n} of the {size} {name}"
                             for n, t, size, name in axes)
        gaps = any(n != t for n, t, _, _ in axes)
        notes = ["those pixels are never read by any window"]
        if gaps:
            notes.append(f"each window reads {_pair_text(tuple(k_eff))} pixels"
                         + (f" (every {_pair_text(tuple(dilation))}th)" if max(dilation) > 1
                            else "") + f" but moves {_pair_text(tuple(stride))} at a time, so "
                         "the pixels between windows are skipped")
        helps = (["use a stride no larger than the kernel (e.g. maxpool2d(3, stride=3)), or "
                  "a larger kernel"] if gaps else
                 ["pad the input, pick a size divisible by the stride, or use "
                  "ceil_mode=true (pooling) / padding=same (conv)"])
        out.append(Warn(
            "W500", f"stride {_pair_text(tuple(stride))} silently {'skips' if gaps else 'drops'} "
            f"{where} of the {h}x{w} input", arg="stride", notes=notes, helps=helps))
    if (h, w) != (1, 1) and k_eff[0] >= h + sum(pads[0]) and k_eff[1] >= w + sum(pads[1]):
        out.append(Warn(
            "W501", f"the {k_eff[0]}x{k_eff[1]} kernel covers the whole {h}x{w} input",
            arg="kernel_size",
            helps=["a global pooling (adaptive_avgpool2d(1)) or a linear layer says this "
                   "more directly"]))
    return out


@register
class ConvTranspose2d(LayerKind):
    name = "conv_transpose2d"
    torch_class = "nn.ConvTranspose2d"
    doc = "2-D transposed convolution (learned upsampling)"
    params = (
        P("in_channels", "int", None, inferred=True),
        P("out_channels", "int"),
        P("kernel_size", "pair"),
        P("stride", "pair", (1, 1)),
        P("padding", "pair", (0, 0)),
        P("output_padding", "pair", (0, 0)),
        P("groups", "int", 1),
        P("bias", "bool", True),
        P("dilation", "pair", (1, 1)),
        P("padding_mode", "enum", "zeros", choices=("zeros",)),
    )
    positional_args = ("out_channels", "kernel_size", "stride", "padding")
    shape_args = ("out_channels", "kernel_size", "stride", "padding", "output_padding",
                  "dilation")
    example = "conv_transpose2d(8, 2, stride=2)"
    sum_in_place = True
    channels_rule = "out_channels"

    def lower_torch(self, layer, exprs=None) -> Call:
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        plan = conv_transpose_plan(a)
        attrs = {"kernel_shape": a["kernel_size"], "strides": a["stride"],
                 "pads": conv_pads(plan.pads), "output_padding": plan.output_padding,
                 "dilations": a["dilation"], "group": a["groups"]}
        inputs = [x, g.weight(layer, "weight")]
        p = layer.path
        if not any(plan.extend):
            y = g.output_of(layer, p)
            bias = [g.weight(layer, "bias")] if a["bias"] else []
            g.emit("conv_transpose", name=p, y=y, inputs=inputs + bias, **attrs)
            return y
        g.emit("conv_transpose", name=f"{p}/conv", y=f"{p}/conv", inputs=inputs, **attrs)
        extend = ((0, plan.extend[0]), (0, plan.extend[1]))
        if not a["bias"]:
            return g.pad(p, f"{p}/conv", g.output_of(layer, p), extend, "zeros")
        g.pad(f"{p}/pad", f"{p}/conv", f"{p}/padded", extend, "zeros")
        y = g.output_of(layer, p)
        g.emit("add_bias", name=p, y=y, x=f"{p}/padded", bias=g.weight(layer, "bias"),
               h=helpers(p, "bias"), axes=g.const(f"{p}/bias.axes", [1, 2], "int64"))
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        kh, kw = a["kernel_size"]
        # PyTorch computes a transposed conv's fan-in from weight.shape[1] (out_channels // groups)
        fan_in = a["out_channels"] // a["groups"] * kh * kw
        shape = (a["in_channels"], a["out_channels"] // a["groups"], kh, kw)
        out = [("weight", shape, ("he", fan_in))]
        if a["bias"]:
            out.append(("bias", (a["out_channels"],), ("bias", fan_in)))
        return out

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        return [e for e in (divisible(a, "in_channels", raise_=False),) if e]

    def check_args(self, a: dict) -> None:
        positive(a, "out_channels", "kernel_size", "stride", "dilation", "groups")
        positive(a, "padding", "output_padding", allow_zero=True)
        divisible(a, "out_channels")
        for i in range(2):
            op = a["output_padding"][i]
            if op >= a["stride"][i] and op >= a["dilation"][i]:
                raise LayerError(
                    "E301", f"output_padding must be smaller than either stride or dilation. "
                    f"Received: output_padding={_pair_text(a['output_padding'])}, "
                    f"stride={_pair_text(a['stride'])}, dilation={_pair_text(a['dilation'])}",
                    arg="output_padding")

    def output_shape(self, a: dict, x: Shape) -> Shape:
        out = []
        for i, size in enumerate(spatial(x)):
            n = shapes.conv_transpose_out(size, a["kernel_size"][i], a["stride"][i],
                                          a["padding"][i], a["output_padding"][i],
                                          a["dilation"][i])
            if not holds(n >= 1):
                raise LayerError("E402", f"the output would have size {n}: padding "
                                 f"{a['padding'][i]} removes more than the layer produces",
                                 arg="padding")
            out.append(n)
        return (a["out_channels"], *out)

    def param_count(self, a: dict) -> int:
        kh, kw = a["kernel_size"]
        weights = a["in_channels"] * (a["out_channels"] // a["groups"]) * kh * kw
        return weights + (a["out_channels"] if a["bias"] else 0)

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        # every input pixel is multiplied by every weight of its group
        kh, kw = a["kernel_size"]
        return x[0] * x[1] * x[2] * (a["out_channels"] // a["groups"]) * kh * kw

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.scaled(a["stride"])

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",))


# -- ONNX conversions only conv_transpose2d uses ----------------------------------------------

@dataclass
class ConvTransposePlan:
    """ConvTranspose's `pads` and `output_padding`, and `extend`: zero rows/columns to append
    after it (then the bias is added separately, since PyTorch adds it to those too)."""

    pads: Pads
    output_padding: tuple[int, int]
    extend: tuple[int, int]


def conv_transpose_plan(a: dict) -> ConvTransposePlan:
    """PyTorch crops `padding` from both ends of the full transposed convolution and then adds
    `output_padding` at the end; onnxruntime takes output_padding only below the stride, while
    PyTorch allows it below the dilation too. Otherwise the same output comes from cropping
    padding - output_padding at the end, or, where output_padding is larger, from appending
    zeros.

    >>> conv_transpose_plan({"padding": (1, 2), "output_padding": (1, 0), "stride": (2, 2)})
    ConvTransposePlan(pads=((1, 1), (2, 2)), output_padding=(1, 0), extend=(0, 0))
    >>> conv_transpose_plan({"padding": (1, 0), "output_padding": (1, 1), "stride": (1, 1)})
    ConvTransposePlan(pads=((1, 0), (0, 0)), output_padding=(0, 0), extend=(0, 1))
    """
    pads, out_pad, extend = [], [], []
    for p, op, s in zip(a["padding"], a["output_padding"], a["stride"]):
        if op < s:
            pads.append((p, p)), out_pad.append(op), extend.append(0)
        else:
            pads.append((p, max(p - op, 0))), out_pad.append(0), extend.append(max(op - p, 0))
    return ConvTransposePlan(tuple(pads), tuple(out_pad), tuple(extend))

