"""Proof that the two targets compute the same function: the generated PyTorch module and an
ONNX graph (archgen's own export, or a file made elsewhere) run on onnxruntime's CPU provider
with the very same weights and inputs.

The verdict comes from numerical analysis rather than a fixed line. The PyTorch module also
runs in float64 on the same float32 weights and input: the exact answer that both float32
runtimes approximate. ONNX passes when its error against float64 stays within FACTOR times
float32 PyTorch's own error against float64, plus FLOOR times the output's magnitude:

    max|onnx - f64| <= FACTOR * max|torch - f64| + FLOOR * max|f64|

A deep network, whose float32 rounding grows with depth, is held to what float32 achieves on it
(a fixed tolerance fails such a network by chance, depending on the seed). A shallow one is
held to a few units in the last place. README's parity section gives the measurements behind
FACTOR and FLOOR (bench/bench_parity.py): correct exports over the zoo and several seeds,
against real perturbations that must fail.

With rtol or atol given, the verdict is absolute instead: |onnx - torch| <= atol + rtol *
max|torch| on every element. rtol is relative to the output tensor's magnitude rather than to
each element as in numpy.allclose, because float32 rounding is relative to the operands of the
sums that made an element.

When ONNX fails, every layer's output is compared by the same rule: forward hooks at the layer's
module path on both modules, and the ONNX nodes named after the layers' paths exposed as extra
graph outputs. The first layer in forward order that fails is named with its place in the spec.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .extras import require
from .ir import Layer, Network
from .weights import WeightsError, build_module, check_state, seeded_module, state_entries

# Measured with bench/bench_parity.py (README, "Why 8x and 1e-6"): over the zoo at four seeds
# and 247 random networks, no correct tensor needs more than 1.31x above the floor (3.19x raw,
# at errors under the floor), while a 1% change of one weight tensor, a swapped pad or a lost
# ceil_mode reach 847x to 4e5x at the output, every one localised to the layer changed.
FACTOR = 8.0
FLOOR = 1e-6  # of the output's magnitude: about 8 units in the last place of float32


class OnnxFileError(Exception):
    """An ONNX file that cannot be compared with the spec: unreadable, or with an input that
    does not fit the network."""


@dataclass
class Measure:
    """One tensor compared. `onnx_error` and `torch_error` are ONNX's and float32 PyTorch's
    largest distance from float64 PyTorch, relative to `scale` (None in absolute mode);
    `max_abs` is the largest |onnx - torch|; `used` is the error over what the verdict allows
    (above 1 fails)."""

    ok: bool
    max_abs: float
    max_rel: float
    scale: float
    used: float
    onnx_error: float | None = None
    torch_error: float | None = None
    problem: str | None = None  # why no error could be measured

    @property
    def ratio(self) -> float | None:
        return _ratio(self.onnx_error, self.torch_error)

    def to_json(self) -> dict:
        return {"ok": self.ok, "max_abs": _number(self.max_abs),
                "max_rel": _number(self.max_rel), "onnx_error": _number(self.onnx_error),
                "torch_error": _number(self.torch_error), "ratio": _number(self.ratio)}


def _ratio(onnx_error: float | None, torch_error: float | None) -> float | None:
    if onnx_error is None or torch_error is None:
        return None
    if torch_error > 0:
        return onnx_error / torch_error
    return 1.0 if onnx_error == 0 else math.inf


def _mismatch(problem: str, numerical: bool = True) -> Measure:
    """A comparison that cannot be made (shapes differ, NaN, ONNX fails to run)."""
    inf = math.inf
    return Measure(False, inf, inf, 0.0, inf, inf if numerical else None,
                   0.0 if numerical else None, problem)


@dataclass
class Divergence:
    """The first layer whose output differs."""

    path: str
    op: str
    location: str  # file:line:col in the spec
    max_abs: float
    max_rel: float
    shape: list[int]
    onnx_error: float | None = None
    torch_error: float | None = None
    problem: str | None = None  # why no error could be measured (shapes, non-finite values)

    @property
    def ratio(self) -> float | None:
        return _ratio(self.onnx_error, self.torch_error)

    def to_json(self) -> dict:
        return {"path": self.path, "op": self.op, "location": self.location,
                "max_abs": _number(self.max_abs), "max_rel": _number(self.max_rel),
                "onnx_error": _number(self.onnx_error),
                "torch_error": _number(self.torch_error), "ratio": _number(self.ratio),
                "shape": self.shape, "problem": self.problem}


def _number(v: float | None) -> float | str | None:
    """JSON has no infinity: a non-finite error becomes the string "inf" or "nan"."""
    return v if v is None or math.isfinite(v) else str(v)


def _x(ratio: float | None) -> str:
    return "?" if ratio is None else f"{ratio:.2g}x"


@dataclass
class SeedRun:
    """One seed's input (and, with seeded weights, weights) and its verdict."""

    seed: int
    measure: Measure

    def to_json(self) -> dict:
        return {"seed": self.seed, **self.measure.to_json()}


