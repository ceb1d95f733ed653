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
import gc
import hashlib
import itertools
import keyword
import linecache
import re
import shlex
import sys
import types
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from . import syntax as sx
from .diagnostics import Diagnostic, Span, SpecError
from .extras import require
from .ir import Layer, Merge, Network, Node, Seq, children, walk
from .layers import REGISTRY
from .layers.base import LayerError, coerce
from .naming import RESERVED_GLOBALS, check_name, members, unique_name
from .quoting import PythonShape, py_comment_text, py_docstring_text, py_literal, verify_python
from .torch_calls import VARIES as _VARIES
from .torch_calls import Call, Expr, Exprs, Helper, Item, Sum
from .torch_calls import collapse as _collapse
from .templating import environment

WIDTH = 88  # ruff format's default line length
BODY_INDENT = 8  # a method body
MAX_LISTED = 4  # line numbers listed in one comment
MAX_SEQUENTIAL_DEPTH = 4  # nn.Sequential( levels a loop of block calls may sit in, for its width


HELPERS = {
    "Conv2dSame": Helper("conv2d_same.py.j2", ("from torch.nn import functional as F",),
                         "nn.Conv2d", ("F.pad", "F.conv2d", "max")),
    **{name: h for kind in REGISTRY.values() for name, h in kind.torch_helpers.items()},
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
    enabled = gc.isenabled()
    gc.disable()  # the render model grows with the network: the collector would rescan it
    try:  # (lowering 100,000 layers took 13x the time of 10,000 with it, 10x without)
        model = _lower(net, command or f"archgen compile {shlex.quote(net.file)}")
        source = _environment().get_template("module.py.j2").render(model=model)
    finally:
        if enabled:
            gc.enable()
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
    # symbolic sizes (`input [3, H, W]`): the estimate at the representative sizes
    check_memory(net.sample if net.symbols and net.sample is not None else net, "module")
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
    base: str
    doc: list[str]
    signature: list[str]  # `def __init__(...) -> None:`, laid out
    init: list[str]
    forward: list[str]  # none: nn.Sequential's
    # `def forward(self, x: torch.Tensor) -> torch.Tensor:`, laid out; more parameters for
    # the values `from` branches inside read, a tuple for several outputs
    forward_signature: list[str] = field(default_factory=lambda: _forward_signature())


@dataclass
class FileModel:
    summary: str  # the module docstring's first line
    details: list[str]  # and the lines after it
    imports: list[str]
    helpers: list[str]  # templates of helper classes
    classes: list[ClassModel]


# -- expressions that lay themselves out as ruff format would ------------------------------------

@dataclass
class _Product(Sum):
    """A mul's branches multiplied: `x1 * x2` (a Sum's terms with another operator)."""


def _operator(expr: Sum) -> str:
    return "*" if isinstance(expr, _Product) else "+"


def _flat(expr: Expr) -> str:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, Sum):
        return f" {_operator(expr)} ".join(expr.terms)
    inner = ", ".join(a.head + _flat(a.expr) for a in expr.args)
    return f"{expr.func}{expr.brackets[0]}{inner}{expr.brackets[1]}"


def _forced(expr: Expr) -> bool:
    """Whether a trailing comma inside keeps `expr` exploded whatever the width."""
    return isinstance(expr, Call) and bool(expr.args) and (
        expr.explode or any(_forced(a.expr) for a in expr.args))


def _layout(item: Item, indent: int, width: int, tail: str = "") -> list[str]:
    pad = " " * indent
    comment = _comment(item.nodes, item.channels)
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
        return above + [pad + expr.terms[0]] + [f"{pad}{_operator(expr)} {t}"
                                                for t in expr.terms[1:]]
    return above + [pad + flat]  # nothing to split


def _key(item: Item | _If) -> tuple:
    """The code of an item without its comments: equal keys, equal code."""
    if isinstance(item, _If):
        return tuple((header, tuple(map(_key, body))) for header, body in item.clauses)
    expr = item.expr
    if isinstance(expr, Call):
        return (item.head, expr.func, expr.explode, expr.brackets,
                tuple(_key(a) for a in expr.args))
    if isinstance(expr, Sum):
        return (item.head, _operator(expr), tuple(expr.terms))
    return (item.head, expr)


def _absorb(into: Item | _If, other: Item | _If) -> None:
    """Add the nodes of `other` (same code) to the comments of `into`."""
    if isinstance(into, _If):
        for (_, a), (_, b) in zip(into.clauses, other.clauses):
            for x, y in zip(a, b):
                _absorb(x, y)
        return
    into.nodes += other.nodes
    if isinstance(into.expr, Call):
        for a, b in zip(into.expr.args, other.expr.args):
            _absorb(a, b)


# -- comments and docstrings ---------------------------------------------------------------------

def _comment(nodes: list[Node], channels: str | None = None) -> str:
    """`conv_block(16) -> [N, 16, 32, 32]  (line 11)`; over several instances of a shared
    class, dimensions that differ show as ?, and in a block's class the channels as the
    expression of its arguments that gives them (`-> [N, planes, ?, ?]`)."""
    if not nodes:
        return ""
    labels = _unique(n.label for n in nodes if isinstance(n, Seq) and n.block)
    label = f"{labels[0]} " if len(labels) == 1 and channels is None else ""
    shape = _shape([n.out_shape for n in nodes])
    if channels is not None and shape.startswith("[N, ?"):
        shape = f"[N, {channels}{shape[5:]}"
    return py_comment_text(f"{label}-> {shape}  ({_lines([n.span.line for n in nodes])})")


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


# -- one conversion per layer kind ----------------------------------------------------------------

def layer_call(layer: Layer, exprs: Exprs | None = None) -> Call:
    """The constructor call of one layer, as its kind lowers it: nn.Conv2d(3, 16,
    kernel_size=3, padding=1); with `exprs`, some arguments as expressions: nn.Conv2d(
    in_channels, planes, ...)."""
    return layer.kind.lower_torch(layer, exprs)


# -- one class per block definition ------------------------------------------------------------
#
# A block becomes one class parameterised by its arguments and the input sizes it uses, written
# from the block's definition (its `if`s become Python) with every size an expression of the
# constructor's arguments. Every instance in the network checks the class: each argument
# expression, evaluated with that instance's arguments, gives the instance's checked value, and
# the instance's layers, names and shapes are the ones the class builds for those arguments.
# A block that cannot be written so (a repeat inside it, an `if` branch no instance takes,
# names that change with the arguments) keeps one class per distinct structure.

_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4,
               ">=": 4, "+": 5, "-": 5, "*": 6, "//": 6, "%": 6}
