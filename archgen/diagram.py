"""`archgen diagram`: the network as a picture, laid out from its series-parallel structure.

The checked IR already is a series-parallel graph: a `Seq` stacks its items, a `Merge` sets its
branches side by side and joins them. `build_tree` turns it into a drawing tree (runs of
repeated blocks folded into one copy marked "x N" unless `expand`), and three renderers format
that one tree: SVG (laid out here, no graph library), Graphviz DOT and Mermaid (whose own
layout engines place the nodes).

Repeats are the runs `summary --collapse` folds, with one difference: copies may differ in
their sizes. DenseNet's `repeat 24: dense_layer()` gives 24 blocks whose input grows by 32
channels each; they are drawn once, with the first and the last copy's shape.

User text (file, network, layer and block names, arguments) reaches each format through one
escaping function per format: `xml_text`, `dot_string`, `mermaid_text`.

This module imports nothing beyond the IR, json and re: `archgen diagram` starts as fast as
`archgen check`.
"""

from __future__ import annotations

import json
import math
import re

from .ir import Layer, Merge, Network, Node, Seq, walk
from .record import record
from .report import call_text

# -- escaping: one function per format ---------------------------------------------------------

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Text for XML/SVG/HTML content and double- or single-quoted attribute values. Characters
    XML 1.0 forbids even escaped (control characters) become U+FFFD.

    >>> xml_text('<a href="x">\\'&</a>')
    '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&lt;/a&gt;'
    """
    text = _XML_ILLEGAL.sub("\ufffd", str(text))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def dot_string(text: str) -> str:
    """A Graphviz double-quoted string (IDs and labels). Backslashes are doubled, so no escape
    sequence of the user's (\\N, \\G, \\l) survives; newlines become centred line breaks, and
    control characters U+FFFD (Graphviz copies the graph's name into its SVG output verbatim).

    >>> print(dot_string('a"b\\\\N'))
    "a\\"b\\\\N"
    """
    text = _XML_ILLEGAL.sub("\ufffd", str(text)).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 _.,:=()\[\]+\-*/]")


def mermaid_text(text: str) -> str:
    """Text inside a Mermaid `["..."]` label: everything but plain characters becomes an
    entity code (`#60;`), so no quote, bracket, tag, comment (`%%`) or line break gets through.

    >>> mermaid_text('<b>"x"</b>')
    '#60;b#62;#34;x#34;#60;/b#62;'
    """
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in str(text))


# -- families and colours ----------------------------------------------------------------------

# The family is the module of `archgen/layers/` that defines the kind; a few kinds that live
# with others but do no arithmetic are drawn as plumbing.
_PLUMBING = {"identity", "flatten", "pad1d", "pad2d", "pad3d"}
COLOURS = {  # family -> (fill, stroke)
    "conv": ("#dbeafe", "#2563eb"),
    "pool": ("#dcfce7", "#16a34a"),
    "norm": ("#fef9c3", "#ca8a04"),
    "activation": ("#fee2e2", "#dc2626"),
    "dropout": ("#f3f4f6", "#6b7280"),
    "linear": ("#ede9fe", "#7c3aed"),
    "resize": ("#ccfbf1", "#0d9488"),
    "plumbing": ("#f8fafc", "#94a3b8"),
    "other": ("#ffffff", "#334155"),
    "merge": ("#ffedd5", "#ea580c"),
}


def family(layer: Layer) -> str:
    if layer.op in _PLUMBING:
        return "plumbing"
    name = type(layer.kind).__module__.rsplit(".", 1)[-1]
    return name if name in COLOURS else "other"


# -- the drawing tree --------------------------------------------------------------------------
# Each element stands for one node of the IR, or for the corresponding nodes of every copy in a
# folded run (`copies`, in forward order), so that a box knows all the layers it shows.

@record
class Box:
    copies: list  # list[Layer]


@record
class Join:
    copies: list  # list[Merge]
    branches: list  # list[Group]


@record
class Group:
    copies: list  # list[Seq]
    items: list
    label: str | None = None  # outlined with this label; None: drawn as a plain column


def _shape(s) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def shape_text(copies: list[Node]) -> str:
    first, last = _shape(copies[0].out_shape), _shape(copies[-1].out_shape)
    return first if first == last else f"{first} .. {last}"  # texts: sizes may be symbolic


def _form(node: Node) -> tuple:
    """Equal for blocks that read the same apart from sizes (the copies of a `repeat`). A name
    given in the spec counts: `a = blk()` and `b = blk()` are drawn apart. The copies of
    `repeat N as denselayer{1}` have names of their own but one place in the spec: a named
    block instance is known by where it is written, not by its name."""
    if isinstance(node, Layer):
        return ("layer", node.name, call_text(node))
    if isinstance(node, Merge):
        return ("merge", node.mode, tuple(_form(b) for b in node.branches))
    name = (node.span.file, node.span.line, node.span.column) if node.name and node.block \
        else node.name
    return ("seq", name, node.label, node.block, node.module,
            tuple(_form(c) for c in node.items))


def _runs(items: list[Node]) -> list[range]:
    """Index ranges of the runs of identical block instances among `items`."""
    runs: list[range] = []
    forms: list[tuple | None] = []
    for i, item in enumerate(items):
        form = _form(item) if isinstance(item, Seq) and item.block else None
        if runs and form is not None and forms[-1] == form:
            runs[-1] = range(runs[-1].start, i + 1)
        else:
            runs.append(range(i, i + 1))
            forms.append(form)
    return runs


def _group_label(seq: Seq) -> str:
    if seq.attr and seq.attr != seq.label and not seq.attr.isdigit():
        return f"{seq.attr}: {seq.label}"
    return seq.label


def _build(copies: list[Node], expand: bool):
    head = copies[0]
    if isinstance(head, Layer):
        return Box(copies)
    if isinstance(head, Merge):
        return Join(copies, [_build([c.branches[i] for c in copies], expand)
                             for i in range(len(head.branches))])
    items = []
    runs = [range(i, i + 1) for i in range(len(head.items))] if expand else _runs(head.items)
    for run in runs:
        members = [c.items[k] for c in copies for k in run]
        if len(run) == 1:
            items.append(_build(members, expand))
            continue
        # a run of block instances: one copy, its contents standing for every copy's
        first = head.items[run.start]
        inner = _build(members, expand)
        inner.label = f"{first.label} x {len(run)}"
        items.append(inner)
    return Group(copies, items, _group_label(head) if head.module else None)


def build_tree(net: Network, *, expand: bool = False) -> Group:
    tree = _build([net.root], expand)
    tree.label = None  # the network itself is the picture's title, not an outline
    return tree


def box_lines(box: Box) -> tuple[str, str, str]:
    """Head (name: op), arguments, output shape."""
    layer = box.copies[0]
    call = call_text(layer)
    args = call[len(layer.op) + 1:-1]
    head = f"{layer.name}: {layer.op}" if layer.name else layer.op
    return head, args, shape_text(box.copies)


def tooltip(box: Box) -> str:
    layer = box.copies[0]
    n = len(box.copies)
    lines = [f"{layer.path}: {call_text(layer)}" if layer.path else call_text(layer),
             f"line {layer.span.line}, output {shape_text(box.copies)}",
             (f"params {sum(c.params for c in box.copies):,}, "
              f"MACs {sum(c.macs for c in box.copies):,}, RF {layer.rf.label()}")]
    if n > 1:
        lines.append(f"{n} copies (sums over all of them)")
    return "\n".join(lines)


def families(tree) -> list[str]:
    seen: dict[str, None] = {}

    def visit(item) -> None:
        if isinstance(item, Box):
            seen[family(item.copies[0])] = None
        elif isinstance(item, Join):
            seen["merge"] = None
            for b in item.branches:
                visit(b)
        else:
            for i in item.items:
                visit(i)
    visit(tree)
    return [f for f in COLOURS if f in seen]


# -- SVG layout --------------------------------------------------------------------------------
# Every element is a rectangle whose input is the middle of its top edge and whose output the
# middle of its bottom edge, so a sequence is a centred column and a merge a row of columns.

FONT = 11
CHAR_W = 6.7  # monospace advance at FONT px (0.6 em) with a little slack
LINE_H = 14
PAD = 7
MAX_ARGS = 46  # characters of arguments shown in a box; the tooltip has them all
V_GAP = 20
H_GAP = 18
FORK = 22
GROUP_PAD = 10
GROUP_HEAD = 20
FONT_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, monospace"


def _text_w(text: str, char_w: float = CHAR_W) -> float:
    return len(text) * char_w


class _Svg:
    def __init__(self, to_scale: bool, scale: float, index: dict[int, int]):
        self.index = index  # id(layer) -> its place in forward order (the report's table row)
        self.to_scale = to_scale
        self.scale = scale  # pixels per feature-map pixel (to_scale)
        self.size: dict[int, tuple[float, float]] = {}
        self.out: list[str] = []
        self.drawn: dict[int, tuple] = {}  # id(node) -> the shape drawn, where it differs
        self.outs: dict[int, tuple[float, float]] = {}  # id(node) -> its output point, drawn
        self.gutter = 0.0  # x of the left gutter the `from` edges run down (set by render_svg)
        self.refs = 0  # `from` edges drawn so far (each gets a lane of its own)

    def dims(self, node: Node) -> tuple:
        """The shape a glyph is drawn at: symbolic sizes at the sample network's sizes."""
        return self.drawn.get(id(node), node.out_shape)

    # -- measuring ---------------------------------------------------------------------------
    def box_text(self, box: Box) -> list[str]:
        head, args, shape = box_lines(box)
        if len(args) > MAX_ARGS:
            args = args[:MAX_ARGS - 3] + "..."
        return [head, args, shape] if args else [head, shape]

    def glyph_size(self, shape) -> tuple[float, float, float]:
        """Width and height of a feature map's cuboid and its depth (the channels, log)."""
        if len(shape) == 3:
            c, h, w = shape
            depth = 3 + 4 * math.log2(max(c, 1))
            return w * self.scale + depth * 0.6, h * self.scale + depth * 0.45, depth
        return min(220.0, 12 * math.log2(max(shape[0], 2))), 8.0, 0.0

    def measure(self, item) -> tuple[float, float]:
        key = id(item)
        if key in self.size:
            return self.size[key]
        if isinstance(item, Box):
            lines = self.box_text(item)
            w = max(_text_w(t) for t in lines) + 2 * PAD
            h = len(lines) * LINE_H + 2 * PAD - 2
            if self.to_scale:
                gw, gh, _ = self.glyph_size(self.dims(item.copies[0]))
                w, h = max(w, gw + 2 * PAD), h + gh + PAD
            size = (max(w, 70.0), h)
        elif isinstance(item, Join):
            sizes = [self.measure(b) for b in item.branches]
            pw, ph = self.join_size(item)
            w = sum(s[0] for s in sizes) + H_GAP * (len(sizes) - 1)
            size = (max(w, pw), FORK + max(s[1] for s in sizes) + FORK + ph)
        else:
            sizes = [self.measure(i) for i in item.items]
            w = max((s[0] for s in sizes), default=16.0)
            h = sum(s[1] for s in sizes) + V_GAP * max(len(sizes) - 1, 0)
            if item.label is not None:
                label_w = _text_w(item.label) + 2 * GROUP_PAD
                # the label sits left of the line that enters the group: keep them apart
                w = max(w + 2 * GROUP_PAD, 2 * (label_w + 6))
                h += GROUP_HEAD + GROUP_PAD + (GROUP_HEAD if not item.items else 0)
            size = (w, h)
        self.size[key] = size
        return size

    def join_size(self, join: Join) -> tuple[float, float]:
        lines = [join.copies[0].mode, shape_text(join.copies)]
        return max(_text_w(t) for t in lines) + 2 * PAD, len(lines) * LINE_H + 2 * PAD - 2

    # -- placing -----------------------------------------------------------------------------
    def line(self, points, arrow: bool, cls: str = "edge", data: str = "") -> None:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        marker = ' marker-end="url(#arrow)"' if arrow else ""
        self.out.append(f'<polyline class="{cls}" points="{pts}"{marker}{data}/>')

    def text(self, x: float, y: float, text: str, cls: str, anchor: str = "middle") -> None:
        self.out.append(f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" '
                        f'text-anchor="{anchor}">{xml_text(text)}</text>')

    def place(self, item, left: float, top: float) -> None:
        if isinstance(item, Box):
            self.place_box(item, left, top)
        elif isinstance(item, Join):
            self.place_join(item, left, top)
        else:
            self.place_group(item, left, top)
        w, h = self.measure(item)
        for c in item.copies:  # where a `from` or an `output` reads it
            self.outs[id(c)] = (left + w / 2, top + h)

    def place_box(self, box: Box, left: float, top: float) -> None:
        w, h = self.measure(box)
        fam = family(box.copies[0])
        fill, stroke = COLOURS[fam]
        paths = json.dumps([c.path for c in box.copies])  # a list: a path may hold anything
        rows = json.dumps([self.index[id(c)] for c in box.copies])
        self.out.append(f'<g class="node f-{fam}" data-paths="{xml_text(paths)}" '
                        f'data-layers="{rows}">'
                        f'<title>{xml_text(tooltip(box))}</title>')
        self.out.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{w:.1f}" height="{h:.1f}" '
                        f'rx="5" fill="{fill}" stroke="{stroke}"/>')
        cx = left + w / 2
        y = top + PAD
        if self.to_scale:
            y = self.cuboid(self.dims(box.copies[0]), cx, y, stroke) + PAD
        lines = self.box_text(box)
        for i, t in enumerate(lines):
            cls = "head" if i == 0 else ("shape" if i == len(lines) - 1 else "args")
            self.text(cx, y + (i + 1) * LINE_H - 3, t, cls)
        self.out.append("</g>")

    def cuboid(self, shape, cx: float, top: float, stroke: str) -> float:
        """A feature map drawn to scale: the front face is H x W, the depth log2(channels);
        a vector is a bar. Returns the bottom edge."""
        gw, gh, depth = self.glyph_size(shape)
        left = cx - gw / 2
        if len(shape) != 3:
            self.out.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{gw:.1f}" '
                            f'height="{gh:.1f}" fill="{stroke}" fill-opacity="0.35" '
                            f'stroke="{stroke}"/>')
            return top + gh
        dx, dy = depth * 0.6, depth * 0.45
        fw, fh = gw - dx, gh - dy
        x0, y0 = left, top + dy  # front face, top-left corner
        faces = [
            [(x0, y0), (x0 + dx, y0 - dy), (x0 + fw + dx, y0 - dy), (x0 + fw, y0)],  # top
            [(x0 + fw, y0), (x0 + fw + dx, y0 - dy), (x0 + fw + dx, y0 + fh - dy),
             (x0 + fw, y0 + fh)],  # side
            [(x0, y0), (x0 + fw, y0), (x0 + fw, y0 + fh), (x0, y0 + fh)],  # front
        ]
        for face, opacity in zip(faces, ("0.25", "0.45", "0.6")):
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in face)
            self.out.append(f'<polygon points="{pts}" fill="{stroke}" fill-opacity="{opacity}" '
                            f'stroke="{stroke}" stroke-width="0.7"/>')
        return top + gh

    def place_group(self, group: Group, left: float, top: float) -> None:
        w, h = self.measure(group)
        cx = left + w / 2
        y = top
        if group.label is not None:
            self.out.append(f'<g class="group"><rect x="{left:.1f}" y="{top:.1f}" '
                            f'width="{w:.1f}" height="{h:.1f}" rx="8"/>')
            self.text(left + GROUP_PAD, top + 14, group.label, "glabel", "start")
            self.out.append("</g>")
            y += GROUP_HEAD
            self.line([(cx, top), (cx, y)], False)
            if not group.items:
                self.line([(cx, y), (cx, top + h)], False)
        for i, item in enumerate(group.items):
            iw, ih = self.measure(item)
            if i:
                self.line([(cx, y - V_GAP), (cx, y)], not isinstance(item, Join))
            self.place(item, cx - iw / 2, y)
            y += ih + V_GAP
        if group.label is not None and group.items:
            self.line([(cx, y - V_GAP), (cx, top + h)], False)

    def place_join(self, join: Join, left: float, top: float) -> None:
        w, _ = self.measure(join)
        cx = left + w / 2
        sizes = [self.measure(b) for b in join.branches]
        total = sum(s[0] for s in sizes) + H_GAP * (len(sizes) - 1)
        x = cx - total / 2
        bottom = top + FORK + max(s[1] for s in sizes)
        fork_y, join_y = top + FORK / 2, bottom + FORK / 2
        for branch, (bw, bh) in zip(join.branches, sizes):
            bx = x + bw / 2
            first = branch.items[0] if branch.items else None
            arrow = first is not None and not isinstance(first, Join)
            source = branch.copies[0].source
            if source is not None and id(source) in self.outs:
                # `from NAME`: the branch starts at the named node's output, reached down the
                # left gutter (a lane per edge), not at the merge's input
                sx, sy = self.outs[id(source)]
                lane = self.gutter - 8 * self.refs
                self.refs += 1
                ty = top + FORK * 0.75
                self.line([(sx, sy), (sx, sy + V_GAP / 2), (lane, sy + V_GAP / 2), (lane, ty),
                           (bx, ty), (bx, top + FORK)], arrow, "edge ref",
                          f' data-from="{xml_text(source.path or source.name or "")}"')
            else:
                self.line([(cx, top), (cx, fork_y), (bx, fork_y), (bx, top + FORK)], arrow)
            self.place(branch, x, top + FORK)
            self.line([(bx, top + FORK + bh), (bx, join_y), (cx, join_y), (cx, bottom + FORK)],
                      True)
            x += bw + H_GAP
        pw, ph = self.join_size(join)
        fill, stroke = COLOURS["merge"]
        self.out.append('<g class="merge">'
                        f'<rect x="{cx - pw / 2:.1f}" y="{bottom + FORK:.1f}" width="{pw:.1f}" '
                        f'height="{ph:.1f}" rx="{ph / 2:.1f}" fill="{fill}" stroke="{stroke}"/>')
        self.text(cx, bottom + FORK + PAD + LINE_H - 3, join.copies[0].mode, "head")
        self.text(cx, bottom + FORK + PAD + 2 * LINE_H - 3, shape_text(join.copies), "shape")
        self.out.append("</g>")


