"""ONNX export: every layer kind and option against PyTorch through onnxruntime, names, shapes,
weights and the parity report's localisation.

PyTorch is the oracle: the generated module (archgen.emit_torch) where it exists, else a module
built from torch.nn's own layers (tests/torch_reference.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch_reference import build_reference

import archgen
from archgen import parity
from archgen.emit_onnx import (
    DEFAULT_OPSET,
    InternalError,
    build_onnx,
    save_onnx,
)
from archgen.layers import REGISTRY
from archgen.layers.base import LayerKind
from archgen.layers.resize import upsample_plan
from archgen.weights import (
    BUFFERS,
    WeightsError,
    check_state,
    initial_state,
    load_weights,
    state_entries,
    state_shapes,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
# full-size ImageNet models: parity at batch 1 only, to keep this file within a few minutes
BIG = {"vgg16", "vgg16_bn", "alexnet", "resnet50", "densenet121"}
# issue 10's zoo (tests/test_zoo.py), at batch 1 as well; through ~100 layers float32 rounding
# alone moves PyTorch 3.5e-5 from float64 on inception_v3, so the two may differ by more
ZOO = {"googlenet", "inception_v3", "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny",
       "shufflenet_v2_x1_0", "regnet_y_400mf", "r3d_18"}
BIG |= ZOO
HAVE_EMIT_TORCH = importlib.util.find_spec("archgen.emit_torch") is not None


def torch_module(net):
    if HAVE_EMIT_TORCH:
        from archgen.emit_torch import load_module
        return load_module(net)
    return build_reference(net)


@pytest.fixture(autouse=True)
def oracle(monkeypatch):
    monkeypatch.setattr(parity, "_torch_module", torch_module)


def net_of(body: str, file: str = "case.cnn"):
    return archgen.parse(body, file).network


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def assert_parity(net, batch=2, **kw):
    report = parity.run_parity(net, batch=batch, **kw)
    assert report.ok, report.to_text()
    return report


# -- every example --------------------------------------------------------------------------

def scale_tolerance(ref) -> float:
    """float32 rounding grows with depth and with the values' magnitude (a ResNet34 with seeded
    weights reaches thousands): hold a whole network to 1e-5 of its outputs' scale, which a
    real difference (a wrong pad, a swapped weight) exceeds by orders of magnitude."""
    return 1e-5 * max(1.0, float(np.max(np.abs(ref))))


def assert_batches_agree(net, batches, tolerance=lambda ref: 1e-5):
    """One exported graph (dynamic batch) against PyTorch at several batch sizes."""
    sess = session(build_onnx(net))
    module = torch_module(net)
    module.load_state_dict(initial_state(net, 0))
    module.eval()
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, *net.input_shape),
                                                         dtype=np.float32)
        with torch.no_grad():
            refs = module(torch.from_numpy(x))
        refs = refs if isinstance(refs, tuple) else (refs,)  # `output NAME, ...`: several
        names = [o.name for o in net.outputs] or ["output"]
        for got, ref in zip(sess.run(names, {"input": x}), refs, strict=True):
            ref = ref.numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=tolerance(ref))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_exports_and_matches_pytorch(path):
    net = archgen.load(path).network
    big = path.stem in BIG
    report = parity.run_parity(net, batch=1 if big else 3)  # the default tolerances
    assert report.output_shape == list(net.output_shape)
    assert report.ok, report.to_text()
    # float32 rounding, well inside rtol
    assert report.max_rel <= (6e-5 if path.stem in ZOO else 3e-5), report.to_text()
    if not big:
        assert_batches_agree(net, (1, 2, 5), scale_tolerance)


def test_examples_are_there():
    assert any(p.stem == "seed_cnn" for p in EXAMPLES)


# -- every layer kind and option ------------------------------------------------------------

CASES = {
    # conv2d: padding forms, stride, dilation, groups, bias, every padding mode
    "conv_pad_pair": "input [3, 9, 10]\nconv2d(4, (3, 5), padding=(1, 2))",
    "conv_valid": "input [3, 9, 10]\nconv2d(4, 3, padding=valid, bias=false)",
    "conv_same_even": "input [3, 9, 10]\nconv2d(4, 4, padding=same)",
    "conv_same_stride": "input [3, 9, 10]\nconv2d(4, 3, stride=2, padding=same)",
    "conv_same_stride_even": "input [3, 8, 11]\nconv2d(4, (4, 2), stride=(3, 2), padding=same)",
    "conv_same_dilated_stride": "input [3, 12, 13]\nconv2d(6, 3, stride=2, dilation=2, "
                                "padding=same)",
    "conv_dilation_groups": "input [4, 11, 11]\nconv2d(8, 3, dilation=(2, 3), groups=2, "
                            "padding=2)",
    "conv_depthwise": "input [6, 8, 8]\nconv2d(6, 3, groups=6, padding=1, bias=false)",
    "conv_reflect": "input [3, 8, 9]\nconv2d(4, 3, padding=(2, 1), padding_mode=reflect)",
    "conv_replicate": "input [3, 8, 9]\nconv2d(4, 5, stride=2, padding=2, "
                      "padding_mode=replicate)",
    "conv_circular": "input [3, 8, 9]\nconv2d(4, 3, padding=(1, 3), padding_mode=circular)",
    "conv_circular_full": "input [2, 3, 3]\nconv2d(4, 3, padding=3, padding_mode=circular)",
    "conv_reflect_same_stride": "input [3, 10, 9]\nconv2d(4, 4, stride=2, padding=same, "
                                "padding_mode=reflect)",
    "conv_circular_same": "input [3, 7, 9]\nconv2d(4, (2, 4), padding=same, "
                          "padding_mode=circular)",
    # conv_transpose2d
    "convT_stride": "input [4, 5, 6]\nconv_transpose2d(3, 3, stride=2, padding=1, "
                    "output_padding=1)",
    "convT_dilation_groups": "input [4, 5, 6]\nconv_transpose2d(6, (3, 2), stride=(2, 3), "
                             "padding=(2, 0), output_padding=(1, 2), groups=2, dilation=2, "
                             "bias=false)",
    "convT_output_padding_below_dilation": "input [4, 5, 6]\nconv_transpose2d(3, 3, "
                                           "dilation=(2, 3), output_padding=(1, 2), "
                                           "padding=(1, 0), stride=(1, 2))",
    "convT_output_padding_no_bias": "input [4, 5, 6]\nconv_transpose2d(3, 3, dilation=2, "
                                    "output_padding=1, bias=false)",
    # pooling
    "maxpool_ceil": "input [2, 7, 9]\nmaxpool2d(2, ceil_mode=true)",
    "maxpool_pad_ceil": "input [2, 6, 7]\nmaxpool2d(3, stride=2, padding=1, ceil_mode=true)",
    "maxpool_dilation": "input [2, 11, 10]\nmaxpool2d(3, stride=(2, 1), padding=1, "
                        "dilation=(2, 3))",
    "maxpool_dilation_ceil_overhang": "input [2, 4, 4]\nmaxpool2d(2, stride=2, padding=1, "
                                      "dilation=2, ceil_mode=true)",
    "maxpool_window_in_padding": "input [2, 4, 2]\nmaxpool2d((1, 2), stride=3, padding=(0, 1), "
                                 "dilation=(1, 3), ceil_mode=true)",
    "avgpool_default": "input [2, 7, 9]\navgpool2d(3, stride=2)",
    "avgpool_pad_incl": "input [2, 7, 9]\navgpool2d(3, stride=2, padding=1)",
    "avgpool_pad_excl": "input [2, 7, 9]\navgpool2d(3, stride=2, padding=1, "
                        "count_include_pad=false)",
    "avgpool_ceil_incl": "input [2, 5, 8]\navgpool2d(2, stride=2, padding=1, ceil_mode=true)",
    "avgpool_ceil_excl": "input [2, 5, 8]\navgpool2d(2, stride=2, padding=1, ceil_mode=true, "
                         "count_include_pad=false)",
    "avgpool_ceil_nopad": "input [2, 7, 9]\navgpool2d((3, 2), stride=2, ceil_mode=true)",
    "avgpool_divisor": "input [2, 7, 9]\navgpool2d(3, stride=2, padding=1, divisor_override=5)",
    "avgpool_divisor_ceil": "input [2, 7, 8]\navgpool2d(2, padding=1, ceil_mode=true, "
                            "divisor_override=3)",
    "adaptive_avg_1": "input [3, 7, 5]\nadaptive_avgpool2d(1)",
    "adaptive_max_1": "input [3, 7, 5]\nadaptive_maxpool2d(1)",
    "adaptive_avg_even": "input [3, 8, 6]\nadaptive_avgpool2d((4, 3))",
    "adaptive_max_even": "input [3, 8, 6]\nadaptive_maxpool2d((2, 3))",
    "adaptive_avg_uneven": "input [3, 10, 7]\nadaptive_avgpool2d((3, 4))",
    "adaptive_max_uneven": "input [3, 10, 7]\nadaptive_maxpool2d((3, 4))",
    "adaptive_avg_mixed": "input [3, 8, 7]\nadaptive_avgpool2d((4, 3))",
    "adaptive_max_one_axis": "input [3, 8, 7]\nadaptive_maxpool2d((8, 3))",
    "adaptive_avg_enlarge": "input [3, 3, 5]\nadaptive_avgpool2d((5, 7))",
    # batchnorm: inference form, without affine, with batch statistics
    "batchnorm": "input [4, 5, 5]\nbatchnorm2d(eps=0.001)",
    "batchnorm_no_affine": "input [4, 5, 5]\nbatchnorm2d(affine=false)",
    "batchnorm_batch_stats": "input [4, 5, 5]\nbatchnorm2d(track_running_stats=false)",
    "batchnorm_bare": "input [4, 5, 5]\nbatchnorm2d(affine=false, track_running_stats=false)",
    # activations
    "activations": """input [4, 5, 6]
