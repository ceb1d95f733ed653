"""Paths and option values: every misuse is one line on stderr and exit 2, never a traceback,
and nothing is half-written. Outputs get 0666 minus the umask, are fsynced, and a write
interrupted by SIGINT, SIGTERM or SIGHUP leaves no temp file."""

from __future__ import annotations

import errno
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from archgen import fsutil
from archgen.cli import main
from archgen.fsutil import OutputError, write_atomic

ROOT = Path(__file__).resolve().parents[1]
SPEC = "network Tiny\ninput [3, 8, 8]\nconv2d(4, 3)\nrelu()\nflatten()\nlinear(2)\n"


@pytest.fixture
def spec(tmp_path: Path) -> str:
    path = tmp_path / "tiny.cnn"
    path.write_text(SPEC)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_usage_error(result, *words: str) -> str:
    """Exit 2, exactly one line on stderr starting with 'error:', nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def no_temp_files(directory: Path) -> None:
    left = [p.name for p in directory.rglob(".*.tmp")]
    assert left == [], left


# -- input paths -----------------------------------------------------------------------------

COMMANDS = [["check"], ["summary"], ["compile", "--print"], ["export", "-o", "x.onnx"],
            ["parity"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_spec_below_a_file(tmp_path, command):
    (tmp_path / "afile").write_text("")
    result = run(*command, tmp_path / "afile" / "x.cnn")
    one_line_usage_error(result, "no such file", "afile is a file, not a directory")


@pytest.mark.parametrize("command", COMMANDS[1:], ids=lambda c: c[0])  # `check DIR` searches it
def test_spec_that_is_a_directory(tmp_path, command):
    one_line_usage_error(run(*command, tmp_path), "is a directory, not a .cnn spec")


def test_missing_spec():
    one_line_usage_error(run("check", "does/not/exist.cnn"), "no such file: does/not/exist.cnn")


def test_spec_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.cnn"
    path.write_bytes("input [3, 8, 8]  # café\n".encode("latin-1"))
    one_line_usage_error(run("check", path), "not a UTF-8 text file", "0xe9")


def test_unreadable_spec(tmp_path, monkeypatch, spec):
    import archgen.cli

    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(archgen.cli, "load", denied)
    one_line_usage_error(run("check", spec), f"cannot read {spec}: Permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads any file whatever its mode")
def test_unreadable_spec_for_real(tmp_path, spec):
    os.chmod(spec, 0)
    one_line_usage_error(run("check", spec), "Permission denied")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_device_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.cnn"
    os.mkfifo(fifo)
    # in a subprocess with a timeout: reading a FIFO with no writer would block for ever
    for path in (fifo, "/dev/null"):
        out = subprocess.run([sys.executable, "-m", "archgen.cli", "check", str(path)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        expected = f"error: {path} is not a regular file (a FIFO, socket or device)"
        assert out.stderr.splitlines() == [expected]


# -- output paths ----------------------------------------------------------------------------

def test_compile_into_an_existing_file(tmp_path, spec):
    target = tmp_path / "build"
    target.write_text("keep me")
    one_line_usage_error(run("compile", spec, "-o", target), "build is a file, not a directory")
    assert target.read_text() == "keep me"


def test_compile_below_a_file(tmp_path, spec):
    (tmp_path / "afile").write_text("keep me")
    one_line_usage_error(run("compile", spec, "-o", tmp_path / "afile" / "sub"),
                         "cannot create", "afile is a file, not a directory")
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("form", ["existing", "slash"])
def test_export_into_a_directory_writes_network_onnx(tmp_path, spec, form):
    pytest.importorskip("onnx")
    target = tmp_path / "models"
    if form == "existing":
        target.mkdir()
        arg = str(target)
    else:
        arg = str(target) + "/"
    result = run("export", spec, "-o", arg)
    assert result.exit_code == 0, result.output
    assert (target / "tiny.onnx").is_file()
    assert f"wrote {target / 'tiny.onnx'}" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["tiny.onnx"]


def test_export_below_a_file(tmp_path, spec):
    (tmp_path / "afile").write_text("")
    for arg in (tmp_path / "afile" / "x.onnx", str(tmp_path / "afile") + "/"):
        one_line_usage_error(run("export", spec, "-o", arg), "afile is a file, not a directory")
    assert (tmp_path / "afile").read_text() == ""


@pytest.mark.parametrize("command", [["compile", "-o", ""], ["export", "-o", ""]],
                         ids=["compile", "export"])
def test_empty_output_path(spec, command):
    one_line_usage_error(run(command[0], spec, *command[1:]), "an empty path")


# -- option values ---------------------------------------------------------------------------

def test_opset_out_of_range_names_the_range_and_not_circular_padding(tmp_path, spec):
    onnx = pytest.importorskip("onnx")
    from archgen.emit_onnx import MIN_OPSET
    newest = onnx.defs.onnx_opset_version()
    for opset in (5, MIN_OPSET - 1, newest + 1, 99):
        line = one_line_usage_error(run("export", spec, "-o", tmp_path / "x.onnx", "--opset",
                                        opset), "--opset", f"opsets {MIN_OPSET} to {newest}")
        assert "circular" not in line
    assert not (tmp_path / "x.onnx").exists()
    result = run("export", spec, "-o", tmp_path / "x.onnx", "--opset", MIN_OPSET)
    assert result.exit_code == 0, result.output
    assert f"opset {MIN_OPSET}" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--batch", "0"], "at least 1"),
    (["--batch", "-1"], "at least 1"),
    (["--rtol", "nan"], "finite and at least 0"),
    (["--rtol", "-1"], "finite and at least 0"),
    (["--rtol", "inf"], "finite and at least 0"),
    (["--atol", "inf"], "finite and at least 0"),
    (["--atol", "-1e-9"], "finite and at least 0"),
    (["--atol", "nan"], "finite and at least 0"),
    (["--seed", "-1"], "from 0 to 2**64 - 1"),
    (["--seed", str(2**64)], "from 0 to 2**64 - 1"),
    (["--batch", "two"], "'two' is not a valid integer"),
])
def test_parity_option_ranges(spec, args, words):
    one_line_usage_error(run("parity", spec, *args), args[0], words)


def test_export_seed_range(tmp_path, spec):
    one_line_usage_error(run("export", spec, "-o", tmp_path / "x.onnx", "--seed", "-1"),
                         "--seed")


def test_parity_api_validates_too():
    from archgen.parity import check_batch, check_tolerance
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="at least 1"):
            check_batch(bad)
    for bad in (math.nan, math.inf, -math.inf, -1.0):
        with pytest.raises(ValueError, match="finite and at least 0"):
            check_tolerance("rtol", bad)
    assert check_batch(1) == 1 and check_tolerance("atol", 0) == 0.0


@pytest.mark.parametrize("command", ["export", "parity"])
def test_weights_path_problems(tmp_path, spec, command):
    out = ["-o", str(tmp_path / "x.onnx")] if command == "export" else []
    one_line_usage_error(run(command, spec, *out, "--weights", tmp_path / "no.pt"),
                         "--weights", "no such file")
    one_line_usage_error(run(command, spec, *out, "--weights", tmp_path), "is a directory")
    (tmp_path / "afile").write_text("")
    one_line_usage_error(run(command, spec, *out, "--weights", tmp_path / "afile" / "w.pt"),
                         "afile is a file, not a directory")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.pt")
        one_line_usage_error(run(command, spec, *out, "--weights", tmp_path / "pipe.pt"),
                             "not a regular file")
    assert not (tmp_path / "x.onnx").exists()


def test_shape_errors_of_the_command_line_stay_one_line():
    for args, words in [(["compile"], "Missing argument"), (["nope"], "No such command"),
                        (["check", "--nope", "x"], "No such option")]:
        one_line_usage_error(run(*args), words, "--help")


# -- writing ---------------------------------------------------------------------------------

def test_write_error_is_one_line_and_leaves_the_old_file(tmp_path, spec, monkeypatch):
    out = tmp_path / "build"
    assert run("compile", spec, "-o", out).exit_code == 0
    before = (out / "tiny.py").read_bytes()
    (tmp_path / "other.cnn").write_text(SPEC.replace("linear(2)", "linear(3)"))

    def full(f, blob):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil, "_write_all", full)
    result = run("compile", tmp_path / "other.cnn", "-o", out, "--name", "tiny")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"error: cannot write {out / 'tiny.py'}: No space left on device"]
    assert (out / "tiny.py").read_bytes() == before
    no_temp_files(tmp_path)


def test_write_atomic_errors_name_the_blocking_file(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match="afile is a file, not a directory"):
        write_atomic(tmp_path / "afile" / "sub" / "x.py", "x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="it is a directory"):
        write_atomic(tmp_path / "dir", "x")
    no_temp_files(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_0666_minus_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "out.py"
        assert write_atomic(path, "a") is True
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
        os.chmod(path, 0o600)
        assert write_atomic(path, "b") is True  # a new file replaces it: the mode of new files
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
        assert fsutil.default_mode() == 0o666 & ~umask
    finally:
        os.umask(old)


def test_fsync_file_before_rename_and_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert write_atomic(tmp_path / "a.py", "x") is True
    assert events == ["fsync file", "rename", "fsync dir"]
    events.clear()
    assert write_atomic(tmp_path / "a.py", "x") is False  # unchanged: not even opened to write
    assert events == []


def test_unchanged_output_is_not_rewritten(tmp_path):
    path = tmp_path / "a.py"
    write_atomic(path, "x")
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert write_atomic(path, "x") is False and path.stat().st_mtime_ns == before
    assert write_atomic(path, "xy") is True and path.read_text() == "xy"


def _device(tmp_path: Path, name: str, minor: int) -> Path:
    """A private copy of /dev/null (minor 3) or /dev/full (7): a regression must not be able to
    replace the system's own."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(path, "wb"):
            pass
    except (OSError, AttributeError):
        pytest.skip("cannot make a device node here (not root, or a nodev mount)")
    return path


