"""Slow, obviously correct numpy twins of the image layers: direct loops, float64.

Each takes and returns plain arrays; the fast kernels and layers are compared
with them on the same random inputs.
"""

from __future__ import annotations

import numpy as np


def out_size(size, k, stride, lo, hi, dilation):
    return (size + lo + hi - dilation * (k - 1) - 1) // stride + 1


def conv2d_forward_naive(x, w, b, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
    """y[n, o, oy, ox] = b[o] + sum_{c,i,j} w[o, c, i, j] * xpad[n, c, oy*sh + i*dh, ox*sw + j*dw].
    x: (N, C, H, W); w: (O, C, kh, kw); b: (O,) or None; pads: (top, bottom, left, right)."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, pads, dilation
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr), np.float64)
    xp[:, :, pt : pt + H, pl : pl + W] = x
    ho, wo = out_size(H, kh, sh, pt, pb, dh), out_size(W, kw, sw, pl, pr, dw)
    y = np.zeros((N, O, ho, wo))
    for n in range(N):
        for o in range(O):
            for oy in range(ho):
                for ox in range(wo):
                    s = 0.0 if b is None else float(b[o])
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                s += w[o, c, i, j] * xp[n, c, oy * sh + i * dh, ox * sw + j * dw]
                    y[n, o, oy, ox] = s
    return y


def conv2d_backward_naive(x, w, dy, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
    """(dx, dw, db) of ``conv2d_forward_naive`` for the upstream gradient dy, by explicit loops."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    (sh, sw), (pt, pb, pl, pr), (dh, dw_) = stride, pads, dilation
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr), np.float64)
    xp[:, :, pt : pt + H, pl : pl + W] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    _, _, ho, wo = dy.shape
    for n in range(N):
        for o in range(O):
            for oy in range(ho):
                for ox in range(wo):
                    g = dy[n, o, oy, ox]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                iy, ix = oy * sh + i * dh, ox * sw + j * dw_
                                dw[o, c, i, j] += g * xp[n, c, iy, ix]
                                dxp[n, c, iy, ix] += g * w[o, c, i, j]
    dx = dxp[:, :, pt : pt + H, pl : pl + W].copy()
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def _pool_windows(x, k, stride, pad, fill):
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    xp = np.full((N, C, H + 2 * ph, W + 2 * pw), fill, np.float64)
    xp[:, :, ph : ph + H, pw : pw + W] = x
    ho, wo = out_size(H, kh, sh, ph, ph, 1), out_size(W, kw, sw, pw, pw, 1)
    return xp, ho, wo


def maxpool2d_naive(x, k, stride, pad, dy=None):
    """(y, dx): max over each window (padding -inf), the gradient to the first maximum."""
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    xp, ho, wo = _pool_windows(x, k, stride, pad, -np.inf)
    N, C = x.shape[:2]
    y = np.zeros((N, C, ho, wo))
    dxp = np.zeros_like(xp)
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                for ox in range(wo):
                    win = xp[n, c, oy * sh : oy * sh + kh, ox * sw : ox * sw + kw]
                    a = int(np.argmax(win))  # numpy: first maximum, like PyTorch
                    y[n, c, oy, ox] = win.flat[a]
                    if dy is not None:
                        dxp[n, c, oy * sh + a // kw, ox * sw + a % kw] += dy[n, c, oy, ox]
    return y, dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


def avgpool2d_naive(x, k, stride, pad, dy=None):
    """(y, dx): mean over each window, padding counted as zeros (count_include_pad=True)."""
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    xp, ho, wo = _pool_windows(x, k, stride, pad, 0.0)
    N, C = x.shape[:2]
    y = np.zeros((N, C, ho, wo))
    dxp = np.zeros_like(xp)
    for n in range(N):
        for c in range(C):
            for oy in range(ho):
                for ox in range(wo):
                    y[n, c, oy, ox] = xp[n, c, oy * sh : oy * sh + kh, ox * sw : ox * sw + kw].mean()
                    if dy is not None:
                        dxp[n, c, oy * sh : oy * sh + kh, ox * sw : ox * sw + kw] += dy[n, c, oy, ox] / (kh * kw)
    return y, dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


def batchnorm2d_train_naive(x, gamma, beta, eps):
    """(y, mean, biased var) with batch statistics per channel, by loops over channels."""
    N, C, H, W = x.shape
    y = np.empty(x.shape)
    mean = np.empty(C)
    var = np.empty(C)
    for c in range(C):
        v = x[:, c].ravel().astype(np.float64)
        m = v.sum() / v.size
        s2 = ((v - m) ** 2).sum() / v.size
        mean[c], var[c] = m, s2
        y[:, c] = (x[:, c] - m) / np.sqrt(s2 + eps) * gamma[c] + beta[c]
    return y, mean, var


def batchnorm2d_train_backward_naive(x, gamma, eps, dy):
    """(dx, dgamma, dbeta) of the training-mode forward, by the textbook formula per channel."""
    N, C, H, W = x.shape
    dx = np.empty(x.shape)
    dgamma = np.empty(C)
    dbeta = np.empty(C)
    m = N * H * W
    for c in range(C):
        v = x[:, c]
        mu = v.mean()
        var = ((v - mu) ** 2).mean()
        inv = 1.0 / np.sqrt(var + eps)
        xhat = (v - mu) * inv
        g = dy[:, c]
        dgamma[c] = (g * xhat).sum()
        dbeta[c] = g.sum()
        dxhat = g * gamma[c]
        dx[:, c] = inv / m * (m * dxhat - dxhat.sum() - xhat * (dxhat * xhat).sum())
    return dx, dgamma, dbeta
