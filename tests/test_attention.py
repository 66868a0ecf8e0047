"""AttentionLSTM, TemporalAttention and attention_penalty against the numpy twins
in tests/naive_attention.py, finite differences, PyTorch (optional), and the
layer contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from naive_attention import (
    attention_lstm_backward_naive,
    attention_lstm_forward_naive,
    temporal_attention_backward_naive,
    temporal_attention_forward_naive,
)

import numlstm
from numlstm.layers.base import Layer
from numlstm.layers.registry import layer_from_config, layer_to_config

B, T, L, D, H, A, I = 2, 3, 4, 3, 2, 3, 2
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def randomize(layer, rng, scale=0.5):
    """Random non-zero parameters (biases included), in place."""
    for p in layer.params.values():
        p[...] = scale * rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    return layer


def make_attn(rng, dtype=np.float64, **kw):
    kw.setdefault("input_size", 0)
    return randomize(numlstm.AttentionLSTM(D, H, A, dtype=dtype, seed=int(rng.integers(2**31)), **kw), rng)


def problem(rng, layer, seq, batch=B, steps=T, dtype=None):
    """a, x, state, dy, dstate, dattention: random, in the layer's dtype."""
    dt = dtype or layer.dtype
    a = rng.standard_normal((batch, steps, L, D) if seq else (batch, L, D)).astype(dt)
    x = rng.standard_normal((batch, steps, layer.input_size)).astype(dt) if layer.input_size else None
    state = tuple(rng.standard_normal((1, batch, H)).astype(dt) for _ in range(2))
    dy = rng.standard_normal(layer.output_shape(batch, steps)).astype(dt)
    dstate = tuple(rng.standard_normal((1, batch, H)).astype(dt) for _ in range(2))
    dattn = rng.standard_normal((batch, steps, L)).astype(dt)
    return a, x, state, dy, dstate, dattn


def run_layer(layer, a, x, state, dy, dstate, dattn, steps=T):
    layer.zero_grad()
    y = layer.forward(a, x=x, steps=steps, state=state).copy()
    alpha = layer.attention.copy()
    st = tuple(s.copy() for s in layer.state)
    da = layer.backward(dy, dstate, dattention=dattn).copy()
    dx = None if layer.dx is None else layer.dx.copy()
    grads = {k: g.copy() for k, g in layer.grads.items()}
    return y, alpha, st, da, dx, grads, tuple(s.copy() for s in layer.dstate)


def run_naive(layer, a, x, state, dy, dstate, dattn, steps=T):
    rs = layer.return_sequences
    y, st, alpha, _ = attention_lstm_forward_naive(layer.params, a, steps, x, state, rs)
    da, dx, grads, ds = attention_lstm_backward_naive(layer.params, a, steps, dy, x, state, dstate, dattn, rs)
    return y, alpha, st, da, dx, grads, ds


def compare(got, want, rtol):
    names = ("y", "attention", "state", "da", "dx", "grads", "dstate")
    for name, g, w in zip(names, got, want, strict=True):
        if name == "grads":
            assert set(g) == set(w)
            for k in g:
                assert_close(g[k], w[k], rtol, k)
        elif name in ("state", "dstate"):
            for gs, ws, n in zip(g, w, ("h", "c"), strict=True):
                assert_close(gs, ws, rtol, f"{name}.{n}")
        elif w is None:
            assert g is None, name
        else:
            assert_close(g, w, rtol, name)


class Probe(Layer):
    """Wraps an AttentionLSTM for numlstm.gradcheck: binds x and steps (gradcheck's
    own first argument is named x), and outputs [y, attention] on the last axis so
    that a random gradient of the attention weights (``dattention``) is checked
    too. Shares the wrapped layer's params and grads."""

    recurrent = True

    def __init__(self, layer, x=None, steps=None, with_attention=False):
        super().__init__()
        self.layer, self.x, self.steps, self.with_attention = layer, x, steps, with_attention
        self.params, self.grads, self.dtype = layer.params, layer.grads, layer.dtype

    def train(self, mode=True):
        self.layer.train(mode)
        return super().train(mode)

    def forward(self, a, state=None):
        y = self.layer.forward(a, x=self.x, steps=self.steps, state=state)
        self.state = self.layer.state
        if not self.with_attention:
            return y
        alpha = self.layer.attention
        if y.ndim == 2:
            alpha = alpha.reshape(alpha.shape[0], -1)
        return np.concatenate([y, alpha], axis=-1)

    def backward(self, dy, dstate=None):
        dattn = None
        if self.with_attention:
            Hh = self.layer.hidden_size
            dattn = dy[..., Hh:].reshape(self.layer.attention.shape)
            dy = np.ascontiguousarray(dy[..., :Hh])
        da = self.layer.backward(dy, dstate, dattention=dattn)
        self.dstate = self.layer.dstate
        return da


