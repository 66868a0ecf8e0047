"""``EncoderForecaster``: the ConvLSTM encoding-forecasting network of Shi et al. (2015).

An encoder stack of ``ConvLSTM`` layers reads the input frames; the final
``(h, c)`` of encoder layer k is the initial state of forecaster layer k; the
forecaster stack runs ``future_steps`` steps on all-zero input frames (the
paper's forecaster has no input: the zero frame makes its input convolution a
no-op); a 1x1 ``Conv2D`` over the concatenated hidden states of every
forecaster layer gives per-pixel logits at each future step. See
docs/encoder_forecaster.md.
"""

from __future__ import annotations

import numbers

import numpy as np

from numlstm import backend
from numlstm._validation import check_dtype, check_int, check_kernel_size
from numlstm.layers.conv import Conv2D
from numlstm.layers.convlstm import ConvLSTM
from numlstm.models.sequential import Model, child_seed

#: Channels of the all-zero frames the forecaster's first layer reads.
FORECASTER_INPUT_CHANNELS = 1


def check_layer_sizes(value, name: str, what: str) -> tuple[int, ...]:
    """An int or a non-empty list/tuple of ints >= 1 (one per layer) as a tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (check_int(value, name, 1),)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected an int or a non-empty list/tuple of ints >= 1, got {value!r}")
    if not value:
        raise ValueError(f"{name}: expected at least one {what} layer (a non-empty list of ints >= 1), got []")
    return tuple(check_int(c, f"{name}[{i}]", 1) for i, c in enumerate(value))


class EncoderForecasterBase(Model):
    """The encoding-forecasting chain shared by ``EncoderForecaster`` (ConvLSTM)
    and ``FCEncoderForecaster`` (LSTM): children ``encoder0..``, ``forecaster0..``
    and ``head``; sequences are (B, T, C, ...) with the features on axis 2.

    Forward: encoder k reads encoder k-1's sequence, its final ``(h, c)``
    starts forecaster k; forecaster 0 reads zeros; the forecasters' hidden
    sequences are concatenated on axis 2 for the head. Backward: the head's
    gradient is split back per forecaster (top first, each adding the
    gradient from the layer above), each forecaster's ``dstate`` is the
    gradient of its encoder's final state, and the encoders run top down.
    """

    recurrent = False

    @staticmethod
    def _as_frames(a):
        """A device sequence (B, T, C) as (B, T, C, 1, 1): the channel glue works on frames."""
        return a.reshape(tuple(a.shape) + (1, 1)) if len(a.shape) == 3 else a

    def _concat_channels(self, arrays):
        """``np.concatenate(arrays, axis=2)`` on the model's device."""
        if self.device == "cpu":
            return np.concatenate(arrays, axis=2)
        glue = backend.cuda_kernels().convlstm
        shape = tuple(arrays[0].shape)
        out = backend.empty(shape[:2] + (sum(a.shape[2] for a in arrays),) + shape[3:], self._dtype, "cuda")
        off = 0
        for a in arrays:
            glue.copy_channels(self._as_frames(a), 0, self._as_frames(out), off, a.shape[2])
            off += a.shape[2]
        return out

    def _channels(self, a, lo: int, hi: int, add=None):
        """``a[:, :, lo:hi]`` (C-contiguous), plus ``add`` when given, on the model's device."""
        if self.device == "cpu":
            part = a[:, :, lo:hi]
            return np.ascontiguousarray(part) if add is None else part + add
        glue = backend.cuda_kernels().convlstm
        shape = tuple(a.shape)
        out = backend.empty(shape[:2] + (hi - lo,) + shape[3:], self._dtype, "cuda")
        glue.copy_channels(self._as_frames(a), lo, self._as_frames(out), 0, hi - lo)
        if add is not None:
            glue.copy_channels(self._as_frames(add), 0, self._as_frames(out), 0, hi - lo, add=True)
        return out

    def _chain_forward(self, x, zeros, shapes: dict):
        """Encoders on ``x``, forecasters on ``zeros``: the forecasters' hidden
        sequences concatenated on axis 2 (B, F, sum(sizes), ...)."""
        states = []
        inp = x
        for i in range(self.num_layers):
            name = f"encoder{i}"
            inp = self._call(name, self.layers[name].forward, inp, state=None)
            states.append(self.layers[name].state)
            shapes[name] = tuple(inp.shape)
        inp, hs = zeros, []
        for i in range(self.num_layers):
            name = f"forecaster{i}"
            inp = self._call(name, self.layers[name].forward, inp, state=states[i])
            hs.append(inp)
            shapes[name] = tuple(inp.shape)
        return self._concat_channels(hs) if self.num_layers > 1 else hs[0]

    def _chain_backward(self, dcat, sizes: tuple[int, ...], encoder_output_shape: tuple):
        """``dcat`` (B, F, sum(sizes), ...) -> the gradient of the encoders' input."""
        L = self.num_layers
        offsets = np.cumsum((0,) + tuple(sizes))
        dstates = [None] * L
        dnext = None
        for i in range(L - 1, -1, -1):
            name = f"forecaster{i}"
            dh = self._channels(dcat, int(offsets[i]), int(offsets[i + 1]), dnext)
            dnext = self._call(name, self.layers[name].backward, dh, None)
            dstates[i] = self.layers[name].dstate
        # forecaster0's dnext is the gradient of the zeros: not an input, dropped;
        # the top encoder's sequence output is unused: only its final state flows on
        dnext = backend.zeros(encoder_output_shape, self._dtype, self.device)
        for i in range(L - 1, -1, -1):
            name = f"encoder{i}"
            dnext = self._call(name, self.layers[name].backward, dnext, dstates[i])
        return dnext