_STYLE = (
    f"text{{font-family:{FONT_FAMILY};font-size:{FONT}px;fill:#0f172a}}"
    ".head{font-weight:bold}.args{fill:#334155}.shape{fill:#475569}"
    ".title{font-size:15px;font-weight:bold}.sub{fill:#475569}"
    ".glabel{font-weight:bold;fill:#475569}"
    ".group rect{fill:#64748b;fill-opacity:0.04;stroke:#64748b;stroke-dasharray:5 3}"
    ".edge{fill:none;stroke:#475569;stroke-width:1.2}.edge.ref{stroke-dasharray:4 3}"
)


def render_svg(net: Network, *, expand: bool = False, to_scale: bool = False) -> str:
    tree = build_tree(net, expand=expand)
    geo = net.sample or net  # symbolic sizes are drawn at the sample's, labelled as symbols
    spatial = [max(n.out_shape[1:]) for n in geo.layers() if len(n.out_shape) == 3]
    spatial.append(max(geo.input_shape[1:]) if len(geo.input_shape) == 3 else 1)
    index = {id(layer): i for i, layer in enumerate(net.layers())}
    svg = _Svg(to_scale, 160 / max(spatial), index)  # the largest map is 160 px across
    if net.sample is not None:
        svg.drawn = {id(a): b.out_shape for a, b in zip(walk(net.root), walk(geo.root))}
    tw, th = svg.measure(tree)

    def io_w(text: str) -> float:
        return _text_w(text) + 2 * PAD

    inp = f"input {_shape(net.input_shape)}"
    # `output NAME, ...`: the one that ends the network at the bottom, the others beside the
    # nodes that compute them; no names: the last value, at the bottom
    last = net.root.items[-1] if net.root.items else None
    bottom = [o for o in net.outputs if o.node is last][:1]
    side = [o for o in net.outputs if o not in bottom]
    outp = (f"output {bottom[0].name} {_shape(bottom[0].node.out_shape)}" if bottom else
            None if net.outputs else f"output {_shape(net.output_shape)}")
    side_texts = [f"output {o.name} {_shape(o.node.out_shape)}" for o in side]
    outs = (", ".join(f"{o.name} {_shape(o.node.out_shape)}" for o in net.outputs)
            if net.outputs else _shape(net.output_shape))
    title = f"{net.name}: {_shape(net.input_shape)} -> {outs}"
    macs = (f"{net.total_macs / 1e6:,.1f} M MACs" if net.sample is None else
            f"{geo.total_macs / 1e6:,.1f} M MACs at {_shape(geo.input_shape)}")
    sub = (f"{net.total_params:,} parameters, {macs}"
           f"{', feature maps to scale (depth: log2 channels)' if to_scale else ''}"
           f"{'' if expand else ', repeats folded (x N)'}")
    fams = families(tree)
    legend_w = sum(_text_w(f) + 26 for f in fams)
    margin = 16
    n_refs = sum(1 for n in walk(net.root) if isinstance(n, Seq) and n.source is not None)
    beside = max(max((io_w(t) for t in side_texts), default=0) + 16, 10 + 8 * n_refs)
    width = max(tw + 2 * beside, io_w(inp), io_w(outp or ""), _text_w(title, 9.2),
                _text_w(sub), legend_w) + 2 * margin
    cx = width / 2
    svg.gutter = cx - tw / 2 - 10
    box_h = LINE_H + 2 * PAD - 2

    y = margin + 14
    svg.text(margin, y, title, "title", "start")
    y += 18
    svg.text(margin, y, sub, "sub", "start")
    y += 14
    x = margin
    for fam in fams:
        fill, stroke = COLOURS[fam]
        svg.out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="14" height="12" rx="2" '
                       f'fill="{fill}" stroke="{stroke}"/>')
        svg.text(x + 19, y + 10, fam, "sub", "start")
        x += _text_w(fam) + 26
    y += 30

    def io_box(text: str, top: float) -> None:
        w = io_w(text)
        svg.out.append(f'<rect x="{cx - w / 2:.1f}" y="{top:.1f}" width="{w:.1f}" '
                       f'height="{box_h:.1f}" rx="{box_h / 2:.1f}" fill="#f1f5f9" '
                       f'stroke="#0f172a"/>')
        svg.text(cx, top + PAD + LINE_H - 3, text, "head")

    io_box(inp, y)
    y += box_h + V_GAP
    first = tree.items[0] if tree.items else None
    svg.line([(cx, y - V_GAP), (cx, y)], not isinstance(first, Join))
    svg.place(tree, cx - tw / 2, y)
    for o, text in zip(side, side_texts):
        ox, oy = svg.outs[id(o.node)]
        w, left = io_w(text), cx + tw / 2 + 16
        svg.line([(ox, oy), (ox, oy + V_GAP / 2), (left, oy + V_GAP / 2)], True, "edge out",
                 f' data-output="{xml_text(o.name)}"')
        svg.out.append(f'<g class="output"><rect x="{left:.1f}" y="{oy + V_GAP / 2 - box_h / 2:.1f}" '
                       f'width="{w:.1f}" height="{box_h:.1f}" rx="{box_h / 2:.1f}" '
                       f'fill="#f1f5f9" stroke="#0f172a"/>')
        svg.text(left + w / 2, oy + V_GAP / 2 - box_h / 2 + PAD + LINE_H - 3, text, "head")
        svg.out.append("</g>")
    y += th + V_GAP
    if outp is not None:
        svg.line([(cx, y - V_GAP), (cx, y)], True)
        io_box(outp, y)
        y += box_h
    else:
        y -= V_GAP
    height = y + margin

    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
            f"<title>{xml_text(title)}</title>"
            f"<defs><style>{_STYLE}</style>"
            '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#475569"/></marker></defs>'
            f'<rect width="100%" height="100%" fill="#ffffff"/>')
    return head + "\n" + "\n".join(svg.out) + "\n</svg>\n"


