"""Time per epoch of a row-by-row image classifier: numlstm against PyTorch.

The model reads a 28x28 image as 28 time steps of 28 pixels: LSTM(28 -> 128),
its last hidden state, Dense(128 -> 10); cross-entropy, Adam(lr=1e-3), batch
32, float32, 2 threads. Data: 2048 generated images (class-dependent stroke
patterns plus noise), the same for both. Epochs are timed round-robin after a
warm-up epoch. Run: ``python perf/train_cpu.py [--write] [--samples N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import load_torch, machine_line, write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm.layers import LSTM, Dense  # noqa: E402
from numlstm.losses import CrossEntropyLoss  # noqa: E402
from numlstm.models import Sequential  # noqa: E402
from numlstm.optim import Adam  # noqa: E402
from numlstm.trainer import Trainer  # noqa: E402


def make_images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = 0.2 * rng.standard_normal((n, 28, 28))
    rows = np.arange(28)
    for c in range(10):
        sel = y == c
        # class c: a bright band whose row and slope depend on the class
        centre = 3 + 2.2 * c + 0.15 * (c - 5) * (rows - 14) / 14
        band = np.exp(-0.5 * ((rows[None, :] - centre[:, None]) / 1.5) ** 2)  # (28 rows, 28 cols)
        x[sel] += band[None]
    return x.astype(np.float32), y.astype(np.int64)


def numlstm_epoch_fn(x, y, batch):
    model = Sequential([LSTM(28, 128, return_sequences=False, seed=0), Dense(128, 10, seed=1)])
    trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3), metrics=(), seed=0)

    def epoch():
        trainer.epoch = 0
        trainer.fit(x, y, epochs=1, batch_size=batch, progress=False)

    return epoch


def torch_epoch_fn(x, y, batch, torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(28, 128, batch_first=True)
            self.fc = torch.nn.Linear(128, 10)

        def forward(self, xb):
            _, (h, _) = self.lstm(xb)
            return self.fc(h[-1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(xt.shape[0], generator=gen)
        for s in range(0, xt.shape[0], batch):
            idx = order[s : s + batch]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    return epoch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    x, y = make_images(args.samples)
    numlstm.warmup((np.float32,))
    fns = {"numlstm": numlstm_epoch_fn(x, y, 32)}
    torch = load_torch()
    if torch is not None:
        fns["torch"] = torch_epoch_fn(x, y, 32, torch)
    for fn in fns.values():
        fn()  # warm-up epoch
    times = {k: [] for k in fns}
    for _ in range(args.reps):
        for k, fn in fns.items():
            time.sleep(0.15)  # let the other library's spinning threads sleep
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    lines = ["| implementation | s / epoch | samples / s |", "|---|---:|---:|"]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.3f} | {args.samples / v:.0f} |")
    if "torch" in med:
        lines.append(f"| ratio numlstm / torch | {med['numlstm'] / med['torch']:.2f} | |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(
            "train_cpu",
            "## Training epoch: row-by-row image classifier (`perf/train_cpu.py`)\n\n"
            f"Machine: {machine_line()}.\n\n"
            f"LSTM(28 -> 128) over 28 rows of 28 pixels, last hidden state, Dense(128 -> 10), cross-entropy, Adam, "
            f"batch 32, {args.samples} images per epoch, float32, 2 threads; median of {args.reps} epochs each, "
            "round-robin after a warm-up epoch.\n\n" + text,
        )


if __name__ == "__main__":
    main()
