"""CNN-LSTM models for image sequences: ``CNNLSTM`` and ``AttentionCNNLSTM``.

Both read ``(batch, time, channels, height, width)`` image sequences. A small
CNN (``Conv2D`` 'same' + ``ReLU`` + ``MaxPool2D(2)`` per block) runs on every
frame at once through ``TimeDistributed`` (time folded into the batch), then a
recurrent layer reads the per-frame features and a ``Dense`` head gives class
scores (logits, for ``"cross_entropy"``).

* ``CNNLSTM``: the CNN ends with ``GlobalAvgPool2D`` -> one feature vector per
  frame -> ``LSTM`` -> ``Dense`` on the last step (or on every step).
* ``AttentionCNNLSTM``: the CNN keeps its final feature map (D, h, w); its
  ``L = h*w`` cells are the annotations that an ``AttentionLSTM`` attends over
  at every step ("Show, Attend and Tell" applied to a sequence of frames);
  ``Dense`` on the last hidden state. ``model.attention`` holds the weights
  (B, T, L), ``model.attention_maps()`` the same as (B, T, h, w).

Both are ``Model`` subclasses with ``forward``/``backward``, ``config()`` and
registry entries, so ``numlstm.save``/``numlstm.load``, ``numlstm.gradcheck``
and ``numlstm.Trainer`` work on them as on any layer.
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import check_bool, check_dtype, check_float, check_int, check_kernel_size
from numlstm.layers.activation import ReLU
from numlstm.layers.attention import AttentionLSTM
from numlstm.layers.conv import Conv2D
from numlstm.layers.dense import Dense
from numlstm.layers.lstm import LSTM
from numlstm.layers.pooling import GlobalAvgPool2D, MaxPool2D
from numlstm.layers.time_distributed import TimeDistributed
from numlstm.models.sequential import Model, Sequential, child_seed, infer_output_shape


def _check_conv_channels(conv_channels) -> tuple[int, ...]:
    if isinstance(conv_channels, (str, bytes)) or not isinstance(conv_channels, (list, tuple)):
        raise TypeError(f"conv_channels: expected a non-empty list or tuple of ints >= 1, got {conv_channels!r}")
    if not conv_channels:
        raise ValueError("conv_channels: expected at least one conv block (a non-empty list of ints >= 1), got []")
    return tuple(check_int(c, f"conv_channels[{i}]", 1) for i, c in enumerate(conv_channels))


class _CNNSequenceModel(Model):
    """Shared parts: the per-frame CNN, input checks, error naming, the forward flag."""

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for an input of shape ``input_shape`` (``None`` entries: unknown sizes)."""
        return self.output_shapes(input_shape)["head"]

    recurrent = False

    def _init_common(self, in_channels, num_classes, conv_channels, kernel_size, dtype, seed) -> None:
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.conv_channels = _check_conv_channels(conv_channels)
        self.kernel_size = check_kernel_size(kernel_size)
        self._dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._cached = False

    def _cnn(self, global_pool: bool) -> Sequential:
        """Conv2D 'same' + ReLU + MaxPool2D(2) per block (+ GlobalAvgPool2D)."""
        layers = []
        c_in = self.in_channels
        for i, c_out in enumerate(self.conv_channels):
            k = tuple(self.kernel_size) if isinstance(self.kernel_size, list) else self.kernel_size
            layers += [
                Conv2D(c_in, c_out, k, padding="same", dtype=self._dtype, seed=child_seed(self.seed, i)),
                ReLU(),
                MaxPool2D(2),
            ]
            c_in = c_out
        if global_pool:
            layers.append(GlobalAvgPool2D())
        return Sequential(layers)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def min_frame_size(self) -> int:
        """Smallest height/width the CNN takes: each block halves it with MaxPool2D(2)."""
        return 2 ** len(self.conv_channels)

    def _check_frames(self, x) -> np.ndarray:
        C = self.in_channels
        x = self._check_image_sequence(x, "x", (None, None, C, None, None))
        m = self.min_frame_size
        if x.shape[3] < m or x.shape[4] < m:
            raise ValueError(
                f"x: expected frames of at least {m}x{m} pixels ({len(self.conv_channels)} conv blocks, each halving the "
                f"size with MaxPool2D(2)), got shape {x.shape} (height {x.shape[3]}, width {x.shape[4]})"
            )
        return x

    def _check_input_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        C = self.in_channels
        if len(s) != 5 or s[2] not in (None, C):
            raise ValueError(f"input_shape: expected (batch, time, {C}, height, width), got {s}")
        return s