@dataclass
class ParityReport:
    network: str
    ok: bool
    max_abs: float  # |onnx - torch|, float32 against float32
    max_rel: float
    batch: int
    rtol: float | None  # None unless mode is "absolute"
    atol: float | None
    seed: int  # the seed reported: the worst of `runs`
    opset: int
    output_shape: list[int]
    reference_max: float  # the largest |output| of PyTorch: the scale the errors compare to
    first_divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)
    mode: str = "float64"  # or "absolute" (rtol/atol)
    onnx_error: float | None = None  # from float64, relative to its magnitude
    torch_error: float | None = None
    factor: float = FACTOR
    floor: float = FLOOR
    runs: list[SeedRun] = field(default_factory=list)
    onnx_file: str | None = None  # None: archgen's own export
    weights: str = "seeded"  # "seeded", "given" or "onnx file"
    # `output NAME, ...`: each output's measure in the worst seed, by name; the report's own
    # figures are the worst output's (`output` names it)
    outputs: dict[str, Measure] = field(default_factory=dict)
    output: str | None = None

    @property
    def ratio(self) -> float | None:
        return _ratio(self.onnx_error, self.torch_error)

    def to_text(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        against = f" against {self.onnx_file}" if self.onnx_file else ""
        seeds = (f"seed {self.seed}" if len(self.runs) <= 1 else
                 f"seeds {self.runs[0].seed}-{self.runs[-1].seed}, worst {self.seed}")
        weights = {"seeded": "", "given": "given weights, ",
                   "onnx file": "weights from the ONNX file, "}[self.weights]
        where = (f"{weights}batch {self.batch}, {seeds}, onnxruntime CPU, opset {self.opset}")
        if self.mode == "absolute":
            head = (f"parity {self.network}{against}: {verdict}: max abs error "
                    f"{self.max_abs:.3g}, {self.max_rel:.3g} of the outputs' magnitude "
                    f"{self.reference_max:.3g} (rtol {self.rtol:g}, atol {self.atol:g}; {where})")
        else:
            within = "within" if self.ok else "beyond"
            head = (f"parity {self.network}{against}: {verdict}: onnxruntime "
                    f"{self.onnx_error:.2g} from float64, PyTorch {self.torch_error:.2g}: "
                    f"{_x(self.ratio)}, {within} {self.factor:g}x + {self.floor:g} (errors "
                    f"relative to the outputs' magnitude {self.reference_max:.3g}; {where})")
        lines = [head]
        if len(self.outputs) > 1:
            def each(name: str, m: Measure) -> str:
                what = (_x(m.ratio) if self.mode != "absolute" else f"{m.max_rel:.2g}")
                return f"{name} {what}{'' if m.ok else ' MISMATCH'}"
            label = "ratio" if self.mode != "absolute" else "max rel error"
            lines.append(f"  per output ({label}; the figures above are {self.output}'s): " +
                         ", ".join(each(n, m) for n, m in self.outputs.items()))
        if len(self.runs) > 1:
            def one(r: SeedRun) -> str:
                m = r.measure
                what = (_x(m.ratio) if self.mode != "absolute" else f"{m.max_rel:.2g}")
                return f"{r.seed} {what}{'' if m.ok else ' MISMATCH'}"
            label = "ratio" if self.mode != "absolute" else "max rel error"
            lines.append(f"  per seed ({label}): " + ", ".join(one(r) for r in self.runs))
        d = self.first_divergence
        if d is not None:
            if d.problem is not None:
                lines.append(f"  first diverging layer: {d.path} ({d.op}) at {d.location}: "
                             f"{d.problem}")
            elif d.onnx_error is None:
                lines.append(f"  first diverging layer: {d.path} ({d.op}) at {d.location}: "
                             f"max abs error {d.max_abs:.3g}, {d.max_rel:.3g} of its magnitude")
            else:
                lines.append(f"  first diverging layer: {d.path} ({d.op}) at {d.location}: "
                             f"onnxruntime {d.onnx_error:.2g} from float64, PyTorch "
                             f"{d.torch_error:.2g}: {_x(d.ratio)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"network": self.network, "ok": self.ok, "mode": self.mode,
                "onnx_file": self.onnx_file, "weights": self.weights,
                "onnx_error": _number(self.onnx_error),
                "torch_error": _number(self.torch_error), "ratio": _number(self.ratio),
                "factor": self.factor, "floor": self.floor,
                "max_abs": _number(self.max_abs), "max_rel": _number(self.max_rel),
                "batch": self.batch, "rtol": self.rtol, "atol": self.atol, "seed": self.seed,
                "seeds": [r.to_json() for r in self.runs], "opset": self.opset,
                "output_shape": self.output_shape,
                "reference_max": _number(self.reference_max),
                "first_divergence": (self.first_divergence.to_json()
                                     if self.first_divergence else None),
                "outputs": {n: m.to_json() for n, m in self.outputs.items()},
                "output": self.output,
                "notes": list(self.notes)}


def check_batch(batch: int) -> int:
    """A batch of at least one sample: an empty batch compares nothing and would always pass."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"the batch must be at least 1 (an empty batch compares nothing); "
                         f"received {batch!r}")
    return batch


def check_tolerance(name: str, value: float) -> float:
    """A tolerance is a finite, non-negative number: NaN fails every comparison and would name
    a diverging layer, infinity passes every one, and a negative bound fails an exact match."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and at least 0 (|onnx - torch| <= atol + "
                         f"rtol * max|torch|); received {value:g}")
    return value


