"""Image-sequence classification with a CNN-LSTM (docs/tutorial_cnn_lstm.md).

Each sequence shows one digit drifting across a 28x28 frame; the model says
which digit it is. A small CNN encodes every frame, an LSTM reads the frame
features in order, a Dense head names the class.

Run: ``python examples/tutorial_cnn_lstm.py [--out docs/img/cnn_lstm_sequences.png] [--quick]``
(about two minutes on 2 cores; ``--quick``: tiny data and one epoch, a smoke test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from numlstm import CNNLSTM, Trainer  # noqa: E402
from numlstm.data import sequence_digits  # noqa: E402
from numlstm.optim import Adam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEQ_LEN = 6


def shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def plot_sequences(x, y_true, y_pred, path: Path, rows: int = 6) -> None:
    """One row per sequence, one column per frame; the title says true and predicted class."""
    T = x.shape[1]
    fig, axes = plt.subplots(rows, T, figsize=(T * 0.9, rows * 1.05), squeeze=False)
    for r in range(rows):
        for t in range(T):
            ax = axes[r, t]
            ax.imshow(x[r, t, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(f"#{r}", rotation=0, labelpad=12, fontsize=8)
        ok = y_true[r] == y_pred[r]
        axes[r, 0].set_title(f"digit {y_true[r]}, predicted {y_pred[r]}", loc="left", fontsize=8, color="green" if ok else "red")
    fig.suptitle("CNN-LSTM on drifting digits: held-out sequences", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "cnn_lstm_sequences.png", help="figure path")
    parser.add_argument("--quick", action="store_true", help="tiny data and one epoch (a smoke test)")
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (256, 64, 1) if args.quick else (2000, 1000, 7)

    # 1. data: (n, T, 1, 28, 28) frames in [0, 1] and the digit of each sequence
    x_train, y_train = sequence_digits(n_train, seq_len=SEQ_LEN, size=28, seed=0)
    x_test, y_test = sequence_digits(n_test, seq_len=SEQ_LEN, size=28, seed=1)
    print(f"train {x_train.shape}, test {x_test.shape}, classes {np.bincount(y_train, minlength=10).tolist()}")

    # 2. model: CNN on every frame -> LSTM over time -> Dense on the last step
    model = CNNLSTM(in_channels=1, num_classes=10, conv_channels=(16, 32, 64), hidden_size=64, seed=0)
    print(model.summary((None,) + x_train.shape[1:]))
    trainer = Trainer(model, "cross_entropy", Adam(model.parameters(), lr=3e-3), clip_norm=5.0, seed=0)

    # 3. train, then evaluate on sequences it never saw
    t0 = time.perf_counter()
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=16, validation_data=(x_test, y_test), progress=False)
    seconds = time.perf_counter() - t0
    for e, (loss, acc) in enumerate(zip(history.history["loss"], history.history["val_accuracy"], strict=True), 1):
        print(f"epoch {e}: train loss {loss:.3f}, held-out accuracy {acc:.3f}")
    result = trainer.evaluate(x_test, y_test)
    print(f"trained {epochs} epochs in {seconds:.1f} s; held-out accuracy {result['accuracy']:.3f}")

    # 4. which digits does it confuse?
    pred = trainer.predict(x_test).argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y_test, pred), 1)
    per_class = confusion.diagonal() / confusion.sum(axis=1)
    print("accuracy per digit:", " ".join(f"{d}:{a:.2f}" for d, a in enumerate(per_class)))
    off = confusion * (1 - np.eye(10, dtype=int))
    worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:3], off.shape))[0]
    print("most frequent mistakes:", ", ".join(f"{t} read as {p} ({off[t, p]}x)" for t, p in worst if off[t, p]))

    # 5. a picture of held-out sequences with the predicted class
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_sequences(x_test, y_test, pred, args.out)
    print(f"wrote {shown(args.out)}")


if __name__ == "__main__":
    main()
