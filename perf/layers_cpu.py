"""Conv2D training step and forward pass: numlstm against torch.nn.Conv2d (the CNN-LSTM frame encoder).

Run: ``python perf/layers_cpu.py`` (add ``--write`` to update docs/performance.md).
The case: 64 frames of 1x64x64 -> Conv2D(1, 16, 3, padding=1) -> ReLU ->
Conv2D(16, 32, 3, padding=1). Float32, 2 threads, both implementations timed
round-robin in one process after warm-up; the table gives medians and the
ratio numlstm / torch (below 1 means numlstm is faster).
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

from _report import interleaved, load_torch, machine_line, timing_cells, torch_step_fns, write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm.layers.conv import Conv2D  # noqa: E402

CASES = [
    # (frames, in_channels, height, width, c1, c2)
    (64, 1, 64, 64, 16, 32),
    (16, 3, 32, 32, 16, 32),
]


def conv_flops(N, C, H, W, c1, c2) -> float:
    """Forward FLOPs (multiply-adds count 2) of both convolutions (3x3, 'same' size)."""
    return 2.0 * N * H * W * 9 * (C * c1 + c1 * c2)


def bench_case(N, C, H, W, c1, c2, torch, reps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    model = numlstm.Sequential([Conv2D(C, c1, 3, padding=1, seed=0), numlstm.ReLU(), Conv2D(c1, c2, 3, padding=1, seed=1)])
    dy = rng.standard_normal((N, c2, H, W)).astype(np.float32)

    def nl_step():
        model.train()
        model.zero_grad()
        model.forward(x)
        model.backward(dy)

    def nl_fwd():
        model.eval()
        model.forward(x)

    step_fns = {"numlstm": nl_step}
    fwd_fns = {"numlstm": nl_fwd}
    if torch is not None:
        m = torch.nn.Sequential(torch.nn.Conv2d(C, c1, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(c1, c2, 3, padding=1))
        m.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        xt = torch.from_numpy(x).requires_grad_(True)
        step_fns["torch"], fwd_fns["torch"] = torch_step_fns(m, xt, torch.from_numpy(dy))
    return interleaved(step_fns, reps), interleaved(fwd_fns, reps)


ATTENTION_CASE = dict(B=16, T=10, L=64, D=32, H=64, A=32)


def torch_attention_step_fn(torch, layer, a, dy, T):
    """The same attention LSTM written with torch ops (autograd does the backward)."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    at = torch.tensor(a, requires_grad=True)
    dyt = torch.tensor(dy)
    H = layer.hidden_size
    proj = None

    def step():
        nonlocal proj
        for v in p.values():
            v.grad = None
        at.grad = None
        B = at.shape[0]
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        proj = at @ p["attn_weight_a"].T + p["attn_bias"]  # once for all steps, as numlstm does
        ys = []
        for _ in range(T):
            s = torch.tanh(proj + (h @ p["attn_weight_h"].T)[:, None, :])
            alpha = torch.softmax(s @ p["attn_v"], dim=1)
            z = (alpha[:, :, None] * at).sum(dim=1)
            z = torch.sigmoid(h @ p["gate_weight"] + p["gate_bias"])[:, None] * z
            g = z @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
            i, f, gg, o = g.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            ys.append(h)
        torch.stack(ys, dim=1).backward(dyt)

    return step


def bench_attention(torch, reps):
    from numlstm.layers.attention import AttentionLSTM

    c = ATTENTION_CASE
    rng = np.random.default_rng(0)
    layer = AttentionLSTM(c["D"], c["H"], c["A"], seed=0)
    a = rng.standard_normal((c["B"], c["L"], c["D"])).astype(np.float32)
    dy = rng.standard_normal((c["B"], c["T"], c["H"])).astype(np.float32)

    def nl_step():
        layer.zero_grad()
        layer.forward(a, steps=c["T"])
        layer.backward(dy)

    fns = {"numlstm": nl_step}
    if torch is not None:
        fns["torch"] = torch_attention_step_fn(torch, layer, a, dy, c["T"])
    return interleaved(fns, reps)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--reps", type=int, default=7, help="round-robin rounds (3 timed calls each)")
    args = ap.parse_args(argv)
    torch = load_torch(args.no_torch)
    head = (
        "| (frames, C, H, W) -> c1 -> c2 | step numlstm ms | step torch ms | step ratio "
        "| fwd numlstm ms | fwd torch ms | fwd ratio | numlstm step GFLOP/s |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
    print(head)
    print(sep)
    rows = []
    for case in CASES:
        step, fwd = bench_case(*case, torch, args.reps)

        digits = 2

        fl = 3 * conv_flops(*case)
        row = (
            f"| {case[:4]} -> {case[4]} -> {case[5]} | {timing_cells(step, digits)} "
            f"| {timing_cells(fwd, digits)} | {fl / step['numlstm'] / 1e9:.1f} |"
        )
        rows.append(row)
        print(row, flush=True)
    att = bench_attention(torch, args.reps)
    c = ATTENTION_CASE
    att_head = "| AttentionLSTM (B, T, L, D, H, A) | step numlstm ms | step torch-ops ms | ratio |"
    att_row = f"| {(c['B'], c['T'], c['L'], c['D'], c['H'], c['A'])} | {1e3 * att['numlstm']:.2f} | " + (
        f"{1e3 * att['torch']:.2f} | {att['numlstm'] / att['torch']:.2f} |" if "torch" in att else "n/a | n/a |"
    )
    print()
    print(att_head)
    print("|---|---:|---:|---:|")
    print(att_row)
    if args.write:
        text = "\n".join(
            [
                "## Conv2D on the CPU (`perf/layers_cpu.py`)",
                "",
                f"Machine: {machine_line()}. Float32, 2 threads; Conv2D(C, c1, 3, padding=1) -> ReLU -> "
                "Conv2D(c1, c2, 3, padding=1); training step = zero_grad + forward + backward (input gradient "
                "included on both sides); medians over round-robin blocks after warm-up. "
                "Ratio = numlstm / torch (below 1: numlstm faster).",
                "",
                head,
                sep,
                *rows,
                "",
                "AttentionLSTM training step (one 8x8 feature map read for T steps, gate on), float32, against the same "
                "model written with torch ops (PyTorch has no attention LSTM; autograd does its backward):",
                "",
                att_head,
                "|---|---:|---:|---:|",
                att_row,
            ]
        )
        write_section("layers_cpu", text)
        print(f"wrote {Path(__file__).resolve().parent.parent / 'docs' / 'performance.md'}")


if __name__ == "__main__":
    main()
