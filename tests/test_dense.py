"""Dense and the parameter-free layers (ReLU, Tanh, Sigmoid, Flatten, Dropout, LastStep):
gradients against float64 central differences, values against numpy and PyTorch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import numlstm
from numlstm import Dense, Dropout, Flatten, LastStep, ReLU, Sigmoid, Tanh, gradcheck

TOL = 1e-6


def random_dense(rng, in_features=3, out_features=2, bias=True, dtype=np.float64) -> Dense:
    """A Dense with random non-zero weights and bias."""
    layer = Dense(in_features, out_features, bias=bias, dtype=dtype, seed=int(rng.integers(2**31)))
    for p in layer.params.values():
        p[...] = rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    return layer


def away_from_zero(rng, shape, margin=0.1):
    """Random values with |x| >= margin (ReLU's kink is not differentiable)."""
    return rng.uniform(margin, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


# -- Dense: gradients and references --------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 4), (2, 1, 2, 4)])
def test_dense_gradcheck(rng, shape, bias):
    layer = random_dense(rng, shape[-1], 3, bias=bias)
    errors = gradcheck(layer, rng.standard_normal(shape))
    assert set(errors) == {"x", "weight", *(["bias"] if bias else [])}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_matches_numpy(rng, dtype):
    layer = random_dense(rng, 4, 3, dtype=dtype)
    x = rng.standard_normal((2, 5, 4)).astype(dtype)
    dy = rng.standard_normal((2, 5, 3)).astype(dtype)
    y = layer(x)
    dx = layer.backward(dy)
    w, b = layer.params["weight"].astype(np.float64), layer.params["bias"].astype(np.float64)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, x64 @ w.T + b, rtol, "y")
    assert_close(dx, dy64 @ w, rtol, "dx")
    assert_close(layer.grads["weight"], dy64.reshape(-1, 3).T @ x64.reshape(-1, 4), rtol, "dW")
    assert_close(layer.grads["bias"], dy64.sum(axis=(0, 1)), rtol, "db")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)])
def test_dense_matches_torch(rng, dtype, shape, bias):
    torch = pytest.importorskip("torch")
    tdt = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    layer = random_dense(rng, 4, 3, bias=bias, dtype=dtype)
    lin = torch.nn.Linear(4, 3, bias=bias).to(tdt)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(layer.params["weight"]))
        if bias:
            lin.bias.copy_(torch.from_numpy(layer.params["bias"]))
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape[:-1] + (3,)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = lin(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    y = layer(x)
    dx = layer.backward(dy)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(y, yt.detach().numpy(), rtol, "y")
    assert_close(dx, xt.grad.numpy(), rtol, "dx")
    assert_close(layer.grads["weight"], lin.weight.grad.numpy(), rtol, "dW")
    if bias:
        assert_close(layer.grads["bias"], lin.bias.grad.numpy(), rtol, "db")


def test_dense_init_like_torch():
    layer = Dense(16, 5, seed=3)
    bound = 1 / np.sqrt(16)
    assert layer.params["weight"].shape == (5, 16) and layer.params["bias"].shape == (5,)
    for p in layer.params.values():
        assert p.dtype == np.float32
        assert np.all(np.abs(p) <= bound) and np.std(p) > 0.3 * bound
    again = Dense(16, 5, seed=3)
    other = Dense(16, 5, seed=4)
    for k in layer.params:
        np.testing.assert_array_equal(layer.params[k], again.params[k])
    assert not np.array_equal(layer.params["weight"], other.params["weight"])
    assert set(Dense(2, 2, bias=False).params) == {"weight"}


def test_dense_backward_accumulates_and_zero_grad(rng):
    layer = random_dense(rng)
    x = rng.standard_normal((2, 3))
    dy = rng.standard_normal((2, 2))
    layer(x)
    layer.backward(dy)
    once = {k: g.copy() for k, g in layer.grads.items()}
    layer(x)
    layer.backward(dy)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-14)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


def test_dense_keeps_its_own_copy_of_x(rng):
    layer = random_dense(rng)
    x = rng.standard_normal((2, 3))
    dy = rng.standard_normal((2, 2))
    y = layer(x)
    assert not np.shares_memory(y, x)
    expected_dw = dy.T @ x
    x[...] = 0.0  # the caller reuses its buffer before backward
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["weight"], expected_dw, rtol=1e-14)


def test_dense_backward_needs_a_training_forward(rng):
    layer = random_dense(rng)
    x = rng.standard_normal((2, 3))
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.zeros((2, 2)))
    layer(x)
    layer.backward(np.zeros((2, 2)))
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.zeros((2, 2)))  # the cache is consumed
    layer.eval()
    layer(x)
    with pytest.raises(RuntimeError, match=r"layer\.train\(\)"):
        layer.backward(np.zeros((2, 2)))


