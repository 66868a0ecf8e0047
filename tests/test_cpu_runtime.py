"""The CPU runtime pieces under the kernels: tiled products and thread blocks."""

import os
import threading

import numpy as np
import pytest

from numlstm import _threads, config
from numlstm.kernels.cpu.linalg import dot_panels, pack_panels, tiling


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("M", "K", "N", "budget"), [(7, 5, 12, 40), (9, 3, 17, 20), (4, 6, 8, 10**6), (5, 4, 33, 1)])
def test_dot_panels_matches_numpy(dtype, M, K, N, budget, monkeypatch):
    """Every tiling (whole rows of B, column panels with a padded last one,
    one-element tiles) gives the plain product."""
    monkeypatch.setattr(config, "BLAS_SMALL_MNK", budget)
    rng = np.random.default_rng(M * K * N)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    mb, nb = tiling(M, K, N)
    assert 1 <= mb and 1 <= nb <= N
    if budget < M * K * N:
        assert mb * K * nb <= max(budget, K)  # each tile within the budget (a 1x1 tile at least)
    bp = pack_panels(b, nb)
    assert bp.shape == (-(-N // nb), K, nb) and bp.flags.c_contiguous
    out = np.full((M, N), np.nan, dtype)
    dot_panels(a, bp, out, mb, np.empty((mb, nb), dtype))
    np.testing.assert_allclose(out, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)


def test_tiling_rules(monkeypatch):
    """The measured shapes: the LSTM's (rows, H) x (H, 4H) at H = 128 takes
    whole rows of B in tiles of a multiple of 4 rows; at H = 512 panels of
    64 (forward) and 16 (backward) columns for 30-row tiles; a product within
    the budget, or the tiling off, is one call."""
    monkeypatch.setattr(config, "BLAS_SMALL_MNK", 1_000_000)
    assert tiling(32, 128, 512) == (12, 512)
    assert tiling(64, 512, 2048) == (30, 64)
    assert tiling(64, 2048, 512) == (30, 16)
    assert tiling(4, 128, 512) == (4, 512)
    monkeypatch.setattr(config, "BLAS_SMALL_MNK", 0)
    assert tiling(64, 512, 2048) == (64, 2048)


def test_pack_panels_layout():
    b = np.arange(12.0).reshape(3, 4)
    p = pack_panels(b, 3)
    np.testing.assert_array_equal(p[0], b[:, :3])
    np.testing.assert_array_equal(p[1], np.pad(b[:, 3:], ((0, 0), (0, 2))))
    np.testing.assert_array_equal(pack_panels(b, 4)[0], b)
    np.testing.assert_array_equal(pack_panels(b, 5)[0], np.pad(b, ((0, 0), (0, 1))))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_run_blocks_pins_then_restores(monkeypatch):
    """The blocks run on distinct CPUs, each sees its own result, and the
    caller's CPU set is restored afterwards, also when a block raises."""
    monkeypatch.setattr(config, "PIN_THREADS", True)
    before = os.sched_getaffinity(0)
    seen = {}

    def block(name):
        def run():
            seen[name] = (threading.get_native_id(), frozenset(os.sched_getaffinity(0)))

        return run

    _threads.run_blocks([block("a"), block("b")])
    assert os.sched_getaffinity(0) == before
    (tid_a, cpus_a), (tid_b, cpus_b) = seen["a"], seen["b"]
    assert tid_a != tid_b
    if _threads._getcpu is not None:
        assert len(cpus_a) == 1 and not (cpus_a & cpus_b)

    def boom():
        raise KeyError("from a block")

    with pytest.raises(KeyError, match="from a block"):
        _threads.run_blocks([block("a"), boom])
    assert os.sched_getaffinity(0) == before
    with pytest.raises(KeyError, match="from a block"):
        _threads.run_blocks([boom, block("b")])
    assert os.sched_getaffinity(0) == before


def test_run_blocks_unpinned(monkeypatch):
    monkeypatch.setattr(config, "PIN_THREADS", False)
    out = []
    _threads.run_blocks([lambda: out.append(1), lambda: out.append(2)])
    assert sorted(out) == [1, 2]
