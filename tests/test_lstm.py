"""numlstm.LSTM against the numpy twin in tests/naive.py, and the layer contract."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, make_lstm, random_state, randomize_params
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import lstm_backward_naive, lstm_forward_naive

import numlstm

# every test here runs on both CPU schedules (see conftest.cpu_path)
pytestmark = pytest.mark.usefixtures("cpu_path")

B, T, I, H = 3, 5, 3, 2

CONFIGS = {
    "1layer": dict(num_layers=1),
    "2layers": dict(num_layers=2),
    "3layers": dict(num_layers=3),
    "bidir": dict(bidirectional=True),
    "bidir-2layers": dict(num_layers=2, bidirectional=True),
    "nobias": dict(bias=False),
    "nobias-bidir-2layers": dict(num_layers=2, bidirectional=True, bias=False),
    "last": dict(return_sequences=False),
    "last-bidir-2layers": dict(num_layers=2, bidirectional=True, return_sequences=False),
    "forget_bias": dict(forget_bias=1.0),
}

LENGTHS = {
    "no-lengths": None,
    "all-equal": [T, T, T],
    "mixed": [T, 2, 4],
    "all-one": [1, 1, 1],
    "mixed-with-one": [1, T, 3],
}


def run_layer(layer, x, state=None, lengths=None, dy=None, dstate=None):
    """forward + backward from zeroed grads; returns copies of everything."""
    layer.zero_grad()
    y = layer.forward(x, state=state, lengths=lengths)
    h_n, c_n = (s.copy() for s in layer.state)
    dx = layer.backward(dy, dstate)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    dh0, dc0 = (s.copy() for s in layer.dstate)
    return y.copy(), (h_n, c_n), dx.copy(), grads, (dh0, dc0)


def run_naive(layer, x, state=None, lengths=None, dy=None, dstate=None):
    args = (x, layer.params, layer.num_layers, layer.bidirectional)
    kw = dict(state=state, lengths=lengths, return_sequences=layer.return_sequences)
    y, (h_n, c_n) = lstm_forward_naive(*args, **kw)
    dx, grads, (dh0, dc0) = lstm_backward_naive(*args, dy, dstate=dstate, **kw)
    return y, (h_n, c_n), dx, grads, (dh0, dc0)


def random_problem(rng, layer, batch=B, time=T, with_state=True, with_dstate=True):
    """x, state, dy, dstate: random, in the layer's dtype."""
    dt = layer.dtype
    x = rng.standard_normal((batch, time, layer.input_size)).astype(dt)
    state = random_state(rng, layer, batch) if with_state else None
    dy = rng.standard_normal(layer.output_shape(batch, time)).astype(dt)
    dstate = random_state(rng, layer, batch) if with_dstate else None
    return x, state, dy, dstate


def compare(got, want, rtol):
    y, (h_n, c_n), dx, grads, (dh0, dc0) = got
    y_w, (h_n_w, c_n_w), dx_w, grads_w, (dh0_w, dc0_w) = want
    assert_close(y, y_w, rtol, "y")
    assert_close(h_n, h_n_w, rtol, "h_n")
    assert_close(c_n, c_n_w, rtol, "c_n")
    assert_close(dx, dx_w, rtol, "dx")
    assert_close(dh0, dh0_w, rtol, "dh0")
    assert_close(dc0, dc0_w, rtol, "dc0")
    assert set(grads) == set(grads_w)
    for k in grads:
        assert_close(grads[k], grads_w[k], rtol, k)


# -- the reference itself ------------------------------------------------------------------------


def test_naive_backward_matches_finite_differences(rng):
    """The twin's BPTT agrees with central differences of the twin's forward."""
    layer = make_lstm(rng, 2, 2, num_layers=2, bidirectional=True)
    params = {k: v.copy() for k, v in layer.params.items()}
    x, state, dy, dstate = random_problem(rng, layer, batch=2, time=3)
    lengths = [3, 2]

    def loss():
        y, (h_n, c_n) = lstm_forward_naive(x, params, 2, True, state=state, lengths=lengths)
        return np.sum(y * dy) + np.sum(h_n * dstate[0]) + np.sum(c_n * dstate[1])

    dx, grads, (dh0, dc0) = lstm_backward_naive(x, params, 2, True, dy, dstate=dstate, state=state, lengths=lengths)
    analytic = {"x": dx, "h0": dh0, "c0": dc0, **grads}
    tensors = {"x": x, "h0": state[0], "c0": state[1], **params}
    eps = 1e-6
    for name, arr in tensors.items():
        flat = arr.reshape(-1)
        num = np.empty(flat.size)
        for n in range(flat.size):
            orig = flat[n]
            flat[n] = orig + eps
            lp = loss()
            flat[n] = orig - eps
            lm = loss()
            flat[n] = orig
            num[n] = (lp - lm) / (2 * eps)
        assert_close(analytic[name].reshape(-1), num, 1e-6, name)


