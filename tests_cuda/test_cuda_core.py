"""The device contract (numlstm.backend, Layer.to, Parameter objects) and the basic kernels."""

import numpy as np
import pytest
from core_util import TOL, rel

import numlstm
from numlstm import backend
from numlstm.kernels.cuda import elementwise as ew
from numlstm.kernels.cuda import linalg


def test_backend_round_trip():
    a = np.arange(12.0).reshape(3, 4)
    assert backend.cuda_available()
    assert backend.check_device("CUDA") == "cuda" and backend.check_device("cuda:0") == "cuda"
    d = backend.to_device(a, "cuda")
    assert backend.is_device_array(d) and backend.device_of(d) == "cuda" and backend.device_of(a) == "cpu"
    assert backend.to_device(d, "cuda") is d
    back = backend.to_numpy(d)
    assert isinstance(back, np.ndarray) and np.array_equal(back, a)
    assert backend.to_device(None, "cuda") is None
    h, c = backend.to_numpy(backend.to_device((a, a + 1), "cuda"))
    assert np.array_equal(c, a + 1)
    z = backend.zeros((2, 3), np.float32, "cuda")
    assert np.array_equal(backend.to_numpy(z), np.zeros((2, 3), np.float32))
    assert backend.empty((2,), np.float64, "cuda").shape == (2,)