_WORDS = {"true": True, "false": False, "none": None, "True": True, "False": False,
          "None": None}
_SIZES = ("in_channels", "in_height", "in_width", "in_features")


class _NotGeneric(Exception):
    """The block cannot be written as one class for all its instances."""


_FUNCTIONS = {"max": max, "min": min}  # the functions a spec expression may call


def _py(e: sx.Expr, names: frozenset[str], used: set[str], outer: int = 0) -> str:
    """A spec expression as Python over the constructor's `names` (recorded in `used`)."""
    if isinstance(e, (sx.Num, sx.Str)):
        return py_literal(e.value)
    if isinstance(e, sx.Word):
        if e.name in names:
            used.add(e.name)
            return e.name
        return py_literal(_WORDS[e.name]) if e.name in _WORDS else py_literal(e.name)
    if isinstance(e, sx.TupleExpr):
        return py_literal(tuple(_Raw(_py(i, names, used)) for i in e.items))
    if isinstance(e, sx.FuncCall) and e.func in _FUNCTIONS:  # max(8, c // 4): Python's own
        return f"{e.func}({', '.join(_py(i, names, used) for i in e.items)})"
    if isinstance(e, sx.UnaryOp):
        if e.op == "not":
            text, p = f"not {_py(e.operand, names, used, 3)}", 3
        else:
            text, p = f"{e.op}{_py(e.operand, names, used, 7)}", 7
    elif isinstance(e, sx.BinOp) and e.op in _PRECEDENCE:
        p = _PRECEDENCE[e.op]
        left = _py(e.left, names, used, p + (p == 4))  # comparisons do not chain
        text = f"{left} {e.op} {_py(e.right, names, used, p + 1)}"
    else:  # `/` is exact in the spec and a float in Python
        raise _NotGeneric(f"expression {type(e).__name__}")
    return f"({text})" if p < outer else text


class _Raw(str):
    """Python text that py_literal writes as it is (a tuple of expressions)."""

    def __repr__(self) -> str:
        return str(self)


def _ev(e: sx.Expr, env: dict) -> Any:
    """A spec expression's value, as the checker computes it."""
    if isinstance(e, (sx.Num, sx.Str)):
        return e.value
    if isinstance(e, sx.Word):
        return env[e.name] if e.name in env else _WORDS.get(e.name, e.name)
    if isinstance(e, sx.TupleExpr):
        return tuple(_ev(i, env) for i in e.items)
    if isinstance(e, sx.FuncCall) and e.func in _FUNCTIONS:
        return _FUNCTIONS[e.func](_ev(i, env) for i in e.items)
    if isinstance(e, sx.UnaryOp):
        v = _ev(e.operand, env)
        return (not v) if e.op == "not" else (-v if e.op == "-" else v)
    if isinstance(e, sx.BinOp):
        left = _ev(e.left, env)
        if e.op in ("and", "or"):
            return (left and _ev(e.right, env)) if e.op == "and" else \
                (left or _ev(e.right, env))
        right = _ev(e.right, env)
        ops = {"==": lambda: left == right, "!=": lambda: left != right,
               "<": lambda: left < right, "<=": lambda: left <= right,
               ">": lambda: left > right, ">=": lambda: left >= right,
               "+": lambda: left + right, "-": lambda: left - right,
               "*": lambda: left * right, "//": lambda: left // right,
               "%": lambda: left % right}
        if e.op in ops:
            return ops[e.op]()
    raise _NotGeneric(f"expression {type(e).__name__}")


def _value(e: sx.Expr, env: dict) -> Any:
    try:
        return _ev(e, env)
    except _NotGeneric:
        raise
    except Exception as err:  # noqa: BLE001  (any failure: the class would not be exact)
        raise _NotGeneric(f"evaluating: {err}") from None


def _subst(e: sx.Expr | None, mapping: dict[str, sx.Expr]) -> sx.Expr | None:
    """`e` with the names of `mapping` replaced by their expressions."""
    if e is None:
        return None
    if isinstance(e, sx.Word):
        return mapping.get(e.name, e)
    if isinstance(e, sx.BinOp):
        return sx.BinOp(e.span, e.op, _subst(e.left, mapping), _subst(e.right, mapping))
    if isinstance(e, sx.UnaryOp):
        return sx.UnaryOp(e.span, e.op, _subst(e.operand, mapping))
    if isinstance(e, sx.TupleExpr):
        return sx.TupleExpr(e.span, [_subst(i, mapping) for i in e.items])
    if isinstance(e, sx.FuncCall):
        return sx.FuncCall(e.span, e.func, [_subst(i, mapping) for i in e.items], e.func_span)
    return e


def _constant(e: sx.Expr, names: frozenset[str]) -> bool:
    """Whether `e` uses none of `names` (other words are enumeration values: `zeros`)."""
    return not any(isinstance(n, sx.Word) and n.name in names for n in _sub_exprs(e))


def _sub_exprs(e: sx.Expr):
    yield e
    for child in (getattr(e, "left", None), getattr(e, "right", None),
                  getattr(e, "operand", None), *getattr(e, "items", ())):
        if child is not None:
            yield from _sub_exprs(child)


def _same(a: Any, b: Any) -> bool:
    return _collapse(a) == _collapse(b) and isinstance(a, bool) == isinstance(b, bool)


def _key_of(span: Span) -> tuple[int, int]:
    return (span.line, span.column)


def _nodes_by_span(seq: Seq) -> dict[tuple[int, int], Node]:
    """The nodes of one block instance by the place of the statement that made them, not
    looking inside the block instances it holds."""
    found: dict[tuple[int, int], Node] = {}

    def visit(node: Node) -> None:
        for child in children(node):
            if not (isinstance(child, Seq) and not child.module):  # not an anonymous branch
                found.setdefault(_key_of(child.span), child)
            if not (isinstance(child, Seq) and child.block):
                visit(child)
    visit(seq)
    return found


@dataclass
class _If:
    """`if` / `elif` / `else` in a method body: (header, body) pairs; also a `for` loop, one
    pair."""

    clauses: list[tuple[str, list]]


@dataclass
class _BlockClass:
    name: str
    base: str
    signature: list[str]  # `name: type = default` after self
    params: list[str]
    defaults: dict[str, Any]  # constant defaults, by value
    computed: dict[str, sx.Expr]  # defaults computed from other arguments
    init: list
    forward: list
    out: sx.Expr | None  # output channels (features) over `params`
    instances: list[Seq]
    spec_signature: str  # the block's parameters as the spec writes them