# -- numlstm against the twin --------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("lengths", list(LENGTHS.values()), ids=list(LENGTHS))
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_matches_naive_float64(rng, config, lengths, with_state):
    layer = make_lstm(rng, I, H, **config)
    x, state, dy, dstate = random_problem(rng, layer, with_state=with_state)
    got = run_layer(layer, x, state, lengths, dy, dstate)
    want = run_naive(layer, x, state, lengths, dy, dstate)
    compare(got, want, 1e-10)


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_matches_naive_without_dstate(rng, config):
    """backward(dy) with dstate=None means a zero gradient for the final state."""
    layer = make_lstm(rng, I, H, **config)
    x, state, dy, _ = random_problem(rng, layer, with_dstate=False)
    lengths = [T, 2, 4]
    compare(run_layer(layer, x, state, lengths, dy), run_naive(layer, x, state, lengths, dy), 1e-10)


@pytest.mark.parametrize("lengths", [None, [T, 2, 4], [1, 1, 1]], ids=["no-lengths", "mixed", "all-one"])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_matches_naive_float32(rng, config, lengths):
    """float32 (fast activations) against the float64 twin run on the same float32 numbers."""
    layer = make_lstm(rng, I, H, dtype=np.float32, **config)
    x, state, dy, dstate = random_problem(rng, layer)
    got = run_layer(layer, x, state, lengths, dy, dstate)
    for arr in (got[0], got[1][0], got[2]):
        assert arr.dtype == np.float32
    assert all(g.dtype == np.float32 for g in got[3].values())
    assert all(s.dtype == np.float32 for s in got[4])
    want = run_naive(layer, x, state, lengths, dy, dstate)
    compare(got, want, 1e-5)


def test_lengths_semantics(rng):
    """Direct checks of the padding rules, independent of the twin's bookkeeping."""
    layer = make_lstm(rng, I, H, bidirectional=True)
    x = rng.standard_normal((2, T, I))
    y = layer.forward(x, lengths=[T, 3])
    h_n, c_n = (s.copy() for s in layer.state)
    # padding gives zero outputs in both directions
    assert np.all(y[1, 3:] == 0.0)
    assert np.all(y[1, :3] != 0.0)
    # a padded sequence behaves exactly like the unpadded, shorter sequence
    y_short = layer.forward(x[1:2, :3])
    assert_close(y[1:2, :3], y_short, 1e-12, "y")
    assert_close(h_n[:, 1:2], layer.state[0], 1e-12, "h_n")
    assert_close(c_n[:, 1:2], layer.state[1], 1e-12, "c_n")
    # whatever sits in the padding does not matter
    x2 = x.copy()
    x2[1, 3:] = 1e3
    y2 = layer.forward(x2, lengths=[T, 3])
    np.testing.assert_array_equal(y2, y)


def test_lengths_as_numpy_array_and_float_integers(rng):
    layer = make_lstm(rng, I, H)
    x = rng.standard_normal((B, T, I))
    y_list = layer.forward(x, lengths=[T, 2, 4])
    y_arr = layer.forward(x, lengths=np.array([T, 2, 4], dtype=np.int32))
    y_flt = layer.forward(x, lengths=np.array([T, 2.0, 4.0]))
    np.testing.assert_array_equal(y_arr, y_list)
    np.testing.assert_array_equal(y_flt, y_list)


# -- the layer contract --------------------------------------------------------------------------


