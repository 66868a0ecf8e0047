"""numlstm's own small-matrix kernel (kernels.cpu.small.dot_nt) against numpy, at odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
from naive import lstm_backward_naive, lstm_forward_naive

import numlstm
from numlstm import config
from numlstm.kernels.cpu.small import dot_nt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M", [1, 3, 4, 17])
@pytest.mark.parametrize("K", [1, 7, 33])
@pytest.mark.parametrize("N", [1, 7, 33, 132])
def test_dot_nt_matches_numpy(dtype, M, K, N):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    a = rng.standard_normal((M, K)).astype(dtype)
    w = rng.standard_normal((N, K)).astype(dtype)
    out = np.full((M, N), np.nan, dtype)
    dot_nt(a, w, out)
    want = a.astype(np.float64) @ w.astype(np.float64).T
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.sqrt(K))


def test_dot_nt_on_row_blocks_and_nan():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((9, 6, 8)).astype(np.float32)
    w = rng.standard_normal((12, 8)).astype(np.float32)
    out = np.zeros((9, 12), np.float32)
    dot_nt(big[3, 2:5], w, out[2:5])  # views of rows of larger arrays
    np.testing.assert_allclose(out[2:5], big[3, 2:5] @ w.T, rtol=1e-5, atol=1e-5)
    assert not out[:2].any() and not out[5:].any()
    a = big[0].copy()
    a[1, 3] = np.nan
    a[4, 0] = np.inf
    dot_nt(a, w, out[:6])
    assert np.isnan(out[1]).all()  # fast-math keeps NaN and Inf
    assert not np.isfinite(out[4]).any()
    assert np.isfinite(out[[0, 2, 3, 5]]).all()


@pytest.mark.parametrize("B", [1, 3, 17])
@pytest.mark.parametrize("H", [1, 7, 33])
@pytest.mark.parametrize("kind", ["own/1", "own"])
def test_lstm_with_own_kernel_matches_the_numpy_twin(monkeypatch, B, H, kind):
    monkeypatch.setattr(config, "PLAN_OVERRIDE", {"lstm.rec": kind})
    if kind == "own":  # row blocks too
        monkeypatch.setattr(config, "PARALLEL_MIN_ROWS", 1)
        monkeypatch.setattr(config, "PARALLEL_MIN_STEP_MACS", 0)
        monkeypatch.setattr(config, "PARALLEL_MAX_CHUNKS", 2)
    rng = np.random.default_rng(B * 100 + H)
    T, I = 4, 3
    layer = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    for p in layer.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    x = rng.standard_normal((B, T, I))
    lengths = rng.integers(1, T + 1, B)
    state = tuple(rng.standard_normal((4, B, H)) for _ in range(2))
    dy = rng.standard_normal(layer.output_shape(B, T))
    dstate = tuple(rng.standard_normal((4, B, H)) for _ in range(2))
    y = layer(x, state=state, lengths=lengths)
    dx = layer.backward(dy, dstate)
    y_ref, (hn, cn) = lstm_forward_naive(x, layer.params, 2, True, state, lengths)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.state[0], hn, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.state[1], cn, rtol=1e-12, atol=1e-12)
    dx_ref, grads_ref, dstate_ref = lstm_backward_naive(x, layer.params, 2, True, dy, dstate, state, lengths)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-11)
    for k, g in grads_ref.items():
        np.testing.assert_allclose(layer.grads[k], g, rtol=1e-10, atol=1e-11, err_msg=k)
    np.testing.assert_allclose(layer.dstate[0], dstate_ref[0], rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(layer.dstate[1], dstate_ref[1], rtol=1e-10, atol=1e-11)
