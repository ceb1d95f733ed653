"""Merges and graphs beyond add/concat: mul: with broadcasting, `from NAME` branches (any DAG)
and several named outputs. PyTorch is the oracle for shapes and numbers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import archgen
from archgen.ir import Merge, walk

torch = pytest.importorskip("torch")

from test_memory import _saved_bytes  # what autograd keeps, one definition


def _codes(text: str) -> list[tuple[str, int, int]]:
    arch = archgen.parse(text, "t.cnn")
    return [(d.code, d.span.line, d.span.column) for d in arch.check() if d.is_error]


def _net(text: str):
    arch = archgen.parse(text, "t.cnn")
    assert arch.ok, "\n".join(d.render(arch.source) for d in arch.check())
    return arch.network


# -- mul: ---------------------------------------------------------------------------------------

def _random_mul(rng: random.Random) -> tuple[str, list[tuple[int, int, int]], tuple]:
    c, h, w = rng.randint(1, 4), rng.randint(2, 5), rng.randint(2, 5)
    branches, shapes = [], []
    for _ in range(rng.randint(2, 3)):
        bh, bw = rng.choice([1, h]), rng.choice([1, w])
        bc = rng.choice([1, c, c + 1])
        branches.append(f"    branch:\n        adaptive_avgpool2d(({bh}, {bw}))\n"
                        f"        conv2d({bc}, 1)\n")
        shapes.append((bc, bh, bw))
    return f"input [{c}, {h}, {w}]\nmul:\n" + "".join(branches), shapes, (c, h, w)


def test_mul_broadcasts_as_pytorch_does():
    """Random branch shapes (each size equal, 1 or other): the checker accepts exactly the
    products torch.broadcast_shapes accepts, with its shape, and points at the first branch
    that does not broadcast with those before it."""
    rng = random.Random(3)
    verdicts = set()
    for _ in range(300):
        text, shapes, _ = _random_mul(rng)
        try:
            expected = tuple(torch.broadcast_shapes(*[(2, *s) for s in shapes]))[1:]
        except RuntimeError:
            expected = None
        arch = archgen.parse(text, "t.cnn")
        errors = [d for d in arch.check() if d.is_error]
        verdicts.add(expected is None)
        if expected is None:
            first_bad = next(i for i in range(1, len(shapes)) if _fails(shapes[:i + 1]))
            assert [(d.code, d.span.line) for d in errors] == [("E416", 3 + 3 * first_bad)], text
        else:
            assert not errors, text
            assert arch.network.output_shape == expected, text
            [merge] = [n for n in walk(arch.network.root) if isinstance(n, Merge)]
            assert merge.params == sum(b.params for b in merge.branches)
    assert verdicts == {True, False}


def _fails(shapes) -> bool:
    try:
        torch.broadcast_shapes(*[(2, *s) for s in shapes])
    except RuntimeError:
        return True
    return False


def test_mul_of_another_rank_is_refused_and_the_squeeze_excitation_gate_is_not():
    gate = ("input [16, 8, 8]\nmul:\n    identity()\n    branch:\n        adaptive_avgpool2d(1)\n"
            "        {tail}\n        conv2d(16, 1)\n        sigmoid()\n")
    n = _net(gate.format(tail="conv2d(4, 1)"))
    assert n.output_shape == (16, 8, 8)
    assert n.total_params == (16 * 4 + 4) + (4 * 16 + 16)
    assert _codes("input [16, 8, 8]\nmul:\n    identity()\n    branch:\n        flatten()\n") == [
        ("E416", 4, 5)]
    # one branch is no product; an in-place layer on the shared input is E410 as for add
    assert _codes("input [4, 8, 8]\nmul:\n    identity()\n")[0][0] == "E409"
    assert _codes("input [4, 8, 8]\nmul:\n    relu(inplace=true)\n    identity()\n")[0][0] == \
        "E410"


def test_mul_receptive_field_keeps_the_full_size_branch_spacing():
    """The gate sees the whole map; the product's neighbouring outputs are still one stride
    apart, as the full-size branch's are (the next 3x3 conv adds 2 * 2 pixels, not more)."""
    n = _net("input [4, 16, 16]\nconv2d(4, 3, stride=2, padding=1)\nmul:\n    identity()\n"
             "    branch:\n        adaptive_avgpool2d(1)\n        sigmoid()\n"
             "conv2d(4, 3, padding=1)\n")
    merge = next(x for x in walk(n.root) if isinstance(x, Merge))
    assert merge.rf.jump == (2.0, 2.0)
    assert merge.rf.size[0] >= 16


