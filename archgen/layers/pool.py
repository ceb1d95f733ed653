"""maxpool2d, avgpool2d, adaptive_avgpool2d, adaptive_maxpool2d."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from .. import shapes
from ..onnx_graph import Pads, conv_pads, empty_windows, helpers, pad_pads, pool_pads
from ..symbolic import holds
from ..torch_calls import torch_call

from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive,
                   register, spatial)
from .conv import window_warnings


class _Pool(LayerKind):
    """Shared rule of max and average pooling: stride defaults to kernel_size."""

    positional_args = ("kernel_size", "stride", "padding")

    def lower_torch(self, layer, exprs=None):
        a = layer.args
        skip = ("stride",) if a["stride"] == a["kernel_size"] else ()  # PyTorch's default
        return torch_call(layer, 1, exprs, skip)

    def weight_entries(self, a: dict) -> list[tuple]:
        return []

    def check_args(self, a: dict) -> None:
        if a.get("stride") is None:
            a["stride"] = a["kernel_size"]
        a.setdefault("dilation", (1, 1))
        positive(a, "kernel_size", "stride", "dilation")
        positive(a, "padding", allow_zero=True)
        k, p = a["kernel_size"], a["padding"]
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise LayerError(
                "E403", f"pad should be at most half of kernel size. Received: "
                f"padding={fmt_tuple(p)}, kernel_size={fmt_tuple(k)}", arg="padding",
                notes=["PyTorch refuses pooling windows that could lie entirely in the padding"],
                helps=[f"use padding <= {min(k) // 2}"])
        if a.get("return_indices"):
            raise LayerError("E301", "return_indices=true makes the layer return a tuple, which "
                             "a sequential network cannot pass on", arg="return_indices",
                             helps=["remove return_indices"])

    def output_shape(self, a: dict, x: Shape) -> Shape:
        out = []
        for i, size in enumerate(spatial(x)):
            n = shapes.pool_out(size, a["kernel_size"][i], a["stride"][i], a["padding"][i],
                                a["dilation"][i], a["ceil_mode"])
            if not holds(n >= 1):
                raise LayerError(
                    "E402", f"the output {'height' if i == 0 else 'width'} would be {n}: a "
                    f"{a['kernel_size'][i]}-wide window does not fit the input of {size}",
                    arg="kernel_size", notes=[f"the input arriving here is {list(x)}"],
                    helps=["use a smaller kernel, or remove an earlier layer that shrinks "
                           "the map"])
            out.append(n)
        return (x[0], *out)

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.window(a["kernel_size"], a["stride"], a["padding"], a["dilation"])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        pads = tuple((p, p) for p in a["padding"])
        return window_warnings(a["kernel_size"], a["stride"], pads, a["dilation"], x, y)


@register
class MaxPool2d(_Pool):
    name = "maxpool2d"
    torch_class = "nn.MaxPool2d"
    doc = "2-D max pooling"
    params = (
        P("kernel_size", "pair"),
        P("stride", "pair_or_none", None),
        P("padding", "pair", (0, 0)),
        P("dilation", "pair", (1, 1)),
        P("return_indices", "bool", False),
        P("ceil_mode", "bool", False),
    )
    shape_args = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    example = "maxpool2d(3, stride=2, padding=1)"

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        pads = pool_pads(spatial(layer.in_shape), a, spatial(layer.out_shape))
        # onnxruntime refuses pads >= kernel, which ceil_mode's overhang can reach with dilation,
        # and gives the lowest float where a dilated window reads only padding (PyTorch: -inf):
        # then pad explicitly with -inf
        if any(p >= a["kernel_size"][i] for i, pair in enumerate(pads) for p in pair) or \
                empty_windows(spatial(layer.in_shape), a, spatial(layer.out_shape)):
            neg_inf = g.const(f"{layer.path}/pad.value", float("-inf"))
            padded = f"{layer.path}/padded"
            g.emit("pad", name=f"{layer.path}/pad", y=padded, mode="constant",
                   inputs=[x, g.const(f"{layer.path}/pad.pads", pad_pads(pads), "int64"), neg_inf])
            x, pads = padded, ((0, 0), (0, 0))
        y = g.output_of(layer, layer.path)
        g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"])
        return y

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        indices = ((prod(y), 8),)  # int64, made in a no_grad forward too
        return Memory(saves=("input",), extra=indices, scratch=indices)


@register
class AvgPool2d(_Pool):
    name = "avgpool2d"
    torch_class = "nn.AvgPool2d"
    doc = "2-D average pooling"
    params = (
        P("kernel_size", "pair"),
        P("stride", "pair_or_none", None),
        P("padding", "pair", (0, 0)),
        P("ceil_mode", "bool", False),
        P("count_include_pad", "bool", True),
        P("divisor_override", "int", None),
    )
    shape_args = ("kernel_size", "stride", "padding", "ceil_mode")
    example = "avgpool2d(2, ceil_mode=true)"

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        plan = avgpool_plan(spatial(layer.in_shape), a, spatial(layer.out_shape))
        if plan.divisor is not None:
            channels, (kh, kw) = layer.in_shape[0], a["kernel_size"]
            ones = g.const(f"{layer.path}/ones", [1.0] * (channels * kh * kw),
                           shape=(channels, 1, kh, kw))
            y = g.output_of(layer, layer.path)
            g.emit("sum_pool", name=layer.path, y=y, x=x, h=helpers(layer.path, "sum"),
                   ones=ones, kernel_shape=a["kernel_size"],
                   strides=a["stride"], pads=conv_pads(plan.pads), group=channels,
                   divisor=g.const(f"{layer.path}/divisor", float(plan.divisor)))
            return y
        if plan.pre_pads is not None:
            x = g.pad(f"{layer.path}/pad", x, f"{layer.path}/padded", plan.pre_pads, "zeros")
        y = g.output_of(layer, layer.path)
        g.emit("average_pool", name=layer.path, y=y, x=x, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(plan.pads),
               count_include_pad=plan.count_include_pad)
        return y

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",))

    def check_args(self, a: dict) -> None:
        super().check_args(a)
        if a["divisor_override"] == 0:
            raise LayerError("E301", "divisor_override must not be zero",
                             arg="divisor_override")


class _Adaptive(LayerKind):
    positional_args = ("output_size",)
    shape_args = ("output_size",)

    def lower_torch(self, layer, exprs=None):
        return torch_call(layer, 1, exprs)

    def weight_entries(self, a: dict) -> list[tuple]:
        return []

    def lower_onnx(self, g, layer, x: str) -> str:
        mean = self.reduce_op == "ReduceMean"
        in_hw, out_hw = spatial(layer.in_shape), tuple(layer.args["output_size"])
        if out_hw == (1, 1):
            y = g.output_of(layer, layer.path)
            g.emit("global_pool", name=layer.path, y=y, x=x,
                   op="GlobalAveragePool" if mean else "GlobalMaxPool")
            return y
        if all(i % o == 0 for i, o in zip(in_hw, out_hw)):  # even windows: an ordinary pooling
            kernel = [i // o for i, o in zip(in_hw, out_hw)]
            y = g.output_of(layer, layer.path)
            if mean:
                g.emit("average_pool", name=layer.path, y=y, x=x, kernel_shape=kernel,
                       strides=kernel, pads=[0, 0, 0, 0], count_include_pad=0)
            else:
                g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=kernel, strides=kernel,
                       pads=[0, 0, 0, 0], dilations=[1, 1])
            return y
        axes = []
        todo = [(ax, i, o) for ax, i, o in ((2, in_hw[0], out_hw[0]), (3, in_hw[1], out_hw[1]))
                if i != o]
        for n, (ax, i, o) in enumerate(todo):
            tag = "h" if ax == 2 else "w"
            last = n == len(todo) - 1
            y = g.output_of(layer, layer.path) if last else f"{layer.path}/{tag}"
            windows = []
            for k, (start, end) in enumerate(shapes.adaptive_windows(i, o)):
                p = f"{layer.path}/{tag}{k}"
                windows.append({"slice_name": f"{p}.slice", "slice": f"{p}.slice",
                                "reduce_name": p, "reduced": p,
                                "starts": g.const(f"{p}.starts", [start], "int64"),
                                "ends": g.const(f"{p}.ends", [end], "int64")})
            axes.append({"axis": ax, "x": x, "y": y, "windows": windows,
                         "name": layer.path if last else f"{layer.path}/{tag}",
                         "axes": g.const(f"{layer.path}/{tag}.axes", [ax], "int64")})
            x = y
        g.emit("adaptive_pool", axes=axes, reduce_op="ReduceMean" if mean else "ReduceMax")
        return x

    def check_args(self, a: dict) -> None:
        positive(a, "output_size")
        if a.get("return_indices"):
            raise LayerError("E301", "return_indices=true makes the layer return a tuple, which "
                             "a sequential network cannot pass on", arg="return_indices")

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return (x[0], *a["output_size"])

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        kernel, stride = [], []
        for size, out in zip(spatial(x), a["output_size"]):
            # O(1): a list of one window per output would let output_size exhaust memory
            kernel.append(shapes.adaptive_max_window(size, out) if out <= size else 1)
            stride.append(size / out)
        return rf.pooled(kernel, stride, spatial(x))

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        h, w = spatial(x)
        oh, ow = a["output_size"]
        if oh > h or ow > w:
            return [Warn("W501", f"adaptive pooling to {oh}x{ow} enlarges the {h}x{w} input by "
                         "repeating pixels", arg="output_size",
                         helps=["pool to a size at most the input's"])]
        return []


@register
class AdaptiveAvgPool2d(_Adaptive):
    name = "adaptive_avgpool2d"
    torch_class = "nn.AdaptiveAvgPool2d"
    doc = "2-D adaptive average pooling to a fixed output size"
    params = (P("output_size", "pair"),)
    example = "adaptive_avgpool2d((2, 3))"
    reduce_op = "ReduceMean"

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # to 1x1 ATen takes the mean, whose backward needs only the input's size
        return Memory() if a["output_size"] == (1, 1) else Memory(saves=("input",))


@register
class AdaptiveMaxPool2d(_Adaptive):
    name = "adaptive_maxpool2d"
    torch_class = "nn.AdaptiveMaxPool2d"
    doc = "2-D adaptive max pooling to a fixed output size"
    params = (P("output_size", "pair"), P("return_indices", "bool", False))
    example = "adaptive_maxpool2d(1)"
    reduce_op = "ReduceMax"

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        indices = ((prod(y), 8),)  # int64, made in a no_grad forward too
        return Memory(saves=("input",), extra=indices, scratch=indices)


# -- ONNX conversions only avgpool2d uses ----------------------------------------------------

@dataclass
class AvgPoolPlan:
    """How avgpool2d becomes ONNX: an optional zero Pad first (`pre_pads`), then AveragePool
    with `pads` and `count_include_pad`; or, with divisor_override, a window sum (`sum_pads`)."""

    pads: Pads
    count_include_pad: int
    pre_pads: Pads | None = None
    divisor: int | None = None


def avgpool_plan(in_hw: tuple[int, int], a: dict, out_hw: tuple[int, int]) -> AvgPoolPlan:
    """PyTorch divides each window sum by the window's overlap with the input padded by
    `padding` (count_include_pad=true) or with the input alone (false); the extra end padding
    that ceil_mode implies never counts. ONNX counts either all padding or none, so with both
    kinds present the real padding becomes an explicit Pad of zeros.

    >>> avgpool_plan((5, 5), {"kernel_size": (2, 2), "stride": (2, 2), "padding": (1, 1),
    ...     "ceil_mode": True, "count_include_pad": True, "divisor_override": None}, (4, 4))
    AvgPoolPlan(pads=((0, 1), (0, 1)), count_include_pad=0, pre_pads=((1, 1), (1, 1)), divisor=None)
    """
    pads = pool_pads(in_hw, a, out_hw)
    p = a["padding"]
    overhang = any(end > begin for begin, end in pads)
    if a["divisor_override"] is not None:
        return AvgPoolPlan(pads, 0, divisor=a["divisor_override"])
    if a["count_include_pad"] and overhang and any(p):
        pre = ((p[0], p[0]), (p[1], p[1]))
        rest = tuple((0, end - begin) for begin, end in pads)
        return AvgPoolPlan(rest, 0, pre_pads=pre)
    return AvgPoolPlan(pads, int(a["count_include_pad"] and not overhang))

