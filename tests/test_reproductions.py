"""The reproduction scripts in perf/ run to completion (in their --quick smoke mode) and print their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("repro_shi2015.py", ["| FC-LSTM 256-256 |", "| ConvLSTM 32-16-16 (3 layers) |", "copy last input frame", "Every"]),
        ("repro_row_digits.py", ["| LSTM 128", "| CNN-LSTM", "held-out accuracy"]),
    ],
)
def test_reproduction_runs(script, expect):
    out = subprocess.run(
        [sys.executable, str(ROOT / "perf" / script), "--quick"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    for text in expect:
        assert text in out.stdout, out.stdout
