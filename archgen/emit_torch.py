"""The PyTorch target: a resolved network -> the source of a standalone PyTorch module.

Lowering turns the IR into a small render model: the classes to write (the network's own, one
per distinct structure of the class-style blocks and groups, and fixed helpers such as
Conv2dSame), each with its attribute lines and forward statements already laid out. The
templates in templates/torch/ only put that model into a file.

Every attribute name is a `node.attr` from naming.py, so `node.path` is the module path in the
generated module and the prefix of its state_dict keys. Other names (classes, local variables)
are generated here. Spec text reaches the code only as validated identifiers and through
quoting.py (literals, docstring and comment text), and the rendered source is checked against
`PYTHON_SHAPE` (imports, classes, methods, calls) before it is returned or executed.

The layout is ruff format's by construction, so the file passes `ruff format --check` without
running ruff: a statement goes on one line when it fits in 88 columns with its comment (the
comment moves above it when only the code fits); otherwise its call is exploded, one argument
per line with a trailing comma, which ruff keeps exploded at any line length.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import keyword
import linecache
import re
import shlex
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from .diagnostics import Diagnostic, Span, SpecError
from .extras import require
from .ir import Layer, Merge, Network, Node, Seq
from .layers import REGISTRY
from .layers.base import REQUIRED
from .layers.conv import Conv2d
from .naming import RESERVED_GLOBALS, check_name, members
from .quoting import PythonShape, py_comment_text, py_docstring_text, py_literal, verify_python
from .templating import environment

WIDTH = 88  # ruff format's default line length
BODY_INDENT = 8  # a method body
MAX_LISTED = 4  # line numbers listed in one comment


@dataclass(frozen=True)
class Helper:
    """A fixed class the generated file may need: its template, and the imports, base class
    and calls its code uses."""

    template: str
    imports: tuple[str, ...]
    base: str
    calls: tuple[str, ...]


HELPERS = {
    "Conv2dSame": Helper("conv2d_same.py.j2", ("from torch.nn import functional as F",),
                         "nn.Conv2d", ("F.pad", "F.conv2d", "max")),
}


# -- public API --------------------------------------------------------------------------------

def render_torch(net: Network, command: str | None = None) -> str:
    """The source of a standalone module defining `class <net.name>(nn.Module)`.

    `command` is the command line that regenerates the file, quoted in its docstring
    (default: `archgen compile <spec file>`). Raises SpecError for a network with errors or
    with a name the generated code cannot use.
    """
    return _render(net, command)[0]


def _render(net: Network, command: str | None = None):
    """The source and its checked syntax tree (InternalError when it is not of the expected
    shape: nothing is written or executed then)."""
    if any(d.is_error for d in net.diagnostics):
        raise SpecError(net.diagnostics, {net.file: net.source})
    model = _lower(net, command or f"archgen compile {shlex.quote(net.file)}")
    source = _environment().get_template("module.py.j2").render(model=model)
    return source, verify_python(source, PYTHON_SHAPE, f"<archgen {_module_name(net.name)}.py>")


def module_filename(net: Network) -> str:
    """The file name of the generated module: the spec's stem (resnet18.cnn -> resnet18.py),
    made a plain Python module name (other characters become _). A spec without a usable stem
    (`<stdin>`, `-.cnn`) gets the network name in snake_case (SeedCNN -> seed_cnn.py). A name
    that would shadow a module the file imports or the standard library (torch.cnn ->
    torch_net.py) or a keyword gets `_net` appended.

    >>> from types import SimpleNamespace as N
    >>> [module_filename(N(name="X", file=f)) for f in ("a/resnet18.cnn", "mobile-net v2.cnn",
    ...                                                   "torch.cnn", "3x3.cnn")]
    ['resnet18.py', 'mobile_net_v2.py', 'torch_net.py', 'net_3x3.py']
    >>> [module_filename(N(name=n, file="<stdin>")) for n in ("SeedCNN", "MobileNetV2")]
    ['seed_cnn.py', 'mobile_net_v2.py']
    """
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", PurePath(net.file).stem).strip("_")
    if not re.search(r"[A-Za-z0-9]", stem) or net.file.startswith("<"):
        return _module_name(net.name) + ".py"
    if stem[0].isdigit():
        stem = f"net_{stem}"
    return _shadow_free(stem[:100]) + ".py"


_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_file_stem(name: str) -> str | None:
    """Why `name` cannot be the stem of an output file (`compile --name`), or None: letters,
    digits, `_`, `-` and `.`, not first, at most 100 characters, so that it names a file in
    the output directory and nothing else (no separators, no `..`, no hidden file).

    >>> [check_file_stem(n) for n in ("resnet18", "net-v2.1")]
    [None, None]
    >>> check_file_stem("../x")
    "'../x' is not a safe file name: use letters, digits, _, - and . (not first), at most 100"
    """
    if _SAFE_STEM.fullmatch(name) and not name.endswith("."):
        return None
    return (f"{name!r} is not a safe file name: use letters, digits, _, - and . (not first), "
            f"at most 100")


def load_module(net: Network):
    """Render the network, execute the checked source in a fresh module and return an
    instance of the network class (freshly initialised weights, training mode as nn.Module's
    default). Raises MemoryBudgetError, before allocating, when its parameters and an
    activation at batch 1 would not fit in the memory available."""
    require("torch", "torch", "archgen's PyTorch target")
    from .budget import check_memory
    check_memory(net, "module")
    source, tree = _render(net)
    # A stable, unique module name registered in sys.modules: pickle and copy.deepcopy find
    # the classes by `__module__` and `__qualname__`; the same source reuses its module.
    name = f"archgen_generated.{_module_name(net.name)}_" \
        f"{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    module = sys.modules.get(name)
    if module is None:
        filename = f"<archgen {_module_name(net.name)}.py>"
        module = types.ModuleType(name)
        module.__file__ = filename
        # tracebacks through the generated code show its lines
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(tree, filename, "exec")  # the tree verify_python checked, not the text
        exec(code, module.__dict__)  # noqa: S102  (checked to hold only archgen's structure)
        sys.modules.setdefault("archgen_generated", types.ModuleType("archgen_generated"))
        sys.modules[name] = module
    return getattr(module, net.name)()


# -- the render model --------------------------------------------------------------------------

@dataclass
class ClassModel:
    """One generated class: its docstring lines (with quotes) and method bodies, each line
    relative to its block's indentation."""

    name: str
    doc: list[str]
    init: list[str]
    forward: list[str]


