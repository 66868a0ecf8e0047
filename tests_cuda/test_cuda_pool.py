"""Pooling layers on the device against the CPU path (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from numba import cuda

from numlstm import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from numlstm.backend import is_device_array, to_numpy
from numlstm.kernels.cuda import config

TOL = 1e-12


#: the implicit-GEMM convolution's tiles, small enough for several blocks on tiny inputs
SMALL_CONV_TILES = {"CONV_TILE_M": 4, "CONV_TILE_N": 4, "CONV_TILE_K": 2, "CONV_THREAD_TILE": 2, "CONV_WGRAD_BLOCKS": 3}


@pytest.fixture(autouse=True)
def _small_launches(monkeypatch):
    for name, value in SMALL_CONV_TILES.items():
        monkeypatch.setattr(config, name, value)
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(config, "MAX_BLOCKS", 5)


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MaxPool2D(2),
        lambda: MaxPool2D(3, stride=(1, 2), padding=1),
        lambda: AvgPool2D((3, 2), stride=(2, 1), padding=(1, 0)),
        lambda: GlobalAvgPool2D(),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pool_layer(make, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5)).astype(dtype)
    cpu_layer, gpu_layer = make(), make().to("cuda")
    y = cpu_layer(x)
    gy = gpu_layer(cuda.to_device(x))
    assert is_device_array(gy) and gy.dtype == dtype
    tol = TOL if dtype == np.float64 else 1e-6
    assert rel(to_numpy(gy), y) < tol
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = cpu_layer.backward(dy)
    gdx = gpu_layer.backward(dy)
    assert is_device_array(gdx)
    assert rel(to_numpy(gdx), dx) < tol
    assert gpu_layer.dtype == dtype
