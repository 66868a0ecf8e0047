"""CPU kernels for one LSTM layer direction over a whole sequence.

Notation (gate storage order i, f, g, o, as PyTorch and Keras)::

    a_t = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T        a_t: (B, 4H)
    i_t = sigmoid(a_i)   f_t = sigmoid(a_f)   g_t = tanh(a_g)   o_t = sigmoid(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Schedule (see docs/lstm_math.md):

* forward: the input projection of every time step is one matrix product
  (T*B, I) x (I, 4H); per step only h_{t-1} W_hh^T and one fused pass over the
  four gates and the cell;
* backward: per step only the fused gate derivative dA_t (whose row sum
  feeds db while it is in cache) and dh_{t-1} = dA_t W_hh; dx, dW_ih and
  dW_hh are one product each over all steps after the loop
  (``lstm_weight_products``, in small-matrix BLAS tiles).

Batch rows are independent, so the time loops take a row block ``b0:b1``:
the layer runs blocks on separate threads with no synchronisation between
steps.

All arrays are time-major, ``(T, B, ...)``, so that a step's rows are
contiguous for BLAS. ``reverse`` runs the loop from the last step to the first
(the reverse direction of a bidirectional layer). ``lengths`` gives each
sequence's valid length: a step ``t >= lengths[b]`` is inactive for sequence
``b`` (its state passes through unchanged and its output is 0), which is the
behaviour of a PyTorch PackedSequence for both directions.

Kernels never validate: the layer above does.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
from numba import njit

from numlstm import config
from numlstm._threads import (
    _blas_controllers,
    max_chunks,
    num_chunks,
    product_chunks,
    run_blocks,
    single_threaded_blas,
    split_rows,
)
from numlstm.kernels import plan as _planner
from numlstm.kernels.cpu.activations import (
    sigmoid_exact,
    tanh_exact,
    tanh_fast,
)

# the elementwise entry points the layer's loop uses, the same on both backends' drivers
from numlstm.kernels.cpu.elementwise import add, add_into, copy, copy_cols, fill, multiply, swap01  # noqa: F401
from numlstm.kernels.cpu.linalg import (
    dot_panels,
    gemm_nn_tiles,
    gemm_tn_tiles,
    pack_panels,
    small_tiles_nn,
    small_tiles_tn,
    tiling,
)
from numlstm.kernels.cpu.small import dot_nt

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def _activation_coefficients(H, dtype):
    """Per-gate-column (scale_in, scale_out, shift) so that one loop applies
    sigmoid (0.5 * tanh(0.5 v) + 0.5) to i, f, o and tanh to g."""
    sin = np.empty(4 * H, dtype)
    sout = np.empty(4 * H, dtype)
    shift = np.empty(4 * H, dtype)
    for j in range(4 * H):
        if 2 * H <= j < 3 * H:
            sin[j] = 1.0
            sout[j] = 1.0
            shift[j] = 0.0
        else:
            sin[j] = 0.5
            sout[j] = 0.5
            shift[j] = 0.5
    return sin, sout, shift


@njit(**_KW)
def _forward_step(t, gt, rec, bias, h, c, hpt, cpt, yt, lengths, approx, sin, sout, shift, tc):
    """One time step for every sequence. gt: (B, 4H) holds x_t W_ih^T on entry
    and the gate activations on return; rec: (B, 4H) = h_{t-1} W_hh^T.
    Written with 2-d indexing of per-step views and simple loops: per-row
    array views cost reference counting, and simple loops vectorise."""
    B, H4 = gt.shape
    H = H4 // 4
    for b in range(B):
        if t >= lengths[b]:
            # inactive (padding): state passes through, output 0
            for k in range(H):
                hpt[b, k] = h[b, k]
                cpt[b, k] = c[b, k]
                yt[b, k] = 0.0
            for j in range(H4):
                gt[b, j] = 0.0
            continue
        if approx:
            for j in range(H4):
                gt[b, j] = sout[j] * tanh_fast(sin[j] * (gt[b, j] + rec[b, j] + bias[j])) + shift[j]
        else:
            for j in range(H4):
                v = gt[b, j] + rec[b, j] + bias[j]
                if 2 * H <= j < 3 * H:
                    gt[b, j] = tanh_exact(v)
                else:
                    gt[b, j] = sigmoid_exact(v)
        for k in range(H):
            hpt[b, k] = h[b, k]
            cpt[b, k] = c[b, k]
        for k in range(H):
            c[b, k] = gt[b, H + k] * c[b, k] + gt[b, k] * gt[b, 2 * H + k]
        # tanh(c_t) is not stored: backward recomputes it from the saved
        # gates and c_{t-1} with the same operations, so bit for bit
        if approx:
            for k in range(H):
                tc[k] = tanh_fast(c[b, k])
        else:
            for k in range(H):
                tc[k] = tanh_exact(c[b, k])
        for k in range(H):
            h[b, k] = gt[b, 3 * H + k] * tc[k]
            yt[b, k] = h[b, k]


@njit(**_KW)
def lstm_forward_rows(gates, whh_p, mb, w_own, own, bias, h0, c0, lengths, reverse, approx, y, hprev, cprev, hn, cn, b0, b1):
    """Recurrent part of the forward pass of one LSTM direction, for the
    batch rows b0:b1 (rows are independent: row blocks can run on separate
    threads, with no synchronisation between steps).

    Parameters
    ----------
    gates : (T, B, 4H) holding x_t W_ih^T (the input projection of every
        step, one product done before the time loop);
        on return the gate activations i, f, g, o (``lstm_backward_rows``
        overwrites them with the gate gradients).
    whh_p : (P, H, nb) W_hh^T (H, 4H) as column panels (``dot_panels``);
    mb : rows per tile of the per-step product (both unused with ``own``).
    w_own : (4H, H) W_hh, read with ``own``.
    own : the per-step product by numlstm's own kernel (``small.dot_nt``),
        four rows at a time, each group's gate pass right after its product
        while the pre-activations are in L1; else by BLAS (``dot_panels``).
    bias : (4H,) = b_ih + b_hh.
    h0, c0 : (B, H) initial state.
    lengths : (B,) int64 valid lengths (all T when there is no padding).
    reverse : run from t = T-1 down to 0.
    approx : use the vectorised rational activations (float32).
    b0, b1 : the row block.

    Outputs (rows b0:b1 written)
    ----------------------------
    y : (T, B, H) outputs h_t (0 at inactive steps).
    hprev, cprev : (T, B, H) the state each step started from.
    hn, cn : (B, H) final state.
    """
    T = gates.shape[0]
    H = hn.shape[1]
    R = b1 - b0
    h = h0[b0:b1].copy()
    c = c0[b0:b1].copy()
    rec = np.empty((R, 4 * H), dtype=gates.dtype)
    tile = np.empty((mb, whh_p.shape[2]), dtype=gates.dtype)
    tc = np.empty(H, dtype=gates.dtype)
    sin, sout, shift = _activation_coefficients(H, gates.dtype)
    lens = lengths[b0:b1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        gt, hpt, cpt, yt = gates[t, b0:b1], hprev[t, b0:b1], cprev[t, b0:b1], y[t, b0:b1]
        if own:
            # rows are independent: each group of 4 reads its own h_{t-1} rows
            # before its gate pass overwrites them with h_t
            for r0 in range(0, R, 4):
                r1 = min(R, r0 + 4)
                dot_nt(h[r0:r1], w_own, rec[r0:r1])
                _forward_step(
                    t, gt[r0:r1], rec[r0:r1], bias, h[r0:r1], c[r0:r1], hpt[r0:r1], cpt[r0:r1], yt[r0:r1],
                    lens[r0:r1], approx, sin, sout, shift, tc,
                )  # fmt: skip
            continue
        dot_panels(h, whh_p, rec, mb, tile)
        _forward_step(t, gt, rec, bias, h, c, hpt, cpt, yt, lens, approx, sin, sout, shift, tc)
    hn[b0:b1] = h
    cn[b0:b1] = c


@njit(**_KW)
def _backward_step(t, at, dh, dc, cpt, dyt, lengths, approx, dbias, tc, tmp):
    """Fused derivative of one step for every sequence.

    at: (B, 4H) gate activations i, f, g, o on entry, dL/da_t on return.
    dh: gradient reaching h_t from later steps (in; clobbered); dc likewise
    for c_t, and on return the gradient for c_{t-1}. Inactive rows keep dh,
    dc (their da is already 0: the forward stored zero gates there).
    dbias: (4H,) += the step's da (while it is in cache).
    tc, tmp: (H,) scratch.

    The math is split into simple loops over few arrays, each one updating
    in place at one index: one big loop touching seven arrays at four gate
    offsets needs more run-time alias checks than LLVM allows and stays scalar.
    """
    B, H4 = at.shape
    H = H4 // 4
    for b in range(B):
        if t >= lengths[b]:
            continue
        for k in range(H):
            dh[b, k] += dyt[b, k]
        # tanh(c_t), recomputed exactly as the forward pass computed it
        for k in range(H):
            tc[k] = at[b, H + k] * cpt[b, k] + at[b, k] * at[b, 2 * H + k]
        if approx:
            for k in range(H):
                tc[k] = tanh_fast(tc[k])
        else:
            for k in range(H):
                tc[k] = tanh_exact(tc[k])
        # dc_t = dc + dh * o * (1 - tanh(c)^2); da_o = dh * tanh(c) * o * (1 - o)
        for k in range(H):
            o = at[b, 3 * H + k]
            dc[b, k] += dh[b, k] * o * (1.0 - tc[k] * tc[k])
            at[b, 3 * H + k] = dh[b, k] * tc[k] * o * (1.0 - o)
        # da_i = dc * g * i * (1 - i), kept aside until da_g has read i
        for k in range(H):
            i = at[b, k]
            tmp[k] = dc[b, k] * at[b, 2 * H + k] * i * (1.0 - i)
        # da_g = dc * i * (1 - g^2)
        for k in range(H):
            g = at[b, 2 * H + k]
            at[b, 2 * H + k] = dc[b, k] * at[b, k] * (1.0 - g * g)
        for k in range(H):
            at[b, k] = tmp[k]
        # da_f = dc * c_{t-1} * f * (1 - f); dc_{t-1} = dc * f
        for k in range(H):
            f = at[b, H + k]
            at[b, H + k] = dc[b, k] * cpt[b, k] * f * (1.0 - f)
            dc[b, k] = dc[b, k] * f
        for j in range(H4):
            dbias[j] += at[b, j]


@njit(**_KW)
def lstm_backward_rows(gates, whh_p, mb, w_own, own, lengths, reverse, approx, cprev, dy, dhn, dcn, dbias, dh0, dc0, b0, b1):
    """Recurrent part of BPTT for one LSTM direction, batch rows b0:b1.

    Parameters
    ----------
    gates : (T, B, 4H) gate activations saved by ``lstm_forward_rows``;
        CONSUMED: rows b0:b1 are overwritten in place with the gate gradients
        dA_t (saves a (T, B, 4H) buffer), from which the caller then forms
        dx, dW_ih, dW_hh as one product each over all steps.
    whh_p : (P, 4H, nb) W_hh (4H, H) as column panels; mb : rows per tile
    (``dot_panels``); w_own : (H, 4H) W_hh^T for ``own`` (numlstm's own
    product, four rows at a time right after their gate derivative);
    lengths, reverse, approx : as in ``lstm_forward_rows``.
    cprev : (T, B, H) saved by ``lstm_forward_rows``.
    dy : (T, B, H) gradient of the loss w.r.t. the outputs y.
    dhn, dcn : (B, H) gradient w.r.t. the final state.
    dbias : (4H,) += the bias gradient of these rows (one accumulator per
        row block: no race between threads).

    Outputs
    -------
    dh0, dc0 : (B, H) rows b0:b1 = dL/d(initial state).
    """
    T = gates.shape[0]
    H = cprev.shape[2]
    nb = b1 - b0
    dh = dhn[b0:b1].copy()
    dc = dcn[b0:b1].copy()
    rec = np.empty((nb, H), dtype=gates.dtype)
    tile = np.empty((mb, whh_p.shape[2]), dtype=gates.dtype)
    tmp = np.empty(H, dtype=gates.dtype)
    tc = np.empty(H, dtype=gates.dtype)
    lens = lengths[b0:b1]
    for s in range(T):
        # walk the steps in the opposite order of the forward pass
        t = s if reverse else T - 1 - s
        da_t, cpt, dyt = gates[t, b0:b1], cprev[t, b0:b1], dy[t, b0:b1]
        # dh_{t-1} = dA_t W_hh; inactive rows pass dh through unchanged
        if own:
            for r0 in range(0, nb, 4):
                r1 = min(nb, r0 + 4)
                _backward_step(t, da_t[r0:r1], dh[r0:r1], dc[r0:r1], cpt[r0:r1], dyt[r0:r1], lens[r0:r1], approx, dbias, tc, tmp)
                dot_nt(da_t[r0:r1], w_own, rec[r0:r1])
        else:
            _backward_step(t, da_t, dh, dc, cpt, dyt, lens, approx, dbias, tc, tmp)
            dot_panels(da_t, whh_p, rec, mb, tile)
        for b in range(nb):
            if t < lens[b]:
                for k in range(H):
                    dh[b, k] = rec[b, k]
    dh0[b0:b1] = dh
    dc0[b0:b1] = dc


@njit(**_KW)
def lstm_weight_products(da, x, hp, w_ih, dx_beta, dx, dw_ih, dw_hh, nn, ih, hh):
    """The products of BPTT after the time loop, for a block of rows of all
    steps (time-major rows t*B + b; blocks run on separate threads with
    their own dW accumulators).

    da : (R, 4H) gate gradients dA (from ``lstm_backward_rows``);
    x : (R, I) the layer's input; hp : (R, H) h_{t-1}; w_ih : (4H, I).
    dx : (R, I) = da W_ih + dx_beta * dx (dx_beta 1: the reverse direction
    adds to the forward one's dx). dw_ih (4H, I) += da^T x; dw_hh (4H, H)
    += da^T hp. nn : (mc, nc, kc) tiles of the dx product (``small_tiles_nn``);
    ih, hh : (mc, nc, kc) tiles of the weight products (``small_tiles_tn``).
    """
    gemm_nn_tiles(da, w_ih, dx_beta, dx, nn[0], nn[1], nn[2])
    gemm_tn_tiles(da, x, 1.0, dw_ih, ih[0], ih[1], ih[2])
    gemm_tn_tiles(da, hp, 1.0, dw_hh, hh[0], hh[1], hh[2])


# -- the driver: one layer direction, the same entry points as numlstm.kernels.cuda.lstm --------


@dataclass(frozen=True)
class LSTMPlan:
    """How the CPU driver runs one shape class (``lstm_plan``).

    rec : ``"tiles"`` (per-step products in OpenBLAS small-matrix tiles),
        ``"blas"`` (one BLAS call a step per row block) or ``"own"``
        (numlstm's own kernel, ``small.dot_nt``, with the gate pass fused).
    blocks : row blocks of the batch that run the time loop on separate threads.
    big : ``"tiles"`` or ``"blas"``: the whole-sequence products (input
        projection, dx, dW) in small-matrix tiles or one call per thread.
    """

    rec: str
    blocks: int
    big: str


_REC = ("tiles", "blas", "own")


def _budget(kind: str):
    """The tile budget of a product kind: the config's for tiles, 0 (one call) for blas."""
    return None if kind == "tiles" else 0


def _pow2_bucket(n: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return b


def lstm_plan(B: int, T: int, I: int, H: int, dtype) -> LSTMPlan:
    """The plan for one layer direction of batch B, T steps, I inputs, H units.

    The recurrence (``rec`` and ``blocks``) is chosen per (dtype, B, H), the
    whole-sequence products (``big``) per (dtype, I, H, rows T*B to a power
    of two), by ``numlstm.kernels.plan.choose``: built-in defaults, a plan
    file, or timing on this host.
    """
    dt = np.dtype(dtype)
    n_default = num_chunks(B, B * H * 4 * H)
    splits = [1]
    if B >= 2 and max_chunks() > 1 and _blas_controllers():
        splits.append(min(max_chunks(), B))
    if n_default not in splits:
        splits.append(n_default)
    cands = [f"{k}/{n}" for n in splits for k in _REC]
    forced = config.PLAN_OVERRIDE.get("lstm.rec")
    if forced in _REC:  # a kernel forced without a block count (tests): the default count
        rec = f"{forced}/{n_default}"
    else:
        key = f"{dt.name} B={B} H={H}"
        rec = _planner.choose("lstm.rec", key, cands, f"tiles/{n_default}", partial(_probe_recurrence, B, H, dt))
    kind, n = rec.split("/")
    R = _pow2_bucket(T * B)
    big = _planner.choose(
        "lstm.big", f"{dt.name} R={R} I={I} H={H}", ["tiles", "blas"], "tiles", partial(_probe_products, min(R, 1024), I, H, dt)
    )
    return LSTMPlan(kind, int(n), big)


def _recurrence_forward(plan, gates, w_hh, bias, h0, c0, lengths, reverse, approx, y, hp, cp, hn, cn, blocks):
    """The forward time loop of one direction, per row block on the pool."""
    H = w_hh.shape[1]
    if plan.rec == "own":
        whh_p, mb, w_own = np.zeros((1, 1, 1), w_hh.dtype), 1, w_hh
    else:
        mb, nb = tiling(max(b1 - b0 for b0, b1 in blocks), H, 4 * H, _budget(plan.rec))
        whh_p, w_own = pack_panels(w_hh.T, nb), w_hh
    args = (gates, whh_p, mb, w_own, plan.rec == "own", bias, h0, c0, lengths, reverse, approx, y, hp, cp, hn, cn)
    run_blocks([partial(lstm_forward_rows, *args, b0, b1) for b0, b1 in blocks])


def _recurrence_backward(plan, gates, w_hh, lengths, reverse, approx, cp, dy, dhn, dcn, dbias_parts, dh0, dc0, blocks):
    """The backward time loop of one direction, per row block on the pool
    (``dbias_parts[c]``: block c's bias gradient)."""
    H = w_hh.shape[1]
    if plan.rec == "own":
        whh_p, mb, w_own = np.zeros((1, 1, 1), w_hh.dtype), 1, np.ascontiguousarray(w_hh.T)
    else:
        mb, nb = tiling(max(b1 - b0 for b0, b1 in blocks), 4 * H, H, _budget(plan.rec))
        whh_p, w_own = pack_panels(w_hh, nb), w_hh
    args = (gates, whh_p, mb, w_own, plan.rec == "own", lengths, reverse, approx, cp, dy, dhn, dcn)
    run_blocks([partial(lstm_backward_rows, *args, dbias_parts[c], dh0, dc0, b0, b1) for c, (b0, b1) in enumerate(blocks)])


def _probe_recurrence(B: int, H: int, dt: np.dtype, choice: str) -> float:
    """Seconds per step (forward and backward) of batch B under ``choice`` ("kind/blocks").

    The marginal cost of a step: runs of 1 and of T2 steps (about 8M
    multiply-adds, 3 to 33 steps), each the best of two, and their difference
    over T2 - 1. What a call does once (packing W_hh, waking the pool) drops
    out: it would weigh a few steps T times more than a real sequence does.
    """
    import time

    kind, n = choice.split("/")
    plan = LSTMPlan(kind, int(n), "tiles")
    T2 = int(max(3, min(33, 1 + 8_000_000 // max(1, B * H * 4 * H))))
    rng = np.random.default_rng(0)
    g0 = rng.uniform(-1, 1, (T2, B, 4 * H)).astype(dt)
    w = rng.uniform(-0.1, 0.1, (4 * H, H)).astype(dt)
    bias = np.zeros(4 * H, dt)
    z = np.zeros((B, H), dt)
    y, hp, cp, dy = (np.empty((T2, B, H), dt) for _ in range(4))
    dy[...] = 0.5
    out = [np.empty((B, H), dt) for _ in range(4)]
    gates = np.empty_like(g0)
    blocks = split_rows(B, plan.blocks)
    parts = np.zeros((len(blocks), 4 * H), dt)
    approx = dt == np.float32

    def run(T: int) -> float:
        lens = np.full(B, T, np.int64)
        g = gates[:T]
        t0 = time.perf_counter()
        g[...] = g0[:T]
        with single_threaded_blas(plan.blocks > 1):
            _recurrence_forward(plan, g, w, bias, z, z, lens, False, approx, y[:T], hp[:T], cp[:T], out[0], out[1], blocks)
            _recurrence_backward(plan, g, w, lens, False, approx, cp[:T], dy[:T], z, z, parts, out[2], out[3], blocks)
        return time.perf_counter() - t0

    run(T2)  # compile or load, warm caches
    one = min(run(1), run(1))
    many = min(run(T2), run(T2))
    return max(many - one, 1e-9) / (T2 - 1)


def _probe_products(R: int, I: int, H: int, dt: np.dtype, choice: str) -> float:
    """Seconds of the whole-sequence products on R rows (projection, dx, dW_ih, dW_hh) under ``choice``."""

    rng = np.random.default_rng(0)
    x2 = rng.standard_normal((R, I)).astype(dt)
    hp2 = rng.standard_normal((R, H)).astype(dt)
    w_ih = rng.standard_normal((4 * H, I)).astype(dt)
    g2 = np.empty((R, 4 * H), dt)
    dx2 = np.empty((R, I), dt)
    dw_ih = np.zeros((4 * H, I), dt)
    dw_hh = np.zeros((4 * H, H), dt)
    nparts = product_chunks(R, R * 4 * H * max(I, H))
    plan = LSTMPlan("tiles", 1, choice)

    def run():
        with single_threaded_blas(nparts > 1):
            _project(plan, x2, w_ih, g2, nparts)
            _weight_products(plan, g2, x2, hp2, w_ih, False, dx2, dw_ih, dw_hh, nparts)

    return _planner.best_time(run)


def _project(plan, x2, w_ih, g2, nparts):
    """g2 (T*B, 4H) = x2 (T*B, I) W_ih^T: ONE product, in ``nparts`` row blocks."""
    wih_t = np.ascontiguousarray(w_ih.T)
    parts = split_rows(x2.shape[0], nparts)
    tiles = small_tiles_nn(max(r1 - r0 for r0, r1 in parts), x2.shape[1], g2.shape[1], budget=_budget(plan.big))
    run_blocks([partial(gemm_nn_tiles, x2[r0:r1], wih_t, 0.0, g2[r0:r1], *tiles) for r0, r1 in parts])


def _weight_products(plan, da2, x2, hp2, w_ih, dx_add, dx2, dw_ih, dw_hh, nparts):
    """dx2 (=, or += with ``dx_add``) da2 W_ih; dW_ih += da2^T x2; dW_hh += da2^T hp2:
    ONE product each over all steps, in ``nparts`` row blocks with per-thread
    partial sums of the weight gradients."""
    rows = split_rows(da2.shape[0], nparts)
    parts_ih = [dw_ih] + [np.zeros_like(dw_ih) for _ in rows[1:]]
    parts_hh = [dw_hh] + [np.zeros_like(dw_hh) for _ in rows[1:]]
    R = max(r1 - r0 for r0, r1 in rows)
    H4, I = w_ih.shape
    H = hp2.shape[1]
    b = _budget(plan.big)
    tiles = (small_tiles_nn(R, H4, I, budget=b), small_tiles_tn(R, H4, I, budget=b), small_tiles_tn(R, H4, H, budget=b))
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


def lstm_forward_direction(x2, w_ih, w_hh, bias, h0, c0, lengths, reverse, gates, y, hprev, cprev, hn, cn, plan):
    """Forward pass of one layer direction (the CPU twin of ``kernels.cuda.lstm``'s).

    Parameters
    ----------
    x2 : (T*B, I) time-major input rows; w_ih : (4H, I); w_hh : (4H, H);
    bias : (4H,) = b_ih + b_hh; h0, c0 : (B, H); lengths : (B,) int64;
    reverse : bool; plan : ``lstm_plan(B, T, I, H, dtype)``.

    Outputs
    -------
    gates : (T, B, 4H) gate activations (``lstm_backward_direction`` consumes them);
    y, hprev, cprev : (T, B, H); hn, cn : (B, H) final state.

    The input projection of all steps is ONE product (in row blocks over the
    threads); then the time loop runs per row block of the batch. Where work
    is split over the pool BLAS is held single-threaded and every block calls
    it from its own thread: a multi-threaded BLAS call's worker spins on a
    core that the block threads need (measured: 1.5x slower than serial).
    A time loop in one block keeps BLAS's threads for its per-step products.
    """
    T, B, H4 = gates.shape
    I = x2.shape[1]
    nparts = product_chunks(T * B, T * B * H4 * max(I, H4 // 4))
    blocks = split_rows(B, plan.blocks)
    approx = gates.dtype == np.float32
    # with the loop in row blocks BLAS stays single-threaded for the whole
    # direction: raising its thread count between the phases wakes its
    # workers, which then spin on the cores the blocks need (measured:
    # (16, 50, 32, 64) training step 11.5 ms against 2.0); a loop in one block
    # keeps BLAS's threads for its products
    with single_threaded_blas(plan.blocks > 1 or nparts > 1):
        _project(plan, x2, w_ih, gates.reshape(T * B, H4), nparts)
        if plan.blocks > 1:
            _recurrence_forward(plan, gates, w_hh, bias, h0, c0, lengths, reverse, approx, y, hprev, cprev, hn, cn, blocks)
    if plan.blocks == 1:
        _recurrence_forward(plan, gates, w_hh, bias, h0, c0, lengths, reverse, approx, y, hprev, cprev, hn, cn, blocks)


def lstm_backward_direction(
    x2, w_ih, w_hh, lengths, reverse, gates, hprev, cprev, dy, dhn, dcn, dx_add, dx2, dw_ih, dw_hh, dbias, dh0, dc0, plan
):
    """BPTT of one layer direction (the CPU twin of ``kernels.cuda.lstm``'s).

    Parameters
    ----------
    x2 : (T*B, I); w_ih : (4H, I); w_hh : (4H, H); lengths : (B,) int64;
    gates : (T, B, 4H) saved activations, CONSUMED (become dA);
    hprev, cprev : (T, B, H) saved; dy : (T, B, H); dhn, dcn : (B, H)
    gradients of the final state (read only); dx_add : add into ``dx2``
    instead of writing it; plan : the forward pass's.

    Outputs
    -------
    dx2 : (T*B, I) written or added to; dw_ih (4H, I), dw_hh (4H, H) added to;
    dbias : (4H,) written (the caller adds it to both bias gradients);
    dh0, dc0 : (B, H) gradients of the initial state.
    """
    T, B, H4 = gates.shape
    H = H4 // 4
    I = x2.shape[1]
    blocks = split_rows(B, plan.blocks)
    nparts = product_chunks(T * B, T * B * H4 * max(I, H))
    parts = np.zeros((len(blocks), H4), gates.dtype)
    approx = gates.dtype == np.float32
    if plan.blocks == 1:  # BLAS threads as in the forward pass
        _recurrence_backward(plan, gates, w_hh, lengths, reverse, approx, cprev, dy, dhn, dcn, parts, dh0, dc0, blocks)
    with single_threaded_blas(plan.blocks > 1 or nparts > 1):
        if plan.blocks > 1:
            _recurrence_backward(plan, gates, w_hh, lengths, reverse, approx, cprev, dy, dhn, dcn, parts, dh0, dc0, blocks)
        da2 = gates.reshape(T * B, H4)
        _weight_products(plan, da2, x2, hprev.reshape(T * B, H), w_ih, dx_add, dx2, dw_ih, dw_hh, nparts)
    dbias[...] = parts.sum(axis=0)
