"""What every layer kind owns: its argument schema with PyTorch's defaults, argument
normalisation, shape rule, parameter and MAC counts, receptive-field step and warnings.

A kind is registered once (`register`); a second registration of a name fails loudly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

from ..record import factory, record
from ..symbolic import holds

Shape = tuple[int, ...]  # without the batch dimension
REQUIRED = object()


class LayerError(Exception):
    """A rule a layer's arguments or input break. `arg` names the argument to point at."""

    def __init__(self, code: str, message: str, *, arg: str | None = None,
                 notes: list[str] | None = None, helps: list[str] | None = None):
        super().__init__(message)
        self.code, self.message, self.arg = code, message, arg
        self.notes, self.helps = notes or [], helps or []


class P(NamedTuple):
    """One argument: PyTorch's name, a value type (see `coerce`), PyTorch's default."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple = ()
    inferred: bool = False  # in_channels/in_features/num_features: keyword only, from the input
    axes: int = 2  # spatial axes of a per-axis value (pair, padding, pad4, scale): 1, 2 or 3


class RF(NamedTuple):
    """Receptive field per spatial axis ((h, w) of a map; (l,) and (d, h, w) for 1-D and 3-D
    inputs) in input pixels: window size, jump between neighbouring
    outputs and the centre of the first output (start). Floats: exact for the integers and
    halves of strided windows; upsampling and uneven adaptive pools give fractions, and sizes
    are shown rounded up to whole pixels.

    `bound` is the network input's (h, w); `cap`, set once an adaptive pool has mixed a whole
    map, is the most any later value can see: every later value depends only on that pooled
    map, so no window after it, however wide or padded, sees more than the input."""

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    bound: tuple[float, float] | None = None
    cap: tuple[float, float] | None = None

    @staticmethod
    def identity(bound=None, axes: int = 2) -> RF:
        n = len(bound) if bound else axes
        return RF((1.0,) * n, (1.0,) * n, (0.5,) * n,
                  tuple(float(b) for b in bound) if bound else None)

    @property
    def axes(self) -> range:
        return range(len(self.size))

    def _with(self, size, jump, start, cap=None) -> RF:
        cap = cap or self.cap
        if cap:
            size = tuple(min(size[a], cap[a]) for a in self.axes)
        return RF(tuple(size), tuple(jump), tuple(start), self.bound, cap)

    def window(self, kernel, stride, pad_begin, dilation=None) -> RF:
        """The step of a sliding window (conv/pool) over this field."""
        dilation = dilation or (1,) * len(self.size)
        size, jump, start = [], [], []
        for a in self.axes:
            k_eff = dilation[a] * (kernel[a] - 1) + 1
            size.append(self.size[a] + (k_eff - 1) * self.jump[a])
            jump.append(self.jump[a] * stride[a])
            start.append(self.start[a] + ((k_eff - 1) / 2 - pad_begin[a]) * self.jump[a])
        return self._with(size, jump, start)

    def scaled(self, factor) -> RF:
        """Outputs packed `factor` times denser (upsampling, transposed conv)."""
        jump = tuple(self.jump[a] / factor[a] for a in self.axes)
        return self._with(self.size, jump, self.start)

    def whole(self, positions) -> RF:
        """An output that sees every position of a map (linear after flatten, global pool)."""
        size = tuple(self.size[a] + (positions[a] - 1) * self.jump[a] for a in self.axes)
        start = tuple(self.start[a] + (positions[a] - 1) / 2 * self.jump[a]
                      for a in self.axes)
        return self._with(size, self.jump, start)

    def pooled(self, kernel, stride, positions) -> RF:
        """An adaptive pool's windows (`kernel` the widest, `stride` fractional) over a map of
        `positions`: from here on nothing sees more than that whole map, nor than the input."""
        extent = [self.size[a] + (positions[a] - 1) * self.jump[a] for a in self.axes]
        cap = [min(extent[a], (self.cap or extent)[a], (self.bound or extent)[a])
               for a in self.axes]
        out = self.window(kernel, stride, (0,) * len(self.size))
        return out._with(out.size, out.jump, out.start, tuple(cap))

    @staticmethod
    def union(fields: list[RF]) -> RF:
        """What an add/concat output sees: the union of its branches' fields."""
        size, jump, start = [], [], []
        for a in fields[0].axes:
            lo = min(f.start[a] - f.size[a] / 2 for f in fields)
            hi = max(f.start[a] + f.size[a] / 2 for f in fields)
            size.append(hi - lo)
            start.append((lo + hi) / 2)
            jump.append(max(f.jump[a] for f in fields))
        caps = [f.cap for f in fields]
        cap = None if None in caps else tuple(max(c[a] for c in caps) for a in fields[0].axes)
        return RF(tuple(size), tuple(jump), tuple(start), fields[0].bound)._with(
            size, jump, start, cap)

    def to_json(self) -> dict:
        return {"size": [_whole(v) for v in self.size], "jump": [_num(v) for v in self.jump],
                "start": [_num(v) for v in self.start]}

    def label(self) -> str:
        sizes = [_whole(v) for v in self.size]
        return f"{sizes[0]}" if len(set(sizes)) == 1 else "x".join(map(str, sizes))


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(v, 4)


