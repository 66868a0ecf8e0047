"""A scaled-down Shi et al. (2015) Table 1: FC-LSTM against ConvLSTM with 1, 2 and 3 layers on moving digits.

Every model sees the same training budget (the same generated sequences, in the
same order, the same number of Adam updates); the metric is the paper's
cross-entropy per sequence (summed over the 10 predicted 64x64 frames) on
held-out sequences, next to the copy-last-frame baseline. Sizes are the
paper's divided by 4 (hidden channels) and 8 (FC-LSTM units) so that the whole
table trains in minutes on 2 CPU cores; see docs/reproductions.md.

    python perf/repro_shi2015.py                # the table (about 15-25 min on 2 cores)
    python perf/repro_shi2015.py --write        # ... and write it into docs/reproductions.md
    python perf/repro_shi2015.py --quick        # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm import tasks  # noqa: E402
from numlstm.optim import Adam  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "reproductions.md"

#: (name, model, hidden sizes): the paper's FC-LSTM-2048-2048 and ConvLSTM 256 / 128-128 / 128-64-64, scaled down
MODELS = [
    ("FC-LSTM 256-256", "lstm", (256, 256)),
    ("ConvLSTM 64 (1 layer)", "convlstm", (64,)),
    ("ConvLSTM 32-32 (2 layers)", "convlstm", (32, 32)),
    ("ConvLSTM 32-16-16 (3 layers)", "convlstm", (32, 16, 16)),
]


def train_one(model_kind, hidden, args) -> dict:
    cfg = tasks.TaskConfig(
        task="moving-digits",
        model=model_kind,
        hidden=hidden,
        kernel_size=args.kernel,
        size=args.size,
        patch=4,
        digits=2,
        in_frames=args.frames,
        future=args.frames,
        seed=args.seed,
    )
    model = tasks.build_model(cfg)
    trainer = numlstm.Trainer(model, "bce", Adam(model.parameters(), lr=args.lr), clip_norm=1.0, metrics=(), seed=args.seed)
    x_val, y_val = tasks.make_batch(cfg, args.val, tasks.epoch_seed(args.seed, -1))
    source = tasks.epoch_batches(cfg, trainer, args.epoch_size, args.batch)
    t0 = time.perf_counter()
    trainer.fit(source, epochs=args.epochs, batch_size=args.batch, progress=False)
    seconds = time.perf_counter() - t0
    logits = trainer.predict(x_val, batch_size=args.batch)
    m = tasks.frame_metrics(logits, x_val, y_val)
    m.update(parameters=model.num_parameters(), seconds=seconds, curve=trainer.history.history["loss"])
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--epoch-size", type=int, default=256, help="sequences per epoch (fresh each epoch)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--val", type=int, default=256, help="held-out sequences")
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=10, help="input frames = predicted frames")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 16x16 frames, tiny models, one small epoch")
    ap.add_argument("--only", default=None, help="run only the models whose name contains this text (no --write)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/reproductions.md")
    args = ap.parse_args()
    models = MODELS
    if args.quick:
        args.epochs, args.epoch_size, args.batch, args.val, args.size, args.frames, args.kernel = 1, 4, 2, 2, 16, 3, 3
        models = [(n, k, tuple(min(h, 4) for h in hid)) for n, k, hid in MODELS]
    if args.only is not None:
        models = [m for m in models if args.only in m[0]]
        if not models:
            ap.error(f"--only: no model name contains {args.only!r}; names: {[m[0] for m in MODELS]}")
    total = time.perf_counter()
    rows = []
    for name, kind, hidden in models:
        m = train_one(kind, hidden, args)
        rows.append((name, m))
        print(
            f"{name:<30} CE/seq {m['cross_entropy_per_sequence']:8.1f}  params {m['parameters']:>9,}  "
            f"{m['seconds']:6.0f} s  loss curve {[round(v, 4) for v in m['curve']]}",
            flush=True,
        )
    if args.only is not None:
        return
    base = rows[0][1]["copy_last_frame_cross_entropy_per_sequence"]
    minutes = (time.perf_counter() - total) / 60
    fc = rows[0][1]["cross_entropy_per_sequence"]
    conv = [m["cross_entropy_per_sequence"] for _, m in rows[1:]]
    every = all(c < fc for c in conv)
    deeper = all(a > b for a, b in zip(conv, conv[1:], strict=False))
    lines = [
        f"Moving digits, {args.size}x{args.size} frames as {args.size // 4}x{args.size // 4}x16 patches, 2 digits, "
        f"{args.frames} frames in, {args.frames} predicted; {args.epochs} epochs x {args.epoch_size} fresh sequences, "
        f"batch {args.batch}, Adam lr {args.lr}, gradient norm clipped to 1, kernel {args.kernel}x{args.kernel}; "
        f"held-out: {args.val} sequences. {machine_line()}. Whole table: {minutes:.1f} min.",
        "",
        "| model | parameters | cross-entropy per sequence | training time |",
        "|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['parameters']:,} | {m['cross_entropy_per_sequence']:.1f} | {m['seconds']:.0f} s |")
    lines.append(f"| copy last input frame (best clipping) | 0 | {base:.1f} | - |")
    lines += [
        "",
        f"Every ConvLSTM beats FC-LSTM: {'yes' if every else 'no'}. Deeper is better (1 > 2 > 3 layers in cross-entropy): "
        f"{'yes' if deeper else 'no'}.",
    ]
    table = "\n".join(lines)
    print()
    print(table)
    if args.write and not args.quick:
        write_section("shi2015", table, DOC)
        print(f"\nwritten into {DOC}")


if __name__ == "__main__":
    main()
