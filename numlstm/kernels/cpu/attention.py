"""CPU kernels and drivers of the soft-attention LSTM (Xu et al. 2015, "Show, Attend and Tell"),
``TemporalAttention`` and the doubly stochastic penalty.

Notation (see docs/attention.md)::

    a_ti   annotation i of the map read at step t          (D,)   i = 0 .. L-1
    p_ti = W_a a_ti + b_a                                   (A,)   one product before the loop
    q_t  = W_h h_{t-1}                                      (A,)
    s_ti = tanh(p_ti + q_t)                                 (A,)
    e_ti = v . s_ti                                                scores
    alpha_t = softmax_i(e_t)                                (L,)
    z_t  = sum_i alpha_ti a_ti                              (D,)   context
    beta_t = sigmoid(w_b . h_{t-1} + b_b)                          gate (1 without gating)
    u_t  = [x_t, beta_t z_t]                                (I + D,)
    A_t  = W_ih u_t + b_ih + b_hh + W_hh h_{t-1}            (4H,)  gates i, f, g, o
    c_t  = f c_{t-1} + i g,   h_t = o tanh(c_t)

Schedule:

* forward: p for every annotation (and for a sequence of maps, every step)
  and the x part of A_t for every step are one product each, done by the
  driver before the loop; per step the three products with h_{t-1}
  (W_hh, W_h, w_b) are ONE product with the concatenated matrix, and the
  context's product with W_iz is the other;
* backward: per step the fused cell derivative dA_t, the attention
  derivative (softmax and tanh) and dh_{t-1} = dA_t W_hh + dQ_t [W_h; w_b];
  the gradients of W_ih, W_hh, W_h, w_b, W_a and dx are one product each
  over all steps after the loop (the driver does those).

The time loops (``attention_lstm_forward_loop``, ``attention_lstm_backward_loop``)
are time-major: ``a`` and ``p`` have a leading axis of 1 (one map read at
every step: Ta = 1) or T (a map per step). The drivers
(``attention_lstm_forward``, ``attention_lstm_backward``,
``temporal_attention_forward``, ``temporal_attention_backward``,
``attention_penalty``) take the layers' batch-major arrays; those of
``numlstm.kernels.cuda.attention`` have the same names and arguments.
Nothing here validates: the layers do.
"""

import numpy as np
from numba import njit