class _Walk:
    """One pass over a block's definition for all its instances at once."""

    def __init__(self, lowering: _Lowering, block: sx.BlockDef, instances: list[Seq]):
        self.low = lowering
        self.block = block
        self.instances = instances
        self.envs = [seq.args for seq in instances]
        self.found = [_nodes_by_span(seq) for seq in instances]
        self.style = _unique(seq.style for seq in instances)
        if len(self.style) != 1:
            raise _NotGeneric("instances of different styles")
        self.sequential = self.style[0] == "sequential"
        for p in block.params:  # a parameter must not hide a name the class itself uses
            if not p.name.isidentifier() or p.name.startswith("_") or keyword.iskeyword(
                    p.name) or keyword.issoftkeyword(p.name) or hasattr(builtins, p.name) or \
                    p.name in RESERVED_GLOBALS or p.name in ("self", "layers", "i"):
                raise _NotGeneric(f"the parameter name {p.name}")
        self.names = frozenset({*(p.name for p in block.params),
                                *(n for n in _SIZES if n in self.envs[0])})
        self.used: set[str] = set()
        self.channels = [env.get("in_channels", env.get("in_features")) for env in self.envs]
        self.attrs: list[str] = []  # module attributes, in order
        self.fresh = _Fresh()

    def py(self, e: sx.Expr) -> str:
        return _py(e, self.names, self.used)

    def nodes(self, stmt: sx.Stmt, active: list[int], kind: type) -> list:
        nodes = [self.found[i].get(_key_of(stmt.span)) for i in active]
        if not all(isinstance(n, kind) for n in nodes):
            raise _NotGeneric(f"line {stmt.span.line}: instances differ")
        return nodes

    def shown(self, c: sx.Expr | None, active: list[int]) -> str:
        """The channels a comment shows: `c`, the size that the next layer reads as its
        features, where it is the channel axis's size for every instance; else ? (after
        permute(1, 2, 0) the features are the last axis: `c` goes on, for linear's
        in_features, whose value every instance checks where it is used)."""
        if c is None or any(not _same(_value(c, self.envs[i]), self.channels[i])
                            for i in active):
            return "?"
        return self.py(c)

    # -- statements: init items (and forward items for a class-style block) -----------------
    def body(self, stmts: list[sx.Stmt], active: list[int], c: sx.Expr | None, cur: str,
             dst: str, init: list, forward: list) -> tuple[sx.Expr | None, str]:
        for stmt in stmts:
            c, cur = self.statement(stmt, active, c, cur, dst, init, forward)
        return c, cur

    def statement(self, stmt, active, c, cur, dst, init, forward):
        if isinstance(stmt, sx.Call) and stmt.func in self.low.net.blocks:
            nodes = self.nodes(stmt, active, Seq)
            expr, c = self.block_call(stmt, nodes, active, c)
        elif isinstance(stmt, sx.Call):
            nodes = self.nodes(stmt, active, Layer)
            expr, c = self.layer(stmt, nodes, active, c)
        elif isinstance(stmt, sx.Group) and stmt.name is None:  # a branch: this module's
            return self.body(stmt.body, active, c, cur, dst, init, forward)
        elif isinstance(stmt, sx.Group):
            nodes = self.nodes(stmt, active, Seq)
            if any(n.style != "sequential" for n in nodes):
                raise _NotGeneric("a named group of named layers")
            items: list = []
            self.grouped += 1
            try:
                c, _ = self.body(stmt.body, active, c, "", "", items, [])
            finally:
                self.grouped -= 1
            if any(isinstance(i, _If) for i in items):
                raise _NotGeneric("an if inside a group")
            expr = Call("nn.Sequential", items, explode=True)
        elif isinstance(stmt, sx.Merge):
            return self.merge(stmt, active, c, cur, dst, init, forward)
        elif isinstance(stmt, sx.If):
            return self.choice(stmt, active, c, cur, dst, init, forward)
        else:
            raise _NotGeneric(type(stmt).__name__)
        for i, node in zip(active, nodes):
            self.channels[i] = node.out_shape[0] if node.out_shape else None
        shown = self.shown(c, active)
        if self.grouped:  # a member of a group's nn.Sequential
            init.append(Item(expr, "", nodes, shown))
            return c, cur
        if self.sequential:  # a member of the block, itself an nn.Sequential
            init.append(Item(Call("layers.append", [Item(expr)]), "", nodes, shown)
                        if self.lists else Item(expr, "", nodes, shown))
            return c, cur
        attrs = _unique(n.attr for n in nodes)
        if len(attrs) != 1:
            raise _NotGeneric("names that change with the arguments")
        if not attrs[0].isidentifier():
            raise _NotGeneric("a name with '-'")
        self.attrs.append(attrs[0])
        init.append(Item(expr, f"self.{attrs[0]} = ", nodes, shown))
        apply = nodes[0].kind.torch_forward(f"self.{attrs[0]}", cur) \
            if isinstance(nodes[0], Layer) else Call(f"self.{attrs[0]}", [Item(cur)])
        if apply == cur:  # identity: the value itself, no statement
            return c, cur
        forward.append(Item(apply, f"{dst} = ", nodes, shown))
        return c, dst

    lists = False  # a sequential block with an `if`: members appended to a list
    grouped = 0  # inside a named group (an nn.Sequential of its own)

    def layer(self, stmt: sx.Call, nodes: list[Layer], active: list[int], c):
        kind = nodes[0].kind
        written = self.bind(stmt, [p.name for p in kind.positional], {p.name for p in kind.params},
                            kind.variadic)
        schema = {p.name: p for p in kind.params}
        exprs: Exprs = {}
        for name, e in written.items():
            for i, node in zip(active, nodes):
                try:
                    got = coerce(schema[name], _value(e, self.envs[i]))
                except LayerError:
                    raise _NotGeneric("a value the layer normalises") from None
                if not _same(got, node.args[name]):
                    raise _NotGeneric(f"line {stmt.span.line}: {name}")
            exprs[name] = (self.py(e), coerce(schema[name], _ev(e, {}))
                           if _constant(e, self.names) else _VARIES)
        inferred = kind.inferred
        if inferred is not None and inferred.name not in written:
            if c is None:
                raise _NotGeneric("an inferred size after flatten")
            for i, node in zip(active, nodes):
                if not _same(_value(c, self.envs[i]), node.args[inferred.name]):
                    raise _NotGeneric("inferred size")
            exprs[inferred.name] = (self.py(c), _VARIES)
        call = layer_call(nodes[0], exprs)
        if len({_key(Item(layer_call(n, exprs))) for n in nodes}) != 1:
            raise _NotGeneric(f"line {stmt.span.line}: lowered differently")
        if call.func in HELPERS:
            self.low.helpers.add(call.func)
        return call, kind.channels_expr(written, c)

    def bind(self, stmt: sx.Call, positional: list[str], allowed,
             variadic: str | None = None) -> dict[str, sx.Expr]:
        written: dict[str, sx.Expr] = {}
        overrides = getattr(stmt, "overrides", set())
        args = stmt.args
        values = [a.value for a in args if a.name is None]
        if variadic and len(values) > 1:  # permute(1, 2, 0): dims=(1, 2, 0)
            args = [sx.Arg(None, sx.TupleExpr(stmt.span, values), stmt.span)] + \
                [a for a in args if a.name is not None]
        for n, arg in enumerate(args):
            name = arg.name if arg.name is not None else (
                positional[n] if n < len(positional) else None)
            if name is None or name not in allowed or (name in written and
                                                       name not in overrides):
                raise _NotGeneric("arguments bound as PyTorch reads them")
            written[name] = arg.value
        return written

    def block_call(self, stmt: sx.Call, nodes: list[Seq], active: list[int], c):
        inner = self.low.block_class(stmt.func)
        if inner is None:
            raise _NotGeneric(f"block {stmt.func}")
        block = self.low.net.blocks[stmt.func]
        written = self.bind(stmt, [p.name for p in block.params], {p.name for p in block.params})
        mapping: dict[str, sx.Expr] = dict(written)
        items = []
        for name in inner.params:
            if name in _SIZES:
                if name != "in_channels" and name != "in_features" or c is None:
                    raise _NotGeneric(f"{name} of a block inside a block")
                mapping[name] = c
                items.append(Item(self.py(c)))
            elif name in written:
                keyword = name in inner.defaults or name in inner.computed
                items.append(Item(self.py(written[name]), f"{name}=" if keyword else ""))
            elif name in inner.computed:
                mapping[name] = _subst(inner.computed[name], mapping)
            else:
                mapping[name] = sx.Num(stmt.span, inner.defaults[name])
        for i, node in zip(active, nodes):
            for name, e in mapping.items():
                if not _same(_value(e, self.envs[i]), node.args[name]):
                    raise _NotGeneric(f"line {stmt.span.line}: {name}")
        return Call(inner.name, items), _subst(inner.out, mapping)

    def merge(self, stmt: sx.Merge, active, c, cur, dst, init, forward):
        if self.sequential:
            raise _NotGeneric("a merge in a sequential block")
        nodes = self.nodes(stmt, active, Merge)
        before = list(self.channels)
        results, outs, fresh = [], [], []
        for k, branch in enumerate(stmt.branches):
            if isinstance(branch, sx.Repeat):
                raise _NotGeneric("repeat in a merge")
            self.channels = [before[i] if i in active else ch
                             for i, ch in enumerate(self.channels)]
            var = self.fresh()
            out, result = self.body([branch], active, c, cur, var, init, forward)
            if result == cur:
                self.fresh.unused(var)
            results.append(result)
            outs.append(out)
            # a branch whose output its last layer allocated, in every instance, can take the
            # sum in place (torchvision's `out += identity`, `result += input`)
            fresh.append(result != cur and all(
                len(n.branches) == len(stmt.branches) and self.low.fresh(n.branches[k])
                for n in nodes))
        if stmt.mode == "add":
            combined: Expr = Sum(results)
            c = outs[0]
            into = next((r for r, ok in zip(results, fresh) if ok), None)
            if into is not None:  # torchvision's `out += identity`: no new tensor
                for i, node in zip(active, nodes):
                    self.channels[i] = node.out_shape[0]
                for k, other in enumerate(r for r in results if r != into):
                    forward.append(Item(other, f"{into} += ", [] if k else nodes,
                                        self.shown(c, active)))
                return c, into
        elif stmt.mode == "mul":  # a gate: its channels are those of a branch of full width
            combined = _Product(results)
            for i, node in zip(active, nodes):
                self.channels[i] = node.out_shape[0]
            c = next((o for o in outs if o is not None and all(
                _same(_value(o, self.envs[i]), self.channels[i]) for i in active)), None)
        else:
            joined = Call("", [Item(r) for r in results], brackets="[]")
            combined = Call("torch.cat", [Item(joined), Item("1", "dim=")])
            c = None if None in outs else outs[0]
            for o in outs[1:] if c is not None else ():
                c = sx.BinOp(stmt.span, "+", c, o)
        for i, node in zip(active, nodes):
            self.channels[i] = node.out_shape[0]
        forward.append(Item(combined, f"{dst} = ", nodes, self.shown(c, active)))
        return c, dst

    def choice(self, stmt: sx.If, active, c, cur, dst, init, forward):
        clauses: list[tuple[sx.Expr | None, list]] = []
        while True:  # an elif chain
            clauses.append((stmt.cond, stmt.body))
            if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], sx.If):
                stmt = stmt.orelse[0]
                continue
            clauses.append((None, stmt.orelse))
            break
        chosen: list[list[int]] = [[] for _ in clauses]
        for i in active:
            for n, (cond, _) in enumerate(clauses):
                truth = True if cond is None else _value(cond, self.envs[i])
                if not isinstance(truth, bool):
                    raise _NotGeneric("a condition")
                if truth:
                    chosen[n].append(i)
                    break
        before = list(self.channels)
        parts = []  # (condition text, init, forward, attrs, channels out, result)
        for (cond, body), subset in zip(clauses, chosen):
            if not subset:
                if body:
                    raise _NotGeneric("an if branch that no instance takes")
                parts.append((cond, [], [], [], c, cur))
                continue
            self.channels = [before[i] if i in subset else ch
                             for i, ch in enumerate(self.channels)]
            attrs_before = len(self.attrs)
            sub_init, sub_forward = [], []
            out, result = self.body(body, subset, c, cur, dst, sub_init, sub_forward)
            if result != dst and sub_forward:
                sub_forward.append(Item(result, f"{dst} = "))
                result = dst
            parts.append((cond, sub_init, sub_forward, self.attrs[attrs_before:], out, result))
        # the channels after the if: an expression right for every instance
        outs = [p[4] for p in parts]
        c = next((o for o in outs if o is not None and all(
            _same(_value(o, self.envs[i]), self.channels[i]) for i in active)), None)
        if c is None and any(o is not None for o in outs):
            raise _NotGeneric("channels after an if")
        every = _unique(a for p in parts for a in p[3])
        init_clauses, forward_clauses = [], []
        for n, (cond, sub_init, _, attrs, _, _) in enumerate(parts):
            absent = [Item("None", f"self.{a} = ") for a in every if a not in attrs]
            header = "else:" if cond is None else \
                f"{'if' if n == 0 else 'elif'} {self.py(cond)}:"
            init_clauses.append((header, sub_init + absent or [Item("pass")]))
        init.append(_If(_trim(init_clauses)))
        if self.sequential:
            return c, cur
        results = _unique(p[5] for p in parts)
        if len(results) > 1 and cur in results and cur != dst:  # a clause passes through
            forward.append(Item(cur, f"{dst} = "))
        # each clause is told apart by a member only it has (None in the others); one clause
        # without such a member, or one that passes its input through, comes last: `else`
        tested = [(p[3], p[2]) for p in parts if p[2]]
        empty = len(tested) < len(parts)
        if not tested:
            return c, cur
        owns = [[a for a in attrs if not any(a in other for m, (other, _) in enumerate(tested)
                                             if m != n)] for n, (attrs, _) in enumerate(tested)]
        order = sorted(range(len(tested)), key=lambda n: not owns[n])
        if sum(not own for own in owns) + empty > 1:
            raise _NotGeneric("clauses told apart by no member")
        for k, n in enumerate(order):
            last = k == len(order) - 1 and k > 0 and not empty  # one clause always runs
            header = "else:" if not owns[n] or last else \
                f"{'if' if k == 0 else 'elif'} self.{owns[n][0]} is not None:"
            forward_clauses.append((header, tested[n][1]))
        forward.append(_If(forward_clauses))
        return c, dst if len(results) > 1 or results[0] != cur else results[0]


