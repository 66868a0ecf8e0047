"""Thread control for the CPU kernels: row blocks and BLAS threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

from numlstm import config

_blas_libs = None
_pool: ThreadPoolExecutor | None = None


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


def num_chunks(batch: int, step_macs: int) -> int:
    """How many row blocks to run in parallel (1 = serial)."""
    limit = config.PARALLEL_MAX_CHUNKS or numba.get_num_threads()
    if limit < 2 or batch > (config.PARALLEL_MAX_BATCH or batch) or step_macs < config.PARALLEL_MIN_STEP_MACS:
        return 1
    if not _blas_controllers():
        return 1
    return max(1, min(limit, batch // max(1, config.PARALLEL_MIN_ROWS)))


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


_worker_tids: list[int] = []
_worker_cpus: set[int] | None = None


def _init_worker() -> None:
    """Pool thread start: record its kernel thread id, take the current pin."""
    _worker_tids.append(threading.get_native_id())
    if _worker_cpus is not None:
        os.sched_setaffinity(0, _worker_cpus)


def _pin(n: int):
    """Keep the caller and the pool's threads on distinct CPUs; returns the
    caller's previous CPU set (to restore), or None when not pinning.

    Why: a woken pool thread is placed on the waker's CPU (wake-affine) and
    waits there behind the caller's block instead of moving to the idle CPU,
    so the blocks ran one after the other (measured here: two 0.5 ms blocks
    took 1.0-1.1 ms, and the LSTM split path lost its gain after any pause).
    The caller is pinned to the CPU it is on, the workers to the others,
    before they are woken (Linux only)."""
    global _worker_cpus
    if not config.PIN_THREADS or _getcpu is None:
        return None
    try:
        allowed = os.sched_getaffinity(0)
        here = _getcpu()
        if here not in allowed or len(allowed) < n:
            return None
        others = allowed - {here}
        for tid in _worker_tids:
            os.sched_setaffinity(tid, others)
        _worker_cpus = others
        os.sched_setaffinity(0, {here})
    except OSError:  # pragma: no cover - no permission: run unpinned
        return None
    return allowed


def run_blocks(fns) -> None:
    """Run the callables concurrently: the first on this thread, the rest on
    a persistent pool. Call inside ``single_threaded_blas(len(fns) > 1)``.
    The kernels are ``nogil``, so Python threads run them in parallel; unlike
    an OpenMP region, idle pool threads sleep instead of spinning, so they
    never steal a core from BLAS's own threads. Each thread is pinned to its
    own CPU while the blocks run (``_pin``)."""
    global _pool
    if len(fns) == 1:
        fns[0]()
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=max(1, numba.get_num_threads() - 1), thread_name_prefix="numlstm", initializer=_init_worker
        )
    saved = _pin(len(fns))
    try:
        futures = [_pool.submit(fn) for fn in fns[1:]]
        try:
            fns[0]()
        finally:
            errors = [f.exception() for f in futures]
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)
    for err in errors:
        if err is not None:
            raise err