relu()
conv2d(4, 1)
relu6()
conv2d(4, 1)
leaky_relu(0.2)
elu(alpha=0.7)
gelu()
gelu(approximate=tanh)
silu()
conv2d(4, 1)
sigmoid()
tanh()
hardswish()
softmax(dim=1)
softmax(dim=-1)
softmax(dim=2)""",
    "inplace": "input [3, 6, 6]\nconv2d(4, 3)\nrelu(inplace=true)\nconv2d(4, 1)\n"
               "leaky_relu(0.1, inplace=true)",
    "softmax_flat": "input [3, 4, 4]\nflatten()\nlinear(7)\nsoftmax()",
    # dropout, identity, flatten, linear
    "dropout": "input [3, 4, 4]\ndropout2d(0.3)\nflatten()\ndropout(0.5)\nlinear(5, bias=false)"
               "\nidentity()",
    "flatten_middle": "input [3, 4, 5]\nflatten(2)\nsoftmax(dim=-1)",
    "flatten_first_two": "input [3, 4, 5]\nflatten(1, 2)\nsoftmax(dim=1)",
    "flatten_neg": "input [3, 4, 5]\nflatten(start_dim=-2, end_dim=-1)",
    "flatten_none": "input [3, 4, 5]\nflatten(2, 2)\nrelu()",
    "flat_input": "input [12]\nflatten()\nlinear(6)\nrelu()\nlinear(3)",
    # pad2d
    "pad_zeros": "input [2, 4, 5]\npad2d(1)",
    "pad_value": "input [2, 4, 5]\npad2d((1, 2, 0, 3), value=-1.5)",
    "pad_reflect": "input [2, 4, 5]\npad2d((1, 4, 3, 0), mode=reflect)",
    "pad_replicate": "input [2, 4, 5]\npad2d((2, 1), mode=replicate)",
    "pad_circular": "input [2, 4, 5]\npad2d((5, 1, 4, 2), mode=circular)",
    # upsample: resize and gather plans
    # 1-D and 3-D inputs: every rank-generic kind, every padding mode (tests/test_ranks.py
    # runs random stacks of them)
    "rank1": "input [2, 11]\nconv1d(4, 3, stride=2, padding=2, padding_mode=reflect)\n"
             "batchnorm1d()\nmaxpool1d(2, ceil_mode=true)\npad1d((2, 1), mode=circular)\n"
             "avgpool1d(3, stride=2, padding=1, count_include_pad=false)\n"
             "conv_transpose1d(3, 3, stride=2, output_padding=1)\n"
             "upsample(scale_factor=1.5, mode=linear)\nadaptive_avgpool1d(3)\n"
             "adaptive_maxpool1d(2)\nupsample(scale_factor=2.5)",
    "rank3": "input [2, 5, 6, 7]\nconv3d(3, (1, 3, 3), padding=1, padding_mode=replicate)\n"
             "batchnorm3d(track_running_stats=false)\nmaxpool3d(2, ceil_mode=true, dilation=(1, 2, 1))\n"
             "pad3d((1, 0, 2, 1, 0, 1), mode=reflect)\navgpool3d(2, padding=1, divisor_override=2)\n"
             "conv_transpose3d(2, 2, stride=2, padding=(0, 1, 0))\n"
             "upsample(size=(5, 9, 4), mode=trilinear)\nupsample(scale_factor=1.5)\n"
             "adaptive_avgpool3d((2, 3, 1))\nadaptive_maxpool3d(1)",
    "up_nearest_2": "input [2, 4, 5]\nupsample(scale_factor=2)",
    "up_nearest_3": "input [2, 4, 5]\nupsample(scale_factor=(3, 2))",
    "up_nearest_frac": "input [2, 5, 7]\nupsample(scale_factor=1.5)",
    "up_nearest_size": "input [2, 5, 7]\nupsample(size=(9, 16))",
    "up_nearest_shrink": "input [2, 9, 7]\nupsample(size=(4, 3))",
    "up_bilinear": "input [2, 4, 5]\nupsample(scale_factor=2, mode=bilinear)",
    "up_bilinear_frac": "input [2, 5, 7]\nupsample(scale_factor=(1.7, 2.5), mode=bilinear)",
    "up_bilinear_size": "input [2, 5, 7]\nupsample(size=(9, 4), mode=bilinear)",
    "up_bilinear_corners": "input [2, 5, 7]\nupsample(scale_factor=1.5, mode=bilinear, "
                           "align_corners=true)",
    "up_bilinear_corners_size": "input [2, 5, 7]\nupsample(size=(1, 12), mode=bilinear, "
                                "align_corners=true)",
    "up_bilinear_false": "input [2, 5, 7]\nupsample(size=(11, 3), mode=bilinear, "
                         "align_corners=false)",
    # activations and channel operations (activation_extra.py, channels.py)
    "activations_extra": "input [6, 5, 4]\nhardsigmoid()\nhardtanh(-0.5, 0.75)\nmish()\n"
                         "prelu()\nprelu(6, init=0.1)\nlog_softmax(dim=1)\nlog_softmax(dim=-1)",
    "channel_ops": "input [8, 5, 4]\nchannel_shuffle(4)\nchannel_slice(2, 8)\n"
                   "channel_shuffle(3)\nflatten()\nprelu(120)\nchannel_slice(10, 40)",
    # normalizations (normalization.py): last dims, channels of a map, groups, instances
    "layernorm": "input [3, 5, 6]\nlayernorm((5, 6), eps=1e-6)\n"
                 "layernorm(6, elementwise_affine=false)\nlayernorm(6, bias=false)",
    "layernorm2d": "input [4, 5, 6]\nlayernorm2d(eps=1e-6)\nlayernorm2d(elementwise_affine=false)\n"
                   "layernorm2d(bias=false)",
    "groupnorm": "input [6, 5, 4]\ngroupnorm(3)\ngroupnorm(2, affine=false)\nflatten()\ngroupnorm(4)",
    "instancenorm2d": "input [4, 5, 6]\ninstancenorm2d()\ninstancenorm2d(affine=true)\n"
                      "instancenorm2d(track_running_stats=true)",
    "instancenorm1d": "input [4, 7]\ninstancenorm1d(affine=true)\n"
                      "instancenorm1d(track_running_stats=true, affine=true)",
    "instancenorm3d": "input [2, 3, 4, 5]\ninstancenorm3d(track_running_stats=true, affine=true)\n"
                      "instancenorm3d()",
    # layout (layout.py) and linear on the last dim: ConvNeXt's channels-last MLP
    "permute_linear_scale": "input [4, 5, 6]\npermute(1, 2, 0)\nlinear(8)\nlinear(3, bias=false)\n"
                            "permute(2, 0, 1)\nlayer_scale(0.5)\nstochastic_depth(0.2, batch)",
    # merges
    "add3_concat": """input [4, 6, 6]
