"""The effect of the vectorised float32 activations.

Run: ``python perf/activations.py [--write]``. Times (1) tanh and sigmoid over
a large float32 array, libm (``approx=False``) against the rational
approximation (``approx=True``), in ns per element; (2) a float32 LSTM
training step with the layer's fast activations switched off and on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import interleaved, machine_line, write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm.kernels.cpu.activations import sigmoid_inplace, tanh_inplace  # noqa: E402

SIZES = [(16, 50, 32, 64, 1), (64, 100, 64, 128, 1), (8, 784, 1, 128, 1)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, 1_000_000).astype(np.float32)
    buf = x.copy()
    lines = ["| function | libm ns/element | rational ns/element | speed-up |", "|---|---:|---:|---:|"]
    for name, fn in (("tanh", tanh_inplace), ("sigmoid", sigmoid_inplace)):
        fns = {flag: (lambda f=fn, a=flag: f(buf, a)) for flag in (False, True)}
        t = interleaved(fns, reps=5, inner=5, gap=0.0)
        lines.append(f"| {name} | {1e9 * t[False] / x.size:.2f} | {1e9 * t[True] / x.size:.2f} | {t[False] / t[True]:.1f}x |")
    lines += ["", "| LSTM (B, T, I, H, L), float32 training step | libm ms | rational ms | speed-up |", "|---|---:|---:|---:|"]
    for B, T, I, H, L in SIZES:
        layer = numlstm.LSTM(I, H, num_layers=L, seed=0)
        xs = rng.standard_normal((B, T, I)).astype(np.float32)
        dy = rng.standard_normal((B, T, H)).astype(np.float32)

        def step(approx, layer=layer, xs=xs, dy=dy):
            layer._approx = approx
            layer.forward(xs)
            layer.backward(dy)

        t = interleaved({False: lambda: step(False), True: lambda: step(True)}, reps=5, inner=3)
        lines.append(f"| {(B, T, I, H, L)} | {1e3 * t[False]:.2f} | {1e3 * t[True]:.2f} | {t[False] / t[True]:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(
            "activations",
            "## Vectorised activations (`perf/activations.py`)\n\n"
            f"Machine: {machine_line()}.\n\n"
            "libm's scalar `tanhf`/`expf` cannot be vectorised by LLVM (no SVML here); the rational "
            "approximation (max abs error 4.1e-7, see docs/lstm_math.md) can.\n\n" + text,
        )


if __name__ == "__main__":
    main()
