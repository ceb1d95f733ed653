"""pad2d and upsample: layers that change the spatial size without weights."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .. import shapes
from ..extras import require
from ..symbolic import holds
from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Weightless, positive, register,
                   spatial)
from .conv import PADDING_MODES, check_padding_fits

if TYPE_CHECKING:  # annotations only
    from ..torch_calls import Call

# the module of each padding mode (zeros: nn.ZeroPad2d, or nn.ConstantPad2d with a value)
_PAD_CLASSES = {"reflect": "nn.ReflectionPad{}d", "replicate": "nn.ReplicationPad{}d",
                "circular": "nn.CircularPad{}d"}


class PadNd(Weightless, LayerKind):
    """Explicit padding of [C, *spatial] (`dims` spatial axes), in F.pad's order: the last
    axis first."""

    dims: int = 2
    positional_args = ("padding",)
    shape_args = ("padding",)

    @classmethod
    def schema(cls, dims: int) -> tuple[P, ...]:
        return (P("padding", "pad4", axes=dims), P("mode", "enum", "zeros", choices=PADDING_MODES),
                P("value", "float", 0.0))

    @property
    def torch_classes(self) -> tuple[str, ...]:
        return tuple(c.format(self.dims) for c in ("nn.ZeroPad{}d", "nn.ConstantPad{}d",
                                                   *_PAD_CLASSES.values()))

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import Call, arg_item
        a, d = layer.args, self.dims
        if a["mode"] != "zeros":
            return Call(_PAD_CLASSES[a["mode"]].format(d), [arg_item(layer, "padding", exprs)])
        if a["value"] != 0.0:
            return Call(f"nn.ConstantPad{d}d", [arg_item(layer, "padding", exprs),
                                                arg_item(layer, "value", exprs)])
        return Call(f"nn.ZeroPad{d}d", [arg_item(layer, "padding", exprs)])

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        y = g.output_of(layer, layer.path)
        return g.pad(layer.path, x, y, a["pads"], a["mode"], a["value"])

    def check_args(self, a: dict) -> None:
        positive(a, "padding", allow_zero=True)
        if a["value"] != 0.0 and a["mode"] != "zeros":
            raise LayerError("E301", f"value= only applies to mode=zeros, not {a['mode']}",
                             arg="value")

    def normalise(self, a: dict, x: Shape) -> None:
        p = a["padding"]  # (left, right, top, bottom, front, back): the last axis first
        a["pads"] = tuple((p[2 * i], p[2 * i + 1]) for i in reversed(range(self.dims)))

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        try:
            if a["mode"] != "zeros":
                check_padding_fits(a["mode"], a["pads"], x)
        except LayerError as err:
            return [err]
        return []

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return (x[0], *(size + b + e for size, (b, e) in zip(x[1:], a["pads"])))

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        ones = (1,) * self.dims
        return rf.window(ones, ones, tuple(b for b, _ in a["pads"]))

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # constant and circular padding need only sizes; reflect and replicate the input
        return Memory(saves=("input",) if a["mode"] in ("reflect", "replicate") else ())


for _dims, _example in ((1, "pad1d((2, 1), mode=replicate)"),
                       (2, "pad2d((1, 2, 0, 1), mode=reflect)"), (3, "pad3d(1, mode=circular)")):
    register(type(f"Pad{_dims}d", (PadNd,), {
        "name": f"pad{_dims}d", "torch_class": f"nn.ZeroPad{_dims}d",  # and by `mode`
        "doc": ("explicit padding: an integer, " + {
            1: "(left, right)", 2: "(left, right) or (left, right, top, bottom)",
            3: "(left, right), (left, right, top, bottom) or (left, right, top, bottom, "
               "front, back)"}[_dims] + ", as torch.nn.functional.pad; negative padding "
               "(cropping) is refused"),
        "dims": _dims, "rank": _dims + 1, "params": PadNd.schema(_dims), "example": _example}))

# the interpolation mode of each spatial rank besides nearest, as F.interpolate requires
LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


@register
class Upsample(Weightless, LayerKind):
    name = "upsample"
    torch_class = "nn.Upsample"
    doc = ("nearest or (bi/tri)linear upsampling by scale_factor or to size, of [C, L], "
           "[C, H, W] or [C, D, H, W]")
    rank = None  # any spatial rank: normalise checks it
    params = (
        P("size", "pair", None, axes=0),
        P("scale_factor", "scale", None, axes=0),
        P("mode", "enum", "nearest", choices=("nearest", "linear", "bilinear", "trilinear")),
        P("align_corners", "bool", None),
    )
    shape_args = ("size", "scale_factor")  # keyword-only: upsample(2) would be PyTorch's size=2
    example = "upsample(scale_factor=2, mode=bilinear)"

    def lower_torch(self, layer, exprs=None) -> Call:
        from ..torch_calls import torch_call
        return torch_call(layer, 0, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import helpers, spatial as onnx_spatial
        a = layer.args
        p = layer.path
        in_hw, out_hw = onnx_spatial(layer.in_shape), onnx_spatial(layer.out_shape)
        plan = upsample_plan(a, in_hw, out_hw)
        dims = len(in_hw)
        scales = a["scale_factor"] or (None,) * dims
        tags = _TAGS[dims]
        if plan == "resize":
            y = g.output_of(layer, p)
            mode, coordinates = resize_modes(a)
            if resize_scales(a, in_hw, out_hw):  # the graph then takes any input size
                inputs = [x, "", g.const(f"{p}/scales", [float(s) for s in scales])]
            else:
                inputs = [x, "", "", g.const(f"{p}/sizes", out_hw, "int64")]
            g.emit("resize", name=p, y=y, inputs=inputs, mode=mode,
                   coordinate_transformation_mode=coordinates, nearest_mode="floor",
                   axes=list(range(2, 2 + dims)))
            return y
        if a["mode"] == "nearest" and dims != 2:
            steps = []
            for k, (tag, i, o, s) in enumerate(zip(tags, in_hw, out_hw, scales)):
                last = k == dims - 1
                y = g.output_of(layer, p) if last else f"{p}/{tag}"
                steps.append({"name": p if last else f"{p}/{tag}", "y": y, "x": x, "axis": 2 + k,
                              "index": g.const(f"{p}/{tag}.index",
                                               torch_nearest_indices(i, o, s), "int64")})
                x = y
            g.emit("gather_axes", steps=steps)
            return x
        if a["mode"] == "nearest":
            y = g.output_of(layer, p)
            g.emit("gather_nearest", name=p, y=y, x=x, h=helpers(p, "rows"),
                   rows=g.const(f"{p}/rows.index",
                                torch_nearest_indices(in_hw[0], out_hw[0], scales[0]), "int64"),
                   cols=g.const(f"{p}/cols.index",
                                torch_nearest_indices(in_hw[1], out_hw[1], scales[1]), "int64"))
            return y
        axes = []
        for k, (tag, i, o, s) in enumerate(zip(tags, in_hw, out_hw, scales)):
            ax = 2 + k
            i0, i1, w0, w1 = torch_linear_sampling(i, o, s, bool(a["align_corners"]))
            shape = (o, *(1,) * (dims - 1 - k))  # along axis ax of [N, C, *spatial]
            last = k == dims - 1
            y = g.output_of(layer, p) if last else f"{p}/{tag}"
            axes.append({"axis": ax, "x": x, "y": y, "name": p if last else f"{p}/{tag}",
                         "h": helpers(f"{p}/{tag}", "lo", "hi", "lo_w", "hi_w"),
                         "i0": g.const(f"{p}/{tag}.i0", i0, "int64"),
                         "i1": g.const(f"{p}/{tag}.i1", i1, "int64"),
                         "w0": g.const(f"{p}/{tag}.w0", w0, shape=shape),
                         "w1": g.const(f"{p}/{tag}.w1", w1, shape=shape)})
            x = y
        g.emit("gather_linear", axes=axes)
        return x

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

    def normalise(self, a: dict, x: Shape) -> None:
        dims = len(x) - 1
        if dims not in LINEAR_MODES:
            raise LayerError("E405", f"expects [C, L], [C, H, W] or [C, D, H, W] but "
                             f"receives {list(x)}", arg="scale_factor",
                             helps=["upsample before flatten()"])
        if a["mode"] != "nearest" and a["mode"] != LINEAR_MODES[dims]:
            raise LayerError(
                "E427", f"mode={a['mode']} does not fit a {dims}-D input: PyTorch "
                f"interpolates {list(x)} only with mode={LINEAR_MODES[dims]} or nearest",
                arg="mode", helps=[f"use mode={LINEAR_MODES[dims]} or nearest"])
        for name in ("size", "scale_factor"):  # one value for every axis, or one per axis
            v = a[name]
            if v is not None and len(v) == 1:
                a[name] = v * dims
            elif v is not None and len(v) != dims:
                raise LayerError(
                    "E427", f"{name} has {len(v)} values but the input {list(x)} has {dims} "
                    f"spatial axes", arg=name, helps=[f"give one value, or {dims}"])

    def output_shape(self, a: dict, x: Shape) -> Shape:
        if a["size"] is not None:
            return (x[0], *a["size"])
        out = tuple(shapes.upsample_out(s, f) for s, f in zip(spatial(x), a["scale_factor"]))
        if not all(holds(n >= 1) for n in out):
            raise LayerError("E402", f"scale_factor shrinks the map to {out}", arg="scale_factor")
        return (x[0], *out)

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf.scaled(tuple(o / i for o, i in zip(y[1:], x[1:])))


_TAGS = {1: ("cols",), 2: ("rows", "cols"), 3: ("planes", "rows", "cols")}  # helper names


# -- ONNX conversions only upsample uses -----------------------------------------------------

def torch_nearest_indices(n_in: int, n_out: int, scale: float | None) -> list[int]:
    """The source index of each output index in PyTorch's nearest upsampling (CPU), in its
    float32 arithmetic: min(floor(i * float32(1 / scale)), n_in - 1), with 1 / scale replaced
    by n_in / n_out when the size was given.

    >>> torch_nearest_indices(2, 82, None)[40:42]  # float32(2 / 82) * 41 lands below 1
    [0, 0]
    >>> torch_nearest_indices(5, 7, 1.5)
    [0, 0, 1, 2, 2, 3, 4]
    """
    np = require("numpy", "onnx", "ONNX export")
    if n_out == n_in:
        return list(range(n_out))
    if n_out == 2 * n_in:
        return [i >> 1 for i in range(n_out)]
    step = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * step).astype(np.int64)
    return [int(i) for i in np.minimum(idx, n_in - 1)]


def torch_linear_sampling(n_in: int, n_out: int, scale: float | None, align_corners: bool):
    """PyTorch's bilinear sampling along one axis (CPU, float32): per output index the two source
    indices and their weights, out = in[i0] * w0 + in[i1] * w1.

    >>> i0, i1, w0, w1 = torch_linear_sampling(2, 4, 2.0, False)
    >>> i0, i1, [float(w) for w in w1]
    ([0, 0, 0, 1], [1, 1, 1, 1], [0.0, 0.25, 0.75, 0.25])
    """
    np = require("numpy", "onnx", "ONNX export")
    f32 = np.float32
    if n_out == n_in:
        i = list(range(n_out))
        return i, i, np.ones(n_out, f32), np.zeros(n_out, f32)
    if align_corners:
        step = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
        src = step * np.arange(n_out, dtype=f32)
    else:
        step = f32(1.0 / scale) if scale else f32(n_in) / f32(n_out)
        src = step * (np.arange(n_out, dtype=f32) + f32(0.5)) - f32(0.5)
        src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    i1 = i0 + (i0 < n_in - 1)
    return [int(i) for i in i0], [int(i) for i in i1], (f32(1) - w1).astype(f32), w1


def upsample_plan(a: dict, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
    """"resize" where ONNX's Resize to the output size samples exactly PyTorch's source pixels,
    else "gather" (PyTorch's own sampling, precomputed).

    Resize derives its grid from the sizes (out / in); PyTorch from 1 / scale_factor when one
    was given, and for nearest it multiplies by a float32 reciprocal whose rounding can pick a
    different pixel than Resize's exact division (2 -> 82 pixels, index 41). So: bilinear uses
    Resize unless a fractional scale_factor sets a grid the sizes cannot; nearest uses it only
    for integral factors where PyTorch's indices are the exact ones.

    >>> upsample_plan({"mode": "nearest", "scale_factor": (2.0, 2.0), "align_corners": None},
    ...               (8, 8), (16, 16))
    'resize'
    >>> upsample_plan({"mode": "nearest", "scale_factor": (1.5, 1.5), "align_corners": None},
    ...               (5, 5), (7, 7))
    'gather'
    """
    scales = a["scale_factor"] or (None,) * len(in_hw)
    if a["mode"] != "nearest":  # linear, bilinear, trilinear
        if a["align_corners"]:  # PyTorch's grid is (in - 1) / (out - 1) whatever the scale
            return "resize"
        from fractions import Fraction  # here: ONNX lowering only, not `check`

        exact = all(s is None or Fraction(i) * Fraction(s) == o
                    for i, o, s in zip(in_hw, out_hw, scales))
        return "resize" if exact else "gather"
    for i, o, s in zip(in_hw, out_hw, scales):
        if o % i or torch_nearest_indices(i, o, s) != [j // (o // i) for j in range(o)]:
            return "gather"
    return "resize"


def resize_scales(a: dict, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether Resize can take the scale_factor itself rather than the output size: a
    scale_factor given, exact in float32 (Resize's scales are float32), with floor(in * scale)
    the output size, as PyTorch computes it for every input size.

    >>> resize_scales({"scale_factor": (2.0, 2.0)}, (8, 8), (16, 16))
    True
    >>> resize_scales({"scale_factor": (0.3, 0.3)}, (10, 10), (3, 3))  # 0.3 is no float32
    False
    """
    from fractions import Fraction  # here: ONNX lowering only, not `check`

    np = require("numpy", "onnx", "ONNX export")
    scales = a.get("scale_factor")
    if not scales:
        return False
    return all(Fraction(float(np.float32(s))) == Fraction(s) and math.floor(i * s) == o
               for s, i, o in zip(scales, in_hw, out_hw))


def resize_modes(a: dict) -> tuple[str, str]:
    """Resize's mode and coordinate_transformation_mode for PyTorch's upsample: nearest picks
    floor(i * in / out) ("asymmetric" with nearest_mode "floor"); bilinear samples pixel
    centres ("half_pixel", clamped at 0 as PyTorch does) or aligns the corner pixels.

    >>> resize_modes({"mode": "bilinear", "align_corners": None})
    ('linear', 'half_pixel')
    """
    if a["mode"] == "nearest":
        return "nearest", "asymmetric"
    return "linear", "align_corners" if a["align_corners"] else "half_pixel"

