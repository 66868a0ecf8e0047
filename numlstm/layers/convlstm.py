"""ConvLSTM (Shi et al. 2015, optional peepholes, optional bidirectional): the LSTM with convolutional gates.

The layer validates, allocates the state and runs the loop over layers and
directions; each layer direction is one call of the convlstm driver of its
device (``numlstm.backend.driver("convlstm", device)``:
``numlstm.kernels.cpu.convlstm`` or ``numlstm.kernels.cuda.convlstm``, the
same entry points with the same arguments). The schedule mirrors the LSTM's:
the input convolution of ALL frames at once, only the recurrent convolution
and one fused gate pass per step; see docs/convlstm.md.
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import check_bool, check_dtype, check_int
from numlstm.layers.base import Layer
from numlstm.layers.conv import _pair


# -- padding ---------------------------------------------------------------------------------------
def same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one axis: output ``ceil(size / stride)``.

    Total ``max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)``, with
    ``total // 2`` before and the rest after (the extra row/column of an odd
    total goes to the bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


class ConvLSTM(Layer):
    r"""Convolutional LSTM over image sequences ``(B, T, C_in, H, W)``.

    For each layer and direction, with gates stored in the order i, f, g, o::

        A_t = conv(x_t, W_x) + conv(h_{t-1}, W_h) + b       (B, 4C, H', W')
        i = sigmoid(A_i + w_ci * c_{t-1})   f = sigmoid(A_f + w_cf * c_{t-1})
        g = tanh(A_g)                       c_t = f * c_{t-1} + i * g
        o = sigmoid(A_o + w_co * c_t)       h_t = o * tanh(c_t)

    (the ``w_c*`` Hadamard peephole terms only with ``peephole=True``, as in
    Shi et al. 2015). The input convolution of layer 0 uses ``stride`` and
    ``dilation`` with TensorFlow 'SAME' padding, so ``H' = ceil(H / stride)``
    (likewise W'); layers k > 0 read the previous layer's ``h`` (both
    directions concatenated when bidirectional) with stride 1 and the same
    dilation ('SAME', size kept). The recurrent convolution is always stride 1,
    dilation 1, 'SAME'.

    Parameters
    ----------
    in_channels : int
        C_in, channels of each input frame.
    hidden_channels : int
        C, channels of h and c (per direction).
    kernel_size : int or (kh, kw)
        Of both the input and the recurrent convolution.
    num_layers : int, default 1
    bias : bool, default True
        One bias ``bias_l{k}`` (4C,) per layer and direction.
    stride : int or (sh, sw), default 1
        Of layer 0's input convolution.
    dilation : int or (dh, dw), default 1
        Of every layer's input convolution.
    return_sequences : bool, default True
        ``True``: output ``(B, T, D*C, H', W')``; ``False``: the top layer's
        last ``h`` (forward direction's last step, reverse direction's first
        step, concatenated), ``(B, D*C, H', W')``.
    peephole : bool, default False
        Add the Hadamard peepholes ``peephole_{i,f,o}_l{k}`` (C, H', W').
    frame_size : (H, W) or None
        Size of the INPUT frames; required with ``peephole=True`` (the
        peepholes have one weight per pixel), and every input must then have it.
    bidirectional : bool, default False
        Add a reverse direction (parameters suffixed ``_reverse``); outputs
        concatenated along channels ``[forward, reverse]``, D = 2.
    dtype : np.float32 or np.float64
    seed : int or None

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight_x_l{k}`` (4C, C_in_k, kh, kw) with C_in_k = D*C for k > 0,
        ``weight_h_l{k}`` (4C, C, kh, kw), ``bias_l{k}`` (4C,),
        ``peephole_{i,f,o}_l{k}`` (C, H', W'); suffix ``_reverse`` for the
        reverse direction. Init uniform in +-1/sqrt(C_in_k*kh*kw + C*kh*kw)
        (PyTorch's fan-in rule for the concatenated [x, h] conv).
    state : tuple (h_n, c_n), each (num_layers*D, B, C, H', W'), index layer*D + direction
    dstate : tuple (dh_0, dc_0), same shapes, after ``backward``
    """

    recurrent = True
    cuda_support = True

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size,
        num_layers: int = 1,
        bias: bool = True,
        stride=1,
        dilation=1,
        return_sequences: bool = True,
        dtype=np.float32,
        seed: int | None = None,
        peephole: bool = False,
        frame_size=None,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.hidden_channels = check_int(hidden_channels, "hidden_channels", 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.bias = check_bool(bias, "bias")
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.peephole = check_bool(peephole, "peephole")
        self.bidirectional = check_bool(bidirectional, "bidirectional")
        self.frame_size = None if frame_size is None else _pair(frame_size, "frame_size", 1)
        if self.peephole and self.frame_size is None:
            raise ValueError(
                "frame_size: peephole=True needs frame_size=(H, W), the size of the input frames "
                "(the peepholes hold one weight per pixel of h), got None"
            )
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self._approx = self.dtype == np.float32
        rng = np.random.default_rng(seed)
        C, D = self.hidden_channels, self.num_directions
        kh, kw = self.kernel_size
        for k in range(self.num_layers):
            cin = self.in_channels if k == 0 else D * C
            bound = 1.0 / np.sqrt(cin * kh * kw + C * kh * kw)
            for sfx in self._suffixes():
                shapes = [(f"weight_x_l{k}{sfx}", (4 * C, cin, kh, kw)), (f"weight_h_l{k}{sfx}", (4 * C, C, kh, kw))]
                if self.bias:
                    shapes.append((f"bias_l{k}{sfx}", (4 * C,)))
                if self.peephole:
                    ho, wo = self.output_hw(*self.frame_size)
                    shapes += [(f"peephole_{g}_l{k}{sfx}", (C, ho, wo)) for g in "ifo"]
                for name, shape in shapes:
                    self.params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        self.dstate: tuple[np.ndarray, np.ndarray] | None = None
        self._cache = None
        self._workspace: dict = {}

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.num_directions]

    def __repr__(self) -> str:
        return (
            f"ConvLSTM({self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, stride={self.stride}, dilation={self.dilation}, "
            f"return_sequences={self.return_sequences}, peephole={self.peephole}, frame_size={self.frame_size}, "
            f"bidirectional={self.bidirectional}, dtype={self.dtype.name})"
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "in_channels": self.in_channels,
            "hidden_channels": self.hidden_channels,
            "kernel_size": list(self.kernel_size),
            "num_layers": self.num_layers,
            "bias": self.bias,
            "stride": list(self.stride),
            "dilation": list(self.dilation),
            "return_sequences": self.return_sequences,
            "peephole": self.peephole,
            "frame_size": None if self.frame_size is None else list(self.frame_size),
            "bidirectional": self.bidirectional,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    # -- geometry ------------------------------------------------------------------
    def _input_pads(self, k: int, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """(stride, pads) of layer k's input convolution for frames H x W."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        s = self.stride if k == 0 else (1, 1)
        pt, pb = same_pads(H, kh, s[0], dh)
        pl, pr = same_pads(W, kw, s[1], dw)
        return s, (pt, pb, pl, pr)

    def _rec_pads(self) -> tuple[int, int, int, int]:
        kh, kw = self.kernel_size
        pt, pb = same_pads(1, kh, 1, 1)
        pl, pr = same_pads(1, kw, 1, 1)
        return pt, pb, pl, pr

    def output_hw(self, H: int, W: int) -> tuple[int, int]:
        """Frame size (H', W') of h, c and the output for input frames H x W."""
        return -(-H // self.stride[0]), -(-W // self.stride[1])

    def output_shape(self, batch: int, time: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of ``forward``'s output for a (batch, time, in_channels, height, width) input."""
        ho, wo = self.output_hw(height, width)
        C = self.num_directions * self.hidden_channels
        return (batch, time, C, ho, wo) if self.return_sequences else (batch, C, ho, wo)

    def _check_state(self, state, B, ho, wo, name="state", copy=False):
        shape = (self.num_layers * self.num_directions, B, self.hidden_channels, ho, wo)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {shape}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_channels", "height'", "width'")
        h = backend.check_input(state[0], f"{name}[0] (h)", shape, self.dtype, names, self.device, copy)
        c = backend.check_input(state[1], f"{name}[1] (c)", shape, self.dtype, names, self.device, copy)
        return h, c

    def _peepholes(self, k, sfx, P, grads=False):
        """(wci, wcf, wco) of layer k as (C, P) views, or (0, 0) arrays without peepholes."""
        src = self.grads if grads else self.params
        if not self.peephole:
            e = backend.empty((0, 0), self.dtype, self.device)
            return e, e, e
        C = self.hidden_channels
        return tuple(src[f"peephole_{g}_l{k}{sfx}"].reshape(C, P) for g in "ifo")

    # -- forward -------------------------------------------------------------------
    def forward(self, x, state=None) -> np.ndarray:
        """Run the layer over a batch of image sequences.

        Parameters
        ----------
        x : ndarray (B, T, in_channels, H, W)
            With ``peephole=True``, (H, W) must equal ``frame_size``.
        state : tuple (h_0, c_0) or None
            Initial state, each (num_layers*D, B, C, H', W'); zeros when None.

        Returns
        -------
        y : ndarray (B, T, D*C, H', W') with ``return_sequences``, else (B, D*C, H', W').
        """
        names = ("batch", "time", "in_channels", "height", "width")
        dev = self.device
        drv = backend.driver("convlstm", dev)
        x = backend.check_input(x, "x", (None, None, self.in_channels, None, None), self.dtype, names, dev)
        B, T, _, H, W = x.shape
        if self.peephole and (H, W) != self.frame_size:
            raise ValueError(
                f"x: expected frames of size frame_size={self.frame_size} (the peepholes are per pixel), "
                f"got shape {x.shape} with frames ({H}, {W})"
            )
        ho, wo = self.output_hw(H, W)
        C, L, D, dt = self.hidden_channels, self.num_layers, self.num_directions, self.dtype
        P = ho * wo
        if state is None:
            h0 = backend.zeros((L * D, B, C, ho, wo), dt, dev)
            c0 = backend.zeros((L * D, B, C, ho, wo), dt, dev)
        else:
            h0, c0 = self._check_state(state, B, ho, wo)
        training = self.training
        rpads = self._rec_pads()
        no_bias = backend.empty(0, dt, dev)
        hn = backend.empty((L * D, B, C, ho, wo), dt, dev)
        cn = backend.empty((L * D, B, C, ho, wo), dt, dev)
        inp = drv.swap01(x)  # time-major (T, B, C_in, H, W)
        cache = []
        for k in range(L):
            _, _, cin, hi, wi = inp.shape
            stride, pads = self._input_pads(k, hi, wi)
            saved = {} if training else None  # what backward reads, shared by the directions
            ys = []
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                b = self.params[f"bias_l{k}{sfx}"] if self.bias else no_bias
                y = drv.convlstm_forward_direction(
                    inp, self.params[f"weight_x_l{k}{sfx}"], b, self.params[f"weight_h_l{k}{sfx}"],
                    self._peepholes(k, sfx, P), stride, pads, self.dilation, rpads, h0[idx], c0[idx], hn[idx], cn[idx],
                    d, state is None, self._approx, saved, self._workspace, k,
                )  # fmt: skip
                ys.append(y)
            cache.append({"x_shape": tuple(inp.shape), "stride": stride, "pads": pads, "saved": saved})
            if D == 1:
                inp = ys[0]
            else:
                inp = backend.empty((T, B, D * C, ho, wo), dt, dev)
                for d in range(D):
                    drv.copy_channels(ys[d], 0, inp, d * C, C)
        self.state = (hn, cn)
        self._cache = {"layers": cache, "B": B, "T": T, "H": H, "W": W} if training else None
        if self.return_sequences:
            return drv.swap01(inp)
        out = backend.empty((B, D * C, ho, wo), dt, dev)
        top = (L - 1) * D
        for d in range(D):
            drv.copy_channels(hn[top + d], 0, out, d * C, C)
        return out

    # -- backward ------------------------------------------------------------------
    def backward(self, dy, dstate=None) -> np.ndarray:
        """Backpropagate through time; accumulate into ``grads``.

        Parameters
        ----------
        dy : ndarray, the shape of the last ``forward`` output
        dstate : tuple (dh_n, dc_n) or None
            Gradient w.r.t. the final state, each (num_layers*D, B, C, H', W').

        Returns
        -------
        dx : ndarray (B, T, in_channels, H, W). ``self.dstate`` receives the
        gradient w.r.t. the initial state.
        """
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        dev = self.device
        drv = backend.driver("convlstm", dev)
        cache = self._cache
        B, T, H, W = cache["B"], cache["T"], cache["H"], cache["W"]
        ho, wo = self.output_hw(H, W)
        C, L, D, dt = self.hidden_channels, self.num_layers, self.num_directions, self.dtype
        P = ho * wo
        dy = backend.check_input(dy, "dy", self.output_shape(B, T, H, W), dt, device=dev)
        if dstate is None:
            dhn = backend.zeros((L * D, B, C, ho, wo), dt, dev)
            dcn = backend.zeros((L * D, B, C, ho, wo), dt, dev)
        else:
            dhn, dcn = self._check_state(dstate, B, ho, wo, "dstate", copy=True)
        if self.return_sequences:
            dy_tm = drv.swap01(dy)  # (T, B, D*C, H', W')
        else:
            dy_tm = None
            top = (L - 1) * D
            for d in range(D):
                drv.copy_channels(dy, d * C, dhn[top + d], 0, C, add=True)
        rpads = self._rec_pads()
        no_bias = backend.empty(0, dt, dev)
        dh0 = backend.empty((L * D, B, C, ho, wo), dt, dev)
        dc0 = backend.empty((L * D, B, C, ho, wo), dt, dev)
        # the gate buffers become the gate gradients: differentiable once (as PyTorch)
        self._cache = None
        dx = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            dx = backend.empty(lc["x_shape"], dt, dev)
            dx_d = backend.empty(lc["x_shape"], dt, dev) if D == 2 else dx
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                db = self.grads[f"bias_l{k}{sfx}"] if self.bias else no_bias
                drv.convlstm_backward_direction(
                    lc["saved"], d, self.params[f"weight_x_l{k}{sfx}"], self.params[f"weight_h_l{k}{sfx}"],
                    self._peepholes(k, sfx, P), self._peepholes(k, sfx, P, grads=True), lc["stride"], lc["pads"],
                    self.dilation, rpads, dy_tm, dhn[idx], dcn[idx], dh0[idx], dc0[idx], dx if d == 0 else dx_d,
                    self.grads[f"weight_x_l{k}{sfx}"], db, self.grads[f"weight_h_l{k}{sfx}"], self._approx, self._workspace,
                )  # fmt: skip
                if d == 1:
                    drv.add_into(dx, dx_d)
            dy_tm = dx
        self.dstate = (dh0, dc0)
        return drv.swap01(dx)
