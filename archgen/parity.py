"""Proof that the two targets compute the same function: the generated PyTorch module and the
ONNX graph (on onnxruntime's CPU provider) get the very same weights and inputs, and their
outputs must agree within rtol/atol: |onnx - torch| <= atol + rtol * max|torch| on every element.

rtol is relative to the output tensor's magnitude, not to each element as in numpy.allclose:
float32 rounding is relative to the operands of the sums that made an element, so an element
that happens to lie near zero carries the rounding of its large neighbours. Per element, a
50-layer network fails even against float64 PyTorch (ResNet-50 at unit-scale outputs: float32
PyTorch is 2e-5 from float64 PyTorch); per tensor, a real export bug (a wrong pad, a swapped
weight) still shows at 1e-2 to 1e0, orders of magnitude above the tolerance.

When they do not, both run again with every layer's output exposed (forward hooks at the layer's
module path; the ONNX graph's intermediate outputs) and the first layer in forward order whose
output differs is reported with its path, op and place in the spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .extras import require
from .ir import Layer, Network
from .weights import check_state, initial_state


@dataclass
class Divergence:
    """The first layer whose output differs."""

    path: str
    op: str
    location: str  # file:line:col in the spec
    max_abs: float
    max_rel: float
    shape: list[int]

    def to_json(self) -> dict:
        return {"path": self.path, "op": self.op, "location": self.location,
                "max_abs": _number(self.max_abs), "max_rel": _number(self.max_rel),
                "shape": self.shape}


def _number(v: float) -> float | str:
    """JSON has no infinity: a non-finite error becomes the string "inf" or "nan"."""
    return v if math.isfinite(v) else str(v)


@dataclass
class ParityReport:
    network: str
    ok: bool
    max_abs: float
    max_rel: float
    batch: int
    rtol: float
    atol: float
    seed: int
    opset: int
    output_shape: list[int]
    reference_max: float  # the largest |output| of PyTorch: the scale the errors compare to
    first_divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        head = (f"parity {self.network}: {verdict}: max abs error {self.max_abs:.3g}, "
                f"{self.max_rel:.3g} of the outputs' magnitude {self.reference_max:.3g} "
                f"(rtol {self.rtol:g}, atol {self.atol:g}; batch {self.batch}, seed {self.seed}, "
                f"onnxruntime CPU, opset {self.opset})")
        lines = [head]
        d = self.first_divergence
        if d is not None:
            lines.append(f"  first diverging layer: {d.path} ({d.op}) at {d.location}: "
                         f"max abs error {d.max_abs:.3g}, {d.max_rel:.3g} of its magnitude")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"network": self.network, "ok": self.ok, "max_abs": _number(self.max_abs),
                "max_rel": _number(self.max_rel), "batch": self.batch, "rtol": self.rtol,
                "atol": self.atol, "seed": self.seed, "opset": self.opset,
                "output_shape": self.output_shape, "reference_max": self.reference_max,
                "first_divergence": (self.first_divergence.to_json()
                                     if self.first_divergence else None),
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


def _torch_module(net: Network):
    from .emit_torch import load_module
    return load_module(net)


def run_parity(net: Network, *, state_dict: Mapping | None = None, seed: int = 0,
               batch: int = 2, rtol: float = 1e-4, atol: float = 1e-5,
               opset: int | None = None,
               onnx_state_dict_override: Mapping | None = None) -> ParityReport:
    """Compare the generated PyTorch module with the ONNX graph on `batch` random inputs.

    `onnx_state_dict_override` replaces some entries on the ONNX side only: a deliberate
    discrepancy, for testing that the report finds it."""
    check_batch(batch)
    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    torch = require("torch", "torch", "parity")
    np = require("numpy", "onnx", "parity")
    from .emit_onnx import DEFAULT_OPSET, build_onnx

    state = check_state(net, state_dict) if state_dict is not None else initial_state(net, seed)
    onnx_state = dict(state)
    if onnx_state_dict_override:
        onnx_state.update(onnx_state_dict_override)
    module = _torch_module(net)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        from .emit_onnx import InternalError
        raise InternalError(f"the generated PyTorch module's state_dict does not have the "
                            f"network's weight entries: {e}") from None
    module.eval()

    # inputs from their own stream: the seeded weights draw from default_rng(seed)
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((batch, *net.input_shape), dtype=np.float32)
    model = build_onnx(net, opset=opset, state_dict=onnx_state)
    with torch.no_grad():
        ref = module(torch.from_numpy(x.copy())).numpy()
    got = _session(model).run(["output"], {"input": x})[0]
    report = ParityReport(net.name, True, 0.0, 0.0, batch, rtol, atol, seed,
                          opset or DEFAULT_OPSET, list(ref.shape[1:]),
                          _largest(np, ref))
    if ref.shape != got.shape:
        report.ok = False
        report.max_abs = report.max_rel = math.inf
        report.notes.append(f"PyTorch gives the shape {list(ref.shape)}, ONNX {list(got.shape)}")
    else:
        report.ok, report.max_abs, report.max_rel = _compare(np, got, ref, rtol, atol)
    if not report.ok:
        report.first_divergence = _localise(net, module, onnx_state, opset, x, rtol, atol,
                                            report.notes)
    return report


def _largest(np, values) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _compare(np, got, ref, rtol: float, atol: float) -> tuple[bool, float, float]:
    """The verdict |got - ref| <= atol + rtol * max|ref| on every element (equal infinities
    agree, NaN never does), the largest absolute error, and the largest error relative to the
    tensor's magnitude (inf where non-finite values differ)."""
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    finite = np.isfinite(got) & np.isfinite(ref)
    diff = np.abs(np.where(finite, got, 0.0) - np.where(finite, ref, 0.0))
    scale = float(np.abs(np.where(finite, ref, 0.0)).max()) if ref.size else 0.0
    close = np.where(finite, diff <= atol + rtol * scale, got == ref)
    if close.size == 0:
        return True, 0.0, 0.0
    if not (finite | (got == ref)).all():
        return False, math.inf, math.inf
    rel = float(diff.max()) / max(scale, float(np.finfo(np.float32).tiny))
    return bool(close.all()), float(diff.max()), rel


