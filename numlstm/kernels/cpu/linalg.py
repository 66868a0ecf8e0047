"""Matrix products into given outputs (BLAS through Numba's np.dot).

Callers pass C-contiguous 2-d arrays (row blocks of larger C arrays are
fine): BLAS is 2-3x faster on skinny products with C-contiguous operands
than with transposed views, so callers copy small transposes once.
"""

import numpy as np
from numba import njit

from numlstm import config
from numlstm.kernels.cpu.blas import gemm

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def matmul_into(a, b, out):
    """out = a @ b. a: (M, K), b: (K, N), out: (M, N)."""
    np.dot(a, b, out)


@njit(**_KW)
def matmul_tn_add(a, b, out):
    """out += a^T @ b. a: (K, M), b: (K, N), out: (M, N); the sum over K
    (here: every time step and sequence) is one product."""
    out += np.dot(a.T, b)


@njit(**_KW)
def dot_panels(a, bp, out, mb, tmp):
    """out = a @ B in tiles that each take OpenBLAS's small-matrix path.

    OpenBLAS (0.3.2x, x86-64) runs a product with M*N*K <= 1e6 through an
    unpacked small-matrix kernel: measured here 110-115 GFLOP/s on one core,
    against 50-85 GFLOP/s through its general path for the per-step shapes
    of the LSTM (e.g. (16, 128) x (128, 512): 18 us as two 8-row tiles,
    39 us as one call). The recurrent products are that size, so they are
    cut into row tiles of ``mb`` rows and, when one row of B is too wide,
    column panels (see ``numlstm.layers.lstm._tiling``).

    a : (M, K) C-contiguous; bp : (P, K, nb) B's column panels, the last one
    zero-padded (``pack_panels``); out : (M, N) C-contiguous;
    tmp : (mb, nb) scratch (unused when P == 1 and nb == N).
    """
    M = a.shape[0]
    P, _, nb = bp.shape
    N = out.shape[1]
    if P == 1 and nb == N:
        for r0 in range(0, M, mb):
            r1 = min(M, r0 + mb)
            np.dot(a[r0:r1], bp[0], out[r0:r1])
        return
    # panels outside: one panel stays in L2 while every row tile uses it
    for p in range(P):
        c0 = p * nb
        w = min(nb, N - c0)
        for r0 in range(0, M, mb):
            r1 = min(M, r0 + mb)
            t = tmp[: r1 - r0]
            np.dot(a[r0:r1], bp[p], t)
            for i in range(r1 - r0):
                for j in range(w):
                    out[r0 + i, c0 + j] = t[i, j]


