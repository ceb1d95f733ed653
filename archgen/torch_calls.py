"""The PyTorch call model: what a layer kind lowers into for the PyTorch target.

A kind's `lower_torch(layer, exprs)` returns a `Call` (nn.Conv2d(3, 16, kernel_size=3)); the
emitter (emit_torch.py) lays calls out as ruff format would and puts them in a file. This
module sits below `layers/` and the emitters: it imports neither, so kinds and emitters both
import it without a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .helper import Helper  # noqa: F401  (a kind declares its helpers without this module)
from .quoting import py_literal

if TYPE_CHECKING:
    from .ir import Layer, Node


@dataclass
class Call:
    func: str
    args: list[Item] = field(default_factory=list)
    explode: bool = False  # written with a trailing comma: one argument per line, always
    brackets: str = "()"


@dataclass
class Sum:
    terms: list[str]


Expr = str | Call | Sum


@dataclass
class Item:
    """A statement or a call argument: `head` (`self.conv1 = `, `x1 = `, `dim=`), then an
    expression; `nodes` are what its comment describes, one per instance of a shared class
    (none: no comment)."""

    expr: Expr
    head: str = ""
    nodes: list[Node] = field(default_factory=list)
    channels: str | None = None  # in a block's class: its output channels as an expression


# -- values ------------------------------------------------------------------------------------

VARIES = object()  # the value of an argument written as an expression of block arguments
Exprs = dict[str, tuple[str, Any]]  # argument -> (Python text, value or VARIES)


# argument types that hold one value per spatial axis (layers.base.coerce), written once when
# they are all equal, as PyTorch accepts them
PER_AXIS = frozenset({"pair", "padding", "pad4", "pair_or_none", "scale"})


def collapse(v: Any) -> Any:
    """Per-axis values that are all equal as the single value PyTorch accepts for them.

    >>> collapse((3, 3)), collapse((1, 2)), collapse((0, 0, 0, 0)), collapse((5,))
    (3, (1, 2), 0, 5)
    """
    if isinstance(v, tuple) and v and len(set(v)) == 1:
        return v[0]
    return v


def is_default(value: Any, default: Any) -> bool:
    """PyTorch's default, told apart from equal values of another type (True == 1). A required
    argument's default (layers.base.REQUIRED, a bare object) equals no value."""
    if type(default) is object:  # REQUIRED: no value is it (and symbolic sizes compare lazily)
        return False
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def call_args(layer: Layer, positional: int = 0, skip: tuple[str, ...] = (),
              exprs: Exprs | None = None) -> list[Item]:
    """The layer's arguments in PyTorch's order, defaults left out; the first `positional`
    ones positional, as people write them, until one of them is left out. `exprs` gives
    some arguments as Python expressions of a block class's constructor arguments (text, and
    the value when it is a constant): those are written as given."""
    out = []
    keyword_from = positional
    exprs = exprs or {}
    for i, p in enumerate(layer.kind.params):
        text, value = exprs.get(p.name, (None, layer.args.get(p.name, p.default)))
        if p.name in skip or (value is not VARIES and is_default(value, p.default)):
            keyword_from = min(keyword_from, i)
            continue
        if text is None or value is not VARIES:
            text = py_literal(collapse(value) if p.type in PER_AXIS else value)
        out.append(Item(text) if i < keyword_from else Item(text, f"{p.name}="))
    return out


def arg_item(layer: Layer, name: str, exprs: Exprs | None = None) -> Item:
    """One argument written positionally: its expression where `exprs` has one, else its
    value."""
    text, value = (exprs or {}).get(name, (None, layer.args[name]))
    return Item(text if value is VARIES else py_literal(collapse(value)))


def torch_call(layer: Layer, positional: int = 0, exprs: Exprs | None = None,
               skip: tuple[str, ...] = (), func: str | None = None) -> Call:
    """The constructor call of a kind whose module takes its arguments as archgen's schema
    lists them: `func` (the kind's torch_class) with `call_args`."""
    return Call(func or layer.kind.torch_class, call_args(layer, positional, skip, exprs))
