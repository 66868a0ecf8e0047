"""Fused optimizer updates on the GPU: twins of ``numlstm.kernels.cpu.optim``.

Same arguments (1-d C-contiguous device views of one parameter, its gradient
and state buffers; scalars already cast to the arrays' dtype), same order of
operations as ``torch.optim`` (single-tensor path), one thread per element in
a grid-stride loop.
"""

from __future__ import annotations

import math

from numba import cuda

from numlstm.kernels.cuda._launch import grid_1d


@cuda.jit
def _sgd_kernel(param, grad, buf, lr, momentum, weight_decay, nesterov, first):
    neg_lr = -lr
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = grad[k]
        if weight_decay != 0:
            g = g + weight_decay * param[k]
        if momentum != 0:
            if first:
                b = g
            else:
                b = buf[k] * momentum + g
            buf[k] = b
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        param[k] = param[k] + neg_lr * g


@cuda.jit
def _adam_kernel(
    param, grad, exp_avg, exp_avg_sq, w1, w1c, beta2, one_minus_beta2, weight_decay, decay, neg_step_size, bc2_sqrt, eps
):
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[k]
        g = grad[k]
        if weight_decay != 0:
            g = g + weight_decay * p
        if decay != 1:
            p = p * decay
        # PyTorch's lerp, written out (exact at both ends; the branch by |weight| < 0.5)
        m0 = exp_avg[k]
        if abs(w1) < 0.5:
            m = m0 + w1 * (g - m0)
        else:
            m = g - (g - m0) * w1c
        v = exp_avg_sq[k] * beta2
        v = v + one_minus_beta2 * g * g
        exp_avg[k] = m
        exp_avg_sq[k] = v
        denom = math.sqrt(v) / bc2_sqrt + eps
        param[k] = p + neg_step_size * m / denom


@cuda.jit
def _rmsprop_kernel(param, grad, square_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay, momentum):
    neg_lr = -lr
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        p = param[k]
        g = grad[k]
        if weight_decay != 0:
            g = g + weight_decay * p
        v = square_avg[k] * alpha
        v = v + one_minus_alpha * g * g
        square_avg[k] = v
        avg = math.sqrt(v) + eps
        if momentum > 0:
            b = buf[k] * momentum + g / avg
            buf[k] = b
            param[k] = p + neg_lr * b
        else:
            param[k] = p + neg_lr * g / avg


def sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov, first) -> None:
    """SGD step; see ``numlstm.kernels.cpu.optim.sgd_update``."""
    if param.size:
        blocks, tpb = grid_1d(param.size)
        _sgd_kernel[blocks, tpb](param, grad, buf, lr, momentum, weight_decay, bool(nesterov), bool(first))


def adam_update(
    param, grad, exp_avg, exp_avg_sq, w1, w1c, beta2, one_minus_beta2, weight_decay, decay, neg_step_size, bc2_sqrt, eps
) -> None:
    """Adam / AdamW step; see ``numlstm.kernels.cpu.optim.adam_update``."""
    if param.size:
        blocks, tpb = grid_1d(param.size)
        _adam_kernel[blocks, tpb](
            param, grad, exp_avg, exp_avg_sq, w1, w1c, beta2, one_minus_beta2, weight_decay, decay, neg_step_size, bc2_sqrt, eps
        )


def rmsprop_update(param, grad, square_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay, momentum) -> None:
    """RMSprop step; see ``numlstm.kernels.cpu.optim.rmsprop_update``."""
    if param.size:
        blocks, tpb = grid_1d(param.size)
        _rmsprop_kernel[blocks, tpb](param, grad, square_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay, momentum)
