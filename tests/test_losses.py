"""Losses: exact gradients (float64 central differences), stability, PyTorch agreement, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from numlstm.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, get_loss

REDUCTIONS = ["mean", "sum", "none"]


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f at x (float64)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        fp = f(x)
        flat[k] = old - h
        fm = f(x)
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * h)
    return g


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def check_gradient(loss: Loss, pred: np.ndarray, target, rng, tol: float = 1e-7) -> None:
    """backward() against central differences of forward; for "none" the scalar
    is sum(loss * dout) with a random dout, for mean/sum it is dout * loss."""
    if loss.reduction == "none":
        shape = np.shape(loss(pred, target))
        dout = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)

        def f(x):
            return float(np.sum(loss(x, target) * dout))
    else:
        dout = 1.7

        def f(x):
            return dout * loss(x, target)

    num = numeric_grad(f, pred.copy())
    loss(pred, target)
    ana = loss.backward(dout)
    assert ana.shape == pred.shape and ana.dtype == pred.dtype
    err = rel_error(ana, num)
    assert err < tol, f"{loss!r}: relative error {err:.2e}"


# -- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 2, 2)])
def test_mse_gradient(rng, reduction, shape):
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    check_gradient(MSELoss(reduction), pred, target, rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_step", [False, True], ids=["(N,C)", "(N,T,C)"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_gradient(rng, reduction, per_step, label_smoothing):
    shape = (3, 4, 5) if per_step else (4, 5)
    logits = 2 * rng.standard_normal(shape)
    labels = rng.integers(0, 5, shape[:-1])
    labels.reshape(-1)[1] = -100  # one ignored target
    check_gradient(CrossEntropyLoss(reduction, label_smoothing=label_smoothing), logits, labels, rng)


def test_cross_entropy_custom_ignore_index(rng):
    logits = rng.standard_normal((5, 3))
    labels = np.array([0, 7, 2, 7, 1])
    loss = CrossEntropyLoss(ignore_index=7)
    check_gradient(loss, logits, labels, rng)
    value = loss(logits, labels)
    keep = labels != 7
    expected = CrossEntropyLoss()(logits[keep], labels[keep])  # mean over the 3 kept rows
    assert value == pytest.approx(expected, rel=1e-14)
    assert np.all(loss.backward()[~keep] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, 2.5, "vector"])
def test_bce_with_logits_gradient(rng, reduction, pos_weight):
    shape = (2, 3, 4)
    if pos_weight == "vector":
        pos_weight = rng.uniform(0.5, 3.0, shape[-1])
    logits = 3 * rng.standard_normal(shape)
    target = rng.uniform(0, 1, shape)
    target.reshape(-1)[:3] = [0.0, 1.0, 1.0]
    check_gradient(BCEWithLogitsLoss(reduction, pos_weight=pos_weight), logits, target, rng)


@pytest.mark.parametrize("make", [MSELoss, CrossEntropyLoss, BCEWithLogitsLoss])
def test_backward_scales_by_dout(rng, make):
    pred = rng.standard_normal((3, 4))
    target = rng.integers(0, 4, 3) if make is CrossEntropyLoss else rng.uniform(0, 1, (3, 4))
    for reduction in ("mean", "sum"):
        loss = make(reduction)
        loss(pred, target)
        np.testing.assert_allclose(loss.backward(2.5), 2.5 * loss.backward(), rtol=1e-15)
        np.testing.assert_array_equal(loss.backward(), loss.backward(1.0))
    loss = make("none")
    per = loss(pred, target)
    np.testing.assert_array_equal(loss.backward(), loss.backward(np.ones_like(per)))


def test_mean_is_sum_over_count(rng):
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert MSELoss("mean")(pred, target) == pytest.approx(MSELoss("sum")(pred, target) / 12, rel=1e-14)
    per = MSELoss("none")(pred, target)
    np.testing.assert_allclose(per, (pred - target) ** 2, rtol=1e-15)


def test_float32_stays_float32(rng):
    z = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for loss, target in [
        (MSELoss(), rng.standard_normal((2, 3, 4)).astype(np.float32)),
        (CrossEntropyLoss(), rng.integers(0, 4, (2, 3))),
        (BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 1.0, 0.5]), rng.uniform(0, 1, (2, 3, 4)).astype(np.float32)),
    ]:
        assert isinstance(loss(z, target), float)
        g = loss.backward()
        assert g.dtype == np.float32 and g.shape == z.shape
        loss.reduction = "none"
        assert loss(z, target).dtype == np.float32
        assert loss.backward().dtype == np.float32


# -- stability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_large_logits_are_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype)
    labels = np.array([1, 2, 0])
    loss = CrossEntropyLoss(label_smoothing=0.1)
    value = loss(logits, labels)
    grad = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value > 1e3  # row 0 puts the label 2e4 below the maximum
    # row 1 is certain and right, so its gradient is the smoothing term only
    np.testing.assert_allclose(grad[1], np.array([-0.1 / 3, -0.1 / 3, 0.2 / 3]) / 3, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_large_logits_are_finite(dtype, pos_weight):
    z = np.array([1e4, -1e4, 1e4, -1e4, 50.0, -50.0], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], dtype)
    loss = BCEWithLogitsLoss("none", pos_weight=pos_weight)
    per = loss(z, y)
    grad = loss.backward()
    assert np.all(np.isfinite(per)) and np.all(np.isfinite(grad))
    w = 1.0 if pos_weight is None else pos_weight
    np.testing.assert_allclose(per[:4], [0.0, 0.0, 1e4, w * 1e4], rtol=1e-6)
    np.testing.assert_allclose(grad[:4], [0.0, 0.0, 1.0, -w], rtol=1e-6)


# -- PyTorch ------------------------------------------------------------------------------------


@pytest.fixture
def torch_f():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def _torch_value_and_grad(torch, fn, pred, reduction, dout):
    tp = torch.tensor(pred, requires_grad=True)
    out = fn(tp)
    (out * torch.tensor(dout)).sum().backward() if reduction == "none" else (out * dout).backward()
    return out.detach().numpy(), tp.grad.numpy()


def _ours(loss, pred, target, dout):
    value = loss(pred, target)
    return np.asarray(value), loss.backward(dout)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(rng, torch_f, reduction):
    torch, F = torch_f
    pred, target = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    dout = rng.standard_normal(pred.shape) if reduction == "none" else 0.7
    tv, tg = _torch_value_and_grad(
        torch, lambda p: F.mse_loss(p, torch.tensor(target), reduction=reduction), pred, reduction, dout
    )
    v, g = _ours(MSELoss(reduction), pred, target, dout)
    np.testing.assert_allclose(v, tv, rtol=1e-13)
    np.testing.assert_allclose(g, tg, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_step", [False, True], ids=["(N,C)", "(N,T,C)"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(rng, torch_f, reduction, per_step, label_smoothing):
    torch, F = torch_f
    shape = (2, 3, 4) if per_step else (5, 4)
    logits = 3 * rng.standard_normal(shape)
    labels = rng.integers(0, 4, shape[:-1])
    labels.reshape(-1)[0] = -100
    dout = rng.standard_normal(labels.shape) if reduction == "none" else 1.3
    tlabels = torch.tensor(labels)

    def fn(p):
        if per_step:  # PyTorch wants the classes on axis 1: (N, C, T)
            p = p.permute(0, 2, 1)
        return F.cross_entropy(p, tlabels, reduction=reduction, label_smoothing=label_smoothing)

    tv, tg = _torch_value_and_grad(torch, fn, logits, reduction, dout)
    v, g = _ours(CrossEntropyLoss(reduction, label_smoothing=label_smoothing), logits, labels, dout)
    np.testing.assert_allclose(v, tv, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-15)


def test_cross_entropy_all_ignored_matches_torch(torch_f):
    torch, F = torch_f
    logits = np.array([[0.1, 0.2], [0.3, -0.4]])
    labels = np.array([-100, -100])
    tp = torch.tensor(logits, requires_grad=True)
    tv = F.cross_entropy(tp, torch.tensor(labels))
    tv.backward()
    loss = CrossEntropyLoss()
    assert np.isnan(loss(logits, labels)) and np.isnan(tv.item())
    np.testing.assert_array_equal(loss.backward(), tp.grad.numpy())  # zeros
    assert CrossEntropyLoss("sum")(logits, labels) == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, "vector"])
def test_bce_with_logits_matches_torch(rng, torch_f, reduction, pos_weight):
    torch, F = torch_f
    shape = (2, 3, 4)
    pw = rng.uniform(0.5, 3.0, shape[-1]) if pos_weight else None
    logits = 4 * rng.standard_normal(shape)
    target = rng.uniform(0, 1, shape)
    dout = rng.standard_normal(shape) if reduction == "none" else 0.9
    tpw = None if pw is None else torch.tensor(pw)
    tv, tg = _torch_value_and_grad(
        torch,
        lambda p: F.binary_cross_entropy_with_logits(p, torch.tensor(target), reduction=reduction, pos_weight=tpw),
        logits,
        reduction,
        dout,
    )
    v, g = _ours(BCEWithLogitsLoss(reduction, pos_weight=pw), logits, target, dout)
    np.testing.assert_allclose(v, tv, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, tg, rtol=1e-13, atol=1e-16)


def test_float32_matches_torch(rng, torch_f):
    torch, F = torch_f
    logits = (3 * rng.standard_normal((2, 5, 6))).astype(np.float32)
    labels = rng.integers(0, 6, (2, 5))
    tp = torch.tensor(logits, requires_grad=True)
    tv = F.cross_entropy(tp.permute(0, 2, 1), torch.tensor(labels))
    tv.backward()
    loss = CrossEntropyLoss()
    assert loss(logits, labels) == pytest.approx(tv.item(), rel=1e-6)
    np.testing.assert_allclose(loss.backward(), tp.grad.numpy(), rtol=1e-5, atol=1e-7)


# -- errors -------------------------------------------------------------------------------------


def test_reduction_is_checked():
    for make in (MSELoss, CrossEntropyLoss, BCEWithLogitsLoss):
        with pytest.raises(ValueError, match=r"reduction: expected one of \['mean', 'sum', 'none'\], got 'avg'"):
            make("avg")


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"MSELoss.backward: call forward"):
        MSELoss().backward()


def test_pred_checks():
    t = np.zeros(3)
    with pytest.raises(TypeError, match=r"pred: expected dtype float32 or float64, got int64: use pred.astype"):
        MSELoss()(np.zeros(3, np.int64), t)
    with pytest.raises(TypeError, match=r"pred: expected a numpy array, got str"):
        MSELoss()("abc", t)
    with pytest.raises(ValueError, match=r"pred: expected a non-empty array, got shape \(0,\)"):
        MSELoss()(np.zeros(0), np.zeros(0))


def test_mse_target_checks():
    pred = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target: expected the shape of pred \(2, 3\), got \(3, 2\)"):
        MSELoss()(pred, np.zeros((3, 2)))
    with pytest.raises(TypeError, match=r"target: expected dtype float64 \(the dtype of pred\), got float32: use target.astype"):
        MSELoss()(pred, np.zeros((2, 3), np.float32))
    # nested lists are taken in pred's dtype
    assert MSELoss()(pred, [[1, 1, 1], [1, 1, 1]]) == 1.0


def test_cross_entropy_checks():
    logits = np.zeros((3, 4))
    ce = CrossEntropyLoss()
    with pytest.raises(
        TypeError, match=r"target: expected integer class labels, got dtype float64: use target.astype\(np.int64\)"
    ):
        ce(logits, np.zeros(3))
    with pytest.raises(TypeError, match=r"target: expected integer class labels, got dtype bool"):
        ce(logits, np.zeros(3, bool))
    with pytest.raises(
        ValueError, match=r"target: expected class labels in \[0, 4\) or ignore_index=-100, got 4 at index \(2,\)"
    ):
        ce(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"target: expected class labels in \[0, 4\) .* got -1 at index \(0, 1\)"):
        ce(np.zeros((2, 3, 4)), np.array([[0, -1, 0], [1, 1, 1]]))
    with pytest.raises(
        ValueError, match=r"target: expected shape \(3,\) \(pred's shape \(3, 4\) without the class axis\), got \(4,\)"
    ):
        ce(logits, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"pred: expected logits of shape \(N, C\) or \(N, T, C\).* got shape \(4,\)"):
        ce(np.zeros(4), np.zeros((), np.int64))
    with pytest.raises(ValueError, match=r"label_smoothing: expected a number <= 1.0, got 1.5"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match=r"ignore_index: expected an int, got float"):
        CrossEntropyLoss(ignore_index=-1.0)


def test_bce_checks():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target: expected values in \[0, 1\], got 1.5 at index \(1, 0\)"):
        BCEWithLogitsLoss()(z, np.array([[0, 0, 0], [1.5, 0, 0]]))
    with pytest.raises(ValueError, match=r"target: expected values in \[0, 1\], got nan"):
        BCEWithLogitsLoss()(z, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"pos_weight: expected finite values >= 0"):
        BCEWithLogitsLoss(pos_weight=[-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"pos_weight: expected a shape that broadcasts to pred's \(2, 3\)"):
        BCEWithLogitsLoss(pos_weight=np.ones(4))(z, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"pos_weight: shape \(4, 2, 3\) would broadcast pred's"):
        BCEWithLogitsLoss(pos_weight=np.ones((4, 2, 3)))(z, np.zeros((2, 3)))


def test_dout_checks(rng):
    loss = MSELoss("none")
    loss(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dout: expected shape \(2, 3\) \(the per-element losses\), got \(3,\)"):
        loss.backward(np.ones(3))
    with pytest.raises(TypeError, match=r"dout: expected dtype float64, got float32"):
        loss.backward(np.ones((2, 3), np.float32))
    ce = CrossEntropyLoss()
    ce(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"dout: expected a number, got str"):
        ce.backward("1")
    with pytest.raises(ValueError, match=r"dout: expected a finite number, got nan"):
        ce.backward(float("nan"))


def test_get_loss():
    assert isinstance(get_loss("mse"), MSELoss)
    for name in ("cross_entropy", "crossentropy", "ce", "CE"):
        assert isinstance(get_loss(name), CrossEntropyLoss)
    for name in ("bce", "bce_with_logits"):
        assert isinstance(get_loss(name), BCEWithLogitsLoss)
    loss = CrossEntropyLoss(reduction="sum")
    assert get_loss(loss) is loss
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of \['bce', 'bce_with_logits', 'ce', .*'mse'\]"):
        get_loss("hinge")
    with pytest.raises(TypeError, match=r"name_or_loss: expected a loss name \(str\) or a numlstm.losses.Loss, got int"):
        get_loss(3)
    with pytest.raises(TypeError, match=r"use MSELoss\(\)"):
        get_loss(MSELoss)
