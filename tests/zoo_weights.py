"""Deterministic weights and inputs for the zoo references.

tests/fixtures/make_torchvision_fixtures.py runs torchvision's models on these weights and stores
their outputs; tests/test_zoo.py loads the same weights, key by key, into archgen's generated
modules and compares. Both sides must build bit-identical tensors on any torch version and CPU,
without torchvision's random number generator, so every value comes from integer hashing and
correctly rounded float64 arithmetic only (no transcendental functions, whose last bits differ
between libm implementations), rounded once to float32 at the end.

The magnitudes keep activations O(1) through a hundred layers: conv and linear weights are
uniform with variance 2 / fan_in (He), batch norm holds running_var in [0.75, 1.25] and gamma in
[0.75, 1.25], biases and means are within +-0.1.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF


def uniform(n: int, salt: int) -> torch.Tensor:
    """n values uniform in [-1, 1) as float64, a pure function of (element index, salt).

    Every intermediate stays below 2**63 (a 32-bit value times a multiplier below 2**31), so no
    integer arithmetic overflows."""
    k = torch.arange(n, dtype=torch.int64)
    h = (k * 0x9E3779B1 + (salt + 1) * 0x85EBCA77 + 0x165667B1) & _MASK
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _MASK
    h = h ^ (h >> 12)
    h = (h * 0x297A2D39) & _MASK
    h = h ^ (h >> 15)
    return (h >> 8).to(torch.float64) / float(1 << 23) - 1.0


def entry(key: str, shape: list[int] | tuple[int, ...], position: int) -> torch.Tensor:
    """The value of one state_dict entry: a function of its key's last part, its shape and its
    position in the state_dict (the salt), never of the random number generator."""
    leaf = key.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    n = math.prod(shape)
    u = uniform(n, position)
    if leaf == "running_var":
        v = 1.0 + 0.25 * u
    elif leaf in ("running_mean", "bias"):
        v = 0.1 * u
    elif leaf == "layer_scale":  # ConvNeXt's residual scale: torchvision's 1e-6 would hide the block
        v = 0.25 + 0.125 * u
    elif len(shape) >= 2 and leaf == "weight":  # conv and linear: He-uniform
        fan_in = math.prod(shape[1:])
        v = math.sqrt(6.0 / fan_in) * u
    else:  # norm gammas (batch, layer, group norm), PReLU slopes
        v = 1.0 + 0.25 * u
    return v.reshape(shape).to(torch.float32)


def deterministic_state(shapes) -> dict[str, torch.Tensor]:
    """A state_dict for the [key, shape] list (in state_dict order, as the fixture stores it)."""
    return {key: entry(key, shape, i) for i, (key, shape) in enumerate(shapes)}


def deterministic_input(shape) -> torch.Tensor:
    """A batch of one input, uniform in [-sqrt(3), sqrt(3)) (unit variance)."""
    shape = (1, *shape)
    u = uniform(math.prod(shape), 1_000_003)
    return (math.sqrt(3.0) * u).reshape(shape).to(torch.float32)
