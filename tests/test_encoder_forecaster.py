"""EncoderForecaster (Shi et al. 2015): shapes, gradients, the state handoff, save/load,
training on a moving-dot task, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import numlstm
from numlstm import Conv2D, ConvLSTM, EncoderForecaster, gradcheck
from numlstm.layers.registry import layer_to_config, registered_layers
from numlstm.losses import BCEWithLogitsLoss
from numlstm.optim import Adam

TOL = 1e-6
B, T_IN, F, S = 2, 3, 2, 6


def frames(rng, B=B, T=T_IN, C=1, H=S, W=S, dtype=np.float64):
    return rng.standard_normal((B, T, C, H, W)).astype(dtype)


def make(hidden, dtype=np.float64, seed=0, **kwargs):
    return EncoderForecaster(1, hidden_channels=hidden, kernel_size=3, future_steps=F, dtype=dtype, seed=seed, **kwargs)


def moving_dot(T_in=T_IN, future=F, size=S):
    """A bright pixel moving one step right per frame on size x size: every row and start column that fits."""
    xs, ys = [], []
    for r in range(size):
        for c0 in range(size - (T_in + future) + 1):
            seq = np.zeros((T_in + future, 1, size, size), np.float32)
            for t in range(T_in + future):
                seq[t, 0, r, c0 + t] = 1.0
            xs.append(seq[:T_in])
            ys.append(seq[T_in:])
    return np.stack(xs), np.stack(ys)


# -- shapes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_shapes(rng, hidden, dtype):
    model = make(hidden, dtype=dtype)
    y = model(frames(rng, dtype=dtype))
    assert y.shape == (B, F, 1, S, S) and y.dtype == dtype
    assert model.compute_output_shape((B, T_IN, 1, S, S)) == (B, F, 1, S, S)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == (B, T_IN, 1, S, S) and dx.dtype == dtype
    names = [n for n, _ in model.named_layers()]
    L = len(hidden)
    assert names == [f"encoder{i}" for i in range(L)] + [f"forecaster{i}" for i in range(L)] + ["head"]
    assert "(2, 2, 1, 6, 6)" in model.summary()


def test_out_channels_and_kernel_pair(rng):
    model = EncoderForecaster(2, hidden_channels=4, kernel_size=(3, 1), out_channels=3, future_steps=4, seed=1)
    x = rng.standard_normal((1, 2, 2, 5, 7)).astype(np.float32)
    assert model(x).shape == (1, 4, 3, 5, 7)
    assert model.hidden_channels == (4,)
    assert model.layers["head"].params["weight"].shape == (3, 4, 1, 1)


def test_same_seed_same_weights():
    a, b = make((3, 2), seed=5), make((3, 2), seed=5)
    for k, v in a.params.items():
        np.testing.assert_array_equal(v, b.params[k])


# -- gradients ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
def test_gradcheck(rng, hidden):
    model = make(hidden)
    errors = gradcheck(model, frames(rng), max_elements=20)
    assert set(errors) == {"x", *model.params}
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, bad
    # the zero input frames of the forecaster: its first input weight gets no gradient
    model.zero_grad()
    y = model(frames(rng))
    model.backward(rng.standard_normal(y.shape))
    assert np.all(model.grads["forecaster0.weight_x_l0"] == 0)
    assert np.any(model.grads["encoder0.weight_x_l0"] != 0)


def test_backward_accumulates_and_needs_forward(rng):
    model = make((3,))
    x = frames(rng)
    with pytest.raises(RuntimeError, match="no forward pass"):
        model.backward(np.zeros((B, F, 1, S, S)))
    dy = rng.standard_normal((B, F, 1, S, S))
    model(x)
    model.backward(dy)
    g1 = {k: v.copy() for k, v in model.grads.items()}
    model(x)
    model.backward(dy)
    for k, v in model.grads.items():
        np.testing.assert_allclose(v, 2 * g1[k], rtol=1e-12, atol=1e-15)
    model.eval()
    model(x)
    with pytest.raises(RuntimeError, match="no forward pass"):
        model.backward(dy)


# -- the state handoff -------------------------------------------------------------------------------------
def test_last_input_frame_changes_the_forecast(rng):
    model = make((3, 2))
    x = frames(rng)
    y0 = model(x)
    x2 = x.copy()
    x2[:, -1] += 1.0
    y1 = model(x2)
    assert np.max(np.abs(y1 - y0)) > 1e-3
    # and the gradient of the forecast reaches every input frame, the first included
    model.train()
    model(x)
    dx = model.backward(np.ones_like(y0))
    assert all(np.max(np.abs(dx[:, t])) > 0 for t in range(T_IN))


@pytest.mark.parametrize("hidden", [(3,), (3, 2)])
def test_matches_manual_chaining(rng, hidden):
    model = make(hidden)
    L = len(hidden)
    x = frames(rng)
    y = model(x)
    enc, fc = [], []
    c_in = 1
    for i, c in enumerate(hidden):
        e = ConvLSTM(c_in, c, 3, dtype=np.float64)
        f = ConvLSTM(1 if i == 0 else hidden[i - 1], c, 3, dtype=np.float64)
        for layer, name in ((e, f"encoder{i}"), (f, f"forecaster{i}")):
            for k in layer.params:
                layer.params[k][...] = model.params[f"{name}.{k}"]
        enc.append(e)
        fc.append(f)
        c_in = c
    head = Conv2D(sum(hidden), 1, 1, dtype=np.float64)
    for k in head.params:
        head.params[k][...] = model.params[f"head.{k}"]
    inp, states = x, []
    for e in enc:
        inp = e(inp)
        states.append(e.state)
    inp, hs = np.zeros((B, F, 1, S, S)), []
    for i in range(L):
        inp = fc[i](inp, state=states[i])
        hs.append(inp)
    cat = np.concatenate(hs, axis=2)
    expect = head(cat.reshape(B * F, -1, S, S)).reshape(B, F, 1, S, S)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)


# -- persistence ------------------------------------------------------------------------------------------
def test_registered_and_save_load_round_trip(tmp_path, rng):
    assert registered_layers()["EncoderForecaster"] is EncoderForecaster
    model = make((3, 2), dtype=np.float32, seed=3)
    for p in model.params.values():  # not the seed's weights: load must copy them
        p[...] = rng.uniform(-0.5, 0.5, p.shape)
    spec = layer_to_config(model)
    assert spec["config"]["hidden_channels"] == [3, 2] and spec["config"]["future_steps"] == F
    x = frames(rng, dtype=np.float32)
    model.eval()
    y = model(x)
    loaded = numlstm.load(numlstm.save(model, tmp_path / "ef.npz"))
    assert isinstance(loaded, EncoderForecaster)
    assert loaded.config() == model.config()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), y)


# -- training -----------------------------------------------------------------------------------------------
def test_trainer_learns_moving_dot():
    x, y = moving_dot()
    loss = BCEWithLogitsLoss()
    # baseline: the last input frame repeated for every future step, as probabilities
    # clipped to [eps, 1 - eps] with the eps that is best for it (2 wrong pixels of 36 per frame)
    eps = 2.0 / (S * S)
    p = np.clip(np.repeat(x[:, -1:], F, axis=1), eps, 1 - eps)
    copy_last = float(loss.forward(np.log(p / (1 - p)).astype(np.float32), y))
    # a constant forecast at the mean pixel value (learns "background", not motion)
    m = float(y.mean())
    constant = float(loss.forward(np.full_like(y, np.log(m / (1 - m))), y))
    model = EncoderForecaster(1, hidden_channels=(8,), kernel_size=3, future_steps=F, seed=0)
    trainer = numlstm.Trainer(model, "bce", Adam(model.parameters(), lr=0.05), metrics=(), seed=0)
    history = trainer.fit(x, y, epochs=60, batch_size=4, progress=False)
    final = trainer.evaluate(x, y)["loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert final < copy_last, (final, copy_last)
    assert final < constant, (final, constant)


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"in_channels": 1.5}, TypeError, "in_channels"),
        ({"in_channels": 1, "hidden_channels": ()}, ValueError, "hidden_channels"),
        ({"in_channels": 1, "hidden_channels": "3"}, TypeError, "hidden_channels"),
        ({"in_channels": 1, "hidden_channels": (3, 0)}, ValueError, r"hidden_channels\[1\]"),
        ({"in_channels": 1, "kernel_size": (3, 3, 3)}, ValueError, "kernel_size"),
        ({"in_channels": 1, "kernel_size": 2.0}, TypeError, "kernel_size"),
        ({"in_channels": 1, "out_channels": 0}, ValueError, "out_channels"),
        ({"in_channels": 1, "future_steps": 0}, ValueError, "future_steps"),
        ({"in_channels": 1, "future_steps": True}, TypeError, "future_steps"),
        ({"in_channels": 1, "dtype": np.int32}, TypeError, "dtype"),
        ({"in_channels": 1, "seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EncoderForecaster(**kwargs)


def test_bad_inputs(rng):
    model = make((3,))
    with pytest.raises(ValueError, match=r"x: expected a 5-d array .* got shape \(2, 3, 6, 6\)"):
        model(np.zeros((2, 3, 6, 6)))
    with pytest.raises(ValueError, match="x: .*channels"):
        model(np.zeros((2, 3, 2, 6, 6)))
    with pytest.raises(TypeError, match="x: expected dtype float64, got float32"):
        model(np.zeros((2, 3, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="empty"):
        model(np.zeros((0, 3, 1, 6, 6)))
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        model("frames")
    y = model(frames(rng))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 2, 1, 6, 6\)"):
        model.backward(np.zeros((2, 3, 1, 6, 6)))
    # a refused dy leaves the forward usable
    assert model.backward(np.zeros_like(y)).shape == (B, T_IN, 1, S, S)
    with pytest.raises(ValueError, match="input_shape"):
        model.compute_output_shape((2, 3, 2, 6, 6))
