"""The language never silently means something else (issue 9, the language half).

Specs written as PyTorch and Keras users write them: positional arguments only for what
defines a layer's shape, PyTorch's full signatures recognised exactly, misspelt keywords,
case-insensitive did-you-mean with Keras's words; every error in one run with the best-known
shape; warnings that are right (W500 counted against PyTorch itself, W503, receptive fields,
collapsed summary labels)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen.cli import main
from archgen.codes import explain
from archgen.layers import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def diags(text: str):
    return archgen.parse(text, "t.cnn").check()


def errors(text: str) -> list[tuple[str, int]]:
    return [(d.code, d.span.line) for d in diags(text) if d.is_error]


def messages(text: str, code: str) -> list[str]:
    return [d.message for d in diags(text) if d.code == code]


def helps(text: str) -> str:
    return "\n".join(h for d in diags(text) for h in d.helps)


def net(text: str):
    arch = archgen.parse(text, "t.cnn")
    assert arch.ok, "\n".join(d.render(arch.source) for d in arch.check())
    return arch.network


# ---------------------------------------------------------------------------------------------
# 1. Positional arguments only for what defines the shape


POSITIONAL = {
    **{f"{kind}{d}d": args for d in (1, 2, 3) for kind, args in (
        ("conv", ("out_channels", "kernel_size", "stride", "padding")),
        ("conv_transpose", ("out_channels", "kernel_size", "stride", "padding")),
        ("maxpool", ("kernel_size", "stride", "padding")),
        ("avgpool", ("kernel_size", "stride", "padding")),
        ("adaptive_avgpool", ("output_size",)), ("adaptive_maxpool", ("output_size",)),
        ("pad", ("padding",)))},
    "linear": ("out_features",), "flatten": ("start_dim", "end_dim"),
    "dropout": ("p",), "dropout2d": ("p",), "leaky_relu": ("negative_slope",), "elu": ("alpha",),
    "softmax": ("dim",),
    "log_softmax": ("dim",), "hardtanh": ("min_val", "max_val"), "prelu": ("num_parameters",),
    "channel_shuffle": ("groups",), "channel_slice": ("start", "stop"),
    "layernorm": ("normalized_shape",), "groupnorm": ("num_groups", "num_channels"),
    "permute": ("dims",), "layer_scale": ("init",), "stochastic_depth": ("p", "mode"),
}


def test_positional_arguments_are_the_shape_defining_ones():
    for name, kind in REGISTRY.items():
        assert kind.positional_args == POSITIONAL.get(name, ()), name


def test_readme_table_lists_each_kinds_positional_arguments():
    text = (ROOT / "README.md").read_text()
    table = {}
    for names, args in re.findall(r"^\| ([a-z0-9_, ]+) \| ([a-z_, ]+) \|$", text, re.MULTILINE):
        for name in names.split(", "):
            table[name] = () if args == "none" else tuple(args.split(", "))
    table.pop("layer")  # the header
    assert table == {name: kind.positional_args for name, kind in REGISTRY.items()}


def test_explain_shows_a_layers_positional_and_keyword_only_arguments():
    text = explain("conv2d")
    assert "positional (they define the shape): out_channels, kernel_size, stride, padding" in text
    assert "keyword-only: dilation, groups, bias, padding_mode" in text
    assert "keyword-only: eps, momentum, affine, track_running_stats" in explain("batchnorm2d")
    assert "    conv2d(out_channels, kernel_size, stride, padding)" in explain("E307")
    assert "    batchnorm2d()" in explain("E307")
    assert explain("E306") and explain("E208")


@pytest.mark.parametrize("call, fix", [
    ("batchnorm2d(eps=1e-3)", None),
    ("batchnorm2d(8, 1e-3)", "batchnorm2d(eps=0.001)"),  # 8 is num_features (the input's)
    ("relu(true)", "relu(inplace=true)"),
    ("conv2d(16, 3, 1, 1, 1, 2)", "conv2d(16, 3, 1, 1, dilation=1, groups=2)"),
    ("maxpool2d(3, 2, 1, 1)", "maxpool2d(3, 2, 1, dilation=1)"),
    ("dropout(0.5, true)", "dropout(0.5, inplace=true)"),
    ("gelu(tanh)", "gelu(approximate=tanh)"),
    ("pad2d(1, reflect)", "pad2d(1, mode=reflect)"),
    ("adaptive_maxpool2d(1, false)", "adaptive_maxpool2d(1, return_indices=false)"),
])
def test_keyword_only_arguments_given_positionally_are_named_in_the_fix(call, fix):
    spec = f"input [8, 8, 8]\n{call}\n"
    if fix is None:
        assert errors(spec) == []
        return
    assert errors(spec) == [("E307", 2)]
    assert f"write {fix}" in helps(spec)
    assert errors(f"input [8, 8, 8]\n{fix}\n") == []


def test_a_pytorch_signature_with_keyword_only_extras_names_them_after_in_channels():
    # on 16 channels, (16, 3, 1, 1, 2) is PyTorch's in, out, kernel, stride, padding
    layer = next(net("input [16, 8, 8]\nconv2d(16, 3, 1, 1, 2)\n").layers())
    assert (layer.args["out_channels"], layer.args["kernel_size"], layer.args["padding"]) == \
        (3, (1, 1), (2, 2))
    spec = "input [16, 8, 8]\nconv2d(16, 3, 1, 1, 1, 2)\n"
    assert errors(spec) == [("E307", 2)]
    assert "write conv2d(3, 1, 1, 1, dilation=2)" in helps(spec)
    # five positionals can only be PyTorch's: on 8 channels the leading 16 is wrong
    assert messages("input [8, 8, 8]\nconv2d(16, 3, 1, 1, 2)\n", "E306") == [
        "conv2d(16, 3, 1, 1, 2) reads like PyTorch's (in_channels, out_channels, kernel_size, "
        "stride, padding); archgen infers in_channels (8 here): write conv2d(3, 1, 1, 2)"]


def test_upsample_takes_its_size_or_scale_by_name():
    assert errors("input [4, 8, 8]\nupsample(2)\n") == [("E307", 2)]
    assert "upsample(scale_factor=2)" in helps("input [4, 8, 8]\nupsample(2)\n")
    assert net("input [4, 8, 8]\nupsample(scale_factor=2)\n").output_shape == (4, 16, 16)


def test_batchnorm_with_its_channels_is_pytorchs_num_features_never_eps():
    # today: batchnorm2d(64) became nn.BatchNorm2d(64, eps=64.0)
    n = net("input [64, 8, 8]\nbatchnorm2d(64)\n")
    layer = next(n.layers())
    assert layer.args["eps"] == 1e-5 and layer.args["num_features"] == 64
    assert messages("input [32, 8, 8]\nbatchnorm2d(64)\n", "E306") == [
        "batchnorm2d(64) reads like PyTorch's (num_features); archgen infers num_features "
        "(32 here): write batchnorm2d()"]


# ---------------------------------------------------------------------------------------------
# 2. PyTorch's full signatures, against the real inferred shapes


def test_conv_in_pytorch_order_is_refused_when_it_also_reads_as_archgens():
    # today: out_channels=3, kernel_size=32, stride=3 and only an unrelated W501
    assert messages("input [3, 32, 32]\nconv2d(3, 32, 3)\n", "E306") == [
        "conv2d(3, 32, 3) reads like PyTorch's (in_channels, out_channels, kernel_size); "
        "archgen infers in_channels (3 here): write conv2d(32, 3)"]
    assert errors("input [3, 32, 32]\nconv2d(3, 32, 3)\n") == [("E306", 2)]


def test_pytorch_order_with_a_single_meaning_is_accepted_as_in_channels():
    torch = pytest.importorskip("torch")
    n = net("input [3, 32, 32]\nconv2d(3, 32, 3, 1, 1)\nconv2d(32, 8, kernel_size=3)\n"
            "flatten()\nlinear(8*30*30, 10)\n")
    nn = torch.nn
    ref = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.Conv2d(32, 8, kernel_size=3), nn.Flatten(),
                        nn.Linear(8 * 30 * 30, 10))
    assert n.output_shape == tuple(ref(torch.zeros(1, 3, 32, 32)).shape[1:])
    assert n.total_params == sum(p.numel() for p in ref.parameters())


def test_linear_with_a_wrong_leading_size_says_what_went_wrong():
    # today: "E300: bias expects true or false, received the integer 10"
    spec = "input [32, 8, 8]\nflatten()\nlinear(1000, 10)\n"
    assert messages(spec, "E306") == [
        "linear(1000, 10) reads like PyTorch's (in_features, out_features); archgen infers "
        "in_features (2048 here): write linear(10)"]
    assert errors(spec) == [("E306", 3)]


def test_a_leading_value_matching_in_channels_never_means_out_channels_when_ambiguous():
    assert errors("input [16, 8, 8]\nconv2d(16, 3, 1)\n") == [("E306", 2)]
    # not the inferred value: archgen's own reading, out_channels=16, kernel 3, stride 1
    layer = next(net("input [8, 8, 8]\nconv2d(16, 3, 1)\n").layers())
    assert (layer.args["in_channels"], layer.args["out_channels"]) == (8, 16)
    # two positionals are archgen's (out, kernel) whatever they equal
    assert net("input [16, 8, 8]\nconv2d(16, 3)\n").output_shape == (16, 6, 6)


def test_pytorch_signatures_inside_blocks_use_the_blocks_real_input():
    spec = """input [3, 16, 16]