# -- graph formats (DOT, Mermaid) --------------------------------------------------------------

class _Graph:
    """The tree as nodes, nested clusters and edges, for formats that lay themselves out."""

    def __init__(self):
        self.edges: list[tuple[str, str]] = []
        self.count = 0
        self.exits: dict[int, list[str]] = {}  # id(IR node) -> the ids its output leaves by

    def walk(self, item, preds: list[str]) -> tuple[list, list[str]]:
        contents, exits = self._walk(item, preds)
        for c in item.copies:  # where a `from` or an `output` reads it
            self.exits[id(c)] = exits
        return contents, exits

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def _walk(self, item, preds: list[str]) -> tuple[list, list[str]]:
        """(cluster contents, exit node ids). Contents: ("node", id, lines, family) and
        ("cluster", id, label, contents)."""
        if isinstance(item, Box):
            nid = self.new_id("n")
            self.edges += [(p, nid) for p in preds]
            return [("node", nid, list(box_lines(item)), family(item.copies[0]))], [nid]
        if isinstance(item, Join):
            contents, exits = [], []
            for b in item.branches:
                source = b.copies[0].source  # `from NAME`: starts at that node's output
                c, e = self.walk(b, self.exits.get(id(source), preds) if source else preds)
                contents += c
                exits += e
            mid = self.new_id("m")
            self.edges += [(p, mid) for p in exits]
            contents.append(("node", mid, [item.copies[0].mode, shape_text(item.copies)],
                             "merge"))
            return contents, [mid]
        contents = []
        for sub in item.items:
            c, preds = self.walk(sub, preds)
            contents += c
        if item.label is not None:
            return [("cluster", self.new_id("g"), item.label, contents)], preds
        return contents, preds


