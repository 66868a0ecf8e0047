"""Start-up cost: a fresh process that imports numlstm and runs a first small
LSTM training step, with an empty Numba cache and then with a warm one.

Run: ``python perf/startup.py [--write]``. Targets: <= 20 s cold, <= 3 s warm.
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

SNIPPET = """
import numpy as np
import numlstm
lstm = numlstm.LSTM(8, 16, seed=0)
x = np.random.default_rng(0).standard_normal((4, 10, 8)).astype(np.float32)
y = lstm(x)
lstm.backward(np.ones_like(y))
"""


def run(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNIPPET], check=True, env=env)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        cold = run(d)
        warm = sorted(run(d) for _ in range(3))[1]
    print(f"cold (empty Numba cache): {cold:.2f} s   warm (median of 3): {warm:.2f} s")
    if args.write:
        write_section(
            "startup",
            "## Start-up (`perf/startup.py`)\n\n"
            f"Machine: {machine_line()}.\n\n"
            "A fresh process imports numlstm and runs one small float32 LSTM training step.\n\n"
            "| Numba cache | seconds | target |\n|---|---:|---:|\n"
            f"| empty | {cold:.2f} | <= 20 |\n| warm | {warm:.2f} | <= 3 |",
        )


if __name__ == "__main__":
    main()
