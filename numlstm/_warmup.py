"""Compile the kernels ahead of time on tiny inputs."""

from __future__ import annotations

import numpy as np


def warmup(dtypes=(np.float32, np.float64)) -> None:
    """Compile (or load from Numba's cache) every LSTM kernel for ``dtypes``.

    The first call in a fresh environment compiles and writes Numba's on-disk
    cache; later processes load it. Call it once at start-up to move that cost
    out of the first training step.
    """
    from numlstm.layers.lstm import LSTM

    for dt in dtypes:
        layer = LSTM(2, 2, bidirectional=True, dtype=dt, seed=0)
        x = np.zeros((1, 2, 2), dtype=dt)
        y = layer.forward(x, lengths=[1])
        layer.backward(np.ones_like(y))
