"""Device placement: which device an array lives on, and moving arrays between devices.

Two devices: ``"cpu"`` (numpy arrays, the ``@njit`` kernels) and ``"cuda"``
(Numba device arrays, the ``@cuda.jit`` kernels of ``numlstm.kernels.cuda``).
``import numlstm`` never imports ``numba.cuda``: this module imports it
lazily, on the first call that needs it, so a machine without numba-cuda or
without a driver imports and runs the CPU path unchanged.

On Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is
imported) ``"cuda"`` is available and every kernel runs in Python threads:
the tests use it to check the CUDA kernels on machines without a GPU.

>>> import numpy as np
>>> from numlstm.backend import check_device, device_of, to_numpy
>>> check_device("CPU")
'cpu'
>>> device_of(np.zeros(3))
'cpu'
>>> to_numpy(np.ones(2)).tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

__all__ = [
    "DEVICES",
    "check_device",
    "cuda_available",
    "check_device_array",
    "check_input",
    "cuda_kernels",
    "device_input",
    "device_of",
    "driver",
    "empty",
    "is_device_array",
    "no_cuda_path",
    "require_cuda",
    "to_device",
    "to_numpy",
    "zeros",
]

#: the device names ``check_device`` accepts (lower case)
DEVICES = ("cpu", "cuda")

_INSTALL_HINT = 'install numba-cuda (pip install -e ".[cuda]") and an NVIDIA driver, or set NUMBA_ENABLE_CUDASIM=1 to simulate'


def _cuda() -> ModuleType | None:
    """``numba.cuda`` or None when numba-cuda is not installed (imported on first use)."""
    try:
        from numba import cuda
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return cuda


def cuda_available() -> bool:
    """True when the ``"cuda"`` device can be used: numba-cuda is installed and
    a driver with a GPU is found, or the CUDA simulator is enabled.

    Never raises; the first call imports ``numba.cuda``.
    """
    cuda = _cuda()
    if cuda is None:  # pragma: no cover - depends on the installation
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - a broken driver reads as "no GPU"
        return False


def require_cuda(what: str = "device") -> None:
    """Raise a clear RuntimeError when the ``"cuda"`` device is not available.

    Parameters
    ----------
    what : str
        The argument or call that asked for it, named in the message.
    """
    if not cuda_available():
        raise RuntimeError(f"{what}: 'cuda' was asked for but no CUDA device is available; {_INSTALL_HINT}")


def check_device(device, name: str = "device") -> str:
    """The canonical device name, ``"cpu"`` or ``"cuda"``.

    Accepts any case and ``"cuda:0"`` (the only GPU used). Raises TypeError
    for a non-string, ValueError for an unknown name and RuntimeError when
    ``"cuda"`` is asked for and not available.
    """
    if not isinstance(device, str):
        raise TypeError(f"{name}: expected 'cpu' or 'cuda', got {type(device).__name__} {device!r}")
    d = device.strip().lower()
    if d == "cuda:0":
        d = "cuda"
    if d not in DEVICES:
        raise ValueError(f"{name}: expected 'cpu' or 'cuda', got {device!r}")
    if d == "cuda":
        require_cuda(name)
    return d


def is_device_array(a) -> bool:
    """True for a Numba CUDA device array (real or simulated); never imports ``numba.cuda``."""
    if isinstance(a, np.ndarray):
        return False
    # real device arrays carry __cuda_array_interface__; the simulator's FakeCUDAArray does not
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")


def device_of(a) -> str:
    """``"cuda"`` for a device array, ``"cpu"`` for anything else."""
    return "cuda" if is_device_array(a) else "cpu"


def to_numpy(a) -> np.ndarray:
    """A host numpy array with the values of ``a`` (a copy for a device array,
    ``np.asarray(a)`` otherwise); tuples and lists of arrays are converted
    element by element."""
    if isinstance(a, (tuple, list)):
        return type(a)(to_numpy(v) for v in a)
    if is_device_array(a):
        return a.copy_to_host()
    return np.asarray(a)


def to_device(a, device: str):
    """``a`` on ``device``: a device array for ``"cuda"`` (copied once from the
    host, returned as is when already there), a numpy array for ``"cpu"``.
    ``None`` stays None; tuples/lists are converted element by element."""
    if a is None:
        return None
    if isinstance(a, (tuple, list)):
        return type(a)(to_device(v, device) for v in a)
    if device == "cpu":
        return to_numpy(a)
    if device != "cuda":
        check_device(device)
    if is_device_array(a):
        return a
    require_cuda("to_device")
    return _cuda().to_device(np.ascontiguousarray(a))


def empty(shape, dtype, device: str = "cpu"):
    """An uninitialised array on ``device``."""
    if device == "cpu":
        return np.empty(shape, dtype)
    return _cuda().device_array(shape, dtype)


def zeros(shape, dtype, device: str = "cpu"):
    """An array of zeros on ``device`` (filled by a kernel on the GPU: no host copy)."""
    if device == "cpu":
        return np.zeros(shape, dtype)
    out = _cuda().device_array(shape, dtype)
    if out.size:
        cuda_kernels().elementwise.fill(out, 0.0)
    return out


def check_device_array(x, name: str, shape, dtype: np.dtype, names=None):
    """``numlstm._validation.check_array`` for a device array: rank, dtype and
    sizes (``None`` entries accept any size >= 1), with the same messages;
    the array must be C-contiguous (a device copy would hide a cost)."""
    axes = f" ({', '.join(str(n) for n in names)})" if names is not None else ""
    want = "(" + ", ".join("?" if v is None else str(v) for v in shape) + ("," if len(shape) == 1 else "") + ")"
    if x.ndim != len(shape):
        raise ValueError(f"{name}: expected a {len(shape)}-d array{axes} of shape {want}, got shape {tuple(x.shape)}")
    if np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name}, got {x.dtype}")
    for axis, (got, exp) in enumerate(zip(x.shape, shape, strict=True)):
        if (exp is None and got < 1) or (exp is not None and got != exp):
            raise ValueError(f"{name}: expected shape {want}{axes}, got {tuple(x.shape)} (axis {axis})")
    if not x.is_c_contiguous():
        raise ValueError(f"{name}: expected a C-contiguous device array, got a strided view; copy it first")
    return x


def device_input(x, name: str, shape, dtype: np.dtype, names=None):
    """Validate a host or device input and return it as a C-contiguous device
    array: a host array is checked by ``check_array`` and copied once."""
    if is_device_array(x):
        return check_device_array(x, name, shape, dtype, names)
    from numlstm._validation import check_array

    return to_device(check_array(x, name, shape, dtype, names), "cuda")


def check_input(x, name: str, shape, dtype: np.dtype, names=None, device: str = "cpu", copy: bool = False):
    """A layer's input validated for ``device``, with the messages of ``check_array``.

    ``"cpu"``: ``check_array`` (a C-contiguous numpy array); ``"cuda"``:
    ``device_input`` (a host array checked and copied to the device once, a
    device array checked). With ``copy`` the result is never the caller's
    buffer (a device input, or a host array returned as is, is copied), so
    that a forward cache does not alias an array the caller may overwrite.
    """
    if device == "cpu":
        from numlstm._validation import check_array

        out = check_array(x, name, shape, dtype, names)
        if copy and np.may_share_memory(out, x):
            out = out.copy()
        return out
    was_device = is_device_array(x)
    out = device_input(x, name, shape, dtype, names)
    if copy and was_device:
        fresh = empty(out.shape, out.dtype, "cuda")
        fresh.copy_to_device(out)
        return fresh
    return out


def cuda_kernels() -> ModuleType:
    """The ``numlstm.kernels.cuda`` package (imported on first use, after
    checking that CUDA is available); its submodules are attributes, e.g.
    ``cuda_kernels().lstm``."""
    require_cuda("numlstm.kernels.cuda")
    return importlib.import_module("numlstm.kernels.cuda")


def no_cuda_path(obj, method: str = "forward") -> NotImplementedError:
    """The error a layer raises when it is called on the GPU and has no CUDA path (yet).

    >>> raise no_cuda_path(layer, "forward")  # doctest: +SKIP
    """
    name = type(obj).__name__
    return NotImplementedError(
        f"{name}.{method}: this layer has no CUDA path; move it to the CPU with .to('cpu') "
        f"(and its input with numlstm.to_numpy) to run it there"
    )


#: the operations with one driver module per backend (``driver``)
DRIVERS = ("lstm", "conv", "convlstm", "attention")


def driver(op: str, device: str = "cpu") -> ModuleType:
    """The driver module of operation ``op`` for ``device``.

    ``numlstm.kernels.cpu.<op>`` or ``numlstm.kernels.cuda.<op>`` (the latter
    imported on first use, after checking that CUDA is available). The two
    modules of one operation have the same entry points with the same
    arguments, so a layer picks its backend once and calls ``driver(op,
    self.device).<entry point>(...)`` with no branch on the device.
    """
    if op not in DRIVERS:
        raise ValueError(f"op: expected one of {list(DRIVERS)}, got {op!r}")
    if check_device(device) == "cuda":
        require_cuda(f"numlstm.kernels.cuda.{op}")
    return importlib.import_module(f"numlstm.kernels.{device}.{op}")