# -- the reference itself ------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_naive_backward_matches_finite_differences(rng, seq):
    layer = make_attn(rng, input_size=I, return_sequences=True)
    params = {k: v.copy() for k, v in layer.params.items()}
    a, x, state, dy, dstate, dattn = problem(rng, layer, seq, batch=2, steps=2)

    def loss():
        y, (h, c), alpha, _ = attention_lstm_forward_naive(params, a, 2, x, state)
        return np.sum(y * dy) + np.sum(h * dstate[0]) + np.sum(c * dstate[1]) + np.sum(alpha * dattn)

    da, dx, grads, (dh0, dc0) = attention_lstm_backward_naive(params, a, 2, dy, x, state, dstate, dattn)
    analytic = {"a": da, "x": dx, "h0": dh0, "c0": dc0, **grads}
    tensors = {"a": a, "x": x, "h0": state[0], "c0": state[1], **params}
    for name, arr in tensors.items():
        assert_close(analytic[name], numeric_grad(loss, arr), 1e-6, name)


def numeric_grad(loss, arr, eps=1e-6):
    """Central differences of loss() w.r.t. every element of arr (perturbed in place)."""
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
    return num.reshape(arr.shape)


def test_naive_temporal_matches_finite_differences(rng):
    layer = randomize(numlstm.TemporalAttention(3, 4, dtype=np.float64), rng)
    params = {k: v.copy() for k, v in layer.params.items()}
    x = rng.standard_normal((3, 4, 3))
    dy = rng.standard_normal((3, 3))
    dal = rng.standard_normal((3, 4))
    lengths = [4, 1, 2]

    def loss():
        out, alpha = temporal_attention_forward_naive(params, x, lengths)
        return np.sum(out * dy) + np.sum(alpha * dal)

    dx, grads = temporal_attention_backward_naive(params, x, dy, lengths, dal)
    assert_close(dx, numeric_grad(loss, x), 1e-6, "x")
    for k in params:
        assert_close(grads[k], numeric_grad(loss, params[k]), 1e-6, k)


# -- AttentionLSTM against the twin ---------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("input_size", [0, I], ids=["no-x", "x"])
@pytest.mark.parametrize("gate", [True, False], ids=["gate", "no-gate"])
@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_matches_naive_float64(rng, seq, gate, input_size, return_sequences):
    layer = make_attn(rng, gate=gate, input_size=input_size, return_sequences=return_sequences)
    args = problem(rng, layer, seq)
    compare(run_layer(layer, *args), run_naive(layer, *args), TOL[np.float64])


@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_matches_naive_zero_state_no_dstate(rng, seq):
    layer = make_attn(rng, input_size=I)
    a, x, _, dy, _, _ = problem(rng, layer, seq)
    compare(run_layer(layer, a, x, None, dy, None, None), run_naive(layer, a, x, None, dy, None, None), TOL[np.float64])


@pytest.mark.parametrize("config", [dict(), dict(gate=False, input_size=I), dict(return_sequences=False, input_size=I)])
@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_matches_naive_float32(rng, seq, config):
    """float32 (rational tanh/sigmoid) against the float64 twin run on the same float32 numbers."""
    layer = make_attn(rng, dtype=np.float32, **config)
    args = problem(rng, layer, seq)
    compare(run_layer(layer, *args), run_naive(layer, *args), TOL[np.float32])
    assert layer.attention.dtype == np.float32
    assert layer.dx is None or layer.dx.dtype == np.float32