def test_mul_on_symbolic_sizes():
    arch = archgen.parse("input [8, H, W]\nmul:\n    identity()\n    branch:\n"
                         "        adaptive_avgpool2d(1)\n        sigmoid()\n", "t.cnn")
    assert arch.ok
    # [8, H, W] against [8, 1, 3]: broadcasts only where W is 3, which the solver states
    arch = archgen.parse("input [8, H, W]\nmul:\n    identity()\n    branch:\n"
                         "        adaptive_avgpool2d((1, 3))\n", "t.cnn")
    assert arch.ok
    w = arch.network.constraints["W"]
    assert (w.min, w.max) == (3, 3)


# -- from NAME and output NAME, ... --------------------------------------------------------------

FPN = """
network TinyFPN
input [3, 64, 64]
stem:
    conv2d(16, 3, stride=2, padding=1)
    relu()
c2 = conv2d(16, 3, padding=1)
c3 = conv2d(32, 3, stride=2, padding=1)
c4 = conv2d(64, 3, stride=2, padding=1)
p4 = conv2d(32, 1)
p3:
    add:
        upsample(scale_factor=2)
        branch:
            from c3
            conv2d(32, 1)
p2:
    add:
        upsample(scale_factor=2)
        from c2
output p2, p3, p4
"""


def test_from_branches_start_from_the_named_value_and_outputs_are_listed():
    n = _net(FPN.replace("        from c2\n", "        branch:\n            from c2\n"
                         "            conv2d(32, 1)\n"))
    assert [(o.name, o.node.out_shape) for o in n.outputs] == [
        ("p2", (32, 32, 32)), ("p3", (32, 16, 16)), ("p4", (32, 8, 8))]
    assert n.output_shapes == [("p2", (32, 32, 32)), ("p3", (32, 16, 16)), ("p4", (32, 8, 8))]
    merges = [m for m in walk(n.root) if isinstance(m, Merge)]
    sources = [[b.source.name if b.source else None for b in m.branches] for m in merges]
    assert sources == [[None, "c3"], [None, "c2"]]
    # the branch reads c3's [32, 16, 16], not the merge's input [32, 8, 8]
    assert merges[0].branches[1].in_shape == (32, 16, 16)
    assert merges[0].in_shape == (32, 8, 8)
    # a bare `from` is a branch of its own: c2 (16 channels) against 32 is E406 at the from
    assert _codes(FPN) == [("E406", 20, 9)]


@pytest.mark.parametrize("text, expected", [
    # unknown, with did-you-mean among the names before it
    ("c1 = conv2d(4, 1)\nadd:\n    identity()\n    from cl\n", [("E212", 5, 10)]),
    # defined after the merge
    ("add:\n    identity()\n    from c1\nc1 = conv2d(4, 1)\n", [("E212", 4, 10)]),
    # inside a group that does not enclose the branch
    ("g:\n    c1 = conv2d(4, 1)\nadd:\n    identity()\n    from c1\n", [("E212", 6, 10)]),
    # a block sees only its own names
    ("c1 = conv2d(4, 1)\nblock b():\n    add:\n        identity()\n        from c1\nb()\n",
     [("E212", 6, 14)]),
    # not at the head of a branch
    ("c1 = conv2d(4, 1)\nfrom c1\n", [("E211", 3, 1)]),
    ("c1 = conv2d(4, 1)\nadd:\n    branch:\n        identity()\n        from c1\n    identity()\n",
     [("E211", 6, 9)]),
    # output: last, top level, each name once, known
    ("c1 = conv2d(4, 1)\noutput c1\nrelu()\n", [("E213", 3, 1)]),
    ("c1 = conv2d(4, 1)\nc2 = conv2d(4, 1)\noutput c1, c2, c1\n", [("E214", 4, 16)]),
    ("input = conv2d(4, 1)\noutput input\n", [("E214", 3, 8)]),
    ("c1 = conv2d(4, 1)\noutput c2\n", [("E212", 3, 8)]),
    ("g:\n    c1 = conv2d(4, 1)\noutput c1\n", [("E212", 4, 8)]),
    # an in-place layer that overwrites what a `from` branch or an output reads
    ("c1 = conv2d(4, 1)\nrelu(inplace=true)\nadd:\n    identity()\n    from c1\n",
     [("E410", 3, 1)]),
    ("c1 = conv2d(4, 1)\nconv2d(4, 1)\nadd:\n    identity()\n    branch:\n        from c1\n"
     "        relu(inplace=true)\n", [("E410", 8, 9)]),
    ("c1 = conv2d(4, 1)\ng:\n    identity()\n    relu(inplace=true)\nadd:\n    identity()\n"
     "    from c1\n", [("E410", 5, 5)]),
    ("c1 = conv2d(4, 1)\nrelu(inplace=true)\nc2 = conv2d(4, 1)\noutput c1, c2\n",
     [("E410", 3, 1)]),
])
def test_from_and_output_errors_are_located(text, expected):
    assert _codes("input [4, 8, 8]\n" + text) == expected


