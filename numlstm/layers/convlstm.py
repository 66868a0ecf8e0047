"""ConvLSTM (Shi et al. 2015, optional peepholes, optional bidirectional): the LSTM with convolutional gates.

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

from numlstm import backend
from numlstm._validation import check_array, check_bool, check_dtype, check_int
from numlstm.kernels.cpu.activations import sigmoid_exact, sigmoid_fast, tanh_exact, tanh_fast
from numlstm.kernels.cpu.conv import weight_matrix
from numlstm.layers.base import Layer
from numlstm.layers.conv import ConvGradAcc, _pair, conv2d_backward, conv2d_forward, device_input

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


# -- fused gate kernels ----------------------------------------------------------------------------
@njit(**_KW)
def convlstm_gates_forward(gt, rec, c, cpt, ht, wci, wcf, wco, approx):
    """One step, every sequence and pixel.

    gt: (B, 4C, P) holds conv(x_t, W_x) + b on entry, the activations
    i, f, g, o on return; rec: (B, 4C, P) = conv(h_{t-1}, W_h);
    c: (B, C, P) c_{t-1} on entry, c_t on return; cpt: (B, C, P) receives
    c_{t-1}; ht: (B, C, P) receives h_t. P = H'*W'. wci, wcf, wco: (C, P)
    Hadamard peepholes, or (0, 0) arrays for none::

        i = s(A_i + wci*c_{t-1})  f = s(A_f + wcf*c_{t-1})  g = tanh(A_g)
        c_t = f*c_{t-1} + i*g     o = s(A_o + wco*c_t)      h_t = o*tanh(c_t)

    Written as simple passes with the branches outside the pixel loops, so
    that LLVM vectorises each pass (a single fused loop ran 17x slower).
    """
    B, C4, P = gt.shape
    C = C4 // 4
    peep = wci.shape[0] > 0
    for b in range(B):
        # pre-activations; every gate that does not depend on c is activated here
        for j in range(C4):
            is_g = 2 * C <= j < 3 * C
            if peep and not is_g:
                for p in range(P):
                    gt[b, j, p] = gt[b, j, p] + rec[b, j, p]
                continue
            for p in range(P):
                v = gt[b, j, p] + rec[b, j, p]
                if approx:
                    gt[b, j, p] = tanh_fast(v) if is_g else sigmoid_fast(v)
                else:
                    gt[b, j, p] = tanh_exact(v) if is_g else sigmoid_exact(v)
        if peep:
            for k in range(C):
                for p in range(P):
                    cp = c[b, k, p]
                    vi = gt[b, k, p] + wci[k, p] * cp
                    vf = gt[b, C + k, p] + wcf[k, p] * cp
                    if approx:
                        gt[b, k, p] = sigmoid_fast(vi)
                        gt[b, C + k, p] = sigmoid_fast(vf)
                    else:
                        gt[b, k, p] = sigmoid_exact(vi)
                        gt[b, C + k, p] = sigmoid_exact(vf)
        for k in range(C):
            for p in range(P):
                cpt[b, k, p] = c[b, k, p]
                cn = gt[b, C + k, p] * c[b, k, p] + gt[b, k, p] * gt[b, 2 * C + k, p]
                c[b, k, p] = cn
        if peep:
            for k in range(C):
                for p in range(P):
                    vo = gt[b, 3 * C + k, p] + wco[k, p] * c[b, k, p]
                    gt[b, 3 * C + k, p] = sigmoid_fast(vo) if approx else sigmoid_exact(vo)
        for k in range(C):
            for p in range(P):
                cn = c[b, k, p]
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                ht[b, k, p] = gt[b, 3 * C + k, p] * tc


@njit(**_KW)
def convlstm_gates_backward(at, cpt, dh, dc, wci, wcf, wco, dwci, dwcf, dwco, approx):
    """Fused derivative of one step.

    at: (B, 4C, P) activations i, f, g, o on entry, dL/dA_t on return;
    cpt: (B, C, P) c_{t-1}; dh: (B, C, P) total gradient reaching h_t;
    dc: (B, C, P) gradient reaching c_t from later steps, on return the
    gradient for c_{t-1}. tanh(c_t) is recomputed with the forward's operations.
    wci, wcf, wco: (C, P) peepholes or (0, 0); dwci, dwcf, dwco: (C, P)
    gradients ADDED (summed over batch; the caller sums over time by calling
    once per step), or (0, 0).
    """
    B, C4, P = at.shape
    C = C4 // 4
    peep = wci.shape[0] > 0
    one = at.dtype.type(1)
    for b in range(B):
        if not peep:
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
                    d_c = dc[b, k, p] + d_h * o * (one - tc * tc)
                    at[b, k, p] = d_c * g * i * (one - i)
                    at[b, C + k, p] = d_c * cp * f * (one - f)
                    at[b, 2 * C + k, p] = d_c * i * (one - g * g)
                    at[b, 3 * C + k, p] = d_h * tc * o * (one - o)
                    dc[b, k, p] = d_c * f
            continue
        # peepholes: three passes, each writing one array (so that each vectorises)
        for k in range(C):
            for p in range(P):  # dW_co += dA_o * c_t, before the activations are overwritten
                i = at[b, k, p]
                f = at[b, C + k, p]
                g = at[b, 2 * C + k, p]
                o = at[b, 3 * C + k, p]
                cn = f * cpt[b, k, p] + i * g
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                dwco[k, p] += dh[b, k, p] * tc * o * (one - o) * cn
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
                d_ao = d_h * tc * o * (one - o)
                d_c = dc[b, k, p] + d_h * o * (one - tc * tc) + d_ao * wco[k, p]
                d_ai = d_c * g * i * (one - i)
                d_af = d_c * cp * f * (one - f)
                at[b, k, p] = d_ai
                at[b, C + k, p] = d_af
                at[b, 2 * C + k, p] = d_c * i * (one - g * g)
                at[b, 3 * C + k, p] = d_ao
                dc[b, k, p] = d_c * f + d_ai * wci[k, p] + d_af * wcf[k, p]
        for k in range(C):
            for p in range(P):
                dwci[k, p] += at[b, k, p] * cpt[b, k, p]
            for p in range(P):
                dwcf[k, p] += at[b, C + k, p] * cpt[b, k, p]


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

    def _check_state(self, state, B, ho, wo, name="state"):
        shape = (self.num_layers * self.num_directions, B, self.hidden_channels, ho, wo)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {shape}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_channels", "height'", "width'")
        h = check_array(state[0], f"{name}[0] (h)", shape, self.dtype, names)
        c = check_array(state[1], f"{name}[1] (c)", shape, self.dtype, names)
        return h, c

    def _buffer(self, key, shape, zero: bool = False) -> np.ndarray:
        """A work array kept between calls (as the LSTM's): fresh large
        allocations cost page faults on every call. ``zero``: allocated with
        zeros (the padded 'keep' images, whose border must stay zero: the
        convolution only ever writes their interior). Safe because a new
        forward invalidates the previous cache and nothing returned to the
        caller is a view of these buffers."""
        buf = self._workspace.get(key)
        if buf is None or buf.shape != shape:
            self._workspace.pop(key, None)
            buf = np.zeros(shape, self.dtype) if zero else np.empty(shape, self.dtype)
            self._workspace[key] = buf
        return buf

    def _peepholes(self, k, sfx, P, grads=False):
        src = self.grads if grads else self.params
        if not self.peephole:
            e = np.empty((0, 0), self.dtype)
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
        if self.device != "cpu":
            return self._forward_cuda(x, state)
        names = ("batch", "time", "in_channels", "height", "width")
        x = check_array(x, "x", (None, None, self.in_channels, None, None), self.dtype, names)
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
            h0 = np.zeros((L * D, B, C, ho, wo), dt)
            c0 = np.zeros((L * D, B, C, ho, wo), dt)
        else:
            h0, c0 = self._check_state(state, B, ho, wo)
        training = self.training
        rpads = self._rec_pads()
        rt, rb, rl, rr = rpads
        no_bias = np.empty(0, dt)
        hn = np.empty((L * D, B, C, ho, wo), dt)
        cn = np.empty((L * D, B, C, ho, wo), dt)
        inp = np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))  # time-major (T, B, C_in, H, W)
        ws = self._workspace
        cache = []
        for k in range(L):
            _, _, cin, hi, wi = inp.shape
            stride, pads = self._input_pads(k, hi, wi)
            pt, pb, pl, pr = pads
            keep_x = None
            if training:  # the padded frames, shared by both directions' backward
                keep_x = self._buffer((k, "keep_x"), (T * B, hi + pt + pb, wi + pl + pr, cin), zero=True)
            dirs = []
            ys = []
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                # the input convolution of every frame: ONE call, time folded into the batch
                gates = self._buffer((idx, "gates"), (T, B, 4 * C, ho, wo))
                b = self.params[f"bias_l{k}{sfx}"] if self.bias else no_bias
                conv2d_forward(
                    inp.reshape(T * B, cin, hi, wi), self.params[f"weight_x_l{k}{sfx}"], b, stride, pads,
                    self.dilation, gates.reshape(T * B, 4 * C, ho, wo), keep_x if d == 0 else None, ws,
                )  # fmt: skip
                w_h = self.params[f"weight_h_l{k}{sfx}"]
                wci, wcf, wco = self._peepholes(k, sfx, P)
                y = self._buffer((idx, "y"), (T, B, C, ho, wo))
                cprev = self._buffer((idx, "cprev"), (T, B, C, ho, wo))
                keep_h = self._buffer((idx, "keep_h"), (T, B, ho + rt + rb, wo + rl + rr, C), zero=True) if training else None
                rec = self._buffer((idx, "rec"), (B, 4 * C, ho, wo))
                c = self._buffer((idx, "c"), (B, C, ho, wo))
                c[...] = c0[idx]
                h = h0[idx]
                steps = range(T - 1, -1, -1) if d == 1 else range(T)
                g3, r3, c3 = gates.reshape(T, B, 4 * C, P), rec.reshape(B, 4 * C, P), c.reshape(B, C, P)
                cp3, y3 = cprev.reshape(T, B, C, P), y.reshape(T, B, C, P)
                for t in steps:
                    # only the recurrent convolution per step (its padded h kept for backward);
                    # from a zero initial state (state=None) the first one is exactly 0
                    if state is None and t == steps[0]:
                        rec.fill(0)
                    else:
                        conv2d_forward(h, w_h, no_bias, (1, 1), rpads, (1, 1), rec, None if keep_h is None else keep_h[t], ws)
                    convlstm_gates_forward(g3[t], r3, c3, cp3[t], y3[t], wci, wcf, wco, self._approx)
                    h = y[t]
                hn[idx] = h
                cn[idx] = c
                ys.append(y)
                dirs.append((gates, cprev, keep_h))
            cache.append({"x_shape": inp.shape, "stride": stride, "pads": pads, "keep_x": keep_x, "dirs": dirs})
            inp = ys[0] if D == 1 else np.concatenate(ys, axis=2)
        self.state = (hn, cn)
        self._cache = {"layers": cache, "B": B, "T": T, "H": H, "W": W, "zero_state": state is None} if training else None
        if self.return_sequences:
            return inp.transpose(1, 0, 2, 3, 4).copy()
        top = (L - 1) * D
        return np.concatenate([hn[top + d] for d in range(D)], axis=1)

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
        if self.device != "cpu":
            return self._backward_cuda(dy, dstate)
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        cache = self._cache
        B, T, H, W = cache["B"], cache["T"], cache["H"], cache["W"]
        ho, wo = self.output_hw(H, W)
        C, L, D, dt = self.hidden_channels, self.num_layers, self.num_directions, self.dtype
        dy = check_array(dy, "dy", self.output_shape(B, T, H, W), dt)
        if dstate is None:
            dhn = np.zeros((L * D, B, C, ho, wo), dt)
            dcn = np.zeros((L * D, B, C, ho, wo), dt)
        else:
            dhn, dcn = self._check_state(dstate, B, ho, wo, "dstate")
            dhn = dhn.copy()
        if self.return_sequences:
            dy_tm = np.ascontiguousarray(dy.transpose(1, 0, 2, 3, 4))
        else:
            dy_tm = None
            top = (L - 1) * D
            for d in range(D):
                dhn[top + d] += dy[:, d * C : (d + 1) * C]
        rpads = self._rec_pads()
        no_bias = np.empty(0, dt)
        dh0 = np.empty((L * D, B, C, ho, wo), dt)
        dc0 = np.empty((L * D, B, C, ho, wo), dt)
        P = ho * wo
        ws = self._workspace
        # the gate buffers become the gate gradients: differentiable once (as PyTorch)
        self._cache = None
        dx = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            Tx, Bx, cin, hi, wi = lc["x_shape"]
            dx = np.empty((T, B, cin, hi, wi), dt)
            dx_d = np.empty((T, B, cin, hi, wi), dt) if D == 2 else dx
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                gates, cprev, keep_h = lc["dirs"][d]
                w_h = self.params[f"weight_h_l{k}{sfx}"]
                dw_h = self.grads[f"weight_h_l{k}{sfx}"]
                wci, wcf, wco = self._peepholes(k, sfx, P)
                dwci, dwcf, dwco = self._peepholes(k, sfx, P, grads=True)
                dy_d = None
                if dy_tm is not None:
                    dy_d = dy_tm if D == 1 else dy_tm[:, :, d * C : (d + 1) * C]
                dh = dhn[idx].copy()
                dc = dcn[idx].copy()
                dh_prev = np.empty((B, C, ho, wo), dt)
                w2_h = weight_matrix(w_h)
                acc_h = ConvGradAcc(w_h.shape, dt, ws)  # dW_h collected over the steps, folded once
                g3, cp3 = gates.reshape(T, B, 4 * C, P), cprev.reshape(T, B, C, P)
                steps = range(T) if d == 1 else range(T - 1, -1, -1)
                for t in steps:
                    if dy_d is not None:
                        dh += dy_d[t]
                    convlstm_gates_backward(
                        g3[t], cp3[t], dh.reshape(B, C, P), dc.reshape(B, C, P),
                        wci, wcf, wco, dwci, dwcf, dwco, self._approx,
                    )  # fmt: skip
                    # dW_h += ...; dh_{t-1} = conv^T(dA_t, W_h)
                    # the forward pass's first step (the last here) read h_{t-1} = 0
                    # from a zero initial state: no dW_h term
                    conv2d_backward(
                        None, w_h, gates[t], (1, 1), rpads, (1, 1), dh_prev, dw_h, no_bias, kept=keep_h[t], ws=ws,
                        w2=w2_h, acc=acc_h, need_dw=not (t == steps[-1] and cache["zero_state"]),
                    )  # fmt: skip
                    dh, dh_prev = dh_prev, dh
                acc_h.fold(dw_h, no_bias)
                dh0[idx] = dh
                dc0[idx] = dc
                # input convolution: dW_x, db and dx as ONE call over all frames
                db = self.grads[f"bias_l{k}{sfx}"] if self.bias else no_bias
                out = dx if d == 0 else dx_d
                conv2d_backward(
                    None, self.params[f"weight_x_l{k}{sfx}"], gates.reshape(T * B, 4 * C, ho, wo), lc["stride"],
                    lc["pads"], self.dilation, out.reshape(T * B, cin, hi, wi), self.grads[f"weight_x_l{k}{sfx}"], db,
                    kept=lc["keep_x"], ws=ws,
                )  # fmt: skip
                if d == 1:
                    dx += dx_d
            dy_tm = dx
        self.dstate = (dh0, dc0)
        return np.ascontiguousarray(dx.transpose(1, 0, 2, 3, 4))

    # -- the GPU path (numlstm.kernels.cuda.conv / .convlstm) ----------------------------------------
    def _check_state_cuda(self, state, B, ho, wo, name="state", copy=False):
        shape = (self.num_layers * self.num_directions, B, self.hidden_channels, ho, wo)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {shape}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_channels", "height'", "width'")
        h = device_input(state[0], f"{name}[0] (h)", shape, self.dtype, names, copy=copy)
        c = device_input(state[1], f"{name}[1] (c)", shape, self.dtype, names, copy=copy)
        return h, c

    def _peepholes_cuda(self, k, sfx, P, grads=False):
        if not self.peephole:
            e = backend.empty((0, 0), self.dtype, "cuda")
            return e, e, e
        src = self.grads if grads else self.params
        return tuple(src[f"peephole_{g}_l{k}{sfx}"].reshape(self.hidden_channels, P) for g in "ifo")

    def _forward_cuda(self, x, state):
        """``forward`` on the GPU: the CPU schedule (input convolution of all frames
        at once; per step the recurrent convolution and the fused gate kernel),
        every array on the device."""
        kc = backend.cuda_kernels()
        conv, kg = kc.conv, kc.convlstm
        names = ("batch", "time", "in_channels", "height", "width")
        x = device_input(x, "x", (None, None, self.in_channels, None, None), self.dtype, names)
        B, T, _, H, W = x.shape
        if self.peephole and (H, W) != self.frame_size:
            raise ValueError(
                f"x: expected frames of size frame_size={self.frame_size} (the peepholes are per pixel), "
                f"got shape {x.shape} with frames ({H}, {W})"
            )
        ho, wo = self.output_hw(H, W)
        C, L, D, dt = self.hidden_channels, self.num_layers, self.num_directions, self.dtype
        P = ho * wo
        training = self.training
        if state is None:
            h0 = backend.zeros((L * D, B, C, ho, wo), dt, "cuda")
            c0 = backend.zeros((L * D, B, C, ho, wo), dt, "cuda")
        else:
            h0, c0 = self._check_state_cuda(state, B, ho, wo, copy=training)
        rpads = self._rec_pads()
        no_bias = backend.empty(0, dt, "cuda")
        hn = backend.empty((L * D, B, C, ho, wo), dt, "cuda")
        cn = backend.empty((L * D, B, C, ho, wo), dt, "cuda")
        inp = kg.swap01(x)  # time-major (T, B, C_in, H, W)
        cache = []
        for k in range(L):
            _, _, cin, hi, wi = inp.shape
            stride, pads = self._input_pads(k, hi, wi)
            ys, dirs = [], []
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                # the input convolution of every frame: ONE launch, time folded into the batch
                gates = backend.empty((T, B, 4 * C, ho, wo), dt, "cuda")
                b = self.params[f"bias_l{k}{sfx}"] if self.bias else no_bias
                conv.conv2d_forward(
                    inp.reshape(T * B, cin, hi, wi), self.params[f"weight_x_l{k}{sfx}"], b, stride, pads,
                    self.dilation, gates.reshape(T * B, 4 * C, ho, wo),
                )  # fmt: skip
                w_h = self.params[f"weight_h_l{k}{sfx}"]
                wci, wcf, wco = self._peepholes_cuda(k, sfx, P)
                y = backend.empty((T, B, C, ho, wo), dt, "cuda")
                cprev = backend.empty((T, B, C, ho, wo), dt, "cuda")
                rec = backend.empty((B, 4 * C, ho, wo), dt, "cuda")
                c = backend.empty((B, C, ho, wo), dt, "cuda")
                c.copy_to_device(c0[idx])
                h = h0[idx]
                r3, c3 = rec.reshape(B, 4 * C, P), c.reshape(B, C, P)
                for t in range(T - 1, -1, -1) if d == 1 else range(T):
                    conv.conv2d_forward(h, w_h, no_bias, (1, 1), rpads, (1, 1), rec)
                    kg.convlstm_gates_forward(
                        gates[t].reshape(B, 4 * C, P), r3, c3, cprev[t].reshape(B, C, P), y[t].reshape(B, C, P),
                        wci, wcf, wco, self._approx,
                    )  # fmt: skip
                    h = y[t]
                hn[idx].copy_to_device(h)
                cn[idx].copy_to_device(c)
                ys.append(y)
                dirs.append((gates, cprev, y))
            cache.append({"x": inp, "stride": stride, "pads": pads, "dirs": dirs})
            if D == 1:
                inp = ys[0]
            else:
                inp = backend.empty((T, B, D * C, ho, wo), dt, "cuda")
                for d in range(D):
                    kg.copy_channels(ys[d], 0, inp, d * C, C)
        self.state = (hn, cn)
        self._cache = {"layers": cache, "B": B, "T": T, "H": H, "W": W, "h0": h0} if training else None
        if self.return_sequences:
            return kg.swap01(inp)
        out = backend.empty((B, D * C, ho, wo), dt, "cuda")
        top = (L - 1) * D
        for d in range(D):
            kg.copy_channels(hn[top + d], 0, out, d * C, C)
        return out

    def _backward_cuda(self, dy, dstate):
        """``backward`` on the GPU: per step the fused gate derivative and
        dh_{t-1} = conv^T(dA_t, W_h); after the loop dW_h as one reduction over
        all steps, and dW_x, db, dx of the input convolution over all frames."""
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        kc = backend.cuda_kernels()
        conv, kg = kc.conv, kc.convlstm
        cache = self._cache
        B, T, H, W = cache["B"], cache["T"], cache["H"], cache["W"]
        ho, wo = self.output_hw(H, W)
        C, L, D, dt = self.hidden_channels, self.num_layers, self.num_directions, self.dtype
        P = ho * wo
        dy = device_input(dy, "dy", self.output_shape(B, T, H, W), dt)
        if dstate is None:
            dhn = backend.zeros((L * D, B, C, ho, wo), dt, "cuda")
            dcn = backend.zeros((L * D, B, C, ho, wo), dt, "cuda")
        else:
            dhn, dcn = self._check_state_cuda(dstate, B, ho, wo, "dstate", copy=True)
        if self.return_sequences:
            dy_tm = kg.swap01(dy)  # (T, B, D*C, H', W')
        else:
            dy_tm = None
            top = (L - 1) * D
            for d in range(D):
                kg.copy_channels(dy, d * C, dhn[top + d], 0, C, add=True)
        rpads = self._rec_pads()
        no_bias = backend.empty(0, dt, "cuda")
        dh0 = backend.empty((L * D, B, C, ho, wo), dt, "cuda")
        dc0 = backend.empty((L * D, B, C, ho, wo), dt, "cuda")
        h0 = cache["h0"]
        self._cache = None
        dx = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            x_in = lc["x"]
            _, _, cin, hi, wi = x_in.shape
            dx = backend.empty((T, B, cin, hi, wi), dt, "cuda")
            dx_d = backend.empty((T, B, cin, hi, wi), dt, "cuda") if D == 2 else dx
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                gates, cprev, y = lc["dirs"][d]
                w_h = self.params[f"weight_h_l{k}{sfx}"]
                dw_h = self.grads[f"weight_h_l{k}{sfx}"]
                wci, wcf, wco = self._peepholes_cuda(k, sfx, P)
                dwci, dwcf, dwco = self._peepholes_cuda(k, sfx, P, grads=True)
                dh = backend.empty((B, C, ho, wo), dt, "cuda")
                dh.copy_to_device(dhn[idx])
                dc = backend.empty((B, C, ho, wo), dt, "cuda")
                dc.copy_to_device(dcn[idx])
                dh_prev = backend.empty((B, C, ho, wo), dt, "cuda")
                dc3 = dc.reshape(B, C, P)
                for t in range(T) if d == 1 else range(T - 1, -1, -1):
                    dyt = None if dy_tm is None else dy_tm[t].reshape(B, dy_tm.shape[2], P)
                    kg.convlstm_gates_backward(
                        gates[t].reshape(B, 4 * C, P), cprev[t].reshape(B, C, P), dh.reshape(B, C, P), dc3,
                        wci, wcf, wco, dwci, dwcf, dwco, self._approx, dy=dyt, dy_off=d * C,
                    )  # fmt: skip
                    conv.conv2d_backward_dx(w_h, gates[t], (1, 1), rpads, (1, 1), dh_prev)
                    dh, dh_prev = dh_prev, dh
                dh0[idx].copy_to_device(dh)
                dc0[idx].copy_to_device(dc)
                # dW_h over all steps: h_{t-1} is the previous step's output (h_0 at the first step)
                first, rest_h, rest_g = (0, y[0 : T - 1], gates[1:T]) if d == 0 else (T - 1, y[1:T], gates[0 : T - 1])
                if T > 1:
                    conv.conv2d_backward_dw(
                        rest_h.reshape((T - 1) * B, C, ho, wo), rest_g.reshape((T - 1) * B, 4 * C, ho, wo),
                        (1, 1), rpads, (1, 1), dw_h,
                    )  # fmt: skip
                conv.conv2d_backward_dw(h0[idx], gates[first], (1, 1), rpads, (1, 1), dw_h)
                # input convolution: dW_x, db and dx over all frames at once
                db = self.grads[f"bias_l{k}{sfx}"] if self.bias else no_bias
                out = dx if d == 0 else dx_d
                conv.conv2d_backward(
                    x_in.reshape(T * B, cin, hi, wi), self.params[f"weight_x_l{k}{sfx}"],
                    gates.reshape(T * B, 4 * C, ho, wo), lc["stride"], lc["pads"], self.dilation,
                    out.reshape(T * B, cin, hi, wi), self.grads[f"weight_x_l{k}{sfx}"], db, True,
                )  # fmt: skip
                if d == 1:
                    kg.copy_channels(dx_d, 0, dx, 0, cin, add=True)
            dy_tm = dx
        self.dstate = (dh0, dc0)
        return kg.swap01(dx)
