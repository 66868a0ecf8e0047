"""Shared helpers of the CUDA tests."""

import numpy as np

from numlstm.backend import to_numpy

TOL = 1e-12


def rel(a, b) -> float:
    """Max absolute difference relative to the largest |b| (host or device arrays)."""
    a, b = np.asarray(to_numpy(a), np.float64), np.asarray(to_numpy(b), np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def randomize(*layers, seed=0):
    """Give layers the same random non-zero parameters (host arrays, before .to())."""
    rng = np.random.default_rng(seed)
    for k in layers[0].params:
        v = rng.standard_normal(layers[0].params[k].shape) * 0.5
        for layer in layers:
            layer.params[k][...] = v
