"""Parity's verdict against float64 PyTorch, its localisation under real bugs, ONNX files made
elsewhere (--onnx), several seeds (--seeds) and strict JSON."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import onnx
import perturb
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

import archgen
from archgen import parity
from archgen.cli import main
from archgen.emit_onnx import build_onnx, save_onnx
from archgen.emit_torch import load_module
from archgen.weights import WeightsError, initial_state

# a ceil_mode pool whose ceil matters (18 -> 9, not 8: end padding, asymmetric pads), a
# batchnorm, a merge, and a global pool that takes any size after the pool
PROBE = """network Probe
input [3, 18, 18]
stem:
    conv2d(8, 3, padding=1)
    batchnorm2d()
    relu()
    maxpool2d(3, stride=2, ceil_mode=true)
body:
    add:
        conv2d(8, 3, padding=1)
        identity()
    relu()
    conv2d(16, 3, stride=2, padding=1)
    relu()
head:
    adaptive_avgpool2d(1)
    flatten()
    linear(5)
"""


@pytest.fixture(scope="module")
def probe():
    return archgen.parse(PROBE, "probe.cnn").network


def _location(net, path: str) -> str:
    layer = next(x for x in net.layers() if x.path == path)
    return f"probe.cnn:{layer.span.line}:{layer.span.column}"


def _assert_names(report, net, path: str) -> None:
    assert not report.ok, report.to_text()
    assert report.ratio > 10 * parity.FACTOR, report.to_text()
    d = report.first_divergence
    assert d is not None and d.path == path, report.to_text()
    assert d.location == _location(net, path)
    assert d.ratio > parity.FACTOR
    assert f"first diverging layer: {path} " in report.to_text()


# -- the verdict ---------------------------------------------------------------------------------

def test_correct_export_reports_both_errors_and_their_ratio(probe):
    report = parity.run_parity(probe, seed=3)
    assert report.ok and report.mode == "float64", report.to_text()
    assert 0 < report.onnx_error < 1e-5 and 0 < report.torch_error < 1e-5
    assert report.ratio == pytest.approx(report.onnx_error / report.torch_error)
    text = report.to_text()
    assert text.startswith("parity Probe: ok: onnxruntime ")
    assert f"from float64, PyTorch {report.torch_error:.2g}: {report.ratio:.2g}x" in text
    assert f"within {parity.FACTOR:g}x + {parity.FLOOR:g}" in text
    assert report.rtol is None and report.atol is None


def _cancelling(seed: int):
    """A linear layer whose rows are nearly orthogonal to the inputs: its outputs are 1e-3 of
    the terms summed, so float32 rounding is ~5e-4 of their magnitude in any runtime."""
    net = archgen.parse("network Cancel\ninput [256, 4, 4]\nflatten()\nlinear(64)\n"
                        "linear(10)\n", "cancel.cnn").network
    state = initial_state(net, 0)
    x = parity._input(np, net, seed, 2).reshape(2, -1).astype(np.float64)
    v = np.random.default_rng(seed).standard_normal((64, x.shape[1]))
    q, _ = np.linalg.qr(x.T)
    state["layers.1.weight"] = torch.from_numpy((v - 0.999 * (v @ q) @ q.T).astype(np.float32))
    return net, state


@pytest.mark.parametrize("seed", [0, 1])
def test_rounding_that_crosses_a_fixed_line_passes(seed):
    """The fixed line fails this export on float32 rounding alone; against float64, ONNX is
    as accurate as PyTorch and passes."""
    net, state = _cancelling(seed)
    absolute = parity.run_parity(net, state_dict=state, seed=seed, rtol=1e-4)
    assert not absolute.ok and absolute.mode == "absolute"
    report = parity.run_parity(net, state_dict=state, seed=seed)
    assert report.ok, report.to_text()
    assert report.torch_error > 1e-4  # float32 PyTorch is no closer to the truth


def test_localisation_skips_layers_as_inexact_as_pytorch():
    """The fixed line names the cancelling layer, where rounding crosses it; the float64 rule
    names the layer that was changed."""
    net, state = _cancelling(0)
    override = perturb.scaled_weight(state, "layers.2.weight")
    absolute = parity.run_parity(net, state_dict=state, rtol=1e-4,
                                 onnx_state_dict_override=override)
    assert absolute.first_divergence.path == "layers.1"
    report = parity.run_parity(net, state_dict=state, onnx_state_dict_override=override)
    assert not report.ok and report.first_divergence.path == "layers.2", report.to_text()


# -- real bugs fail and are localised ------------------------------------------------------------

@pytest.mark.parametrize("key", ["stem.0.weight", "stem.1.running_var", "body.conv2d.bias",
                                 "body.conv2d_1.weight", "head.2.weight"])
def test_one_weight_tensor_off_by_one_percent(probe, key):
    state = initial_state(probe, 0)
    report = parity.run_parity(probe, state_dict=state,
                               onnx_state_dict_override=perturb.scaled_weight(state, key))
    _assert_names(report, probe, key.rsplit(".", 1)[0])


@pytest.mark.parametrize("which,path,how", [
    ("first", "stem.0", "moved down"),   # symmetric conv padding, moved by one row
    (1, "stem.3", "reversed"),           # the ceil_mode pool's end padding, now at the start
])
def test_a_swapped_pad(probe, which, path, how):
    state = initial_state(probe, 0)
    model, changed, what = perturb.shifted_pad(build_onnx(probe, state_dict=state), probe, which)
    assert changed == path and how in what
    _assert_names(parity.run_parity(probe, state_dict=state, onnx_file=model), probe, path)


def test_a_wrong_ceil_mode(probe):
    state = initial_state(probe, 0)
    model, changed, _ = perturb.flipped_ceil(build_onnx(probe, state_dict=state), probe)
    assert changed == "stem.3"
    report = parity.run_parity(probe, state_dict=state, onnx_file=model)
    _assert_names(report, probe, "stem.3")
    assert report.first_divergence.onnx_error == math.inf  # 8x8 against 9x9
    assert ("first diverging layer: stem.3 (maxpool2d) at probe.cnn:7:5: ONNX gives the shape "
            "[2, 8, 8, 8], PyTorch [2, 8, 9, 9]") in report.to_text()


def test_the_absolute_mode_is_kept():
    """rtol=0, atol=0: float32 rounding alone fails, and some layer is named."""
    report = parity.run_parity(archgen.parse(PROBE, "probe.cnn").network, rtol=0.0, atol=0.0)
    assert not report.ok and report.mode == "absolute" and 0 < report.max_abs < 1e-4
    assert report.onnx_error is None and report.first_divergence is not None
    assert "(rtol 0, atol 0;" in report.to_text()
    only_rtol = parity.run_parity(archgen.parse(PROBE, "probe.cnn").network, rtol=1e-3)
    assert only_rtol.ok and (only_rtol.rtol, only_rtol.atol) == (1e-3, 1e-5)


# -- several seeds -------------------------------------------------------------------------------

def test_seeds_report_the_worst(probe):
    report = parity.run_parity(probe, seed=4, seeds=3)
    assert [r.seed for r in report.runs] == [4, 5, 6]
    worst = max(report.runs, key=lambda r: r.measure.used)
    assert report.seed == worst.seed and report.onnx_error == worst.measure.onnx_error
    assert report.ok == all(r.measure.ok for r in report.runs)
    # each seed draws its own weights and input
    assert len({r.measure.torch_error for r in report.runs}) == 3
    line = report.to_text().splitlines()[1]
    assert line.startswith("  per seed (ratio): 4 ") and line.count("x") == 3
    assert f"seeds 4-6, worst {report.seed}, " in report.to_text()


def test_seeds_with_given_weights_vary_the_input(probe):
    state = initial_state(probe, 9)
    bad = perturb.scaled_weight(state, "body.conv2d.weight")
    report = parity.run_parity(probe, state_dict=state, seeds=2, onnx_state_dict_override=bad)
    assert not report.ok and all(not r.measure.ok for r in report.runs)
    assert report.first_divergence.path == "body.conv2d"
    assert any("each seed draws only its input" in n for n in report.notes)
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        parity.run_parity(probe, seeds=0)


# -- ONNX files made elsewhere -------------------------------------------------------------------

def _cli(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def files(tmp_path_factory, probe):
    """probe.cnn, its weights, an archgen export with them and torch.onnx.export's."""
    d = tmp_path_factory.mktemp("parity")
    (d / "probe.cnn").write_text(PROBE)
    state = initial_state(probe, 11)
    torch.save(state, d / "w.pt")
    save_onnx(build_onnx(probe, state_dict=state), d / "archgen.onnx")
    module = load_module(probe)
    module.load_state_dict(state)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, *probe.input_shape),), str(d / "torch.onnx"),
                          dynamo=False)
    return d, state