def test_long_single_map_sequence(rng):
    """More steps than locations and a batch of one."""
    layer = make_attn(rng, input_size=1)
    args = problem(rng, layer, False, batch=1, steps=7)
    compare(run_layer(layer, *args, steps=7), run_naive(layer, *args, steps=7), TOL[np.float64])


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 4),
    locations=st.integers(1, 5),
    feature=st.integers(1, 3),
    hidden=st.integers(1, 3),
    attention=st.integers(1, 3),
    input_size=st.integers(0, 2),
    gate=st.booleans(),
    seq=st.booleans(),
    return_sequences=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_shape_matches_naive(
    batch, steps, locations, feature, hidden, attention, input_size, gate, seq, return_sequences, seed
):
    rng = np.random.default_rng(seed)
    layer = numlstm.AttentionLSTM(
        feature, hidden, attention, input_size=input_size, gate=gate, return_sequences=return_sequences, dtype=np.float64
    )
    randomize(layer, rng)
    a = rng.standard_normal((batch, steps, locations, feature) if seq else (batch, locations, feature))
    x = rng.standard_normal((batch, steps, input_size)) if input_size else None
    state = tuple(rng.standard_normal((1, batch, hidden)) for _ in range(2))
    dy = rng.standard_normal(layer.output_shape(batch, steps))
    dattn = rng.standard_normal((batch, steps, locations))
    got = run_layer(layer, a, x, state, dy, None, dattn, steps=steps)
    assert got[0].shape == layer.output_shape(batch, steps) and got[3].shape == a.shape
    compare(got, run_naive(layer, a, x, state, dy, None, dattn, steps=steps), 1e-10)


# -- gradient checks -------------------------------------------------------------------------------

GRADCHECK = {
    "one-map": dict(seq=False),
    "map-sequence": dict(seq=True),
    "one-map-x": dict(seq=False, input_size=I),
    "map-sequence-x": dict(seq=True, input_size=I),
    "no-gate": dict(seq=False, gate=False),
    "no-gate-map-sequence-x": dict(seq=True, gate=False, input_size=I),
    "last": dict(seq=False, return_sequences=False, input_size=I),
    "last-map-sequence": dict(seq=True, return_sequences=False),
}


@pytest.mark.parametrize("with_attention", [False, True], ids=["y", "y+dattention"])
@pytest.mark.parametrize("given_state", [False, True], ids=["random-state", "given-state"])
@pytest.mark.parametrize("config", list(GRADCHECK.values()), ids=list(GRADCHECK))
def test_gradcheck(rng, config, given_state, with_attention):
    config = dict(config)
    seq = config.pop("seq")
    layer = make_attn(rng, **config)
    a, x, state, *_ = problem(rng, layer, seq)
    probe = Probe(layer, x=x, steps=T, with_attention=with_attention)
    errors = numlstm.gradcheck(probe, a, state if given_state else None, seed=int(rng.integers(1000)))
    assert set(errors) == {"x", "h0", "c0", *layer.params}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_dx_matches_finite_differences(rng, seq):
    """The gradient w.r.t. the per-step input (layer.dx), which gradcheck does not see."""
    layer = make_attn(rng, input_size=I)
    a, x, state, dy, dstate, dattn = problem(rng, layer, seq)

    def loss():
        y = layer.forward(a, x=x, state=state)
        h, c = layer.state
        return np.sum(y * dy) + np.sum(h * dstate[0]) + np.sum(c * dstate[1]) + np.sum(layer.attention * dattn)

    layer.forward(a, x=x, state=state)
    layer.backward(dy, dstate, dattention=dattn)
    assert_close(layer.dx, numeric_grad(loss, x), 1e-7, "dx")


# -- the doubly stochastic penalty ---------------------------------------------------------------


def test_penalty_value_and_gradient(rng):
    alpha = rng.uniform(0.0, 1.0, (2, 3, 4))
    lam = 0.7
    value, dalpha = numlstm.attention_penalty(alpha, lam)
    want = lam * sum((1.0 - alpha[b, :, i].sum()) ** 2 for b in range(2) for i in range(4))
    assert value == pytest.approx(want, rel=1e-14)
    assert dalpha.shape == alpha.shape and dalpha.dtype == alpha.dtype
    assert_close(dalpha, numeric_grad(lambda: numlstm.attention_penalty(alpha, lam)[0], alpha), 1e-8, "dalpha")
    v32, d32 = numlstm.attention_penalty(alpha.astype(np.float32), lam)
    assert d32.dtype == np.float32 and v32 == pytest.approx(value, rel=1e-6)


