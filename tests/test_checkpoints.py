"""Checkpoints are untrusted input: only real, finite tensors of the right keys and shapes are
accepted; everything else, however corrupt, is a WeightsError naming the problem, never another
exception; and a checkpoint never runs code."""

from __future__ import annotations

import io
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

import archgen
from archgen.cli import main
from archgen.weights import WeightsError, check_state, initial_state, load_weights

SPEC = "network Tiny\ninput [3, 8, 8]\nconv2d(4, 3)\nbatchnorm2d()\nrelu()\nflatten()\nlinear(2)\n"
KEY = "layers.0.weight"


@pytest.fixture(scope="module")
def net():
    return archgen.parse(SPEC).network


@pytest.fixture(scope="module")
def state(net):
    return initial_state(net)


def _save(tmp_path: Path, obj, name: str = "ck.pt", **kwargs) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kwargs)
    return path


def _with(state: dict, key: str, value) -> dict:
    out = dict(state)
    out[key] = value
    return out


# -- tensors that are not real numbers are refused, naming the key --------------------------

def _quantised(t):
    with warnings.catch_warnings():  # quantised tensors are deprecated, still loadable
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)


# Tensors no state_dict of float weights may hold, and the words the refusal uses; both readers
# (torch.load and the numpy reader) are held to the same list.
_NON_REAL = [
    (lambda t: t.to(torch.int64), "integers (int64)"),
    (lambda t: t.to(torch.int32), "integers (int32)"),
    (lambda t: t.to(torch.uint8), "integers (uint8)"),
    (lambda t: t > 0, "booleans"),
    (lambda t: t.to(torch.complex64), "complex numbers (complex64)"),
    (lambda t: t.to_sparse(), "sparse tensor (sparse_coo)"),
    (lambda t: torch.empty(t.shape, device="meta"), "meta tensor"),
    (_quantised, "quantised tensor (qint8)"),
]
_NON_REAL_IDS = ["int64", "int32", "uint8", "bool", "complex", "sparse", "meta", "quantised"]


@pytest.mark.parametrize("make, words", _NON_REAL, ids=_NON_REAL_IDS)
def test_non_real_tensors_are_refused_with_the_key(net, state, tmp_path, make, words):
    bad = _with(state, KEY, make(state[KEY]))
    # through a file, as users give them, and through the API
    for load in (lambda: load_weights(net, _save(tmp_path, bad)), lambda: check_state(net, bad)):
        with pytest.raises(WeightsError) as err:
            load()
        assert err.value.key == KEY
        assert f"'{KEY}'" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_float_dtypes_are_cast_to_float32_with_a_note(net, state, tmp_path, dtype):
    cast = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v)
            for k, v in state.items()}
    notes: list[str] = []
    loaded = load_weights(net, _save(tmp_path, cast), notes=notes)
    assert len(notes) == 1 and dtype in notes[0] and "float32" in notes[0]
    floats = sum(v.is_floating_point() for v in state.values())
    assert floats == 8 and notes[0].startswith(f"{floats} tensors of ")  # all but the counter
    for k, v in loaded.items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64
        else:
            assert v.dtype == torch.float32
            assert torch.equal(v, cast[k].to(torch.float32))


def test_float32_checkpoint_gives_no_note(net, state, tmp_path):
    notes: list[str] = []
    load_weights(net, _save(tmp_path, state), notes=notes)
    assert notes == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_weights_are_refused_unless_allowed(net, state, tmp_path, value):
    t = state[KEY].clone()
    t[1, 2, 0, 1] = value
    path = _save(tmp_path, _with(state, KEY, t))
    with pytest.raises(WeightsError, match=r"1 non-finite value .* index \[1, 2, 0, 1\]") as err:
        load_weights(net, path)
    assert err.value.key == KEY and "--allow-nonfinite" in str(err.value)
    loaded = load_weights(net, path, allow_nonfinite=True)
    assert torch.equal(loaded[KEY].isnan(), t.isnan())


