"""Conv2D and its kernels: against the direct-loop twins, float64 central differences, PyTorch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close
from naive_conv import conv2d_backward_naive, conv2d_forward_naive

import numlstm
from numlstm import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D, ReLU, Sequential, gradcheck
from numlstm.layers.registry import layer_from_config, layer_to_config

TOL = 1e-6


def random_conv(rng, c=2, o=3, k=3, dtype=np.float64, **kwargs) -> Conv2D:
    layer = Conv2D(c, o, k, dtype=dtype, seed=int(rng.integers(2**31)), **kwargs)
    for p in layer.params.values():
        p[...] = rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    return layer


# (kernel, stride, padding, dilation, input (H, W))
CASES = [
    ((3, 3), 1, 0, 1, (6, 7)),
    ((3, 3), 1, 1, 1, (5, 5)),
    ((2, 2), 1, "same", 1, (5, 6)),
    ((4, 3), 1, "same", 1, (6, 5)),
    ((3, 3), 1, "same", 2, (7, 6)),
    ((3, 2), 2, 1, 1, (7, 8)),
    ((3, 3), (2, 1), (1, 0), 1, (6, 5)),
    ((2, 3), 1, (0, 1, 2, 1), 1, (5, 6)),
    ((3, 3), 2, (1, 2, 0, 1), 2, (9, 8)),
    ((1, 1), 1, 0, 1, (3, 4)),
    ((3, 3), 1, "valid", (2, 1), (7, 5)),
]


def _pads(layer):
    return layer.stride, layer.pads, layer.dilation


@pytest.mark.parametrize("threads", ["serial", "blocks"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k, s, p, d, hw", CASES)
def test_conv_matches_naive(rng, monkeypatch, k, s, p, d, hw, bias, threads):
    if threads == "blocks":
        monkeypatch.setattr(numlstm.config, "CONV_PARALLEL_MIN_MACS", 0)
    layer = random_conv(rng, 2, 3, k, stride=s, padding=p, dilation=d, bias=bias)
    x = rng.standard_normal((3, 2) + hw)
    y = layer(x)
    w, b = layer.params["weight"], layer.params.get("bias")
    assert_close(y, conv2d_forward_naive(x, w, b, *_pads(layer)), 1e-12, "y")
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    rdx, rdw, rdb = conv2d_backward_naive(x, w, dy, *_pads(layer))
    assert_close(dx, rdx, 1e-12, "dx")
    assert_close(layer.grads["weight"], rdw, 1e-12, "dw")
    if bias:
        assert_close(layer.grads["bias"], rdb, 1e-12, "db")


def test_conv_float32(rng):
    layer = random_conv(rng, 2, 3, 3, dtype=np.float32, padding="same")
    x = rng.standard_normal((2, 2, 5, 6)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32
    w64 = layer.params["weight"].astype(np.float64)
    ref = conv2d_forward_naive(x.astype(np.float64), w64, layer.params["bias"].astype(np.float64), (1, 1), layer.pads)
    assert_close(y, ref, 1e-5, "y")
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and layer.grads["weight"].dtype == np.float32


def test_conv_kernel_skips_dx(rng):
    from numlstm.kernels.cpu.conv import conv2d_backward_kernel

    x = rng.standard_normal((2, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((2, 3, 3, 3))
    dw, db = np.zeros_like(w), np.zeros(3)
    conv2d_backward_kernel(x, w, dy, (1, 1), (0, 0, 0, 0), (1, 1), np.empty((2, 0, 0, 0)), dw, db, False)
    _, rdw, rdb = conv2d_backward_naive(x, w, dy)
    assert_close(dw, rdw, 1e-12, "dw")
    assert_close(db, rdb, 1e-12, "db")


@pytest.mark.parametrize("k, s, p, d, hw", CASES[1:9:2])
def test_conv_gradcheck(rng, k, s, p, d, hw):
    layer = random_conv(rng, 2, 2, k, stride=s, padding=p, dilation=d)
    errors = gradcheck(layer, rng.standard_normal((2, 2) + hw))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


def test_conv_init_like_torch():
    layer = Conv2D(4, 5, (3, 2), seed=3)
    bound = 1 / np.sqrt(4 * 3 * 2)
    assert layer.params["weight"].shape == (5, 4, 3, 2) and layer.params["bias"].shape == (5,)
    for p in layer.params.values():
        assert p.dtype == np.float32 and np.all(np.abs(p) <= bound)
    assert np.std(layer.params["weight"]) > 0.3 * bound
    np.testing.assert_array_equal(layer.params["weight"], Conv2D(4, 5, (3, 2), seed=3).params["weight"])
    assert set(Conv2D(1, 1, 1, bias=False).params) == {"weight"}


def test_conv_accumulates_and_caches_a_copy(rng):
    layer = random_conv(rng, padding=1)
    x = rng.standard_normal((2, 2, 4, 4))
    dy = rng.standard_normal((2, 3, 4, 4))
    layer(x)
    layer.backward(dy)
    once = {k: g.copy() for k, g in layer.grads.items()}
    layer(x)
    x[...] = 0.0  # the caller reuses its buffer
    layer.backward(dy)
    for k, g in layer.grads.items():
        assert_close(g, 2 * once[k], 1e-13, k)
    layer.eval()
    layer(x)
    with pytest.raises(RuntimeError, match=r"layer\.train\(\)"):
        layer.backward(dy)


def test_conv_config_roundtrip(rng):
    layer = Conv2D(2, 3, (3, 2), stride=(1, 2), padding=(0, 1, 1, 0), dilation=2, bias=False, dtype=np.float64, seed=1)
    spec = layer_to_config(layer)
    json.dumps(spec)
    again = layer_from_config(spec)
    assert again.config() == spec["config"]
    np.testing.assert_array_equal(again.params["weight"], layer.params["weight"])
    assert Conv2D(1, 1, 2, padding="same").config()["padding"] == "same"


def test_sequential_cnn_gradcheck(rng):
    model = Sequential(
        [
            random_conv(rng, 1, 2, 3, padding=1),
            ReLU(),
            MaxPool2D(2),
            random_conv(rng, 2, 3, 2, padding="same"),
            GlobalAvgPool2D(),
            Dense(3, 2, dtype=np.float64, seed=0),
        ]
    )
    x = rng.standard_normal((2, 1, 6, 6))
    errors = gradcheck(model, x)
    assert max(errors.values()) < TOL, errors
    assert model.compute_output_shape((None, 1, 6, 6)) == (None, 2)


@pytest.mark.parametrize("k, s, p, d, hw", CASES)
def test_conv_matches_torch(rng, k, s, p, d, hw):
    torch = pytest.importorskip("torch")
    layer = random_conv(rng, 2, 3, k, stride=s, padding=p, dilation=d)
    x = rng.standard_normal((2, 2) + hw)
    pt, pb, pl, pr = layer.pads
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.params["weight"], requires_grad=True)
    bt = torch.tensor(layer.params["bias"], requires_grad=True)
    xp = torch.nn.functional.pad(xt, (pl, pr, pt, pb))
    yt = torch.nn.functional.conv2d(xp, wt, bt, stride=layer.stride, dilation=layer.dilation)
    dy = rng.standard_normal(tuple(yt.shape))
    (yt * torch.from_numpy(dy)).sum().backward()
    y = layer(x)
    dx = layer.backward(dy)
    assert_close(y, yt.detach().numpy(), 1e-10, "y")
    assert_close(dx, xt.grad.numpy(), 1e-10, "dx")
    assert_close(layer.grads["weight"], wt.grad.numpy(), 1e-10, "dw")
    assert_close(layer.grads["bias"], bt.grad.numpy(), 1e-10, "db")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_same_matches_torch_module(rng):
    torch = pytest.importorskip("torch")
    for k in (2, 3, 4):
        layer = random_conv(rng, 2, 3, k, padding="same")
        m = torch.nn.Conv2d(2, 3, k, padding="same").double()
        m.load_state_dict({n: torch.from_numpy(v) for n, v in layer.state_dict().items()})
        x = rng.standard_normal((2, 2, 5, 6))
        assert_close(layer(x), m(torch.from_numpy(x)).detach().numpy(), 1e-10, f"same k={k}")


# -- bad input --------------------------------------------------------------------------------------
def test_conv_bad_input(rng):
    layer = Conv2D(2, 3, 3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"x: expected a 4-d array .*got shape \(2, 5, 5\)"):
        layer(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, 2, \?, \?\).*got \(1, 3, 5, 5\)"):
        layer(np.zeros((1, 3, 5, 5)))
    with pytest.raises(TypeError, match=r"x: expected dtype float64, got float32"):
        layer(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"larger than the padded input \(2, 5\)"):
        layer(np.zeros((1, 2, 2, 5)))
    with pytest.raises(ValueError, match=r"axis 0 is empty"):
        layer(np.zeros((0, 2, 5, 5)))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"padding": "full"}, ValueError, "padding: expected"),
        ({"padding": "same", "stride": 2}, ValueError, "'same' needs stride 1"),
        ({"padding": (1, 2, 3)}, ValueError, "padding: expected"),
        ({"padding": -1}, ValueError, "padding: expected an int >= 0"),
        ({"padding": 1.5}, TypeError, "padding: expected"),
        ({"stride": 0}, ValueError, "stride: expected an int >= 1"),
        ({"dilation": (1, 0)}, ValueError, r"dilation\[1\]: expected an int >= 1"),
        ({"kernel_size": 0}, ValueError, "kernel_size: expected an int >= 1"),
        ({"in_channels": 0}, ValueError, "in_channels: expected an int >= 1"),
        ({"out_channels": -2}, ValueError, "out_channels: expected an int >= 1"),
        ({"dtype": np.int32}, TypeError, "dtype: expected"),
    ],
)
def test_conv_bad_arguments(kwargs, exc, match):
    args = {"in_channels": 1, "out_channels": 1, "kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=match):
        Conv2D(**args)


def test_conv_exported():
    assert numlstm.Conv2D is Conv2D
