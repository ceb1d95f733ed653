"""The .cnn language: parsing, blocks, arithmetic, repeat, if, merges, names, diagnostics."""

from __future__ import annotations

import archgen
from archgen.ir import Layer, Merge, walk


def codes(text: str) -> list[tuple[str, int, int]]:
    arch = archgen.parse(text, "t.cnn")
    return [(d.code, d.span.line, d.span.column) for d in arch.check()]


def net(text: str):
    arch = archgen.parse(text, "t.cnn")
    assert arch.ok, "\n".join(d.render(arch.source) for d in arch.check())
    return arch.network


def test_block_arithmetic_defaults_and_builtins():
    n = net("""
input [8, 16, 16]
block b(c, mid=c // 4, k=3):
    conv2d(mid * 2 + (c - c), 1)
    conv2d(in_channels * 2, k, padding=k // 2)
b(16)
b(32, k=5)
""")
    shapes = [layer.out_shape for layer in n.layers()]
    assert shapes == [(8, 16, 16), (16, 16, 16), (16, 16, 16), (32, 16, 16)]
    assert [layer.args["kernel_size"] for layer in n.layers()] == [(1, 1), (3, 3), (1, 1), (5, 5)]


def test_repeat_with_first_overrides_and_if():
    n = net("""
input [16, 32, 32]
block b(c, stride=1, down=false):
    if down:
        conv2d(c, 3, stride=stride, padding=1)
    else:
        conv2d(c, 3, padding=1)
stage:
    repeat 3 first(stride=2, down=true): b(32)
""")
    assert [layer.out_shape for layer in n.layers()] == [(32, 16, 16)] * 3
    assert [layer.path for layer in n.layers()] == ["stage.0.0", "stage.1.0", "stage.2.0"]


def test_add_and_concat_shapes_params_and_receptive_field():
    n = net("""
input [16, 8, 8]
add:
    branch:
        conv2d(16, 3, padding=1)
        conv2d(16, 3, padding=1)
    identity()
concat:
    conv2d(8, 1)
    maxpool2d(3, stride=1, padding=1)
""")
    merges = [node for node in walk(n.root) if isinstance(node, Merge)]
    assert [m.out_shape for m in merges] == [(16, 8, 8), (24, 8, 8)]
    assert merges[0].params == 2 * (16 * 16 * 9 + 16)
    assert merges[0].rf.label() == "5"  # the union of 5x5 and 1x1
    assert n.output_shape == (24, 8, 8)


def test_names_become_paths_like_torchvision():
    n = net("""
input [64, 8, 8]
block basic(out, stride=1, down=false):
    add:
        branch:
            conv1 = conv2d(out, 3, stride=stride, padding=1, bias=false)
            bn1 = batchnorm2d()
            relu()
            conv2 = conv2d(out, 3, padding=1, bias=false)
            bn2 = batchnorm2d()
        if down:
            downsample:
                conv2d(out, 1, stride=stride, bias=false)
                batchnorm2d()
        else:
            identity()
    relu()
layer2:
    repeat 2 first(stride=2, down=true): basic(128)
""")
    paths = [layer.path for layer in n.layers() if layer.params]
    assert paths[:7] == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2",
                         "layer2.0.downsample.0", "layer2.0.downsample.1", "layer2.1.conv1"]


def test_plain_layer_list_becomes_layers_section():
    n = net("input [3, 8, 8]\nconv2d(4, 3)\nrelu()\n")
    assert [layer.path for layer in n.layers()] == ["layers.0", "layers.1"]


def test_all_independent_errors_in_one_run():
    found = codes("""input [3, 8, 8]
block b(c):
    conv2d(cc, 3)
conv2d(16, 3, pad=1)
b(4)
relu(inplace=maybe)
dropuot(0.5)
""")
    assert [c[0] for c in found] == ["E202", "E201", "E202", "E200"]


def test_errors_after_a_shape_error_do_not_cascade():
    found = codes("input [3, 4, 4]\nconv2d(8, 5)\nconv2d(8, 3)\nlinear(10)\n")
    assert found == [("E402", 2, 11)]


