"""batchnorm1d, batchnorm2d, batchnorm3d: one class registered once per spatial rank."""

from __future__ import annotations

from math import prod

from .base import LayerError, LayerKind, Memory, P, Shape, Warn, register

# -- shared by the normalisation kinds (batchnorm here, the others in normalization.py) --------

def affine_entries(shape: tuple, weight: bool, bias: bool) -> list[tuple]:
    """The affine weight (and bias) of a norm layer, as PyTorch names and shapes them."""
    out = [("weight", shape, ("uniform", 0.5, 1.5))] if weight else []
    if weight and bias:
        out.append(("bias", shape, ("uniform", -0.5, 0.5)))
    return out


def running_stats_entries(c: int) -> list[tuple]:
    """The buffers of a norm layer that tracks running statistics over c channels."""
    return [("running_mean", (c,), ("uniform", -0.5, 0.5)),
            ("running_var", (c,), ("uniform", 0.5, 2.0)),
            ("num_batches_tracked", (), ("count",))]


def affine_onnx(g, layer) -> tuple[str, str]:
    """The scale and shift inputs of an ONNX normalisation node over num_features channels:
    the layer's affine weight and bias, or ones and zeros without affine."""
    c = layer.args["num_features"]
    if layer.args["affine"]:
        return g.weight(layer, "weight"), g.weight(layer, "bias")
    return (g.const(f"{layer.path}/scale.ones", [1.0] * c),
            g.const(f"{layer.path}/shift.zeros", [0.0] * c))


def check_eps(a: dict) -> None:
    if a["eps"] < 0:  # PyTorch takes it and gives NaN; archgen refuses it
        raise LayerError("E301", f"eps must be non-negative, received {a['eps']}", arg="eps")


class BatchNormNd(LayerKind):
    """Batch normalisation over the channels of [C, *spatial] (`dims` spatial axes);
    batchnorm1d also takes flat features [F], as nn.BatchNorm1d does."""

    dims: int = 2
    params = (
        P("num_features", "int", None, inferred=True),
        P("eps", "float", 1e-5),
        P("momentum", "float_or_none", 0.1),
        P("affine", "bool", True),
        P("track_running_stats", "bool", True),
    )
    sum_in_place = True

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import helpers
        a = layer.args
        scale, shift = affine_onnx(g, layer)
        y = g.output_of(layer, layer.path)
        if a["track_running_stats"]:
            g.emit("batchnorm", name=layer.path, y=y, x=x, scale=scale, shift=shift,
                   mean=g.weight(layer, "running_mean"), var=g.weight(layer, "running_var"),
                   epsilon=a["eps"])
        else:
            g.emit("batchnorm_batch_stats", name=layer.path, y=y, x=x, scale=scale, shift=shift,
                   h=helpers(layer.path, "mean", "centred", "square", "var", "var_eps", "std",
                              "normed", "scale", "shift", "scaled"),
                   axes=g.const(f"{layer.path}/axes",
                                [0, *range(2, len(layer.in_shape) + 1)], "int64"),
                   # (C,) against [N, C, *spatial]: [C, 1, ...]; against flat [N, F]: [1, F]
                   channel_axes=g.const(f"{layer.path}/channel_axes",
                                        list(range(1, len(layer.in_shape))) or [0], "int64"),
                   epsilon=g.const(f"{layer.path}/eps", a["eps"]))
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        c = a["num_features"]
        return (affine_entries((c,), a["affine"], True)
                + (running_stats_entries(c) if a["track_running_stats"] else []))

    def check_args(self, a: dict) -> None:
        check_eps(a)

    def normalise(self, a: dict, x: Shape) -> None:
        if self.rank is None and len(x) not in (1, 2):  # batchnorm1d: [C, L] or [F]
            raise LayerError("E405", f"expects [C, L] or flat features [F] but "
                             f"receives {list(x)}", arg="num_features",
                             helps=[f"use batchnorm{len(x) - 1}d for this input"
                                    if len(x) in (3, 4) else "reshape the input first"])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if not a["track_running_stats"] and prod(x[1:]) == 1:
            where = "1x1 map" if len(x) == 3 else (
                "single position" if len(x) > 1 else "flat input")
            return [Warn(
                "W505", "track_running_stats=false normalises with the batch's own "
                f"statistics, even in eval mode; on a {where} a batch of 1 has one value per "
                "channel, which PyTorch refuses", arg="track_running_stats",
                helps=["keep running statistics, or normalise before the map shrinks to 1x1"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """Training: the input, the batch's mean and inverse std (float32, one per channel)
        and the running statistics (buffers, not parameters)."""
        c = a["num_features"]
        fixed = ((2 * c, 4),) + (((2 * c, "param"),) if a["track_running_stats"] else ())
        return Memory(saves=("input",), fixed=fixed)

    def param_count(self, a: dict) -> int:
        return 2 * a["num_features"] if a["affine"] else 0


def _register(dims: int, example: str) -> None:
    register(type(f"BatchNorm{dims}d", (BatchNormNd,), {
        "name": f"batchnorm{dims}d", "torch_class": f"nn.BatchNorm{dims}d",
        "doc": "batch normalisation over the channels of " + (
            "a feature map" if dims == 2 else "[C, L] or flat features [F]" if dims == 1
            else "a volume [C, D, H, W]"),
        "dims": dims, "rank": None if dims == 1 else dims + 1, "example": example,
        "fold_role": "batchnorm"}))


_register(1, "batchnorm1d(momentum=0.2)")
_register(2, "batchnorm2d(eps=0.001)")
_register(3, "batchnorm3d(affine=false)")
