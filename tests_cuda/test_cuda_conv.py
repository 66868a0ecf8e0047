"""The CUDA convolution and pooling kernels against the CPU kernels (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from core_util import TOL, rel
from numba import cuda

from numlstm.kernels.cpu import conv as cpu
from numlstm.kernels.cuda import config
from numlstm.kernels.cuda import conv as gpu

LAUNCHES = {"MAX_BLOCKS": 5, "REDUCE_THREADS": 4}


# (C, O, H, W, k, stride, pads, dilation)
CASES = [
    (2, 3, 5, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 2, 5, 6, (2, 3), (2, 1), (0, 1, 1, 0), (1, 2)),  # even kernel, asymmetric pads, stride, dilation
    (1, 5, 6, 5, (3, 2), (1, 2), (2, 0, 0, 1), (2, 1)),  # 5 output channels: a partial channel tile
]


@pytest.mark.parametrize("implicit_gemm", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_forward_backward(case, implicit_gemm, monkeypatch):
    monkeypatch.setattr(config, "CONV_IMPLICIT_GEMM", implicit_gemm)
    C, O, H, W, (kh, kw), stride, pads, dil = case
    rng = np.random.default_rng(0)
    N = 2
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, kh, kw))
    b = rng.standard_normal(O)
    ho = cpu.conv_output_size(H, kh, stride[0], pads[0], pads[1], dil[0])
    wo = cpu.conv_output_size(W, kw, stride[1], pads[2], pads[3], dil[1])
    y = np.empty((N, O, ho, wo))
    cpu.conv2d_forward(x, w, b, stride, pads, dil, y)
    dy = rng.standard_normal(y.shape)
    dx = np.empty_like(x)
    dw = rng.standard_normal(w.shape)
    db = rng.standard_normal(O)
    dw0, db0 = dw.copy(), db.copy()
    cpu.conv2d_backward(x, w, dy, stride, pads, dil, dx, dw, db, True)

    d = cuda.to_device
    gy = cuda.device_array(y.shape)
    gpu.conv2d_forward(d(x), d(w), d(b), stride, pads, dil, gy)
    assert rel(gy.copy_to_host(), y) < TOL
    gpu.conv2d_forward(d(x), d(w), cuda.device_array(0), stride, pads, dil, gy)  # no bias
    assert rel(gy.copy_to_host(), y - b[None, :, None, None]) < TOL
    gdx = cuda.device_array(x.shape)
    gdw, gdb = d(dw0), d(db0)
    gpu.conv2d_backward(d(x), d(w), d(dy), stride, pads, dil, gdx, gdw, gdb, True)
    assert rel(gdx.copy_to_host(), dx) < TOL
    assert rel(gdw.copy_to_host(), dw) < TOL
    assert rel(gdb.copy_to_host(), db) < TOL


def test_conv2d_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    y = np.empty((2, 2, 4, 4), np.float32)
    cpu.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), y)
    gy = cuda.device_array(y.shape, np.float32)
    gpu.conv2d_forward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), (1, 1), (1, 1, 1, 1), (1, 1), gy)
    out = gy.copy_to_host()
    assert out.dtype == np.float32
    assert rel(out, y) < 1e-5


# (k, stride, pad)
POOLS = [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1)), ((3, 2), (2, 1), (1, 0))]


@pytest.mark.parametrize("pool", POOLS)
def test_pooling(pool):
    (kh, kw), (sh, sw), (ph, pw) = pool
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 5, 5))
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie: the first maximum wins
    ho = cpu.conv_output_size(5, kh, sh, ph, ph, 1)
    wo = cpu.conv_output_size(5, kw, sw, pw, pw, 1)
    out = np.empty((2, 2, ho, wo))
    arg = np.empty(out.shape, np.int64)
    cpu.maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, out, arg)
    dy = rng.standard_normal(out.shape)
    dx = np.empty_like(x)
    cpu.maxpool2d_backward(dy, arg, dx)
    gout = cuda.device_array(out.shape)
    garg = cuda.device_array(out.shape, np.int64)
    gpu.maxpool2d_forward(cuda.to_device(x), kh, kw, sh, sw, ph, pw, gout, garg)
    assert np.array_equal(gout.copy_to_host(), out)
    assert np.array_equal(garg.copy_to_host(), arg)
    gdx = cuda.device_array(x.shape)
    gpu.maxpool2d_backward(cuda.to_device(dy), garg, gdx, kh, kw, sh, sw, ph, pw)
    assert rel(gdx.copy_to_host(), dx) < TOL

    cpu.avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, out)
    cpu.avgpool2d_backward(dy, kh, kw, sh, sw, ph, pw, dx)
    gpu.avgpool2d_forward(cuda.to_device(x), kh, kw, sh, sw, ph, pw, gout)
    assert rel(gout.copy_to_host(), out) < TOL
    gpu.avgpool2d_backward(cuda.to_device(dy), kh, kw, sh, sw, ph, pw, gdx)
    assert rel(gdx.copy_to_host(), dx) < TOL


# -- the Conv2D layer on the device -----------------------------------------------------------------
def _layer_pair(make):
    cpu_layer, gpu_layer = make(), make()
    gpu_layer.to("cuda")
    return cpu_layer, gpu_layer


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "padding": "same"},
        {"kernel_size": (2, 3), "stride": (2, 1), "padding": (0, 1, 1, 0), "dilation": (1, 2)},
        {"kernel_size": 2, "padding": "same", "bias": False},
    ],
)
def test_conv2d_layer(kwargs):
    from numlstm import Conv2D
    from numlstm.backend import is_device_array, to_numpy

    cpu_layer, gpu_layer = _layer_pair(lambda: Conv2D(2, 3, dtype=np.float64, seed=3, **kwargs))
    rng = np.random.default_rng(4)
    if "bias" in cpu_layer.params:
        cpu_layer.params["bias"][...] = rng.standard_normal(3)
        gpu_layer.load_state_dict(cpu_layer.state_dict())
    x = rng.standard_normal((2, 2, 5, 6))
    y = cpu_layer(x)
    gy = gpu_layer(x)  # host input: copied once
    assert is_device_array(gy)
    assert rel(to_numpy(gy), y) < TOL
    dy = rng.standard_normal(y.shape)
    dx = cpu_layer.backward(dy)
    gdx = gpu_layer.backward(cuda.to_device(dy))
    assert is_device_array(gdx)
    assert rel(to_numpy(gdx), dx) < TOL
    for k in cpu_layer.grads:
        assert rel(to_numpy(gpu_layer.grads[k]), cpu_layer.grads[k]) < TOL
    # device input, and errors name the argument
    gpu_layer(cuda.to_device(x))
    with pytest.raises(ValueError, match="dy"):
        gpu_layer.backward(cuda.to_device(dy[:1]))
    with pytest.raises(TypeError, match="x"):
        gpu_layer(cuda.to_device(x.astype(np.float32)))
