"""Device kernels of the fully connected layer beyond its GEMMs: the row-wise bias add."""

from __future__ import annotations

from numba import cuda

from numlstm.kernels.cuda import elementwise
from numlstm.kernels.cuda._launch import grid_1d
from numlstm.kernels.cuda.linalg import gemm


@cuda.jit
def _add_bias_kernel(y, b):
    # y: (N, O) += b: (O,)
    N, O = y.shape
    for j in range(cuda.grid(1), N * O, cuda.gridsize(1)):
        y[j // O, j % O] += b[j % O]


def dense_forward(x2, w, b, y2) -> None:
    """y2 = x2 W^T (+ b). x2: (N, I), w: (O, I), b: (O,) or None, y2: (N, O)."""
    gemm(x2, w, y2, trans_b=True)
    if b is not None and y2.size:
        blocks, tpb = grid_1d(y2.size)
        _add_bias_kernel[blocks, tpb](y2, b)


def dense_backward(x2, w, dy2, dx2, dw, db) -> None:
    """dx2 = dy2 W; dw += dy2^T x2; db += column sums of dy2 (db None: no bias)."""
    gemm(dy2, w, dx2)
    gemm(dy2, x2, dw, trans_a=True, accumulate=True)
    if db is not None:
        elementwise.col_sum(dy2, db, accumulate=True)
