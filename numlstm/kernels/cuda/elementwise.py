"""Elementwise device kernels: fill, copy, scale, add (the small glue the layers need)."""

from __future__ import annotations

from numba import cuda

from numlstm.kernels.cuda._launch import flat, grid_1d


@cuda.jit
def _fill_kernel(a, value):
    # a: (n,)
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for j in range(start, a.shape[0], stride):
        a[j] = value


def fill(a, value: float) -> None:
    """Set every element of the C-contiguous device array ``a`` to ``value`` (in place)."""
    if a.size == 0:
        return
    a1 = flat(a)
    blocks, tpb = grid_1d(a1.size)
    _fill_kernel[blocks, tpb](a1, a1.dtype.type(value))
