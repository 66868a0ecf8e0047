"""The planner (numlstm.kernels.plan): cache keying, corrupt and foreign files, pinning, bit-identity under a fixed plan."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import numlstm
from numlstm import config
from numlstm.kernels import plan
from numlstm.kernels.cpu import lstm as cpu_lstm


class Timer:
    """A ``measure`` callable that records its calls and makes ``fast`` the fastest."""

    def __init__(self, fast: str):
        self.fast = fast
        self.calls: list[str] = []

    def __call__(self, choice: str) -> float:
        self.calls.append(choice)
        return 1e-4 if choice == self.fast else 1e-3


@pytest.fixture
def measure_mode(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "PLAN", "measure")
    monkeypatch.setattr(config, "PLAN_DIR", str(tmp_path / "cache"))
    plan.forget()
    return tmp_path / "cache"


def test_host_key_names_the_host_class():
    key = plan.host_key()
    assert set(key) == {"cpu", "isa", "numba_cpu", "blas", "threads", "numlstm"}
    assert key["threads"] >= 1 and key["numlstm"] == numlstm.__version__
    assert all(isinstance(v, (str, int)) for v in key.values())
    assert key["cpu"] in plan.host_line() and key["blas"] in plan.host_line()


def test_plan_file_is_keyed_by_every_field():
    key = plan.host_key()
    paths = {plan.plan_path(key)}
    others = [("cpu", "another cpu"), ("isa", "neon"), ("numba_cpu", "x"), ("blas", "mkl"), ("threads", 99), ("numlstm", "9")]
    for field, other in others:
        paths.add(plan.plan_path({**key, field: other}))
    assert len(paths) == 7


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "PLAN_DIR", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert plan.cache_dir() == tmp_path / "numlstm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert plan.cache_dir().parts[-2:] == (".cache", "numlstm")


def test_measure_times_once_and_keeps_the_winner(measure_mode):
    t = Timer("b")
    assert plan.choose("op.x", "k=1", ["a", "b", "c"], "a", t) == "b"
    assert t.calls[0] == "a" and set(t.calls) == {"a", "b", "c"} and len(t.calls) <= 3 * plan.MAX_ROUNDS
    doc = json.loads(plan.plan_path().read_text())
    assert doc["host"] == plan.host_key() and doc["entries"] == {"op.x k=1": "b"}
    # the same process, and a new one (memory dropped): read, not timed again
    t2 = Timer("c")
    assert plan.choose("op.x", "k=1", ["a", "b", "c"], "a", t2) == "b"
    plan.forget()
    assert plan.choose("op.x", "k=1", ["a", "b", "c"], "a", t2) == "b"
    assert t2.calls == []
    # another shape class is measured and added beside it
    assert plan.choose("op.x", "k=2", ["a", "b", "c"], "a", t2) == "c"
    assert json.loads(plan.plan_path().read_text())["entries"] == {"op.x k=1": "b", "op.x k=2": "c"}


def test_measure_respects_the_budget(measure_mode, monkeypatch):
    monkeypatch.setattr(config, "PLAN_BUDGET_S", 0.0)
    t = Timer("c")
    # over budget at once: the two rounds every candidate always gets, no more
    assert plan.choose("op.y", "k", ["a", "b", "c"], "a", t) == "c"
    assert t.calls == ["a", "b", "c"] * plan.MIN_ROUNDS


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"format": 1, "entries": {"op.x k=1": 3}}', b"\xff\xfe"])
def test_corrupt_plan_is_ignored_with_a_warning(measure_mode, content):
    path = plan.plan_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        got = plan.choose("op.x", "k=1", ["a", "b"], "a", Timer("b"))
    assert got == "b"  # measured anew, and the file is whole again
    assert json.loads(path.read_text())["entries"] == {"op.x k=1": "b"}


def test_foreign_plan_is_ignored(measure_mode):
    path = plan.plan_path()
    path.parent.mkdir(parents=True)
    foreign = {**plan.host_key(), "cpu": "some other cpu"}
    path.write_text(json.dumps({"format": plan.FORMAT, "host": foreign, "entries": {"op.x k=1": "a"}}))
    with pytest.warns(RuntimeWarning, match="another host"):
        assert plan.choose("op.x", "k=1", ["a", "b"], "a", Timer("b")) == "b"


def test_default_keeps_its_place_within_the_margin(measure_mode):
    times = {"a": 1.0, "b": 0.97, "c": 1.2}  # b is faster, by less than MARGIN
    assert plan.choose("op.m", "k", ["a", "b", "c"], "a", times.get) == "a"
    times["b"] = 0.5
    assert plan.choose("op.m", "k2", ["a", "b", "c"], "a", times.get) == "b"


def test_entry_naming_an_unknown_candidate_is_measured_again(measure_mode):
    path = plan.plan_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": plan.FORMAT, "host": plan.host_key(), "entries": {"op.x k=1": "gone"}}))
    assert plan.choose("op.x", "k=1", ["a", "b"], "a", Timer("b")) == "b"


def test_pinned_file_is_used_as_it_is(monkeypatch, tmp_path):
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps({"format": plan.FORMAT, "host": {"cpu": "anything"}, "entries": {"op.x k=1": "c"}}))
    monkeypatch.setattr(config, "PLAN", str(pinned))
    monkeypatch.setattr(config, "PLAN_DIR", str(tmp_path / "cache"))
    plan.forget()
    t = Timer("b")
    assert plan.choose("op.x", "k=1", ["a", "b", "c"], "a", t) == "c"
    assert plan.choose("op.x", "k=2", ["a", "b", "c"], "a", t) == "a"  # missing: the default
    assert t.calls == [] and not (tmp_path / "cache").exists()


def test_default_mode_never_times_or_reads(tmp_path):
    assert config.PLAN == "default"  # the tests' fixture
    t = Timer("b")
    assert plan.choose("op.x", "k=1", ["a", "b"], "a", t) == "a"
    assert t.calls == []


def test_override_and_bad_arguments(monkeypatch):
    monkeypatch.setattr(config, "PLAN_OVERRIDE", {"op.x": "b"})
    assert plan.choose("op.x", "k", ["a", "b"], "a", Timer("a")) == "b"
    monkeypatch.setattr(config, "PLAN_OVERRIDE", {"op.x": "zzz"})
    with pytest.raises(ValueError, match=r"PLAN_OVERRIDE\['op.x'\]"):
        plan.choose("op.x", "k", ["a", "b"], "a", Timer("a"))
    with pytest.raises(ValueError, match="default"):
        plan.choose("op.z", "k", ["a", "b"], "c", Timer("a"))
    monkeypatch.setattr(config, "PLAN", 3)
    with pytest.raises(TypeError, match="config.PLAN"):
        plan.choose("op.z", "k", ["a", "b"], "a", Timer("a"))


def test_unwritable_cache_keeps_the_plan_in_memory(measure_mode, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(config, "PLAN_DIR", str(blocker / "sub"))  # a folder under a file: cannot be made
    plan.forget()
    with pytest.warns(RuntimeWarning, match="cannot write"):
        assert plan.choose("op.x", "k", ["a", "b"], "a", Timer("b")) == "b"
    t = Timer("a")
    assert plan.choose("op.x", "k", ["a", "b"], "a", t) == "b" and t.calls == []


def test_lstm_plan_measures_real_candidates(measure_mode):
    p = cpu_lstm.lstm_plan(3, 5, 2, 4, np.float32)
    assert p.rec in ("tiles", "blas", "own") and p.big in ("tiles", "blas") and p.blocks >= 1
    entries = plan.entries()
    assert {k.split()[0] for k in entries} == {"lstm.rec", "lstm.big"}
    assert json.loads(plan.plan_path().read_text())["entries"] == entries


def _run(layer, x, dy):
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(dy)
    return [y, dx, *layer.state, *(g.copy() for g in layer.grads.values())]


@pytest.mark.parametrize("choice", ["tiles/1", "blas/1", "own/1", "own/2", "blas/2"])
def test_fixed_plan_is_bit_identical_and_every_plan_is_right(monkeypatch, choice):
    rng = np.random.default_rng(5)
    B, T, I, H = 6, 7, 5, 9
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    layer = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=1)
    dy = rng.standard_normal(layer.output_shape(B, T)).astype(np.float32)
    ref = numlstm.LSTM(I, H, num_layers=2, bidirectional=True, seed=1, dtype=np.float64)
    want = _run(ref, x.astype(np.float64), dy.astype(np.float64))
    monkeypatch.setattr(config, "PLAN_OVERRIDE", {"lstm.rec": choice, "lstm.big": "blas" if "blas" in choice else "tiles"})
    first = _run(layer, x, dy)
    again = _run(layer, x, dy)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)  # bit for bit
    for a, w in zip(first, want, strict=True):
        np.testing.assert_allclose(a, w, rtol=2e-4, atol=2e-5)


def test_training_under_a_pinned_plan_file_matches_the_default(monkeypatch, tmp_path):
    """A plan file naming the default choices gives the default plan's bits."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    layer = numlstm.LSTM(3, 6, seed=0)
    dy = np.ones(layer.output_shape(4, 5), np.float32)
    base = _run(layer, x, dy)
    p = cpu_lstm.lstm_plan(4, 5, 3, 6, np.float32)
    pinned = tmp_path / "p.json"
    entries = {"lstm.rec float32 B=4 H=6": f"{p.rec}/{p.blocks}", "lstm.big float32 R=32 I=3 H=6": p.big}
    pinned.write_text(json.dumps({"format": plan.FORMAT, "host": {}, "entries": entries}))
    monkeypatch.setattr(config, "PLAN", str(pinned))
    plan.forget()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _run(layer, x, dy)
    for a, b in zip(base, got, strict=True):
        assert np.array_equal(a, b)


