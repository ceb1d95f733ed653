"""maxpool2d, avgpool2d, adaptive_avgpool2d, adaptive_maxpool2d."""

from __future__ import annotations

from .. import shapes
from ..symbolic import holds
from math import prod

from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive,
                   register, spatial)
from .conv import window_warnings


class _Pool(LayerKind):
    """Shared rule of max and average pooling: stride defaults to kernel_size."""

    positional_args = ("kernel_size", "stride", "padding")

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

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # to 1x1 ATen takes the mean, whose backward needs only the input's size
        return Memory() if a["output_size"] == (1, 1) else Memory(saves=("input",))


@register
class AdaptiveMaxPool2d(_Adaptive):
    name = "adaptive_maxpool2d"
    torch_class = "nn.AdaptiveMaxPool2d"
    doc = "2-D adaptive max pooling to a fixed output size"
    params = (P("output_size", "pair"), P("return_indices", "bool", False))

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        indices = ((prod(y), 8),)  # int64, made in a no_grad forward too
        return Memory(saves=("input",), extra=indices, scratch=indices)
