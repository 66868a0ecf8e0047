"""Pooling layers on the device against the CPU path (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from core_util import TOL, rel
from numba import cuda

from numlstm import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from numlstm.backend import is_device_array, to_numpy

LAUNCHES = {"MAX_BLOCKS": 5}


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