@dataclass
class FileModel:
    summary: str  # the module docstring's first line
    details: list[str]  # and the lines after it
    imports: list[str]
    helpers: list[str]  # templates of helper classes
    classes: list[ClassModel]


# -- expressions that lay themselves out as ruff format would ------------------------------------

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


def _flat(expr: Expr) -> str:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, Sum):
        return " + ".join(expr.terms)
    inner = ", ".join(a.head + _flat(a.expr) for a in expr.args)
    return f"{expr.func}{expr.brackets[0]}{inner}{expr.brackets[1]}"


def _forced(expr: Expr) -> bool:
    """Whether a trailing comma inside keeps `expr` exploded whatever the width."""
    return isinstance(expr, Call) and bool(expr.args) and (
        expr.explode or any(_forced(a.expr) for a in expr.args))


def _layout(item: Item, indent: int, width: int, tail: str = "") -> list[str]:
    pad = " " * indent
    comment = _comment(item.nodes)
    above = [f"{pad}# {comment}"] if comment else []

    def with_comment(code: str) -> list[str]:
        """`code  # comment` if that fits, else the comment on a line of its own above (ruff
        would wrap the code, or parenthesise it, to make room for a trailing comment)."""
        if comment and indent + len(code) + 4 + len(comment) <= width:
            return [f"{pad}{code}  # {comment}"]
        return above + [pad + code]

    expr = item.expr
    flat = item.head + _flat(expr) + tail
    if not _forced(expr) and indent + len(flat) <= width:
        return with_comment(flat)
    assignment = item.head.endswith(" = ")
    opening = f"{item.head}{expr.func}{expr.brackets[0]}" if isinstance(expr, Call) else ""
    if isinstance(expr, Call) and expr.args and (
            not assignment or indent + len(opening) <= width):
        lines = with_comment(opening)  # split the call's own brackets
        for arg in expr.args:
            lines += _layout(arg, indent + 4, width, ",")
        return lines + [f"{pad}{expr.brackets[1]}{tail}"]
    if assignment:  # ruff parenthesises a value whose own brackets cannot split in time
        inner = _layout(Item(expr), indent + 4, width)
        return above + [f"{pad}{item.head}("] + inner + [f"{pad}){tail}"]
    if isinstance(expr, Sum):  # inside those parentheses: one term per line
        return above + [pad + expr.terms[0]] + [f"{pad}+ {t}" for t in expr.terms[1:]]
    return above + [pad + flat]  # nothing to split


