"""batchnorm2d."""

from __future__ import annotations

from ..onnx_graph import helpers
from ..torch_calls import torch_call
from .base import LayerError, LayerKind, Memory, P, Shape, Warn, register


@register
class BatchNorm2d(LayerKind):
    name = "batchnorm2d"
    torch_class = "nn.BatchNorm2d"
    doc = "batch normalisation over the channels of a feature map"
    params = (
        P("num_features", "int", None, inferred=True),
        P("eps", "float", 1e-5),
        P("momentum", "float_or_none", 0.1),
        P("affine", "bool", True),
        P("track_running_stats", "bool", True),
    )
    example = "batchnorm2d(eps=0.001)"
    sum_in_place = True
    fold_role = "batchnorm"

    def lower_torch(self, layer, exprs=None):
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        c = a["num_features"]
        if a["affine"]:
            scale, shift = g.weight(layer, "weight"), g.weight(layer, "bias")
        else:
            scale = g.const(f"{layer.path}/scale.ones", [1.0] * c)
            shift = g.const(f"{layer.path}/shift.zeros", [0.0] * c)
        y = g.output_of(layer, layer.path)
        if a["track_running_stats"]:
            g.emit("batchnorm", name=layer.path, y=y, x=x, scale=scale, shift=shift,
                   mean=g.weight(layer, "running_mean"), var=g.weight(layer, "running_var"),
                   epsilon=a["eps"])
        else:
            g.emit("batchnorm_batch_stats", name=layer.path, y=y, x=x, scale=scale, shift=shift,
                   h=helpers(layer.path, "mean", "centred", "square", "var", "var_eps", "std",
                              "normed", "scale", "shift", "scaled"),
                   axes=g.const(f"{layer.path}/axes", [0, 2, 3], "int64"),
                   channel_axes=g.const(f"{layer.path}/channel_axes", [1, 2], "int64"),
                   epsilon=g.const(f"{layer.path}/eps", a["eps"]))
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        c = a["num_features"]
        out = []
        if a["affine"]:
            out += [("weight", (c,), ("uniform", 0.5, 1.5)),
                    ("bias", (c,), ("uniform", -0.5, 0.5))]
        if a["track_running_stats"]:
            out += [("running_mean", (c,), ("uniform", -0.5, 0.5)),
                    ("running_var", (c,), ("uniform", 0.5, 2.0)),
                    ("num_batches_tracked", (), ("count",))]
        return out

    def check_args(self, a: dict) -> None:
        if a["eps"] < 0:
            raise LayerError("E301", f"eps must be non-negative, received {a['eps']}",
                             arg="eps")

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if not a["track_running_stats"] and x[1] * x[2] == 1:
            return [Warn(
                "W505", "track_running_stats=false normalises with the batch's own "
                "statistics, even in eval mode; on a 1x1 map a batch of 1 has one value per "
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
