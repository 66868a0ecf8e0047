"""Plots with matplotlib: each function draws into an ``ax`` and returns it."""

from __future__ import annotations

import numpy as np


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def plot_history(history, ax=None, keys=None):
    """Learning curves from a ``History`` (or its ``.history`` dict).

    Parameters
    ----------
    history : History or dict[str, list[float]]
    ax : matplotlib Axes or None (a new figure)
    keys : names to draw; default every loss-like key (``loss``, ``val_loss``).

    Returns
    -------
    ax
    """
    data = getattr(history, "history", history)
    if not isinstance(data, dict) or not data:
        raise ValueError("history: expected a History or a non-empty dict of per-epoch lists")
    keys = [k for k in data if k.endswith("loss")] if keys is None else list(keys)
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"keys: {missing} are not in the history (it has {sorted(data)})")
    ax = _axes(ax)
    for k in keys:
        vals = np.asarray(data[k], dtype=float)
        ax.plot(np.arange(1, vals.size + 1), vals, marker="o", markersize=3, label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax


def frame_mosaic(rows, gap: int = 1) -> np.ndarray:
    """Tile image sequences into one image: row r, column t holds rows[r][t].

    rows : sequence of arrays (T, H, W) or (T, 1, H, W), same T, H, W.
    """
    seqs = []
    for r, seq in enumerate(rows):
        a = np.asarray(seq, dtype=float)
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 3:
            raise ValueError(f"rows[{r}]: expected frames (T, H, W) or (T, 1, H, W), got shape {np.shape(seq)}")
        seqs.append(a)
    T, H, W = seqs[0].shape
    for r, a in enumerate(seqs):
        if a.shape != (T, H, W):
            raise ValueError(f"rows[{r}]: expected shape {(T, H, W)} like rows[0], got {a.shape}")
    out = np.full((len(seqs) * (H + gap) - gap, T * (W + gap) - gap), np.nan)
    for r, a in enumerate(seqs):
        for t in range(T):
            out[r * (H + gap) : r * (H + gap) + H, t * (W + gap) : t * (W + gap) + W] = a[t]
    return out


def plot_frames(truth, prediction, ax=None, inputs=None, cmap="gray"):
    """A frame grid: (inputs,) true frames and predicted frames, one row each.

    Parameters
    ----------
    truth, prediction : (T, H, W) or (T, 1, H, W) frames of one sequence.
    inputs : optional (T_in, H, W) frames shown in a first row (padded to T).
    ax : matplotlib Axes or None

    Returns
    -------
    ax
    """
    truth = np.asarray(truth, dtype=float)
    prediction = np.asarray(prediction, dtype=float)
    if truth.shape != prediction.shape:
        raise ValueError(f"prediction: expected the shape of truth {truth.shape}, got {prediction.shape}")
    rows, labels = [truth, prediction], ["truth", "prediction"]
    if inputs is not None:
        inp = np.asarray(inputs, dtype=float).reshape((-1,) + truth.shape[-2:])
        T = truth.shape[0]
        if inp.shape[0] < T:
            inp = np.concatenate([inp, np.full((T - inp.shape[0],) + inp.shape[1:], np.nan)])
        rows, labels = [inp[-T:] if inp.shape[0] > T else inp] + rows, ["input"] + labels
    mosaic = frame_mosaic(rows)
    ax = _axes(ax)
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0.0, vmax=max(1.0, float(np.nanmax(mosaic))))
    H = truth.shape[-2]
    ax.set_yticks([r * (H + 1) + H / 2 for r in range(len(labels))])
    ax.set_yticklabels(labels)
    ax.set_xticks([t * (truth.shape[-1] + 1) + truth.shape[-1] / 2 for t in range(truth.shape[0])])
    ax.set_xticklabels([str(t + 1) for t in range(truth.shape[0])])
    ax.set_xlabel("frame")
    return ax