def _graph(net: Network, expand: bool) -> tuple[list, list[tuple[str, str]]]:
    g = _Graph()
    inp = ("node", "input", ["input", _shape(net.input_shape)], "io")
    body, exits = g.walk(build_tree(net, expand=expand), ["input"])
    if not net.outputs:
        outp = ("node", "output", ["output", _shape(net.output_shape)], "io")
        g.edges += [(p, "output") for p in exits]
        return [inp, *body, outp], g.edges
    outs = []  # `output NAME, ...`: one node per named output, from the node computing it
    for i, o in enumerate(net.outputs):
        oid = f"output{i + 1}"
        outs.append(("node", oid, [f"output {o.name}", _shape(o.node.out_shape)], "io"))
        g.edges += [(p, oid) for p in g.exits.get(id(o.node), exits)]
    return [inp, *body, *outs], g.edges


def render_dot(net: Network, *, expand: bool = False) -> str:
    contents, edges = _graph(net, expand)
    out = [f"digraph {dot_string(net.name)} {{",
           "  rankdir=TB;",
           f"  label={dot_string(f'{net.name}: {net.total_params:,} parameters')};",
           '  labelloc=t; fontname="monospace";',
           '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
           '  edge [color="#475569"];']

    def emit(items: list, indent: str) -> None:
        for entry in items:
            if entry[0] == "node":
                _, nid, lines, fam = entry
                fill, stroke = COLOURS.get(fam, ("#f1f5f9", "#0f172a"))
                label = "\n".join(t for t in lines if t)
                out.append(f"{indent}{nid} [label={dot_string(label)}, fillcolor=\"{fill}\", "
                           f"color=\"{stroke}\"];")
            else:
                _, cid, label, inner = entry
                out.append(f"{indent}subgraph cluster_{cid} {{")
                out.append(f"{indent}  label={dot_string(label)}; style=\"rounded,dashed\"; "
                           'color="#64748b";')
                emit(inner, indent + "  ")
                out.append(f"{indent}}}")
    emit(contents, "  ")
    out += [f"  {a} -> {b};" for a, b in edges]
    out.append("}")
    return "\n".join(out) + "\n"