def test_dense_bad_dy_keeps_the_forward(rng):
    layer = random_dense(rng)
    layer(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 2\), got \(2, 3\)"):
        layer.backward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"dy: expected dtype float64, got float32"):
        layer.backward(np.zeros((2, 2), np.float32))
    assert layer.backward(np.ones((2, 2))).shape == (2, 3)


@pytest.mark.parametrize(
    "x, exc, pattern",
    [
        (np.zeros((2, 5)), ValueError, r"x: expected shape \(\?, 3\) \(\.\.\., in_features\), got \(2, 5\)"),
        (np.zeros((2, 4, 5)), ValueError, r"x: expected shape \(\?, \?, 3\).*got \(2, 4, 5\)"),
        (np.zeros((2, 3), np.float32), TypeError, r"x: expected dtype float64, got float32: use x\.astype\(np\.float64\)"),
        (np.zeros((2, 3), np.int64), TypeError, r"x: expected dtype float64, got int64"),
        (np.zeros((0, 3)), ValueError, r"x: .*axis 0 is empty"),
        (np.zeros((2, 0, 3)), ValueError, r"axis 1 is empty"),
        (np.float64(1.0), ValueError, r"x: .*0-d array"),
        ("abc", TypeError, r"x: expected a numpy array, got str"),
        (None, TypeError, r"x: expected a numpy array, got NoneType"),
        ([[1.0, 2.0, 3.0], [1.0]], ValueError, r"x: expected a rectangular array"),
    ],
)
def test_dense_bad_input(x, exc, pattern):
    layer = Dense(3, 2, dtype=np.float64, seed=0)
    with pytest.raises(exc, match=pattern):
        layer(x)


def test_dense_accepts_nested_lists():
    layer = Dense(3, 2, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(layer([[1.0, 2.0, 3.0]]), layer(np.array([[1.0, 2.0, 3.0]])))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(in_features=0, out_features=2), ValueError, r"in_features: expected an int >= 1, got 0"),
        (dict(in_features=3, out_features=2.0), TypeError, r"out_features: expected an int, got float"),
        (dict(in_features=True, out_features=2), TypeError, r"in_features: expected an int, got bool"),
        (dict(in_features=3, out_features=2, bias=1), TypeError, r"bias: expected True or False"),
        (dict(in_features=3, out_features=2, dtype=np.int32), TypeError, r"dtype: expected np\.float32 or np\.float64"),
        (dict(in_features=3, out_features=2, seed=-1), ValueError, r"seed: expected an int >= 0"),
    ],
)
def test_dense_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Dense(**kwargs)


def test_dense_config_rebuilds_the_layer():
    layer = Dense(4, 3, bias=False, dtype=np.float64, seed=7)
    cfg = layer.config()
    assert cfg == {"in_features": 4, "out_features": 3, "bias": False, "dtype": "float64", "seed": 7}
    again = Dense(**cfg)
    np.testing.assert_array_equal(again.params["weight"], layer.params["weight"])
    assert repr(layer) == "Dense(4, 3, bias=False, dtype=float64)"


@settings(max_examples=40, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    in_features=st.integers(1, 4),
    out_features=st.integers(1, 4),
    wrong=st.integers(1, 5),
)
def test_dense_any_shape_works_any_wrong_one_is_named(lead, in_features, out_features, wrong):
    layer = Dense(in_features, out_features, dtype=np.float64, seed=0)
    x = np.ones((*lead, in_features))
    y = layer(x)
    assert y.shape == (*lead, out_features) == layer.compute_output_shape(x.shape)
    assert layer.backward(np.ones_like(y)).shape == x.shape
    if wrong != in_features:
        with pytest.raises(
            ValueError, match=rf"x: expected shape .*{in_features}\).*got \({', '.join(map(str, (*lead, wrong)))},?\)"
        ):
            layer(np.ones((*lead, wrong)))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=4), which=st.sampled_from(["relu", "tanh", "sigmoid", "flatten"]))
def test_parameter_free_any_shape(shape, which):
    layer = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "flatten": Flatten}[which]()
    x = np.ones(shape, np.float32)
    if 0 in shape or (which == "flatten" and len(shape) < 2):
        with pytest.raises(ValueError, match="x: expected"):
            layer(x)
        return
    y = layer(x)
    assert y.shape == layer.compute_output_shape(shape)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_dense_output_shape():
    layer = Dense(4, 3)
    assert layer.compute_output_shape((None, 7, 4)) == (None, 7, 3)
    with pytest.raises(ValueError, match=r"input_shape: expected \(\.\.\., 4\)"):
        layer.compute_output_shape((2, 5))


