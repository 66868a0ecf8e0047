"""ConvLSTM (Shi et al. 2015, without peepholes): the LSTM with convolutional gates.

The schedule mirrors ``numlstm.layers.lstm``: the input convolution of ALL
frames is one ``conv2d_forward`` call (time folded into the batch), only the
recurrent convolution runs per step, followed by one fused ``@njit`` pass over
the four gates and the cell. Backward walks the steps in reverse through the
gates and the recurrent convolution (``conv2d_backward`` per step), then forms
the input-convolution weight/bias gradients and dx with ONE ``conv2d_backward``
over all frames. The convolutions are the project's (``numlstm.layers.conv``);
see docs/convlstm.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numlstm._validation import check_array, check_bool, check_dtype, check_int
from numlstm.kernels.cpu.activations import sigmoid_exact, sigmoid_fast, tanh_exact, tanh_fast
from numlstm.layers.base import Layer
from numlstm.layers.conv import _pair, conv2d_backward, conv2d_forward

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


# -- fused gate kernels ----------------------------------------------------------------------------
@njit(**_KW)
def convlstm_gates_forward(gt, rec, c, cpt, ht, approx):
    """One step, every sequence and pixel.

    gt: (B, 4C, P) holds conv(x_t, W_x) + b on entry, the activations
    i, f, g, o on return; rec: (B, 4C, P) = conv(h_{t-1}, W_h);
    c: (B, C, P) c_{t-1} on entry, c_t on return; cpt: (B, C, P) receives
    c_{t-1}; ht: (B, C, P) receives h_t. P = H'*W'.
    """
    B, C4, P = gt.shape
    C = C4 // 4
    for b in range(B):
        for j in range(C4):
            is_g = 2 * C <= j < 3 * C
            for p in range(P):
                v = gt[b, j, p] + rec[b, j, p]
                if approx:
                    gt[b, j, p] = tanh_fast(v) if is_g else sigmoid_fast(v)
                else:
                    gt[b, j, p] = tanh_exact(v) if is_g else sigmoid_exact(v)
        for k in range(C):
            for p in range(P):
                cpt[b, k, p] = c[b, k, p]
                cn = gt[b, C + k, p] * c[b, k, p] + gt[b, k, p] * gt[b, 2 * C + k, p]
                c[b, k, p] = cn
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                ht[b, k, p] = gt[b, 3 * C + k, p] * tc


@njit(**_KW)
def convlstm_gates_backward(at, cpt, dh, dc, approx):
    """Fused derivative of one step.

    at: (B, 4C, P) activations i, f, g, o on entry, dL/da_t on return;
    cpt: (B, C, P) c_{t-1}; dh: (B, C, P) total gradient reaching h_t;
    dc: (B, C, P) gradient reaching c_t from later steps, on return the
    gradient for c_{t-1}. tanh(c_t) is recomputed with the forward's operations.
    """
    B, C4, P = at.shape
    C = C4 // 4
    for b in range(B):
        for k in range(C):
            for p in range(P):
                i = at[b, k, p]
                f = at[b, C + k, p]
                g = at[b, 2 * C + k, p]
                o = at[b, 3 * C + k, p]
                cp = cpt[b, k, p]
                cn = f * cp + i * g
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                d_h = dh[b, k, p]
                d_c = dc[b, k, p] + d_h * o * (1.0 - tc * tc)
                at[b, k, p] = d_c * g * i * (1.0 - i)
                at[b, C + k, p] = d_c * cp * f * (1.0 - f)
                at[b, 2 * C + k, p] = d_c * i * (1.0 - g * g)
                at[b, 3 * C + k, p] = d_h * tc * o * (1.0 - o)
                dc[b, k, p] = d_c * f


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
    r"""Convolutional LSTM over image sequences ``(B, T, C_in, H, W)`` (no peepholes).

    For each layer, with gates stored in the order i, f, g, o::

        A_t = conv(x_t, W_x) + conv(h_{t-1}, W_h) + b       (B, 4C, H', W')
        i, f, o = sigmoid(A_i, A_f, A_o)    g = tanh(A_g)
        c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

    The input convolution of layer 0 uses ``stride`` and ``dilation`` with
    TensorFlow 'SAME' padding, so ``H' = ceil(H / stride)`` (likewise W');
    layers k > 0 read the previous layer's ``h`` with stride 1 and the same
    dilation ('SAME', size kept). The recurrent convolution is always stride 1,
    dilation 1, 'SAME'.

    Parameters
    ----------
    in_channels : int
        C_in, channels of each input frame.
    hidden_channels : int
        C, channels of h and c.
    kernel_size : int or (kh, kw)
        Of both the input and the recurrent convolution.
    num_layers : int, default 1
    bias : bool, default True
        One bias ``bias_l{k}`` (4C,) per layer.
    stride : int or (sh, sw), default 1
        Of layer 0's input convolution.
    dilation : int or (dh, dw), default 1
        Of every layer's input convolution.
    return_sequences : bool, default True
        ``True``: output ``(B, T, C, H', W')``; ``False``: the top layer's last
        ``h``, ``(B, C, H', W')``.
    dtype : np.float32 or np.float64
    seed : int or None

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight_x_l{k}`` (4C, C_in_k, kh, kw), ``weight_h_l{k}`` (4C, C, kh,
        kw), ``bias_l{k}`` (4C,); init uniform in +-1/sqrt(C_in_k*kh*kw +
        C*kh*kw) (PyTorch's fan-in rule for the concatenated [x, h] conv).
    state : tuple (h_n, c_n), each (num_layers, B, C, H', W')
    dstate : tuple (dh_0, dc_0), same shapes, after ``backward``
    """

    recurrent = True

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
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._approx = self.dtype == np.float32
        rng = np.random.default_rng(seed)
        C = self.hidden_channels
        kh, kw = self.kernel_size
        for k in range(self.num_layers):
            cin = self.in_channels if k == 0 else C
            bound = 1.0 / np.sqrt(cin * kh * kw + C * kh * kw)
            shapes = [(f"weight_x_l{k}", (4 * C, cin, kh, kw)), (f"weight_h_l{k}", (4 * C, C, kh, kw))]
            if self.bias:
                shapes.append((f"bias_l{k}", (4 * C,)))
            for name, shape in shapes:
                self.params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        self.dstate: tuple[np.ndarray, np.ndarray] | None = None
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"ConvLSTM({self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, stride={self.stride}, dilation={self.dilation}, "
            f"return_sequences={self.return_sequences}, dtype={self.dtype.name})"
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
        C = self.hidden_channels
        return (batch, time, C, ho, wo) if self.return_sequences else (batch, C, ho, wo)

    def _check_state(self, state, B, ho, wo, name="state"):
        shape = (self.num_layers, B, self.hidden_channels, ho, wo)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {shape}, got {type(state).__name__}")
        names = ("num_layers", "batch", "hidden_channels", "height'", "width'")
        h = check_array(state[0], f"{name}[0] (h)", shape, self.dtype, names)
        c = check_array(state[1], f"{name}[1] (c)", shape, self.dtype, names)
        return h, c

    # -- forward -------------------------------------------------------------------
    def forward(self, x, state=None) -> np.ndarray:
        """Run the layer over a batch of image sequences.

        Parameters
        ----------
        x : ndarray (B, T, in_channels, H, W)
        state : tuple (h_0, c_0) or None
            Initial state, each (num_layers, B, C, H', W'); zeros when None.

        Returns
        -------
        y : ndarray (B, T, C, H', W') with ``return_sequences``, else (B, C, H', W').
        """
        names = ("batch", "time", "in_channels", "height", "width")
        x = check_array(x, "x", (None, None, self.in_channels, None, None), self.dtype, names)
        B, T, _, H, W = x.shape
        ho, wo = self.output_hw(H, W)
        C, L, dt = self.hidden_channels, self.num_layers, self.dtype
        kh, kw = self.kernel_size
        if state is None:
            h0 = np.zeros((L, B, C, ho, wo), dt)
            c0 = np.zeros((L, B, C, ho, wo), dt)
        else:
            h0, c0 = self._check_state(state, B, ho, wo)
        rpads = self._rec_pads()
        rt, rb, rl, rr = rpads
        no_bias = np.empty(0, dt)
        hn = np.empty((L, B, C, ho, wo), dt)
        cn = np.empty((L, B, C, ho, wo), dt)
        inp = np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))  # time-major (T, B, C_in, H, W)
        cache = []
        for k in range(L):
            _, _, cin, hi, wi = inp.shape
            stride, pads = self._input_pads(k, hi, wi)
            pt, pb, pl, pr = pads
            # the input convolution of every frame: ONE call, time folded into the batch
            gates = np.empty((T, B, 4 * C, ho, wo), dt)
            keep_x = np.zeros((T * B, hi + pt + pb, wi + pl + pr, cin), dt)
            b = self.params[f"bias_l{k}"] if self.bias else no_bias
            conv2d_forward(
                inp.reshape(T * B, cin, hi, wi), self.params[f"weight_x_l{k}"], b, stride, pads, self.dilation,
                gates.reshape(T * B, 4 * C, ho, wo), keep_x,
            )  # fmt: skip
            w_h = self.params[f"weight_h_l{k}"]
            y = np.empty((T, B, C, ho, wo), dt)
            cprev = np.empty((T, B, C, ho, wo), dt)
            keep_h = np.zeros((T, B, ho + rt + rb, wo + rl + rr, C), dt)
            rec = np.empty((B, 4 * C, ho, wo), dt)
            h = h0[k]
            c = c0[k].copy()
            for t in range(T):
                # only the recurrent convolution per step (its padded h kept for backward)
                conv2d_forward(h, w_h, no_bias, (1, 1), rpads, (1, 1), rec, keep_h[t])
                convlstm_gates_forward(
                    gates[t].reshape(B, 4 * C, ho * wo), rec.reshape(B, 4 * C, ho * wo), c.reshape(B, C, ho * wo),
                    cprev[t].reshape(B, C, ho * wo), y[t].reshape(B, C, ho * wo), self._approx,
                )  # fmt: skip
                h = y[t]
            hn[k] = h
            cn[k] = c
            cache.append({"x_shape": inp.shape, "stride": stride, "pads": pads, "gates": gates, "cprev": cprev,
                          "keep_x": keep_x, "keep_h": keep_h})  # fmt: skip
            inp = y
        self.state = (hn, cn)
        self._cache = {"layers": cache, "B": B, "T": T, "H": H, "W": W} if self.training else None
        if self.return_sequences:
            return inp.transpose(1, 0, 2, 3, 4).copy()
        return hn[L - 1].copy()

    # -- backward ------------------------------------------------------------------
    def backward(self, dy, dstate=None) -> np.ndarray:
        """Backpropagate through time; accumulate into ``grads``.

        Parameters
        ----------
        dy : ndarray, the shape of the last ``forward`` output
        dstate : tuple (dh_n, dc_n) or None
            Gradient w.r.t. the final state, each (num_layers, B, C, H', W').

        Returns
        -------
        dx : ndarray (B, T, in_channels, H, W). ``self.dstate`` receives the
        gradient w.r.t. the initial state.
        """
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        cache = self._cache
        B, T, H, W = cache["B"], cache["T"], cache["H"], cache["W"]
        ho, wo = self.output_hw(H, W)
        C, L, dt = self.hidden_channels, self.num_layers, self.dtype
        dy = check_array(dy, "dy", self.output_shape(B, T, H, W), dt)
        if dstate is None:
            dhn = np.zeros((L, B, C, ho, wo), dt)
            dcn = np.zeros((L, B, C, ho, wo), dt)
        else:
            dhn, dcn = self._check_state(dstate, B, ho, wo, "dstate")
            dhn = dhn.copy()
        if self.return_sequences:
            dy_tm = np.ascontiguousarray(dy.transpose(1, 0, 2, 3, 4))
        else:
            dy_tm = None
            dhn[L - 1] += dy
        rpads = self._rec_pads()
        no_bias = np.empty(0, dt)
        dh0 = np.empty((L, B, C, ho, wo), dt)
        dc0 = np.empty((L, B, C, ho, wo), dt)
        P = ho * wo
        # the gate buffers become the gate gradients: differentiable once (as PyTorch)
        self._cache = None
        dx = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            gates, cprev, keep_h = lc["gates"], lc["cprev"], lc["keep_h"]
            w_h = self.params[f"weight_h_l{k}"]
            dw_h = self.grads[f"weight_h_l{k}"]
            dh = dhn[k].copy()
            dc = dcn[k].copy()
            dh_prev = np.empty((B, C, ho, wo), dt)
            for t in range(T - 1, -1, -1):
                if dy_tm is not None:
                    dh += dy_tm[t]
                da = gates[t]
                convlstm_gates_backward(
                    da.reshape(B, 4 * C, P), cprev[t].reshape(B, C, P), dh.reshape(B, C, P), dc.reshape(B, C, P),
                    self._approx,
                )  # fmt: skip
                # dW_h += ...; dh_{t-1} = conv^T(dA_t, W_h)
                conv2d_backward(None, w_h, da, (1, 1), rpads, (1, 1), dh_prev, dw_h, no_bias, kept=keep_h[t])
                dh, dh_prev = dh_prev, dh
            dh0[k] = dh
            dc0[k] = dc
            # input convolution: dW_x, db and dx as ONE call over all frames
            Tx, Bx, cin, hi, wi = lc["x_shape"]
            dx = np.empty((T, B, cin, hi, wi), dt)
            db = self.grads[f"bias_l{k}"] if self.bias else no_bias
            conv2d_backward(
                None, self.params[f"weight_x_l{k}"], gates.reshape(T * B, 4 * C, ho, wo), lc["stride"], lc["pads"],
                self.dilation, dx.reshape(T * B, cin, hi, wi), self.grads[f"weight_x_l{k}"], db, kept=lc["keep_x"],
            )  # fmt: skip
            dy_tm = dx
        self.dstate = (dh0, dc0)
        return np.ascontiguousarray(dx.transpose(1, 0, 2, 3, 4))
