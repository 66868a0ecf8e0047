"""The CUDA LSTM (general and persistent paths) against the CPU layer, float64 to 1e-12."""

import numpy as np
import pytest
from core_util import TOL, randomize, rel

import numlstm
from numlstm import backend
from numlstm.kernels.cuda import lstm as klstm

B, T, I, H = 3, 4, 2, 3

# (constructor options, lengths, initial state and final-state gradient)
CASES = [
    ({}, None, False),
    ({"bidirectional": True}, [4, 2, 3], True),
    ({"num_layers": 2, "dropout": 0.4, "return_sequences": False}, [1, 4, 3], True),
    ({"num_layers": 2, "bidirectional": True, "dropout": 0.5, "bias": False}, None, False),
]


def _compare(opts, lengths, with_state, dtype=np.float64, tol=TOL):
    rng = np.random.default_rng(7)
    cpu = numlstm.LSTM(I, H, dtype=dtype, seed=5, **opts)
    gpu = numlstm.LSTM(I, H, dtype=dtype, seed=5, **opts)
    randomize(cpu, gpu)
    gpu.to("cuda")
    LD = cpu.num_layers * cpu.num_directions
    x = rng.standard_normal((B, T, I)).astype(dtype)
    state = tuple(rng.standard_normal((LD, B, H)).astype(dtype) for _ in range(2)) if with_state else None
    y_cpu = cpu(x, state=state, lengths=lengths)
    # device input and device state for the GPU layer
    dstate = backend.to_device(state, "cuda") if with_state else None
    y_gpu = gpu(backend.to_device(x, "cuda"), state=dstate, lengths=lengths)
    assert backend.is_device_array(y_gpu)
    assert rel(y_gpu, y_cpu) < tol
    dy = rng.standard_normal(y_cpu.shape).astype(dtype)
    ds = tuple(rng.standard_normal((LD, B, H)).astype(dtype) for _ in range(2)) if with_state else None
    dx_cpu = cpu.backward(dy, ds)
    dx_gpu = gpu.backward(dy, ds)  # host upstream gradients are accepted too
    assert backend.is_device_array(dx_gpu)
    assert rel(dx_gpu, dx_cpu) < tol
    for i in range(2):
        assert rel(gpu.state[i], cpu.state[i]) < tol
        assert rel(gpu.dstate[i], cpu.dstate[i]) < tol
    for k in cpu.grads:
        assert rel(gpu.grads[k], cpu.grads[k]) < tol, k
    return gpu


@pytest.mark.parametrize("persistent", [False, True], ids=["general", "persistent"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_lstm_matches_cpu(case, persistent, small_launches):
    small_launches.PERSISTENT = persistent
    small_launches.PERSISTENT_ROWS_PER_BLOCK = 2  # blocks of 2 rows, the last one partial (B = 3)
    gpu = _compare(*CASES[case])
    assert gpu.last_plan is persistent


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_persistent_without_shared_weights(rows, small_launches):
    """W_hh too big for the shared-memory budget: the persistent kernel reads it
    from global memory; 1, 2 or 3 batch rows per block (B = 3: a partial last block with 2)."""
    small_launches.PERSISTENT = True
    small_launches.PERSISTENT_MAX_SHARED_BYTES = 0
    small_launches.PERSISTENT_ROWS_PER_BLOCK = rows
    _compare({"bidirectional": True}, [2, 4, 1], True)


def test_float32(small_launches):
    small_launches.PERSISTENT = None  # chosen by the thresholds: B=3, H=3 is persistent
    gpu = _compare({}, None, False, dtype=np.float32, tol=2e-5)
    assert gpu.last_plan is True
    small_launches.PERSISTENT_MAX_BATCH = 2
    gpu = _compare({}, None, False, dtype=np.float32, tol=2e-5)
    assert gpu.last_plan is False


def test_path_choice(small_launches):
    small_launches.PERSISTENT_MAX_BATCH, small_launches.PERSISTENT_MAX_HIDDEN = 4, 64
    assert klstm.use_persistent(4, 64) and not klstm.use_persistent(5, 64) and not klstm.use_persistent(4, 65)
    small_launches.PERSISTENT = False
    assert not klstm.use_persistent(1, 1)


def test_errors_and_cache_on_device():
    lstm = numlstm.LSTM(I, H, dtype=np.float64, seed=0).to("cuda")
    with pytest.raises(RuntimeError, match="no forward pass"):
        lstm.backward(np.zeros((B, T, H)))
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        lstm(backend.to_device(np.zeros((B, T, I), np.float32), "cuda"))
    with pytest.raises(ValueError, match="x: expected shape"):
        lstm(backend.to_device(np.zeros((B, T, I + 1)), "cuda"))
    with pytest.raises(ValueError, match="lengths"):
        lstm(np.zeros((B, T, I)), lengths=[0, 1, 2])
    lstm.eval()
    lstm(np.zeros((B, T, I)))
    assert lstm._cache is None and backend.is_device_array(lstm.state[0])
    lstm.to("cpu")
    assert isinstance(lstm.state[0], np.ndarray)


def test_persistent_default_threads(small_launches):
    """PERSISTENT_THREADS = None: one thread per gate column, rounded up to a warp (32 here)."""
    small_launches.PERSISTENT = True
    small_launches.PERSISTENT_THREADS = None
    assert klstm._persistent_launch(3, H, 8)[2] == 32
    _compare({}, [4, 1, 3], True)