add:
    branch:
        conv2d(4, 3, padding=1)
        batchnorm2d()
    identity()
    conv2d(4, 1)
relu()
concat:
    conv2d(3, 1)
    maxpool2d(3, stride=1, padding=1)
    add:
        conv2d(2, 3, padding=same)
        conv2d(2, 1)
flatten()
concat:
    linear(3)
    identity()""",
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_options_match_pytorch(name):
    assert_parity(net_of(CASES[name], f"{name}.cnn"))


def test_every_layer_kind_has_a_lowering_and_a_case():
    assert all(type(k).lower_onnx is not LayerKind.lower_onnx for k in REGISTRY.values())
    covered = {layer.op for body in CASES.values() for layer in net_of(body).layers()}
    assert covered == set(REGISTRY)


def test_upsample_plans_cover_resize_and_gather():
    plans = {upsample_plan(layer.args, layer.in_shape[1:], layer.out_shape[1:])
             for name, body in CASES.items() if name.startswith("up_")
             for layer in net_of(body).layers()}
    assert plans == {"resize", "gather"}


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_sizes_and_scales(mode):
    """Many sizes in one graph: nearest picks exactly PyTorch's pixels, bilinear its weights."""
    ups = [f"upsample(size=({h}, {w}), mode={mode})" for h, w in
           ((1, 1), (2, 82), (7, 13), (12, 41), (3, 29))]
    ups += [f"upsample(scale_factor={s}, mode={mode})" for s in
            (1.1, 3, 1.3, 0.6, 4.1, 2, 2.5)]
    for up in ups:
        net = net_of(f"input [1, 2, 5]\n{up}", "up.cnn")
        assert_parity(net, batch=1)


