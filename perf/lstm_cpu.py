"""LSTM training step and forward pass: numlstm against torch.nn.LSTM and a numpy twin.

Run: ``python perf/lstm_cpu.py`` (add ``--write`` to update docs/performance.md).
Float32, 2 threads, all implementations timed round-robin in one process after
warm-up; the table gives medians, numlstm's achieved GFLOP/s and the ratio
numlstm / torch (below 1 means numlstm is faster).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _report import (  # noqa: E402
    apply_threads,
    class_tag,
    host_line,
    interleaved,
    load_torch,
    machine_line,
    ms_cell,
    parse_sizes,
    sgemm_peak,
    timing_cells,
    write_section,
)

import numlstm  # noqa: E402

SIZES = [
    (1, 50, 32, 32, 1),
    (16, 50, 32, 64, 1),
    (64, 100, 64, 128, 1),
    (32, 28, 28, 128, 2),
    (128, 100, 256, 512, 1),
    (8, 784, 1, 128, 1),
]


def lstm_flops(B, T, I, H, L, D=1) -> float:
    """Forward FLOPs (multiply-adds count 2) of the matrix products."""
    total = 0.0
    for k in range(L):
        in_k = I if k == 0 else D * H
        total += D * 2.0 * T * B * 4 * H * (in_k + H)
    return total


def reps_for(B, T, I, H, L) -> int:
    """Rounds of round-robin blocks: fewer for the large sizes."""
    work = lstm_flops(B, T, I, H, L)
    return int(min(15, max(3, 2e10 / max(work, 1.0))))


def bench_size(B, T, I, H, L, torch, naive, reps=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    layer = numlstm.LSTM(I, H, num_layers=L, dtype=np.float32, seed=0)
    dy = rng.standard_normal(layer.output_shape(B, T)).astype(np.float32)

    def nl_step():
        layer.train()
        layer.zero_grad()
        layer.forward(x)
        layer.backward(dy)

    def nl_fwd():
        layer.eval()
        layer.forward(x)

    step_fns = {"numlstm": nl_step}
    fwd_fns = {"numlstm": nl_fwd}
    if torch is not None:
        m = torch.nn.LSTM(I, H, L, batch_first=True)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in numlstm.interop.lstm_to_torch(layer).items()})
        xt = torch.from_numpy(x).requires_grad_(True)
        dyt = torch.from_numpy(dy)

        def torch_step():
            m.zero_grad()
            xt.grad = None
            y, _ = m(xt)
            y.backward(dyt)

        def torch_fwd():
            with torch.no_grad():
                m(xt)

        step_fns["torch"] = torch_step
        fwd_fns["torch"] = torch_fwd
    if naive is not None and B * T * H * H <= 2_000_000:
        params = {k: v.astype(np.float32) for k, v in layer.params.items()}

        def np_step():
            y, _ = naive.lstm_forward_naive(x, params, L, False)
            naive.lstm_backward_naive(x, params, L, False, dy)

        def np_fwd():
            naive.lstm_forward_naive(x, params, L, False)

        step_fns["numpy twin"] = np_step
        fwd_fns["numpy twin"] = np_fwd
    n = reps or reps_for(B, T, I, H, L)
    step = interleaved(step_fns, n)
    fwd = interleaved(fwd_fns, n)
    return step, fwd


def _with_peak(row: str, peak: float) -> str:
    """A table row with its last cell (% of peak) recomputed from its GFLOP/s cell."""
    cells = row.strip("|").split("|")
    cells[-1] = f" {100 * float(cells[-2]) / peak:.0f} "
    return "|" + "|".join(cells) + "|"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per size (default: by size)")
    ap.add_argument("--sizes", default=None, help="e.g. '1,50,32,32,1;16,50,32,64,1'")
    ap.add_argument("--threads", type=int, default=2, help="threads for numlstm, BLAS and torch (default 2)")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes, SIZES)
    torch = load_torch(args.no_torch)
    apply_threads(args.threads, torch)
    host = host_line(torch)
    print(host)
    peak = sgemm_peak()
    print(f"sgemm peak (2048^3, {args.threads} threads): {peak:.0f} GFLOP/s")
    try:
        import naive
    except ImportError:
        naive = None
    numlstm.warmup((np.float32,))
    rows = []
    head = (
        "| (B, T, I, H, L) | step numlstm ms | step torch ms | step ratio | step numpy ms "
        "| fwd numlstm ms | fwd torch ms | fwd ratio | numlstm step GFLOP/s | % of sgemm peak |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    print(head)
    print(sep)
    for size in sizes:
        step, fwd = bench_size(*size, torch, naive, args.reps)
        fl = 3 * lstm_flops(*size)

        digits = 3

        row = (
            f"| {size} | {timing_cells(step, digits)} | {ms_cell(step, 'numpy twin', digits)} "
            f"| {timing_cells(fwd, digits)} | {fl / step['numlstm'] / 1e9:.1f} | {100 * fl / step['numlstm'] / 1e9 / peak:.0f} |"
        )
        rows.append(row)
        print(row, flush=True)
    # the peak again after the sizes (a shared VM's speed drifts): the higher of the two
    peak_end = sgemm_peak()
    print(f"sgemm peak after the sizes: {peak_end:.0f} GFLOP/s")
    if peak_end > peak:
        peak = peak_end
        print("(the % column above used the first peak; the written table uses the higher one)")
        rows = [_with_peak(r, peak) for r in rows]
    if args.write:
        text = "\n".join(
            [
                f"### LSTM, {args.threads} thread(s) (`perf/lstm_cpu.py --threads {args.threads}`)",
                "",
                f"Host: {host}. sgemm peak {peak:.0f} GFLOP/s (2048^3, measured in the same run).",
                "",
                f"Machine: {machine_line()}. Float32; training step = zero_grad + forward + backward "
                "(input gradient included on both sides); medians over round-robin blocks after warm-up "
                "(each block: a 0.15 s pause so the other library's spinning threads sleep, one untimed call, "
                "3 timed calls). "
                "Ratio = numlstm / torch (below 1: numlstm faster).",
                "",
                head,
                sep,
                *rows,
            ]
        )
        write_section(f"lstm_cpu_{class_tag()}_t{args.threads}", text)
        print(f"wrote {Path(__file__).resolve().parent.parent / 'docs' / 'performance.md'}")


if __name__ == "__main__":
    main()