def _trim(clauses: list[tuple[str, list]]) -> list[tuple[str, list]]:
    """Drop a trailing `else: pass`."""
    if len(clauses) > 1 and clauses[-1][0] == "else:" and \
            [_key(i) for i in clauses[-1][1]] == [_key(Item("pass"))]:
        return clauses[:-1]
    return clauses


def _annotation(values: list[Any]) -> str:
    """`: int` for the numbers and flags the instances pass; nothing for words and tuples."""
    if all(isinstance(v, bool) for v in values):
        return ": bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return ": int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return ": float"
    return ""


def _block_class(low: _Lowering, block: sx.BlockDef, instances: list[Seq]) -> _BlockClass:
    walk = _Walk(low, block, instances)
    walk.lists = walk.sequential and any(isinstance(s, sx.If) for s in block.body)
    env = walk.envs[0]
    size = next((n for n in ("in_channels", "in_features") if n in env), None)
    c = sx.Word(block.span, size) if size else None
    init: list = []
    forward: list = []
    c, result = walk.body(block.body, list(range(len(instances))), c, "x", "x", init, forward)
    defaults: dict[str, Any] = {}
    computed: dict[str, sx.Expr] = {}
    fixups: list = []
    signature: list[str] = []
    for p in block.params:
        annotation = _annotation([seq.args[p.name] for seq in instances])
        if p.default is None:
            if defaults or computed:
                raise _NotGeneric("a parameter without a default after one with")
            signature.append(f"{p.name}{annotation}")
        elif _constant(p.default, walk.names):
            defaults[p.name] = _value(p.default, {})
            equals = " = " if annotation else "="
            signature.append(f"{p.name}{annotation}{equals}{py_literal(defaults[p.name])}")
        else:
            computed[p.name] = p.default
            signature.append(f"{p.name}{annotation} | None = None" if annotation
                             else f"{p.name}=None")
            fixups.append(_If([(f"if {p.name} is None:",
                                [Item(walk.py(p.default), f"{p.name} = ")])]))
    sizes = [n for n in _SIZES if n in walk.used]
    params = sizes + [p.name for p in block.params]
    for seq in instances:  # every call passes literals (a symbolic input size is none)
        for name in params:
            try:
                py_literal(seq.args[name])
            except TypeError:
                raise _NotGeneric(f"{name} is not a literal") from None
    signature = [f"{n}: int" for n in sizes] + signature
    if walk.sequential and walk.lists:
        body = [*fixups, Item("[]", "layers: list[nn.Module] = "), *init,
                Item(Call("super().__init__", [Item("*layers")]))]
    elif walk.sequential:
        body = [*fixups, Item(Call("super().__init__", init, explode=bool(init)))]
    else:
        body = [Item(Call("super().__init__")), *fixups, *init]
        forward = [*forward, Item(result, "return ")]
    name = low.new_name(_camel(block.name))
    return _BlockClass(name, "nn.Sequential" if walk.sequential else "nn.Module", signature,
                       params, defaults, computed, body, [] if walk.sequential else forward,
                       c, instances, ", ".join(_param_text(p) for p in block.params))


