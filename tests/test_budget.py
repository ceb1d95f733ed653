"""Memory preflight: a network whose weights or activations cannot fit is refused before anything
is allocated, with the figures; and the exporter's last resort turns unexpected failures into
one-line internal errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen import budget, emit_onnx
from archgen.budget import Available, MemoryBudgetError, available_memory, check_memory, estimate
from archgen.cli import main
from archgen.quoting import InternalError

ROOT = Path(__file__).resolve().parents[1]
# within every limit of the checker (a layer's weights stay below 2**32), 122 GiB of float32
HUGE = """network Huge
input [256, 1, 1]
block wide():
    conv2d(16000000, 1)
    conv2d(256, 1)
repeat 4: wide()
"""


@pytest.fixture
def huge(tmp_path) -> Path:
    path = tmp_path / "huge.cnn"
    path.write_text(HUGE)
    return path


def test_a_huge_network_passes_check(huge):
    assert archgen.load(huge).ok


@pytest.mark.parametrize("args", [["export", "-o", "{tmp}/huge.onnx"], ["parity"],
                                  ["compile", "--target", "onnx", "-o", "{tmp}/out"]])
def test_commands_refuse_it_in_one_line(huge, tmp_path, args):
    start = time.perf_counter()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, [argv[0], str(huge), *argv[1:]])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Huge does not fit in memory" in lines[0]
    assert "Traceback" not in result.output
    assert "122.3 GiB of float32 parameters" in lines[0] and "layers.0.0 at line 4" in lines[0]
    assert "MemAvailable" in lines[0] or "RLIMIT_AS" in lines[0]
    assert not (tmp_path / "huge.onnx").exists() and not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 20


def test_the_api_refuses_it(huge):
    arch = archgen.load(huge)
    with pytest.raises(MemoryBudgetError, match="building the PyTorch module"):
        arch.to_torch_module()
    with pytest.raises(MemoryBudgetError, match="exporting it"):
        arch.to_onnx()


def test_refused_under_a_2_gb_address_space_cap(huge):
    """The reproduction of the report: export ends cleanly, fast, where it used to die in
    numpy's allocator."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
        from archgen.cli import main
        sys.argv = ["archgen", "export", {str(huge)!r}, "-o", {str(huge) + ".onnx"!r}]
        main()
    """)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert "does not fit in memory" in out.stderr and "Traceback" not in out.stderr
    assert "RLIMIT_AS" in out.stderr
    assert time.perf_counter() - start < 20


def test_available_memory_honours_rlimit_as():
    code = textwrap.dedent("""
        import resource
        from archgen.budget import available_memory
        limit = 3 * 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        avail = available_memory()
        assert avail.bytes is not None and avail.bytes < limit, avail
        assert any(s.startswith("RLIMIT_AS") for s in avail.sources), avail
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_available_memory_reads_meminfo():
    avail = available_memory()
    if Path("/proc/meminfo").exists():
        assert avail.bytes is not None and avail.bytes > 0
        assert any(s.startswith("MemAvailable") for s in avail.sources)


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_cgroup_limit_less_working_set(tmp_path, layout):
    """A container's limit counts, less what it uses, not counting the file cache the kernel
    reclaims first; a cgroup without a limit counts for nothing."""
    proc = tmp_path / "cgroup"
    if layout == "v2":
        proc.write_text("0::/ci/job\n")
        path = tmp_path / "ci" / "job"
        files = {"memory.max": "4294967296", "memory.current": "3221225472",
                 "memory.stat": "anon 1073741824\ninactive_file 2147483648\n"}
    else:
        proc.write_text("5:cpu:/\n4:memory:/ci/job\n0::/\n")
        path = tmp_path / "memory" / "ci" / "job"
        files = {"memory.limit_in_bytes": "4294967296", "memory.usage_in_bytes": "3221225472",
                 "memory.stat": "cache 2147483648\ntotal_inactive_file 2147483648\n"}
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    assert budget._cgroup_left(str(proc), tmp_path) == 3 * 2**30
    (path / ("memory.max" if layout == "v2" else "memory.limit_in_bytes")).write_text(
        "max\n" if layout == "v2" else "9223372036854771712\n")
    assert budget._cgroup_left(str(proc), tmp_path) is None


def test_the_estimate_counts_float32_weights_and_the_largest_activation():
    seed = archgen.load(ROOT / "examples" / "seed_cnn.cnn").network
    est = estimate(seed, "export")
    assert est.param_bytes == 541_094 * 4
    assert est.batch == 2 and est.activation_bytes == 16 * 32 * 32 * 4 * 2
    assert est.copies == budget.COPIES["export"]
    assert est.needed == 3 * est.param_bytes + 3 * est.activation_bytes
    vgg = archgen.load(ROOT / "examples" / "vgg16.cnn").network
    assert estimate(vgg, "parity", batch=8).activation_bytes == 64 * 224 * 224 * 4 * 8
    # batchnorm buffers are counted with the weights (num_batches_tracked as 4 bytes)
    bn = archgen.parse("input [2, 4, 4]\nbatchnorm2d()\n").network
    assert estimate(bn, "module").param_bytes == (2 + 2 + 2 + 2 + 1) * 4


def test_check_memory_compares_with_what_is_available():
    seed = archgen.load(ROOT / "examples" / "seed_cnn.cnn").network
    needed = estimate(seed, "export").needed
    assert check_memory(seed, "export", available=Available(needed, ["test"])).needed == needed
    with pytest.raises(MemoryBudgetError) as err:
        check_memory(seed, "export", available=Available(needed - 1, ["test limit 6.3 MiB"]))
    message = str(err.value)
    assert "\n" not in message and "test limit 6.3 MiB" in message
    assert "3 x 2.1 MiB of float32 parameters" in message and "at batch 2" in message
    check_memory(seed, "export", available=Available(None, []))  # nothing known: no refusal


def test_allocator_failure_is_a_budget_error(monkeypatch):
    net = archgen.load(ROOT / "examples" / "seed_cnn.cnn").network

    def out_of_memory(*_a, **_k):
        raise MemoryError

    monkeypatch.setattr(emit_onnx, "initial_state", out_of_memory)
    with pytest.raises(MemoryBudgetError, match="allocator refused"):
        emit_onnx.build_onnx(net)


def test_unexpected_export_failure_is_an_internal_error(monkeypatch, tmp_path):
    spec = tmp_path / "seed.cnn"
    spec.write_text((ROOT / "examples" / "seed_cnn.cnn").read_text())

    def broken(*_a, **_k):
        raise KeyError("boom")

    monkeypatch.setattr(emit_onnx, "_validate", broken)
    with pytest.raises(InternalError, match="KeyError"):
        emit_onnx.build_onnx(archgen.load(spec).network)
    result = CliRunner().invoke(main, ["export", str(spec), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "internal error (this is an archgen bug" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.onnx").exists()