block stage(c, out):
    conv2d(c, out, kernel_size=3, padding=1)
    batchnorm2d(out)
conv2d(16, 1)
stage(16, 32)
stage(32, 64)
stage(16, 8)
"""
    # the third stage receives 64 channels: its PyTorch-style in_channels 16 is wrong
    found = diags(spec)
    assert [(d.code, d.span.line) for d in found if d.is_error] == [("E306", 3)]
    assert "(64 here)" in found[0].message


def test_pytorch_signatures_after_errors():
    # after an unknown layer the input is unknown: no guess, no error, the arguments checked
    assert errors("input [3, 8, 8]\nfoo()\nlinear(4096, 10)\nbatchnorm2d(64)\n") == [("E200", 2)]
    # after an error with a computable shape, the shape it gives is the one compared
    spec = "input [3, 8, 8]\nconv2d(8, 3, groups=3)\nbatchnorm2d(8)\nbatchnorm2d(4)\n"
    assert errors(spec) == [("E404", 2), ("E306", 4)]
    assert "(8 here)" in messages(spec, "E306")[0]


# ---------------------------------------------------------------------------------------------
# 3. Misspelt keywords, case and Keras


@pytest.mark.parametrize("text, meant", [
    ("concta:\n    conv2d(4, 1)\n    conv2d(4, 1)\n", "concat"),
    ("ad:\n    conv2d(8, 3, padding=1)\n    identity()\n", "add"),
    ("add:\n    brnach:\n        conv2d(8, 1)\n    identity()\n", "branch"),
    ("reapeat 2: conv2d(8, 1)\n", "repeat"),
    ("Concat:\n    conv2d(4, 1)\n    conv2d(4, 1)\n", "concat"),
])
def test_a_misspelt_keyword_is_an_error_with_a_did_you_mean(text, meant):
    spec = "input [8, 8, 8]\n" + text
    found = [d for d in diags(spec) if d.is_error]
    assert [d.code for d in found] == ["E208"], [d.render(spec) for d in found]
    assert f"did you mean '{meant}'?" in found[0].helps


def test_names_meant_so_are_kept():
    n = net('input [8, 8, 8]\n"ad":\n    relu()\nblock1:\n    relu()\nblocks:\n    relu()\n')
    assert [layer.path for layer in n.layers()] == ["ad.0", "block1.0", "blocks.0"]


@pytest.mark.parametrize("call, hint", [
    ("Relu()", "did you mean 'relu'?"),
    ("BatchNorm2d()", "did you mean 'batchnorm2d'?"),
    ("Dense(10)", "Dense is Keras's name; archgen writes linear("),
    ("Conv2D(32, 3)", "'conv2d'"),
    ("MaxPooling2D(2)", "archgen writes maxpool2d("),
    ("GlobalAveragePooling2D()", "adaptive_avgpool2d(1) followed by flatten()"),
    ("BatchNormalization()", "batchnorm2d()"),
    ("conv2d(filters=32, kernel_size=3)", "out_channels="),
    ("conv2d(32, 3, activation=relu)", "add the activation as its own layer after this one, "
                                       "e.g. relu()"),
    ("conv2d(32, 3, strides=2)", "stride="),
    ("dropout(rate=0.5)", "p="),
    ("maxpool2d(pool_size=2)", "kernel_size="),
])
def test_did_you_mean_ignores_case_and_knows_keras(call, hint):
    spec = f"input [3, 8, 8]\n{call}\n"
    assert hint in helps(spec)
    assert "'elu'" not in helps(spec) and "dilation" not in helps(spec)


def test_an_unknown_keyword_does_not_also_report_a_missing_argument():
    assert errors("input [3, 8, 8]\nconv2d(filters=32, kernel_size=3)\n") == [("E201", 2)]


# ---------------------------------------------------------------------------------------------
# 4. Every error in one run


def test_four_independent_errors_are_all_reported():
    # today: only foo() was reported
    spec = "input [3, 32, 32]\nfoo()\ndropout(1.5)\nconv2d(0, 3)\nmaxpool2d(2, padding=5)\n"
    assert errors(spec) == [("E200", 2), ("E301", 3), ("E301", 4), ("E403", 5)]


def test_after_a_layer_fails_the_shape_goes_on():
    spec = "input [3, 32, 32]\nconv2d(8, 3, groups=2)\nflatten()\nlinear(10, in_features=99)\n"
    found = diags(spec)
    assert [(d.code, d.span.line) for d in found] == [("E404", 2), ("E401", 4)]
    assert "the input has 7200 features" in found[1].message  # 8 * 30 * 30


def test_an_argument_that_does_not_change_the_shape_may_be_wrong():
    spec = "input [3, 16, 16]\ndropout2d(7)\nconv2d(8, 3, bias=10)\nmaxpool2d(2)\nflatten()\n" \
           "linear(10, in_features=5)\n"
    assert errors(spec) == [("E301", 2), ("E300", 3), ("E401", 6)]
    assert "the input has 392 features" in messages(spec, "E401")[0]  # 8 * 7 * 7


def test_argument_checks_run_when_the_input_is_unknown():
    spec = "input [3, 16, 16]\nfoo()\nconv2d(16, 0)\nbatchnorm2d(eps=-1)\nlinear(0)\n" \
           "relu()\nconv2d(16, 3)\n"
    assert errors(spec) == [("E200", 2), ("E301", 3), ("E301", 4), ("E301", 5)]


def test_every_error_inside_blocks_and_no_cascade_after_an_unknown_layer():
    spec = """input [3, 16, 16]