# -- the verdict --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """How a tensor passes: "float64" (factor, floor) or "absolute" (rtol, atol)."""

    mode: str = "float64"
    factor: float = FACTOR
    floor: float = FLOOR
    rtol: float | None = None
    atol: float | None = None

    def judge(self, np, got, ref, ref64=None) -> Measure:
        """`got` (ONNX) against `ref` (float32 PyTorch) and, in float64 mode, `ref64`."""
        numerical = self.mode == "float64"
        if got.shape != ref.shape:
            return _mismatch(f"ONNX gives the shape {list(got.shape)}, PyTorch "
                             f"{list(ref.shape)}", numerical)
        got, ref = got.astype(np.float64), ref.astype(np.float64)
        finite = np.isfinite(got) & np.isfinite(ref)
        # equal infinities agree; NaN never does, nor an infinity against a number
        if not (finite | (got == ref)).all():
            return _mismatch("non-finite values differ (NaN, or an infinity against a number "
                             "or the other infinity)", numerical)
        if numerical:
            finite &= np.isfinite(ref64)
        if not finite.any():
            return Measure(True, 0.0, 0.0, 0.0, 0.0, 0.0 if numerical else None,
                           0.0 if numerical else None)
        got, ref = got[finite], ref[finite]
        diff = float(np.abs(got - ref).max())
        if not numerical:
            scale = float(np.abs(ref).max())
            allowed = self.atol + self.rtol * scale
            used = _over(diff, allowed)
            return Measure(used <= 1.0, diff, diff / _nonzero(np, scale), scale, used)
        ref64 = ref64.astype(np.float64, copy=False)[finite]
        scale = float(np.abs(ref64).max())
        onnx_abs = float(np.abs(got - ref64).max())
        torch_abs = float(np.abs(ref - ref64).max())
        used = _over(onnx_abs, self.factor * torch_abs + self.floor * scale)
        s = _nonzero(np, scale)
        return Measure(used <= 1.0, diff, diff / s, scale, used, onnx_abs / s, torch_abs / s)


def _over(error: float, allowed: float) -> float:
    if allowed > 0:
        return error / allowed
    return 0.0 if error == 0 else math.inf


def _nonzero(np, scale: float) -> float:
    return max(scale, float(np.finfo(np.float32).tiny))


def _largest(np, values) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


# -- an ONNX file made elsewhere ------------------------------------------------------------------

@dataclass
class OnnxFile:
    """An ONNX graph to compare with the spec, its one input and first output mapped by
    position to the network's."""

    path: str
    model: object  # onnx.ModelProto, external data loaded
    input: str
    output: str
    batch: int | None  # fixed by the file, or None when symbolic
    opset: int
    notes: list[str] = field(default_factory=list)
    in_memory: bool = False  # given as a ModelProto: `path` only labels it


