"""The CPU runtime pieces under the kernels: tiled products, BLAS calls and thread blocks."""

import os
import threading
import time

import numpy as np
import pytest

from numlstm import _threads, config
from numlstm.kernels.cpu import sync
from numlstm.kernels.cpu.blas import gemm
from numlstm.kernels.cpu.linalg import (
    dot_panels,
    gemm_nn_tiles,
    gemm_tn_tiles,
    pack_panels,
    small_tiles_nn,
    small_tiles_tn,
    tiling,
)


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


def _wait_until_asleep(pool, timeout=2.0):
    t0 = time.perf_counter()
    while pool.sleeping < pool.n:
        assert time.perf_counter() - t0 < timeout, "the pool's workers never went to sleep"
        time.sleep(0.001)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_run_blocks_wakes_sleepers_pinned_then_restores(monkeypatch):
    """Blocks handed to sleeping workers run on another thread and CPU (the
    caller pinned to its own while they run), the caller's CPU set is
    restored afterwards, also when a block raises."""
    monkeypatch.setattr(config, "PIN_THREADS", True)
    monkeypatch.setattr(config, "POOL_SPIN_US", 0.0)  # workers sleep at once
    _threads.run_blocks([lambda: None, lambda: None])
    pool = _threads._pool
    before = os.sched_getaffinity(0)
    seen = {}

    def block(name):
        def run():
            seen[name] = (threading.get_native_id(), frozenset(os.sched_getaffinity(0)))

        return run

    _wait_until_asleep(pool)
    _threads.run_blocks([block("a"), block("b")])
    assert os.sched_getaffinity(0) == before
    (tid_a, cpus_a), (tid_b, cpus_b) = seen["a"], seen["b"]
    assert tid_a == threading.get_native_id() and tid_b != tid_a
    if _threads._getcpu is not None:
        assert len(cpus_a) == 1 and not (cpus_a & cpus_b)

    def boom():
        raise KeyError("from a block")

    for fns in ([block("a"), boom], [boom, block("b")]):
        _wait_until_asleep(pool)
        with pytest.raises(KeyError, match="from a block"):
            _threads.run_blocks(fns)
        assert os.sched_getaffinity(0) == before


def test_run_blocks_spinning_workers(monkeypatch):
    """With workers spinning between blocks: many rounds in a row, more
    blocks than threads, errors from a worker's block, nested and
    concurrent calls; every block runs exactly once."""
    monkeypatch.setattr(config, "POOL_SPIN_US", 100_000.0)
    counts = np.zeros(7, np.int64)

    def block(i):
        def run():
            counts[i] += 1

        return run

    for _ in range(200):
        _threads.run_blocks([block(i) for i in range(3)])
    _threads.run_blocks([block(i) for i in range(7)])
    np.testing.assert_array_equal(counts, [201, 201, 201, 1, 1, 1, 1])

    def boom():
        raise ZeroDivisionError("worker block")

    with pytest.raises(ZeroDivisionError, match="worker block"):
        _threads.run_blocks([block(0), boom])
    assert counts[0] == 202
    _threads.run_blocks([block(1), block(2)])  # the pool still works
    assert counts[1] == counts[2] == 202

    # a block that calls run_blocks: the inner blocks run on its own thread
    inner = []
    _threads.run_blocks([lambda: _threads.run_blocks([lambda: inner.append(1), lambda: inner.append(2)]), block(3)])
    assert sorted(inner) == [1, 2] and counts[3] == 2

    # two threads at once: one gets the pool, the other runs its blocks itself
    done = []

    def caller(k):
        for _ in range(50):
            _threads.run_blocks([block(4 + k), block(4 + k)])
        done.append(k)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(done) == [0, 1]
    np.testing.assert_array_equal(counts[4:6], [101, 101])


def test_run_blocks_unpinned(monkeypatch):
    monkeypatch.setattr(config, "PIN_THREADS", False)
    out = []
    _threads.run_blocks([lambda: out.append(1), lambda: out.append(2)])
    assert sorted(out) == [1, 2]