def test_from_and_output_are_fine_where_nothing_overwrites_them():
    n = _net("input [4, 8, 8]\nc1 = conv2d(4, 1)\nrelu()\nadd:\n    identity()\n    from c1\n"
             "relu(inplace=true)\nc2 = conv2d(4, 1)\noutput c2, c1\n")
    assert [o.name for o in n.outputs] == ["c2", "c1"]
    # a block's own names, and a named repeat copy
    n = _net("input [4, 8, 8]\nblock b():\n    c = conv2d(4, 1)\n    conv2d(4, 3, padding=1)\n"
             "    add:\n        identity()\n        from c\nrepeat 2 as x{1}: b()\nb-2 = b()\n"
             "output x1, b-2\n")
    assert [o.node.path for o in n.outputs] == ["x1", "b-2"]


# -- the targets: PyTorch (TorchScript too), ONNX, parity, memory ------------------------------

SE = """
network SqueezeExcite
input [16, 8, 8]
conv2d(32, 3, stride=2, padding=1)
mul:
    identity()
    branch:
        adaptive_avgpool2d(1)
        conv2d(8, 1)
        relu()
        conv2d(32, 1)
        sigmoid()
conv2d(8, 1)
"""


def _module(net):
    from archgen.emit_torch import load_module
    torch.manual_seed(0)
    return load_module(net).eval()


def _outputs(result) -> list:
    return list(result) if isinstance(result, tuple) else [result]


def test_mul_is_a_product_in_pytorch_torchscript_onnx_and_parity():
    """The generated forward multiplies the branches (computed here from the module's own
    layers), TorchScript gives the same, and onnxruntime agrees (parity)."""
    from archgen.parity import run_parity
    net = _net(SE)
    m = _module(net)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        y = m.conv2d(x)
        gate = m.sigmoid(m.conv2d_2(m.relu(m.conv2d_1(m.adaptive_avgpool2d(y)))))
        expected = m.conv2d_3(y * gate)
        assert torch.allclose(m(x), expected, atol=1e-6)
        assert torch.equal(torch.jit.script(m)(x), m(x))
    assert tuple(m(x).shape[1:]) == net.output_shape
    report = run_parity(net)
    assert report.ok, report.to_text()


@pytest.mark.parametrize("seed", range(4))
def test_random_broadcasting_products_reach_both_targets(seed):
    """Random accepted products (sizes equal or 1 per dimension): PyTorch's shape is the
    checker's, and parity holds."""
    from archgen.parity import run_parity
    rng = random.Random(100 + seed)
    while True:
        text, shapes, _ = _random_mul(rng)
        if not _fails(shapes):
            break
    net = _net(text)
    m = _module(net)
    with torch.no_grad():
        assert tuple(m(torch.randn(2, *net.input_shape)).shape[1:]) == net.output_shape
    assert run_parity(net, fold=True).ok


def test_mul_in_a_block_class():
    """A block written once as a class (its gate's channels an expression of its argument)."""
    from archgen.emit_torch import render_torch
    from archgen.parity import run_parity
    net = _net("input [8, 8, 8]\nblock se(c, r=4):\n    mul:\n        identity()\n"
               "        branch:\n            adaptive_avgpool2d(1)\n"
               "            conv2d(max(1, c // r), 1)\n            relu()\n"
               "            conv2d(c, 1)\n            sigmoid()\n"
               "    conv2d(c, 1)\nse(8)\nse(8, r=2)\n")
    source = render_torch(net)
    assert source.count("class Se(") == 1 and " * " in source
    assert run_parity(net).ok


