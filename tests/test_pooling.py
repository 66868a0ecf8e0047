"""MaxPool2D, AvgPool2D, GlobalAvgPool2D: against the loop twins, central differences, PyTorch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from naive_conv import avgpool2d_naive, maxpool2d_naive

from numlstm import AvgPool2D, GlobalAvgPool2D, MaxPool2D, gradcheck
from numlstm.layers.registry import layer_from_config, layer_to_config

TOL = 1e-6

# (kernel, stride, padding, input (H, W))
CASES = [
    (2, None, 0, (4, 6)),
    (3, 2, 1, (7, 6)),
    ((3, 2), (1, 2), (1, 0), (5, 7)),
    (2, 1, 1, (3, 4)),
    ((2, 3), None, 0, (5, 7)),
]


def distinct(rng, shape):
    """Values without ties (a random permutation), so the max is unique and differentiable."""
    return rng.permutation(np.prod(shape)).reshape(shape) / 7.0 - 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p, hw", CASES)
def test_pools_match_naive(rng, k, s, p, hw, dtype):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    for cls, naive in ((MaxPool2D, maxpool2d_naive), (AvgPool2D, avgpool2d_naive)):
        layer = cls(k, s, p)
        y = layer(x)
        assert y.dtype == dtype
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = layer.backward(dy)
        ry, rdx = naive(x.astype(np.float64), layer.kernel_size, layer.stride, layer.padding, dy.astype(np.float64))
        rtol = 1e-6 if dtype == np.float32 else 1e-13
        assert_close(y, ry, rtol, f"{cls.__name__} y")
        assert_close(dx, rdx, rtol, f"{cls.__name__} dx")


def test_maxpool_ties_go_to_the_first_max():
    x = np.ones((1, 1, 2, 2))
    layer = MaxPool2D(2)
    layer(x)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


def test_maxpool_nan_propagates():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    assert np.isnan(MaxPool2D(2)(x)).all()


@pytest.mark.parametrize("k, s, p, hw", CASES)
def test_pools_gradcheck(rng, k, s, p, hw):
    x = distinct(rng, (2, 2) + hw)
    for layer in (MaxPool2D(k, s, p), AvgPool2D(k, s, p)):
        errors = gradcheck(layer, x)
        assert max(errors.values()) < TOL, (layer, errors)


def test_global_avg_pool(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = GlobalAvgPool2D()
    y = layer(x)
    assert_close(y, x.mean(axis=(2, 3)), 1e-14, "y")
    assert layer.compute_output_shape((None, 3, 4, 5)) == (None, 3)
    errors = gradcheck(layer, x)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("k, s, p, hw", CASES)
def test_pools_match_torch(rng, k, s, p, hw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + hw)
    for layer, tm in (
        (MaxPool2D(k, s, p), torch.nn.MaxPool2d(k, s, p)),
        (AvgPool2D(k, s, p), torch.nn.AvgPool2d(k, s, p)),
    ):
        xt = torch.tensor(x, requires_grad=True)
        yt = tm(xt)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(dy))
        assert_close(layer(x), yt.detach().numpy(), 1e-10, f"{layer} y")
        assert_close(layer.backward(dy), xt.grad.numpy(), 1e-10, f"{layer} dx")


def test_pools_config_roundtrip():
    for layer in (MaxPool2D(3, 2, 1), AvgPool2D((2, 3)), GlobalAvgPool2D()):
        again = layer_from_config(layer_to_config(layer))
        assert type(again) is type(layer) and again.config() == layer_to_config(layer)["config"]
    assert MaxPool2D(2).stride == (2, 2) and MaxPool2D(2).config()["stride"] is None


def test_pools_bad_input():
    with pytest.raises(ValueError, match=r"x: expected an array of at least 4 dimensions .*got shape \(2, 3, 4\)"):
        MaxPool2D(2)(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"x: expected a 4-d array .*got shape \(1, 2, 3, 4, 5\)"):
        AvgPool2D(2)(np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"pooling window \(3, 3\) is larger than the padded input \(2, 5\)"):
        MaxPool2D(3)(np.zeros((1, 1, 2, 5)))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64"):
        MaxPool2D(2)(np.zeros((1, 1, 4, 4), np.int64))
    with pytest.raises(ValueError, match="axis 0 is empty"):
        GlobalAvgPool2D()(np.zeros((0, 1, 4, 4)))
    with pytest.raises(ValueError, match="kernel_size: expected an int >= 1"):
        MaxPool2D(0)
    with pytest.raises(ValueError, match="stride: expected an int >= 1"):
        AvgPool2D(2, stride=0)
    with pytest.raises(ValueError, match="padding: expected at most half the kernel size"):
        MaxPool2D(2, padding=2)