def _param_text(p: sx.Param) -> str:
    return p.name if p.default is None else \
        f"{p.name}={_py(p.default, frozenset({'in_channels', 'in_height', 'in_width'}), set())}"


def _site_args(cls: _BlockClass, seq: Seq) -> list[Item]:
    """The arguments of one instance's constructor call: sizes and required arguments
    positional, the others by name where they differ from their default."""
    items = []
    for name in cls.params:
        value = seq.args[name]
        if name in cls.defaults:
            if _same(value, cls.defaults[name]):
                continue
        elif name in cls.computed:
            if _same(value, _value(cls.computed[name], seq.args)):
                continue
        else:
            items.append(Item(py_literal(value)))
            continue
        items.append(Item(py_literal(value), f"{name}="))
    return items


def _runs(items: list[Item], classes: set[str]) -> list[Item]:
    """Consecutive identical calls of a block class as one loop (`*[Basic(64) for _ in
    range(2)]`), and three or more whose integer arguments grow by a fixed step too
    (`*[DenseLayer(64 + i * 32) for i in range(6)]`)."""
    out: list[Item] = []
    n = 0
    while n < len(items):
        first = items[n]
        end = _run_end(items, n) if isinstance(first.expr, Call) and \
            first.expr.func in classes else n + 1
        run = items[n:end]
        steps = _loop_steps(run)
        if steps is not None:
            variable = "i" if any(steps) else "_"
            loop = f"*[{_stepped(first.expr, steps)} for {variable} in range({len(run)})]"
            # on one line inside nn.Sequential( at any depth archgen nests: ruff keeps it
            fits = len(loop) + 1 <= WIDTH - BODY_INDENT - 4 * MAX_SEQUENTIAL_DEPTH
            out.append(Item(loop, "", [node for item in run for node in item.nodes])
                       if fits else first)
            run = run if fits else run[:1]
        else:
            run = run[:1]
            out.append(first)
        n += len(run)
    return out