def test_float64_beyond_float32_range_is_nonfinite_once_cast(net, state, tmp_path):
    big = state[KEY].double() * 1e300
    with pytest.raises(WeightsError, match="once cast from float64 to float32"):
        load_weights(net, _save(tmp_path, _with(state, KEY, big)))


def test_numpy_state_is_held_to_the_same_rules(net, state):
    arrays = {k: v.numpy() for k, v in state.items()}
    out = check_state(net, _with(arrays, KEY, arrays[KEY].astype(np.float64)), notes=(n := []))
    assert out[KEY].dtype == np.float32 and "float64" in n[0]
    for bad, words in [(arrays[KEY].astype(np.int16), "integers (int16)"),
                       (arrays[KEY] > 0, "booleans"),
                       (arrays[KEY].astype(np.complex128), "complex"),
                       (arrays[KEY].astype(object), "object values")]:
        with pytest.raises(WeightsError, match=re.escape(words)):
            check_state(net, _with(arrays, KEY, bad))
    nan = arrays[KEY].copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(WeightsError, match="non-finite"):
        check_state(net, _with(arrays, KEY, nan), allow_nonfinite=False)


# -- files that are not checkpoints ----------------------------------------------------------

def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zip_without_torch() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    return buf.getvalue()


@pytest.mark.parametrize("content, words", [
    (b"", "empty (0 bytes)"),
    (b"\x80", "weights-only"),
    (b"not a checkpoint at all\n", "weights-only"),
    (_zip_without_torch(), "weights-only"),
    (pickle.dumps({"a": 1}), "weights-only"),  # a plain pickle is not torch.save's format
    (_torch_bytes([1, 2, 3]), "not a state_dict"),
    (_torch_bytes({1: 2}), "keys must be names"),
    (_torch_bytes({"a": {"b": {"c": 1}}}), "lacks"),
    (_torch_bytes({"layers.0.weight": "a string"}), "not a tensor but a str"),
    (_torch_bytes(None), "not a state_dict"),
], ids=["empty", "one-byte", "text", "zip", "pickle", "list", "int-keys", "nested", "str-value",
        "none"])
def test_files_that_are_not_state_dicts_are_weights_errors(net, tmp_path, content, words):
    path = tmp_path / "ck.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=re.escape(words)):
        load_weights(net, path)


def test_non_string_keys_in_a_torch_checkpoint(net, state, tmp_path):
    path = _save(tmp_path, {**state, 7: torch.ones(1)})
    with pytest.raises(WeightsError, match="one is the int 7"):
        load_weights(net, path)