def render_mermaid(net: Network, *, expand: bool = False) -> str:
    contents, edges = _graph(net, expand)
    out = ["flowchart TD"]
    used: dict[str, None] = {}

    def emit(items: list, indent: str) -> None:
        for entry in items:
            if entry[0] == "node":
                _, nid, lines, fam = entry
                label = "<br/>".join(mermaid_text(t) for t in lines if t)
                out.append(f'{indent}{nid}["{label}"]:::{fam}')
                used[fam] = None
            else:
                _, cid, label, inner = entry
                out.append(f'{indent}subgraph {cid}["{mermaid_text(label)}"]')
                emit(inner, indent + "  ")
                out.append(f"{indent}end")
    emit(contents, "  ")
    out += [f"  {a} --> {b}" for a, b in edges]
    for fam in used:
        fill, stroke = COLOURS.get(fam, ("#f1f5f9", "#0f172a"))
        out.append(f"  classDef {fam} fill:{fill},stroke:{stroke}")
    return "\n".join(out) + "\n"


def write_output(output: str, text: str) -> None:
    """`-` prints to stdout; a path is written atomically, and the path named on stderr."""
    import sys
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from .fsutil import write_atomic
    changed = write_atomic(output, text)
    print(f"{'wrote' if changed else 'unchanged'} {output}", file=sys.stderr)


FORMATS = ("svg", "dot", "mermaid")
SUFFIXES = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}


def render_diagram(net: Network, fmt: str = "svg", *, expand: bool = False,
                   to_scale: bool = False) -> str:
    if fmt == "svg":
        return render_svg(net, expand=expand, to_scale=to_scale)
    if fmt == "dot":
        return render_dot(net, expand=expand)
    if fmt == "mermaid":
        return render_mermaid(net, expand=expand)
    raise ValueError(f"unknown diagram format {fmt!r}; one of {', '.join(FORMATS)}")
