"""permute, layer_scale, stochastic_depth: the tensor-layout and residual-scaling pieces of
ConvNeXt-style blocks (torchvision's CNBlock: permute, layernorm, linear, permute,
layer_scale, stochastic_depth).

Counting conventions: MACs are 0 (elementwise or no arithmetic; archgen counts conv and linear
multiply-accumulates only, as torch.utils.flop_counter does). The receptive field is
unchanged: each value sees what it saw. A permute only moves values; the field keeps
describing the spatial axes of the input, so a layer that acts on the last dimension after
`permute(1, 2, 0)` (linear, layernorm: the channels there) leaves it as it is.
"""

from __future__ import annotations

from typing import ClassVar

from ..helper import Helper
from .base import LayerError, LayerKind, Memory, P, Shape, Warn, Weightless, register
from .linear import identity_onnx


@register
class Permute(Weightless, LayerKind):
    """x.permute(0, *[d + 1 for d in dims]): dims are written WITHOUT the batch dimension,
    so permute(1, 2, 0) turns [C, H, W] into [H, W, C]."""

    name = "permute"
    torch_class = "Permute"  # torchvision.ops.misc.Permute, as the generated file writes it
    torch_helpers: ClassVar[dict] = {"Permute": Helper("permute.py.j2", (), "nn.Module", ("torch.permute",))}
    doc = "reorders the dimensions (dims without the batch: permute(1, 2, 0) is NCHW -> NHWC)"
    rank = None
    params = (P("dims", "ints"),)
    positional_args = ("dims",)
    shape_args = ("dims",)
    variadic = "dims"  # permute(1, 2, 0) packs its positional values into dims, as Tensor.permute
    example = "permute(1, 2, 0)"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import Call, Item
        dims = ", ".join(str(int(d)) for d in batch_dims(layer.args["dims"]))
        return Call(self.torch_class, [Item(f"[{dims}]")])  # torchvision's Permute([0, 2, 3, 1])

    def lower_onnx(self, g, layer, x: str) -> str:
        return g.one_node(layer, x, "transpose", perm=batch_dims(layer.args["dims"]))

    def normalise(self, a: dict, x: Shape) -> None:
        a["dims"] = permutation(a["dims"], len(x))

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return tuple(x[d] for d in a["dims"])

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(aliases=True)  # a view


def batch_dims(dims: tuple[int, ...]) -> tuple[int, ...]:
    """Normalised dims as PyTorch's permute takes them, the batch first.

    >>> batch_dims((1, 2, 0))
    (0, 2, 3, 1)
    """
    return (0, *(d + 1 for d in dims))


