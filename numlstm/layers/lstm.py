"""The LSTM layer: stacked, optionally bidirectional, with variable lengths."""

from __future__ import annotations

from functools import partial

import numpy as np

from numlstm import backend
from numlstm._threads import num_chunks, product_chunks, run_blocks, single_threaded_blas, split_rows
from numlstm._validation import check_array, check_bool, check_dtype, check_float, check_int, check_lengths
from numlstm.kernels.cpu.linalg import gemm_nn_tiles, pack_panels, small_tiles_nn, small_tiles_tn, tiling
from numlstm.kernels.cpu.lstm import lstm_backward_rows, lstm_forward_rows, lstm_weight_products
from numlstm.layers.base import Layer


def _forward_direction(x, w_ih, w_hh, bias, h0, c0, lens, reverse, approx, gates, y, hp, cp, hn, cn, blocks, nparts):
    """One layer direction: the input projection of all steps as ONE product
    (split into ``nparts`` row blocks), then the time loop per row block
    (``blocks``). Shapes as in ``lstm_forward_rows``; x: (T, B, I).

    With several blocks or parts the caller holds BLAS single-threaded and
    every block runs its products in small-matrix tiles on its own thread:
    mixing in a multi-threaded BLAS call leaves its worker spinning on a core
    that the block threads need (measured: 1.5x slower than serial)."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    g2 = gates.reshape(T * B, gates.shape[2])
    wih_t = np.ascontiguousarray(w_ih.T)
    parts = split_rows(T * B, nparts)
    tiles = small_tiles_nn(max(r1 - r0 for r0, r1 in parts), I, gates.shape[2])
    run_blocks([partial(gemm_nn_tiles, x2[r0:r1], wih_t, 0.0, g2[r0:r1], *tiles) for r0, r1 in parts])
    H = w_hh.shape[1]
    mb, nb = tiling(max(b1 - b0 for b0, b1 in blocks), H, 4 * H)
    args = (gates, pack_panels(w_hh.T, nb), mb, bias, h0, c0, lens, reverse, approx, y, hp, cp, hn, cn)
    run_blocks([partial(lstm_forward_rows, *args, b0, b1) for b0, b1 in blocks])


def _backward_direction(
    x, w_ih, w_hh, lens, reverse, approx, gates, hp, cp, dy, dhn, dcn, dx_add, dx, dw_ih, dw_hh, dbias_parts, dh0, dc0, blocks,
    nparts,
):  # fmt: skip
    """BPTT of one layer direction: the time loop per row block, then dx,
    dW_ih, dW_hh as ONE product each over all steps (split into ``nparts``
    row blocks with per-thread partial sums of the weight gradients).
    ``gates`` is consumed (it becomes dA)."""
    T, B, I = x.shape
    H = w_hh.shape[1]
    mb, nb = tiling(max(b1 - b0 for b0, b1 in blocks), 4 * H, H)
    args = (gates, pack_panels(w_hh, nb), mb, lens, reverse, approx, cp, dy, dhn, dcn)
    run_blocks([partial(lstm_backward_rows, *args, dbias_parts[c], dh0, dc0, b0, b1) for c, (b0, b1) in enumerate(blocks)])
    da2 = gates.reshape(T * B, 4 * H)
    x2 = x.reshape(T * B, I)
    hp2 = hp.reshape(T * B, H)
    dx2 = dx.reshape(T * B, I)
    rows = split_rows(T * B, nparts)
    parts_ih = [dw_ih] + [np.zeros_like(dw_ih) for _ in rows[1:]]
    parts_hh = [dw_hh] + [np.zeros_like(dw_hh) for _ in rows[1:]]
    R = max(r1 - r0 for r0, r1 in rows)
    tiles = (small_tiles_nn(R, 4 * H, I), small_tiles_tn(R, 4 * H, I), small_tiles_tn(R, 4 * H, H))
    beta = 1.0 if dx_add else 0.0
    fns = []
    for c, (r0, r1) in enumerate(rows):
        args = (da2[r0:r1], x2[r0:r1], hp2[r0:r1], w_ih, beta, dx2[r0:r1], parts_ih[c], parts_hh[c])
        fns.append(partial(lstm_weight_products, *args, *tiles))
    run_blocks(fns)
    for p in parts_ih[1:]:
        dw_ih += p
    for p in parts_hh[1:]:
        dw_hh += p


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
    def _check_state(self, state, B, name="state"):
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {(LD, B, H)}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_size")
        h = check_array(state[0], f"{name}[0] (h)", (LD, B, H), self.dtype, names)
        c = check_array(state[1], f"{name}[1] (c)", (LD, B, H), self.dtype, names)
        return h, c

    # -- forward -------------------------------------------------------------------
    def forward(self, x, state=None, lengths=None) -> np.ndarray:
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : ndarray (B, T, input_size)
        state : tuple (h_0, c_0) or None
            Initial state, each (num_layers * D, B, H); zeros when None.
        lengths : sequence of int (B,) or None
            Valid length of each sequence (right padding). Outputs past a
            sequence's length are 0 and its final state is taken at its last
            valid step.

        Returns
        -------
        y : ndarray (B, T, D*H) with ``return_sequences``, else (B, D*H).
        """
        if self.device != "cpu":
            return self._forward_cuda(x, state, lengths)
        x = check_array(x, "x", (None, None, self.input_size), self.dtype, ("batch", "time", "input_size"))
        B, T, _ = x.shape
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        if state is None:
            h0 = np.zeros((L * D, B, H), dt)
            c0 = np.zeros((L * D, B, H), dt)
        else:
            h0, c0 = self._check_state(state, B)
        lens = np.full(B, T, np.int64) if lengths is None else check_lengths(lengths, B, T)

        hn = np.empty((L * D, B, H), dt)
        cn = np.empty((L * D, B, H), dt)
        inp = np.ascontiguousarray(x.transpose(1, 0, 2))  # time-major (T, B, I)
        blocks = self._blocks(B)
        cache = []
        for k in range(L):
            layer_cache = {"x": inp, "dirs": [], "mask": None}
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                w_ih = self.params[f"weight_ih_l{k}{sfx}"]
                w_hh = self.params[f"weight_hh_l{k}{sfx}"]
                bias = self._bias(k, sfx)
                idx = k * D + d
                y, hp, cp = (self._buffer((idx, name), (T, B, H)) for name in ("y", "hp", "cp"))
                gates = self._buffer((idx, "gates"), (T, B, 4 * H))
                nparts = product_chunks(T * B, T * B * 4 * H * max(inp.shape[2], H))
                with single_threaded_blas(len(blocks) > 1 or nparts > 1):
                    _forward_direction(
                        inp, w_ih, w_hh, bias, h0[idx], c0[idx], lens, d == 1, self._approx,
                        gates, y, hp, cp, hn[idx], cn[idx], blocks, nparts,
                    )  # fmt: skip
                outs.append(y)
                layer_cache["dirs"].append((hp, cp, gates))
            out = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            if self.training and self.dropout > 0.0 and k < L - 1:
                keep = 1.0 - self.dropout
                mask = (self._rng.random(out.shape) < keep).astype(dt) / dt.type(keep)
                out = out * mask
                layer_cache["mask"] = mask
            cache.append(layer_cache)
            inp = out
        self.state = (hn, cn)
        self._cache = {"layers": cache, "lengths": lens, "B": B, "T": T} if self.training else None
        if self.return_sequences:
            # always a copy: for B == 1 or T == 1 the transpose of a work buffer
            # is already contiguous, and the caller must own what it gets
            return inp.transpose(1, 0, 2).copy()
        top = (L - 1) * D
        return np.ascontiguousarray(np.concatenate([hn[top + d] for d in range(D)], axis=1))

    def _buffer(self, key, shape) -> np.ndarray:
        """A work array kept between calls: large fresh allocations cost page
        faults on every call (about a quarter of a second per GB here). Safe
        because a new forward invalidates the previous cache, and nothing the
        caller receives is a view of these buffers."""
        buf = self._workspace.get(key)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, self.dtype)
            self._workspace[key] = buf
        return buf

    def _blocks(self, B: int) -> list[tuple[int, int]]:
        """Row blocks of the batch that run the time loop on separate threads."""
        return split_rows(B, num_chunks(B, B * self.hidden_size * 4 * self.hidden_size))

    def _bias(self, k, sfx):
        if not self.bias:
            return np.zeros(4 * self.hidden_size, self.dtype)
        return self.params[f"bias_ih_l{k}{sfx}"] + self.params[f"bias_hh_l{k}{sfx}"]

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
        if self.device != "cpu":
            return self._backward_cuda(dy, dstate)
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        cache = self._cache
        B, T = cache["B"], cache["T"]
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        out_shape = self.output_shape(B, T)
        dy = check_array(dy, "dy", out_shape, dt)
        if dstate is None:
            dhn = np.zeros((L * D, B, H), dt)
            dcn = np.zeros((L * D, B, H), dt)
        else:
            dhn, dcn = self._check_state(dstate, B, "dstate")
            dhn = dhn.copy()
        if self.return_sequences:
            dy_tm = np.ascontiguousarray(dy.transpose(1, 0, 2))
        else:
            dy_tm = np.zeros((T, B, D * H), dt)
            top = (L - 1) * D
            for d in range(D):
                dhn[top + d] += dy[:, d * H : (d + 1) * H]
        lens = cache["lengths"]
        dh0 = np.empty((L * D, B, H), dt)
        dc0 = np.empty((L * D, B, H), dt)
        blocks = self._blocks(B)
        dbias_parts = np.empty((len(blocks), 4 * H), dt)
        # the kernels overwrite the saved gates with their gradients: this
        # forward pass can be differentiated once (as in PyTorch)
        self._cache = None
        for k in range(L - 1, -1, -1):
            lc = cache["layers"][k]
            x = lc["x"]
            dx = np.empty(x.shape, dt)
            for d, sfx in enumerate(self._suffixes()):
                hp, cp, gates = lc["dirs"][d]
                dy_d = dy_tm if D == 1 else np.ascontiguousarray(dy_tm[:, :, d * H : (d + 1) * H])
                idx = k * D + d
                dbias_parts.fill(0)
                nparts = product_chunks(T * B, T * B * 4 * H * max(x.shape[2], H))
                with single_threaded_blas(len(blocks) > 1 or nparts > 1):
                    _backward_direction(
                        x, self.params[f"weight_ih_l{k}{sfx}"], self.params[f"weight_hh_l{k}{sfx}"], lens, d == 1,
                        self._approx, gates, hp, cp, dy_d, dhn[idx], dcn[idx], d == 1, dx,
                        self.grads[f"weight_ih_l{k}{sfx}"], self.grads[f"weight_hh_l{k}{sfx}"], dbias_parts,
                        dh0[idx], dc0[idx], blocks, nparts,
                    )  # fmt: skip
                if self.bias:
                    dbias = dbias_parts.sum(axis=0)
                    self.grads[f"bias_ih_l{k}{sfx}"] += dbias
                    self.grads[f"bias_hh_l{k}{sfx}"] += dbias
            if k > 0:
                mask = cache["layers"][k - 1]["mask"]
                dy_tm = dx if mask is None else dx * mask
        self.dstate = (dh0, dc0)
        return np.ascontiguousarray(dx.transpose(1, 0, 2))

    # -- the CUDA path (numlstm.kernels.cuda.lstm; see docs/gpu.md) ----------------------------------
    def _check_state_cuda(self, state, B, name="state"):
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape {(LD, B, H)}, got {type(state).__name__}")
        names = ("num_layers*num_directions", "batch", "hidden_size")
        h = backend.device_input(state[0], f"{name}[0] (h)", (LD, B, H), self.dtype, names)
        c = backend.device_input(state[1], f"{name}[1] (c)", (LD, B, H), self.dtype, names)
        return h, c

    def _forward_cuda(self, x, state, lengths):
        """``forward`` on the GPU: the same schedule with device arrays; the
        result, the cache and ``self.state`` stay on the device."""
        K = backend.cuda_kernels()
        ew, kl = K.elementwise, K.lstm
        dev = "cuda"
        x = backend.device_input(x, "x", (None, None, self.input_size), self.dtype, ("batch", "time", "input_size"))
        B, T, _ = x.shape
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        if state is None:
            h0 = backend.zeros((L * D, B, H), dt, dev)
            c0 = backend.zeros((L * D, B, H), dt, dev)
        else:
            h0, c0 = self._check_state_cuda(state, B)
        if lengths is None:  # filled on the device: no transfer
            lens = backend.empty(B, np.int64, dev)
            ew.fill(lens, T)
        else:
            lens = backend.to_device(check_lengths(lengths, B, T), dev)
        persistent = kl.use_persistent(B, H)
        self._last_path = "persistent" if persistent else "general"
        hn = backend.empty((L * D, B, H), dt, dev)
        cn = backend.empty((L * D, B, H), dt, dev)
        inp = backend.empty((T, B, self.input_size), dt, dev)
        ew.swap01(x, inp)  # time-major (T, B, I)
        cache = []
        for k in range(L):
            layer_cache = {"x": inp, "dirs": [], "mask": None}
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                idx = k * D + d
                y, hp, cp = (backend.empty((T, B, H), dt, dev) for _ in range(3))
                gates = backend.empty((T, B, 4 * H), dt, dev)
                kl.lstm_forward_direction(
                    inp.reshape(T * B, inp.shape[2]), self.params[f"weight_ih_l{k}{sfx}"],
                    self.params[f"weight_hh_l{k}{sfx}"], self._bias_cuda(k, sfx), h0[idx], c0[idx], lens, d == 1,
                    gates, y, hp, cp, hn[idx], cn[idx], persistent,
                )  # fmt: skip
                outs.append(y)
                layer_cache["dirs"].append((hp, cp, gates))
            if D == 1:
                out = outs[0]
            else:
                out = backend.empty((T, B, D * H), dt, dev)
                for d in range(D):
                    ew.copy_cols(outs[d].reshape(T * B, H), 0, out.reshape(T * B, D * H), d * H, H)
            if self.training and self.dropout > 0.0 and k < L - 1:
                # the mask from the layer's host generator, as on the CPU: same seed, same result
                keep = 1.0 - self.dropout
                mask = backend.to_device((self._rng.random(out.shape) < keep).astype(dt) / dt.type(keep), dev)
                dropped = backend.empty(out.shape, dt, dev)
                ew.multiply(out, mask, dropped)
                out = dropped
                layer_cache["mask"] = mask
            cache.append(layer_cache)
            inp = out
        self.state = (hn, cn)
        self._cache = {"layers": cache, "lengths": lens, "B": B, "T": T, "persistent": persistent} if self.training else None
        if self.return_sequences:
            y = backend.empty((B, T, D * H), dt, dev)
            ew.swap01(inp, y)
            return y
        top = (L - 1) * D
        y = backend.empty((B, D * H), dt, dev)
        for d in range(D):
            ew.copy_cols(hn[top + d], 0, y, d * H, H)
        return y

    def _bias_cuda(self, k, sfx):
        """b_ih + b_hh on the device (zeros without bias)."""
        ew = backend.cuda_kernels().elementwise
        bias = backend.empty(4 * self.hidden_size, self.dtype, "cuda")
        if self.bias:
            ew.add(self.params[f"bias_ih_l{k}{sfx}"], self.params[f"bias_hh_l{k}{sfx}"], bias)
        else:
            ew.fill(bias, 0.0)
        return bias

    def _backward_cuda(self, dy, dstate):
        """``backward`` on the GPU; ``dx`` and ``self.dstate`` are device arrays."""
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        K = backend.cuda_kernels()
        ew, kl = K.elementwise, K.lstm
        dev = "cuda"
        cache = self._cache
        B, T = cache["B"], cache["T"]
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dt = self.dtype
        dy = backend.device_input(dy, "dy", self.output_shape(B, T), dt)
        dhn = backend.empty((L * D, B, H), dt, dev)
        if dstate is None:
            ew.fill(dhn, 0.0)
            dcn = backend.zeros((L * D, B, H), dt, dev)
        else:
            dh_in, dcn = self._check_state_cuda(dstate, B, "dstate")
            ew.copy(dh_in, dhn)
        if self.return_sequences:
            dy_tm = backend.empty((T, B, D * H), dt, dev)
            ew.swap01(dy, dy_tm)
        else:
            dy_tm = backend.zeros((T, B, D * H), dt, dev)
            top = (L - 1) * D
            for d in range(D):
                ew.copy_cols(dy, d * H, dhn[top + d], 0, H, accumulate=True)
        lens = cache["lengths"]
        persistent = cache["persistent"]
        dh0 = backend.empty((L * D, B, H), dt, dev)
        dc0 = backend.empty((L * D, B, H), dt, dev)
        dbias = backend.empty(4 * H, dt, dev)
        self._cache = None  # the gates become their gradients: differentiable once
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
                    ew.copy_cols(dy_tm.reshape(T * B, D * H), d * H, dy_d.reshape(T * B, H), 0, H)
                idx = k * D + d
                kl.lstm_backward_direction(
                    x.reshape(T * B, I_k), self.params[f"weight_ih_l{k}{sfx}"], self.params[f"weight_hh_l{k}{sfx}"],
                    lens, d == 1, gates, hp, cp, dy_d, dhn[idx], dcn[idx], d == 1, dx.reshape(T * B, I_k),
                    self.grads[f"weight_ih_l{k}{sfx}"], self.grads[f"weight_hh_l{k}{sfx}"], dbias,
                    dh0[idx], dc0[idx], persistent,
                )  # fmt: skip
                if self.bias:
                    ew.add_into(self.grads[f"bias_ih_l{k}{sfx}"], dbias)
                    ew.add_into(self.grads[f"bias_hh_l{k}{sfx}"], dbias)
            if k > 0:
                mask = cache["layers"][k - 1]["mask"]
                if mask is None:
                    dy_tm = dx
                else:
                    dy_tm = backend.empty(dx.shape, dt, dev)
                    ew.multiply(dx, mask, dy_tm)
        self.dstate = (dh0, dc0)
        dx_out = backend.empty((B, T, self.input_size), dt, dev)
        ew.swap01(dx, dx_out)
        return dx_out
