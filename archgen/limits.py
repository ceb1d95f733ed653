"""The limits that keep checking any spec bounded in time, memory and stack depth.

`archgen check` runs on untrusted specs (pull requests in CI), so no input may crash it, hang it
or exhaust its memory. Each limit is far beyond any real CNN and is reported as a located
diagnostic that names it (README, "Reliability", says why each number was chosen):

- MAX_INT (E303): integers, written or computed, fit int64, the type PyTorch and ONNX store
  every size in. Arithmetic on them then costs O(1) and prints in at most 20 digits.
- MAX_SIZE (E304): a size argument (channels, features, kernel, stride, padding, dilation,
  groups, output size, scale factor) and every dimension of every shape, 2**24: 64 times the
  widest layer of the zoo's largest nets (linear's 25,088 features in VGG16).
- MAX_ELEMENTS (E411, E412): one tensor's elements per sample and one layer's weights, 2**32:
  16 GiB in float32, more than a whole accelerator holds for one sample or one layer.
- MAX_NESTING (E305): indentation, parentheses, operators and blocks within blocks, each at
  most 32 deep, so that no stage of archgen recurses deeper than a few hundred frames.
- MAX_ARGS (E305): 64 arguments in one call or parameters in one block (PyTorch's widest layer
  signature has 9), so that the work per argument (hints list the others) stays bounded.
- MAX_SOURCE, MAX_LINES (E305): a spec of at most 1,000,000 characters and 50,000 statement
  lines (the zoo's largest is 2 KB); reading is linear, ~90 us a line, so this bounds it to a
  few seconds and tokens to a few hundred MB whatever the file.
- MAX_TOKEN (E305): names, strings and floats of at most 256 characters: messages and hints
  quote them once per expanded use, so their length must not multiply the work.
- RF_CAP: receptive fields saturate at 2**53 pixels instead of overflowing to infinity (JSON
  shows a saturated value as null with "saturated": true).
- MAX_EXPANDED (E305): steps of the expansion of blocks, repeats and ifs (a statement, an
  argument or a value computed is one step), 100,000: the zoo's largest, DenseNet-121, takes
  1,896 steps for 427 layers; a spec that reaches it is checked in about 5 s and 100 MB. A
  layer call identical to an earlier clean one (same kind, written arguments and input shape:
  every copy of a repeat after the first) reuses its outcome and costs no step, only a layer.
  It stays at a tenth of MAX_LAYERS because a step is work done in full (6-25 us: at 1,000,000
  steps, 60 refused arguments copied 20,000 times took 28 s, past the 20 s any spec must end
  in, issue 8). A block instance costs steps (~10 for a 7-layer residual block), so networks
  built of block calls stop near 100,000 layers; a million layers come from reused calls.
- MAX_LAYERS (E305): layer calls of the expanded network, 1,000,000. A reused call costs ~7 us
  and ~450 bytes (README, "Benchmarks": a million layers check in ~7 s and ~500 MB), and
  nothing after checking keeps more than a few hundred bytes a layer: `check --format json`
  and `summary` write their records and rows as they make them (report.write_json,
  summary.summary_lines) instead of building the whole document or table. A repeat whose
  copies alone would pass both limits (each call costs a step, a layer or both) is refused
  before expanding; the running counts stop whatever else would. Out of memory all the same
  (a tighter ulimit): one line, exit 1, never a traceback.
"""

from __future__ import annotations

MAX_INT = 2**63 - 1
MAX_SIZE = 2**24
MAX_ELEMENTS = 2**32
MAX_NESTING = 32
MAX_ARGS = 64  # arguments in one call, parameters of one block
MAX_SOURCE = 1_000_000  # characters of one spec
MAX_LINES = 50_000  # statement lines of one spec
MAX_TOKEN = 256  # characters of one name, string or float
MAX_EXPANDED = 100_000
MAX_LAYERS = 1_000_000  # layer calls of the expanded network
RF_CAP = float(2**53)  # receptive fields saturate here, where floats stop counting every integer
MAX_SAME_LINE = 3  # diagnostics of one code on one line shown before the rest are folded


def int_in_range(v: int) -> bool:
    return -MAX_INT - 1 <= v <= MAX_INT
