"""Matrix products on the GPU: a register-tiled shared-memory GEMM in ``@cuda.jit``.

Numba has no cuBLAS binding, so the LSTM's products run through this kernel.
One kernel computes every variant the layers need::

    out  = op(a) @ op(b)          accumulate=False
    out += op(a) @ op(b)          accumulate=True
    op(a) = a or a^T (trans_a),   op(b) = b or b^T (trans_b)

Each block computes a ``GEMM_TILE x GEMM_TILE`` tile of ``out`` with
``(GEMM_TILE / GEMM_THREAD_TILE)**2`` threads, each accumulating a
``GEMM_THREAD_TILE x GEMM_THREAD_TILE`` sub-tile in registers (every value
read from shared memory feeds GEMM_THREAD_TILE multiply-adds instead of one).
The K axis is walked in slices of ``GEMM_TILE_K`` staged in shared memory;
the global loads are arranged so that neighbouring threads read neighbouring
addresses for every transpose variant. Edge tiles are padded with zeros, so
any M, N, K works.

When the big tiles would give fewer than ``GEMM_MIN_BLOCKS`` blocks (the
per-step products of an LSTM), ``GEMM_SMALL_TILE`` / ``GEMM_SMALL_THREAD_TILE``
are used instead, for more blocks.

``GEMM_TILE`` and ``GEMM_TILE_K`` are launch arguments (the shared arrays are
dynamic, ``cuda.shared.array(0, nbtype)``); ``GEMM_THREAD_TILE`` sizes the
per-thread accumulator, a compile-time constant, so it keys the compiled
kernel. All are read from ``config`` at call time.

CPU twins: ``numlstm.kernels.cpu.linalg`` (``matmul_into``, ``matmul_tn_add``;
``matmul_add`` is ``gemm_nn_tiles`` with ``beta = 1`` there).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config

_KERNELS: dict = {}


@cuda.jit(device=True, inline=True)
def _stage(src, x_rows, x0, X, k0, K, idx, tile, tile_k, sh, off, zero):
    """Element ``idx`` of the slice [k0, k0+tile_k) x [x0, x0+tile) of an operand
    into sh[off + k*tile + x] (k-major; zero outside the operand).

    src is (X, K) when ``x_rows`` (a, or b^T), else (K, X) (a^T, or b); consecutive
    ``idx`` walk src's last axis, so neighbouring threads read neighbouring addresses."""
    if x_rows:
        k = idx % tile_k
        x = idx // tile_k
    else:
        x = idx % tile
        k = idx // tile
    v = zero
    if x0 + x < X and k0 + k < K:
        v = src[x0 + x, k0 + k] if x_rows else src[k0 + k, x0 + x]
    sh[off + k * tile + x] = v


def _make_gemm(dtype: np.dtype, TT: int):
    zero = dtype.type(0)
    nbtype = numba.from_dtype(dtype)  # a numba type: valid for typed arrays compiled and simulated
    TT2 = TT * TT  # a closure constant: local array sizes must be compile-time constants

    @cuda.jit
    def _gemm_kernel(a, b, out, M, N, K, trans_a, trans_b, accumulate, tile, tile_k):
        # a: (M, K) or (K, M); b: (K, N) or (N, K); out: (M, N)
        # shared: As (tile_k, tile) | Bs (tile_k, tile), both k-major
        sh = cuda.shared.array(0, nbtype)
        bs0 = tile_k * tile
        acc = cuda.local.array(TT2, nbtype)
        ar = cuda.local.array(TT, nbtype)
        br = cuda.local.array(TT, nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        side = cuda.blockDim.x  # tile // TT threads per side
        tid = ty * side + tx
        nt = side * cuda.blockDim.y
        row0 = cuda.blockIdx.y * tile
        col0 = cuda.blockIdx.x * tile
        for q in range(TT2):
            acc[q] = zero
        for k0 in range(0, K, tile_k):
            # stage op(a)[row0:row0+tile, k0:k0+tile_k] and op(b)[k0:k0+tile_k, col0:col0+tile]
            for idx in range(tid, tile * tile_k, nt):
                _stage(a, not trans_a, row0, M, k0, K, idx, tile, tile_k, sh, 0, zero)
                _stage(b, trans_b, col0, N, k0, K, idx, tile, tile_k, sh, bs0, zero)
            cuda.syncthreads()
            for k in range(tile_k):
                for ii in range(TT):
                    ar[ii] = sh[k * tile + ty * TT + ii]
                for jj in range(TT):
                    br[jj] = sh[bs0 + k * tile + tx * TT + jj]
                for ii in range(TT):
                    for jj in range(TT):
                        acc[ii * TT + jj] += ar[ii] * br[jj]
            cuda.syncthreads()
        for ii in range(TT):
            r = row0 + ty * TT + ii
            if r < M:
                for jj in range(TT):
                    c = col0 + tx * TT + jj
                    if c < N:
                        if accumulate:
                            out[r, c] += acc[ii * TT + jj]
                        else:
                            out[r, c] = acc[ii * TT + jj]

    return _gemm_kernel


def _kernel(dtype: np.dtype, TT: int | None = None):
    TT = int(config.GEMM_THREAD_TILE if TT is None else TT)
    key = (np.dtype(dtype), TT)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = _make_gemm(key[0], TT)
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
    tile, TT = int(config.GEMM_TILE), int(config.GEMM_THREAD_TILE)
    if -(-N // tile) * -(-M // tile) < int(config.GEMM_MIN_BLOCKS):
        # too few blocks to fill the GPU with big tiles (a per-step product of a
        # small batch): the small tiles give 4x the blocks
        tile, TT = int(config.GEMM_SMALL_TILE), int(config.GEMM_SMALL_THREAD_TILE)
    tile_k = int(config.GEMM_TILE_K)
    side = tile // TT
    if side * TT != tile:
        raise ValueError(f"config: the GEMM tile ({tile}) must be a multiple of its thread tile ({TT})")
    grid = (-(-N // tile), -(-M // tile))
    shared = 2 * tile * tile_k * out.dtype.itemsize
    _kernel(out.dtype, TT)[grid, (side, side), 0, shared](
        a, b, out, M, N, K, bool(trans_a), bool(trans_b), bool(accumulate), tile, tile_k
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
