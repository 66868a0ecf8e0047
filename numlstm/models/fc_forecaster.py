"""``FCEncoderForecaster``: the FC-LSTM baseline of Shi et al. (2015).

The same encoding-forecasting structure as ``EncoderForecaster`` with fully
connected LSTM layers on flattened frames instead of ConvLSTM layers (the
paper's "FC-LSTM", after Srivastava et al. 2015): the spatial layout is thrown
away, which is what the ConvLSTM comparison measures. See
docs/encoder_forecaster.md.
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import check_dtype, check_int
from numlstm.layers.dense import Dense
from numlstm.layers.lstm import LSTM
from numlstm.models.encoder_forecaster import EncoderForecasterBase, check_layer_sizes
from numlstm.models.sequential import child_seed

#: Features of the all-zero inputs the forecaster's first layer reads.
FORECASTER_INPUT_SIZE = 1


class FCEncoderForecaster(EncoderForecasterBase):
    """Frames in, per-pixel logits of the next frames out, with fully connected LSTMs.

    ``x (B, T_in, C, H, W)`` is flattened to ``(B, T_in, C*H*W)`` -> encoder
    ``LSTM`` layers ``encoder0 .. encoder{L-1}`` -> their final ``(h, c)``
    initialise forecaster layers ``forecaster0 ..`` which run ``future_steps``
    steps (layer 0 on all-zero inputs of size 1) -> the hidden states of all
    forecaster layers, concatenated ``(B, F, sum(hidden_sizes))`` -> ``Dense``
    ``head`` -> logits reshaped to ``(B, F, C, H, W)``.

    Parameters
    ----------
    in_channels, height, width : int
        The frame shape ``(C, H, W)``; it fixes the input and output sizes of
        the fully connected layers.
    hidden_sizes : int or sequence of int, default (256,)
        Hidden size of each encoder layer and of the matching forecaster layer.
    future_steps : int, default 10
    dtype : np.float32 or np.float64
    seed : int or None
        Child i gets ``seed + i``: encoders, forecasters, then the head.

    Examples
    --------
    >>> model = FCEncoderForecaster(1, 8, 8, hidden_sizes=(16,), future_steps=3, seed=0)
    >>> model(np.zeros((2, 5, 1, 8, 8), np.float32)).shape
    (2, 3, 1, 8, 8)
    """

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        hidden_sizes=(256,),
        future_steps: int = 10,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.height = check_int(height, "height", 1)
        self.width = check_int(width, "width", 1)
        self.hidden_sizes = check_layer_sizes(hidden_sizes, "hidden_sizes", "LSTM")
        self.future_steps = check_int(future_steps, "future_steps", 1)
        self._dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._cached = False
        self._geometry: tuple | None = None
        n = len(self.hidden_sizes)
        features = self.in_channels * self.height * self.width
        layers = {}
        size = features
        for i, h in enumerate(self.hidden_sizes):
            layers[f"encoder{i}"] = LSTM(size, h, dtype=self._dtype, seed=child_seed(seed, i))
            size = h
        size = FORECASTER_INPUT_SIZE
        for i, h in enumerate(self.hidden_sizes):
            layers[f"forecaster{i}"] = LSTM(size, h, dtype=self._dtype, seed=child_seed(seed, n + i))
            size = h
        layers["head"] = Dense(sum(self.hidden_sizes), features, dtype=self._dtype, seed=child_seed(seed, 2 * n))
        self.layers = layers

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the model."""
        return {
            "in_channels": self.in_channels,
            "height": self.height,
            "width": self.width,
            "hidden_sizes": list(self.hidden_sizes),
            "future_steps": self.future_steps,
            "dtype": self._dtype.name,
            "seed": self.seed,
        }

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.height, self.width)

    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        s = tuple(input_shape)
        if len(s) != 5 or any(a not in (None, b) for a, b in zip(s[2:], self.frame_shape, strict=True)):
            raise ValueError(f"input_shape: expected (batch, time, {', '.join(map(str, self.frame_shape))}), got {s}")
        B, T = s[:2]
        F = self.future_steps
        shapes = {f"encoder{i}": (B, T, h) for i, h in enumerate(self.hidden_sizes)}
        shapes.update({f"forecaster{i}": (B, F, h) for i, h in enumerate(self.hidden_sizes)})
        shapes["head"] = (B, F) + self.frame_shape
        return shapes

    def compute_output_shape(self, input_shape) -> tuple:
        """``(B, future_steps, C, H, W)`` for an input of shape ``input_shape``."""
        return self.output_shapes(input_shape)["head"]

    def forward(self, x) -> np.ndarray:
        """x (B, T_in, C, H, W) -> logits (B, future_steps, C, H, W)."""
        x = self._check_image_sequence(x, "x", (None, None) + self.frame_shape)
        self._cached = False
        B, T = x.shape[:2]
        F = self.future_steps
        flat = (np.ascontiguousarray(x) if self.device == "cpu" else x).reshape(B, T, -1)
        zeros = backend.zeros((B, F, FORECASTER_INPUT_SIZE), self._dtype, self.device)
        cat = self._chain_forward(flat, zeros, {})
        y = self._call("head", self.layers["head"].forward, cat)
        self._geometry = (B, T)
        self._cached = self.training
        return y.reshape((B, F) + self.frame_shape)

    def backward(self, dy) -> np.ndarray:
        """dy (B, future_steps, C, H, W) -> dx (B, T_in, C, H, W); children accumulate their grads."""
        self._check_cached()
        B, T = self._geometry
        F = self.future_steps
        dy = self._check_image_sequence(dy, "dy", (B, F) + self.frame_shape)
        self._cached = False
        flat = (np.ascontiguousarray(dy) if self.device == "cpu" else dy).reshape(B, F, -1)
        dcat = self._call("head", self.layers["head"].backward, flat)
        dx = self._chain_backward(dcat, self.hidden_sizes, (B, T, self.hidden_sizes[-1]))
        return dx.reshape((B, T) + self.frame_shape)
