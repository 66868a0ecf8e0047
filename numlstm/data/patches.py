"""Frames to non-overlapping patches and back.

Shi et al. (2015) feed ConvLSTM 64 x 64 Moving MNIST frames as 16 x 16 grids
of 4 x 4 patches, i.e. 16 x 16 x 16 tensors: ``space_to_depth(frames, 4)``.
The channel order is PyTorch's ``pixel_unshuffle`` / ``pixel_shuffle``:
output channel ``c * patch**2 + i * patch + j`` holds pixel ``(i, j)`` of each
patch of input channel ``c``.
"""

from __future__ import annotations

import numpy as np

from numlstm._validation import as_array, check_int

__all__ = ["space_to_depth", "depth_to_space"]


def _check_frames(frames, patch) -> tuple[np.ndarray, int]:
    x = as_array(frames, "frames")
    if x.ndim < 3:
        msg = "frames: expected an array (..., C, H, W), e.g. (B, T, C, H, W), of 3 or more dimensions"
        raise ValueError(f"{msg}, got shape {x.shape}")
    return x, check_int(patch, "patch", 1)


def space_to_depth(frames: np.ndarray, patch: int) -> np.ndarray:
    """Cut each frame into ``patch x patch`` patches stacked along channels.

    Parameters
    ----------
    frames : (..., C, H, W) array, e.g. (B, T, C, H, W) image sequences
        ``H`` and ``W`` divisible by ``patch``.
    patch : int >= 1

    Returns
    -------
    patches : (..., C * patch**2, H // patch, W // patch) array
        Same dtype, a new C-contiguous array. :func:`depth_to_space` inverts
        it exactly.
    """
    x, p = _check_frames(frames, patch)
    *lead, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"frames: height and width must be divisible by patch={p}, got H={H}, W={W} (shape {x.shape})")
    k = len(lead)
    y = x.reshape(*lead, C, H // p, p, W // p, p)
    # (..., C, H/p, i, W/p, j) -> (..., C, i, j, H/p, W/p)
    y = y.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return np.ascontiguousarray(y.reshape(*lead, C * p * p, H // p, W // p))


def depth_to_space(frames: np.ndarray, patch: int) -> np.ndarray:
    """Inverse of :func:`space_to_depth`: put channel patches back in place.

    Parameters
    ----------
    frames : (..., C * patch**2, h, w) array
        The channel count divisible by ``patch**2``.
    patch : int >= 1

    Returns
    -------
    frames : (..., C, h * patch, w * patch) array
        Same dtype, a new C-contiguous array.
    """
    x, p = _check_frames(frames, patch)
    *lead, Cpp, h, w = x.shape
    if Cpp % (p * p):
        raise ValueError(f"frames: the channel count must be divisible by patch**2={p * p}, got {Cpp} (shape {x.shape})")
    k = len(lead)
    C = Cpp // (p * p)
    y = x.reshape(*lead, C, p, p, h, w)
    # (..., C, i, j, h, w) -> (..., C, h, i, w, j)
    y = y.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return np.ascontiguousarray(y.reshape(*lead, C, h * p, w * p))
