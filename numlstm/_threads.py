"""Thread control for the CPU kernels: row blocks and BLAS threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time

import numba
import numpy as np

from numlstm import config

_blas_libs = None


def _load_getcpu():
    """glibc's sched_getcpu (the CPU this thread runs on), or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


_getcpu = _load_getcpu()


def _blas_controllers():
    """threadpoolctl controllers of every loaded BLAS (numba's np.dot calls
    SciPy's), or [] when threadpoolctl is missing."""
    global _blas_libs
    if _blas_libs is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS numba uses)

        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _blas_libs = []
        else:
            _blas_libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas_libs


def max_chunks() -> int:
    """The most blocks any threaded call is split into (``config.PARALLEL_MAX_CHUNKS``,
    or Numba's thread count); per-block accumulators are sized by it."""
    return max(1, config.PARALLEL_MAX_CHUNKS or numba.get_num_threads())


def num_chunks(batch: int, step_macs: int) -> int:
    """How many row blocks to run in parallel (1 = serial)."""
    limit = max_chunks()
    if limit < 2 or batch > (config.PARALLEL_MAX_BATCH or batch) or step_macs < config.PARALLEL_MIN_STEP_MACS:
        return 1
    if not _blas_controllers():
        return 1
    return max(1, min(limit, batch // max(1, config.PARALLEL_MIN_ROWS)))


def product_chunks(rows: int, macs: int, min_rows: int | None = None) -> int:
    """How many row blocks a big call is split into, each on its own thread
    with BLAS single-threaded (1: one call, BLAS threading it itself): the
    LSTM's projection of every step and its weight products after the loop
    (in small-matrix tiles: one BLAS call on two threads measured 91-101
    GFLOP/s, two threads of tiles 2 x 106-116), and the convolutions' images.
    1 below ``config.CONV_PARALLEL_MIN_MACS`` multiply-adds; at least
    ``min_rows`` rows a block (default ``config.PARALLEL_MIN_ROWS``)."""
    limit = max_chunks()
    if limit < 2 or macs < config.CONV_PARALLEL_MIN_MACS or not _blas_controllers():
        return 1
    per = config.PARALLEL_MIN_ROWS if min_rows is None else min_rows
    return max(1, min(limit, rows // max(1, per)))


def split_rows(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges (start, stop) covering 0..n, sizes within one."""
    return [(c * n // parts, (c + 1) * n // parts) for c in range(parts)]


@contextlib.contextmanager
def single_threaded_blas(active: bool = True):
    """BLAS limited to one thread inside (when ``active``): with the batch
    split, each row block calls BLAS from its own thread; BLAS's own worker
    threads would then fight them for the cores (and they spin-wait for up to
    about 0.1 s after each call)."""
    if not active:
        yield
        return
    libs = _blas_controllers()
    saved = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved, strict=True):
            lib.set_num_threads(n)


class _Pool:
    """Persistent worker threads that spin between blocks.

    A worker that has finished a block spins (in ``kernels.cpu.sync``,
    without the GIL) for about ``config.POOL_SPIN_US`` waiting for the next
    one, then sleeps on a condition. The LSTM and ConvLSTM hand out blocks
    every few tens of microseconds: waking a sleeping thread cost 30-80 us
    here each time (measured: an empty two-block ``run_blocks`` took 96 us
    through ``ThreadPoolExecutor``, 5-7 us to a spinning worker;
    ``perf/threads_cpu.py``).

    Protocol: the caller writes the jobs, then bumps ``seq[0]`` (the
    generation) under ``cond``, notifying sleepers; worker w runs its jobs
    and publishes ``done[8 w] = generation`` from compiled code (flags 64
    bytes apart, one cache line each).
    """

    def __init__(self, n: int):
        from numlstm.kernels.cpu import sync

        self.sync = sync
        self.n = n
        self.seq = np.zeros(8, np.int64)
        self.done = np.zeros(8 * n, np.int64)
        self.jobs: list[list] = [[] for _ in range(n)]
        self.errors: list[BaseException | None] = [None] * n
        self.cond = threading.Condition()
        self.sleeping = 0
        self.busy = threading.Lock()
        self.tids: list[int] = []
        self.cpus: set[int] | None = None
        self.iters_per_us = _calibrate(sync)
        ready = threading.Barrier(n + 1)
        for w in range(n):
            threading.Thread(target=self._work, args=(w, ready), name=f"numlstm-{w}", daemon=True).start()
        ready.wait()

    def _work(self, w: int, ready) -> None:
        self.tids.append(threading.get_native_id())
        ready.wait()
        sync, seq = self.sync, self.seq
        last = 0
        while True:
            spin = int(config.POOL_SPIN_US * self.iters_per_us)
            settle = int(config.POOL_SETTLE_US * self.iters_per_us)
            v = sync.worker_wait(seq, self.done, 8 * w, last, spin, settle)
            if v == last:
                with self.cond:
                    self.sleeping += 1
                    while seq[0] == last:
                        self.cond.wait()
                    self.sleeping -= 1
                    v = int(seq[0])
            last = v
            for job in self.jobs[w]:
                try:
                    job()
                except BaseException as err:  # noqa: BLE001 - handed to the caller
                    if self.errors[w] is None:
                        self.errors[w] = err

    def run(self, fns) -> None:
        """fns[0] here, the rest dealt round-robin to the workers."""
        n = self.n
        for w in range(n):
            self.jobs[w] = list(fns[1 + w :: n])
            self.errors[w] = None
        saved = None
        with self.cond:
            gen = int(self.seq[0]) + 1
            if self.sleeping or (self.cpus is not None and _getcpu is not None and _getcpu() in self.cpus):
                # waking a sleeper (or the caller sits on a worker's CPU): pin first
                saved = _pin(self, len(fns))
                self.cond.notify_all()
            self.seq[0] = gen
        try:
            fns[0]()
        finally:
            try:
                wait = max(1, int(50 * self.iters_per_us))
                # every worker, also one without a job: one that had slept
                # must not read the next generation's jobs as this one's
                for w in range(n):
                    while not self.sync.spin_until_at_least(self.done, 8 * w, gen, wait):
                        os.sched_yield()  # let a worker that shares this CPU run
            finally:
                if saved is not None:
                    os.sched_setaffinity(0, saved)
        for err in self.errors:
            if err is not None:
                raise err


def _calibrate(sync) -> float:
    """Pause iterations per microsecond of spinning on this CPU."""
    flags = np.zeros(8, np.int64)
    sync.spin_while_equal(flags, 0, 0, 10)  # compile / load from cache
    n = 20_000
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        sync.spin_while_equal(flags, 0, 0, n)
        best = min(best, time.perf_counter() - t)
    return max(1.0, n / (best * 1e6))


def _pin(pool: _Pool, n: int):
    """Keep the caller and the pool's threads on distinct CPUs; returns the
    caller's previous CPU set (to restore), or None when not pinning.

    Why: a woken pool thread is placed on the waker's CPU (wake-affine) and
    waits there behind the caller's block instead of moving to the idle CPU,
    so the blocks ran one after the other (measured here: two 0.5 ms blocks
    took 1.0-1.1 ms, and the LSTM split path lost its gain after any pause).
    The caller is pinned to the CPU it is on, the workers to the others,
    before they are woken (Linux only). Spinning workers need no pinning:
    they are running, each on a CPU of its own."""
    if not config.PIN_THREADS or _getcpu is None:
        return None
    try:
        allowed = os.sched_getaffinity(0)
        here = _getcpu()
        if here not in allowed or len(allowed) < n:
            return None
        others = allowed - {here}
        for tid in pool.tids:
            os.sched_setaffinity(tid, others)
        pool.cpus = others
        os.sched_setaffinity(0, {here})
    except OSError:  # pragma: no cover - no permission: run unpinned
        return None
    return allowed


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _reset_after_fork() -> None:
    """A forked child has none of the parent's threads: start a new pool on demand."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _noop() -> None:
    pass


def start_pool() -> None:
    """Start the pool and compile (or load) its spin-wait kernels now, not in
    the first parallel block (``numlstm.warmup`` calls it)."""
    if numba.get_num_threads() > 1:
        run_blocks([_noop, _noop])


def run_blocks(fns) -> None:
    """Run the callables concurrently: the first on this thread, the rest on
    a persistent pool (``_Pool``). Call inside ``single_threaded_blas(len(fns) > 1)``.
    The kernels are ``nogil``, so Python threads run them in parallel. While
    another thread uses the pool (or from inside a block), the callables run
    here one after the other. The first error raised by a block is raised
    here after every block has finished."""
    global _pool
    if len(fns) == 1:
        fns[0]()
        return
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool(max(1, numba.get_num_threads() - 1))
    pool = _pool
    if not pool.busy.acquire(blocking=False):
        for fn in fns:
            fn()
        return
    try:
        pool.run(fns)
    finally:
        pool.busy.release()
