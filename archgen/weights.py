"""The network's weights: which state_dict entries it has, loading a checkpoint that must match
them exactly, and a seeded initialisation when there is no checkpoint.

The entries follow from the resolved model alone (a layer's path and arguments), so the ONNX
graph can be built and a checkpoint checked without generating the PyTorch module; the tests
hold the generated module to the same keys and shapes.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import stat
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import did_you_mean
from .extras import require
from .ir import Network


class WeightsError(Exception):
    """A checkpoint that does not fit the network. `key` names the first mismatching entry;
    `expected`/`found` are its shapes (None where the entry is missing on that side)."""

    def __init__(self, message: str, *, key: str | None = None,
                 expected: tuple[int, ...] | None = None, found: tuple[int, ...] | None = None):
        super().__init__(message)
        self.key, self.expected, self.found = key, expected, found


@dataclass(frozen=True)
class Entry:
    """One state_dict entry: `role` is the attribute name in the layer's module (weight, bias,
    running_mean, ...); `init` says how `initial_state` fills it: ("he", fan_in),
    ("bias", fan_in), ("uniform", low, high) or ("count",)."""

    key: str
    shape: tuple[int, ...]
    role: str
    init: tuple


BUFFERS = frozenset({"running_mean", "running_var", "num_batches_tracked"})


def state_entries(net: Network) -> list[Entry]:
    """Every state_dict entry of the generated module, in its state_dict's order: layer by
    layer in forward order, a module's own parameters (layer_scale's, role None: the key is
    the layer's path) before its submodules' entries, as nn.Module.state_dict writes them."""
    entries = []
    own = False
    for layer in net.layers():
        # each kind says what its module holds, as PyTorch names and shapes it
        for role, shape, init in layer.kind.weight_entries(layer.args):
            key = layer.path if role is None else f"{layer.path}.{role}"
            entries.append(Entry(key, shape, role, init))
            own |= role is None
    return _own_first(entries) if own else entries


def _own_first(entries: list[Entry]) -> list[Entry]:
    """Each module's own parameters moved before the first entry of its submodules.

    >>> e = [Entry(k, (1,), r, ()) for k, r in (("a.conv.weight", "weight"), ("a.s", None),
    ...                                         ("b", None), ("a.t", None))]
    >>> [x.key for x in _own_first(e)]
    ['b', 'a.s', 'a.t', 'a.conv.weight']
    """
    out: list[Entry] = []
    hoisted: dict[str, int] = {}  # module path -> where its next own parameter goes
    for e in entries:
        if e.role is not None:
            out.append(e)
            continue
        module = e.key.rpartition(".")[0]
        prefix = f"{module}." if module else ""
        at = hoisted.get(module)
        if at is None:  # before the module's first entry so far
            at = next((i for i, o in enumerate(out) if o.key.startswith(prefix)), len(out))
        out.insert(at, e)
        for m, i in hoisted.items():  # entries after the insertion point moved by one
            if i > at or (i == at and m != module and m.startswith(prefix)):
                hoisted[m] = i + 1
        hoisted[module] = at + 1
    return out


def state_shapes(net: Network) -> dict[str, tuple[int, ...]]:
    return {e.key: e.shape for e in state_entries(net)}


# -- checking a state_dict --------------------------------------------------------------------

def check_state(net: Network, state: Mapping, source: str = "the state_dict", *,
                allow_nonfinite: bool = True, notes: list[str] | None = None) -> dict:
    """`state` in the network's key order, its floating-point tensors as float32, or
    WeightsError naming the first problem: entries in forward order first (missing, not a
    tensor, wrong shape, a dtype or layout that is not real numbers, non-finite values unless
    `allow_nonfinite`), then unexpected keys. A float16/bfloat16/float64 tensor is cast, and
    `notes` (when given) gets one line per cast dtype."""
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} is not a state_dict (a mapping from names to tensors) "
                           f"but a {type(state).__name__}")
    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None:
        raise WeightsError(f"{source} is not a state_dict: its keys must be names (str), but "
                           f"one is the {type(odd).__name__} {_short(odd)}")
    expected = state_entries(net)
    known = {e.key for e in expected}
    unexpected = [k for k in state if k not in known]
    problems: list[tuple[str, str, tuple | None, tuple | None]] = []
    out: dict = {}
    casts: dict[str, list[str]] = {}
    for e in expected:
        if e.key not in state:
            msg = f"{source} lacks {e.key!r} (expected shape {_fmt(e.shape)})"
            hint = did_you_mean(e.key, unexpected)
            if f"module.{e.key}" in state:
                msg += ("; its keys start with 'module.' (saved from a DataParallel model?): "
                        "save model.module.state_dict() instead")
            elif hint:
                msg += f"; it has unexpected keys, {hint}"
            problems.append((e.key, msg, e.shape, None))
            continue
        value = state[e.key]
        found = _shape_of(value)
        if found is None:
            msg = f"{e.key!r} in {source} is not a tensor but a {type(value).__name__}"
            problems.append((e.key, msg, e.shape, None))
            continue
        if found != e.shape:
            msg = (f"{e.key!r} in {source} has shape {_fmt(found)} but the network expects "
                   f"{_fmt(e.shape)}")
            problems.append((e.key, msg, e.shape, found))
            continue
        why, value, cast_from = _real_values(value, e.role == "num_batches_tracked",
                                             allow_nonfinite)
        if why:
            problems.append((e.key, f"{e.key!r} in {source} {why}", e.shape, found))
            continue
        if cast_from:
            casts.setdefault(cast_from, []).append(e.key)
        out[e.key] = value
    for k in unexpected:
        msg = (f"{source} has an unexpected key {k!r} (shape {_fmt(_shape_of(state[k]))}): "
               f"the network has no such entry")
        problems.append((k, msg, None, _shape_of(state[k])))
    if problems:
        key, msg, want, found = problems[0]
        if len(problems) > 1:
            msg += f" (and {len(problems) - 1} more mismatch{'es' if len(problems) > 2 else ''})"
        raise WeightsError(msg, key=key, expected=want, found=found)
    if notes is not None:
        for dtype, keys in casts.items():
            n = len(keys)
            notes.append(f"{n} tensor{'s' * (n != 1)} of {source} {'are' if n != 1 else 'is'} "
                         f"{dtype} (first {keys[0]!r}): cast to float32, the precision of the "
                         f"generated module and the ONNX graph")
    return out


def _real_values(v, counter: bool, allow_nonfinite: bool):
    """(problem or None, the value as float32 where it is a float tensor, the dtype it was
    cast from or None). Integers are a weight's mistake but a counter's type
    (num_batches_tracked); bool, complex, sparse, quantised and meta tensors never hold a
    network's real-valued weights."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        if v.layout != torch.strided:
            return (f"is a sparse tensor ({str(v.layout).removeprefix('torch.')}): save it "
                    f"dense (tensor.to_dense())"), v, None
        if v.is_quantized:
            return (f"is a quantised tensor ({str(v.dtype).removeprefix('torch.')}): export "
                    f"the float model (dequantise it first)"), v, None
        if v.is_meta:
            return ("is a meta tensor, which has a shape but no values: save the state_dict "
                    "after the weights are materialised"), v, None
        dtype = str(v.dtype).removeprefix("torch.")
        if v.dtype.is_complex:
            return (f"holds complex numbers ({dtype}): a cast would drop the imaginary part"
                    ), v, None
        if v.dtype == torch.bool:
            return "holds booleans, not real-valued weights", v, None
        if not v.dtype.is_floating_point:
            return (None, v, None) if counter else (
                f"holds integers ({dtype}), not floating-point weights", v, None)
        if counter:
            return None, v, None
        cast_from = None
        if v.dtype != torch.float32:
            cast_from, v = dtype, v.to(torch.float32)
        if not allow_nonfinite and not _all_finite(v):
            bad = ~torch.isfinite(v)
            if bool(bad.any()):
                where = tuple(bad.nonzero()[0].tolist())
                return _nonfinite(int(bad.sum()), v.numel(), float(v[where]), where,
                                  cast_from), v, None
        return None, v, cast_from
    ckpt = sys.modules.get("archgen.ckpt")
    if ckpt is not None and isinstance(v, ckpt.Stored):
        return _stored_values(ckpt, v, counter, allow_nonfinite)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.ndarray):
        return _numpy_values(np, v, counter, allow_nonfinite)
    return None, v, None