def test_syntax_and_indentation_errors_are_located():
    assert codes("input [3, 8, 8]\nconv2d(16 3)\n")[0] == ("E100", 2, 11)
    assert codes("input [3, 8, 8]\n    conv2d(16, 3)\n")[0][:2] == ("E101", 2)
    assert codes("input [3, 8, 8]\nbackbone:\nconv2d(16, 3)\n")[0][:2] == ("E101", 2)
    assert codes("input [3, 8, 8]\nconv2d(16, 3) $\n")[0] == ("E100", 2, 15)


def test_missing_input_and_recursion_and_duplicates():
    assert codes("conv2d(16, 3)\n")[0][0] == "E408"
    assert "E205" in [c[0] for c in codes("input [3, 8, 8]\nblock b(c):\n    b(c)\nb(3)\n")]
    assert "E203" in [c[0] for c in codes(
        "input [3, 8, 8]\nblock b(c):\n    relu()\nblock b(c):\n    relu()\nb(1)\n")]
    assert "E203" in [c[0] for c in codes("input [3, 8, 8]\na = relu()\na = relu()\n")]


def test_hostile_names_are_refused():
    for name in ("class", "import", "__init__", "forward", "_modules", "training"):
        found = codes(f"input [3, 8, 8]\n{name} = conv2d(4, 3)\n")
        assert found and found[0][0] == "E204", name
    assert codes("network torch\ninput [3, 8, 8]\nrelu()\n")[0][0] == "E204"
    assert codes("network class\ninput [3, 8, 8]\nrelu()\n")[0][0] == "E204"


def test_nothing_is_evaluated_as_python():
    found = codes('input [3, 8, 8]\nconv2d(__import__("os").system("true"), 3)\n')
    assert found and found[0][0] == "E100"


def test_quoted_enum_words_and_tuples():
    n = net('input [3, 9, 12]\nconv2d(4, (3, 5), padding="same", padding_mode="circular")\n')
    layer = next(n.layers())
    assert isinstance(layer, Layer) and layer.out_shape == (4, 9, 12)
    assert layer.args["pads"] == ((1, 1), (2, 2))


def test_division_must_be_exact():
    assert codes("input [3, 8, 8]\nblock b(c):\n    conv2d(c / 3, 1)\nb(16)\n")[0][0] == "E302"
    assert codes("input [3, 8, 8]\nblock b(c):\n    conv2d(c // 0, 1)\nb(16)\n")[0][0] == "E302"


def test_non_finite_numbers_are_refused():
    assert codes("input [3, 8, 8]\nbatchnorm2d(eps=1e999)\n")[0][0] == "E302"
    assert codes("input [3, 8, 8]\nleaky_relu(1e999 - 1e999)\n")[0][0] == "E302"


def test_group_block_and_builtin_names_are_checked():
    assert codes("input [3, 8, 8]\nclass:\n    relu()\n")[0][0] == "E204"
    assert codes("input [3, 8, 8]\nblock forward(c):\n    relu()\nforward(1)\n")[0][0] == "E204"
    assert codes("network super\ninput [3, 8, 8]\nrelu()\n")[0][0] == "E204"


