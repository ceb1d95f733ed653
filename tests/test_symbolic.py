"""Symbolic input sizes against the concrete checker (itself checked against PyTorch in
test_oracle.py): for every size from 1 to 256, a size the constraint admits checks clean with
the shapes, params and MACs the expressions predict, and a size it rejects fails."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen import syntax
from archgen.checker import check
from archgen.cli import main
from archgen.diagnostics import SpecError
from archgen.ir import walk
from archgen.report import network_json
from archgen.symbolic import Constraint, Sym, evaluate, solve

EXAMPLES = sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.cnn"))
SIZES = range(1, 257)


def _ok(net) -> bool:
    return not any(d.is_error for d in net.diagnostics)


def _value(v, env: dict, as_text: bool) -> int:
    if not isinstance(v, Sym):
        return v
    return evaluate(str(v), env) if as_text else v.eval(env)


def _agree(sym_net, net, env: dict) -> None:
    """Every node's shapes, params and MACs evaluate to the concrete ones; at one size in 16
    through the text that JSON writes (parsing it is the slow part)."""
    text = sum(env.values()) % 16 == 0
    for a, b in zip(walk(sym_net.root), walk(net.root), strict=True):
        assert [_value(d, env, text) for d in a.out_shape] == list(b.out_shape), (a.span, env)
        assert _value(a.params, env, text) == b.params
        assert _value(a.macs, env, text) == b.macs


def _sweep(spec, shape: tuple, axes: list[int], sizes=SIZES) -> None:
    sym_net = check(spec, shape)
    assert _ok(sym_net), [d.message for d in sym_net.diagnostics if d.is_error]
    cons = sym_net.constraints
    base = {name: c.sample() for name, c in cons.items()}
    for axis in axes:
        name = shape[axis]
        for n in sizes:
            env = dict(base, **{name: n})
            concrete = tuple(env[d] if isinstance(d, str) else d for d in shape)
            net = check(spec, concrete)
            admitted = all(cons[k].admits(v) for k, v in env.items())
            assert _ok(net) == admitted, (spec.file, name, n, cons[name].text(name),
                                          [d.message for d in net.diagnostics if d.is_error])
            if admitted:
                _agree(sym_net, net, env)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_exact(path):
    """Every example with H and W symbolic; H = W = n for n in 1..256 (the examples treat both
    axes alike; the random stacks below vary one axis at a time)."""
    spec = syntax.parse(path.read_text(), str(path))
    channels, *spatial = check(spec).input_shape  # [C, L], [C, H, W] or [C, D, H, W]
    sym_net = check(spec, (channels, *("S",) * len(spatial)))
    assert _ok(sym_net)
    cons = sym_net.constraints["S"]
    for n in SIZES:
        net = check(spec, (channels, *(n,) * len(spatial)))
        assert _ok(net) == cons.admits(n), (path.stem, n, cons.text("S"))
        if cons.admits(n):
            _agree(sym_net, net, {"S": n})


def test_unet_needs_multiples_of_eight():
    spec = syntax.parse(Path("examples/unet_small.cnn").read_text(), "unet_small.cnn")
    net = check(spec, (3, "H", "W"))
    assert net.constraints["H"].to_json() == {"min": 8, "max": None, "modulus": 8,
                                              "residues": [0]}
    assert [str(d) for d in net.output_shape] == ["2", "H", "W"]


def _layer(rng: random.Random) -> str:
    k = (rng.randint(1, 5), rng.randint(1, 5))
    s = (rng.randint(1, 3), rng.randint(1, 3))
    pick = rng.randrange(9)
    if pick == 0:
        p = (rng.randint(0, 3), rng.randint(0, 3))
        return f"conv2d(4, {k}, stride={s}, padding={p}, dilation=({rng.randint(1, 2)}, 1))"
    if pick == 1:
        return f"conv2d(4, {k}, stride={s}, padding=same)"
    if pick in (2, 3):
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        op = rng.choice(["maxpool2d", "avgpool2d"])
        return f"{op}({k}, stride={s}, padding={p}, ceil_mode={rng.choice(['true', 'false'])})"
    if pick == 4:
        return f"upsample(scale_factor={rng.choice(['2', '3', '1.5', '(2, 1)', '0.5'])})"
    if pick == 5:
        pads = tuple(rng.randint(0, 3) for _ in range(4))
        return f"pad2d({pads}, mode={rng.choice(['zeros', 'reflect', 'circular'])})"
    if pick == 6:
        op = (rng.randint(0, s[0] - 1), rng.randint(0, s[1] - 1))
        return (f"conv_transpose2d(4, {k}, stride={s}, padding=({rng.randint(0, 2)}, "
                f"{rng.randint(0, 2)}), output_padding={op})")
    if pick == 7:
        return ("add:\n    conv2d(4, 3, stride=2, padding=1)\n    "
                + rng.choice(["conv2d(4, 1, stride=2)", "maxpool2d(2, ceil_mode=true)",
                              "avgpool2d(2)", "conv2d(4, 2, stride=2)"]))
    return ("concat:\n    maxpool2d(3, stride=2, padding=1)\n    "
            + rng.choice(["conv2d(4, 2, stride=2)", "conv2d(4, 3, stride=2)",
                          "maxpool2d(2, stride=2, ceil_mode=true)"]))


@pytest.mark.parametrize("seed", range(14))
def test_random_stacks_exact(seed):
    """Random stacks of every spatial rule, H and W with different arguments, each swept over
    1..256 with the other one at a valid size. A stack whose symbolic check says that no size
    is valid (E413, or the merge's own error where the branches differ by a constant) must
    fail at every size tried."""
    rng = random.Random(seed)
    body = "\n".join(["conv2d(4, 1)"] + [_layer(rng) for _ in range(rng.randint(2, 5))])
    spec = syntax.parse(f"input [4, H, W]\n{body}\n", f"stack{seed}.cnn")
    sym_net = check(spec)
    codes = {d.code for d in sym_net.diagnostics if d.is_error}
    if codes:
        assert codes <= {"E413", "E406", "E407"}, (body, [d.message for d in
                                                          sym_net.diagnostics])
        for n in range(1, 65):
            for m in (n, 32):
                assert not _ok(check(spec, (4, n, m))) or not _ok(check(spec, (4, m, n)))
        return
    json.dumps(network_json(sym_net, "stack.cnn"), allow_nan=False)  # memory too
    _sweep(spec, (4, "H", "W"), [1, 2])


def test_flatten_linear_pins_the_size():
    """A linear written with in_features after flatten pins the size: 8 * (H // 4) * 4 == 128
    for H in 16..19 only; where H and W are both free the pairs that fit are no product of
    per-symbol sets (H // 4 * (W // 4) == 16), and E414 says which pairs fit."""
    text = "input [3, H, 16]\nconv2d(8, 3, padding=1)\nmaxpool2d(4)\nflatten()\nlinear(128, 10)\n"
    spec = syntax.parse(text, "pin.cnn")
    net = check(spec)
    assert _ok(net), [d.message for d in net.diagnostics]
    assert net.constraints["H"].to_json() == {"min": 16, "max": 19, "modulus": 1,
                                              "residues": [0]}
    _sweep(spec, (3, "H", 16), [1], range(1, 60))
    both = check(syntax.parse(text.replace("16]", "W]"), "pin2.cnn"))
    (err,) = [d for d in both.diagnostics if d.is_error]
    assert err.code == "E414" and "(4, 64)" in err.message


def test_linear_parameters_are_an_expression():
    spec = syntax.parse("input [3, H, W]\nmaxpool2d(2)\nflatten()\nlinear(10)\n", "lin.cnn")
    net = check(spec)
    assert str(net.total_params) == "30 * (H // 2) * (W // 2) + 10"


def test_no_size_is_an_error_that_says_why():
    text = "input [3, H, 8]\nadd:\n    conv2d(8, 1)\n    conv2d(8, (2, 1), stride=(2, 1))\n"
    net = check(syntax.parse(text, "nothing.cnn"))
    (err,) = [d for d in net.diagnostics if d.is_error]
    assert err.code == "E413" and "add at line 2" in err.message and err.span.line == 2


def test_w500_states_the_residues():
    net = check(syntax.parse("input [3, H, W]\nmaxpool2d(2)\nmaxpool2d(2)\n", "w.cnn"))
    w500 = [d.message for d in net.diagnostics if d.code == "W500"]
    assert "when H % 2 == 1 the last row is dropped" in w500[0]
    assert "when H % 4 in {2, 3} the last row is dropped" in w500[1]
    spec = syntax.parse("input [3, H, W]\nmaxpool2d(2)\nmaxpool2d(2)\n", "w.cnn")
    for n in range(64, 96):  # the concrete check agrees, size by size
        lines = {d.span.line for d in check(spec, (3, n, 64)).diagnostics
                 if d.code == "W500" and "row" in d.message}
        assert lines == ({2} if n % 2 == 1 else set()) | ({3} if n % 4 in (2, 3) else set())


def test_constraint_text_and_json():
    c = Constraint(8, None, 8, [0])
    assert c.text("H") == "H >= 8 with H % 8 == 0"
    assert [n for n in range(30) if c.admits(n)] == [8, 16, 24]
    assert Constraint(3, 3, 1, [0]).text("H") == "H == 3"


def test_solve_a_finite_set_from_different_rates():
    h = Sym.var("H")
    # 2 * H == H + 4 only at H = 4; H // 2 >= 1 from H = 2
    cons = solve(["H"], [(2 * h == h + 4, None, "a merge"), (h // 2 >= 1, None, "a pool")])
    assert cons["H"].to_json() == {"min": 4, "max": 4, "modulus": 1, "residues": [0]}


def test_check_json_and_text(tmp_path):
    spec = tmp_path / "u.cnn"
    spec.write_text("input [3, H, W]\nconv2d(8, 3, stride=2)\nmaxpool2d(2)\n")
    r = CliRunner().invoke(main, ["check", "--format", "json", str(spec)])
    doc = json.loads(r.output)[0]
    assert doc["constraints"]["H"] == {"min": 5, "max": None, "modulus": 1, "residues": [0]}
    assert doc["output_shape"] == [8, "(H - 3) // 4", "(W - 3) // 4"] or \
        all(evaluate(doc["output_shape"][1], {"H": n}) == ((n - 3) // 2 + 1) // 2
            for n in range(5, 100))
    r = CliRunner().invoke(main, ["check", str(spec)])
    assert "valid for H >= 5 and W >= 5" in r.output


@pytest.mark.parametrize("bad", ["3,-1,4", "3,1.5,4", "3,,4", "3,H W,4", "3,0,4", "3,true,4"])
def test_input_option_refuses_bad_sizes(tmp_path, bad):
    spec = tmp_path / "s.cnn"
    spec.write_text("input [3, 32, 32]\nconv2d(8, 3)\n")
    r = CliRunner().invoke(main, ["check", "--input", bad, str(spec)])
    assert r.exit_code == 2 and "--input" in r.output and "Traceback" not in r.output


def test_input_option_overrides_every_command(tmp_path):
    spec = tmp_path / "s.cnn"
    spec.write_text("input [3, 32, 32]\nconv2d(8, 3)\n")
    r = CliRunner().invoke(main, ["check", "--input", "3,64,48", str(spec)])
    assert "[3, 64, 48] -> [8, 62, 46]" in r.output
    r = CliRunner().invoke(main, ["summary", "--input", "3,10,10", str(spec)])
    assert "[8, 8, 8]" in r.output
    r = CliRunner().invoke(main, ["check", "--input", "3,H,W", str(spec)])
    assert "valid for H >= 3 and W >= 3" in r.output


def test_targets_with_symbolic_sizes(tmp_path):
    """compile writes the size-agnostic module; a layer argument that would depend on the
    size is one located line and exit 1; diagram and report label shapes as expressions."""
    agnostic = tmp_path / "a.cnn"
    agnostic.write_text("input [3, H, W]\nconv2d(8, 3, stride=2, padding=same)\nrelu()\n"
                        "adaptive_avgpool2d(1)\nflatten()\nlinear(4)\n")
    r = CliRunner().invoke(main, ["compile", str(agnostic), "--print"])
    assert r.exit_code == 0 and "nn.Linear(8, 4)" in r.output, r.output
    pinned = tmp_path / "p.cnn"
    pinned.write_text("input [3, H, W]\nmaxpool2d(2)\nflatten()\nlinear(4)\n")
    r = CliRunner().invoke(main, ["compile", str(pinned), "--print"])
    assert r.exit_code == 1 and ":4:1: error[E415]: linear's in_features would be " \
        "3 * (H // 2) * (W // 2)" in r.output and "Traceback" not in r.output
    # the API refuses the same way, with a located diagnostic, for every target
    arch = archgen.load(pinned)
    for target in (arch.to_torch_source, arch.to_torch_module, arch.to_onnx):
        with pytest.raises(SpecError) as e:
            target()
        assert [(d.code, d.span.line) for d in e.value.diagnostics] == [("E415", 4)]
    r = CliRunner().invoke(main, ["diagram", "--format", "mermaid", str(agnostic)])
    assert r.exit_code == 0 and "(H + 1) // 2" in r.output
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", str(pinned), "-o", str(out)])
    assert r.exit_code == 0 and "H // 2" in out.read_text() and ">memory</th>" in out.read_text()