def _stored_values(ckpt, v, counter: bool, allow_nonfinite: bool):
    """A tensor read by archgen.ckpt (no PyTorch), held to the same rules and words as a
    torch.Tensor: its dtype is PyTorch's name, its values a numpy array."""
    if v.problem:
        return v.problem, v, None
    if v.dtype.startswith("float8"):  # PyTorch would cast them; numpy cannot read them
        return (f"holds {v.dtype} values, which archgen reads only through PyTorch: save it "
                f"as float32"), v, None
    try:
        values = v.values()
    except ckpt.CheckpointError as e:
        return f"cannot be read: {e}", v, None
    widened = v.dtype if v.dtype in ("bfloat16", "complex32") else None
    return _numpy_values(sys.modules["numpy"], values, counter, allow_nonfinite,
                         name=v.dtype, cast_from=widened)


def _numpy_values(np, v, counter: bool, allow_nonfinite: bool, name: str | None = None,
                  cast_from: str | None = None):
    """The numpy branch of _real_values; `name` is the dtype's name in messages and
    `cast_from` the dtype the values were already widened from (bfloat16 to float32)."""
    kind, dtype = v.dtype.kind, name or str(v.dtype)
    if kind == "c":
        return (f"holds complex numbers ({dtype}): a cast would drop the imaginary part"
                ), v, None
    if kind == "b":
        return "holds booleans, not real-valued weights", v, None
    if kind in "iu":
        return (None, v, None) if counter else (
            f"holds integers ({dtype}), not floating-point weights", v, None)
    if kind != "f":
        return f"holds {dtype} values, not real numbers", v, None
    if counter:
        return None, v, None
    if v.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range: infinity, reported below
            cast_from, v = dtype, v.astype(np.float32)
    if not allow_nonfinite and not _all_finite(v):
        bad = ~np.isfinite(v)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            return _nonfinite(int(bad.sum()), v.size, float(v[where]), where,
                              cast_from), v, None
    return None, v, cast_from


