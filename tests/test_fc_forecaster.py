"""FCEncoderForecaster (the FC-LSTM baseline of Shi et al. 2015): shapes, gradients,
manual chaining, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import numlstm
from numlstm import LSTM, Dense, gradcheck
from numlstm.layers.registry import registered_layers
from numlstm.models import FCEncoderForecaster

TOL = 1e-6
B, T_IN, F, C, H, W = 2, 3, 2, 1, 3, 4


def frames(rng, dtype=np.float64):
    return rng.standard_normal((B, T_IN, C, H, W)).astype(dtype)


def make(hidden, dtype=np.float64, seed=0):
    return FCEncoderForecaster(C, H, W, hidden_sizes=hidden, future_steps=F, dtype=dtype, seed=seed)


@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes(rng, hidden, dtype):
    model = make(hidden, dtype)
    y = model(frames(rng, dtype))
    assert y.shape == (B, F, C, H, W) and y.dtype == dtype
    assert model.compute_output_shape((B, T_IN, C, H, W)) == (B, F, C, H, W)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == (B, T_IN, C, H, W) and dx.dtype == dtype


@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
def test_gradcheck(rng, hidden):
    model = make(hidden)
    errors = gradcheck(model, frames(rng), max_elements=20)
    assert set(errors) == {"x", *model.params}
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, bad


@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
def test_matches_manual_chaining(rng, hidden):
    model = make(hidden)
    x = frames(rng)
    y = model(x)
    dy = rng.standard_normal(y.shape)
    dx = model.backward(dy)
    L = len(hidden)
    enc = [LSTM(C * H * W if i == 0 else hidden[i - 1], h, dtype=np.float64) for i, h in enumerate(hidden)]
    fc = [LSTM(1 if i == 0 else hidden[i - 1], h, dtype=np.float64) for i, h in enumerate(hidden)]
    head = Dense(sum(hidden), C * H * W, dtype=np.float64)
    for i in range(L):
        for layer, name in ((enc[i], f"encoder{i}"), (fc[i], f"forecaster{i}")):
            for k in layer.params:
                layer.params[k][...] = model.params[f"{name}.{k}"]
    for k in head.params:
        head.params[k][...] = model.params[f"head.{k}"]
    inp, states = x.reshape(B, T_IN, -1), []
    for e in enc:
        inp = e(inp)
        states.append(e.state)
    inp, hs = np.zeros((B, F, 1)), []
    for i in range(L):
        inp = fc[i](inp, state=states[i])
        hs.append(inp)
    expect = head(np.concatenate(hs, axis=2)).reshape(B, F, C, H, W)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)
    # backward by hand: head, forecasters top-down (their dstate feeds the encoders), encoders
    dcat = head.backward(dy.reshape(B, F, -1))
    offs = np.cumsum((0,) + tuple(hidden))
    dnext, dstates = None, [None] * L
    for i in range(L - 1, -1, -1):
        dh = dcat[:, :, offs[i] : offs[i + 1]] + (0 if dnext is None else dnext)
        dnext = fc[i].backward(np.ascontiguousarray(dh))
        dstates[i] = fc[i].dstate
    dnext = np.zeros((B, T_IN, hidden[-1]))
    for i in range(L - 1, -1, -1):
        dnext = enc[i].backward(dnext, dstates[i])
    np.testing.assert_allclose(dx, dnext.reshape(x.shape), rtol=1e-10, atol=1e-12)
    for i in range(L):
        for k, g in enc[i].grads.items():
            np.testing.assert_allclose(model.grads[f"encoder{i}.{k}"], g, rtol=1e-10, atol=1e-12)


def test_save_load_round_trip(tmp_path, rng):
    assert registered_layers()["FCEncoderForecaster"] is FCEncoderForecaster
    model = make((3, 2), np.float32, seed=4)
    model.eval()
    x = frames(rng, np.float32)
    loaded = numlstm.load(numlstm.save(model, tmp_path / "fc.npz"))
    assert isinstance(loaded, FCEncoderForecaster) and loaded.config() == model.config()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"hidden_sizes": ()}, ValueError, "hidden_sizes"),
        ({"hidden_sizes": "3"}, TypeError, "hidden_sizes"),
        ({"height": 0}, ValueError, "height"),
        ({"future_steps": 0}, ValueError, "future_steps"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    args = {"in_channels": 1, "height": 3, "width": 4} | kwargs
    with pytest.raises(exc, match=match):
        FCEncoderForecaster(**args)


def test_bad_inputs(rng):
    model = make((3,))
    with pytest.raises(ValueError, match="x: expected a 5-d array"):
        model(np.zeros((B, T_IN, H * W)))
    with pytest.raises(ValueError, match="x"):
        model(np.zeros((B, T_IN, C, H + 1, W)))
    with pytest.raises(RuntimeError, match="no forward pass"):
        model.backward(np.zeros((B, F, C, H, W)))
    model(frames(rng))
    with pytest.raises(ValueError, match="dy"):
        model.backward(np.zeros((B, F + 1, C, H, W)))
