"""numlstm.backend without a GPU: import hygiene, device names, clear errors."""

import subprocess
import sys

import numpy as np
import pytest

import numlstm
from numlstm import backend


def test_import_numlstm_does_not_import_numba_cuda():
    code = "import sys, numlstm, numlstm.backend; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("bad", [None, 0, ["cuda"]])
def test_check_device_type_errors(bad):
    with pytest.raises(TypeError, match="device: expected 'cpu' or 'cuda'"):
        backend.check_device(bad)


def test_check_device_names():
    assert backend.check_device("cpu") == "cpu" and backend.check_device(" CPU ") == "cpu"
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda', got 'gpu'"):
        backend.check_device("gpu")


def test_host_helpers():
    a = np.arange(3.0)
    assert not backend.is_device_array(a) and backend.device_of(a) == "cpu"
    assert backend.to_numpy(a) is a
    assert backend.to_device(a, "cpu") is a
    assert backend.empty((2,), np.float32).dtype == np.float32
    assert np.array_equal(backend.zeros((2,), np.float64), [0.0, 0.0])


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="'cuda' was asked for but no CUDA device is available"):
        backend.check_device("cuda")
    layer = numlstm.LSTM(2, 3, seed=0)
    with pytest.raises(RuntimeError, match="device: 'cuda' was asked for"):
        layer.to("cuda")
    assert layer.device == "cpu"
    model = numlstm.Sequential([numlstm.Dense(2, 2, seed=0)])
    with pytest.raises(RuntimeError, match="no CUDA device"):
        model.to("cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        numlstm.Trainer(model, "mse", numlstm.optim.SGD(model.parameters(), lr=0.1), device="cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        backend.cuda_kernels()


def test_to_cpu_is_a_no_op_and_parameters_are_persistent():
    layer = numlstm.Dense(2, 3, seed=0)
    w = layer.params["weight"]
    ps = layer.parameters()
    assert layer.to("cpu") is layer and layer.params["weight"] is w
    assert layer.parameters()[0] is ps[0] and ps[0].data is w
    model = numlstm.Sequential([layer, numlstm.ReLU()])
    assert model.parameters()[0] is layer.parameters("0.")[0]
    assert [p.name for p in model.parameters()] == ["0.weight", "0.bias"]
