"""Every registered layer kind holds every facet in its own module (issue 10: one layer kind,
one place), and what its facets say agrees with PyTorch: the weight entries and parameter
count of its `example` equal the state_dict and parameters of the module its PyTorch lowering
builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archgen import parse
from archgen.layers import REGISTRY
from archgen.layers.base import LayerKind
from archgen.templating import environment
from archgen.torch_calls import Call, Item, Sum

KINDS = sorted(REGISTRY)
METHODS = ("lower_torch", "lower_onnx", "weight_entries")
ATTRIBUTES = ("example", "doc", "torch_class", "params")
INPUTS = {1: "[12]", 2: "[4, 16]", 3: "[4, 8, 8]", 4: "[4, 6, 8, 8]"}


def _defined(cls: type, name: str) -> bool:
    """Whether a class below LayerKind in the MRO defines `name` (not the base's stub)."""
    return any(name in vars(c) for c in cls.__mro__ if c is not LayerKind and c is not object)


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_defines_every_facet(name):
    kind = REGISTRY[name]
    missing = [f for f in METHODS + ATTRIBUTES if not _defined(type(kind), f)]
    assert not missing, f"{name} lacks {missing}: see README 'Adding a layer kind'"
    assert kind.example.startswith(f"{name}("), kind.example
    assert kind.doc and (kind.torch_class.startswith("nn.") or
                         kind.torch_class in kind.torch_helpers)


def torch_environment():
    return environment("torch", keep_trailing_newline=True)


def _network(kind) -> object:
    rank = kind.rank or getattr(kind, "dims", 2) + 1  # any rank: its own, or a map
    return parse(f"network T\ninput {INPUTS[rank]}\n{kind.example}\n", "<example>").network


def _source(expr) -> str:
    """A torch_calls expression as Python text."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, Sum):
        return " + ".join(expr.terms)
    args = ", ".join(a.head + _source(a.expr) for a in expr.args)
    return f"{expr.func}{expr.brackets[0]}{args}{expr.brackets[1]}"


class _Enclosing(nn.Module):
    """The module a parameter kind's parameter sits on (layer_scale's), under the layer's
    name, applying it with the kind's forward expression."""

    def __init__(self, name: str, parameter: nn.Parameter, forward) -> None:
        super().__init__()
        self.register_parameter(name, parameter)
        self.expression = _source(forward)

    def forward(self, x):
        return eval(self.expression, {"self": self, "x": x})  # our own lowering, never spec text


@pytest.mark.parametrize("name", KINDS)
def test_example_checks_and_matches_the_module_pytorch_builds(name):
    kind = REGISTRY[name]
    net = _network(kind)  # raises SpecError if the example does not check cleanly
    assert not [d for d in net.diagnostics if d.severity == "warning"], kind.example
    layer = next(net.layers())
    call = kind.lower_torch(layer)
    assert isinstance(call, Call) and all(isinstance(a, Item) for a in call.args)
    if call.func == "Conv2dSame":  # the generated file's own helper: a Conv2d's weights
        call = Call("nn.Conv2d", call.args)
    namespace = {"nn": nn, "torch": torch}
    for helper in kind.torch_helpers.values():  # the generated file's classes, as it has them
        exec(torch_environment().get_template(helper.template).render(), namespace)  # noqa: S102
    module = eval(_source(call), namespace)  # our own lowering, never spec text
    if kind.parameter:  # a parameter of the enclosing module, applied as its forward does
        module = _Enclosing(layer.attr, module, kind.torch_forward(f"self.{layer.attr}", "x"))
    state = module.state_dict()
    entries = kind.weight_entries(layer.args)
    assert [(role or layer.path, tuple(shape)) for role, shape, _ in entries] == \
        [(k, tuple(v.shape)) for k, v in state.items()]
    params = sum(p.numel() for p in module.parameters())
    assert kind.param_count(layer.args) == params == layer.params
    # the module computes the shape the checker gives
    module.eval()
    shape = [int(d) for d in net.input_shape]
    with torch.no_grad():
        out = module(torch.randn(2, *shape))
    assert tuple(out.shape[1:]) == tuple(layer.out_shape)


@pytest.mark.parametrize("name", KINDS)
def test_example_lowers_to_onnx(name):
    """The ONNX lowering of the example builds a graph that passes onnx.checker and strict
    shape inference held to the checker's shapes (build_graph does both)."""
    pytest.importorskip("onnx")
    from archgen.emit_onnx import build_graph
    build_graph(_network(REGISTRY[name]))


def test_a_kind_without_a_lowering_is_reported():
    class Bare(LayerKind):
        name = "bare"
    with pytest.raises(NotImplementedError):
        Bare().lower_torch(None)
    with pytest.raises(NotImplementedError):
        Bare().lower_onnx(None, None, "x")
    with pytest.raises(NotImplementedError):
        Bare().weight_entries({})
    assert not _defined(Bare, "lower_torch") and not _defined(Bare, "example")
