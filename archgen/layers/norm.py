"""batchnorm2d."""

from __future__ import annotations

from .base import LayerError, LayerKind, P, Shape, check_inferred, register


@register
class BatchNorm2d(LayerKind):
    name = "batchnorm2d"
    torch_class = "nn.BatchNorm2d"
    doc = "batch normalisation over the channels of a feature map"
    params = (
        P("num_features", "int", None, inferred=True),
        P("eps", "float", 1e-5),
        P("momentum", "float", 0.1),
        P("affine", "bool", True),
        P("track_running_stats", "bool", True),
    )

    def normalise(self, a: dict, x: Shape) -> None:
        check_inferred(a, "num_features", x[0], "channels")
        if a["eps"] <= 0:
            raise LayerError("E301", f"eps must be positive, received {a['eps']}", arg="eps")

    def param_count(self, a: dict) -> int:
        return 2 * a["num_features"] if a["affine"] else 0