from numlstm.kernels.cpu.activations import sigmoid_exact, sigmoid_fast, tanh_exact, tanh_fast

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_KW)
def attention_lstm_forward_loop(
    a, p, xproj, w_rec_t, w_iz_t, v, b_gate, gate, approx, h0, c0, inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn
):
    """Forward time loop of the attention LSTM.

    Parameters
    ----------
    a : (Ta, B, L, D) annotations; Ta = 1 (one map for all steps) or T.
    p : (Ta, B, L, A) = a W_a^T + b_a (one product, done by the driver).
    xproj : (T, B, 4H) = x_t W_ix^T + b_ih + b_hh (only the biases without x).
    w_rec_t : (H, 4H + A + 1) = [W_hh^T | W_h^T | w_b]: the products of
        h_{t-1} needed by a step, in one.
    w_iz_t : (D, 4H) = W_iz^T, the context columns of W_ih, transposed.
    v : (A,) score vector; b_gate : gate bias (scalar); gate : use beta.
    approx : rational tanh/sigmoid (float32); exact functions otherwise.
    h0, c0 : (B, H) initial state.

    Outputs
    -------
    inp : (T, B, I + D) whose first I columns hold x (set by the caller);
        columns I: receive the gated context beta_t z_t.
    hprev, cprev : (T, B, H) the state each step started from.
    gates : (T, B, 4H) gate activations i, f, g, o.
    tanh_c : (T, B, H) tanh(c_t).
    alpha : (T, B, L) attention weights; s : (T, B, L, A) tanh(p + q).
    beta : (T, B) gate values (1 without gating); z : (T, B, D) context.
    y : (T, B, H) outputs h_t; hn, cn : (B, H) final state.
    """
    T, B, H4 = xproj.shape
    H = H4 // 4
    Ta, _, L, D = a.shape
    A = v.shape[0]
    I = inp.shape[2] - D
    dt = xproj.dtype
    h = h0.copy()
    c = c0.copy()
    rec = np.empty((B, H4 + A + 1), dt)
    zg = np.empty((B, D), dt)
    zin = np.empty((B, H4), dt)
    e = np.empty(L, dt)
    for t in range(T):
        ta = 0 if Ta == 1 else t
        # [h W_hh^T | h W_h^T | h . w_b]: every product with h_{t-1} at once
        np.dot(h, w_rec_t, rec)
        for b in range(B):
            # scores e_i = v . tanh(p_i + q)
            for i in range(L):
                e[i] = 0.0
                for k in range(A):
                    u = p[ta, b, i, k] + rec[b, H4 + k]
                    sv = tanh_fast(u) if approx else tanh_exact(u)
                    s[t, b, i, k] = sv
                    e[i] += v[k] * sv
            # softmax, shifted by the maximum so exp cannot overflow
            emax = e[0]
            for i in range(1, L):
                if e[i] > emax:
                    emax = e[i]
            total = 0.0
            for i in range(L):
                e[i] = np.exp(e[i] - emax)
                total += e[i]
            for i in range(L):
                alpha[t, b, i] = e[i] / total
            # context z = sum_i alpha_i a_i
            for d in range(D):
                z[t, b, d] = 0.0
            for i in range(L):
                al = alpha[t, b, i]
                for d in range(D):
                    z[t, b, d] += al * a[ta, b, i, d]
            if gate:
                g_pre = rec[b, H4 + A] + b_gate
                bt = sigmoid_fast(g_pre) if approx else sigmoid_exact(g_pre)
            else:
                bt = 1.0
            beta[t, b] = bt
            for d in range(D):
                zg[b, d] = bt * z[t, b, d]
                inp[t, b, I + d] = zg[b, d]
        np.dot(zg, w_iz_t, zin)
        # the LSTM cell on [x_t, beta_t z_t]
        for b in range(B):
            for j in range(H4):
                pre = xproj[t, b, j] + zin[b, j] + rec[b, j]
                if 2 * H <= j < 3 * H:
                    gates[t, b, j] = tanh_fast(pre) if approx else tanh_exact(pre)
                else:
                    gates[t, b, j] = sigmoid_fast(pre) if approx else sigmoid_exact(pre)
            for k in range(H):
                hprev[t, b, k] = h[b, k]
                cprev[t, b, k] = c[b, k]
                c[b, k] = gates[t, b, H + k] * c[b, k] + gates[t, b, k] * gates[t, b, 2 * H + k]
                tc = tanh_fast(c[b, k]) if approx else tanh_exact(c[b, k])
                tanh_c[t, b, k] = tc
                h[b, k] = gates[t, b, 3 * H + k] * tc
                y[t, b, k] = h[b, k]
    hn[:] = h
    cn[:] = c


