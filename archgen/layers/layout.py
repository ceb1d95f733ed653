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

from .base import LayerError, LayerKind, Memory, P, Shape, Warn


class Permute(LayerKind):
    """x.permute(0, *[d + 1 for d in dims]): dims are written WITHOUT the batch dimension,
    so permute(1, 2, 0) turns [C, H, W] into [H, W, C]."""

    name = "permute"
    torch_class = "Permute"
    doc = "reorders the dimensions (dims without the batch: permute(1, 2, 0) is NCHW -> NHWC)"
    rank = None
    params = (P("dims", "ints"),)
    positional_args = ("dims",)
    shape_args = ("dims",)
    variadic = "dims"  # permute(1, 2, 0) packs its positional values into dims, as Tensor.permute

    def normalise(self, a: dict, x: Shape) -> None:
        a["dims"] = permutation(a["dims"], len(x))

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return tuple(x[d] for d in a["dims"])

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if list(a["dims"]) == list(range(len(x))):
            return [Warn("W507", f"dims {tuple(a['dims'])} keep every dimension where it is: "
                         f"the layer does nothing", arg="dims",
                         notes=["dims leave the batch out: permute(1, 2, 0) turns [C, H, W] "
                                "into [H, W, C]"],
                         helps=["remove it, or give the order the dimensions should take"])]
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(aliases=True)  # a view


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


class LayerScale(LayerKind):
    """torchvision ConvNeXt's layer scale: `self.layer_scale = nn.Parameter(torch.ones(dim, 1,
    1) * layer_scale)` on the ENCLOSING module, forward `self.layer_scale * x`. The parameter
    has one value per channel, shaped to broadcast over the rest: [C, 1, 1] on [C, H, W],
    [C, 1] on [C, L], [C] on [F]. Its state_dict key is the layer's own path
    (features.1.0.layer_scale), not path.weight."""

    name = "layer_scale"
    torch_class = "nn.Parameter"
    doc = "multiplies each channel by a learnt scale, initialised to init (ConvNeXt)"
    rank = None
    params = (P("init", "float"),)
    positional_args = ("init",)

    def param_count(self, a: dict) -> int:
        return a["channels"]

    def normalise(self, a: dict, x: Shape) -> None:
        a["channels"] = x[0]
        a["shape"] = scale_shape(x)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # the product keeps x for the parameter's gradient (and the parameter itself)
        return Memory(saves=("input",))


def scale_shape(x: Shape) -> tuple[int, ...]:
    """The layer-scale parameter's shape for an input shape (batch excluded).

    >>> scale_shape((96, 56, 56))
    (96, 1, 1)
    >>> scale_shape((10,))
    (10,)
    """
    return (x[0],) + (1,) * (len(x) - 1)


class StochasticDepth(LayerKind):
    """torchvision.ops.StochasticDepth: in training, zeroes the whole residual branch of a
    sample (mode="row") or of the batch (mode="batch") with probability p, scaling what it
    keeps by 1/(1-p); the identity in eval mode."""

    name = "stochastic_depth"
    torch_class = "StochasticDepth"
    doc = "drops a residual branch per sample (row) or per batch with probability p"
    rank = None
    params = (P("p", "float"), P("mode", "enum", choices=("row", "batch")))
    positional_args = ("p", "mode")

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
