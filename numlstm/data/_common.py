"""Argument checks and seeding shared by the data generators."""

from __future__ import annotations

import numbers

import numpy as np

from numlstm._validation import as_array, check_float, check_int

# One stream tag per generator, so that e.g. sequence i of ``moving_digits`` and
# image i of ``digit_images`` with the same seed draw unrelated numbers.
STREAM_MOVING = 1
STREAM_SEQUENCE = 2
STREAM_IMAGES = 3
STREAM_GLYPHS = 4


def sample_rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """The generator of one sample: depends on (seed, stream, index) only, so a
    sample is the same whatever batch it is made in."""
    return np.random.default_rng([seed, stream, *index])


def check_seed(seed) -> int:
    return check_int(seed, "seed", 0)


def check_range(value, name: str, low: float = 0.0) -> tuple[float, float]:
    """A number or a pair (lo, hi) with low <= lo <= hi, returned as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected a number or a pair (low, high), got {value!r}")
        lo = check_float(value[0], f"{name}[0]", low)
        hi = check_float(value[1], f"{name}[1]", low)
        if hi < lo:
            raise ValueError(f"{name}: expected low <= high, got ({lo}, {hi})")
        return lo, hi
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number or a pair (low, high), got {type(value).__name__} {value!r}")
    v = check_float(value, name, low)
    return v, v


def check_images(images, name: str = "images") -> np.ndarray:
    """Digit images (N, h, w): uint8 in [0, 255] or float in [0, 1]. Returned
    as given (no copy); samples are scaled to [0, 1] one at a time."""
    x = as_array(images, name)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected a 3-d array (N, height, width), got shape {x.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"{name}: expected a non-empty array (N, height, width), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f":
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name}: expected float values in [0, 1], got min {lo}, max {hi}: divide uint8 images by 255")
        return x
    raise TypeError(f"{name}: expected dtype uint8 (0..255) or a float dtype (0..1), got {x.dtype}: use {name}.astype(np.uint8)")


def image_as_float(images: np.ndarray, index: int) -> np.ndarray:
    """One image of ``images`` as float32 in [0, 1]."""
    img = images[index]
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1.0 / 255.0)
    return img.astype(np.float32)


def check_labels(labels, n_images: int, name: str = "labels") -> np.ndarray:
    """One integer label per image, as int64 (N,)."""
    y = as_array(labels, name)
    if y.ndim != 1 or y.shape[0] != n_images:
        raise ValueError(f"{name}: expected a 1-d array of {n_images} labels (one per image), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer labels, got dtype {y.dtype}: use {name}.astype(np.int64)")
    return y.astype(np.int64, copy=False)
