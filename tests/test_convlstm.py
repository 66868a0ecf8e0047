"""ConvLSTM: against the direct-loop twin, float64 central differences, PyTorch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close
from naive_convlstm import convlstm_backward_naive, convlstm_forward_naive

import numlstm
from numlstm import ConvLSTM, gradcheck
from numlstm.layers.registry import layer_from_config, layer_to_config

B, T, CIN, C, HW = 2, 3, 2, 3, 5

# name -> constructor options and whether an initial state is given
CASES = {
    "one_layer": ({}, False),
    "two_layers": ({"num_layers": 2}, False),
    "initial_state": ({"num_layers": 2}, True),
    "last_step": ({"return_sequences": False}, True),
    "even_kernel": ({"kernel_size": 2}, True),
    "stride2": ({"stride": 2, "num_layers": 2}, True),
    "dilation2": ({"dilation": 2, "num_layers": 2}, True),
    "no_bias": ({"bias": False}, True),
    "stride_over_kernel": ({"kernel_size": (2, 1), "stride": (3, 2)}, True),
    "peephole": ({"peephole": True, "frame_size": HW}, True),
    "peephole_stride2": ({"peephole": True, "frame_size": (HW, HW), "stride": 2, "num_layers": 2}, True),
    "bidirectional": ({"bidirectional": True}, True),
    "bidirectional_last_step": ({"bidirectional": True, "return_sequences": False, "num_layers": 2}, True),
    "peephole_bidirectional_2layers": (
        {"peephole": True, "frame_size": HW, "bidirectional": True, "num_layers": 2},
        True,
    ),
}


def make(rng, dtype=np.float64, **kw) -> ConvLSTM:
    kw = {"kernel_size": 3, **kw}
    layer = ConvLSTM(CIN, C, dtype=dtype, seed=int(rng.integers(2**31)), **kw)
    for p in layer.params.values():
        p[...] = 0.5 * rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    return layer


def inputs(rng, layer, with_state):
    x = rng.standard_normal((B, T, CIN, HW, HW)).astype(layer.dtype)
    ho, wo = layer.output_hw(HW, HW)
    shape = (layer.num_layers * layer.num_directions, B, C, ho, wo)
    state = None
    if with_state:
        state = tuple(rng.standard_normal(shape).astype(layer.dtype) for _ in range(2))
    return x, state, shape


def naive(layer, x, state, dy, dstate):
    p64 = {k: v.astype(np.float64) for k, v in layer.params.items()}
    h0 = c0 = None
    if state is not None:
        h0, c0 = (s.astype(np.float64) for s in state)
    y, hn, cn, tape = convlstm_forward_naive(
        x.astype(np.float64),
        p64,
        layer.num_layers,
        layer.kernel_size,
        layer.stride,
        layer.dilation,
        h0,
        c0,
        layer.bidirectional,
    )
    dhn, dcn = (s.astype(np.float64) for s in dstate)
    dy = dy.astype(np.float64)
    D = layer.num_directions
    if not layer.return_sequences:
        dhn = dhn.copy()
        top = (layer.num_layers - 1) * D
        for d in range(D):
            dhn[top + d] += dy[:, d * C : (d + 1) * C]
        dy_seq = np.zeros(y.shape)
    else:
        dy_seq = dy
    dx, grads, dh0, dc0 = convlstm_backward_naive(
        p64, layer.num_layers, tape, dy_seq, dhn, dcn, layer.dilation, layer.bidirectional
    )
    if layer.return_sequences:
        out = y
    else:  # forward direction's last step, reverse direction's first step
        out = np.concatenate([hn[top + d] for d in range(D)], axis=1)
    return out, hn, cn, dx, grads, dh0, dc0


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_naive(rng, case, dtype, tol):
    kw, with_state = CASES[case]
    layer = make(rng, dtype, **kw)
    x, state, shape = inputs(rng, layer, with_state)
    y = layer(x, state=state)
    assert y.dtype == dtype
    dy = rng.standard_normal(y.shape).astype(dtype)
    dstate = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(2))
    dx = layer.backward(dy, dstate)
    ry, rhn, rcn, rdx, rgrads, rdh0, rdc0 = naive(layer, x, state, dy, dstate)
    assert_close(y, ry, tol, "y")
    assert_close(layer.state[0], rhn, tol, "h_n")
    assert_close(layer.state[1], rcn, tol, "c_n")
    assert_close(dx, rdx, tol, "dx")
    assert set(layer.grads) == set(rgrads)
    for name, g in rgrads.items():
        assert_close(layer.grads[name], g, tol, name)
    assert_close(layer.dstate[0], rdh0, tol, "dh0")
    assert_close(layer.dstate[1], rdc0, tol, "dc0")


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck(rng, case):
    kw, with_state = CASES[case]
    layer = make(rng, **kw)
    x, state, _ = inputs(rng, layer, with_state)
    errors = gradcheck(layer, x, state, max_elements=30)
    assert max(errors.values()) < 1e-6, errors


def test_shapes_and_state(rng):
    layer = ConvLSTM(CIN, C, 3, num_layers=2, stride=(2, 1), seed=0)
    x = rng.standard_normal((B, T, CIN, 5, 6)).astype(np.float32)
    y = layer(x)
    assert y.shape == (B, T, C, 3, 6) == layer.output_shape(B, T, 5, 6)
    assert layer.state[0].shape == layer.state[1].shape == (2, B, C, 3, 6)
    np.testing.assert_array_equal(y[:, -1], layer.state[0][-1])
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert layer.dstate[0].shape == (2, B, C, 3, 6)


def test_kernel_larger_than_frame_fits(rng):
    # 'SAME' padding makes every kernel fit: a 5x5 kernel over 1x2 frames is valid
    layer = make(rng, kernel_size=5, dilation=2)
    x = rng.standard_normal((B, T, CIN, 1, 2))
    y = layer(x)
    assert y.shape == (B, T, C, 1, 2)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_grads_accumulate_and_seed(rng):
    a, b = ConvLSTM(CIN, C, 3, seed=7), ConvLSTM(CIN, C, 3, seed=7)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    bound = 1.0 / np.sqrt(CIN * 9 + C * 9)
    assert np.abs(a.params["weight_x_l0"]).max() <= bound
    x = rng.standard_normal((B, T, CIN, HW, HW)).astype(np.float32)
    dy = np.ones((B, T, C, HW, HW), np.float32)
    a(x)
    a.backward(dy)
    g1 = {k: v.copy() for k, v in a.grads.items()}
    a(x)
    a.backward(dy)
    for k in g1:
        assert_close(a.grads[k], 2 * g1[k], 1e-6, k)


def test_eval_mode_no_cache(rng):
    layer = ConvLSTM(CIN, C, 3, seed=0).eval()
    layer(rng.standard_normal((B, T, CIN, HW, HW)).astype(np.float32))
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.zeros((B, T, C, HW, HW), np.float32))


def test_config_roundtrip():
    layer = ConvLSTM(CIN, C, (3, 2), num_layers=2, bias=False, stride=2, dilation=(1, 2), return_sequences=False, seed=3)
    spec = layer_to_config(layer)
    assert json.loads(json.dumps(spec)) == spec
    clone = layer_from_config(spec)
    assert isinstance(clone, ConvLSTM) and clone.config() == layer.config()
    for k in layer.params:
        np.testing.assert_array_equal(clone.params[k], layer.params[k])
    assert numlstm.layers.registry.registered_layers()["ConvLSTM"] is ConvLSTM


def test_bad_input():
    layer = ConvLSTM(CIN, C, 3, seed=0)
    good = np.zeros((B, T, CIN, HW, HW), np.float32)
    with pytest.raises(ValueError, match=r"x: expected a 5-d array"):
        layer(np.zeros((B, CIN, HW, HW), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape"):
        layer(np.zeros((B, T, CIN + 1, HW, HW), np.float32))
    with pytest.raises(ValueError, match=r"axis 0 is empty"):
        layer(np.zeros((0, T, CIN, HW, HW), np.float32))
    with pytest.raises(TypeError, match=r"x: expected dtype float32"):
        layer(good.astype(np.float64))
    with pytest.raises(ValueError, match=r"state\[0\] \(h\)"):
        layer(good, state=(np.zeros((1, B, C, 4, 4), np.float32), np.zeros((1, B, C, HW, HW), np.float32)))
    with pytest.raises(TypeError, match=r"state: expected a tuple"):
        layer(good, state=np.zeros((1, B, C, HW, HW), np.float32))
    y = layer(good)
    with pytest.raises(ValueError, match=r"dy: expected shape"):
        layer.backward(y[:, :-1])
    with pytest.raises(ValueError, match=r"kernel_size"):
        ConvLSTM(CIN, C, 0)
    with pytest.raises(ValueError, match=r"kernel_size"):
        ConvLSTM(CIN, C, (3, 3, 3))
    with pytest.raises(ValueError, match=r"hidden_channels"):
        ConvLSTM(CIN, 0, 3)
    with pytest.raises(ValueError, match=r"stride"):
        ConvLSTM(CIN, C, 3, stride=0)


# -- PyTorch ------------------------------------------------------------------------------------
def _torch_convlstm(torch, layer, x, h0, c0):
    F = torch.nn.functional
    p = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    inp = x
    hs, cs = [], []
    kh, kw = layer.kernel_size

    def same(size, k, s, d):
        out = -(-size // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        return total // 2, total - total // 2

    D = layer.num_directions
    for k in range(layer.num_layers):
        s = layer.stride if k == 0 else (1, 1)
        pt, pb = same(inp.shape[3], kh, s[0], layer.dilation[0])
        pl, pr = same(inp.shape[4], kw, s[1], layer.dilation[1])
        ys = []
        for d, sfx in enumerate(("", "_reverse")[:D]):
            h, c = h0[k * D + d], c0[k * D + d]
            T = inp.shape[1]
            outs = [None] * T
            for t in range(T - 1, -1, -1) if d == 1 else range(T):
                xt = F.pad(inp[:, t], (pl, pr, pt, pb))
                a = F.conv2d(xt, p[f"weight_x_l{k}{sfx}"], p.get(f"bias_l{k}{sfx}"), stride=s, dilation=layer.dilation)
                hp = F.pad(h, ((kw - 1) // 2, kw - 1 - (kw - 1) // 2, (kh - 1) // 2, kh - 1 - (kh - 1) // 2))
                a = a + F.conv2d(hp, p[f"weight_h_l{k}{sfx}"])
                i, f, g, o = a.chunk(4, dim=1)
                if layer.peephole:
                    i = i + p[f"peephole_i_l{k}{sfx}"] * c
                    f = f + p[f"peephole_f_l{k}{sfx}"] * c
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                if layer.peephole:
                    o = o + p[f"peephole_o_l{k}{sfx}"] * c
                h = torch.sigmoid(o) * torch.tanh(c)
                outs[t] = h
            hs.append(h)
            cs.append(c)
            ys.append(torch.stack(outs, dim=1))
        inp = torch.cat(ys, dim=2)
    return inp, torch.stack(hs), torch.stack(cs), p


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    kw, _ = CASES[case]
    layer = make(rng, **kw)
    x, state, shape = inputs(rng, layer, True)
    y = layer(x, state=state)
    dy = rng.standard_normal(y.shape)
    dstate = tuple(rng.standard_normal(shape) for _ in range(2))
    dx = layer.backward(dy, dstate)
    tx = torch.tensor(x, requires_grad=True)
    th0, tc0 = (torch.tensor(s, requires_grad=True) for s in state)
    ty, thn, tcn, tp = _torch_convlstm(torch, layer, tx, th0, tc0)
    if not layer.return_sequences:
        top = (layer.num_layers - 1) * layer.num_directions
        ty = torch.cat([thn[top + d] for d in range(layer.num_directions)], dim=1)
    loss = (ty * torch.tensor(dy)).sum() + (thn * torch.tensor(dstate[0])).sum() + (tcn * torch.tensor(dstate[1])).sum()
    loss.backward()
    tol = 1e-10
    assert_close(y, ty.detach().numpy(), tol, "y")
    assert_close(layer.state[0], thn.detach().numpy(), tol, "h_n")
    assert_close(layer.state[1], tcn.detach().numpy(), tol, "c_n")
    assert_close(dx, tx.grad.numpy(), tol, "dx")
    assert_close(layer.dstate[0], th0.grad.numpy(), tol, "dh0")
    assert_close(layer.dstate[1], tc0.grad.numpy(), tol, "dc0")
    for name, t in tp.items():
        assert_close(layer.grads[name], t.grad.numpy(), tol, name)


def test_peephole_and_bidirectional_layout(rng):
    layer = ConvLSTM(CIN, C, 3, num_layers=2, stride=2, peephole=True, frame_size=(5, 6), bidirectional=True, seed=0)
    assert layer.params["peephole_i_l0"].shape == (C, 3, 3)
    assert layer.params["peephole_o_l1_reverse"].shape == (C, 3, 3)
    assert layer.params["weight_x_l1"].shape == (4 * C, 2 * C, 3, 3)
    assert layer.params["weight_x_l1_reverse"].shape == (4 * C, 2 * C, 3, 3)
    x = rng.standard_normal((B, T, CIN, 5, 6)).astype(np.float32)
    y = layer(x)
    assert y.shape == (B, T, 2 * C, 3, 3) == layer.output_shape(B, T, 5, 6)
    assert layer.state[0].shape == (4, B, C, 3, 3)
    # index layer*D + direction: forward's last step, reverse's first step
    np.testing.assert_array_equal(y[:, -1, :C], layer.state[0][2])
    np.testing.assert_array_equal(y[:, 0, C:], layer.state[0][3])
    layer.return_sequences = False
    last = layer(x)
    np.testing.assert_array_equal(last, np.concatenate([y[:, -1, :C], y[:, 0, C:]], axis=1))


def test_peephole_config_roundtrip():
    layer = ConvLSTM(CIN, C, 3, num_layers=2, peephole=True, frame_size=(4, 6), bidirectional=True, seed=3)
    spec = layer_to_config(layer)
    assert json.loads(json.dumps(spec)) == spec
    clone = layer_from_config(spec)
    assert clone.config() == layer.config()
    for k in layer.params:
        np.testing.assert_array_equal(clone.params[k], layer.params[k])


def test_bad_peephole_input():
    with pytest.raises(ValueError, match=r"frame_size: peephole=True needs frame_size"):
        ConvLSTM(CIN, C, 3, peephole=True)
    with pytest.raises(ValueError, match=r"frame_size"):
        ConvLSTM(CIN, C, 3, peephole=True, frame_size=(0, 4))
    layer = ConvLSTM(CIN, C, 3, peephole=True, frame_size=(HW, HW), seed=0)
    with pytest.raises(ValueError, match=r"x: expected frames of size frame_size=\(5, 5\).*frames \(5, 4\)"):
        layer(np.zeros((B, T, CIN, HW, HW - 1), np.float32))
    with pytest.raises(TypeError, match=r"bidirectional"):
        ConvLSTM(CIN, C, 3, bidirectional="yes")
    bi = ConvLSTM(CIN, C, 3, bidirectional=True, seed=0)
    good = np.zeros((B, T, CIN, HW, HW), np.float32)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\)"):
        bi(good, state=tuple(np.zeros((1, B, C, HW, HW), np.float32) for _ in range(2)))


@pytest.mark.parametrize("kw", [{}, {"bidirectional": True, "num_layers": 2}])
def test_zero_initial_state_skips_exactly(rng, kw, monkeypatch):
    """From state=None the first step's recurrent convolution and its dW_h
    term are skipped (their input is 0): outputs, states and every gradient
    equal those from an explicit zero state, which runs them."""
    import numlstm.kernels.cpu.convlstm as mod

    calls = []
    real = mod.conv2d_forward
    monkeypatch.setattr(mod, "conv2d_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = make(rng, np.float64, **kw)
    x, _, shape = inputs(rng, layer, False)
    zeros = (np.zeros(shape), np.zeros(shape))
    y = layer(x)
    # per layer direction: the input convolution and T - 1 recurrent ones
    assert len(calls) == layer.num_layers * layer.num_directions * T
    dy = rng.standard_normal(y.shape)
    dstate = tuple(rng.standard_normal(shape) for _ in range(2))
    dx = layer.backward(dy, dstate)
    got = (y, dx, *layer.state, *layer.dstate, {k: g.copy() for k, g in layer.grads.items()})
    layer.zero_grad()
    y0 = layer(x, state=zeros)
    dx0 = layer.backward(dy, dstate)
    want = (y0, dx0, *layer.state, *layer.dstate, layer.grads)
    for name, a, b in zip(("y", "dx", "h_n", "c_n", "dh0", "dc0"), got[:6], want[:6], strict=True):
        assert_close(a, b, 1e-12, name)
    for k, g in want[6].items():
        assert_close(got[6][k], g, 1e-12, k)


def test_more_blocks_than_threads(rng, monkeypatch):
    """config.PARALLEL_MAX_CHUNKS above the thread count: the convolutions
    split the batch into that many blocks (each with its own gradient
    accumulator) and give the serial result."""
    from numlstm import config

    layer = make(rng, np.float64)
    x = rng.standard_normal((5, T, CIN, HW, HW))
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    want = (y, dx, {k: g.copy() for k, g in layer.grads.items()})
    monkeypatch.setattr(config, "PARALLEL_MAX_CHUNKS", 4)
    monkeypatch.setattr(config, "CONV_PARALLEL_MIN_MACS", 0)
    layer.zero_grad()
    assert_close(layer(x), want[0], 1e-12, "y")
    assert_close(layer.backward(dy), want[1], 1e-12, "dx")
    for k, g in want[2].items():
        assert_close(layer.grads[k], g, 1e-12, k)