def test_penalty_is_zero_for_doubly_stochastic_attention():
    alpha = np.full((1, 4, 4), 0.25)
    value, dalpha = numlstm.attention_penalty(alpha, 3.0)
    assert value == 0.0 and np.all(dalpha == 0.0)


@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_penalty_gradient_flows_through_softmax(rng, seq):
    """loss = sum(y * dy) + penalty(alpha): backward(dy, dattention=dpenalty) is its gradient."""
    layer = make_attn(rng, input_size=I)
    a, x, state, dy, _, _ = problem(rng, layer, seq)
    lam = 0.9

    def loss():
        y = layer.forward(a, x=x, state=state)
        return np.sum(y * dy) + numlstm.attention_penalty(layer.attention, lam)[0]

    layer.zero_grad()
    layer.forward(a, x=x, state=state)
    _, dpen = numlstm.attention_penalty(layer.attention, lam)
    da = layer.backward(dy, dattention=dpen)
    analytic = {"a": da.copy(), **{k: g.copy() for k, g in layer.grads.items()}}
    for name, arr in {"a": a, **layer.params}.items():
        assert_close(analytic[name], numeric_grad(loss, arr), 1e-6, name)


def test_penalty_bad_inputs():
    with pytest.raises(ValueError, match=r"alpha: expected a 3-d array"):
        numlstm.attention_penalty(np.zeros((2, 3)), 1.0)
    with pytest.raises(TypeError, match=r"alpha: expected a float array"):
        numlstm.attention_penalty(np.zeros((2, 3, 4), np.int64), 1.0)
    with pytest.raises(ValueError, match=r"lam: expected a number >= 0"):
        numlstm.attention_penalty(np.zeros((2, 3, 4)), -1.0)


# -- attention weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_attention_rows_sum_to_one(rng, seq, dtype):
    layer = make_attn(rng, dtype=dtype, input_size=I)
    a, x, *_ = problem(rng, layer, seq)
    layer.forward(a, x=x)
    assert layer.attention.shape == (B, T, L) and layer.attention.dtype == dtype
    assert np.all(layer.attention >= 0)
    np.testing.assert_allclose(layer.attention.sum(axis=2), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_single_map_attention_changes_over_steps(rng):
    """h_{t-1} steers the attention: the same map gives different weights at each step."""
    layer = make_attn(rng)
    a = rng.standard_normal((B, L, D))
    layer.forward(a, steps=T)
    assert not np.allclose(layer.attention[:, 0], layer.attention[:, 1])


def test_huge_scores_give_finite_outputs(rng):
    layer = make_attn(rng, dtype=np.float32)
    layer.params["attn_v"][...] = 1e4
    a = (1e3 * rng.standard_normal((B, L, D))).astype(np.float32)
    y = layer.forward(a, steps=T)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(layer.attention))
    da = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(da))


# -- PyTorch ------------------------------------------------------------------------------------


def torch_attention_lstm(torch, params, a, T, x, state, gate):
    """The attention LSTM written with torch ops (tanh, softmax, the LSTMCell math)."""
    Hh = params["weight_hh"].shape[1]
    h, c = state[0][0], state[1][0]
    ys, alphas = [], []
    for t in range(T):
        ann = a if a.dim() == 3 else a[:, t]  # (B, L, D)
        s = torch.tanh(ann @ params["attn_weight_a"].T + params["attn_bias"] + (h @ params["attn_weight_h"].T)[:, None, :])
        alpha = torch.softmax(s @ params["attn_v"], dim=1)  # (B, L)
        z = (alpha[:, :, None] * ann).sum(dim=1)
        if gate:
            z = torch.sigmoid(h @ params["gate_weight"] + params["gate_bias"])[:, None] * z
        u = z if x is None else torch.cat([x[:, t], z], dim=1)
        g = u @ params["weight_ih"].T + params["bias_ih"] + h @ params["weight_hh"].T + params["bias_hh"]
        i, f, gg, o = (
            torch.sigmoid(g[:, :Hh]),
            torch.sigmoid(g[:, Hh : 2 * Hh]),
            torch.tanh(g[:, 2 * Hh : 3 * Hh]),
            torch.sigmoid(g[:, 3 * Hh :]),
        )
        c = f * c + i * gg
        h = o * torch.tanh(c)
        ys.append(h)
        alphas.append(alpha)
    return torch.stack(ys, dim=1), torch.stack(alphas, dim=1), h[None], c[None]


