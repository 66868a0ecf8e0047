"""Attention layers: the soft-attention LSTM of "Show, Attend and Tell" and
additive attention pooling over time, plus the doubly stochastic penalty.

The layers validate and allocate; the work is done by the attention driver of
their device (``numlstm.backend.driver("attention", device)``:
``numlstm.kernels.cpu.attention`` or ``numlstm.kernels.cuda.attention``, the
same entry points with the same arguments). The math, its derivation and the
schedule: docs/attention.md.
"""

from __future__ import annotations

import numbers

import numpy as np

from numlstm import backend
from numlstm._validation import as_array, check_bool, check_dtype, check_float, check_int, check_lengths
from numlstm.layers.base import Layer


def _no_cache_error() -> RuntimeError:
    return RuntimeError(
        "backward: no forward pass to differentiate; call forward(...) in training mode (layer.train()) before backward(dy)"
    )


def attention_penalty(alpha, lam: float = 1.0) -> tuple[float, np.ndarray]:
    r"""The doubly stochastic attention penalty of Xu et al. (2015), eq. 14.

    ``value = lam * sum_b sum_i (1 - sum_t alpha[b, t, i])^2``: it pushes every
    location to receive, over all steps, a total attention of about 1.

    Parameters
    ----------
    alpha : ndarray (B, T, L)
        Attention weights, e.g. ``AttentionLSTM.attention``.
    lam : float >= 0, default 1
        Weight of the penalty.

    Returns
    -------
    value : float
    dalpha : ndarray (B, T, L), the dtype of ``alpha``
        ``d value / d alpha = -2 lam (1 - sum_t alpha[b, t, i])`` at every t;
        pass it to ``AttentionLSTM.backward(dy, dattention=dalpha)``. A
        device ``alpha`` gives a device ``dalpha`` (and a float value).
    """
    device = backend.device_of(alpha)
    if device == "cpu":
        alpha = as_array(alpha, "alpha")
    if alpha.ndim != 3:
        raise ValueError(f"alpha: expected a 3-d array (batch, time, locations) of shape (?, ?, ?), got shape {alpha.shape}")
    if np.dtype(alpha.dtype).kind != "f":
        raise TypeError(f"alpha: expected a float array, got dtype {alpha.dtype}")
    return backend.driver("attention", device).attention_penalty(alpha, check_float(lam, "lam", 0.0))