def test_a_quoted_name_on_a_named_call_is_a_module_name_like_a_quoted_group_header():
    """torchvision's MBConv keeps its layers in a submodule named block, a keyword here:
    "block" = body(...) names the instance as "block": names a group (it was E100)."""
    from archgen.emit_torch import load_module
    body = "block body(out):\n    conv2d(out, 3, padding=1)\n    relu()\n"
    called = net("input [3, 8, 8]\n" + body + '"block" = body(4)\n\'repeat\' = conv2d(4, 1)\n')
    grouped = net('input [3, 8, 8]\n"block":\n    conv2d(4, 3, padding=1)\n    relu()\n'
                  '"repeat":\n    conv2d(4, 1)\n')
    keys = list(load_module(called).state_dict())
    assert keys == ["block.0.weight", "block.0.bias", "repeat.weight", "repeat.bias"]
    grouped_keys = list(load_module(grouped).state_dict())
    assert [k.replace("repeat.", "repeat.0.") for k in keys] == grouped_keys
    assert [layer.path for layer in called.layers()] == ["block.0", "block.1", "repeat"]
    # the same name rules as a quoted group header (E204), located at the quoted name
    for bad in ("class", "a b", "__dict__", "forward"):
        as_call = codes(f'input [3, 8, 8]\n"{bad}" = relu()\n')
        as_group = codes(f'input [3, 8, 8]\n"{bad}":\n    relu()\n')
        assert as_call == [("E204", 2, 1)] and as_group == [("E204", 2, 1)], (bad, as_call)
    assert codes('input [3, 8, 8]\n"" = relu()\n') == [("E204", 2, 1)]
    assert codes('input [3, 8, 8]\n"a-b" = relu()\n') == []  # dashed, as torchvision's block1-0
    assert codes('input [3, 8, 8]\n"block" relu()\n')[0][0] == "E100"  # no '=': still refused
    # archgen fmt keeps the quotes (and its own check: the same checked network)
    from archgen.fmt import format_source
    spec = "input [3, 8, 8]\n" + body + '"block"  =  body( 4 )\n'
    assert '\n"block" = body(4)\n' in format_source(spec, "t.cnn")


def test_inplace_layer_on_a_shared_branch_input_is_refused():
    spec = "input [4, 8, 8]\nadd:\n    branch:\n        identity()\n        relu(inplace=true)\n    identity()\n"
    assert codes(spec) == [("E410", 5, 9)]
    safe = "input [4, 8, 8]\nadd:\n    branch:\n        conv2d(4, 1)\n        relu(inplace=true)\n    identity()\n"
    assert codes(safe) == []


def test_bare_none_selects_the_none_choice():
    layer = next(net("input [3, 8, 8]\ngelu(approximate=none)\n").layers())
    assert layer.args["approximate"] == "none"


def test_an_input_line_lost_to_a_reading_error_is_not_also_missing():
    """A number too large on the input line is E303 there, not also E408 'no input line'."""
    arch = archgen.parse("network N\ninput [3, 99999999999999999999, 8]\nconv2d(8, 3)\n")
    assert [(d.code, d.span.line) for d in arch.errors] == [("E303", 2)]


def _random_int_expr(rng, depth: int) -> str:
    """An integer expression of numbers, + - * //, max() and min() (Python reads it alike)."""
    if depth == 0 or rng.random() < 0.25:
        return str(rng.randint(-20, 40))
    pick = rng.random()
    if pick < 0.5:
        func = rng.choice(["max", "min"])
        items = [_random_int_expr(rng, depth - 1) for _ in range(rng.randint(2, 4))]
        return f"{func}({', '.join(items)})"
    op = rng.choice(["+", "-", "*"])
    return f"({_random_int_expr(rng, depth - 1)} {op} {_random_int_expr(rng, depth - 1)})"


def test_max_and_min_evaluate_as_python_does():
    """Python is the oracle: each random expression's value, by the branch an if takes and by
    the channels of a conv whose out_channels it sets (clamped positive by the spec itself)."""
    import random
    rng = random.Random(10)
    for _ in range(200):
        text = _random_int_expr(rng, 3)
        expected = eval(text)  # the test's own arithmetic: Python as the oracle
        n = net(f"input [3, 8, 8]\nblock b(v={text}):\n    if v == {expected}:\n"
                f"        conv2d(max(1, min(v, 64)), 1)\n    else:\n        relu()\nb()\n")
        [layer] = n.layers()
        assert layer.op == "conv2d", text
        assert layer.out_shape[0] == max(1, min(expected, 64)), text


