"""``@cuda.jit`` kernels of ``BatchNorm2D`` (the math of ``numlstm.layers.batchnorm``).

Images ``(N, C, H, W)`` are read as ``(N, C, P)``, ``P = H*W``; a channel has
``M = N*P`` values. Per channel (one block each, shared-memory reductions in
float64, as the CPU path's ``mean(dtype=np.float64)``)::

    train   mean = sum x / M     var = sum (x - mean)^2 / M     (biased)
            running_mean <- (1 - momentum) running_mean + momentum mean
            running_var  <- (1 - momentum) running_var  + momentum var M / (M - 1)
    eval    mean, var = running_mean, running_var
    inv  = 1 / sqrt(var + eps)       xhat = (x - mean) inv       y = weight xhat + bias

    backward  dweight += sum dy xhat      dbias += sum dy      g = dy weight
        train dx = inv (g - mean(g) - xhat mean(g xhat))
        eval  dx = g inv

Drivers take device arrays; the layer validates.
"""

from __future__ import annotations

import math

from numba import cuda

from numlstm.kernels.cuda._launch import grid_1d
from numlstm.kernels.cuda.conv import block_sum, reduce_launch


@cuda.jit
def _bn_stats_kernel(x, eps, momentum, update, rm, rv, mean_t, inv):
    # x: (N, C, P); rm, rv: (C,) running statistics, updated when `update`;
    # mean_t, inv: (C,) in x's dtype: the mean used for xhat and 1/sqrt(var+eps)
    sm = cuda.shared.array(0, rm.dtype)  # reductions in float64 (see _stats)
    N, C, P = x.shape
    M = N * P
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        acc = 0.0
        for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
            acc += x[m // P, c, m % P]
        mean = block_sum(sm, acc) / M
        md = x.dtype.type(mean)
        acc = 0.0
        for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
            d = x[m // P, c, m % P] - md
            acc += d * d
        var = block_sum(sm, acc) / M
        if cuda.threadIdx.x == 0:
            rm[c] = (1.0 - momentum) * rm[c] + momentum * mean
            rv[c] = (1.0 - momentum) * rv[c] + momentum * var * (M / (M - 1.0))
            mean_t[c] = md
            inv[c] = 1.0 / math.sqrt(var + eps)


@cuda.jit
def _bn_eval_stats_kernel(rm, rv, eps, mean_t, inv):
    # rm, rv: (C,) running statistics; mean_t, inv: (C,)
    for c in range(cuda.grid(1), rm.shape[0], cuda.gridsize(1)):
        mean_t[c] = rm[c]
        inv[c] = 1.0 / math.sqrt(float(rv[c]) + eps)


@cuda.jit
def _bn_apply_kernel(x, mean_t, inv, w, b, affine, xhat, y):
    # x, xhat, y: (N, C, P); mean_t, inv, w, b: (C,)
    N, C, P = x.shape
    for idx in range(cuda.grid(1), N * C * P, cuda.gridsize(1)):
        p = idx % P
        r = idx // P
        c = r % C
        n = r // C
        xh = (x[n, c, p] - mean_t[c]) * inv[c]
        xhat[n, c, p] = xh
        if affine:
            y[n, c, p] = xh * w[c] + b[c]
        else:
            y[n, c, p] = xh


@cuda.jit
def _bn_grad_sums_kernel(dy, xhat, affine, sums, dw_acc, db_acc):
    # dy, xhat: (N, C, P); sums: (2, C) float64 <- (sum dy, sum dy*xhat);
    # dw_acc, db_acc: (C,) += those sums when `affine`
    sm = cuda.shared.array(0, sums.dtype)
    N, C, P = dy.shape
    M = N * P
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        a1 = 0.0
        a2 = 0.0
        for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
            g = dy[m // P, c, m % P]
            a1 += g
            a2 += g * xhat[m // P, c, m % P]
        s1 = block_sum(sm, a1)
        s2 = block_sum(sm, a2)
        if cuda.threadIdx.x == 0:
            sums[0, c] = s1
            sums[1, c] = s2
            if affine:
                db_acc[c] += s1
                dw_acc[c] += s2


@cuda.jit
def _bn_dx_kernel(dy, xhat, inv, w, affine, batch_stats, sums, dx):
    # dy, xhat, dx: (N, C, P); inv, w: (C,); sums: (2, C) from _bn_grad_sums_kernel
    N, C, P = dy.shape
    M = N * P
    for idx in range(cuda.grid(1), N * C * P, cuda.gridsize(1)):
        p = idx % P
        r = idx // P
        c = r % C
        n = r // C
        g = dy[n, c, p]
        scale = 1.0
        if affine:
            g = g * w[c]
            scale = w[c]
        if batch_stats:
            g_mean = scale * sums[0, c] / M
            gx_mean = scale * sums[1, c] / M
            dx[n, c, p] = inv[c] * (g - g_mean - xhat[n, c, p] * gx_mean)
        else:
            dx[n, c, p] = g * inv[c]


def _as3(a):
    return a.reshape(a.shape[0], a.shape[1], a.size // max(1, a.shape[0] * a.shape[1]))


def batchnorm_stats(x, eps, momentum, batch_stats, rm, rv, mean_t, inv, stats64) -> None:
    """Fill ``mean_t``, ``inv`` (C,) for x (N, C, H, W); with ``batch_stats``
    from the batch (and update the running statistics ``rm``, ``rv`` (C,)),
    else from ``rm``, ``rv``. ``stats64``: (2, C) float64 scratch holding the
    running statistics in float64 during the update."""
    C = x.shape[1]
    if batch_stats:
        _cast_kernel[grid_1d(C)](rm, rv, stats64)
        r0, r1 = stats64[0], stats64[1]
        _bn_stats_kernel[reduce_launch(C, stats64.dtype)](_as3(x), float(eps), float(momentum), True, r0, r1, mean_t, inv)
        _uncast_kernel[grid_1d(C)](stats64, rm, rv)
    else:
        _bn_eval_stats_kernel[grid_1d(C)](rm, rv, float(eps), mean_t, inv)


@cuda.jit
def _cast_kernel(rm, rv, out):
    # rm, rv: (C,) -> out (2, C) float64
    for c in range(cuda.grid(1), rm.shape[0], cuda.gridsize(1)):
        out[0, c] = rm[c]
        out[1, c] = rv[c]


@cuda.jit
def _uncast_kernel(s, rm, rv):
    # s (2, C) float64 -> rm, rv (C,)
    for c in range(cuda.grid(1), rm.shape[0], cuda.gridsize(1)):
        rm[c] = s[0, c]
        rv[c] = s[1, c]


def batchnorm_apply(x, mean_t, inv, w, b, affine, xhat, y) -> None:
    """xhat = (x - mean) inv, y = w xhat + b (or xhat without ``affine``); (N, C, H, W) device arrays."""
    blocks, tpb = grid_1d(x.size)
    _bn_apply_kernel[blocks, tpb](_as3(x), mean_t, inv, w, b, affine, _as3(xhat), _as3(y))


def batchnorm_backward(dy, xhat, inv, w, affine, batch_stats, sums, dw_acc, db_acc, dx) -> None:
    """dx (overwritten) and, with ``affine``, dweight/dbias ADDED; ``sums``: (2, C) float64 scratch."""
    C = dy.shape[1]
    _bn_grad_sums_kernel[reduce_launch(C, sums.dtype)](_as3(dy), _as3(xhat), affine, sums, dw_acc, db_acc)
    blocks, tpb = grid_1d(dx.size)
    _bn_dx_kernel[blocks, tpb](_as3(dy), _as3(xhat), inv, w, affine, batch_stats, sums, _as3(dx))