class AttentionLSTM(Layer):
    r"""LSTM with soft spatial attention over a feature map (Xu et al. 2015).

    At every step t, with annotations a_ti (i = 0 .. L-1, each of size D)::

        e_ti    = w^T tanh(W_a a_ti + W_h h_{t-1} + b)       scores
        alpha_t = softmax_i(e_t)                              (B, T, L) -> ``attention``
        z_t     = sum_i alpha_ti a_ti                         context (D,)
        beta_t  = sigmoid(w_b . h_{t-1} + b_b)                with ``gate`` (else 1)
        a_t     = W_ih [x_t, beta_t z_t] + b_ih + W_hh h_{t-1} + b_hh
        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a_t's four slices
        c_t     = f c_{t-1} + i g,   h_t = o tanh(c_t)

    ``W_a a_ti + b`` does not depend on t: it is one product for all
    annotations (and all steps, for a sequence of maps) before the time loop.

    Parameters
    ----------
    feature_size : int
        D, the size of one annotation vector (channels of a CNN feature map).
    hidden_size : int
        H.
    attention_size : int
        A, the size of the attention MLP's hidden layer.
    input_size : int, default 0
        I, size of an optional per-step input x_t (e.g. the previous word's
        embedding); 0 means no x.
    gate : bool, default True
        Multiply the context by the gate beta_t (section 4.2.1 of the paper).
    return_sequences : bool, default True
        Output every h_t, (B, T, H); else only the last, (B, H).
    dtype : np.float32 or np.float64
        float32 uses the rational tanh/sigmoid of the LSTM kernels, float64
        the exact functions; exp (softmax) is exact in both.
    seed : int or None
        Same seed, same weights.

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``attn_weight_a`` W_a (A, D), ``attn_weight_h`` W_h (A, H),
        ``attn_bias`` b (A,), ``attn_v`` w (A,); with ``gate``:
        ``gate_weight`` w_b (H,), ``gate_bias`` b_b (1,); the cell in
        ``nn.LSTMCell`` names and gate order: ``weight_ih`` (4H, I + D) whose
        first I columns read x and last D the context, ``weight_hh`` (4H, H),
        ``bias_ih``, ``bias_hh`` (4H,).
    attention : ndarray (B, T, L)
        The attention weights of the last forward pass (rows sum to 1).
    state : tuple (h_n, c_n), each (1, B, H), as a one-layer PyTorch LSTM.
    dstate : tuple (dh_0, dc_0) after ``backward``.
    dx : ndarray (B, T, I) or None
        Gradient w.r.t. the per-step input x after ``backward`` (None
        without x): ``backward`` returns the annotations' gradient.

    Notes
    -----
    The initial state is zero unless given; the paper's initialisation from
    the mean annotation is an MLP the user can put in front (pass its output
    as ``state``).
    """

    recurrent = True
    cuda_support = True

    def __init__(
        self,
        feature_size: int,
        hidden_size: int,
        attention_size: int,
        input_size: int = 0,
        gate: bool = True,
        return_sequences: bool = True,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.feature_size = check_int(feature_size, "feature_size", 1)
        self.hidden_size = check_int(hidden_size, "hidden_size", 1)
        self.attention_size = check_int(attention_size, "attention_size", 1)
        self.input_size = check_int(input_size, "input_size", 0)
        self.gate = check_bool(gate, "gate")
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        self._approx = self.dtype == np.float32
        D, H, A, I = self.feature_size, self.hidden_size, self.attention_size, self.input_size
        rng = np.random.default_rng(seed)

        def uniform(fan_in, shape):
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, shape).astype(self.dtype)

        self.params["attn_weight_a"] = uniform(D, (A, D))
        self.params["attn_weight_h"] = uniform(H, (A, H))
        self.params["attn_bias"] = np.zeros(A, self.dtype)
        self.params["attn_v"] = uniform(A, (A,))
        if self.gate:
            self.params["gate_weight"] = uniform(H, (H,))
            self.params["gate_bias"] = np.zeros(1, self.dtype)
        for name, shape in (
            ("weight_ih", (4 * H, I + D)),
            ("weight_hh", (4 * H, H)),
            ("bias_ih", (4 * H,)),
            ("bias_hh", (4 * H,)),
        ):
            self.params[name] = uniform(H, shape)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        self.dstate: tuple[np.ndarray, np.ndarray] | None = None
        self.attention: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"AttentionLSTM({self.feature_size}, {self.hidden_size}, {self.attention_size}, input_size={self.input_size}, "
            f"gate={self.gate}, return_sequences={self.return_sequences}, dtype={self.dtype.name})"
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "feature_size": self.feature_size,
            "hidden_size": self.hidden_size,
            "attention_size": self.attention_size,
            "input_size": self.input_size,
            "gate": self.gate,
            "return_sequences": self.return_sequences,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def output_shape(self, batch: int, time: int) -> tuple[int, ...]:
        """Shape of ``forward``'s output for ``time`` steps."""
        return (batch, time, self.hidden_size) if self.return_sequences else (batch, self.hidden_size)

    # -- checks --------------------------------------------------------------------
    def _check_state(self, state, B, name="state"):
        shape = (1, B, self.hidden_size)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {shape}, got {type(state).__name__}")
        names = ("num_layers", "batch", "hidden_size")
        h = backend.check_input(state[0], f"{name}[0] (h)", shape, self.dtype, names, self.device)
        c = backend.check_input(state[1], f"{name}[1] (c)", shape, self.dtype, names, self.device)
        return h, c

    def _check_inputs(self, a, x, steps, copy=False):
        """(annotations (B, L, D) or (B, T, L, D), x (B, T, I) or None, T).

        ``copy``: a single map (B, L, D) is returned as a private copy, never
        the caller's buffer (the backward pass reads it)."""
        D, I = self.feature_size, self.input_size
        dev = self.device

        def check(v, name, shape, names, private=False):
            return backend.check_input(v, name, shape, self.dtype, names, dev, private)

        arr = a if backend.is_device_array(a) else as_array(a, "a")
        if arr.ndim == 3:
            a = check(a, "a", (None, None, D), ("batch", "locations", "feature_size"), copy)
        elif arr.ndim == 4:
            a = check(arr, "a", (None, None, None, D), ("batch", "time", "locations", "feature_size"))
        else:
            raise ValueError(
                f"a: expected a 3-d array (batch, locations, feature_size) of shape (?, ?, {D}) or a 4-d array "
                f"(batch, time, locations, feature_size) of shape (?, ?, ?, {D}), got shape {arr.shape}"
            )
        B = a.shape[0]
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
                raise TypeError(f"steps: expected an int >= 1, got {type(steps).__name__} {steps!r}")
            steps = check_int(int(steps), "steps", 1)
        if a.ndim == 4:
            if steps is not None and steps != a.shape[1]:
                raise ValueError(
                    f"steps: got {steps} for a sequence of {a.shape[1]} maps a {a.shape}; expected {a.shape[1]} or None"
                )
            T = a.shape[1]
        elif steps is not None:
            T = steps
        elif x is not None:
            T = None  # x's length, checked below
        else:
            raise ValueError(
                f"steps: required with a single feature map a {a.shape} (batch, locations, feature_size): "
                "pass forward(a, steps=T), or a sequence of maps (batch, time, locations, feature_size)"
            )
        if I == 0:
            if x is not None:
                shape = x.shape if backend.is_device_array(x) else np.shape(x)
                raise ValueError(f"x: the layer has input_size=0 and takes no x, got an array of shape {shape}")
        else:
            if x is None:
                raise ValueError(f"x: expected an array (batch, time, input_size) of shape ({B}, {T}, {I}), got None")
            want = (B, None if T is None else T, I)
            x = check(x, "x", want, ("batch", "time", "input_size"))
            T = x.shape[1]
        return a, x, T

    # -- forward -------------------------------------------------------------------
    def forward(self, a, x=None, steps: int | None = None, state=None) -> np.ndarray:
        """Run ``steps`` attention-LSTM steps.

        Parameters
        ----------
        a : ndarray (B, L, D) or (B, T, L, D)
            One feature map read at every step (then give ``steps`` or ``x``),
            or one map per step.
        x : ndarray (B, T, input_size) or None
            Per-step inputs; required when ``input_size > 0``.
        steps : int or None
            Number of steps T for a single map (default: x's length); must
            match a sequence of maps when given.
        state : tuple (h_0, c_0) or None
            Initial state, each (1, B, H); zeros when None.

        Returns
        -------
        y : ndarray (B, T, H) with ``return_sequences``, else (B, H).
        """
        dev = self.device
        drv = backend.driver("attention", dev)
        a, x, T = self._check_inputs(a, x, steps, copy=self.training)
        B, H = a.shape[0], self.hidden_size
        if state is None:
            h0 = backend.zeros((B, H), self.dtype, dev)
            c0 = backend.zeros((B, H), self.dtype, dev)
        else:
            h0, c0 = (s[0] for s in self._check_state(state, B))
        y, hn, cn, alpha, saved = drv.attention_lstm_forward(
            a, x, T, self.params, self.gate, self._approx, h0, c0, self.return_sequences, self.training
        )
        self.state = (hn.reshape(1, B, H), cn.reshape(1, B, H))
        self.attention = alpha
        self._cache = saved
        return y

    # -- backward ------------------------------------------------------------------
    def backward(self, dy, dstate=None, dattention=None) -> np.ndarray:
        """Backpropagate through time and attention; accumulate into ``grads``.

        Parameters
        ----------
        dy : ndarray, the shape of the last ``forward`` output
        dstate : tuple (dh_n, dc_n), each (1, B, H), or None
            Gradient w.r.t. the final state.
        dattention : ndarray (B, T, L) or None
            Extra gradient w.r.t. the attention weights ``self.attention``,
            e.g. ``attention_penalty(layer.attention, lam)[1]``; it flows
            through the softmax like the rest.

        Returns
        -------
        da : ndarray, the shape of the annotations ``a`` given to forward
            Gradient w.r.t. the annotations. ``self.dx`` receives the gradient
            w.r.t. x (B, T, input_size) when x was given (else None), and
            ``self.dstate`` the gradient w.r.t. the initial state.
        """
        if self._cache is None:
            raise _no_cache_error()
        dev = self.device
        cache = self._cache
        B, T, L = cache["B"], cache["T"], cache["L"]
        H, dt = self.hidden_size, self.dtype
        dy = backend.check_input(dy, "dy", self.output_shape(B, T), dt, device=dev)
        if dstate is None:
            dhn = backend.zeros((B, H), dt, dev)
            dcn = backend.zeros((B, H), dt, dev)
        else:
            dhn, dcn = (s[0] for s in self._check_state(dstate, B, "dstate"))
        if dattention is not None:
            dattention = backend.check_input(dattention, "dattention", (B, T, L), dt, ("batch", "time", "locations"), dev)
        self._cache = None
        da, self.dx, dh0, dc0 = backend.driver("attention", dev).attention_lstm_backward(
            cache, dy, dhn, dcn, dattention, self.params, self.grads, self.gate, self.return_sequences
        )
        self.dstate = (dh0.reshape(1, B, H), dc0.reshape(1, B, H))
        return da

    def _to_device_hook(self, device: str) -> None:
        super()._to_device_hook(device)
        self.attention = None
        self.dx = None


