"""pad2d and upsample: layers that change the spatial size without weights."""

from __future__ import annotations

from .. import shapes
from ..symbolic import holds
from .base import RF, LayerError, LayerKind, Memory, P, Shape, positive, register, spatial
from .conv import PADDING_MODES, check_padding_fits


@register
class Pad2d(LayerKind):
    name = "pad2d"
    torch_class = "nn.ZeroPad2d"  # the emitter picks the class matching `mode`
    doc = ("explicit padding: an integer, (left, right) or (left, right, top, bottom), as "
           "torch.nn.functional.pad; negative padding (cropping) is refused")
    params = (P("padding", "pad4"), P("mode", "enum", "zeros", choices=PADDING_MODES),
              P("value", "float", 0.0))
    positional_args = ("padding",)
    shape_args = ("padding",)

    def check_args(self, a: dict) -> None:
        positive(a, "padding", allow_zero=True)
        if a["value"] != 0.0 and a["mode"] != "zeros":
            raise LayerError("E301", f"value= only applies to mode=zeros, not {a['mode']}",
                             arg="value")

    def normalise(self, a: dict, x: Shape) -> None:
        left, right, top, bottom = a["padding"]
        a["pads"] = ((top, bottom), (left, right))

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        try:
            if a["mode"] != "zeros":
                check_padding_fits(a["mode"], a["pads"], x)
        except LayerError as err:
            return [err]
        return []

    def output_shape(self, a: dict, x: Shape) -> Shape:
        (t, b), (left, r) = a["pads"]
        return (x[0], x[1] + t + b, x[2] + left + r)

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.window((1, 1), (1, 1), (a["pads"][0][0], a["pads"][1][0]))

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # constant and circular padding need only sizes; reflect and replicate the input
        return Memory(saves=("input",) if a["mode"] in ("reflect", "replicate") else ())


@register
class Upsample(LayerKind):
    name = "upsample"
    torch_class = "nn.Upsample"
    doc = "nearest or bilinear upsampling by scale_factor or to size"
    params = (
        P("size", "pair", None),
        P("scale_factor", "scale", None),
        P("mode", "enum", "nearest", choices=("nearest", "bilinear")),
        P("align_corners", "bool", None),
    )
    shape_args = ("size", "scale_factor")  # keyword-only: upsample(2) would be PyTorch's size=2

    def check_args(self, a: dict) -> None:
        if (a["size"] is None) == (a["scale_factor"] is None):
            raise LayerError("E300", "upsample takes either size or scale_factor, exactly one",
                             arg="scale_factor" if a["size"] is None else "size")
        positive(a, "size")
        if a["scale_factor"] is not None and min(a["scale_factor"]) <= 0:
            raise LayerError("E301", "scale_factor must be positive", arg="scale_factor")
        if a["align_corners"] is not None and a["mode"] == "nearest":
            raise LayerError("E301", "align_corners only applies to mode=bilinear",
                             arg="align_corners")

    def output_shape(self, a: dict, x: Shape) -> Shape:
        if a["size"] is not None:
            return (x[0], *a["size"])
        out = tuple(shapes.upsample_out(s, f) for s, f in zip(spatial(x), a["scale_factor"]))
        if not all(holds(n >= 1) for n in out):
            raise LayerError("E402", f"scale_factor shrinks the map to {out}", arg="scale_factor")
        return (x[0], *out)

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.scaled(tuple(o / i for o, i in zip(y[1:], x[1:])))
