"""Memory preflight: refuse, before allocating anything, a network whose weights or activations
would not fit in the memory this process can still get.

The checker accepts networks of any size (a conv2d with 10^9 channels is well-formed); the
targets that materialise weights (`export`, `parity`, `to_torch_module()`) would then die in
numpy's or PyTorch's allocator, or be killed by the kernel. `check_memory` estimates what a
target holds at its peak and compares it with the smallest of: MemAvailable in /proc/meminfo,
the address space left under RLIMIT_AS, and what the memory cgroup (v1 or v2) leaves.

The estimate: `copies` float32 copies of the parameters (and buffers) at once, measured on VGG16
(553 MB of float32 weights): a module holds 1; export holds 3 (the seeded state, the module
that calibrates it and the calibrated copy; then the ONNX model's initializers), peaking at
3.1x; parity holds 7: the calibrated module, onnxruntime's session and the float64 copy that
judges both (two float32 copies' worth), peaking at 6.6x (3.67 GB, measured after the float64
verdict was added);
building a graph from weights already in memory ("onnx") adds 2 (its initializers and their
serialised bytes).
Add three activations of the largest layer output at the batch used (a layer's input, its
output and a branch kept for an add or concat).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .ir import Layer, Merge, Network, walk

FLOAT32 = 4
# float32 copies of the weights each purpose holds at its peak (see the module docstring)
COPIES = {"module": 1, "export": 3, "onnx": 2, "parity": 7}
# the batch each purpose runs: export calibrates its seeded weights on a batch of 2
BATCH = {"module": 1, "export": 2}
LIVE_ACTIVATIONS = 3


class MemoryBudgetError(Exception):
    """The network would not fit in memory; the message (one line) gives the figures."""


@dataclass(frozen=True)
class MemoryEstimate:
    purpose: str
    param_bytes: int  # parameters and buffers at float32, one copy
    activation_bytes: int  # the largest layer output at `batch`, float32
    activation_at: str  # which layer gives it
    batch: int
    copies: int

    @property
    def needed(self) -> int:
        return self.copies * self.param_bytes + LIVE_ACTIVATIONS * self.activation_bytes


def estimate(net: Network, purpose: str, batch: int | None = None) -> MemoryEstimate:
    """What `purpose` ("module", "export" or "parity") holds at its peak for `net`."""
    from .weights import state_entries  # light: no torch, no numpy
    batch = BATCH.get(purpose, 2) if batch is None else batch
    params = sum(_product(e.shape) for e in state_entries(net)) * FLOAT32
    largest, where = _product(net.input_shape), "the input"
    for node in walk(net.root):
        size = _product(node.out_shape)
        if size > largest and isinstance(node, (Layer, Merge)):  # what computes a value
            largest, where = size, f"{node.path or node.op} at line {node.span.line}"
    return MemoryEstimate(purpose, params, largest * batch * FLOAT32, where, batch,
                          COPIES[purpose])


@dataclass(frozen=True)
class Available:
    bytes: int | None  # None: nothing known
    sources: list[str]  # each limit found, for the message


def available_memory() -> Available:
    """The least of the memory limits this process is under (None where none is known)."""
    found: list[tuple[int, str]] = []
    meminfo = _read_kib("/proc/meminfo", "MemAvailable:")
    if meminfo is not None:
        found.append((meminfo, "MemAvailable"))
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = _read_kib("/proc/self/status", "VmSize:") or 0
            found.append((max(soft - used, 0), "RLIMIT_AS less the address space in use"))
    except (ImportError, OSError, ValueError):
        pass
    cgroup = _cgroup_left()
    if cgroup is not None:
        found.append((cgroup, "the cgroup's limit less its working set"))
    if not found:
        return Available(None, [])
    return Available(min(b for b, _ in found), [f"{name} {_size(b)}" for b, name in found])


def check_memory(net: Network, purpose: str, batch: int | None = None,
                 available: Available | None = None) -> MemoryEstimate:
    """Raise MemoryBudgetError when `purpose` would need more memory than is available;
    otherwise return the estimate."""
    est = estimate(net, purpose, batch)
    avail = available_memory() if available is None else available
    if avail.bytes is not None and est.needed > avail.bytes:
        raise MemoryBudgetError(
            f"{net.name} does not fit in memory: {_VERB[purpose]} needs about "
            f"{_size(est.needed)} ({est.copies} x {_size(est.param_bytes)} of float32 "
            f"parameters, {LIVE_ACTIVATIONS} x {_size(est.activation_bytes)} for the largest "
            f"activation, {est.activation_at}, at batch {est.batch}) but "
            f"{_size(avail.bytes)} is available ({', '.join(avail.sources)}); "
            f"nothing was allocated")
    return est


_VERB = {"module": "building the PyTorch module", "export": "exporting it",
         "onnx": "building its ONNX graph",
         "parity": "comparing PyTorch and ONNX Runtime"}


def _product(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _size(n: int) -> str:
    """A byte count for people, safe for integers of any size.

    >>> _size(1536), _size(553 * 2**20), _size(27 * 10**9 * 4), _size(2**200)
    ('1.5 KiB', '553.0 MiB', '100.6 GiB', 'about 2^200 bytes')
    """
    if n.bit_length() > 70:  # beyond a zebibyte: no float rounding, no digit limit
        return f"about 2^{n.bit_length() - 1} bytes"
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                        ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _read_kib(path: str, key: str) -> int | None:
    """A `Key:   1234 kB` line of a /proc file, in bytes."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left(proc: str = "/proc/self/cgroup",
                 root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's memory cgroup leaves: its limit less its working set (usage less
    the inactive file cache, which the kernel reclaims first), as container runtimes count it.
    cgroup v2 (memory.max) and v1 (memory.limit_in_bytes), at the path /proc/self/cgroup names
    or at the mount's root (inside a container's namespace); None without a limit."""
    layouts = {"v2": ("memory.max", "memory.current", "inactive_file"),
               "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}
    dirs: list[tuple[Path, str]] = []
    try:
        with open(proc, encoding="ascii", errors="replace") as f:
            for line in f:
                _, controllers, rel = (line.rstrip("\n").split(":", 2) + ["", ""])[:3]
                if controllers == "":
                    base, kind = root, "v2"
                elif "memory" in controllers.split(","):
                    base, kind = root / "memory", "v1"
                else:
                    continue
                dirs += [(base / rel.lstrip("/"), kind), (base, kind)]
    except OSError:
        return None
    found = []
    for path, kind in dirs:
        limit_file, usage_file, inactive_key = layouts[kind]
        try:
            limit_text = (path / limit_file).read_text().strip()
            if limit_text == "max" or int(limit_text) >= 2**60:  # v1 writes "no limit" so
                continue
            usage = int((path / usage_file).read_text())
            stat = (path / "memory.stat").read_text().split("\n")
            inactive = next((int(line.split()[1]) for line in stat
                             if line.startswith(inactive_key + " ")), 0)
            found.append(max(int(limit_text) - (usage - inactive), 0))
        except (OSError, ValueError, IndexError):
            continue
    return min(found) if found else None
