"""Measured schedules per host: the CPU drivers' planner (FFTW's "wisdom").

A CPU driver has several ways to run one operation at one shape: the
per-step products of a recurrence through BLAS in one call, in OpenBLAS
small-matrix tiles, or through numlstm's own kernel (``kernels.cpu.small``);
the time loop on one thread or split into row blocks on the pool. Which one
is fastest depends on the host: OpenBLAS's small-matrix kernel exists only in
its AVX-512 build, the cost of a thread hand-off depends on the hypervisor,
cache sizes differ. So the choice is made by timing the candidates on the
host, once per shape class, and kept:

* ``choose(op, key, candidates, default, measure)`` returns the choice for
  one shape class: from memory, else from the plan file, else (with
  ``config.PLAN == "measure"``) by timing every candidate with ``measure``
  within ``config.PLAN_BUDGET_S`` seconds and writing the winner to the file.
* The plan file lives in ``$XDG_CACHE_HOME/numlstm`` (else
  ``~/.cache/numlstm``; ``config.PLAN_DIR`` overrides), one file per host key:
  CPU model, ISA flags, the CPU Numba compiles for, the BLAS library, its
  version and core type, the thread count and numlstm's version. A plan made
  on another host, by another numlstm, or with other threads is never used.
* ``config.PLAN``: ``"measure"`` (default: time on first use), ``"default"``
  (never time, never read a file: the built-in choices, the same on every
  host), or the path of a plan file to use as it is (pinned: shape classes it
  lacks take the default, nothing is timed or written).
* ``config.PLAN_OVERRIDE``: ``{"op.name": choice}`` forces one choice in any
  mode (the tests use it to run every candidate).

Every candidate computes the same mathematical result; for a fixed plan the
result is bit-identical from run to run. A corrupt or foreign plan file is
ignored with a warning: it can change which candidate runs (its speed), never
whether the result is right.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from numlstm import config

#: the layout version of plan files (a file of another version is ignored)
FORMAT = 1

#: at most this many timings of each candidate, and at least this many (past the budget)
MAX_ROUNDS = 7
MIN_ROUNDS = 2

#: the default is kept unless another candidate is faster by more than this fraction
MARGIN = 0.05

_lock = threading.RLock()
_memory: dict[str, str] = {}
_file_entries: dict[str, str] | None = None
_file_path: Path | None = None
_host: dict | None = None
_remeasure = False


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa_flags() -> str:
    """The vector ISA flags this host reports (x86: from /proc/cpuinfo)."""
    wanted = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4_2", "asimd", "neon", "sve")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f for f in wanted if f in have)
    return platform.machine()


def _numba_cpu() -> str:
    """The CPU Numba generates code for (``NUMBA_CPU_NAME`` or the host's)."""
    from numba.core import config as nconfig

    if nconfig.CPU_NAME:
        return nconfig.CPU_NAME
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def _blas() -> str:
    """BLAS library, version and core type (threadpoolctl), as one string."""
    from numlstm._threads import _blas_controllers

    parts = []
    for lib in _blas_controllers():
        info = lib.info()
        parts.append(f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')}")
    return "; ".join(sorted(set(parts))) or "none"


def host_key() -> dict:
    """What a plan depends on: the fields that key the plan file.

    Returns
    -------
    dict with ``cpu``, ``isa``, ``numba_cpu``, ``blas``, ``threads``, ``numlstm``.
    """
    global _host
    import numba

    import numlstm

    if _host is None:
        _host = {"cpu": _cpu_model(), "isa": _isa_flags(), "numba_cpu": _numba_cpu(), "blas": _blas()}
    return {**_host, "threads": int(numba.get_num_threads()), "numlstm": numlstm.__version__}


def host_line() -> str:
    """One line naming the host class, for the perf tables."""
    k = host_key()
    return f"{k['cpu']}; ISA {k['isa']}; Numba target {k['numba_cpu']}; BLAS {k['blas']}; {k['threads']} threads"


def cache_dir() -> Path:
    """Where plan files live: ``config.PLAN_DIR``, else ``$XDG_CACHE_HOME/numlstm``, else ``~/.cache/numlstm``."""
    if config.PLAN_DIR:
        return Path(config.PLAN_DIR)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numlstm"


def plan_path(key: dict | None = None) -> Path:
    """The plan file of this host key (a hash of ``host_key()`` in its name)."""
    key = host_key() if key is None else key
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"plan-{digest}.json"


def _mode() -> str:
    mode = config.PLAN
    if not isinstance(mode, (str, os.PathLike)):
        raise TypeError(f"config.PLAN: expected 'measure', 'default' or a path, got {type(mode).__name__}")
    return str(mode)


def _read(path: Path, key: dict | None) -> dict[str, str]:
    """The entries of a plan file, or {} (with a warning) when it is missing
    a part, corrupt, of another format or, with ``key``, of another host."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as err:
        warnings.warn(f"numlstm plan {path}: cannot read it ({err}); ignored", RuntimeWarning, stacklevel=3)
        return {}
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a numlstm plan of format {FORMAT}")
        entries = doc.get("entries")
        if not isinstance(entries, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
            raise ValueError("its entries are not a mapping of strings")
    except ValueError as err:
        msg = f"numlstm plan {path}: corrupt ({err}); ignored, the default or a new measurement is used"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return {}
    if key is not None and doc.get("host") != key:
        msg = f"numlstm plan {path}: made for another host or version ({doc.get('host')}); ignored"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return {}
    return dict(entries)


def _entries() -> dict[str, str]:
    """The plan file's entries for the current mode (read once per path)."""
    global _file_entries, _file_path
    mode = _mode()
    if mode == "default":
        return {}
    if mode == "measure":
        key = host_key()
        path = plan_path(key)
    else:
        key, path = None, Path(mode)
    if _file_entries is None or _file_path != path:
        _file_entries = _read(path, key)
        _file_path = path
    return _file_entries


def _write(entry: str, choice: str) -> None:
    """Add one entry to this host's plan file, atomically (other processes may race: last writer wins)."""
    key = host_key()
    path = plan_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read(path, key) if path.exists() else {}
        entries[entry] = choice
        doc = {"format": FORMAT, "host": key, "entries": dict(sorted(entries.items()))}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plan-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)
    except OSError as err:  # a read-only cache: keep the plan in memory only
        warnings.warn(f"numlstm plan {path}: cannot write it ({err}); the plan is kept in memory", RuntimeWarning, stacklevel=3)


def choose(op: str, key: str, candidates: list[str], default: str, measure: Callable[[str], float]) -> str:
    """The plan's choice for one shape class.

    Parameters
    ----------
    op : str
        The decision, e.g. ``"lstm.rec"``; ``config.PLAN_OVERRIDE[op]`` forces it.
    key : str
        The shape class, e.g. ``"float32 B=16 H=64"``.
    candidates : list of str
        The choices; ``default`` must be one of them.
    default : str
        The choice without a measurement (``config.PLAN == "default"``, or a
        pinned file that lacks this entry).
    measure : callable(choice) -> float
        Seconds one candidate takes (its own warm-up included); called only
        when measuring.

    Returns
    -------
    str, one of ``candidates``.
    """
    if default not in candidates:
        raise ValueError(f"default: {default!r} is not one of the candidates {candidates}")
    forced = config.PLAN_OVERRIDE.get(op)
    if forced is not None:
        if forced not in candidates:
            raise ValueError(f"config.PLAN_OVERRIDE[{op!r}]: expected one of {candidates}, got {forced!r}")
        return forced
    if len(candidates) == 1:
        return candidates[0]
    entry = f"{op} {key}"
    with _lock:
        mode = _mode()
        if mode == "default":
            return default
        found = _memory.get(entry) if mode == "measure" else None
        if found is None and not (_remeasure and mode == "measure"):
            found = _entries().get(entry)
        if found in candidates:
            _memory[entry] = found
            return found
        if mode != "measure":
            return default
        found = _measure(candidates, default, measure)
        _memory[entry] = found
        _entries()[entry] = found
        _write(entry, found)
        return found


def _measure(candidates: list[str], default: str, measure: Callable[[str], float]) -> str:
    """The fastest candidate: rounds of one timing of each (interleaved, the
    default first) until the budget is spent or ``MAX_ROUNDS`` are done, and
    ``MIN_ROUNDS`` even past the budget; the best time of each. On a shared virtual machine single timings vary by a
    third, so the default keeps its place unless another candidate beats it
    by more than ``MARGIN``: a choice should not flip on noise."""
    order = [default] + [c for c in candidates if c != default]
    budget = float(config.PLAN_BUDGET_S)
    start = time.perf_counter()
    best: dict[str, float] = {}
    for r in range(MAX_ROUNDS):
        # two whole rounds always (one timing each would decide on noise), more within the budget
        for c in order:
            if r >= MIN_ROUNDS and time.perf_counter() - start > budget:
                break
            best[c] = min(measure(c), best.get(c, float("inf")))
        if r + 1 >= MIN_ROUNDS and time.perf_counter() - start > budget:
            break
    winner = min(best, key=best.get)
    return default if best[default] <= (1.0 + MARGIN) * best[winner] else winner


class remeasure:
    """Inside ``with remeasure():`` every shape class met is timed again
    (in ``"measure"`` mode) and the file's entry replaced: what ``numlstm.tune(remeasure=True)`` does."""

    def __enter__(self):
        global _remeasure
        with _lock:
            _memory.clear()
            _remeasure = True
        return self

    def __exit__(self, *exc):
        global _remeasure
        _remeasure = False
        return False


def best_time(run: Callable[[], object], reps: int = 2) -> float:
    """Seconds of ``run()``: one untimed call (compiles or loads, warms the
    caches), then the best of ``reps`` timed calls. The probes' timer."""
    run()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def forget() -> None:
    """Drop the plans held in memory (the file stays): the next call reads or measures again."""
    global _file_entries, _file_path, _host
    with _lock:
        _memory.clear()
        _file_entries = None
        _file_path = None
        _host = None


def entries() -> dict[str, str]:
    """The choices this process uses so far (``"op key" -> choice``)."""
    with _lock:
        return dict(_memory)