def test_spin_flags():
    """The spin-waits return at once on a changed flag, and after their
    budget (with the unchanged value) otherwise."""
    flags = np.zeros(16, np.int64)
    sync.store_flag(flags, 8, 5)
    assert flags[8] == 5
    assert sync.spin_while_equal(flags, 8, 4, 10**9) == 5
    assert sync.spin_while_equal(flags, 8, 5, 100) == 5
    assert sync.spin_until_at_least(flags, 8, 5, 10**9)
    assert not sync.spin_until_at_least(flags, 8, 6, 100)
    done = np.zeros(8, np.int64)
    flags[0] = 3
    assert sync.worker_wait(flags, done, 0, 2, 10**9, 3) == 3 and done[0] == 2
    assert sync.worker_wait(flags, done, 0, 3, 100, 0) == 3 and done[0] == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("ta", "tb"), [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_matches_numpy(dtype, ta, tb):
    """alpha, beta, transposes, and blocks of larger arrays as operands and
    output (leading dimension); nothing outside the output block changes."""
    rng = np.random.default_rng(int(ta) * 2 + int(tb))
    M, N, K = 7, 5, 9
    big_a = rng.standard_normal((20, 20)).astype(dtype)
    big_b = rng.standard_normal((20, 20)).astype(dtype)
    a = big_a[2 : 2 + (K if ta else M), 3 : 3 + (M if ta else K)]
    b = big_b[1 : 1 + (N if tb else K), 4 : 4 + (K if tb else N)]
    big_c = rng.standard_normal((12, 11)).astype(dtype)
    c = big_c[2 : 2 + M, 3 : 3 + N]
    expect = big_c.copy()
    expect[2 : 2 + M, 3 : 3 + N] = 1.5 * ((a.T if ta else a) @ (b.T if tb else b)) + 0.5 * c
    gemm(ta, tb, 1.5, a, b, 0.5, c)
    np.testing.assert_allclose(big_c, expect, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
    # beta = 0 never reads C
    c[...] = np.nan
    gemm(ta, tb, 1.0, a, b, 0.0, c)
    np.testing.assert_allclose(c, (a.T if ta else a) @ (b.T if tb else b), rtol=1e-5, atol=1e-5)


def test_gemm_rejects_bad_operands():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="inner dimensions"):
        gemm(False, False, 1.0, a, np.ones((5, 2)), 0.0, np.ones((3, 2)))
    with pytest.raises(ValueError, match="shapes"):
        gemm(False, False, 1.0, a, np.ones((4, 2)), 0.0, np.ones((2, 2)))
    with pytest.raises(ValueError, match="contiguous rows"):
        gemm(False, False, 1.0, a, np.ones((4, 4))[:, ::2], 0.0, np.ones((3, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("mc", "nc", "kc"), [(1, 1, 1), (2, 3, 4), (5, 16, 3), (64, 64, 64)])
def test_tiled_products_match_numpy(dtype, mc, nc, kc):
    """Tiles that divide the product unevenly, one-element tiles, and one
    tile for everything; row blocks of larger arrays as operands."""
    rng = np.random.default_rng(mc * 100 + nc * 10 + kc)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    R, M, N = 11, 9, 7
    a = rng.standard_normal((R + 4, M)).astype(dtype)[2 : 2 + R]
    b = rng.standard_normal((M, N)).astype(dtype)
    c = rng.standard_normal((R, N)).astype(dtype)
    expect = a @ b + c
    gemm_nn_tiles(a, b, 1.0, c, mc, nc, kc)
    np.testing.assert_allclose(c, expect, **tol)
    c[...] = np.nan
    gemm_nn_tiles(a, b, 0.0, c, mc, nc, kc)
    np.testing.assert_allclose(c, a @ b, **tol)
    x = rng.standard_normal((R, N)).astype(dtype)
    acc = rng.standard_normal((M, N)).astype(dtype)
    expect = acc + a.T @ x
    gemm_tn_tiles(a, x, 1.0, acc, mc, nc, kc)
    np.testing.assert_allclose(acc, expect, **tol)
    acc[...] = np.nan
    gemm_tn_tiles(a, x, 0.0, acc, mc, nc, kc)
    np.testing.assert_allclose(acc, a.T @ x, **tol)


def test_small_tile_rules(monkeypatch):
    """The measured shapes get the measured tiles, every tile within the
    budget; big weight products, products within the budget and the tiling
    off are one call."""
    monkeypatch.setattr(config, "BLAS_SMALL_MNK", 1_000_000)
    assert small_tiles_nn(448, 512, 128) == (12, 128, 512)
    assert small_tiles_nn(256, 1600, 512) == (12, 128, 400)
    assert small_tiles_nn(8, 16, 16) == (8, 16, 16)
    assert small_tiles_nn(256, 512, 1600, kc_max=256, rows=24) == (24, 128, 256)
    assert small_tiles_tn(448, 512, 128) == (128, 128, 48)
    assert small_tiles_tn(448, 512, 28) == (128, 28, 128)
    assert small_tiles_tn(6400, 2048, 512) == (2048, 512, 6400)
    for budget in (7, 100, 1_000_000):
        monkeypatch.setattr(config, "BLAS_SMALL_MNK", budget)
        for M, K, N in [(448, 512, 128), (30, 7, 5), (3, 8, 12)]:
            mc, nc, kc = small_tiles_nn(M, K, N)
            assert 1 <= mc <= M and 1 <= nc <= N and 1 <= kc <= K
            assert mc * kc * nc <= max(budget, kc) or (mc, nc, kc) == (M, N, K)
            mc, nc, kc = small_tiles_tn(M, K, N)
            assert 1 <= mc <= K and 1 <= nc <= N and 1 <= kc <= M
            assert mc * nc * kc <= budget or (mc, nc, kc) == (K, N, M)
    monkeypatch.setattr(config, "BLAS_SMALL_MNK", 0)
    assert small_tiles_nn(448, 512, 128) == (448, 128, 512)
    assert small_tiles_tn(448, 512, 128) == (512, 128, 448)
