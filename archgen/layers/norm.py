"""batchnorm2d."""

from __future__ import annotations

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