@pytest.mark.parametrize("opset", [19, 20, 21])
def test_opsets(opset):
    net = net_of(CASES["activations"] + "\npad2d(2, mode=circular)", "opsets.cnn")
    model = build_onnx(net, opset=opset)
    assert model.opset_import[0].version == opset
    assert ("Gelu" in {n.op_type for n in model.graph.node}) == (opset >= 20)
    assert_parity(net, opset=opset)


def test_opset_out_of_range():
    with pytest.raises(ValueError, match="opset must be between 19"):
        build_onnx(net_of(CASES["pad_circular"]), opset=18)


# -- randomised windows: padding modes, strides, dilations, groups, ceil_mode ----------------

def _random_spec(rng: random.Random) -> str:
    c = rng.choice([2, 4, 6])
    lines = [f"input [{c}, {rng.randint(5, 14)}, {rng.randint(5, 14)}]"]
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["conv", "conv", "convT", "max", "avg"])
        k = (rng.randint(1, 4), rng.randint(1, 4))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        if kind == "conv":
            out = rng.choice([2, 4, 6])
            groups = rng.choice([g for g in (1, 2) if c % g == 0 and out % g == 0])
            pad = rng.choice(["same", "valid", str(rng.randint(0, 2)),
                              f"({rng.randint(0, 2)}, {rng.randint(0, 2)})"])
            d = (rng.randint(1, 2), rng.randint(1, 2))
            mode = rng.choice(["zeros", "reflect", "replicate", "circular"])
            lines.append(f"conv2d({out}, {k}, stride={s}, padding={pad}, dilation={d}, "
                         f"groups={groups}, padding_mode={mode}, "
                         f"bias={'true' if rng.random() < 0.5 else 'false'})")
            c = out
        elif kind == "convT":
            out = rng.choice([2, 4])
            d = (rng.randint(1, 2), rng.randint(1, 2))
            op = tuple(rng.randint(0, max(s[i], d[i]) - 1) for i in range(2))
            p = (rng.randint(0, 1), rng.randint(0, 1))
            lines.append(f"conv_transpose2d({out}, {k}, stride={s}, padding={p}, "
                         f"output_padding={op}, dilation={d})")
            c = out
        else:
            p = tuple(rng.randint(0, k[i] // 2) for i in range(2))
            ceil = "true" if rng.random() < 0.6 else "false"
            if kind == "max":
                d = (rng.randint(1, 3), rng.randint(1, 3))
                lines.append(f"maxpool2d({k}, stride={s}, padding={p}, dilation={d}, "
                             f"ceil_mode={ceil})")
            else:
                extra = rng.choice(["", ", count_include_pad=false",
                                    f", divisor_override={rng.randint(1, 7)}"])
                lines.append(f"avgpool2d({k}, stride={s}, padding={p}, ceil_mode={ceil}{extra})")
    return "\n".join(lines)


def _features(layer) -> set[str]:
    a = layer.args
    found = {layer.op}
    if layer.op == "conv2d":
        found |= {f"mode={a['padding_mode']}", f"padding={a['padding']}"[:12]}
        found |= {"groups"} if a["groups"] > 1 else set()
    if layer.op in ("maxpool2d", "avgpool2d"):
        found |= {f"{layer.op} ceil={a['ceil_mode']}"}
        if any(p for p in a["padding"]):
            found |= {f"{layer.op} padded"}
    if layer.op == "avgpool2d":
        found |= {f"count_include_pad={a['count_include_pad']}"}
        found |= {"divisor_override"} if a["divisor_override"] else set()
    if max(a.get("stride", (1, 1))) > 1:
        found |= {f"{layer.op} stride"}
    if max(a.get("dilation", (1, 1))) > 1:
        found |= {f"{layer.op} dilation"}
    return found


def test_randomised_window_layers_match_pytorch():
    rng = random.Random(1234)
    accepted, seen = 0, set()
    for i in range(300):
        spec = archgen.parse(_random_spec(rng), f"random{i}.cnn")
        if not spec.ok:
            continue
        accepted += 1
        for layer in spec.network.layers():
            seen |= _features(layer)
        report = parity.run_parity(spec.network, batch=2, seed=i)
        assert report.ok, f"{spec.source}\n{report.to_text()}"
        if i % 10 == 0:
            assert_batches_agree(spec.network, (1, 3))
    assert accepted >= 200
    wanted = {"mode=zeros", "mode=reflect", "mode=replicate", "mode=circular", "padding=same",
              "padding=vali", "groups", "conv2d stride", "conv2d dilation",
              "conv_transpose2d stride", "conv_transpose2d dilation", "maxpool2d ceil=True",
              "maxpool2d ceil=False", "avgpool2d ceil=True", "avgpool2d ceil=False",
              "maxpool2d padded", "avgpool2d padded", "maxpool2d dilation",
              "count_include_pad=False", "divisor_override"}
    assert wanted <= seen, wanted - seen


# -- graph structure: names, batch, intermediates -------------------------------------------

MERGES = """network Merges
input [3, 8, 8]
stem:
    conv2d(4, 3, padding=1)
    batchnorm2d()
    relu()
add:
    branch:
        conv2d(4, 3, padding=1)
        relu()
    identity()
concat:
    conv2d(2, 1)
    conv2d(3, 3, padding=1)
head:
    adaptive_avgpool2d(1)
    flatten()
    linear(5)
"""


def test_names_follow_module_paths():
    net = net_of(MERGES, "merges.cnn")
    model = build_onnx(net)
    nodes = {n.name: n for n in model.graph.node}
    for layer in net.layers():
        assert layer.path in nodes, layer.path
    assert nodes["stem.0"].op_type == "Conv"
    assert nodes["stem.0"].output[0] == "stem.0.out"
    assert nodes["stem.0"].input[1:] == ["stem.0.weight", "stem.0.bias"]
    assert nodes["add"].op_type == "Add" and nodes["concat"].op_type == "Concat"
    assert nodes["head.2"].output[0] == "output"
    inits = {i.name for i in model.graph.initializer}
    keys = {k for k in state_shapes(net) if not k.endswith("num_batches_tracked")}
    assert keys <= inits
    assert all(name in keys or "/" in name for name in inits)  # helpers are "<path>/<role>"
    assert [i.name for i in model.graph.input] == ["input"]
    assert model.graph.name == "Merges"
    shown = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
             for v in model.graph.value_info}  # viewers show the shapes on the edges
    assert shown["stem.0.out"] == ["N", 4, 8, 8] and shown["concat.out"] == ["N", 5, 8, 8]
    onnx.checker.check_model(model, full_check=True)


def test_dynamic_and_static_batch():
    net = net_of(MERGES)

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    dynamic = build_onnx(net)
    assert dims(dynamic.graph.input[0]) == ["N", 3, 8, 8]
    assert dims(dynamic.graph.output[0]) == ["N", 5]
    static = build_onnx(net, dynamic_batch=False)
    assert dims(static.graph.input[0]) == [1, 3, 8, 8]
    assert session(static).run(None, {"input": np.zeros((1, 3, 8, 8), np.float32)})[0].shape \
        == (1, 5)


def test_intermediates_expose_every_layer_and_merge():
    net = net_of(MERGES)
    model = build_onnx(net, intermediates=True)
    outputs = [o.name for o in model.graph.output]
    layers = [layer for layer in net.layers() if layer.path != "head.2"]
    assert outputs[0] == "output"
    assert set(outputs[1:]) == {f"{layer.path}.out" for layer in layers} | {"add.out",
                                                                            "concat.out"}
    results = session(model).run(None, {"input": np.ones((2, 3, 8, 8), np.float32)})
    for value, name in zip(results, outputs):
        shape = next(o for o in model.graph.output if o.name == name).type.tensor_type.shape
        assert list(value.shape[1:]) == [d.dim_value for d in shape.dim][1:]


def test_seeded_weights_are_deterministic():
    net = net_of(MERGES)
    a, b = build_onnx(net, seed=3), build_onnx(net, seed=3)
    c = build_onnx(net, seed=4)
    assert a.SerializeToString() == b.SerializeToString() != c.SerializeToString()


def test_save_onnx_round_trip(tmp_path):
    model = build_onnx(net_of(MERGES))
    path = tmp_path / "out" / "merges.onnx"
    assert save_onnx(model, path) is True
    assert save_onnx(model, path) is False  # unchanged: not rewritten
    assert onnx.load(path).SerializeToString() == model.SerializeToString()


# -- the checker's shapes against ONNX's -----------------------------------------------------

@pytest.mark.parametrize("which", ["stem.0", "concat", "head.2"])
def test_shape_disagreement_is_an_internal_error(which):
    net = net_of(MERGES, "merges.cnn")
    from archgen.ir import walk
    node = next(n for n in walk(net.root)
                if getattr(n, "path", None) == which or
                (which == "concat" and getattr(n, "mode", None) == "concat"))
    c, *rest = node.out_shape
    node.out_shape = (c + 1, *rest)
    with pytest.raises(InternalError, match="archgen bug") as err:
        build_onnx(net)
    assert "the checker computed" in str(err.value)
    assert f"[N, {c + 1}" in str(err.value)
    if which != "concat":
        assert f"'{which}.out'" in str(err.value) or "'output'" in str(err.value)
        assert "merges.cnn:" in str(err.value)


# -- parity: the report and its localisation -------------------------------------------------

def _perturbed(net, key, seed=0):
    state = initial_state(net, seed)
    return {key: state[key] + 0.5}


@pytest.mark.parametrize("key,layer", [
    ("stem.0.weight", "stem.0"),
    ("stem.1.running_var", "stem.1"),
    ("conv2d.bias", "conv2d"),        # inside the add's first branch
    ("conv2d_2.weight", "conv2d_2"),  # the concat's second branch
    ("head.2.bias", "head.2"),
])
def test_parity_localises_the_perturbed_layer(key, layer):
    net = net_of(MERGES, "merges.cnn")
    report = parity.run_parity(net, onnx_state_dict_override=_perturbed(net, key))
    assert not report.ok
    assert report.max_abs > 1e-3
    d = report.first_divergence
    assert d is not None and d.path == layer, report.to_text()
    target = next(x for x in net.layers() if x.path == layer)
    assert d.op == target.op
    assert d.location == f"merges.cnn:{target.span.line}:{target.span.column}"
    text = report.to_text()
    assert "MISMATCH" in text and layer in text and d.location in text
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False and data["first_divergence"]["path"] == layer


def test_parity_hooks_see_outputs_before_in_place_ops():
    """relu(inplace=true) overwrites the conv's output tensor after the hook saw it: the
    comparison must use the conv's own output, and find the perturbed layer after it."""
    net = net_of("input [3, 6, 6]\nconv2d(4, 3, padding=1)\nrelu(inplace=true)\n"
                 "conv2d(4, 3)\nrelu(inplace=true)", "inplace.cnn")
    report = parity.run_parity(net, onnx_state_dict_override=_perturbed(net, "layers.2.bias"))
    assert report.first_divergence.path == "layers.2", report.to_text()


def test_parity_without_tolerance_fails_on_rounding_alone():
    """rtol=0, atol=0: float32 rounding alone fails, and some layer is named."""
    report = parity.run_parity(net_of(MERGES, "merges.cnn"), rtol=0.0, atol=0.0)
    assert not report.ok and 0 < report.max_abs < 1e-4
    assert report.first_divergence is not None


def test_parity_json_has_no_infinity():
    report = parity.ParityReport("N", False, math.inf, math.nan, 1, 1e-4, 1e-5, 0, 21, [3], 1.0)
    assert json.loads(json.dumps(report.to_json(), allow_nan=False))["max_abs"] == "inf"


def test_parity_report_when_equal():
    report = parity.run_parity(net_of(MERGES), batch=3, seed=5)
    assert report.ok and report.first_divergence is None
    assert report.max_abs < 1e-4 and report.reference_max > 0.1
    assert report.to_json()["batch"] == 3
    assert report.to_text().startswith("parity Merges: ok")


def test_parity_uses_the_given_weights():
    net = net_of(MERGES)
    state = initial_state(net, 7)
    assert parity.run_parity(net, state_dict=state).ok
    bad = dict(state)
    bad.pop("stem.0.bias")
    with pytest.raises(WeightsError, match="stem.0.bias"):
        parity.run_parity(net, state_dict=bad)


# -- weights ------------------------------------------------------------------------------------

def test_state_entries_match_the_torch_module():
    nets = [net_of(MERGES)] + [net_of(CASES[k]) for k in
                               ("batchnorm_no_affine", "batchnorm_bare", "convT_dilation_groups",
                                "dropout", "conv_same_stride")]
    nets += [archgen.load(p).network for p in EXAMPLES if p.stem not in BIG]
    for net in nets:
        module_state = torch_module(net).state_dict()
        assert {k: tuple(v.shape) for k, v in module_state.items()} == state_shapes(net)
        for layer in net.layers():
            trainable = sum(int(np.prod(e.shape)) for e in state_entries(net)
                            if e.key.startswith(layer.path + ".") and e.role not in BUFFERS)
            assert trainable == layer.params, layer.path


def test_load_weights_round_trip(tmp_path):
    net = net_of(MERGES)
    state = initial_state(net, 2)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    loaded = load_weights(net, path)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    model = build_onnx(net, state_dict=loaded)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits["stem.0.weight"], state["stem.0.weight"].numpy())