def test_device_input_checks():
    d = backend.to_device(np.zeros((2, 3)), "cuda")
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        backend.device_input(d, "x", (None, 3), np.dtype(np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\?, 4\)"):
        backend.device_input(d, "x", (None, 4), np.dtype(np.float64))
    with pytest.raises(ValueError, match="x: expected a 3-d array"):
        backend.device_input(d, "x", (None, None, 3), np.dtype(np.float64))
    assert backend.device_input(np.ones((2, 3)), "x", (None, 3), np.dtype(np.float64)).shape == (2, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_every_variant(dtype):
    rng = np.random.default_rng(1)
    tol = TOL if dtype == np.float64 else 1e-5
    M, N, K = 5, 7, 9  # not multiples of the tile (4): edge tiles everywhere
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            out0 = rng.standard_normal((M, N)).astype(dtype)
            prod = (a.T if ta else a) @ (b.T if tb else b)
            for acc in (False, True):
                out = backend.to_device(out0, "cuda")
                linalg.gemm(backend.to_device(a, "cuda"), backend.to_device(b, "cuda"), out, ta, tb, acc)
                assert rel(out, out0 + prod if acc else prod) < tol, (ta, tb, acc)


@pytest.mark.parametrize("tile, thread_tile, tile_k", [(4, 1, 4), (4, 4, 2), (6, 3, 5)])
def test_gemm_launch_shapes(tile, thread_tile, tile_k, small_launches):
    small_launches.GEMM_TILE, small_launches.GEMM_THREAD_TILE, small_launches.GEMM_TILE_K = tile, thread_tile, tile_k
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((6, 5))
    out = backend.empty((7, 6), np.float64, "cuda")
    linalg.gemm(backend.to_device(a, "cuda"), backend.to_device(b, "cuda"), out, trans_b=True)
    assert rel(out, a @ b.T) < TOL


def test_gemm_tile_must_be_a_multiple(small_launches):
    small_launches.GEMM_TILE, small_launches.GEMM_THREAD_TILE = 6, 4
    d = backend.zeros((2, 2), np.float64, "cuda")
    with pytest.raises(ValueError, match="multiple of its thread tile"):
        linalg.gemm(d, d, d)


def test_gemm_small_tiles_for_few_blocks(small_launches):
    """Fewer blocks than GEMM_MIN_BLOCKS with the big tiles: the small tiles run (here 2x2, one output per thread)."""
    small_launches.GEMM_MIN_BLOCKS = 10**6
    small_launches.GEMM_TILE = 6  # not a multiple of GEMM_THREAD_TILE: only valid because it is not used
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((3, 4))
    out = backend.empty((5, 4), np.float64, "cuda")
    linalg.gemm(backend.to_device(a, "cuda"), backend.to_device(b, "cuda"), out, trans_a=True)
    assert rel(out, a.T @ b) < TOL


def test_elementwise_kernels():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((3, 4, 5))
    b = rng.standard_normal((3, 4, 5))
    da, db = backend.to_device(a, "cuda"), backend.to_device(b, "cuda")
    out = backend.empty(a.shape, a.dtype, "cuda")
    ew.add(da, db, out)
    assert rel(out, a + b) < TOL
    ew.multiply(da, db, out)
    assert rel(out, a * b) < TOL
    ew.subtract(da, db, out)
    assert rel(out, a - b) < TOL
    ew.scale(da, 0.5, out)
    assert rel(out, a * 0.5) < TOL
    ew.add_into(out, db)
    assert rel(out, a * 0.5 + b) < TOL
    sw = backend.empty((4, 3, 5), a.dtype, "cuda")
    ew.swap01(da, sw)
    assert np.array_equal(backend.to_numpy(sw), a.transpose(1, 0, 2))
    two = backend.zeros((12, 10), a.dtype, "cuda")
    ew.copy_cols(da.reshape(12, 5), 1, two, 6, 3)
    ew.copy_cols(da.reshape(12, 5), 0, two, 6, 2, accumulate=True)
    ref = np.zeros((12, 10))
    ref[:, 6:9] = a.reshape(12, 5)[:, 1:4]
    ref[:, 6:8] += a.reshape(12, 5)[:, 0:2]
    assert rel(two, ref) < TOL
    cs = backend.to_device(np.ones(5), "cuda")
    ew.col_sum(da.reshape(12, 5), cs, accumulate=True)
    assert rel(cs, 1 + a.reshape(12, 5).sum(axis=0)) < TOL
    ew.fill(out, 3.0)
    assert np.all(backend.to_numpy(out) == 3.0)


def test_reductions_and_argmax():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(37)
    d = backend.to_device(a, "cuda")
    out = backend.zeros(4, a.dtype, "cuda")
    ew.reduce_into(d, out, 0, ew.SUM)
    ew.reduce_into(d, out, 1, ew.SUM_SQUARES)
    ew.reduce_into(d, out, 2, ew.SUM_ABS_POW, 3.0)
    ew.reduce_into(d, out, 3, ew.MAX_ABS)
    ref = [a.sum(), (a * a).sum(), (np.abs(a) ** 3).sum(), np.abs(a).max()]
    assert rel(out, np.array(ref)) < TOL
    assert abs(ew.total(d) - a.sum()) < 1e-12
    m = rng.standard_normal((6, 4))
    m[2] = [1.0, 3.0, 3.0, 0.0]  # ties: the first
    m[4, 1] = np.nan  # NaN counts as the maximum, as np.argmax
    idx = backend.empty(6, np.int64, "cuda")
    ew.argmax_rows(backend.to_device(m, "cuda"), idx)
    assert np.array_equal(backend.to_numpy(idx), np.argmax(m, axis=1))


def test_layer_to_round_trip_keeps_parameters_and_optimizer():
    layer = numlstm.Dense(3, 4, dtype=np.float64, seed=0)
    before = {k: v.copy() for k, v in layer.params.items()}
    params = layer.parameters()
    opt = numlstm.optim.Adam(params, lr=0.1)
    assert layer.to("cuda") is layer and layer.device == "cuda"
    assert layer.parameters()[0] is params[0]  # persistent objects, repointed
    assert all(backend.is_device_array(p.data) and backend.is_device_array(p.grad) for p in opt.params)
    layer.grads["weight"].copy_to_device(np.ones((4, 3)))
    opt.step()  # state created on the device
    assert all(backend.is_device_array(b) for st in opt.state for b in st.values())
    sd = layer.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert not np.allclose(sd["weight"], before["weight"])
    layer.load_state_dict(before)
    layer.zero_grad()
    assert np.all(backend.to_numpy(layer.grads["weight"]) == 0)
    layer.to("cpu")
    assert isinstance(layer.params["weight"], np.ndarray) and np.array_equal(layer.params["weight"], before["weight"])
    assert opt.params[0].data is layer.params["weight"]
    opt.step()  # state follows the parameters back to the host
    assert all(isinstance(b, np.ndarray) for st in opt.state for b in st.values())
    opt.to("cuda")
    assert all(backend.is_device_array(b) for st in opt.state for b in st.values())
    assert isinstance(opt.state_dict()["state.0.exp_avg"], np.ndarray)


def test_model_to_and_state_dict():
    m = numlstm.Sequential([numlstm.LSTM(3, 4, seed=0), numlstm.LastStep(), numlstm.Dense(4, 2, seed=1)])
    params = m.parameters()
    sd = m.state_dict()
    m.to("cuda")
    assert m.device == "cuda" and all(layer.device == "cuda" for layer in m)
    assert [p.name for p in m.parameters()] == [p.name for p in params]
    assert all(p is q for p, q in zip(m.parameters(), params, strict=True))
    sd2 = m.state_dict()
    assert all(np.array_equal(sd[k], sd2[k]) for k in sd)
    m.load_state_dict({k: v * 2 for k, v in sd.items()})
    assert np.array_equal(backend.to_numpy(m[2].params["weight"]), sd["2.weight"] * 2)
    m.zero_grad()
    m.to("cpu")
    assert isinstance(m[0].params["weight_ih_l0"], np.ndarray)


def test_layer_without_cuda_path_refuses_before_moving():
    class NoCuda(numlstm.Layer):
        def __init__(self):
            super().__init__()
            self.params = {"w": np.ones(2)}
            self.grads = {"w": np.zeros(2)}

    m = numlstm.Sequential([numlstm.Dense(2, 2, seed=0), NoCuda()])
    with pytest.raises(NotImplementedError, match="NoCuda.*no CUDA path"):
        m.to("cuda")
    assert m[0].device == "cpu" and isinstance(m[0].params["weight"], np.ndarray)
