"""Checkpoints: round trips of every layer type, optimizer state and extra, atomic writes, and
every kind of bad file refused with a ValueError, never unpickled. Also the layer registry."""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import randomize_params

import numlstm
from numlstm import LSTM, Checkpoint, Dense, Dropout, Flatten, LastStep, Model, ReLU, Sequential, Sigmoid, Tanh
from numlstm.checkpoint import FORMAT, HEADER_KEY, VERSION
from numlstm.layers.registry import layer_from_config, layer_to_config, register, registered_layers


def layer_cases(dtype):
    """(layer, input) for every layer type."""
    rng = np.random.default_rng(5)

    def x(*shape):
        return rng.standard_normal(shape).astype(dtype)

    lstm = randomize_params(LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, seed=1), rng)
    return {
        "lstm": (lstm, x(2, 5, 3)),
        "dense": (randomize_params(Dense(3, 2, dtype=dtype, seed=2), rng), x(2, 4, 3)),
        "dense-nobias": (randomize_params(Dense(3, 2, bias=False, dtype=dtype), rng), x(2, 3)),
        "relu": (ReLU(), x(2, 3)),
        "tanh": (Tanh(), x(2, 3)),
        "sigmoid": (Sigmoid(), x(2, 3)),
        "flatten": (Flatten(2), x(2, 3, 2, 2)),
        "dropout": (Dropout(0.4, seed=3), x(2, 3)),
        "laststep": (LastStep(), x(2, 3, 4)),
        "sequential": (
            Sequential(
                [
                    randomize_params(LSTM(3, 4, dtype=dtype), rng),
                    LastStep(),
                    Dropout(0.1),
                    randomize_params(Dense(4, 3, dtype=dtype), rng),
                    Sequential([ReLU(), randomize_params(Dense(3, 2, dtype=dtype), rng)]),
                ]
            ),
            x(2, 5, 3),
        ),
    }


def rewrite(path, header_fn=None, arrays_fn=None, out=None):
    """Rewrite a checkpoint with a modified header and/or arrays (with np.savez, as a forger would)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if header_fn is not None:
        header = json.loads(arrays[HEADER_KEY].tobytes())
        new = header_fn(header)
        arrays[HEADER_KEY] = np.frombuffer(json.dumps(header if new is None else new).encode(), np.uint8)
    if arrays_fn is not None:
        arrays = arrays_fn(arrays)
    with open(out or path, "wb") as f:
        np.savez(f, **arrays)


class Marker:
    """Unpickling this object creates the folder ``path``: proof that something was unpickled."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def object_array(marker_path):
    arr = np.empty(1, dtype=object)
    arr[0] = Marker(marker_path)
    return arr


@pytest.fixture
def saved(tmp_path):
    model = Sequential([Dense(3, 4, dtype=np.float64, seed=0), Tanh(), Dense(4, 2, dtype=np.float64, seed=1)])
    path = tmp_path / "model.npz"
    numlstm.save(model, path, optimizer={"step": 3, "m": [np.ones((4, 3))]}, extra={"epoch": 2})
    return model, path


# -- round trips ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(layer_cases(np.float32)))
def test_round_trip_gives_identical_outputs(tmp_path, name, dtype):
    layer, x = layer_cases(dtype)[name]
    path = tmp_path / f"{name}.npz"
    numlstm.save(layer, path)
    loaded = numlstm.load(path)
    assert type(loaded) is type(layer)
    assert layer_to_config(loaded) == layer_to_config(layer)
    assert list(loaded.params) == list(layer.params)
    for k, v in layer.params.items():
        assert loaded.params[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)
    layer.eval()
    loaded.eval()
    y = layer(x)
    y2 = loaded(x)
    assert y2.dtype == y.dtype
    np.testing.assert_array_equal(y2, y)


