"""Plan the CPU schedules for this host ahead of use (``numlstm.tune``, ``numlstm tune``)."""

from __future__ import annotations

import contextlib
import itertools

import numpy as np

#: the shape classes ``tune()`` plans without arguments: batch x hidden, T = 50, I = H
DEFAULT_BATCHES = (1, 8, 16, 32, 64, 128)
DEFAULT_HIDDEN = (32, 64, 128, 256, 512)


def tune(lstm=None, dtypes=(np.float32,), remeasure: bool = False) -> dict[str, str]:
    """Time the CPU drivers' candidates for these shapes and keep the winners
    in this host's plan file (see ``numlstm.kernels.plan``).

    Parameters
    ----------
    lstm : sequence of (B, T, I, H) or None
        LSTM layer-direction shapes: batch, steps, inputs, hidden units.
        None: every batch in ``DEFAULT_BATCHES`` with every hidden size in
        ``DEFAULT_HIDDEN`` (T = 50, I = H).
    dtypes : sequence of np.float32 / np.float64
    remeasure : bool
        Time every shape class again, even those the plan file already has.

    Returns
    -------
    dict ``"op shape-class" -> choice`` of the plans this process now uses.

    Raises
    ------
    ValueError / TypeError
        For a shape that is not four positive ints, or ``config.PLAN`` not
        ``"measure"`` (a pinned or default plan is never timed).
    """
    from numlstm import config
    from numlstm._validation import check_dtype, check_int
    from numlstm.kernels import plan
    from numlstm.kernels.cpu.lstm import lstm_plan

    if config.PLAN != "measure":
        raise ValueError(f"config.PLAN: tune() times the candidates only with 'measure', got {config.PLAN!r}")
    if lstm is None:
        shapes = [(b, 50, h, h) for b, h in itertools.product(DEFAULT_BATCHES, DEFAULT_HIDDEN)]
    else:
        if isinstance(lstm, (str, bytes)) or not hasattr(lstm, "__iter__"):
            raise TypeError(f"lstm: expected a sequence of (B, T, I, H) tuples, got {type(lstm).__name__}")
        shapes = []
        for i, shape in enumerate(lstm):
            if not isinstance(shape, (tuple, list)) or len(shape) != 4:
                raise ValueError(f"lstm[{i}]: expected (B, T, I, H), four positive ints, got {shape!r}")
            shapes.append(tuple(check_int(v, f"lstm[{i}][{j}]", 1) for j, v in enumerate(shape)))
    dtypes = [check_dtype(dt, "dtypes") for dt in dtypes]
    with plan.remeasure() if remeasure else contextlib.nullcontext():
        for dt in dtypes:
            for B, T, I, H in shapes:
                lstm_plan(B, T, I, H, dt)
    return plan.entries()
