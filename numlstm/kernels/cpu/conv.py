"""2-d convolution and pooling kernels (im2col tiles + small-matrix BLAS tiles).

Layouts: images ``(N, C, H, W)``; weights ``(O, C, kh, kw)``. The output
pixels are taken in tiles of whole output rows (about ``TILE_PIXELS``
pixels, so that a tile's matrices stay in the L2 cache).

Forward: per image the input is copied, channel-major and with its zero
padding, into ``xpc (C, Hp, Wp)``; a tile's column matrix is K-major::

    col (K, T), K = C*kh*kw      col[(c*kh + i)*kw + j, p] = xpc[c, oy*sh + i*dh, ox*sw + j*dw]
    y[n][:, tile] = Wk col (+ b)  Wk = w.reshape(O, K)

an NN product, the form OpenBLAS's small-matrix kernel runs fastest, written
in place into y (``linalg.gemm_nn_tiles``); with stride 1 a row of ``col``
is runs of W' contiguous values of ``xpc``.

Backward: from the padded channels-last image ``xp (Hp, Wp, C)`` (kept by
the forward pass in training) a tile's column matrix is pixel-major::

    colT (T, K), K = kh*kw*C     colT[p, (i*kw + j)*C + c] = xp[oy*sh + i*dh, ox*sw + j*dw, c]
    g      = dy[n][:, tile]      (O, T), read in place
    dW2   += g colT              NN, added in BLAS (beta = 1); W2 = ``weight_matrix(w)``
    dcolT  = g^T W2              TN -> scatter-add into dxp (Hp, Wp, C) -> dx_n
    db    += sum over pixels of dy

(for stride-1, dilation-1 width a row's ``kw*C`` entries of one kernel row
are ONE contiguous copy from ``xp``).

Output size along an axis: ``H' = (H + pt + pb - dh*(kh-1) - 1) // sh + 1``.
The pads are given separately (top, bottom, left, right), so TensorFlow's
"same" for even kernels (the extra row at the bottom) is expressible.

The kernels never validate: ``numlstm.layers.conv`` does, before any call.
"""

from functools import partial

import numpy as np
from numba import njit

from numlstm._threads import max_chunks, product_chunks, run_blocks, single_threaded_blas, split_rows
from numlstm.kernels import plan as _planner
from numlstm.kernels.cpu.linalg import gemm_nn_tiles, gemm_tn_tiles, small_tiles_nn, small_tiles_tn

_KW = {"cache": True, "error_model": "numpy", "nogil": True}

#: Output pixels per tile (rounded to whole output rows, at least one row).
TILE_PIXELS = 512


@njit(**_KW)
def _u(i):
    return np.uint64(i)


