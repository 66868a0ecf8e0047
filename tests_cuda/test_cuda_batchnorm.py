"""BatchNorm2D on the device against the CPU path (simulator, float64 to 1e-12)."""

import numpy as np
import pytest
from core_util import TOL, rel
from numba import cuda

from numlstm import BatchNorm2D
from numlstm.backend import is_device_array, to_numpy

LAUNCHES = {"MAX_BLOCKS": 3, "REDUCE_THREADS": 4}


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm(affine, training):
    rng = np.random.default_rng(1)
    cpu_layer = BatchNorm2D(3, momentum=0.3, affine=affine, dtype=np.float64)
    if affine:
        cpu_layer.params["weight"][...] = rng.standard_normal(3)
        cpu_layer.params["bias"][...] = rng.standard_normal(3)
    cpu_layer.buffers["running_mean"][...] = rng.standard_normal(3)
    cpu_layer.buffers["running_var"][...] = rng.uniform(0.5, 2, 3)
    gpu_layer = BatchNorm2D(3, momentum=0.3, affine=affine, dtype=np.float64)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda")
    cpu_layer.train(training)
    gpu_layer.train(training)
    x = rng.standard_normal((2, 3, 3, 4)) * 2 + 1
    for _ in range(2):  # the running statistics move twice
        y = cpu_layer(x)
        gy = gpu_layer(x)
    assert is_device_array(gy)
    assert rel(to_numpy(gy), y) < TOL
    for k in ("running_mean", "running_var"):
        assert is_device_array(gpu_layer.buffers[k])
        assert rel(to_numpy(gpu_layer.buffers[k]), cpu_layer.buffers[k]) < TOL
    if not training:
        return
    dy = rng.standard_normal(y.shape)
    dx = cpu_layer.backward(dy)
    gdx = gpu_layer.backward(cuda.to_device(dy))
    assert rel(to_numpy(gdx), dx) < TOL
    for k in cpu_layer.grads:
        assert rel(to_numpy(gpu_layer.grads[k]), cpu_layer.grads[k]) < TOL
    state = gpu_layer.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())


def test_batchnorm_eval_backward_and_float32():
    rng = np.random.default_rng(2)
    cpu_layer = BatchNorm2D(2, dtype=np.float32)
    gpu_layer = BatchNorm2D(2, dtype=np.float32).to("cuda")
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    cpu_layer(x)
    gpu_layer(x)
    # eval mode with a cache (training flag on, batch stats off) is what a frozen BN does
    cpu_layer._use_batch_stats = lambda: False
    gpu_layer._use_batch_stats = lambda: False
    y = cpu_layer(x)
    gy = gpu_layer(x)
    assert rel(to_numpy(gy), y) < 1e-6
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert rel(to_numpy(gpu_layer.backward(dy)), cpu_layer.backward(dy)) < 1e-6
