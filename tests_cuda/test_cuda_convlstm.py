"""ConvLSTM on the device against the CPU path (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from core_util import TOL, rel
from numba import cuda

from numlstm import ConvLSTM
from numlstm.backend import is_device_array, to_numpy

LAUNCHES = {"MAX_BLOCKS": 6, "REDUCE_THREADS": 4}


def _pair(**kw):
    cpu_layer = ConvLSTM(seed=5, **kw)
    gpu_layer = ConvLSTM(seed=5, **kw).to("cuda")
    return cpu_layer, gpu_layer


def _compare(cpu_layer, gpu_layer, x, state=None, dstate=True, tol=TOL):
    rng = np.random.default_rng(9)
    y = cpu_layer(x, state=state)
    gy = gpu_layer(cuda.to_device(x), state=state)
    assert is_device_array(gy)
    assert rel(to_numpy(gy), y) < tol
    for a, b in zip(gpu_layer.state, cpu_layer.state, strict=True):
        assert is_device_array(a)
        assert rel(to_numpy(a), b) < tol
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    ds = None
    if dstate:
        ds = tuple(rng.standard_normal(s.shape).astype(x.dtype) for s in cpu_layer.state)
    dx = cpu_layer.backward(dy, ds)
    gdx = gpu_layer.backward(cuda.to_device(dy), ds)
    assert is_device_array(gdx)
    assert rel(to_numpy(gdx), dx) < tol
    for a, b in zip(gpu_layer.dstate, cpu_layer.dstate, strict=True):
        assert rel(to_numpy(a), b) < tol
    for k in cpu_layer.grads:
        assert rel(to_numpy(gpu_layer.grads[k]), cpu_layer.grads[k]) < tol, k


def test_convlstm_state_and_dstate():
    cpu_layer, gpu_layer = _pair(in_channels=2, hidden_channels=2, kernel_size=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 2, 4, 5))
    state = tuple(rng.standard_normal((1, 2, 2, 4, 5)) for _ in range(2))
    _compare(cpu_layer, gpu_layer, x, state=state)


def test_convlstm_peephole_bidirectional_two_layers_last_step():
    kw = dict(
        in_channels=1, hidden_channels=2, kernel_size=3, num_layers=2, bidirectional=True, peephole=True,
        frame_size=(4, 4), return_sequences=False, stride=2, dtype=np.float64,
    )  # fmt: skip
    cpu_layer, gpu_layer = _pair(**kw)
    x = np.random.default_rng(1).standard_normal((2, 2, 1, 4, 4))
    _compare(cpu_layer, gpu_layer, x, dstate=False)


def test_convlstm_even_kernel_dilation():
    cpu_layer, gpu_layer = _pair(in_channels=2, hidden_channels=1, kernel_size=(2, 3), dilation=2, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((1, 2, 2, 4, 5))
    _compare(cpu_layer, gpu_layer, x)


def test_convlstm_float32():
    cpu_layer, gpu_layer = _pair(in_channels=1, hidden_channels=2, kernel_size=3, peephole=True, frame_size=(3, 3))
    x = np.random.default_rng(3).standard_normal((2, 2, 1, 3, 3)).astype(np.float32)
    _compare(cpu_layer, gpu_layer, x, tol=1e-5)


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gate_kernels_match_the_cpu_kernels(peephole, dtype):
    """The fused gate kernels alone, against their CPU twins (numlstm.kernels.cpu.convlstm)."""
    from numlstm.kernels.cpu.convlstm import convlstm_gates_backward, convlstm_gates_forward
    from numlstm.kernels.cuda import convlstm as gk

    rng = np.random.default_rng(7)
    B, C, P = 2, 2, 5
    approx = dtype == np.float32
    tol = TOL if dtype == np.float64 else 1e-5

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    gt, rec, c = r(B, 4 * C, P), r(B, 4 * C, P), r(B, C, P)
    wci, wcf, wco = (r(C, P) for _ in range(3)) if peephole else (np.empty((0, 0), dtype),) * 3
    cpt, ht = np.empty((B, C, P), dtype), np.empty((B, C, P), dtype)
    d = cuda.to_device
    g_gt, g_c = d(gt), d(c)
    g_cpt, g_ht = cuda.device_array((B, C, P), dtype), cuda.device_array((B, C, P), dtype)
    gk.convlstm_gates_forward(g_gt, d(rec), g_c, g_cpt, g_ht, d(wci), d(wcf), d(wco), approx)
    convlstm_gates_forward(gt, rec, c, cpt, ht, wci, wcf, wco, approx)
    for a, b in ((g_gt, gt), (g_c, c), (g_cpt, cpt), (g_ht, ht)):
        assert rel(to_numpy(a), b) < tol
    # backward, with the step's output gradient fused on the device (added to dh on the CPU)
    dh, dc, dy = r(B, C, P), r(B, C, P), r(B, 3 * C, P)
    dws = [np.zeros((C, P), dtype) if peephole else np.empty((0, 0), dtype) for _ in range(3)]
    g_dws = [d(w) for w in dws]
    g_at, g_dc = d(gt), d(dc)
    gk.convlstm_gates_backward(g_at, d(cpt), d(dh), g_dc, d(wci), d(wcf), d(wco), *g_dws, approx, dy=d(dy), dy_off=C)
    convlstm_gates_backward(gt, cpt, dh + dy[:, C : 2 * C], dc, wci, wcf, wco, *dws, approx)
    assert rel(to_numpy(g_at), gt) < tol
    assert rel(to_numpy(g_dc), dc) < tol
    if peephole:
        for a, b in zip(g_dws, dws, strict=True):
            assert rel(to_numpy(a), b) < tol
