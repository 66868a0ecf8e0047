"""Shared fixtures and helpers for the numlstm tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import numlstm

# make ``tests/naive.py`` importable as ``naive`` from every test module
sys.path.insert(0, str(Path(__file__).parent))


def randomize_params(layer: numlstm.LSTM, rng: np.random.Generator, scale: float = 0.5) -> numlstm.LSTM:
    """Overwrite every parameter (biases included) with random non-zero values, in place."""
    for p in layer.params.values():
        v = rng.uniform(0.1, 1.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
        p[...] = scale * v
    return layer


def make_lstm(rng: np.random.Generator, input_size: int = 3, hidden_size: int = 2, dtype=np.float64, **kwargs) -> numlstm.LSTM:
    """An LSTM with random non-zero parameters (seeded from ``rng``)."""
    layer = numlstm.LSTM(input_size, hidden_size, dtype=dtype, seed=int(rng.integers(2**31)), **kwargs)
    return randomize_params(layer, rng)


def random_state(rng: np.random.Generator, layer: numlstm.LSTM, batch: int):
    """A random (h0, c0) for ``layer`` and a batch of ``batch`` sequences."""
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    return rng.standard_normal(shape).astype(layer.dtype), rng.standard_normal(shape).astype(layer.dtype)


def assert_close(actual, desired, rtol: float, name: str = "") -> None:
    """Elementwise agreement to ``rtol`` relative to the largest magnitude of ``desired``.

    An absolute floor scaled by ``max|desired|`` keeps near-zero entries (for
    example a tiny gradient element) from demanding more digits than the
    computation carries.
    """
    actual = np.asarray(actual, np.float64)
    desired = np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, f"{name}: shape {actual.shape} != {desired.shape}"
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * max(scale, 1e-3), err_msg=name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def lstm64(rng) -> numlstm.LSTM:
    """A float64 LSTM(3, 2, num_layers=2, bidirectional=True) with random non-zero parameters."""
    return make_lstm(rng, 3, 2, num_layers=2, bidirectional=True)


@pytest.fixture(autouse=True)
def _default_plan(monkeypatch, tmp_path_factory):
    """Every test runs under the built-in plan (``config.PLAN = "default"``):
    the same schedule on every host, so results are bit-for-bit reproducible,
    and nothing is timed or written to the user's cache. The planner's own
    tests switch to "measure" with a private ``PLAN_DIR``."""
    from numlstm import config
    from numlstm.kernels import plan

    monkeypatch.setattr(config, "PLAN", "default")
    monkeypatch.setattr(config, "PLAN_DIR", str(tmp_path_factory.getbasetemp() / "plans"))
    monkeypatch.setattr(config, "PLAN_OVERRIDE", {})
    plan.forget()
    yield
    plan.forget()


@pytest.fixture(params=["serial", "row-blocks", "own"])
def cpu_path(request, monkeypatch):
    """Run a test on both CPU schedules: one thread per layer direction, and the
    batch split into row blocks on separate threads (forced here even for tiny
    batches, down to one row per block), the latter with the per-step products
    cut into small tiles and one-column panels (``linalg.dot_panels``), and
    the whole-sequence products split over threads with per-thread weight
    gradients summed afterwards, which the tiny test shapes would never need;
    and numlstm's own per-step kernel (``kernels.cpu.small.dot_nt``) with the
    gate pass fused per group of rows, on row blocks as well."""
    if request.param == "row-blocks":
        from numlstm import config

        monkeypatch.setattr(config, "PARALLEL_MIN_ROWS", 1)
        monkeypatch.setattr(config, "PARALLEL_MAX_BATCH", 10**9)
        monkeypatch.setattr(config, "PARALLEL_MIN_STEP_MACS", 0)
        monkeypatch.setattr(config, "PARALLEL_MAX_CHUNKS", 2)
        monkeypatch.setattr(config, "BLAS_SMALL_MNK", 7)
        monkeypatch.setattr(config, "CONV_PARALLEL_MIN_MACS", 0)
    if request.param == "own":
        from numlstm import config

        monkeypatch.setattr(config, "PARALLEL_MIN_ROWS", 1)
        monkeypatch.setattr(config, "PARALLEL_MIN_STEP_MACS", 0)
        monkeypatch.setattr(config, "PARALLEL_MAX_CHUNKS", 2)
        monkeypatch.setattr(config, "PLAN_OVERRIDE", {"lstm.rec": "own", "lstm.big": "blas"})
    return request.param