@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("config", [dict(seq=False), dict(seq=True, input_size=I), dict(seq=False, gate=False, input_size=I)])
def test_matches_torch_float64(rng, config, return_sequences):
    torch = pytest.importorskip("torch")
    config = dict(config)
    seq = config.pop("seq")
    layer = make_attn(rng, return_sequences=return_sequences, **config)
    a, x, state, dy, dstate, dattn = problem(rng, layer, seq)
    got = run_layer(layer, a, x, state, dy, dstate, dattn)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    at = torch.tensor(a, requires_grad=True)
    xt = None if x is None else torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state)
    ys, alpha, hn, cn = torch_attention_lstm(torch, tp, at, T, xt, st, layer.gate)
    y = ys if return_sequences else hn[0]
    loss = (y * torch.tensor(dy)).sum() + (hn * torch.tensor(dstate[0])).sum() + (cn * torch.tensor(dstate[1])).sum()
    loss = loss + (alpha * torch.tensor(dattn)).sum()
    loss.backward()
    y_got, alpha_got, (h_got, c_got), da_got, dx_got, grads_got, (dh0_got, dc0_got) = got
    tol = TOL[np.float64]
    assert_close(y_got, y.detach().numpy(), tol, "y")
    assert_close(alpha_got, alpha.detach().numpy(), tol, "attention")
    assert_close(h_got, hn.detach().numpy(), tol, "h_n")
    assert_close(c_got, cn.detach().numpy(), tol, "c_n")
    assert_close(da_got, at.grad.numpy(), tol, "da")
    if x is not None:
        assert_close(dx_got, xt.grad.numpy(), tol, "dx")
    assert_close(dh0_got, st[0].grad.numpy(), tol, "dh0")
    assert_close(dc0_got, st[1].grad.numpy(), tol, "dc0")
    for k in layer.params:
        assert_close(grads_got[k], tp[k].grad.numpy(), tol, k)


# -- TemporalAttention ----------------------------------------------------------------------------

TF, TA = 3, 4


def make_temporal(rng, dtype=np.float64):
    return randomize(numlstm.TemporalAttention(TF, TA, dtype=dtype, seed=int(rng.integers(2**31))), rng)


@pytest.mark.parametrize("dattention", [False, True], ids=["dy", "dy+dattention"])
@pytest.mark.parametrize("lengths", [None, [T, 1, 2]], ids=["no-lengths", "lengths"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_temporal_matches_naive(rng, dtype, lengths, dattention):
    layer = make_temporal(rng, dtype)
    x = rng.standard_normal((3, T, TF)).astype(dtype)
    dy = rng.standard_normal((3, TF)).astype(dtype)
    dal = rng.standard_normal((3, T)).astype(dtype) if dattention else None
    layer.zero_grad()
    out = layer.forward(x, lengths=lengths)
    alpha = layer.attention.copy()
    dx = layer.backward(dy, dattention=dal)
    out_w, alpha_w = temporal_attention_forward_naive(layer.params, x, lengths)
    dx_w, grads_w = temporal_attention_backward_naive(layer.params, x, dy, lengths, dal)
    tol = TOL[dtype]
    assert out.dtype == dtype and dx.dtype == dtype and alpha.dtype == dtype
    assert_close(out, out_w, tol, "out")
    assert_close(alpha, alpha_w, tol, "attention")
    assert_close(dx, dx_w, tol, "dx")
    for k in grads_w:
        assert_close(layer.grads[k], grads_w[k], tol, k)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)
    if lengths is not None:
        assert alpha[1, 1:].max() == 0.0 and np.all(dx[1, 1:] == 0.0)


@pytest.mark.parametrize("lengths", [None, [T, 1, 2]], ids=["no-lengths", "lengths"])
def test_temporal_gradcheck(rng, lengths):
    layer = make_temporal(rng)
    x = rng.standard_normal((3, T, TF))
    errors = numlstm.gradcheck(layer, x, lengths=lengths)
    assert set(errors) == {"x", "weight", "bias", "v"}
    assert max(errors.values()) < 1e-6, errors


def test_temporal_padding_is_ignored(rng):
    layer = make_temporal(rng)
    x = rng.standard_normal((2, T, TF))
    y = layer.forward(x, lengths=[2, T])
    x2 = x.copy()
    x2[0, 2:] = 1e6
    np.testing.assert_array_equal(layer.forward(x2, lengths=[2, T]), y)
    y_short = layer.forward(x[:1, :2])
    np.testing.assert_allclose(y[0], y_short[0], rtol=1e-14)


def test_temporal_bad_inputs(rng):
    layer = make_temporal(rng)
    x = rng.standard_normal((2, T, TF))
    with pytest.raises(ValueError, match=r"x: expected a 3-d array .*got shape \(2, 3\)"):
        layer.forward(x[:, 0])
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, \?, 3\)"):
        layer.forward(rng.standard_normal((2, T, TF + 1)))
    with pytest.raises(TypeError, match=r"x: expected dtype float64, got float32"):
        layer.forward(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\].*max 4"):
        layer.forward(x, lengths=[1, 4])
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\].*min 0"):
        layer.forward(x, lengths=[0, 2])
    with pytest.raises(ValueError, match=r"lengths: expected a 1-d sequence of 2 ints"):
        layer.forward(x, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match=r"lengths: expected integers"):
        layer.forward(x, lengths=[1.5, 2])
    layer.forward(x)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\)"):
        layer.backward(np.zeros((2, TF + 1)))
    layer.backward(np.zeros((2, TF)))  # a refused dy leaves the forward pass to differentiate
    with pytest.raises(RuntimeError, match="forward"):  # a forward pass is differentiated once
        layer.backward(np.zeros((2, TF)))