def _whole(v: float) -> int | float:
    """A window size in whole input pixels: fractions (after uneven adaptive windows or
    upsampling) round up, as a window that covers part of a pixel reads it."""
    return math.ceil(round(v, 6)) if math.isfinite(v) else v


@record
class Memory:
    """What a layer costs in activation memory, as PyTorch's autograd spends it (memory.py
    adds it up over the network). Sizes are elements per sample (int or symbolic), `act` being
    the activation dtype; `fixed` tensors do not grow with the batch.

    - saves: which of "input" and "output" autograd keeps for backward in training mode;
    - aliases: the output is the input's storage (a view, or an in-place op) in training
      mode, and `eval_aliases` in a no_grad eval forward (dropout returns its input there);
    - extra: new tensors kept for backward, (elements, bytes per element or "act");
    - temp: a tensor made and dropped inside the layer (an explicit pad), elements;
    - scratch: new tensors made and dropped in a no_grad forward, (elements, bytes per
      element): max pooling's int64 indices, which ATen computes even when nothing keeps them;
    - fixed: (elements, bytes or "act" or "param") kept for backward whatever the batch;
    - input_needs_grad: the input is kept (by an op inside the layer, an explicit pad) only
      when the input itself requires grad.

    A layer without parameters whose input does not require grad (right after the network's
    input) is not recorded by autograd at all: it keeps nothing."""

    saves: tuple = ()
    input_needs_grad: bool = False
    aliases: bool = False
    eval_aliases: bool | None = None
    extra: tuple = ()
    temp: object = 0
    scratch: tuple = ()
    fixed: tuple = ()


@record
class Warn:
    code: str
    message: str
    arg: str | None = None
    notes: list[str] = factory(list)
    helps: list[str] = factory(list)


