"""numlstm.warmup compiles the kernels of every part it names, for every dtype, and checks its arguments."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import numlstm

CHECK = """
import numpy as np, numlstm
from numlstm.kernels.cpu import attention, conv, lstm, optim

def has(dispatcher, dtype):
    want = np.dtype(dtype).name
    return any(str(getattr(sig[0], "dtype", "")) == want for sig in dispatcher.signatures)

kernels = [lstm.lstm_forward_rows, lstm.lstm_backward_rows, optim.adam_update, conv.conv2d_forward_work,
           conv.conv2d_backward_work,
           conv.maxpool2d_forward, conv.avgpool2d_backward, attention.attention_lstm_forward_loop,
           attention.attention_lstm_backward_loop]
dtype = np.{dtype}
assert not any(has(k, dtype) for k in kernels)  # a fresh process: nothing loaded yet
numlstm.warmup(dtypes=(dtype,))
missing = [k.py_func.__name__ for k in kernels if not has(k, dtype)]
assert not missing, missing
import numba
from numlstm.kernels.cpu import sync
if numba.get_num_threads() > 1:  # the thread pool is started, its spin-waits compiled
    assert sync.worker_wait.signatures and sync.spin_until_at_least.signatures
print("ok")
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_warmup_compiles_every_part(dtype):
    # in a fresh process, so that kernels compiled by other tests cannot stand in for warmup's
    out = subprocess.run([sys.executable, "-c", CHECK.replace("{dtype}", dtype)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_warmup_arguments():
    numlstm.warmup(dtypes=(np.float64,), parts="lstm")
    with pytest.raises(ValueError, match="parts: expected names from"):
        numlstm.warmup(parts=("gpu",))
    with pytest.raises(TypeError, match="dtypes"):
        numlstm.warmup(dtypes=(np.int32,))
