"""User text into generated code: one quoting function per target, and a structure check of
what was generated before it is written or executed.

Text from a spec (names, file names, block arguments, the source text of calls) reaches
generated output only through these functions, never pasted between quotes:

- Python: `py_literal` (a value as a literal, built on `repr`), `py_docstring_text` (text shown
  inside a triple-quoted docstring: backslashes, quotes and every non-printable character are
  escaped, so nothing in it can end the string) and `py_comment_text` (printable ASCII only, so
  nothing in it can end the comment's line).
- ONNX's textual syntax: `onnx_string` (a quoted string or name, with `\\` and `"` escaped as
  onnx.parser reads them).

Quoting makes injection impossible by construction; `verify_python` and `verify_onnx` then hold
the result to the shape the emitters produce (the expected imports, classes, methods, calls and
ONNX operators), so that a bug in quoting or lowering is an internal error instead of code that
runs. The allowed calls and operators are passed in by each emitter, which knows what it emits.
"""

from __future__ import annotations

import ast
import gc
import math
import re
from dataclasses import dataclass
from typing import Any


class InternalError(RuntimeError):
    """Generated output contradicts the checked model or the expected structure: a bug in
    archgen, not in the spec."""

    def __init__(self, message: str):
        super().__init__(f"internal error (this is an archgen bug, please report it with the "
                         f"spec): {message}")


# -- Python ------------------------------------------------------------------------------------

def py_literal(v: Any) -> str:
    """A Python literal for a spec value, as ruff format writes it (double quotes where that
    needs no escape).

    >>> print(py_literal('same'), py_literal('a"b'), py_literal(1e16), py_literal((2,)))
    "same" 'a"b' 1e16 (2,)
    >>> print(py_literal('\"\"\" + __import__("os") + \"\"\"'))
    '\"\"\" + __import__("os") + \"\"\"'
    """
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):  # 1e+16 as ruff format writes it: 1e16
        return repr(v).replace("e+", "e") if math.isfinite(v) else f'float("{v}")'
    if isinstance(v, str):
        text = repr(v)
        # repr chose single quotes and the text holds no quote at all: the same, double-quoted
        return f'"{text[1:-1]}"' if text[0] == "'" and '"' not in v and "'" not in v else text
    if isinstance(v, tuple):
        return "(" + ", ".join(py_literal(i) for i in v) + ("," if len(v) == 1 else "") + ")"
    raise TypeError(f"no literal for {v!r}")


def py_docstring_text(text: str) -> str:
    """Text for one line of a triple-quoted docstring: what Python reads back is `text`
    exactly, and nothing in it can end the string or the line (backslashes and quotes are
    escaped, so are tabs, line breaks and every other non-printable character).

    >>> print(py_docstring_text('b(\\'\"\"\"\\')\\u2028\\\\'))
    b('\\"\\"\\"')\\u2028\\\\
    """
    out = []
    for c in text:
        if c in '\\"':
            out.append("\\" + c)
        elif not c.isprintable():
            out.append(c.encode("unicode_escape").decode("ascii"))
        else:
            out.append(c)
    return "".join(out).rstrip()


def py_comment_text(text: str) -> str:
    """Text for a `#` comment: printable ASCII only (anything else shows as ?), so it can
    neither end the comment's line nor confuse an editor.

    >>> py_comment_text("b('x')\\n\\rimport os\\u2028")
    "b('x')??import os?"
    """
    if text.isascii() and text.isprintable():  # the usual case, without a loop
        return text
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)


# -- ONNX's textual syntax -------------------------------------------------------------------

def onnx_string(text: str) -> str:
    """A quoted ONNX string or name: onnx.parser reads a backslash as escaping the next
    character, so `\\` and `"` are escaped and everything else stands as written, except NUL,
    which ends its C strings (InternalError: archgen's names never hold one).

    >>> print(onnx_string('a"b\\\\c'))
    "a\\"b\\\\c"
    """
    if "\x00" in text:
        raise InternalError(f"{text!r} holds a NUL, which ONNX's textual syntax cannot carry")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the structure of generated Python ---------------------------------------------------------

@dataclass(frozen=True)
class PythonShape:
    """What a generated file may contain.

    imports: the import statements, as `ast.unparse` writes them;
    bases: the base classes a class may derive from (besides classes defined before it);
    methods: the method names a class may define;
    calls: the dotted names of imported modules' attributes that may be called (nn.Conv2d);
    attributes: those that may be read without a call (torch.Tensor, in annotations);
    builtins: the builtins that may be used (super, max).
    """

    imports: frozenset[str]
    bases: frozenset[str]
    methods: frozenset[str]
    calls: frozenset[str]
    attributes: frozenset[str]
    builtins: frozenset[str]


_STATEMENTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Expr, ast.For, ast.If,
               ast.Pass)
_EXPRESSIONS = (ast.Call, ast.Attribute, ast.Name, ast.Constant, ast.Tuple, ast.List, ast.BinOp,
                ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice,
                ast.ListComp, ast.GeneratorExp, ast.Starred, ast.JoinedStr, ast.FormattedValue)
_PLAIN = (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.keyword,
          ast.comprehension)
_ALLOWED = (*_EXPRESSIONS, *_PLAIN)
_CONSTANT_TYPES = frozenset((str, int, float, bool, type(None)))
_AST, _LIST = ast.AST, list


def _walk(node: ast.AST, parents: dict[int, ast.AST] | None = None) -> list[ast.AST]:
    """ast.walk's nodes in its order (breadth first), as a list made in one pass: a million-
    layer module has tens of millions of nodes, and ast.walk's generators (iter_fields inside
    iter_child_nodes for every node) cost twice as much. With `parents`, also records
    id(child) -> parent."""
    nodes = [node]
    append = nodes.append
    i = 0
    while i < len(nodes):
        n = nodes[i]
        i += 1
        for name in n._fields:
            v = getattr(n, name, None)
            if isinstance(v, _AST):
                append(v)
                if parents is not None:
                    parents[id(v)] = n
            elif type(v) is _LIST:
                for item in v:
                    if isinstance(item, _AST):
                        append(item)
                        if parents is not None:
                            parents[id(item)] = n
    return nodes


class _Violation(Exception):
    pass


def verify_python(source: str, shape: PythonShape, filename: str = "<generated>") -> ast.Module:
    """Parse generated source and check that it holds only what `shape` allows: at module
    level a docstring, the allowed imports, `__all__` and classes deriving from allowed bases;
    in a class a docstring and the allowed methods; in a method plain statements whose calls
    reach only the allowed callables, `self`'s members, locals and the classes of the file.
    Returns the tree (compile it rather than the text: what runs is what was checked);
    raises InternalError otherwise."""
    enabled = gc.isenabled()
    gc.disable()  # the tree holds no cycles: the collector would only rescan its nodes
    try:
        return _verify_python(source, shape, filename)
    finally:
        if enabled:
            gc.enable()


