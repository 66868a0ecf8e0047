"""numlstm.interop: PyTorch state dicts and Keras weight lists, with numpy arrays only (no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, make_lstm, random_state
from naive import sigmoid

import numlstm
from numlstm.interop import lstm_from_keras, lstm_from_torch, lstm_to_keras, lstm_to_torch

B, T, I, H = 2, 4, 3, 2

CONFIGS = {
    "1layer": dict(num_layers=1, bidirectional=False, bias=True),
    "bidir": dict(num_layers=1, bidirectional=True, bias=True),
    "stacked": dict(num_layers=3, bidirectional=False, bias=True),
    "bidir-stacked": dict(num_layers=2, bidirectional=True, bias=True),
    "nobias": dict(num_layers=1, bidirectional=False, bias=False),
    "nobias-bidir-stacked": dict(num_layers=2, bidirectional=True, bias=False),
}


def torch_dict(rng, num_layers, bidirectional, bias, input_size=I, hidden=H):
    """An nn.LSTM-style state dict of random numpy arrays."""
    sd = {}
    D = 2 if bidirectional else 1
    for k in range(num_layers):
        in_k = input_size if k == 0 else D * hidden
        for sfx in ("", "_reverse")[:D]:
            sd[f"weight_ih_l{k}{sfx}"] = rng.uniform(-1, 1, (4 * hidden, in_k))
            sd[f"weight_hh_l{k}{sfx}"] = rng.uniform(-1, 1, (4 * hidden, hidden))
            if bias:
                sd[f"bias_ih_l{k}{sfx}"] = rng.uniform(-1, 1, 4 * hidden)
                sd[f"bias_hh_l{k}{sfx}"] = rng.uniform(-1, 1, 4 * hidden)
    return sd


def keras_lists(rng, num_layers, bidirectional, bias, input_size=I, hidden=H):
    """Per-layer Keras weight lists: [kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] per direction."""
    D = 2 if bidirectional else 1
    layers = []
    for k in range(num_layers):
        in_k = input_size if k == 0 else D * hidden
        lw = []
        for _ in range(D):
            lw.append(rng.uniform(-1, 1, (in_k, 4 * hidden)))
            lw.append(rng.uniform(-1, 1, (hidden, 4 * hidden)))
            if bias:
                lw.append(rng.uniform(-1, 1, 4 * hidden))
        layers.append(lw)
    return layers


def keras_lstm_numpy(x, kernel, recurrent_kernel, bias=None, go_backwards=False):
    """Keras' LSTM cell by hand: z = x K + h R + b, gates i, f, c, o; returns every step's h, (B, T, H)."""
    Bx, Tx, _ = x.shape
    Hx = recurrent_kernel.shape[0]
    h = np.zeros((Bx, Hx))
    c = np.zeros((Bx, Hx))
    out = np.zeros((Bx, Tx, Hx))
    steps = range(Tx - 1, -1, -1) if go_backwards else range(Tx)
    for n, t in enumerate(steps):
        z = x[:, t] @ kernel + h @ recurrent_kernel
        if bias is not None:
            z = z + bias
        zi, zf, zc, zo = np.split(z, 4, axis=1)
        i, f, o = sigmoid(zi), sigmoid(zf), sigmoid(zo)
        c = f * c + i * np.tanh(zc)
        h = o * np.tanh(c)
        out[:, n] = h  # Keras emits outputs in processing order
    return out


def keras_model_numpy(x, layers, bidirectional):
    """A stack of Keras LSTM / Bidirectional(LSTM, merge_mode='concat') layers, return_sequences=True."""
    for lw in layers:
        per_dir = len(lw) // (2 if bidirectional else 1)
        fwd = keras_lstm_numpy(x, *lw[:per_dir])
        if bidirectional:
            bwd = keras_lstm_numpy(x, *lw[per_dir:], go_backwards=True)
            # Bidirectional reverses the backward layer's sequence output back into time order
            x = np.concatenate([fwd, bwd[:, ::-1]], axis=2)
        else:
            x = fwd
    return x


# -- PyTorch layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_torch_dict_round_trip(rng, config):
    sd = torch_dict(rng, **config)
    layer = lstm_from_torch(sd, dtype=np.float64)
    assert (layer.num_layers, layer.bidirectional, layer.bias) == (config["num_layers"], config["bidirectional"], config["bias"])
    assert (layer.input_size, layer.hidden_size) == (I, H)
    back = lstm_to_torch(layer)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_layer_to_torch_dict_and_back(rng, config):
    layer = make_lstm(rng, I, H, **config)
    copy = lstm_from_torch(lstm_to_torch(layer), dtype=np.float64)
    for k in layer.params:
        np.testing.assert_array_equal(copy.params[k], layer.params[k], err_msg=k)
    x = rng.standard_normal((B, T, I))
    state = random_state(rng, layer, B)
    np.testing.assert_array_equal(copy.forward(x, state=state), layer.forward(x, state=state))


def test_torch_dict_dtype_and_kwargs(rng):
    sd = torch_dict(rng, 2, True, True)
    layer = lstm_from_torch(sd, dtype=np.float32, return_sequences=False, dropout=0.25, seed=3)
    assert layer.dtype == np.float32
    assert all(p.dtype == np.float32 for p in layer.params.values())
    assert (layer.return_sequences, layer.dropout, layer.seed) == (False, 0.25, 3)
    for k, v in sd.items():
        np.testing.assert_array_equal(layer.params[k], v.astype(np.float32))
    # float32 arrays (as torch's default) load too
    layer2 = lstm_from_torch({k: v.astype(np.float32) for k, v in sd.items()}, dtype=np.float64)
    assert layer2.dtype == np.float64


def test_torch_dict_prefix_is_stripped(rng):
    sd = torch_dict(rng, 1, False, True)
    layer = lstm_from_torch({f"encoder.lstm.{k}": v for k, v in sd.items()}, dtype=np.float64)
    for k, v in sd.items():
        np.testing.assert_array_equal(layer.params[k], v)


def test_to_torch_returns_copies(rng):
    layer = make_lstm(rng, I, H)
    sd = lstm_to_torch(layer)
    sd["weight_ih_l0"][...] = 0.0
    assert np.any(layer.params["weight_ih_l0"])
    gd = lstm_to_torch(layer, grads=True)
    assert set(gd) == set(layer.params)
    gd["weight_ih_l0"][...] = 1.0
    assert not np.any(layer.grads["weight_ih_l0"])


def test_to_torch_grads(rng):
    layer = make_lstm(rng, I, H, bidirectional=True)
    x = rng.standard_normal((B, T, I))
    y = layer.forward(x)
    layer.backward(rng.standard_normal(y.shape))
    gd = lstm_to_torch(layer, grads=True)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(gd[k], g)
    # both bias gradients are the gradient of b_ih + b_hh, as in PyTorch
    np.testing.assert_array_equal(gd["bias_ih_l0"], gd["bias_hh_l0"])


# -- Keras layout --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_keras_lists_round_trip(rng, config):
    layers = keras_lists(rng, **config)
    weights = layers if config["num_layers"] > 1 else layers[0]
    layer = lstm_from_keras(weights, dtype=np.float64, bidirectional=config["bidirectional"])
    assert (layer.num_layers, layer.bidirectional, layer.bias) == (config["num_layers"], config["bidirectional"], config["bias"])
    back = lstm_to_keras(layer)
    assert len(back) == len(layers)
    for lw_back, lw in zip(back, layers, strict=True):
        assert len(lw_back) == len(lw)
        for a, b in zip(lw_back, lw, strict=True):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_layer_to_keras_and_back(rng, config):
    layer = make_lstm(rng, I, H, **config)
    copy = lstm_from_keras(lstm_to_keras(layer), dtype=np.float64, bidirectional=config["bidirectional"])
    x = rng.standard_normal((B, T, I))
    state = random_state(rng, layer, B)
    assert_close(copy.forward(x, state=state), layer.forward(x, state=state), 1e-13, "y")


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_keras_numpy_model_matches(rng, config):
    layers = keras_lists(rng, **config)
    x = rng.standard_normal((B, T, I))
    want = keras_model_numpy(x, layers, config["bidirectional"])
    layer = lstm_from_keras(layers, dtype=np.float64, bidirectional=config["bidirectional"])
    assert_close(layer.forward(x), want, 1e-12, "y")
    layer32 = lstm_from_keras([[w.astype(np.float32) for w in lw] for lw in layers], bidirectional=config["bidirectional"])
    assert layer32.dtype == np.float32
    assert_close(layer32.forward(x.astype(np.float32)), want, 1e-5, "y float32")


def test_keras_single_layer_list_or_tuple(rng):
    lw = keras_lists(rng, 1, False, True)[0]
    a = lstm_from_keras(lw, dtype=np.float64)
    b = lstm_from_keras(tuple(lw), dtype=np.float64)
    c = lstm_from_keras([lw], dtype=np.float64)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.params[k], c.params[k])


def test_keras_kwargs(rng):
    layer = lstm_from_keras(keras_lists(rng, 2, False, True), return_sequences=False, seed=1)
    assert layer.num_layers == 2 and not layer.return_sequences and layer.seed == 1


# -- bad input -----------------------------------------------------------------------------------


def test_from_torch_empty():
    with pytest.raises(ValueError, match="state_dict"):
        lstm_from_torch({})


@pytest.mark.parametrize("bad", [[np.zeros((8, 2))], "weights", None])
def test_from_torch_not_a_mapping(bad):
    with pytest.raises(TypeError, match="state_dict"):
        lstm_from_torch(bad)


def test_from_torch_proj_size(rng):
    sd = torch_dict(rng, 1, False, True)
    sd["weight_hr_l0"] = rng.standard_normal((1, H))
    with pytest.raises(ValueError, match="proj_size"):
        lstm_from_torch(sd)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda sd: sd.pop("bias_hh_l0"), id="bias_ih-without-bias_hh"),
        pytest.param(lambda sd: sd.pop("weight_ih_l1"), id="missing-layer-1-input-weight"),
        pytest.param(lambda sd: sd.pop("weight_hh_l1_reverse"), id="missing-reverse-weight"),
        pytest.param(lambda sd: sd.pop("bias_ih_l1_reverse"), id="missing-reverse-bias"),
        pytest.param(lambda sd: sd.update(weight_ih_l3=sd["weight_ih_l1"]), id="gap-in-layers"),
    ],
)
def test_from_torch_inconsistent_keys(rng, edit):
    sd = torch_dict(rng, 2, True, True)
    edit(sd)
    with pytest.raises(ValueError, match="state_dict"):
        lstm_from_torch(sd)


@pytest.mark.parametrize("key", ["weight_ih_l0", "weight_hh_l0"])
def test_from_torch_missing_layer0(rng, key):
    sd = torch_dict(rng, 1, False, False)
    del sd[key]
    with pytest.raises(ValueError, match="weight_ih_l0|weight_hh_l0"):
        lstm_from_torch(sd)


def test_from_torch_unexpected_key(rng):
    sd = torch_dict(rng, 1, False, True)
    sd["running_mean"] = np.zeros(3)
    with pytest.raises(ValueError, match="running_mean"):
        lstm_from_torch(sd)


def test_from_torch_duplicate_key_under_two_prefixes(rng):
    sd = torch_dict(rng, 1, False, False)
    sd["other.weight_ih_l0"] = sd["weight_ih_l0"]
    with pytest.raises(ValueError, match="weight_ih_l0"):
        lstm_from_torch(sd)


@pytest.mark.parametrize(
    "key, shape",
    [
        ("weight_hh_l0", (4 * H + 1, H)),  # not (4H, H)
        ("weight_hh_l0", (4 * H,)),
        ("weight_ih_l0", (4 * H + 4, I)),  # 4H' != 4H of weight_hh_l0
        ("weight_ih_l0", (4 * H * I,)),
        ("weight_ih_l1", (4 * H, I)),  # layer 1 reads 2H features, not I
        ("weight_hh_l1", (4 * H + 4, H + 1)),  # another hidden size in layer 1
        ("bias_ih_l0", (4 * H + 1,)),
        ("bias_hh_l1_reverse", (4 * H, 1)),
    ],
)
def test_from_torch_wrong_shapes(rng, key, shape):
    sd = torch_dict(rng, 2, True, True)
    sd[key] = rng.standard_normal(shape)
    with pytest.raises(ValueError, match=key):
        lstm_from_torch(sd)


def test_from_torch_integer_arrays(rng):
    sd = torch_dict(rng, 1, False, False)
    sd["weight_hh_l0"] = np.ones((4 * H, H), np.int64)
    with pytest.raises(TypeError, match="weight_hh_l0"):
        lstm_from_torch(sd)


def test_from_torch_bad_dtype(rng):
    with pytest.raises(TypeError, match="dtype"):
        lstm_from_torch(torch_dict(rng, 1, False, False), dtype=np.int32)


@pytest.mark.parametrize("bad", [[], (), "weights", None, np.zeros((3, 8))])
def test_from_keras_not_a_list(bad):
    with pytest.raises(TypeError, match="weights"):
        lstm_from_keras(bad)


@pytest.mark.parametrize(
    "n_arrays, bidirectional",
    [(1, False), (4, False), (5, False), (2, True), (3, True), (5, True), (7, True)],
)
def test_from_keras_wrong_list_length(rng, n_arrays, bidirectional):
    pool = keras_lists(rng, 1, True, True)[0] + keras_lists(rng, 1, True, True)[0]
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        lstm_from_keras(pool[:n_arrays], bidirectional=bidirectional)


def test_from_keras_wrong_list_length_in_upper_layer(rng):
    layers = keras_lists(rng, 2, False, True)
    layers[1] = layers[1][:1]
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        lstm_from_keras(layers)


def test_from_keras_mixed_bias(rng):
    layers = keras_lists(rng, 2, False, True)
    layers[1] = layers[1][:2]
    with pytest.raises(ValueError, match="bias"):
        lstm_from_keras(layers)


@pytest.mark.parametrize(
    "index, shape, what",
    [
        (0, (I, 3 * H), "kernel"),
        (0, (I,), "kernel"),
        (1, (H, 3 * H), "recurrent_kernel"),
        (1, (4 * H, H), "recurrent_kernel"),
        (2, (3 * H,), "bias"),
        (2, (4 * H, 1), "bias"),
    ],
)
def test_from_keras_wrong_shapes(rng, index, shape, what):
    lw = keras_lists(rng, 1, False, True)[0]
    lw[index] = rng.standard_normal(shape)
    with pytest.raises(ValueError, match=what):
        lstm_from_keras(lw)


def test_from_keras_wrong_input_size_in_upper_layer(rng):
    layers = keras_lists(rng, 2, True, True)
    layers[1][0] = rng.standard_normal((H, 4 * H))  # layer 1 reads 2H features
    with pytest.raises(ValueError, match=r"weights\[1\] kernel"):
        lstm_from_keras(layers, bidirectional=True)


def test_from_keras_hidden_size_changes_between_layers(rng):
    layers = keras_lists(rng, 2, False, True)
    layers[1] = keras_lists(rng, 1, False, True, input_size=H, hidden=H + 1)[0]
    with pytest.raises(ValueError, match=r"weights\[1\] recurrent_kernel"):
        lstm_from_keras(layers)


def test_from_keras_integer_arrays(rng):
    lw = keras_lists(rng, 1, False, True)[0]
    lw[0] = np.ones((I, 4 * H), np.int32)
    with pytest.raises(TypeError, match="kernel"):
        lstm_from_keras(lw)


@pytest.mark.parametrize("fn", [lstm_to_torch, lstm_to_keras])
def test_export_needs_an_lstm(fn):
    with pytest.raises(TypeError, match="lstm"):
        fn({"weight_ih_l0": np.zeros((4, 1))})
    with pytest.raises(TypeError, match="lstm"):
        fn(numlstm.Layer())