def test_dense_parameters_are_the_layer_arrays():
    layer = Dense(3, 2)
    params = layer.parameters()
    assert [p.name for p in params] == ["weight", "bias"]
    assert params[0].data is layer.params["weight"] and params[0].grad is layer.grads["weight"]


# -- the parameter-free layers -------------------------------------------------------------------
def primed(layer, x):
    """Run once so that the layer knows its dtype (gradcheck asks for a float64 layer)."""
    layer(x)
    return layer


PARAMETER_FREE = {
    "relu": (ReLU, (2, 3, 4)),
    "tanh": (Tanh, (2, 3, 4)),
    "sigmoid": (Sigmoid, (2, 3, 4)),
    "flatten": (lambda: Flatten(), (2, 3, 2, 2)),
    "flatten-2": (lambda: Flatten(2), (2, 3, 2, 2)),
    "flatten-0": (lambda: Flatten(0), (2, 3)),
    "dropout-0": (lambda: Dropout(0.0, seed=0), (2, 3)),
    "laststep": (LastStep, (2, 3, 4)),
    "laststep-images": (LastStep, (2, 3, 1, 2, 2)),
}


@pytest.mark.parametrize("make, shape", list(PARAMETER_FREE.values()), ids=list(PARAMETER_FREE))
def test_parameter_free_gradcheck(rng, make, shape):
    x = away_from_zero(rng, shape)
    layer = primed(make(), x)
    errors = gradcheck(layer, x)
    assert set(errors) == {"x"}
    assert errors["x"] < TOL, errors


@pytest.mark.parametrize("make, shape", list(PARAMETER_FREE.values()), ids=list(PARAMETER_FREE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameter_free_keep_dtype_and_contract(rng, make, shape, dtype):
    layer = make()
    assert layer.dtype is None and layer.params == {} and layer.grads == {} and layer.num_parameters() == 0
    x = away_from_zero(rng, shape).astype(dtype)
    y = layer(x)
    assert y.dtype == dtype and layer.dtype == dtype
    assert not np.shares_memory(y, x)
    assert layer.compute_output_shape(x.shape) == y.shape
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == dtype
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.ones_like(y))
    assert type(layer)(**layer.config()).config() == layer.config()


def torch_reference(torch, name, x, dy):
    """Output and input gradient from torch for loss sum(y * dy)."""
    xt = torch.tensor(x, requires_grad=True)
    fn = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "flatten": lambda t: torch.flatten(t, 1),
        "laststep": lambda t: t[:, -1],
    }[name]
    yt = fn(xt)
    (yt * torch.from_numpy(dy)).sum().backward()
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name, layer",
    [("relu", ReLU()), ("tanh", Tanh()), ("sigmoid", Sigmoid()), ("flatten", Flatten()), ("laststep", LastStep())],
    ids=["relu", "tanh", "sigmoid", "flatten", "laststep"],
)
def test_parameter_free_match_torch(rng, name, layer, dtype):
    torch = pytest.importorskip("torch")
    x = (3 * rng.standard_normal((2, 3, 4))).astype(dtype)
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    y_ref, dx_ref = torch_reference(torch, name, x, dy)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert_close(y, y_ref, rtol, "y")
    assert_close(dx, dx_ref, rtol, "dx")


