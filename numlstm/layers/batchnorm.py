"""Batch normalisation over the channels of images (PyTorch ``nn.BatchNorm2d``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from numlstm import backend
from numlstm._validation import as_array, check_array, check_bool, check_dtype, check_float, check_int
from numlstm.layers.base import Layer


class BatchNorm2D(Layer):
    r"""Per-channel normalisation of ``(N, C, H, W)`` images.

    Training mode uses the statistics of the batch, over ``M = N*H*W``
    values per channel, and updates the running estimates::

        mean = sum x / M       var = sum (x - mean)^2 / M      (biased, for y)
        xhat = (x - mean) / sqrt(var + eps)          y = weight * xhat + bias
        running_mean <- (1 - momentum) running_mean + momentum mean
        running_var  <- (1 - momentum) running_var  + momentum var * M / (M - 1)   (unbiased)

    Evaluation mode uses ``running_mean`` / ``running_var`` instead (then the
    layer is a per-channel affine map). ``backward`` is exact for both::

        train   dx = inv / M (M g - sum g - xhat sum(g xhat)),  g = dy * weight, inv = 1/sqrt(var+eps)
        eval    dx = dy * weight * inv
        dweight += sum dy * xhat        dbias += sum dy

    Parameters
    ----------
    num_features : int, the number of channels C
    eps : float > 0, default 1e-5
    momentum : float in [0, 1], default 0.1
    affine : bool, default True: learn ``weight`` (starts at 1) and ``bias`` (starts at 0)
    dtype : np.float32 or np.float64
    seed : int or None (accepted for a uniform constructor; the init is deterministic)

    Attributes
    ----------
    params, grads : ``weight`` (C,) and ``bias`` (C,) with ``affine``, else empty.
    buffers : ``running_mean`` (C,) starting at 0 and ``running_var`` (C,)
        starting at 1; saved by ``state_dict()`` and read by
        ``load_state_dict()`` under those names, as in PyTorch.
    """

    cuda_support = True

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.num_features = check_int(num_features, "num_features", 1)
        self.eps = check_float(eps, "eps", 0.0)
        if self.eps == 0.0:
            raise ValueError("eps: expected a positive number, got 0.0")
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0)
        self.affine = check_bool(affine, "affine")
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        C = self.num_features
        if self.affine:
            self.params["weight"] = np.ones(C, self.dtype)
            self.params["bias"] = np.zeros(C, self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(C, self.dtype), "running_var": np.ones(C, self.dtype)}
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"BatchNorm2D({self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"dtype={self.dtype.name})"
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def compute_output_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        if len(s) != 4 or s[1] not in (None, self.num_features):
            raise ValueError(f"input_shape: expected (batch, {self.num_features}, height, width), got {s}")
        return s

    # -- persistence: parameters and running statistics -------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and of ``running_mean`` / ``running_var``."""
        out = super().state_dict()
        out.update({k: backend.to_numpy(v).copy() for k, v in self.buffers.items()})
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy parameters and running statistics in (PyTorch's ``num_batches_tracked`` is accepted and ignored).

        Raises
        ------
        ValueError
            Missing or unexpected keys (with ``strict``), mis-shaped arrays.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        known = {**self.params, **self.buffers}
        missing = [k for k in known if k not in state_dict]
        unexpected = [k for k in state_dict if k not in known and k != "num_batches_tracked"]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for k, p in known.items():
            if k in state_dict:
                v = backend.to_numpy(state_dict[k])
                if v.shape != p.shape:
                    raise ValueError(f"state_dict[{k!r}]: expected shape {p.shape}, got {v.shape}")
                if not np.issubdtype(v.dtype, np.number):
                    raise TypeError(f"state_dict[{k!r}]: expected a numeric array, got dtype {v.dtype}")
        for k, p in known.items():
            if k in state_dict:
                if self.device == "cpu":
                    p[...] = np.asarray(state_dict[k])
                else:
                    p.copy_to_device(np.ascontiguousarray(backend.to_numpy(state_dict[k]), dtype=p.dtype))

    # -- forward / backward -------------------------------------------------------------------------
    def _use_batch_stats(self) -> bool:
        """Batch statistics in training mode, running statistics in evaluation mode."""
        return self.training

    def forward(self, x) -> np.ndarray:
        """Normalise ``x`` (N, C, H, W); returns ``y`` of the same shape."""
        if self.device != "cpu":
            return self._forward_cuda(x)
        x_in = as_array(x, "x")
        x = check_array(x_in, "x", (None, self.num_features, None, None), self.dtype, ("batch", "channels", "height", "width"))
        M = x.shape[0] * x.shape[2] * x.shape[3]
        batch_stats = self._use_batch_stats()
        if batch_stats:
            if M < 2:
                raise ValueError(
                    f"x: batch statistics need more than 1 value per channel (batch*height*width > 1), got shape {x.shape}"
                )
            mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
            var = ((x - mean.astype(self.dtype)[None, :, None, None]) ** 2).mean(axis=(0, 2, 3), dtype=np.float64)
            m = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm[...] = (1 - m) * rm + m * mean
            rv[...] = (1 - m) * rv + m * var * (M / (M - 1))
        else:
            mean = self.buffers["running_mean"].astype(np.float64)
            var = self.buffers["running_var"].astype(np.float64)
        inv = (1.0 / np.sqrt(var + self.eps)).astype(self.dtype)
        xhat = (x - mean.astype(self.dtype)[None, :, None, None]) * inv[None, :, None, None]
        if self.affine:
            y = xhat * self.params["weight"][None, :, None, None] + self.params["bias"][None, :, None, None]
        else:
            y = xhat.copy() if np.may_share_memory(xhat, x_in) else xhat
        self._cache = (xhat, inv, batch_stats, x.shape) if self.training else None
        return y

    def backward(self, dy) -> np.ndarray:
        """Accumulate ``dweight``, ``dbias``; return ``dx`` (N, C, H, W)."""
        if self.device != "cpu":
            return self._backward_cuda(dy)
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        xhat, inv, batch_stats, shape = self._cache
        dy = check_array(dy, "dy", shape, self.dtype)
        self._cache = None
        axes = (0, 2, 3)
        if self.affine:
            self.grads["weight"] += (dy * xhat).sum(axis=axes)
            self.grads["bias"] += dy.sum(axis=axes)
            g = dy * self.params["weight"][None, :, None, None]
        else:
            g = dy
        inv4 = inv[None, :, None, None]
        if not batch_stats:
            return g * inv4
        g_mean = g.mean(axis=axes)[None, :, None, None]
        gx_mean = (g * xhat).mean(axis=axes)[None, :, None, None]
        return inv4 * (g - g_mean - xhat * gx_mean)

    # -- the GPU path (numlstm.kernels.cuda.batchnorm) ----------------------------------------------
    def _forward_cuda(self, x):
        k = backend.cuda_kernels().batchnorm
        names = ("batch", "channels", "height", "width")
        x = backend.device_input(x, "x", (None, self.num_features, None, None), self.dtype, names)
        C = self.num_features
        M = x.shape[0] * x.shape[2] * x.shape[3]
        batch_stats = self._use_batch_stats()
        if batch_stats and M < 2:
            raise ValueError(
                f"x: batch statistics need more than 1 value per channel (batch*height*width > 1), got shape {x.shape}"
            )
        mean_t = backend.empty(C, self.dtype, "cuda")
        inv = backend.empty(C, self.dtype, "cuda")
        scratch = backend.empty((2, C), np.float64, "cuda")
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        k.batchnorm_stats(x, self.eps, self.momentum, batch_stats, rm, rv, mean_t, inv, scratch)
        xhat = backend.empty(x.shape, self.dtype, "cuda")
        y = backend.empty(x.shape, self.dtype, "cuda")
        w = self.params["weight"] if self.affine else inv
        b = self.params["bias"] if self.affine else inv
        k.batchnorm_apply(x, mean_t, inv, w, b, self.affine, xhat, y)
        self._cache = (xhat, inv, batch_stats, x.shape) if self.training else None
        return y

    def _backward_cuda(self, dy):
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        xhat, inv, batch_stats, shape = self._cache
        dy = backend.device_input(dy, "dy", shape, self.dtype)
        self._cache = None
        k = backend.cuda_kernels().batchnorm
        sums = backend.empty((2, self.num_features), np.float64, "cuda")
        dx = backend.empty(shape, self.dtype, "cuda")
        if self.affine:
            w, dw, db = self.params["weight"], self.grads["weight"], self.grads["bias"]
        else:
            w = dw = db = inv
        k.batchnorm_backward(dy, xhat, inv, w, self.affine, batch_stats, sums, dw, db, dx)
        return dx
