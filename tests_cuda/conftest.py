"""The CUDA tests: every ``@cuda.jit`` kernel and every layer's CUDA path against the CPU.

Run in their own process, on Numba's CUDA simulator on machines without a GPU::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests_cuda -q

(``tests/test_cuda_simulator.py`` does that from the normal suite). The
simulator runs each CUDA thread as a Python thread, so shapes are tiny and the
launch configuration is patched small (several blocks per launch even so).
"""

import os
import sys

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    try:
        from numba import cuda

        _ok = cuda.is_available()
    except ImportError:
        _ok = False
    if not _ok:
        pytest.exit(
            "tests_cuda needs a GPU or the CUDA simulator: run NUMBA_ENABLE_CUDASIM=1 python -m pytest tests_cuda",
            returncode=4,
        )

# simulator threads hand the GIL over at each syncthreads: a short switch
# interval makes block-synchronising kernels (GEMM, reductions) ~5x faster
sys.setswitchinterval(1e-4)

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(autouse=True)
def small_launches(request, monkeypatch):
    """Launch configurations small enough that tiny inputs still span several blocks.

    A test module that wants other values names them in a module-level dict,
    ``LAUNCHES = {"MAX_BLOCKS": 3}``, applied after these.
    """
    from numlstm.kernels.cuda import config

    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(config, "MAX_BLOCKS", 64)
    monkeypatch.setattr(config, "GEMM_TILE", 4)
    monkeypatch.setattr(config, "GEMM_THREAD_TILE", 2)
    monkeypatch.setattr(config, "GEMM_TILE_K", 3)
    monkeypatch.setattr(config, "GEMM_MIN_BLOCKS", 0)  # tests of the small tiles set it
    monkeypatch.setattr(config, "GEMM_SMALL_TILE", 2)
    monkeypatch.setattr(config, "GEMM_SMALL_THREAD_TILE", 1)
    monkeypatch.setattr(config, "REDUCE_THREADS", 8)
    monkeypatch.setattr(config, "PERSISTENT_THREADS", 4)
    monkeypatch.setattr(config, "PERSISTENT", None)
    # the image kernels' launches
    for name, value in {
        "SPLIT_REDUCE_THREADS": 16,
        "SPLIT_REDUCE_MIN_LANES": 2,
        "ATTENTION_THREADS": 4,
        "CONV_TILE_M": 4,
        "CONV_TILE_N": 4,
        "CONV_TILE_K": 2,
        "CONV_THREAD_TILE": 2,
        "CONV_WGRAD_BLOCKS": 3,
    }.items():
        if hasattr(config, name):
            monkeypatch.setattr(config, name, value)
    for name, value in getattr(request.module, "LAUNCHES", {}).items():
        monkeypatch.setattr(config, name, value)
    return config
