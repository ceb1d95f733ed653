"""Element-wise activations and softmax: the shape passes through unchanged."""

from __future__ import annotations

import math
from collections.abc import Callable
from math import prod

from .base import LayerError, LayerKind, Memory, P, Shape, Weightless, register


class _Activation(Weightless, LayerKind):
    rank = None
    torch_positional = 0  # leading arguments the PyTorch call writes without their names
    onnx_op: str | None = None  # a single ONNX node of that operator (unary.onnx.j2)

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, self.torch_positional, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        if self.onnx_op is None:
            raise NotImplementedError(f"{self.name} has no ONNX lowering")
        return g.one_node(layer, x, "unary", op=self.onnx_op)
    # what its backward formula reads (PyTorch's derivatives.yaml): the output for relu,
    # sigmoid, tanh, softmax and log_softmax, the input for the others (relu6 is hardtanh,
    # which reads its input, elu reads its input unless in place; hardsigmoid, mish and prelu
    # read theirs); in place, relu_, leaky_relu_ and elu_ read their result, the input's
    # storage; hardtanh_ (relu6_), hardsigmoid_, mish_, silu_ and hardswish_ keep a copy of
    # the input they overwrite (saved_tensors_hooks shows a new storage, torch 2.13)
    saves_output = True

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        if a.get("inplace"):
            if self.name in ("relu", "leaky_relu", "elu"):  # the input's storage
                return Memory(saves=("output",), aliases=True)
            # an in-place op whose gradient needs the input keeps a copy of it first
            return Memory(aliases=True, extra=((prod(x), "act"),))
        return Memory(saves=("output",) if self.saves_output else ("input",))


def _activation(name: str, torch_class: str, doc: str, *params: P, example: str,
                positional: tuple[str, ...] = (), saves_output: bool = False,
                onnx: str | Callable | None = None, torch_positional: int = 0) -> None:
    """Register an activation; `onnx` is its ONNX operator (one node) or its lowering."""
    attrs = {"name": name, "torch_class": torch_class, "doc": doc, "params": params,
             "positional_args": positional, "saves_output": saves_output,
             "torch_positional": torch_positional, "example": example}
    if callable(onnx):
        attrs["lower_onnx"] = onnx
    else:
        attrs["onnx_op"] = onnx
    register(type(torch_class.split(".")[1], (_Activation,), attrs))


def _relu6(self, g, layer, x: str) -> str:
    return g.one_node(layer, x, "clip", min=g.const(f"{layer.path}/min", 0.0),
                      max=g.const(f"{layer.path}/max", 6.0))


def _leaky_relu(self, g, layer, x: str) -> str:
    return g.one_node(layer, x, "leaky_relu", alpha=layer.args["negative_slope"])


def _elu(self, g, layer, x: str) -> str:
    return g.one_node(layer, x, "elu", alpha=layer.args["alpha"])


def _gelu(self, g, layer, x: str) -> str:
    from ..onnx_graph import helpers
    approximate = layer.args["approximate"]
    y = g.output_of(layer, layer.path)
    p = layer.path
    if g.opset >= 20:
        g.emit("gelu", name=p, y=y, x=x, approximate=approximate)
    elif approximate == "tanh":
        g.emit("gelu_tanh", name=p, y=y, x=x,
               h=helpers(p, "square", "cube", "cube_term", "inner", "scaled", "tanh",
                          "plus_one", "half_x"),
               coeff=g.const(f"{p}/coeff", 0.044715),
               sqrt_2_over_pi=g.const(f"{p}/sqrt_2_over_pi", math.sqrt(2 / math.pi)),
               one=g.const(f"{p}/one", 1.0), half=g.const(f"{p}/half", 0.5))
    else:
        g.emit("gelu_erf", name=p, y=y, x=x, h=helpers(p, "scaled", "erf", "plus_one", "half_x"),
               sqrt2=g.const(f"{p}/sqrt2", math.sqrt(2)), one=g.const(f"{p}/one", 1.0),
               half=g.const(f"{p}/half", 0.5))
    return y


def _silu(self, g, layer, x: str) -> str:
    from ..onnx_graph import helpers
    return g.one_node(layer, x, "silu", h=helpers(layer.path, "sigmoid"))


_INPLACE = P("inplace", "bool", False)
_activation("relu", "nn.ReLU", "max(0, x)", _INPLACE, saves_output=True, onnx="Relu",
            example="relu(inplace=true)")
_activation("relu6", "nn.ReLU6", "min(max(0, x), 6)", _INPLACE, onnx=_relu6,
            example="relu6()")
_activation("leaky_relu", "nn.LeakyReLU", "x if x > 0 else negative_slope * x",
            P("negative_slope", "float", 0.01), _INPLACE, positional=("negative_slope",),
            onnx=_leaky_relu, example="leaky_relu(0.2)", torch_positional=1)
_activation("elu", "nn.ELU", "x if x > 0 else alpha * (exp(x) - 1)",
            P("alpha", "float", 1.0), _INPLACE, positional=("alpha",), onnx=_elu,
            example="elu(0.5)")
_activation("gelu", "nn.GELU", "x * Phi(x), exact or with the tanh approximation",
            P("approximate", "enum", "none", choices=("none", "tanh")), onnx=_gelu,
            example="gelu(approximate=tanh)")
_activation("silu", "nn.SiLU", "x * sigmoid(x)", _INPLACE, onnx=_silu, example="silu()")
_activation("sigmoid", "nn.Sigmoid", "1 / (1 + exp(-x))", saves_output=True, onnx="Sigmoid",
            example="sigmoid()")
_activation("tanh", "nn.Tanh", "tanh(x)", saves_output=True, onnx="Tanh", example="tanh()")
_activation("hardswish", "nn.Hardswish", "x * relu6(x + 3) / 6", _INPLACE, onnx="HardSwish",
            example="hardswish()")


@register
class Softmax(_Activation):
    name = "softmax"
    torch_class = "nn.Softmax"
    doc = "softmax along dim (PyTorch counts the batch dimension: dim=1 is the channels)"
    params = (P("dim", "int", None),)
    positional_args = ("dim",)
    torch_positional = 0  # nn.Softmax(dim=1), as PyTorch's docs write it
    example = "softmax(dim=1)"

    def lower_onnx(self, g, layer, x: str) -> str:
        return g.one_node(layer, x, "softmax", axis=layer.args["dim"])

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
