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

import numpy as np
from numba import njit

from numlstm.kernels.cpu.activations import (
    sigmoid_exact,
    tanh_exact,
    tanh_fast,
)
from numlstm.kernels.cpu.linalg import dot_panels, gemm_nn_tiles, gemm_tn_tiles

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
def lstm_forward_rows(gates, whh_p, mb, bias, h0, c0, lengths, reverse, approx, y, hprev, cprev, hn, cn, b0, b1):
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
    mb : rows per tile of the per-step product; bias : (4H,) = b_ih + b_hh.
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
    H = whh_p.shape[1]
    h = h0[b0:b1].copy()
    c = c0[b0:b1].copy()
    rec = np.empty((b1 - b0, 4 * H), dtype=gates.dtype)
    tile = np.empty((mb, whh_p.shape[2]), dtype=gates.dtype)
    tc = np.empty(H, dtype=gates.dtype)
    sin, sout, shift = _activation_coefficients(H, gates.dtype)
    lens = lengths[b0:b1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        dot_panels(h, whh_p, rec, mb, tile)
        _forward_step(
            t, gates[t, b0:b1], rec, bias, h, c, hprev[t, b0:b1], cprev[t, b0:b1], y[t, b0:b1],
            lens, approx, sin, sout, shift, tc,
        )  # fmt: skip
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
def lstm_backward_rows(gates, whh_p, mb, lengths, reverse, approx, cprev, dy, dhn, dcn, dbias, dh0, dc0, b0, b1):
    """Recurrent part of BPTT for one LSTM direction, batch rows b0:b1.

    Parameters
    ----------
    gates : (T, B, 4H) gate activations saved by ``lstm_forward_rows``;
        CONSUMED: rows b0:b1 are overwritten in place with the gate gradients
        dA_t (saves a (T, B, 4H) buffer), from which the caller then forms
        dx, dW_ih, dW_hh as one product each over all steps.
    whh_p : (P, 4H, nb) W_hh (4H, H) as column panels; mb : rows per tile
    (``dot_panels``); lengths, reverse, approx : as in ``lstm_forward_rows``.
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
        da_t = gates[t, b0:b1]
        _backward_step(t, da_t, dh, dc, cprev[t, b0:b1], dy[t, b0:b1], lens, approx, dbias, tc, tmp)
        # dh_{t-1} = dA_t W_hh; inactive rows pass dh through unchanged
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