def _key(item: Item) -> tuple:
    """The code of an item without its comments: equal keys, equal code."""
    expr = item.expr
    if isinstance(expr, Call):
        return (item.head, expr.func, expr.explode, expr.brackets,
                tuple(_key(a) for a in expr.args))
    if isinstance(expr, Sum):
        return (item.head, "+", tuple(expr.terms))
    return (item.head, expr)


def _absorb(into: Item, other: Item) -> None:
    """Add the nodes of `other` (same code) to the comments of `into`."""
    into.nodes += other.nodes
    if isinstance(into.expr, Call):
        for a, b in zip(into.expr.args, other.expr.args):
            _absorb(a, b)


# -- comments and docstrings ---------------------------------------------------------------------

def _comment(nodes: list[Node]) -> str:
    """`conv_block(16) -> [N, 16, 32, 32]  (line 11)`; over several instances of a shared
    class, dimensions that differ show as ?."""
    if not nodes:
        return ""
    labels = _unique(n.label for n in nodes if isinstance(n, Seq) and n.block)
    label = f"{labels[0]} " if len(labels) == 1 else ""
    return py_comment_text(f"{label}-> {_shape([n.out_shape for n in nodes])}  "
                           f"({_lines([n.span.line for n in nodes])})")


def _shape(shapes: list[tuple[int, ...]]) -> str:
    if len({len(s) for s in shapes}) > 1:
        return "[N, ...]"
    dims = [str(d[0]) if len(set(d)) == 1 else "?" for d in zip(*shapes)]
    return "[" + ", ".join(["N", *dims]) + "]"


def _lines(numbers: list[int]) -> str:
    found = sorted(set(numbers))
    if len(found) == 1:
        return f"line {found[0]}"
    shown = ", ".join(map(str, found[:MAX_LISTED]))
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    return f"lines {shown}{more}"


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _class_doc(text: str) -> list[str]:
    """A one-line docstring showing `text`, on one line whatever its length: ruff format keeps
    a one-line docstring's closing quotes on its line (and joins them back if they are not)."""
    return [f'"""{py_docstring_text(text)}"""']


# -- values ------------------------------------------------------------------------------------

def _collapse(v: Any) -> Any:
    """A pair or quadruple of equal values as the single value PyTorch accepts for it."""
    if isinstance(v, tuple) and len(v) in (2, 4) and len(set(v)) == 1:
        return v[0]
    return v


def _is_default(value: Any, default: Any) -> bool:
    """PyTorch's default, told apart from equal values of another type (True == 1)."""
    return (default is not REQUIRED and value == default
            and isinstance(value, bool) == isinstance(default, bool))


def _args(layer: Layer, positional: int = 0, skip: tuple[str, ...] = ()) -> list[Item]:
    """The layer's arguments in PyTorch's order, defaults left out; the first `positional`
    ones positional, as people write them, until one of them is left out."""
    out = []
    keyword_from = positional
    for i, p in enumerate(layer.kind.params):
        value = layer.args.get(p.name, p.default)
        if p.name in skip or _is_default(value, p.default):
            keyword_from = min(keyword_from, i)
            continue
        text = py_literal(_collapse(value))
        out.append(Item(text) if i < keyword_from else Item(text, f"{p.name}="))
    return out


# -- one conversion per layer kind -------------------------------------------------------------

def _generic(positional: int) -> Callable[[Layer], Call]:
    def lower(layer: Layer) -> Call:
        return Call(layer.kind.torch_class, _args(layer, positional))
    return lower


def _conv2d(layer: Layer) -> Call:
    if Conv2d.same_stride(layer.args):  # PyTorch refuses it: SAME_UPPER through the helper
        return Call("Conv2dSame", _args(layer, 2, skip=("padding",)))
    return Call("nn.Conv2d", _args(layer, 2))


def _pool(layer: Layer) -> Call:
    a = layer.args
    skip = ("stride",) if a["stride"] == a["kernel_size"] else ()  # PyTorch's default
    return Call(layer.kind.torch_class, _args(layer, 1, skip))


_PAD_CLASSES = {"reflect": "nn.ReflectionPad2d", "replicate": "nn.ReplicationPad2d",
                "circular": "nn.CircularPad2d"}


def _pad2d(layer: Layer) -> Call:
    a = layer.args
    padding = Item(py_literal(_collapse(a["padding"])))
    if a["mode"] != "zeros":
        return Call(_PAD_CLASSES[a["mode"]], [padding])
    if a["value"] != 0.0:
        return Call("nn.ConstantPad2d", [padding, Item(py_literal(a["value"]))])
    return Call("nn.ZeroPad2d", [padding])