# -- bad inputs ------------------------------------------------------------------------------------


def test_bad_inputs(rng):
    layer = make_attn(rng, input_size=I)
    a = rng.standard_normal((B, L, D))
    x = rng.standard_normal((B, T, I))
    with pytest.raises(ValueError, match=r"a: expected a 3-d array .* or a 4-d array .*got shape \(2, 3\)"):
        layer.forward(a[:, 0], x=x)
    with pytest.raises(ValueError, match=r"a: expected shape \(\?, \?, 3\)"):
        layer.forward(rng.standard_normal((B, L, D + 1)), x=x)
    with pytest.raises(ValueError, match=r"a: expected shape \(\?, \?, \?, 3\)"):
        layer.forward(rng.standard_normal((B, T, L, D + 1)), x=x)
    with pytest.raises(TypeError, match=r"a: expected dtype float64, got float32"):
        layer.forward(a.astype(np.float32), x=x)
    with pytest.raises(ValueError, match=r"x: expected an array \(batch, time, input_size\) of shape \(2, 3, 2\), got None"):
        layer.forward(a, steps=T)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3, 2\)"):
        layer.forward(a, x=x[:, :2], steps=T)  # x of the wrong length
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3, 2\)"):
        layer.forward(rng.standard_normal((B, T, L, D)), x=x[:, :2])
    with pytest.raises(ValueError, match=r"x: expected shape \(2, \?, 2\)"):
        layer.forward(a, x=x[:1])  # batch mismatch
    with pytest.raises(ValueError, match=r"steps: got 2 for a sequence of 3 maps"):
        layer.forward(rng.standard_normal((B, T, L, D)), x=x, steps=2)
    with pytest.raises(ValueError, match=r"steps: expected an int >= 1, got 0"):
        layer.forward(a, x=x, steps=0)
    with pytest.raises(TypeError, match=r"steps: expected an int"):
        layer.forward(a, x=x, steps=2.0)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\): expected shape \(1, 2, 2\)"):
        layer.forward(a, x=x, state=(np.zeros((1, 3, H)), np.zeros((1, B, H))))
    with pytest.raises(TypeError, match=r"state: expected a tuple \(h, c\)"):
        layer.forward(a, x=x, state=np.zeros((1, B, H)))

    no_x = make_attn(rng)
    with pytest.raises(ValueError, match=r"steps: required with a single feature map"):
        no_x.forward(a)
    with pytest.raises(ValueError, match=r"x: the layer has input_size=0 and takes no x"):
        no_x.forward(a, x=x, steps=T)

    y = layer.forward(a, x=x)  # steps taken from x
    assert y.shape == (B, T, H)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 2\)"):
        layer.backward(np.zeros((B, T + 1, H)))
    with pytest.raises(ValueError, match=r"dattention: expected shape \(2, 3, 4\)"):
        layer.backward(np.zeros((B, T, H)), dattention=np.zeros((B, T, L + 1)))
    with pytest.raises(ValueError, match=r"dstate\[1\] \(c\): expected shape \(1, 2, 2\)"):
        layer.backward(np.zeros((B, T, H)), (np.zeros((1, B, H)), np.zeros((1, B, H + 1))))


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(feature_size=0), ValueError, "feature_size: expected an int >= 1, got 0"),
        (dict(hidden_size=2.5), TypeError, "hidden_size: expected an int"),
        (dict(attention_size=-1), ValueError, "attention_size: expected an int >= 1"),
        (dict(input_size=-1), ValueError, "input_size: expected an int >= 0"),
        (dict(gate=1), TypeError, "gate: expected True or False"),
        (dict(dtype=np.int32), TypeError, "dtype: expected np.float32 or np.float64"),
        (dict(seed=-1), ValueError, "seed: expected an int >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, err, match):
    args = dict(feature_size=D, hidden_size=H, attention_size=A)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        numlstm.AttentionLSTM(**args)


# -- the layer contract ----------------------------------------------------------------------------


def test_params_grads_and_accumulation(rng):
    layer = make_attn(rng, input_size=I)
    assert set(layer.params) == set(layer.grads)
    assert layer.params["attn_weight_a"].shape == (A, D)
    assert layer.params["attn_weight_h"].shape == (A, H)
    assert layer.params["attn_bias"].shape == (A,) and layer.params["attn_v"].shape == (A,)
    assert layer.params["gate_weight"].shape == (H,) and layer.params["gate_bias"].shape == (1,)
    assert layer.params["weight_ih"].shape == (4 * H, I + D) and layer.params["weight_hh"].shape == (4 * H, H)
    assert "gate_weight" not in numlstm.AttentionLSTM(D, H, A, gate=False).params
    for k in layer.params:
        assert layer.grads[k].shape == layer.params[k].shape
    a, x, state, dy, dstate, dattn = problem(rng, layer, True)
    first = run_layer(layer, a, x, state, dy, dstate, dattn)[5]
    layer.forward(a, x=x, state=state)
    layer.backward(dy, dstate, dattention=dattn)  # no zero_grad: accumulates
    for k in layer.grads:
        assert_close(layer.grads[k], 2 * first[k], 1e-12, k)
    assert layer.state[0].shape == (1, B, H) and layer.dstate[1].shape == (1, B, H)


def test_eval_mode_keeps_no_cache(rng):
    layer = make_attn(rng)
    a = rng.standard_normal((B, L, D))
    y_train = layer.forward(a, steps=T)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(a, steps=T), y_train)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.zeros_like(y_train))


