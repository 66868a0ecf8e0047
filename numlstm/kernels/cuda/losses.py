"""Loss kernels on the GPU (values and gradients), twins of ``numlstm.losses``' numpy code.

The per-element (or per-row) losses stay on the device; the layer above
reduces them with ``elementwise.reduce_into`` and brings back one scalar.
"""

from __future__ import annotations

import math

from numba import cuda

from numlstm.kernels.cuda._launch import flat, grid_1d

# -- softmax cross-entropy (one thread per row) ------------------------------------------------------


@cuda.jit
def _ce_forward_kernel(z, labels, eps, prob, per):
    # z, prob: (M, C); labels: (M,) int64, -1 on ignored rows; per: (M,)
    M, C = z.shape
    for r in range(cuda.grid(1), M, cuda.gridsize(1)):
        lab = labels[r]
        m = z[r, 0]
        for c in range(1, C):
            if z[r, c] > m:
                m = z[r, c]
        s = z[r, 0] * 0
        for c in range(C):
            e = math.exp(z[r, c] - m)
            prob[r, c] = e
            s += e
        logs = math.log(s)
        for c in range(C):
            prob[r, c] = prob[r, c] / s
        nll = -((z[r, max(lab, 0)] - m) - logs)
        if eps > 0:
            acc = s * 0
            for c in range(C):
                acc += (z[r, c] - m) - logs
            smooth = -acc / C
            v = (1 - eps) * nll + eps * smooth
        else:
            v = nll
        per[r] = v if lab >= 0 else v * 0


@cuda.jit
def _ce_backward_kernel(prob, labels, one_minus_eps, eps_over_c, k, rows, use_rows, grad):
    # grad = (prob - (1 - eps) onehot - eps / C) * weight_r, weight_r = 0 on ignored rows
    M, C = prob.shape
    for j in range(cuda.grid(1), M * C, cuda.gridsize(1)):
        r = j // C
        c = j % C
        g = prob[r, c]
        if c == labels[r]:
            g -= one_minus_eps
        g -= eps_over_c
        if labels[r] < 0:
            grad[r, c] = g * 0
        elif use_rows:
            grad[r, c] = g * rows[r]
        else:
            grad[r, c] = g * k


def cross_entropy_forward(z, labels, eps, prob, per) -> None:
    """Per-row softmax cross-entropy with label smoothing ``eps`` (a dtype scalar);
    ``labels`` (M,) int64 with -1 on ignored rows (loss 0)."""
    blocks, tpb = grid_1d(z.shape[0])
    _ce_forward_kernel[blocks, tpb](z, labels, eps, prob, per)


def cross_entropy_backward(prob, labels, one_minus_eps, eps_over_c, k, rows, use_rows, grad) -> None:
    """Gradient of the per-row losses (0 on ignored rows), scaled by ``k`` or by
    ``rows`` (M,) when ``use_rows``."""
    blocks, tpb = grid_1d(grad.size)
    _ce_backward_kernel[blocks, tpb](prob, labels, one_minus_eps, eps_over_c, k, rows, bool(use_rows), grad)


# -- binary cross-entropy on logits (elementwise) ----------------------------------------------------


@cuda.jit
def _bce_forward_kernel(z, y, w, use_w, per, sig_neg):
    for j in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        v = z[j]
        e = math.exp(-abs(v))
        sig_neg[j] = e / (1 + e) if v >= 0 else 1 / (1 + e)
        if use_w:
            per[j] = (1 - y[j]) * v + w[j] * (max(-v, 0) + math.log1p(e))
        else:
            per[j] = max(v, 0) - v * y[j] + math.log1p(e)


@cuda.jit
def _bce_backward_kernel(y, w, use_w, sig_neg, k, rows, use_rows, grad):
    for j in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        s = sig_neg[j]
        if use_w:
            s = w[j] * s
        g = (1 - y[j]) - s
        grad[j] = g * rows[j] if use_rows else g * k


def bce_forward(z, y, w, use_w, per, sig_neg) -> None:
    """Per-element BCE on logits; ``w`` (same shape) the positive weights when ``use_w``."""
    if z.size:
        blocks, tpb = grid_1d(z.size)
        _bce_forward_kernel[blocks, tpb](flat(z), flat(y), flat(w), bool(use_w), flat(per), flat(sig_neg))


def bce_backward(y, w, use_w, sig_neg, k, rows, use_rows, grad) -> None:
    """Gradient, scaled by ``k`` or by ``rows`` (same shape) when ``use_rows``."""
    if y.size:
        blocks, tpb = grid_1d(y.size)
        _bce_backward_kernel[blocks, tpb](flat(y), flat(w), bool(use_w), flat(sig_neg), k, flat(rows), bool(use_rows), flat(grad))