def _verify_python(source: str, shape: PythonShape, filename: str) -> ast.Module:
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise InternalError(f"the generated Python does not parse: line {e.lineno}: "
                            f"{e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # a NUL byte; nesting; size
        raise InternalError(f"the generated Python does not parse: {type(e).__name__}: "
                            f"{e}") from None
    try:
        _Checker(shape).module(tree)
    except _Violation as e:
        raise InternalError(f"the generated Python is not of the expected shape: {e}") from None
    return tree


def _fail(node: ast.AST, what: str):
    raise _Violation(f"line {getattr(node, 'lineno', '?')}: {what}")


def _dotted(node: ast.expr) -> str | None:
    """`nn.Conv2d` for Attribute(Name('nn'), 'Conv2d'); None for anything but names and dots."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and \
        isinstance(stmt.value.value, str)


class _Checker:
    def __init__(self, shape: PythonShape):
        self.shape = shape
        self.modules: set[str] = set()  # names bound by imports
        self.counters: set[str] = set()  # in the method being checked: range() loop variables
        self.classes: set[str] = set()

    def module(self, tree: ast.Module) -> None:
        for i, stmt in enumerate(tree.body):
            if i == 0 and _docstring(stmt):
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                text = ast.unparse(stmt)
                if text not in self.shape.imports:
                    _fail(stmt, f"unexpected import {text!r}")
                self.modules.update((a.asname or a.name).split(".")[0] for a in stmt.names)
            elif isinstance(stmt, ast.Assign) and [_dotted(t) for t in stmt.targets] == \
                    ["__all__"]:
                value = stmt.value
                if not (isinstance(value, (ast.List, ast.Tuple)) and all(
                        isinstance(e, ast.Constant) and isinstance(e.value, str)
                        for e in value.elts)):
                    _fail(stmt, "__all__ is not a list of names")
            elif isinstance(stmt, ast.ClassDef):
                self.klass(stmt)
            else:
                _fail(stmt, f"unexpected {type(stmt).__name__} at module level")
        self.references(tree)

    def klass(self, node: ast.ClassDef) -> None:
        if node.decorator_list or node.keywords or not _plain_name(node.name):
            _fail(node, f"class {node.name} has decorators, keywords or an unusual name")
        for base in node.bases:
            name = _dotted(base)
            if name not in self.shape.bases and name not in self.classes:
                _fail(node, f"class {node.name} derives from {ast.unparse(base)}")
        self.classes.add(node.name)
        for i, stmt in enumerate(node.body):
            if i == 0 and _docstring(stmt):
                continue
            if not isinstance(stmt, ast.FunctionDef) or stmt.name not in self.shape.methods:
                _fail(stmt, f"unexpected {type(stmt).__name__} "
                            f"{getattr(stmt, 'name', '')} in class {node.name}".replace("  ", " "))
            self.method(stmt)

    def method(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if fn.decorator_list or a.vararg or a.kwarg or a.posonlyargs or fn.type_comment:
            _fail(fn, f"method {fn.name} has decorators or variable arguments")
        params = [*a.args, *a.kwonlyargs]
        if not params or params[0].arg != "self":
            _fail(fn, f"method {fn.name} does not take self first")
        local = {p.arg for p in params}
        for p in params:
            if not _plain_name(p.arg):
                _fail(fn, f"parameter {p.arg}")
        # the variables that only `for NAME in range(...)` loops bind: integers
        stores: list[ast.Name] = []
        loops: dict[int, str] = {}  # id(target) -> name, of each `for NAME in range(...)`
        for node in _walk(fn):  # every name the body binds is a local
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
                stores.append(node)
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and \
                    isinstance(node.iter, ast.Call) and _dotted(node.iter.func) == "range":
                loops[id(node.target)] = node.target.id
        other = {p.arg for p in params} | {n.id for n in stores if id(n) not in loops}
        self.counters = set(loops.values()) - other
        for p in params:
            if p.annotation is not None:
                self.expr(p.annotation, local)
        for default in [*a.defaults, *(d for d in a.kw_defaults if d is not None)]:
            self.expr(default, local)
        if fn.returns is not None:
            self.expr(fn.returns, local)
        for i, stmt in enumerate(fn.body):
            if not (i == 0 and _docstring(stmt)):
                self.statement(stmt, local)

    def statement(self, stmt: ast.stmt, local: set[str]) -> None:
        if not isinstance(stmt, _STATEMENTS):
            _fail(stmt, f"unexpected {type(stmt).__name__} statement")
        if isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Call):
            _fail(stmt, "an expression statement that is not a call")
        if isinstance(stmt, ast.For) and stmt.orelse:
            _fail(stmt, "for ... else")
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                self.statement(child, local)
            elif isinstance(child, ast.expr):
                self.expr(child, local)

    def expr(self, node: ast.expr, local: set[str]) -> None:
        nodes = _walk(node)
        unpacked = {id(a) for c in nodes if isinstance(c, ast.Call) for a in c.args
                    if isinstance(a, ast.Starred)}  # *layers, *[Block(64) for _ in range(2)]
        for sub in nodes:
            t = type(sub)  # the kinds nearly every node is, by exact type: one test each
            if t is ast.Call:
                self.call(sub)
            elif t is ast.Attribute:
                self.attribute(sub)
            elif t is ast.Name:
                self.name(sub, local)
            elif t is ast.Load or (t is ast.keyword and sub.arg is not None) or (
                    t is ast.Constant and type(sub.value) in _CONSTANT_TYPES):
                pass
            else:
                self._other(sub, node, unpacked, local)

    def _other(self, sub: ast.AST, node: ast.expr, unpacked: set[int], local: set[str]) -> None:
        """expr's checks of one node, in full."""
        if isinstance(sub, ast.stmt):
            _fail(sub, "a statement inside an expression")
        if isinstance(sub, ast.JoinedStr):
            self.numbered_name(sub)
            return
        if isinstance(sub, ast.FormattedValue):
            return  # checked with its f-string
        if isinstance(sub, ast.Starred) and id(sub) not in unpacked:
            _fail(sub, "* outside a call's arguments")
        if not isinstance(sub, _ALLOWED):
            _fail(sub, f"unexpected {type(sub).__name__}")
        if isinstance(sub, ast.Constant) and not isinstance(
                sub.value, (str, int, float, bool, type(None))):
            _fail(sub, f"constant {sub.value!r}")
        if isinstance(sub, ast.comprehension):
            if sub.is_async:
                _fail(node, "async comprehension")
            for target in ast.walk(sub.target):
                if isinstance(target, ast.Name):
                    local.add(target.id)
        if isinstance(sub, ast.keyword) and sub.arg is None:
            _fail(node, "** in a call")
        if isinstance(sub, ast.Name):
            self.name(sub, local)
        elif isinstance(sub, ast.Attribute):
            self.attribute(sub)
        elif isinstance(sub, ast.Call):
            self.call(sub)

    def numbered_name(self, node: ast.JoinedStr) -> None:
        """The one f-string a generated file may hold: a module name numbered by a loop's
        counter (`f"denselayer{i + 1}"`), nothing formatted but `i` or `i + 1`, which are
        integers, so that no implicit __format__ of another value runs."""
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                continue
            value = part.value if isinstance(part, ast.FormattedValue) else None
            if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add) and \
                    isinstance(value.right, ast.Constant) and type(value.right.value) is int:
                value = value.left
            if not (isinstance(part, ast.FormattedValue) and part.conversion == -1 and
                    part.format_spec is None and isinstance(value, ast.Name) and
                    value.id in self.counters):
                _fail(node, "an f-string other than a name numbered by a range() loop")

    def name(self, node: ast.Name, local: set[str]) -> None:
        if node.id in local or node.id in self.classes or node.id in self.shape.builtins:
            return
        if node.id in self.modules:
            return  # checked as the root of its attribute (a module alone is refused there)
        _fail(node, f"the name {node.id!r} is neither local, a generated class nor allowed")

    def attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_") and not _is_super_init(node):
            _fail(node, f"access to the private attribute {node.attr!r}")

    def call(self, node: ast.Call) -> None:
        """What a call may reach: a local, a generated class or an allowed builtin (name()
        checks which), a member of self or of a local (attribute() refuses private ones), an
        imported module's attribute (references() holds those to the allowed calls)."""
        func = node.func
        if isinstance(func, ast.Name) and func.id == "super" and (node.args or node.keywords):
            _fail(node, "super() with arguments")
        if isinstance(func, ast.Name) and func.id == "getattr" and not (
                len(node.args) == 2 and not node.keywords and
                isinstance(node.args[0], ast.Name) and node.args[0].id == "self" and
                isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                and _MODULE_NAME.fullmatch(node.args[1].value)):
            _fail(node, "getattr other than of self's member named by a string "
                        "(a module name with '-', such as block1-0)")

    def references(self, tree: ast.Module) -> None:
        """Every use of an imported module is one of the dotted names the shape allows:
        `torch.cat(...)` is a call of torch.cat; `torch.load`, or `torch` alone, is refused."""
        parents: dict[int, ast.AST] = {}
        nodes = _walk(tree, parents)
        called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
        readable = self.shape.calls | self.shape.attributes | self.shape.bases
        for node in nodes:
            if isinstance(node, ast.Name) and node.id in self.modules:
                top: ast.expr = node
                while isinstance(parents.get(id(top)), ast.Attribute):
                    top = parents[id(top)]
                dotted = _dotted(top)
                allowed = self.shape.calls if id(top) in called else readable
                if dotted not in allowed:
                    what = "a call of" if id(top) in called else "the reference"
                    _fail(node, f"{what} {dotted}, which archgen does not generate")