def test_caller_may_overwrite_input_after_forward(rng):
    layer = make_attn(rng)
    a = rng.standard_normal((B, L, D))
    dy = rng.standard_normal((B, T, H))
    layer.forward(a, steps=T)
    da = layer.backward(dy).copy()
    a2 = a.copy()
    layer.forward(a2, steps=T)
    a2[...] = 0.0
    np.testing.assert_array_equal(layer.backward(dy), da)


def test_seed_config_and_registry(rng):
    a1 = numlstm.AttentionLSTM(D, H, A, input_size=I, seed=3)
    a2 = numlstm.AttentionLSTM(D, H, A, input_size=I, seed=3)
    for k in a1.params:
        np.testing.assert_array_equal(a1.params[k], a2.params[k])
    for layer in (a1, numlstm.TemporalAttention(TF, TA, seed=1, dtype=np.float64)):
        spec = layer_to_config(layer)
        json.dumps(spec)
        rebuilt = layer_from_config(spec)
        assert type(rebuilt) is type(layer) and rebuilt.config() == layer.config()
        for k in layer.params:
            np.testing.assert_array_equal(rebuilt.params[k], layer.params[k])


@pytest.mark.parametrize("seq", [False, True], ids=["one-map", "map-sequence"])
def test_non_contiguous_inputs(rng, seq):
    layer = make_attn(rng, input_size=I)
    a, x, state, dy, dstate, dattn = problem(rng, layer, seq)
    ref = run_layer(layer, a, x, state, dy, dstate, dattn)
    got = run_layer(layer, np.asfortranarray(a), np.asfortranarray(x), state, np.asfortranarray(dy), dstate, dattn)
    compare(got, ref, 0.0)
