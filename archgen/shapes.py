"""Output-size arithmetic, PyTorch's to the last pixel. Pure functions, one axis at a time.

A result <= 0 means PyTorch rejects the configuration; callers turn that into a diagnostic.
"""

from __future__ import annotations

import math

from .symbolic import scale, smax, smin


def conv_out(size: int, kernel: int, stride: int = 1, pad_begin: int = 0, pad_end: int = 0,
             dilation: int = 1) -> int:
    """Conv2d's output length: floor((L + pads - d*(k-1) - 1) / s) + 1.

    >>> conv_out(32, 3, 1, 1, 1)
    32
    >>> conv_out(7, 3, 2)
    3
    >>> conv_out(2, 3)  # the kernel does not fit: PyTorch refuses
    0
    """
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def pool_out(size: int, kernel: int, stride: int, pad: int = 0, dilation: int = 1,
             ceil_mode: bool = False) -> int:
    """Max/avg pooling output length, as ATen's pooling_output_shape computes it.

    With ceil_mode a last window that would start in the right padding is dropped.

    >>> pool_out(32, 2, 2)
    16
    >>> pool_out(7, 2, 2, ceil_mode=True)
    4
    >>> pool_out(5, 2, 2, pad=1, ceil_mode=True)  # window 4 would start in the padding
    3
    >>> pool_out(55, 3, 2, ceil_mode=True)
    27
    """
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1  # floor division: ATen's div_rtn
    if ceil_mode:
        # ATen: `if (out - 1) * stride >= size + pad: out -= 1`. With pad <= kernel / 2, out - 1
        # is at most ceil((size + pad) / stride), and it is lowered exactly when it reaches
        # it: min() says the same without a decision on the size (which may be symbolic).
        out = smin(out, (size + pad + stride - 1) // stride)
    return out


def conv_transpose_out(size: int, kernel: int, stride: int = 1, pad: int = 0,
                       output_padding: int = 0, dilation: int = 1) -> int:
    """ConvTranspose2d's output length: (L-1)*s - 2p + d*(k-1) + output_padding + 1.

    >>> conv_transpose_out(16, 2, 2)
    32
    >>> conv_transpose_out(7, 3, 2, 1, 1)
    14
    """
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def same_pads(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Begin/end padding for SAME_UPPER (TensorFlow/ONNX): output = ceil(L / s), the odd pixel
    at the end. With stride 1 this is exactly what PyTorch's padding='same' does.

    >>> same_pads(32, 3)
    (1, 1)
    >>> same_pads(32, 4)
    (1, 2)
    >>> same_pads(7, 3, 2)
    (1, 1)
    >>> same_pads(8, 3, 2)
    (0, 1)
    """
    out = (size + stride - 1) // stride  # ceil, in integers (the size may be symbolic)
    total = smax((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """[start, end) of each adaptive pooling window, as ATen computes them.

    >>> adaptive_windows(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    """
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_max_window(size: int, out: int) -> int:
    """The widest of `adaptive_windows(size, out)`, in O(1) instead of one window per output.

    Window i spans floor(i*L/O) .. ceil((i+1)*L/O), so its width is ceil((r + L) / O) with
    r = i*L mod O; r takes every multiple of g = gcd(L, O) below O, the largest O - g.

    >>> adaptive_max_window(5, 3), max(e - s for s, e in adaptive_windows(5, 3))
    (3, 3)
    >>> adaptive_max_window(7, 7), adaptive_max_window(224, 7), adaptive_max_window(2, 3)
    (1, 32, 2)
    """
    return -(-(out - math.gcd(size, out) + size) // out)


def upsample_out(size: int, factor: float) -> int:
    """Upsample's output length for a scale factor: floor(L * scale).

    >>> upsample_out(7, 2)
    14
    >>> upsample_out(5, 1.5)
    7
    >>> upsample_out(5, 1e308)  # beyond any float: a size no limit accepts, not an OverflowError
    -1
    """
    return scale(size, factor)
