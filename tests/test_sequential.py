"""Sequential and Model: the chain against manual chaining, gradcheck through a whole model,
state dicts, summary, modes and parameter names."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_lstm, randomize_params

import numlstm
from numlstm import LSTM, Dense, Dropout, Flatten, LastStep, Model, ReLU, Sequential, Tanh, gradcheck
from numlstm.layers.registry import layer_to_config

TOL = 1e-6


def copy_layer(layer):
    """An independent layer with the same config and parameters."""
    twin = type(layer)(**layer.config())
    twin.load_state_dict(layer.state_dict())
    return twin


def lstm_dense(rng, dtype=np.float64):
    return Sequential(
        [make_lstm(rng, 3, 4, dtype=dtype, return_sequences=False), randomize_params(Dense(4, 2, dtype=dtype), rng)]
    )


def lstm_laststep_dense(rng, dtype=np.float64):
    return Sequential([make_lstm(rng, 3, 4, dtype=dtype), Tanh(), LastStep(), randomize_params(Dense(4, 2, dtype=dtype), rng)])


class Residual(Model):
    """A graph that is not a chain: y = head(tanh(inner(x)) + x)."""

    def __init__(self, features: int = 3, dtype=np.float64, seed: int = 0) -> None:
        super().__init__()
        self.features, self._dt, self.seed = features, np.dtype(dtype), seed
        self.layers = {
            "inner": Dense(features, features, dtype=dtype, seed=seed),
            "act": Tanh(),
            "head": Dense(features, 2, dtype=dtype, seed=seed + 1),
        }

    def config(self) -> dict:
        return {"features": self.features, "dtype": self._dt.name, "seed": self.seed}

    def forward(self, x):
        inner, act, head = self.layers.values()
        return head(act(inner(x)) + x)

    def backward(self, dy):
        inner, act, head = self.layers.values()
        dz = head.backward(dy)
        return inner.backward(act.backward(dz)) + dz


class Shared(Model):
    """The same Dense used twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        d = Dense(2, 2, dtype=np.float64, seed=0)
        self.layers = {"a": d, "b": d}


# -- forward and backward -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("build", [lstm_dense, lstm_laststep_dense], ids=["lstm-dense", "lstm-laststep-dense"])
def test_sequential_equals_manual_chaining(rng, build, dtype):
    model = build(rng, dtype)
    twins = [copy_layer(layer) for layer in model]
    x = rng.standard_normal((2, 5, 3)).astype(dtype)
    dy = rng.standard_normal((2, 2)).astype(dtype)
    y = model(x)
    dx = model.backward(dy)
    h = x
    for layer in twins:
        h = layer(h)
    g = dy
    for layer in reversed(twins):
        g = layer.backward(g)
    np.testing.assert_array_equal(y, h)
    np.testing.assert_array_equal(dx, g)
    for i, twin in enumerate(twins):
        for k, v in twin.grads.items():
            np.testing.assert_array_equal(model.grads[f"{i}.{k}"], v, err_msg=f"{i}.{k}")