# a module name with '-' (naming.check_name's): the one thing getattr(self, ...) may name; an
# identifier is written self.name
_MODULE_NAME = re.compile(r"[A-Za-z][A-Za-z_0-9]*(?:-[A-Za-z_0-9]+)+")


def _is_super_init(node: ast.Attribute) -> bool:
    v = node.value
    return node.attr == "__init__" and isinstance(v, ast.Call) and \
        isinstance(v.func, ast.Name) and v.func.id == "super" and not v.args and not v.keywords


def _plain_name(name: str) -> bool:
    return name.isidentifier() and name.isascii() and not (
        name.startswith("__") and name != "__init__")


# -- the structure of generated ONNX -----------------------------------------------------------

_ONNX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def verify_onnx(model, ops: frozenset[str]) -> None:
    """Check a parsed ModelProto: only default-domain operators from `ops`, no functions or
    subgraphs, and every node, value and initializer name a plain dotted/slashed path.
    Raises InternalError otherwise."""
    g = model.graph
    if len(model.functions) or any(o.domain not in ("", "ai.onnx") for o in model.opset_import):
        raise InternalError("the generated ONNX model imports functions or other domains")
    names: list[str] = [v.name for v in (*g.input, *g.output, *g.value_info)]
    names += [t.name for t in g.initializer]
    for node in g.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops:
            raise InternalError(f"the generated ONNX graph has an unexpected operator "
                                f"{node.domain or 'ai.onnx'}.{node.op_type} ({node.name!r})")
        for attr in node.attribute:
            if attr.g.ByteSize() or len(attr.graphs):
                raise InternalError(f"the generated ONNX node {node.name!r} has a subgraph")
        names += [node.name, *node.output, *(i for i in node.input if i)]  # "": omitted
    for name in names:
        if not _ONNX_NAME.fullmatch(name):
            raise InternalError(f"the generated ONNX graph has an unexpected name {name!r}")