class LayerKind:
    """Base of every layer kind. Subclasses set the class attributes and override the rules."""

    name: ClassVar[str]
    torch_class: ClassVar[str]  # e.g. "nn.Conv2d"
    params: ClassVar[tuple[P, ...]] = ()
    # The arguments that may be written without their name, in PyTorch's order: only those
    # that define the layer's shape (conv2d(16, 3, 2, 1)); everything else is keyword-only.
    positional_args: ClassVar[tuple[str, ...]] = ()
    # The arguments the output shape depends on (besides the input): when one of them is
    # wrong the shape is unknown; when another one is, checking goes on with the shape.
    shape_args: ClassVar[tuple[str, ...]] = ()
    rank: ClassVar[int | None] = 3  # input rank without batch: 3 = [C, H, W], 1 = [F], None = any
    doc: ClassVar[str] = ""
    # A spec line using the kind, shown by `archgen explain <kind>`; tests/test_kinds.py checks
    # it in a tiny network and holds its weights to the module its PyTorch lowering builds.
    example: ClassVar[str]
    # -- what the emitters ask of a kind besides its lowerings ---------------------------------
    # Its backward does not read its output, so a residual sum may be added into the output in
    # place (torchvision's `out += identity` after batch norm).
    sum_in_place: ClassVar[bool] = False
    # What it does to the channels (features), for a block class's channel expressions:
    # "keep" them, make them "unknown", or the name of the argument that sets them.
    channels_rule: ClassVar[str] = "keep"
    # "conv" or "batchnorm": an eval-mode batchnorm right after a conv folds into it (ONNX).
    fold_role: ClassVar[str | None] = None
    # The generated file's own classes its PyTorch lowering may call (torch_calls.Helper by
    # class name, from templates/torch/), where torch.nn has none (channel_slice).
    torch_helpers: ClassVar[dict] = {}
    # The argument that takes every positional value as one tuple (permute(1, 2, 0), as
    # Tensor.permute(*dims)), or None.
    variadic: ClassVar[str | None] = None
    # The input dimension the inferred argument is read from: the channels (0), or the last
    # one for linear, which acts on the last dimension of any input.
    inferred_dim: ClassVar[int] = 0
    # It lowers to a parameter of the enclosing module (layer_scale: torchvision's
    # `self.layer_scale = nn.Parameter(...)`), not to a module of its own: its module is then
    # a class (never an nn.Sequential), its state_dict key is the layer's own path, and
    # `torch_forward` says how the forward applies it.
    parameter: ClassVar[bool] = False

    def channels_expr(self, written: dict, c):
        """Its output channels as a spec expression, for a block class's channel expressions:
        `c` (its input's) kept, None when unknown, or the argument that sets them, as
        `channels_rule` says; `written` maps arguments to the expressions written for them."""
        if self.channels_rule == "unknown":
            return None
        if self.channels_rule == "keep":
            return c
        return written.get(self.channels_rule)

    # -- rules; `a` is the normalised argument dict, `x` the input shape ----------------------
    # Order: check_args (always, even when the input is unknown), then normalise and
    # output_shape (raise when the shape cannot be computed), then check_input (problems
    # that leave the shape computable, such as groups that do not divide in_channels).
    def check_args(self, a: dict) -> None:
        """Rules on the arguments alone, whatever the input; raise LayerError."""

    def normalise(self, a: dict, x: Shape) -> None:
        """Fill inferred and derived arguments from the input; mutate `a` in place. Raise
        only where the output shape cannot be computed."""

    def check_input(self, a: dict, x: Shape) -> list[LayerError]:
        """Rules between the arguments and the input that leave the shape computable."""
        return []

    def output_shape(self, a: dict, x: Shape) -> Shape:
        return x

    def param_count(self, a: dict) -> int:
        return 0

    def macs(self, a: dict, x: Shape, y: Shape) -> int:
        return 0

    def receptive_field(self, a: dict, rf: RF, x: Shape, y: Shape) -> RF:
        return rf

    def warnings(self, a: dict, x: Shape, y: Shape) -> list[Warn]:
        return []

    def memory(self, a: dict, x: Shape, y: Shape) -> Memory:
        """What autograd keeps of this layer for backward, and what its output shares."""
        return Memory()

    # -- lowerings: what the emitters dispatch to (emit_torch, emit_onnx, weights) ------------
    def lower_torch(self, layer, exprs=None):
        """The constructor call (torch_calls.Call) of `layer`'s module; `exprs` gives some
        arguments as Python expressions of a block class's constructor arguments."""
        raise NotImplementedError(f"{self.name} has no PyTorch lowering")

    def lower_onnx(self, g, layer, x: str) -> str:
        """Add `layer`'s nodes to the onnx_graph.Graph `g`, reading the value `x`; return the
        value it writes."""
        raise NotImplementedError(f"{self.name} has no ONNX lowering")

    def weight_entries(self, a: dict) -> list[tuple]:
        """The state_dict entries of the module, as PyTorch names and shapes them: (role,
        shape, init) with init as weights.Entry describes it."""
        raise NotImplementedError(f"{self.name} does not say what weights it has")

    @property
    def torch_classes(self) -> tuple[str, ...]:
        """Every class its PyTorch lowering may call (the generated file's allow-list)."""
        return (self.torch_class,)

    def torch_forward(self, module: str, x: str):
        """How the enclosing module's forward applies it to `x`: a call of its module
        (`self.conv1(x)`); a parameter kind gives its own expression (`self.layer_scale * x`)."""
        from ..torch_calls import Call, Item
        return Call(module, [Item(x)])

    # -- helpers -------------------------------------------------------------------------------
    @property
    def positional(self) -> list[P]:
        schema = {p.name: p for p in self.params}
        return [schema[n] for n in self.positional_args]

    @property
    def keyword_only(self) -> list[P]:
        return [p for p in self.params if not p.inferred and p.name not in self.positional_args]

    @property
    def inferred(self) -> P | None:
        return next((p for p in self.params if p.inferred), None)

    def signature(self) -> str:
        """conv2d(out_channels, kernel_size, stride=1, padding=0, *, dilation=1, ...): the
        names before `*` may be written positionally."""
        def one(p: P) -> str:
            d = p.default
            if isinstance(d, tuple) and len(set(d)) == 1:
                d = d[0]  # (1, 1) reads as 1, as it is written
            if p.name == self.variadic:
                return f"*{p.name}"  # permute(*dims): every positional value
            return p.name if d is REQUIRED else f"{p.name}={_show(d)}"
        parts = [one(p) for p in self.positional]
        if self.keyword_only:
            parts += ["*"] + [one(p) for p in self.keyword_only]
        return f"{self.name}({', '.join(parts)})"


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return str(v)


