"""The cost of handing a block of work to another thread (``numlstm._threads.run_blocks``).

Run: ``python perf/threads_cpu.py`` (add ``--write`` to update docs/performance.md).
Two blocks run side by side, one on the calling thread, one on the pool: empty
blocks (the pure hand-off), and two blocks of a 20 us and a 500 us compiled
loop against one such block alone. "spinning" is the default pool (workers
spin for ``config.POOL_SPIN_US`` after a block); "sleeping" sets that to 0,
so every hand-off wakes a sleeping thread, as a plain thread pool does.
Medians of many calls, the variants interleaved in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, write_section  # noqa: E402

from numlstm import config  # noqa: E402
from numlstm._threads import run_blocks  # noqa: E402


@njit(nogil=True, cache=True)
def busy(n):
    s = 0.0
    for i in range(n):
        s += np.sqrt(i * 1.0)
    return s


def per_us() -> float:
    """Iterations of ``busy`` per microsecond."""
    busy(10)
    best = min(_time(lambda: busy(1_000_000)) for _ in range(5))
    return 1_000_000 / (best * 1e6)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(rounds: int = 40, calls: int = 50) -> dict:
    rate = per_us()
    cases = {"empty": 0, "20 us": int(20 * rate), "500 us": int(500 * rate)}
    times: dict = {}
    for _ in range(rounds):
        for label, n in cases.items():
            one = (lambda n=n: busy(n)) if n else (lambda: None)
            for variant, spin in (("spinning", 300.0), ("sleeping", 0.0)):
                config.POOL_SPIN_US = spin
                run_blocks([one, one])  # wake the pool, set the mode
                for _ in range(calls // 10):
                    times.setdefault((label, variant), []).append(_time(partial(run_blocks, [one, one])))
                    if spin == 0.0:
                        time.sleep(0.0005)  # let the worker fall asleep again
            if n:
                times.setdefault((label, "one block alone"), []).extend(_time(one) for _ in range(calls // 10))
    config.POOL_SPIN_US = 300.0
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def table(res: dict) -> str:
    rows = [
        "| blocks | one block alone, us | two blocks, spinning pool, us | two blocks, sleeping pool, us |",
        "|---|---:|---:|---:|",
    ]
    for label in ("empty", "20 us", "500 us"):
        alone = res.get((label, "one block alone"))
        alone_cell = "-" if alone is None else f"{alone:.1f}"
        rows.append(f"| {label} | {alone_cell} | {res[(label, 'spinning')]:.1f} | {res[(label, 'sleeping')]:.1f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    text = table(measure())
    print(text)
    if args.write:
        body = (
            "## Thread hand-off (`perf/threads_cpu.py`)\n\n"
            f"Machine: {machine_line()}.\n\n"
            "Two blocks side by side, one on the caller, one on numlstm's pool; medians.\n\n" + text
        )
        write_section("threads_cpu", body)
        print("wrote docs/performance.md")


if __name__ == "__main__":
    main()
