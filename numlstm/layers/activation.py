"""Parameter-free layers: activations, ``Flatten``, ``Dropout`` and ``LastStep``.

None of them has a ``dtype`` argument: each takes float32 or float64 input and
answers in the same dtype (``layer.dtype`` reports the dtype of the last
input, ``None`` before the first call). Their ``backward`` is exact.
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import FLOAT_DTYPES, as_array, check_array, check_float, check_int
from numlstm.layers.base import Layer


def _float_input(x, name: str, min_ndim: int, axes: str) -> np.ndarray:
    """A non-empty float32/float64 array with at least ``min_ndim`` axes, C-contiguous."""
    x = as_array(x, name)
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: expected an array of at least {min_ndim} dimensions {axes}, got shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        hint = f": use {name}.astype(np.float32)" if x.dtype.kind in "iub" or x.dtype == np.float16 else ""
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}{hint}")
    for axis, n in enumerate(x.shape):
        if n == 0:
            raise ValueError(f"{name}: expected non-empty axes {axes}, got shape {x.shape} (axis {axis} is empty)")
    return np.ascontiguousarray(x)


class _Stateless(Layer):
    """Shared forward/backward plumbing of the parameter-free layers.

    Subclasses implement ``_forward(x) -> (y, saved)`` and
    ``_backward(dy, saved, x_shape) -> dx``; the base validates, keeps the
    cache in training mode only and checks ``dy`` against the last output.
    """

    cuda_support = True
    #: minimal rank of the input and the name of its axes, for messages
    _min_ndim = 1
    _axes = "(batch, ...)"

    def __init__(self) -> None:
        super().__init__()
        self._cache = None
        self._dtype: np.dtype | None = None

    @property
    def dtype(self) -> np.dtype | None:
        """dtype of the last input (``None`` before the first ``forward``)."""
        return self._dtype

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for an input of shape ``input_shape`` (``None`` entries: unknown sizes)."""
        input_shape = tuple(input_shape)
        if len(input_shape) < self._min_ndim:
            raise ValueError(f"input_shape: expected at least {self._min_ndim} dimensions {self._axes}, got {input_shape}")
        return input_shape

    def forward(self, x) -> np.ndarray:
        """Apply the layer to ``x`` (float32 or float64); the output has the same dtype."""
        if self.device != "cpu":
            x = _device_input(x, "x", self._min_ndim, self._axes)
            y, saved = self._forward_cuda(x)
        else:
            x = _float_input(x, "x", self._min_ndim, self._axes)
            y, saved = self._forward(x)
        self._dtype = x.dtype
        self._cache = (saved, x.shape, y.shape) if self.training else None
        return y

    def backward(self, dy) -> np.ndarray:
        """Return ``dx`` for ``dy`` shaped like the last output."""
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        saved, x_shape, y_shape = self._cache
        if self.device != "cpu":
            dy = backend.device_input(dy, "dy", y_shape, self._dtype)
            self._cache = None
            return self._backward_cuda(dy, saved, x_shape)
        dy = check_array(dy, "dy", y_shape, self._dtype)
        self._cache = None
        return self._backward(dy, saved, x_shape)

    def _forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, dy, saved, x_shape):  # pragma: no cover - abstract
        raise NotImplementedError

    # the CUDA path: the same contract on device arrays (numlstm.kernels.cuda.activations)
    def _forward_cuda(self, x):  # pragma: no cover - abstract
        raise backend.no_cuda_path(self, "forward")

    def _backward_cuda(self, dy, saved, x_shape):  # pragma: no cover - abstract
        raise backend.no_cuda_path(self, "backward")


def _device_input(x, name: str, min_ndim: int, axes: str):
    """``_float_input`` for the CUDA path: a host array is checked and copied
    once; a device array is checked (float, rank, non-empty, C-contiguous)."""
    if not backend.is_device_array(x):
        return backend.to_device(_float_input(x, name, min_ndim, axes), "cuda")
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: expected an array of at least {min_ndim} dimensions {axes}, got shape {x.shape}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    for axis, n in enumerate(x.shape):
        if n == 0:
            raise ValueError(f"{name}: expected non-empty axes {axes}, got shape {x.shape} (axis {axis} is empty)")
    if not x.is_c_contiguous():
        raise ValueError(f"{name}: expected a C-contiguous device array, got a strided view; copy it first")
    return x


def _act(x, kind):
    ka = backend.cuda_kernels().activations
    y = backend.empty(x.shape, x.dtype, "cuda")
    ka.activation_forward(x, y, kind)
    return y


def _act_backward(saved, dy, kind):
    ka = backend.cuda_kernels().activations
    dx = backend.empty(dy.shape, dy.dtype, "cuda")
    ka.activation_backward(saved, dy, dx, kind)
    return dx


def _device_copy(a, shape):
    out = backend.empty(shape, a.dtype, "cuda")
    backend.cuda_kernels().elementwise.copy(a.reshape(shape), out)
    return out


class ReLU(_Stateless):
    """``y = max(x, 0)`` elementwise; any shape. The derivative at 0 is taken as 0 (as PyTorch)."""

    def _forward(self, x):
        return np.maximum(x, x.dtype.type(0)), x > 0  # np.maximum keeps NaN

    def _backward(self, dy, mask, x_shape):
        return np.where(mask, dy, dy.dtype.type(0))

    def _forward_cuda(self, x):
        y = _act(x, 0)
        return y, y  # y > 0 exactly where x > 0: the layer's own array, not the caller's

    def _backward_cuda(self, dy, y, x_shape):
        return _act_backward(y, dy, 0)


