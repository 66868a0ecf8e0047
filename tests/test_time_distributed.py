"""TimeDistributed: folding time into the batch, gradients, modes, config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close

from numlstm import LSTM, BatchNorm2D, Conv2D, Dense, GlobalAvgPool2D, ReLU, Sequential, TimeDistributed, gradcheck
from numlstm.layers.registry import layer_from_config, layer_to_config

TOL = 1e-6


def test_time_distributed_conv_matches_per_frame(rng):
    conv = Conv2D(2, 3, 3, padding=1, dtype=np.float64, seed=1)
    td = TimeDistributed(conv)
    assert td.params is conv.params and td.grads is conv.grads
    x = rng.standard_normal((2, 4, 2, 5, 5))
    y = td(x)
    assert y.shape == (2, 4, 3, 5, 5)
    ref = Conv2D(2, 3, 3, padding=1, dtype=np.float64, seed=1)
    for t in range(4):
        assert_close(y[:, t], ref(x[:, t]), 1e-13, f"t={t}")
    dx = td.backward(np.ones_like(y))
    assert dx.shape == x.shape


def test_time_distributed_gradcheck(rng):
    td = TimeDistributed(Conv2D(2, 2, 2, padding="same", dtype=np.float64, seed=3))
    errors = gradcheck(td, rng.standard_normal((2, 3, 2, 4, 3)))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


def test_cnn_lstm_chain_gradcheck(rng):
    encoder = Sequential([Conv2D(1, 2, 3, padding=1, dtype=np.float64, seed=0), ReLU(), GlobalAvgPool2D()])
    model = Sequential([TimeDistributed(encoder), LSTM(2, 3, dtype=np.float64, seed=0), Dense(3, 2, dtype=np.float64, seed=0)])
    errors = gradcheck(model, rng.standard_normal((2, 3, 1, 4, 4)))
    assert max(errors.values()) < TOL, errors


def test_time_distributed_modes_and_config(rng):
    bn = BatchNorm2D(2, dtype=np.float64)
    td = TimeDistributed(bn)
    td.eval()
    assert not bn.training
    td.train()
    assert bn.training
    spec = layer_to_config(TimeDistributed(Conv2D(1, 2, 3, stride=2, seed=5)))
    json.dumps(spec)
    assert spec["config"]["layer"]["class"] == "Conv2D"
    again = layer_from_config(spec)
    assert isinstance(again, TimeDistributed) and isinstance(again.layer, Conv2D) and again.layer.stride == (2, 2)
    assert again.compute_output_shape((None, 4, 1, 9, 9)) == (None, 4, 2, 4, 4)


def test_time_distributed_bad_input(rng):
    td = TimeDistributed(Conv2D(1, 1, 3, dtype=np.float64))
    with pytest.raises(
        ValueError, match=r"x: expected an array \(batch, time, \.\.\.\) with at least 3 dimensions, got shape \(2, 3\)"
    ):
        td(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x: expected shape"):
        td(np.zeros((2, 3, 2, 5, 5)))
    with pytest.raises(ValueError, match="non-empty batch and time"):
        td(np.zeros((2, 0, 1, 5, 5)))
    with pytest.raises(TypeError, match="layer: expected a numlstm layer"):
        TimeDistributed("conv")
    with pytest.raises(ValueError, match="recurrent"):
        TimeDistributed(LSTM(2, 2))
    with pytest.raises(RuntimeError, match="no forward pass"):
        td.backward(np.zeros((1, 1, 1, 3, 3)))
