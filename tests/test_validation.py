"""Bad input gets a clear TypeError / ValueError naming the argument, never a crash or a silent wrong answer."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numlstm

B, T, I, H = 2, 3, 4, 2


def lstm(**kwargs):
    kwargs.setdefault("seed", 0)
    return numlstm.LSTM(I, H, **kwargs)


def x32(b=B, t=T, i=I):
    return np.zeros((b, t, i), np.float32)


# -- constructor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(name, value):
    kwargs = {"input_size": I, "hidden_size": H, name: value}
    with pytest.raises(ValueError, match=rf"{name}: expected an int >= 1, got {value}"):
        numlstm.LSTM(**kwargs)


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value", [2.5, 3.0, "3", None, True, False, np.float64(2.0)], ids=repr)
def test_sizes_must_be_ints(name, value):
    kwargs = {"input_size": I, "hidden_size": H, name: value}
    with pytest.raises(TypeError, match=rf"{name}: expected an int"):
        numlstm.LSTM(**kwargs)


def test_numpy_integer_sizes_are_accepted():
    layer = numlstm.LSTM(np.int64(I), np.int32(H), num_layers=np.uint8(2), seed=np.int64(1))
    assert (layer.input_size, layer.hidden_size, layer.num_layers, layer.seed) == (I, H, 2, 1)
    assert all(type(v) is int for v in (layer.input_size, layer.hidden_size, layer.num_layers, layer.seed))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_range(value):
    with pytest.raises(ValueError, match="dropout"):
        lstm(dropout=value)


@pytest.mark.parametrize("value", ["0.1", None, True])
def test_dropout_type(value):
    with pytest.raises(TypeError, match="dropout"):
        lstm(dropout=value)


def test_dropout_edges_accepted():
    assert lstm(dropout=0).dropout == 0.0
    assert lstm(dropout=0.999).dropout == 0.999


@pytest.mark.parametrize("dtype", [np.int32, "float16", np.float16, np.complex128, "int64", "nonsense", object], ids=str)
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match=r"dtype: expected np.float32 or np.float64"):
        lstm(dtype=dtype)


def test_dtype_none_is_not_silently_float64():
    """np.dtype(None) is float64, but the layer's default is float32: None must mean the default or be refused."""
    try:
        layer = lstm(dtype=None)
    except TypeError as exc:
        assert "dtype" in str(exc)
    else:
        assert layer.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, "float32", np.dtype("float64"), "f8"], ids=str)
def test_good_dtypes(dtype):
    assert lstm(dtype=dtype).dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", ["bias", "bidirectional", "return_sequences"])
@pytest.mark.parametrize("value", [1, 0, "yes", None], ids=repr)
def test_flags_must_be_bools(name, value):
    with pytest.raises(TypeError, match=rf"{name}: expected True or False"):
        lstm(**{name: value})


def test_forget_bias_needs_bias():
    with pytest.raises(ValueError, match="forget_bias.*bias=False"):
        lstm(bias=False, forget_bias=1.0)
    assert lstm(bias=False, forget_bias=0.0).bias is False