class EncoderForecaster(EncoderForecasterBase):
    """Frames in, per-pixel logits of the next frames out (Shi et al. 2015).

    ``x (B, T_in, C_in, H, W)`` -> encoder ConvLSTM layers ``encoder0 ..
    encoder{L-1}`` (layer k reads layer k-1's hidden sequence) -> final states
    ``(h, c)`` of encoder layer k initialise forecaster layer k ->
    forecaster ConvLSTM layers ``forecaster0 .. forecaster{L-1}`` run
    ``future_steps`` steps, layer 0 on all-zero frames (B, F,
    1, H, W), layer k on layer k-1's hidden sequence -> the hidden states of
    all forecaster layers, concatenated on the channel axis
    ``(B, F, sum(hidden_channels), H, W)`` -> 1x1 ``Conv2D`` ``head`` at every
    step -> logits ``(B, F, out_channels, H, W)``.

    Every ConvLSTM has stride 1 and 'SAME' padding, so all frames stay H x W.
    The logits are meant for ``BCEWithLogitsLoss`` (``"bce"``) against target
    frames in [0, 1]; ``sigmoid(logits)`` is the predicted frame.

    Parameters
    ----------
    in_channels : int, C_in of the input frames
    hidden_channels : int or sequence of int, default (64,)
        Channels of each encoder layer and of the matching forecaster layer
        (one ConvLSTM layer each per entry).
    kernel_size : int or (kh, kw), default 3
        Of every ConvLSTM's input and recurrent convolution.
    out_channels : int or None, default None (= in_channels)
        Channels of the predicted frames.
    future_steps : int, default 10
        F, number of predicted frames.
    dtype : np.float32 or np.float64
    seed : int or None
        Same seed, same weights (child i gets ``seed + i``: encoders, then
        forecasters, then the head).

    Attributes
    ----------
    layers : ``{"encoder0", ..., "forecaster0", ..., "head"}``; parameter
        names ``"encoder0.weight_x_l0"``, ``"forecaster1.bias_l0"``,
        ``"head.weight"``. ``forecaster0.weight_x_l0`` multiplies the zero
        frames: it never changes the output and its gradient is always 0.

    Examples
    --------
    >>> model = EncoderForecaster(1, hidden_channels=(8, 8), future_steps=5, seed=0)
    >>> model(np.zeros((2, 10, 1, 16, 16), np.float32)).shape
    (2, 5, 1, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels=(64,),
        kernel_size=3,
        out_channels: int | None = None,
        future_steps: int = 10,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.hidden_channels = check_layer_sizes(hidden_channels, "hidden_channels", "ConvLSTM")
        self.kernel_size = check_kernel_size(kernel_size)
        self.out_channels = self.in_channels if out_channels is None else check_int(out_channels, "out_channels", 1)
        self.future_steps = check_int(future_steps, "future_steps", 1)
        self._dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._cached = False
        self._geometry: tuple | None = None  # (B, T, H, W) of the cached forward
        k = tuple(self.kernel_size) if isinstance(self.kernel_size, list) else self.kernel_size
        n = len(self.hidden_channels)
        layers = {}
        c_in = self.in_channels
        for i, c in enumerate(self.hidden_channels):
            layers[f"encoder{i}"] = ConvLSTM(c_in, c, k, return_sequences=True, dtype=self._dtype, seed=child_seed(seed, i))
            c_in = c
        c_in = FORECASTER_INPUT_CHANNELS
        for i, c in enumerate(self.hidden_channels):
            layers[f"forecaster{i}"] = ConvLSTM(
                c_in, c, k, return_sequences=True, dtype=self._dtype, seed=child_seed(seed, n + i)
            )
            c_in = c
        layers["head"] = Conv2D(sum(self.hidden_channels), self.out_channels, 1, dtype=self._dtype, seed=child_seed(seed, 2 * n))
        self.layers = layers

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the model."""
        return {
            "in_channels": self.in_channels,
            "hidden_channels": list(self.hidden_channels),
            "kernel_size": self.kernel_size,
            "out_channels": self.out_channels,
            "future_steps": self.future_steps,
            "dtype": self._dtype.name,
            "seed": self.seed,
        }

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def num_layers(self) -> int:
        """Number of ConvLSTM layers in the encoder (and in the forecaster)."""
        return len(self.hidden_channels)

    # -- shapes -------------------------------------------------------------------------
    def _check_input_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        C = self.in_channels
        if len(s) != 5 or s[2] not in (None, C):
            raise ValueError(f"input_shape: expected (batch, time, {C}, height, width), got {s}")
        return s

    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        B, T, _, H, W = self._check_input_shape(input_shape)
        F = self.future_steps
        shapes = {}
        for i, c in enumerate(self.hidden_channels):
            shapes[f"encoder{i}"] = (B, T, c, H, W)
        for i, c in enumerate(self.hidden_channels):
            shapes[f"forecaster{i}"] = (B, F, c, H, W)
        shapes["head"] = (B, F, self.out_channels, H, W)
        return shapes

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape ``(B, future_steps, out_channels, H, W)`` for an input of shape ``input_shape``."""
        return self.output_shapes(input_shape)["head"]

    # -- helpers ------------------------------------------------------------------------
    def _check_frames(self, x) -> np.ndarray:
        C = self.in_channels
        return self._check_image_sequence(x, "x", (None, None, C, None, None))

    # -- forward / backward -----------------------------------------------------------------
    def forward(self, x) -> np.ndarray:
        """x (B, T_in, in_channels, H, W) -> logits (B, future_steps, out_channels, H, W)."""
        x = self._check_frames(x)
        self._cached = False
        B, T, _, H, W = x.shape
        F, dt = self.future_steps, self._dtype
        shapes = {}
        zeros = backend.zeros((B, F, FORECASTER_INPUT_CHANNELS, H, W), dt, self.device)
        cat = self._chain_forward(x, zeros, shapes)
        S = cat.shape[2]
        cat = cat.reshape(B * F, S, H, W)
        z = self._call("head", self.layers["head"].forward, np.ascontiguousarray(cat) if self.device == "cpu" else cat)
        y = z.reshape(B, F, self.out_channels, H, W)
        shapes["head"] = y.shape
        self._output_shapes = shapes
        self._geometry = (B, T, H, W)
        self._cached = self.training
        return y

    def backward(self, dy) -> np.ndarray:
        """dy (B, future_steps, out_channels, H, W) -> dx (B, T_in, in_channels, H, W).

        The gradient flows through the head, the forecaster (top layer first),
        the state handoff (forecaster layer k's ``dstate`` is the gradient of
        encoder layer k's final state) and the encoder to the input frames.
        Every child accumulates its grads.
        """
        self._check_cached()
        B, T, H, W = self._geometry
        F = self.future_steps
        dy = self._check_image_sequence(dy, "dy", (B, F, self.out_channels, H, W))  # refused before anything is consumed
        self._cached = False
        S = sum(self.hidden_channels)
        dcat = self._call("head", self.layers["head"].backward, dy.reshape(B * F, self.out_channels, H, W))
        dcat = dcat.reshape(B, F, S, H, W)
        dx = self._chain_backward(dcat, self.hidden_channels, (B, T, self.hidden_channels[-1], H, W))
        return dx
