"""2-d convolution and pooling kernels (im2col + one BLAS product per image).

Layouts: images ``(N, C, H, W)``; weights ``(O, C, kh, kw)``; the column
matrix of one image is ``col (C*kh*kw, H'*W')`` with row ``(c*kh + i)*kw + j``
holding the input pixel under kernel tap ``(i, j)`` of channel ``c`` for each
output pixel (zero where the tap falls on padding). Then::

    forward    y_n   = W2 col_n (+ b)          W2: (O, C*kh*kw), y_n: (O, H'*W')
    backward   dW2  += dy_n col_n^T            one product per image
               dcol  = W2^T dy_n               col2im(dcol) -> dx_n
               db   += sum over pixels of dy_n

Output size along an axis: ``H' = (H + pt + pb - dh*(kh-1) - 1) // sh + 1``.
The pads are given separately (top, bottom, left, right), so TensorFlow's
"same" for even kernels (the extra row at the bottom) is expressible.

The kernels never validate: ``numlstm.layers.conv`` does, before any call.
"""

import numpy as np
from numba import njit

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


def conv_output_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Output length of one axis (may be <= 0 when the kernel does not fit)."""
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


# -- im2col / col2im ------------------------------------------------------------------------------
@njit(**_KW)
def _tap_range(out_len, stride, offset, size):
    """Output indices o in [lo, hi) with 0 <= o*stride + offset < size."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = 0
    if size - offset > 0:
        hi = (size - offset + stride - 1) // stride
    if hi > out_len:
        hi = out_len
    if lo > hi:
        lo = hi
    return lo, hi


@njit(**_KW)
def im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col):
    """Fill ``col`` from one image. x: (C, H, W); col: (C*kh*kw, ho*wo)."""
    C, H, W = x.shape
    zero = col.dtype.type(0)
    for c in range(C):
        for i in range(kh):
            oy_lo, oy_hi = _tap_range(ho, sh, i * dh - pt, H)
            for j in range(kw):
                r = (c * kh + i) * kw + j
                ox_lo, ox_hi = _tap_range(wo, sw, j * dw - pl, W)
                row = col[r]
                ix0 = j * dw - pl
                for oy in range(ho):
                    base = oy * wo
                    if oy < oy_lo or oy >= oy_hi:
                        row[base : base + wo] = zero
                        continue
                    iy = oy * sh + i * dh - pt
                    row[base : base + ox_lo] = zero
                    if ox_hi <= ox_lo:
                        pass
                    elif sw == 1:
                        row[base + ox_lo : base + ox_hi] = x[c, iy, ox_lo + ix0 : ox_hi + ix0]
                    else:
                        row[base + ox_lo : base + ox_hi] = x[c, iy, ox_lo * sw + ix0 : (ox_hi - 1) * sw + ix0 + 1 : sw]
                    row[base + ox_hi : base + wo] = zero


@njit(**_KW)
def col2im_add(col, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, dx):
    """dx += the scatter of ``col`` back onto the image (taps on padding dropped).
    col: (C*kh*kw, ho*wo); dx: (C, H, W)."""
    C, H, W = dx.shape
    for c in range(C):
        for i in range(kh):
            oy_lo, oy_hi = _tap_range(ho, sh, i * dh - pt, H)
            for j in range(kw):
                r = (c * kh + i) * kw + j
                ox_lo, ox_hi = _tap_range(wo, sw, j * dw - pl, W)
                row = col[r]
                ix0 = j * dw - pl
                for oy in range(oy_lo, oy_hi):
                    base = oy * wo
                    iy = oy * sh + i * dh - pt
                    if ox_hi <= ox_lo:
                        pass
                    elif sw == 1:
                        dx[c, iy, ox_lo + ix0 : ox_hi + ix0] += row[base + ox_lo : base + ox_hi]
                    else:
                        dx[c, iy, ox_lo * sw + ix0 : (ox_hi - 1) * sw + ix0 + 1 : sw] += row[base + ox_lo : base + ox_hi]


# -- convolution ----------------------------------------------------------------------------------
@njit(**_KW)
def conv2d_forward(x, w, b, stride, pads, dilation, out):
    """out = conv2d(x, w) + b.

    x: (N, C, H, W); w: (O, C, kh, kw) C-contiguous; b: (O,) or empty (no bias);
    stride: (sh, sw); pads: (pt, pb, pl, pr); dilation: (dh, dw);
    out: (N, O, H', W') C-contiguous, overwritten.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    _, _, ho, wo = out.shape
    sh, sw = stride
    pt, pb, pl, pr = pads
    dh, dw = dilation
    K = C * kh * kw
    P = ho * wo
    w2 = w.reshape(O, K)  # w2: (O, K)
    col = np.empty((K, P), x.dtype)  # col: (K, P)
    for n in range(N):
        im2col(x[n], kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
        y = out[n].reshape(O, P)  # y: (O, P), a view of out
        np.dot(w2, col, y)
        if b.size > 0:
            for o in range(O):
                bo = b[o]
                for p in range(P):
                    y[o, p] += bo


@njit(**_KW)
def conv2d_backward(x, w, dy, stride, pads, dilation, dx, dw_acc, db_acc, need_dx):
    """Gradients of ``conv2d_forward``.

    x: (N, C, H, W); w: (O, C, kh, kw); dy: (N, O, H', W') C-contiguous;
    dx: (N, C, H, W), OVERWRITTEN with the input gradient when ``need_dx``
    (pass any 4-d array otherwise); dw_acc: (O, C, kh, kw) C-contiguous,
    dW ADDED; db_acc: (O,), db ADDED, or empty (no bias).
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    _, _, ho, wo = dy.shape
    sh, sw = stride
    pt, pb, pl, pr = pads
    dh, dw = dilation
    K = C * kh * kw
    P = ho * wo
    w2t = np.ascontiguousarray(w.reshape(O, K).T)  # w2t: (K, O)
    dw2 = dw_acc.reshape(O, K)
    col = np.empty((K, P), x.dtype)
    dcol = np.empty((K, P), x.dtype)
    acc = np.zeros((O, K), x.dtype)
    if need_dx:
        dx[...] = 0
    for n in range(N):
        g = dy[n].reshape(O, P)  # g: (O, P)
        im2col(x[n], kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, col)
        acc += np.dot(g, col.T)
        if need_dx:
            np.dot(w2t, g, dcol)
            col2im_add(dcol, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, dx[n])
        if db_acc.size > 0:
            for o in range(O):
                s = 0.0
                for p in range(P):
                    s += g[o, p]
                db_acc[o] += s
    dw2 += acc


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