def tiling(rows: int, K: int, N: int, budget: int | None = None) -> tuple[int, int]:
    """(mb, nb): row tile and column-panel width for ``dot_panels`` of a
    (rows, K) x (K, N) product, each tile within ``config.BLAS_SMALL_MNK``
    multiply-adds.

    Whole rows of B when at least 8 rows fit (then a multiple of 4 rows);
    otherwise panels of a power-of-two width that leave about 30 rows per
    tile. Measured on one core, float32: (32, 128) x (128, 512) 112 GFLOP/s
    in 12-row tiles against 71 as one call; (64, 512) x (512, 2048) 103 in
    30 x 64 tiles, 85 in 17 x 112; (64, 2048) x (2048, 512) 106 in 30 x 16,
    83 as one call. ``(rows, N)``, one plain product, when the whole product
    fits or the tiling is off. ``budget``: instead of ``config.BLAS_SMALL_MNK``.
    """
    budget = config.BLAS_SMALL_MNK if budget is None else budget
    if not budget or rows * K * N <= budget:
        return max(1, rows), N
    if 8 * K * N <= budget:
        return budget // (K * N) // 4 * 4, N
    nb = 1
    while 2 * nb <= budget // (30 * K):
        nb *= 2
    nb = min(N, nb)
    return max(1, budget // (K * nb)), nb


def pack_panels(b: np.ndarray, nb: int) -> np.ndarray:
    """B (K, N) as column panels (ceil(N / nb), K, nb), the last zero-padded."""
    K, N = b.shape
    P = -(-N // nb)
    if P == 1:
        return np.ascontiguousarray(b).reshape(1, K, N) if nb == N else np.pad(b, ((0, 0), (0, nb - N)))[None]
    out = np.zeros((K, P * nb), b.dtype)
    out[:, :N] = b
    return np.ascontiguousarray(out.reshape(K, P, nb).transpose(1, 0, 2))


@njit(**_KW)
def _gemm_tiles(ta, a, b, beta, c, mc, nc, kc):
    """c = op(a) @ b + beta * c in tiles of ``mc`` x ``nc`` of c over chunks
    of ``kc`` of the inner dimension, each one BLAS call; the chunks after the
    first add into c's tile while it is in cache. op(a) is a.T when ``ta``."""
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    for m0 in range(0, M, mc):
        m1 = min(M, m0 + mc)
        for n0 in range(0, N, nc):
            n1 = min(N, n0 + nc)
            for k0 in range(0, K, kc):
                k1 = min(K, k0 + kc)
                at = a[k0:k1, m0:m1] if ta else a[m0:m1, k0:k1]
                gemm(ta, False, 1.0, at, b[k0:k1, n0:n1], beta if k0 == 0 else 1.0, c[m0:m1, n0:n1])


@njit(**_KW)
def gemm_nn_tiles(a, b, beta, c, mc, nc, kc):
    """c = a @ b + beta * c in small-matrix tiles (``small_tiles_nn``).
    a: (M, K); b: (K, N); c: (M, N); rows contiguous (blocks of larger
    arrays are fine)."""
    _gemm_tiles(False, a, b, beta, c, mc, nc, kc)


@njit(**_KW)
def gemm_tn_tiles(a, b, beta, c, mc, nc, kc):
    """c = a^T @ b + beta * c (the sum over the rows of a and b: every time
    step and sequence) in small-matrix tiles (``small_tiles_tn``; ``kc``
    rows a chunk). a: (R, M); b: (R, N); c: (M, N)."""
    _gemm_tiles(True, a, b, beta, c, mc, nc, kc)


def small_tiles_nn(M: int, K: int, N: int, kc_max: int = 512, rows: int = 12, budget: int | None = None) -> tuple[int, int, int]:
    """(mc, nc, kc) for ``gemm_nn_tiles``: tiles of ``rows`` rows and whole
    rows of b, or of power-of-two column panels when whole rows exceed the
    budget (``config.BLAS_SMALL_MNK``); an inner dimension over 1.25 *
    ``kc_max`` in equal chunks of at most ``kc_max``. The convolution's
    weight gradient (O, K) += (O, T) x (T, K) takes 24 x 128 x 256 tiles:
    (2, 10, 1, 64, 64, 64, 5) ConvLSTM backward 0.89x the time of
    12 x 128 x 512. Measured on one core, float32, 448-row products: (512,
    128) 116 GFLOP/s against 101 as one call, (512, 28) 99 against 73, (128,
    512) 115 against 101; the conv product (256, 1600) x (1600, 512) 101 in
    16 x 128 x 400 tiles, 88-95 in 12 x 32 x 1600, 85 as one call. The whole
    product as one call when it fits or the tiling is off. ``budget``: instead
    of ``config.BLAS_SMALL_MNK``."""
    budget = config.BLAS_SMALL_MNK if budget is None else budget
    if not budget or M * K * N <= budget:
        return max(1, M), max(1, N), max(1, K)
    nk = 1 if 4 * K <= 5 * kc_max else -(-K // kc_max)
    kc = -(-K // nk)
    mc = max(1, min(M, rows, budget // max(1, kc)))
    if mc * kc * N <= budget:
        return mc, max(1, N), kc
    nc = 1
    while 2 * nc * mc * kc <= budget:
        nc *= 2
    return mc, min(N, nc), kc


def small_tiles_tn(R: int, M: int, N: int, budget: int | None = None) -> tuple[int, int, int]:
    """(mc, nc, kc) for ``gemm_tn_tiles`` of an (R, M)^T x (R, N) product:
    tiles of c up to 128 x 128 over chunks of a multiple of 16 rows (at most
    128) within the budget. Measured on one core, float32, R = 448: (512,
    128) 109 GFLOP/s against 95 as one call with beta = 1, (512, 28) 99
    against 59, (512, 256) 106 against 96. For c larger than 2**18 elements
    ((2048, 512): 95 as one call, about 90 in tiles) and with the tiling off:
    one call. ``budget``: instead of ``config.BLAS_SMALL_MNK``."""
    budget = config.BLAS_SMALL_MNK if budget is None else budget
    if not budget or M * N > 2**18 or R * M * N <= budget:
        return max(1, M), max(1, N), max(1, R)
    mc, nc = min(M, 128), min(N, 128)
    while mc * nc > budget:  # only for tiny budgets (tests)
        mc, nc = max(1, mc // 2), max(1, nc // 2)
    kc = min(128, budget // (mc * nc))
    return max(1, mc), max(1, nc), kc // 16 * 16 if kc >= 16 else kc
