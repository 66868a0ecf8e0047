"""The code of docs/tutorial_training.md, runnable: train, evaluate,
checkpoint, resume, plot. Run: ``python examples/tutorial_training.py``."""

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numlstm  # noqa: E402
from numlstm import LSTM, Dense, Sequential, Trainer  # noqa: E402
from numlstm.callbacks import (  # noqa: E402
    EarlyStopping,
    LearningRateScheduler,  # noqa: E402
    ModelCheckpoint,
)
from numlstm.optim import Adam, CosineAnnealingLR  # noqa: E402
from numlstm.plots import plot_history  # noqa: E402


# 1. data: noisy sine waves of three frequencies, (batch, time, features)
def make_data(n, T=30, seed=0):
    rng = np.random.default_rng(seed)
    freqs = np.array([0.04, 0.1, 0.2])
    y = rng.integers(0, 3, n)
    t = np.arange(T)
    x = np.sin(2 * np.pi * freqs[y][:, None] * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    x += 0.3 * rng.standard_normal(x.shape)
    return x[:, :, None].astype(np.float32), y


x_train, y_train = make_data(1024)
x_val, y_val = make_data(256, seed=1)

# 2. model, optimizer, trainer
model = Sequential([LSTM(1, 32, return_sequences=False, seed=0), Dense(32, 3, seed=1)])
print(model.summary())
opt = Adam(model.parameters(), lr=1e-2)
out = Path(tempfile.mkdtemp())
trainer = Trainer(
    model,
    "cross_entropy",
    opt,
    clip_norm=5.0,
    callbacks=[
        ModelCheckpoint(str(out / "last.npz")),
        EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
        LearningRateScheduler(CosineAnnealingLR(opt, T_max=10)),
    ],
    seed=0,
)

# 3. train for 4 epochs, then "crash"
history = trainer.fit(x_train, y_train, epochs=4, batch_size=64, validation_data=(x_val, y_val), progress=False)
print("after 4 epochs:", trainer.evaluate(x_val, y_val))

# 4. resume in a new trainer (as a new process would) and finish 10 epochs
model2 = Sequential([LSTM(1, 32, return_sequences=False, seed=0), Dense(32, 3, seed=1)])
opt2 = Adam(model2.parameters(), lr=1e-2)
trainer2 = Trainer(model2, "cross_entropy", opt2, clip_norm=5.0, seed=0,
                   callbacks=[LearningRateScheduler(CosineAnnealingLR(opt2, T_max=10))])  # fmt: skip
history2 = trainer2.fit(
    x_train, y_train, epochs=10, batch_size=64, validation_data=(x_val, y_val), progress=False, resume_from=out / "last.npz"
)
print("after 10 epochs:", trainer2.evaluate(x_val, y_val))

# 5. save the model alone, load it back from the file, predict
numlstm.save(model2, out / "model.npz")
restored = numlstm.load(out / "model.npz")
pred = Trainer(restored, "cross_entropy", Adam(restored.parameters())).predict(x_val)
print("restored accuracy:", float(np.mean(pred.argmax(1) == y_val)))

# 6. learning curves
ax = plot_history(history2)
ax.figure.savefig(out / "learning_curve.png")
plt.close(ax.figure)
print("files in", out, sorted(p.name for p in out.iterdir()))