def permutation(dims: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """`dims` (without the batch) as non-negative indices, or LayerError (E433) when they are
    not a permutation of 0..rank-1. Negative dims count from the end, as in PyTorch.

    >>> permutation((1, 2, 0), 3)
    (1, 2, 0)
    >>> permutation((-1, 0), 2)
    (1, 0)
    """
    shown = ", ".join(map(str, dims))
    if len(dims) == rank + 1 and sorted(dims) == list(range(rank + 1)) and dims[0] == 0:
        fixed = ", ".join(str(d - 1) for d in dims[1:])
        raise LayerError("E433", f"dims ({shown}) are {rank + 1} for an input of rank {rank}: dims "
                         f"leave the batch dimension out", arg="dims",
                         helps=[f"write permute({fixed}): it is x.permute({shown})"])
    if len(dims) != rank:
        raise LayerError("E433", f"dims ({shown}) are {len(dims)} for an input of rank {rank} "
                         f"(batch excluded): they must name each of 0..{rank - 1} once", arg="dims")
    out = []
    for d in dims:
        if not -rank <= d < rank:
            raise LayerError("E433", f"Dimension out of range (expected to be in range of "
                             f"[{-rank}, {rank - 1}], but got {d}); the batch dimension is "
                             f"left out of dims", arg="dims")
        out.append(d % rank)
    if len(set(out)) != rank:
        twice = next(d for d in out if out.count(d) > 1)
        raise LayerError("E433", f"duplicate dims are not allowed: dimension {twice} appears "
                         f"twice in ({shown})", arg="dims",
                         helps=[f"dims must be an ordering of 0..{rank - 1}"])
    return tuple(out)


@register
class LayerScale(LayerKind):
    """torchvision ConvNeXt's layer scale: `self.layer_scale = nn.Parameter(torch.ones(dim, 1,
    1) * layer_scale)` on the ENCLOSING module, forward `self.layer_scale * x`. The parameter
    has one value per channel, shaped to broadcast over the rest: [C, 1, 1] on [C, H, W],
    [C, 1] on [C, L], [C] on [F]. Its state_dict key is the layer's own path
    (features.1.0.layer_scale), not path.weight."""

    name = "layer_scale"
    torch_class = "nn.Parameter"
    sum_in_place = True  # a new tensor, which autograd does not keep: torchvision's result +=
    doc = "multiplies each channel by a learnt scale, initialised to init (ConvNeXt)"
    rank = None
    # dim, as torchvision's CNBlock(dim, layer_scale) names it: the channels, inferred
    params = (P("dim", "int", None, inferred=True), P("init", "float"))
    positional_args = ("init",)
    example = "layer_scale(1e-06)"
    parameter = True  # a parameter of the enclosing module, not a module of its own

    def lower_torch(self, layer, exprs=None):
        """nn.Parameter(torch.ones(dim, 1, 1) * init), as torchvision's CNBlock writes it."""
        from ..torch_calls import Call, Item, arg_item
        dims = [arg_item(layer, "dim", exprs).expr] + ["1"] * (len(layer.in_shape) - 1)
        init = arg_item(layer, "init", exprs).expr
        if not (init.isidentifier() or _number(init)):  # a block's expression: ls + 1
            init = f"({init})"
        return Call(self.torch_class, [Item(f"torch.ones({', '.join(dims)}) * {init}")])

    def torch_forward(self, module: str, x: str):
        return f"{module} * {x}"

    @property
    def torch_classes(self) -> tuple[str, ...]:
        return ("nn.Parameter", "torch.ones")

    def lower_onnx(self, g, layer, x: str) -> str:
        return g.one_node(layer, x, "layer_scale", scale=g.weight(layer, None))

    def weight_entries(self, a: dict) -> list[tuple]:
        # its key is the layer's own path (features.1.0.layer_scale): role None
        return [(None, a["shape"], ("uniform", 0.5, 1.5))]

    def param_count(self, a: dict) -> int:
        return a["dim"]

    def normalise(self, a: dict, x: Shape) -> None:
        a["shape"] = scale_shape(x)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # the product keeps x for the parameter's gradient (and the parameter itself)
        return Memory(saves=("input",))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def scale_shape(x: Shape) -> tuple[int, ...]:
    """The layer-scale parameter's shape for an input shape (batch excluded).

    >>> scale_shape((96, 56, 56))
    (96, 1, 1)
    >>> scale_shape((10,))
    (10,)
    """
    return (x[0],) + (1,) * (len(x) - 1)


@register
class StochasticDepth(Weightless, LayerKind):
    """torchvision.ops.StochasticDepth: in training, zeroes the whole residual branch of a
    sample (mode="row") or of the batch (mode="batch") with probability p, scaling what it
    keeps by 1/(1-p); the identity in eval mode."""

    name = "stochastic_depth"
    torch_class = "StochasticDepth"  # torchvision.ops.StochasticDepth, in the generated file
    torch_helpers: ClassVar[dict] = {"StochasticDepth": Helper("stochastic_depth.py.j2", (), "nn.Module",
                                               ("torch.empty", "str"))}
    doc = "drops a residual branch per sample (row) or per batch with probability p"
    rank = None
    params = (P("p", "float"), P("mode", "enum", choices=("row", "batch")))
    positional_args = ("p", "mode")
    example = "stochastic_depth(0.1, row)"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 2, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        return identity_onnx(g, layer, x)  # the identity in eval mode

    def check_args(self, a: dict) -> None:
        if not 0.0 <= a["p"] <= 1.0:
            raise LayerError("E301", f"drop probability has to be between 0 and 1, but got "
                             f"{a['p']}", arg="p")

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if a["p"] >= 0.9:
            return [Warn("W502", f"p={a['p']} drops the branch in {a['p']:.0%} of the "
                         f"training steps", arg="p",
                         notes=["p is the probability of dropping, not of keeping"],
                         helps=[f"did you mean p={1 - a['p']:.2g}?"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """Training keeps the noise it multiplied by: one value per sample (row) or one for
        the batch; p=0 returns the input itself, as eval mode does."""
        if a["p"] == 0.0:
            return Memory(aliases=True)
        if a["mode"] == "row":
            return Memory(eval_aliases=True, extra=((1, "act"),))
        return Memory(eval_aliases=True, fixed=((1, "act"),))


KINDS = (Permute, LayerScale, StochasticDepth)