@njit(**_KW)
def attention_lstm_backward_loop(
    a, w_hh, w_q, w_iz, v, gate, gates, cprev, tanh_c, alpha, s, beta, z, dy, dattn, has_dattn, dhn, dcn,
    dgates, dq, dp, da_ctx, dv, dh0, dc0,
):  # fmt: skip
    """Backward time loop (exact BPTT through the cell, the gate, the context
    and the softmax attention).

    Parameters
    ----------
    a : (Ta, B, L, D) annotations, as in the forward pass.
    w_hh : (4H, H); w_q : (A + 1, H) = [W_h; w_b] (last row 0 without gating);
    w_iz : (4H, D) the context columns of W_ih; v : (A,).
    gate : gating on; gates, cprev, tanh_c, alpha, s, beta, z : saved by
        ``attention_lstm_forward_loop``.
    dy : (T, B, H) gradient w.r.t. the outputs.
    dattn : (T, B, L) extra gradient w.r.t. alpha (e.g. from the doubly
        stochastic penalty), read when ``has_dattn``.
    dhn, dcn : (B, H) gradient w.r.t. the final state.

    Outputs
    -------
    dgates : (T, B, 4H) dL/dA_t (pre-activation gates).
    dq : (T, B, A + 1) [dL/dq_t | dL/d(gate pre-activation)]: with hprev,
        the caller forms dW_h and dw_b as one product over all steps.
    dp : (Ta, B, L, A) += dL/dp (summed over steps for a single map); the
        caller forms dW_a, db_a and the annotations' gradient through p.
    da_ctx : (Ta, B, L, D) += the annotations' gradient through the context.
    dv : (A,) += dL/dv.
    dh0, dc0 : (B, H) gradient w.r.t. the initial state.
    """
    T, B, H4 = dgates.shape
    H = H4 // 4
    Ta, _, L, D = a.shape
    A = v.shape[0]
    dt = dgates.dtype
    dh = dhn.copy()
    dc = dcn.copy()
    dzg = np.empty((B, D), dt)
    dz = np.empty(D, dt)
    dal = np.empty(L, dt)
    rec = np.empty((B, H), dt)
    rec_q = np.empty((B, H), dt)
    for t in range(T - 1, -1, -1):
        ta = 0 if Ta == 1 else t
        # the cell: dA_t, and dc becomes dL/dc_{t-1}
        for b in range(B):
            for k in range(H):
                dhk = dh[b, k] + dy[t, b, k]
                i = gates[t, b, k]
                f = gates[t, b, H + k]
                g = gates[t, b, 2 * H + k]
                o = gates[t, b, 3 * H + k]
                tc = tanh_c[t, b, k]
                dck = dc[b, k] + dhk * o * (1.0 - tc * tc)
                dgates[t, b, k] = dck * g * i * (1.0 - i)
                dgates[t, b, H + k] = dck * cprev[t, b, k] * f * (1.0 - f)
                dgates[t, b, 2 * H + k] = dck * i * (1.0 - g * g)
                dgates[t, b, 3 * H + k] = dhk * tc * o * (1.0 - o)
                dc[b, k] = dck * f
        # dL/d(beta z) = dA_t W_iz
        np.dot(dgates[t], w_iz, dzg)
        for b in range(B):
            bt = beta[t, b]
            if gate:
                dbeta = 0.0
                for d in range(D):
                    dbeta += dzg[b, d] * z[t, b, d]
                dq[t, b, A] = dbeta * bt * (1.0 - bt)
            else:
                dq[t, b, A] = 0.0
            for d in range(D):
                dz[d] = bt * dzg[b, d]
            # z = sum_i alpha_i a_i: dalpha_i = dz . a_i, da_i += alpha_i dz
            for i in range(L):
                dal[i] = dattn[t, b, i] if has_dattn else 0.0
                al = alpha[t, b, i]
                for d in range(D):
                    dal[i] += dz[d] * a[ta, b, i, d]
                    da_ctx[ta, b, i, d] += al * dz[d]
            # softmax: de_i = alpha_i (dalpha_i - sum_j alpha_j dalpha_j)
            sdot = 0.0
            for i in range(L):
                sdot += alpha[t, b, i] * dal[i]
            for k in range(A):
                dq[t, b, k] = 0.0
            for i in range(L):
                de = alpha[t, b, i] * (dal[i] - sdot)
                # e_i = v . s_i, s_i = tanh(p_i + q)
                for k in range(A):
                    sv = s[t, b, i, k]
                    dv[k] += de * sv
                    du = de * v[k] * (1.0 - sv * sv)
                    dp[ta, b, i, k] += du
                    dq[t, b, k] += du
        # dh_{t-1} = dA_t W_hh + [dq_t | dgate_t] [W_h; w_b]
        np.dot(dgates[t], w_hh, rec)
        np.dot(dq[t], w_q, rec_q)
        for b in range(B):
            for k in range(H):
                dh[b, k] = rec[b, k] + rec_q[b, k]
    dh0[:] = dh
    dc0[:] = dc


