"""``@cuda.jit`` twins of ``numlstm.kernels.cpu.conv``: 2-d convolution, max and average pooling.

Layouts as on the CPU: images ``(N, C, H, W)``, weights ``(O, C, kh, kw)``,
pads ``(top, bottom, left, right)``; output size along an axis
``H' = (H + pt + pb - dh*(kh-1) - 1) // sh + 1``.

Direct convolution, no im2col buffer:

* forward: one thread per output element ``(n, o, oy, ox)`` (``ox`` fastest,
  so neighbouring threads read neighbouring pixels), summing over
  ``(c, i, j)`` with the out-of-image taps skipped (zero padding);
* backward dx: one thread per INPUT element, a gather over the output pixels
  whose window covers it (no atomics, so the result is deterministic);
* backward dW / db: a split reduction: S lanes per weight element, lane s
  summing the terms ``s, s + S, ...`` of the ``(n, oy, ox)`` pixels (the
  lanes of one weight are neighbouring threads reading neighbouring pixels:
  coalesced loads), then a second launch adds the lanes in order (no atomics,
  no barriers, deterministic; ``config.SPLIT_REDUCE_*``).

Pooling is the same: one thread per output element forward, one per input
element backward (gather over the windows that contain it; for max pooling
the window's saved argmax decides).

The implicit-GEMM kernels (forward/dx and dW) share their register-tiled
inner product, ``_tile_fma(TM, TN)``: an inlined device function made per
thread tile, so TM and TN stay compile-time constants (the PTX is the same
as with the loop written in each kernel). Their gathers into shared memory
and their epilogues differ and stay in each kernel.

Drivers take device arrays (C-contiguous) and the arguments of the CPU
drivers (``numlstm.kernels.cpu.conv``: ``conv2d_keep``, ``conv2d_forward``,
``conv2d_backward``, same names and signatures), and read the launch configuration from ``numlstm.kernels.cuda.config`` at
call time. They never validate: the layers do.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config
from numlstm.kernels.cuda._launch import grid_1d


def reduce_launch(blocks: int, dtype) -> tuple[int, int, int, int]:
    """(blocks, threads, stream, shared bytes) of a block-per-item reduction."""
    tpb = int(config.REDUCE_THREADS)
    return max(1, min(int(blocks), int(config.MAX_BLOCKS))), tpb, 0, tpb * np.dtype(dtype).itemsize


@cuda.jit(device=True, inline=True)
def block_sum(sm, acc):
    """Sum ``acc`` over the threads of the block (any block size); every
    thread gets the total. sm: dynamic shared array, one slot per thread."""
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sm[t] = acc
    cuda.syncthreads()
    s = 1
    while s < nt:
        s *= 2
    s //= 2
    while s > 0:
        if t < s and t + s < nt:
            sm[t] += sm[t + s]
        cuda.syncthreads()
        s //= 2
    total = sm[0]
    cuda.syncthreads()  # sm may be reused right after
    return total


@cuda.jit(device=True, inline=True)
def _unravel4(idx, d1, d2, d3):
    """(i0, i1, i2, i3) of the flat C-order index ``idx`` of an array (d0, d1, d2, d3)."""
    i3 = idx % d3
    r = idx // d3
    i2 = r % d2
    r //= d2
    return r // d1, r % d1, i2, i3


# -- convolution ----------------------------------------------------------------------------------
@cuda.jit
def _conv2d_forward_kernel(x, w, b, has_b, sh, sw, pt, pl, dh, dw, out):
    # x: (N, C, H, W); w: (O, C, kh, kw); b: (O,) (read when has_b); out: (N, O, H', W')
    N, O, ho, wo = out.shape
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    total = N * O * ho * wo
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, o, oy, ox = _unravel4(idx, O, ho, wo)
        y0 = oy * sh - pt
        x0 = ox * sw - pl
        acc = out.dtype.type(0)
        for c in range(C):
            for i in range(kh):
                iy = y0 + i * dh
                if iy < 0 or iy >= H:
                    continue
                for j in range(kw):
                    ix = x0 + j * dw
                    if 0 <= ix < W:
                        acc += x[n, c, iy, ix] * w[o, c, i, j]
        if has_b:
            acc += b[o]
        out[n, o, oy, ox] = acc


@cuda.jit
def _conv2d_backward_dx_kernel(w, dy, sh, sw, pt, pl, dh, dw, dx):
    # w: (O, C, kh, kw); dy: (N, O, H', W'); dx: (N, C, H, W) overwritten
    N, C, H, W = dx.shape
    O, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    ho, wo = dy.shape[2], dy.shape[3]
    total = N * C * H * W
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, c, yy, xx = _unravel4(idx, C, H, W)
        acc = dx.dtype.type(0)
        for i in range(kh):
            ty = yy + pt - i * dh
            if ty < 0 or ty % sh != 0:
                continue
            oy = ty // sh
            if oy >= ho:
                continue
            for j in range(kw):
                tx = xx + pl - j * dw
                if tx < 0 or tx % sw != 0:
                    continue
                ox = tx // sw
                if ox >= wo:
                    continue
                for o in range(O):
                    acc += dy[n, o, oy, ox] * w[o, c, i, j]
        dx[n, c, yy, xx] = acc


def split_count(outputs: int, length: int) -> int:
    """Lanes S of a split reduction of ``length`` terms for each of ``outputs``
    sums: at least ``config.SPLIT_REDUCE_MIN_LANES`` (a warp: the lanes of one
    sum read consecutive terms, so their loads coalesce) and enough that
    ``outputs * S`` threads fill the GPU (``config.SPLIT_REDUCE_THREADS``),
    never more than there are terms."""
    target = -(-int(config.SPLIT_REDUCE_THREADS) // max(1, int(outputs)))
    return max(1, min(int(length), max(int(config.SPLIT_REDUCE_MIN_LANES), target)))


@cuda.jit
def _conv2d_backward_dw_kernel(x, dy, sh, sw, pt, pl, dh, dw, kh, kw, partial):
    # x: (N, C, H, W); dy: (N, O, H', W'); partial: (O*C*kh*kw, S) <- lane s of each
    # weight's sum: the terms m = (n, oy, ox) = s, s + S, s + 2S, ... (neighbouring
    # threads are neighbouring lanes of one weight: they read neighbouring pixels)
    N, C, H, W = x.shape
    ho, wo = dy.shape[2], dy.shape[3]
    K, S = partial.shape
    M = N * ho * wo
    for idx in range(cuda.grid(1), K * S, cuda.gridsize(1)):
        s = idx % S
        widx = idx // S
        o, c, i, j = _unravel4(widx, C, kh, kw)
        acc = partial.dtype.type(0)
        for m in range(s, M, S):
            ox = m % wo
            r2 = m // wo
            oy = r2 % ho
            n = r2 // ho
            iy = oy * sh - pt + i * dh
            ix = ox * sw - pl + j * dw
            if 0 <= iy < H and 0 <= ix < W:
                acc += dy[n, o, oy, ox] * x[n, c, iy, ix]
        partial[widx, s] = acc


@cuda.jit
def _channel_sum_kernel(dy, partial):
    # dy: (N, O, P); partial: (O, S) <- lane s of each channel's sum over the terms
    # m = n*P + p = s, s + S, ...
    N, O, P = dy.shape
    S = partial.shape[1]
    for idx in range(cuda.grid(1), O * S, cuda.gridsize(1)):
        s = idx % S
        o = idx // S
        acc = partial.dtype.type(0)
        for m in range(s, N * P, S):
            acc += dy[m // P, o, m % P]
        partial[o, s] = acc


@cuda.jit
def _add_partials_kernel(partial, out):
    # partial: (K, S); out: (K,) += sum over the lanes s (in order: deterministic)
    K, S = partial.shape
    for k in range(cuda.grid(1), K, cuda.gridsize(1)):
        acc = partial.dtype.type(0)
        for s in range(S):
            acc += partial[k, s]
        out[k] += acc


def add_partials(partial, out) -> None:
    """out (any shape, K elements) += partial (K, S) summed over the S lanes."""
    K = partial.shape[0]
    _add_partials_kernel[grid_1d(K)](partial, out.reshape(K))


# -- convolution as an implicit GEMM (forward and dx) ---------------------------------------------
# forward:  out[m = (n, oy, ox), o] = sum_k A[m, k] B[k, o],  k = (c, i, j),
#           A[m, k] = x[n, c, oy*sh - pt + i*dh, ox*sw - pl + j*dw] (0 outside), B[k, o] = w[o, c, i, j]
# dx:       dx[m = (n, y, x), c] = sum_k A[m, k] B[k, c],     k = (o, i, j),
#           A[m, k] = dy[n, o, (y + pt - i*dh) / sh, (x + pl - j*dw) / sw] (0 unless whole and inside),
#           B[k, c] = w[o, c, i, j]
# A is never stored: each block gathers its (BM x BK) slice of A and its (BK x BN) slice of B
# into shared memory, and each thread accumulates a TM x TN tile of the output in registers.
# A small per-geometry table ktab (K, 4) = (channel, i*dh, j*dw, i*kw + j) replaces the
# divisions that would split k.

_IGEMM: dict = {}
_KTABS: dict = {}


def _tile_fma(TM: int, TN: int):
    """The register-tiled inner product of both implicit GEMMs, for a TM x TN thread tile.

    TM and TN are closure constants, as in the kernels: the loops unroll and
    ``acc``, ``a_reg``, ``b_reg`` stay in registers once the helper is inlined.
    Cached per (TM, TN), so both kernels call one device function."""
    key = ("fma", TM, TN)
    f = _IGEMM.get(key)
    if f is not None:
        return f

    @cuda.jit(device=True, inline=True)
    def tile_fma(sm, boff, BM, BN, BK, tmi, tni, gm, gn, a_reg, b_reg, acc):
        # sm: A slice (BK, BM) at 0, B slice (BK, BN) at boff; this thread's rows tmi + i*gm and
        # columns tni + q*gn; acc (TM*TN) += A^T B over the BK staged k
        for kk in range(BK):
            for i in range(TM):
                a_reg[i] = sm[kk * BM + tmi + i * gm]
            for q in range(TN):
                b_reg[q] = sm[boff + kk * BN + tni + q * gn]
            for i in range(TM):
                for q in range(TN):
                    acc[i * TN + q] += a_reg[i] * b_reg[q]

    _IGEMM[key] = tile_fma
    return tile_fma


def _make_igemm(dtype: np.dtype, TM: int, TN: int):
    nbtype = numba.from_dtype(dtype)
    zero = dtype.type(0)
    TT = TM * TN
    tile_fma = _tile_fma(TM, TN)

    @cuda.jit
    def _conv_igemm_kernel(dx_mode, src, w2, w3, ktab, bias, has_b, sh, sw, pt, pl, BM, BN, BK, out):
        # src: x (N, C, H, W) [forward] or dy (N, O, H', W') [dx]; out: y (N, O, H', W') or dx (N, C, H, W)
        # w2: w as (O, C*kh*kw) [forward]; w3: w as (O, C, kh*kw) [dx]; ktab: (K, 4) int32
        sm = cuda.shared.array(0, nbtype)  # A slice (BK, BM), then B slice (BK, BN)
        acc = cuda.local.array(TT, nbtype)
        a_reg = cuda.local.array(TM, nbtype)
        b_reg = cuda.local.array(TN, nbtype)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        Nn, Cout, Ho, Wo = out.shape
        Hs, Ws = src.shape[2], src.shape[3]
        Mtot = Nn * Ho * Wo
        K = ktab.shape[0]
        gm = BM // TM
        gn = BN // TN
        tiles_m = (Mtot + BM - 1) // BM
        tiles_n = (Cout + BN - 1) // BN
        mm_load = tid % BM  # every thread loads one row of A (nt is a multiple of BM) ...
        kk_step = nt // BM  # ... at every kk_step-th k
        tmi = tid % gm
        tni = tid // gm
        boff = BK * BM
        for tile in range(cuda.blockIdx.x, tiles_m * tiles_n, cuda.gridDim.x):
            m0 = (tile % tiles_m) * BM
            n0 = (tile // tiles_m) * BN
            m = m0 + mm_load
            row_ok = m < Mtot
            lx = m % Wo
            r = m // Wo
            ly = r % Ho
            ln = r // Ho
            if dx_mode:
                y0 = ly + pt
                x0 = lx + pl
            else:
                y0 = ly * sh - pt
                x0 = lx * sw - pl
            for e in range(TT):
                acc[e] = zero
            for k0 in range(0, K, BK):
                for kk in range(tid // BM, BK, kk_step):
                    k = k0 + kk
                    v = zero
                    if row_ok and k < K:
                        ch = ktab[k, 0]
                        if dx_mode:
                            ty = y0 - ktab[k, 1]
                            tx = x0 - ktab[k, 2]
                            if ty >= 0 and tx >= 0:
                                if sh == 1 and sw == 1:
                                    if ty < Hs and tx < Ws:
                                        v = src[ln, ch, ty, tx]
                                elif ty % sh == 0 and tx % sw == 0:
                                    oy = ty // sh
                                    ox = tx // sw
                                    if oy < Hs and ox < Ws:
                                        v = src[ln, ch, oy, ox]
                        else:
                            iy = y0 + ktab[k, 1]
                            ix = x0 + ktab[k, 2]
                            if 0 <= iy < Hs and 0 <= ix < Ws:
                                v = src[ln, ch, iy, ix]
                    sm[kk * BM + mm_load] = v
                for e in range(tid, BK * BN, nt):
                    kk = e % BK
                    nn = e // BK
                    k = k0 + kk
                    col = n0 + nn
                    v = zero
                    if k < K and col < Cout:
                        if dx_mode:
                            v = w3[ktab[k, 0], col, ktab[k, 3]]
                        else:
                            v = w2[col, k]
                    sm[boff + kk * BN + nn] = v
                cuda.syncthreads()
                tile_fma(sm, boff, BM, BN, BK, tmi, tni, gm, gn, a_reg, b_reg, acc)
                cuda.syncthreads()
            for i in range(TM):
                m = m0 + tmi + i * gm
                if m < Mtot:
                    ox = m % Wo
                    r = m // Wo
                    oy = r % Ho
                    n = r // Ho
                    for q in range(TN):
                        col = n0 + tni + q * gn
                        if col < Cout:
                            v = acc[i * TN + q]
                            if has_b:
                                v += bias[col]
                            out[n, col, oy, ox] = v

    return _conv_igemm_kernel


def _igemm_kernel(dtype, TM: int, TN: int):
    key = (np.dtype(dtype), TM, TN)
    k = _IGEMM.get(key)
    if k is None:
        k = _IGEMM[key] = _make_igemm(np.dtype(dtype), TM, TN)
    return k


def _ktab(channels: int, kh: int, kw: int, dh: int, dw: int):
    """Device table (channels*kh*kw, 4) int32 of (channel, i*dh, j*dw, i*kw + j), cached per geometry
    (copied to the device once)."""
    key = (channels, kh, kw, dh, dw)
    t = _KTABS.get(key)
    if t is None:
        ch, i, j = np.meshgrid(np.arange(channels), np.arange(kh), np.arange(kw), indexing="ij")
        host = np.stack([ch.ravel(), (i * dh).ravel(), (j * dw).ravel(), (i * kw + j).ravel()], axis=1)
        t = _KTABS[key] = cuda.to_device(np.ascontiguousarray(host, np.int32))
    return t


def _igemm_launch(rows: int, cols: int, itemsize: int):
    """(blocks, threads, shared bytes, BM, BN, BK, TM, TN) for an output of rows x cols."""
    TM, TN = int(config.CONV_THREAD_TILE), int(config.CONV_THREAD_TILE)
    BM, BK = int(config.CONV_TILE_M), int(config.CONV_TILE_K)
    # BN: a multiple of TN*TM (so the thread count is a multiple of BM), no wider than needed
    unit = TN * TM
    BN = max(unit, min(int(config.CONV_TILE_N), unit * (-(-cols // unit))))
    threads = (BM // TM) * (BN // TN)
    tiles = (-(-rows // BM)) * (-(-cols // BN))
    blocks = max(1, min(tiles, int(config.MAX_BLOCKS)))
    return blocks, threads, BK * (BM + BN) * itemsize, BM, BN, BK, TM, TN


def _conv_igemm(dx_mode, src, w, bias, has_b, stride, pads, dilation, out) -> None:
    O, C, kh, kw = w.shape
    sh, sw = stride
    pt, _, pl, _ = pads
    dh, dw = dilation
    ktab = _ktab(O if dx_mode else C, kh, kw, dh, dw)
    rows = out.shape[0] * out.shape[2] * out.shape[3]
    blocks, threads, shared, BM, BN, BK, TM, TN = _igemm_launch(rows, out.shape[1], out.dtype.itemsize)
    kernel = _igemm_kernel(out.dtype, TM, TN)
    kernel[blocks, threads, 0, shared](
        dx_mode, src, w.reshape(O, C * kh * kw), w.reshape(O, C, kh * kw), ktab, bias, has_b,
        sh, sw, pt, pl, BM, BN, BK, out,
    )  # fmt: skip


def _make_igemm_dw(dtype: np.dtype, TM: int, TN: int):
    nbtype = numba.from_dtype(dtype)
    zero = dtype.type(0)
    TT = TM * TN
    tile_fma = _tile_fma(TM, TN)

    @cuda.jit
    def _conv_igemm_dw_kernel(x, dy, ktab, sh, sw, pt, pl, BM, BN, BK, chunk, partial):
        # dW[o, k] = sum_m dy[m, o] A[m, k] over the pixels m = (n, oy, ox), k = (c, i, j),
        # A as in the forward pass. Block tiles (split s, BM channels o, BN taps k); split s
        # sums the pixels [s*chunk, (s+1)*chunk) into partial (O*K, S) [o*K + k, s].
        # x: (N, C, H, W); dy: (N, O, H', W'); ktab: (K, 4) int32
        sm = cuda.shared.array(0, nbtype)  # dy slice (BK pixels, BM channels), then A slice (BK, BN)
        acc = cuda.local.array(TT, nbtype)
        a_reg = cuda.local.array(TM, nbtype)
        b_reg = cuda.local.array(TN, nbtype)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        Nn, O, ho, wo = dy.shape
        H, W = x.shape[2], x.shape[3]
        Mtot = Nn * ho * wo
        K = ktab.shape[0]
        S = partial.shape[1]
        gm = BM // TM
        gn = BN // TN
        tiles_o = (O + BM - 1) // BM
        tiles_k = (K + BN - 1) // BN
        tmi = tid % gm
        tni = tid // gm
        boff = BK * BM
        for tile in range(cuda.blockIdx.x, S * tiles_o * tiles_k, cuda.gridDim.x):
            to = tile % tiles_o
            r = tile // tiles_o
            tk = r % tiles_k
            sp = r // tiles_k
            o0 = to * BM
            k0 = tk * BN
            m_lo = sp * chunk
            m_hi = min(Mtot, m_lo + chunk)
            for e in range(TT):
                acc[e] = zero
            for p0 in range(m_lo, m_hi, BK):
                for e in range(tid, BK * BM, nt):  # pixels fastest: neighbouring threads, neighbouring pixels
                    kk = e % BK
                    mm = e // BK
                    m = p0 + kk
                    o = o0 + mm
                    v = zero
                    if m < m_hi and o < O:
                        ox = m % wo
                        q2 = m // wo
                        v = dy[q2 // ho, o, q2 % ho, ox]
                    sm[kk * BM + mm] = v
                for e in range(tid, BK * BN, nt):
                    kk = e % BK
                    nn = e // BK
                    m = p0 + kk
                    k = k0 + nn
                    v = zero
                    if m < m_hi and k < K:
                        ox = m % wo
                        q2 = m // wo
                        iy = (q2 % ho) * sh - pt + ktab[k, 1]
                        ix = ox * sw - pl + ktab[k, 2]
                        if 0 <= iy < H and 0 <= ix < W:
                            v = x[q2 // ho, ktab[k, 0], iy, ix]
                    sm[boff + kk * BN + nn] = v
                cuda.syncthreads()
                tile_fma(sm, boff, BM, BN, BK, tmi, tni, gm, gn, a_reg, b_reg, acc)
                cuda.syncthreads()
            for i in range(TM):
                o = o0 + tmi + i * gm
                if o < O:
                    for q in range(TN):
                        k = k0 + tni + q * gn
                        if k < K:
                            partial[o * K + k, sp] = acc[i * TN + q]

    return _conv_igemm_dw_kernel


def _igemm_dw_kernel(dtype, TM: int, TN: int):
    key = ("dw", np.dtype(dtype), TM, TN)
    k = _IGEMM.get(key)
    if k is None:
        k = _IGEMM[key] = _make_igemm_dw(np.dtype(dtype), TM, TN)
    return k


def _conv_igemm_dw(x, dy, stride, pads, dilation, dw_acc) -> None:
    O, C, kh, kw = dw_acc.shape
    sh, sw = stride
    pt, _, pl, _ = pads
    dh, dw = dilation
    ktab = _ktab(C, kh, kw, dh, dw)
    K = C * kh * kw
    M = dy.shape[0] * dy.shape[2] * dy.shape[3]
    t = int(config.CONV_THREAD_TILE)
    unit = t * t
    BM = max(unit, min(int(config.CONV_TILE_M), unit * (-(-O // unit))))  # channels
    BN = max(unit, min(int(config.CONV_TILE_N), unit * (-(-K // unit))))  # taps
    BK = int(config.CONV_TILE_K)
    tiles = (-(-O // BM)) * (-(-K // BN))
    # split the pixels so that the blocks fill the GPU, at least one slice each
    S = max(1, min(-(-M // BK), -(-int(config.CONV_WGRAD_BLOCKS) // tiles)))
    chunk = BK * (-(-M // (BK * S)))
    S = -(-M // chunk)
    partial = cuda.device_array((O * K, S), dw_acc.dtype)
    threads = (BM // t) * (BN // t)
    blocks = max(1, min(S * tiles, int(config.MAX_BLOCKS)))
    shared = BK * (BM + BN) * dw_acc.dtype.itemsize
    _igemm_dw_kernel(dw_acc.dtype, t, t)[blocks, threads, 0, shared](x, dy, ktab, sh, sw, pt, pl, BM, BN, BK, chunk, partial)
    add_partials(partial, dw_acc)


def _empty_bias(dtype):
    return cuda.device_array(1, dtype)


def conv2d_keep(x_shape, pads, dtype, keep=None):
    """The array that ``conv2d_forward(..., keep=)`` fills with what
    ``conv2d_backward(..., kept=)`` reads instead of x (the CPU driver's
    entry point): here a device copy of x, (N, C, H, W). ``keep``: the array
    of a previous call, returned when it fits."""
    shape = tuple(x_shape)
    if keep is None or tuple(keep.shape) != shape or np.dtype(keep.dtype) != np.dtype(dtype):
        keep = cuda.device_array(shape, dtype)
    return keep


def conv2d_forward(x, w, b, stride, pads, dilation, out, keep=None, ws=None) -> None:
    """out = conv2d(x, w) + b (the CPU driver's arguments).

    x: (N, C, H, W); w: (O, C, kh, kw); b: (O,) or empty (no bias);
    stride (sh, sw); pads (pt, pb, pl, pr); dilation (dh, dw);
    out: (N, O, H', W'), overwritten. All device arrays. ``keep``: None or
    the array of ``conv2d_keep``, which receives a copy of x for
    ``conv2d_backward``; ``ws``: accepted for the CPU driver's signature
    (the GPU keeps no work arrays between calls).
    """
    if keep is not None and x.size:
        keep.copy_to_device(x)
    if out.size == 0:
        return
    sh, sw = stride
    pt, _, pl, _ = pads
    dh, dw = dilation
    has_b = b.shape[0] > 0
    bb = b if has_b else _empty_bias(out.dtype)
    if config.CONV_IMPLICIT_GEMM:
        _conv_igemm(False, x, w, bb, has_b, stride, pads, dilation, out)
        return
    blocks, tpb = grid_1d(out.size)
    _conv2d_forward_kernel[blocks, tpb](x, w, bb, has_b, sh, sw, pt, pl, dh, dw, out)


def conv2d_backward_dx(w, dy, stride, pads, dilation, dx) -> None:
    """dx (N, C, H, W) = the input gradient of ``conv2d_forward`` for dy (N, O, H', W'), overwritten."""
    sh, sw = stride
    pt, _, pl, _ = pads
    dh, dw = dilation
    if config.CONV_IMPLICIT_GEMM:
        _conv_igemm(True, dy, w, _empty_bias(dx.dtype), False, stride, pads, dilation, dx)
        return
    blocks, tpb = grid_1d(dx.size)
    _conv2d_backward_dx_kernel[blocks, tpb](w, dy, sh, sw, pt, pl, dh, dw, dx)


def conv2d_backward_dw(x, dy, stride, pads, dilation, dw_acc) -> None:
    """dw_acc (O, C, kh, kw) += the weight gradient of ``conv2d_forward`` (x (N, C, H, W), dy (N, O, H', W')).

    A split reduction: S lanes per weight element each sum every S-th term of
    the N*H'*W' pixels, a second launch adds the lanes in order (no atomics,
    no barriers; deterministic)."""
    sh, sw = stride
    pt, _, pl, _ = pads
    dh, dw = dilation
    if config.CONV_IMPLICIT_GEMM:
        _conv_igemm_dw(x, dy, stride, pads, dilation, dw_acc)
        return
    M = dy.shape[0] * dy.shape[2] * dy.shape[3]
    S = split_count(dw_acc.size, M)
    partial = cuda.device_array((dw_acc.size, S), dw_acc.dtype)
    blocks, tpb = grid_1d(partial.size)
    kh, kw = dw_acc.shape[2], dw_acc.shape[3]
    _conv2d_backward_dw_kernel[blocks, tpb](x, dy, sh, sw, pt, pl, dh, dw, kh, kw, partial)
    add_partials(partial, dw_acc)


def channel_sum(dy, db_acc) -> None:
    """db_acc (O,) += dy (N, O, ...) summed over every axis but the channel axis (split reduction)."""
    N, O = dy.shape[0], dy.shape[1]
    P = dy.size // max(1, N * O)
    S = split_count(O, N * P)
    partial = cuda.device_array((O, S), db_acc.dtype)
    blocks, tpb = grid_1d(O * S)
    _channel_sum_kernel[blocks, tpb](dy.reshape(N, O, P), partial)
    add_partials(partial, db_acc)


def conv2d_backward(x, w, dy, stride, pads, dilation, dx, dw, db, need_dx=True, kept=None, ws=None) -> None:
    """Gradients of ``conv2d_forward`` (the CPU driver's arguments).

    x: (N, C, H, W); w: (O, C, kh, kw); dy: (N, O, H', W');
    dx: (N, C, H, W), OVERWRITTEN with the input gradient when ``need_dx``;
    dw: (O, C, kh, kw), dW ADDED; db: (O,), db ADDED, or empty.
    ``kept``: the ``keep`` array of ``conv2d_forward`` for this x (then x is
    not read and may be None), or None; ``ws`` as in ``conv2d_forward``.
    """
    if kept is not None:
        x = kept
    if need_dx:
        conv2d_backward_dx(w, dy, stride, pads, dilation, dx)
    conv2d_backward_dw(x, dy, stride, pads, dilation, dw)
    if db.shape[0] > 0:
        channel_sum(dy, db)


# -- pooling --------------------------------------------------------------------------------------
@cuda.jit
def _maxpool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, out, argmax):
    # x: (N, C, H, W); out, argmax: (N, C, H', W'); argmax flat iy*W + ix (int64)
    N, C, ho, wo = out.shape
    H, W = x.shape[2], x.shape[3]
    for idx in range(cuda.grid(1), N * C * ho * wo, cuda.gridsize(1)):
        n, c, oy, ox = _unravel4(idx, C, ho, wo)
        y0 = oy * sh - ph
        x0 = ox * sw - pw
        best = -math.inf
        arg = -1
        for i in range(kh):
            iy = y0 + i
            if iy < 0 or iy >= H:
                continue
            for j in range(kw):
                ix = x0 + j
                if ix < 0 or ix >= W:
                    continue
                v = x[n, c, iy, ix]
                # first maximum wins; a NaN wins over any number (as PyTorch)
                if arg < 0 or v > best or (math.isnan(v) and not math.isnan(best)):
                    best = v
                    arg = iy * W + ix
        out[n, c, oy, ox] = best
        argmax[n, c, oy, ox] = arg


@cuda.jit(device=True, inline=True)
def _window_range(pos, pad, k, s, n_out):
    """Output indices [lo, hi) whose window (start o*s - pad, length k) covers pos."""
    t = pos + pad  # o*s <= t <= o*s + k - 1
    lo = 0
    if t - k + 1 > 0:
        lo = (t - k + 1 + s - 1) // s
    hi = t // s + 1
    if hi > n_out:
        hi = n_out
    return lo, hi


@cuda.jit
def _maxpool2d_backward_kernel(dy, argmax, kh, kw, sh, sw, ph, pw, dx):
    # dy, argmax: (N, C, H', W'); dx: (N, C, H, W) overwritten (gather: no atomics)
    N, C, H, W = dx.shape
    ho, wo = dy.shape[2], dy.shape[3]
    for idx in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        n, c, yy, xx = _unravel4(idx, C, H, W)
        me = yy * W + xx
        oy0, oy1 = _window_range(yy, ph, kh, sh, ho)
        ox0, ox1 = _window_range(xx, pw, kw, sw, wo)
        acc = dx.dtype.type(0)
        for oy in range(oy0, oy1):
            for ox in range(ox0, ox1):
                if argmax[n, c, oy, ox] == me:
                    acc += dy[n, c, oy, ox]
        dx[n, c, yy, xx] = acc


@cuda.jit
def _avgpool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, out):
    # x: (N, C, H, W); out: (N, C, H', W'); padding counts as zeros, divisor kh*kw
    N, C, ho, wo = out.shape
    H, W = x.shape[2], x.shape[3]
    scale = 1.0 / (kh * kw)
    for idx in range(cuda.grid(1), N * C * ho * wo, cuda.gridsize(1)):
        n, c, oy, ox = _unravel4(idx, C, ho, wo)
        y0 = oy * sh - ph
        x0 = ox * sw - pw
        s = 0.0
        for i in range(kh):
            iy = y0 + i
            if iy < 0 or iy >= H:
                continue
            for j in range(kw):
                ix = x0 + j
                if 0 <= ix < W:
                    s += x[n, c, iy, ix]
        out[n, c, oy, ox] = s * scale


@cuda.jit
def _avgpool2d_backward_kernel(dy, kh, kw, sh, sw, ph, pw, dx):
    # dy: (N, C, H', W'); dx: (N, C, H, W) overwritten
    N, C, H, W = dx.shape
    ho, wo = dy.shape[2], dy.shape[3]
    scale = 1.0 / (kh * kw)
    for idx in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        n, c, yy, xx = _unravel4(idx, C, H, W)
        oy0, oy1 = _window_range(yy, ph, kh, sh, ho)
        ox0, ox1 = _window_range(xx, pw, kw, sw, wo)
        acc = dx.dtype.type(0)
        for oy in range(oy0, oy1):
            for ox in range(ox0, ox1):
                acc += dy[n, c, oy, ox] * scale
        dx[n, c, yy, xx] = acc


def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, out, argmax) -> None:
    """Max over each window (the CPU kernel's arguments; device arrays)."""
    blocks, tpb = grid_1d(out.size)
    _maxpool2d_forward_kernel[blocks, tpb](x, kh, kw, sh, sw, ph, pw, out, argmax)


def maxpool2d_backward(dy, argmax, dx, kh, kw, sh, sw, ph, pw) -> None:
    """dx = each output gradient at its window's argmax, summed (overwritten).

    The CPU kernel scatters and so needs no window geometry; the gather here
    does (the windows that may hold a pixel), hence the extra arguments."""
    blocks, tpb = grid_1d(dx.size)
    _maxpool2d_backward_kernel[blocks, tpb](dy, argmax, kh, kw, sh, sw, ph, pw, dx)


def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, out) -> None:
    """Mean over each window, padding counted as zeros (the CPU kernel's arguments)."""
    blocks, tpb = grid_1d(out.size)
    _avgpool2d_forward_kernel[blocks, tpb](x, kh, kw, sh, sw, ph, pw, out)


def avgpool2d_backward(dy, kh, kw, sh, sw, ph, pw, dx) -> None:
    """dx = dy / (kh*kw) spread over each window (overwritten)."""
    blocks, tpb = grid_1d(dx.size)
    _avgpool2d_backward_kernel[blocks, tpb](dy, kh, kw, sh, sw, ph, pw, dx)


@cuda.jit
def _global_avgpool_forward_kernel(x, out):
    # x: (N, C, P); out: (N, C) = mean over P
    N, C, P = x.shape
    for idx in range(cuda.grid(1), N * C, cuda.gridsize(1)):
        c = idx % C
        n = idx // C
        acc = out.dtype.type(0)
        for p in range(P):
            acc += x[n, c, p]
        out[n, c] = acc / P


@cuda.jit
def _global_avgpool_backward_kernel(dy, scale, dx):
    # dy: (N, C); dx: (N, C, P) = dy * scale (scale in dx's dtype)
    N, C, P = dx.shape
    for idx in range(cuda.grid(1), N * C * P, cuda.gridsize(1)):
        r = idx // P
        dx[r // C, r % C, idx % P] = dy[r // C, r % C] * scale


def global_avgpool2d_forward(x, out) -> None:
    """out (N, C) = x (N, C, H, W) averaged over height and width."""
    N, C = x.shape[0], x.shape[1]
    blocks, tpb = grid_1d(N * C)
    _global_avgpool_forward_kernel[blocks, tpb](x.reshape(N, C, x.size // (N * C)), out)


def global_avgpool2d_backward(dy, dx) -> None:
    """dx (N, C, H, W) = dy (N, C) / (H*W) at every pixel (overwritten)."""
    N, C = dx.shape[0], dx.shape[1]
    P = dx.size // (N * C)
    blocks, tpb = grid_1d(dx.size)
    _global_avgpool_backward_kernel[blocks, tpb](dy, dx.dtype.type(1.0 / P), dx.reshape(N, C, P))
