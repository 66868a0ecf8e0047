"""The LSTM layer: stacked, optionally bidirectional, with variable lengths.

The layer validates, allocates and walks the layers and directions once for
both backends; the work of one layer direction is its backend's driver's
(``numlstm.kernels.cpu.lstm`` or ``numlstm.kernels.cuda.lstm``, the same entry
points with the same arguments), picked once per call with ``backend.driver``.
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm._validation import check_bool, check_dtype, check_float, check_int, check_lengths
from numlstm.layers.base import Layer


class LSTM(Layer):
    r"""Long short-term memory over sequences ``(batch, time, features)``.

    For each layer and direction, with gates stored in the order i, f, g, o::

        a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh     (B, 4H)
        i_t = sigmoid(a_i)   f_t = sigmoid(a_f)   g_t = tanh(a_g)   o_t = sigmoid(a_o)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    Parameters
    ----------
    input_size : int
        Features per time step, I.
    hidden_size : int
        Hidden units, H.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k-1's output.
    bias : bool, default True
        Use ``bias_ih`` and ``bias_hh`` (as PyTorch).
    bidirectional : bool, default False
        Add a reverse direction; outputs are concatenated ``[forward, reverse]``.
    dropout : float in [0, 1), default 0
        Dropout on the outputs of every layer but the last, in training only.
    return_sequences : bool, default True
        ``True``: output every step, ``(B, T, D*H)``. ``False``: the final
        hidden state of the top layer, ``(B, D*H)`` (forward direction's last
        valid step, reverse direction's first step: PyTorch's ``h_n``).
    forget_bias : float, default 0
        Added to the forget-gate slice of ``bias_ih`` at initialisation.
    dtype : np.float32 or np.float64
    seed : int or None
        Seeds the weights and the dropout masks; same seed, same weights.

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight_ih_l{k}`` (4H, I_k), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``
        (4H,), ``bias_hh_l{k}`` (4H,), with suffix ``_reverse`` for the reverse
        direction; exactly PyTorch's ``nn.LSTM`` names, shapes and gate order.
    state : tuple (h_n, c_n)
        Final state after ``forward``, each (num_layers * D, B, H).
    dstate : tuple (dh_0, dc_0)
        Gradient w.r.t. the initial state after ``backward``, same shapes.
    last_plan : LSTMPlan, bool or None
        The schedule the last ``forward`` ran (top layer): on the CPU a
        ``kernels.cpu.lstm.LSTMPlan`` chosen by the planner
        (docs/performance.md, "The plan"), on the GPU True for the
        persistent kernel.

    Notes
    -----
    float32 uses a vectorised rational tanh/sigmoid (max abs error 4.1e-7, see
    docs/lstm_math.md); float64 uses the exact functions.
    """

    recurrent = True
    cuda_support = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        return_sequences: bool = True,
        forget_bias: float = 0.0,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_int(input_size, "input_size", 1)
        self.hidden_size = check_int(hidden_size, "hidden_size", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.bias = check_bool(bias, "bias")
        self.bidirectional = check_bool(bidirectional, "bidirectional")
        self.dropout = check_float(dropout, "dropout", 0.0, 1.0, high_open=True)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.forget_bias = check_float(forget_bias, "forget_bias")
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        if not self.bias and self.forget_bias != 0.0:
            raise ValueError(f"forget_bias: got {self.forget_bias} with bias=False; a forget bias needs bias=True")
        self.num_directions = 2 if self.bidirectional else 1
        # the fast rational activations are accurate to float32 rounding only
        self._approx = self.dtype == np.float32
        self._rng = np.random.default_rng(seed)
        H = self.hidden_size
        bound = 1.0 / np.sqrt(H)
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else H * self.num_directions
            for sfx in self._suffixes():
                shapes = [(f"weight_ih_l{k}{sfx}", (4 * H, in_k)), (f"weight_hh_l{k}{sfx}", (4 * H, H))]
                if self.bias:
                    shapes += [(f"bias_ih_l{k}{sfx}", (4 * H,)), (f"bias_hh_l{k}{sfx}", (4 * H,))]
                for name, shape in shapes:
                    self.params[name] = self._rng.uniform(-bound, bound, shape).astype(self.dtype)
                if self.bias:
                    self.params[f"bias_ih_l{k}{sfx}"][H : 2 * H] += self.dtype.type(self.forget_bias)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        self.last_plan = None
        self.dstate: tuple[np.ndarray, np.ndarray] | None = None
        self._cache = None
        self._workspace: dict = {}

    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    def __repr__(self) -> str:
        return (
            f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}, "
            f"return_sequences={self.return_sequences}, dtype={self.dtype.name})"
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "return_sequences": self.return_sequences,
            "forget_bias": self.forget_bias,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def output_shape(self, batch: int, time: int) -> tuple[int, ...]:
        """Shape of ``forward``'s output for a (batch, time, input_size) input."""
        f = self.num_directions * self.hidden_size
        return (batch, time, f) if self.return_sequences else (batch, f)

    # -- checks --------------------------------------------------------------------
    def _input(self, x, name, shape, names=None):
        """``x`` validated for the layer's device (``backend.check_input``)."""
        return backend.check_input(x, name, shape, self.dtype, names, self.device)

    def _check_state(self, state, B, name="state"):
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {(LD, B, H)}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_size")
        h = self._input(state[0], f"{name}[0] (h)", (LD, B, H), names)
        c = self._input(state[1], f"{name}[1] (c)", (LD, B, H), names)
        return h, c

    # -- forward -------------------------------------------------------------------
    def forward(self, x, state=None, lengths=None) -> np.ndarray:
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : ndarray (B, T, input_size)
            A numpy array on the CPU; on the GPU (after ``to("cuda")``) a host
            or device array.
        state : tuple (h_0, c_0) or None
            Initial state, each (num_layers * D, B, H); zeros when None.
        lengths : sequence of int (B,) or None
            Valid length of each sequence (right padding). Outputs past a
            sequence's length are 0 and its final state is taken at its last
            valid step.

        Returns
        -------
        y : ndarray (B, T, D*H) with ``return_sequences``, else (B, D*H);
        on the device of the layer.
        """
        dev = self.device
        x = self._input(x, "x", (None, None, self.input_size), ("batch", "time", "input_size"))
        B, T, _ = x.shape
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        if state is None:
            h0 = backend.zeros((L * D, B, H), dt, dev)
            c0 = backend.zeros((L * D, B, H), dt, dev)
        else:
            h0, c0 = self._check_state(state, B)
        drv = backend.driver("lstm", dev)
        if lengths is None:
            lens = backend.empty(B, np.int64, dev)
            drv.fill(lens, T)  # on the GPU: filled there, no transfer
        else:
            lens = backend.to_device(check_lengths(lengths, B, T), dev)
        hn = backend.empty((L * D, B, H), dt, dev)
        cn = backend.empty((L * D, B, H), dt, dev)
        inp = backend.empty((T, B, self.input_size), dt, dev)
        drv.swap01(x, inp)  # time-major (T, B, I)
        cache = []
        for k in range(L):
            I_k = inp.shape[2]
            plan = drv.lstm_plan(B, T, I_k, H, dt)
            self.last_plan = plan  # what the driver ran (CPU: an LSTMPlan; CUDA: True for the persistent kernel)
            layer_cache = {"x": inp, "dirs": [], "mask": None, "plan": plan}
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                y, hp, cp = (self._buffer((idx, name), (T, B, H)) for name in ("y", "hp", "cp"))
                gates = self._buffer((idx, "gates"), (T, B, 4 * H))
                drv.lstm_forward_direction(
                    inp.reshape(T * B, I_k), self.params[f"weight_ih_l{k}{sfx}"], self.params[f"weight_hh_l{k}{sfx}"],
                    self._bias(k, sfx, drv), h0[idx], c0[idx], lens, d == 1, gates, y, hp, cp, hn[idx], cn[idx], plan,
                )  # fmt: skip
                outs.append(y)
                layer_cache["dirs"].append((hp, cp, gates))
            if D == 1:
                out = outs[0]
            else:
                out = backend.empty((T, B, D * H), dt, dev)
                for d in range(D):
                    drv.copy_cols(outs[d].reshape(T * B, H), 0, out.reshape(T * B, D * H), d * H, H)
            if self.training and self.dropout > 0.0 and k < L - 1:
                # the mask from the layer's host generator on both devices: same seed, same result
                keep = 1.0 - self.dropout
                mask = backend.to_device((self._rng.random(out.shape) < keep).astype(dt) / dt.type(keep), dev)
                dropped = backend.empty(out.shape, dt, dev)
                drv.multiply(out, mask, dropped)
                out = dropped
                layer_cache["mask"] = mask
            cache.append(layer_cache)
            inp = out
        self.state = (hn, cn)
        self._cache = {"layers": cache, "lengths": lens, "B": B, "T": T} if self.training else None
        if self.return_sequences:
            # always a new array: the caller must own what it gets, never a work buffer
            y = backend.empty((B, T, D * H), dt, dev)
            drv.swap01(inp, y)
            return y
        top = (L - 1) * D
        y = backend.empty((B, D * H), dt, dev)
        for d in range(D):
            drv.copy_cols(hn[top + d], 0, y, d * H, H)
        return y

    def _buffer(self, key, shape):
        """A work array kept between calls: large fresh allocations cost page
        faults on every call (about a quarter of a second per GB here). Safe
        because a new forward invalidates the previous cache, and nothing the
        caller receives is a view of these buffers."""
        buf = self._workspace.get(key)
        if buf is None or tuple(buf.shape) != shape:
            buf = backend.empty(shape, self.dtype, self.device)
            self._workspace[key] = buf
        return buf

    def _bias(self, k, sfx, drv):
        """b_ih + b_hh of layer k (zeros without bias), on the layer's device."""
        bias = backend.empty(4 * self.hidden_size, self.dtype, self.device)
        if self.bias:
            drv.add(self.params[f"bias_ih_l{k}{sfx}"], self.params[f"bias_hh_l{k}{sfx}"], bias)
        else:
            drv.fill(bias, 0.0)
        return bias

    # -- backward ------------------------------------------------------------------
    def backward(self, dy, dstate=None) -> np.ndarray:
        """Backpropagate through time; accumulate into ``grads``.

        Parameters
        ----------
        dy : ndarray, the shape of the last ``forward`` output
            Gradient of the loss w.r.t. that output.
        dstate : tuple (dh_n, dc_n) or None
            Gradient w.r.t. the final state ``self.state``, each
            (num_layers * D, B, H).

        Returns
        -------
        dx : ndarray (B, T, input_size)
            Gradient w.r.t. the input. ``self.dstate`` receives the gradient
            w.r.t. the initial state.
        """
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        dev = self.device
        cache = self._cache
        B, T = cache["B"], cache["T"]
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        dy = self._input(dy, "dy", self.output_shape(B, T))
        drv = backend.driver("lstm", dev)
        dhn = backend.empty((L * D, B, H), dt, dev)
        if dstate is None:
            drv.fill(dhn, 0.0)
            dcn = backend.zeros((L * D, B, H), dt, dev)
        else:
            dh_in, dcn = self._check_state(dstate, B, "dstate")
            drv.copy(dh_in, dhn)
        if self.return_sequences:
            dy_tm = backend.empty((T, B, D * H), dt, dev)
            drv.swap01(dy, dy_tm)
        else:
            dy_tm = backend.zeros((T, B, D * H), dt, dev)
            top = (L - 1) * D
            for d in range(D):
                drv.copy_cols(dy, d * H, dhn[top + d], 0, H, accumulate=True)
        lens = cache["lengths"]
        dh0 = backend.empty((L * D, B, H), dt, dev)
        dc0 = backend.empty((L * D, B, H), dt, dev)
        dbias = backend.empty(4 * H, dt, dev)
        # the kernels overwrite the saved gates with their gradients: this
        # forward pass can be differentiated once (as in PyTorch)
        self._cache = None
        dx = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            x = lc["x"]
            I_k = x.shape[2]
            dx = backend.empty(x.shape, dt, dev)
            for d, sfx in enumerate(self._suffixes()):
                hp, cp, gates = lc["dirs"][d]
                if D == 1:
                    dy_d = dy_tm
                else:
                    dy_d = backend.empty((T, B, H), dt, dev)
                    drv.copy_cols(dy_tm.reshape(T * B, D * H), d * H, dy_d.reshape(T * B, H), 0, H)
                idx = k * D + d
                drv.lstm_backward_direction(
                    x.reshape(T * B, I_k), self.params[f"weight_ih_l{k}{sfx}"], self.params[f"weight_hh_l{k}{sfx}"],
                    lens, d == 1, gates, hp, cp, dy_d, dhn[idx], dcn[idx], d == 1, dx.reshape(T * B, I_k),
                    self.grads[f"weight_ih_l{k}{sfx}"], self.grads[f"weight_hh_l{k}{sfx}"], dbias,
                    dh0[idx], dc0[idx], lc["plan"],
                )  # fmt: skip
                if self.bias:
                    drv.add_into(self.grads[f"bias_ih_l{k}{sfx}"], dbias)
                    drv.add_into(self.grads[f"bias_hh_l{k}{sfx}"], dbias)
            if k > 0:
                mask = cache["layers"][k - 1]["mask"]
                if mask is None:
                    dy_tm = dx
                else:
                    dy_tm = backend.empty(dx.shape, dt, dev)
                    drv.multiply(dx, mask, dy_tm)
        self.dstate = (dh0, dc0)
        dx_out = backend.empty((B, T, self.input_size), dt, dev)
        drv.swap01(dx, dx_out)
        return dx_out
