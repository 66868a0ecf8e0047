"""Fused optimizer updates over one flat parameter array.

Each kernel reads a parameter, its gradient and its state buffers once and
writes the new parameter and state in the same pass, element by element, in
exactly the order of operations of ``torch.optim`` (single-tensor path,
``foreach=False``), so that float64 results agree with PyTorch to rounding.

Callers pass 1-d C-contiguous views (``p.data.reshape(-1)``), all of one dtype
(float32 or float64), and every scalar already cast to that dtype: a float64
scalar would promote float32 arithmetic to float64. Scalars that depend on the
step count (Adam's bias corrections) are computed by the caller in float64,
as PyTorch does in Python. ``grad`` is read only.

Kernels never validate: ``numlstm.optim`` does.
"""

import numpy as np
from numba import njit

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov, first):
    """SGD with momentum (dampening 0), Nesterov momentum and L2 weight decay.

    ::

        g = grad + weight_decay * param
        buf = g                        (first step)
        buf = momentum * buf + g       (later steps)
        g = g + momentum * buf         (nesterov)   or   g = buf
        param = param - lr * g

    param: (n,) updated in place. grad: (n,). buf: (n,) momentum buffer,
    updated in place (unused when ``momentum == 0``). lr, momentum,
    weight_decay: scalars of the arrays' dtype. nesterov, first: bool
    (``first``: the buffer is not initialised yet).
    """
    neg_lr = -lr
    for k in range(param.size):
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


@njit(**_KW)
def _lerp(start, end, weight, one_minus_weight):
    """PyTorch's ``lerp``: exact at both ends, the branch chosen by |weight| < 0.5."""
    if np.abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight


@njit(**_KW)
def adam_update(
    param, grad, exp_avg, exp_avg_sq, w1, w1c, beta2, one_minus_beta2, weight_decay, decay, neg_step_size, bc2_sqrt, eps
):
    """One Adam / AdamW step.

    ::

        g = grad + weight_decay * param                     (Adam, L2 decay)
        param = decay * param                               (AdamW: decay = 1 - lr * wd)
        m = lerp(m, g, w1)                                  = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        param = param + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)

    with ``step_size = lr / (1 - beta1**t)`` and ``bc2_sqrt = (1 - beta2**t)**0.5``
    computed by the caller for step ``t`` (counted from 1), ``w1 = 1 - beta1``
    (in float64, then cast) and ``w1c = 1 - w1`` (in the arrays' dtype).

    param: (n,) updated in place. grad: (n,). exp_avg, exp_avg_sq: (n,) first
    and second moments, updated in place. weight_decay: the L2 coefficient
    (0 for AdamW). decay: AdamW's multiplier (1 for Adam). All scalars of the
    arrays' dtype.
    """
    for k in range(param.size):
        p = param[k]
        g = grad[k]
        if weight_decay != 0:
            g = g + weight_decay * p
        if decay != 1:
            p = p * decay
        m = _lerp(exp_avg[k], g, w1, w1c)
        v = exp_avg_sq[k] * beta2
        v = v + one_minus_beta2 * g * g
        exp_avg[k] = m
        exp_avg_sq[k] = v
        denom = np.sqrt(v) / bc2_sqrt + eps
        param[k] = p + neg_step_size * m / denom


@njit(**_KW)
def rmsprop_update(param, grad, square_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay, momentum):
    """One RMSprop step (not centered).

    ::

        g = grad + weight_decay * param
        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v) + eps
        buf = momentum * buf + g / avg ;  param = param - lr * buf     (momentum > 0)
        param = param - lr * g / avg                                  (momentum == 0)

    param: (n,) updated in place. grad: (n,). square_avg: (n,) updated in
    place. buf: (n,) momentum buffer, updated in place when ``momentum > 0``.
    All scalars of the arrays' dtype.
    """
    neg_lr = -lr
    for k in range(param.size):
        p = param[k]
        g = grad[k]
        if weight_decay != 0:
            g = g + weight_decay * p
        v = square_avg[k] * alpha
        v = v + one_minus_alpha * g * g
        square_avg[k] = v
        avg = np.sqrt(v) + eps
        if momentum > 0:
            b = buf[k] * momentum + g / avg
            buf[k] = b
            param[k] = p + neg_lr * b
        else:
            param[k] = p + neg_lr * g / avg
