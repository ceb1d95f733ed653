"""The layer kinds. Each module registers its kinds on import; `REGISTRY` maps spec names
(conv2d, maxpool2d, ...) to them."""

from . import (activation, activation_extra, channels, conv, dropout, layout,  # noqa: F401
               linear, norm, normalization, pool, resize)  # (registration)
from .base import REGISTRY, RF, LayerError, LayerKind, P, Shape, Warn

__all__ = ["REGISTRY", "RF", "LayerError", "LayerKind", "P", "Shape", "Warn"]
