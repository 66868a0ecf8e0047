"""Row-by-row digit classification: accuracy of an LSTM and a CNN-LSTM.

Each 28x28 digit image is read as a sequence: the LSTM sees one row (28
pixels) per time step, the CNN-LSTM one band of 4 rows per step (a small CNN
per band, then an LSTM over the 7 bands). Digits are the glyphs
``numlstm.data`` renders from matplotlib's fonts (no download); with
``--mnist PATH`` (IDX files or an .npz, see ``numlstm.data.load_mnist``) the
real MNIST digits are used instead. See docs/reproductions.md.

    python perf/repro_row_digits.py             # about 3-6 min on 2 cores
    python perf/repro_row_digits.py --write     # ... and write the table into docs/reproductions.md
    python perf/repro_row_digits.py --quick     # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm import tasks  # noqa: E402
from numlstm.optim import Adam  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "reproductions.md"

MODELS = [("LSTM 128 (28 steps of 28 pixels)", "lstm", (128,)), ("CNN-LSTM 16-32 / 64 (7 steps of 4x28)", "cnn-lstm", (64,))]


def load(args, cfg: tasks.TaskConfig):
    if args.mnist is None:
        x_tr, y_tr = tasks.make_batch(cfg, args.train, tasks.epoch_seed(args.seed, 0))
        x_te, y_te = tasks.make_batch(cfg, args.test, tasks.epoch_seed(args.seed, -1))
        return x_tr, y_tr, x_te, y_te
    (x_tr, y_tr), (x_te, y_te) = numlstm.data.load_mnist(args.mnist)
    x_tr = (x_tr[: args.train] / 255.0).astype(np.float32)
    x_te = (x_te[: args.test] / 255.0).astype(np.float32)
    y_tr, y_te = y_tr[: args.train].astype(np.int64), y_te[: args.test].astype(np.int64)
    if cfg.model == "cnn-lstm":
        x_tr = x_tr.reshape(-1, 7, 1, 4, 28)
        x_te = x_te.reshape(-1, 7, 1, 4, 28)
    return x_tr, y_tr, x_te, y_te


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mnist", type=Path, default=None, help="real MNIST (IDX folder or .npz) instead of rendered glyphs")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="write the table into docs/reproductions.md")
    args = ap.parse_args()
    models = MODELS
    if args.quick:
        args.train, args.test, args.epochs, args.batch = 64, 32, 1, 32
        models = [(n, k, (8,)) for n, k, _ in MODELS]
    rows = []
    for name, kind, hidden in models:
        cfg = tasks.TaskConfig(task="row-digits", model=kind, hidden=hidden, size=28, seed=args.seed)
        x_tr, y_tr, x_te, y_te = load(args, cfg)
        model = tasks.build_model(cfg)
        trainer = numlstm.Trainer(model, "cross_entropy", Adam(model.parameters(), lr=args.lr), clip_norm=1.0, seed=args.seed)
        t0 = time.perf_counter()
        hist = trainer.fit(x_tr, y_tr, epochs=args.epochs, batch_size=args.batch, progress=False)
        seconds = time.perf_counter() - t0
        acc = tasks.accuracy(trainer.predict(x_te, batch_size=256), y_te)
        rows.append((name, model.num_parameters(), acc, hist.history["accuracy"][-1], seconds))
        train_acc = hist.history["accuracy"][-1]
        print(f"{name:<40} test accuracy {acc:.4f}  train accuracy {train_acc:.4f}  {seconds:.0f} s", flush=True)
    glyphs = "digits rendered from matplotlib's fonts (numlstm.data.digit_images)"
    source = f"real MNIST from {args.mnist}" if args.mnist else glyphs
    lines = [
        f"Row-by-row classification of 28x28 digits, {source}: {args.train} training and {args.test} held-out "
        f"images, {args.epochs} epochs, batch {args.batch}, Adam lr {args.lr}, gradient norm clipped to 1. {machine_line()}.",
        "",
        "| model | parameters | held-out accuracy | training accuracy (last epoch) | training time |",
        "|---|---|---|---|---|",
    ]
    for name, params, acc, train_acc, seconds in rows:
        lines.append(f"| {name} | {params:,} | {acc:.4f} | {train_acc:.4f} | {seconds:.0f} s |")
    table = "\n".join(lines)
    print()
    print(table)
    if args.write and not args.quick:
        write_section("row_digits", table, DOC)
        print(f"\nwritten into {DOC}")


if __name__ == "__main__":
    main()
