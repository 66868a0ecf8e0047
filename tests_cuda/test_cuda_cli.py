"""``numlstm train --device cuda`` trains on the device and agrees with the same run on the CPU."""

from __future__ import annotations

import json

import numpy as np

from numlstm import cli


def test_train_on_the_device_matches_the_cpu(tmp_path):
    base = ["train", "--task", "row-digits", "--quick", "--no-progress", "--size", "8", "--epochs", "2"]
    assert cli.main(base + ["--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert cli.main(base + ["--device", "cuda", "--out", str(tmp_path / "cuda")]) == 0
    a = json.loads((tmp_path / "cpu" / "metrics.json").read_text())
    b = json.loads((tmp_path / "cuda" / "metrics.json").read_text())
    # float32 on both sides, with the CPU's rational tanh/sigmoid: equal to rounding
    np.testing.assert_allclose(b["history"]["loss"], a["history"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(b["history"]["val_loss"], a["history"]["val_loss"], rtol=1e-4)
    assert (tmp_path / "cuda" / "predictions.png").stat().st_size > 2000
    # predict from the device-trained checkpoint, on the device
    assert cli.main(["predict", str(tmp_path / "cuda" / "checkpoint.npz"), "--n", "3", "--device", "cuda"]) == 0
