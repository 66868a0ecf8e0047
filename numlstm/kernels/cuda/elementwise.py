"""Elementwise and data-movement device kernels: the glue the layers need.

fill, add, multiply, axpy-style accumulation, transposes of the two leading
axes (batch-major <-> time-major), column-block copies (concatenating and
splitting the directions of a bidirectional layer), column sums (bias
gradients) and the sum of an array (loss values, norms).

Every 1-d kernel is a grid-stride loop over a flat view, launched with
``_launch.grid_1d`` (``config.THREADS_PER_BLOCK``, ``config.MAX_BLOCKS``).
Arguments are C-contiguous device arrays of one dtype.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config
from numlstm.kernels.cuda._launch import flat, grid_1d

# -- fill, copy, arithmetic ------------------------------------------------------------------------


@cuda.jit
def _fill_kernel(a, value):
    # a: (n,)
    for j in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[j] = value


def fill(a, value: float) -> None:
    """Set every element of the C-contiguous device array ``a`` to ``value`` (in place)."""
    if a.size == 0:
        return
    a1 = flat(a)
    blocks, tpb = grid_1d(a1.size)
    _fill_kernel[blocks, tpb](a1, a1.dtype.type(value))


def copy(src, dst) -> None:
    """dst[...] = src (device to device, same shape)."""
    if src.size:
        dst.copy_to_device(src)


@cuda.jit
def _binary_kernel(a, b, out, op):
    # a, b, out: (n,); op 0: a + b, 1: a * b, 2: a - b
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        if op == 0:
            out[j] = a[j] + b[j]
        elif op == 1:
            out[j] = a[j] * b[j]
        else:
            out[j] = a[j] - b[j]


def _binary(a, b, out, op: int) -> None:
    if out.size == 0:
        return
    o = flat(out)
    blocks, tpb = grid_1d(o.size)
    _binary_kernel[blocks, tpb](flat(a), flat(b), o, op)


def add(a, b, out) -> None:
    """out = a + b (same shapes; ``out`` may be ``a`` or ``b``)."""
    _binary(a, b, out, 0)


def multiply(a, b, out) -> None:
    """out = a * b (same shapes; ``out`` may be ``a`` or ``b``)."""
    _binary(a, b, out, 1)


def subtract(a, b, out) -> None:
    """out = a - b (same shapes)."""
    _binary(a, b, out, 2)


def add_into(out, a) -> None:
    """out += a (same shapes)."""
    _binary(out, a, out, 0)


@cuda.jit
def _scale_kernel(a, alpha, out):
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[j] = a[j] * alpha


def scale(a, alpha, out) -> None:
    """out = a * alpha (``alpha`` cast to the arrays' dtype; ``out`` may be ``a``)."""
    if out.size == 0:
        return
    o = flat(out)
    blocks, tpb = grid_1d(o.size)
    _scale_kernel[blocks, tpb](flat(a), o.dtype.type(alpha), o)


# -- layout ----------------------------------------------------------------------------------------


@cuda.jit
def _swap01_kernel(src, dst):
    # src: (A, B, C) -> dst: (B, A, C)
    A, B, C = src.shape
    n = A * B * C
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        c = j % C
        r = j // C
        b = r % B
        a = r // B
        dst[b, a, c] = src[a, b, c]


def swap01(src, dst) -> None:
    """dst = src.transpose(1, 0, 2) (a contiguous copy): (A, B, C) -> (B, A, C)."""
    if src.size == 0:
        return
    blocks, tpb = grid_1d(src.size)
    _swap01_kernel[blocks, tpb](src, dst)


@cuda.jit
def _copy_cols_kernel(src, s0, dst, d0, ncols, accumulate):
    # src: (R, Cs), dst: (R, Cd); dst[:, d0:d0+ncols] (+)= src[:, s0:s0+ncols]
    R = src.shape[0]
    n = R * ncols
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = j // ncols
        c = j % ncols
        if accumulate:
            dst[r, d0 + c] += src[r, s0 + c]
        else:
            dst[r, d0 + c] = src[r, s0 + c]


def copy_cols(src, s0: int, dst, d0: int, ncols: int, accumulate: bool = False) -> None:
    """``dst[:, d0:d0+ncols] (+)= src[:, s0:s0+ncols]`` for 2-d arrays with the same rows
    (callers reshape ``(T, B, F)`` to ``(T*B, F)``)."""
    R = src.shape[0]
    if R * ncols == 0:
        return
    blocks, tpb = grid_1d(R * ncols)
    _copy_cols_kernel[blocks, tpb](src, int(s0), dst, int(d0), int(ncols), bool(accumulate))


# -- reductions ------------------------------------------------------------------------------------


@cuda.jit
def _col_sum_kernel(a, out, accumulate):
    # a: (R, C), out: (C,); one thread per column (coalesced across threads)
    R, C = a.shape
    for c in range(cuda.grid(1), C, cuda.gridsize(1)):
        s = a[0, c] * 0
        for r in range(R):
            s += a[r, c]
        if accumulate:
            out[c] += s
        else:
            out[c] = s


def col_sum(a, out, accumulate: bool = False) -> None:
    """``out (+)= a.sum(axis=0)`` for a 2-d ``a`` (R, C) with R >= 1."""
    C = a.shape[1]
    if C == 0 or a.shape[0] == 0:
        return
    blocks, tpb = grid_1d(C)
    _col_sum_kernel[blocks, tpb](a, out, bool(accumulate))


_SUM_KERNELS: dict = {}

#: reduction modes of ``reduce_into``
SUM, SUM_SQUARES, SUM_ABS_POW, MAX_ABS = 0, 1, 2, 3


def _make_reduce(dtype: np.dtype):
    zero = dtype.type(0)
    nbtype = numba.from_dtype(dtype)  # a numba type: valid for typed arrays compiled and simulated

    @cuda.jit
    def _reduce_kernel(a, mode, p, out, slot):
        # one block: a: (n,) -> out[slot] = sum(a), sum(a*a), sum(|a|**p) or max(|a|)
        sh = cuda.shared.array(0, nbtype)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        s = zero
        for j in range(tid, a.shape[0], nt):
            v = a[j]
            if mode == 0:
                s += v
            elif mode == 1:
                s += v * v
            elif mode == 2:
                s += abs(v) ** p
            else:
                v = abs(v)
                if v > s or v != v:
                    s = v
        sh[tid] = s
        cuda.syncthreads()
        step = nt // 2
        while step > 0:
            if tid < step:
                if mode == 3:
                    v = sh[tid + step]
                    if v > sh[tid] or v != v:
                        sh[tid] = v
                else:
                    sh[tid] += sh[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            out[slot] = sh[0]

    return _reduce_kernel


def reduce_into(a, out, slot: int = 0, mode: int = SUM, p: float = 2.0) -> None:
    """``out[slot] = `` the reduction ``mode`` of ``a`` (SUM, SUM_SQUARES,
    SUM_ABS_POW with exponent ``p``, MAX_ABS), in one block of
    ``config.REDUCE_THREADS`` threads (a power of two): a deterministic tree."""
    dt = np.dtype(a.dtype)
    k = _SUM_KERNELS.get(dt)
    if k is None:
        k = _SUM_KERNELS[dt] = _make_reduce(dt)
    nt = int(config.REDUCE_THREADS)
    k[1, nt, 0, nt * dt.itemsize](flat(a), int(mode), dt.type(p), out, int(slot))


def total(a):
    """``a.sum()`` of a device array as a numpy scalar of its dtype: the sum on the device, one scalar back."""
    dt = np.dtype(a.dtype)
    if a.size == 0:
        return dt.type(0)
    out = cuda.device_array(1, dt)
    reduce_into(a, out)
    return out.copy_to_host()[0]


# -- argmax (accuracy) -------------------------------------------------------------------------------


@cuda.jit
def _argmax_kernel(a, out):
    # a: (M, C) -> out: (M,) int64, the first index of the maximum (NaN counts as the maximum, as np.argmax)
    M, C = a.shape
    for r in range(cuda.grid(1), M, cuda.gridsize(1)):
        best = 0
        m = a[r, 0]
        if m == m:
            for c in range(1, C):
                v = a[r, c]
                if v != v:
                    best = c
                    break
                if v > m:
                    m = v
                    best = c
        out[r] = best


def argmax_rows(a, out) -> None:
    """out[r] = argmax(a[r]) for a 2-d ``a`` (M, C); ``out`` (M,) int64."""
    if a.shape[0]:
        blocks, tpb = grid_1d(a.shape[0])
        _argmax_kernel[blocks, tpb](a, out)