def _save(tmp_path, state, name="w.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_checkpoint_with_a_wrong_key(tmp_path):
    net = net_of(MERGES)
    state = initial_state(net)
    state["stem.0.kernel"] = state.pop("stem.0.weight")
    with pytest.raises(WeightsError) as err:
        load_weights(net, _save(tmp_path, state))
    e = err.value
    assert e.key == "stem.0.weight" and e.expected == (4, 3, 3, 3) and e.found is None
    assert "lacks 'stem.0.weight'" in str(e) and "stem.0.kernel" in str(e)
    assert "1 more mismatch" in str(e)


def test_checkpoint_with_a_wrong_shape(tmp_path):
    net = net_of(MERGES)
    state = initial_state(net)
    state["conv2d_1.weight"] = torch.zeros(2, 4, 3, 3)
    with pytest.raises(WeightsError) as err:
        load_weights(net, _save(tmp_path, state))
    e = err.value
    assert (e.key, e.expected, e.found) == ("conv2d_1.weight", (2, 4, 1, 1), (2, 4, 3, 3))
    assert "has shape [2, 4, 3, 3] but the network expects [2, 4, 1, 1]" in str(e)


def test_checkpoint_with_an_unexpected_key(tmp_path):
    net = net_of(MERGES)
    state = initial_state(net)
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError, match="unexpected key 'extra.weight'") as err:
        load_weights(net, _save(tmp_path, state))
    assert err.value.found == (3,) and err.value.expected is None


