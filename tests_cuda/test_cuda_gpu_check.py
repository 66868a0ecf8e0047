"""perf/gpu_check.py --smoke runs (here on the simulator) and every check passes."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "perf" / "gpu_check.py"


def test_gpu_check_smoke(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "LSTM persistent" in out and "| (2, 3, 2, 3) |" in out
