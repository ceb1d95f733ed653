"""Writing outputs: atomically (a temp file, then rename), and only when the content changed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes) -> bool:
    """Write `data` to `path` unless it already holds exactly that; returns True if written.
    A failure leaves the old file (or no file) in place, never a half-written one."""
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.read_bytes() == blob:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True
