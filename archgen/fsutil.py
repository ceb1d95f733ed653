"""Writing outputs: atomically (a temp file, then rename), only when the content changed, with
the mode any tool's output gets, durably (fsync), and never leaving a temp file behind on an
error, SIGINT, SIGTERM or SIGHUP.

Only SIGKILL (and power loss before the rename) can leave a `.NAME.*.tmp` file: nothing in the
process runs then.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1 << 24  # 16 MiB: a signal is acted on between chunks, not after a 500 MB write
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, name))
_PENDING: set[str] = set()  # temp files being written; a signal handler removes them


class OutputError(Exception):
    """An output that cannot be written (a path below a file, a read-only directory, a full
    disk): one line for the user, naming the path and the reason."""


def write_atomic(path: str | Path, data: str | bytes | list) -> bool:
    """Write `data` to `path` unless it already holds exactly that; returns True if written.
    `data` may be a list of buffers (bytes, memoryviews of arrays) written one after another,
    so that a large file is never assembled in memory. A failure leaves the old file (or no
    file) in place, never a half-written one, and raises OutputError for any OSError."""
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    if _holds(path, blob):
        return False
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.is_file():  # a device or FIFO: write into it, never replace it
        _write_special(path, blob)
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the directory {path.parent}: "
                          f"{_reason(path.parent, e)}") from None
    import tempfile  # here, not above: `archgen check` imports this module and writes nothing

    with _removed_on_signal():
        tmp = None
        try:
            with _signals_blocked():  # a signal between mkstemp and the registration would leak
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                           dir=path.parent)
                _PENDING.add(tmp)
            with os.fdopen(fd, "wb") as f:
                if hasattr(os, "fchmod"):  # POSIX; mkstemp creates 0600
                    os.fchmod(f.fileno(), default_mode())
                _write_all(f, blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _PENDING.discard(tmp)
        except BaseException as e:
            if tmp is not None:
                _unlink(tmp)
                _PENDING.discard(tmp)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write {path}: {_reason(path, e)}") from None
            raise
    _fsync_dir(path.parent)
    return True


def _write_special(path: Path, blob: bytes) -> None:
    """Write into an existing device, FIFO or socket (`-o /dev/null`) as any tool does, rather
    than renaming a file over it. A FIFO nobody reads is an error, not a wait for ever."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise OutputError(f"cannot write {path}: no process is reading it") from None
        raise OutputError(f"cannot write {path}: {_reason(path, e)}") from None
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            _write_all(f, blob)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_reason(path, e)}") from None


def default_mode() -> int:
    """0666 minus the umask: the mode `open(path, "w")` and every compiler gives a new file."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux 4.7+: read without changing it (os.umask is process-wide: racy in threads)
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _holds(path: Path, blob: bytes) -> bool:
    """Whether `path` is a regular file with exactly these bytes (a FIFO is never read)."""
    try:
        st = path.stat()
        views = _views(blob)
        if not stat.S_ISREG(st.st_mode) or st.st_size != sum(v.nbytes for v in views):
            return False
        with open(path, "rb") as f:  # by chunks: a 500 MB model is not held twice
            for view in views:
                for start in range(0, len(view), CHUNK):
                    if f.read(min(CHUNK, len(view) - start)) != view[start:start + CHUNK]:
                        return False
            return f.read(1) == b""
    except OSError:
        return False


def _views(blob) -> list[memoryview]:
    """The data as flat byte views: one for bytes, one per buffer for a list of them."""
    parts = blob if isinstance(blob, (list, tuple)) else [blob]
    return [memoryview(p).cast("B") for p in parts]


def _write_all(f, blob) -> None:
    for view in _views(blob):
        for start in range(0, len(view), CHUNK):
            f.write(view[start:start + CHUNK])


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some file systems cannot fsync a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reason(path: Path, e: OSError) -> str:
    """OSError's reason in words, naming the file that blocks a path below it."""
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        for parent in [path, *path.parents]:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a directory"
    return e.strerror or str(e)


@contextmanager
def _signals_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _removed_on_signal() -> Iterator[None]:
    """While writing, SIGINT/SIGTERM/SIGHUP first remove the temp files, then do what they
    did before: call the previous Python handler (SIGINT's raises KeyboardInterrupt), or kill
    the process by the same signal when it had the default action. An ignored signal stays
    ignored. Handlers can only be set in the main thread; elsewhere the try/except in
    write_atomic is all there is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        for tmp in list(_PENDING):
            _unlink(tmp)
        _PENDING.clear()
        old = previous[signum]
        signal.signal(signum, old)
        if callable(old):
            old(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    for sig in _SIGNALS:
        old = signal.getsignal(sig)
        if old is None or old == signal.SIG_IGN:  # set outside Python, or ignored: leave it
            continue
        previous[sig] = old
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
