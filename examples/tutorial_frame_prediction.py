"""Frame prediction with a ConvLSTM encoder-forecaster (docs/tutorial_frame_prediction.md).

Two digits bounce around a 32x32 frame. The model watches 5 frames and
predicts the next 5, pixel by pixel, as Shi et al. (2015) do for Moving MNIST
(here smaller, to train in about two minutes on 2 CPU cores). It is compared with
the copy-last-frame baseline.

Run: ``python examples/tutorial_frame_prediction.py [--out docs/img/frame_prediction.png] [--quick]``
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

from numlstm import EncoderForecaster, Trainer  # noqa: E402
from numlstm.data import depth_to_space, moving_digits, space_to_depth  # noqa: E402
from numlstm.optim import Adam  # noqa: E402
from numlstm.plots import plot_frames  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IN_FRAMES, FUTURE, SIZE, PATCH = 5, 5, 32, 2


def shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, 5, 4, 16, 16) and targets (n, 5, 4, 16, 16): 2x2 patches of 32x32 frames."""
    frames = moving_digits(n, seq_len=IN_FRAMES + FUTURE, size=SIZE, digits=2, digit_size=16, speed=(1.0, 3.0), seed=seed)
    patches = space_to_depth(frames, PATCH)  # (n, T, 1, 32, 32) -> (n, T, 4, 16, 16)
    return np.ascontiguousarray(patches[:, :IN_FRAMES]), np.ascontiguousarray(patches[:, IN_FRAMES:])


def cross_entropy_per_sequence(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy summed over every predicted pixel, averaged over sequences."""
    z, y = logits.astype(np.float64), target.astype(np.float64)
    per_pixel = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(per_pixel.reshape(len(z), -1).sum(axis=1).mean())


def copy_last_frame(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The baseline: every future frame is the last input frame, as probabilities
    clipped to [eps, 1 - eps] with the eps that suits it best. Returns (cross-entropy, eps)."""
    last = np.repeat(x[:, -1:], y.shape[1], axis=1).astype(np.float64)
    best = (np.inf, 0.0)
    for eps in np.logspace(-4, -0.5, 22):
        p = np.clip(last, eps, 1 - eps)
        best = min(best, (cross_entropy_per_sequence(np.log(p / (1 - p)), y), float(eps)))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "frame_prediction.png", help="figure path")
    parser.add_argument("--quick", action="store_true", help="tiny data and one epoch (a smoke test)")
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (64, 16, 1) if args.quick else (1200, 200, 6)

    # 1. data: 2x2 patches, as Shi et al. cut 64x64 frames into 4x4 patches
    x_train, y_train = make_data(n_train, seed=0)
    x_test, y_test = make_data(n_test, seed=1)
    print(f"inputs {x_train.shape}, targets {y_train.shape}")

    # 2. model: ConvLSTM encoder, its final state starts the ConvLSTM forecaster, a 1x1 conv gives logits
    model = EncoderForecaster(in_channels=PATCH**2, hidden_channels=(32,), kernel_size=3, future_steps=FUTURE, seed=0)
    print(model.summary((None,) + x_train.shape[1:]))
    trainer = Trainer(model, "bce", Adam(model.parameters(), lr=1e-2), clip_norm=5.0, metrics=(), seed=0)

    # 3. train with per-pixel binary cross-entropy on the logits
    t0 = time.perf_counter()
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=16, validation_data=(x_test, y_test), progress=False)
    seconds = time.perf_counter() - t0
    for e, (loss, val) in enumerate(zip(history.history["loss"], history.history["val_loss"], strict=True), 1):
        print(f"epoch {e}: train BCE per pixel {loss:.4f}, held-out {val:.4f}")
    print(f"trained {epochs} epochs on {n_train} sequences in {seconds:.1f} s")

    # 4. held-out sequences: the model against copying the last input frame
    logits = trainer.predict(x_test)
    prob = 1 / (1 + np.exp(-logits))
    ce = cross_entropy_per_sequence(logits, y_test)
    ce_copy, eps = copy_last_frame(x_test, y_test)
    mse = float(np.mean(np.sum((prob - y_test) ** 2, axis=(2, 3, 4))))
    mse_copy = float(np.mean(np.sum((x_test[:, -1:] - y_test) ** 2, axis=(2, 3, 4))))
    print(f"cross-entropy per sequence: model {ce:.1f}, copy-last-frame {ce_copy:.1f} (eps {eps:.3g})")
    print(f"squared error per frame:    model {mse:.1f}, copy-last-frame {mse_copy:.1f}")

    # 5. a picture: input frames, true future, predicted future (back to 32x32 pixels)
    frames_in, truth, pred = (depth_to_space(a[:2], PATCH) for a in (x_test, y_test, prob))
    fig, axes = plt.subplots(2, 1, figsize=(5.6, 6.4))
    for i, ax in enumerate(axes):
        plot_frames(truth[i], pred[i], ax=ax, inputs=frames_in[i])
        ax.set_title(f"held-out sequence {i}: 5 frames in, the next 5 predicted", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    plt.close(fig)
    print(f"wrote {shown(args.out)}")


if __name__ == "__main__":
    main()