def _stepped(call: Call, steps: list[int]) -> str:
    """The call of the i-th copy: `DenseLayer(64 + i * 32)` for steps [32]."""
    args = []
    for arg, step in zip(call.args, steps):
        text = arg.expr
        if step:
            text = f"{text} + i * {step}" if step > 0 else f"{text} - i * {-step}"
            text = text.replace("0 + i", "i", 1) if text.startswith("0 + ") else text
        args.append(arg.head + text)
    return f"{call.func}({', '.join(args)})"


def _counted(names: list[str]) -> tuple[str, int, str] | None:
    """(prefix, first number, suffix) of names that count up by one (a repeat's
    `denselayer{1}` copies: denselayer1, denselayer2, ...; block2-0, block2-1, ...), prefix
    and suffix of letters, digits, _ and -; None for any other names.

    >>> _counted(["block2-0", "block2-1"]), _counted(["a1b1", "a1b2"]), _counted(["u", "v"])
    (('block2-', 0, ''), ('a1b', 1, ''), None)
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", names[0]):
        return None
    for number in re.finditer(r"[0-9]+", names[0]):
        prefix, suffix = names[0][:number.start()], names[0][number.end():]
        if number.group() != str(int(number.group())):  # 01: no counter writes it
            continue
        start = int(number.group())
        if all(name == f"{prefix}{start + i}{suffix}" for i, name in enumerate(names)):
            return prefix, start, suffix
    return None


def _loop_steps(run: list[Item]) -> list[int] | None:
    """The steps of a run written as one loop: two or more identical calls, or three or more
    a fixed step apart (two that differ read better as two calls); None otherwise."""
    steps = _steps(run) if len(run) > 1 else None
    if steps is None or (len(run) == 2 and any(steps)):
        return None
    return steps


def _run_end(items: list[Item], n: int) -> int:
    """The end (exclusive) of the longest run of calls from items[n] a fixed step apart
    (`_steps`' rule), found pair by pair: linear in the run's length."""
    steps = _steps(items[n:n + 2]) if n + 1 < len(items) else None
    if steps is None:
        return n + 1
    end = n + 2
    while end < len(items) and _steps(items[end - 1:end + 1]) == steps:
        end += 1
    return end


def _steps(run: list[Item]) -> list[int] | None:
    """Per argument, the fixed step between the calls of `run` (0: the same), or None."""
    calls = [item.expr for item in run]
    if not all(isinstance(c, Call) and c.func == calls[0].func and
               [a.head for a in c.args] == [a.head for a in calls[0].args] for c in calls):
        return None
    steps = []
    for k, arg in enumerate(calls[0].args):
        texts = [c.args[k].expr for c in calls]
        if len(set(texts)) == 1:
            steps.append(0)
            continue
        if not all(isinstance(t, str) and re.fullmatch(r"-?[0-9]+", t) for t in texts):
            return None
        values = [int(t) for t in texts]
        diffs = {b - a for a, b in itertools.pairwise(values)}
        if len(diffs) != 1:
            return None
        steps.append(diffs.pop())
    return steps


# -- lowering ----------------------------------------------------------------------------------

@dataclass
class _Draft:
    name: str
    init: list[Item]
    forward: list[Item]
    instances: list[Seq]
    params: list[str] = field(default_factory=list)  # forward's, after x: values `from` reads
    returns: int = 1  # tensors forward returns (the network's `output NAME, ...`)


class _Lowering:
    def __init__(self, net: Network):
        self.net = net
        self.drafts: dict[tuple, _Draft] = {}  # (base name, code) -> class
        self.order: list[_Draft | _BlockClass] = []  # every class, each after those it uses
        self.generic: dict[str, _BlockClass | None] = {}  # block name -> its class, if any
        self.instances: dict[str, list[Seq]] = {}
        for node in walk(net.root):
            if isinstance(node, Seq) and node.block:
                self.instances.setdefault(node.block, []).append(node)
        self.helpers: set[str] = set()
        self.taken = set(RESERVED_GLOBALS) | set(HELPERS) | {net.name}
        # values a `from` branch or an output reads: each is kept in a local of its own
        self.read: set[int] = {id(o.node) for o in net.outputs}
        for node in walk(net.root):
            if isinstance(node, Seq) and node.source is not None:
                self.read.add(id(node.source))
        self.kept: dict[int, str] = {}  # id(node) -> its local, in the forward being written
        self.free_of: dict[int, list[Node]] = {}  # id(module) -> what it reads from outside

    def block_class(self, name: str) -> _BlockClass | None:
        """The one class of a block definition, or None where the block cannot be written
        as one (its instances then get a class per distinct structure)."""
        if name not in self.generic:
            self.generic[name] = None  # a block being written is not available to itself
            try:
                cls = _block_class(self, self.net.blocks[name], self.instances[name])
            except _NotGeneric:
                return None
            self.generic[name] = cls
            self.order.append(cls)
        return self.generic[name]

    def root(self) -> _Draft:
        init, forward, _ = self.body(self.net.root, self.net.outputs)
        return _Draft(self.net.name, init, forward, [self.net.root],
                      returns=max(1, len(self.net.outputs)))

    # A class-style module: attributes in forward order, then the forward written out.
    def body(self, seq: Seq, outputs=()) -> tuple[list[Item], list[Item], list[str]]:
        """Its __init__ and forward items, and forward's parameters after x: the values that
        `from` branches inside it read from outside it."""
        found, _ = members(seq)
        init = [item for m in found for item in self.member(m)]
        outer, self.kept = self.kept, {}
        try:
            fresh = _Fresh()
            params = []
            for node in self.free(seq):
                params.append(fresh.named(node.name))
                self.kept[id(node)] = params[-1]
            forward: list[Item] = []
            result = self.flow(seq.items, "x", "x", forward, fresh)
            if outputs:  # `output NAME, ...`: the named values, in order
                result = ", ".join(self.kept[id(o.node)] for o in outputs)
            forward.append(Item(result, "return "))
        finally:
            self.kept = outer
        return init, forward, params

    def fresh(self, node: Node) -> bool:
        """Whether `node`'s output is a tensor that its last layer allocated and nothing else
        refers to (a convolution's, a batch norm's, a linear layer's: kinds that may take a
        sum in place), looking through the last items of sequences; a merge, a view or an
        in-place activation (whose output autograd may keep) is not."""
        return not any(id(n) in self.read for n in walk(node)) and _allocates(node) is True

    def free(self, seq: Seq) -> list[Node]:
        """The values `from` branches inside `seq` (or inside the modules it holds) read from
        outside it, in forward order: forward's parameters after x."""
        key = id(seq)
        if key not in self.free_of:
            inside = {id(n) for n in walk(seq)}
            found = [n.source for n in walk(seq) if isinstance(n, Seq) and
                     n.source is not None and id(n.source) not in inside]
            self.free_of[key] = list({id(n): n for n in found}.values())
        return self.free_of[key]

    def member(self, m: Node) -> list[Item | _If]:
        """`self.conv1 = nn.Conv2d(...)`; a name that is no identifier (block1-0) is
        registered with add_module, its name a quoted string (quoting.py_literal)."""
        loop = self.copies(m)
        if loop is not None:
            return loop
        attr = self.attr(m)
        if attr.isidentifier():
            return [Item(self.construct(m), f"self.{attr} = ", [m])]
        return [Item(Call("self.add_module", [Item(py_literal(attr)),
                                              Item(self.construct(m))]), "", [m])]

    def copies(self, m: Node) -> list[Item | _If] | None:
        """A named group that holds nothing but a repeat's named copies of one block
        (`repeat 6 as denselayer{1}: dense_layer()`), built as torchvision's _DenseBlock and
        AnyStage are: an empty nn.Sequential, then add_module in a loop for each run of
        copies whose constructors are a fixed step apart (`_runs`' rule), and on its own for
        a copy that differs (a repeat's `first(...)`). None for any other member."""
        if not (isinstance(m, Seq) and m.module and m.style == "class" and not m.block):
            return None
        found, merged = members(m)
        if merged or not found or self.free(m) or any(id(n) in self.read for n in walk(m)):
            return None
        if not all(isinstance(n, Seq) and n.module and n.block and n.block == found[0].block
                   for n in found):
            return None
        cls = self.block_class(found[0].block)
        attr = self.attr(m)
        counted = _counted([self.attr(n) for n in found])
        if cls is None or counted is None or not attr.isidentifier():
            return None
        prefix, start, suffix = counted
        calls = [Item(Call(cls.name, _site_args(cls, n)), "", [n]) for n in found]
        out: list[Item | _If] = [Item(Call("nn.Sequential"), f"self.{attr} = ", [m])]
        n = 0
        while n < len(calls):
            run = calls[n:_run_end(calls, n)]
            steps = _loop_steps(run)
            if steps is not None:
                first = start + n
                index = "i" if first == 0 else f"i + {first}"
                # the one f-string quoting.verify_python admits: prefix and suffix are
                # letters, digits, _ and - (_counted)
                name = f'f"{prefix}{{{index}}}{suffix}"'
                add = Item(Call(f"self.{attr}.add_module",
                                [Item(name), Item(_stepped(run[0].expr, steps))]),
                           "", [node for item in run for node in item.nodes])
                out.append(_If([(f"for i in range({len(run)}):", [add])]))
            else:
                run = run[:1]
                name = py_literal(f"{prefix}{start + n}{suffix}")
                out.append(Item(Call(f"self.{attr}.add_module", [Item(name), Item(run[0].expr)]),
                                "", run[0].nodes))
            n += len(run)
        return out

    def klass(self, seq: Seq) -> str:
        init, forward, params = self.body(seq)
        base = _camel(seq.block or seq.name or seq.label)
        key = (base, tuple(params), tuple(map(_key, init)), tuple(map(_key, forward)))
        draft = self.drafts.get(key)
        if draft is None:
            draft = self.drafts[key] = _Draft(self.new_name(base), init, forward, [seq], params)
            self.order.append(draft)
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
        cls = self.block_class(node.block) if node.block else None
        if cls is not None:
            return Call(cls.name, _site_args(cls, node))
        if node.style == "sequential":
            found, _ = members(node)
            items = [Item(self.construct(m), "", [m]) for m in found]
            classes = {c.name for c in self.generic.values() if c is not None}
            return Call("nn.Sequential", _runs(items, classes), explode=True)
        return Call(self.klass(node))

    def flow(self, items: list[Node], src: str, dst: str, out: list[Item], fresh: _Fresh) -> str:
        """Statements applying `items` to the variable `src`, writing to `dst`; returns the
        variable holding the result (`src` when there is nothing to apply). A merge's input
        is never overwritten before every branch has read it: branches write fresh variables."""
        cur = src
        for node in items:
            # a value that a `from` branch or an output reads gets a local of its own
            target = self.keep(node, fresh) if id(node) in self.read else dst
            if isinstance(node, Layer) or (isinstance(node, Seq) and node.module):
                extra = [Item(self.kept[id(n)]) for n in self.free(node)] \
                    if isinstance(node, Seq) else []
                call = node.kind.torch_forward(self.accessor(node), cur) \
                    if isinstance(node, Layer) else Call(self.accessor(node), [Item(cur), *extra])
                if call == cur and target == dst:  # identity: the value itself
                    continue
                out.append(Item(call, f"{target} = ", [node]))
                cur = target
            elif isinstance(node, Seq):  # an anonymous branch: its layers belong to this module
                start = self.kept[id(node.source)] if node.source is not None else cur
                cur = self.flow(node.items, start, dst, out, fresh)
            elif isinstance(node, Merge) and len(node.branches) == 1:  # no merging to do
                cur = self.flow(node.branches, cur, dst, out, fresh)
            elif isinstance(node, Merge):
                results, into = [], None
                for branch in node.branches:  # a `from` branch reads its value's local
                    start = self.kept[id(branch.source)] if branch.source is not None else cur
                    if _passes_through(branch):
                        results.append(start)
                    else:
                        var = fresh()
                        results.append(self.flow([branch], start, var, out, fresh))
                        if results[-1] == start:
                            fresh.unused(var)
                        elif into is None and self.fresh(branch):
                            into = results[-1]
                if node.mode == "add" and into is not None and target == dst:
                    # torchvision's `out += identity`: the sum goes into a branch's own new
                    # tensor
                    for k, other in enumerate(r for r in results if r != into):
                        out.append(Item(other, f"{into} += ", [] if k else [node]))
                    cur = into
                    continue
                if node.mode == "add":
                    combined: Expr = Sum(results)
                elif node.mode == "mul":
                    combined = _Product(results)
                else:
                    joined = Call("", [Item(r) for r in results], brackets="[]")
                    combined = Call("torch.cat", [Item(joined), Item("1", "dim=")])
                out.append(Item(combined, f"{target} = ", [node]))
                cur = target
        return cur

    def keep(self, node: Node, fresh: _Fresh) -> str:
        """The local that holds a read value: its spec name where that is a plain
        identifier no other local has."""
        if id(node) not in self.kept:
            self.kept[id(node)] = fresh.named(node.name)
        return self.kept[id(node)]

    def accessor(self, node: Node) -> str:
        """`self.conv1`; `getattr(self, "block1-0")` for a name that is no identifier."""
        attr = self.attr(node)
        return f"self.{attr}" if attr.isidentifier() else f"getattr(self, {py_literal(attr)})"

    def attr(self, node: Node) -> str:
        name = node.attr or ""
        problem = check_name(name, kind="module")
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
    """Local variables of one forward: x1, x2, ..., and the named ones (c3) that hold what
    `from` branches and outputs read."""

    def __init__(self):
        self.n = 0
        self.names: set[str] = set()

    def __call__(self) -> str:
        self.n += 1
        while f"x{self.n}" in self.names:
            self.n += 1
        return f"x{self.n}"

    def unused(self, name: str) -> None:
        """`name`, the last x-name handed out, was not written (a branch that passes its input
        on): the next call hands it out again."""
        if name == f"x{self.n}":
            self.n -= 1

    def named(self, name: str | None) -> str:
        """`name` (dashes as _) where it is a plain identifier that is no other local, no
        x1-style name, keyword, builtin or name of the file; else feature, feature_1, ..."""
        base = (name or "").replace("-", "_")
        if not (base.isidentifier() and base.isascii()) or re.fullmatch(r"x\d*", base) or \
                keyword.iskeyword(base) or keyword.issoftkeyword(base) or \
                hasattr(builtins, base) or base in RESERVED_GLOBALS or base.startswith("_"):
            base = "feature"
        return unique_name(base, self.names)


def _allocates(node: Node) -> bool | None:
    """True where `node`'s output is a tensor its last computing layer allocated and autograd
    does not keep (conv, batch norm, linear: kinds with sum_in_place); None where the node
    hands on its input's tensor or a view of it (identity, dropout and stochastic depth in
    eval, flatten), so that the layer before decides; False otherwise."""
    if isinstance(node, Seq):
        for item in reversed(node.items):
            verdict = _allocates(item)
            if verdict is not None:
                return verdict
        return None
    if not isinstance(node, Layer):
        return False
    if node.kind.sum_in_place:
        return True
    memory = node.kind.memory(node.args, node.in_shape, node.out_shape)
    if (memory.aliases or memory.eval_aliases) and "output" not in memory.saves:
        return None
    return False


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
    models = [_class_model(net, d, d is root) for d in [*lowering.order, root]]
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


def _class_model(net: Network, d: _Draft | _BlockClass, is_root: bool) -> ClassModel:
    if isinstance(d, _BlockClass):
        block = net.blocks[d.instances[0].block]
        lines = _lines([s.span.line for s in d.instances]).replace("line", "used at line")
        doc = f"Block {block.name}({d.spec_signature}) of line {block.span.line}; {lines}."
        return ClassModel(d.name, d.base, _class_doc(doc), _signature(d.signature),
                          _body_lines(d.init), _body_lines(d.forward))
    init = [Item(Call("super().__init__")), *d.init]
    return ClassModel(d.name, "nn.Module", _class_doc(_describe(net, d, is_root)),
                      _signature([]), _body_lines(init), _body_lines(d.forward),
                      _forward_signature(d.params, d.returns))


def _uses(instances: list[Seq]) -> str:
    labels = _unique(s.label for s in instances)
    shown = ", ".join(labels[:MAX_LISTED]) + (
        f" and {len(labels) - MAX_LISTED} more" if len(labels) > MAX_LISTED else "")
    return f"{shown} ({_lines([s.span.line for s in instances])})"


def _signature(params: list[str]) -> list[str]:
    """`def __init__(self, ...) -> None:` as ruff format lays it out at a method's indent."""
    width = WIDTH - 4  # a method's indent
    one = f"def __init__({', '.join(['self', *params])}) -> None:"
    if len(one) <= width:
        return [one]
    # one parameter a line with a trailing comma, which ruff keeps at any line length
    return ["def __init__(", *(f"    {p}," for p in ["self", *params]), ") -> None:"]


def _forward_signature(params: list[str] = (), returns: int = 1) -> list[str]:
    """`def forward(self, x: torch.Tensor) -> torch.Tensor:`, with the tensors `from`
    branches read after x, and a tuple for several outputs (TorchScript reads both), laid
    out as ruff format does at a method's indent."""
    args = ["self", *(f"{p}: torch.Tensor" for p in ["x", *params])]
    result = "torch.Tensor" if returns == 1 else \
        f"tuple[{', '.join(['torch.Tensor'] * returns)}]"
    one = f"def forward({', '.join(args)}) -> {result}:"
    if len(one) <= WIDTH - 4:
        return [one]
    return ["def forward(", *(f"    {a}," for a in args), f") -> {result}:"]


def _describe(net: Network, draft: _Draft, is_root: bool) -> str:
    if is_root:
        outs = ", ".join(f"{name} {_shape([shape])}" for name, shape in net.output_shapes) \
            if net.outputs else _shape([net.output_shape])
        return f"{net.name}: {_shape([net.input_shape])} -> {outs}."
    what = "Block" if draft.instances[0].block else "Group"
    return f"{what} {_uses(draft.instances)}."


def _body_lines(items: list, indent: int = 0) -> list[str]:
    lines: list[str] = []
    for item in items:
        if isinstance(item, _If):
            for header, body in item.clauses:
                lines.append(" " * indent + header)
                lines += _body_lines(body, indent + 4)
        else:
            lines += _layout(item, indent, WIDTH - BODY_INDENT)
    return lines


# -- templates ---------------------------------------------------------------------------------

@functools.cache
def _environment():
    return environment("torch", keep_trailing_newline=True)


# -- what a generated file may contain ----------------------------------------------------------

PYTHON_SHAPE = PythonShape(
    imports=frozenset({"import torch", "from torch import nn",
                       *(line for h in HELPERS.values() for line in h.imports)}),
    bases=frozenset({"nn.Module", "nn.Sequential", *(h.base for h in HELPERS.values())}),
    methods=frozenset({"__init__", "forward"}),
    calls=frozenset({"nn.Sequential", "torch.cat",
                     *(c for k in REGISTRY.values() for c in k.torch_classes),
                     *(c for h in HELPERS.values() for c in h.calls if "." in c)}),
    attributes=frozenset({"torch.Tensor", "nn.Module"}),
    builtins=frozenset({"super", "float", "int", "bool", "list", "range", "tuple", "getattr",
                        *_FUNCTIONS,
                        *(c for h in HELPERS.values() for c in h.calls if "." not in c)}),
)