def test_params_have_pytorch_names_and_shapes():
    layer = numlstm.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    want = {}
    for k, in_k in ((0, 3), (1, 8)):
        for sfx in ("", "_reverse"):
            want[f"weight_ih_l{k}{sfx}"] = (16, in_k)
            want[f"weight_hh_l{k}{sfx}"] = (16, 4)
            want[f"bias_ih_l{k}{sfx}"] = (16,)
            want[f"bias_hh_l{k}{sfx}"] = (16,)
    assert {k: v.shape for k, v in layer.params.items()} == want
    nobias = numlstm.LSTM(3, 4, bias=False, seed=0)
    assert set(nobias.params) == {"weight_ih_l0", "weight_hh_l0"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_params_and_grads_same_keys_shapes_dtypes(config, dtype):
    layer = numlstm.LSTM(I, H, dtype=dtype, seed=1, **config)
    assert list(layer.params) == list(layer.grads)
    for k in layer.params:
        assert layer.params[k].shape == layer.grads[k].shape, k
        assert layer.params[k].dtype == layer.grads[k].dtype == np.dtype(dtype), k
        assert layer.grads[k] is not layer.params[k]
        assert not np.any(layer.grads[k])
    assert layer.num_parameters() == sum(p.size for p in layer.params.values())


def test_backward_accumulates(rng, lstm64):
    """Two forward/backward passes on the same batch give twice the gradients."""
    x, state, dy, dstate = random_problem(rng, lstm64)
    lstm64.zero_grad()
    lstm64.forward(x, state=state, lengths=[T, 2, 4])
    dx1 = lstm64.backward(dy, dstate).copy()
    g1 = {k: g.copy() for k, g in lstm64.grads.items()}
    ds1 = tuple(s.copy() for s in lstm64.dstate)
    assert all(np.any(g) for g in g1.values())
    lstm64.forward(x, state=state, lengths=[T, 2, 4])
    dx2 = lstm64.backward(dy, dstate)
    for k, g in lstm64.grads.items():
        assert_close(g, 2 * g1[k], 1e-13, k)
    # dx and dstate are returned / overwritten, not accumulated
    assert_close(dx2, dx1, 1e-13, "dx")
    for s, s1 in zip(lstm64.dstate, ds1, strict=True):
        assert_close(s, s1, 1e-13, "dstate")


def test_second_backward_is_never_silently_wrong(rng, lstm64):
    """A second backward after one forward either raises RuntimeError or adds the same gradient again."""
    x, state, dy, dstate = random_problem(rng, lstm64)
    lstm64.zero_grad()
    lstm64.forward(x, state=state)
    dx1 = lstm64.backward(dy, dstate).copy()
    g1 = {k: g.copy() for k, g in lstm64.grads.items()}
    try:
        dx2 = lstm64.backward(dy, dstate)
    except RuntimeError as exc:
        assert "forward" in str(exc)
        for k, g in lstm64.grads.items():
            np.testing.assert_array_equal(g, g1[k], err_msg=f"{k} changed by a refused backward")
    else:
        assert_close(dx2, dx1, 1e-13, "dx")
        for k, g in lstm64.grads.items():
            assert_close(g, 2 * g1[k], 1e-13, k)


def test_backward_accumulates_across_batches(rng, lstm64):
    """grads after backward on two batches = grads of the two batches added."""
    p1 = random_problem(rng, lstm64)
    p2 = random_problem(rng, lstm64, batch=2)
    singles = []
    for x, state, dy, dstate in (p1, p2):
        singles.append(run_layer(lstm64, x, state, None, dy, dstate)[3])
    lstm64.zero_grad()
    for x, state, dy, dstate in (p1, p2):
        lstm64.forward(x, state=state)
        lstm64.backward(dy, dstate)
    for k, g in lstm64.grads.items():
        assert_close(g, singles[0][k] + singles[1][k], 1e-12, k)


def test_zero_grad(rng, lstm64):
    x, state, dy, dstate = random_problem(rng, lstm64)
    lstm64.forward(x, state=state)
    lstm64.backward(dy, dstate)
    grads_before = {k: id(g) for k, g in lstm64.grads.items()}
    lstm64.zero_grad()
    for k, g in lstm64.grads.items():
        assert id(g) == grads_before[k], "zero_grad must clear in place"
        assert not np.any(g), k


def test_inputs_are_not_modified(rng):
    layer = make_lstm(rng, I, H, num_layers=2, bidirectional=True, return_sequences=False)
    x, state, dy, dstate = random_problem(rng, layer)
    copies = [a.copy() for a in (x, state[0], state[1], dy, dstate[0], dstate[1])]
    layer.forward(x, state=state, lengths=[T, 2, 4])
    layer.backward(dy, dstate)
    for a, c in zip((x, state[0], state[1], dy, dstate[0], dstate[1]), copies, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("batch, time", [(3, 4), (1, 4), (3, 1), (1, 1)], ids=["B3T4", "B1T4", "B3T1", "B1T1"])
@pytest.mark.parametrize(
    "config",
    [dict(), dict(num_layers=2), dict(bidirectional=True), dict(return_sequences=False)],
    ids=["1layer", "2layers", "bidir", "last"],
)
def test_returned_arrays_belong_to_the_caller(rng, config, batch, time):
    """Nothing forward/backward returns is overwritten by a later call (no views of reused work buffers)."""
    layer = make_lstm(rng, I, H, **config)
    names = ("y", "h_n", "c_n", "dx", "dh0", "dc0")

    def step(x, state, dy, dstate):
        y = layer.forward(x, state=state)
        h_n, c_n = layer.state
        dx = layer.backward(dy, dstate)
        return (y, h_n, c_n, dx, *layer.dstate)

    first = step(*random_problem(rng, layer, batch=batch, time=time))
    kept = [a.copy() for a in first]
    second = step(*random_problem(rng, layer, batch=batch, time=time))
    for name, a, a_kept, b in zip(names, first, kept, second, strict=True):
        assert not np.shares_memory(a, b), f"{name} of two calls share memory"
        np.testing.assert_array_equal(a, a_kept, err_msg=f"{name} of the first call was overwritten by the second")


def test_call_is_forward(rng, lstm64):
    x = rng.standard_normal((B, T, I))
    np.testing.assert_array_equal(lstm64(x), lstm64.forward(x))


@pytest.mark.parametrize("config", [dict(), dict(return_sequences=False, bidirectional=True)], ids=["seq", "last-bidir"])
def test_output_shape_and_state_shapes(config):
    layer = numlstm.LSTM(I, H, num_layers=2, seed=0, **config)
    x = np.zeros((B, T, I), np.float32)
    y = layer.forward(x)
    assert y.shape == layer.output_shape(B, T)
    D = layer.num_directions
    assert y.shape == ((B, T, D * H) if layer.return_sequences else (B, D * H))
    assert all(s.shape == (2 * D, B, H) for s in layer.state)
    layer.backward(np.ones(y.shape, np.float32))
    assert all(s.shape == (2 * D, B, H) for s in layer.dstate)


def test_seed_determinism():
    a = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=5)
    b = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=5)
    c = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=6)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)
    assert all(not np.array_equal(a.params[k], c.params[k]) for k in a.params)
    # the same seed in float64 draws the same numbers
    d = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=5, dtype=np.float64)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], d.params[k].astype(np.float32))