# -- the drivers (numlstm.kernels.cuda.attention has the same entry points) ------------------------
def attention_lstm_forward(a, x, T, params, gate, approx, h0, c0, return_sequences, training):
    """The attention LSTM over T steps: the products before the loop, the time loop.

    a: (B, L, D) one map read at every step, or (B, T, L, D); kept for the
    backward pass when ``training`` (the caller passes its own copy). x:
    (B, T, I) or None (I = 0). params: the layer's arrays by name
    (``attn_weight_a``, ``attn_weight_h``, ``attn_bias``, ``attn_v``,
    ``gate_weight``, ``gate_bias`` (read with ``gate``), ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``). h0, c0: (B, H).

    Returns (y, hn, cn, attention, saved): y (B, T, H) with
    ``return_sequences``, else (B, H); hn, cn (B, H); attention (B, T, L);
    saved: what ``attention_lstm_backward`` reads (None unless ``training``).
    """
    P = params
    B, L, D = a.shape[0], a.shape[a.ndim - 2], a.shape[a.ndim - 1]
    H = P["weight_hh"].shape[1]
    A = P["attn_v"].shape[0]
    I = P["weight_ih"].shape[1] - D
    dt = a.dtype
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
    if gate:
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
    attention_lstm_forward_loop(
        a_tm, p, xproj, w_rec_t, w_iz_t, P["attn_v"], b_gate, gate, approx, h0, c0,
        inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn,
    )  # fmt: skip
    saved = None
    if training:
        saved = {
            "a": a_tm, "inp": inp, "hprev": hprev, "cprev": cprev, "gates": gates, "tanh_c": tanh_c,
            "alpha": alpha, "s": s, "beta": beta, "z": z, "B": B, "T": T, "L": L, "has_x": I > 0, "single": a.ndim == 3,
        }  # fmt: skip
    out = np.ascontiguousarray(y.transpose(1, 0, 2)) if return_sequences else hn.copy()
    return out, hn, cn, np.ascontiguousarray(alpha.transpose(1, 0, 2)), saved


def attention_lstm_backward(saved, dy, dhn, dcn, dattention, params, grads, gate, return_sequences):
    """Backpropagation through ``attention_lstm_forward``: the time loop, then
    every weight gradient as one product over all steps.

    saved: the forward pass's; dy: the gradient of its output; dhn, dcn:
    (B, H) the gradient of the final state (read); dattention: (B, T, L)
    extra gradient of the attention weights, or None; params as in the
    forward pass; grads: the same names, ADDED.

    Returns (da, dx, dh0, dc0): da the shape of the forward pass's ``a``; dx
    (B, T, I) or None without x; dh0, dc0 (B, H).
    """
    P, G = params, grads
    B, T, L = saved["B"], saved["T"], saved["L"]
    a_tm = saved["a"]
    Ta, _, _, D = a_tm.shape
    H = P["weight_hh"].shape[1]
    A = P["attn_v"].shape[0]
    I = P["weight_ih"].shape[1] - D
    dt = a_tm.dtype
    if dattention is not None:
        dattn = np.ascontiguousarray(dattention.transpose(1, 0, 2))
    else:
        dattn = np.zeros((1, 1, 1), dt)
    if return_sequences:
        dy_tm = np.ascontiguousarray(dy.transpose(1, 0, 2))
    else:
        dy_tm = np.zeros((T, B, H), dt)
        dhn = dhn + dy
    w_q = np.zeros((A + 1, H), dt)
    w_q[:A] = P["attn_weight_h"]
    if gate:
        w_q[A] = P["gate_weight"]
    dgates = np.empty((T, B, 4 * H), dt)
    dq = np.empty((T, B, A + 1), dt)
    dp = np.zeros((Ta, B, L, A), dt)
    da_ctx = np.zeros((Ta, B, L, D), dt)
    dv = np.zeros(A, dt)
    dh0 = np.empty((B, H), dt)
    dc0 = np.empty((B, H), dt)
    attention_lstm_backward_loop(
        a_tm, P["weight_hh"], w_q, np.ascontiguousarray(P["weight_ih"][:, I:]), P["attn_v"], gate,
        saved["gates"], saved["cprev"], saved["tanh_c"], saved["alpha"], saved["s"], saved["beta"], saved["z"],
        dy_tm, dattn, dattention is not None, dhn, dcn, dgates, dq, dp, da_ctx, dv, dh0, dc0,
    )  # fmt: skip
    # weight gradients: one product each over all steps
    dg2 = dgates.reshape(T * B, 4 * H)
    dq2 = dq.reshape(T * B, A + 1)
    hp2 = saved["hprev"].reshape(T * B, H)
    G["weight_ih"] += dg2.T @ saved["inp"].reshape(T * B, I + D)
    G["weight_hh"] += dg2.T @ hp2
    db = dg2.sum(axis=0)
    G["bias_ih"] += db
    G["bias_hh"] += db
    dwq = dq2.T @ hp2  # (A + 1, H)
    G["attn_weight_h"] += dwq[:A]
    if gate:
        G["gate_weight"] += dwq[A]
        G["gate_bias"] += dq2[:, A].sum()
    G["attn_v"] += dv
    dp2 = dp.reshape(-1, A)
    a2 = a_tm.reshape(-1, D)
    G["attn_weight_a"] += dp2.T @ a2
    G["attn_bias"] += dp2.sum(axis=0)
    da = (da_ctx.reshape(-1, D) + dp2 @ P["attn_weight_a"]).reshape(Ta, B, L, D)
    dx = None
    if saved["has_x"]:
        dx = np.ascontiguousarray((dg2 @ P["weight_ih"][:, :I]).reshape(T, B, I).transpose(1, 0, 2))
    da = da[0] if saved["single"] else np.ascontiguousarray(da.transpose(1, 0, 2, 3))
    return da, dx, dh0, dc0


