"""hardsigmoid, hardtanh, mish, prelu and log_softmax: PyTorch's activations beyond the first
set (activation.py), with PyTorch's names, argument order and defaults.

What autograd keeps (torch 2.13, seen through saved_tensors_hooks; tests/test_vocab_act_
channels.py measures each): hardsigmoid, hardtanh, mish and prelu read their input in backward,
log_softmax its output; in place, hardsigmoid_, hardtanh_ and mish_ keep a copy of the input
they overwrite (a new storage, as hardswish_ does), which `_Activation.memory` already says for
every in-place kind but relu_, leaky_relu_ and elu_. MACs are 0, as for every activation.
"""

from __future__ import annotations

from ..symbolic import holds
from .activation import _INPLACE, Softmax, _Activation
from .base import LayerError, Memory, P, Shape, register


@register
class Hardsigmoid(_Activation):
    saves_output = False  # backward reads the input
    name = "hardsigmoid"
    torch_class = "nn.Hardsigmoid"
    doc = "relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between"
    params = (_INPLACE,)
    example = "hardsigmoid()"

    def lower_onnx(self, g, layer, x: str) -> str:
        # ONNX's max(0, min(1, alpha * x + beta)) with PyTorch's slope and offset
        return g.one_node(layer, x, "hard_sigmoid", alpha=1 / 6, beta=0.5)


@register
class Hardtanh(_Activation):
    saves_output = False  # backward reads the input
    name = "hardtanh"
    torch_class = "nn.Hardtanh"
    doc = "x clipped to [min_val, max_val]"
    params = (P("min_val", "float", -1.0), P("max_val", "float", 1.0), _INPLACE)
    positional_args = ("min_val", "max_val")
    torch_positional = 2
    example = "hardtanh(0.0, 6.0)"

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        return g.one_node(layer, x, "clip", min=g.const(f"{layer.path}/min", a["min_val"]),
                          max=g.const(f"{layer.path}/max", a["max_val"]))

    def check_args(self, a: dict) -> None:
        if a["max_val"] <= a["min_val"]:  # nn.Hardtanh's own rule and wording
            raise LayerError("E301", f"max_val ({a['max_val']}) must be greater than "
                             f"min_val ({a['min_val']})", arg="max_val",
                             helps=["swap them: hardtanh(min_val, max_val)"])


@register
class Mish(_Activation):
    saves_output = False  # backward reads the input
    name = "mish"
    torch_class = "nn.Mish"
    doc = "x * tanh(softplus(x))"
    params = (_INPLACE,)
    example = "mish()"
    onnx_op = "Mish"  # opset 18 on; ONNX Runtime's agrees with PyTorch's to a few ulps


@register
class PReLU(_Activation):
    name = "prelu"
    torch_class = "nn.PReLU"
    doc = ("x if x > 0 else weight * x, with a learnt slope: one for every channel "
           "(num_parameters = channels) or one shared (num_parameters=1)")
    params = (P("num_parameters", "int", 1), P("init", "float", 0.25))
    positional_args = ("num_parameters",)
    torch_positional = 1
    example = "prelu(4)"

    def weight_entries(self, a: dict) -> list[tuple]:
        return [("weight", (a["num_parameters"],), ("uniform", -0.5, 0.5))]

    def lower_onnx(self, g, layer, x: str) -> str:
        """ONNX broadcasts the slope from the last axis: one slope per channel of [C, *]
        becomes [C, 1, ...]; a shared slope, or one per feature of [F], broadcasts as it is."""
        from ..onnx_graph import helpers
        n, shape = layer.args["num_parameters"], layer.in_shape
        weight = g.weight(layer, "weight")
        if n == 1 or len(shape) == 1:
            return g.one_node(layer, x, "prelu_shared", weight=weight)
        slope_shape = g.const(f"{layer.path}/slope_shape", [n] + [1] * (len(shape) - 1),
                              "int64")
        return g.one_node(layer, x, "prelu", weight=weight, slope_shape=slope_shape,
                          h=helpers(layer.path, "slope"))

    def check_args(self, a: dict) -> None:
        if a["num_parameters"] < 1:
            raise LayerError("E301", f"num_parameters must be positive, received "
                             f"{a['num_parameters']}", arg="num_parameters",
                             helps=["use 1 (one slope shared) or the number of channels"])

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        n, c = a["num_parameters"], x[0]
        if n == 1 or holds(c == n):
            return []
        return [LayerError("E440", f"num_parameters must be 1 or the number of input "
                           f"channels. Received: num_parameters={n}, channels={c}",
                           arg="num_parameters",
                           helps=[f"use prelu({c}) for a slope per channel or prelu() for "
                                  f"one shared slope"])]

    def param_count(self, a: dict) -> int:
        return a["num_parameters"]

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",))  # and the weight, a parameter


@register
class LogSoftmax(Softmax):
    name = "log_softmax"
    torch_class = "nn.LogSoftmax"
    doc = ("log(softmax(x)) along dim, computed stably (PyTorch counts the batch dimension: "
           "dim=1 is the channels)")
    example = "log_softmax(dim=1)"

    def lower_onnx(self, g, layer, x: str) -> str:
        return g.one_node(layer, x, "log_softmax", axis=layer.args["dim"])

