"""Optional dependencies: a missing one is a clear message naming the extra, not a traceback."""

from __future__ import annotations

import importlib


class MissingExtra(Exception):
    def __init__(self, package: str, extra: str, what: str):
        self.package, self.extra = package, extra
        super().__init__(f"{what} needs {package}, which is not installed: "
                         f"pip install 'archgen[{extra}]'")


def require(package: str, extra: str, what: str):
    """Import `package` or raise MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingExtra(package, extra, what) from e