def test_default_init_is_pytorch_like():
    layer = numlstm.LSTM(4, 8, seed=0, dtype=np.float64)
    bound = 1 / np.sqrt(8)
    for k, p in layer.params.items():
        assert np.all(np.abs(p) <= bound), k
        assert np.std(p) > 0.3 * bound, k


def test_forget_bias():
    base = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=3, dtype=np.float64)
    fb = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=3, forget_bias=1.5, dtype=np.float64)
    for k in base.params:
        diff = fb.params[k] - base.params[k]
        if k.startswith("bias_ih"):
            np.testing.assert_allclose(diff[H : 2 * H], 1.5, rtol=1e-14)
            np.testing.assert_array_equal(np.delete(diff, np.s_[H : 2 * H]), 0.0)
        else:
            np.testing.assert_array_equal(diff, 0.0, err_msg=k)


# -- training / evaluation mode and dropout ------------------------------------------------------


def test_eval_keeps_no_cache(rng, lstm64):
    x, state, dy, dstate = random_problem(rng, lstm64)
    assert lstm64.eval() is lstm64
    y = lstm64.forward(x, state=state)
    assert lstm64.state is not None
    with pytest.raises(RuntimeError, match="backward"):
        lstm64.backward(dy, dstate)
    # a training forward followed by an eval forward leaves nothing to differentiate either
    lstm64.train()
    lstm64.forward(x, state=state)
    lstm64.eval()
    y2 = lstm64.forward(x, state=state)
    np.testing.assert_array_equal(y2, y)
    with pytest.raises(RuntimeError, match="backward"):
        lstm64.backward(dy, dstate)