class Weightless:
    """A kind whose module has no state_dict entries."""

    def weight_entries(self, a: dict) -> list[tuple]:
        return []


REGISTRY: dict[str, LayerKind] = {}


def register(cls: type[LayerKind]) -> type[LayerKind]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"layer kind {cls.name!r} is registered twice "
                           f"({type(REGISTRY[cls.name]).__name__} and {cls.__name__})")
    order = [p.name for p in cls.params if not p.inferred]
    if list(cls.positional_args) != order[:len(cls.positional_args)]:
        raise RuntimeError(f"{cls.name}: positional_args {cls.positional_args} must lead "
                           f"PyTorch's order {order}")
    if not set(cls.shape_args) <= {p.name for p in cls.params}:
        raise RuntimeError(f"{cls.name}: shape_args {cls.shape_args} are not all arguments")
    REGISTRY[cls.name] = cls()
    return cls


# -- argument value types ---------------------------------------------------------------------

def describe(v: Any) -> str:
    if isinstance(v, bool):
        return f"the boolean {_show(v)}"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the word {v!r}"
    if isinstance(v, tuple):
        return f"the tuple {fmt_tuple(v)}"
    return "none"


def fmt_tuple(v: tuple) -> str:
    return "(" + ", ".join(_show(x) for x in v) + ")"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def coerce(p: P, v: Any) -> Any:
    """Check one argument value against its type; normalise per-axis values to pairs."""
    t = p.type
    bad = LayerError("E300", f"{p.name} expects {_type_text(p)}, received {describe(v)}",
                     arg=p.name)
    if v is None and p.default is None:
        return None
    if t == "int":
        if not _is_int(v):
            raise bad
        return v
    n = p.axes  # 0: any number of axes (upsample), one value standing for every axis
    if t == "pair":  # one integer per spatial axis (two for a map: a pair)
        if _is_int(v):
            return (v,) * max(n, 1)
        if isinstance(v, tuple) and (len(v) == n or (n == 0 and v)) and all(
                _is_int(i) for i in v):
            return v
        raise bad
    if t in ("float", "float_or_none"):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if v is None and t == "float_or_none":
            return None
        raise bad
    if t == "bool":
        if isinstance(v, bool):
            return v
        raise bad
    if t == "enum":
        if v is None and "none" in p.choices:  # the bare word none, as in gelu(approximate=none)
            return "none"
        if isinstance(v, str) and v in p.choices:
            return v
        if isinstance(v, str):
            from ..diagnostics import did_you_mean
            hint = did_you_mean(v, p.choices)
            raise LayerError("E301", f"{p.name} must be one of {', '.join(p.choices)}; "
                             f"received {v!r}", arg=p.name, helps=[hint] if hint else [])
        raise bad
    if t == "padding":
        if isinstance(v, str):
            if v in ("same", "valid"):
                return v
            raise LayerError("E301", f"padding must be a number, a pair, same or valid; "
                             f"received {v!r}", arg=p.name)
        return coerce(P(p.name, "pair", axes=n), v)
    if t == "pad4":  # F.pad's order: (left, right[, top, bottom[, front, back]]), last axis first
        if _is_int(v):
            return (v,) * (2 * n)
        if isinstance(v, tuple) and len(v) in range(2, 2 * n + 1, 2) and all(
                _is_int(i) for i in v):
            return (*v, *(0,) * (2 * n - len(v)))
        raise bad
    if t == "pair_or_none":
        return coerce(P(p.name, "pair", axes=n), v)
    if t == "ints":  # a shape or a list of dims of any length: layernorm(96), permute(1, 2, 0)
        if _is_int(v):
            return (v,)
        if isinstance(v, tuple) and v and all(_is_int(i) for i in v):
            return v
        raise bad
    if t == "scale":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (float(v),) * max(n, 1)
        if isinstance(v, tuple) and (len(v) == n or (n == 0 and v)) and all(
                isinstance(i, (int, float)) and not isinstance(i, bool) for i in v):
            return tuple(float(i) for i in v)
        raise bad
    raise AssertionError(f"unknown argument type {t}")