def read_onnx_file(net: Network, source) -> OnnxFile:
    """The ONNX file at the path `source` (or an onnx.ModelProto) checked against the network's
    input: one float input whose fixed dimensions equal the network's; OnnxFileError
    otherwise."""
    onnx = require("onnx", "onnx", "parity")
    from google.protobuf.message import DecodeError
    if isinstance(source, onnx.ModelProto):
        return _check_onnx(net, source, "the ONNX model", in_memory=True)
    path = str(source)
    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise OnnxFileError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise OnnxFileError(f"cannot read {path}: it is a directory") from None
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as e:
        raise OnnxFileError(f"{path} is not an ONNX model: {_first_line(e)}") from None
    except OSError as e:
        raise OnnxFileError(f"cannot read {path}: {e.strerror or e}") from None
    return _check_onnx(net, model, path, in_memory=False)


def _check_onnx(net: Network, model, path: str, in_memory: bool) -> OnnxFile:
    onnx = require("onnx", "onnx", "parity")
    g = model.graph
    if not len(g.node) or not len(g.output):
        raise OnnxFileError(f"{path} is not an ONNX model: it has no graph (no nodes or no "
                            f"outputs)")
    initialised = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in initialised]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise OnnxFileError(f"{path} has {len(inputs)} inputs ({names}); the network "
                            f"{net.name} takes one")
    t = inputs[0].type.tensor_type
    if t.elem_type != onnx.TensorProto.FLOAT:
        elem = onnx.TensorProto.DataType.Name(t.elem_type)
        raise OnnxFileError(f"{path}'s input '{inputs[0].name}' is {elem}; parity feeds "
                            f"float32 (FLOAT)")
    want = [None, *net.input_shape]
    batch = None
    if t.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) != len(want) or any(
                d is not None and w is not None and d != w for d, w in zip(dims, want)):
            shown = "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value")
                                    else d.dim_param or "?" for d in t.shape.dim) + "]"
            raise OnnxFileError(
                f"{path}'s input '{inputs[0].name}' has the shape {shown}; the network "
                f"{net.name} takes [N, {', '.join(map(str, net.input_shape))}]")
        batch = dims[0]
    notes = []
    if len(g.output) > 1:
        notes.append(f"compares the file's first output '{g.output[0].name}' of "
                     f"{len(g.output)}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxFile(path, model, inputs[0].name, g.output[0].name, batch, opset, notes,
                    in_memory)


def state_from_onnx(net: Network, model, source: str) -> dict:
    """The network's state_dict read from the ONNX initializers named like its keys, as
    archgen's export names them; WeightsError when some are missing (renamed, or folded into
    other weights as exporters do with batchnorm)."""
    torch = require("torch", "torch", "parity")
    from onnx import numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    derived = _unfolded(net, inits)
    state, missing = {}, []
    for e in state_entries(net):
        if e.init[0] == "count":  # num_batches_tracked: no part of an eval-mode graph
            state[e.key] = torch.tensor(0, dtype=torch.long)
        elif e.key in derived:
            state[e.key] = derived[e.key]
        elif e.key in inits:
            state[e.key] = torch.from_numpy(numpy_helper.to_array(inits[e.key]).copy())
        else:
            missing.append(e.key)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WeightsError(
            f"{source} does not hold the network's weights under its state_dict names: "
            f"'{missing[0]}'{more} is not among its initializers (renamed, or folded into "
            f"another layer's weights as exporters do with batchnorm); give the weights "
            f"with --weights CHECKPOINT", key=missing[0])
    return check_state(net, state, source=source)


