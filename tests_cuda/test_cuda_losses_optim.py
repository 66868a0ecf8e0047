"""Losses, optimizers and gradient clipping on device arrays against the CPU, float64 to 1e-12."""

import numpy as np
import pytest
from core_util import TOL, rel

import numlstm
from numlstm import backend, losses, optim


def _loss_cases(rng):
    p = rng.standard_normal((3, 4, 5)) * 3
    labels = rng.integers(0, 5, (3, 4))
    labels[0, 1] = -100
    return [
        ("mse", lambda r: losses.MSELoss(r), p, rng.standard_normal(p.shape)),
        ("bce", lambda r: losses.BCEWithLogitsLoss(r), p, rng.random(p.shape)),
        ("bce_pos", lambda r: losses.BCEWithLogitsLoss(r, pos_weight=[0.5, 1, 2, 3, 1.5]), p, rng.random(p.shape)),
        ("ce", lambda r: losses.CrossEntropyLoss(r), p, labels),
        ("ce_smooth", lambda r: losses.CrossEntropyLoss(r, label_smoothing=0.1), p, labels),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_cpu(reduction):
    rng = np.random.default_rng(0)
    for name, make, pred, target in _loss_cases(rng):
        cpu, gpu = make(reduction), make(reduction)
        v_cpu = cpu(pred, target)
        v_gpu = gpu(backend.to_device(pred, "cuda"), target)
        if reduction == "none":
            assert backend.is_device_array(v_gpu) and rel(v_gpu, v_cpu) < TOL, name
            dout = rng.standard_normal(np.shape(v_cpu))
            g_cpu, g_gpu = cpu.backward(dout), gpu.backward(backend.to_device(dout, "cuda"))
        else:
            assert isinstance(v_gpu, float) and abs(v_gpu - v_cpu) <= TOL * max(1.0, abs(v_cpu)), name
            g_cpu, g_gpu = cpu.backward(0.7), gpu.backward(0.7)
        assert backend.is_device_array(g_gpu) and rel(g_gpu, g_cpu) < TOL, name


def test_loss_target_checks_on_device():
    ce = losses.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
        ce(backend.to_device(np.zeros((2, 3)), "cuda"), np.array([0, 3]))
    bce = losses.BCEWithLogitsLoss()
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        bce(backend.to_device(np.zeros(2), "cuda"), backend.to_device(np.array([0.5, 2.0]), "cuda"))


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd_nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers_match_cpu(name):
    rng = np.random.default_rng(1)
    cpu = numlstm.Dense(3, 4, dtype=np.float64, seed=0)
    gpu = numlstm.Dense(3, 4, dtype=np.float64, seed=0)
    o_cpu = OPTIMIZERS[name](cpu.parameters())
    o_gpu = OPTIMIZERS[name](gpu.parameters())  # built before .to(): stays valid
    gpu.to("cuda")
    for _ in range(3):
        for k in cpu.grads:
            g = rng.standard_normal(cpu.grads[k].shape)
            cpu.grads[k][...] = g
            gpu.grads[k].copy_to_device(g)
        o_cpu.step()
        o_gpu.step()
    for k in cpu.params:
        assert rel(gpu.params[k], cpu.params[k]) < TOL, k
    s_cpu, s_gpu = o_cpu.state_dict(), o_gpu.state_dict()
    for k, v in s_cpu.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            assert isinstance(s_gpu[k], np.ndarray) and rel(s_gpu[k], v) < TOL, k
    o_gpu.zero_grad()
    assert all(np.all(backend.to_numpy(p.grad) == 0) for p in o_gpu.params)


@pytest.mark.parametrize("norm_type", [2.0, 1.5, float("inf")])
def test_clip_grad_norm_matches_cpu(norm_type):
    rng = np.random.default_rng(2)
    cpu = numlstm.Dense(3, 4, dtype=np.float64, seed=0)
    gpu = numlstm.Dense(3, 4, dtype=np.float64, seed=0).to("cuda")
    for k in cpu.grads:
        g = rng.standard_normal(cpu.grads[k].shape)
        cpu.grads[k][...] = g
        gpu.grads[k].copy_to_device(g)
    n_cpu = optim.clip_grad_norm(cpu.parameters(), 0.5, norm_type)
    n_gpu = optim.clip_grad_norm(gpu.parameters(), 0.5, norm_type)
    assert abs(n_gpu - n_cpu) <= TOL * n_cpu
    for k in cpu.grads:
        assert rel(gpu.grads[k], cpu.grads[k]) < TOL