def test_laststep_chain_equals_return_sequences_false(rng):
    a = lstm_dense(rng)
    b = Sequential([copy_layer(a[0]), LastStep(), copy_layer(a[1])])
    b[0].return_sequences = True
    x = rng.standard_normal((3, 4, 3))
    dy = rng.standard_normal((3, 2))
    np.testing.assert_allclose(b(x), a(x), rtol=1e-13)
    np.testing.assert_allclose(b.backward(dy), a.backward(dy), rtol=1e-12, atol=1e-14)
    for k in a.grads:
        kb = k.replace("1.", "2.", 1) if k.startswith("1.") else k
        np.testing.assert_allclose(b.grads[kb], a.grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("build", [lstm_dense, lstm_laststep_dense], ids=["lstm-dense", "lstm-laststep-dense"])
def test_sequential_gradcheck(rng, build):
    model = build(rng)
    errors = gradcheck(model, rng.standard_normal((2, 4, 3)))
    assert set(errors) == {"x", *model.params}
    assert {"0.weight_ih_l0", "0.bias_hh_l0", f"{len(model) - 1}.weight"} <= set(errors)
    assert max(errors.values()) < TOL, errors


def test_nested_and_custom_models_gradcheck(rng):
    inner = Sequential([randomize_params(Dense(3, 3, dtype=np.float64), rng), ReLU()])
    model = Sequential([inner, Flatten(), randomize_params(Dense(6, 2, dtype=np.float64), rng)])
    x = rng.uniform(0.2, 1.0, (2, 2, 3)) * rng.choice([-1.0, 1.0], (2, 2, 3))
    errors = gradcheck(model, x)
    assert set(errors) == {"x", "0.0.weight", "0.0.bias", "2.weight", "2.bias"}
    assert max(errors.values()) < TOL, errors
    res = Residual()
    errors = gradcheck(res, rng.standard_normal((2, 3)))
    assert set(errors) == {"x", "inner.weight", "inner.bias", "head.weight", "head.bias"}
    assert max(errors.values()) < TOL, errors


def test_gradcheck_refuses_a_model_with_dropout(rng):
    model = Sequential([Dense(3, 3, dtype=np.float64), Dropout(0.5)])
    assert model.dropout == 0.5
    with pytest.raises(ValueError, match="dropout"):
        gradcheck(model, rng.standard_normal((2, 3)))


def test_recurrent_layer_gets_a_zero_state(rng):
    model = lstm_dense(rng)
    assert Sequential.recurrent is False and model.recurrent is False
    x = rng.standard_normal((2, 5, 3))
    model(x)
    lstm = copy_layer(model[0])
    lstm(x, state=(np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    np.testing.assert_array_equal(model[0].state[0], lstm.state[0])


def test_backward_needs_a_training_forward(rng):
    model = lstm_dense(rng)
    with pytest.raises(RuntimeError, match="no forward pass"):
        model.backward(np.zeros((2, 2)))
    x = rng.standard_normal((2, 5, 3))
    model(x)
    model.backward(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="no forward pass"):
        model.backward(np.ones((2, 2)))
    model.eval()
    model(x)
    with pytest.raises(RuntimeError, match=r"model\.train\(\)"):
        model.backward(np.ones((2, 2)))


def test_bad_dy_keeps_the_forward(rng):
    model = lstm_dense(rng)
    model(rng.standard_normal((2, 5, 3)))
    with pytest.raises(ValueError, match=r"Sequential layer 1 \(Dense\): dy: expected shape \(2, 2\), got \(2, 3\)"):
        model.backward(np.ones((2, 3)))
    assert model.backward(np.ones((2, 2))).shape == (2, 5, 3)


def test_errors_name_the_failing_layer(rng):
    model = Sequential([LSTM(3, 5, dtype=np.float64, return_sequences=False), Dense(4, 2, dtype=np.float64)])
    with pytest.raises(ValueError, match=r"Sequential layer 1 \(Dense\): x: expected shape \(\?, 4\).*got \(2, 5\)"):
        model(rng.standard_normal((2, 3, 3)))
    with pytest.raises(TypeError, match=r"Sequential layer 0 \(LSTM\): x: expected dtype float64, got float32"):
        model(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Sequential layer 0 \(LSTM\): x: expected a 3-d array"):
        model(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "layers, exc, pattern",
    [
        ([], ValueError, r"layers: expected at least one layer"),
        (Dense(2, 2), TypeError, r"layers: expected a list of layers, got a single Dense: use Sequential\(\[layer\]\)"),
        ("abc", TypeError, r"layers: expected a list of layers, got str"),
        ([Dense(2, 2), "relu"], TypeError, r"layers\[1\]: expected a numlstm layer, got str"),
        ([Dense(2, 2, dtype=np.float32), Dense(2, 2, dtype=np.float64)], ValueError, r"layers\[0\] float32, layers\[1\] float64"),
    ],
)
def test_bad_layers(layers, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Sequential(layers)


def test_the_same_layer_twice_is_refused():
    d = Dense(2, 2)
    with pytest.raises(ValueError, match=r"layers\[2\]: the same Dense object as layers\[0\]"):
        Sequential([d, ReLU(), d])


# -- parameters and state dicts -------------------------------------------------------------------
def test_params_are_the_childrens_arrays(rng):
    model = lstm_dense(rng)
    assert list(model.params) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0", "1.weight", "1.bias"]
    assert model.params["1.weight"] is model[1].params["weight"]
    assert model.grads["0.weight_hh_l0"] is model[0].grads["weight_hh_l0"]
    params = model.parameters()
    assert [p.name for p in params] == list(model.params)
    assert params[4].data is model[1].params["weight"] and params[4].grad is model[1].grads["weight"]
    assert [n for n, _ in model.named_parameters()] == list(model.params)
    assert model.num_parameters() == 4 * 4 * (3 + 4 + 2) + 2 * 4 + 2
    assert model.dtype == np.float64
    with pytest.raises(AttributeError, match="its layers' parameters"):
        model.params = {}


def test_shared_arrays_are_listed_once():
    model = Shared()
    assert list(model.params) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert [p.name for p in model.parameters()] == ["a.weight", "a.bias"]
    assert model.num_parameters() == 6


def test_zero_grad(rng):
    model = lstm_dense(rng)
    model(rng.standard_normal((2, 5, 3)))
    model.backward(np.ones((2, 2)))
    assert any(g.any() for g in model.grads.values())
    model.zero_grad()
    assert not any(g.any() for g in model.grads.values())


def test_state_dict_round_trip(rng):
    model = lstm_dense(rng)
    sd = model.state_dict()
    assert list(sd) == list(model.params)
    assert all(sd[k] is not model.params[k] for k in sd)  # copies
    other = Sequential([LSTM(3, 4, dtype=np.float64, return_sequences=False, seed=1), Dense(4, 2, dtype=np.float64, seed=2)])
    other.load_state_dict(sd)
    x = rng.standard_normal((2, 5, 3))
    np.testing.assert_array_equal(other(x), model(x))


def test_load_state_dict_names_every_problem(rng):
    model = lstm_dense(rng)
    before = model.state_dict()
    sd = model.state_dict()
    del sd["1.bias"]
    sd["2.weight"] = np.zeros(3)
    sd["1.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "missing keys ['1.bias']" in msg and "unexpected keys ['2.weight']" in msg
    assert "'1.weight' expected (2, 4) got (3, 4)" in msg
    for k, v in model.params.items():  # nothing was copied
        np.testing.assert_array_equal(v, before[k])
    # strict=False ignores missing and unexpected keys, never wrong shapes
    with pytest.raises(ValueError, match="mis-shaped keys '1.weight'"):
        model.load_state_dict(sd, strict=False)
    sd["1.weight"] = np.ones((2, 4))
    model.load_state_dict(sd, strict=False)
    np.testing.assert_array_equal(model.params["1.weight"], 1.0)
    np.testing.assert_array_equal(model.params["1.bias"], before["1.bias"])
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        model.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=r"state_dict\['1.bias'\]: expected a numeric array"):
        model.load_state_dict({**before, "1.bias": np.array(["a", "b"])})


def test_load_state_dict_keeps_dtype(rng):
    model = lstm_dense(rng, np.float32)
    sd = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert all(v.dtype == np.float32 for v in model.params.values())


# -- modes, summary, config ---------------------------------------------------------------------------
def test_train_eval_propagate_to_nested_children():
    inner = Sequential([Dense(2, 2), Dropout(0.2)])
    model = Sequential([inner, LSTM(2, 2)])
    assert model.eval() is model
    assert not any(layer.training for layer in (model, inner, inner[0], inner[1], model[1]))
    model.train()
    assert all(layer.training for layer in (model, inner, inner[0], inner[1], model[1]))
    model.train(False)
    assert not inner[1].training


def test_summary_contents(rng):
    model = lstm_dense(rng)
    before = model.summary()
    assert "?" in before and "LSTM" in before and "Dense" in before
    model(rng.standard_normal((7, 5, 3)))
    text = model.summary()
    lines = text.splitlines()
    assert lines[0] == "Sequential"
    assert lines[1].split() == ["layer", "type", "output", "shape", "params"]
    assert lines[3].split() == ["0", "LSTM", "(7,", "4)", "144"]
    assert lines[4].split() == ["1", "Dense", "(7,", "2)", "10"]
    assert lines[-1] == "total parameters: 154"
    inferred = model.summary(input_shape=(None, 10, 3))
    assert "(?, 4)" in inferred and "(?, 2)" in inferred
    seq = Sequential([LSTM(3, 8, bidirectional=True), Flatten(), Dense(80, 1)])
    text = seq.summary((2, 5, 3))
    assert "(2, 5, 16)" in text and "(2, 80)" in text and "(2, 1)" in text
    assert "832" in text and "total parameters: 913" in text
    with pytest.raises(ValueError, match=r"Sequential layer 1 \(Dense\): input_shape: expected \(\.\.\., 4\)"):
        Sequential([LSTM(3, 5, return_sequences=False), Dense(4, 1)]).summary((2, 5, 3))
    with pytest.raises(ValueError, match=r"Sequential layer 0 \(LSTM\): input_shape: expected \(batch, time, 3\)"):
        model.summary((2, 5, 4))
    with pytest.raises(ValueError, match="input_shape: expected sizes >= 1 or None"):
        model.summary((0, 5, 3))
    with pytest.raises(TypeError, match="input_shape: expected a tuple"):
        model.summary(5)


def test_summary_of_a_custom_model(rng):
    res = Residual()
    text = res.summary()
    assert "inner" in text and "head" in text and "total parameters: 20" in text


def test_repr_and_config(rng):
    model = Sequential([Dense(3, 4, seed=0), ReLU(), Sequential([Dense(4, 2, seed=1)])])
    assert repr(model).splitlines()[1] == "  (0): Dense(3, 4, bias=True, dtype=float32)"
    assert "    (0): Dense(4, 2" in repr(model)
    cfg = model.config()
    assert [s["class"] for s in cfg["layers"]] == ["Dense", "ReLU", "Sequential"]
    assert cfg["layers"][2]["config"]["layers"][0]["config"]["seed"] == 1
    rebuilt = Sequential.from_config(cfg)
    assert rebuilt.config() == cfg
    assert layer_to_config(model) == {"class": "Sequential", "config": cfg}
    with pytest.raises(ValueError, match=r"config: expected \{'layers'"):
        Sequential.from_config({"layers": "x"})
    with pytest.raises(NotImplementedError, match="must define config"):
        Model().config()


def test_exports():
    assert numlstm.Sequential is Sequential and numlstm.Model is Model
    assert numlstm.models.Sequential is Sequential
    assert issubclass(Model, numlstm.Layer)


# -- buffers (non-trainable state: BatchNorm2D's running statistics) --------------------------------------
def bn_cnn(dtype=np.float64, seed=0):
    return Sequential(
        [
            numlstm.Conv2D(2, 3, 3, padding="same", dtype=dtype, seed=seed),
            numlstm.BatchNorm2D(3, dtype=dtype),
            ReLU(),
            numlstm.GlobalAvgPool2D(),
            Dense(3, 2, dtype=dtype, seed=seed + 1),
        ]
    )


def test_buffers_are_qualified_and_live(rng):
    model = Sequential([bn_cnn(), Tanh()])  # nested: "0.1.running_mean"
    assert list(model.buffers) == ["0.1.running_mean", "0.1.running_var"]
    assert model.buffers["0.1.running_mean"] is model[0][1].buffers["running_mean"]  # the arrays, not copies
    assert [k for k, _ in model.named_buffers()] == list(model.buffers)
    # not parameters: optimizers never see them
    assert not any("running" in k for k in model.params)
    assert not any("running" in p.name for p in model.parameters())
    assert model.num_parameters() == sum(v.size for v in model.params.values())
    with pytest.raises(AttributeError, match="buffers"):
        model.buffers = {}


def test_state_dict_holds_and_restores_buffers(rng):
    model = bn_cnn()
    x = rng.standard_normal((4, 2, 5, 5))
    model(x)  # training mode: running statistics move
    sd = model.state_dict()
    assert list(sd) == list(model.params) + ["1.running_mean", "1.running_var"]
    assert sd["1.running_mean"] is not model.buffers["1.running_mean"]  # copies
    assert np.any(sd["1.running_mean"] != 0.0)
    other = bn_cnn(seed=5)
    other.load_state_dict(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(other.state_dict()[k], v, err_msg=k)
    model.eval()
    other.eval()
    np.testing.assert_array_equal(other(x), model(x))


def test_load_state_dict_checks_buffers_like_params(rng):
    model = bn_cnn()
    before = model.state_dict()
    sd = model.state_dict()
    del sd["1.running_var"]
    sd["1.running_mean"] = np.zeros(4)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "missing keys ['1.running_var']" in msg
    assert "'1.running_mean' expected (3,) got (4,)" in msg
    for k, v in model.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"unexpected keys \['1.num_batches'\]"):
        model.load_state_dict({**before, "1.num_batches": np.zeros(1)})
    # strict=False: a state dict of parameters only keeps the current statistics
    model.buffers["1.running_mean"][...] = 7.0
    model.load_state_dict({k: v for k, v in before.items() if "running" not in k}, strict=False)
    np.testing.assert_array_equal(model.buffers["1.running_mean"], 7.0)
    # dtype is kept
    model.load_state_dict({k: v.astype(np.float32) for k, v in before.items()})
    assert model.buffers["1.running_var"].dtype == np.float64


def test_time_distributed_exposes_inner_buffers(rng):
    dt = np.float64
    td = numlstm.TimeDistributed(
        Sequential([numlstm.Conv2D(1, 2, 3, padding="same", dtype=dt, seed=0), numlstm.BatchNorm2D(2, dtype=dt)])
    )
    assert list(td.buffers) == ["1.running_mean", "1.running_var"]
    assert numlstm.TimeDistributed(numlstm.BatchNorm2D(2)).buffers.keys() == {"running_mean", "running_var"}
    assert numlstm.TimeDistributed(ReLU()).buffers == {}
    model = Sequential(
        [td, numlstm.TimeDistributed(numlstm.GlobalAvgPool2D()), LSTM(2, 3, return_sequences=False, dtype=dt, seed=1)]
    )
    assert list(model.buffers) == ["0.1.running_mean", "0.1.running_var"]
    x = rng.standard_normal((2, 3, 1, 4, 4))
    model(x)
    sd = model.state_dict()
    assert "0.1.running_mean" in sd and np.any(sd["0.1.running_mean"] != 0.0)
    twin = Sequential.from_config(model.config())
    twin.load_state_dict(sd)
    model.eval()
    twin.eval()
    np.testing.assert_array_equal(twin(x), model(x))
