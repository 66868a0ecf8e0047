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
* backward: per step only the fused gate derivative dA_t and
  dh_{t-1} = dA_t W_hh; dx, dW_ih, dW_hh and db are one product (one sum)
  each over all steps after the loop.

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
    sigmoid_fast,
    tanh_exact,
    tanh_fast,
)

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def _gates_activate(a, bias, rrow, H, approx):
    """a += rrow + bias (a holds x_t W_ih^T), then sigmoid on i, f, o and tanh on g."""
    for j in range(4 * H):
        a[j] += rrow[j] + bias[j]
    # separate simple loops so that each one vectorises
    if approx:
        for j in range(2 * H):
            a[j] = sigmoid_fast(a[j])
        for j in range(2 * H, 3 * H):
            a[j] = tanh_fast(a[j])
        for j in range(3 * H, 4 * H):
            a[j] = sigmoid_fast(a[j])
    else:
        for j in range(2 * H):
            a[j] = sigmoid_exact(a[j])
        for j in range(2 * H, 3 * H):
            a[j] = tanh_exact(a[j])
        for j in range(3 * H, 4 * H):
            a[j] = sigmoid_exact(a[j])


@njit(**_KW)
def _cell_update(a, h, c, hprev, cprev, tanhc, y, H, approx):
    """c = f*c + i*g; h = o*tanh(c); record what backward needs."""
    for k in range(H):
        cprev[k] = c[k]
        hprev[k] = h[k]
    for k in range(H):
        c[k] = a[H + k] * c[k] + a[k] * a[2 * H + k]
    if approx:
        for k in range(H):
            tanhc[k] = tanh_fast(c[k])
    else:
        for k in range(H):
            tanhc[k] = tanh_exact(c[k])
    for k in range(H):
        h[k] = a[3 * H + k] * tanhc[k]
        y[k] = h[k]


@njit(**_KW)
def lstm_forward(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, approx, y, hprev, cprev, gates, tanhc, hn, cn):
    """Forward of one LSTM direction over a sequence.

    Parameters
    ----------
    x : (T, B, I) input, time-major, C-contiguous.
    w_ih : (4H, I); w_hh : (4H, H); bias : (4H,) = b_ih + b_hh.
    h0, c0 : (B, H) initial state.
    lengths : (B,) int64 valid lengths (all T when there is no padding).
    reverse : run from t = T-1 down to 0.
    approx : use the vectorised rational activations (float32).

    Outputs (written)
    -----------------
    y : (T, B, H) outputs h_t (0 at inactive steps).
    hprev, cprev : (T, B, H) the state each step started from.
    gates : (T, B, 4H) gate activations i, f, g, o (``lstm_backward``
        overwrites them with the gate gradients).
    tanhc : (T, B, H) tanh(c_t).
    hn, cn : (B, H) final state.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    # Input projection of every step at once, (T*B, I) x (I, 4H), written
    # straight into the gates buffer (no extra (T, B, 4H) temporary). BLAS is
    # 2-3x faster on these skinny products with C-contiguous W^T than with
    # the transposed view, so the (small) transposes are copied once.
    np.dot(x.reshape(T * B, I), w_ih.T.copy(), gates.reshape(T * B, 4 * H))
    h = h0.copy()
    c = c0.copy()
    rec = np.empty((B, 4 * H), dtype=x.dtype)
    whh_t = w_hh.T.copy()
    for s in range(T):
        t = T - 1 - s if reverse else s
        np.dot(h, whh_t, rec)
        for b in range(B):
            if t >= lengths[b]:
                # inactive (padding): state passes through, output 0
                for k in range(H):
                    hprev[t, b, k] = h[b, k]
                    cprev[t, b, k] = c[b, k]
                    y[t, b, k] = 0.0
                    tanhc[t, b, k] = 0.0
                for j in range(4 * H):
                    gates[t, b, j] = 0.0
                continue
            a = gates[t, b]
            _gates_activate(a, bias, rec[b], H, approx)
            _cell_update(a, h[b], c[b], hprev[t, b], cprev[t, b], tanhc[t, b], y[t, b], H, approx)
    hn[:, :] = h
    cn[:, :] = c


@njit(**_KW)
def _gates_backward(a, dh, dc, cprev, tanhc, dy, H):
    """Fused derivative of one step for one sequence.

    a: (4H,) gate activations i, f, g, o on entry, dL/da_t on return (each
    k reads its four gates before writing, so in place is safe).
    dh: gradient reaching h_t from later steps (in), dc likewise for c_t;
    on return dc holds the gradient for c_{t-1}.
    """
    da = a
    for k in range(H):
        i = a[k]
        f = a[H + k]
        g = a[2 * H + k]
        o = a[3 * H + k]
        tc = tanhc[k]
        dhk = dh[k] + dy[k]
        dck = dc[k] + dhk * o * (1.0 - tc * tc)
        da[k] = dck * g * i * (1.0 - i)
        da[H + k] = dck * cprev[k] * f * (1.0 - f)
        da[2 * H + k] = dck * i * (1.0 - g * g)
        da[3 * H + k] = dhk * tc * o * (1.0 - o)
        dc[k] = dck * f


@njit(**_KW)
def lstm_backward(
    x,
    w_ih,
    w_hh,
    lengths,
    reverse,
    hprev,
    cprev,
    gates,
    tanhc,
    dy,
    dhn,
    dcn,
    dx_add,
    dx,
    dw_ih,
    dw_hh,
    dbias,
    dh0,
    dc0,
):
    """Backward (BPTT) of one LSTM direction; parameter gradients ACCUMULATE.

    Parameters
    ----------
    x, w_ih, w_hh, lengths, reverse : as in ``lstm_forward``.
    hprev, cprev, tanhc : (T, B, H) saved by ``lstm_forward``.
    gates : (T, B, 4H) saved gate activations; CONSUMED: overwritten in place
        with the gate gradients dA (saves a (T, B, 4H) buffer).
    dy : (T, B, H) gradient of the loss w.r.t. the outputs y.
    dhn, dcn : (B, H) gradient w.r.t. the final state.
    dx_add : False: dx = dL/dx; True: dx += dL/dx (second direction).

    Outputs
    -------
    dx : (T, B, I).
    dw_ih : (4H, I) +=; dw_hh : (4H, H) +=; dbias : (4H,) +=.
    dh0, dc0 : (B, H) = dL/d(initial state) (overwritten).
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    da = gates
    dh = dhn.copy()
    dc = dcn.copy()
    rec = np.empty((B, H), dtype=x.dtype)
    for s in range(T):
        # walk the steps in the opposite order of the forward pass
        t = s if reverse else T - 1 - s
        for b in range(B):
            if t >= lengths[b]:
                # inactive: gates were stored as 0, so da = 0; dh, dc pass through
                continue
            _gates_backward(da[t, b], dh[b], dc[b], cprev[t, b], tanhc[t, b], dy[t, b], H)
        np.dot(da[t], w_hh, rec)
        for b in range(B):
            if t < lengths[b]:
                for k in range(H):
                    dh[b, k] = rec[b, k]
    # one product each over all steps
    da2 = da.reshape(T * B, 4 * H)
    if dx_add:
        dx.reshape(T * B, I)[:, :] += np.dot(da2, w_ih)
    else:
        np.dot(da2, w_ih, dx.reshape(T * B, I))
    dw_ih += np.dot(da2.T, x.reshape(T * B, I))
    dw_hh += np.dot(da2.T, hprev.reshape(T * B, H))
    for r in range(T * B):
        for j in range(4 * H):
            dbias[j] += da2[r, j]
    dh0[:, :] = dh
    dc0[:, :] = dc
