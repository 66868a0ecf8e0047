"""Attention layers: the soft-attention LSTM of "Show, Attend and Tell" and
additive attention pooling over time, plus the doubly stochastic penalty.

The math, its derivation and the schedule: docs/attention.md.
"""

from __future__ import annotations

import numbers

import numpy as np

from numlstm import backend
from numlstm._validation import as_array, check_array, check_bool, check_dtype, check_float, check_int, check_lengths
from numlstm.kernels.cpu.attention import attention_lstm_backward, attention_lstm_forward
from numlstm.layers.base import Layer
from numlstm.layers.conv import device_input


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
    if backend.is_device_array(alpha):
        if alpha.ndim != 3:
            raise ValueError(f"alpha: expected a 3-d array (batch, time, locations) of shape (?, ?, ?), got shape {alpha.shape}")
        if np.dtype(alpha.dtype).kind != "f":
            raise TypeError(f"alpha: expected a float array, got dtype {alpha.dtype}")
        return backend.cuda_kernels().attention.attention_penalty(alpha, check_float(lam, "lam", 0.0))
    alpha = as_array(alpha, "alpha")
    if alpha.ndim != 3:
        raise ValueError(f"alpha: expected a 3-d array (batch, time, locations) of shape (?, ?, ?), got shape {alpha.shape}")
    if alpha.dtype.kind != "f":
        raise TypeError(f"alpha: expected a float array, got dtype {alpha.dtype}")
    lam = check_float(lam, "lam", 0.0)
    r = 1.0 - alpha.sum(axis=1, dtype=np.float64)  # (B, L)
    value = lam * float(np.sum(r * r))
    dalpha = np.broadcast_to((-2.0 * lam * r)[:, None, :], alpha.shape).astype(alpha.dtype)
    return value, dalpha


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
        check = check_array if self.device == "cpu" else device_input
        h = check(state[0], f"{name}[0] (h)", shape, self.dtype, names)
        c = check(state[1], f"{name}[1] (c)", shape, self.dtype, names)
        return h, c

    def _check_inputs(self, a, x, steps):
        """(annotations (B, L, D) or (B, T, L, D), x (B, T, I) or None, T)."""
        D, I = self.feature_size, self.input_size
        check = check_array if self.device == "cpu" else device_input
        arr = a if backend.is_device_array(a) else as_array(a, "a")
        if arr.ndim == 3:
            a = check(arr, "a", (None, None, D), self.dtype, ("batch", "locations", "feature_size"))
        elif arr.ndim == 4:
            a = check(arr, "a", (None, None, None, D), self.dtype, ("batch", "time", "locations", "feature_size"))
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
            x = check(x, "x", want, self.dtype, ("batch", "time", "input_size"))
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
        if self.device != "cpu":
            return self._forward_cuda(a, x, steps, state)
        a_in = a
        a, x, T = self._check_inputs(a, x, steps)
        if a.ndim == 3 and np.may_share_memory(a, a_in):
            # backward reads the annotations: keep a private copy, not the caller's array
            a = a.copy()
        B = a.shape[0]
        L = a.shape[-2]
        D, H, A, I = self.feature_size, self.hidden_size, self.attention_size, self.input_size
        dt = self.dtype
        if state is None:
            h0 = np.zeros((B, H), dt)
            c0 = np.zeros((B, H), dt)
        else:
            h0, c0 = (s[0] for s in self._check_state(state, B))
        P = self.params
        # annotations time-major: (Ta, B, L, D), Ta = 1 for a single map
        a_tm = a[None] if a.ndim == 3 else np.ascontiguousarray(a.transpose(1, 0, 2, 3))
        Ta = a_tm.shape[0]
        # W_a a_i + b for every annotation (and step): ONE product
        p = (a_tm.reshape(-1, D) @ np.ascontiguousarray(P["attn_weight_a"].T)).reshape(Ta, B, L, A)
        p += P["attn_bias"]
        inp = np.empty((T, B, I + D), dt)
        xproj = np.empty((T, B, 4 * H), dt)
        xproj[...] = P["bias_ih"] + P["bias_hh"]
        if I > 0:
            x_tm = x.transpose(1, 0, 2)
            inp[:, :, :I] = x_tm
            # the x part of every step's gates: ONE product
            xproj += (inp[:, :, :I].reshape(T * B, I) @ np.ascontiguousarray(P["weight_ih"][:, :I].T)).reshape(T, B, 4 * H)
        w_rec_t = np.zeros((H, 4 * H + A + 1), dt)
        w_rec_t[:, : 4 * H] = P["weight_hh"].T
        w_rec_t[:, 4 * H : 4 * H + A] = P["attn_weight_h"].T
        if self.gate:
            w_rec_t[:, 4 * H + A] = P["gate_weight"]
            b_gate = P["gate_bias"][0]
        else:
            b_gate = dt.type(0)
        w_iz_t = np.ascontiguousarray(P["weight_ih"][:, I:].T)
        hprev, cprev, tanh_c, y = (np.empty((T, B, H), dt) for _ in range(4))
        gates = np.empty((T, B, 4 * H), dt)
        alpha = np.empty((T, B, L), dt)
        s = np.empty((T, B, L, A), dt)
        beta = np.empty((T, B), dt)
        z = np.empty((T, B, D), dt)
        hn = np.empty((B, H), dt)
        cn = np.empty((B, H), dt)
        attention_lstm_forward(
            a_tm, p, xproj, w_rec_t, w_iz_t, P["attn_v"], b_gate, self.gate, self._approx, h0, c0,
            inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn,
        )  # fmt: skip
        self.state = (hn[None], cn[None])
        self.attention = np.ascontiguousarray(alpha.transpose(1, 0, 2))
        if self.training:
            self._cache = {
                "a": a_tm, "inp": inp, "hprev": hprev, "cprev": cprev, "gates": gates, "tanh_c": tanh_c,
                "alpha": alpha, "s": s, "beta": beta, "z": z, "B": B, "T": T, "L": L, "has_x": I > 0, "single": a.ndim == 3,
            }  # fmt: skip
        else:
            self._cache = None
        if self.return_sequences:
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return hn.copy()

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
        if self.device != "cpu":
            return self._backward_cuda(dy, dstate, dattention)
        if self._cache is None:
            raise _no_cache_error()
        cache = self._cache
        B, T, L = cache["B"], cache["T"], cache["L"]
        D, H, A, I = self.feature_size, self.hidden_size, self.attention_size, self.input_size
        dt = self.dtype
        dy = check_array(dy, "dy", self.output_shape(B, T), dt)
        if dstate is None:
            dhn = np.zeros((B, H), dt)
            dcn = np.zeros((B, H), dt)
        else:
            dhn, dcn = (s[0].copy() for s in self._check_state(dstate, B, "dstate"))
        if dattention is not None:
            dattention = check_array(dattention, "dattention", (B, T, L), dt, ("batch", "time", "locations"))
            dattn = np.ascontiguousarray(dattention.transpose(1, 0, 2))
        else:
            dattn = np.zeros((1, 1, 1), dt)
        if self.return_sequences:
            dy_tm = np.ascontiguousarray(dy.transpose(1, 0, 2))
        else:
            dy_tm = np.zeros((T, B, H), dt)
            dhn += dy
        P, G = self.params, self.grads
        a_tm = cache["a"]
        Ta = a_tm.shape[0]
        w_q = np.zeros((A + 1, H), dt)
        w_q[:A] = P["attn_weight_h"]
        if self.gate:
            w_q[A] = P["gate_weight"]
        dgates = np.empty((T, B, 4 * H), dt)
        dq = np.empty((T, B, A + 1), dt)
        dp = np.zeros((Ta, B, L, A), dt)
        da_ctx = np.zeros((Ta, B, L, D), dt)
        dv = np.zeros(A, dt)
        dh0 = np.empty((B, H), dt)
        dc0 = np.empty((B, H), dt)
        self._cache = None
        attention_lstm_backward(
            a_tm, P["weight_hh"], w_q, np.ascontiguousarray(P["weight_ih"][:, I:]), P["attn_v"], self.gate,
            cache["gates"], cache["cprev"], cache["tanh_c"], cache["alpha"], cache["s"], cache["beta"], cache["z"],
            dy_tm, dattn, dattention is not None, dhn, dcn, dgates, dq, dp, da_ctx, dv, dh0, dc0,
        )  # fmt: skip
        # weight gradients: one product each over all steps
        dg2 = dgates.reshape(T * B, 4 * H)
        dq2 = dq.reshape(T * B, A + 1)
        hp2 = cache["hprev"].reshape(T * B, H)
        G["weight_ih"] += dg2.T @ cache["inp"].reshape(T * B, I + D)
        G["weight_hh"] += dg2.T @ hp2
        db = dg2.sum(axis=0)
        G["bias_ih"] += db
        G["bias_hh"] += db
        dwq = dq2.T @ hp2  # (A + 1, H)
        G["attn_weight_h"] += dwq[:A]
        if self.gate:
            G["gate_weight"] += dwq[A]
            G["gate_bias"] += dq2[:, A].sum()
        G["attn_v"] += dv
        dp2 = dp.reshape(-1, A)
        a2 = a_tm.reshape(-1, D)
        G["attn_weight_a"] += dp2.T @ a2
        G["attn_bias"] += dp2.sum(axis=0)
        da = (da_ctx.reshape(-1, D) + dp2 @ P["attn_weight_a"]).reshape(Ta, B, L, D)
        if cache["has_x"]:
            dx = (dg2 @ P["weight_ih"][:, :I]).reshape(T, B, I)
            self.dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        else:
            self.dx = None
        self.dstate = (dh0[None], dc0[None])
        if cache["single"]:
            return da[0]
        return np.ascontiguousarray(da.transpose(1, 0, 2, 3))

    # -- the GPU path (numlstm.kernels.cuda.attention) -----------------------------------------------
    def _forward_cuda(self, a, x, steps, state):
        """``forward`` on the GPU: the products before the loop, then the whole
        time loop in ONE launch (a block per batch row)."""
        kc = backend.cuda_kernels()
        ka, kg = kc.attention, kc.convlstm
        a_in = a
        a, x, T = self._check_inputs(a, x, steps)
        if a.ndim == 3 and a is a_in and self.training:
            a = device_input(a, "a", a.shape, self.dtype, copy=True)  # backward reads it: not the caller's buffer
        B = a.shape[0]
        L = a.shape[a.ndim - 2]
        D, H, A, I = self.feature_size, self.hidden_size, self.attention_size, self.input_size
        dt = self.dtype
        dev = "cuda"
        if state is None:
            h0 = backend.zeros((B, H), dt, dev)
            c0 = backend.zeros((B, H), dt, dev)
        else:
            h0, c0 = (s[0] for s in self._check_state(state, B))
        P = self.params
        a_tm = a.reshape((1,) + tuple(a.shape)) if a.ndim == 3 else kg.swap01(a)  # (Ta, B, L, D)
        Ta = a_tm.shape[0]
        p = backend.empty((Ta, B, L, A), dt, dev)
        ka.matmul(a_tm.reshape(Ta * B * L, D), P["attn_weight_a"], p.reshape(Ta * B * L, A), trans_b=True, bias=P["attn_bias"])
        inp = backend.empty((T, B, I + D), dt, dev)
        xproj = backend.empty((T, B, 4 * H), dt, dev)
        bsum = backend.empty(4 * H, dt, dev)
        ka.add(P["bias_ih"], P["bias_hh"], bsum)
        x2 = xproj.reshape(T * B, 4 * H)
        if I > 0:
            x_tm = kg.swap01(x)  # (T, B, I)
            kg.copy_channels(x_tm.reshape(T * B, I, 1, 1), 0, inp.reshape(T * B, I + D, 1, 1), 0, I)
            ka.matmul(x_tm.reshape(T * B, I), P["weight_ih"][:, :I], x2, trans_b=True, bias=bsum)
        else:
            ka.fill_rows(bsum, x2)
        w_rec_t = backend.empty((H, 4 * H + A + 1), dt, dev)
        w_b = P["gate_weight"] if self.gate else P["attn_bias"]
        ka.build_w_rec(P["weight_hh"], P["attn_weight_h"], w_b, self.gate, w_rec_t)
        b_gate = P["gate_bias"] if self.gate else backend.zeros(1, dt, dev)
        w_iz_t = backend.empty((D, 4 * H), dt, dev)
        ka.transpose(P["weight_ih"][:, I:], w_iz_t)
        hprev, cprev, tanh_c, y = (backend.empty((T, B, H), dt, dev) for _ in range(4))
        gates = backend.empty((T, B, 4 * H), dt, dev)
        alpha = backend.empty((T, B, L), dt, dev)
        s = backend.empty((T, B, L, A), dt, dev)
        beta = backend.empty((T, B), dt, dev)
        z = backend.empty((T, B, D), dt, dev)
        hn = backend.empty((B, H), dt, dev)
        cn = backend.empty((B, H), dt, dev)
        ka.attention_lstm_forward(
            a_tm, p, xproj, w_rec_t, w_iz_t, P["attn_v"], b_gate, self.gate, self._approx, h0, c0,
            inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn,
        )  # fmt: skip
        self.state = (hn.reshape(1, B, H), cn.reshape(1, B, H))
        self.attention = kg.swap01(alpha)
        if self.training:
            self._cache = {
                "a": a_tm, "inp": inp, "hprev": hprev, "cprev": cprev, "gates": gates, "tanh_c": tanh_c,
                "alpha": alpha, "s": s, "beta": beta, "z": z, "B": B, "T": T, "L": L, "has_x": I > 0, "single": a.ndim == 3,
            }  # fmt: skip
        else:
            self._cache = None
        if self.return_sequences:
            return kg.swap01(y)
        out = backend.empty((B, H), dt, dev)
        out.copy_to_device(hn)
        return out

    def _backward_cuda(self, dy, dstate, dattention):
        """``backward`` on the GPU: the time loop in ONE launch, then every weight
        gradient as one reduction over all steps."""
        if self._cache is None:
            raise _no_cache_error()
        kc = backend.cuda_kernels()
        ka, kg = kc.attention, kc.convlstm
        cache = self._cache
        B, T, L = cache["B"], cache["T"], cache["L"]
        D, H, A, I = self.feature_size, self.hidden_size, self.attention_size, self.input_size
        dt = self.dtype
        dev = "cuda"
        dy = device_input(dy, "dy", self.output_shape(B, T), dt)
        if dstate is None:
            dhn = backend.zeros((B, H), dt, dev)
            dcn = backend.zeros((B, H), dt, dev)
        else:
            dhn, dcn = (s[0] for s in self._check_state(dstate, B, "dstate"))
        if dattention is not None:
            dattention = device_input(dattention, "dattention", (B, T, L), dt, ("batch", "time", "locations"))
            dattn = kg.swap01(dattention)
        else:
            dattn = backend.zeros((1, 1, 1), dt, dev)
        if self.return_sequences:
            dy_tm = kg.swap01(dy)
        else:
            dy_tm = backend.zeros((T, B, H), dt, dev)
            d = backend.empty((B, H), dt, dev)
            ka.add(dhn.reshape(B * H), dy.reshape(B * H), d.reshape(B * H))
            dhn = d
        P, G = self.params, self.grads
        a_tm = cache["a"]
        Ta = a_tm.shape[0]
        w_q = backend.empty((A + 1, H), dt, dev)
        ka.build_w_q(P["attn_weight_h"], P["gate_weight"] if self.gate else P["attn_bias"], self.gate, w_q)
        dgates = backend.empty((T, B, 4 * H), dt, dev)
        dq = backend.empty((T, B, A + 1), dt, dev)
        dp = backend.zeros((Ta, B, L, A), dt, dev)
        da = backend.zeros((Ta, B, L, D), dt, dev)  # da_ctx, then the whole annotations' gradient
        dh0 = backend.empty((B, H), dt, dev)
        dc0 = backend.empty((B, H), dt, dev)
        self._cache = None
        ka.attention_lstm_backward(
            a_tm, P["weight_hh"], w_q, P["weight_ih"][:, I:], P["attn_v"], self.gate,
            cache["gates"], cache["cprev"], cache["tanh_c"], cache["alpha"], cache["s"], cache["beta"], cache["z"],
            dy_tm, dattn, dattention is not None, dhn, dcn, dgates, dq, dp, da, G["attn_v"], dh0, dc0,
        )  # fmt: skip
        # weight gradients: one reduction each over all steps
        dg2 = dgates.reshape(T * B, 4 * H)
        dq2 = dq.reshape(T * B, A + 1)
        hp2 = cache["hprev"].reshape(T * B, H)
        ka.matmul_tn_acc(dg2, cache["inp"].reshape(T * B, I + D), G["weight_ih"])
        ka.matmul_tn_acc(dg2, hp2, G["weight_hh"])
        ka.col_sum(dg2, G["bias_ih"])
        ka.col_sum(dg2, G["bias_hh"])
        ka.matmul_tn_acc(dq2[:, :A], hp2, G["attn_weight_h"])
        if self.gate:
            ka.matmul_tn_acc(dq2[:, A : A + 1], hp2, G["gate_weight"].reshape(1, H))
            ka.col_sum_strided(dq2[:, A : A + 1], G["gate_bias"])
        dp2 = dp.reshape(Ta * B * L, A)
        ka.matmul_tn_acc(dp2, a_tm.reshape(Ta * B * L, D), G["attn_weight_a"])
        ka.col_sum(dp2, G["attn_bias"])
        ka.matmul(dp2, P["attn_weight_a"], da.reshape(Ta * B * L, D), accumulate=True)
        if cache["has_x"]:
            dx = backend.empty((T, B, I), dt, dev)
            ka.matmul(dg2, P["weight_ih"][:, :I], dx.reshape(T * B, I))
            self.dx = kg.swap01(dx)
        else:
            self.dx = None
        self.dstate = (dh0.reshape(1, B, H), dc0.reshape(1, B, H))
        if cache["single"]:
            return da.reshape(B, L, D)
        return kg.swap01(da)

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
        if self.device != "cpu":
            return self._forward_cuda(x, lengths)
        x_in = x
        x = check_array(x, "x", (None, None, self.features), self.dtype, ("batch", "time", "features"))
        B, T, F = x.shape
        A = self.attention_size
        lens = None if lengths is None else check_lengths(lengths, B, T)
        P = self.params
        s = np.tanh((x.reshape(B * T, F) @ np.ascontiguousarray(P["weight"].T)).reshape(B, T, A) + P["bias"])  # (B, T, A)
        e = s @ P["v"]  # (B, T)
        if lens is not None:
            e = np.where(np.arange(T)[None, :] < lens[:, None], e, -np.inf)
        e = e - e.max(axis=1, keepdims=True)
        w = np.exp(e)
        alpha = (w / w.sum(axis=1, keepdims=True)).astype(self.dtype)
        out = np.einsum("bt,btf->bf", alpha, x)
        self.attention = alpha
        if self.training:
            self._cache = (x.copy() if np.may_share_memory(x, x_in) else x, s, alpha)
        else:
            self._cache = None
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
        if self.device != "cpu":
            return self._backward_cuda(dy, dattention)
        if self._cache is None:
            raise _no_cache_error()
        x, s, alpha = self._cache
        B, T, F = x.shape
        A = self.attention_size
        dy = check_array(dy, "dy", (B, F), self.dtype, ("batch", "features"))
        self._cache = None
        dalpha = np.einsum("btf,bf->bt", x, dy)  # (B, T)
        if dattention is not None:
            dalpha = dalpha + check_array(dattention, "dattention", (B, T), self.dtype, ("batch", "time"))
        de = alpha * (dalpha - np.sum(alpha * dalpha, axis=1, keepdims=True))  # softmax; 0 at padded steps
        P, G = self.params, self.grads
        G["v"] += np.einsum("bt,bta->a", de, s)
        du = (de[:, :, None] * P["v"]) * (1.0 - s * s)  # (B, T, A)
        du2 = du.reshape(B * T, A)
        x2 = x.reshape(B * T, F)
        G["weight"] += du2.T @ x2
        G["bias"] += du2.sum(axis=0)
        dx = alpha[:, :, None] * dy[:, None, :] + (du2 @ P["weight"]).reshape(B, T, F)
        return dx.astype(self.dtype, copy=False)

    # -- the GPU path (numlstm.kernels.cuda.attention) -----------------------------------------------
    def _forward_cuda(self, x, lengths):
        ka = backend.cuda_kernels().attention
        x = device_input(x, "x", (None, None, self.features), self.dtype, ("batch", "time", "features"), copy=self.training)
        B, T, F = x.shape
        A = self.attention_size
        lens = None if lengths is None else backend.to_device(check_lengths(lengths, B, T), "cuda")
        P = self.params
        s = backend.empty((B, T, A), self.dtype, "cuda")
        alpha = backend.empty((B, T), self.dtype, "cuda")
        out = backend.empty((B, F), self.dtype, "cuda")
        ka.temporal_attention_forward(x, P["weight"], P["bias"], P["v"], lens, s, alpha, out)
        self.attention = alpha
        self._cache = (x, s, alpha) if self.training else None
        return out

    def _backward_cuda(self, dy, dattention):
        if self._cache is None:
            raise _no_cache_error()
        x, s, alpha = self._cache
        B, T, F = x.shape
        dy = device_input(dy, "dy", (B, F), self.dtype, ("batch", "features"))
        if dattention is not None:
            dattention = device_input(dattention, "dattention", (B, T), self.dtype, ("batch", "time"))
        self._cache = None
        P, G = self.params, self.grads
        dx = backend.empty((B, T, F), self.dtype, "cuda")
        backend.cuda_kernels().attention.temporal_attention_backward(
            x, P["weight"], P["v"], s, alpha, dy, dattention, G["weight"], G["bias"], G["v"], dx
        )
        return dx

    def _to_device_hook(self, device: str) -> None:
        super()._to_device_hook(device)
        self.attention = None