_LOWER: dict[str, Callable[[Layer], Call]] = {
    "conv2d": _conv2d,
    "conv_transpose2d": _generic(2),
    "linear": _generic(2),
    "batchnorm2d": _generic(1),
    "maxpool2d": _pool,
    "avgpool2d": _pool,
    "adaptive_avgpool2d": _generic(1),
    "adaptive_maxpool2d": _generic(1),
    "dropout": _generic(1),
    "dropout2d": _generic(1),
    "leaky_relu": _generic(1),
    "pad2d": _pad2d,
}


def layer_call(layer: Layer) -> Call:
    """The constructor call of one layer: nn.Conv2d(3, 16, kernel_size=3, padding=1)."""
    return _LOWER.get(layer.op, _generic(0))(layer)


# -- lowering ----------------------------------------------------------------------------------

@dataclass
class _Draft:
    name: str
    init: list[Item]
    forward: list[Item]
    instances: list[Seq]


class _Lowering:
    def __init__(self, net: Network):
        self.net = net
        self.drafts: dict[tuple, _Draft] = {}  # (base name, code) -> class, in post-order
        self.helpers: set[str] = set()
        self.taken = set(RESERVED_GLOBALS) | set(HELPERS) | {net.name}

    def root(self) -> _Draft:
        init, forward = self.body(self.net.root)
        return _Draft(self.net.name, init, forward, [self.net.root])

    # A class-style module: attributes in forward order, then the forward written out.
    def body(self, seq: Seq) -> tuple[list[Item], list[Item]]:
        found, _ = members(seq)
        init = [Item(self.construct(m), f"self.{self.attr(m)} = ", [m]) for m in found]
        forward: list[Item] = []
        result = self.flow(seq.items, "x", "x", forward, _Fresh())
        forward.append(Item(result, "return "))
        return init, forward

    def klass(self, seq: Seq) -> str:
        init, forward = self.body(seq)
        base = _camel(seq.block or seq.name or seq.label)
        key = (base, tuple(map(_key, init)), tuple(map(_key, forward)))
        draft = self.drafts.get(key)
        if draft is None:
            draft = self.drafts[key] = _Draft(self.new_name(base), init, forward, [seq])
        else:
            for a, b in zip(draft.init + draft.forward, init + forward):
                _absorb(a, b)
            draft.instances.append(seq)
        return draft.name

    def construct(self, node: Node) -> Expr:
        if isinstance(node, Layer):
            call = layer_call(node)
            if call.func in HELPERS:
                self.helpers.add(call.func)
            return call
        if node.style == "sequential":
            found, _ = members(node)
            return Call("nn.Sequential", [Item(self.construct(m), "", [m]) for m in found],
                        explode=True)
        return Call(self.klass(node))

    def flow(self, items: list[Node], src: str, dst: str, out: list[Item], fresh: _Fresh) -> str:
        """Statements applying `items` to the variable `src`, writing to `dst`; returns the
        variable holding the result (`src` when there is nothing to apply). A merge's input
        is never overwritten before every branch has read it: branches write fresh variables."""
        cur = src
        for node in items:
            if isinstance(node, Layer) or (isinstance(node, Seq) and node.module):
                call = Call(f"self.{self.attr(node)}", [Item(cur)])
                out.append(Item(call, f"{dst} = ", [node]))
                cur = dst
            elif isinstance(node, Seq):  # an anonymous branch: its layers belong to this module
                cur = self.flow(node.items, cur, dst, out, fresh)
            elif isinstance(node, Merge) and len(node.branches) == 1:  # no merging to do
                cur = self.flow(node.branches, cur, dst, out, fresh)
            elif isinstance(node, Merge):
                results = []
                for branch in node.branches:
                    if _passes_through(branch):
                        results.append(cur)
                    else:
                        results.append(self.flow([branch], cur, fresh(), out, fresh))
                if node.mode == "add":
                    combined: Expr = Sum(results)
                else:
                    joined = Call("", [Item(r) for r in results], brackets="[]")
                    combined = Call("torch.cat", [Item(joined), Item("1", "dim=")])
                out.append(Item(combined, f"{dst} = ", [node]))
                cur = dst
        return cur

    def attr(self, node: Node) -> str:
        name = node.attr or ""
        problem = check_name(name, kind="layer")
        if problem:
            raise _name_error(self.net, node.span, f"the name {name!r} {problem}",
                              "rename it; a lower-case identifier such as conv1 is safe")
        return name

    def new_name(self, base: str) -> str:
        n, name = 1, base
        while name in self.taken or keyword.iskeyword(name) or hasattr(builtins, name):
            n += 1
            name = f"{base}{n}"
        self.taken.add(name)
        return name


