"""Attention layers on the device against the CPU path (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from core_util import TOL, rel
from numba import cuda

from numlstm import AttentionLSTM, TemporalAttention, attention_penalty
from numlstm.backend import is_device_array, to_numpy

LAUNCHES = {"MAX_BLOCKS": 3}


def _randomise(layer, rng):
    for v in layer.params.values():
        v[...] = rng.uniform(-0.8, 0.8, v.shape)


@pytest.mark.parametrize(
    "kw, seq_maps, with_x",
    [
        ({"gate": True, "return_sequences": True}, False, False),
        ({"gate": False, "return_sequences": False, "input_size": 2}, True, True),
        ({"gate": True, "return_sequences": False, "input_size": 1}, False, True),
    ],
)
def test_attention_lstm(kw, seq_maps, with_x):
    rng = np.random.default_rng(0)
    B, T, L, D, H, A = 3, 2, 3, 2, 2, 3
    cpu_layer = AttentionLSTM(D, H, A, dtype=np.float64, seed=1, **kw)
    _randomise(cpu_layer, rng)
    gpu_layer = AttentionLSTM(D, H, A, dtype=np.float64, seed=1, **kw)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda")
    a = rng.standard_normal((B, T, L, D) if seq_maps else (B, L, D))
    x = rng.standard_normal((B, T, kw.get("input_size", 0))) if with_x else None
    steps = None if (seq_maps or with_x) else T
    state = tuple(rng.standard_normal((1, B, H)) for _ in range(2))
    y = cpu_layer(a, x=x, steps=steps, state=state)
    gy = gpu_layer(cuda.to_device(a), x=x, steps=steps, state=state)
    assert is_device_array(gy)
    assert rel(to_numpy(gy), y) < TOL
    assert rel(to_numpy(gpu_layer.attention), cpu_layer.attention) < TOL
    for g, c in zip(gpu_layer.state, cpu_layer.state, strict=True):
        assert rel(to_numpy(g), c) < TOL
    dy = rng.standard_normal(y.shape)
    dstate = tuple(rng.standard_normal((1, B, H)) for _ in range(2))
    _, dattn = attention_penalty(cpu_layer.attention, 0.7)
    value, gdattn = attention_penalty(gpu_layer.attention, 0.7)
    assert is_device_array(gdattn)
    assert abs(value - attention_penalty(cpu_layer.attention, 0.7)[0]) < 1e-12
    assert rel(to_numpy(gdattn), dattn) < TOL
    da = cpu_layer.backward(dy, dstate, dattn)
    gda = gpu_layer.backward(cuda.to_device(dy), dstate, gdattn)
    assert is_device_array(gda)
    assert rel(to_numpy(gda), da) < TOL
    if with_x:
        assert rel(to_numpy(gpu_layer.dx), cpu_layer.dx) < TOL
    for g, c in zip(gpu_layer.dstate, cpu_layer.dstate, strict=True):
        assert rel(to_numpy(g), c) < TOL
    for k in cpu_layer.grads:
        assert rel(to_numpy(gpu_layer.grads[k]), cpu_layer.grads[k]) < TOL, k


def test_attention_lstm_float32():
    rng = np.random.default_rng(3)
    cpu_layer = AttentionLSTM(2, 3, 2, seed=2)
    gpu_layer = AttentionLSTM(2, 3, 2, seed=2).to("cuda")
    a = rng.standard_normal((2, 3, 2)).astype(np.float32)
    y = cpu_layer(a, steps=2)
    gy = gpu_layer(a, steps=2)
    assert rel(to_numpy(gy), y) < 1e-5
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert rel(to_numpy(gpu_layer.backward(dy)), cpu_layer.backward(dy)) < 1e-5


@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_temporal_attention(lengths):
    rng = np.random.default_rng(4)
    cpu_layer = TemporalAttention(3, 2, dtype=np.float64, seed=0)
    _randomise(cpu_layer, rng)
    gpu_layer = TemporalAttention(3, 2, dtype=np.float64, seed=0)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda")
    x = rng.standard_normal((2, 3, 3))
    y = cpu_layer(x, lengths)
    gy = gpu_layer(cuda.to_device(x), lengths)
    assert rel(to_numpy(gy), y) < TOL
    assert rel(to_numpy(gpu_layer.attention), cpu_layer.attention) < TOL
    dy = rng.standard_normal(y.shape)
    dattn = rng.standard_normal((2, 3))
    dx = cpu_layer.backward(dy, dattn)
    gdx = gpu_layer.backward(dy, cuda.to_device(dattn))
    assert rel(to_numpy(gdx), dx) < TOL
    for k in cpu_layer.grads:
        assert rel(to_numpy(gpu_layer.grads[k]), cpu_layer.grads[k]) < TOL, k


def test_time_loop_kernels_match_the_cpu_kernels():
    """The attention-LSTM time loops alone, against their CPU twins (numlstm.kernels.cpu.attention)."""
    from numlstm.kernels.cpu import attention as cpu
    from numlstm.kernels.cuda import attention as gpu

    rng = np.random.default_rng(11)
    T, B, L, D, H, A, I = 3, 2, 3, 2, 2, 2, 1

    def r(*shape):
        return rng.uniform(-0.9, 0.9, shape)

    a, p, xproj = r(T, B, L, D), r(T, B, L, A), r(T, B, 4 * H)
    w_rec_t, w_iz_t, v, h0, c0 = r(H, 4 * H + A + 1), r(D, 4 * H), r(A), r(B, H), r(B, H)
    outs = [np.zeros((T, B, I + D))] + [np.empty(s) for s in [(T, B, H)] * 2 + [(T, B, 4 * H), (T, B, H)]]
    outs += [np.empty(s) for s in [(T, B, L), (T, B, L, A), (T, B), (T, B, D), (T, B, H), (B, H), (B, H)]]
    g_outs = [cuda.to_device(o) for o in outs]
    d = cuda.to_device
    cpu.attention_lstm_forward_loop(a, p, xproj, w_rec_t, w_iz_t, v, 0.3, True, False, h0, c0, *outs)
    gpu.attention_lstm_forward_loop(d(a), d(p), d(xproj), d(w_rec_t), d(w_iz_t), d(v), 0.3, True, False, d(h0), d(c0), *g_outs)
    for g, c in zip(g_outs, outs, strict=True):
        assert rel(to_numpy(g), c) < TOL
    inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn = outs
    w_hh, w_q, w_iz = r(4 * H, H), r(A + 1, H), r(4 * H, D)
    dy, dattn, dhn, dcn = r(T, B, H), r(T, B, L), r(B, H), r(B, H)
    grads = [np.empty((T, B, 4 * H)), np.empty((T, B, A + 1)), np.zeros((T, B, L, A)), np.zeros((T, B, L, D))]
    grads += [np.zeros(A), np.empty((B, H)), np.empty((B, H))]
    g_grads = [d(g) for g in grads]
    saved = (gates, cprev, tanh_c, alpha, s, beta, z)
    cpu.attention_lstm_backward_loop(a, w_hh, w_q, w_iz, v, True, *saved, dy, dattn, True, dhn, dcn, *grads)
    gpu.attention_lstm_backward_loop(
        d(a), d(w_hh), d(w_q), d(w_iz), d(v), True, *(d(x) for x in saved), d(dy), d(dattn), True, d(dhn), d(dcn), *g_grads
    )
    for g, c in zip(g_grads, grads, strict=True):
        assert rel(to_numpy(g), c) < TOL
