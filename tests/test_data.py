"""numlstm.data: rendered digits, MNIST files, moving digits, patches."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numlstm.data import (
    depth_to_space,
    digit_glyphs,
    digit_images,
    iter_moving_digits,
    load_mnist,
    moving_digits,
    sequence_digits,
    space_to_depth,
)
from numlstm.data.moving import bounce, bounce_path

# ---------------------------------------------------------------- glyphs


def test_digit_glyphs_shapes_dtypes_and_range():
    x, y = digit_glyphs(4, size=28, seed=0)
    assert x.shape == (40, 28, 28) and x.dtype == np.float32
    assert y.shape == (40,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 4))
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x.max(axis=(1, 2)), 1.0)  # white digit, normalised
    # black background: the corners are empty, as in MNIST
    assert np.all(x[:, :2, :2] == 0) and np.all(x[:, -2:, -2:] == 0)


def test_digit_glyphs_centred_by_mass_in_a_20px_box():
    x, _ = digit_glyphs(10, size=28, seed=3)
    r, c = np.indices((28, 28))
    m = x.sum(axis=(1, 2))
    com_r = (x * r).sum(axis=(1, 2)) / m
    com_c = (x * c).sum(axis=(1, 2)) / m
    assert np.all(np.abs(com_r - 13.5) < 3) and np.all(np.abs(com_c - 13.5) < 3)
    assert abs(com_r.mean() - 13.5) < 1 and abs(com_c.mean() - 13.5) < 1
    rows = (x > 0.1).any(axis=2)
    heights = rows.shape[1] - np.argmax(rows[:, ::-1], axis=1) - np.argmax(rows, axis=1)
    assert 14 <= np.median(heights) <= 22


def test_digit_glyphs_deterministic_and_seeded():
    a, _ = digit_glyphs(3, seed=7)
    b, _ = digit_glyphs(3, seed=7)
    c, _ = digit_glyphs(3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_digit_glyphs_cache_returns_copies():
    a, ya = digit_glyphs(2, seed=11)
    a[...] = 0.5
    ya[...] = -1
    b, yb = digit_glyphs(2, seed=11)
    assert b.max() == 1.0 and yb.min() == 0


def test_digit_glyphs_glyph_depends_only_on_class_and_index():
    small, _ = digit_glyphs(2, seed=4)
    big, _ = digit_glyphs(5, seed=4)
    np.testing.assert_array_equal(small.reshape(10, 2, 28, 28), big.reshape(10, 5, 28, 28)[:, :2])


def test_digit_glyphs_vary_within_each_class():
    x, y = digit_glyphs(12, seed=0)
    for c in range(10):
        g = x[y == c].reshape(12, -1)
        d = ((g[:, None] - g[None]) ** 2).sum(-1)
        off_diagonal = d[~np.eye(12, dtype=bool)]
        assert off_diagonal.min() > 1.0, f"class {c} has (nearly) identical glyphs"


def test_digit_glyphs_are_learnable_digits():
    # a nearest-centroid classifier fitted on one seed recognises another seed's
    # glyphs far above chance (0.1): the classes are distinct, consistent shapes
    xa, ya = digit_glyphs(20, seed=0)
    xb, yb = digit_glyphs(10, seed=1)
    centroids = np.stack([xa[ya == c].mean(axis=0) for c in range(10)]).reshape(10, -1)
    d = ((xb.reshape(len(xb), 1, -1) - centroids[None]) ** 2).sum(-1)
    accuracy = (d.argmin(axis=1) == yb).mean()
    assert accuracy > 0.6, accuracy
    # and the class means differ from each other
    cd = ((centroids[:, None] - centroids[None]) ** 2).sum(-1)
    assert cd[~np.eye(10, dtype=bool)].min() > 1.0


@pytest.mark.parametrize("size", [8, 16, 40])
def test_digit_glyphs_other_sizes(size):
    x, _ = digit_glyphs(1, size=size, seed=0)
    assert x.shape == (10, size, size)
    assert np.all(x.max(axis=(1, 2)) > 0.99)


def test_digit_images():
    x, y = digit_images(60, size=28, seed=2, dtype=np.float64)
    assert x.shape == (60, 28, 28) and x.dtype == np.float64
    assert y.shape == (60,) and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1
    assert set(y.tolist()) == set(range(10))
    x2, y2 = digit_images(20, size=28, seed=2, dtype=np.float64)
    np.testing.assert_array_equal(x[:20], x2)
    np.testing.assert_array_equal(y[:20], y2)
    x3, _ = digit_images(20, size=28, seed=3, dtype=np.float64)
    assert not np.array_equal(x2, x3)
    x4, _ = digit_images(20, size=28, seed=2)
    assert x4.dtype == np.float32
    np.testing.assert_allclose(x4, x2, atol=1e-6)


# ---------------------------------------------------------------- MNIST files


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + arr.tobytes()


_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _fake_mnist(seed=0, n_train=7, n_test=3):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write_idx_dir(folder, arrays, gz=(), names=_NAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        data = _idx_bytes(arr)
        if key in gz:
            (folder / (names[key] + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / names[key]).write_bytes(data)
    return folder


def _assert_loaded(loaded, arrays):
    (xtr, ytr), (xte, yte) = loaded
    for got, key in ((xtr, "x_train"), (ytr, "y_train"), (xte, "x_test"), (yte, "y_test")):
        np.testing.assert_array_equal(got, arrays[key])
        assert got.dtype == np.uint8
    assert xtr.flags.writeable


@pytest.mark.parametrize("gz", [(), tuple(_NAMES), ("x_train", "y_test")], ids=["plain", "gz", "mixed"])
def test_load_mnist_idx_round_trip(tmp_path, gz):
    arrays = _fake_mnist()
    folder = _write_idx_dir(tmp_path / "mnist", arrays, gz=gz)
    _assert_loaded(load_mnist(folder), arrays)
    _assert_loaded(load_mnist(str(folder)), arrays)


def test_load_mnist_idx_dotted_names(tmp_path):
    arrays = _fake_mnist(1)
    names = {k: v.replace("-idx", ".idx") for k, v in _NAMES.items()}
    _assert_loaded(load_mnist(_write_idx_dir(tmp_path, arrays, names=names)), arrays)


def test_load_mnist_npz_round_trip(tmp_path):
    arrays = _fake_mnist(2)
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    (xtr, ytr), (xte, yte) = load_mnist(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(xtr, arrays["x_train"])
    np.testing.assert_array_equal(ytr, arrays["y_train"])
    np.testing.assert_array_equal(xte, arrays["x_test"])
    np.testing.assert_array_equal(yte, arrays["y_test"])
    assert ytr.dtype == np.int64


def test_load_mnist_missing_path_and_files(tmp_path):
    with pytest.raises(TypeError, match="path"):
        load_mnist(3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    arrays = _fake_mnist()
    folder = _write_idx_dir(tmp_path / "m", arrays)
    (folder / _NAMES["y_test"]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_mnist(folder)
    assert "train-images" not in str(info.value).split("expected")[0]
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="directory of IDX files or an .npz"):
        load_mnist(tmp_path / "notes.txt")


def test_load_mnist_bad_magic(tmp_path):
    arrays = _fake_mnist()
    folder = _write_idx_dir(tmp_path, arrays)
    # a labels file where the images should be
    (folder / _NAMES["x_train"]).write_bytes(_idx_bytes(arrays["y_train"]))
    with pytest.raises(ValueError, match=r"bad magic number 0x00000801, expected 0x00000803"):
        load_mnist(folder)
    (folder / _NAMES["x_train"]).write_bytes(b"\x1f\x8b" + b"\x00" * 20)  # not an IDX file at all
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: bad magic number"):
        load_mnist(folder)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [2, 10, 100])
def test_load_mnist_truncated(tmp_path, gz, cut):
    arrays = _fake_mnist()
    folder = _write_idx_dir(tmp_path, arrays)
    data = _idx_bytes(arrays["x_test"])[:cut]
    (folder / _NAMES["x_test"]).unlink()
    if gz:
        (folder / (_NAMES["x_test"] + ".gz")).write_bytes(gzip.compress(data))
    else:
        (folder / _NAMES["x_test"]).write_bytes(data)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        load_mnist(folder)


def test_load_mnist_corrupt_gzip_and_extra_bytes(tmp_path):
    arrays = _fake_mnist()
    folder = _write_idx_dir(tmp_path, arrays, gz=("y_train",))
    p = folder / (_NAMES["y_train"] + ".gz")
    p.write_bytes(p.read_bytes()[:-12])  # a cut download
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        load_mnist(folder)
    p.unlink()
    (folder / _NAMES["y_train"]).write_bytes(_idx_bytes(arrays["y_train"]) + b"\x00")
    with pytest.raises(ValueError, match="more data"):
        load_mnist(folder)


def test_load_mnist_mismatched_counts(tmp_path):
    arrays = _fake_mnist()
    arrays["y_test"] = arrays["y_test"][:-1]
    with pytest.raises(ValueError, match="mismatched counts, 3 images but 2 labels"):
        load_mnist(_write_idx_dir(tmp_path / "idx", arrays))
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match="mismatched counts"):
        load_mnist(tmp_path / "m.npz")


def test_load_mnist_bad_npz(tmp_path):
    arrays = _fake_mnist()
    np.savez(tmp_path / "keys.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    with pytest.raises(ValueError, match=r"missing arrays \['x_test', 'y_test'\]"):
        load_mnist(tmp_path / "keys.npz")
    np.savez(tmp_path / "float.npz", **{**arrays, "x_train": arrays["x_train"] / 255.0})
    with pytest.raises(ValueError, match="x_train has dtype float64, expected uint8"):
        load_mnist(tmp_path / "float.npz")
    np.savez(tmp_path / "labels.npz", **{**arrays, "y_test": arrays["y_test"].astype(np.float32)})
    with pytest.raises(ValueError, match="y_test .*expected integer labels"):
        load_mnist(tmp_path / "labels.npz")
    np.savez(tmp_path / "obj.npz", **{**arrays, "y_test": np.array([None, 1, 2], dtype=object)})
    with pytest.raises(ValueError, match="object arrays"):
        load_mnist(tmp_path / "obj.npz")
    np.save(tmp_path / "plain.npy", arrays["x_test"])
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not an .npz file"):
        load_mnist(tmp_path / "plain.npz")
    np.savez(tmp_path / "flat.npz", **{**arrays, "x_test": arrays["x_test"].reshape(3, -1)})
    with pytest.raises(ValueError, match=r"x_test.*expected images of shape \(N, height, width\)"):
        load_mnist(tmp_path / "flat.npz")


# ---------------------------------------------------------------- moving digits

_FAST = dict(seq_len=6, size=32, digit_size=14)  # small frames keep the tests quick


def test_moving_digits_shapes_dtypes_range():
    x = moving_digits(3, seed=0)
    assert x.shape == (3, 20, 1, 64, 64) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    x64, labels = moving_digits(2, digits=3, dtype=np.float64, return_labels=True, **_FAST)
    assert x64.shape == (2, 6, 1, 32, 32) and x64.dtype == np.float64
    assert labels.shape == (2, 3) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= 9


def test_moving_digits_deterministic_and_seeded():
    a = moving_digits(3, seed=5, **_FAST)
    np.testing.assert_array_equal(a, moving_digits(3, seed=5, **_FAST))
    assert not np.array_equal(a, moving_digits(3, seed=6, **_FAST))


def test_moving_digits_independent_of_batching():
    full, labels = moving_digits(10, seed=1, return_labels=True, **_FAST)
    np.testing.assert_array_equal(moving_digits(4, seed=1, **_FAST), full[:4])
    for batch_size in (1, 3, 10, 64):
        batches = list(iter_moving_digits(10, batch_size, seed=1, **_FAST))
        assert [len(b) for b in batches] == [min(batch_size, 10 - s) for s in range(0, 10, batch_size)]
        np.testing.assert_array_equal(np.concatenate(batches), full)
    pairs = list(iter_moving_digits(10, 4, seed=1, return_labels=True, **_FAST))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pairs]), full)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pairs]), labels)


def test_moving_digits_stay_inside_and_bounce():
    # one white 6 x 6 square, fast: every frame shows the whole square, and it
    # touches (bounces off) the edges
    square = np.ones((1, 6, 6), dtype=np.uint8) * 255
    x = moving_digits(8, seq_len=40, size=20, digits=1, images=square, speed=(3.0, 5.0), seed=0)
    frames = x[:, :, 0]
    assert np.all(frames.sum(axis=(2, 3)) == 36)  # never clipped by an edge
    rows = frames.any(axis=3)
    cols = frames.any(axis=2)
    assert np.all(rows.sum(axis=2) == 6) and np.all(cols.sum(axis=2) == 6)  # one contiguous square
    top = rows.argmax(axis=2)
    left = cols.argmax(axis=2)
    assert top.min() == 0 and top.max() == 14 and left.min() == 0 and left.max() == 14
    # the square moves (a frame can repeat when a reflection lands on the same pixel)
    assert np.mean(np.any(frames[:, 1:] != frames[:, :-1], axis=(2, 3))) > 0.95


def test_bounce_matches_stepwise_reflection():
    rng = np.random.default_rng(0)
    for _ in range(50):
        limit = int(rng.integers(1, 40))
        start = rng.uniform(0, limit)
        v = rng.uniform(-3 * limit, 3 * limit)
        pos, vel, want = start, v, []
        for _t in range(30):
            want.append(pos)
            pos += vel
            while pos < 0 or pos > limit:  # reflect, reversing the velocity
                pos, vel = (-pos, -vel) if pos < 0 else (2 * limit - pos, -vel)
        np.testing.assert_allclose(bounce_path(start, v, limit, 30), want, atol=1e-6)
    np.testing.assert_array_equal(bounce(0.0, 2.0, 0, 4), 0)
    p = bounce(1.0, 7.3, 5, 100)
    assert p.min() >= 0 and p.max() <= 5 and p.dtype == np.int64


def test_moving_digits_motion():
    x = moving_digits(4, seed=2, **_FAST)
    changed = np.any(x[:, 1:] != x[:, :-1], axis=(2, 3, 4))
    assert changed.mean() > 0.9
    still = moving_digits(2, speed=0.0, seed=2, **_FAST)
    np.testing.assert_array_equal(still[:, 1:], still[:, :-1])


def test_moving_digits_overlap_is_maximum():
    grey = np.full((1, 8, 8), 0.6)
    x = moving_digits(3, seq_len=5, size=12, digits=4, images=grey, seed=0)
    assert np.isclose(x.max(), 0.6)  # a sum would exceed 0.6 where squares overlap
    values = np.unique(x)
    assert np.all(np.isclose(values, 0.0) | np.isclose(values, 0.6))


def test_moving_digits_user_images_and_labels():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 10, 12), dtype=np.uint8)
    imgs[:, 0] = 255
    lab = np.array([3, 1, 4, 1, 5])
    x, y = moving_digits(6, seq_len=3, size=24, digits=2, images=imgs, labels=lab, return_labels=True, seed=1)
    assert x.shape == (6, 3, 1, 24, 24) and x.max() == 1.0
    assert set(y.ravel().tolist()) <= {1, 3, 4, 5}
    # float images in [0, 1] give the same frames as uint8 / 255
    xf, yf = moving_digits(6, seq_len=3, size=24, digits=2, images=imgs / 255.0, labels=lab, return_labels=True, seed=1)
    np.testing.assert_allclose(xf, x, atol=1e-6)
    np.testing.assert_array_equal(yf, y)
    # image indices as labels
    _, idx = moving_digits(6, seq_len=3, size=24, images=imgs, labels=np.arange(5), return_labels=True, seed=1)
    np.testing.assert_array_equal(lab[idx], y)


def test_moving_digits_memory_cap():
    with pytest.raises(ValueError, match="max_bytes.*iter_moving_digits"):
        moving_digits(10**6)  # 312 GiB: refused before allocating
    with pytest.raises(ValueError, match="max_bytes"):
        moving_digits(2, max_bytes=1000, **_FAST)
    assert moving_digits(2, max_bytes=None, **_FAST).shape == (2, 6, 1, 32, 32)


def test_moving_digits_default_tile_fits_small_frames():
    x = moving_digits(2, seq_len=4, size=32, seed=0)  # default tile min(28, 32 // 2) = 16
    assert x.shape == (2, 4, 1, 32, 32) and x.max() == 1.0
    assert np.any(x[:, 1:] != x[:, :-1])
    assert moving_digits(1, seq_len=2, size=8).shape == (1, 2, 1, 8, 8)


def test_iter_moving_digits_memory_is_one_batch():
    # glyphs rendered once and passed as images keep this test fast
    glyphs, labels = digit_glyphs(1, size=14, seed=0)
    n, batch_size = 1000, 2
    kw = dict(seq_len=10, size=48, images=glyphs, labels=labels, return_labels=True, seed=0)
    batch_bytes = batch_size * 10 * 48 * 48 * 4
    total_bytes = n * 10 * 48 * 48 * 4  # 92 MB
    tracemalloc.start()
    try:
        count = 0
        for frames, _ in iter_moving_digits(n, batch_size, **kw):
            count += len(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # the batch being made plus the one the loop variable still holds
    assert peak < 3 * batch_bytes + 256 * 1024, peak
    assert peak < total_bytes / 100, peak


def test_iter_moving_digits_checks_arguments_at_call():
    with pytest.raises(ValueError, match="n"):
        iter_moving_digits(0, 4)
    with pytest.raises(TypeError, match="batch_size"):
        iter_moving_digits(4, 2.0)


# ---------------------------------------------------------------- sequence_digits


def test_sequence_digits():
    x, y = sequence_digits(12, seq_len=8, size=28, seed=0)
    assert x.shape == (12, 8, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    assert x.min() >= 0 and x.max() <= 1
    # one digit, pasted whole in every frame: the ink is the same in every frame
    ink = x.sum(axis=(2, 3, 4))
    np.testing.assert_allclose(ink, ink[:, :1].repeat(8, axis=1), rtol=1e-5)
    assert np.any(x[:, 1:] != x[:, :-1])  # it moves
    x2, y2 = sequence_digits(5, seq_len=8, size=28, seed=0)
    np.testing.assert_array_equal(x2, x[:5])
    np.testing.assert_array_equal(y2, y[:5])
    x3, _ = sequence_digits(5, seq_len=8, size=28, seed=1)
    assert not np.array_equal(x3, x2)


def test_sequence_digits_noise_and_dtype():
    x, y = sequence_digits(4, seq_len=3, size=20, noise=0.1, seed=0, dtype=np.float64)
    clean, yc = sequence_digits(4, seq_len=3, size=20, seed=0, dtype=np.float64)
    assert x.dtype == np.float64 and x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(y, yc)
    assert np.mean(x[clean == 0] > 0) > 0.3  # noise on the background


def test_sequence_digits_user_images():
    imgs = np.zeros((3, 20, 20), np.uint8)
    imgs[:, 5:15, 5:15] = 200
    lab = np.array([7, 8, 9])
    x, y = sequence_digits(10, seq_len=4, size=28, images=imgs, labels=lab, seed=0)
    assert set(y.tolist()) <= {7, 8, 9}
    np.testing.assert_allclose(x.max(axis=(1, 2, 3, 4)), 200 / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="labels: required with images"):
        sequence_digits(2, images=imgs)


# ---------------------------------------------------------------- patches


def test_space_to_depth_shi_layout_and_inverse():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 1, 64, 64)).astype(np.float32)
    y = space_to_depth(x, 4)
    assert y.shape == (2, 3, 16, 16, 16) and y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(depth_to_space(y, 4), x)
    # channel c * p * p + i * p + j holds pixel (i, j) of each patch (pixel_unshuffle order)
    x = rng.random((2, 3, 6, 9))
    y = space_to_depth(x, 3)
    for c in range(3):
        for i in range(3):
            for j in range(3):
                np.testing.assert_array_equal(y[:, c * 9 + i * 3 + j], x[:, c, i::3, j::3])


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    c=st.integers(1, 3),
    hp=st.integers(1, 4),
    wp=st.integers(1, 4),
    p=st.integers(1, 4),
)
def test_space_to_depth_round_trip_any_shape(lead, c, hp, wp, p):
    x = np.arange(int(np.prod(lead + [c, hp * p, wp * p]))).reshape(*lead, c, hp * p, wp * p)
    y = space_to_depth(x, p)
    assert y.shape == (*lead, c * p * p, hp, wp)
    np.testing.assert_array_equal(depth_to_space(y, p), x)
    np.testing.assert_array_equal(space_to_depth(depth_to_space(y, p), p), y)


# ---------------------------------------------------------------- argument checks

_img = np.zeros((2, 8, 8), np.uint8)

BAD_ARGUMENTS = [
    (digit_glyphs, dict(n_per_class=0), ValueError, "n_per_class"),
    (digit_glyphs, dict(n_per_class=2.0), TypeError, "n_per_class"),
    (digit_glyphs, dict(size=4), ValueError, "size"),
    (digit_glyphs, dict(seed=-1), ValueError, "seed"),
    (digit_glyphs, dict(seed="0"), TypeError, "seed"),
    (digit_images, dict(n=0), ValueError, "n"),
    (digit_images, dict(n=2, dtype=np.int32), TypeError, "dtype"),
    (digit_images, dict(n=2, size=True), TypeError, "size"),
    (moving_digits, dict(n=0), ValueError, "n: expected an int >= 1"),
    (moving_digits, dict(n=1, seq_len=0), ValueError, "seq_len"),
    (moving_digits, dict(n=1, size=7), ValueError, "size"),
    (moving_digits, dict(n=1, digits=0), ValueError, "digits"),
    (moving_digits, dict(n=1, seed=1.5), TypeError, "seed"),
    (moving_digits, dict(n=1, speed=-1.0), ValueError, "speed"),
    (moving_digits, dict(n=1, speed=(3.0, 2.0)), ValueError, "speed: expected low <= high"),
    (moving_digits, dict(n=1, speed=(1.0, 2.0, 3.0)), ValueError, "speed"),
    (moving_digits, dict(n=1, speed="fast"), TypeError, "speed"),
    (moving_digits, dict(n=1, speed=(1.0, float("nan"))), ValueError, r"speed\[1\]"),
    (moving_digits, dict(n=1, digit_size=100), ValueError, "digit_size"),
    (moving_digits, dict(n=1, dtype=np.float16), TypeError, "dtype"),
    (moving_digits, dict(n=1, return_labels=1), TypeError, "return_labels"),
    (moving_digits, dict(n=1, max_bytes=0), ValueError, "max_bytes"),
    (moving_digits, dict(n=1, images=np.zeros((2, 8))), ValueError, "images: expected a 3-d array"),
    (moving_digits, dict(n=1, images=np.zeros((0, 8, 8))), ValueError, "images"),
    (moving_digits, dict(n=1, images=np.zeros((2, 8, 8), np.int32)), TypeError, "images: expected dtype uint8"),
    (moving_digits, dict(n=1, images=np.full((2, 8, 8), 2.0)), ValueError, "images: expected float values in"),
    (moving_digits, dict(n=1, images=np.full((2, 8, 8), np.nan)), ValueError, "images"),
    (moving_digits, dict(n=1, images="digits"), TypeError, "images"),
    (moving_digits, dict(n=1, size=16, images=np.zeros((2, 20, 8), np.uint8)), ValueError, "images: each image"),
    (moving_digits, dict(n=1, images=_img, digit_size=10), ValueError, "digit_size"),
    (moving_digits, dict(n=1, labels=[1, 2]), ValueError, "labels: only meaningful with images"),
    (moving_digits, dict(n=1, images=_img, labels=[1, 2, 3]), ValueError, "labels: expected a 1-d array of 2"),
    (moving_digits, dict(n=1, images=_img, labels=[1.0, 2.0]), TypeError, "labels: expected integer"),
    (moving_digits, dict(n=1, images=_img, return_labels=True), ValueError, "labels: return_labels=True with images"),
    (iter_moving_digits, dict(n=4, batch_size=0), ValueError, "batch_size"),
    (iter_moving_digits, dict(n=4, batch_size=2, speed=-2), ValueError, "speed"),
    (sequence_digits, dict(n=0), ValueError, "n"),
    (sequence_digits, dict(n=1, seq_len=-1), ValueError, "seq_len"),
    (sequence_digits, dict(n=1, noise=-0.1), ValueError, "noise"),
    (sequence_digits, dict(n=1, noise="x"), TypeError, "noise"),
    (sequence_digits, dict(n=1, size=10, digit_size=12), ValueError, "digit_size"),
    (sequence_digits, dict(n=1, dtype="int8"), TypeError, "dtype"),
    (sequence_digits, dict(n=1, images=_img, labels=[1]), ValueError, "labels"),
    (space_to_depth, dict(frames=np.zeros((1, 1, 1, 6, 8)), patch=4), ValueError, "frames: height and width must be divisible"),
    (space_to_depth, dict(frames=np.zeros((6, 8)), patch=2), ValueError, "frames: expected an array"),
    (space_to_depth, dict(frames=np.zeros((1, 4, 4)), patch=0), ValueError, "patch"),
    (space_to_depth, dict(frames=np.zeros((1, 4, 4)), patch=True), TypeError, "patch"),
    (space_to_depth, dict(frames="frames", patch=2), TypeError, "frames"),
    (depth_to_space, dict(frames=np.zeros((1, 6, 4, 4)), patch=2), ValueError, "frames: the channel count must be divisible"),
    (depth_to_space, dict(frames=np.zeros((1, 4, 4)), patch=2.0), TypeError, "patch"),
]


@pytest.mark.parametrize(
    "func, kwargs, error, message", BAD_ARGUMENTS, ids=[f"{f.__name__}-{'-'.join(k)}" for f, k, _, _ in BAD_ARGUMENTS]
)
def test_bad_arguments(func, kwargs, error, message):
    with pytest.raises(error, match=message):
        func(**kwargs)
