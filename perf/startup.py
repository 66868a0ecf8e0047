"""Start-up cost: a fresh process that imports numlstm and runs a first small
LSTM training step, with an empty Numba cache and then with a warm one.

Run: ``python perf/startup.py [--write]``. Targets: <= 12 s cold on a 2-core AVX2 host,
<= 1.5 s warm, planning <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402


def host() -> str:
    """The host line, from a child process (this one never imports numlstm's kernels)."""
    here = str(Path(__file__).resolve().parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import _report; print(_report.host_line())"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


SNIPPET = """
import numpy as np
import numlstm
lstm = numlstm.LSTM(8, 16, seed=0)
x = np.random.default_rng(0).standard_normal((4, 10, 8)).astype(np.float32)
y = lstm(x)
lstm.backward(np.ones_like(y))
"""


def run(cache_dir: str, plan_dir: str, plan: str = "measure") -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMLSTM_PLAN_DIR=plan_dir, NUMLSTM_PLAN=plan)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNIPPET], check=True, env=env)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        nb, pl = os.path.join(d, "numba"), os.path.join(d, "plans")
        cold = run(nb, pl)
        warm = sorted(run(nb, pl) for _ in range(3))[1]
        # the planner's share: a warm Numba cache, with and without a plan to measure
        fresh = sorted(run(nb, os.path.join(d, f"fresh{i}")) for i in range(3))[1]
        default = sorted(run(nb, pl, "default") for _ in range(3))[1]
    print(f"host: {host()}")
    print(f"cold (empty Numba cache, no plan): {cold:.2f} s   warm (median of 3): {warm:.2f} s")
    share = fresh - default
    print(f"warm Numba cache: measuring a new plan {fresh:.2f} s, built-in plan {default:.2f} s (planning {share:+.2f} s)")
    if args.write:
        write_section(
            "startup",
            "## Start-up (`perf/startup.py`)\n\n"
            f"Machine: {machine_line()}.\n\n"
            "A fresh process imports numlstm and runs one small float32 LSTM training step.\n\n"
            f"Host: {host()}.\n\n"
            "| Numba cache | plan | seconds | target |\n|---|---|---:|---:|\n"
            f"| empty | none (measured in the step) | {cold:.2f} | <= 12 on a 2-core AVX2 host |\n"
            f"| warm | kept | {warm:.2f} | <= 1.5 |\n"
            f"| warm | none (measured in the step) | {fresh:.2f} | |\n"
            f"| warm | built-in (`NUMLSTM_PLAN=default`) | {default:.2f} | |\n\n"
            f"Planning adds {fresh - default:+.2f} s to the first training step (target: at most 1 s).",
        )


if __name__ == "__main__":
    main()
