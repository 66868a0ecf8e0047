"""Elementwise activation kernels (forward and backward) for ``numlstm.layers.activation``.

Same formulas as the CPU layers: ReLU keeps NaN (as ``np.maximum``) and has
derivative 0 at 0; the sigmoid uses the overflow-free form
``exp(-|x|) / (1 + exp(-|x|))`` for negative inputs.
"""

from __future__ import annotations

import math

from numba import cuda

from numlstm.kernels.cuda._launch import flat, grid_1d

RELU, TANH, SIGMOID = 0, 1, 2


@cuda.jit
def _forward_kernel(x, y, kind):
    # x, y: (n,)
    for j in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[j]
        if kind == 0:
            y[j] = v if (v > 0 or v != v) else v * 0
        elif kind == 1:
            y[j] = math.tanh(v)
        else:
            z = math.exp(-abs(v))
            y[j] = 1 / (1 + z) if v >= 0 else z / (1 + z)


@cuda.jit
def _backward_kernel(saved, dy, dx, kind):
    # saved: x (ReLU) or y (tanh, sigmoid); dy, dx: (n,)
    for j in range(cuda.grid(1), dy.shape[0], cuda.gridsize(1)):
        s = saved[j]
        if kind == 0:
            dx[j] = dy[j] if s > 0 else dy[j] * 0
        elif kind == 1:
            dx[j] = dy[j] * (1 - s * s)
        else:
            dx[j] = dy[j] * s * (1 - s)


def activation_forward(x, y, kind: int) -> None:
    """y = act(x); ``kind`` RELU, TANH or SIGMOID."""
    if x.size:
        blocks, tpb = grid_1d(x.size)
        _forward_kernel[blocks, tpb](flat(x), flat(y), int(kind))


def activation_backward(saved, dy, dx, kind: int) -> None:
    """dx = dy * act'(.) from ``saved`` (x for ReLU, y for tanh and sigmoid)."""
    if dy.size:
        blocks, tpb = grid_1d(dy.size)
        _backward_kernel[blocks, tpb](flat(saved), flat(dy), flat(dx), int(kind))
