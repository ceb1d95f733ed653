"""One namespace for every emitted name: which nodes are modules, their attribute names and
dotted paths. The PyTorch module's attributes, its state_dict keys, the ONNX node names and
parity's hooks all follow the paths assigned here.

Rules:
- A module (the network, a section or named group, a block instance) whose members are all
  unnamed and contain no add/concat is an nn.Sequential: members are numbered 0, 1, ...
- Otherwise it is a class of its own: members keep their spec names; unnamed ones are named
  after their kind (relu, relu_1, ...). Layers inside anonymous branches belong to the
  enclosing module (as in torchvision's BasicBlock: conv1, bn1, ..., downsample).
- A file of plain top-level layers (no names) becomes `self.layers = nn.Sequential(...)`.
"""

from __future__ import annotations

import builtins
import keyword
import re

from .diagnostics import Span
from .ir import Layer, Merge, Network, Node, Seq
from .record import factory, record

# nn.Module's (and nn.Sequential's) attributes: a layer named like one would shadow it.
MODULE_ATTRS = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
half ipu load_state_dict modules mtia named_buffers named_children named_modules
named_parameters parameters register_backward_hook register_buffer register_forward_hook
register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
set_extra_state set_submodule share_memory state_dict to to_empty train type xpu zero_grad
training append extend insert pop
""".split())

# Names the generated file itself uses at module level.
RESERVED_GLOBALS = frozenset({"torch", "nn", "F", "math", "typing", "Tensor", "OrderedDict",
                              "Add", "Concat", "SamePad2d", "Conv2dSame", "self", "x"})


_DASHED = re.compile(r"[A-Za-z][A-Za-z_0-9]*(?:-[A-Za-z_0-9]+)+")


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or base_1, base_2, ...: the first that `taken` does not hold, added to it."""
    n, cand = 0, base
    while cand in taken:
        n += 1
        cand = f"{base}_{n}"
    taken.add(cand)
    return cand


def check_name(name: str, *, kind: str) -> str | None:
    """Why `name` cannot become a Python identifier in generated code, or None. A "module"
    name (a layer's, group's or block instance's) may also hold '-' between identifier parts
    (`block1-0`, as torchvision's RegNet names its blocks): it is then a state_dict key and an
    ONNX name as written, and generated code writes it only as a quoted string."""
    if kind == "module":
        if "-" in name:
            if not _DASHED.fullmatch(name):
                return "is not an identifier, or identifier parts joined by '-' (block1-0)"
            return "is longer than 64 characters" if len(name) > 64 else None
        kind = "layer"
    if not name.isidentifier() or not name.isascii():
        return "is not a plain identifier"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name.startswith("_"):
        return "starts with '_', which PyTorch reserves for module internals"
    if kind == "layer" and name in MODULE_ATTRS:
        return "would shadow nn.Module's own attribute of that name"
    if kind == "network" and (name in RESERVED_GLOBALS or hasattr(builtins, name)):
        return "clashes with a name the generated file uses or a Python builtin"
    if len(name) > 64:
        return "is longer than 64 characters"
    return None


@record
class NameProblem:
    message: str
    span: Span
    notes: list[str] = factory(list)
    helps: list[str] = factory(list)


def members(seq: Seq) -> tuple[list[Node], bool]:
    """The module members of `seq` in forward order, looking through anonymous branches, and
    whether an add/concat lies among them."""
    found: list[Node] = []
    merged = False
    for item in seq.items:
        if isinstance(item, Layer) or (isinstance(item, Seq) and item.module):
            found.append(item)
        elif isinstance(item, Seq):
            sub, m = members(item)
            found += sub
            merged |= m
        elif isinstance(item, Merge):
            merged = True
            for branch in item.branches:
                if branch.module:
                    found.append(branch)
                else:
                    sub, _ = members(branch)
                    found += sub
    return found, merged


def _parameter(node: Node) -> bool:
    """A layer that is a parameter of its module (layer_scale), applied in its forward."""
    return isinstance(node, Layer) and node.kind.parameter


def assign_paths(net: Network) -> list[NameProblem]:
    root = net.root
    found, merged = members(root)
    if not merged and not any(m.name or _parameter(m) for m in found):
        inner = Seq(root.span, root.in_shape, root.out_shape, root.rf, root.params, root.macs,
                    name="layers", items=root.items, label="layers", module=True)
        root.items = [inner]
    problems: list[NameProblem] = []
    _assign(root, "", problems, is_root=True)
    return problems


def _assign(seq: Seq, prefix: str, problems: list[NameProblem], is_root: bool = False) -> None:
    found, merged = members(seq)
    named = any(m.name or _parameter(m) for m in found)  # a parameter needs a forward
    seq.style = "class" if (is_root or merged or named) else "sequential"
    if seq.style == "sequential":
        for i, m in enumerate(found):
            m.attr = str(i)
    else:
        taken: dict[str, Node] = {}
        for m in found:
            if m.name:
                if m.name in taken:
                    first = taken[m.name]
                    problems.append(NameProblem(
                        f"the name '{m.name}' is used twice in the same module", m.span,
                        [f"first used at line {first.span.line}"],
                        ["give each layer of a block or section its own name"]))
                taken[m.name] = m
                m.attr = m.name
        counts: dict[str, int] = {}
        for m in found:
            if m.name:
                continue
            base = m.op if isinstance(m, Layer) else (m.block or m.label or "seq")
            n = counts.get(base, 0)
            while (cand := base if n == 0 else f"{base}_{n}") in taken:
                n += 1
            counts[base] = n + 1
            taken[cand] = m
            m.attr = cand
    for m in found:
        m.path = f"{prefix}{m.attr}"
        if isinstance(m, Seq):
            _assign(m, m.path + ".", problems)
