"""dropout and dropout2d: identity in eval mode, no parameters."""

from __future__ import annotations

from math import prod

from .base import LayerError, LayerKind, Memory, P, Shape, Warn, Weightless, register
from .linear import identity_onnx


class _Dropout(Weightless, LayerKind):
    params = (P("p", "float", 0.5), P("inplace", "bool", False))
    positional_args = ("p",)

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        return identity_onnx(g, layer, x)  # dropout is the identity in eval mode

    def check_args(self, a: dict) -> None:
        if not 0.0 <= a["p"] <= 1.0:
            raise LayerError("E301", f"dropout probability has to be between 0 and 1, but "
                             f"got {a['p']}", arg="p")

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if a["p"] >= 0.9:
            return [Warn("W502", f"p={a['p']} zeroes {a['p']:.0%} of the activations",
                         arg="p", notes=["p is the probability of dropping, not of keeping"],
                         helps=[f"did you mean p={1 - a['p']:.2g}?"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """Training keeps the mask it multiplied by: dropout's is "mask" (CUDA's fused kernel
        keeps a bool per value, the CPU a float noise tensor), dropout2d's one float per
        channel. p=0 returns the input itself; p=1 multiplies by a scalar zero."""
        if a["p"] == 0.0:
            return Memory(aliases=True)
        if a["p"] == 1.0:
            return Memory(aliases=a["inplace"], eval_aliases=True)
        mask = (prod(x), "mask") if self.name == "dropout" else (x[0], "act")
        return Memory(aliases=a["inplace"], eval_aliases=True, extra=(mask,))


@register
class Dropout(_Dropout):
    name = "dropout"
    torch_class = "nn.Dropout"
    doc = "zeroes single activations with probability p during training"
    example = "dropout(0.5)"
    rank = None


@register
class Dropout2d(_Dropout):
    name = "dropout2d"
    torch_class = "nn.Dropout2d"
    doc = "zeroes whole channels with probability p during training"
    example = "dropout2d(0.2)"