def _session(model):
    ort = require("onnxruntime", "onnx", "parity")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _localise(net: Network, module, onnx_state: dict, opset, x, rtol: float, atol: float,
              notes: list[str]) -> Divergence | None:
    torch = require("torch", "torch", "parity")
    np = require("numpy", "onnx", "parity")
    from .emit_onnx import build_onnx

    model = build_onnx(net, opset=opset, state_dict=onnx_state, intermediates=True)
    # the node named after a layer's path produces that layer's output
    value_of = {n.name: n.output[0] for n in model.graph.node}
    names = [o.name for o in model.graph.output]
    onnx_out = dict(zip(names, _session(model).run(names, {"input": x})))

    captured: dict[str, object] = {}
    handles = []
    layers: list[Layer] = list(net.layers())
    for layer in layers:
        try:
            sub = module.get_submodule(layer.path)
        except AttributeError:
            notes.append(f"the PyTorch module has no submodule '{layer.path}' to compare")
            continue

        def hook(_mod, _inp, out, path=layer.path):
            captured[path] = out.detach().clone()  # clone: a later in-place op may change it

        handles.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.from_numpy(x.copy()))
    finally:
        for h in handles:
            h.remove()

    for layer in layers:
        value = value_of.get(layer.path)
        if layer.path not in captured or value not in onnx_out:
            continue
        ref, got = captured[layer.path].numpy(), onnx_out[value]
        if ref.shape != got.shape:
            ok, max_abs, max_rel = False, math.inf, math.inf
        else:
            ok, max_abs, max_rel = _compare(np, got, ref, rtol, atol)
        if not ok:
            s = layer.span
            return Divergence(layer.path, layer.op, f"{s.file}:{s.line}:{s.column}", max_abs,
                              max_rel, list(got.shape[1:]))
    notes.append("every layer's output agrees: the difference arises in an add or concat")
    return None
