"""Compile the kernels ahead of time on tiny inputs."""

from __future__ import annotations

import numpy as np


def warmup(dtypes=(np.float32, np.float64)) -> None:
    """Compile (or load from Numba's cache) the LSTM, Dense and optimizer
    kernels for ``dtypes``.

    The first call in a fresh environment compiles and writes Numba's on-disk
    cache; later processes load it. Call it once at start-up to move that cost
    out of the first training step.
    """
    from numlstm.layers import LSTM, Dense
    from numlstm.models import Sequential
    from numlstm.optim import SGD, Adam, RMSprop

    for dt in dtypes:
        model = Sequential([LSTM(2, 2, bidirectional=True, dtype=dt, seed=0), Dense(4, 2, dtype=dt, seed=0)])
        x = np.zeros((1, 2, 2), dtype=dt)
        y = model.forward(x)
        model.backward(np.ones_like(y))
        for opt in (
            SGD(model.parameters(), lr=0.0, momentum=0.5),
            Adam(model.parameters(), lr=0.0),
            RMSprop(model.parameters(), lr=0.0),
        ):
            opt.step()
