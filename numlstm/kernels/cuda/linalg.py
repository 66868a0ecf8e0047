"""Matrix products on the GPU: a tiled shared-memory GEMM in ``@cuda.jit``.

Numba has no cuBLAS binding, so the LSTM's products run through this kernel.
One kernel computes every variant the layers need::

    out  = op(a) @ op(b)          accumulate=False
    out += op(a) @ op(b)          accumulate=True
    op(a) = a or a^T (trans_a),   op(b) = b or b^T (trans_b)

Each block computes a ``GEMM_TILE x GEMM_TILE`` tile of ``out`` (one thread
per output element); the K axis is walked in tiles staged in shared memory.
The tile side comes from ``config.GEMM_TILE`` at call time: the shared
arrays are dynamic (``cuda.shared.array(0, nbtype)``, sized by the launch),
so one compiled kernel serves every tile size. Edge tiles are padded with
zeros, so any M, N, K works.

CPU twins: ``numlstm.kernels.cpu.linalg`` (``matmul_into``, ``matmul_add``,
``matmul_tn_add``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config

_KERNELS: dict = {}


def _make_gemm(dtype: np.dtype):
    zero = dtype.type(0)
    nbtype = numba.from_dtype(dtype)  # a numba type: valid for typed arrays compiled and simulated

    @cuda.jit
    def _gemm_kernel(a, b, out, M, N, K, trans_a, trans_b, accumulate, tile):
        # a: (M, K) or (K, M); b: (K, N) or (N, K); out: (M, N)
        sh = cuda.shared.array(0, nbtype)
        tt = tile * tile
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        s = zero
        for k0 in range(0, K, tile):
            # sa[ty, tx] = op(a)[row, k0 + tx]
            kk = k0 + tx
            v = zero
            if row < M and kk < K:
                v = a[kk, row] if trans_a else a[row, kk]
            sh[ty * tile + tx] = v
            # sb[ty, tx] = op(b)[k0 + ty, col]
            kk = k0 + ty
            v = zero
            if col < N and kk < K:
                v = b[col, kk] if trans_b else b[kk, col]
            sh[tt + ty * tile + tx] = v
            cuda.syncthreads()
            for k in range(tile):
                s += sh[ty * tile + k] * sh[tt + k * tile + tx]
            cuda.syncthreads()
        if row < M and col < N:
            if accumulate:
                out[row, col] += s
            else:
                out[row, col] = s

    return _gemm_kernel


def _kernel(dtype: np.dtype):
    k = _KERNELS.get(dtype)
    if k is None:
        k = _KERNELS[dtype] = _make_gemm(dtype)
    return k


def gemm(a, b, out, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False) -> None:
    """``out (+)= op(a) @ op(b)`` on device arrays of one dtype.

    Parameters
    ----------
    a : (M, K), or (K, M) with ``trans_a``
    b : (K, N), or (N, K) with ``trans_b``
    out : (M, N), written (or added to with ``accumulate``)
    """
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if M == 0 or N == 0:
        return
    tile = int(config.GEMM_TILE)
    grid = (-(-N // tile), -(-M // tile))
    shared = 2 * tile * tile * out.dtype.itemsize
    _kernel(np.dtype(out.dtype))[grid, (tile, tile), 0, shared](
        a, b, out, M, N, K, bool(trans_a), bool(trans_b), bool(accumulate), tile
    )


def matmul_into(a, b, out) -> None:
    """out = a @ b. a: (M, K), b: (K, N), out: (M, N)."""
    gemm(a, b, out)


def matmul_add(a, b, out) -> None:
    """out += a @ b."""
    gemm(a, b, out, accumulate=True)


def matmul_tn_add(a, b, out) -> None:
    """out += a^T @ b. a: (K, M), b: (K, N), out: (M, N)."""
    gemm(a, b, out, trans_a=True, accumulate=True)