def test_tune_plans_the_given_shapes(measure_mode):
    chosen = numlstm.tune([(2, 3, 2, 4), (5, 3, 4, 4)])
    assert {"lstm.rec float32 B=2 H=4", "lstm.rec float32 B=5 H=4"} <= set(chosen)
    assert json.loads(plan.plan_path().read_text())["entries"] == chosen
    first = dict(chosen)
    with plan.remeasure():
        pass
    assert numlstm.tune([(2, 3, 2, 4)], remeasure=True).keys() <= first.keys()


def test_tune_validates():
    with pytest.raises(ValueError, match="config.PLAN"):
        numlstm.tune([(2, 3, 2, 4)])  # the tests' default plan is never timed
    config.PLAN = "measure"
    try:
        with pytest.raises(ValueError, match=r"lstm\[0\]"):
            numlstm.tune([(2, 3, 2)])
        with pytest.raises(ValueError, match=r"lstm\[0\]\[3\]"):
            numlstm.tune([(2, 3, 2, 0)])
        with pytest.raises(TypeError, match="lstm"):
            numlstm.tune(5)
    finally:
        config.PLAN = "default"


def test_cli_tune(measure_mode, capsys):
    from numlstm.cli import main

    assert main(["tune", "--lstm", "3,4,2,5"]) == 0
    out = capsys.readouterr().out
    assert "lstm.rec float32 B=3 H=5" in out and str(plan.plan_path()) in out
    assert main(["tune", "--lstm", "3,4,x"]) == 2
    assert "B,T,I,H" in capsys.readouterr().err


def test_warmup_plans_what_it_compiles(measure_mode):
    numlstm.warmup((np.float32,), parts=("lstm",))
    assert any(k.startswith("lstm.rec float32") for k in plan.entries())


def test_conv_tiles_are_planned(measure_mode):
    conv = numlstm.Conv2D(2, 3, 3, padding="same", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    y = conv(x)
    conv.backward(np.ones_like(y))
    assert any(k.startswith("conv.tiles float32 O=3 K=18") for k in plan.entries())
