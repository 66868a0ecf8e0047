"""Shared helpers of the perf/ scripts: timing and docs/performance.md sections."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict, reps: int, inner: int = 3, gap: float = 0.15) -> dict[str, float]:
    """Median seconds per call of each callable, measured round-robin.

    Each round gives every implementation a block: a pause of ``gap`` seconds
    (so that the other library's worker threads, which spin-wait for up to
    about 0.1 s after a call, are asleep), one untimed call (wakes its own
    thread pool, warms caches), then ``inner`` timed calls. Without the pause,
    OpenBLAS threads spinning after numlstm's call and OpenMP threads spinning
    after torch's steal one of the two cores from whoever runs next, and
    both sides measure 2-3x slower than alone.
    """
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            time.sleep(gap)
            fn()
            for _ in range(inner):
                times[k].append(time_once(fn))
    return {k: float(np.median(v)) for k, v in times.items()}


def load_torch(skip: bool = False):
    """torch with 2 intra-op threads, or None (skipped, or not installed)."""
    if skip:
        return None
    try:
        import torch
    except ImportError:
        print("torch not installed: timing numlstm only")
        return None
    torch.set_num_threads(2)
    return torch


def parse_sizes(text: str | None, default: list) -> list[tuple[int, ...]]:
    """``"1,2,3;4,5,6"`` -> [(1, 2, 3), (4, 5, 6)]; None -> default."""
    if text is None:
        return default
    return [tuple(int(v) for v in s.split(",")) for s in text.split(";")]


def ms_cell(times: dict, key: str, digits: int = 2) -> str:
    """A median in milliseconds for a table cell, or n/a."""
    return f"{1e3 * times[key]:.{digits}f}" if key in times else "n/a"


def ratio_cell(times: dict) -> str:
    """numlstm / torch for a table cell, or n/a without torch."""
    return f"{times['numlstm'] / times['torch']:.2f}" if "torch" in times else "n/a"


def timing_cells(times: dict, digits: int = 2) -> str:
    """``numlstm ms | torch ms | ratio`` cells of one table row."""
    return f"{ms_cell(times, 'numlstm', digits)} | {ms_cell(times, 'torch', digits)} | {ratio_cell(times)}"


def torch_step_fns(module, xt, dyt):
    """(training step, forward-only) callables for a torch module whose output
    is one tensor: the step clears the gradients (input included) and
    backpropagates ``dyt``."""
    import torch

    def step():
        module.zero_grad()
        xt.grad = None
        module(xt).backward(dyt)

    def fwd():
        with torch.no_grad():
            module(xt)

    return step, fwd


#: Numba target CPUs of the AVX2 class (no AVX-512): ``NUMBA_CPU_NAME=haswell`` emulates it
AVX2_CPUS = {"haswell", "broadwell", "skylake", "znver1", "znver2", "znver3", "alderlake", "raptorlake", "meteorlake"}


def host_class() -> str:
    """``"AVX-512"`` or ``"AVX2"``: the class numlstm's code runs in (the
    Numba target and the ISA), ``"AVX2 (emulated on AVX-512)"`` under
    ``NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell`` on an AVX-512 host."""
    from numlstm.kernels.plan import host_key

    key = host_key()
    has512 = "avx512f" in key["isa"].split()
    if has512 and key["numba_cpu"] not in AVX2_CPUS:
        return "AVX-512"
    return "AVX2 (emulated on AVX-512)" if has512 else "AVX2"


def class_tag() -> str:
    """A short tag of the host class for section names: ``avx512`` or ``avx2``."""
    return "avx512" if host_class() == "AVX-512" else "avx2"


def apply_threads(n: int, torch=None) -> None:
    """n threads for numlstm (Numba's pool and row blocks), BLAS and torch."""
    import numba
    from threadpoolctl import threadpool_limits

    from numlstm._threads import _blas_controllers

    _blas_controllers()  # load the BLAS numba calls (SciPy's) first: a limit reaches only loaded libraries
    numba.set_num_threads(n)
    threadpool_limits(n)
    if torch is not None:
        torch.set_num_threads(n)


def host_line(torch=None) -> str:
    """The host line above every table: CPU model, ISA class, Numba target,
    BLAS core, threads, and torch's CPU capability when it is loaded."""
    from numlstm.kernels.plan import host_line as plan_line

    line = f"{host_class()} class: {plan_line()}"
    if torch is not None:
        cap = torch.backends.cpu.get_cpu_capability()
        line += f"; torch {torch.__version__} capability {cap}, {torch.get_num_threads()} threads"
    return line


def sgemm_peak(reps: int = 5, n: int = 2048) -> float:
    """GFLOP/s of a large float32 product through the BLAS numlstm uses, with
    its current threads (the host's measured sgemm peak, best of ``reps``)."""
    from numlstm.kernels.cpu.linalg import matmul_into

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    matmul_into(a, b, out)
    best = min(time_once(lambda: matmul_into(a, b, out)) for _ in range(reps))
    return 2.0 * n**3 / best / 1e9


def machine_line() -> str:
    import numba

    parts = [f"{platform.processor() or platform.machine()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    parts.append(f"numpy {np.__version__}, numba {numba.__version__}")
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch not installed")
    return ", ".join(parts)


def write_section(name: str, markdown: str, doc: Path | None = None) -> None:
    """Replace the text between the section's markers in ``doc`` (default
    docs/performance.md; the section is appended if it is not there yet)."""
    doc = DOC if doc is None else doc
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