def _all_finite(v) -> bool:
    """min and max propagate NaN and show infinities: on a 100M-element tensor they take 0.1 s
    where isfinite() takes 2.5 s, which then runs only to locate a bad value."""
    if math.prod(v.shape) == 0:
        return True
    lo, hi = v.aminmax() if hasattr(v, "aminmax") else (v.min(), v.max())  # torch: one pass
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def _nonfinite(count: int, size: int, value: float, where: tuple, cast_from: str | None) -> str:
    cast = f" once cast from {cast_from} to float32" if cast_from else ""
    return (f"has {count:,} non-finite value{'s' * (count != 1)} (NaN or infinity) of {size:,}"
            f"{cast}, the first {value} at index {list(where)}: the network's outputs would not "
            f"be numbers (--allow-nonfinite keeps them)")


def _shape_of(v) -> tuple[int, ...] | None:
    shape = getattr(v, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def _fmt(shape) -> str:
    return "?" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- loading and initialising -----------------------------------------------------------------

def load_weights(net: Network, path: str | Path, *, allow_nonfinite: bool = False,
                 notes: list[str] | None = None, reader: str | None = None) -> dict:
    """A state_dict saved with torch.save, or a safetensors file, that matches the network's
    entries exactly, with real, finite values (NaN and infinity only with `allow_nonfinite`),
    as float32; raises WeightsError otherwise, for any file, however corrupt. A checkpoint
    never runs code. `notes` gets a line per dtype that was cast.

    `reader` "numpy" reads the file without PyTorch (archgen.ckpt; the values are numpy arrays
    mapped from the file; a pre-1.6 torch.save file goes to torch.load where PyTorch is
    installed); "torch" uses torch.load(weights_only=True) (torch tensors; no safetensors).
    The default is "torch" where PyTorch is installed, else "numpy"."""
    path = Path(path)
    help_ = "\n  = help: save the weights alone: torch.save(model.state_dict(), path)"
    _regular_file(path, help_)
    if reader is None:
        reader = "torch" if importlib.util.find_spec("torch") is not None else "numpy"
    if reader == "numpy":
        state = _read_numpy(path, help_)
    elif reader == "torch":
        state = _read_torch(path, help_)
    else:
        raise ValueError(f"reader must be 'numpy' or 'torch', received {reader!r}")
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(wrapper), Mapping) and not any(
                    _shape_of(v) is not None for v in state.values()):
                raise WeightsError(f"{path} wraps its state_dict under the key '{wrapper}'"
                                   f"{help_}")
    return check_state(net, state, source=str(path), allow_nonfinite=allow_nonfinite,
                       notes=notes)