class TemporalAttention(Layer):
    r"""Additive (Bahdanau-style) attention pooling over time.

    For a sequence h_t (t = 0 .. T-1, each of size F)::

        e_t   = v^T tanh(W h_t + b)
        alpha = softmax_t(e)              (B, T) -> ``attention``
        out   = sum_t alpha_t h_t         (B, F)

    With ``lengths``, steps t >= lengths[b] get alpha = 0 (and no gradient).

    Parameters
    ----------
    features : int
        F, the size of each step.
    attention_size : int
        A, the size of the scoring MLP's hidden layer.
    dtype : np.float32 or np.float64
    seed : int or None

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight`` W (A, F), ``bias`` b (A,), ``v`` (A,).
    attention : ndarray (B, T)
        Weights of the last forward pass (rows sum to 1).
    """

    cuda_support = True

    def __init__(self, features: int, attention_size: int, dtype=np.float32, seed: int | None = None) -> None:
        super().__init__()
        self.features = check_int(features, "features", 1)
        self.attention_size = check_int(attention_size, "attention_size", 1)
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        rng = np.random.default_rng(seed)
        F, A = self.features, self.attention_size
        self.params["weight"] = rng.uniform(-1.0 / np.sqrt(F), 1.0 / np.sqrt(F), (A, F)).astype(self.dtype)
        self.params["bias"] = np.zeros(A, self.dtype)
        self.params["v"] = rng.uniform(-1.0 / np.sqrt(A), 1.0 / np.sqrt(A), (A,)).astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.attention: np.ndarray | None = None
        self._cache = None

    def __repr__(self) -> str:
        return f"TemporalAttention({self.features}, {self.attention_size}, dtype={self.dtype.name})"

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {"features": self.features, "attention_size": self.attention_size, "dtype": self.dtype.name, "seed": self.seed}

    def forward(self, x, lengths=None) -> np.ndarray:
        """Pool a batch of sequences.

        Parameters
        ----------
        x : ndarray (B, T, features)
        lengths : sequence of int (B,) or None
            Valid length of each sequence (right padding), in [1, T].

        Returns
        -------
        out : ndarray (B, features)
        """
        dev, dt = self.device, self.dtype
        # backward reads x: in training a private copy, never the caller's buffer
        x = backend.check_input(x, "x", (None, None, self.features), dt, ("batch", "time", "features"), dev, self.training)
        B, T, F = x.shape
        A = self.attention_size
        lens = None if lengths is None else backend.to_device(check_lengths(lengths, B, T), dev)
        P = self.params
        s = backend.empty((B, T, A), dt, dev)
        alpha = backend.empty((B, T), dt, dev)
        out = backend.empty((B, F), dt, dev)
        backend.driver("attention", dev).temporal_attention_forward(x, P["weight"], P["bias"], P["v"], lens, s, alpha, out)
        self.attention = alpha
        self._cache = (x, s, alpha) if self.training else None
        return out

    def backward(self, dy, dattention=None) -> np.ndarray:
        """Accumulate the parameter gradients; return dx.

        Parameters
        ----------
        dy : ndarray (B, features)
        dattention : ndarray (B, T) or None
            Extra gradient w.r.t. ``self.attention``.

        Returns
        -------
        dx : ndarray (B, T, features); 0 at padded steps.
        """
        if self._cache is None:
            raise _no_cache_error()
        x, s, alpha = self._cache
        B, T, F = x.shape
        dev, dt = self.device, self.dtype
        dy = backend.check_input(dy, "dy", (B, F), dt, ("batch", "features"), dev)
        if dattention is not None:
            dattention = backend.check_input(dattention, "dattention", (B, T), dt, ("batch", "time"), dev)
        self._cache = None
        P, G = self.params, self.grads
        dx = backend.empty((B, T, F), dt, dev)
        backend.driver("attention", dev).temporal_attention_backward(
            x, P["weight"], P["v"], s, alpha, dy, dattention, G["weight"], G["bias"], G["v"], dx
        )
        return dx

    def _to_device_hook(self, device: str) -> None:
        super()._to_device_hook(device)
        self.attention = None