def test_relu_derivative_at_zero_is_zero():
    layer = ReLU()
    y = layer(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(y, [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(layer.backward(np.ones((1, 3))), [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_saturate_without_overflow(dtype):
    x = np.array([[-1e4, -100.0, -3.0, 0.0, 3.0, 100.0, 1e4]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = Sigmoid()(x)
        t = Tanh()(x)
    with np.errstate(over="ignore"):
        s_ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(s, s_ref, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-38)  # float32 denormals
    assert s[0, 0] == 0.0 and s[0, -1] == 1.0 and s[0, 3] == 0.5
    np.testing.assert_array_equal(t[0, [0, 1, 3, 5, 6]], [-1.0, -1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("make", [ReLU, Tanh, Sigmoid])
def test_activations_propagate_nan(make):
    y = make()(np.array([[np.nan, 1.0]]))
    assert np.isnan(y[0, 0]) and np.isfinite(y[0, 1])


def test_flatten_shapes():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, 60))
    np.testing.assert_array_equal(Flatten(2)(x), x.reshape(2, 3, 20))
    np.testing.assert_array_equal(Flatten(0)(x), x.reshape(120))
    assert Flatten(2).compute_output_shape((None, 3, 4, 5)) == (None, 3, 20)
    assert Flatten(1).compute_output_shape((2, None, 4)) == (2, None)


def test_laststep_picks_the_last_step_and_scatters_back():
    x = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    layer = LastStep()
    np.testing.assert_array_equal(layer(x), x[:, -1])
    dx = layer.backward(np.full((2, 2), 5.0))
    expected = np.zeros_like(x)
    expected[:, -1] = 5.0
    np.testing.assert_array_equal(dx, expected)
    assert layer.compute_output_shape((None, 7, 3, 4, 4)) == (None, 3, 4, 4)


def test_dropout_training_and_eval(rng):
    layer = Dropout(0.25, seed=1)
    x = rng.uniform(1.0, 2.0, (50, 40))
    y = layer(x)
    dropped = y == 0
    assert 0.18 < dropped.mean() < 0.32
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.75, rtol=1e-15)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(dropped, 0.0, dy / 0.75), rtol=1e-15)
    # seeded: the same sequence of masks
    again = Dropout(0.25, seed=1)
    np.testing.assert_array_equal(again(x), y)
    assert not np.array_equal(again(x), y)  # the next mask differs
    # evaluation mode: the identity, no cache
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(dy)
    assert layer.dropout == 0.25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_keeps_dtype(dtype):
    layer = Dropout(0.5, seed=0)
    x = np.ones((4, 5), dtype)
    y = layer(x)
    assert y.dtype == dtype and set(np.unique(y)) <= {0.0, 2.0}
    assert layer.backward(np.ones_like(y)).dtype == dtype


def test_gradcheck_refuses_random_dropout(rng):
    x = rng.standard_normal((2, 3))
    layer = primed(Dropout(0.5, seed=0), x)
    with pytest.raises(ValueError, match="dropout=0.5"):
        gradcheck(layer, x)


def test_gradcheck_of_parameter_free_layers_follows_the_input_dtype():
    # parameter-free layers take their dtype from the input: float64 input is checkable at once
    errors = gradcheck(Tanh(), np.random.default_rng(0).standard_normal((2, 3)))
    assert errors["x"] < 1e-6
    with pytest.raises(ValueError, match="float64 layer"):
        gradcheck(Tanh(), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "layer, x, exc, pattern",
    [
        (ReLU(), np.zeros((2, 3), np.int32), TypeError, r"x: expected dtype float32 or float64, got int32: use x\.astype"),
        (Tanh(), np.zeros((2, 3), np.complex128), TypeError, r"x: expected dtype float32 or float64, got complex128$"),
        (Sigmoid(), np.zeros((2, 0)), ValueError, r"x: .*axis 1 is empty"),
        (ReLU(), np.float64(3.0), ValueError, r"x: expected an array of at least 1 dimensions"),
        (ReLU(), "x", TypeError, r"x: expected a numpy array, got str"),
        (Tanh(), [[1.0], [1.0, 2.0]], ValueError, r"x: expected a rectangular array"),
        (Flatten(2), np.zeros((2, 3)), ValueError, r"x: expected an array of at least 3 dimensions \(start_dim=2"),
        (LastStep(), np.zeros((2, 3)), ValueError, r"x: expected an array of at least 3 dimensions \(batch, time, features"),
    ],
)
def test_parameter_free_bad_input(layer, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        layer(x)


def test_parameter_free_bad_dy(rng):
    layer = Tanh()
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\), got \(3, 2\)"):
        layer.backward(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="dy: expected dtype float64, got float32"):
        layer.backward(np.zeros((2, 3), np.float32))
    assert layer.backward(np.ones((2, 3))).shape == (2, 3)  # still usable


@pytest.mark.parametrize(
    "make, exc, pattern",
    [
        (lambda: Dropout(1.0), ValueError, r"p: expected a number < 1\.0, got 1\.0"),
        (lambda: Dropout(-0.1), ValueError, r"p: expected a number >= 0\.0"),
        (lambda: Dropout("0.5"), TypeError, r"p: expected a number, got str"),
        (lambda: Dropout(0.1, seed=1.5), TypeError, r"seed: expected an int"),
        (lambda: Flatten(-1), ValueError, r"start_dim: expected an int >= 0, got -1"),
        (lambda: Flatten(1.0), TypeError, r"start_dim: expected an int"),
    ],
)
def test_parameter_free_bad_arguments(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_parameter_free_configs_and_repr():
    assert ReLU().config() == {} and repr(ReLU()) == "ReLU()"
    assert Flatten(2).config() == {"start_dim": 2}
    assert Dropout(0.3, seed=4).config() == {"p": 0.3, "seed": 4}
    assert repr(Dropout(0.3, seed=4)) == "Dropout(p=0.3, seed=4)"
    assert LastStep().config() == {}
    assert numlstm.layers.ReLU is ReLU
