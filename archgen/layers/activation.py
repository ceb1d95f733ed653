"""Element-wise activations and softmax: the shape passes through unchanged."""

from __future__ import annotations

from math import prod

from .base import LayerError, LayerKind, Memory, P, Shape, register


class _Activation(LayerKind):
    rank = None
    # what its backward formula reads (PyTorch's derivatives.yaml): the output for relu,
    # sigmoid, tanh and softmax, the input for the others (relu6 is hardtanh, which reads its
    # input, elu reads its input unless in place); in place, relu_, leaky_relu_ and elu_
    # read their result, the input's storage; hardtanh_ (relu6_), silu_ and hardswish_ keep a
    # copy of the input they overwrite (saved_tensors_hooks shows a new storage, torch 2.13)
    saves_output = True

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        if a.get("inplace"):
            if self.name in ("relu", "leaky_relu", "elu"):  # the input's storage
                return Memory(saves=("output",), aliases=True)
            # an in-place op whose gradient needs the input keeps a copy of it first
            return Memory(aliases=True, extra=((prod(x), "act"),))
        return Memory(saves=("output",) if self.saves_output else ("input",))


def _activation(name: str, torch_class: str, doc: str, *params: P,
                positional: tuple[str, ...] = (), saves_output: bool = False) -> None:
    cls = type(torch_class.split(".")[1], (_Activation,),
               {"name": name, "torch_class": torch_class, "doc": doc, "params": params,
                "positional_args": positional, "saves_output": saves_output})
    register(cls)


_INPLACE = P("inplace", "bool", False)
_activation("relu", "nn.ReLU", "max(0, x)", _INPLACE, saves_output=True)
_activation("relu6", "nn.ReLU6", "min(max(0, x), 6)", _INPLACE)
_activation("leaky_relu", "nn.LeakyReLU", "x if x > 0 else negative_slope * x",
            P("negative_slope", "float", 0.01), _INPLACE, positional=("negative_slope",))
_activation("elu", "nn.ELU", "x if x > 0 else alpha * (exp(x) - 1)",
            P("alpha", "float", 1.0), _INPLACE, positional=("alpha",))
_activation("gelu", "nn.GELU", "x * Phi(x), exact or with the tanh approximation",
            P("approximate", "enum", "none", choices=("none", "tanh")))
_activation("silu", "nn.SiLU", "x * sigmoid(x)", _INPLACE)
_activation("sigmoid", "nn.Sigmoid", "1 / (1 + exp(-x))", saves_output=True)
_activation("tanh", "nn.Tanh", "tanh(x)", saves_output=True)
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