def test_max_and_min_errors_are_located():
    assert codes("input [3, 8, 8]\nconv2d(mx(8, 4), 1)\n") == [("E209", 2, 8)]
    assert codes("input [3, 8, 8]\nconv2d(max(8), 1)\n") == [("E300", 2, 8)]
    assert codes("input [3, 8, 8]\nconv2d(max(8, true), 1)\n") == [("E300", 2, 15)]
    assert codes("input [3, 8, 8]\nconv2d(max(8, (1, 2)), 1)\n") == [("E300", 2, 15)]
    assert codes("input [3, 8, 8]\nconv2d(max(8, c), 1)\n") == [("E202", 2, 15)]
    assert codes("input [3, 8, 8]\nconv2d(max(a=8, b=2), 1)\n") == [("E100", 2, 12)]
    # in_channels // 4 with max: torchvision's _make_divisible(in_channels // 4, 8)
    n = net("input [12, 8, 8]\nconv2d(max(8, in_channels // 4 + 4 // 2 * 2), 1)\n")
    assert next(n.layers()).out_shape[0] == 8


def test_named_repeat_copies_and_dashed_names_give_the_paths_written():
    n = net("""
input [16, 8, 8]
block dense_layer(g):
    conv2d(g, 3, padding=1)
features:
    repeat 3 as denselayer{1}: dense_layer(16)
trunk_output:
    block1:
        repeat 2 as block1-{0}: dense_layer(16)
    repeat 2 as stage{7}x:
        conv2d(16, 1)
        relu()
    block2-a = conv2d(16, 1)
    b-2:
        relu()
concat:
    repeat 2 as branch{1}: dense_layer(4)
""")
    assert [layer.path for layer in n.layers()] == [
        "features.denselayer1.0", "features.denselayer2.0", "features.denselayer3.0",
        "trunk_output.block1.block1-0.0", "trunk_output.block1.block1-1.0",
        "trunk_output.stage7x.0", "trunk_output.stage7x.1", "trunk_output.stage8x.0",
        "trunk_output.stage8x.1", "trunk_output.block2-a", "trunk_output.b-2.0",
        "branch1.0", "branch2.0"]
    # first(...) still overrides the first copy's arguments
    n = net("input [4, 8, 8]\nrepeat 2 as c{1} first(stride=2): conv2d(4, 3, padding=1)\n")
    assert [(layer.path, layer.out_shape) for layer in n.layers()] == [
        ("c1", (4, 4, 4)), ("c2", (4, 4, 4))]


def test_dashes_are_names_only_where_a_module_name_stands():
    # in expressions, a - b is a subtraction however it is spaced
    n = net("input [4, 8, 8]\nblock b(a, c):\n    conv2d(a-c, 1)\nb-1 = b(9, 1)\n")
    assert [layer.out_shape[0] for layer in n.layers()] == [8]
    assert [layer.path for layer in n.layers()] == ["b-1.0"]
    assert codes("input [4, 8, 8]\nrepeat 2 as conv: relu()\n")[0][:2] == ("E100", 2)
    assert codes("input [4, 8, 8]\nrepeat 2 as x{1}: y = relu()\n") == [("E210", 2, 19)]
    # copies that collide with another name in the module
    assert codes("input [4, 8, 8]\nrepeat 2 as x{1}: relu()\nx2 = relu()\nx1 = relu()\n") == [
        ("E203", 3, 1), ("E203", 4, 1)]
    # names PyTorch could not take as they are: E204
    assert codes("input [4, 8, 8]\n_a-b = relu()\n")[0][0] in ("E100", "E204")
    assert codes("input [4, 8, 8]\nrepeat 2 as _x-{1}: relu()\n")[0][0] == "E204"


def test_fmt_keeps_dashed_names_and_copy_names_together():
    from archgen.fmt import format_source
    text = "input [3,8,8]\nrepeat 2 as  x{1} :  conv2d( 3,1)\na-b=conv2d(3 ,1)\nc-d :\n" \
        "    conv2d(3-1, 1)\n"
    assert format_source(text) == ("input [3, 8, 8]\nrepeat 2 as x{1}: conv2d(3, 1)\n"
                                   "a-b = conv2d(3, 1)\n\nc-d:\n    conv2d(3 - 1, 1)\n")
