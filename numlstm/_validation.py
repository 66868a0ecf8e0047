"""Input checks shared by the public API.

Every public entry point validates here, before any kernel runs, and raises a
``TypeError`` / ``ValueError`` that names the argument, what it got and what
it expected.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise TypeError."""
    if dtype is None:
        # np.dtype(None) is float64: refuse rather than silently switch precision
        raise TypeError(f"{name}: expected np.float32 or np.float64, got None")
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected np.float32 or np.float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected np.float32 or np.float64, got {dt}")
    return dt


def check_int(value, name: str, minimum: int | None = None) -> int:
    """An integer (not bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_float(value, name: str, low: float | None = None, high: float | None = None, high_open=False) -> float:
    """A real number in [low, high] (or [low, high) with high_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected a number >= {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        rel = "<" if high_open else "<="
        raise ValueError(f"{name}: expected a number {rel} {high}, got {value}")
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def as_array(x, name: str) -> np.ndarray:
    """``x`` as an ndarray: arrays pass, lists/tuples and array-likes are
    converted; a ragged nested sequence raises ValueError and anything else
    TypeError, naming the argument."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) or hasattr(x, "__array__"):
        try:
            return np.asarray(x)
        except ValueError as exc:
            raise ValueError(f"{name}: expected a rectangular array, got a ragged nested sequence") from exc
    raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")


def _shape_str(shape) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def check_array(x, name: str, shape, dtype: np.dtype, names=None) -> np.ndarray:
    """Check a float array's type, rank and sizes; return it C-contiguous.

    Parameters
    ----------
    x : the user's value.
    name : argument name, used in messages.
    shape : expected shape; ``None`` entries accept any size >= 1.
    dtype : required dtype (no silent casts: a float64 array given to a float32
        layer is an error, as in PyTorch).
    names : optional names of the axes, for the message.
    """
    x = as_array(x, name)
    axes = f" {_shape_str(names)}" if names is not None else ""
    if x.ndim != len(shape):
        raise ValueError(f"{name}: expected a {len(shape)}-d array{axes} of shape {_shape_str(shape)}, got shape {x.shape}")
    if x.dtype != dtype:
        if x.dtype.kind in "fiub":
            hint = f": use {name}.astype(np.{dtype.name})"
        else:
            hint = ""
        raise TypeError(f"{name}: expected dtype {dtype.name}, got {x.dtype}{hint}")
    for axis, (got, want) in enumerate(zip(x.shape, shape, strict=True)):
        if want is None:
            if got < 1:
                raise ValueError(f"{name}: expected shape {_shape_str(shape)}{axes}, got {x.shape} (axis {axis} is empty)")
        elif got != want:
            raise ValueError(f"{name}: expected shape {_shape_str(shape)}{axes}, got {x.shape}")
    return np.ascontiguousarray(x)


def check_lengths(lengths, B: int, T: int) -> np.ndarray:
    """Valid lengths of right-padded sequences: one int in [1, T] per batch
    row, as a C-contiguous int64 array (integral floats are accepted)."""
    try:
        arr = np.asarray(lengths)
    except ValueError as exc:
        raise ValueError(f"lengths: expected a 1-d sequence of {B} ints, got a ragged nested sequence") from exc
    if arr.ndim != 1 or arr.shape[0] != B:
        raise ValueError(f"lengths: expected a 1-d sequence of {B} ints (one per batch row), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"lengths: expected values in [1, {T}] (the time axis), got min {arr.min()}, max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_kernel_size(kernel_size):
    """An int or a pair (kh, kw) of ints >= 1, returned in its JSON form (int or [kh, kw])."""
    if isinstance(kernel_size, (list, tuple)):
        if len(kernel_size) != 2:
            raise ValueError(f"kernel_size: expected an int or a pair (kh, kw), got {kernel_size!r}")
        return [check_int(k, f"kernel_size[{i}]", 1) for i, k in enumerate(kernel_size)]
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral):
        raise TypeError(f"kernel_size: expected an int or a pair (kh, kw), got {type(kernel_size).__name__} {kernel_size!r}")
    return check_int(kernel_size, "kernel_size", 1)