def _unfolded(net: Network, inits: dict) -> dict:
    """State entries equivalent to the folded conv-batchnorm pairs of an archgen export (whose
    Conv, named after the batchnorm, holds "<bn>/folded.weight" and "<bn>/folded.bias"): the
    conv gets the folded weight and a zero bias, the batchnorm becomes "add the folded bias"
    (scale 1, shift 0, mean -bias, variance 1 - eps), which computes the same function."""
    torch = require("torch", "torch", "parity")
    from onnx import numpy_helper

    from .emit_onnx import folded_pairs
    out = {}
    for conv, bn in folded_pairs(net):
        w, b = (inits.get(f"{bn.path}/folded.{role}") for role in ("weight", "bias"))
        if w is None or b is None or not bn.args["eps"] < 1:
            continue
        bias = torch.from_numpy(numpy_helper.to_array(b).copy()).float()
        c = bias.shape[0]
        out[f"{conv.path}.weight"] = torch.from_numpy(numpy_helper.to_array(w).copy())
        out[f"{conv.path}.bias"] = torch.zeros(c)
        out[f"{bn.path}.weight"], out[f"{bn.path}.bias"] = torch.ones(c), torch.zeros(c)
        out[f"{bn.path}.running_mean"] = -bias
        out[f"{bn.path}.running_var"] = torch.full((c,), 1.0 - bn.args["eps"])
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- running ----------------------------------------------------------------------------------

def _torch_module(net: Network):
    """The generated module (parity builds it on the meta device: weights.build_module)."""
    from .emit_torch import load_module
    return load_module(net)