def conv_output_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Output length of one axis (may be <= 0 when the kernel does not fit)."""
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


# -- layout helpers -------------------------------------------------------------------------------
@njit(**_KW)
def _pad_hwc(x, pt, pl, xp):
    """xp[pt + y, pl + x, c] = x[c, y, x]; the border of xp is left as it is (zeros).
    x: (C, H, W); xp: (Hp, Wp, C)."""
    C, H, W = x.shape
    ul = _u(pl)
    for c in range(C):
        for y in range(H):
            src = x[c, y]
            dst = xp[pt + y]
            for xx in range(_u(W)):
                dst[ul + xx, c] = src[xx]


@njit(**_KW)
def _pad_chw(x, pt, pl, xpc):
    """xpc[c, pt + y, pl + x] = x[c, y, x]; the border of xpc is left as it is
    (zeros). x: (C, H, W); xpc: (C, Hp, Wp)."""
    C, H, W = x.shape
    ul = _u(pl)
    for c in range(C):
        for y in range(H):
            src = x[c, y]
            dst = xpc[c, pt + y]
            for xx in range(_u(W)):
                dst[ul + xx] = src[xx]


@njit(**_KW)
def _unpad_hwc(dxp, pt, pl, dx):
    """dx[c, y, x] = dxp[pt + y, pl + x, c]. dxp: (Hp, Wp, C); dx: (C, H, W)."""
    C, H, W = dx.shape
    ul = _u(pl)
    for c in range(C):
        for y in range(H):
            src = dxp[pt + y]
            dst = dx[c, y]
            for xx in range(_u(W)):
                dst[xx] = src[ul + xx, c]


@njit(**_KW)
def _tile_cols(xp, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, colT):
    """colT[(oy - oy0)*wo + ox, (i*kw + j)*C + c] = xp[oy*sh + i*dh, ox*sw + j*dw, c].

    Unsigned indices in the inner loops: numba's wraparound test for signed
    indices keeps LLVM from vectorising the copies (4-5x slower, measured)."""
    Wp, C = xp.shape[1], xp.shape[2]
    xf = xp.reshape(xp.shape[0], Wp * C)
    uc = _u(C)
    for oy in range(oy0, oy1):
        p0 = (oy - oy0) * wo
        for i in range(kh):
            src = xf[oy * sh + i * dh]
            if dw == 1:
                seg = _u(kw * C)
                d0 = _u(i) * seg
                for ox in range(wo):
                    dst = colT[p0 + ox]
                    s0 = _u(ox * sw) * uc
                    for q in range(seg):
                        dst[d0 + q] = src[s0 + q]
            else:
                for ox in range(wo):
                    dst = colT[p0 + ox]
                    for j in range(kw):
                        s0 = _u(ox * sw + j * dw) * uc
                        d0 = _u(i * kw + j) * uc
                        for c in range(uc):
                            dst[d0 + c] = src[s0 + c]


@njit(**_KW)
def _tile_cols_k(xpc, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, col):
    """col[(c*kh + i)*kw + j, (oy - oy0)*wo + ox] = xpc[c, oy*sh + i*dh, ox*sw + j*dw]:
    the K-major column matrix of a tile (the forward pass's layout), from
    the channel-major padded image; with stride 1 each output row is one
    contiguous run of ``wo`` values."""
    C = xpc.shape[0]
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                dst = col[(c * kh + i) * kw + j]
                for oy in range(oy0, oy1):
                    src = xpc[c, oy * sh + i * dh]
                    q0 = _u((oy - oy0) * wo)
                    s0 = _u(j * dw)
                    if sw == 1:
                        for ox in range(_u(wo)):
                            dst[q0 + ox] = src[s0 + ox]
                    else:
                        for ox in range(_u(wo)):
                            dst[q0 + ox] = src[s0 + ox * _u(sw)]


@njit(**_KW)
def _tile_cols_add(dcolT, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, dxp):
    """The adjoint of ``_tile_cols``: dxp[oy*sh + i*dh, ox*sw + j*dw, c] += dcolT[...]."""
    Wp, C = dxp.shape[1], dxp.shape[2]
    df = dxp.reshape(dxp.shape[0], Wp * C)
    uc = _u(C)
    for oy in range(oy0, oy1):
        p0 = (oy - oy0) * wo
        for i in range(kh):
            dst = df[oy * sh + i * dh]
            if dw == 1:
                seg = _u(kw * C)
                s0 = _u(i) * seg
                for ox in range(wo):
                    src = dcolT[p0 + ox]
                    d0 = _u(ox * sw) * uc
                    for q in range(seg):
                        dst[d0 + q] += src[s0 + q]
            else:
                for ox in range(wo):
                    src = dcolT[p0 + ox]
                    for j in range(kw):
                        s0 = _u(i * kw + j) * uc
                        d0 = _u(ox * sw + j * dw) * uc
                        for c in range(uc):
                            dst[d0 + c] += src[s0 + c]


# -- convolution ----------------------------------------------------------------------------------
@njit(**_KW)
def weight_matrix(w):
    """(O, C, kh, kw) -> W2 (O, kh*kw*C), column (i*kw + j)*C + c: the weight
    in the column order of ``colT``. The threaded drivers form it once per
    call (ConvLSTM: once per pass, not per step) and hand it to the blocks."""
    O, C, kh, kw = w.shape
    w2 = np.empty((O, kh * kw * C), w.dtype)
    for o in range(O):
        for i in range(kh):
            for j in range(kw):
                for c in range(C):
                    w2[o, (i * kw + j) * C + c] = w[o, c, i, j]
    return w2


@njit(**_KW)
def fold_weight_grad(acc, dw_acc):
    """dw_acc (O, C, kh, kw) += acc (O, kh*kw*C) in the ``weight_matrix`` order."""
    O, C, kh, kw = dw_acc.shape
    for o in range(O):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    dw_acc[o, c, i, j] += acc[o, (i * kw + j) * C + c]


@njit(**_KW)
def tile_rows(wo):
    """Output rows per tile (``TILE_PIXELS`` pixels, at least one row)."""
    return max(1, TILE_PIXELS // wo)


@njit(**_KW)
def _forward_alloc(x, w, b, stride, pads, dilation, out, xps, keep):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    pt, pb, pl, pr = pads
    T = tile_rows(out.shape[3]) * out.shape[3]
    xpc = np.zeros((C, H + pt + pb, W + pl + pr), x.dtype)
    col = np.empty((C * kh * kw, T), x.dtype)
    wk = np.ascontiguousarray(w).reshape(O, C * kh * kw)
    # one tile for the whole product: these allocating entry points serve
    # tests and one-off calls; the threaded drivers pick small-matrix tiles
    conv2d_forward_work(x, wk, kh, kw, b, stride, pads, dilation, out, xps, keep, xpc, col, (O, T, C * kh * kw))


@njit(**_KW)
def conv2d_forward_kernel(x, w, b, stride, pads, dilation, out):
    """out = conv2d(x, w) + b, single-threaded, its work arrays allocated
    (tests and one-off calls; ``conv2d_forward`` is the driver).

    x: (N, C, H, W); w: (O, C, kh, kw) C-contiguous; b: (O,) or empty (no bias);
    stride: (sh, sw); pads: (pt, pb, pl, pr); dilation: (dh, dw);
    out: (N, O, H', W') C-contiguous, overwritten.
    """
    _forward_alloc(x, w, b, stride, pads, dilation, out, np.zeros((0, 1, 1, 1), x.dtype), False)


@njit(**_KW)
def conv2d_forward_work(x, wk, kh, kw, b, stride, pads, dilation, out, xps, keep, xpc, col, tiles):
    """``conv2d_forward_kernel`` with the weight as ``wk = w.reshape(O, C*kh*kw)``
    and the work arrays given (the threaded driver keeps them between calls:
    fresh megabyte arrays cost page faults on every call).

    Per tile the output is ``y[n][:, tile] = wk @ col`` (+ b), written in
    place, in small-matrix tiles (``tiles``: (mc, nc, kc) of
    ``small_tiles_nn(O, K, T)``): with
    the K-major column matrix the product is NN, the form OpenBLAS's
    small-matrix kernel runs fastest (measured: 114 GFLOP/s against 100 for
    the pixel-major NT product at (256, 576) x (576, 256)).

    xps: (N, Hp, Wp, C) with a zero border, receives every padded
    channels-last image when ``keep`` (for ``conv2d_backward_work``); else
    unused. xpc: (C, Hp, Wp) scratch with a zero border (only the interior is
    written); col: (K, T) with T = ``tile_rows(W') * W'``.
    """
    N, C, H, W = x.shape
    O = wk.shape[0]
    _, _, ho, wo = out.shape
    sh, sw = stride
    pt, pb, pl, pr = pads
    dh, dw = dilation
    P = ho * wo
    rows = col.shape[1] // wo
    has_b = b.size > 0
    for n in range(N):
        if keep:
            _pad_hwc(x[n], pt, pl, xps[n])
        _pad_chw(x[n], pt, pl, xpc)
        y = out[n].reshape(O, P)
        for oy0 in range(0, ho, rows):
            oy1 = min(ho, oy0 + rows)
            t = (oy1 - oy0) * wo
            p0 = oy0 * wo
            _tile_cols_k(xpc, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, col)
            yt = y[:, p0 : p0 + t]
            gemm_nn_tiles(wk, col[:, :t], 0.0, yt, tiles[0], tiles[1], tiles[2])
            if has_b:
                for o in range(O):
                    bo = b[o]
                    yo = yt[o]
                    for p in range(_u(t)):
                        yo[p] += bo


@njit(**_KW)
def conv2d_forward_keep(x, w, b, stride, pads, dilation, out, xps):
    """``conv2d_forward_kernel`` that also keeps every padded channels-last image for
    the backward pass: xps (N, H+pt+pb, W+pl+pr, C) C-contiguous, its border
    zero (only the interior is written)."""
    _forward_alloc(x, w, b, stride, pads, dilation, out, xps, True)


@njit(**_KW)
def _backward_alloc(x, xps, kept, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx):
    O, C, kh, kw = w.shape
    wo = dy.shape[3]
    K = C * kh * kw
    T = tile_rows(wo) * wo
    Hp, Wp = xps.shape[1], xps.shape[2]
    acc = np.zeros((O, K), dy.dtype)
    dbs = np.zeros(O, np.float64)
    dxp = np.zeros((Hp, Wp, C) if need_dx else (1, 1, 1), dy.dtype)
    colT = np.empty((T, K), dy.dtype)
    dcolT = np.empty((T, K), dy.dtype)
    # one tile per product (see _forward_alloc)
    tiles = (O, K, T, T, K, O)
    conv2d_backward_work(
        x, xps, kept, weight_matrix(w), kh, kw, dy, stride, pads, dilation, dx, need_dx, True, acc, dbs, dxp, colT, dcolT, tiles
    )
    fold_weight_grad(acc, dw_acc)
    if db_acc.size > 0:
        for o in range(O):
            db_acc[o] += dbs[o]


@njit(**_KW)
def conv2d_backward_kernel(x, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx):
    """Gradients of ``conv2d_forward_kernel``, single-threaded, its work arrays
    allocated (``conv2d_backward`` is the driver).

    x: (N, C, H, W); w: (O, C, kh, kw); dy: (N, O, H', W') C-contiguous;
    dx: (N, C, H, W), OVERWRITTEN with the input gradient when ``need_dx``
    (pass any 4-d array otherwise); dw_acc: (O, C, kh, kw) C-contiguous,
    dW ADDED; db_acc: (O,), db ADDED, or empty (no bias).
    """
    N, C, H, W = x.shape
    pt, pb, pl, pr = pads
    xps = np.zeros((1, H + pt + pb, W + pl + pr, C), x.dtype)
    _backward_alloc(x, xps, False, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx)


@njit(**_KW)
def conv2d_backward_kept(xps, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx):
    """``conv2d_backward_kernel`` from the images kept by ``conv2d_forward_keep``
    (xps: (N, H+pt+pb, W+pl+pr, C)) instead of x; other arguments as there."""
    _backward_alloc(dx[:0], xps, True, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx)


@njit(**_KW)
def conv2d_backward_work(
    x, xps, kept, w2, kh, kw, dy, stride, pads, dilation, dx, need_dx, need_dw, acc, dbs, dxp, colT, dcolT, tiles
):
    """``conv2d_backward_kernel`` with the weight as ``weight_matrix``, the
    gradients ACCUMULATED in that layout (acc (O, K); dbs (O,) float64:
    ``fold_weight_grad`` moves them to dW once per pass, not per call), and
    the work arrays given: xps (N, Hp, Wp, C) when ``kept``, else
    (1, Hp, Wp, C) with a zero border; dxp (Hp, Wp, C) when ``need_dx``;
    colT, dcolT (T, K).

    Per tile, with g the tile of dy read in place (O, t)::

        acc  += g colT            NN, small-matrix tiles adding into acc
        dcolT = g^T W2            TN, small-matrix tiles

    tiles: (mc, nc, kc) of the first (``small_tiles_nn(O, T, K)``) and
    (mc, nc, kc) of the second (``small_tiles_tn(O, T, K)``).
    ``need_dw`` False skips the weight gradient (acc untouched, x and xps
    not read): ConvLSTM's first step when the input there is known to be 0.
    """
    N = dy.shape[0]
    O = w2.shape[0]
    _, _, ho, wo = dy.shape
    sh, sw = stride
    pt, pb, pl, pr = pads
    dh, dw = dilation
    P = ho * wo
    T = colT.shape[0]
    rows = T // wo
    w_mc, w_nc, w_kc, x_mc, x_nc, x_kc = tiles
    for n in range(N):
        if kept:
            xp = xps[n]
        elif need_dw:
            xp = xps[0]
            _pad_hwc(x[n], pt, pl, xp)
        g = dy[n].reshape(O, P)
        for o in range(O):
            go = g[o]
            s = 0.0
            for p in range(_u(P)):
                s += go[p]
            dbs[o] += s
        if need_dx:
            dxp[...] = 0
        for oy0 in range(0, ho, rows):
            oy1 = min(ho, oy0 + rows)
            t = (oy1 - oy0) * wo
            p0 = oy0 * wo
            gt = g[:, p0 : p0 + t]
            if need_dw:
                _tile_cols(xp, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, colT)
                gemm_nn_tiles(gt, colT[:t], 1.0, acc, w_mc, w_nc, w_kc)
            if need_dx:
                gemm_tn_tiles(gt, w2, 0.0, dcolT[:t], x_mc, x_nc, x_kc)
                _tile_cols_add(dcolT, kh, kw, sh, sw, dh, dw, oy0, oy1, wo, dxp)
        if need_dx:
            _unpad_hwc(dxp, pt, pl, dx[n])


# -- the threaded drivers (the entry points of ``numlstm.kernels.cuda.conv`` too) ----------------
def _blocks(n: int, macs: int) -> list[tuple[int, int]]:
    """The batch of n images in one block per thread (at least one image each)."""
    return split_rows(n, product_chunks(n, macs, min_rows=1))


def _scratch(ws: dict | None, key, shape, dtype, zero: bool = False) -> np.ndarray:
    """A work array kept in ``ws`` (a layer's workspace) between calls, or a
    fresh one when ``ws`` is None. ``zero``: allocated zeroed (the kernels
    write only the interior of padded images, so a kept border stays 0)."""
    dtype = np.dtype(dtype)
    if ws is None:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    # keyed by shape too: a layer's convolutions of different sizes (ConvLSTM's
    # input and recurrent one) each keep their own
    key = (key, tuple(shape), dtype.str)
    buf = ws.get(key)
    if buf is None:
        buf = ws[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    return buf


def conv2d_keep(x_shape, pads, dtype, keep=None) -> np.ndarray:
    """The array that ``conv2d_forward(..., keep=)`` fills with what
    ``conv2d_backward(..., kept=)`` reads instead of x: here the padded
    channels-last images, (N, H+top+bottom, W+left+right, C) with a zero
    border. ``keep``: the array of a previous call, returned when it fits."""
    N, C, H, W = x_shape
    pt, pb, pl, pr = pads
    shape = (N, H + pt + pb, W + pl + pr, C)
    if keep is None or keep.shape != shape or keep.dtype != np.dtype(dtype):
        keep = np.zeros(shape, dtype)  # the border stays zero: only the interior is written
    return keep


def tile_budget(O: int, K: int, T: int, dtype) -> int | None:
    """The plan's choice for a convolution whose products are (O, K) x (K, T)
    (forward) and (O, T) x (T, K), (T, O) x (O, K) (backward): OpenBLAS
    small-matrix tiles (None: ``config.BLAS_SMALL_MNK``) or one call per
    image tile (0). The tiles win only where OpenBLAS has its small-matrix
    kernel (its AVX-512 build); on its Haswell build each tile is a general
    call that packs its operands again, so the choice is timed on the host
    (``numlstm.kernels.plan``)."""
    dt = np.dtype(dtype)
    key = f"{dt.name} O={O} K={K} T={T}"
    choice = _planner.choose("conv.tiles", key, ["tiles", "blas"], "tiles", partial(_probe_tiles, O, K, T, dt))
    return None if choice == "tiles" else 0


def _probe_tiles(O: int, K: int, T: int, dt: np.dtype, choice: str) -> float:
    """Seconds of one image tile's three products (forward, dW, dcol) under ``choice``."""

    b = None if choice == "tiles" else 0
    rng = np.random.default_rng(0)
    wk = rng.standard_normal((O, K)).astype(dt)
    col = rng.standard_normal((K, T)).astype(dt)
    y = np.empty((O, T), dt)
    colT = np.ascontiguousarray(col.T)
    acc = np.zeros((O, K), dt)
    dcolT = np.empty((T, K), dt)
    nn, bw, tn = small_tiles_nn(O, K, T, budget=b), small_tiles_nn(O, T, K, 256, 24, b), small_tiles_tn(O, T, K, b)

    def run():
        gemm_nn_tiles(wk, col, 0.0, y, *nn)
        gemm_nn_tiles(y, colT, 1.0, acc, *bw)
        gemm_tn_tiles(y, wk, 0.0, dcolT, *tn)

    return _planner.best_time(run)


def conv2d_forward(x, w, b, stride, pads, dilation, out, keep=None, ws=None) -> None:
    """out = conv2d(x, w) + b, the batch split over threads.

    x: (N, C, H, W) C-contiguous; w: (O, C, kh, kw) C-contiguous; b: (O,) or
    empty; stride (sh, sw); pads (top, bottom, left, right); dilation (dh, dw);
    out: (N, O, H', W') C-contiguous, overwritten. ``keep``: None, or the
    array of ``conv2d_keep(x.shape, pads, dtype)``, which receives what
    ``conv2d_backward`` needs without x (the padded channels-last images).
    ``ws``: a dict that keeps the work arrays between calls (a layer's
    workspace). No validation.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    wo = out.shape[3]
    pt, pb, pl, pr = pads
    T = tile_rows(wo) * wo
    K = C * kh * kw
    tiles = small_tiles_nn(O, K, T, budget=tile_budget(O, K, T, x.dtype))
    blocks = _blocks(N, out.size * w[0].size)
    stride, pads, dilation = tuple(stride), tuple(pads), tuple(dilation)
    wk = w.reshape(O, K)
    no_keep = np.zeros((0, 1, 1, 1), x.dtype)
    fns = []
    for i, (a, e) in enumerate(blocks):
        xpc = _scratch(ws, ("conv_xpc", i, pads), (C, H + pt + pb, W + pl + pr), x.dtype, zero=True)
        col = _scratch(ws, ("conv_col", i), (K, T), x.dtype)
        xps = no_keep if keep is None else keep[a:e]
        args = (x[a:e], wk, kh, kw, b, stride, pads, dilation, out[a:e], xps, keep is not None, xpc, col, tiles)
        fns.append(partial(conv2d_forward_work, *args))
    with single_threaded_blas(len(fns) > 1):
        run_blocks(fns)


class ConvGradAcc:
    """Per-thread accumulators of a convolution's weight and bias gradients
    in the kernels' layout, summed over many ``conv2d_backward_acc`` calls and
    moved into dW, db once (``fold``): ConvLSTM's recurrent convolution is
    differentiated once per step, its weight gradient folded once per pass."""

    def __init__(self, w_shape, dtype, ws=None, key="conv_acc"):
        O, C, kh, kw = w_shape
        n = max_chunks()
        self.w_shape = tuple(w_shape)
        self.acc = _scratch(ws, (key, "w"), (n, O, C * kh * kw), dtype)
        self.dbs = _scratch(ws, (key, "b"), (n, O), np.float64)
        self.acc.fill(0)
        self.dbs.fill(0)

    def fold(self, dw, db) -> None:
        """dw (O, C, kh, kw) += the sum of the accumulators; db (O,) likewise (or empty)."""
        fold_weight_grad(self.acc.sum(axis=0), dw)
        if db.size:
            db += self.dbs.sum(axis=0).astype(db.dtype)


def conv2d_backward(x, w, dy, stride, pads, dilation, dx, dw, db, need_dx: bool = True, kept=None, ws=None) -> None:
    """dx = input gradient (when ``need_dx``), dw += weight gradient, db += bias gradient.

    Shapes as in ``conv2d_forward``; dy: (N, O, H', W'); db may be empty (no bias).
    ``kept``: the ``keep`` array filled by ``conv2d_forward`` for this x (then
    x is not read and may be None; dx gives the input shape), or None.
    ``ws``: as in ``conv2d_forward``.
    """
    acc = ConvGradAcc(w.shape, dy.dtype, ws, "conv_acc_call")
    conv2d_backward_acc(x, w, dy, stride, pads, dilation, dx, acc, need_dx, kept, ws)
    acc.fold(dw, db)


def conv2d_backward_acc(
    x, w, dy, stride, pads, dilation, dx, acc, need_dx: bool = True, kept=None, ws=None, w2=None, need_dw: bool = True
) -> None:
    """``conv2d_backward`` with dW and db collected in ``acc`` (a ``ConvGradAcc``,
    folded by the caller), the batch split over threads.

    ``w2``: ``weight_matrix(w)`` when the caller already has it (ConvLSTM
    forms it once per pass for its per-step convolution). ``need_dw`` False:
    no weight gradient (x, kept not read; db still collected).
    """
    N, O, _, wo = dy.shape
    _, C, kh, kw = w.shape
    pt, pb, pl, pr = pads
    if kept is not None:
        Hp, Wp = kept.shape[1], kept.shape[2]
    else:
        Hp, Wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    T = tile_rows(wo) * wo
    K = C * kh * kw
    # the weight gradient in short chunks of pixels (see small_tiles_nn)
    budget = tile_budget(O, K, T, dy.dtype)
    tiles = (*small_tiles_nn(O, T, K, kc_max=256, rows=24, budget=budget), *small_tiles_tn(O, T, K, budget=budget))
    blocks = _blocks(N, dy.size * w[0].size)
    stride, pads, dilation = tuple(stride), tuple(pads), tuple(dilation)
    w2 = weight_matrix(w) if w2 is None else w2
    if not need_dx:
        dx = np.empty((N, 0, 0, 0), dy.dtype)
    dt = dy.dtype
    fns = []
    for i, (a, e) in enumerate(blocks):
        if kept is None:
            xps = _scratch(ws, ("conv_xps", i, pads), (1, Hp, Wp, C), dt, zero=True)
            xa = x[a:e]
        else:
            xps = kept[a:e]
            xa = dx[a:e][:0]
        dxp = _scratch(ws, ("conv_dxp", i), (Hp, Wp, C) if need_dx else (1, 1, 1), dt)
        work = [_scratch(ws, (name, i), shape, dt) for name, shape in (("conv_colT", (T, K)), ("conv_dcolT", (T, K)))]
        args = (xa, xps, kept is not None, w2, kh, kw, dy[a:e], stride, pads, dilation, dx[a:e], need_dx, need_dw)
        fns.append(partial(conv2d_backward_work, *args, acc.acc[i], acc.dbs[i], dxp, *work, tiles))
    with single_threaded_blas(len(fns) > 1):
        run_blocks(fns)


# -- pooling --------------------------------------------------------------------------------------
@njit(**_KW)
def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, out, argmax):
    """Max over each window (padding counts as -inf); the first maximum wins,
    a NaN wins over any number (as PyTorch). x: (N, C, H, W);
    out: (N, C, H', W'); argmax: (N, C, H', W') int64, flat index iy*W + ix."""
    N, C, H, W = x.shape
    _, _, ho, wo = out.shape
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                y0 = oy * sh - ph
                for ox in range(wo):
                    x0 = ox * sw - pw
                    best = -np.inf
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
                            if arg < 0 or v > best or (np.isnan(v) and not np.isnan(best)):
                                best = v
                                arg = iy * W + ix
                    out[n, c, oy, ox] = best
                    argmax[n, c, oy, ox] = arg


@njit(**_KW)
def maxpool2d_backward(dy, argmax, dx):
    """dx = 0, then each output gradient added at its window's argmax.
    dy, argmax: (N, C, H', W'); dx: (N, C, H, W)."""
    N, C, ho, wo = dy.shape
    W = dx.shape[3]
    dx[...] = 0
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                for ox in range(wo):
                    a = argmax[n, c, oy, ox]
                    if a >= 0:
                        dx[n, c, a // W, a % W] += dy[n, c, oy, ox]


@njit(**_KW)
def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, out):
    """Mean over each window, padding counted as zeros (divisor kh*kw).
    x: (N, C, H, W); out: (N, C, H', W')."""
    N, C, H, W = x.shape
    _, _, ho, wo = out.shape
    scale = 1.0 / (kh * kw)
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                y0 = oy * sh - ph
                for ox in range(wo):
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


@njit(**_KW)
def avgpool2d_backward(dy, kh, kw, sh, sw, ph, pw, dx):
    """dx = 0, then dy / (kh*kw) spread over each window. dy: (N, C, H', W'); dx: (N, C, H, W)."""
    N, C, ho, wo = dy.shape
    H, W = dx.shape[2], dx.shape[3]
    scale = 1.0 / (kh * kw)
    dx[...] = 0
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                y0 = oy * sh - ph
                for ox in range(wo):
                    x0 = ox * sw - pw
                    g = dy[n, c, oy, ox] * scale
                    for i in range(kh):
                        iy = y0 + i
                        if iy < 0 or iy >= H:
                            continue
                        for j in range(kw):
                            ix = x0 + j
                            if 0 <= ix < W:
                                dx[n, c, iy, ix] += g
