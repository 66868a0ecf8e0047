"""Trainer: fit / evaluate / predict, callbacks, determinism, resume, NaN safety, plots."""

from __future__ import annotations

import csv

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from numlstm import LSTM, Dense, Sequential  # noqa: E402
from numlstm.callbacks import CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint, TerminateOnNaN  # noqa: E402
from numlstm.losses import BCEWithLogitsLoss  # noqa: E402
from numlstm.optim import SGD, Adam, StepLR  # noqa: E402
from numlstm.plots import plot_frames, plot_history  # noqa: E402
from numlstm.trainer import History, Trainer  # noqa: E402


def sine_task(n, T=16, seed=0):
    """Classify which of three frequencies a noisy sine has."""
    rng = np.random.default_rng(seed)
    freqs = np.array([0.05, 0.12, 0.25])
    y = rng.integers(0, 3, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(T)
    x = np.sin(2 * np.pi * freqs[y][:, None] * t[None] + phase[:, None]) + 0.2 * rng.standard_normal((n, T))
    return x[:, :, None].astype(np.float32), y.astype(np.int64)


def classifier(seed=0, dropout=0.0, num_layers=1):
    return Sequential(
        [LSTM(1, 12, num_layers=num_layers, dropout=dropout, return_sequences=False, seed=seed), Dense(12, 3, seed=seed + 1)]
    )


def test_fit_learns_sequence_classification():
    x, y = sine_task(384)
    xv, yv = sine_task(128, seed=1)
    model = classifier()
    trainer = Trainer(model, "cross_entropy", Adam(model.parameters(), lr=0.03), seed=0)
    hist = trainer.fit(x, y, epochs=8, batch_size=32, validation_data=(xv, yv), progress=False)
    assert isinstance(hist, History)
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert len(hist.epoch) == 8
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert hist.history["val_accuracy"][-1] > 0.9
    ev = trainer.evaluate(xv, yv)
    assert ev["accuracy"] > 0.9
    pred = trainer.predict(xv, batch_size=50)
    assert pred.shape == (128, 3)
    assert np.mean(pred.argmax(1) == yv) == pytest.approx(ev["accuracy"])


def moving_dot(n, T=10, W=8, seed=0):
    """A dot moving right one pixel per step (wrapping): predict the next frame."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, W, n)
    frames = np.zeros((n, T + 1, W), np.float32)
    for t in range(T + 1):
        frames[np.arange(n), t, (start + t) % W] = 1.0
    return frames[:, :-1], frames[:, 1:]


def test_fit_learns_frame_prediction():
    x, y = moving_dot(256)
    model = Sequential([LSTM(8, 24, seed=0), Dense(24, 8, seed=1)])
    trainer = Trainer(model, BCEWithLogitsLoss(), Adam(model.parameters(), lr=0.02), seed=0)
    hist = trainer.fit(x, y, epochs=10, batch_size=32, progress=False)
    assert hist.history["loss"][-1] < 0.25 * hist.history["loss"][0]
    assert "accuracy" not in hist.history  # does not apply to per-pixel targets
    pred = trainer.predict(x[:20])
    # the next position follows from the current one: the brightest predicted pixel must be right
    assert np.mean(pred.argmax(-1) == y[:20].argmax(-1)) > 0.95


def test_same_seed_same_weights():
    x, y = sine_task(96)
    runs = []
    for _ in range(2):
        model = classifier(seed=3, dropout=0.3, num_layers=2)
        Trainer(model, "ce", Adam(model.parameters(), lr=0.01), seed=7).fit(x, y, epochs=2, batch_size=16, progress=False)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_resume_is_bit_identical(tmp_path):
    x, y = sine_task(96)
    xv, yv = sine_task(32, seed=1)

    def new(seed=3):
        model = classifier(seed=seed, dropout=0.3, num_layers=2)
        return model, Trainer(model, "ce", Adam(model.parameters(), lr=0.01), seed=7)

    model_a, ta = new()
    ha = ta.fit(x, y, epochs=4, batch_size=16, validation_data=(xv, yv), progress=False)

    model_b, tb = new()
    tb.fit(x, y, epochs=2, batch_size=16, validation_data=(xv, yv), progress=False)
    path = tmp_path / "ckpt.npz"
    tb.save_checkpoint(path)
    # a fresh process would build a fresh (differently initialised) model and trainer
    model_c, tc = new(seed=11)
    hc = tc.fit(x, y, epochs=4, batch_size=16, validation_data=(xv, yv), progress=False, resume_from=path)
    sa, sc = model_a.state_dict(), model_c.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sc[k])
    assert hc.history == ha.history
    assert tc.epoch == 4


def test_nan_loss_stops_without_corrupting_weights():
    x, y = sine_task(64)
    x[40] = np.nan  # in the third batch of 16
    model = classifier()
    trainer = Trainer(model, "ce", SGD(model.parameters(), lr=0.1), seed=0, callbacks=[TerminateOnNaN()])
    snapshots = []

    class Snap(TerminateOnNaN):
        def on_batch_end(self, batch, logs=None):
            snapshots.append(model.state_dict())

    trainer.callbacks.append(Snap())
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        hist = trainer.fit(x, y, epochs=3, batch_size=16, shuffle=False, progress=False)
    assert len(hist.epoch) == 1 and np.isnan(hist.history["loss"][0])
    assert "not applied" in hist.stopped_reason
    final = model.state_dict()
    for k in final:
        assert np.all(np.isfinite(final[k]))
        # the weights are those after the last good batch
        np.testing.assert_array_equal(final[k], snapshots[-2][k])


def test_clip_norm_bounds_the_update():
    x, y = sine_task(32)
    model = classifier()
    before = model.state_dict()
    trainer = Trainer(model, "ce", SGD(model.parameters(), lr=1.0), clip_norm=1e-3, seed=0)
    trainer.fit(x, y, epochs=1, batch_size=32, progress=False)
    after = model.state_dict()
    step = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in before))
    assert 0 < step <= 1e-3 * (1 + 1e-4)


def test_batch_source_callable_and_iterable():
    x, y = sine_task(64)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = classifier()
    t = Trainer(model, "ce", Adam(model.parameters(), lr=0.01), seed=0)
    h1 = t.fit(lambda: iter(batches), epochs=1, progress=False)
    h2 = t.fit(batches, epochs=2, progress=False)
    assert len(h2.epoch) == 2 and h1 is h2
    assert t.evaluate(batches)["loss"] > 0


def test_callbacks(tmp_path):
    x, y = sine_task(64)
    xv, yv = sine_task(32, seed=1)
    model = classifier()
    opt = Adam(model.parameters(), lr=0.01)
    ckpt = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.npz"))
    logger = CSVLogger(tmp_path / "log.csv")
    lrs = LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5**epoch)
    t = Trainer(model, "ce", opt, callbacks=[ckpt, logger, lrs], seed=0)
    hist = t.fit(x, y, epochs=3, batch_size=16, validation_data=(xv, yv), progress=False)
    assert [p.split("/")[-1] for p in ckpt.saved] == ["m-01.npz", "m-02.npz", "m-03.npz"]
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[2]["val_loss"]) == pytest.approx(hist.history["val_loss"][2])
    assert hist.history["lr"] == pytest.approx([0.01, 0.005, 0.0025])

    # EarlyStopping: with lr 0 nothing improves, so it stops after patience + 1 epochs
    model2 = classifier()
    es = EarlyStopping(monitor="loss", patience=1)
    t2 = Trainer(model2, "ce", SGD(model2.parameters(), lr=0.0), callbacks=[es], seed=0)
    h2 = t2.fit(x, y, epochs=10, batch_size=16, shuffle=False, progress=False)
    assert len(h2.epoch) == 2 and es.stopped_epoch == 1
    assert "callback" in h2.stopped_reason

    # a numlstm schedule object through LearningRateScheduler
    model3 = classifier()
    opt3 = SGD(model3.parameters(), lr=0.1)
    t3 = Trainer(model3, "ce", opt3, callbacks=[LearningRateScheduler(StepLR(opt3, step_size=1, gamma=0.5))], seed=0)
    h3 = t3.fit(x, y, epochs=3, batch_size=32, progress=False)
    assert h3.history["lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_bad_arguments():
    x, y = sine_task(20)
    model = classifier()
    opt = Adam(model.parameters())
    with pytest.raises(ValueError, match="loss"):
        Trainer(model, "hinge", opt)
    with pytest.raises(ValueError, match="metrics"):
        Trainer(model, "ce", opt, metrics=("f1",))
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(model, "ce", object())
    with pytest.raises(TypeError, match="model"):
        Trainer(object(), "ce", opt)
    with pytest.raises(TypeError, match="callbacks"):
        Trainer(model, "ce", opt, callbacks=[print])
    with pytest.raises(ValueError, match="clip_norm"):
        Trainer(model, "ce", opt, clip_norm=0)
    t = Trainer(model, "ce", opt)
    with pytest.raises(ValueError, match="batch_size"):
        t.fit(x, y, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="y: expected 20 targets"):
        t.fit(x, y[:10], progress=False)
    with pytest.raises(ValueError, match="epochs"):
        t.fit(x, y, epochs=-1, progress=False)
    with pytest.raises(ValueError, match="target"):
        t.fit(x, np.full(20, 7), progress=False)  # label out of range for 3 classes
    with pytest.raises(TypeError, match="x"):
        t.fit("data", progress=False)
    with pytest.raises(ValueError, match="y: must be None"):
        t.fit(lambda: iter([]), y, progress=False)
    with pytest.raises(TypeError, match="validation_data"):
        t.fit(x, y, validation_data=x, progress=False)


def test_plots_write_files(tmp_path):
    hist = History()
    for e in range(4):
        hist.append(e, {"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "lr": 0.1})
    fig, (a1, a2) = plt.subplots(1, 2)
    assert plot_history(hist, ax=a1) is a1
    assert [line.get_label() for line in a1.get_lines()] == ["loss", "val_loss"]
    rng = np.random.default_rng(0)
    truth = rng.random((5, 8, 8))
    assert plot_frames(truth, truth[::-1], ax=a2, inputs=rng.random((3, 8, 8))) is a2
    path = tmp_path / "plots.png"
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="prediction"):
        plot_frames(truth, truth[:2])
    with pytest.raises(ValueError, match="keys"):
        plot_history(hist, keys=["accuracy"])
