"""BatchNorm2D: batch and running statistics, exact backward in both modes, PyTorch, state_dict, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from naive_conv import batchnorm2d_train_backward_naive, batchnorm2d_train_naive

from numlstm import BatchNorm2D, gradcheck
from numlstm.layers.registry import layer_from_config, layer_to_config

TOL = 1e-6


def random_bn(rng, c=3, dtype=np.float64, **kwargs) -> BatchNorm2D:
    layer = BatchNorm2D(c, dtype=dtype, **kwargs)
    for p in layer.params.values():
        p[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    layer.buffers["running_mean"][...] = rng.standard_normal(c)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return layer


class FrozenStatsBN(BatchNorm2D):
    """Evaluation-mode arithmetic (running statistics) while caching for backward, for gradcheck."""

    def _use_batch_stats(self) -> bool:
        return False


def test_batchnorm_train_matches_naive(rng):
    layer = random_bn(rng)
    rm0, rv0 = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    x = rng.standard_normal((4, 3, 3, 2)) * 2 + 1
    y = layer(x)
    ry, mean, var = batchnorm2d_train_naive(x, layer.params["weight"], layer.params["bias"], layer.eps)
    assert_close(y, ry, 1e-12, "y")
    M = 4 * 3 * 2
    assert_close(layer.buffers["running_mean"], 0.9 * rm0 + 0.1 * mean, 1e-12, "running_mean")
    assert_close(layer.buffers["running_var"], 0.9 * rv0 + 0.1 * var * M / (M - 1), 1e-12, "running_var")
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    rdx, rdg, rdb = batchnorm2d_train_backward_naive(x, layer.params["weight"], layer.eps, dy)
    assert_close(dx, rdx, 1e-10, "dx")
    assert_close(layer.grads["weight"], rdg, 1e-12, "dweight")
    assert_close(layer.grads["bias"], rdb, 1e-12, "dbias")


def test_batchnorm_eval_uses_running_stats(rng):
    layer = random_bn(rng).eval()
    x = rng.standard_normal((2, 3, 2, 2))
    rm, rv = layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()
    y = layer(x)
    c = (None, slice(None), None, None)
    ref = (x - rm[c]) / np.sqrt(rv[c] + layer.eps) * layer.params["weight"][c] + layer.params["bias"][c]
    assert_close(y, ref, 1e-13, "y")
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)  # not updated in eval mode


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_gradcheck_train(rng, affine):
    layer = random_bn(rng, affine=affine)
    errors = gradcheck(layer, rng.standard_normal((3, 3, 2, 3)))
    assert set(errors) == {"x", *(["weight", "bias"] if affine else [])}
    assert max(errors.values()) < TOL, errors


def test_batchnorm_gradcheck_running_stats(rng):
    layer = FrozenStatsBN(3, dtype=np.float64)
    ref = random_bn(rng)
    layer.load_state_dict(ref.state_dict())
    errors = gradcheck(layer, rng.standard_normal((2, 3, 2, 2)))
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    layer = random_bn(rng, 3, dtype=dtype, momentum=0.2, eps=1e-3)
    m = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.2).to({np.float32: torch.float32, np.float64: torch.float64}[dtype])
    m.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()}, strict=False)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for mode in ("train", "train", "eval"):
        getattr(m, mode)()
        getattr(layer, mode)() if mode == "eval" else layer.train()
        x = (rng.standard_normal((4, 3, 3, 3)) * 1.5 + 0.5).astype(dtype)
        xt = torch.tensor(x, requires_grad=True)
        m.zero_grad()
        layer.zero_grad()
        yt = m(xt)
        y = layer(x)
        assert_close(y, yt.detach().numpy(), rtol, f"{mode} y")
        for k in ("running_mean", "running_var"):
            assert_close(layer.buffers[k], getattr(m, k).numpy(), rtol, f"{mode} {k}")
        if mode == "train":
            dy = rng.standard_normal(x.shape).astype(dtype)
            yt.backward(torch.from_numpy(dy))
            assert_close(layer.backward(dy), xt.grad.numpy(), rtol, "dx")
            assert_close(layer.grads["weight"], m.weight.grad.numpy(), rtol, "dweight")
            assert_close(layer.grads["bias"], m.bias.grad.numpy(), rtol, "dbias")


def test_batchnorm_state_dict_and_config(rng):
    layer = random_bn(rng)
    sd = layer.state_dict()
    assert set(sd) == {"weight", "bias", "running_mean", "running_var"}
    other = BatchNorm2D(3, dtype=np.float64)
    other.load_state_dict({**sd, "num_batches_tracked": np.array(5)})
    for k in sd:
        np.testing.assert_array_equal(other.state_dict()[k], sd[k])
    with pytest.raises(ValueError, match=r"missing keys \['running_var'\]"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "running_var"})
    with pytest.raises(ValueError, match=r"state_dict\['running_mean'\]: expected shape \(3,\), got \(4,\)"):
        other.load_state_dict({**sd, "running_mean": np.zeros(4)})
    spec = layer_to_config(layer)
    assert layer_from_config(spec).config() == spec["config"]


def test_batchnorm_bad_input(rng):
    layer = BatchNorm2D(3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"x: expected a 4-d array .*got shape \(2, 3\)"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, 3, \?, \?\).*got \(2, 4, 2, 2\)"):
        layer(np.zeros((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(np.zeros((1, 3, 1, 1)))
    layer.eval()
    assert layer(np.zeros((1, 3, 1, 1))).shape == (1, 3, 1, 1)
    with pytest.raises(ValueError, match="num_features: expected an int >= 1"):
        BatchNorm2D(0)
    with pytest.raises(ValueError, match="momentum: expected a number <= 1"):
        BatchNorm2D(2, momentum=1.5)
    with pytest.raises(ValueError, match="eps: expected a positive number"):
        BatchNorm2D(2, eps=0)