block b(c, p=0.5):
    conv2d(in_channels * c, 3, padding=1)
    dropout(p)
    conv2d(c, 0)
foo()
b(2)
b(2, p=3)
b(2, q=1)
"""
    assert errors(spec) == [("E301", 4), ("E301", 5), ("E200", 6), ("E201", 9)]
    assert not [d for d in diags(spec) if d.code == "E202"]


def test_a_block_with_a_bad_argument_still_checks_its_body():
    spec = """input [3, 16, 16]
block b(c):
    conv2d(c, 3, groups=0)
    dropout(2)
b(undefined_name)
"""
    assert errors(spec) == [("E301", 4), ("E202", 5)]


# ---------------------------------------------------------------------------------------------
# 5. Warnings that are right


def test_w500_fires_for_a_kernel_narrower_than_the_stride():
    # today: both are clean
    assert [d.code for d in diags("input [1, 28, 28]\nmaxpool2d(2, stride=3)\n")] == ["W500"]
    assert [d.code for d in diags("input [1, 27, 27]\nconv2d(16, 2, stride=3)\n")] == ["W500"]
    # a strided 1x1 shortcut subsamples by design
    assert diags("input [4, 28, 28]\nconv2d(8, 1, stride=2)\n") == []


def _torch_unread(torch, size, kernel, stride, pad, dilation, ceil_mode, pool):
    """Rows of a size x 1 input that no window reads: where the gradient of the sum of the
    outputs of an all-ones conv (or an average pool) is zero."""
    x = torch.ones(1, 1, size, 1, requires_grad=True)
    if pool:
        y = torch.nn.functional.avg_pool2d(x, (kernel, 1), (stride, 1), (pad, 0),
                                           ceil_mode=ceil_mode)
    else:
        y = torch.nn.functional.conv2d(x, torch.ones(1, 1, kernel, 1), stride=(stride, 1),
                                       padding=(pad, 0), dilation=(dilation, 1))
    y.sum().backward()
    read = (x.grad[0, 0, :, 0] != 0).tolist()
    unread_rows = [i for i, r in enumerate(read) if not r]
    last = max((i for i, r in enumerate(read) if r), default=-1)
    return len(unread_rows), size - 1 - last, y.shape[2]


def test_w500_counts_exactly_the_pixels_pytorch_never_reads():
    torch = pytest.importorskip("torch")
    from archgen.layers.conv import unread
    rng = random.Random(9)
    checked = 0
    while checked < 400:
        pool = rng.random() < 0.4
        kernel, stride = rng.randint(1, 5), rng.randint(1, 5)
        dilation = 1 if pool else rng.randint(1, 3)
        pad = rng.randint(0, kernel // 2) if pool else rng.randint(0, 3)
        ceil_mode = pool and rng.random() < 0.5
        size = rng.randint(1, 20)
        try:
            n, trailing, out = _torch_unread(torch, size, kernel, stride, pad, dilation,
                                             ceil_mode, pool)
        except RuntimeError:
            continue  # PyTorch refuses the configuration (archgen reports an error)
        assert unread(size, kernel, stride, pad, out, dilation) == (n, trailing), \
            (size, kernel, stride, pad, dilation, ceil_mode)
        call = (f"avgpool2d(({kernel}, 1), stride=({stride}, 1), padding=({pad}, 0), "
                f"ceil_mode={'true' if ceil_mode else 'false'})" if pool else
                f"conv2d(1, ({kernel}, 1), stride=({stride}, 1), padding=({pad}, 0), "
                f"dilation=({dilation}, 1))")
        found = [d for d in diags(f"input [1, {size}, 1]\n{call}\n") if d.code == "W500"]
        k_eff = dilation * (kernel - 1) + 1
        assert bool(found) == (n > 0 and k_eff > 1), (call, size, n, found)
        if found:
            assert f"{n} of the {size}" in found[0].message or \
                f"the last {n} row" in found[0].message
        checked += 1


SE_BRANCH = """input [16, 8, 8]
conv2d(16, 3, padding=1)
add:
    identity()
    branch:
        adaptive_avgpool2d(1)
        conv2d(4, 1)
        relu()
        conv2d(16, 1)
        sigmoid()
        upsample(size=(8, 8))
