"""Checkpoints: a model, its optimizer state and extra training state in one ``.npz``, with no pickle.

File layout (an uncompressed ``.npz``, i.e. a zip of ``.npy`` files)::

    numlstm_header     uint8 (n,)   UTF-8 JSON, see below
    param/<name>       the model's state_dict() arrays: parameters and buffers
                       ("param/0.weight_ih_l0", "param/1.running_mean", ...)
    optim/<key path>   arrays of the optimizer's state_dict()
    extra/<key path>   arrays inside ``extra``

The header::

    {"format": "numlstm-checkpoint", "version": 1, "numlstm_version": "0.1.0",
     "model": {"class": "Sequential", "config": {"layers": [{"class": "LSTM", "config": {...}}, ...]}},
     "optimizer": null or {"class": "Adam", "state": <encoded state>},
     "extra": <encoded extra>}

Encoded values are JSON with three tagged forms: ``{"__ndarray__": "optim/m/0",
"__scalar__": false}`` (an array stored beside the header; ``__scalar__``
marks a numpy scalar), ``{"__tuple__": [...]}``, and ``{"__items__": [[key,
value], ...]}`` for a dict whose keys are not all strings (e.g. ints).

Guarantees: writing is atomic (a complete temporary file in the same folder,
flushed and fsynced, then ``os.replace``; the folder is fsynced where the
system allows), so an interrupted save leaves the previous checkpoint intact;
no pickle is ever written or read (``np.load(allow_pickle=False)`` only), and
every way a file can be wrong raises ``ValueError`` (``FileNotFoundError``
when it does not exist).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from numlstm.layers.base import Layer
from numlstm.layers.registry import layer_from_config, layer_to_config

FORMAT = "numlstm-checkpoint"
VERSION = 1
HEADER_KEY = "numlstm_header"
_PARAM, _OPTIM, _EXTRA = "param/", "optim/", "extra/"
_TAGS = ("__ndarray__", "__scalar__", "__tuple__", "__items__")
# kinds of arrays that .npy stores without pickle
_ARRAY_KINDS = "biufcUS"
# what reading a damaged zip or .npy member can raise
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError, RuntimeError)


@dataclass
class Checkpoint:
    """What ``load(path, with_optimizer_state=True)`` returns.

    Attributes
    ----------
    model : Layer
        The rebuilt model (or layer), in training mode, with the saved parameters.
    optimizer_state : dict or None
        The optimizer's ``state_dict()`` as saved (arrays, numbers, strings,
        lists, tuples, dicts), ``None`` when no optimizer was saved; pass it
        to the optimizer's ``load_state_dict``.
    extra : Any
        The ``extra`` value given to ``save`` (``None`` when none).
    optimizer_class : str or None
        Class name of the saved optimizer.
    """

    model: Layer
    optimizer_state: dict | None = None
    extra: Any = None
    optimizer_class: str | None = None


# -- encoding of optimizer state and extra ---------------------------------------------------
def _is_tag(key) -> bool:
    return isinstance(key, str) and key.startswith("__") and key.endswith("__")


class _Encoder:
    """Turns nested Python/numpy values into JSON, moving arrays into ``arrays``."""

    def __init__(self, prefix: str, what: str, arrays: dict[str, np.ndarray]) -> None:
        self.prefix = prefix
        self.what = what
        self.arrays = arrays

    def _where(self, path) -> str:
        return self.what + "".join(f"[{p!r}]" for p in path)

    def _store(self, arr: np.ndarray, path, scalar: bool) -> dict:
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(
                f"{self._where(path)}: cannot store an array of dtype {arr.dtype} (it would need pickle, which "
                "numlstm checkpoints never use); expected a numeric, bool or string array"
            )
        base = self.prefix + ("/".join(str(p) for p in path) or "value")
        key, n = base, 1
        while key in self.arrays:
            key, n = f"{base}~{n}", n + 1
        self.arrays[key] = np.asarray(arr, order="C")  # ascontiguousarray would make 0-d 1-d
        return {"__ndarray__": key, "__scalar__": scalar}

    def encode(self, value, path=()):
        if isinstance(value, np.ndarray):
            return self._store(value, path, False)
        if isinstance(value, np.generic):
            return self._store(np.asarray(value), path, True)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not _is_tag(k) for k in value):
                return {k: self.encode(v, (*path, k)) for k, v in value.items()}
            items = []
            for k, v in value.items():
                if not (k is None or isinstance(k, (bool, int, float, str))):
                    raise TypeError(
                        f"{self._where(path)}: cannot store the key {k!r} ({type(k).__name__}); expected str or int keys"
                    )
                items.append([k, self.encode(v, (*path, k))])
            return {"__items__": items}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, (*path, i)) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, (*path, i)) for i, v in enumerate(value)]
        raise TypeError(
            f"{self._where(path)}: cannot store a {type(value).__name__}; expected arrays, numbers, strings, None, "
            "lists, tuples and dicts (convert it, e.g. a Generator's state: rng.bit_generator.state)"
        )


def _decode(node, arrays: dict[str, np.ndarray], prefix: str, used: set, where: str):
    if isinstance(node, list):
        return [_decode(v, arrays, prefix, used, where) for v in node]
    if not isinstance(node, dict):
        return node
    if "__ndarray__" in node:
        key = node["__ndarray__"]
        if set(node) != {"__ndarray__", "__scalar__"} or not isinstance(key, str) or not key.startswith(prefix):
            raise ValueError(f"{where}: malformed array reference {node!r}")
        if key not in arrays:
            raise ValueError(f"{where}: the header refers to an array {key!r} that the file does not contain")
        used.add(key)
        arr = arrays[key]
        if node["__scalar__"]:
            if arr.ndim != 0:
                raise ValueError(f"{where}: {key!r} should be a scalar, got shape {arr.shape}")
            return arr[()]
        return arr
    if "__tuple__" in node:
        if set(node) != {"__tuple__"} or not isinstance(node["__tuple__"], list):
            raise ValueError(f"{where}: malformed tuple {node!r}")
        return tuple(_decode(v, arrays, prefix, used, where) for v in node["__tuple__"])
    if "__items__" in node:
        items = node["__items__"]
        if (
            set(node) != {"__items__"}
            or not isinstance(items, list)
            or not all(isinstance(p, list) and len(p) == 2 for p in items)
        ):
            raise ValueError(f"{where}: malformed dict {node!r}")
        try:
            return {k: _decode(v, arrays, prefix, used, where) for k, v in items}
        except TypeError as exc:  # an unhashable key
            raise ValueError(f"{where}: malformed dict key: {exc}") from exc
    bad = [k for k in node if _is_tag(k)]
    if bad:
        raise ValueError(f"{where}: unknown tag {bad[0]!r}")
    return {k: _decode(v, arrays, prefix, used, where) for k, v in node.items()}


# -- writing ---------------------------------------------------------------------------------
def _fsync_folder(folder: str) -> None:
    """Make the rename durable; not every system can open a folder (Windows cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, arrays: dict[str, np.ndarray]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "checkpoint folder does not exist", folder)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "checkpoint path is a folder", path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for a plain open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def save(model: Layer, path, optimizer=None, extra=None):
    """Write a checkpoint of ``model`` (any registered layer or model) to ``path``, atomically.

    Parameters
    ----------
    model : Layer
        A ``Sequential``, a registered ``Model`` subclass or a single layer.
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` is appended); an existing file
        is replaced only once the new one is complete on disk.
    optimizer : optimizer, mapping or None
        An object with ``state_dict()`` (its class name is stored too), or a
        state dict itself. Values may be arrays (stored as ``optim/...``),
        numpy scalars, numbers, strings, None, lists, tuples and dicts.
    extra : JSON-able value or None
        Anything else to keep (epoch, history, ``rng.bit_generator.state``);
        the same kinds of values as the optimizer state, arrays included.

    Returns
    -------
    path : the path as given.

    Raises
    ------
    TypeError
        ``model`` is not a layer, or the optimizer state / ``extra`` holds a
        value that cannot be stored without pickle (nothing is written then).
    ValueError
        The model's class is not registered or its config is not JSON-able.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model: expected a numlstm layer or model, got {type(model).__name__}")
    fspath = os.fspath(path)
    if not isinstance(fspath, str):
        raise TypeError(f"path: expected a str or os.PathLike path, got {type(path).__name__}")
    spec = layer_to_config(model)
    arrays: dict[str, np.ndarray] = {}
    for name, value in model.state_dict().items():
        value = np.asarray(value)
        if value.dtype.kind not in "biufc":
            raise TypeError(f"model: parameter {name!r} has dtype {value.dtype}; expected a numeric array")
        arrays[_PARAM + name] = np.asarray(value, order="C")
    optim_header = None
    if optimizer is not None:
        if isinstance(optimizer, Mapping):
            state, cls = optimizer, None
        elif callable(getattr(optimizer, "state_dict", None)):
            state, cls = optimizer.state_dict(), type(optimizer).__name__
        else:
            raise TypeError(f"optimizer: expected an optimizer with state_dict() or a state dict, got {type(optimizer).__name__}")
        optim_header = {"class": cls, "state": _Encoder(_OPTIM, "optimizer state", arrays).encode(state)}
    from numlstm import __version__

    header = {
        "format": FORMAT,
        "version": VERSION,
        "numlstm_version": __version__,
        "model": spec,
        "optimizer": optim_header,
        "extra": _Encoder(_EXTRA, "extra", arrays).encode(extra),
    }
    text = json.dumps(header)
    arrays[HEADER_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _atomic_write(fspath, arrays)
    return path


# -- reading ---------------------------------------------------------------------------------
def _read_header(raw: np.ndarray, where: str) -> dict:
    if raw.dtype == np.uint8 and raw.ndim == 1:
        try:
            text = raw.tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}: the header is not UTF-8 text ({exc})") from exc
    elif raw.dtype.kind == "U" and raw.ndim == 0:
        text = str(raw[()])
    else:
        raise ValueError(f"{where}: the header is a {raw.dtype} array of shape {raw.shape}, expected UTF-8 bytes")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"{where}: not a numlstm checkpoint (header format {fmt!r}, expected {FORMAT!r})")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: invalid checkpoint version {version!r}")
    if version > VERSION:
        raise ValueError(
            f"{where}: checkpoint format version {version} was written by a newer numlstm "
            f"({header.get('numlstm_version', 'unknown')}); this numlstm reads versions up to {VERSION}: upgrade numlstm"
        )
    for key in ("model", "optimizer", "extra"):
        if key not in header:
            raise ValueError(f"{where}: the header lacks {key!r}")
    return header


def _read_arrays(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays of a checkpoint file, every failure a ValueError."""
    try:
        obj = np.load(path, allow_pickle=False)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except _READ_ERRORS as exc:
        if isinstance(exc, ValueError) and "pickled" in str(exc):
            raise ValueError(f"{path}: not a numlstm checkpoint: it holds pickled data, which numlstm never loads") from exc
        raise ValueError(f"{path}: not a readable numlstm checkpoint (an .npz file): {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a numlstm checkpoint: it holds a single .npy array, not an .npz archive")
    with obj:
        names = list(obj.files)
        if HEADER_KEY not in names:
            raise ValueError(
                f"{path}: not a numlstm checkpoint (an .npz without the {HEADER_KEY!r} entry; entries: {names[:10]})"
            )
        arrays = {}
        for name in [HEADER_KEY] + [n for n in names if n != HEADER_KEY]:
            if name != HEADER_KEY and not name.startswith((_PARAM, _OPTIM, _EXTRA)):
                raise ValueError(f"{path}: unexpected entry {name!r} (tampered, or not a numlstm checkpoint)")
            try:
                arrays[name] = obj[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise ValueError(
                        f"{path}: entry {name!r} is an object (pickled) array; numlstm checkpoints never contain one, "
                        "and it was not unpickled: refusing to load the file"
                    ) from exc
                raise ValueError(f"{path}: damaged checkpoint, entry {name!r}: {exc}") from exc
            except _READ_ERRORS as exc:
                raise ValueError(
                    f"{path}: damaged checkpoint (truncated or corrupt), entry {name!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if name == HEADER_KEY:
                # the version decides how to read the rest
                header = _read_header(arrays.pop(HEADER_KEY), path)
    return header, arrays


def load(path, with_optimizer_state: bool = False):
    """Rebuild a model from a checkpoint written by ``save``.

    Parameters
    ----------
    path : str or os.PathLike
    with_optimizer_state : bool, default False
        ``False``: return the model. ``True``: return a ``Checkpoint`` with
        the model, the optimizer state, the optimizer class name and ``extra``.

    Returns
    -------
    Layer or Checkpoint

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is truncated or garbage, a foreign ``.npz`` (no numlstm
        header), from a newer format version, tampered (arrays missing,
        unexpected or not matching the model's config) or holds pickled
        object arrays (never unpickled).
    """
    fspath = os.fspath(path)
    if not os.path.exists(fspath):
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file", fspath)
    header, arrays = _read_arrays(fspath)
    try:
        model = layer_from_config(header["model"])
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{fspath}: cannot rebuild the model from the checkpoint's config: {exc}") from exc
    # what the rebuilt model's state_dict holds: parameters and buffers (running statistics)
    expected = model.state_dict()
    stored = {k[len(_PARAM) :]: v for k, v in arrays.items() if k.startswith(_PARAM)}
    problems = []
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing:
        problems.append(f"missing parameters {missing}")
    if unexpected:
        problems.append(f"unexpected parameters {unexpected}")
    for k, p in expected.items():
        v = stored.get(k)
        if v is not None and (v.shape != p.shape or v.dtype != p.dtype):
            problems.append(f"parameter {k!r} is {v.dtype} {v.shape}, the config says {p.dtype} {p.shape}")
    if problems:
        raise ValueError(f"{fspath}: the arrays do not match the model config (tampered or corrupt): {'; '.join(problems)}")
    model.load_state_dict({k: stored[k] for k in expected})

    used: set[str] = set()
    optimizer_state = optimizer_class = None
    opt = header["optimizer"]
    if opt is not None:
        if not isinstance(opt, dict) or set(opt) != {"class", "state"}:
            raise ValueError(f"{fspath}: malformed optimizer entry in the header")
        optimizer_class = opt["class"]
        optimizer_state = _decode(opt["state"], arrays, _OPTIM, used, f"{fspath}: optimizer state")
    extra = _decode(header["extra"], arrays, _EXTRA, used, f"{fspath}: extra")
    stray = [k for k in arrays if not k.startswith(_PARAM) and k not in used]
    if stray:
        raise ValueError(f"{fspath}: arrays {stray} are not referenced by the header (tampered or corrupt)")
    if not with_optimizer_state:
        return model
    return Checkpoint(model=model, optimizer_state=optimizer_state, extra=extra, optimizer_class=optimizer_class)
