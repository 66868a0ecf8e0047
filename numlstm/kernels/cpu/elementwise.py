"""Elementwise helpers of the CPU drivers, the twins of ``numlstm.kernels.cuda.elementwise``.

Same names and arguments as the CUDA module, so that a layer's per-layer and
per-direction loop is written once and runs on either backend's driver.
numpy does the work: these are memory-bound copies where numpy is as fast as
a kernel.
"""

import numpy as np


def fill(a: np.ndarray, value: float) -> None:
    """a[...] = value (in place)."""
    a.fill(value)


def copy(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[...] = src (same shape)."""
    np.copyto(dst, src)


def add(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a + b (same shapes; ``out`` may be ``a`` or ``b``)."""
    np.add(a, b, out=out)


def multiply(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a * b (same shapes; ``out`` may be ``a`` or ``b``)."""
    np.multiply(a, b, out=out)


def add_into(out: np.ndarray, a: np.ndarray) -> None:
    """out += a (same shapes)."""
    out += a


def swap01(src: np.ndarray, dst: np.ndarray) -> None:
    """dst = src.transpose(1, 0, 2) (a contiguous copy): (A, B, C) -> (B, A, C)."""
    np.copyto(dst, src.transpose(1, 0, 2))


def copy_cols(src: np.ndarray, s0: int, dst: np.ndarray, d0: int, ncols: int, accumulate: bool = False) -> None:
    """``dst[:, d0:d0+ncols] (+)= src[:, s0:s0+ncols]`` for 2-d arrays with the same rows."""
    if accumulate:
        dst[:, d0 : d0 + ncols] += src[:, s0 : s0 + ncols]
    else:
        dst[:, d0 : d0 + ncols] = src[:, s0 : s0 + ncols]
