"""The float32 activations of the CPU kernels against float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest

from numlstm.kernels.cpu.activations import sigmoid_inplace, tanh_inplace

# Bounds on max |fast(x) - exact(x)| over float32 inputs. Measured over EVERY
# float32 in [-20, 20]: 4.1e-7 (tanh) and 2.3e-7 (sigmoid); this test's dense
# grid sees 3.5e-7 for tanh. docs/lstm_math.md and the LSTM docstring quote
# the exhaustive numbers: keep them in step.
FAST_TANH_MAX_ABS_ERROR = 4.2e-7
FAST_SIGMOID_MAX_ABS_ERROR = 3e-7

# 2,000,001 points: steps of 2e-5, plus every float32 in a neighbourhood of 0 and of the clamp
GRID = np.linspace(-20, 20, 2_000_001, dtype=np.float32)
SPECIAL = np.array(
    [0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 1e-20, -1e-20, 1e-4, 0.5, 1.0, 7.99881172180175781, 8.0, 9.0, 15.9, 16.0, 88.0,
     89.0, 1e10, 3.4028235e38],
    np.float32,
)  # fmt: skip
SPECIAL = np.concatenate([SPECIAL, -SPECIAL])


def _neighbourhood(center: float, n: int = 2000) -> np.ndarray:
    """n consecutive float32 values on each side of ``center``."""
    c = np.float32(center)
    out = [c]
    lo = hi = c
    for _ in range(n):
        lo = np.nextafter(lo, np.float32(-np.inf))
        hi = np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return np.array(out, np.float32)


POINTS = np.concatenate([GRID, SPECIAL, _neighbourhood(0.0), _neighbourhood(7.99881172180175781), _neighbourhood(-6.0)])


def tanh32(x, approx):
    a = np.array(x, np.float32, copy=True)
    tanh_inplace(a, approx)
    return a


def sigmoid32(x, approx):
    a = np.array(x, np.float32, copy=True)
    sigmoid_inplace(a, approx)
    return a


def tanh_ref(x):
    return np.tanh(np.asarray(x, np.float64))


def sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# -- fast (approx=True) --------------------------------------------------------------------------


def test_fast_tanh_error_bound():
    err = np.abs(tanh32(POINTS, True) - tanh_ref(POINTS))
    assert err.max() < FAST_TANH_MAX_ABS_ERROR, f"max error {err.max():.3g} at x = {POINTS[np.argmax(err)]}"


def test_fast_sigmoid_error_bound():
    err = np.abs(sigmoid32(POINTS, True) - sigmoid_ref(POINTS))
    assert err.max() < FAST_SIGMOID_MAX_ABS_ERROR, f"max error {err.max():.3g} at x = {POINTS[np.argmax(err)]}"


def test_fast_error_bounds_are_tight():
    """The constants are measured numbers, not loose guesses: the worst error is within 2x of them."""
    assert np.abs(tanh32(GRID, True) - tanh_ref(GRID)).max() > FAST_TANH_MAX_ABS_ERROR / 2
    assert np.abs(sigmoid32(GRID, True) - sigmoid_ref(GRID)).max() > FAST_SIGMOID_MAX_ABS_ERROR / 2


def test_fast_ranges():
    t = tanh32(POINTS, True)
    s = sigmoid32(POINTS, True)
    assert np.all(np.abs(t) <= 1.0)
    assert np.all((s >= 0.0) & (s <= 1.0))


def test_fast_tanh_is_odd_and_monotone_up_to_its_error():
    t = tanh32(POINTS, True)
    np.testing.assert_array_equal(tanh32(-POINTS, True), -t)
    # a minimax approximation wiggles around tanh by up to its error, so it is
    # monotone only up to twice that (measured: steps down of at most 4.8e-7)
    g = tanh32(GRID, True)
    assert np.diff(g).min() >= -2 * FAST_TANH_MAX_ABS_ERROR


def test_fast_tanh_small_inputs():
    """Near 0, tanh(x) ~ x: the relative error stays small (no absolute-error-only cancellation)."""
    x = np.float32(2.0) ** -np.arange(1, 60, dtype=np.float32)
    x = np.concatenate([x, -x])
    np.testing.assert_allclose(tanh32(x, True), tanh_ref(x), rtol=1e-6)
    assert tanh32([0.0], True)[0] == 0.0
    np.testing.assert_allclose(sigmoid32(x, True), sigmoid_ref(x), rtol=0, atol=FAST_SIGMOID_MAX_ABS_ERROR)


@pytest.mark.parametrize("approx", [True, False], ids=["fast", "exact"])
def test_nan_stays_nan(approx):
    x = np.array([np.nan, 1.0, np.nan, -np.nan], np.float32)
    t = tanh32(x, approx)
    s = sigmoid32(x, approx)
    np.testing.assert_array_equal(np.isnan(t), np.isnan(x))
    np.testing.assert_array_equal(np.isnan(s), np.isnan(x))


@pytest.mark.parametrize("approx", [True, False], ids=["fast", "exact"])
def test_infinities_saturate(approx):
    x = np.array([np.inf, -np.inf], np.float32)
    tol_t = FAST_TANH_MAX_ABS_ERROR if approx else 0.0
    tol_s = FAST_SIGMOID_MAX_ABS_ERROR if approx else 0.0
    t = tanh32(x, approx)
    s = sigmoid32(x, approx)
    assert np.all(np.isfinite(t)) and np.all(np.isfinite(s))
    np.testing.assert_allclose(t, [1.0, -1.0], rtol=0, atol=tol_t)
    np.testing.assert_allclose(s, [1.0, 0.0], rtol=0, atol=tol_s)


def test_fast_large_inputs_saturate():
    x = np.array([20.0, 88.0, 1e10, 3.4028235e38], np.float32)
    np.testing.assert_allclose(tanh32(x, True), 1.0, rtol=0, atol=FAST_TANH_MAX_ABS_ERROR)
    np.testing.assert_allclose(tanh32(-x, True), -1.0, rtol=0, atol=FAST_TANH_MAX_ABS_ERROR)
    np.testing.assert_allclose(sigmoid32(x, True), 1.0, rtol=0, atol=FAST_SIGMOID_MAX_ABS_ERROR)
    np.testing.assert_allclose(sigmoid32(-x, True), 0.0, rtol=0, atol=FAST_SIGMOID_MAX_ABS_ERROR)


# -- exact (approx=False) ------------------------------------------------------------------------


def test_exact_tanh_is_float32_rounding_of_tanh():
    """libm's tanhf: within 2 float32 ulps of the correctly rounded tanh."""
    x = POINTS
    np.testing.assert_array_max_ulp(tanh32(x, False), tanh_ref(x).astype(np.float32), maxulp=2)
    assert np.abs(tanh32(x, False) - tanh_ref(x)).max() <= 2 * np.finfo(np.float32).eps


def test_exact_sigmoid_is_float32_rounding_of_sigmoid():
    x = POINTS[np.abs(POINTS) <= 80]  # keep exp(-x) and the result normal in float32
    np.testing.assert_array_max_ulp(sigmoid32(x, False), sigmoid_ref(x).astype(np.float32), maxulp=2)
    s = sigmoid32(SPECIAL, False)
    assert np.all((s >= 0.0) & (s <= 1.0))
    np.testing.assert_array_equal(sigmoid32([-3.4028235e38, 3.4028235e38], False), [0.0, 1.0])