def test_a_device_is_written_into_never_replaced(tmp_path, spec):
    """`-o /dev/null` works as with any tool; /dev/full is a real full disk: one line, exit 2;
    and neither is replaced by a regular file (as root, a rename over it would succeed)."""
    null, full = _device(tmp_path, "null", 3), _device(tmp_path, "full", 7)
    assert write_atomic(null, "x") is True
    pytest.importorskip("onnx")
    for out, code in ((null, 0), (full, 2)):
        result = run("export", spec, "-o", out)
        assert result.exit_code == code and "Traceback" not in result.output
        assert stat.S_ISCHR(os.stat(out).st_mode)
    assert result.stderr.splitlines() == [f"error: cannot write {full}: No space left on device"]
    no_temp_files(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_at_the_output_path_is_not_read_or_waited_on(tmp_path):
    fifo = tmp_path / "out.py"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="no process is reading it"):
        write_atomic(fifo, "x")  # neither read for the comparison nor waited on for a reader
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# -- signals ---------------------------------------------------------------------------------

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import archgen.fsutil as fsutil
    marker = Path(sys.argv[1])
    real = fsutil._write_all

    def slow(f, blob):  # write a little, say so, then stall as a huge write would
        f.write(blob[:10])
        f.flush()
        marker.write_text("writing")
        time.sleep(60)
        real(f, blob)

    fsutil._write_all = slow
    from archgen.cli import main
    main(sys.argv[2:])
""")


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_mid_write_leaves_no_temp_file(tmp_path, spec, sig):
    marker = tmp_path / "marker"
    out = tmp_path / "build"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(marker), "compile", spec,
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.02)
        assert [p.name for p in out.glob(".tiny.py.*.tmp")]  # the write is under way
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == "SIGINT":  # KeyboardInterrupt, which click reports as "Aborted!" (exit 1)
        assert proc.returncode == 1 and "Traceback" not in err and "Aborted!" in err
    else:  # killed by the very signal, as without archgen's handler
        assert proc.returncode == -getattr(signal, sig)
    no_temp_files(tmp_path)
    assert not (out / "tiny.py").exists()
