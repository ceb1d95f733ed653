"""Export and the seeded-weights path (issue 12): one serialisation, weights streamed from the
checkpoint, no PyTorch for `export --weights`, modules built without default initialisation,
batchnorm folded where parity says it is exact enough, a progress line on terminals."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")

import archgen
from archgen import parity
from archgen.ckpt import save_safetensors
from archgen.emit_onnx import build_graph, build_onnx, fold_batchnorm, folded_pairs, save_onnx
from archgen.progress import Progress
from archgen.weights import build_module, initial_state, seeded_module

ROOT = Path(__file__).resolve().parent.parent
SPEC = """network Folds
input [3, 12, 12]
stem:
    conv2d(8, 3, padding=1, bias=false)
    batchnorm2d()
    relu()
body:
    add:
        conv2d(8, 3, padding=1)
        identity()
    dropout(0.1)
    conv2d(8, 3, padding=1, padding_mode="reflect")
    batchnorm2d(affine=false)
    relu()
head:
    adaptive_avgpool2d(1)
    flatten()
    linear(4)
"""


@pytest.fixture(scope="module")
def net():
    return archgen.parse(SPEC, "folds.cnn").network


@pytest.fixture(scope="module")
def state(net):
    return initial_state(net, 3)


# -- one serialisation, the file from the arrays ---------------------------------------------------

def test_streamed_file_is_the_model_build_onnx_makes(net, state, tmp_path):
    """Built.save writes the weights from their arrays; the file parses to exactly the
    ModelProto that build_onnx returns, folded or not."""
    for fold in (False, True):
        path = tmp_path / f"m{fold}.onnx"
        built = build_graph(net, state_dict=state, fold=fold)
        assert built.save(path) is True
        assert built.save(path) is False  # unchanged: compared, not rewritten
        assert onnx.load(path) == build_onnx(net, state_dict=state, fold=fold)
        assert built.tobytes() == path.read_bytes()


class _Model:
    """Counts serialisations; ByteSize is a second one under upb and must not be called."""

    def __init__(self):
        self.calls = 0

    def SerializeToString(self):
        self.calls += 1
        return b"model"

    def ByteSize(self):
        raise AssertionError("ByteSize serialises the model a second time")


def test_save_onnx_serialises_once(tmp_path):
    model = _Model()
    save_onnx(model, tmp_path / "m.onnx")
    assert model.calls == 1 and (tmp_path / "m.onnx").read_bytes() == b"model"


# -- folding ----------------------------------------------------------------------------------------

def test_folding_removes_batchnorm_and_identity_and_names_the_pair_after_the_batchnorm(net):
    plain = build_onnx(net)
    folded = build_onnx(net, fold=True)
    ops = [n.op_type for n in folded.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops
    assert [n.op_type for n in plain.graph.node].count("BatchNormalization") == 2
    pairs = [(c.path, b.path) for c, b in folded_pairs(net)]
    assert pairs == [("stem.0", "stem.1"), ("body.conv2d_1", "body.batchnorm2d")]
    names = {n.name: n for n in folded.graph.node}
    for conv, bn in pairs:
        assert conv not in names and names[bn].op_type == "Conv"
        assert names[bn].output[0] == f"{bn}.out"
    assert len(folded.graph.node) < len(plain.graph.node)


def test_fold_batchnorm_against_pytorch():
    conv = torch.nn.Conv2d(3, 5, 3, groups=1, bias=True).eval()
    bn = torch.nn.BatchNorm2d(5, eps=1e-3).eval()
    g = torch.Generator().manual_seed(0)
    for t in (bn.weight, bn.bias, bn.running_mean):
        t.data = torch.randn(5, generator=g)
    bn.running_var.data = torch.rand(5, generator=g) + 0.5
    w, b = fold_batchnorm(np, conv.weight.detach().numpy(), conv.bias.detach().numpy(),
                          {"eps": 1e-3}, bn.weight.detach().numpy(), bn.bias.detach().numpy(),
                          bn.running_mean.numpy(), bn.running_var.numpy())
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        want = bn(conv(x))
        got = torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "unet_small"])
def test_folded_examples_pass_the_float64_verdict(name):
    net = archgen.load(ROOT / "examples" / f"{name}.cnn").network
    report = parity.run_parity(net, batch=1, fold=True)
    assert report.ok, report.to_text()


def test_folded_graph_still_localises_at_the_batchnorm(net, state):
    """A wrong conv weight or a wrong batchnorm statistic shows at the folded node, which
    carries the batchnorm's name (the conv's own output no longer exists in the graph)."""
    for key in ("body.conv2d_1.weight", "body.batchnorm2d.running_var"):
        bad = state[key].clone() * 1.5
        report = parity.run_parity(net, state_dict=state, fold=True,
                                   onnx_state_dict_override={key: bad})
        assert not report.ok
        assert report.first_divergence.path == "body.batchnorm2d", report.to_text()


def test_parity_reads_the_weights_of_a_folded_archgen_file(net, state, tmp_path):
    path = tmp_path / "folded.onnx"
    build_graph(net, state_dict=state, fold=True).save(path)
    report = parity.run_parity(net, onnx_file=path)
    assert report.ok and report.weights == "onnx file", report.to_text()


# -- modules without default initialisation ------------------------------------------------------

def test_build_module_holds_exactly_the_state(net, state):
    module = build_module(net, {k: v.numpy() for k, v in state.items()})
    assert not module.training
    got = module.state_dict()
    assert list(got) == list(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    assert not any(t.is_meta for t in module.parameters())


def test_seeded_module_is_the_calibrated_one(net):
    state, module = seeded_module(net, 5)
    again = initial_state(net, 5)
    for k, v in module.state_dict().items():
        assert torch.equal(v, state[k]) and torch.equal(v, again[k]), k
    assert int(state["stem.1.num_batches_tracked"]) == 0


def test_build_module_is_linear_on_a_flat_sequence():
    """load_state_dict scans every key for every submodule (quadratic); per-tensor assignment
    does not: 8x the layers stays well under 16x the time."""
    import time

    def timed(n):
        body = "".join("conv2d(2, 1)\n" for _ in range(n))
        flat = archgen.parse(f"network Flat\ninput [2, 4, 4]\n{body}").network
        st = {k: torch.zeros(s) for k, s in _shapes(flat).items()}
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            build_module(flat, st)
            best = min(best, time.perf_counter() - t)
        return best

    small, large = timed(250), timed(2000)
    assert large < 16 * small, (small, large)


def _shapes(net):
    from archgen.weights import state_shapes
    return state_shapes(net)


# -- export --weights without PyTorch -------------------------------------------------------------

BLOCK_TORCH = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] == 'torch':
                raise ImportError('torch is blocked in this test')
    sys.meta_path.insert(0, Block())
    sys.argv = ['archgen', *sys.argv[1:]]
    from archgen.cli import main
    try:
        main()
    finally:
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime'))
        print('LOADED', loaded, file=sys.stderr)
""")


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_export_with_weights_imports_no_torch(net, state, tmp_path, fmt):
    spec = tmp_path / "folds.cnn"
    spec.write_text(SPEC)
    ck = tmp_path / f"w.{fmt}"
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    if fmt == "pt":
        torch.save(half, ck)
    else:
        save_safetensors(ck, {k: v.numpy() for k, v in half.items()})
    out = tmp_path / "folds.onnx"
    result = subprocess.run(check=False, args=[sys.executable, "-c", BLOCK_TORCH, "export", str(spec), "-o",
                             str(out), "--weights", str(ck)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr
    assert "float16" in result.stderr  # the cast note, as with PyTorch's reader
    cast = {k: (v.float() if v.is_floating_point() else v) for k, v in half.items()}
    assert onnx.load(out) == build_onnx(archgen.load(spec).network, state_dict=cast, fold=True)


def test_export_refuses_a_bad_checkpoint_without_torch(tmp_path):
    spec = tmp_path / "folds.cnn"
    spec.write_text(SPEC)
    ck = tmp_path / "w.pt"
    torch.save({"layers.0.weight": torch.zeros(2, dtype=torch.int64)}, ck)
    result = subprocess.run(check=False, args=[sys.executable, "-c", BLOCK_TORCH, "export", str(spec), "-o",
                             str(tmp_path / "x.onnx"), "--weights", str(ck)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "lacks 'stem.0.weight'" in result.stderr and "LOADED []" in result.stderr


# -- progress -------------------------------------------------------------------------------------

class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_draws_on_a_terminal_after_the_delay_and_erases_itself():
    now = [0.0]
    term = _Terminal()
    p = Progress(("a", "b"), stream=term, delay=1.0, clock=lambda: now[0])
    p.stage("a")
    assert term.text == ""  # quick stages draw nothing
    now[0] = 1.5
    p.stage("b")
    assert "[##########          ] b (2/2) 1.5s" in term.text
    p.done()
    assert term.text.endswith("\r\x1b[K")
    quiet = _Terminal()
    Progress(("a",), stream=quiet, enabled=False, delay=0).stage("a")
    assert quiet.text == ""


def _run_on_pty(args, env):
    main, other = pty.openpty()
    try:
        proc = subprocess.run(args, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=other, env=env, timeout=120)
    finally:
        os.close(other)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.returncode, out.decode("utf-8", "replace")


def test_export_shows_its_stages_on_a_terminal_only(tmp_path):
    spec = tmp_path / "folds.cnn"
    spec.write_text(SPEC)
    env = {**os.environ, "ARCHGEN_PROGRESS_DELAY": "0"}
    cmd = [sys.executable, "-m", "archgen", "export", str(spec), "-o", str(tmp_path / "f.onnx")]
    code, err = _run_on_pty(cmd, env)
    assert code == 0, err
    for stage in ("check", "weights", "render", "shape inference", "write"):
        assert f"] {stage} (" in err, err
    assert err.rstrip("\r\n").endswith("params)")  # the line was erased before the result
    code, err = _run_on_pty([*cmd, "--quiet"], env)
    assert code == 0 and "\r[" not in err, err
    piped = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0 and "\r" not in piped.stderr


# -- dynamic spatial sizes --------------------------------------------------------------------------

def _dims(vi):
    return [d.dim_param or d.dim_value or "?" for d in vi.type.tensor_type.shape.dim]


def test_unet_exports_with_dynamic_sizes_and_runs_at_other_multiples_of_8():
    import onnxruntime as ort

    from archgen.emit_onnx import build_dynamic

    net = archgen.load(ROOT / "examples" / "unet_small.cnn").network
    d = build_dynamic(net, fold=True)
    g = d.built.model.graph
    assert _dims(g.input[0]) == ["N", 3, "H", "W"] and _dims(g.output[0]) == ["N", 2, "H", "W"]
    assert any("H // 2" in _dims(vi) for vi in g.value_info)
    assert [n.input_shape[1] for n in d.sizes] == [64, 72, 104]
    sess = ort.InferenceSession(d.built.tobytes())
    module = build_module(d.sizes[0], d.state)
    for h, w in ((64, 64), (40, 96)):
        x = np.random.default_rng(h).standard_normal((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


SYMBOLIC = "network Sym\ninput [3, S, S]\nconv2d(8, 3, padding=1)\nbatchnorm2d()\nrelu()\n" \
           "conv2d(4, 3, stride=2, padding=1)\n"


def test_symbolic_spec_exports_dynamic_by_default_and_parity_runs_at_two_sizes(tmp_path):
    spec = tmp_path / "sym.cnn"
    spec.write_text(SYMBOLIC)
    out = tmp_path / "sym.onnx"
    from click.testing import CliRunner

    from archgen.cli import main
    result = CliRunner().invoke(main, ["export", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    g = onnx.load(out).graph
    assert _dims(g.input[0]) == ["N", 3, "S", "S"]
    assert _dims(g.output[0]) == ["N", 4, "(S + 1) // 2", "(S + 1) // 2"]
    result = CliRunner().invoke(main, ["parity", str(spec), "--format", "json"])
    assert result.exit_code == 0, result.output
    import json
    docs = json.loads(result.stdout)
    assert len(docs) == 2 and all(doc["ok"] for doc in docs)
    assert docs[0]["notes"][-1] != docs[1]["notes"][-1]  # two sizes
    result = CliRunner().invoke(main, ["export", str(spec), "-o", str(out), "--static-size"])
    assert result.exit_code == 2 and "--input" in result.output


@pytest.mark.parametrize("body, words", [
    ("conv2d(4, 3)\nadaptive_avgpool2d(3)\n", "depends on the input size at the constant 'layers.1/"),
    ("conv2d(4, 3)\nmaxpool2d(2, ceil_mode=true)\n", "depends on the input size at the node 'layers.1'"),
    ("conv2d(4, 3)\nflatten()\nlinear(2)\n", "weights depend on the input size"),
], ids=["uneven-adaptive-windows", "ceil-mode", "flatten-linear"])
def test_dynamic_sizes_are_refused_where_the_graph_depends_on_them(body, words):
    from archgen.emit_onnx import DynamicSizeError, build_dynamic
    net = archgen.parse(f"network Fixed\ninput [3, 12, 12]\n{body}").network
    with pytest.raises(DynamicSizeError, match=words):
        build_dynamic(net)


# -- the static path: no rescans of a large IR ---------------------------------------------------

def test_a_large_network_is_frozen_out_of_the_cyclic_collector_and_a_small_one_is_not(
        monkeypatch):
    import gc
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(gc.get_count()[0]))
    monkeypatch.setattr(gc, "isenabled", lambda: True)  # as in any program that did not
    # turn the collector off itself

    def froze(layers: int) -> bool:
        body = "".join(("conv2d(4, 3, padding=1)\n", "batchnorm2d()\n", "relu()\n")[i % 3]
                       for i in range(layers))
        calls.clear()
        archgen.parse(f"network Flat\ninput [4, 8, 8]\n{body}").check()
        return bool(calls)

    assert not froze(30)
    assert froze(3000)  # the AST or the IR, ~15 objects a layer
