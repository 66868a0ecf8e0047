"""numlstm.gradcheck: passes for every LSTM option, and fails when backward is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_lstm, random_state

import numlstm
from numlstm import gradcheck

# every test here runs on both CPU schedules (see conftest.cpu_path)
pytestmark = pytest.mark.usefixtures("cpu_path")

TOL = 1e-6

CONFIGS = {
    "1layer": dict(num_layers=1),
    "2layers": dict(num_layers=2),
    "3layers": dict(num_layers=3, hidden_size=1),
    "bidir": dict(bidirectional=True),
    "bidir-2layers": dict(num_layers=2, bidirectional=True),
    "nobias": dict(bias=False),
    "nobias-bidir-2layers": dict(num_layers=2, bidirectional=True, bias=False),
    "last": dict(return_sequences=False),
    "last-bidir-2layers": dict(num_layers=2, bidirectional=True, return_sequences=False),
    "forget_bias": dict(forget_bias=1.0),
}

SCENARIOS = {
    "random-state": dict(state=False, lengths=None),
    "given-state": dict(state=True, lengths=None),
    "lengths": dict(state=False, lengths=[3, 1]),
    "lengths-and-state": dict(state=True, lengths=[2, 3]),
}


def _layer(rng, config):
    config = dict(config)
    hidden = config.pop("hidden_size", 2)
    return make_lstm(rng, 2, hidden, **config)


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_gradcheck_passes(rng, config, scenario):
    layer = _layer(rng, config)
    x = rng.standard_normal((2, 3, 2))
    state = random_state(rng, layer, 2) if scenario["state"] else None
    kwargs = {} if scenario["lengths"] is None else {"lengths": scenario["lengths"]}
    errors = gradcheck(layer, x, state, **kwargs)
    want = {"x", "h0", "c0", *layer.params}
    assert set(errors) == want
    bad = {k: e for k, e in errors.items() if not e < TOL}
    assert not bad, f"relative errors above {TOL}: {bad}"


def test_gradcheck_restores_layer(rng, lstm64):
    params = {k: v.copy() for k, v in lstm64.params.items()}
    lstm64.zero_grad()
    for g in lstm64.grads.values():
        g += 0.25
    lstm64.eval()
    x = rng.standard_normal((2, 3, 3))
    gradcheck(lstm64, x, max_elements=3)
    assert not lstm64.training
    for k in params:
        np.testing.assert_array_equal(lstm64.params[k], params[k], err_msg=k)
        np.testing.assert_array_equal(lstm64.grads[k], 0.25, err_msg=k)


def test_gradcheck_does_not_modify_x_or_state(rng, lstm64):
    x = rng.standard_normal((2, 3, 3))
    state = random_state(rng, lstm64, 2)
    copies = [x.copy(), state[0].copy(), state[1].copy()]
    gradcheck(lstm64, x, state, max_elements=4)
    for a, c in zip((x, *state), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# -- gradcheck can fail --------------------------------------------------------------------------


class ScaledDxLSTM(numlstm.LSTM):
    """Wrong on purpose: dx is 1% too large."""

    def backward(self, dy, dstate=None):
        return 1.01 * super().backward(dy, dstate)


class CorruptGradLSTM(numlstm.LSTM):
    """Wrong on purpose: one element of one gradient is off."""

    target = "weight_hh_l0"

    def backward(self, dy, dstate=None):
        dx = super().backward(dy, dstate)
        self.grads[self.target].reshape(-1)[1] += 0.5
        return dx


class CorruptDstateLSTM(numlstm.LSTM):
    """Wrong on purpose: the initial-state gradient of c is halved."""

    def backward(self, dy, dstate=None):
        dx = super().backward(dy, dstate)
        self.dstate = (self.dstate[0], 0.5 * self.dstate[1])
        return dx


def _wrong(cls, rng, **kwargs):
    layer = cls(2, 2, dtype=np.float64, seed=0, **kwargs)
    for p in layer.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


def test_gradcheck_detects_wrong_dx(rng):
    layer = _wrong(ScaledDxLSTM, rng, num_layers=2)
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2)))
    assert errors["x"] > 1e-3
    assert all(e < TOL for k, e in errors.items() if k != "x"), errors


@pytest.mark.parametrize("target", ["weight_hh_l0", "bias_ih_l0", "weight_ih_l0_reverse"])
def test_gradcheck_detects_wrong_param_grad(rng, target):
    cls = type("Corrupt", (CorruptGradLSTM,), {"target": target})
    layer = _wrong(cls, rng, bidirectional=True)
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2)), lengths=[3, 2])
    assert errors[target] > 1e-3
    assert all(e < TOL for k, e in errors.items() if k != target), errors


def test_gradcheck_detects_wrong_dstate(rng):
    layer = _wrong(CorruptDstateLSTM, rng)
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2)))
    assert errors["c0"] > 1e-3
    assert errors["h0"] < TOL


def test_gradcheck_detects_ignored_dstate(rng):
    """A backward that drops the gradient of the final state fails for every tensor."""

    class IgnoresDstateLSTM(numlstm.LSTM):
        def backward(self, dy, dstate=None):
            return super().backward(dy, None)

    layer = _wrong(IgnoresDstateLSTM, rng, bidirectional=True)
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2)), lengths=[3, 1])
    assert min(errors.values()) > 1e-3, errors


# -- arguments -----------------------------------------------------------------------------------


def test_gradcheck_refuses_float32():
    layer = numlstm.LSTM(2, 2, seed=0)
    with pytest.raises(ValueError, match="float64"):
        gradcheck(layer, np.zeros((1, 2, 2), np.float32))


def test_gradcheck_refuses_dropout():
    layer = numlstm.LSTM(2, 2, num_layers=2, dropout=0.2, dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match="dropout"):
        gradcheck(layer, np.zeros((1, 2, 2)))


def test_gradcheck_refuses_non_layer():
    with pytest.raises(TypeError, match="layer"):
        gradcheck(object(), np.zeros((1, 2, 2)))


@pytest.mark.parametrize("eps", [0.0, -1e-6])
def test_gradcheck_refuses_bad_eps(lstm64, eps):
    with pytest.raises(ValueError, match="eps"):
        gradcheck(lstm64, np.zeros((1, 2, 3)), eps=eps)


@pytest.mark.parametrize("max_elements", [0, -1])
def test_gradcheck_refuses_bad_max_elements(lstm64, max_elements):
    with pytest.raises(ValueError, match="max_elements"):
        gradcheck(lstm64, np.zeros((1, 2, 3)), max_elements=max_elements)


def test_max_elements_limits_the_work(rng, monkeypatch):
    """With max_elements=m, each tensor costs at most 2*m extra forward passes, and still passes."""
    layer = _layer(rng, dict(num_layers=2, bidirectional=True))
    x = rng.standard_normal((2, 3, 2))
    calls = []
    forward = layer.forward

    def counting_forward(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(layer, "forward", counting_forward)
    m = 3
    errors = gradcheck(layer, x, max_elements=m)
    n_tensors = 1 + len(layer.params) + 2
    # a few set-up passes, then 2 per checked element
    assert len(calls) <= 2 * m * n_tensors + 5
    assert len(calls) >= 2 * m * n_tensors
    assert all(e < TOL for e in errors.values()), errors


def test_max_elements_still_detects_errors(rng):
    layer = _wrong(ScaledDxLSTM, rng)
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2)), max_elements=2)
    assert errors["x"] > 1e-3