def test_an_archgen_file_with_its_own_weights(files, probe):
    d, _ = files
    report = parity.run_parity(probe, onnx_file=d / "archgen.onnx")
    assert report.ok and report.weights == "onnx file", report.to_text()
    result = _cli("parity", str(d / "probe.cnn"), "--onnx", str(d / "archgen.onnx"))
    assert result.exit_code == 0, result.output
    assert f"parity Probe against {d / 'archgen.onnx'}: ok: " in result.output
    assert "weights from the ONNX file" in result.output


def test_an_archgen_file_with_a_tampered_weight(files, probe, tmp_path):
    """Reading weights from the file checks its graph; --weights checks its weights too."""
    d, _ = files
    model = onnx.load(d / "archgen.onnx")
    t = next(t for t in model.graph.initializer if t.name == "body.conv2d_1.weight")
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(1.01), t.name))
    onnx.save(model, tmp_path / "tampered.onnx")
    assert parity.run_parity(probe, onnx_file=tmp_path / "tampered.onnx").ok
    result = _cli("parity", str(d / "probe.cnn"), "--onnx", str(tmp_path / "tampered.onnx"),
                  "--weights", str(d / "w.pt"))
    assert result.exit_code == 1 and "MISMATCH" in result.output
    assert "first diverging layer: body.conv2d_1 (conv2d) at " in result.output