def run_parity(net: Network, *, state_dict: Mapping | None = None, seed: int = 0,
               batch: int = 2, rtol: float | None = None, atol: float | None = None,
               opset: int | None = None,
               onnx_state_dict_override: Mapping | None = None, seeds: int = 1,
               onnx_file: str | Path | None = None, factor: float = FACTOR,
               floor: float = FLOOR, fold: bool = False, progress=None) -> ParityReport:
    """Compare the generated PyTorch module with an ONNX graph on `batch` random inputs, for
    `seeds` seeds from `seed` on (each draws its own input and, without `state_dict`, its own
    weights); the report is the worst seed's.

    The graph is archgen's export of `net`, or the file `onnx_file` (its weights are then read
    from its initializers unless `state_dict` is given). With `rtol` or `atol` the verdict is
    absolute (the other defaults to 1e-4 or 1e-5); otherwise it is float64's (module doc).
    `onnx_state_dict_override` replaces some entries on the ONNX side only: a deliberate
    discrepancy, for testing that the report finds it. `fold` compares the graph that
    `archgen export` writes by default (batchnorm folded into convs, no Identity nodes).
    `progress` (archgen.progress.Progress) is told each stage."""
    from .progress import Progress
    progress = progress or Progress(enabled=False)
    check_batch(batch)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be at least 1; received {seeds!r}")
    if rtol is not None or atol is not None:
        rule = Rule("absolute", rtol=check_tolerance("rtol", 1e-4 if rtol is None else rtol),
                    atol=check_tolerance("atol", 1e-5 if atol is None else atol))
    else:
        factor, floor = float(factor), float(floor)
        if not (math.isfinite(factor) and factor >= 1 and math.isfinite(floor) and floor >= 0):
            raise ValueError(f"the factor must be finite and at least 1 and the floor finite "
                             f"and at least 0; received {factor:g} and {floor:g}")
        rule = Rule("float64", factor, floor)
    torch = require("torch", "torch", "parity")
    np = require("numpy", "onnx", "parity")
    from .emit_onnx import DEFAULT_OPSET, build_graph

    notes: list[str] = []
    foreign = read_onnx_file(net, onnx_file) if onnx_file is not None else None
    if foreign is not None and onnx_state_dict_override:
        raise ValueError("onnx_state_dict_override applies to archgen's own export, not to "
                         "an ONNX file")
    weights = "seeded"
    state = None
    if state_dict is not None:
        state, weights = check_state(net, state_dict), "given"
    elif foreign is not None:
        state, weights = state_from_onnx(net, foreign.model, foreign.path), "onnx file"
    if foreign is not None:
        notes += foreign.notes
        if foreign.batch is not None and foreign.batch != batch:
            notes.append(f"the file fixes the batch at {foreign.batch}")
            batch = foreign.batch
        session = _session(foreign.model, None if foreign.in_memory else foreign.path,
                           foreign=foreign.path)
    if state is not None and seeds > 1:
        notes.append("the weights are fixed: each seed draws only its input")
    # the module is built once without default initialisation and given the weights per
    # tensor; seeded weights come with the module that calibrated them
    progress.stage("weights")
    fixed = (build_module(net, state, make=lambda n: _torch_module(n)) if state is not None
             else None)

    name_in = foreign.input if foreign else "input"
    # the graph's outputs to compare, in the module's order: the named ones
    names_out = [foreign.output] if foreign else [o.name for o in net.outputs] or ["output"]

    def prepare(s: int, full: bool = False):
        """The seed's module (holding its weights), its ONNX graph (a Built, or with `full` a
        ModelProto with the weights attached) and its input."""
        if fixed is None:
            progress.stage("weights")
        st, mod = (state, fixed) if fixed is not None else seeded_module(net, s)
        x = _input(np, net, s, batch)
        if foreign is not None:
            return mod, foreign.model, x
        onnx_state = dict(st)
        onnx_state.update(onnx_state_dict_override or {})
        progress.stage("render")
        built = build_graph(net, opset=opset, state_dict=onnx_state, fold=fold,
                            checked=not onnx_state_dict_override, progress=progress)
        if full:
            built.model.graph.initializer.extend(_initializers(built.weights))
            return mod, built.model, x
        return mod, built, x

    runs: list[SeedRun] = []
    worst = None  # (measure, seed, reference_max, output_shape, problem, per output, name)
    for s in range(seed, seed + seeds):
        module, model, x = prepare(s)
        progress.stage("session")
        sess = session if foreign is not None else _session(model)
        progress.stage("compare")
        module64 = copy.deepcopy(module).double() if rule.mode == "float64" else None
        with torch.no_grad():
            refs = _tensors(module(torch.from_numpy(x.copy())))
            refs64 = _tensors(module64(torch.from_numpy(x).double())) if module64 else None
        refs = [r.numpy() for r in refs][:len(names_out)]
        refs64 = [r.numpy() for r in refs64][:len(names_out)] if refs64 else [None] * len(refs)
        del module64
        problem = None
        try:
            gots = sess.run(names_out, {name_in: x})
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            gots, problem = None, f"onnxruntime fails to run the graph: {_first_line(e)}"
        if gots is None:
            per = {n: _mismatch(problem, numerical=rule.mode == "float64") for n in names_out}
        else:
            per = {n: rule.judge(np, got, ref, ref64)
                   for n, got, ref, ref64 in zip(names_out, gots, refs, refs64)}
        # the seed's figures are its worst output's
        k = max(range(len(names_out)), key=lambda i: (not per[names_out[i]].ok,
                                                      per[names_out[i]].used or 0.0))
        m = per[names_out[k]]
        problem = problem or m.problem
        runs.append(SeedRun(s, m))
        if worst is None or (not m.ok, m.used) > (not worst[0].ok, worst[0].used):
            # the shape is the first output's (the network's output_shape), the scale the
            # worst one's
            worst = (m, s, _largest(np, refs[k]), list(refs[0].shape[1:]), problem, per,
                     names_out[k])
        del model, sess
    m, s, reference_max, output_shape, problem, per, worst_name = worst
    report = ParityReport(
        net.name, m.ok, m.max_abs, m.max_rel, batch, rule.rtol, rule.atol, s,
        (foreign.opset if foreign else opset or DEFAULT_OPSET), output_shape, reference_max,
        notes=notes, mode=rule.mode, onnx_error=m.onnx_error, torch_error=m.torch_error,
        factor=rule.factor, floor=rule.floor, runs=runs,
        onnx_file=foreign.path if foreign else None, weights=weights,
        outputs=per if len(per) > 1 else {}, output=worst_name if len(per) > 1 else None)
    if problem:
        report.notes.append(problem)
    if not m.ok:
        progress.stage("localise")
        module, model, x = prepare(s, full=True)
        report.first_divergence = _localise(net, module, model, name_in, x, rule, report.notes,
                                            foreign.path if foreign else None)
    return report


def _tensors(result) -> list:
    """A module's output as a list of tensors: one, or the tuple `output NAME, ...` returns."""
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _initializers(weights: dict):
    """TensorProtos of a Built's weights (for a ModelProto that holds them)."""
    from onnx import numpy_helper
    return [numpy_helper.from_array(arr, name) for name, arr in weights.items()]


def _input(np, net: Network, seed: int, batch: int):
    # from its own stream: the seeded weights draw from default_rng(seed)
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal((batch, *net.input_shape), dtype=np.float32)


def _session(model, path: str | None = None, foreign: str | None = None):
    """A CPU session of `model` (read from `path` when given, which finds external data).
    For a graph made elsewhere (`foreign` labels it), a graph onnxruntime refuses is an
    OnnxFileError; for archgen's own graph it is archgen's bug and raises as it is."""
    ort = require("onnxruntime", "onnx", "parity")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if path is not None:
        source = path
    elif hasattr(model, "tobytes"):  # emit_onnx.Built: serialised once, weights streamed in
        source = model.tobytes()
    else:
        source = model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        if foreign is None:
            raise
        raise OnnxFileError(f"onnxruntime cannot load {foreign}: {_first_line(e)}") from None


