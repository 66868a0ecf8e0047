"""CNNLSTM and AttentionCNNLSTM: shapes, gradients, training, save/load, bad input; and a Trainer
resume that restores BatchNorm2D running statistics inside an image-sequence model."""

from __future__ import annotations

import numpy as np
import pytest

import numlstm
from numlstm import CNNLSTM, AttentionCNNLSTM, gradcheck
from numlstm.layers.registry import layer_to_config, registered_layers
from numlstm.optim import Adam

TOL = 1e-6


def frames(rng, B=2, T=3, C=2, H=4, W=4, dtype=np.float64):
    return rng.standard_normal((B, T, C, H, W)).astype(dtype)


def moving_square(n, T=4, S=8, seed=0):
    """A bright 2x2 square moving one pixel per frame to the right (label 1) or to the left (0), with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = 0.1 * rng.standard_normal((n, T, 1, S, S))
    for i in range(n):
        d = 1 if y[i] else -1
        c0 = rng.integers(0, S - 1 - T) + (0 if d == 1 else T - 1)
        r = rng.integers(0, S - 1)
        for t in range(T):
            c = c0 + d * t
            x[i, t, 0, r : r + 2, c : c + 2] += 1.0
    return x.astype(np.float32), y.astype(np.int64)


# -- shapes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("per_step", [False, True])
def test_cnnlstm_shapes(rng, per_step, bidirectional):
    model = CNNLSTM(2, 5, conv_channels=(3, 4), hidden_size=6, bidirectional=bidirectional, per_step=per_step, seed=0)
    x = frames(rng, B=3, T=4, H=9, W=8, dtype=np.float32)  # odd sizes: MaxPool2D floors
    y = model(x)
    assert y.shape == ((3, 4, 5) if per_step else (3, 5))
    assert y.dtype == np.float32
    assert model.compute_output_shape((None, 4, 2, 9, 8)) == ((None, 4, 5) if per_step else (None, 5))
    assert model.output_shapes((3, 4, 2, 9, 8))["encoder"] == (3, 4, 4)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    names = list(model.params)
    assert names[0] == "encoder.0.weight" and "lstm.weight_ih_l0" in names and names[-1] == "head.bias"
    assert "CNNLSTM" in model.summary() and "TimeDistributed" in model.summary((None, 4, 2, 9, 8))


def test_attention_cnnlstm_shapes_and_maps(rng):
    model = AttentionCNNLSTM(2, 3, conv_channels=(3, 4), hidden_size=5, attention_size=4, seed=0)
    assert model.attention is None and model.attention_shape is None
    with pytest.raises(RuntimeError, match="attention_maps: no forward pass"):
        model.attention_maps()
    x = frames(rng, B=2, T=3, H=8, W=12, dtype=np.float32)
    y = model(x)
    assert y.shape == (2, 3)
    assert model.attention_shape == (2, 3)  # 8 x 12 after two MaxPool2D(2)
    assert model.attention.shape == (2, 3, 6)
    np.testing.assert_allclose(model.attention.sum(axis=-1), 1.0, rtol=1e-5)
    maps = model.attention_maps()
    assert maps.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(maps.reshape(2, 3, 6), model.attention)
    assert model.output_shapes((None, 3, 2, 8, 12)) == {"encoder": (None, 3, 4, 2, 3), "attention": (None, 5), "head": (None, 3)}
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape


def test_same_seed_same_weights():
    for make in (
        lambda s: CNNLSTM(1, 2, conv_channels=(2,), hidden_size=3, seed=s),
        lambda s: AttentionCNNLSTM(1, 2, (2,), 3, 3, 2, seed=s),
    ):
        a, b, c = make(4), make(4), make(5)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
        assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


# -- gradients --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"per_step": True},
        {"bidirectional": True, "num_layers": 2},
        {"kernel_size": (3, 2), "conv_channels": (3,)},
    ],
)
def test_cnnlstm_gradcheck(rng, kwargs):
    kw = {"conv_channels": (2, 3), "hidden_size": 3, **kwargs}
    model = CNNLSTM(2, 3, dtype=np.float64, seed=1, **kw)
    errors = gradcheck(model, frames(rng, H=4, W=5), max_elements=20)
    assert set(errors) == {"x", *model.params}
    assert max(errors.values()) < TOL, errors


def test_attention_cnnlstm_gradcheck(rng):
    model = AttentionCNNLSTM(2, 3, conv_channels=(2, 3), hidden_size=3, attention_size=2, dtype=np.float64, seed=1)
    errors = gradcheck(model, frames(rng, H=5, W=4), max_elements=20)
    assert set(errors) == {"x", *model.params}
    assert max(errors.values()) < TOL, errors


def test_attention_cnnlstm_dattention_flows_through(rng):
    """backward(dy, dattention) equals the gradient of sum(y*dy) + sum(attention*dattention)."""
    model = AttentionCNNLSTM(1, 2, conv_channels=(2,), hidden_size=3, attention_size=2, dtype=np.float64, seed=2)
    x = frames(rng, C=1)
    y = model(x)
    dy = rng.standard_normal(y.shape)
    dal = rng.standard_normal(model.attention.shape)
    dx = model.backward(dy, dattention=dal)

    def loss(xx):
        out = model(xx)
        return float(np.sum(out * dy) + np.sum(model.attention * dal))

    eps = 1e-6
    for idx in [(0, 0, 0, 1, 2), (1, 2, 0, 3, 0), (0, 1, 0, 2, 2)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (loss(xp) - loss(xm)) / (2 * eps)
        assert abs(num - dx[idx]) < 1e-6 * max(1.0, abs(num))


# -- training ---------------------------------------------------------------------------------------------
def test_cnnlstm_learns_the_direction_of_a_moving_square():
    x, y = moving_square(256)
    xv, yv = moving_square(128, seed=1)
    model = CNNLSTM(1, 2, conv_channels=(8, 8), hidden_size=16, seed=0)
    trainer = numlstm.Trainer(model, "cross_entropy", Adam(model.parameters(), lr=0.02), seed=0)
    hist = trainer.fit(x, y, epochs=15, batch_size=32, validation_data=(xv, yv), progress=False)
    assert hist.history["val_accuracy"][-1] > 0.9
    assert trainer.evaluate(xv, yv)["accuracy"] > 0.9


def test_attention_cnnlstm_trains():
    x, y = moving_square(128)
    model = AttentionCNNLSTM(1, 2, conv_channels=(4, 8), hidden_size=12, attention_size=8, seed=0)
    trainer = numlstm.Trainer(model, "cross_entropy", Adam(model.parameters(), lr=0.02), seed=0)
    hist = trainer.fit(x, y, epochs=6, batch_size=32, progress=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert np.all(np.isfinite(trainer.predict(x[:8])))


def test_per_step_trains_with_one_label_per_frame():
    x, y = moving_square(64)
    yy = np.repeat(y[:, None], x.shape[1], axis=1)  # (N, T)
    model = CNNLSTM(1, 2, conv_channels=(4,), hidden_size=8, per_step=True, seed=0)
    trainer = numlstm.Trainer(model, "cross_entropy", Adam(model.parameters(), lr=0.02), seed=0)
    hist = trainer.fit(x, yy, epochs=3, batch_size=16, progress=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


# -- persistence ------------------------------------------------------------------------------------------
def test_registered_and_config_is_json():
    known = registered_layers()
    assert known["CNNLSTM"] is CNNLSTM and known["AttentionCNNLSTM"] is AttentionCNNLSTM
    spec = layer_to_config(CNNLSTM(1, 2, conv_channels=(2, 3), kernel_size=(3, 1), seed=0))
    assert spec["config"]["conv_channels"] == [2, 3] and spec["config"]["kernel_size"] == [3, 1]
    assert spec["config"]["dtype"] == "float32"


@pytest.mark.parametrize(
    "make",
    [
        lambda: CNNLSTM(2, 3, conv_channels=(3, 4), hidden_size=5, bidirectional=True, per_step=True, seed=3),
        lambda: AttentionCNNLSTM(2, 3, conv_channels=(3, 4), hidden_size=5, attention_size=4, dtype=np.float64, seed=3),
    ],
)
def test_save_load_round_trip(tmp_path, rng, make):
    model = make()
    for p in model.params.values():  # not the seeded init: load must restore the arrays
        p[...] += rng.standard_normal(p.shape).astype(p.dtype)
    path = numlstm.save(model, tmp_path / "m.npz")
    loaded = numlstm.load(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    x = frames(rng, H=8, W=8, dtype=model.dtype)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))
    if isinstance(model, AttentionCNNLSTM):
        np.testing.assert_array_equal(loaded.attention, model.attention)


def test_trainer_resume_restores_batchnorm_statistics(tmp_path):
    """A Sequential CNN-LSTM with TimeDistributed(BatchNorm2D): resume continues bit for bit."""
    x, y = moving_square(64)
    dt = np.float32

    def new(seed):
        cnn = numlstm.Sequential(
            [
                numlstm.Conv2D(1, 4, 3, padding="same", dtype=dt, seed=seed),
                numlstm.BatchNorm2D(4, dtype=dt),
                numlstm.ReLU(),
                numlstm.GlobalAvgPool2D(),
            ]
        )
        model = numlstm.Sequential(
            [
                numlstm.TimeDistributed(cnn),
                numlstm.LSTM(4, 8, return_sequences=False, dtype=dt, seed=seed + 1),
                numlstm.Dense(8, 2, dtype=dt, seed=seed + 2),
            ]
        )
        return model, numlstm.Trainer(model, "cross_entropy", Adam(model.parameters(), lr=0.01), seed=7)

    model_a, ta = new(0)
    ta.fit(x, y, epochs=3, batch_size=16, progress=False)
    model_b, tb = new(0)
    tb.fit(x, y, epochs=1, batch_size=16, progress=False)
    path = tmp_path / "ck.npz"
    tb.save_checkpoint(path)
    model_c, tc = new(9)
    tc.fit(x, y, epochs=3, batch_size=16, progress=False, resume_from=path)
    sa, sc = model_a.state_dict(), model_c.state_dict()
    assert "0.1.running_mean" in sa
    for k in sa:
        np.testing.assert_array_equal(sa[k], sc[k], err_msg=k)
    model_a.eval()
    model_c.eval()
    np.testing.assert_array_equal(model_c(x[:8]), model_a(x[:8]))


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [CNNLSTM, AttentionCNNLSTM])
def test_bad_inputs_name_the_argument(rng, cls):
    model = cls(3, 2, conv_channels=(2, 2), hidden_size=3, seed=0)
    with pytest.raises(
        ValueError,
        match=r"x: expected a 5-d array \(batch, time, channels, height, width\) "
        r"of shape \(\?, \?, 3, \?, \?\), got shape \(2, 3, 8, 8\)",
    ):
        model(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, \?, 3, \?, \?\) .*got \(2, 4, 1, 8, 8\)"):
        model(np.zeros((2, 4, 1, 8, 8), np.float32))
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        model(np.zeros((2, 4, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"x: expected frames of at least 4x4 pixels .*got shape \(2, 4, 3, 3, 8\)"):
        model(np.zeros((2, 4, 3, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"axis 0 is empty"):
        model(np.zeros((0, 4, 3, 8, 8), np.float32))
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        model("frames")
    with pytest.raises(RuntimeError, match="backward: no forward pass"):
        model.backward(np.zeros((2, 2), np.float32))
    y = model(np.zeros((2, 4, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=rf"{cls.__name__} layer head \(Dense\): dy"):
        model.backward(np.zeros((2, 5), np.float32))
    model.backward(np.ones_like(y))  # the refused dy left the forward usable
    model.eval()
    model(np.zeros((2, 4, 3, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="backward: no forward pass"):
        model.backward(np.ones_like(y))
    with pytest.raises(ValueError, match=r"input_shape: expected \(batch, time, 3, height, width\)"):
        model.compute_output_shape((None, 4, 2, 8, 8))


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="in_channels: expected an int"):
        CNNLSTM(1.5, 2)
    with pytest.raises(ValueError, match="num_classes: expected an int >= 1, got 0"):
        CNNLSTM(1, 0)
    with pytest.raises(ValueError, match="conv_channels: expected at least one conv block"):
        CNNLSTM(1, 2, conv_channels=())
    with pytest.raises(TypeError, match="conv_channels: expected a non-empty list or tuple"):
        AttentionCNNLSTM(1, 2, conv_channels=8)
    with pytest.raises(ValueError, match=r"conv_channels\[1\]: expected an int >= 1, got 0"):
        CNNLSTM(1, 2, conv_channels=(4, 0))
    with pytest.raises(ValueError, match="kernel_size: expected an int or a pair"):
        CNNLSTM(1, 2, kernel_size=(3, 3, 3))
    with pytest.raises(ValueError, match="dropout: expected a number < 1.0"):
        CNNLSTM(1, 2, dropout=1.0)
    with pytest.raises(TypeError, match="dtype: expected np.float32 or np.float64"):
        AttentionCNNLSTM(1, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="attention_size: expected an int >= 1"):
        AttentionCNNLSTM(1, 2, attention_size=0)
    with pytest.raises(TypeError, match="per_step: expected True or False"):
        CNNLSTM(1, 2, per_step=1)
    with pytest.raises(ValueError, match="gradcheck needs dropout=0|dropout=0.5 makes the forward random"):
        gradcheck(CNNLSTM(1, 2, num_layers=2, dropout=0.5, dtype=np.float64), np.zeros((1, 2, 1, 4, 4)))
