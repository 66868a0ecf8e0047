"""numlstm.LSTM against torch.nn.LSTM (batch_first=True): outputs, final states and every gradient."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, make_lstm, random_state
from naive import lstm_backward_naive, lstm_forward_naive

from numlstm.interop import lstm_from_torch, lstm_to_torch

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

# every test here runs on both CPU schedules (see conftest.cpu_path)
pytestmark = pytest.mark.usefixtures("cpu_path")

B, T, I, H = 3, 4, 3, 2

CONFIGS = {
    "1layer": dict(num_layers=1, bidirectional=False, bias=True),
    "2layers": dict(num_layers=2, bidirectional=False, bias=True),
    "bidir": dict(num_layers=1, bidirectional=True, bias=True),
    "bidir-2layers": dict(num_layers=2, bidirectional=True, bias=True),
    "nobias": dict(num_layers=1, bidirectional=False, bias=False),
    "nobias-bidir-2layers": dict(num_layers=2, bidirectional=True, bias=False),
}
LENGTHS = {"no-lengths": None, "mixed": [T, 1, 3]}
TOL = {np.float64: 1e-10, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def make_torch_lstm(rng, config, dtype):
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H, batch_first=True, **config).to(TORCH_DTYPE[dtype])
    with torch.no_grad():
        for p in m.parameters():
            v = rng.uniform(0.1, 0.8, tuple(p.shape)) * rng.choice([-1.0, 1.0], tuple(p.shape))
            p.copy_(torch.from_numpy(v))
    return m


def run_torch(m, x, state, lengths, dy, dstate, return_sequences):
    """Forward and backward of torch.nn.LSTM with loss sum(y*dy) + sum(h_n*dh_n) + sum(c_n*dc_n)."""
    m.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(state[0], requires_grad=True)
    c0 = torch.tensor(state[1], requires_grad=True)
    if lengths is None:
        out, (h_n, c_n) = m(xt, (h0, c0))
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        out_packed, (h_n, c_n) = m(packed, (h0, c0))
        out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
    if return_sequences:
        y = out
    else:
        D = 2 if m.bidirectional else 1
        top = (m.num_layers - 1) * D
        y = torch.cat([h_n[top + d] for d in range(D)], dim=1)
    loss = (
        (y * torch.from_numpy(dy)).sum() + (h_n * torch.from_numpy(dstate[0])).sum() + (c_n * torch.from_numpy(dstate[1])).sum()
    )
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in m.named_parameters()}
    return (
        y.detach().numpy(),
        (h_n.detach().numpy(), c_n.detach().numpy()),
        xt.grad.numpy(),
        grads,
        (h0.grad.numpy(), c0.grad.numpy()),
    )


def run_numlstm(layer, x, state, lengths, dy, dstate):
    layer.zero_grad()
    y = layer.forward(x, state=state, lengths=lengths)
    h_n, c_n = (s.copy() for s in layer.state)
    dx = layer.backward(dy, dstate)
    return y, (h_n, c_n), dx, lstm_to_torch(layer, grads=True), tuple(s.copy() for s in layer.dstate)


def compare(got, want, rtol):
    names = ("y", "h_n", "c_n", "dx", "dh0", "dc0")
    y, (h_n, c_n), dx, grads, (dh0, dc0) = got
    y_w, (h_n_w, c_n_w), dx_w, grads_w, (dh0_w, dc0_w) = want
    for name, a, b in zip(names, (y, h_n, c_n, dx, dh0, dc0), (y_w, h_n_w, c_n_w, dx_w, dh0_w, dc0_w), strict=True):
        assert_close(a, b, rtol, name)
    assert set(grads) == set(grads_w)
    for k in grads_w:
        assert grads[k].dtype == grads_w[k].dtype
        assert_close(grads[k], grads_w[k], rtol, k)


def problem(rng, layer):
    dt = layer.dtype
    x = rng.standard_normal((B, T, I)).astype(dt)
    state = random_state(rng, layer, B)
    dy = rng.standard_normal(layer.output_shape(B, T)).astype(dt)
    dstate = random_state(rng, layer, B)
    return x, state, dy, dstate


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("lengths", list(LENGTHS.values()), ids=list(LENGTHS))
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_from_torch_matches_torch(rng, config, lengths, return_sequences, dtype):
    m = make_torch_lstm(rng, config, dtype)
    layer = lstm_from_torch(m.state_dict(), dtype=dtype, return_sequences=return_sequences)
    assert (layer.num_layers, layer.bidirectional, layer.bias) == (config["num_layers"], config["bidirectional"], config["bias"])
    x, state, dy, dstate = problem(rng, layer)
    want = run_torch(m, x, state, lengths, dy, dstate, return_sequences)
    got = run_numlstm(layer, x, state, lengths, dy, dstate)
    compare(got, want, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_to_torch_matches_torch(rng, config, dtype):
    layer = make_lstm(rng, I, H, dtype=dtype, **config)
    m = torch.nn.LSTM(I, H, batch_first=True, **config).to(TORCH_DTYPE[dtype])
    m.load_state_dict({k: torch.from_numpy(v) for k, v in lstm_to_torch(layer).items()})  # strict
    for k, p in m.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), layer.params[k])
    x, state, dy, dstate = problem(rng, layer)
    lengths = [2, T, 1]
    want = run_torch(m, x, state, lengths, dy, dstate, True)
    got = run_numlstm(layer, x, state, lengths, dy, dstate)
    compare(got, want, TOL[dtype])


def test_zero_initial_state_matches_torch_default(rng):
    """No state on either side means zeros on both."""
    m = make_torch_lstm(rng, CONFIGS["bidir-2layers"], np.float64)
    layer = lstm_from_torch(m.state_dict(), dtype=np.float64)
    x = rng.standard_normal((B, T, I))
    y_t, (h_t, c_t) = m(torch.from_numpy(x))
    y = layer.forward(x)
    assert_close(y, y_t.detach().numpy(), 1e-10, "y")
    assert_close(layer.state[0], h_t.detach().numpy(), 1e-10, "h_n")
    assert_close(layer.state[1], c_t.detach().numpy(), 1e-10, "c_n")


def test_prefixed_state_dict_of_a_module(rng):
    """A model's state dict ('lstm.weight_ih_l0', ...) loads with its prefix stripped."""

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(I, H, num_layers=2, batch_first=True).double()

    model = Model()
    layer = lstm_from_torch(model.state_dict(), dtype=np.float64)
    x = rng.standard_normal((B, T, I))
    y_t, _ = model.lstm(torch.from_numpy(x))
    assert_close(layer.forward(x), y_t.detach().numpy(), 1e-10, "y")


@pytest.mark.parametrize("config", [CONFIGS["bidir-2layers"], CONFIGS["nobias"]], ids=["bidir-2layers", "nobias"])
def test_naive_twin_matches_torch(rng, config):
    """The numpy reference of tests/naive.py agrees with torch, so the twin tests are anchored."""
    m = make_torch_lstm(rng, config, np.float64)
    params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    L, bidir = config["num_layers"], config["bidirectional"]
    D = 2 if bidir else 1
    x = rng.standard_normal((B, T, I))
    state = tuple(rng.standard_normal((L * D, B, H)) for _ in range(2))
    dy = rng.standard_normal((B, T, D * H))
    dstate = tuple(rng.standard_normal((L * D, B, H)) for _ in range(2))
    lengths = [3, T, 1]
    y, (h_n, c_n) = lstm_forward_naive(x, params, L, bidir, state=state, lengths=lengths)
    dx, grads, (dh0, dc0) = lstm_backward_naive(x, params, L, bidir, dy, dstate=dstate, state=state, lengths=lengths)
    compare((y, (h_n, c_n), dx, grads, (dh0, dc0)), run_torch(m, x, state, lengths, dy, dstate, True), 1e-10)