def test_backward_before_forward_raises(rng, lstm64):
    with pytest.raises(RuntimeError, match="forward"):
        lstm64.backward(np.zeros((B, T, 4)))


def test_dropout_single_layer_has_no_effect(rng):
    """Dropout acts between stacked layers only; one layer has none."""
    layer = make_lstm(rng, I, H, dropout=0.5, bidirectional=True)
    x = rng.standard_normal((B, T, I))
    y_train = layer.forward(x)
    y_eval = layer.eval().forward(x)
    np.testing.assert_array_equal(y_train, y_eval)


def test_dropout_only_in_training(rng):
    layer = make_lstm(rng, I, H, num_layers=2, dropout=0.5)
    x = rng.standard_normal((B, T, I))
    layer.eval()
    y_eval = layer.forward(x)
    np.testing.assert_array_equal(layer.forward(x), y_eval)
    y_naive, _ = lstm_forward_naive(x, layer.params, 2, False)
    assert_close(y_eval, y_naive, 1e-10, "eval output")
    layer.train()
    y1 = layer.forward(x)
    y2 = layer.forward(x)
    assert not np.allclose(y1, y_eval)
    assert not np.allclose(y1, y2)


def test_dropout_seeded():
    x = np.random.default_rng(0).standard_normal((B, T, I))
    a = numlstm.LSTM(I, H, num_layers=3, dropout=0.3, seed=9, dtype=np.float64)
    b = numlstm.LSTM(I, H, num_layers=3, dropout=0.3, seed=9, dtype=np.float64)
    for _ in range(2):
        np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_dropout_backward_matches_finite_differences(rng):
    """With the mask held fixed (layer._rng re-seeded before every forward), backward is the exact gradient."""
    layer = make_lstm(rng, 2, 2, num_layers=2, bidirectional=True, dropout=0.4)
    x = rng.standard_normal((2, 3, 2))
    state = random_state(rng, layer, 2)
    dy = rng.standard_normal(layer.output_shape(2, 3))
    dstate = random_state(rng, layer, 2)
    lengths = [3, 2]

    def forward():
        layer._rng = np.random.default_rng(1234)
        return layer.forward(x, state=state, lengths=lengths)

    def loss():
        y = forward()
        return np.sum(y * dy) + np.sum(layer.state[0] * dstate[0]) + np.sum(layer.state[1] * dstate[1])

    y_drop = forward()
    assert not np.allclose(y_drop, lstm_forward_naive(x, layer.params, 2, True, state=state, lengths=lengths)[0])
    layer.zero_grad()
    analytic = {"x": layer.backward(dy, dstate).copy(), "h0": layer.dstate[0].copy(), "c0": layer.dstate[1].copy()}
    analytic.update({k: g.copy() for k, g in layer.grads.items()})
    tensors = {"x": x, "h0": state[0], "c0": state[1], **layer.params}
    eps = 1e-6
    for name, arr in tensors.items():
        flat = arr.reshape(-1)
        num = np.empty(flat.size)
        for n in range(flat.size):
            orig = flat[n]
            flat[n] = orig + eps
            lp = loss()
            flat[n] = orig - eps
            lm = loss()
            flat[n] = orig
            num[n] = (lp - lm) / (2 * eps)
        assert_close(analytic[name].reshape(-1), num, 1e-6, name)


