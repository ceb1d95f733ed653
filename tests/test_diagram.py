"""`archgen diagram`: every layer drawn once, branches side by side, repeats folded, valid and
escaped SVG/DOT/Mermaid, and a light import path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen.cli import main
from archgen.diagram import (
    build_tree,
    dot_string,
    mermaid_text,
    render_diagram,
    render_dot,
    render_mermaid,
    render_svg,
    xml_text,
)
from archgen.ir import Layer, Merge, Seq, walk

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
SVG = "{http://www.w3.org/2000/svg}"
# closes every quote and markup style of the four formats, plus a control character
PAYLOAD = "</text><script>alert(1)</script>\"'`]]>--><!-- \n\r\\N\\l %% #35; {x}|&amp;\x01"


def net(name: str):
    return archgen.load(ROOT / "examples" / f"{name}.cnn").network


def nodes(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if "node" in g.get("class", "")]


def rect_of(g: ET.Element) -> tuple[float, float, float, float]:
    r = g.find(f"{SVG}rect")
    return (float(r.get("x")), float(r.get("y")), float(r.get("width")),
            float(r.get("height")))


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", ["folded", "expand", "to_scale"])
def test_every_layer_is_drawn_in_exactly_one_box(spec, mode):
    """Folded or not, the boxes' layer paths are every layer of the network, each once."""
    n = archgen.load(spec).network
    svg = render_svg(n, expand=mode == "expand", to_scale=mode == "to_scale")
    drawn = [p for g in nodes(svg) for p in json.loads(g.get("data-paths"))]
    assert sorted(drawn) == sorted(layer.path for layer in n.layers())
    rows = [i for g in nodes(svg) for i in json.loads(g.get("data-layers"))]
    assert sorted(rows) == list(range(len(list(n.layers()))))


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", ["folded", "expand", "to_scale"])
def test_boxes_do_not_overlap_and_fit_the_canvas(spec, mode):
    n = archgen.load(spec).network
    svg = render_svg(n, expand=mode == "expand", to_scale=mode == "to_scale")
    root = ET.fromstring(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    rects = sorted(rect_of(g) for g in nodes(svg))
    for x, y, w, h in rects:
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
    for i, (x, y, w, h) in enumerate(rects):
        for x2, y2, w2, h2 in rects[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, (x, y, x2, y2)


def test_branches_sit_side_by_side_and_join_below():
    """U-Net's first skip: the identity and the maxpool branch start on one row, apart, and
    the concat that joins them lies below both."""
    svg = render_svg(net("unet_small"))
    boxes = {json.loads(g.get("data-paths"))[0]: rect_of(g) for g in nodes(svg)}
    ix, iy, iw, _ = boxes["identity"]
    mx, my, _, _ = boxes["maxpool2d"]
    assert iy == my and ix + iw < mx
    merges = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "merge"]
    assert len(merges) == 3
    texts = ["".join(t.itertext()) for t in merges[0].iter(f"{SVG}text")]
    assert texts[0] == "concat" and texts[1] == "[128, 16, 16]"  # the innermost, drawn first
    outer_y = float(merges[-1].find(f"{SVG}rect").get("y"))  # the outermost, drawn last
    assert boxes["up1.0"][1] < outer_y < boxes["dec1.0"][1]


def test_densenet_repeats_are_folded_with_their_count_and_shape_range():
    n = net("densenet121")
    folded, full = render_svg(n), render_svg(n, expand=True)
    labels = ["".join(t.itertext()) for t in ET.fromstring(folded).iter(f"{SVG}text")]
    for count in (6, 12, 24, 16):
        assert f"dense_layer() x {count}" in labels
    assert "[64, 56, 56] .. [224, 56, 56]" in labels  # norm1's input grows by 32 per copy
    assert "[96, 56, 56] .. [256, 56, 56]" in labels  # the concat's output
    assert len(nodes(folded)) < len(nodes(full)) / 8
    assert not any(" x " in t for t in
                   ["".join(t.itertext()) for t in ET.fromstring(full).iter(f"{SVG}text")]
                   if t.startswith("dense_layer"))


def test_first_copy_that_differs_is_not_folded():
    """ResNet's `repeat 2 first(stride=2, down=true)`: the first copy has a downsample branch,
    so only identical copies fold."""
    tree = build_tree(net("resnet18"))
    layer2 = next(g for g in tree.items[5:] if getattr(g, "label", None) == "layer2")
    assert [g.label for g in layer2.items] == ["basic(128, stride=2, down=true)", "basic(128)"]
    layer1 = next(g for g in tree.items if getattr(g, "label", None) == "layer1")
    assert [g.label for g in layer1.items] == ["basic(64) x 2"]


def test_named_block_calls_are_not_folded():
    spec = ("input [3, 8, 8]\nblock blk(c):\n    conv2d(c, 3, padding=1)\n    relu()\n"
            "a = blk(4)\nb = blk(4)\nblk(4)\nblk(4)\n")
    tree = build_tree(archgen.parse(spec).network)
    assert [g.label for g in tree.items] == ["a: blk(4)", "b: blk(4)", "blk(4) x 2"]


def test_to_scale_draws_feature_maps_in_proportion():
    """AlexNet's first conv gives 55x55 maps, its first pool 27x27: the cuboids' front faces
    keep that ratio; the channel depth grows with the channels."""
    svg = render_svg(net("alexnet"), to_scale=True)
    faces = {}
    for g in nodes(svg):
        polys = g.findall(f"{SVG}polygon")
        if polys:
            pts = [tuple(map(float, p.split(","))) for p in polys[2].get("points").split()]
            top = [tuple(map(float, p.split(","))) for p in polys[0].get("points").split()]
            path = json.loads(g.get("data-paths"))[0]
            faces[path] = (pts[1][0] - pts[0][0], pts[2][1] - pts[1][1], top[1][0] - top[0][0])
    w55, h55, d64 = faces["features.0"]
    w27, h27, d64b = faces["features.2"]
    assert w55 / w27 == pytest.approx(55 / 27, rel=0.02)
    assert h55 / h27 == pytest.approx(55 / 27, rel=0.02)
    assert d64 == pytest.approx(d64b, abs=0.15)
    assert faces["features.3"][2] > d64  # 192 channels are deeper than 64


def hostile_network():
    """ResNet-18 with every piece of text that reaches a picture replaced by PAYLOAD."""
    n = net("resnet18")
    n.name = PAYLOAD
    n.file = PAYLOAD
    for i, node in enumerate(walk(n.root)):
        if isinstance(node, Layer):
            node.name = f"{PAYLOAD}{i}"
            if node.op == "conv2d":
                node.args["padding_mode"] = PAYLOAD
        elif isinstance(node, Seq) and node.module:
            node.label = PAYLOAD
            node.attr = f"{PAYLOAD}{i}"
        elif isinstance(node, Merge):
            node.mode = PAYLOAD
        node.path = f"{PAYLOAD}.{i}"
    return n


def test_hostile_text_stays_text_in_svg():
    svg = render_svg(hostile_network())
    root = ET.fromstring(svg)  # well-formed despite ]]>, -->, quotes and a control character
    assert not list(root.iter(f"{SVG}script"))
    assert not [a for el in root.iter() for a in el.attrib if a.lower().startswith("on")]
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert PAYLOAD.replace("\x01", "\ufffd") + "0" in " ".join(texts) or \
        any(t.startswith("</text><script>") for t in texts)
    titles = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert any(PAYLOAD.replace("\x01", "\ufffd").replace("\r", "\r") in t for t in titles)


def test_hostile_text_stays_inside_dot_strings():
    dot = render_dot(hostile_network())
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', dot)
    outside = re.sub(r'"((?:[^"\\]|\\.)*)"', '""', dot)
    assert "<script>" not in outside and "\r" not in outside
    for line in outside.splitlines():  # what is left is DOT syntax only
        assert re.fullmatch(r'\s*(digraph ""|\}|rankdir=TB;|label="";|labelloc=t; .*|'
                            r'node \[.*\];|edge \[.*\];|\w+ \[label="", fillcolor="", '
                            r'color=""\];|subgraph cluster_\w+ \{|label=""; style=""; '
                            r'color="";|\w+ -> \w+;)\s*\{?', line), line
    unescaped = [re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], s) for s in strings]
    assert any(PAYLOAD.replace("\r", "").replace("\x01", "\ufffd") in u for u in unescaped)