def temporal_attention_forward(x, w, bias, v, lens, s, alpha, out) -> None:
    """TemporalAttention forward. x (B, T, F); w (A, F); bias, v (A,); lens: (B,)
    int64 or None; s (B, T, A) <- tanh(x W^T + b), alpha (B, T), out (B, F) written."""
    B, T, F = x.shape
    A = w.shape[0]
    s[...] = np.tanh((x.reshape(B * T, F) @ np.ascontiguousarray(w.T)).reshape(B, T, A) + bias)
    e = s @ v  # (B, T)
    if lens is not None:
        e = np.where(np.arange(T)[None, :] < lens[:, None], e, -np.inf)
    e = e - e.max(axis=1, keepdims=True)
    ex = np.exp(e)
    alpha[...] = ex / ex.sum(axis=1, keepdims=True)
    out[...] = np.einsum("bt,btf->bf", alpha, x)


def temporal_attention_backward(x, w, v, s, alpha, dy, dattn, dw_acc, db_acc, dv_acc, dx) -> None:
    """TemporalAttention backward: dx (B, T, F) written (0 at padded steps); dW
    (A, F), db, dv (A,) ADDED. dattn: (B, T) extra gradient of alpha, or None."""
    B, T, F = x.shape
    A = w.shape[0]
    dalpha = np.einsum("btf,bf->bt", x, dy)  # (B, T)
    if dattn is not None:
        dalpha = dalpha + dattn
    de = alpha * (dalpha - np.sum(alpha * dalpha, axis=1, keepdims=True))  # softmax; 0 at padded steps
    dv_acc += np.einsum("bt,bta->a", de, s)
    du = (de[:, :, None] * v) * (1.0 - s * s)  # (B, T, A)
    du2 = du.reshape(B * T, A)
    x2 = x.reshape(B * T, F)
    dw_acc += du2.T @ x2
    db_acc += du2.sum(axis=0)
    dx[...] = alpha[:, :, None] * dy[:, None, :] + (du2 @ w).reshape(B, T, F)


def attention_penalty(alpha, lam: float):
    """(value, dalpha) of ``lam * sum_b sum_i (1 - sum_t alpha[b, t, i])^2`` for alpha (B, T, L)."""
    r = 1.0 - alpha.sum(axis=1, dtype=np.float64)  # (B, L)
    value = lam * float(np.sum(r * r))
    dalpha = np.broadcast_to((-2.0 * lam * r)[:, None, :], alpha.shape).astype(alpha.dtype)
    return value, dalpha
