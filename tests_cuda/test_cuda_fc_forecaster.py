"""FCEncoderForecaster (the FC-LSTM baseline) on the device against the CPU (simulator, float64)."""

import numpy as np

from numlstm.backend import to_numpy
from numlstm.models import FCEncoderForecaster


def test_forward_backward_match_the_cpu():
    rng = np.random.default_rng(0)
    cpu = FCEncoderForecaster(1, 2, 3, hidden_sizes=(3, 2), future_steps=2, dtype=np.float64, seed=1)
    dev = FCEncoderForecaster(1, 2, 3, hidden_sizes=(3, 2), future_steps=2, dtype=np.float64, seed=1).to("cuda")
    x = rng.standard_normal((2, 3, 1, 2, 3))
    y = cpu(x)
    yd = dev(x)
    np.testing.assert_allclose(to_numpy(yd), y, rtol=1e-12, atol=1e-13)
    dy = rng.standard_normal(y.shape)
    dx = cpu.backward(dy)
    dxd = dev.backward(dy)
    np.testing.assert_allclose(to_numpy(dxd), dx, rtol=1e-10, atol=1e-13)
    for k, g in cpu.grads.items():
        np.testing.assert_allclose(to_numpy(dev.grads[k]), g, rtol=1e-10, atol=1e-13, err_msg=k)
