"""Training on the device end to end: the Trainer with an LSTM model and Adam against the CPU trainer."""

import numpy as np
import pytest
from core_util import rel

import numlstm
from numlstm import backend


def _build():
    return numlstm.Sequential(
        [
            numlstm.LSTM(3, 4, num_layers=2, dropout=0.3, dtype=np.float64, seed=1),
            numlstm.LastStep(),
            numlstm.Dense(4, 3, dtype=np.float64, seed=2),
        ]
    )


def _fit(device, x, y):
    model = _build()
    opt = numlstm.optim.Adam(model.parameters(), lr=0.02)
    trainer = numlstm.Trainer(model, "cross_entropy", opt, clip_norm=0.5, seed=0, device=device)
    hist = trainer.fit(x, y, epochs=2, batch_size=3, progress=False, validation_data=(x, y))
    return trainer, hist


def test_trainer_on_device_matches_cpu(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 3))
    y = rng.integers(0, 3, 6)
    t_cpu, h_cpu = _fit("cpu", x, y)
    t_gpu, h_gpu = _fit("cuda", x, y)
    assert t_gpu.device == "cuda" and t_gpu.model[0].device == "cuda"
    for k, v in h_cpu.history.items():
        assert np.allclose(h_gpu.history[k], v, rtol=1e-12, atol=0), k
    for k, v in t_cpu.model.params.items():
        assert rel(t_gpu.model.params[k], v) < 1e-11, k
    p_gpu = t_gpu.predict(x)
    assert isinstance(p_gpu, np.ndarray) and rel(p_gpu, t_cpu.predict(x)) < 1e-11
    # a checkpoint of a device model holds host arrays and resumes on the CPU
    path = tmp_path / "gpu.npz"
    t_gpu.save_checkpoint(path)
    t_back, _ = _fit("cpu", x, y)
    t_back.load_checkpoint(path)
    for k, v in t_back.model.params.items():
        assert rel(t_gpu.model.params[k], v) == 0.0


def test_train_step_transfers(monkeypatch):
    """One host-to-device copy each for the batch's inputs and targets, one scalar back; none per time step."""
    from numba import cuda

    model = numlstm.Sequential(
        [numlstm.LSTM(3, 4, dtype=np.float64, seed=1), numlstm.LastStep(), numlstm.Dense(4, 3, seed=2, dtype=np.float64)]
    )
    trainer = numlstm.Trainer(model, "cross_entropy", numlstm.optim.SGD(model.parameters(), lr=0.1), device="cuda")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 5, 3)), rng.integers(0, 3, 3)
    trainer.train_step(x, y)  # warm: optimizer state allocated
    h2d, d2h = [], []
    real_to_device = cuda.to_device
    monkeypatch.setattr(cuda, "to_device", lambda a, *args, **kw: h2d.append(np.shape(a)) or real_to_device(a, *args, **kw))
    cls = type(backend.empty(1, np.float64, "cuda"))
    real_copy = cls.copy_to_host
    monkeypatch.setattr(cls, "copy_to_host", lambda self, *a, **kw: d2h.append(self.shape) or real_copy(self, *a, **kw))
    trainer.train_step(x, y)
    assert h2d == [(3, 5, 3), (3,)], h2d
    assert len(d2h) == 1, d2h


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device is available"):
        numlstm.Trainer(_build(), "mse", numlstm.optim.SGD(_build().parameters(), lr=0.1), device="cuda")
