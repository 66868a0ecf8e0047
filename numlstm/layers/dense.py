"""The fully connected layer (PyTorch ``nn.Linear``, Keras ``Dense``)."""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import as_array, check_array, check_bool, check_dtype, check_int
from numlstm.kernels.cpu.linalg import matmul_into, matmul_tn_add
from numlstm.layers.base import Layer


def _leading_shape(x, name: str, last: int) -> tuple:
    """The expected shape ``(?, ..., last)`` for ``check_array``, with the rank of ``x``."""
    ndim = as_array(x, name).ndim
    if ndim == 0:
        raise ValueError(f"{name}: expected an array of shape (..., {last}), got a 0-d array (a scalar)")
    return (None,) * (ndim - 1) + (last,)


class Dense(Layer):
    r"""Fully connected layer over the last axis: ``y = x W^T + b``.

    Any leading shape is kept: ``(B, in_features) -> (B, out_features)``,
    ``(B, T, in_features) -> (B, T, out_features)`` (the same weights at every
    time step), and so on. Both products of the backward pass and the forward
    product run through the CPU kernels on ``x`` reshaped to rows
    ``(N, in_features)`` with ``N`` the product of the leading sizes::

        forward    y  = x W^T + b                 (N, out)
        backward   dx = dy W                      (N, in)
                   dW += dy^T x                   (out, in)   one product over all rows
                   db += sum over rows of dy      (out,)

    Parameters
    ----------
    in_features : int
        Size of the last input axis.
    out_features : int
        Size of the last output axis.
    bias : bool, default True
        Add the learned ``bias``.
    dtype : np.float32 or np.float64
    seed : int or None
        Seeds the initial weights; same seed, same weights.

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight`` (out_features, in_features) and, with ``bias``, ``bias``
        (out_features,): exactly PyTorch's ``nn.Linear`` names and shapes.
        Both start uniform in +-1/sqrt(in_features), as in PyTorch.
    """

    cuda_support = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.bias = check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        self.params["weight"] = rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype)
        if self.bias:
            self.params["bias"] = rng.uniform(-bound, bound, (self.out_features,)).astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, bias={self.bias}, dtype={self.dtype.name})"

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for an input of shape ``input_shape`` (``None`` entries: unknown sizes)."""
        input_shape = tuple(input_shape)
        if len(input_shape) == 0 or input_shape[-1] not in (None, self.in_features):
            raise ValueError(f"input_shape: expected (..., {self.in_features}) (..., in_features), got {input_shape}")
        return input_shape[:-1] + (self.out_features,)

    def forward(self, x) -> np.ndarray:
        """Apply the layer.

        Parameters
        ----------
        x : ndarray (..., in_features)

        Returns
        -------
        y : ndarray (..., out_features)
        """
        if self.device != "cpu":
            return self._forward_cuda(x)
        shape = _leading_shape(x, "x", self.in_features)
        names = ("...",) * (len(shape) - 1) + ("in_features",)
        x_in = x
        x = check_array(x, "x", shape, self.dtype, names)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # x2: (N, I)
        y2 = np.empty((x2.shape[0], self.out_features), self.dtype)  # y2: (N, O)
        matmul_into(x2, np.ascontiguousarray(self.params["weight"].T), y2)
        if self.bias:
            y2 += self.params["bias"]
        if self.training:
            # backward reads x: keep a private copy, not the caller's array
            self._cache = (x2.copy() if np.may_share_memory(x2, x_in) else x2, lead)
        else:
            self._cache = None
        return y2.reshape(*lead, self.out_features)

    def backward(self, dy) -> np.ndarray:
        """Accumulate ``dW``, ``db`` into ``grads``; return ``dx``.

        Parameters
        ----------
        dy : ndarray (..., out_features), the shape of the last output

        Returns
        -------
        dx : ndarray (..., in_features), the shape of the last input
        """
        if self.device != "cpu":
            return self._backward_cuda(dy)
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        x2, lead = self._cache
        dy = check_array(dy, "dy", lead + (self.out_features,), self.dtype)
        self._cache = None
        dy2 = dy.reshape(-1, self.out_features)  # dy2: (N, O)
        dx2 = np.empty((dy2.shape[0], self.in_features), self.dtype)  # dx2: (N, I)
        matmul_into(dy2, np.ascontiguousarray(self.params["weight"]), dx2)
        matmul_tn_add(dy2, x2, self.grads["weight"])
        if self.bias:
            self.grads["bias"] += dy2.sum(axis=0)
        return dx2.reshape(*lead, self.in_features)

    # -- the CUDA path (numlstm.kernels.cuda.dense; see docs/gpu.md) ---------------------------------
    def _forward_cuda(self, x):
        kd = backend.cuda_kernels().dense
        given = backend.is_device_array(x)
        if given:
            if x.ndim == 0:
                raise ValueError(f"x: expected an array of shape (..., {self.in_features}), got a 0-d array (a scalar)")
            shape = (None,) * (x.ndim - 1) + (self.in_features,)
        else:
            shape = _leading_shape(x, "x", self.in_features)
        names = ("...",) * (len(shape) - 1) + ("in_features",)
        x = backend.device_input(x, "x", shape, self.dtype, names)
        lead = tuple(x.shape[:-1])
        N = int(np.prod(lead, dtype=np.int64))
        x2 = x.reshape(N, self.in_features)  # x2: (N, I)
        y2 = backend.empty((N, self.out_features), self.dtype, "cuda")  # y2: (N, O)
        kd.dense_forward(x2, self.params["weight"], self.params.get("bias"), y2)
        if self.training:
            if given:  # backward reads x: keep a private copy, not the caller's array
                own = backend.empty(x2.shape, self.dtype, "cuda")
                backend.cuda_kernels().elementwise.copy(x2, own)
                x2 = own
            self._cache = (x2, lead)
        else:
            self._cache = None
        return y2.reshape(*lead, self.out_features)

    def _backward_cuda(self, dy):
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        x2, lead = self._cache
        dy = backend.device_input(dy, "dy", lead + (self.out_features,), self.dtype)
        self._cache = None
        dy2 = dy.reshape(x2.shape[0], self.out_features)  # dy2: (N, O)
        dx2 = backend.empty((x2.shape[0], self.in_features), self.dtype, "cuda")  # dx2: (N, I)
        backend.cuda_kernels().dense.dense_backward(
            x2, self.params["weight"], dy2, dx2, self.grads["weight"], self.grads.get("bias")
        )
        return dx2.reshape(*lead, self.in_features)