@pytest.mark.parametrize("value, exc", [(float("inf"), ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_forget_bias_value(value, exc):
    with pytest.raises(exc, match="forget_bias"):
        lstm(forget_bias=value)


@pytest.mark.parametrize("value, exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
def test_bad_seed(value, exc):
    with pytest.raises(exc, match="seed"):
        lstm(seed=value)


# -- forward: x ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(I,), (T, I), (1, B, T, I), ()], ids=str)
def test_x_wrong_rank(shape):
    with pytest.raises(ValueError, match=re.escape(f"x: expected a 3-d array (batch, time, input_size) of shape (?, ?, {I})")):
        lstm()(np.zeros(shape, np.float32))


def test_x_wrong_feature_size():
    got = (B, T, I + 1)
    with pytest.raises(ValueError, match=re.escape(f"x: expected shape (?, ?, {I}) (batch, time, input_size), got {got}")):
        lstm()(np.zeros(got, np.float32))


@pytest.mark.parametrize("shape, axis", [((0, T, I), 0), ((B, 0, I), 1), ((0, 0, I), 0)], ids=str)
def test_x_empty_batch_or_time(shape, axis):
    with pytest.raises(ValueError, match=rf"x: .*got \({shape[0]}, {shape[1]}, {I}\) \(axis {axis} is empty\)"):
        lstm()(np.zeros(shape, np.float32))


def test_x_float64_into_float32_layer_has_astype_hint():
    with pytest.raises(TypeError, match=re.escape("x: expected dtype float32, got float64: use x.astype(np.float32)")):
        lstm()(np.zeros((B, T, I)))


def test_x_float32_into_float64_layer():
    with pytest.raises(TypeError, match=re.escape("x: expected dtype float64, got float32: use x.astype(np.float64)")):
        lstm(dtype=np.float64)(x32())


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, bool, np.float16])
def test_x_other_numeric_dtypes(dtype):
    with pytest.raises(TypeError, match=re.escape("x: expected dtype float32") + ".*astype"):
        lstm()(np.zeros((B, T, I), dtype))


@pytest.mark.parametrize("dtype", [np.complex64, object, "U1"], ids=str)
def test_x_non_numeric_dtypes(dtype):
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        lstm()(np.zeros((B, T, I), dtype))


@pytest.mark.parametrize("value", ["abc", None, 3.0, {"x": 1}], ids=repr)
def test_x_not_an_array(value):
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        lstm()(value)


def test_x_ragged_nested_list():
    """numpy's own 'inhomogeneous shape' error does not say which argument was wrong."""
    with pytest.raises(ValueError, match=r"^x: "):
        lstm(dtype=np.float64)([[[0.0] * I, [0.0] * (I - 1)]])


def test_x_nested_list_is_accepted_in_float64():
    layer = lstm(dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((B, T, I))
    np.testing.assert_array_equal(layer(x.tolist()), layer(x))


# -- forward: state ------------------------------------------------------------------------------


def _state(layer, batch=B, dtype=None):
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    dtype = dtype or layer.dtype
    return np.zeros(shape, dtype), np.zeros(shape, dtype)


@pytest.mark.parametrize("bad", ["h", np.zeros((1, B, H), np.float32), (np.zeros((1, B, H), np.float32),), None], ids=repr)
def test_state_not_a_pair(bad):
    layer = lstm()
    if bad is None:
        bad = (*_state(layer), _state(layer)[0])  # three arrays
    with pytest.raises(TypeError, match=r"state: expected a tuple \(h, c\)"):
        layer(x32(), state=bad)


@pytest.mark.parametrize(
    "config, shape",
    [
        (dict(), (1, B + 1, H)),  # wrong batch
        (dict(), (1, B, H + 1)),  # wrong hidden
        (dict(), (B, H)),  # missing the layer axis
        (dict(num_layers=2), (1, B, H)),  # one layer's state for two
        (dict(bidirectional=True), (1, B, H)),  # one direction's state for two
    ],
)
@pytest.mark.parametrize("which", [0, 1], ids=["h", "c"])
def test_state_wrong_shape(config, shape, which):
    layer = lstm(**config)
    state = list(_state(layer))
    state[which] = np.zeros(shape, np.float32)
    name = re.escape(f"state[{which}] ({'hc'[which]})")
    with pytest.raises(ValueError, match=name + r": expected .*\(num_layers\*num_directions, batch, hidden_size\)"):
        layer(x32(), state=tuple(state))


def test_state_wrong_dtype():
    layer = lstm()
    h, c = _state(layer, dtype=np.float64)
    with pytest.raises(TypeError, match=re.escape("state[0] (h): expected dtype float32, got float64")):
        layer(x32(), state=(h, c))


def test_state_as_list_is_accepted():
    layer = lstm()
    y_list = layer(x32(), state=list(_state(layer)))
    np.testing.assert_array_equal(y_list, layer(x32()))


# -- forward: lengths ----------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[T], [T, T, T], [], [[T, T]], T], ids=repr)
def test_lengths_wrong_count(lengths):
    with pytest.raises(ValueError, match=rf"lengths: expected a 1-d sequence of {B} ints"):
        lstm()(x32(), lengths=lengths)


@pytest.mark.parametrize("lengths", [[0, T], [T, T + 1], [-1, 1], [1, 10**9]], ids=repr)
def test_lengths_out_of_range(lengths):
    with pytest.raises(ValueError, match=rf"lengths: expected values in \[1, {T}\]"):
        lstm()(x32(), lengths=lengths)


@pytest.mark.parametrize("lengths", [[1.5, 2.0], [np.nan, 2.0], [np.inf, 1.0], [True, True], ["a", "b"], [1, None]], ids=repr)
def test_lengths_not_integers(lengths):
    with pytest.raises(TypeError, match="lengths: expected integers"):
        lstm()(x32(), lengths=lengths)


def test_lengths_ragged():
    with pytest.raises((TypeError, ValueError), match=r"^lengths: "):
        lstm()(x32(), lengths=[[1], [1, 2]])


@pytest.mark.parametrize("lengths", ["ab", {0: 1, 1: 2}], ids=repr)
def test_lengths_not_a_sequence(lengths):
    with pytest.raises((TypeError, ValueError), match=r"^lengths: "):
        lstm()(x32(), lengths=lengths)


# -- backward ------------------------------------------------------------------------------------


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"backward: no forward pass.*forward\(x\)"):
        lstm().backward(np.zeros((B, T, H), np.float32))


@pytest.mark.parametrize(
    "config, shape",
    [
        (dict(), (B, T, H + 1)),
        (dict(), (B, T + 1, H)),
        (dict(), (B, H)),
        (dict(bidirectional=True), (B, T, H)),
        (dict(return_sequences=False), (B, T, H)),
        (dict(return_sequences=False, bidirectional=True), (B, H)),
    ],
)
def test_dy_wrong_shape(config, shape):
    layer = lstm(**config)
    y = layer(x32())
    with pytest.raises(ValueError, match=re.escape("dy: expected") + r".*" + re.escape(str(y.shape))):
        layer.backward(np.zeros(shape, np.float32))


def test_dy_wrong_dtype():
    layer = lstm()
    y = layer(x32())
    with pytest.raises(TypeError, match=re.escape("dy: expected dtype float32, got float64: use dy.astype(np.float32)")):
        layer.backward(np.zeros(y.shape))


def test_dy_not_an_array():
    layer = lstm()
    layer(x32())
    with pytest.raises(TypeError, match="dy: expected a numpy array"):
        layer.backward("dy")


@pytest.mark.parametrize("which", [0, 1], ids=["h", "c"])
def test_dstate_wrong_shape(which):
    layer = lstm(num_layers=2)
    y = layer(x32())
    dstate = list(_state(layer))
    dstate[which] = np.zeros((1, B, H), np.float32)
    with pytest.raises(ValueError, match=re.escape(f"dstate[{which}] ({'hc'[which]}): expected")):
        layer.backward(np.zeros(y.shape, np.float32), tuple(dstate))


def test_dstate_not_a_pair():
    layer = lstm()
    y = layer(x32())
    with pytest.raises(TypeError, match=r"dstate: expected a tuple \(h, c\)"):
        layer.backward(np.zeros(y.shape, np.float32), np.zeros((1, B, H), np.float32))


def test_dstate_batch_must_match_forward():
    layer = lstm()
    y = layer(x32())
    h, c = _state(layer, batch=B + 1)
    with pytest.raises(ValueError, match="dstate"):
        layer.backward(np.zeros(y.shape, np.float32), (h, c))


def test_failed_backward_leaves_grads_untouched():
    layer = lstm()
    layer(np.ones((B, T, I), np.float32))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((B, T, H + 1), np.float32))
    assert all(not np.any(g) for g in layer.grads.values())


# -- load_state_dict -----------------------------------------------------------------------------


def test_load_state_dict_errors():
    layer = lstm()
    sd = layer.state_dict()
    with pytest.raises(TypeError, match="state_dict"):
        layer.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="missing keys.*bias_hh_l0"):
        layer.load_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match="unexpected keys.*extra"):
        layer.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=re.escape("state_dict['weight_hh_l0']: expected shape (8, 2)")):
        layer.load_state_dict({**sd, "weight_hh_l0": np.zeros((2, 8))})
    with pytest.raises(TypeError, match="weight_hh_l0"):
        layer.load_state_dict({**sd, "weight_hh_l0": np.full((8, 2), "a")})


def test_load_state_dict_is_all_or_nothing():
    layer = lstm()
    before = layer.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["weight_hh_l0"] = np.zeros((3, 3))
    with pytest.raises(ValueError):
        layer.load_state_dict(sd)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(v, before[k])


# -- properties ----------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=5))
def test_any_invalid_x_shape_gets_a_value_error_naming_x(shape):
    shape = tuple(shape)
    valid = len(shape) == 3 and shape[0] >= 1 and shape[1] >= 1 and shape[2] == I
    layer = lstm()
    x = np.zeros(shape, np.float32)
    if valid:
        assert layer(x).shape == (shape[0], shape[1], H)
    else:
        with pytest.raises(ValueError, match=r"^x: expected .*got (shape )?" + re.escape(str(shape))):
            layer(x)