def test_hostile_text_stays_inside_mermaid_labels():
    text = render_mermaid(hostile_network())
    label = r'"[A-Za-z0-9 _.,:=()\[\]+\-*/#;]*(<br/>[A-Za-z0-9 _.,:=()\[\]+\-*/#;]*)*"'
    for line in text.splitlines()[1:]:
        assert re.fullmatch(rf"\s*(\w+\[{label}\]:::\w+|subgraph \w+\[{label}\]|end|"
                            rf"\w+ --> \w+|classDef \w+ fill:#\w+,stroke:#\w+)", line), line
    assert "#60;script#62;" in text and "#10;" in text


@pytest.mark.parametrize("escape, payload, expected", [
    (xml_text, "a<b>&\"'\n", "a&lt;b&gt;&amp;&quot;&#39;&#10;"),
    (dot_string, 'a"\\\n', '"a\\"\\\\\\n"'),
    (mermaid_text, 'a"<%\n', "a#34;#60;#37;#10;"),
])
def test_one_escaping_function_per_format(escape, payload, expected):
    assert escape(payload) == expected


def test_merge_modes_are_drawn_generically():
    """A merge kind the diagram has never heard of (say a future `mul:`) is drawn by name."""
    n = net("resnet18")
    merge = next(m for m in walk(n.root) if isinstance(m, Merge))
    merge.mode = "mul"
    svg = render_svg(n)
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "mul" in texts and "add" in texts
    assert '["mul<br/>' in render_mermaid(n)