class _Fresh:
    """Local variables of one forward: x1, x2, ..."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"x{self.n}"


def _passes_through(branch: Seq) -> bool:
    """A branch with nothing in it (an `if` that chose nothing) hands on its input."""
    return not branch.module and all(isinstance(i, Seq) and _passes_through(i)
                                     for i in branch.items)


def _camel(name: str) -> str:
    """conv_block -> ConvBlock."""
    camel = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    return camel if camel.isidentifier() else f"Block{camel}"


def _module_name(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return _shadow_free(snake)


def _shadow_free(stem: str) -> str:
    if keyword.iskeyword(stem) or stem in sys.stdlib_module_names or \
            stem in ("torch", "archgen", "archgen_generated"):
        stem += "_net"
    return stem


def _name_error(net: Network, span: Span, message: str, help_: str) -> SpecError:
    diag = Diagnostic("error", "E204", message, span, helps=[help_])
    return SpecError([diag], {net.file: net.source})


def _network_span(net: Network) -> Span:
    """Where the spec names the network (the IR keeps no span for it)."""
    for number, line in enumerate(net.source.splitlines(), start=1):
        found = re.match(r"\s*network\s+(\w+)", line)
        if found and found.group(1) == net.name:
            return Span(net.file, number, found.start(1) + 1, found.end(1) + 1)
    return Span(net.file, 1, 1, 2)


def _check_network_name(net: Network) -> None:
    problem = check_name(net.name, kind="network")
    if problem is None and hasattr(builtins, net.name):
        problem = "would shadow the Python builtin of that name in the generated file"
    if problem:
        raise _name_error(net, _network_span(net), f"network name {net.name!r} {problem}",
                          "choose a CamelCase name such as MyNet")


def _lower(net: Network, command: str) -> FileModel:
    _check_network_name(net)
    lowering = _Lowering(net)
    root = lowering.root()
    classes = [*lowering.drafts.values(), root]
    models = [ClassModel(d.name, _class_doc(_describe(net, d, d is root)),
                         _body_lines(d.init), _body_lines(d.forward)) for d in classes]
    helpers = sorted(lowering.helpers)
    imports = ["import torch", "from torch import nn"]
    imports += sorted({line for h in helpers for line in HELPERS[h].imports})
    doc = [
        f"{net.name}: a PyTorch module generated by archgen from {net.file}.",
        "",
        f"Input:      {_shape([net.input_shape])}",
        f"Output:     {_shape([net.output_shape])}",
        f"Parameters: {net.total_params:,}",
        f"MACs:       {net.total_macs:,} per sample",
        "",
        f"Regenerate with: {command}",
        "(edits by hand are lost when it is regenerated)",
    ]
    summary, *details = [py_docstring_text(line) for line in doc]
    return FileModel(summary, details, imports, [HELPERS[h].template for h in helpers], models)


def _describe(net: Network, draft: _Draft, is_root: bool) -> str:
    if is_root:
        return f"{net.name}: {_shape([net.input_shape])} -> {_shape([net.output_shape])}."
    first = draft.instances[0]
    labels = _unique(s.label for s in draft.instances)
    shown = ", ".join(labels[:MAX_LISTED]) + (
        f" and {len(labels) - MAX_LISTED} more" if len(labels) > MAX_LISTED else "")
    what = f"Block {shown}" if first.block else f"Group {shown}"
    return f"{what} ({_lines([s.span.line for s in draft.instances])})."


def _body_lines(items: list[Item]) -> list[str]:
    lines: list[str] = []
    for item in items:
        lines += _layout(item, 0, WIDTH - BODY_INDENT)
    return lines


# -- templates ---------------------------------------------------------------------------------

@functools.cache
def _environment():
    return environment("torch", keep_trailing_newline=True)


# -- what a generated file may contain ----------------------------------------------------------

PYTHON_SHAPE = PythonShape(
    imports=frozenset({"import torch", "from torch import nn",
                       *(line for h in HELPERS.values() for line in h.imports)}),
    bases=frozenset({"nn.Module", *(h.base for h in HELPERS.values())}),
    methods=frozenset({"__init__", "forward"}),
    calls=frozenset({"nn.Sequential", "nn.ConstantPad2d", "torch.cat", *_PAD_CLASSES.values(),
                     *(k.torch_class for k in REGISTRY.values()),
                     *(c for h in HELPERS.values() for c in h.calls if "." in c)}),
    attributes=frozenset({"torch.Tensor"}),
    builtins=frozenset({"super", "float", "list", "int", *(c for h in HELPERS.values() for c in h.calls
                                            if "." not in c)}),
)