def _regular_file(path: Path, help_: str) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise WeightsError(f"cannot read weights: {path} does not exist") from None
    except OSError as e:
        raise WeightsError(f"cannot read weights from {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise WeightsError(f"cannot read weights: {path} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(f"cannot read weights: {path} is not a regular file")
    if st.st_size == 0:
        raise WeightsError(f"cannot load {path}: the file is empty (0 bytes){help_}")


def _read_numpy(path: Path, help_: str):
    from . import ckpt
    try:
        return ckpt.read_checkpoint(path)
    except ckpt.LegacyFormat:
        if importlib.util.find_spec("torch") is not None:
            return _read_torch(path, help_)
        raise WeightsError(f"cannot load {path} as a weights-only state_dict without PyTorch: "
                           f"it is a bare pickle (torch.save's format before PyTorch 1.6, or "
                           f"not a checkpoint); install archgen[torch] to read it, or save it "
                           f"again with a current PyTorch{help_}") from None
    except ckpt.CheckpointError as e:
        if e.code_refused:
            raise WeightsError(
                f"cannot load {path} as a weights-only state_dict: it holds objects other "
                f"than tensors and containers ({e}), and archgen never runs code from a "
                f"checkpoint{help_}") from None
        raise WeightsError(f"cannot load {path} as a weights-only state_dict (corrupt or not a "
                           f"torch.save file): {e}{help_}") from None
    except OSError as e:
        raise WeightsError(f"cannot read weights from {path}: {e.strerror or e}") from None
    except MemoryError:
        raise WeightsError(f"cannot load {path}: it does not fit in memory") from None


def _read_torch(path: Path, help_: str):
    torch = require("torch", "torch", "loading weights")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise WeightsError(f"cannot read weights from {path}: {e.strerror or e}") from None
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"cannot load {path} as a weights-only state_dict: it holds objects other than "
            f"tensors and containers ({_unpickler_reason(e)}), and archgen never runs code "
            f"from a checkpoint{help_}") from None
    except MemoryError:
        raise WeightsError(f"cannot load {path}: it does not fit in memory") from None
    except Exception as e:  # noqa: BLE001 -- a corrupt file makes torch.load raise anything
        raise WeightsError(f"cannot load {path} as a weights-only state_dict (corrupt or not a "
                           f"torch.save file): {_first_line(e)}{help_}") from None
    return state