def test_dot_and_mermaid_edges_follow_the_structure():
    """Seed CNN is a chain: input -> 17 layers -> output, one edge into each; DenseNet's
    concat nodes take two inputs each."""
    seed = render_dot(net("seed_cnn"))
    assert len(list(net("seed_cnn").layers())) == 17
    assert len(re.findall(r" -> ", seed)) == 18
    mermaid = render_mermaid(net("densenet121"))
    merges = re.findall(r"^\s*(m\d+)\[", mermaid, re.MULTILINE)
    assert len(merges) == 4  # one per dense block: the folded copy
    for m in merges:
        assert len(re.findall(rf"--> {m}$", mermaid, re.MULTILINE)) == 2


def _group_rect(svg: str, label: str):
    """The outline of the group labelled `label` in an SVG diagram: (x, y, width, height)."""
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") == "group" and "".join(g.find(f"{SVG}text").itertext()) == label:
            r = g.find(f"{SVG}rect")
            return tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
    raise AssertionError(f"no group {label!r}")


def _mermaid_nodes(mermaid: str, subgraph: str) -> list[str]:
    """The node ids inside the Mermaid subgraph labelled `subgraph`, in order."""
    lines = mermaid.splitlines()
    start = next(i for i, t in enumerate(lines) if t.strip().endswith(f'["{subgraph}"]')
                 and t.strip().startswith("subgraph "))
    indent = len(lines[start]) - len(lines[start].lstrip())
    ids = []
    for t in lines[start + 1:]:
        if t.strip() == "end" and len(t) - len(t.lstrip()) == indent:
            break
        m = re.match(r"\s*(\w+)\[", t)
        if m and not t.strip().startswith("subgraph"):
            ids.append(m.group(1))
    return ids


def test_a_from_branch_starts_at_the_named_node():
    """FPN's `p4: add: upsample(...); branch: from c4; lateral = conv2d(64, 1)`: the lateral
    branch reads c4's output, not the merge's input (p5). SVG: an edge from the bottom of the
    c4 outline to the top of the branch; Mermaid/DOT: an edge from c4's last node into the
    lateral conv, and none from p5."""
    n = net("fpn")
    svg = render_svg(n)
    x, y, w, h = _group_rect(svg, "c4")
    refs = {e.get("data-from"): e.get("points").split()
            for e in ET.fromstring(svg).iter(f"{SVG}polyline") if e.get("data-from")}
    assert set(refs) == {"c2", "c3", "c4"}
    sx, sy = map(float, refs["c4"][0].split(","))
    assert abs(sx - (x + w / 2)) < 0.2 and abs(sy - (y + h)) < 0.2
    px, py, pw, ph = _group_rect(svg, "p4")
    ex, ey = map(float, refs["c4"][-1].split(","))
    assert px < ex < px + pw and py < ey < py + ph  # it ends inside p4, at the branch's top

    mermaid = render_mermaid(n)
    c4_exit = _mermaid_nodes(mermaid, "c4")[-1]
    lateral = next(i for i in _mermaid_nodes(mermaid, "p4")
                   if re.search(rf'^\s*{i}\["lateral: conv2d', mermaid, re.MULTILINE))
    p5 = re.search(r'^\s*(\w+)\["p5: conv2d', mermaid, re.MULTILINE).group(1)
    into = re.findall(rf"^\s*(\w+) --> {lateral}$", mermaid, re.MULTILINE)
    assert into == [c4_exit] and p5 not in into
    assert f"  {c4_exit} -> {lateral};" in render_dot(n).splitlines()


