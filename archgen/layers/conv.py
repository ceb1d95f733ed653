"""conv1d/conv2d/conv3d and conv_transpose1d/2d/3d: one class per family, registered once
per spatial rank (`dims`)."""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

from .. import shapes
from ..symbolic import holds, smax
from ..record import record
from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive,
                   register, spatial)

if TYPE_CHECKING:  # annotations only
    from ..onnx_graph import Pads
    from ..torch_calls import Call

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def check_padding_fits(mode: str, pads: tuple[tuple[int, int], ...], x: Shape,
                       arg: str = "padding") -> None:
    """PyTorch's limits on non-zero padding modes, per side: reflect needs pad < size,
    circular pad <= size, replicate a non-empty input."""
    sizes = spatial(x)
    for (begin, end), size, axis in zip(pads, sizes, AXIS_NAMES[len(sizes)]):
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
    """One value per axis, written once when they are all equal: 2, (1, 3)."""
    return str(v[0]) if len(set(v)) == 1 else fmt_tuple(v)


def _ones(dims: int) -> tuple[int, ...]:
    return (1,) * dims


class ConvNd(LayerKind):
    """An N-d convolution over [C, *spatial]; `dims` is the number of spatial axes."""

    dims: int = 2
    positional_args = ("out_channels", "kernel_size", "stride", "padding")
    shape_args = ("out_channels", "kernel_size", "stride", "padding", "dilation")
    sum_in_place = True
    channels_rule = "out_channels"

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (
            P("in_channels", "int", None, inferred=True),
            P("out_channels", "int"),
            P("kernel_size", "pair", axes=dims),
            P("stride", "pair", _ones(dims), axes=dims),
            P("padding", "padding", (0,) * dims, axes=dims),
            P("dilation", "pair", _ones(dims), axes=dims),
            P("groups", "int", 1),
            P("bias", "bool", True),
            P("padding_mode", "enum", "zeros", choices=PADDING_MODES),
        )

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import Call, call_args, torch_call
        if self.same_stride(layer.args):  # PyTorch refuses it: SAME_UPPER through the helper
            return Call("Conv2dSame", call_args(layer, 2, skip=("padding",), exprs=exprs))
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import conv_pads
        a = layer.args
        pads = a["pads"]
        if a["padding_mode"] != "zeros" and any(p for pair in pads for p in pair):
            x = g.pad(f"{layer.path}/pad", x, f"{layer.path}/padded", pads, a["padding_mode"])
            pads = ((0, 0),) * self.dims
        inputs = [x, g.weight(layer, "weight")] + (
            [g.weight(layer, "bias")] if a["bias"] else [])
        y = g.output_of(layer, layer.path)
        g.emit("conv", name=layer.path, y=y, inputs=inputs, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"],
               group=a["groups"])
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        k = a["kernel_size"]
        fan_in = a["in_channels"] // a["groups"] * prod(k)
        shape = (a["out_channels"], a["in_channels"] // a["groups"], *k)
        out = [("weight", shape, ("he", fan_in))]
        if a["bias"]:
            out.append(("bias", (a["out_channels"],), ("bias", fan_in)))
        return out

    def check_args(self, a: dict) -> None:
        positive(a, "out_channels", "kernel_size", "stride", "dilation", "groups")
        positive(a, "padding", allow_zero=True)
        divisible(a, "out_channels")
        if self.dims != 2 and self.same_stride(a):
            raise LayerError(
                "E426", f"padding=same with stride {_pair_text(a['stride'])} is refused by "
                f"PyTorch's {self.torch_class} (it pads only unstrided convolutions)",
                arg="padding",
                helps=["give the padding as a number, or use stride=1 (archgen writes a "
                       "SAME_UPPER helper only for conv2d)"])

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
    def pads(a: dict, x: Shape) -> tuple[tuple[int, int], ...]:
        """(begin, end) padding per spatial axis that PyTorch (or SAME_UPPER) applies."""
        p = a["padding"]
        sizes = spatial(x)
        if p == "valid":
            return ((0, 0),) * len(sizes)
        if p == "same":
            return tuple(shapes.same_pads(size, a["kernel_size"][i], a["stride"][i],
                                          a["dilation"][i])
                         for i, size in enumerate(sizes))
        return tuple((v, v) for v in p)

    def output_shape(self, a: dict, x: Shape) -> Shape:
        out = []
        sizes = spatial(x)
        for i, size in enumerate(sizes):
            begin, end = a["pads"][i]
            if a["padding"] == "same":  # ceil(size / stride) whatever the size (same_pads)
                n = (size + a["stride"][i] - 1) // a["stride"][i]
            else:
                n = shapes.conv_out(size, a["kernel_size"][i], a["stride"][i], begin, end,
                                    a["dilation"][i])
            if not holds(n >= 1):
                k_eff = a["dilation"][i] * (a["kernel_size"][i] - 1) + 1
                raise LayerError(
                    "E402", f"the output {AXIS_NAMES[len(sizes)][i]} would be {n}: "
                    f"the kernel spans {k_eff} pixels but the padded input is only "
                    f"{size + begin + end}", arg="kernel_size",
                    notes=[f"the input arriving here is {list(x)}"],
                    helps=["pad more (padding=same keeps the size), use a smaller kernel or "
                           "dilation, or remove a pooling layer before this one"])
            out.append(n)
        return (a["out_channels"], *out)

    def param_count(self, a: dict) -> int:
        weights = a["out_channels"] * (a["in_channels"] // a["groups"]) * prod(a["kernel_size"])
        return weights + (a["out_channels"] if a["bias"] else 0)

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        return prod(y) * (a["in_channels"] // a["groups"]) * prod(a["kernel_size"])

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.window(a["kernel_size"], a["stride"], [p[0] for p in a["pads"]], a["dilation"])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        return window_warnings(a["kernel_size"], a["stride"], a["pads"], a["dilation"], x, y)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """The conv keeps what it convolves: its input, or the padded copy that nn.Conv2d
        (padding_mode other than zeros), Conv2dSame (same with a stride) or ATen (same with
        an even kernel) makes first; reflect and replicate padding keep their input too."""
        pads = a["pads"]
        explicit = a["padding_mode"] != "zeros" or (
            a["padding"] == "same" and (self.same_stride(a) or any(b != e for b, e in pads)))
        if not explicit:
            return Memory(saves=("input",))
        padded = x[0] * prod(size + b + e for size, (b, e) in zip(spatial(x), pads))
        keeps_input = a["padding_mode"] in ("reflect", "replicate")
        return Memory(saves=("input",) if keeps_input else (), extra=((padded, "act"),),
                      temp=padded, input_needs_grad=True)

    @staticmethod
    def same_stride(a: dict) -> bool:
        """padding=same with a stride > 1: PyTorch refuses it; archgen means SAME_UPPER."""
        return a["padding"] == "same" and any(s != 1 for s in a["stride"])


def _register_conv(dims: int, example: str) -> type[ConvNd]:
    cls = type(f"Conv{dims}d", (ConvNd,), {
        "name": f"conv{dims}d", "torch_class": f"nn.Conv{dims}d", "doc": f"{dims}-D convolution",
        "dims": dims, "rank": dims + 1, "params": ConvNd.schema(dims), "example": example,
        "fold_role": "conv"})
    return register(cls)


Conv1d = _register_conv(1, "conv1d(16, 5, stride=2, padding=2)")
Conv2d = _register_conv(2, "conv2d(16, 3, stride=2, padding=1, groups=2)")
Conv3d = _register_conv(3, "conv3d(8, 3, padding=1, padding_mode=replicate)")


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


_UNITS = {1: ("position(s)",), 2: ("row(s)", "column(s)"),
          3: ("plane(s)", "row(s)", "column(s)")}


def window_warnings(kernel, stride, pads, dilation, x: Shape, y: Shape) -> list[Warn]:
    out = []
    sizes = spatial(x)
    dims = len(sizes)
    shown = "x".join(map(str, sizes))
    k_eff = [dilation[i] * (kernel[i] - 1) + 1 for i in range(dims)]
    # Input rows/columns that no window reads. A 1x1 window that strides (the projection
    # shortcut of a ResNet) subsamples by design and is left alone.
    lost, trail = [0] * dims, [0] * dims
    for i, size in enumerate(sizes):
        if k_eff[i] > 1 and kernel[i] <= _MAX_TAPS:
            lost[i], trail[i] = unread(size, kernel[i], stride[i], pads[i][0], y[1 + i],
                                       dilation[i])
    if any(lost):
        axes = [(n, t, size, name) for n, t, size, name in
                zip(lost, trail, sizes, _UNITS[dims]) if n]
        where = " and ".join(f"the last {n} {name}" if n == t else f"{n} of the {size} {name}"
                             for n, t, size, name in axes)
        gaps = any(n != t for n, t, _, _ in axes)
        notes = ["those pixels are never read by any window"]
        if gaps:
            notes.append(f"each window reads {_pair_text(tuple(k_eff))} pixels"
                         + (f" (every {_pair_text(tuple(dilation))}th)" if max(dilation) > 1
                            else "") + f" but moves {_pair_text(tuple(stride))} at a time, so "
                         "the pixels between windows are skipped")
        helps = ([f"use a stride no larger than the kernel (e.g. maxpool{dims}d(3, stride=3)), "
                  "or a larger kernel"] if gaps else
                 ["pad the input, pick a size divisible by the stride, or use "
                  "ceil_mode=true (pooling) / padding=same (conv)"])
        out.append(Warn(
            "W500", f"stride {_pair_text(tuple(stride))} silently {'skips' if gaps else 'drops'} "
            f"{where} of the {shown} input", arg="stride", notes=notes, helps=helps))
    if tuple(sizes) != (1,) * dims and all(k_eff[i] >= sizes[i] + sum(pads[i])
                                           for i in range(dims)):
        out.append(Warn(
            "W501", f"the {'x'.join(map(str, k_eff))} kernel covers the whole {shown} input",
            arg="kernel_size",
            helps=[f"a global pooling (adaptive_avgpool{dims}d(1)) or a linear layer says "
                   "this more directly"]))
    return out


class ConvTransposeNd(LayerKind):
    """An N-d transposed convolution over [C, *spatial]; `dims` spatial axes."""

    dims: int = 2
    positional_args = ("out_channels", "kernel_size", "stride", "padding")
    shape_args = ("out_channels", "kernel_size", "stride", "padding", "output_padding",
                  "dilation")
    sum_in_place = True
    channels_rule = "out_channels"

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (
            P("in_channels", "int", None, inferred=True),
            P("out_channels", "int"),
            P("kernel_size", "pair", axes=dims),
            P("stride", "pair", _ones(dims), axes=dims),
            P("padding", "pair", (0,) * dims, axes=dims),
            P("output_padding", "pair", (0,) * dims, axes=dims),
            P("groups", "int", 1),
            P("bias", "bool", True),
            P("dilation", "pair", _ones(dims), axes=dims),
            P("padding_mode", "enum", "zeros", choices=("zeros",)),
        )

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import torch_call
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import conv_pads, helpers
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
        extend = tuple((0, e) for e in plan.extend)
        if not a["bias"]:
            return g.pad(p, f"{p}/conv", g.output_of(layer, p), extend, "zeros")
        g.pad(f"{p}/pad", f"{p}/conv", f"{p}/padded", extend, "zeros")
        y = g.output_of(layer, p)
        g.emit("add_bias", name=p, y=y, x=f"{p}/padded", bias=g.weight(layer, "bias"),
               h=helpers(p, "bias"),
               axes=g.const(f"{p}/bias.axes", list(range(1, self.dims + 1)), "int64"))
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        k = a["kernel_size"]
        # PyTorch computes a transposed conv's fan-in from weight.shape[1] (out_channels // groups)
        fan_in = a["out_channels"] // a["groups"] * prod(k)
        shape = (a["in_channels"], a["out_channels"] // a["groups"], *k)
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
        for i in range(self.dims):
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
        weights = a["in_channels"] * (a["out_channels"] // a["groups"]) * prod(a["kernel_size"])
        return weights + (a["out_channels"] if a["bias"] else 0)

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        # every input pixel is multiplied by every weight of its group
        return prod(x) * (a["out_channels"] // a["groups"]) * prod(a["kernel_size"])

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.scaled(a["stride"])

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",))


def _register_transpose(dims: int, example: str) -> type[ConvTransposeNd]:
    cls = type(f"ConvTranspose{dims}d", (ConvTransposeNd,), {
        "name": f"conv_transpose{dims}d", "torch_class": f"nn.ConvTranspose{dims}d",
        "doc": f"{dims}-D transposed convolution (learned upsampling)", "dims": dims,
        "rank": dims + 1, "params": ConvTransposeNd.schema(dims), "example": example})
    return register(cls)


ConvTranspose1d = _register_transpose(1, "conv_transpose1d(8, 4, stride=2, padding=1)")
ConvTranspose2d = _register_transpose(2, "conv_transpose2d(8, 2, stride=2)")
ConvTranspose3d = _register_transpose(3, "conv_transpose3d(4, 2, stride=2)")


# -- ONNX conversions only conv_transpose uses ----------------------------------------------

@record
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

