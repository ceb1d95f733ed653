"""channel_shuffle and channel_slice: ShuffleNet's channel operations. Both act on the
channel axis (dim 1, the batch counted) of any input with one, and leave the other axes and
the receptive field as they are.

channel_slice(start, stop) is x[:, start:stop], a view: at the head of a branch it is
ShuffleNetV2's split (x.chunk(2, dim=1)), `channel_slice(0, in_channels // 2)` beside
`channel_slice(in_channels // 2, in_channels)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..helper import Helper
from ..symbolic import holds
from ..syntax import BinOp, Num
from .base import LayerError, LayerKind, Memory, P, Shape, Warn, Weightless, positive, register

if TYPE_CHECKING:  # annotations only
    from ..torch_calls import Call


def _channel_axis(kind: str, x: Shape, least: int) -> None:
    if len(x) < least:
        what = "[C, L], [C, H, W] or [C, D, H, W]" if least == 2 else "[C, ...] or [F]"
        raise LayerError("E405", f"needs an input with channels and at least one "
                         f"spatial axis ({what}); received {list(x)}",
                         helps=[f"move {kind} before flatten()"])


@register
class ChannelShuffle(Weightless, LayerKind):
    name = "channel_shuffle"
    torch_class = "nn.ChannelShuffle"
    doc = ("splits the channels into `groups` groups and interleaves them: channel "
           "g * (C / groups) + i goes to i * groups + g")
    rank = None
    params = (P("groups", "int"),)
    positional_args = ("groups",)
    example = "channel_shuffle(2)"

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        """[N, C, *] viewed as [N, g, C / g, rest], the group axes swapped, and the input's
        own shape again (symbolic sizes included)."""
        from ..onnx_graph import helpers
        groups, c = layer.args["groups"], layer.in_shape[0]
        grouped = g.const(f"{layer.path}/grouped_shape", [0, groups, c // groups, -1], "int64")
        return g.one_node(layer, x, "channel_shuffle", grouped_shape=grouped,
                          h=helpers(layer.path, "shape", "grouped", "swapped"))

    def check_args(self, a: dict) -> None:
        if a["groups"] < 1:  # PyTorch's rule and wording
            raise LayerError("E301", f"Number of groups to divide channels in must be "
                             f"positive. Value of groups: {a['groups']}", arg="groups")

    def normalise(self, a: dict, x: Shape) -> None:
        _channel_axis(self.name, x, 2)  # torch.channel_shuffle wants (N, C, *) with * non-empty

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        c, g = x[0], a["groups"]
        if holds(c % g == 0):
            return []
        return [LayerError("E438", f"Number of channels must be divisible by groups. Got {c} "
                           f"channels and {g} groups", arg="groups",
                           helps=[f"use a divisor of {c}, such as "
                                  f"{max(d for d in range(1, g) if c % d == 0)}"
                                  if isinstance(c, int) else "use a divisor of the channels"])]

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        c, g = x[0], a["groups"]
        if g == 1 or g == c:
            return [Warn("W508", f"groups={g} on {c} channels leaves every channel where "
                         f"it is", arg="groups",
                         notes=["C channels in g groups of C / g are interleaved; with g = 1 "
                                "or g = C the order does not change"],
                         helps=["ShuffleNet shuffles the concatenation of its two branches "
                                "with groups=2"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory()  # a new tensor; backward is a shuffle, it keeps nothing


@register
class ChannelSlice(Weightless, LayerKind):
    name = "channel_slice"
    torch_class = "ChannelSlice"  # the generated file's own module for x[:, start:stop]
    torch_helpers: ClassVar[dict] = {
        "ChannelSlice": Helper("channel_slice.py.j2", (), "nn.Module", ())}
    doc = ("channels start..stop-1 (x[:, start:stop], a view): with channel_slice(0, n) and "
           "channel_slice(n, in_channels) as two branches' heads, ShuffleNetV2's split")
    rank = None
    params = (P("start", "int"), P("stop", "int"))
    positional_args = ("start", "stop")
    shape_args = ("start", "stop")
    channels_rule = "unknown"  # stop - start, which channels_expr writes
    example = "channel_slice(0, 2)"

    def channels_expr(self, written: dict, c):
        start, stop = written.get("start"), written.get("stop")
        if start is None or stop is None:
            return None
        if isinstance(start, Num) and start.value == 0:
            return stop
        return BinOp(stop.span, "-", stop, start)  # a block class's `in_channels - ...`

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import Call, call_args
        return Call(self.torch_class, call_args(layer, 2, exprs=exprs))

    def lower_onnx(self, g, layer, x: str) -> str:
        a, p = layer.args, layer.path
        return g.one_node(layer, x, "channel_slice",
                          starts=g.const(f"{p}/starts", [a["start"]], "int64"),
                          ends=g.const(f"{p}/ends", [a["stop"]], "int64"),
                          axes=g.const(f"{p}/axes", [1], "int64"))

    def check_args(self, a: dict) -> None:
        positive(a, "start", "stop", allow_zero=True)
        if a["stop"] <= a["start"]:
            raise LayerError("E301", f"start must be less than stop, received "
                             f"start={a['start']}, stop={a['stop']}: the slice would be empty",
                             arg="stop")

    def normalise(self, a: dict, x: Shape) -> None:
        _channel_axis(self.name, x, 1)
        c = x[0]
        if not holds(a["stop"] <= c):  # the shape is unknown: Python would clip the slice
            raise LayerError("E439", f"stop={a['stop']} is beyond the input's {c} channels",
                             arg="stop", helps=[f"use stop <= {c} (in_channels names the "
                                                f"input's channel count in a block)"])

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return (a["stop"] - a["start"], *x[1:])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if a["start"] == 0 and a["stop"] == x[0]:
            return [Warn("W509", f"start={a['start']}, stop={a['stop']} keeps all {x[0]} "
                         f"channels: the layer does nothing", arg="stop",
                         helps=["remove it, or slice part of the channels (ShuffleNetV2: "
                                "channel_slice(0, in_channels // 2))"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(aliases=True)  # a view of the input's storage

