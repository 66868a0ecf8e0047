"""numlstm's own small-matrix product, for the per-step products of the recurrences.

``dot_nt(a, w, out)`` computes ``out = a @ w.T`` for a few rows of ``a``
(the batch rows of one step) against a weight matrix ``w`` whose rows are
contiguous: ``W_hh`` (4H, H) as stored for ``h_{t-1} W_hh^T``, and its
transpose (packed once per call) for ``dh_{t-1} = dA_t W_hh``.

Why our own: a BLAS ``?gemm`` call packs both operands on every call. At the
LSTM's per-step shapes (8-64 rows) that packing is most of the time, and
OpenBLAS's unpacked small-matrix path that avoids it exists only in its
AVX-512 (SkylakeX) build; its Haswell build, which every AVX2 machine runs,
measured 30-42 GFLOP/s on one core at (8..16, 64..512) x (64..512, 256..512).
Here the weights need no per-call packing at all: each output is a dot
product of two contiguous rows.

Register blocking (the BLIS idea, written so that LLVM vectorises it for the
ISA Numba compiles for, AVX2, AVX-512 or NEON): a 4 x 4 block of outputs
keeps 16 accumulators while the loop over the inner dimension streams 4 rows
of ``a`` and 4 rows of ``w``: 8 loads feed 16 fused multiply-adds, and with
``reassoc`` LLVM vectorises the inner loop (one vector accumulator per
output, reduced across lanes once at the end). Measured on one core of an
AMD EPYC (Zen 4), float32, against OpenBLAS 0.3.31's Haswell / SkylakeX
kernels (GFLOP/s)::

    (M, K, N)          own 4x4 (AVX2 / AVX-512)   OpenBLAS Haswell / SkylakeX
    (16, 64, 256)      54 / 55                    38 / 93
    (8, 128, 512)      73 / 72                    38 / 108
    (16, 256, 64)      86 / 85                    39 / 105
    (8, 512, 128)      99 / 97                    42 / 108
    (64, 512, 2048)    90 / 86                    148 / 128

So it wins on the AVX2 class at every per-step shape and loses where a
small-matrix BLAS kernel exists or the product is large: which one runs is
the plan's choice, made by timing on the host (``numlstm.kernels.plan``).

Fast-math flags: ``reassoc`` (the vectorised reduction), ``contract`` (FMA)
and the harmless ones, never ``nnan``/``ninf``: a NaN or Inf in the input
still reaches the output. For a fixed plan the result is bit-identical from
run to run (the summation order depends only on the shapes).
"""

from numba import njit

_KW = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}


@njit(**_KW)
def _block4x4(a, w, out, i, j, K):
    """out[i:i+4, j:j+4] = a[i:i+4] . w[j:j+4]^T (16 accumulators)."""
    z = a.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for k in range(K):
        a0 = a[i, k]
        a1 = a[i + 1, k]
        a2 = a[i + 2, k]
        a3 = a[i + 3, k]
        w0 = w[j, k]
        w1 = w[j + 1, k]
        w2 = w[j + 2, k]
        w3 = w[j + 3, k]
        s00 += a0 * w0
        s01 += a0 * w1
        s02 += a0 * w2
        s03 += a0 * w3
        s10 += a1 * w0
        s11 += a1 * w1
        s12 += a1 * w2
        s13 += a1 * w3
        s20 += a2 * w0
        s21 += a2 * w1
        s22 += a2 * w2
        s23 += a2 * w3
        s30 += a3 * w0
        s31 += a3 * w1
        s32 += a3 * w2
        s33 += a3 * w3
    out[i, j] = s00
    out[i, j + 1] = s01
    out[i, j + 2] = s02
    out[i, j + 3] = s03
    out[i + 1, j] = s10
    out[i + 1, j + 1] = s11
    out[i + 1, j + 2] = s12
    out[i + 1, j + 3] = s13
    out[i + 2, j] = s20
    out[i + 2, j + 1] = s21
    out[i + 2, j + 2] = s22
    out[i + 2, j + 3] = s23
    out[i + 3, j] = s30
    out[i + 3, j + 1] = s31
    out[i + 3, j + 2] = s32
    out[i + 3, j + 3] = s33


@njit(**_KW)
def _block1x4(a, w, out, i, j, K):
    """out[i, j:j+4] = a[i] . w[j:j+4]^T (rows left over below a multiple of 4)."""
    z = a.dtype.type(0)
    s0 = s1 = s2 = s3 = z
    for k in range(K):
        a0 = a[i, k]
        s0 += a0 * w[j, k]
        s1 += a0 * w[j + 1, k]
        s2 += a0 * w[j + 2, k]
        s3 += a0 * w[j + 3, k]
    out[i, j] = s0
    out[i, j + 1] = s1
    out[i, j + 2] = s2
    out[i, j + 3] = s3


@njit(**_KW)
def _dot1(a, i, w, j, K):
    s = a.dtype.type(0)
    for k in range(K):
        s += a[i, k] * w[j, k]
    return s


@njit(**_KW)
def dot_nt(a, w, out):
    """out = a @ w.T with numlstm's own register-blocked kernel.

    a : (M, K), w : (N, K), out : (M, N); each with contiguous rows (whole
    C-ordered arrays or row blocks of one). Any M, N, K >= 0: 4 x 4 blocks,
    then 1 x 4 blocks for the last M % 4 rows and single dot products for
    the last N % 4 columns.
    """
    M, K = a.shape
    N = w.shape[0]
    M4 = M - M % 4
    N4 = N - N % 4
    for i in range(0, M4, 4):
        for j in range(0, N4, 4):
            _block4x4(a, w, out, i, j, K)
        for j in range(N4, N):
            for r in range(4):
                out[i + r, j] = _dot1(a, i + r, w, j, K)
    for i in range(M4, M):
        for j in range(0, N4, 4):
            _block1x4(a, w, out, i, j, K)
        for j in range(N4, N):
            out[i, j] = _dot1(a, i, w, j, K)
