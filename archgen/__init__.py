"""archgen: write a CNN once as a .cnn spec, check it statically, compile it to PyTorch and
ONNX, and prove that the two compute the same function."""

from .api import Architecture, load, parse
from .diagnostics import Diagnostic, SpecError

__version__ = "0.1.0"
__all__ = ["Architecture", "Diagnostic", "SpecError", "load", "parse", "__version__"]