def test_round_trip_of_the_training_state(tmp_path):
    class Adam:  # a stand-in with the state_dict() an optimizer will have
        def state_dict(self):
            return {
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "step": 7,
                "m": {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
                "v": [np.ones(2), np.zeros((1, 1), np.float32)],
                "count": np.int64(7),
                "slots": {0: np.ones(3), 1: None},
                "name": "adam",
                "amsgrad": False,
            }

    rng = np.random.default_rng(11)
    rng.random(5)
    extra = {
        "epoch": 4,
        "rng": rng.bit_generator.state,
        "history": {"loss": [1.5, 0.75, float("nan")], "val_loss": []},
        "best": np.float64(0.5),
        "weights": np.linspace(0, 1, 4),
    }
    model = Sequential([Dense(3, 2, seed=0)])
    path = model.save(tmp_path / "ckpt.npz", optimizer=Adam(), extra=extra)
    assert path == tmp_path / "ckpt.npz"
    ck = numlstm.load(path, with_optimizer_state=True)
    assert isinstance(ck, Checkpoint) and isinstance(ck.model, Sequential)
    assert ck.optimizer_class == "Adam"
    want = Adam().state_dict()
    st = ck.optimizer_state
    assert set(st) == set(want)
    assert st["lr"] == 1e-3 and st["betas"] == (0.9, 0.999) and isinstance(st["betas"], tuple)
    assert st["step"] == 7 and st["name"] == "adam" and st["amsgrad"] is False
    np.testing.assert_array_equal(st["m"]["0.weight"], want["m"]["0.weight"])
    assert st["m"]["0.weight"].dtype == np.float32
    assert [a.dtype for a in st["v"]] == [np.float64, np.float32] and st["v"][1].shape == (1, 1)
    assert isinstance(st["count"], np.int64) and st["count"] == 7
    assert set(st["slots"]) == {0, 1} and st["slots"][1] is None
    np.testing.assert_array_equal(st["slots"][0], np.ones(3))
    ex = ck.extra
    assert ex["epoch"] == 4 and ex["history"]["loss"][:2] == [1.5, 0.75] and np.isnan(ex["history"]["loss"][2])
    assert isinstance(ex["best"], np.float64)
    np.testing.assert_array_equal(ex["weights"], extra["weights"])
    restored = np.random.default_rng()
    restored.bit_generator.state = ex["rng"]
    np.testing.assert_array_equal(restored.random(3), rng.random(3))


def test_load_returns_the_model_alone_by_default(saved):
    model, path = saved
    loaded = numlstm.load(path)
    assert isinstance(loaded, Sequential) and loaded.training
    ck = numlstm.load(str(path), with_optimizer_state=True)
    assert ck.extra == {"epoch": 2} and ck.optimizer_class is None and ck.optimizer_state["step"] == 3


def test_no_optimizer_no_extra(tmp_path):
    path = tmp_path / "a.ckpt"
    numlstm.save(Dense(2, 2), path)
    assert path.exists() and not (tmp_path / "a.ckpt.npz").exists()  # written as named
    ck = numlstm.load(path, with_optimizer_state=True)
    assert ck.optimizer_state is None and ck.extra is None and ck.optimizer_class is None


def test_no_pickle_in_the_file(saved):
    _, path = saved
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert HEADER_KEY + ".npy" in names and "param/0.weight.npy" in names and "optim/m/0.npy" in names
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            assert z[k].dtype != object, k
        header = json.loads(z[HEADER_KEY].tobytes())
    assert header["format"] == FORMAT and header["version"] == VERSION
    assert header["model"]["class"] == "Sequential"


def test_custom_registered_model_round_trip(tmp_path):
    from test_sequential import Residual

    register(Residual, name="TestResidual")
    model = Residual(features=3, seed=4)
    numlstm.save(model, tmp_path / "res.npz")
    loaded = numlstm.load(tmp_path / "res.npz")
    assert type(loaded) is Residual
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_array_equal(loaded(x), model(x))


def test_unregistered_or_unserialisable_models_are_refused(tmp_path):
    class Mine(Dense):
        pass

    with pytest.raises(ValueError, match=r"class .*Mine is not registered; call numlstm.layers.registry.register\(Mine\)"):
        numlstm.save(Mine(2, 2), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="model: expected a numlstm layer"):
        numlstm.save({"weight": np.ones(2)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"extra\['when'\]: cannot store a set"):
        numlstm.save(Dense(2, 2), tmp_path / "x.npz", extra={"when": {1, 2}})
    with pytest.raises(TypeError, match=r"optimizer state\['m'\]\[0\]: cannot store an array of dtype object"):
        numlstm.save(Dense(2, 2), tmp_path / "x.npz", optimizer={"m": [np.array([None])]})
    with pytest.raises(TypeError, match="optimizer: expected an optimizer with state_dict"):
        numlstm.save(Dense(2, 2), tmp_path / "x.npz", optimizer=3)
    with pytest.raises(FileNotFoundError):
        numlstm.save(Dense(2, 2), tmp_path / "no" / "such" / "x.npz")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary files left


# -- atomic writes ---------------------------------------------------------------------------------------
def test_a_failed_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left"):
        numlstm.save(Dense(2, 2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # the temporary file is removed


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_writer_killed_before_the_rename_leaves_the_previous_checkpoint(saved):
    model, path = saved
    before = path.read_bytes()
    # the child writes a second checkpoint to the same path and stalls just before os.replace
    child = textwrap.dedent(
        """
        import os, sys, time
        import numlstm

        def stalled_replace(src, dst):
            print("replacing", src, flush=True)
            time.sleep(120)

        os.replace = stalled_replace
        model = numlstm.Sequential([numlstm.Dense(3, 5, seed=9), numlstm.ReLU()])
        numlstm.save(model, sys.argv[1], extra={"epoch": 99})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "the child did not reach os.replace in time"
        line = proc.stdout.readline()
        assert line.startswith("replacing"), (line, proc.stderr.read() if proc.poll() is not None else "")
        tmp = Path(line.split(" ", 1)[1].strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # the kill came after the complete temporary file was written, before the rename
    assert tmp.parent == path.parent and tmp.name.startswith(f".{path.name}.") and tmp.exists()
    assert numlstm.load(tmp, with_optimizer_state=True).extra == {"epoch": 99}
    # the previous checkpoint is untouched and loads
    assert path.read_bytes() == before
    loaded = numlstm.load(path)
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    # the next save still works and replaces it
    numlstm.save(Dense(3, 5, seed=9), path)
    assert numlstm.load(path).config()["out_features"] == 5


# -- bad files -------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        numlstm.load(path)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -22, -1])
def test_truncated_file(saved, keep):
    _, path = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match=str(path.name)):
        numlstm.load(path)


@pytest.mark.parametrize(
    "content",
    [
        b"garbage" * 100,
        bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        b"PK\x03\x04" + b"\x00" * 200,  # looks like a zip
        b"\x93NUMPY" + b"\x00" * 200,  # looks like a .npy
    ],
    ids=["text", "random", "fake-zip", "fake-npy"],
)
def test_garbage_bytes(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.npz"):
        numlstm.load(path)


def test_corrupted_bytes_inside(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("param/0.weight.npy")
    off = info.header_offset
    name_len, extra_len = np.frombuffer(bytes(data[off + 26 : off + 30]), "<u2")  # local file header
    pos = off + 30 + int(name_len) + int(extra_len) + 130  # past the .npy header, inside the array data
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged checkpoint"):
        numlstm.load(path)


def test_a_single_npy_is_refused(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match="single .npy array"):
        numlstm.load(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weight=np.ones((2, 2)), bias=np.zeros(2))
    with pytest.raises(ValueError, match="not a numlstm checkpoint"):
        numlstm.load(path)


@pytest.mark.parametrize(
    "header, pattern",
    [
        ({"format": "something-else", "version": 1}, r"not a numlstm checkpoint \(header format 'something-else'"),
        ([1, 2, 3], r"not a numlstm checkpoint \(header format None"),
        (
            {"format": FORMAT, "version": VERSION + 1, "numlstm_version": "9.0"},
            r"version 2 was written by a newer numlstm \(9.0\).*upgrade",
        ),
        ({"format": FORMAT, "version": 0}, r"invalid checkpoint version 0"),
        ({"format": FORMAT, "version": "1"}, r"invalid checkpoint version '1'"),
        ({"format": FORMAT, "version": 1, "model": {}}, r"the header lacks 'optimizer'"),
    ],
)
def test_bad_headers(saved, header, pattern):
    _, path = saved
    rewrite(path, header_fn=lambda h: header)
    with pytest.raises(ValueError, match=pattern):
        numlstm.load(path)


def test_header_not_json_or_not_utf8(saved):
    _, path = saved
    rewrite(path, arrays_fn=lambda a: {**a, HEADER_KEY: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(ValueError, match="not valid JSON"):
        numlstm.load(path)
    rewrite(path, arrays_fn=lambda a: {**a, HEADER_KEY: np.frombuffer(b"\xff\xfe", np.uint8)})
    with pytest.raises(ValueError, match="not UTF-8"):
        numlstm.load(path)
    rewrite(path, arrays_fn=lambda a: {**a, HEADER_KEY: np.ones((2, 2))})
    with pytest.raises(ValueError, match="expected UTF-8 bytes"):
        numlstm.load(path)


def test_the_header_may_be_a_unicode_scalar(saved):
    model, path = saved
    rewrite(path, arrays_fn=lambda a: {**a, HEADER_KEY: np.array(a[HEADER_KEY].tobytes().decode())})
    loaded = numlstm.load(path)
    np.testing.assert_array_equal(loaded.params["2.weight"], model.params["2.weight"])


def test_pickled_arrays_are_refused_without_unpickling(saved, tmp_path):
    _, path = saved
    # the marker works: unpickling creates the folder
    probe = tmp_path / "probe.npz"
    np.savez(probe, evil=object_array(tmp_path / "probe-marker"))
    with np.load(probe, allow_pickle=True) as z:
        z["evil"]
    assert (tmp_path / "probe-marker").is_dir()

    cases = {
        "param": lambda a: {**a, "param/0.weight": object_array(tmp_path / "m1")},
        "optim": lambda a: {**a, "optim/m/0": object_array(tmp_path / "m2")},
        "extra-entry": lambda a: {**a, "extra/evil": object_array(tmp_path / "m3")},
        "header": lambda a: {**a, HEADER_KEY: object_array(tmp_path / "m4")},
    }
    for name, fn in cases.items():
        bad = tmp_path / f"{name}.npz"
        rewrite(path, arrays_fn=fn, out=bad)
        with pytest.raises(ValueError, match="object|pickle") as info:
            numlstm.load(bad)
        assert "not unpickled" in str(info.value) or "pickled" in str(info.value), name
    # a foreign npz of one object array, and a bare pickle file
    only = tmp_path / "only.npz"
    np.savez(only, x=object_array(tmp_path / "m5"))
    with pytest.raises(ValueError):
        numlstm.load(only)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Marker(tmp_path / "m6")))
    with pytest.raises(ValueError):
        numlstm.load(raw)
    for m in ("m1", "m2", "m3", "m4", "m5", "m6"):
        assert not (tmp_path / m).exists(), f"{m}: something was unpickled"


def test_tampered_shapes_and_names(saved, tmp_path):
    _, path = saved
    cases = {
        "shape": (
            lambda a: {**a, "param/2.weight": np.zeros((3, 4))},
            r"parameter '2.weight' is float64 \(3, 4\), the config says float64 \(2, 4\)",
        ),
        "dtype": (
            lambda a: {**a, "param/2.bias": np.zeros(2, np.float32)},
            r"'2.bias' is float32 \(2,\), the config says float64",
        ),
        "missing": (lambda a: {k: v for k, v in a.items() if k != "param/0.bias"}, r"missing parameters \['0.bias'\]"),
        "unexpected": (lambda a: {**a, "param/3.weight": np.zeros(2)}, r"unexpected parameters \['3.weight'\]"),
        "stray-optim": (lambda a: {**a, "optim/ghost": np.zeros(2)}, r"arrays \['optim/ghost'\] are not referenced"),
        "lost-optim": (
            lambda a: {k: v for k, v in a.items() if k != "optim/m/0"},
            r"refers to an array 'optim/m/0' that the file does not contain",
        ),
        "foreign-entry": (lambda a: {**a, "weights": np.zeros(2)}, r"unexpected entry 'weights'"),
    }
    for name, (fn, pattern) in cases.items():
        bad = tmp_path / f"{name}.npz"
        rewrite(path, arrays_fn=fn, out=bad)
        with pytest.raises(ValueError, match=pattern):
            numlstm.load(bad)


def test_tampered_config(saved, tmp_path):
    _, path = saved

    def bigger(h):
        h["model"]["config"]["layers"][0]["config"]["out_features"] = 5
        return h

    def unknown(h):
        h["model"]["class"] = "Transformer"
        return h

    def bad_arg(h):
        h["model"]["config"]["layers"][0]["config"]["in_features"] = "three"
        return h

    def bad_ref(h):
        h["optimizer"]["state"]["m"][0] = {"__ndarray__": "param/0.weight", "__scalar__": False}
        return h

    cases = {
        "bigger": (bigger, r"'0.weight' is float64 \(4, 3\), the config says float64 \(5, 3\)"),
        "unknown": (unknown, r"unknown layer class 'Transformer'; known: \[.*'Dense'.*'LSTM'.*'Sequential'"),
        "bad-arg": (bad_arg, r"cannot rebuild the model.*in_features: expected an int, got str"),
        "bad-ref": (bad_ref, r"malformed array reference"),
    }
    for name, (fn, pattern) in cases.items():
        bad = tmp_path / f"{name}.npz"
        rewrite(path, header_fn=fn, out=bad)
        with pytest.raises(ValueError, match=pattern):
            numlstm.load(bad)


# -- the registry ------------------------------------------------------------------------------------------
def test_registry_knows_the_builtin_layers():
    known = registered_layers()
    for name in ("LSTM", "Dense", "ReLU", "Tanh", "Sigmoid", "Flatten", "Dropout", "LastStep", "Sequential"):
        assert name in known
    spec = layer_to_config(LSTM(3, 4, seed=0))
    assert spec["class"] == "LSTM" and spec["config"]["dtype"] == "float32"
    rebuilt = layer_from_config(spec)
    np.testing.assert_array_equal(rebuilt.params["weight_hh_l0"], LSTM(3, 4, seed=0).params["weight_hh_l0"])


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown layer class 'Conv9D'; known: \["):
        layer_from_config({"class": "Conv9D", "config": {}})
    with pytest.raises(ValueError, match=r"missing \['config'\]"):
        layer_from_config({"class": "Dense"})
    with pytest.raises(TypeError, match="spec: expected a dict"):
        layer_from_config(["Dense", {}])
    with pytest.raises(ValueError, match="cannot build Dense"):
        layer_from_config({"class": "Dense", "config": {"in_features": 2}})
    with pytest.raises(TypeError, match="cls: expected a subclass of numlstm.Layer"):
        register(dict)

    class NoConfig(numlstm.Layer):
        pass

    with pytest.raises(TypeError, match="NoConfig has no config"):
        register(NoConfig)

    class Dense2(Dense):
        pass

    with pytest.raises(ValueError, match="'Dense' is already registered"):
        register(Dense2, name="Dense")
    assert register(Dense) is Dense  # registering the same class again is harmless
    assert Model is numlstm.Model


# -- buffers ------------------------------------------------------------------------------------------------
def bn_cnn(dtype=np.float32):
    return Sequential(
        [
            numlstm.Conv2D(1, 4, 3, padding="same", dtype=dtype, seed=0),
            numlstm.BatchNorm2D(4, dtype=dtype),
            ReLU(),
            numlstm.MaxPool2D(2),
            numlstm.GlobalAvgPool2D(),
            Dense(4, 2, dtype=dtype, seed=1),
        ]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_restores_batchnorm_running_statistics(tmp_path, dtype):
    rng = np.random.default_rng(0)
    model = bn_cnn(dtype)
    x = (3.0 + 2.0 * rng.standard_normal((6, 1, 6, 6))).astype(dtype)
    for _ in range(3):
        model(x)  # training mode: the running statistics leave their 0 / 1 start
    assert np.all(model.buffers["1.running_mean"] != 0.0)
    path = numlstm.save(model, tmp_path / "bn.npz")
    with np.load(path) as f:
        assert "param/1.running_mean" in f.files and "param/1.running_var" in f.files
    loaded = numlstm.load(path)
    for k, v in model.buffers.items():
        assert loaded.buffers[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded.buffers[k], v, err_msg=k)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))


def test_a_single_batchnorm_and_time_distributed_batchnorm_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    for name, layer, x in (
        ("bn", numlstm.BatchNorm2D(3), rng.standard_normal((4, 3, 2, 2)).astype(np.float32)),
        ("td", numlstm.TimeDistributed(numlstm.BatchNorm2D(3)), rng.standard_normal((2, 3, 3, 2, 2)).astype(np.float32)),
    ):
        layer(x + 1.0)
        loaded = numlstm.load(numlstm.save(layer, tmp_path / f"{name}.npz"))
        np.testing.assert_array_equal(loaded.buffers["running_var"], layer.buffers["running_var"])
        layer.eval()
        loaded.eval()
        np.testing.assert_array_equal(loaded(x), layer(x))


def test_tampered_buffers_are_refused(tmp_path):
    path = numlstm.save(bn_cnn(np.float64), tmp_path / "bn.npz")
    cases = {
        "missing": (
            lambda a: {k: v for k, v in a.items() if k != "param/1.running_var"},
            r"missing parameters \['1.running_var'\]",
        ),
        "shape": (
            lambda a: {**a, "param/1.running_mean": np.zeros(5)},
            r"'1.running_mean' is float64 \(5,\), the config says float64 \(4,\)",
        ),
    }
    for name, (fn, pattern) in cases.items():
        bad = tmp_path / f"{name}.npz"
        rewrite(path, arrays_fn=fn, out=bad)
        with pytest.raises(ValueError, match=pattern):
            numlstm.load(bad)