# -- localisation -------------------------------------------------------------------------------

def _localise(net: Network, module, model, name_in: str, x, rule: Rule, notes: list[str],
              onnx_file: str | None) -> Divergence | None:
    """The first layer whose ONNX output fails `rule` against the module's, or None with a
    note saying why there is none."""
    measures = layer_measures(net, module, model, name_in, x, rule, notes, onnx_file)
    if measures is None:
        return None
    for layer, m, shape in measures:
        if not m.ok:
            s = layer.span
            return Divergence(layer.path, layer.op, f"{s.file}:{s.line}:{s.column}",
                              m.max_abs, m.max_rel, shape, m.onnx_error, m.torch_error,
                              m.problem)
    missing = len(list(net.layers())) - len(measures)
    if missing:
        notes.append(f"{missing} of the spec's layers have no node of their name in "
                     f"{onnx_file or 'the graph'}; the others agree")
    else:
        notes.append("every layer's output agrees: the difference arises in an add or concat")
    return None


def layer_measures(net: Network, module, model, name_in: str, x, rule: Rule,
                   notes: list[str], onnx_file: str | None = None
                   ) -> list[tuple[Layer, Measure, list[int]]] | None:
    """Every layer's output compared by `rule`, in forward order: (layer, measure, ONNX shape
    without the batch) for each layer that has a node of its path's name in `model` and a
    submodule in `module` (which holds the weights already). None, with a note, when the graph
    names no node after a layer or cannot run with the layers' outputs exposed."""
    torch = require("torch", "torch", "parity")
    np = require("numpy", "onnx", "parity")
    onnx = require("onnx", "onnx", "parity")

    layers: list[Layer] = list(net.layers())
    # the node named after a layer's path produces that layer's output
    value_of = {n.name: n.output[0] for n in model.graph.node if n.output}
    if not any(layer.path in value_of for layer in layers):
        example = next((n.name for n in model.graph.node if n.name), None)
        named = f" (they are named like '{example}')" if example else " (they have no names)"
        notes.append(f"no first diverging layer: the nodes of {onnx_file or 'the graph'} are "
                     f"not named after the spec's layer paths{named}, as archgen's export "
                     f"names them")
        return None
    exposed = type(model)()
    exposed.CopyFrom(model)
    listed = {o.name for o in exposed.graph.output}
    for layer in layers:
        value = value_of.get(layer.path)
        if value is not None and value not in listed:
            exposed.graph.output.append(
                onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None))
            listed.add(value)
    names = [o.name for o in exposed.graph.output]
    try:
        onnx_out = dict(zip(names, _session(exposed).run(names, {name_in: x})))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        notes.append(f"no first diverging layer: onnxruntime cannot run the graph with its "
                     f"layers' outputs exposed: {_first_line(e)}")
        return None
    del exposed

    modules = [module] + ([copy.deepcopy(module).double()] if rule.mode == "float64" else [])
    captured: list[dict[str, object]] = [{} for _ in modules]
    handles = []
    for layer in layers:
        if layer.kind.parameter:  # layer_scale: a parameter of its module, no module to hook
            continue
        for m, seen in zip(modules, captured):
            try:
                sub = m.get_submodule(layer.path)
            except AttributeError:
                if m is module:
                    notes.append(f"the PyTorch module has no submodule '{layer.path}' to "
                                 f"compare")
                continue

            def hook(_mod, _inp, out, path=layer.path, seen=seen):
                seen[path] = out.detach().clone()  # clone: a later in-place op may change it

            handles.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.from_numpy(x.copy()))
            if len(modules) > 1:
                modules[1](torch.from_numpy(x).double())
    finally:
        for h in handles:
            h.remove()

    out = []
    for layer in layers:
        value = value_of.get(layer.path)
        if value not in onnx_out or layer.path not in captured[0]:
            continue
        ref, got = captured[0][layer.path].numpy(), onnx_out[value]
        ref64 = captured[1][layer.path].numpy() if len(captured) > 1 else None
        out.append((layer, rule.judge(np, got, ref, ref64), list(got.shape[1:])))
    return out