class CNNLSTM(_CNNSequenceModel):
    """Image sequence -> class scores: per-frame CNN, LSTM over time, Dense head.

    ``x (B, T, C, H, W)`` -> ``TimeDistributed(CNN)`` -> ``(B, T, F)`` with
    ``F = conv_channels[-1]`` (each block: ``Conv2D`` 'same' + ``ReLU`` +
    ``MaxPool2D(2)``, then ``GlobalAvgPool2D``) -> ``LSTM`` -> ``Dense``:
    ``(B, num_classes)`` from the last step, or ``(B, T, num_classes)`` with
    ``per_step=True`` (one label per frame).

    Parameters
    ----------
    in_channels : int, C of the frames
    num_classes : int, size of the output (logits)
    conv_channels : sequence of int, default (16, 32)
        Output channels of each conv block; frames need at least
        ``2 ** len(conv_channels)`` pixels per side.
    kernel_size : int or (kh, kw), default 3
    hidden_size, num_layers, bidirectional, dropout : the LSTM's
        (``dropout`` between LSTM layers, as PyTorch)
    per_step : bool, default False
    dtype : np.float32 or np.float64
    seed : int or None
        Same seed, same weights (each child gets ``seed + i``).

    Attributes
    ----------
    layers : ``{"encoder": TimeDistributed(Sequential CNN), "lstm": LSTM, "head": Dense}``;
        parameter names ``"encoder.0.weight"``, ``"lstm.weight_ih_l0"``, ``"head.bias"``.

    Examples
    --------
    >>> model = CNNLSTM(in_channels=1, num_classes=2, conv_channels=(8, 16), hidden_size=32, seed=0)
    >>> model(np.zeros((4, 6, 1, 16, 16), np.float32)).shape
    (4, 2)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv_channels=(16, 32),
        kernel_size=3,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        per_step: bool = False,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self._init_common(in_channels, num_classes, conv_channels, kernel_size, dtype, seed)
        self.hidden_size = check_int(hidden_size, "hidden_size", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.bidirectional = check_bool(bidirectional, "bidirectional")
        self.dropout_rate = check_float(dropout, "dropout", 0.0, 1.0, high_open=True)
        self.per_step = check_bool(per_step, "per_step")
        n = len(self.conv_channels)
        lstm = LSTM(
            self.conv_channels[-1],
            self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout_rate,
            return_sequences=self.per_step,
            dtype=self._dtype,
            seed=child_seed(self.seed, n),
        )
        features = lstm.num_directions * self.hidden_size
        self.layers = {
            "encoder": TimeDistributed(self._cnn(global_pool=True)),
            "lstm": lstm,
            "head": Dense(features, self.num_classes, dtype=self._dtype, seed=child_seed(self.seed, n + 1)),
        }

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the model."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "conv_channels": list(self.conv_channels),
            "kernel_size": self.kernel_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout_rate,
            "per_step": self.per_step,
            "dtype": self._dtype.name,
            "seed": self.seed,
        }

    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        shape = self._check_input_shape(input_shape)
        shapes = {}
        for name, layer in self.named_layers():
            shape = self._call(name, infer_output_shape, layer, shape)
            shapes[name] = shape
        return shapes

    def forward(self, x) -> np.ndarray:
        """x (B, T, C, H, W) -> logits (B, num_classes), or (B, T, num_classes) with ``per_step``."""
        x = self._check_frames(x)
        self._cached = False
        L = self.layers
        feats = self._call("encoder", L["encoder"].forward, x)
        h = self._call("lstm", L["lstm"].forward, feats, state=None)
        y = self._call("head", L["head"].forward, h)
        self._output_shapes = {"encoder": feats.shape, "lstm": h.shape, "head": y.shape}
        self._cached = self.training
        return y

    def backward(self, dy) -> np.ndarray:
        """dy like the output -> dx (B, T, C, H, W); every child accumulates its grads."""
        self._check_cached()
        L = self.layers
        dh = self._call("head", L["head"].backward, dy)  # a bad dy is refused here, the forward stays usable
        self._cached = False
        dfeats = self._call("lstm", L["lstm"].backward, dh, None)
        return self._call("encoder", L["encoder"].backward, dfeats)


class AttentionCNNLSTM(_CNNSequenceModel):
    """Image sequence -> class scores through soft spatial attention over each frame's feature map.

    ``x (B, T, C, H, W)`` -> ``TimeDistributed(CNN)`` (no global pooling) ->
    feature maps ``(B, T, D, h, w)``, ``D = conv_channels[-1]``,
    ``h = H // 2**n``, ``w = W // 2**n`` for ``n`` conv blocks -> annotations
    ``(B, T, L = h*w, D)`` (cell ``i = row*w + col``) -> ``AttentionLSTM``
    (step t attends over frame t's cells) -> ``Dense`` on the last hidden
    state -> ``(B, num_classes)``.

    Parameters
    ----------
    in_channels, num_classes, conv_channels, kernel_size : as ``CNNLSTM``
    hidden_size : int, default 64, H of the attention LSTM
    attention_size : int, default 32, A of its attention MLP
    dtype : np.float32 or np.float64
    seed : int or None

    Attributes
    ----------
    layers : ``{"encoder": TimeDistributed(Sequential CNN), "attention": AttentionLSTM, "head": Dense}``
    attention : ndarray (B, T, L) or None
        Attention weights of the last forward (each row sums to 1).
    attention_shape : (h, w) or None
        The feature-map grid of the last forward: ``attention.reshape(B, T, h, w)``
        (``attention_maps()``) is a map over the image, one cell per
        ``2**n x 2**n`` pixel block (``np.kron`` with a block of ones draws it
        at full size).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv_channels=(16, 32),
        kernel_size=3,
        hidden_size: int = 64,
        attention_size: int = 32,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self._init_common(in_channels, num_classes, conv_channels, kernel_size, dtype, seed)
        self.hidden_size = check_int(hidden_size, "hidden_size", 1)
        self.attention_size = check_int(attention_size, "attention_size", 1)
        n = len(self.conv_channels)
        self.layers = {
            "encoder": TimeDistributed(self._cnn(global_pool=False)),
            "attention": AttentionLSTM(
                self.conv_channels[-1],
                self.hidden_size,
                self.attention_size,
                return_sequences=False,
                dtype=self._dtype,
                seed=child_seed(self.seed, n),
            ),
            "head": Dense(self.hidden_size, self.num_classes, dtype=self._dtype, seed=child_seed(self.seed, n + 1)),
        }
        self.attention_shape: tuple[int, int] | None = None
        self._fmap_shape: tuple | None = None

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the model."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "conv_channels": list(self.conv_channels),
            "kernel_size": self.kernel_size,
            "hidden_size": self.hidden_size,
            "attention_size": self.attention_size,
            "dtype": self._dtype.name,
            "seed": self.seed,
        }

    @property
    def attention(self) -> np.ndarray | None:
        """Attention weights (B, T, L) of the last forward, ``None`` before one."""
        return self.layers["attention"].attention

    def attention_maps(self) -> np.ndarray:
        """The attention weights of the last forward as maps (B, T, h, w) over the feature grid."""
        alpha = self.attention
        if alpha is None or self.attention_shape is None:
            raise RuntimeError("attention_maps: no forward pass yet; call model(x) first")
        return alpha.reshape(alpha.shape[:2] + self.attention_shape)

    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        s = self._check_input_shape(input_shape)
        fmap = self._call("encoder", self.layers["encoder"].compute_output_shape, s)
        return {"encoder": fmap, "attention": (s[0], self.hidden_size), "head": (s[0], self.num_classes)}

    def forward(self, x) -> np.ndarray:
        """x (B, T, C, H, W) -> logits (B, num_classes); leaves ``attention`` (B, T, h*w)."""
        x = self._check_frames(x)
        self._cached = False
        L = self.layers
        fmap = self._call("encoder", L["encoder"].forward, x)  # (B, T, D, h, w)
        B, T, D, h, w = fmap.shape
        if self.device == "cpu":
            a = np.ascontiguousarray(fmap.reshape(B, T, D, h * w).transpose(0, 1, 3, 2))  # (B, T, L, D)
        else:
            a = backend.cuda_kernels().convlstm.swap_last(fmap.reshape(B, T, D, h * w), 2)
        hid = self._call("attention", L["attention"].forward, a, state=None)
        y = self._call("head", L["head"].forward, hid)
        self.attention_shape = (h, w)
        self._fmap_shape = fmap.shape
        self._output_shapes = {"encoder": fmap.shape, "attention": hid.shape, "head": y.shape}
        self._cached = self.training
        return y

    def backward(self, dy, dattention=None) -> np.ndarray:
        """dy (B, num_classes) -> dx (B, T, C, H, W); every child accumulates its grads.

        ``dattention`` (B, T, L), optional: an extra gradient w.r.t.
        ``attention``, e.g. ``numlstm.attention_penalty(model.attention, lam)[1]``.
        """
        self._check_cached()
        L = self.layers
        dhid = self._call("head", L["head"].backward, dy)  # a bad dy is refused here, the forward stays usable
        self._cached = False
        da = self._call("attention", L["attention"].backward, dhid, None, dattention)  # (B, T, L, D)
        B, T, D, h, w = self._fmap_shape
        if self.device == "cpu":
            dfmap = np.ascontiguousarray(da.transpose(0, 1, 3, 2)).reshape(B, T, D, h, w)
        else:
            dfmap = backend.cuda_kernels().convlstm.swap_last(da, 2).reshape(B, T, D, h, w)
        return self._call("encoder", L["encoder"].backward, dfmap)
