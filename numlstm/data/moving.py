"""Image sequences of moving digits: Moving MNIST (Srivastava et al. 2015,
Shi et al. 2015) for ConvLSTM forecasting, and drifting single digits for
CNN-LSTM sequence classification.

Every sequence ``i`` is drawn from its own generator seeded with
``(seed, i)``, so a sequence does not depend on ``n``, on the batch size or on
the order in which batches are made.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from numlstm._validation import check_bool, check_dtype, check_float, check_int
from numlstm.data._common import (
    STREAM_MOVING,
    STREAM_SEQUENCE,
    check_images,
    check_labels,
    check_range,
    check_seed,
    image_as_float,
    sample_rng,
)
from numlstm.data.glyphs import draw_digit

__all__ = ["moving_digits", "iter_moving_digits", "sequence_digits"]

DEFAULT_MAX_BYTES = 2 * 2**30


def bounce_path(start: float, velocity: float, limit: float, steps: int) -> np.ndarray:
    """Positions in [0, limit] at steps 0 .. steps - 1 of a point that starts
    at ``start`` and moves ``velocity`` per step, reflecting off 0 and ``limit``.

    The reflections are folded in closed form (a triangle wave of period
    ``2 * limit``), which equals stepping and reversing the velocity at each
    wall, even when one step would cross a wall twice.
    """
    if limit <= 0:
        return np.zeros(steps)
    p = np.mod(start + velocity * np.arange(steps), 2.0 * limit)
    return np.where(p > limit, 2.0 * limit - p, p)


def bounce(start: float, velocity: float, limit: float, steps: int) -> np.ndarray:
    """:func:`bounce_path` rounded to whole pixels, int64 in [0, limit]."""
    return np.clip(np.rint(bounce_path(start, velocity, limit, steps)), 0, max(limit, 0)).astype(np.int64)


class _Source:
    """Where the digits come from: the glyph bank or the user's images."""

    def __init__(self, images, labels, digit_size: int | None, size: int, default_digit_size: int, box: float):
        if images is None:
            if labels is not None:
                raise ValueError("labels: only meaningful with images; got labels but images=None")
            if digit_size is None:
                digit_size = default_digit_size
            digit_size = check_int(digit_size, "digit_size", 8)
            if digit_size > size:
                raise ValueError(f"digit_size: expected at most size={size} (the digit must fit the frame), got {digit_size}")
            self.images = None
            self.labels = None
            self.shape = (digit_size, digit_size)
            self.box = box * digit_size
        else:
            self.images = check_images(images)
            h, w = self.images.shape[1:]
            if h > size or w > size:
                raise ValueError(
                    f"images: each image ({h} x {w}) must fit the {size} x {size} frame: raise size or crop the images"
                )
            if digit_size is not None:
                digit_size = check_int(digit_size, "digit_size", 1)
                if (digit_size, digit_size) != (h, w):
                    raise ValueError(
                        f"digit_size: with images it must be None or the images' size, got {digit_size} for images of {h} x {w}"
                    )
            self.labels = None if labels is None else check_labels(labels, self.images.shape[0])
            self.shape = (h, w)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One digit image float32 (h, w) in [0, 1] and its label (-1 if unknown)."""
        if self.images is None:
            digit = int(rng.integers(10))
            return draw_digit(rng, digit, self.shape[0], self.box), digit
        k = int(rng.integers(self.images.shape[0]))
        return image_as_float(self.images, k), (-1 if self.labels is None else int(self.labels[k]))


class _MovingConfig:
    """Validated arguments of moving_digits / iter_moving_digits."""

    def __init__(self, n, seq_len, size, digits, seed, digit_size, speed, images, labels, return_labels, dtype):
        self.n = check_int(n, "n", 1)
        self.seq_len = check_int(seq_len, "seq_len", 1)
        self.size = check_int(size, "size", 8)
        self.digits = check_int(digits, "digits", 1)
        self.seed = check_seed(seed)
        self.speed = check_range(speed, "speed", 0.0)
        self.return_labels = check_bool(return_labels, "return_labels")
        self.dtype = check_dtype(dtype)
        self.source = _Source(images, labels, digit_size, self.size, max(8, min(28, self.size // 2)), 20.0 / 28.0)
        if self.return_labels and self.source.images is not None and self.source.labels is None:
            raise ValueError(
                "labels: return_labels=True with images needs their labels (N,); "
                "pass labels=np.arange(len(images)) to get the image indices instead"
            )

    def nbytes(self, n: int) -> int:
        return n * self.seq_len * self.size * self.size * self.dtype.itemsize

    def fill(self, start: int, frames: np.ndarray, labels: np.ndarray) -> None:
        """Sequences start .. start + len(frames) - 1 into frames (b, T, 1, S, S), zeroed."""
        T, S = self.seq_len, self.size
        lo, hi = self.speed
        for b in range(frames.shape[0]):
            rng = sample_rng(self.seed, STREAM_MOVING, start + b)
            seq = frames[b, :, 0]
            for d in range(self.digits):
                img, labels[b, d] = self.source.draw(rng)
                h, w = img.shape
                y0 = rng.uniform(0.0, S - h)
                x0 = rng.uniform(0.0, S - w)
                theta = rng.uniform(0.0, 2.0 * np.pi)
                v = rng.uniform(lo, hi)
                ys = bounce(y0, v * np.sin(theta), S - h, T)
                xs = bounce(x0, v * np.cos(theta), S - w, T)
                for t in range(T):
                    patch = seq[t, ys[t] : ys[t] + h, xs[t] : xs[t] + w]
                    np.maximum(patch, img, out=patch)  # overlapping digits: the brighter pixel wins


def moving_digits(
    n: int,
    seq_len: int = 20,
    size: int = 64,
    digits: int = 2,
    seed: int = 0,
    digit_size: int | None = None,
    speed: float | tuple[float, float] = (2.0, 5.0),
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    return_labels: bool = False,
    dtype=np.float32,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Moving MNIST-style sequences: digits that bounce around a square frame.

    The protocol of Srivastava et al. (2015), also used by Shi et al. (2015)
    for ConvLSTM: each sequence holds ``digits`` digit images, each placed at
    a uniformly random position inside the frame and moving in a uniformly
    random direction at a constant speed drawn from ``speed`` (pixels per
    frame). A digit that reaches an edge bounces off it (the velocity
    component across that edge is reversed), so every digit stays wholly
    inside the frame. Where digits overlap, the pixel is their maximum, so
    values stay in [0, 1].

    Sequence ``i`` depends only on ``(seed, i)``: ``moving_digits(n)[:k]``
    equals ``moving_digits(k)`` and the batches of
    :func:`iter_moving_digits` concatenate to ``moving_digits``.

    Parameters
    ----------
    n : int >= 1
        Number of sequences.
    seq_len : int >= 1
        Frames per sequence (Srivastava et al. and Shi et al.: 20, 10 input
        frames and 10 to predict).
    size : int >= 8
        Height and width of the frames (64 in the papers).
    digits : int >= 1
        Digits per sequence (2 in the papers).
    seed : int >= 0
    digit_size : int or None
        Side of the digit tiles drawn from the glyph bank, at most ``size``
        (default ``min(28, size // 2)``, at least 8: 28 for 64 x 64 frames,
        MNIST's layout of a ~20 px digit in a 28 px tile). With ``images``,
        None or the images' size.
    speed : float or (low, high)
        Speed in pixels per frame, uniform in [low, high] per digit.
    images : (N, h, w) uint8 (0..255) or float (0..1), optional
        Digit images to move instead of the glyph bank, e.g. real MNIST from
        :func:`load_mnist`; each digit is a uniformly random one of them.
        ``h`` and ``w`` must be at most ``size``.
    labels : (N,) int, optional
        The class of each of ``images``; needed for ``return_labels`` with
        ``images``.
    return_labels : bool
        Also return the class of each digit.
    dtype : np.float32 or np.float64
    max_bytes : int or None
        Refuse to allocate a result larger than this (default 2 GiB); use
        :func:`iter_moving_digits` for more data, or None for no limit.

    Returns
    -------
    frames : (n, seq_len, 1, size, size) ``dtype`` in [0, 1]
        Batch, time, channel, height, width: the layout of ``ConvLSTM``.
    labels : (n, digits) int64, only with ``return_labels``
        The class of each digit, in the order they were placed.
    """
    cfg = _MovingConfig(n, seq_len, size, digits, seed, digit_size, speed, images, labels, return_labels, dtype)
    if max_bytes is not None:
        max_bytes = check_int(max_bytes, "max_bytes", 1)
        need = cfg.nbytes(cfg.n)
        if need > max_bytes:
            raise ValueError(
                f"max_bytes: the result needs {need / 2**20:.1f} MiB, more than max_bytes={max_bytes} "
                f"({max_bytes / 2**20:.1f} MiB): use iter_moving_digits(n, batch_size, ...) to make it batch by batch, "
                "or raise max_bytes (None: no limit)"
            )
    frames = np.zeros((cfg.n, cfg.seq_len, 1, cfg.size, cfg.size), dtype=cfg.dtype)
    digit_labels = np.empty((cfg.n, cfg.digits), dtype=np.int64)
    cfg.fill(0, frames, digit_labels)
    return (frames, digit_labels) if cfg.return_labels else frames


