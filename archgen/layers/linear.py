"""flatten, linear, identity."""

from __future__ import annotations

from math import prod

from .base import (RF, LayerError, LayerKind, Memory, P, Shape, Warn, Weightless, positive,
                   register)


@register
class Flatten(Weightless, LayerKind):
    name = "flatten"
    torch_class = "nn.Flatten"
    doc = "flattens dims start_dim..end_dim (PyTorch counts the batch as dim 0)"
    rank = None
    params = (P("start_dim", "int", 1), P("end_dim", "int", -1))
    positional_args = ("start_dim", "end_dim")
    shape_args = ("start_dim", "end_dim")
    example = "flatten()"
    channels_rule = "unknown"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 0, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        start, end = layer.args["dims"]
        y = g.output_of(layer, layer.path)
        if start == 0 and end == len(layer.in_shape) - 1:
            g.emit("flatten", name=layer.path, y=y, x=x)
        else:  # Flatten always makes a matrix; Reshape keeps the other axes (0 copies the batch)
            g.emit("reshape", name=layer.path, y=y, x=x,
                   shape=g.const(f"{layer.path}/shape", [0, *layer.out_shape], "int64"))
        return y

    def normalise(self, a: dict, x: Shape) -> None:
        ndim = len(x) + 1
        for name in ("start_dim", "end_dim"):
            if not -ndim <= a[name] < ndim:
                raise LayerError("E301", f"{name}={a[name]} is out of range for an input of "
                                 f"rank {ndim} (batch included)", arg=name)
        start, end = a["start_dim"] % ndim, a["end_dim"] % ndim
        if start == 0:
            raise LayerError("E301", "flatten(start_dim=0) would merge the batch dimension",
                             arg="start_dim", helps=["use the default start_dim=1"])
        if start > end:
            raise LayerError("E301", f"flatten start_dim ({start}) is after end_dim ({end})",
                             arg="start_dim")
        a["dims"] = (start - 1, end - 1)  # without the batch dimension

    def output_shape(self, a: dict, x: Shape) -> Shape:
        s, e = a["dims"]
        return (*x[:s], prod(x[s:e + 1]), *x[e + 1:])

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        # the flat vector as a whole sees the whole map it came from
        return rf.whole(x[1:]) if len(x) == 3 and len(y) < 3 else rf

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(aliases=True)  # a view


@register
class Linear(LayerKind):
    name = "linear"
    torch_class = "nn.Linear"
    doc = ("fully connected layer on the last dimension of its input (flat features, or a "
           "map's channels after permute(1, 2, 0))")
    rank = None  # any input: it acts on the last dimension, as nn.Linear does
    inferred_dim = -1  # in_features is the input's last dimension
    params = (P("in_features", "int", None, inferred=True), P("out_features", "int"),
              P("bias", "bool", True))
    positional_args = ("out_features",)
    shape_args = ("out_features",)
    example = "linear(10)"
    sum_in_place = True
    channels_rule = "out_features"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import helpers
        weight = g.weight(layer, "weight")
        bias = g.weight(layer, "bias") if layer.args["bias"] else None
        y = g.output_of(layer, layer.path)
        if len(layer.in_shape) == 1:  # [N, F]: one Gemm
            g.emit("gemm", name=layer.path, y=y, inputs=[x, weight] + ([bias] if bias else []))
        else:  # the last dim of [N, ..., F]: MatMul broadcasts over the leading dims
            g.emit("matmul", name=layer.path, y=y, x=x, weight=weight, bias=bias,
                   h=helpers(layer.path, "weight_t", "matmul"))
        return y

    def weight_entries(self, a: dict) -> list[tuple]:
        out = [("weight", (a["out_features"], a["in_features"]), ("he", a["in_features"]))]
        if a["bias"]:
            out.append(("bias", (a["out_features"],), ("bias", a["in_features"])))
        return out

    def check_args(self, a: dict) -> None:
        positive(a, "out_features")

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return (*x[:-1], a["out_features"])

    def param_count(self, a: dict) -> int:
        return a["in_features"] * a["out_features"] + (a["out_features"] if a["bias"] else 0)

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        # once per position of the leading dims (torchvision counts ConvNeXt's so)
        return prod(x[:-1]) * a["in_features"] * a["out_features"]

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if len(x) >= 2 and x[-1] == 1:
            shown = ", ".join(map(str, x))
            return [Warn(
                "W507", f"acts on the last dimension of its input, of size 1 in "
                f"[{shown}]: each output mixes a single value", arg=None,
                notes=[f"on a map, linear leaves the other dimensions as they are: the "
                       f"output is [{', '.join(map(str, y))}]"],
                helps=[f"add flatten() before it (it would give {'*'.join(map(str, x))} = "
                       f"{prod(x)} features), or permute the features last"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",))  # and the weight, a parameter



@register
class Identity(Weightless, LayerKind):
    name = "identity"
    torch_class = "nn.Identity"
    doc = "passes its input through (an empty branch)"
    rank = None
    params = ()
    example = "identity()"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 0, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        return identity_onnx(g, layer, x)

    def torch_forward(self, module: str, x: str):
        """The value itself: forward does not call the module (torchvision's `out +=
        identity`), which costs a module call and computes nothing; the attribute stays, so
        that `if self.identity is not None:` tells the structures of a block apart."""
        return x

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(aliases=True)


def identity_onnx(g, layer, x: str) -> str:
    """An Identity node keeps a layer that computes nothing in eval mode (identity, dropout)
    visible and named, unless the graph is folded: then only the network's output needs one,
    for its name."""
    if g.fold and layer is not g.final:
        return x
    return g.one_node(layer, x, "unary", op="Identity")
