"""The ``numlstm`` command: every subcommand, bad options, resume, Ctrl-C, the files it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import numlstm
from numlstm import cli

ROOT = Path(__file__).resolve().parent.parent


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, path


QUICK = ["--quick", "--no-progress"]


# -- demo, resume, predict --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = cli.main(["demo", *QUICK, "--out", str(out)])
    assert rc == 0
    return out


def test_demo_writes_pictures_metrics_and_checkpoint(demo_run):
    for name in ("predictions.png", "learning_curve.png"):
        assert_png(demo_run / name)
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["task"] == "moving-digits" and metrics["model"] == "convlstm"
    assert metrics["epochs"] == 2 and len(metrics["history"]["loss"]) == 2
    for key in ("cross_entropy_per_sequence", "copy_last_frame_cross_entropy_per_sequence", "mse_per_frame"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    ck = numlstm.load(demo_run / "checkpoint.npz", with_optimizer_state=True)
    assert isinstance(ck.model, numlstm.EncoderForecaster)
    assert ck.extra["cli"]["task"]["task"] == "moving-digits"


def test_demo_model_learns_motion(tmp_path, capsys):
    """The demo's model and training, at test size (32x32 frames, 20 short epochs):
    on held-out sequences it beats the copy-last-frame baseline and a forecast
    that knows no motion (every pixel at the true future's mean brightness)."""
    argv = ["demo", "--no-progress", "--out", tmp_path, "--size", "32", "--hidden", "16,16", "--epochs", "20"]
    argv += ["--epoch-size", "64", "--val-size", "32", "--batch-size", "8", "--lr", "1e-2"]
    rc, out, _ = run(argv, capsys)
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    ce = m["cross_entropy_per_sequence"]
    assert ce < 0.8 * m["copy_last_frame_cross_entropy_per_sequence"], m
    assert ce < 0.95 * m["mean_brightness_cross_entropy_per_sequence"], m
    assert m["mse_per_frame"] < m["copy_last_frame_mse_per_frame"], m
    assert m["history"]["val_loss"][-1] < m["history"]["val_loss"][0]


def test_resumed_run_equals_uninterrupted(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert run(["train", "--task", "row-digits", *QUICK, "--epochs", "3", "--out", full], capsys)[0] == 0
    assert run(["train", "--task", "row-digits", *QUICK, "--epochs", "2", "--out", part], capsys)[0] == 0
    resume = ["--resume", part / "checkpoint.npz"]
    rc, out, _ = run(["train", "--task", "row-digits", *QUICK, "--epochs", "3", "--out", part, *resume], capsys)
    assert rc == 0
    a = numlstm.load(full / "checkpoint.npz")
    b = numlstm.load(part / "checkpoint.npz")
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((part / "metrics.json").read_text())
    assert ma["history"] == mb["history"] and ma["epochs"] == 3


def test_resume_refuses_other_settings(demo_run, tmp_path, capsys):
    rc, _, err = run(["demo", *QUICK, "--hidden", "5", "--out", tmp_path, "--resume", demo_run / "checkpoint.npz"], capsys)
    assert rc == 2 and "--resume" in err and "hidden" in err


def test_predict_generated_and_from_file(demo_run, tmp_path, capsys):
    rc, out, _ = run(["predict", demo_run / "checkpoint.npz", "--n", "3", "--out", tmp_path], capsys)
    assert rc == 0 and "cross_entropy_per_sequence" in out
    frames = np.load(tmp_path / "predicted_frames.npy")
    assert frames.shape == (3, 3, 1, 16, 16) and frames.min() >= 0 and frames.max() <= 1
    assert_png(tmp_path / "predict.png")
    result = json.loads((tmp_path / "predict.json").read_text())
    assert result["cross_entropy_per_sequence"] > 0
    x = numlstm.data.moving_digits(2, seq_len=3, size=16, seed=5, digit_size=8)
    np.save(tmp_path / "x.npy", x)
    rc, _, _ = run(["predict", demo_run / "checkpoint.npz", "--input", tmp_path / "x.npy", "--out", tmp_path / "p"], capsys)
    assert rc == 0 and np.load(tmp_path / "p" / "predicted_frames.npy").shape == (2, 3, 1, 16, 16)
    np.save(tmp_path / "bad.npy", x[:, :2])
    rc, _, err = run(["predict", demo_run / "checkpoint.npz", "--input", tmp_path / "bad.npy"], capsys)
    assert rc == 2 and "--input: expected an array of shape (N, 3, 1, 16, 16)" in err


def test_demo_with_real_mnist_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    digits = np.zeros((6, 28, 28), np.uint8)
    digits[:, 8:20, 10:18] = rng.integers(100, 255, (6, 12, 8))
    labels = np.arange(6, dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=digits, y_train=labels, x_test=digits[:2], y_test=labels[:2])
    rc, _, err = run(["demo", *QUICK, "--mnist", tmp_path / "mnist.npz", "--out", tmp_path / "run"], capsys)
    assert rc == 0, err
    ck = numlstm.load(tmp_path / "run" / "checkpoint.npz", with_optimizer_state=True)
    assert ck.extra["cli"]["task"]["mnist"] == str(tmp_path / "mnist.npz")
    rc, _, err = run(["demo", *QUICK, "--mnist", tmp_path / "missing.npz", "--out", tmp_path / "run2"], capsys)
    assert rc == 2 and "--mnist" in err
    argv = ["train", "--task", "row-digits", *QUICK, "--mnist", tmp_path / "mnist.npz", "--out", tmp_path / "r3"]
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "--mnist: real MNIST digits are used by the moving-digits task only" in err


# -- every task and model ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "model"),
    [
        ("moving-digits", "lstm"),
        ("sequence-digits", "cnn-lstm"),
        ("sequence-digits", "attention"),
        ("sequence-digits", "lstm"),
        ("sequence-digits", "convlstm"),
        ("row-digits", "lstm"),
        ("row-digits", "cnn-lstm"),
    ],
)
def test_train_every_model(task, model, tmp_path, capsys):
    rc, out, _ = run(["train", "--task", task, "--model", model, *QUICK, "--epochs", "1", "--out", tmp_path], capsys)
    assert rc == 0, out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] == 1
    if task != "moving-digits":
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
        rc, out, _ = run(["predict", tmp_path / "checkpoint.npz", "--n", "4", "--out", tmp_path / "p"], capsys)
        assert rc == 0 and np.load(tmp_path / "p" / "predicted_labels.npy").shape == (4,)
    assert_png(tmp_path / "predictions.png")


