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

    for name, value in config.SIMULATOR_LAUNCHES.items():
        monkeypatch.setattr(config, name, value)
    monkeypatch.setattr(config, "MAX_BLOCKS", 64)
    monkeypatch.setattr(config, "GEMM_MIN_BLOCKS", 0)  # tests of the small tiles set it
    monkeypatch.setattr(config, "PERSISTENT", None)
    for name, value in getattr(request.module, "LAUNCHES", {}).items():
        monkeypatch.setattr(config, name, value)
    return config
