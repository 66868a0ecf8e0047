"""Optimizers, clip_grad_norm and schedules: numpy references, PyTorch agreement, state round trips, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import numlstm
from numlstm.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    ReduceLROnPlateau,
    RMSprop,
    StepLR,
    clip_grad_norm,
)

SHAPES = [(3, 4), (5,)]


def make_params(rng, dtype=np.float64, shapes=SHAPES):
    return [numlstm.Parameter(f"p{i}", rng.standard_normal(s).astype(dtype), np.zeros(s, dtype)) for i, s in enumerate(shapes)]


def random_grads(rng, params, steps):
    """steps lists of non-zero gradients, one per parameter."""
    out = []
    for _ in range(steps):
        out.append([(rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)).astype(p.data.dtype) for p in params])
    return out


def run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g
        opt.step()


# -- plain numpy references (textbook forms) -------------------------------------------------------


def sgd_ref(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p, buf = p.copy(), None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def adam_ref(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    p = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    b1, b2 = betas
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def rmsprop_ref(p, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    p = p.copy()
    v, buf = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        step = g / (np.sqrt(v) + eps)
        if momentum > 0:
            buf = momentum * buf + step
            step = buf
        p = p - lr * step
    return p


CASES = [
    ("sgd", SGD, sgd_ref, {"lr": 0.1}),
    ("sgd-momentum-wd", SGD, sgd_ref, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("sgd-nesterov-wd", SGD, sgd_ref, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adam", Adam, adam_ref, {"lr": 0.01}),
    ("adam-l2", Adam, adam_ref, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adam-beta1-small", Adam, adam_ref, {"lr": 0.01, "betas": (0.3, 0.9)}),  # the other lerp branch
    ("adamw", AdamW, adam_ref, {"lr": 0.01, "weight_decay": 0.1}),
    ("rmsprop", RMSprop, rmsprop_ref, {"lr": 0.01}),
    ("rmsprop-momentum-wd", RMSprop, rmsprop_ref, {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.05, "momentum": 0.9}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_against_numpy_reference(rng, case):
    _, cls, ref, kwargs = case
    params = make_params(rng)
    start = [p.data.copy() for p in params]
    grads = random_grads(rng, params, 3)
    run(cls(params, **kwargs), params, grads)
    ref_kwargs = dict(kwargs, decoupled=True) if cls is AdamW else kwargs
    for i, p in enumerate(params):
        expected = ref(start[i], [g[i] for g in grads], **ref_kwargs)
        np.testing.assert_allclose(p.data, expected, rtol=1e-13, atol=1e-15)


def test_sgd_by_hand():
    # p = 1, g = 1 every step, momentum 0.5, lr 0.1: buffers 1, 1.5, 1.75
    p = numlstm.Parameter("w", np.array([1.0]), np.array([1.0]))
    opt = SGD([p], lr=0.1, momentum=0.5)
    expected = [0.9, 0.75, 0.575]
    for e in expected:
        opt.step()
        assert p.data[0] == pytest.approx(e, rel=1e-15)
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], [1.75])


def test_adam_first_step_is_lr_times_sign():
    # bias correction makes the first step lr * g / (|g| + eps') whatever the betas
    p = numlstm.Parameter("w", np.array([1.0, -2.0]), np.array([0.5, -3.0]))
    Adam([p], lr=0.1, betas=(0.7, 0.95), eps=1e-12).step()
    np.testing.assert_allclose(p.data, [0.9, -1.9], rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_float32(rng, case):
    _, cls, ref, kwargs = case
    params = make_params(rng, np.float32)
    start = [p.data.astype(np.float64) for p in params]
    grads = random_grads(rng, params, 3)
    run(cls(params, **kwargs), params, grads)
    ref_kwargs = dict(kwargs, decoupled=True) if cls is AdamW else kwargs
    for i, p in enumerate(params):
        assert p.data.dtype == np.float32
        assert all(b.dtype == np.float32 for b in (params[i].grad,))
        expected = ref(start[i], [g[i].astype(np.float64) for g in grads], **ref_kwargs)
        np.testing.assert_allclose(p.data, expected, rtol=1e-5, atol=1e-6)


# -- PyTorch ------------------------------------------------------------------------------------

TORCH_CASES = [
    ("sgd", SGD, "SGD", {"lr": 0.1}),
    ("sgd-momentum", SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("sgd-momentum-wd", SGD, "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("sgd-nesterov-wd", SGD, "SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adam", Adam, "Adam", {"lr": 0.01}),
    ("adam-l2", Adam, "Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adam-beta1-small", Adam, "Adam", {"lr": 0.01, "betas": (0.3, 0.9)}),
    ("adamw", AdamW, "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw-default", AdamW, "AdamW", {}),
    ("rmsprop", RMSprop, "RMSprop", {"lr": 0.01}),
    ("rmsprop-wd", RMSprop, "RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.05}),
    ("rmsprop-momentum-wd", RMSprop, "RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.05, "momentum": 0.9}),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch(rng, case):
    torch = pytest.importorskip("torch")
    _, cls, tname, kwargs = case
    params = make_params(rng)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = cls(params, **kwargs)
    topt = getattr(torch.optim, tname)(tparams, foreach=False, **kwargs)
    for step_grads in random_grads(rng, params, 5):
        for p, tp, g in zip(params, tparams, step_grads, strict=True):
            p.grad[...] = g
            tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams, strict=True):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_lstm_parameters_are_updated_in_place(rng):
    lstm = numlstm.LSTM(3, 2, dtype=np.float64, seed=0)
    arrays = {k: v for k, v in lstm.params.items()}
    before = {k: v.copy() for k, v in lstm.params.items()}
    opt = Adam(lstm.parameters(), lr=0.1)
    y = lstm(rng.standard_normal((2, 4, 3)))
    lstm.backward(np.ones_like(y))
    opt.step()
    for k, v in lstm.params.items():
        assert v is arrays[k]
        assert not np.array_equal(v, before[k])
    opt.zero_grad()
    assert all(np.all(g == 0) for g in lstm.grads.values())


# -- state_dict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip_is_bit_identical(rng, case, tmp_path):
    _, cls, _, kwargs = case
    params_a = make_params(rng)
    params_b = [numlstm.Parameter(p.name, p.data.copy(), p.grad.copy()) for p in params_a]
    grads = random_grads(rng, params_a, 5)
    opt_a = cls(params_a, **kwargs)
    run(opt_a, params_a, grads[:3])
    state = opt_a.state_dict()
    # plain values only: np.savez without pickle and back
    np.savez(tmp_path / "opt.npz", **state)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        loaded = dict(f)
    for pa, pb in zip(params_a, params_b, strict=True):
        pb.data[...] = pa.data
    opt_b = cls(params_b, lr=123.0) if cls is SGD else cls(params_b)
    opt_b.load_state_dict(loaded)
    assert opt_b.step_count == 3 and opt_b.lr == opt_a.lr
    run(opt_a, params_a, grads[3:])
    run(opt_b, params_b, grads[3:])
    for pa, pb in zip(params_a, params_b, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)
    # the saved buffers are copies, not views of the live ones
    for key, value in opt_a.state_dict().items():
        if key.startswith("state."):
            assert not np.array_equal(value, state[key])


def test_state_dict_contents(rng):
    params = make_params(rng)
    opt = Adam(params, lr=0.5, betas=(0.8, 0.9))
    state = opt.state_dict()
    assert state["optimizer"] == "Adam" and state["lr"] == 0.5 and state["beta1"] == 0.8 and state["step_count"] == 0
    assert list(state["param_names"]) == ["p0", "p1"]
    assert not any(k.startswith("state.") for k in state)  # buffers appear at the first step, as in PyTorch
    opt.step()
    state = opt.state_dict()
    assert state["state.0.exp_avg"].shape == (3, 4) and state["state.1.exp_avg_sq"].shape == (5,)
    for v in state.values():
        assert isinstance(v, (np.ndarray, int, float, str, bool))
    # buffers only where the settings use them
    assert "state.0.momentum_buffer" not in _stepped(SGD(make_params(rng), lr=0.1)).state_dict()
    assert "state.0.momentum_buffer" in _stepped(SGD(make_params(rng), lr=0.1, momentum=0.9)).state_dict()
    assert "state.0.momentum_buffer" not in _stepped(RMSprop(make_params(rng))).state_dict()


def _stepped(opt):
    opt.step()
    return opt


def test_load_state_dict_errors(rng):
    params = make_params(rng)
    opt = Adam(params)
    good = _stepped(Adam(make_params(rng))).state_dict()
    with pytest.raises(ValueError, match=r"state_dict: expected the state of a Adam, got one of SGD"):
        opt.load_state_dict(SGD(make_params(rng), lr=0.1).state_dict())
    with pytest.raises(ValueError, match=r"state_dict: expected the state of a Adam, got one of AdamW"):
        opt.load_state_dict(AdamW(make_params(rng)).state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['param_names'\]: expected \['p0', 'p1'\], got \['p0'\]"):
        opt.load_state_dict(_stepped(Adam(make_params(rng, shapes=[(3, 4)]))).state_dict())
    with pytest.raises(ValueError, match=r"unexpected keys \['state.2.exp_avg'"):
        opt.load_state_dict(_stepped(Adam(make_params(rng, shapes=[(3, 4), (5,), (2,)]))).state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['state.1.exp_avg'\]: expected shape \(5,\), got \(6,\)"):
        opt.load_state_dict(_stepped(Adam(make_params(rng, shapes=[(3, 4), (6,)]))).state_dict())
    with pytest.raises(TypeError, match=r"state_dict\['state.0.exp_avg'\]: expected dtype float64, got float32"):
        opt.load_state_dict(_stepped(Adam(make_params(rng, np.float32))).state_dict())
    with pytest.raises(ValueError, match=r"state_dict: missing keys \['lr'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "lr"})
    with pytest.raises(ValueError, match=r"state_dict: missing keys \['state.1.exp_avg_sq'\] \(at step_count=1\)"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "state.1.exp_avg_sq"})
    with pytest.raises(ValueError, match=r"state_dict: missing keys \['state.0.exp_avg', 'state.1.exp_avg'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if "exp_avg." not in k and not k.endswith("exp_avg")})
    bad = dict(good, param_names=np.array(["p0", "other"]))
    with pytest.raises(ValueError, match=r"state_dict\['param_names'\]: expected \['p0', 'p1'\], got \['p0', 'other'\]"):
        opt.load_state_dict(bad)
    bad = dict(good, lr=0.5, beta2=1.5)
    with pytest.raises(ValueError, match=r"betas\[1\]: expected a number < 1.0, got 1.5"):
        opt.load_state_dict(bad)
    assert opt.lr == 1e-3 and opt.step_count == 0 and opt.state == [{}, {}]  # nothing changed
    with pytest.raises(TypeError, match=r"state_dict: expected a mapping"):
        opt.load_state_dict([1, 2])
    opt.load_state_dict(good)
    assert opt.step_count == 1 and opt.state[1]["exp_avg"] is not good["state.1.exp_avg"]


def test_momentum_switched_on_later_starts_from_the_gradient(rng):
    # as PyTorch: a missing momentum buffer starts as the current gradient
    p = numlstm.Parameter("w", np.array([1.0]), np.array([1.0]))
    opt = SGD([p], lr=0.1)
    opt.step()
    opt.momentum = 0.5
    opt.step()
    opt.step()
    assert p.data[0] == pytest.approx(1.0 - 0.1 - 0.1 - 0.15, rel=1e-15)


# -- validation ---------------------------------------------------------------------------------


def test_param_validation(rng):
    params = make_params(rng)
    with pytest.raises(ValueError, match=r"params: got an empty list of parameters"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]: expected a numlstm.Parameter .* got ndarray"):
        SGD([params[0], np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"params: expected an iterable of numlstm.Parameter .* got dict"):
        SGD({"w": params[0]}, lr=0.1)
    with pytest.raises(TypeError, match=r"params: expected an iterable of numlstm.Parameter .* got ndarray"):
        SGD(np.zeros(3), lr=0.1)
    with pytest.raises(ValueError, match=r"params: parameter 2 \('p0'\) shares its data with parameter 0 \('p0'\)"):
        SGD([params[0], params[1], params[0]], lr=0.1)
    view = numlstm.Parameter("view", params[0].data[0], params[0].grad[0])
    with pytest.raises(ValueError, match=r"parameter 1 \('view'\) shares its data with parameter 0"):
        SGD([params[0], view], lr=0.1)
    bad = numlstm.Parameter("b", np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"params\[0\] \('b'\): grad: expected the shape of data \(3,\), got \(4,\)"):
        SGD([bad], lr=0.1)
    bad = numlstm.Parameter("b", np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"params\[0\] \('b'\): grad: expected the dtype of data \(float64\), got float32"):
        SGD([bad], lr=0.1)
    bad = numlstm.Parameter("b", np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"data: expected dtype float32 or float64, got int64"):
        SGD([bad], lr=0.1)
    bad = numlstm.Parameter("b", np.zeros((4, 4))[:, 0], np.zeros(4))
    with pytest.raises(ValueError, match=r"data: expected a C-contiguous array"):
        SGD([bad], lr=0.1)
    # a single Parameter and a generator are accepted
    assert len(SGD(params[0], lr=0.1).params) == 1
    assert len(SGD((p for p in params), lr=0.1).params) == 2


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda ps: SGD(ps, lr=-0.1), ValueError, r"lr: expected a number >= 0.0, got -0.1"),
        (lambda ps: SGD(ps, lr="0.1"), TypeError, r"lr: expected a number, got str"),
        (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), ValueError, r"momentum: expected a number >= 0.0, got -0.5"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=True), ValueError, r"nesterov: Nesterov momentum needs momentum > 0"),
        (lambda ps: SGD(ps, lr=0.1, nesterov=1), TypeError, r"nesterov: expected True or False"),
        (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), ValueError, r"weight_decay: expected a number >= 0.0, got -1.0"),
        (lambda ps: Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\]: expected a number < 1.0, got 1.0"),
        (lambda ps: Adam(ps, betas=(-0.1, 0.9)), ValueError, r"betas\[0\]: expected a number >= 0.0, got -0.1"),
        (lambda ps: Adam(ps, betas=0.9), TypeError, r"betas: expected a tuple \(beta1, beta2\)"),
        (lambda ps: Adam(ps, eps=0.0), ValueError, r"eps: expected a number > 0, got 0.0"),
        (lambda ps: AdamW(ps, weight_decay=-0.01), ValueError, r"weight_decay: expected a number >= 0.0"),
        (lambda ps: RMSprop(ps, alpha=1.5), ValueError, r"alpha: expected a number <= 1.0, got 1.5"),
        (lambda ps: RMSprop(ps, eps=-1e-8), ValueError, r"eps: expected a number > 0"),
        (lambda ps: RMSprop(ps, momentum=-0.9), ValueError, r"momentum: expected a number >= 0.0"),
    ],
)
def test_hyperparameter_validation(rng, make, err, match):
    with pytest.raises(err, match=match):
        make(make_params(rng))


def test_lr_attribute(rng):
    params = make_params(rng)
    opt = SGD(params, lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5
    with pytest.raises(ValueError, match=r"lr: expected a number >= 0.0, got -1.0"):
        opt.lr = -1.0
    opt.lr = 0.0
    before = params[0].data.copy()
    params[0].grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(params[0].data, before)


def test_zero_grad(rng):
    params = make_params(rng)
    for p in params:
        p.grad[...] = 3.0
    Adam(params).zero_grad()
    assert all(np.all(p.grad == 0) for p in params)


def test_step_rechecks_parameters(rng):
    params = make_params(rng)
    opt = Adam(params)
    opt.step()
    params[1].data = np.zeros(7)
    params[1].grad = np.zeros(7)
    with pytest.raises(ValueError, match=r"params\[1\] \('p1'\): data changed to shape \(7,\)"):
        opt.step()
    params[1].grad = np.zeros(6)
    with pytest.raises(ValueError, match=r"params\[1\] \('p1'\): grad: expected the shape of data \(7,\), got \(6,\)"):
        opt.step()


# -- clip_grad_norm -----------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(rng, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params(rng)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for tp, p in zip(tparams, params, strict=True):
        tp.grad = torch.tensor(p.grad.copy())
    before = [p.grad.copy() for p in params]
    total = clip_grad_norm(params, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(ttotal.item(), rel=1e-13)
    for p, tp in zip(params, tparams, strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-13)
    if max_norm == 100.0:
        for p, b in zip(params, before, strict=True):
            np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_by_hand():
    p = numlstm.Parameter("a", np.zeros(2), np.array([3.0, 0.0]))
    q = numlstm.Parameter("b", np.zeros(1), np.array([4.0]))
    assert clip_grad_norm([p, q], 1.0) == 5.0
    np.testing.assert_allclose(np.concatenate([p.grad, q.grad]), np.array([3.0, 0.0, 4.0]) / (5.0 + 1e-6), rtol=1e-15)
    assert clip_grad_norm(p, 10.0, norm_type=1) == pytest.approx(3.0 / (5.0 + 1e-6), rel=1e-15)
    assert clip_grad_norm([], 1.0) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_leaves_grads(bad):
    p = numlstm.Parameter("a", np.zeros(3), np.array([1.0, bad, 2.0]))
    before = p.grad.copy()
    total = clip_grad_norm([p], 1.0)
    assert math.isnan(total) if np.isnan(bad) else total == math.inf
    np.testing.assert_array_equal(p.grad, before)


def test_clip_grad_norm_float32_stays_float32(rng):
    p = numlstm.Parameter("a", np.zeros(4, np.float32), np.full(4, 2.0, np.float32))
    assert clip_grad_norm([p], 1.0) == pytest.approx(4.0)
    assert p.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, 0.5, rtol=1e-6)


def test_clip_grad_norm_validation(rng):
    params = make_params(rng)
    with pytest.raises(ValueError, match=r"max_norm: expected a number >= 0.0, got -1.0"):
        clip_grad_norm(params, -1.0)
    with pytest.raises(ValueError, match=r"norm_type: expected a number > 0 or float\('inf'\), got 0.0"):
        clip_grad_norm(params, 1.0, norm_type=0)
    with pytest.raises(TypeError, match=r"norm_type: expected a number > 0 or float\('inf'\), got str"):
        clip_grad_norm(params, 1.0, norm_type="inf")
    with pytest.raises(TypeError, match=r"params\[0\]: expected a numlstm.Parameter, got ndarray"):
        clip_grad_norm([np.zeros(3)], 1.0)


# -- schedules ----------------------------------------------------------------------------------


def _torch_schedule(torch, lr, make_sched, metrics=None, steps=20):
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=lr)
    sched = make_sched(torch.optim.lr_scheduler, topt)
    lrs = [sched.get_last_lr()[0]]
    for k in range(steps):
        topt.step()  # no grad: a no-op, but keeps the call order torch checks
        sched.step() if metrics is None else sched.step(metrics[k])
        lrs.append(topt.param_groups[0]["lr"])
    return lrs


def _our_schedule(rng, lr, make_sched, metrics=None, steps=20):
    opt = SGD(make_params(rng), lr=lr)
    sched = make_sched(opt)
    lrs = [sched.get_last_lr()[0]]
    for k in range(steps):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[k])
        lrs.append(opt.lr)
        assert sched.get_last_lr() == [opt.lr]
    return lrs


PLATEAU_METRICS = [
    1.0,
    0.9,
    0.95,
    0.95,
    0.9,
    0.91,
    0.92,
    0.93,
    0.5,
    0.5,
    0.49999,
    0.6,
    0.7,
    0.8,
    0.3,
    0.3,
    0.31,
    0.32,
    0.33,
    0.34,
]

SCHEDULES = [
    ("step", lambda m, o: m.StepLR(o, step_size=3, gamma=0.5), {}),
    ("step-1", lambda m, o: m.StepLR(o, step_size=1), {}),
    ("exponential", lambda m, o: m.ExponentialLR(o, gamma=0.9), {}),
    ("cosine", lambda m, o: m.CosineAnnealingLR(o, T_max=20), {}),
    ("cosine-restart-eta", lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01), {}),
    ("plateau", lambda m, o: m.ReduceLROnPlateau(o, patience=1), {"metrics": PLATEAU_METRICS}),
    (
        "plateau-max-abs-cooldown",
        lambda m, o: m.ReduceLROnPlateau(o, mode="max", factor=0.5, patience=0, threshold=0.05, threshold_mode="abs", cooldown=2),
        {"metrics": [-x for x in PLATEAU_METRICS]},
    ),
    (
        "plateau-min-lr",
        lambda m, o: m.ReduceLROnPlateau(o, factor=0.3, patience=0, min_lr=0.01, threshold=0.0),
        {"metrics": [1.0] * 20},
    ),
]


class _OurModule:
    StepLR = StepLR
    ExponentialLR = ExponentialLR
    CosineAnnealingLR = CosineAnnealingLR
    ReduceLROnPlateau = ReduceLROnPlateau


@pytest.mark.parametrize("case", SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedule_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    _, make, kw = case
    theirs = _torch_schedule(torch, 0.1, make, **kw)
    ours = _our_schedule(rng, 0.1, lambda o: make(_OurModule, o), **kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-16)
    assert len(set(ours)) > 1  # the schedule did something


def test_schedules_by_hand(rng):
    lrs = _our_schedule(rng, 1.0, lambda o: StepLR(o, step_size=2, gamma=0.5), steps=5)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    lrs = _our_schedule(rng, 1.0, lambda o: CosineAnnealingLR(o, T_max=2), steps=4)
    np.testing.assert_allclose(lrs, [1.0, 0.5, 0.0, 0.5, 1.0], atol=1e-15)


@pytest.mark.parametrize("case", SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedule_state_dict_round_trip(rng, case, tmp_path):
    _, make, kw = case
    metrics = kw.get("metrics")
    opt_a = SGD(make_params(rng), lr=0.1)
    sched_a = make(_OurModule, opt_a)

    def advance(opt, sched, ks):
        out = []
        for k in ks:
            sched.step() if metrics is None else sched.step(metrics[k])
            out.append(opt.lr)
        return out

    advance(opt_a, sched_a, range(9))
    np.savez(tmp_path / "s.npz", **sched_a.state_dict())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        state = dict(f)
    opt_b = SGD(make_params(rng), lr=0.1)
    sched_b = make(_OurModule, opt_b)
    opt_b.lr = opt_a.lr  # the optimizer's own state_dict carries lr
    sched_b.load_state_dict(state)
    assert sched_b.last_epoch == 9 and sched_b.get_last_lr() == sched_a.get_last_lr()
    assert advance(opt_a, sched_a, range(9, 20)) == advance(opt_b, sched_b, range(9, 20))


def test_schedule_validation(rng):
    opt = SGD(make_params(rng), lr=0.1)
    with pytest.raises(TypeError, match=r"optimizer: expected a numlstm.optim.Optimizer, got list"):
        StepLR([], step_size=2)
    with pytest.raises(ValueError, match=r"step_size: expected an int >= 1, got 0"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match=r"gamma: expected a number >= 0.0, got -0.5"):
        ExponentialLR(opt, gamma=-0.5)
    with pytest.raises(TypeError, match=r"T_max: expected an int, got float"):
        CosineAnnealingLR(opt, T_max=10.0)
    with pytest.raises(ValueError, match=r"mode: expected 'min' or 'max', got 'down'"):
        ReduceLROnPlateau(opt, mode="down")
    with pytest.raises(ValueError, match=r"threshold_mode: expected 'rel' or 'abs', got 'pct'"):
        ReduceLROnPlateau(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match=r"factor: expected a number < 1.0, got 1.0"):
        ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match=r"patience: expected an int >= 0, got -1"):
        ReduceLROnPlateau(opt, patience=-1)
    plateau = ReduceLROnPlateau(opt)
    with pytest.raises(TypeError, match=r"metric: expected a number, got str"):
        plateau.step("0.5")
    plateau.step(np.float32(0.5))  # numpy scalars and 0-d arrays are fine
    plateau.step(np.array(0.4))
    assert plateau.best == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"state_dict: expected the state of a StepLR, got one of ExponentialLR"):
        StepLR(opt, step_size=2).load_state_dict(ExponentialLR(opt, gamma=0.5).state_dict())
    bad = dict(StepLR(opt, step_size=2).state_dict(), step_size=0)
    sched = StepLR(opt, step_size=3)
    with pytest.raises(ValueError, match=r"step_size: expected an int >= 1, got 0"):
        sched.load_state_dict(bad)
    assert sched.step_size == 3
