"""Thread control for the CPU kernels: row blocks and BLAS threads."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numba

from numlstm import config

_blas_libs = None
_pool: ThreadPoolExecutor | None = None


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
    if limit < 2 or batch > config.PARALLEL_MAX_BATCH or step_macs < config.PARALLEL_MIN_STEP_MACS:
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


def run_blocks(fns) -> None:
    """Run the callables concurrently: the first on this thread, the rest on
    a persistent pool. Call inside ``single_threaded_blas(len(fns) > 1)``.
    The kernels are ``nogil``, so Python threads run them in parallel; unlike
    an OpenMP region, idle pool threads sleep instead of spinning, so they
    never steal a core from BLAS's own threads."""
    global _pool
    if len(fns) == 1:
        fns[0]()
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, numba.get_num_threads() - 1), thread_name_prefix="numlstm")
    futures = [_pool.submit(fn) for fn in fns[1:]]
    try:
        fns[0]()
    finally:
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
