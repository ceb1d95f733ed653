"""maxpool, avgpool, adaptive_avgpool and adaptive_maxpool in 1d, 2d and 3d: one class per
family, registered once per spatial rank (`dims`)."""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING

from .. import shapes
from ..symbolic import holds
from ..record import record
from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive,
                   register, spatial)
from .conv import AXIS_NAMES, window_warnings

if TYPE_CHECKING:  # annotations only
    from ..onnx_graph import Pads


class _Pool(LayerKind):
    """Shared rule of max and average pooling: stride defaults to kernel_size."""

    positional_args = ("kernel_size", "stride", "padding")
    dims: int = 2

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        a = layer.args
        skip = ("stride",) if a["stride"] == a["kernel_size"] else ()  # PyTorch's default
        return torch_call(layer, 1, exprs, skip)

    def weight_entries(self, a: dict) -> list[tuple]:
        return []

    def check_args(self, a: dict) -> None:
        if a.get("stride") is None:
            a["stride"] = a["kernel_size"]
        a.setdefault("dilation", (1,) * self.dims)
        positive(a, "kernel_size", "stride", "dilation")
        positive(a, "padding", allow_zero=True)
        k, p = a["kernel_size"], a["padding"]
        if any(p[i] > k[i] // 2 for i in range(self.dims)):
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
                    "E402", f"the output {AXIS_NAMES[self.dims][i]} would be {n}: a "
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


class MaxPoolNd(_Pool):
    shape_args = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (
            P("kernel_size", "pair", axes=dims),
            P("stride", "pair_or_none", None, axes=dims),
            P("padding", "pair", (0,) * dims, axes=dims),
            P("dilation", "pair", (1,) * dims, axes=dims),
            P("return_indices", "bool", False),
            P("ceil_mode", "bool", False),
        )

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import conv_pads, empty_windows, pad_pads, pool_pads
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
            x, pads = padded, ((0, 0),) * self.dims
        y = g.output_of(layer, layer.path)
        g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=a["kernel_size"],
               strides=a["stride"], pads=conv_pads(pads), dilations=a["dilation"])
        return y

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        indices = ((prod(y), 8),)  # int64, made in a no_grad forward too
        return Memory(saves=("input",), extra=indices, scratch=indices)


class AvgPoolNd(_Pool):
    shape_args = ("kernel_size", "stride", "padding", "ceil_mode")

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (
            P("kernel_size", "pair", axes=dims),
            P("stride", "pair_or_none", None, axes=dims),
            P("padding", "pair", (0,) * dims, axes=dims),
            P("ceil_mode", "bool", False),
            P("count_include_pad", "bool", True),
            *((P("divisor_override", "int", None),) if dims > 1 else ()),  # not in AvgPool1d
        )

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import conv_pads, helpers
        a = layer.args
        plan = avgpool_plan(spatial(layer.in_shape), a, spatial(layer.out_shape))
        if plan.divisor is not None:
            channels, k = layer.in_shape[0], a["kernel_size"]
            ones = g.const(f"{layer.path}/ones", [1.0] * (channels * prod(k)),
                           shape=(channels, 1, *k))
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

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        # ATen's avg_pool3d alone also wants every axis of the unpadded input to hold a window
        sizes, k = spatial(x), a["kernel_size"]
        if self.dims == 3 and not all(holds(s >= n) for s, n in zip(sizes, k)):
            return [LayerError(
                "E428", f"the input must be at least as large as the window, but the "
                f"{'x'.join(map(str, sizes))} input is smaller than the "
                f"{'x'.join(map(str, k))} kernel", arg="kernel_size",
                notes=["PyTorch's avg_pool3d checks the input before padding it (avgpool1d "
                       "and avgpool2d do not)"],
                helps=["use a smaller kernel on the short axes, e.g. (1, 2, 2)"])]
        return []

    def check_args(self, a: dict) -> None:
        super().check_args(a)
        a.setdefault("divisor_override", None)  # AvgPool1d has none
        if a["divisor_override"] == 0:
            raise LayerError("E301", "divisor_override must not be zero",
                             arg="divisor_override")


