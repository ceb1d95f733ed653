"""The resolved model: what the checker proves and every emitter renders.

A tree of `Layer`s, `Seq`s (sequences; some are modules of their own) and `Merge`s (branches
summed or concatenated). Every node carries its input/output shape (batch excluded), trainable
parameters, MACs at batch 1, receptive field, spec location and its module path, which is the
attribute path in the generated PyTorch module, the prefix of its state_dict keys and the node
name in ONNX.
"""

from __future__ import annotations

from collections.abc import Iterator
from .diagnostics import Diagnostic, Span
from .layers.base import RF, LayerKind, Shape
from .record import factory, record


@record
class Node:
    span: Span
    in_shape: Shape
    out_shape: Shape
    rf: RF
    params: int = 0
    macs: int = 0
    name: str | None = None  # given in the spec (`conv1 = conv2d(...)`)
    attr: str | None = None  # attribute name in the enclosing module; None inside no module
    path: str = ""  # dotted module path from the network ("backbone.0.1")


@record
class Layer(Node):
    kind: LayerKind = None
    args: dict = factory(dict)  # normalised, PyTorch's names

    @property
    def op(self) -> str:
        return self.kind.name


@record
class Seq(Node):
    """A sequence. `module` is True where it becomes a module of its own (a section, a named
    group, a block instance, the network); anonymous branches and repeats are not.
    `style` is "sequential" (members indexed 0..n-1, an nn.Sequential) or "class" (named
    members and a forward written out), decided by `naming.assign_paths`."""

    items: list[Node] = factory(list)
    label: str = ""  # what the spec calls it: "backbone", "conv_block(16)", "branch"
    block: str | None = None  # the block it instantiates
    module: bool = False
    style: str = "sequential"
    args: dict = factory(dict)  # a block instance's argument values (and in_channels, ...)
    # a merge's branch written `from NAME`: the earlier named node whose output it starts
    # from instead of the merge's input (its in_shape is that node's out_shape)
    source: Node | None = None

    @property
    def op(self) -> str:
        return self.block or "sequential"


@record
class Merge(Node):
    mode: str = "add"  # "add" | "concat" | "mul"
    branches: list[Seq] = factory(list)

    @property
    def op(self) -> str:
        return self.mode


@record
class Output:
    """One of the values `output NAME, ...` returns."""

    name: str
    node: Node
    span: Span


@record
class Network:
    name: str
    file: str
    source: str
    input_shape: Shape
    root: Seq
    diagnostics: list[Diagnostic]
    blocks: dict = factory(dict)  # block name -> its definition (syntax.BlockDef)
    # symbolic sizes (`input [3, H, W]`): each symbol's valid sizes, in input order; the
    # shapes, params and MACs are then ints or symbolic.Sym expressions over the symbols
    constraints: dict = factory(dict)  # name -> symbolic.Constraint
    # a concrete network at representative sizes (RF, size-free warnings), when symbolic
    sample: object = None
    # `output NAME, ...`: the named nodes the network returns, in order; empty: the one output
    # is the last value (root.out_shape)
    outputs: list[Output] = factory(list)

    @property
    def symbols(self) -> list[str]:
        """The symbolic sizes' names, in input order (empty for a concrete input)."""
        return list(self.constraints)

    @property
    def output_shape(self) -> Shape:
        """The shape of the one output (of the first, where `output` names several)."""
        return self.outputs[0].node.out_shape if self.outputs else self.root.out_shape

    @property
    def output_shapes(self) -> list[tuple[str, Shape]]:
        """(name, shape) of each output: ("output", root.out_shape) without `output`."""
        if not self.outputs:
            return [("output", self.root.out_shape)]
        return [(o.name, o.node.out_shape) for o in self.outputs]

    @property
    def total_params(self) -> int:
        return self.root.params

    @property
    def total_macs(self) -> int:
        return self.root.macs

    def layers(self) -> Iterator[Layer]:
        """Every layer, in forward order (branches in the order written)."""
        return (n for n in walk(self.root) if isinstance(n, Layer))


def children(node: Node) -> list[Node]:
    """A sequence's items, a merge's branches; a layer has none."""
    if isinstance(node, Seq):
        return node.items
    if isinstance(node, Merge):
        return node.branches
    return []


def walk(node: Node) -> Iterator[Node]:
    """The node and everything inside it, in forward order (branches in the order written)."""
    yield node
    for child in children(node):
        yield from walk(child)
