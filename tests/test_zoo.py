"""The zoo of issue 10: each example reproduces its torchvision model exactly.

For every zoo model whose spec is in examples/: torchvision's parameter and MAC counts, the
generated module's state_dict keys in torchvision's order with torchvision's shapes, and
torchvision's outputs. The outputs are compared on deterministic weights: every state_dict
entry is built by tests/zoo_weights.py from its key's position and shape (integer hashing, no
random number generator), so the fixture script (tests/fixtures/make_torchvision_fixtures.py,
run with torchvision) and this file (without torchvision) load bit-identical weights.
`archgen parity` on every example, these included, is tests/test_onnx.py's
test_example_exports_and_matches_pytorch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from zoo_weights import deterministic_input, deterministic_state

import archgen

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_reference.json")
                       .read_text())

# Every model with an output reference in the fixture, each written as examples/<name>.cnn.
FIXTURE_ZOO = sorted(name for name, entry in REFERENCE.items() if "reference" in entry)
ZOO = FIXTURE_ZOO
# Above a billion MACs a forward pass takes seconds on two cores.
SLOW = {name for name in FIXTURE_ZOO if REFERENCE[name]["macs"] > 1_000_000_000}

# float32 outputs may differ in their last bits between torch versions and CPUs (other kernels
# sum in other orders): the fixture records its own one-thread against many-thread difference,
# at most 1e-6 of the output's largest value; a wrong weight or layer moves outputs by a
# sizeable fraction of it.
RTOL_OF_SCALE = 1e-4


def _zoo_params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


_MODULES: dict = {}


def _module(name: str):
    """archgen's generated module for examples/<name>.cnn, built once per session."""
    if name not in _MODULES:
        torch.manual_seed(0)
        _MODULES[name] = archgen.load(EXAMPLES / f"{name}.cnn").to_torch_module().eval()
    return _MODULES[name]


def _outputs(module, name: str):
    ref = REFERENCE[name]
    module.load_state_dict(deterministic_state(ref["state_dict"]), strict=True)
    with torch.no_grad():
        return module(deterministic_input(ref["reference"]["input"])).flatten().double()


def _difference(got, name: str) -> float:
    """The largest difference to the stored reference, as a fraction of the output's scale."""
    ref = REFERENCE[name]["reference"]
    want = torch.tensor(ref.get("values", ref["first"]), dtype=torch.float64)
    diffs = [(got[:len(want)] - want).abs().max().item(),
             abs(got.sum().item() - ref["sum"]) / got.numel() ** 0.5,
             abs(got.abs().sum().item() - ref["abs_sum"]) / got.numel() ** 0.5]
    return max(diffs) / ref["max_abs"]


def test_the_zoo_fixture_covers_issue_10():
    assert set(FIXTURE_ZOO) == {
        "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny", "shufflenet_v2_x1_0",
        "regnet_y_400mf", "googlenet", "inception_v3", "r3d_18", "densenet121"}
    assert all((EXAMPLES / f"{name}.cnn").exists() for name in ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_counts_and_shapes_equal_torchvision(name):
    net = archgen.load(EXAMPLES / f"{name}.cnn").network
    ref = REFERENCE[name]
    assert list(net.input_shape) == ref["input_shape"]
    assert net.total_params == ref["params"]
    assert net.total_macs == ref["macs"]
    assert list(net.output_shape) == ref["output_shape"]


@pytest.mark.parametrize("name", ZOO)
def test_the_first_line_states_the_parameter_count(name):
    first = (EXAMPLES / f"{name}.cnn").read_text().splitlines()[0]
    assert first.startswith("# torchvision.models.")
    assert f"{REFERENCE[name]['params']:,} parameters" in first


@pytest.mark.parametrize("name", _zoo_params(ZOO))
def test_state_dict_keys_and_shapes_equal_torchvision(name):
    ours = [[key, list(value.shape)] for key, value in _module(name).state_dict().items()]
    theirs = REFERENCE[name]["state_dict"]
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                 min(len(ours), len(theirs)))
    assert ours == theirs, (f"from entry {first}: ours {ours[first:first + 3]}, "
                            f"torchvision {theirs[first:first + 3]}")


@pytest.mark.parametrize("name", _zoo_params(ZOO))
def test_outputs_equal_torchvision_on_deterministic_weights(name):
    got = _outputs(_module(name), name)
    assert list(got.shape) == [REFERENCE[name]["output_shape"][0]]
    assert _difference(got, name) <= RTOL_OF_SCALE


def test_the_output_comparison_sees_one_wrong_weight():
    """The comparison can fail: one batch-norm gamma scaled by 1.5 in the smallest zoo model."""
    name = min(ZOO, key=lambda n: REFERENCE[n]["macs"])
    module = _module(name)
    state = deterministic_state(REFERENCE[name]["state_dict"])
    gamma = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 1][-1]
    state[gamma] = state[gamma] * 1.5
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = module(deterministic_input(REFERENCE[name]["reference"]["input"]))
    assert _difference(got.flatten().double(), name) > 100 * RTOL_OF_SCALE