def test_checkpoint_from_data_parallel(tmp_path):
    net = net_of(MERGES)
    state = {f"module.{k}": v for k, v in initial_state(net).items()}
    with pytest.raises(WeightsError, match="DataParallel"):
        load_weights(net, _save(tmp_path, state))


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    net = net_of(MERGES)
    with pytest.raises(WeightsError, match="wraps its state_dict under the key 'state_dict'"):
        load_weights(net, _save(tmp_path, {"state_dict": initial_state(net), "epoch": 3}))
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: weights_only refuses it
    with pytest.raises(WeightsError, match="weights-only"):
        load_weights(net, path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(net, tmp_path / "missing.pt")


def test_mismatching_weights_write_nothing(tmp_path):
    net = net_of(MERGES)
    state = initial_state(net)
    state["head.2.weight"] = torch.zeros(5, 3)
    out = tmp_path / "net.onnx"
    with pytest.raises(WeightsError):
        save_onnx(build_onnx(net, state_dict=load_weights(net, _save(tmp_path, state))), out)
    with pytest.raises(WeightsError):
        save_onnx(build_onnx(net, state_dict=state), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "w.pt"]


def test_check_state_orders_and_accepts_exact_state():
    net = net_of(MERGES)
    state = initial_state(net)
    shuffled = dict(reversed(list(state.items())))
    assert list(check_state(net, shuffled)) == list(state)


def test_default_opset():
    assert build_onnx(net_of(CASES["pad_zeros"])).opset_import[0].version == DEFAULT_OPSET
