"""The layer kinds. Each module registers its kinds on import; `REGISTRY` maps spec names
(conv2d, maxpool2d, ...) to them."""

from . import activation, conv, dropout, linear, norm, pool, resize  # noqa: F401  (registration)
from .base import REGISTRY, RF, LayerError, LayerKind, P, Shape, Warn

__all__ = ["REGISTRY", "RF", "LayerError", "LayerKind", "P", "Shape", "Warn"]
