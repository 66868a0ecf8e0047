"""Apply a per-frame layer to every time step of a sequence (Keras ``TimeDistributed``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from numlstm import backend
from numlstm._validation import as_array
from numlstm.layers.base import Layer
from numlstm.layers.registry import layer_from_config, layer_to_config


class TimeDistributed(Layer):
    """``(B, T, ...) -> (B, T, ...')``: the inner layer applied to all frames at once.

    Time is folded into the batch, ``(B, T, *rest) -> (B*T, *rest)``, the inner
    layer runs once on all ``B*T`` frames (one big convolution instead of ``T``
    small ones), and the output is unfolded back to ``(B, T, *rest')``. The
    same weights serve every step; the gradient sums over them.

    Parameters
    ----------
    layer : Layer
        A non-recurrent layer taking ``(batch, *rest)``, e.g. ``Conv2D``,
        ``MaxPool2D`` or a ``Sequential`` CNN.

    Attributes
    ----------
    params, grads : the inner layer's own dicts (the same arrays).
    buffers : the inner layer's buffers (the same arrays), ``{}`` when it has none.
    """

    def __init__(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a numlstm layer, got {type(layer).__name__}")
        if layer.recurrent:
            raise ValueError(f"layer: expected a per-frame (non-recurrent) layer, got the recurrent {type(layer).__name__}")
        self.layer = layer
        self.training = layer.training
        self._lead: tuple | None = None

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.layer.params

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return self.layer.grads

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The inner layer's non-trainable state (e.g. BatchNorm2D's running
        statistics), the same arrays; ``{}`` when it has none."""
        buffers = getattr(self.layer, "buffers", None)
        return buffers if isinstance(buffers, Mapping) else {}

    @property
    def dtype(self):
        return getattr(self.layer, "dtype", None)

    @property
    def dropout(self) -> float:
        return float(getattr(self.layer, "dropout", 0.0) or 0.0)

    def train(self, mode: bool = True) -> TimeDistributed:
        """Set the mode here and in the inner layer; returns self."""
        self.training = bool(mode)
        self.layer.train(mode)
        return self

    def zero_grad(self) -> None:
        self.layer.zero_grad()

    # -- device: everything lives in the inner layer -------------------------------------------------
    def to(self, device: str) -> TimeDistributed:
        """Move the inner layer to ``device``; returns self."""
        self.layer.to(device)
        self.device = self.layer.device
        self._lead = None
        return self

    def _check_cuda_support(self) -> None:
        self.layer._check_cuda_support()

    def parameters(self, prefix: str = ""):
        """The inner layer's ``Parameter`` objects (the same persistent ones)."""
        return self.layer.parameters(prefix)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.layer.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        self.layer.load_state_dict(state_dict, strict)

    def __repr__(self) -> str:
        return f"TimeDistributed({self.layer!r})"

    @classmethod
    def from_config(cls, config) -> TimeDistributed:
        """Build from ``{"layer": {"class": ..., "config": ...}}``."""
        if not isinstance(config, Mapping) or set(config) != {"layer"}:
            raise ValueError(f"config: expected {{'layer': spec}}, got {config!r}")
        return cls(layer_from_config(config["layer"]))

    def config(self) -> dict:
        """``{"layer": {"class": ..., "config": ...}}``, JSON-able."""
        return {"layer": layer_to_config(self.layer)}

    def compute_output_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        if len(s) < 3:
            raise ValueError(f"input_shape: expected (batch, time, ...) with at least 3 dimensions, got {s}")
        fn = getattr(self.layer, "compute_output_shape", None)
        if fn is None:
            raise ValueError(f"input_shape: the inner {type(self.layer).__name__} cannot infer its output shape")
        b, t = s[0], s[1]
        inner = fn(((None if b is None or t is None else b * t),) + s[2:])
        return (b, t) + tuple(inner[1:])

    def forward(self, x) -> np.ndarray:
        """x: (B, T, ...) -> y: (B, T, ...')."""
        x = x if backend.is_device_array(x) else as_array(x, "x")
        if x.ndim < 3:
            raise ValueError(f"x: expected an array (batch, time, ...) with at least 3 dimensions, got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected non-empty batch and time axes, got shape {x.shape}")
        B, T = x.shape[0], x.shape[1]
        rest = tuple(x.shape[2:])
        if not backend.is_device_array(x):
            x = np.ascontiguousarray(x)
        elif not x.is_c_contiguous():
            raise ValueError(f"x: expected a C-contiguous device array, got a strided view of shape {tuple(x.shape)}")
        y = self.layer.forward(x.reshape((B * T,) + rest))
        self._lead = (B, T) if self.training else None
        return y.reshape((B, T) + tuple(y.shape[1:]))

    def backward(self, dy) -> np.ndarray:
        """dy: (B, T, ...') -> dx: (B, T, ...); the inner layer accumulates its grads."""
        if self._lead is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        B, T = self._lead
        dy = dy if backend.is_device_array(dy) else as_array(dy, "dy")
        if dy.ndim < 2 or tuple(dy.shape[:2]) != (B, T):
            raise ValueError(f"dy: expected shape ({B}, {T}, ...) like the last output, got {tuple(dy.shape)}")
        if not backend.is_device_array(dy):
            dy = np.ascontiguousarray(dy)
        elif not dy.is_c_contiguous():
            raise ValueError(f"dy: expected a C-contiguous device array, got a strided view of shape {tuple(dy.shape)}")
        self._lead = None
        dx = self.layer.backward(dy.reshape((B * T,) + tuple(dy.shape[2:])))
        return dx.reshape((B, T) + tuple(dx.shape[1:]))
