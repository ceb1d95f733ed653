"""Element-wise activations and softmax: the shape passes through unchanged."""

from __future__ import annotations

from .base import LayerError, LayerKind, P, Shape, register


class _Activation(LayerKind):
    rank = None


def _activation(name: str, torch_class: str, doc: str, *params: P,
                positional: tuple[str, ...] = ()) -> None:
    cls = type(torch_class.split(".")[1], (_Activation,),
               {"name": name, "torch_class": torch_class, "doc": doc, "params": params,
                "positional_args": positional})
    register(cls)


_INPLACE = P("inplace", "bool", False)
_activation("relu", "nn.ReLU", "max(0, x)", _INPLACE)
_activation("relu6", "nn.ReLU6", "min(max(0, x), 6)", _INPLACE)
_activation("leaky_relu", "nn.LeakyReLU", "x if x > 0 else negative_slope * x",
            P("negative_slope", "float", 0.01), _INPLACE, positional=("negative_slope",))
_activation("elu", "nn.ELU", "x if x > 0 else alpha * (exp(x) - 1)",
            P("alpha", "float", 1.0), _INPLACE, positional=("alpha",))
_activation("gelu", "nn.GELU", "x * Phi(x), exact or with the tanh approximation",
            P("approximate", "enum", "none", choices=("none", "tanh")))
_activation("silu", "nn.SiLU", "x * sigmoid(x)", _INPLACE)
_activation("sigmoid", "nn.Sigmoid", "1 / (1 + exp(-x))")
_activation("tanh", "nn.Tanh", "tanh(x)")
_activation("hardswish", "nn.Hardswish", "x * relu6(x + 3) / 6", _INPLACE)


@register
class Softmax(_Activation):
    name = "softmax"
    torch_class = "nn.Softmax"
    doc = "softmax along dim (PyTorch counts the batch dimension: dim=1 is the channels)"
    params = (P("dim", "int", None),)
    positional_args = ("dim",)

    def normalise(self, a: dict, x: Shape) -> None:
        ndim = len(x) + 1
        if a["dim"] is None:  # PyTorch's implicit (deprecated) choice, made explicit
            a["dim"] = 0 if ndim in (0, 1, 3) else 1

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        ndim = len(x) + 1
        if not -ndim <= a["dim"] < ndim:
            return [LayerError("E301", f"dim={a['dim']} is out of range for an input of rank "
                               f"{ndim} (batch included): use {-ndim}..{ndim - 1}", arg="dim")]
        if a["dim"] % ndim == 0:
            return [LayerError("E301", "softmax over dim 0 mixes the samples of a batch",
                               arg="dim", helps=["use dim=1"])]
        return []
