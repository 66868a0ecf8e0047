"""Runs the CUDA tests (tests_cuda/) on Numba's CUDA simulator in their own process.

The simulator must be switched on before numba is imported, so the CUDA
tests cannot share this process; they run in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` and this test asserts that they passed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install -e '.[cuda]')")


def test_cuda_kernels_on_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests_cuda", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, tail