def iter_moving_digits(
    n: int,
    batch_size: int,
    seq_len: int = 20,
    size: int = 64,
    digits: int = 2,
    seed: int = 0,
    digit_size: int | None = None,
    speed: float | tuple[float, float] = (2.0, 5.0),
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    return_labels: bool = False,
    dtype=np.float32,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`moving_digits` batch by batch, holding one batch at a time.

    Arguments are checked when this is called, not at the first ``next``.
    Each batch is a new array (the caller may keep it); the generator keeps no
    reference to it, so memory stays proportional to ``batch_size`` whatever
    ``n`` is. ``np.concatenate(list(iter_moving_digits(n, b, ...)))`` equals
    ``moving_digits(n, ...)`` exactly, for any ``b``.

    Parameters
    ----------
    n : int >= 1
        Number of sequences in all.
    batch_size : int >= 1
        Sequences per batch; the last batch holds the remainder.
    seq_len, size, digits, seed, digit_size, speed, images, labels, return_labels, dtype
        As in :func:`moving_digits`.

    Yields
    ------
    frames : (batch_size, seq_len, 1, size, size) ``dtype`` in [0, 1]
        The last batch has ``n - batch_size * (number of full batches)`` rows.
    labels : (batch_size, digits) int64, only with ``return_labels``
        Then each item is the pair ``(frames, labels)``.
    """
    cfg = _MovingConfig(n, seq_len, size, digits, seed, digit_size, speed, images, labels, return_labels, dtype)
    batch_size = check_int(batch_size, "batch_size", 1)
    return _iterate(cfg, batch_size)


def _iterate(cfg: _MovingConfig, batch_size: int):
    for start in range(0, cfg.n, batch_size):
        b = min(batch_size, cfg.n - start)
        frames = np.zeros((b, cfg.seq_len, 1, cfg.size, cfg.size), dtype=cfg.dtype)
        digit_labels = np.empty((b, cfg.digits), dtype=np.int64)
        cfg.fill(start, frames, digit_labels)
        if cfg.return_labels:
            yield frames, digit_labels
        else:
            yield frames
        del frames, digit_labels  # hold nothing while the caller works on the batch


def sequence_digits(
    n: int,
    seq_len: int = 8,
    size: int = 28,
    seed: int = 0,
    digit_size: int | None = None,
    speed: float | tuple[float, float] = (0.5, 2.0),
    noise: float = 0.0,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Image sequences for sequence classification (CNN-LSTM): one digit that
    drifts across the frame, bouncing off the edges; the label is its class.

    Each sequence shows one digit (from the glyph bank, or a random one of
    ``images``) starting at a random position and moving in a random
    direction at a speed drawn from ``speed`` pixels per frame, reflected at
    the edges as in :func:`moving_digits`. Optional Gaussian pixel noise of
    standard deviation ``noise`` is added and the result clipped to [0, 1].
    Sequence ``i`` depends only on ``(seed, i)``.

    Parameters
    ----------
    n : int >= 1
        Number of sequences.
    seq_len : int >= 1
        Frames per sequence.
    size : int >= 8
        Height and width of the frames.
    seed : int >= 0
    digit_size : int or None
        Side of the digit tiles drawn from the glyph bank, at most ``size``
        (default ``round(0.7 * size)``: 20 for 28, leaving the digit 8 pixels
        to move in each direction). With ``images``, None or the images' size.
    speed : float or (low, high)
        Speed in pixels per frame, uniform in [low, high].
    noise : float >= 0
        Standard deviation of additive Gaussian noise (0: none).
    images : (N, h, w) uint8 (0..255) or float (0..1), optional
        Digits to use instead of the glyph bank, with ``h, w <= size``; MNIST's
        28 x 28 images need ``size > 28`` to move (or crop them first, e.g.
        ``x[:, 4:24, 4:24]``).
    labels : (N,) int
        The class of each of ``images``; required with ``images``.
    dtype : np.float32 or np.float64

    Returns
    -------
    x : (n, seq_len, 1, size, size) ``dtype`` in [0, 1]
    y : (n,) int64, the class of each sequence's digit.
    """
    n = check_int(n, "n", 1)
    seq_len = check_int(seq_len, "seq_len", 1)
    size = check_int(size, "size", 8)
    seed = check_seed(seed)
    lo, hi = check_range(speed, "speed", 0.0)
    noise = check_float(noise, "noise", 0.0)
    dtype = check_dtype(dtype)
    default_digit_size = min(size, max(8, round(0.7 * size)))
    source = _Source(images, labels, digit_size, size, default_digit_size, 0.85)
    if source.images is not None and source.labels is None:
        raise ValueError("labels: required with images (one class per image, shape (N,)), got None")

    x = np.zeros((n, seq_len, 1, size, size), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    for i in range(n):
        rng = sample_rng(seed, STREAM_SEQUENCE, i)
        img, y[i] = source.draw(rng)
        h, w = img.shape
        theta = rng.uniform(0.0, 2.0 * np.pi)
        v = rng.uniform(lo, hi)
        ys = bounce(rng.uniform(0.0, size - h), v * np.sin(theta), size - h, seq_len)
        xs = bounce(rng.uniform(0.0, size - w), v * np.cos(theta), size - w, seq_len)
        seq = x[i, :, 0]
        for t in range(seq_len):
            seq[t, ys[t] : ys[t] + h, xs[t] : xs[t] + w] = img
        if noise > 0:
            seq += rng.normal(0.0, noise, seq.shape).astype(dtype, copy=False)
            np.clip(seq, 0.0, 1.0, out=seq)
    return x, y
