"""Read MNIST (or any dataset in its formats, e.g. Fashion-MNIST) from local
files, as ``keras.datasets.mnist.load_data()`` returns it. Nothing is
downloaded."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_mnist"]

# (array name, IDX dimensions, accepted file names without ".gz"); the second
# spelling is the one of some mirrors (e.g. Kaggle).
_IDX_FILES = (
    ("x_train", 3, ("train-images-idx3-ubyte", "train-images.idx3-ubyte")),
    ("y_train", 1, ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")),
    ("x_test", 3, ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")),
    ("y_test", 1, ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")),
)
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in ("", ".gz"):
            p = folder / (name + suffix)
            if p.is_file():
                return p
    return None


def _read_exact(f, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """One IDX file of unsigned bytes (optionally gzipped) as a uint8 array.

    The format: a 4-byte big-endian magic number ``0x0000080D`` (``08`` =
    unsigned byte, ``D`` = number of dimensions), ``D`` big-endian uint32
    sizes, then the data in C order. ``ndim``, if given, is the number of
    dimensions the file must have (3 for images, 1 for labels).
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise ValueError(f"{path}: truncated IDX file: {len(head)} bytes, shorter than the 4-byte magic number")
            magic = int.from_bytes(head, "big")
            d = head[3]
            if head[:3] != b"\x00\x00\x08" or (ndim is not None and d != ndim) or d == 0:
                want = f"0x{0x0800 | ndim:08x}" if ndim is not None else "0x0000080D (D dimensions)"
                what = {3: " (IDX unsigned-byte images)", 1: " (IDX unsigned-byte labels)"}.get(ndim, "")
                raise ValueError(f"{path}: bad magic number 0x{magic:08x}, expected {want}{what}: is this the right file?")
            raw = _read_exact(f, 4 * d)
            if len(raw) < 4 * d:
                raise ValueError(f"{path}: truncated IDX file: the header ends after {4 + len(raw)} of {4 + 4 * d} bytes")
            shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4"))
            count = int(np.prod(shape, dtype=np.int64))
            data = np.empty(count, dtype=np.uint8)
            got = 0
            view = memoryview(data)
            while got < count:
                k = f.readinto(view[got:])
                if not k:
                    break
                got += k
            if got < count:
                raise ValueError(f"{path}: truncated IDX file: shape {shape} needs {count} data bytes, found only {got}")
            if f.read(1):
                raise ValueError(f"{path}: corrupt IDX file: more data than shape {shape} in its header says ({count} bytes)")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: unreadable gzip file ({exc}): truncated or corrupt download?") from exc
    return data.reshape(shape)


def _check_pair(x: np.ndarray, y: np.ndarray, xname: str, yname: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"{xname}: expected images of shape (N, height, width), got shape {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{yname}: expected labels of shape (N,), got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{xname} and {yname}: mismatched counts, {x.shape[0]} images but {y.shape[0]} labels")


def _load_npz(path: Path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz file (a zip archive of arrays, as written by np.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}; expected keys {list(_KEYS)}, found {sorted(z.files)}")
            arrays = {k: z[k] for k in _KEYS}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc
    except ValueError as exc:
        if "pickle" in str(exc):
            msg = f"{path}: holds object arrays, which are not loaded (allow_pickle=False): store uint8 arrays"
            raise ValueError(msg) from exc
        raise
    for k in ("x_train", "x_test"):
        if arrays[k].dtype != np.uint8:
            raise ValueError(f"{path}: {k} has dtype {arrays[k].dtype}, expected uint8 images (0..255)")
    for k in ("y_train", "y_test"):
        if arrays[k].dtype.kind not in "iu":
            raise ValueError(f"{path}: {k} has dtype {arrays[k].dtype}, expected integer labels")
    return arrays


def _load_idx_dir(folder: Path):
    found = {}
    missing = []
    for key, _, names in _IDX_FILES:
        p = _find(folder, names)
        if p is None:
            missing.append(names[0])
        found[key] = p
    if missing:
        raise FileNotFoundError(
            f"path: {folder} lacks the IDX file(s) {missing} (each may also end in .gz); expected "
            f"{[names[0] for _, _, names in _IDX_FILES]}"
        )
    return {key: read_idx(found[key], ndim) for key, ndim, _ in _IDX_FILES}, found


def load_mnist(path: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST from local files, like ``keras.datasets.mnist.load_data()``.

    Parameters
    ----------
    path : str or path-like
        Either a directory holding the four standard IDX files,
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each may end in
        ``.gz``; ``train-images.idx3-ubyte`` spellings are accepted too), or an
        ``.npz`` file with arrays ``x_train, y_train, x_test, y_test`` (Keras'
        ``mnist.npz``; loaded with ``allow_pickle=False``). Fashion-MNIST and
        other datasets in these formats load the same way.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x_*``: (N, 28, 28) uint8 images (0..255; any height and width the
        files hold); ``y_*``: (N,) labels, uint8 from IDX files, as stored in
        an ``.npz``. For MNIST N is 60000 and 10000. Scale with
        ``x.astype(np.float32) / 255``.

    Raises
    ------
    TypeError
        ``path`` is not a string or path-like.
    FileNotFoundError
        ``path`` does not exist, or the directory lacks a file (named).
    ValueError
        A file is corrupt: bad magic number, truncated, mismatched image and
        label counts, missing ``.npz`` keys, wrong dtypes or shapes.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike (an IDX directory or an .npz file), got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"path: {p} does not exist; expected a directory of MNIST IDX files or an .npz file")
    if p.is_dir():
        arrays, files = _load_idx_dir(p)
        names = {k: str(files[k]) for k in _KEYS}
    elif p.suffix == ".npz":
        arrays = _load_npz(p)
        names = {k: f"{p}[{k!r}]" for k in _KEYS}
    else:
        raise ValueError(f"path: expected a directory of IDX files or an .npz file, got the file {p}")
    _check_pair(arrays["x_train"], arrays["y_train"], names["x_train"], names["y_train"])
    _check_pair(arrays["x_test"], arrays["y_test"], names["x_test"], names["y_test"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