FPN_FILE = Path(__file__).parent.parent / "examples" / "fpn.cnn"


def test_fpn_end_to_end():
    """The FPN example: named outputs p2..p5 in the PyTorch module (a tuple, TorchScript
    too) and in ONNX (graph outputs of those names), each compared by parity; each output is
    also computed here from the module's own layers."""
    from archgen.emit_onnx import build_onnx
    from archgen.parity import run_parity
    arch = archgen.load(FPN_FILE)
    net = arch.network
    assert [o.name for o in net.outputs] == ["p2", "p3", "p4", "p5"]
    m = _module(net)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        outs = _outputs(m(x))
        scripted = _outputs(torch.jit.script(m)(x))
    assert [tuple(o.shape[1:]) for o in outs] == [s for _, s in net.output_shapes]
    assert all(torch.equal(a, b) for a, b in zip(outs, scripted))
    for fold in (False, True):  # export folds each batchnorm, but never a conv that is read
        model = build_onnx(net, fold=fold)
        assert [o.name for o in model.graph.output] == ["p2", "p3", "p4", "p5"]
    report = run_parity(net)
    assert report.ok, report.to_text()
    assert set(report.outputs) == {"p2", "p3", "p4", "p5"}


@pytest.mark.parametrize("key, failing", [("p2.conv2d.weight", ["p2"]),
                                          ("p4.weight", ["p2", "p3", "p4"])])
def test_parity_compares_every_output(key, failing):
    """A deliberate discrepancy in a layer is found in exactly the outputs that read it: p2's
    lateral conv only in p2, p4 (the top of the top-down path) in every level."""
    from archgen.parity import run_parity
    from archgen.weights import initial_state
    net = _net(FPN.replace("[3, 64, 64]", "[3, 16, 16]").replace(
        "        from c2\n", "        branch:\n            from c2\n            conv2d(32, 1)\n"))
    state = initial_state(net, 0)
    changed = {key: state[key] * 1.01}
    report = run_parity(net, onnx_state_dict_override=changed)
    assert not report.ok
    assert report.output in failing
    assert [n for n, m in report.outputs.items() if not m.ok] == failing


def test_from_inside_groups_takes_the_values_as_arguments():
    from archgen.emit_torch import render_torch
    net = archgen.load(FPN_FILE).network
    source = render_torch(net)
    assert "def forward(self, x: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:" in source \
        or "c4: torch.Tensor" in source
    assert "return p2, p3, p4, p5" in source


@pytest.mark.parametrize("text", [SE, "fpn"])
def test_memory_saved_for_backward_is_autograd_s(text):
    """mul saves each factor that the other's gradient needs; a `from` branch reads its value
    where it lies (no copy)."""
    from archgen.emit_torch import load_module
    from archgen.memory import estimate
    net = archgen.load(FPN_FILE).network if text == "fpn" else _net(text)
    torch.manual_seed(0)
    model = load_module(net).train()
    x = torch.randn(3, *net.input_shape)
    assert estimate(net, batch=3, device="cpu").saved_for_backward_bytes == \
        _saved_bytes(model, x)


def test_check_summary_and_json_list_the_outputs():
    import json

    from click.testing import CliRunner

    from archgen.cli import main
    runner = CliRunner()
    text = runner.invoke(main, ["check", str(FPN_FILE)]).output
    assert "-> p2 [64, 16, 16], p3 [64, 8, 8], p4 [64, 4, 4], p5 [64, 2, 2]," in text
    table = runner.invoke(main, ["summary", str(FPN_FILE)]).output
    assert "Outputs: p2 [N, 64, 16, 16], p3 [N, 64, 8, 8], p4 [N, 64, 4, 4], " \
        "p5 [N, 64, 2, 2]" in table
    doc = json.loads(runner.invoke(main, ["check", "--format", "json", str(FPN_FILE)]).output)
    doc = doc[0] if isinstance(doc, list) else doc
    assert [o["name"] for o in doc["outputs"]] == ["p2", "p3", "p4", "p5"]
    assert doc["output_shape"] == doc["outputs"][0]["shape"] == [64, 16, 16]
