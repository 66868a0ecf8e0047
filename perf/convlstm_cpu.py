"""ConvLSTM training step and forward pass: numlstm against a Conv2d-based PyTorch ConvLSTM.

Run: ``python perf/convlstm_cpu.py`` (add ``--write`` to update docs/performance.md).
Float32, 2 threads, both implementations timed round-robin in one process after
warm-up; the table gives medians and the ratio numlstm / torch (below 1 means
numlstm is faster). The PyTorch side is the usual reference ConvLSTM cell: ONE
``nn.Conv2d(C_in + C, 4C, k, padding=k//2)`` over ``concat([x_t, h])``, gate
order i, f, g, o, a Python loop over time (PyTorch has no built-in ConvLSTM).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    apply_threads,
    class_tag,
    host_line,
    interleaved,
    load_torch,
    machine_line,
    parse_sizes,
    timing_cells,
    torch_step_fns,
    write_section,
)

import numlstm  # noqa: E402

# (B, T, C_in, C, H, W, k)
SIZES = [
    (4, 10, 1, 16, 64, 64, 5),
    (8, 10, 1, 64, 16, 16, 3),
    (2, 10, 1, 64, 64, 64, 5),
]


def convlstm_flops(B, T, Cin, C, H, W, k) -> float:
    """Forward FLOPs (multiply-adds count 2) of the convolutions."""
    return 2.0 * T * B * H * W * 4 * C * (Cin + C) * k * k


def reps_for(size) -> int:
    return int(min(10, max(3, 3e10 / convlstm_flops(*size))))


def torch_convlstm(torch, Cin, C, k):
    nn = torch.nn

    class ConvLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(Cin + C, 4 * C, k, padding=k // 2)

        def forward(self, x):
            B, T, _, H, W = x.shape
            h = x.new_zeros((B, C, H, W))
            c = x.new_zeros((B, C, H, W))
            outs = []
            for t in range(T):
                a = self.conv(torch.cat([x[:, t], h], dim=1))
                i, f, g, o = a.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            return torch.stack(outs, dim=1)

    return ConvLSTM()


def bench_size(size, torch, reps=None):
    B, T, Cin, C, H, W, k = size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, Cin, H, W)).astype(np.float32)
    layer = numlstm.ConvLSTM(Cin, C, k, dtype=np.float32, seed=0)
    dy = rng.standard_normal(layer.output_shape(B, T, H, W)).astype(np.float32)

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
        m = torch_convlstm(torch, Cin, C, k)
        with torch.no_grad():  # the same weights: [W_x, W_h] along input channels
            w = np.concatenate([layer.params["weight_x_l0"], layer.params["weight_h_l0"]], axis=1)
            m.conv.weight.copy_(torch.from_numpy(w))
            m.conv.bias.copy_(torch.from_numpy(layer.params["bias_l0"]))
        xt = torch.from_numpy(x).requires_grad_(True)
        step_fns["torch"], fwd_fns["torch"] = torch_step_fns(m, xt, torch.from_numpy(dy))
        if k % 2 == 1:  # same function: check once that both agree
            layer.eval()
            with torch.no_grad():
                ref = m(xt).numpy()
            err = float(np.abs(layer.forward(x) - ref).max())
            assert err < 1e-4, f"numlstm and torch disagree on {size}: max abs diff {err}"
    n = reps or reps_for(size)
    for fn in (*step_fns.values(), *fwd_fns.values()):  # warm-up (compiles, allocates buffers)
        fn()
    step = interleaved(step_fns, n)
    fwd = interleaved(fwd_fns, n)
    return step, fwd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--reps", type=int, default=None, help="round-robin rounds per size (default: by size)")
    ap.add_argument("--sizes", default=None, help="e.g. '4,10,1,16,64,64,5;8,10,1,64,16,16,3'")
    ap.add_argument("--threads", type=int, default=2, help="threads for numlstm, BLAS and torch (default 2)")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes, SIZES)
    torch = load_torch(args.no_torch)
    apply_threads(args.threads, torch)
    host = host_line(torch)
    print(host)
    rows = []
    head = (
        "| (B, T, C_in, C, H, W, k) | step numlstm ms | step torch ms | step ratio "
        "| fwd numlstm ms | fwd torch ms | fwd ratio | numlstm step GFLOP/s |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
    print(head)
    print(sep)
    for size in sizes:
        step, fwd = bench_size(size, torch, args.reps)
        fl = 3 * convlstm_flops(*size)

        digits = 1

        row = f"| {size} | {timing_cells(step, digits)} | {timing_cells(fwd, digits)} | {fl / step['numlstm'] / 1e9:.1f} |"
        rows.append(row)
        print(row, flush=True)
    if args.write:
        text = "\n".join(
            [
                f"### ConvLSTM, {args.threads} thread(s) (`perf/convlstm_cpu.py --threads {args.threads}`)",
                "",
                f"Host: {host}.",
                "",
                f"Machine: {machine_line()}. Float32, one layer, 'same' padding; training step = "
                "zero_grad + forward + backward (input gradient included on both sides); PyTorch side: one "
                "`nn.Conv2d(C_in + C, 4C, k, padding=k//2)` over `cat([x_t, h])` per step, looped in Python. "
                "Medians over round-robin blocks after warm-up (each block: a 0.15 s pause, one untimed call, "
                "3 timed calls). Ratio = numlstm / torch (below 1: numlstm faster).",
                "",
                head,
                sep,
                *rows,
            ]
        )
        write_section(f"convlstm_cpu_{class_tag()}_t{args.threads}", text)
        print(f"wrote {Path(__file__).resolve().parent.parent / 'docs' / 'performance.md'}")


if __name__ == "__main__":
    main()