def test_an_archgen_file_with_a_tampered_graph(files, probe, tmp_path):
    d, _ = files
    model, _, _ = perturb.shifted_pad(onnx.load(d / "archgen.onnx"), probe, "last")
    onnx.save(model, tmp_path / "tampered.onnx")
    report = parity.run_parity(probe, onnx_file=tmp_path / "tampered.onnx")
    _assert_names(report, probe, "body.conv2d_1")


def test_a_torch_onnx_export(files, probe, tmp_path):
    """Other names for the input and output (mapped by position), a batch fixed at 1, the
    batchnorm folded into the conv: the weights must be given, and there is no localisation."""
    d, state = files
    path = d / "torch.onnx"
    model = onnx.load(path)
    assert model.graph.input[0].name != "input"
    with pytest.raises(WeightsError, match="--weights") as err:
        parity.run_parity(probe, onnx_file=path)
    assert "'stem.0.weight'" in str(err.value)
    result = _cli("parity", str(d / "probe.cnn"), "--onnx", str(path))
    assert result.exit_code == 1 and "give the weights with --weights" in result.output
    report = parity.run_parity(probe, onnx_file=path, state_dict=state, seeds=2)
    assert report.ok and report.batch == 1, report.to_text()
    assert "the file fixes the batch at 1" in report.notes
    # tampered: the last linear's bias, found by its shape
    bias = next(t for t in model.graph.initializer if list(t.dims) == [5])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.05),
                                          bias.name))
    onnx.save(model, tmp_path / "tampered.onnx")
    report = parity.run_parity(probe, onnx_file=tmp_path / "tampered.onnx", state_dict=state)
    assert not report.ok and report.first_divergence is None
    assert any(n.startswith("no first diverging layer: the nodes of ") and
               "not named after the spec's layer paths (they are named like '/" in n
               for n in report.notes), report.notes


def test_files_that_cannot_be_compared(files, tmp_path):
    d, _ = files
    spec = str(d / "probe.cnn")
    (tmp_path / "text.onnx").write_text("not a model at all\n" * 20)
    result = _cli("parity", spec, "--onnx", str(tmp_path / "text.onnx"))
    assert result.exit_code == 1 and "is not an ONNX model" in result.output
    other = archgen.parse("network Other\ninput [3, 20, 20]\nconv2d(8, 3)\n", "o.cnn").network
    save_onnx(build_onnx(other), tmp_path / "other.onnx")
    result = _cli("parity", spec, "--onnx", str(tmp_path / "other.onnx"))
    assert result.exit_code == 1
    assert "has the shape [N, 3, 20, 20]; the network Probe takes [N, 3, 18, 18]" in result.output
    result = _cli("parity", spec, "--onnx", str(tmp_path / "missing.onnx"))
    assert result.exit_code == 2 and "no such file" in result.output


# -- JSON ------------------------------------------------------------------------------------------

def test_json_is_strict_when_errors_are_not_finite(probe):
    state = initial_state(probe, 0)
    state["head.2.bias"] = state["head.2.bias"].clone()
    state["head.2.bias"][0] = float("nan")
    report = parity.run_parity(probe, state_dict=state, seeds=2)
    assert not report.ok and report.onnx_error == math.inf
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["onnx_error"] == "inf" and data["ratio"] == "inf"
    assert data["seeds"][0]["max_abs"] == "inf" and data["mode"] == "float64"
    assert "note: non-finite values differ" in report.to_text()


def test_json_document(files):
    d, _ = files
    result = _cli("parity", str(d / "probe.cnn"), "--seeds", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert set(data) >= {"ok", "mode", "onnx_error", "torch_error", "ratio", "factor", "floor",
                         "seeds", "onnx_file", "weights", "first_divergence"}
    assert [s["seed"] for s in data["seeds"]] == [0, 1] and data["onnx_file"] is None


def test_cli_rtol_or_atol_selects_the_absolute_mode(files):
    d, _ = files
    result = _cli("parity", str(d / "probe.cnn"), "--atol", "1e-5", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert (data["mode"], data["rtol"], data["atol"]) == ("absolute", 1e-4, 1e-5)
    assert data["onnx_error"] is None and data["ratio"] is None