def _first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type when it has none."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _unpickler_reason(e: BaseException) -> str:
    """torch's weights-only unpickler buries its reason after advice to disable it."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.rstrip(":").endswith("WeightsUnpickler error") and i + 1 < len(lines):
            return lines[i + 1][:200]
    return _first_line(e)


def build_module(net: Network, state: Mapping, make=None):
    """The generated PyTorch module holding `state` (checked already), in eval mode: built on
    the meta device, so that no default initialisation runs only to be overwritten, then each
    entry assigned in place, one tensor at a time (load_state_dict scans every key for every
    submodule: quadratic on a flat 10k-layer sequence). numpy arrays become tensors sharing
    their memory where they are writable. `make` builds the module (emit_torch.load_module)."""
    torch = require("torch", "torch", "building the PyTorch module")
    from .quoting import InternalError
    if make is None:
        from .emit_torch import load_module as make
    with torch.device("meta"):
        module = make(net)
    for key, value in state.items():
        owner, _, role = key.rpartition(".")
        try:
            sub = module.get_submodule(owner)
        except AttributeError:
            raise InternalError(f"the generated PyTorch module has no submodule {owner!r} for "
                                f"the weight entry {key!r}") from None
        tensor = _as_tensor(torch, value)
        if role in sub._parameters:
            sub._parameters[role] = torch.nn.Parameter(tensor, requires_grad=False)
        elif role in sub._buffers:
            sub._buffers[role] = tensor
        else:
            raise InternalError(f"the generated PyTorch module's {owner!r} has no entry "
                                f"{role!r} for the weight entry {key!r}")
    left = [name for name, t in (*module.named_parameters(), *module.named_buffers())
            if t.is_meta]
    if left:
        raise InternalError(f"the generated PyTorch module has entries the network does not: "
                            f"{left[0]!r}")
    return module.eval()


def _as_tensor(torch, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    np = sys.modules["numpy"]
    arr = np.asarray(value)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)  # torch.from_numpy shares memory: it wants its own, writable copy
    return torch.from_numpy(arr)


def initial_state(net: Network, seed: int = 0) -> dict:
    """Seeded weights that make a comparison meaningful: He-uniform weights (activations keep
    their scale through deep ReLU stacks, where PyTorch's default init shrinks them towards
    the tolerance), PyTorch's bias bounds, and random batchnorm affine and running statistics
    so that a mix-up of mean, variance, scale or shift shows."""
    return seeded_module(net, seed)[0]


def seeded_module(net: Network, seed: int = 0):
    """initial_state's weights and the calibrated module that holds them (eval mode), so that
    parity need not build a second one."""
    torch = require("torch", "torch", "initialising weights")
    np = require("numpy", "torch", "initialising weights")
    rng = np.random.default_rng(seed)

    def uniform(shape, low, high):
        values = rng.random(shape, dtype=np.float32)
        values *= np.float32(high - low)
        values += np.float32(low)
        return torch.from_numpy(values)

    state = {}
    for e in state_entries(net):
        how, *arg = e.init
        if how == "count":
            state[e.key] = torch.tensor(0, dtype=torch.long)
        elif how == "he":
            bound = math.sqrt(6.0 / arg[0])
            state[e.key] = uniform(e.shape, -bound, bound)
        elif how == "bias":
            bound = 1.0 / math.sqrt(arg[0])
            state[e.key] = uniform(e.shape, -bound, bound)
        else:
            state[e.key] = uniform(e.shape, *arg)
    return _calibrate(net, state, seed)


def _calibrate(net: Network, state: dict, seed: int) -> tuple[dict, object]:
    """Rescale the seeded weights on one seeded random batch so that every conv and linear
    layer gives outputs of unit scale, and measure every batchnorm's running statistics on it.

    Without this, deep and residual networks drift to outputs of ~1e4 (or ~1e-5), where
    float32 rounding alone exceeds parity's default atol of 1e-5 and the comparison measures
    the initialisation rather than the export. With unit-scale activations the two runtimes
    agree to ~1e-6."""
    torch = require("torch", "torch", "initialising weights")
    module = build_module(net, state)
    scaled = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)

    def unit_scale(m, inputs, output):
        std = float(output.std())
        if std > 0 and math.isfinite(std):
            m.weight.mul_(1 / std)
            if m.bias is not None:
                m.bias.mul_(1 / std)
            return output / std
        return output

    hooks = []
    for m in module.modules():
        if isinstance(m, scaled):
            hooks.append(m.register_forward_hook(unit_scale))
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batch
            m.train()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((2, *net.input_shape), generator=generator)
    with torch.no_grad():
        module(x)
    for hook in hooks:
        hook.remove()
    module.eval()
    calibrated = {}
    for key, value in module.state_dict(keep_vars=False).items():
        if key.endswith("num_batches_tracked"):  # back to the seeded count
            value.zero_()
        calibrated[key] = value
    return calibrated, module
