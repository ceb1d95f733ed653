"""Deterministic weights and inputs for the zoo references.

tests/fixtures/make_torchvision_fixtures.py runs torchvision's models on these weights and stores
their outputs; tests/test_zoo.py loads the same weights, key by key, into archgen's generated
modules and compares. Both sides must build bit-identical tensors on any torch version and CPU,
without torchvision's random number generator, so every value comes from integer hashing and
single float32 operations that IEEE 754 rounds exactly one way (a product or a sum of two
float32 tensors, or of a tensor and a constant that float32 holds exactly), never from
transcendental functions, whose last bits differ between math libraries.

The magnitudes keep activations O(1) through a hundred layers: conv and linear weights are
uniform with variance 2 / fan_in (He), batch norm holds running_var and gamma in [0.75, 1.25],
biases and means are within +-0.125.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF


def uniform(n: int, salt: int) -> torch.Tensor:
    """n float32 values uniform in [-1, 1) on a grid of 2**-23 (so exactly representable), a
    pure function of (element index, salt).

    Every intermediate stays below 2**63 (a 32-bit value times a multiplier below 2**32, or an
    index below 2**31 times one), so no integer arithmetic overflows.

    >>> uniform(4, 0).tolist() == uniform(6, 0)[:4].tolist()
    True
    >>> bool(uniform(1000, 3).abs().max() <= 1.0)
    True
    """
    h = torch.arange(n, dtype=torch.int64)
    h *= 0x9E3779B1
    h += (salt + 1) * 0x85EBCA77
    h &= _MASK
    h ^= h >> 15
    h *= 0x2C1B3C6D
    h &= _MASK
    h ^= h >> 13
    h >>= 8  # 24 bits: exact in float32
    return h.to(torch.float32).mul_(2.0 ** -23).sub_(1.0)


def entry(key: str, shape: list[int] | tuple[int, ...], position: int) -> torch.Tensor:
    """The value of one state_dict entry: a function of its key's last part, its shape and its
    position in the state_dict (the salt), never of the random number generator."""
    leaf = key.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    u = uniform(math.prod(shape), position)
    if leaf in ("running_mean", "bias"):
        v = u.mul_(0.125)
    elif leaf == "layer_scale":  # ConvNeXt's residual scale: torchvision's 1e-6 would hide the block
        v = u.mul_(0.125).add_(0.25)
    elif len(shape) >= 2 and leaf == "weight":  # conv and linear: He-uniform
        v = u.mul_(torch.tensor(math.sqrt(6.0 / math.prod(shape[1:])), dtype=torch.float32))
    else:  # batch norm running_var; norm gammas (batch, layer, group norm), PReLU slopes
        v = u.mul_(0.25).add_(1.0)
    return v.reshape(shape)


def deterministic_state(shapes) -> dict[str, torch.Tensor]:
    """A state_dict for the [key, shape] list (in state_dict order, as the fixture stores it)."""
    return {key: entry(key, shape, i) for i, (key, shape) in enumerate(shapes)}


def deterministic_input(shape) -> torch.Tensor:
    """A batch of one input, uniform in [-sqrt(3), sqrt(3)) (unit variance)."""
    shape = (1, *shape)
    u = uniform(math.prod(shape), 1_000_003)
    return u.mul_(torch.tensor(math.sqrt(3.0), dtype=torch.float32)).reshape(shape)
