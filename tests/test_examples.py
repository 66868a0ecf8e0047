"""The example scripts (the README's main job and the tutorial) run and learn."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_train_lstm_example_learns():
    text = run("train_lstm.py")
    acc = float(re.search(r"final test accuracy ([0-9.]+)", text).group(1))
    assert acc > 0.9


def test_tutorial_runs_and_resumes():
    text = run("tutorial_training.py")
    acc = float(re.search(r"restored accuracy: ([0-9.]+)", text).group(1))
    assert acc > 0.9
    assert "learning_curve.png" in text and "last.npz" in text