def _type_text(p: P) -> str:
    """What a value of `p`'s type looks like, for its spatial axes."""
    if p.axes in (0, 2) or p.type not in _AXES_TEXT:  # 0: any rank, read as a map's
        return _TYPE_TEXT[p.type]
    return _AXES_TEXT[p.type][p.axes]


_AXES_TEXT = {  # per-axis types of 1-D and 3-D kinds
    "pair": {1: "an integer or a 1-tuple such as (3,)",
             3: "an integer or a triple such as (3, 5, 5)"},
    "pair_or_none": {1: "an integer or a 1-tuple", 3: "an integer or a triple"},
    "padding": {1: "an integer, a 1-tuple, same or valid",
                3: "an integer, a triple, same or valid"},
    "pad4": {1: "an integer or (left, right)",
             3: "an integer, (left, right), (left, right, top, bottom) or (left, right, top, "
                "bottom, front, back)"},
    "scale": {1: "a number or a 1-tuple of numbers", 3: "a number or a triple of numbers"},
}


_TYPE_TEXT = {
    "int": "an integer",
    "pair": "an integer or a pair such as (3, 5)",
    "float": "a number",
    "float_or_none": "a number or none",
    "bool": "true or false",
    "enum": "one of the listed words",
    "padding": "an integer, a pair, same or valid",
    "pad4": "an integer, (left, right) or (left, right, top, bottom)",
    "pair_or_none": "an integer or a pair",
    "ints": "an integer or a tuple of integers such as (7, 7)",
    "scale": "a number or a pair of numbers",
}


def positive(a: dict, *names: str, allow_zero: bool = False) -> None:
    """Kernel sizes, strides and the like must be > 0 (>= 0 for paddings)."""
    for name in names:
        v = a.get(name)
        if v is None or isinstance(v, str):
            continue
        values = v if isinstance(v, tuple) else (v,)
        low = 0 if allow_zero else 1
        if any(i < low for i in values):
            rule = "non-negative" if allow_zero else "positive"
            raise LayerError("E301", f"{name} must be {rule}, received "
                             f"{fmt_tuple(v) if isinstance(v, tuple) else v}", arg=name)


def check_inferred(kind: LayerKind, a: dict, x: Shape) -> LayerError | None:
    """Fills the inferred first argument (in_channels, in_features, num_features) from the
    input; a different value given for it is an error, and checking goes on with the real one."""
    p = kind.inferred
    if p is None:
        return None
    given, actual = a.get(p.name), x[kind.inferred_dim]
    a[p.name] = actual
    if given is None or holds(given == actual):
        return None
    what = "features" if p.name == "in_features" else "channels"
    return LayerError("E401" if p.name == "in_features" else "E400",
                      f"{p.name}={given} but the input has {actual} {what}", arg=p.name,
                      helps=[f"drop {p.name}= (it is inferred from the previous layer) "
                             f"or change it to {actual}"])


def spatial(x: Shape) -> tuple[int, ...]:
    """The spatial sizes of an input without the batch: (H, W) of [C, H, W], (L,), (D, H, W)."""
    return tuple(x[1:])
