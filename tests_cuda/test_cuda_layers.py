"""Dense and the parameter-free layers on the GPU against the CPU, float64 to 1e-12."""

import numpy as np
import pytest
from core_util import TOL, randomize, rel

import numlstm
from numlstm import backend

LAYERS = {
    "dense": lambda: numlstm.Dense(5, 4, dtype=np.float64, seed=1),
    "dense_nobias": lambda: numlstm.Dense(5, 4, bias=False, dtype=np.float64, seed=1),
    "relu": numlstm.ReLU,
    "tanh": numlstm.Tanh,
    "sigmoid": numlstm.Sigmoid,
    "flatten": lambda: numlstm.Flatten(1),
    "dropout": lambda: numlstm.Dropout(0.4, seed=3),
    "laststep": numlstm.LastStep,
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_cpu(name):
    rng = np.random.default_rng(0)
    cpu, gpu = LAYERS[name](), LAYERS[name]()
    if cpu.params:
        randomize(cpu, gpu)
    gpu.to("cuda")
    x = rng.standard_normal((2, 3, 5)) * 3
    x[0, 0, :2] = [0.0, 40.0]  # ReLU at 0; a sigmoid input far out
    y_cpu, y_gpu = cpu(x), gpu(x)
    assert backend.is_device_array(y_gpu) and rel(y_gpu, y_cpu) < TOL
    dy = rng.standard_normal(y_cpu.shape)
    dx_cpu, dx_gpu = cpu.backward(dy), gpu.backward(backend.to_device(dy, "cuda"))
    assert backend.is_device_array(dx_gpu) and rel(dx_gpu, dx_cpu) < TOL
    for k in cpu.grads:
        assert rel(gpu.grads[k], cpu.grads[k]) < TOL, k
    # evaluation mode: no cache, the identity for dropout
    gpu.eval()
    cpu.eval()
    assert rel(gpu(x), cpu(x)) < TOL


def test_sequential_lstm_dense_matches_cpu():
    def build():
        return numlstm.Sequential(
            [
                numlstm.LSTM(3, 4, dtype=np.float64, seed=0),
                numlstm.Tanh(),
                numlstm.LastStep(),
                numlstm.Dense(4, 2, dtype=np.float64, seed=1),
            ]
        )

    cpu, gpu = build(), build()
    randomize(cpu, gpu)
    gpu.to("cuda")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 3))
    y_cpu, y_gpu = cpu(x), gpu(x)
    assert rel(y_gpu, y_cpu) < TOL
    dy = rng.standard_normal(y_cpu.shape)
    assert rel(gpu.backward(dy), cpu.backward(dy)) < TOL
    for k in cpu.grads:
        assert rel(gpu.grads[k], cpu.grads[k]) < TOL, k


def test_device_input_errors():
    dense = numlstm.Dense(3, 2, seed=0).to("cuda")
    with pytest.raises(ValueError, match="x: expected shape"):
        dense(backend.to_device(np.zeros((2, 4), np.float32), "cuda"))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        dense(np.zeros((2, 3)))
    relu = numlstm.ReLU().to("cuda")
    with pytest.raises(TypeError, match="float32 or float64"):
        relu(backend.to_device(np.zeros((2, 3), np.int64), "cuda"))