class _Payload:
    """Unpickling this calls open(sentinel, "w"): proof of code execution if the file appears."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


@pytest.mark.parametrize("fmt", ["pickle", "torch-zip", "torch-legacy"])
def test_a_malicious_pickle_never_runs(net, state, tmp_path, fmt):
    sentinel = tmp_path / "PWNED"
    obj = {**state, "evil": _Payload(sentinel)}
    path = tmp_path / "evil.pt"
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "torch-zip")
    with pytest.raises(WeightsError, match="never runs code"):
        load_weights(net, path)
    assert not sentinel.exists()


# -- a seeded fuzz of the loader: only success or WeightsError -------------------------------

def _mutants(base: bytes, rng: random.Random, n: int, hot: range):
    """Truncations, and 1 to 8 random bytes changed anywhere or (every other case) in `hot`,
    the pickle that describes the tensors, where a change reaches the unpickler."""
    for i in range(n):
        data = bytearray(base)
        if i % 3 == 0:
            yield f"truncate@{(cut := rng.randrange(len(base)))}", bytes(data[:cut])
        else:
            flips = []
            for _ in range(rng.randint(1, 8)):
                at = rng.choice(hot) if i % 3 == 1 else rng.randrange(len(data))
                data[at] = rng.randrange(256)
                flips.append(at)
            yield f"flip@{flips}", bytes(data)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_loader_fuzz_truncations_and_byte_flips(net, state, tmp_path, zipped):
    """300 corrupted copies of a real checkpoint per format: each loads or is a WeightsError
    with a one-paragraph message; no other exception escapes and no traceback text leaks."""
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=zipped)
    base = buf.getvalue()
    start = base.index(b"\x80\x02") if zipped else 0  # the pickle protocol 2 opcode
    hot = range(start, base.index(b"PK", start) if zipped else len(base) // 3)
    rng = random.Random(8 if zipped else 80)
    path = tmp_path / "fuzz.pt"
    outcomes = {"ok": 0, "refused": 0}
    for case, data in _mutants(base, rng, 300, hot):
        path.write_bytes(data)
        try:
            load_weights(net, path)
            outcomes["ok"] += 1
        except WeightsError as e:
            assert "Traceback" not in str(e) and str(e).strip(), case
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 -- the test is that none gets here
            pytest.fail(f"{case}: {type(e).__name__}: {e}")
    assert outcomes["refused"] > 100  # the mutations do reach the loader's error paths


# -- the command line -------------------------------------------------------------------------

def _cli(*args: str):
    from click.testing import CliRunner
    return CliRunner().invoke(main, list(args))


def test_export_refuses_nan_weights_unless_allowed(net, state, tmp_path):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(SPEC)
    t = state[KEY].clone()
    t[0, 0, 0, 0] = float("nan")
    ck = _save(tmp_path, _with(state, KEY, t))
    out = tmp_path / "tiny.onnx"
    result = _cli("export", str(spec), "-o", str(out), "--weights", str(ck))
    assert result.exit_code == 1 and "non-finite" in result.stderr and KEY in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    result = _cli("export", str(spec), "-o", str(out), "--weights", str(ck), "--allow-nonfinite")
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_export_notes_a_cast_and_refuses_integers(net, state, tmp_path):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(SPEC)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    out = tmp_path / "tiny.onnx"
    result = _cli("export", str(spec), "-o", str(out), "--weights", str(_save(tmp_path, half)))
    assert result.exit_code == 0, result.output
    assert "note: 8 tensors of" in result.stderr and "float16" in result.stderr
    ints = _with(state, KEY, state[KEY].to(torch.int64))
    result = _cli("export", str(spec), "-o", str(tmp_path / "int.onnx"), "--weights",
                  str(_save(tmp_path, ints, "int.pt")))
    assert result.exit_code == 1 and f"'{KEY}'" in result.stderr and "integers" in result.stderr
    assert not (tmp_path / "int.onnx").exists()


# -- the numpy reader (archgen.ckpt, used by `export --weights`): the same rules, the same words --

@pytest.mark.parametrize("make, words", _NON_REAL, ids=_NON_REAL_IDS)
def test_numpy_reader_refuses_what_torch_refuses_in_the_same_words(net, state, tmp_path, make,
                                                                   words):
    path = _save(tmp_path, _with(state, KEY, make(state[KEY])))
    messages = []
    for reader in ("numpy", "torch"):
        with pytest.raises(WeightsError) as err:
            load_weights(net, path, reader=reader)
        assert err.value.key == KEY and words in str(err.value)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_numpy_reader_gives_torch_readers_values_and_notes(net, state, tmp_path, dtype):
    cast = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v)
            for k, v in state.items()}
    cast[KEY] = cast[KEY].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # strided
    path = _save(tmp_path, cast)
    notes_np, notes_torch = [], []
    got = load_weights(net, path, reader="numpy", notes=notes_np)
    want = load_weights(net, path, reader="torch", notes=notes_torch)
    assert notes_np == notes_torch
    for k, v in want.items():
        assert got[k].dtype == v.numpy().dtype and np.array_equal(got[k], v.numpy()), k


def test_numpy_reader_nonfinite_rules(net, state, tmp_path):
    t = state[KEY].clone()
    t[1, 2, 0, 1] = float("inf")
    path = _save(tmp_path, _with(state, KEY, t))
    with pytest.raises(WeightsError, match=r"1 non-finite value .* index \[1, 2, 0, 1\]"):
        load_weights(net, path, reader="numpy")
    assert np.isinf(load_weights(net, path, reader="numpy", allow_nonfinite=True)[KEY]).sum() == 1
    big = _save(tmp_path, _with(state, KEY, state[KEY].double() * 1e300), "big.pt")
    with pytest.raises(WeightsError, match="once cast from float64 to float32"):
        load_weights(net, big, reader="numpy")


@pytest.mark.parametrize("content, words", [
    (b"\x80", "weights-only"),
    (b"not a checkpoint at all\n", "weights-only"),
    (_zip_without_torch(), "weights-only"),
    (_torch_bytes([1, 2, 3]), "not a state_dict"),
    (_torch_bytes({1: 2}), "keys must be names"),
    (_torch_bytes({"layers.0.weight": "a string"}), "not a tensor but a str"),
    (_torch_bytes({"state_dict": {"a": 1}}), "wraps its state_dict"),
], ids=["one-byte", "text", "zip", "list", "int-keys", "str-value", "wrapped"])
def test_numpy_reader_files_that_are_not_state_dicts(net, tmp_path, content, words):
    path = tmp_path / "ck.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=re.escape(words)):
        load_weights(net, path, reader="numpy")


def test_numpy_reader_never_runs_a_pickle(net, state, tmp_path):
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({**state, "evil": _Payload(sentinel)}, path)
    with pytest.raises(WeightsError, match="never runs code") as err:
        load_weights(net, path, reader="numpy")
    assert "open" in str(err.value) and not sentinel.exists()


def test_numpy_reader_fuzz_truncations_and_byte_flips(net, state, tmp_path):
    """The fuzz above, through the numpy reader: loads, or a one-paragraph WeightsError."""
    buf = io.BytesIO()
    torch.save(state, buf)
    base = buf.getvalue()
    start = base.index(b"\x80\x02")
    hot = range(start, base.index(b"PK", start))
    rng = random.Random(81)
    path = tmp_path / "fuzz.pt"
    outcomes = {"ok": 0, "refused": 0}
    for case, data in _mutants(base, rng, 300, hot):
        path.write_bytes(data)
        try:
            load_weights(net, path, reader="numpy")
            outcomes["ok"] += 1
        except WeightsError as e:
            assert "Traceback" not in str(e) and str(e).strip(), case
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 -- the test is that none gets here
            pytest.fail(f"{case}: {type(e).__name__}: {e}")
    assert outcomes["refused"] > 100


def test_safetensors_reader(net, state, tmp_path):
    from archgen.ckpt import save_safetensors
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {k: v.numpy() for k, v in state.items()})
    got = load_weights(net, path, reader="numpy")
    for k, v in state.items():
        assert np.array_equal(got[k], v.numpy()), k
    bad = {k: v.numpy() for k, v in state.items()}
    bad[KEY] = bad[KEY].astype(np.int32)
    save_safetensors(path, bad)
    with pytest.raises(WeightsError, match=re.escape(f"'{KEY}' in {path} holds integers (int32)")):
        load_weights(net, path, reader="numpy")
    # corrupt copies: header bytes changed, truncations
    save_safetensors(path, {k: v.numpy() for k, v in state.items()})
    base = path.read_bytes()
    rng = random.Random(82)
    for case, data in _mutants(base, rng, 200, range(8, base.index(b"}}") + 2)):
        path.write_bytes(data)
        try:
            load_weights(net, path, reader="numpy")
        except WeightsError as e:
            assert str(e).strip(), case
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{case}: {type(e).__name__}: {e}")
