"""Scalar activation functions for the CPU kernels.

Two families:

* ``*_exact``: ``np.tanh`` / ``np.exp`` based. Used for float64 (gradient
  checks need the exact functions).
* ``*_fast``: a rational minimax approximation of ``tanh`` (numerator of
  degree 13, denominator of degree 6, the form used by Eigen's ``ptanh``),
  clamped to ``[-7.9988, 7.9988]``. It is built from ``+``, ``*``, ``/`` and
  selects only, so LLVM vectorises loops that call it; a scalar ``tanhf`` /
  ``expf`` call costs about 14 ns an element on the reference machine (no
  SVML) and cannot be vectorised. Used for float32. Measured maximum error
  against float64 ``np.tanh`` over a dense grid in [-20, 20]:
  4.1e-7 over every float32 in [-20, 20] (``tests/test_activations.py``); the
  sigmoid is ``0.5 + 0.5 * tanh(x / 2)`` and so has half that absolute error.

NaN propagates through both families (the clamp is written with comparisons
that are false for NaN), and +-inf saturate to +-1 (tanh) or 1/0 (sigmoid).
"""

import numpy as np
from numba import njit

# float32 constants: a Python float literal would promote float32 arithmetic to
# float64 and halve the SIMD width.
_CLAMP = np.float32(7.99881172180175781)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF = np.float32(0.5)


@njit(cache=True, inline="always", error_model="numpy")
def tanh_fast(x):
    """Vectorisable float32 tanh (rational approximation, clamped)."""
    # written as selects, not min/max, so that NaN passes through unchanged
    x = _CLAMP if x > _CLAMP else x
    x = -_CLAMP if x < -_CLAMP else x
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid_fast(x):
    """Vectorisable float32 logistic sigmoid, 0.5 + 0.5 * tanh(x / 2)."""
    return _HALF + _HALF * tanh_fast(_HALF * x)


@njit(cache=True, inline="always", error_model="numpy")
def tanh_exact(x):
    """tanh from libm."""
    return np.tanh(x)


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid_exact(x):
    """Logistic sigmoid 1 / (1 + exp(-x)); exp overflow gives exactly 0."""
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True, error_model="numpy")
def tanh_inplace(a, approx):
    """Apply tanh to a 1-D array in place (used by tests and benchmarks)."""
    if approx:
        for j in range(a.shape[0]):
            a[j] = tanh_fast(a[j])
    else:
        for j in range(a.shape[0]):
            a[j] = tanh_exact(a[j])


@njit(cache=True, error_model="numpy")
def sigmoid_inplace(a, approx):
    """Apply the logistic sigmoid to a 1-D array in place."""
    if approx:
        for j in range(a.shape[0]):
            a[j] = sigmoid_fast(a[j])
    else:
        for j in range(a.shape[0]):
            a[j] = sigmoid_exact(a[j])