conv2d(16, 3, padding=1)
"""

RESTORED = """input [16, 8, 8]
adaptive_avgpool2d(1)
upsample(size=(8, 8))
conv2d(16, 3, padding=1)
"""


@pytest.mark.parametrize("spec", [SE_BRANCH, RESTORED], ids=["squeeze-excitation", "restored"])
def test_w503_is_quiet_on_correct_networks(spec, tmp_path):
    # today: W503 on the conv after the branch and after the upsample; --strict failed
    assert diags(spec) == []
    path = tmp_path / "net.cnn"
    path.write_text(spec)
    assert CliRunner().invoke(main, ["check", "--strict", str(path)]).exit_code == 0


def test_w503_still_fires_on_a_spatial_kernel_over_a_1x1_map():
    found = diags("input [16, 8, 8]\nadaptive_avgpool2d(1)\nconv2d(16, 3, padding=1)\n")
    assert [(d.code, d.span.line) for d in found] == [("W503", 3)]


def test_receptive_field_after_an_adaptive_pool_is_whole_and_within_the_input():
    # today: 9.3333 on an 8x8 map
    n = net("input [4, 8, 8]\nadaptive_avgpool2d(3)\nconv2d(4, 3, padding=1)\n")
    assert [layer.rf.label() for layer in n.layers()] == ["4", "8"]
    n = net("input [4, 8, 8]\nconv2d(4, 3, padding=1)\nadaptive_avgpool2d(1)\n"
            "conv2d(4, 3, padding=1)\nupsample(scale_factor=4)\nconv2d(4, 3, padding=1)\n")
    assert {layer.rf.label() for layer in list(n.layers())[1:]} == {"8"}


def test_receptive_field_after_an_adaptive_pool_covers_what_pytorch_reads():
    """The RF shown bounds what one output really sees (the gradient's extent) and is a
    whole number no larger than the input."""
    torch = pytest.importorskip("torch")
    for out in (1, 2, 3, 5, 7):
        n = net(f"input [1, 8, 8]\nadaptive_avgpool2d({out})\nconv2d(1, 3, padding=1)\n")
        rf = int(n.layers().__next__().rf.label()), int(list(n.layers())[1].rf.label())
        x = torch.ones(1, 1, 8, 8, requires_grad=True)
        conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        torch.nn.init.ones_(conv.weight)
        y = conv(torch.nn.functional.adaptive_avg_pool2d(x, out))
        widest = 0
        for i in range(out):
            x.grad = None
            y[0, 0, i, 0].backward(retain_graph=True)
            rows = (x.grad[0, 0, :, :].abs().sum(1) != 0).nonzero().flatten().tolist()
            widest = max(widest, rows[-1] - rows[0] + 1)
        assert widest <= rf[1] <= 8, (out, widest, rf)


def test_collapsed_summary_labels_runs_by_their_first_and_last_index():
    spec = """input [16, 8, 8]
block res(c):
    add:
        conv2d(c, 3, padding=1)
        identity()
stage:
    repeat 2: res(16)
    conv2d(32, 1)
    repeat 3: res(32)
"""
    text = archgen.parse(spec, "t.cnn").summary(collapse=True)
    # today: "1: res(16) x 2" for copies 0-1
    assert "├─ 0-1: res(16) x 2" in text
    assert "├─ 2: conv2d(32, 1)" in text
    assert "└─ 3-5: res(32) x 3" in text


def test_a_value_never_silently_replaces_another():
    # a positional after a named one used to overwrite it: dropout(p=0.5, 0.3) was p=0.3
    assert errors("input [3, 8, 8]\ndropout(p=0.5, 0.3)\n") == [("E300", 2)]
    # repeat's first(...) re-gives an argument on purpose: no PyTorch reading is guessed
    n = net("input [3, 16, 16]\nrepeat 1 first(stride=2): conv2d(8, 3, 1, 1)\n")
    assert [layer.args["stride"] for layer in n.layers()] == [(2, 2)]