class Tanh(_Stateless):
    """``y = tanh(x)`` elementwise; any shape. ``dx = dy * (1 - y^2)``."""

    def _forward(self, x):
        y = np.tanh(x)
        return y, y

    def _backward(self, dy, y, x_shape):
        return dy * (1 - y * y)

    def _forward_cuda(self, x):
        y = _act(x, 1)
        return y, y

    def _backward_cuda(self, dy, y, x_shape):
        return _act_backward(y, dy, 1)


class Sigmoid(_Stateless):
    """``y = 1 / (1 + exp(-x))`` elementwise (overflow-free form); any shape. ``dx = dy * y * (1 - y)``."""

    def _forward(self, x):
        z = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        y = np.where(x >= 0, 1 / (1 + z), z / (1 + z))
        return y, y

    def _backward(self, dy, y, x_shape):
        return dy * y * (1 - y)

    def _forward_cuda(self, x):
        y = _act(x, 2)
        return y, y

    def _backward_cuda(self, dy, y, x_shape):
        return _act_backward(y, dy, 2)


class Flatten(_Stateless):
    """Merge the axes from ``start_dim`` on into one (PyTorch ``nn.Flatten``).

    ``(B, C, H, W) -> (B, C*H*W)`` with the default ``start_dim=1``;
    ``Flatten(2)`` turns ``(B, T, C, H, W)`` into ``(B, T, C*H*W)``.

    Parameters
    ----------
    start_dim : int >= 0, default 1
        First axis to merge; the input needs more than ``start_dim`` axes.
    """

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim", 0)
        self._min_ndim = self.start_dim + 1
        self._axes = f"(start_dim={self.start_dim} must be an axis of x)"

    def config(self) -> dict:
        return {"start_dim": self.start_dim}

    def compute_output_shape(self, input_shape) -> tuple:
        s = super().compute_output_shape(input_shape)
        rest = s[self.start_dim :]
        n = None if any(v is None for v in rest) else int(np.prod(rest, dtype=np.int64))
        return s[: self.start_dim] + (n,)

    def _forward(self, x):
        return x.reshape(x.shape[: self.start_dim] + (-1,)).copy(), None

    def _backward(self, dy, saved, x_shape):
        return dy.reshape(x_shape).copy()

    def _forward_cuda(self, x):
        n = int(np.prod(x.shape[self.start_dim :], dtype=np.int64))
        return _device_copy(x, tuple(x.shape[: self.start_dim]) + (n,)), None

    def _backward_cuda(self, dy, saved, x_shape):
        return _device_copy(dy, x_shape)


class Dropout(_Stateless):
    """Inverted dropout: in training mode each element is zeroed with
    probability ``p`` and the survivors are scaled by ``1 / (1 - p)``; in
    evaluation mode the layer is the identity. Any shape.

    Parameters
    ----------
    p : float in [0, 1)
        Probability of zeroing an element.
    seed : int or None
        Seeds the layer's own ``numpy.random.Generator``; same seed, same
        sequence of masks.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0, high_open=True)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def dropout(self) -> float:
        """The drop probability ``p`` (the name ``numlstm.gradcheck`` looks for)."""
        return self.p

    def config(self) -> dict:
        return {"p": self.p, "seed": self.seed}

    def _forward(self, x):
        if not self.training or self.p == 0.0:
            return x.copy(), None
        keep = 1.0 - self.p
        mask = (self._rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
        return x * mask, mask

    def _backward(self, dy, mask, x_shape):
        return dy.copy() if mask is None else dy * mask

    def _forward_cuda(self, x):
        if not self.training or self.p == 0.0:
            return _device_copy(x, x.shape), None
        dt = np.dtype(x.dtype)
        keep = 1.0 - self.p
        # drawn on the host from the layer's generator, as on the CPU: same seed, same masks
        mask = backend.to_device((self._rng.random(x.shape) < keep).astype(dt) / dt.type(keep), "cuda")
        y = backend.empty(x.shape, dt, "cuda")
        backend.cuda_kernels().elementwise.multiply(x, mask, y)
        return y, mask

    def _backward_cuda(self, dy, mask, x_shape):
        if mask is None:
            return _device_copy(dy, dy.shape)
        dx = backend.empty(dy.shape, dy.dtype, "cuda")
        backend.cuda_kernels().elementwise.multiply(dy, mask, dx)
        return dx


class LastStep(_Stateless):
    """The last time step of a sequence: ``(B, T, F) -> (B, F)``.

    Any trailing shape works, so an image sequence ``(B, T, C, H, W)`` gives
    ``(B, C, H, W)``. The backward pass puts ``dy`` into step ``T - 1`` and
    zeros everywhere else.
    """

    _min_ndim = 3
    _axes = "(batch, time, features...)"

    def compute_output_shape(self, input_shape) -> tuple:
        s = super().compute_output_shape(input_shape)
        return s[:1] + s[2:]

    def _forward(self, x):
        return x[:, -1].copy(), None

    def _backward(self, dy, saved, x_shape):
        dx = np.zeros(x_shape, dy.dtype)
        dx[:, -1] = dy
        return dx

    def _forward_cuda(self, x):
        B, T = x.shape[0], x.shape[1]
        F = int(np.prod(x.shape[2:], dtype=np.int64))
        y = backend.empty((B,) + tuple(x.shape[2:]), x.dtype, "cuda")
        backend.cuda_kernels().elementwise.copy_cols(x.reshape(B, T * F), (T - 1) * F, y.reshape(B, F), 0, F)
        return y, None

    def _backward_cuda(self, dy, saved, x_shape):
        B, T = x_shape[0], x_shape[1]
        F = int(np.prod(x_shape[2:], dtype=np.int64))
        dx = backend.zeros(x_shape, dy.dtype, "cuda")
        backend.cuda_kernels().elementwise.copy_cols(dy.reshape(B, F), 0, dx.reshape(B, T * F), (T - 1) * F, F)
        return dx