# -- layouts and special values ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_input(rng, dtype):
    layer = make_lstm(rng, I, H, num_layers=2, bidirectional=True, dtype=dtype)
    big = rng.standard_normal((B, 2 * T, I)).astype(dtype)
    strided = big[:, ::2]
    assert not strided.flags.c_contiguous
    fortran = np.asfortranarray(strided)
    transposed = np.ascontiguousarray(strided.transpose(2, 1, 0)).transpose(2, 1, 0)
    state = random_state(rng, layer, B)
    state_nc = tuple(np.asfortranarray(s) for s in state)
    dy_big = rng.standard_normal((B, 2 * T, 2 * H)).astype(dtype)
    dy = dy_big[:, ::2]
    contiguous = np.ascontiguousarray(strided)
    y_ref, _, dx_ref, grads_ref, ds_ref = run_layer(layer, contiguous, state, [T, 2, 3], np.ascontiguousarray(dy))
    for arr in (strided, fortran, transposed):
        y, _, dx, grads, ds = run_layer(layer, arr, state_nc, [T, 2, 3], dy)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, dx_ref)
        for k in grads:
            np.testing.assert_array_equal(grads[k], grads_ref[k])
        for s, s_ref in zip(ds, ds_ref, strict=True):
            np.testing.assert_array_equal(s, s_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_inputs_give_finite_outputs(rng, dtype):
    layer = make_lstm(rng, I, H, num_layers=2, bidirectional=True, dtype=dtype)
    signs = rng.choice([-1.0, 1.0], (B, T, I))
    for x in (np.full((B, T, I), 1e30), np.full((B, T, I), -1e30), 1e30 * signs):
        x = x.astype(dtype)
        y = layer.forward(x)
        assert np.all(np.isfinite(y))
        assert np.all(np.abs(y) <= 1.0)
        assert all(np.all(np.isfinite(s)) for s in layer.state)
        dx = layer.backward(rng.standard_normal(y.shape).astype(dtype))
        assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_input_gives_nan_output(rng, dtype):
    layer = make_lstm(rng, I, H, dtype=dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    x[0, 2, 1] = np.nan
    y = layer.forward(x)
    # from the NaN step on, sequence 0 is NaN; before it, and in the other sequences, finite
    assert np.all(np.isnan(y[0, 2:]))
    assert np.all(np.isfinite(y[0, :2]))
    assert np.all(np.isfinite(y[1:]))
    assert np.all(np.isnan(layer.state[0][:, 0]))
    assert np.all(np.isnan(layer.state[1][:, 0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_state_gives_nan_output(rng, dtype):
    layer = make_lstm(rng, I, H, dtype=dtype, return_sequences=False)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = random_state(rng, layer, B)
    c0[0, 1, 0] = np.nan
    y = layer.forward(x, state=(h0, c0))
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()


# -- properties over shapes ----------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 4),
    time=st.integers(1, 5),
    input_size=st.integers(1, 4),
    hidden=st.integers(1, 4),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    return_sequences=st.booleans(),
    use_lengths=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_shape_matches_naive(batch, time, input_size, hidden, num_layers, bidirectional, return_sequences, use_lengths, seed):
    rng = np.random.default_rng(seed)
    layer = make_lstm(
        rng, input_size, hidden, num_layers=num_layers, bidirectional=bidirectional, return_sequences=return_sequences
    )
    x, state, dy, dstate = random_problem(rng, layer, batch=batch, time=time)
    lengths = rng.integers(1, time + 1, batch) if use_lengths else None
    got = run_layer(layer, x, state, lengths, dy, dstate)
    D = 2 if bidirectional else 1
    y, (h_n, c_n), dx, grads, (dh0, dc0) = got
    assert y.shape == ((batch, time, D * hidden) if return_sequences else (batch, D * hidden))
    for s in (h_n, c_n, dh0, dc0):
        assert s.shape == (num_layers * D, batch, hidden)
    assert dx.shape == x.shape
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in layer.params.items()}
    compare(got, run_naive(layer, x, state, lengths, dy, dstate), 1e-10)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 4),
    time=st.integers(1, 5),
    input_size=st.integers(1, 4),
    hidden=st.integers(1, 4),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
)
def test_any_shape_float32_output_shapes(batch, time, input_size, hidden, num_layers, bidirectional):
    layer = numlstm.LSTM(input_size, hidden, num_layers=num_layers, bidirectional=bidirectional, seed=0)
    x = np.random.default_rng(0).standard_normal((batch, time, input_size)).astype(np.float32)
    y = layer.forward(x)
    D = 2 if bidirectional else 1
    assert y.shape == (batch, time, D * hidden) and y.dtype == np.float32
    assert all(s.shape == (num_layers * D, batch, hidden) and s.dtype == np.float32 for s in layer.state)
    y_naive, (h_naive, c_naive) = lstm_forward_naive(x, layer.params, num_layers, bidirectional)
    assert_close(y, y_naive, 1e-5, "y")
    assert_close(layer.state[1], c_naive, 1e-5, "c_n")


def test_randomize_params_helper_gives_nonzero_biases(rng):
    layer = randomize_params(numlstm.LSTM(I, H, seed=0), rng)
    assert all(np.all(p != 0) for p in layer.params.values())
