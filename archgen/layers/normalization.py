"""layernorm, layernorm2d, groupnorm, instancenorm1d/2d/3d: the normalisations beyond
batchnorm2d, with PyTorch's names, argument order and defaults.

Counting conventions, as for batchnorm2d (norm.py): MACs are 0 (archgen counts the
multiply-accumulates of conv and linear layers, as torchvision's `_ops` and
`torch.utils.flop_counter` do; a normalisation is elementwise work), and the receptive field
is unchanged: the statistics a normalisation computes (over a row, a group, a whole map) are
not counted as seeing those pixels, as batch norm's batch statistics are not.

What autograd keeps (torch 2.13, seen through saved_tensors_hooks; tests/test_vocab_norm_
layout.py measures each): the input and two float32 statistics (mean and 1/std) per
normalised group: per row of the last dims for layernorm, per pixel for layernorm2d, per group
for groupnorm, per channel for the instance norms, which also keep their weight (affine) and
running statistics (track_running_stats) repeated once per sample.
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

from ..helper import Helper
from ..symbolic import holds
from .base import LayerError, LayerKind, Memory, P, Shape, Warn, fmt_tuple, positive, register
from .norm import affine_entries, affine_onnx, check_eps, running_stats_entries

_STAT = 4  # bytes of one saved statistic: float32 (the accumulation type) for every dtype


def _affine(layer, g, flag: str, scale_role: str = "weight", shift_role: str = "bias",
            bias: bool = True) -> list[str]:
    """The ONNX inputs of a normalisation's scale and shift: its weights, or ones and zeros
    (LayerNormalization needs a scale; its bias may be left out)."""
    a, p = layer.args, layer.path
    size = a.get("num_features") or a.get("normalized_shape")
    shape = size if isinstance(size, tuple) else (size,)
    if not a[flag]:
        return [g.const(f"{p}/scale.ones", [1.0] * prod(shape), shape=shape)]
    out = [g.weight(layer, scale_role)]
    if bias:
        out.append(g.weight(layer, shift_role))
    return out


@register
class LayerNorm(LayerKind):
    name = "layernorm"
    torch_class = "nn.LayerNorm"
    doc = "normalises each sample over its last len(normalized_shape) dimensions"
    rank = None
    params = (
        P("normalized_shape", "ints"),
        P("eps", "float", 1e-5),
        P("elementwise_affine", "bool", True),
        P("bias", "bool", True),
    )
    positional_args = ("normalized_shape",)
    example = "layernorm(8, eps=1e-06)"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import VARIES, torch_call
        exprs = dict(exprs or {})
        _, value = exprs.get("normalized_shape", (None, layer.args["normalized_shape"]))
        if value is not VARIES and len(value) == 1:  # nn.LayerNorm(96), as people write it
            exprs["normalized_shape"] = (None, value[0])
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        a = layer.args
        inputs = [x, *_affine(layer, g, "elementwise_affine", bias=a["bias"])]
        return g.one_node(layer, x, "layer_norm", axis=-len(a["normalized_shape"]),
                          epsilon=a["eps"], inputs=inputs)

    def weight_entries(self, a: dict) -> list[tuple]:
        return affine_entries(a["normalized_shape"], a["elementwise_affine"], a["bias"])

    def check_args(self, a: dict) -> None:
        positive(a, "normalized_shape")
        check_eps(a)

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        ns = a["normalized_shape"]
        k = len(ns)
        tail = tuple(x[-k:]) if k <= len(x) else None
        if tail is not None and all(holds(g == s) for g, s in zip(ns, tail)):
            return []
        fits = f"layernorm({x[-1]})" + (
            f" (the last dim) or layernorm({fmt_tuple(tuple(x[-k:]))})"
            if 1 < k <= len(x) else "")
        if tail is None:  # PyTorch would take it when the batch size happens to match
            return [LayerError(
                "E430", f"normalized_shape={list(ns)} has {k} dims but the input {list(x)} "
                f"has {len(x)} besides the batch: layernorm cannot normalise over the batch "
                f"dimension", arg="normalized_shape", helps=[f"for this input use {fits}"])]
        return [LayerError(
            "E430", f"Given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but the input is {list(x)}",
            arg="normalized_shape",
            notes=["layernorm normalises over the LAST dims of its input; the batch "
                   "dimension is left out of the shapes"],
            helps=[f"for this input use {fits}; to normalise over the channels of a "
                   f"[C, H, W] map use layernorm2d(), or permute the channels last first"])]

    def param_count(self, a: dict) -> int:
        if not a["elementwise_affine"]:
            return 0
        return prod(a["normalized_shape"]) * (2 if a["bias"] else 1)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        rows = prod(x[:len(x) - len(a["normalized_shape"])])
        return Memory(saves=("input",), extra=((2 * rows, _STAT),))


@register
class LayerNorm2d(LayerKind):
    """torchvision.models.convnext.LayerNorm2d: nn.LayerNorm over the channels of a [C, H, W]
    map (permute to channels last, layer_norm, permute back); state_dict keys weight, bias."""

    name = "layernorm2d"
    torch_class = "LayerNorm2d"  # the generated file's copy of torchvision's class
    torch_helpers: ClassVar[dict] = {"LayerNorm2d": Helper("layer_norm2d.py.j2", (), "nn.LayerNorm",
                                           ("nn.functional.layer_norm",))}
    doc = "layer norm over the channels of each pixel of a [C, H, W] map (ConvNeXt's)"
    rank = 3
    params = (
        P("normalized_shape", "int", None, inferred=True),
        P("eps", "float", 1e-5),
        P("elementwise_affine", "bool", True),
        P("bias", "bool", True),
    )
    example = "layernorm2d(eps=1e-06)"

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import helpers
        a = layer.args
        inputs = _affine(layer, g, "elementwise_affine", bias=a["bias"])
        return g.one_node(layer, x, "layer_norm2d", epsilon=a["eps"], inputs=inputs,
                          h=helpers(layer.path, "last", "normed"))

    def weight_entries(self, a: dict) -> list[tuple]:
        return affine_entries((a["normalized_shape"],), a["elementwise_affine"], a["bias"])

    def check_args(self, a: dict) -> None:
        check_eps(a)

    def param_count(self, a: dict) -> int:
        if not a["elementwise_affine"]:
            return 0
        return a["normalized_shape"] * (2 if a["bias"] else 1)

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        # layer_norm keeps the permuted view of its input (the input's storage) and a mean
        # and 1/std per pixel; its output is the channels-last result permuted back (a view)
        return Memory(saves=("input",), extra=((2 * prod(x[1:]), _STAT),))


@register
class GroupNorm(LayerKind):
    name = "groupnorm"
    torch_class = "nn.GroupNorm"
    doc = "normalises each sample over groups of channels (num_channels inferred)"
    rank = None
    # PyTorch's order is (num_groups, num_channels): num_channels comes second, so it is not an
    # `inferred` first argument; it is inferred when left out and checked when given
    params = (
        P("num_groups", "int"),
        P("num_channels", "int", None),
        P("eps", "float", 1e-5),
        P("affine", "bool", True),
    )
    positional_args = ("num_groups", "num_channels")
    example = "groupnorm(2)"

    def lower_torch(self, layer, exprs=None):
        # nn.GroupNorm(num_groups, num_channels, ...): the inferred count written second
        from ..torch_calls import Call, arg_item, call_args
        exprs = dict(exprs or {})
        if "num_channels" not in exprs:
            exprs["num_channels"] = exprs.get("channels", (None, layer.args["channels"]))
        items = [arg_item(layer, "num_groups", exprs), arg_item(layer, "num_channels", exprs)]
        rest = call_args(layer, 0, ("num_groups", "num_channels"), exprs)
        return Call(self.torch_class, items + rest)

    def lower_onnx(self, g, layer, x: str) -> str:
        from ..onnx_graph import helpers
        a, p = layer.args, layer.path
        groups, rank = a["num_groups"], len(layer.in_shape)
        ctx = {"groups_shape": g.const(f"{p}/groups_shape", [0, groups, -1], "int64"),
               "ones": g.const(f"{p}/ones", [1.0] * groups),
               "zeros": g.const(f"{p}/zeros", [0.0] * groups), "affine": a["affine"]}
        if a["affine"]:  # [C] unsqueezed to [C, 1, ...] against [N, C, ...] (not on [N, C])
            ctx.update(weight=g.weight(layer, "weight"), bias=g.weight(layer, "bias"),
                       channel_axes=g.const(f"{p}/channel_axes", list(range(1, rank)),
                                            "int64") if rank > 1 else None)
        return g.one_node(layer, x, "group_norm", epsilon=a["eps"], **ctx,
                          h=helpers(p, "grouped", "normed", "shape", "reshaped", "weight",
                                    "bias", "scaled"))

    def weight_entries(self, a: dict) -> list[tuple]:
        return affine_entries((a["channels"],), a["affine"], True)

    def check_args(self, a: dict) -> None:
        positive(a, "num_groups", "num_channels")
        check_eps(a)
        g, c = a["num_groups"], a["num_channels"]
        if c is not None and c % g:
            raise _indivisible(c, g, "num_groups")

    def normalise(self, a: dict, x: Shape) -> None:
        a["channels"] = x[0]  # num_channels stays as written (None: inferred)

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        given, c, g = a["num_channels"], a["channels"], a["num_groups"]
        if given is not None and given != c:
            return [LayerError(
                "E400", f"num_channels={given} but the input has {c} channels",
                arg="num_channels",
                helps=[f"drop num_channels (it is inferred from the previous layer) or "
                       f"change it to {c}"])]
        if c % g:
            return [_indivisible(c, g, "num_groups")]
        return []

    def param_count(self, a: dict) -> int:
        return 2 * a["channels"] if a["affine"] else 0

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        return Memory(saves=("input",), extra=((2 * a["num_groups"], _STAT),))


def _indivisible(c: int, g: int, arg: str) -> LayerError:
    fits = [d for d in range(1, min(c, 64) + 1) if c % d == 0]
    near = min(fits, key=lambda d: (abs(d - g), -d))
    return LayerError(
        "E431", f"num_channels ({c}) must be divisible by num_groups ({g})", arg=arg,
        notes=[f"groupnorm splits the {c} channels into num_groups groups of equal size"],
        helps=[f"use a num_groups that divides {c}, such as {near}"])


class _InstanceNorm(LayerKind):
    """nn.InstanceNorm1d/2d/3d on [C, L], [C, H, W], [C, D, H, W]. PyTorch also takes an
    unbatched input one rank lower ((C, H, W) for InstanceNorm2d); archgen's inputs always
    carry the batch, so a lower rank is refused rather than read as unbatched."""

    params = (
        P("num_features", "int", None, inferred=True),
        P("eps", "float", 1e-5),
        P("momentum", "float_or_none", 0.1),
        P("affine", "bool", False),
        P("track_running_stats", "bool", False),
    )

    def lower_torch(self, layer, exprs=None):
        from ..torch_calls import torch_call
        return torch_call(layer, 1, exprs)

    def lower_onnx(self, g, layer, x: str) -> str:
        """Eval mode: each sample's own statistics (InstanceNormalization), or the running
        ones with track_running_stats (F.instance_norm's use_input_stats is false then: the
        BatchNormalization of eval mode)."""
        a = layer.args
        scale, shift = affine_onnx(g, layer)
        if a["track_running_stats"]:
            return g.one_node(layer, x, "batchnorm", scale=scale, shift=shift,
                              mean=g.weight(layer, "running_mean"),
                              var=g.weight(layer, "running_var"), epsilon=a["eps"])
        return g.one_node(layer, x, "instance_norm", scale=scale, shift=shift,
                          epsilon=a["eps"])

    def weight_entries(self, a: dict) -> list[tuple]:
        c = a["num_features"]
        return (affine_entries((c,), a["affine"], True)
                + (running_stats_entries(c) if a["track_running_stats"] else []))

    def check_args(self, a: dict) -> None:
        check_eps(a)

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        if a["track_running_stats"] or not _one_element(x):
            return []
        return [LayerError(
            "E432", f"Expected more than 1 spatial element when training, got the input "
            f"{list(x)}: each channel of a sample would be normalised over one value",
            arg=None, notes=["without running statistics the layer uses each sample's own "
                             "statistics in eval mode too, so PyTorch refuses it in both "
                             "modes"],
            helps=["normalise before the map shrinks to one element, or use "
                   "track_running_stats=true"])]

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        if a["track_running_stats"] and _one_element(x):
            return [Warn(
                "W506", f"an input of one spatial element ({list(x)}): PyTorch "
                "refuses it in training mode (\"Expected more than 1 spatial element when "
                "training\"); only eval mode, with the running statistics, runs",
                arg="track_running_stats",
                helps=["normalise before the map shrinks to one element"])]
        return []

    def param_count(self, a: dict) -> int:
        return 2 * a["num_features"] if a["affine"] else 0

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """F.instance_norm is batch_norm on the input viewed as [1, N*C, ...]: it keeps that
        view (the input's storage), a mean and 1/std per channel of each sample, and the
        weight and the running statistics repeated per sample (weight.repeat(N))."""
        c = a["num_features"]
        extra = [(2 * c, _STAT)]
        if a["affine"]:
            extra.append((c, "param"))
        if a["track_running_stats"]:
            extra.append((2 * c, "param"))
        return Memory(saves=("input",), extra=tuple(extra))


def _one_element(x: Shape) -> bool:
    return all(isinstance(s, int) for s in x[1:]) and prod(x[1:]) == 1


@register
class InstanceNorm1d(_InstanceNorm):
    name = "instancenorm1d"
    torch_class = "nn.InstanceNorm1d"
    doc = "normalises each channel of each sample over its length, on [C, L]"
    rank = 2
    example = "instancenorm1d(affine=true)"


@register
class InstanceNorm2d(_InstanceNorm):
    name = "instancenorm2d"
    torch_class = "nn.InstanceNorm2d"
    doc = "normalises each channel of each sample over its map, on [C, H, W]"
    rank = 3
    example = "instancenorm2d(affine=true)"


@register
class InstanceNorm3d(_InstanceNorm):
    name = "instancenorm3d"
    torch_class = "nn.InstanceNorm3d"
    doc = "normalises each channel of each sample over its volume, on [C, D, H, W]"
    rank = 4
    example = "instancenorm3d(affine=true)"


KINDS = (LayerNorm, LayerNorm2d, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d)
