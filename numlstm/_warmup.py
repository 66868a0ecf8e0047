"""Compile the kernels ahead of time on tiny inputs."""

from __future__ import annotations

import numpy as np

#: what ``warmup`` can compile, by name
PARTS = ("lstm", "image", "attention")


def warmup(dtypes=(np.float32, np.float64), parts=PARTS) -> None:
    """Compile (or load from Numba's cache) the CPU kernels for ``dtypes``.

    Parameters
    ----------
    dtypes : sequence of np.float32 / np.float64
    parts : sequence of str, default all of ``("lstm", "image", "attention")``
        ``"lstm"``: LSTM, Dense and the optimizers; ``"image"``: Conv2D,
        pooling, BatchNorm2D and ConvLSTM; ``"attention"``: AttentionLSTM and
        TemporalAttention.

    The first call in a fresh environment compiles and writes Numba's on-disk
    cache; later processes load it. Call it once at start-up to move that cost
    out of the first training step.
    """
    from numlstm._threads import start_pool
    from numlstm._validation import check_dtype

    if isinstance(parts, str):
        parts = (parts,)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"parts: expected names from {list(PARTS)}, got {unknown}")
    dtypes = [check_dtype(dt, "dtypes") for dt in dtypes]
    start_pool()
    for dt in dtypes:
        if "lstm" in parts:
            _lstm(dt)
        if "image" in parts:
            _image(dt)
        if "attention" in parts:
            _attention(dt)


def _train_step(model, x) -> None:
    y = model.forward(x)
    model.backward(np.ones_like(y))


def _lstm(dt) -> None:
    from numlstm.layers import LSTM, Dense
    from numlstm.models import Sequential
    from numlstm.optim import SGD, Adam, RMSprop

    model = Sequential([LSTM(2, 2, bidirectional=True, dtype=dt, seed=0), Dense(4, 2, dtype=dt, seed=0)])
    _train_step(model, np.zeros((1, 2, 2), dtype=dt))
    for opt in (
        SGD(model.parameters(), lr=0.0, momentum=0.5),
        Adam(model.parameters(), lr=0.0),
        RMSprop(model.parameters(), lr=0.0),
    ):
        opt.step()


def _image(dt) -> None:
    from numlstm.layers import AvgPool2D, BatchNorm2D, Conv2D, ConvLSTM, GlobalAvgPool2D, MaxPool2D, ReLU
    from numlstm.models import Sequential

    cnn = Sequential(
        [
            Conv2D(1, 2, 3, padding="same", dtype=dt, seed=0),
            BatchNorm2D(2, dtype=dt),
            ReLU(),
            MaxPool2D(2),
            AvgPool2D(2),
            GlobalAvgPool2D(),
        ]
    )
    _train_step(cnn, np.zeros((1, 1, 4, 4), dtype=dt))
    _train_step(ConvLSTM(1, 2, 3, peephole=True, frame_size=(3, 3), dtype=dt, seed=0), np.zeros((1, 2, 1, 3, 3), dtype=dt))
    _train_step(ConvLSTM(1, 2, 3, dtype=dt, seed=0), np.zeros((1, 2, 1, 3, 3), dtype=dt))


def _attention(dt) -> None:
    from numlstm.layers.attention import AttentionLSTM, TemporalAttention

    _train_step(AttentionLSTM(2, 2, 2, dtype=dt, seed=0), np.zeros((1, 2, 3, 2), dtype=dt))
    _train_step(TemporalAttention(2, 2, dtype=dt, seed=0), np.zeros((1, 3, 2), dtype=dt))