class _Adaptive(LayerKind):
    positional_args = ("output_size",)
    shape_args = ("output_size",)
    dims: int = 2

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def weight_entries(self, a: dict) -> list[tuple]:
        return []

    def lower_onnx(self, g, layer, x: str) -> str:
        mean = self.reduce_op == "ReduceMean"
        in_hw, out_hw = spatial(layer.in_shape), tuple(layer.args["output_size"])
        if out_hw == (1,) * self.dims:
            y = g.output_of(layer, layer.path)
            g.emit("global_pool", name=layer.path, y=y, x=x,
                   op="GlobalAveragePool" if mean else "GlobalMaxPool")
            return y
        if all(i % o == 0 for i, o in zip(in_hw, out_hw)):  # even windows: an ordinary pooling
            kernel = [i // o for i, o in zip(in_hw, out_hw)]
            y = g.output_of(layer, layer.path)
            if mean:
                g.emit("average_pool", name=layer.path, y=y, x=x, kernel_shape=kernel,
                       strides=kernel, pads=[0] * (2 * self.dims), count_include_pad=0)
            else:
                g.emit("max_pool", name=layer.path, y=y, x=x, kernel_shape=kernel, strides=kernel,
                       pads=[0] * (2 * self.dims), dilations=[1] * self.dims)
            return y
        axes = []
        tags = {1: "l", 2: "hw", 3: "dhw"}[self.dims]  # h and w for a map's axes 2 and 3
        todo = [(2 + k, i, o) for k, (i, o) in enumerate(zip(in_hw, out_hw)) if i != o]
        for n, (ax, i, o) in enumerate(todo):
            tag = tags[ax - 2]
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
        sizes, outs = spatial(x), a["output_size"]
        if any(o > i for o, i in zip(outs, sizes)):
            return [Warn("W501", f"adaptive pooling to {'x'.join(map(str, outs))} enlarges the "
                         f"{'x'.join(map(str, sizes))} input by repeating pixels",
                         arg="output_size", helps=["pool to a size at most the input's"])]
        return []


class AdaptiveAvgPoolNd(_Adaptive):
    reduce_op = "ReduceMean"

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (P("output_size", "pair", axes=dims),)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # to 1x1 ATen takes the mean, whose backward needs only the input's size
        return Memory() if a["output_size"] == (1,) * self.dims else Memory(saves=("input",))


class AdaptiveMaxPoolNd(_Adaptive):
    reduce_op = "ReduceMax"

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (P("output_size", "pair", axes=dims), P("return_indices", "bool", False))

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        indices = ((prod(y), 8),)  # int64, made in a no_grad forward too
        return Memory(saves=("input",), extra=indices, scratch=indices)


def _register(family: type, name: str, what: str, examples: dict[int, str]) -> None:
    for dims in (1, 2, 3):
        cls_name = f"{family.__name__[:-2]}{dims}d"
        register(type(cls_name, (family,), {
            "name": f"{name}{dims}d", "torch_class": f"nn.{cls_name}",
            "doc": f"{dims}-D {what}", "dims": dims, "rank": dims + 1,
            "params": family.schema(dims), "example": examples[dims]}))


_register(MaxPoolNd, "maxpool", "max pooling",
          {1: "maxpool1d(4)", 2: "maxpool2d(3, stride=2, padding=1)",
           3: "maxpool3d((1, 2, 2))"})
_register(AvgPoolNd, "avgpool", "average pooling",
          {1: "avgpool1d(3, stride=2, padding=1)", 2: "avgpool2d(2, ceil_mode=true)",
           3: "avgpool3d(2, divisor_override=3)"})
_register(AdaptiveAvgPoolNd, "adaptive_avgpool", "adaptive average pooling to a fixed output size",
          {1: "adaptive_avgpool1d(1)", 2: "adaptive_avgpool2d((2, 3))",
           3: "adaptive_avgpool3d((1, 2, 2))"})
_register(AdaptiveMaxPoolNd, "adaptive_maxpool", "adaptive max pooling to a fixed output size",
          {1: "adaptive_maxpool1d(3)", 2: "adaptive_maxpool2d(1)",
           3: "adaptive_maxpool3d(1)"})


# -- ONNX conversions only avgpool uses ----------------------------------------------------

@record
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
    from ..onnx_graph import pool_pads
    pads = pool_pads(in_hw, a, out_hw)
    p = a["padding"]
    overhang = any(end > begin for begin, end in pads)
    if a["divisor_override"] is not None:
        return AvgPoolPlan(pads, 0, divisor=a["divisor_override"])
    if a["count_include_pad"] and overhang and any(p):
        pre = tuple((v, v) for v in p)
        rest = tuple((0, end - begin) for begin, end in pads)
        return AvgPoolPlan(rest, 0, pre_pads=pre)
    return AvgPoolPlan(pads, int(a["count_include_pad"] and not overhang))