# -- bad options ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "cnn-lstm"], "--model: task 'moving-digits' trains one of convlstm, lstm"),
        (["train", "--task", "row-digits", "--model", "lstm", "--hidden", "8,8", "--layers", "3"], "--layers"),
        (["demo", "--patch", "5", "--quick"], "--patch"),
        (["demo", "--device", "tpu", "--quick"], "--device"),
        (["demo", "--resume", "/nonexistent/ck.npz", "--quick"], "--resume: no checkpoint"),
        (["predict", "/nonexistent/ck.npz"], "checkpoint: no file"),
    ],
)
def test_bad_options_give_clear_errors(argv, message, capsys, tmp_path):
    rc, _, err = run(argv + (["--out", tmp_path] if argv[0] != "predict" else []), capsys)
    assert rc == 2 and message in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--task", "pong"], "invalid choice: 'pong'"),
        (["demo", "--hidden", "0"], "expected comma-separated positive integers"),
        (["demo", "--epochs", "-1"], "expected a positive integer"),
        (["demo", "--lr", "nan"], "expected a positive number"),
        (["bench", "nothing"], "invalid choice"),
        ([], "required"),
    ],
)
def test_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(numlstm.cuda_available(), reason="CUDA is available here")
def test_device_cuda_without_a_driver(tmp_path, capsys):
    rc, _, err = run(["demo", *QUICK, "--device", "cuda", "--out", tmp_path], capsys)
    assert rc == 2 and "--device" in err and "CUDA" in err, err


def test_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run(["demo", *QUICK, "--out", f], capsys)
    assert rc == 2 and "--out" in err


def test_predict_refuses_a_plain_checkpoint(tmp_path, capsys):
    path = numlstm.save(numlstm.LSTM(2, 3, seed=0), tmp_path / "plain.npz")
    rc, _, err = run(["predict", path], capsys)
    assert rc == 2 and "not written by `numlstm demo`" in err


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "numlstm", "train", "--task", "row-digits", *QUICK, "--epochs", "100000", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()  # printed once the Ctrl-C handler is in place
    assert "training" in line, line + proc.stderr.read()
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "checkpoint saved" in stdout and "--resume" in stdout
    ck = numlstm.load(out / "checkpoint.npz", with_optimizer_state=True)
    assert ck.extra["trainer"]["epoch"] >= 1


# -- bench, info, python -m -----------------------------------------------------------------------------------------
def test_bench_runs_a_perf_script(capfd):
    rc = cli.main(["bench", "lstm", "--sizes", "1,3,2,3,1", "--reps", "1", "--no-torch"])
    assert rc == 0
    assert "numlstm bench: lstm" in capfd.readouterr().out


def test_bench_without_checkout(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "perf_dir", lambda: tmp_path / "nowhere")
    rc, _, err = run(["bench", "lstm"], capsys)
    assert rc == 2 and "perf/ folder" in err


def test_info(capsys):
    rc, out, _ = run(["info"], capsys)
    assert rc == 0
    for word in ("numlstm", "numba", "numpy", "numba threads", "cuda"):
        assert word in out


def test_python_dash_m_and_console_script():
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "numlstm", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "demo" in out.stdout and "predict" in out.stdout
