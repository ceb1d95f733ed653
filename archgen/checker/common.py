"""The values that pass between the checker's parts (expressions' values, the flow of shapes
between statements, scopes), its exceptions and the small helpers they share."""

from __future__ import annotations

import math
import re
from typing import Any

from .. import symbolic
from .. import syntax as ast
from ..diagnostics import Diagnostic, Span
from ..layers.base import RF, LayerError, Shape
from ..limits import MAX_ELEMENTS, MAX_SIZE, RF_CAP
from ..record import factory, record

MAX_DEPTH = 32


class _Word(str):
    """A bare word that named no variable: an enumeration value such as same, or a typo.
    Remembers where it was written and which names were defined there, for E202."""

    span: Span
    names: list[str]


@record
class _Value:
    value: Any
    span: Span
    arg_span: Span | None = None  # the whole `name=value` it was passed as


@record
class _Flow:
    """What flows between statements: the shape (None once unknown), its receptive field and
    where it was produced (for notes)."""

    shape: Shape | None
    rf: RF
    origin: str

    @property
    def known(self) -> bool:
        return self.shape is not None


@record
class _Scope:
    env: dict[str, Any]
    stack: list[str] = factory(list)  # block names being expanded


def _within_limits(p, v: Any) -> Any:
    """A coerced layer argument, refused (E304) when an integer or a scale factor in it is
    beyond MAX_SIZE (floats such as eps or p may be anything finite)."""
    if p.type in ("float", "float_or_none"):
        return v
    for i in v if isinstance(v, tuple) else (v,):
        if isinstance(i, (int, float)) and not isinstance(i, bool) and abs(i) > MAX_SIZE:
            shown = f"{i:,}" if isinstance(i, int) else f"{i:g}"
            raise LayerError("E304", f"{p.name}={shown} is beyond {MAX_SIZE:,} (2**24), "
                             f"archgen's limit for a size, stride or count", arg=p.name,
                             helps=["no real CNN comes near this; check for a typo"])
    return v


def _within_element_limits(params: int, y: Shape) -> None:
    """One layer's weights (E412) and one output per sample (E411) at most MAX_ELEMENTS.
    Symbolic sizes are not bounded here: the sample network checks them at its sizes."""
    if symbolic.is_symbolic(y) or isinstance(params, symbolic.Sym):
        return
    elements = _prod(y)
    if elements > MAX_ELEMENTS:
        raise LayerError("E411", f"the output {list(y)} has {elements:,} elements per sample, "
                         f"beyond {MAX_ELEMENTS:,} (2**32, 16 GiB in float32), archgen's "
                         f"limit for one tensor",
                         helps=["no real CNN comes near this; check the sizes and scales"])
    if params > MAX_ELEMENTS:
        raise LayerError("E412", f"this layer has {params:,} weights, beyond {MAX_ELEMENTS:,} "
                         f"(2**32, 16 GiB in float32), archgen's limit for one layer",
                         helps=["no real CNN comes near this; check the channel counts"])


def _capped(rf: RF) -> RF:
    """The receptive field with every value within +-RF_CAP, so that no stack of strides or
    upsamplings ever reaches infinity (and inf - inf = NaN). A value at the cap means "at least
    this much"; the JSON report says so."""
    def cap(values):
        return tuple(v if -RF_CAP < v < RF_CAP else math.copysign(RF_CAP, v) for v in values)
    values = (*rf.size, *rf.jump, *rf.start)
    total = sum(values)  # NaN when some value is: then min and max cannot be trusted
    if not values or (total == total and -RF_CAP < min(values) and max(values) < RF_CAP):
        return rf  # nothing to cap (the usual case)
    return rf._replace(size=cap(rf.size), jump=cap(rf.jump), start=cap(rf.start))


class _TooLarge(Exception):
    """The expansion visited more than MAX_EXPANDED statements; `span` is where."""

    def __init__(self, span: Span, diagnostic: Diagnostic | None = None):
        super().__init__(span)
        self.span, self.diagnostic = span, diagnostic


class _Unknown(Exception):
    """An expression used a value that an earlier error left unknown."""


_UNKNOWN = object()  # the value of a name an earlier error left unknown


class _EvalError(Exception):
    def __init__(self, code: str, message: str, span: Span, helps=None):
        super().__init__(message)
        self.code, self.message, self.span, self.helps = code, message, span, helps or []


_CONSTANTS = {"true": True, "false": False, "none": None, "True": True, "False": False,
              "None": None}


def _builtins(shape: Shape | None) -> dict[str, Any]:
    if shape is None:  # unknown after an error: using them says nothing more
        return dict.fromkeys(("in_channels", "in_height", "in_width", "in_features",
                              "in_length", "in_depth"), _UNKNOWN)
    if len(shape) == 3:
        return {"in_channels": shape[0], "in_height": shape[1], "in_width": shape[2]}
    if len(shape) == 2:  # [C, L]
        return {"in_channels": shape[0], "in_length": shape[1]}
    if len(shape) == 4:  # [C, D, H, W]
        return {"in_channels": shape[0], "in_depth": shape[1], "in_height": shape[2],
                "in_width": shape[3]}
    return {"in_features": shape[0]}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _prod(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _camel(stem: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", stem)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return name if name[:1].isalpha() else ""


def _arg_text(a: ast.Arg) -> str:
    return f"{a.name}={_text(a.value)}" if a.name else _text(a.value)


def _text(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value)
    if isinstance(e, ast.Word):
        return e.name
    if isinstance(e, ast.Str):
        return repr(e.value)
    if isinstance(e, ast.TupleExpr):
        return "(" + ", ".join(_text(i) for i in e.items) + ")"
    if isinstance(e, ast.UnaryOp):
        return f"{e.op}{' ' if e.op == 'not' else ''}{_text(e.operand)}"
    if isinstance(e, ast.BinOp):
        return f"{_text(e.left)} {e.op} {_text(e.right)}"
    if isinstance(e, ast.FuncCall):
        return f"{e.func}(" + ", ".join(_text(i) for i in e.items) + ")"
    return "?"


# warnings that depend on the input size: a symbolic network states W500 per residue and


def _same(a: Shape, b: Shape) -> bool:
    """Equal shapes; sizes that are symbolic must then be equal (a requirement)."""
    return len(a) == len(b) and all(symbolic.holds(x == y) for x, y in zip(a, b))


def _is_symbol(e: ast.Expr) -> bool:
    """A bare name in the input line that is not a constant: a symbolic size."""
    return isinstance(e, ast.Word) and e.name not in _CONSTANTS