def test_every_named_output_is_shown():
    """`output p2, p3, p4, p5`: an output node per name with its shape, fed by the node that
    computes it (p2 ends the network; the others leave from the middle)."""
    n = net("fpn")
    shapes = {o.name: "[" + ", ".join(map(str, o.node.out_shape)) + "]" for o in n.outputs}
    assert list(shapes) == ["p2", "p3", "p4", "p5"]
    svg = render_svg(n)
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]
    for name, shape in shapes.items():
        assert f"output {name} {shape}" in texts
    outs = {e.get("data-output"): e.get("points").split()
            for e in ET.fromstring(svg).iter(f"{SVG}polyline") if e.get("data-output")}
    assert set(outs) == {"p3", "p4", "p5"}
    x, y, w, h = _group_rect(svg, "p3")
    assert outs["p3"][0] == f"{x + w / 2:.1f},{y + h:.1f}"
    mermaid = render_mermaid(n)
    p3_exit = _mermaid_nodes(mermaid, "p3")[-1]
    p5 = re.search(r'^\s*(\w+)\["p5: conv2d', mermaid, re.MULTILINE).group(1)
    for i, (name, shape) in enumerate(shapes.items(), 1):
        assert f'output{i}["output {name}<br/>{shape}"]' in mermaid
    assert f"  {p3_exit} --> output2" in mermaid.splitlines()
    assert f"  {p5} --> output4" in mermaid.splitlines()
    assert "output [" not in mermaid  # no unnamed output besides the named ones


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_writes_a_file_or_stdout(tmp_path):
    spec = str(ROOT / "examples" / "seed_cnn.cnn")
    out = tmp_path / "net.svg"
    result = run("diagram", spec, "-o", str(out))
    assert result.exit_code == 0, result.output
    ET.fromstring(out.read_text())
    assert run("diagram", spec, "-o", "-").stdout.startswith("<svg")
    assert run("diagram", spec, "--format", "dot").stdout.startswith('digraph "SeedCNN"')
    mmd = tmp_path / "net.mmd"
    assert run("diagram", spec, "-o", str(mmd)).exit_code == 0
    assert mmd.read_text().startswith("flowchart TD")


def test_cli_refuses_a_broken_spec_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.cnn"
    spec.write_text("input [3, 8, 8]\nconv2d(16, 9)\n")
    out = tmp_path / "net.svg"
    result = run("diagram", str(spec), "-o", str(out))
    assert result.exit_code == 1 and "E402" in result.output
    assert not out.exists()
    assert run("diagram", str(tmp_path / "missing.cnn")).exit_code == 2


def test_to_scale_is_refused_for_the_graph_formats(tmp_path):
    spec = str(ROOT / "examples" / "lenet5.cnn")
    result = run("diagram", spec, "--to-scale", "-o", str(tmp_path / "net.dot"))
    assert result.exit_code == 2 and "--to-scale draws SVG only" in result.output
    assert not (tmp_path / "net.dot").exists()


def test_render_diagram_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="svg, dot, mermaid"):
        render_diagram(net("lenet5"), "png")


def test_diagram_imports_no_heavy_package(tmp_path):
    """`archgen diagram` starts like `check`: no torch, onnx, onnxruntime, numpy or jinja2."""
    spec = str(ROOT / "examples" / "densenet121.cnn")
    code = (
        "import sys\n"
        "from archgen.cli import main\n"
        "for fmt in ('svg', 'dot', 'mermaid'):\n"
        "    try:\n"
        f"        main(['diagram', {spec!r}, '--format', fmt, '-o', {str(tmp_path / 'x')!r}])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in\n"
        "               ('torch', 'onnx', 'onnxruntime', 'jinja2', 'numpy'))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stderr, out.stderr


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot is not installed (optional: apt-get install graphviz)")
@pytest.mark.parametrize("which", ["resnet18", "densenet121", "unet_small", "hostile"])
def test_graphviz_accepts_the_dot(which):
    """Graphviz itself parses the DOT, hostile names included, into one node per box."""
    n = hostile_network() if which == "hostile" else net(which)
    done = subprocess.run(["dot", "-Tsvg"], input=render_dot(n), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr
    root = ET.fromstring(done.stdout)
    boxes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    assert len(boxes) == len(re.findall(r"^\s*\w+ \[label=", render_dot(n), re.MULTILINE))
    assert not list(root.iter(f"{SVG}script"))
