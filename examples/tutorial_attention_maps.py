"""Attention maps drawn over the image (docs/tutorial_attention_maps.md).

An ``AttentionCNNLSTM`` classifies sequences of one digit drifting across a
32x32 frame. At every frame its attention LSTM weighs the 8x8 cells of the
CNN's feature map ("Show, Attend and Tell" over a sequence of frames); after
training, the weights are drawn as heat maps over the input frames, and the
share of attention that falls on the digit is measured.

Run: ``python examples/tutorial_attention_maps.py [--out docs/img/attention_maps.png] [--quick]``
(``--quick``: tiny data and one epoch, a smoke test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from numlstm import AttentionCNNLSTM, Trainer  # noqa: E402
from numlstm.data import sequence_digits  # noqa: E402
from numlstm.optim import Adam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEQ_LEN, SIZE = 6, 32


def shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def make_data(n: int, seed: int):
    """(n, 6, 1, 32, 32) frames of a 16-pixel digit tile drifting 1.5-3 pixels per frame; its class."""
    return sequence_digits(n, seq_len=SEQ_LEN, size=SIZE, digit_size=16, speed=(1.5, 3.0), seed=seed)


def upsample(maps: np.ndarray, block: int) -> np.ndarray:
    """(..., h, w) cell maps -> (..., h*block, w*block) pixel maps (each cell a block of pixels)."""
    return np.kron(maps, np.ones((block, block), dtype=maps.dtype))


def attention_on_digit(model: AttentionCNNLSTM, x: np.ndarray, block: int, batch: int = 100) -> tuple[float, float]:
    """Share of the attention on cells that hold digit pixels, and that share under uniform attention."""
    on, uniform = [], []
    for s in range(0, len(x), batch):
        xb = x[s : s + batch]
        model(xb)
        maps = model.attention_maps()  # (B, T, h, w), each frame's map sums to 1
        B, T, h, w = maps.shape
        cells = xb[:, :, 0, : h * block, : w * block].reshape(B, T, h, block, w, block).max(axis=(3, 5))
        digit = cells > 0.5  # a cell holds part of the digit's strokes
        on.append((maps * digit).sum(axis=(2, 3)).ravel())
        uniform.append(digit.mean(axis=(2, 3)).ravel())
    return float(np.mean(np.concatenate(on))), float(np.mean(np.concatenate(uniform)))


def plot_attention(x, maps, y_true, y_pred, block: int, path: Path) -> None:
    """One row per sequence: each frame in gray with its attention map over it."""
    rows, T = maps.shape[:2]
    fig, axes = plt.subplots(rows, T, figsize=(T * 1.25, rows * 1.4), squeeze=False)
    for r in range(rows):
        for t in range(T):
            ax = axes[r, t]
            heat = upsample(maps[r, t], block)
            ax.imshow(x[r, t, 0], cmap="gray", vmin=0, vmax=1)
            ax.imshow(
                heat,
                cmap="inferno",
                alpha=0.55,
                vmin=0,
                vmax=float(maps[r].max()),
                extent=(-0.5, heat.shape[1] - 0.5, heat.shape[0] - 0.5, -0.5),
            )
            ax.set_xlim(-0.5, x.shape[-1] - 0.5)
            ax.set_ylim(x.shape[-2] - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t + 1}", fontsize=8)
        color = "green" if y_true[r] == y_pred[r] else "red"
        axes[r, 0].set_ylabel(f"digit {y_true[r]}\npredicted {y_pred[r]}", fontsize=8, color=color)
    fig.suptitle("Where the attention LSTM looks at each frame (bright: high weight)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "attention_maps.png", help="figure path")
    parser.add_argument("--quick", action="store_true", help="tiny data and one epoch (a smoke test)")
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (128, 32, 1) if args.quick else (2000, 500, 6)

    # 1. data
    x_train, y_train = make_data(n_train, seed=0)
    x_test, y_test = make_data(n_test, seed=1)
    print(f"train {x_train.shape}, test {x_test.shape}")

    # 2. model: two 5x5 conv blocks keep an 8x8 feature map (each cell a 4x4 pixel block); attention over its 64 cells
    model = AttentionCNNLSTM(
        in_channels=1, num_classes=10, conv_channels=(16, 32), kernel_size=5, hidden_size=64, attention_size=32, seed=0
    )
    block = 2 ** len(model.conv_channels)
    print(model.summary((None,) + x_train.shape[1:]))
    before = attention_on_digit(model, x_test, block)

    # 3. train
    trainer = Trainer(model, "cross_entropy", Adam(model.parameters(), lr=3e-3), clip_norm=5.0, seed=0)
    t0 = time.perf_counter()
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=16, validation_data=(x_test, y_test), progress=False)
    seconds = time.perf_counter() - t0
    for e, (loss, acc) in enumerate(zip(history.history["loss"], history.history["val_accuracy"], strict=True), 1):
        print(f"epoch {e}: train loss {loss:.3f}, held-out accuracy {acc:.3f}")
    print(f"trained {epochs} epochs in {seconds:.1f} s; held-out accuracy {trainer.evaluate(x_test, y_test)['accuracy']:.3f}")

    # 4. how much of the attention lands on the digit?
    model.eval()
    after = attention_on_digit(model, x_test, block)
    print(f"attention on digit cells: before training {before[0]:.2f}, after {after[0]:.2f} (uniform attention: {after[1]:.2f})")

    # 5. draw the maps of a few held-out sequences over their frames
    rows = 4
    pred = model(x_test[:rows]).argmax(axis=1)
    maps = model.attention_maps()  # (rows, T, 8, 8), from the forward just run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_attention(x_test, maps, y_test, pred, block, args.out)
    print(f"wrote {shown(args.out)}")


if __name__ == "__main__":
    main()
