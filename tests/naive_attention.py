"""Slow, obviously correct numpy references for the attention layers (float64).

Written independently of ``numlstm.kernels``: Python loops over sequences and
time steps, one annotation at a time, exact ``np.tanh`` and ``exp``. The
backward passes are BPTT written out one step and one sequence at a time.

Attention LSTM (Xu et al. 2015), parameters named as ``numlstm.AttentionLSTM``::

    e_i   = v . tanh(W_a a_i + b_a + W_h h_{t-1})
    alpha = softmax(e)
    z     = sum_i alpha_i a_i
    beta  = sigmoid(w_b . h_{t-1} + b_b)          (1 without gate_weight)
    A     = W_ih [x_t, beta z] + b_ih + W_hh h_{t-1} + b_hh, gates i, f, g, o
    c_t   = f c_{t-1} + i g,   h_t = o tanh(c_t)

The loss of the backward references is ``sum(y * dy) + sum(h_n * dh_n) +
sum(c_n * dc_n) + sum(alpha * dalpha)``.
"""

from __future__ import annotations

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(e):
    w = np.exp(e - np.max(e))
    return w / np.sum(w)


def _params(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _map(a, b, t):
    """The annotations (L, D) that sequence b reads at step t."""
    return a[b] if a.ndim == 3 else a[b, t]


def attention_lstm_forward_naive(params, a, T, x=None, state=None, return_sequences=True):
    """Reference forward pass.

    Parameters
    ----------
    params : dict of ``AttentionLSTM`` parameters (``gate_weight`` absent: no gate).
    a : (B, L, D) one map for all steps, or (B, T, L, D).
    T : number of steps.
    x : (B, T, I) or None.
    state : (h0, c0), each (1, B, H), or None.

    Returns
    -------
    y : (B, T, H) or (B, H); (h_n, c_n) each (1, B, H); alpha (B, T, L); records
    """
    p = _params(params)
    a = np.asarray(a, np.float64)
    B = a.shape[0]
    H = p["weight_hh"].shape[1]
    L = a.shape[-2]
    gate = "gate_weight" in p
    h_n = np.zeros((1, B, H))
    c_n = np.zeros((1, B, H))
    ys = np.zeros((B, T, H))
    alphas = np.zeros((B, T, L))
    records = {}
    for b in range(B):
        h = np.zeros(H) if state is None else np.asarray(state[0][0, b], np.float64).copy()
        c = np.zeros(H) if state is None else np.asarray(state[1][0, b], np.float64).copy()
        for t in range(T):
            ann = _map(a, b, t)
            s = [np.tanh(p["attn_weight_a"] @ ann[i] + p["attn_bias"] + p["attn_weight_h"] @ h) for i in range(L)]
            e = np.array([p["attn_v"] @ s_i for s_i in s])
            alpha = softmax(e)
            z = sum(alpha[i] * ann[i] for i in range(L))
            beta = sigmoid(p["gate_weight"] @ h + p["gate_bias"][0]) if gate else 1.0
            xt = np.zeros(0) if x is None else np.asarray(x[b, t], np.float64)
            u = np.concatenate([xt, beta * z])
            pre = p["weight_ih"] @ u + p["bias_ih"] + p["weight_hh"] @ h + p["bias_hh"]
            i_g = sigmoid(pre[:H])
            f_g = sigmoid(pre[H : 2 * H])
            g_g = np.tanh(pre[2 * H : 3 * H])
            o_g = sigmoid(pre[3 * H :])
            h_prev, c_prev = h, c
            c = f_g * c_prev + i_g * g_g
            h = o_g * np.tanh(c)
            records[b, t] = dict(
                h_prev=h_prev, c_prev=c_prev, s=s, alpha=alpha, z=z, beta=beta, u=u, i=i_g, f=f_g, g=g_g, o=o_g, c=c
            )
            ys[b, t] = h
            alphas[b, t] = alpha
        h_n[0, b] = h
        c_n[0, b] = c
    y = ys if return_sequences else h_n[0].copy()
    return y, (h_n, c_n), alphas, records


def attention_lstm_backward_naive(params, a, T, dy, x=None, state=None, dstate=None, dalpha=None, return_sequences=True):
    """Reference backward pass.

    Returns
    -------
    da : the shape of ``a``; dx : (B, T, I) or None; grads : dict with the
    keys of ``params``; (dh0, dc0) each (1, B, H).
    """
    p = _params(params)
    a = np.asarray(a, np.float64)
    _, (h_n, _), _, rec = attention_lstm_forward_naive(params, a, T, x, state, return_sequences)
    B = a.shape[0]
    H = p["weight_hh"].shape[1]
    L, D = a.shape[-2:]
    I = p["weight_ih"].shape[1] - D
    gate = "gate_weight" in p
    dy = np.asarray(dy, np.float64)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    da = np.zeros(a.shape)
    dx = None if x is None else np.zeros(np.shape(x))
    dh0 = np.zeros((1, B, H))
    dc0 = np.zeros((1, B, H))
    for b in range(B):
        dh_next = np.zeros(H) if dstate is None else np.array(dstate[0][0, b], np.float64)
        dc_next = np.zeros(H) if dstate is None else np.array(dstate[1][0, b], np.float64)
        if not return_sequences:
            dh_next = dh_next + dy[b]
        for t in range(T - 1, -1, -1):
            r = rec[b, t]
            ann = _map(a, b, t)
            i_g, f_g, g_g, o_g = r["i"], r["f"], r["g"], r["o"]
            tanh_c = np.tanh(r["c"])
            dh = dh_next + (dy[b, t] if return_sequences else 0.0)
            dc = dc_next + dh * o_g * (1.0 - tanh_c**2)
            dpre = np.concatenate(
                [
                    dc * g_g * i_g * (1.0 - i_g),
                    dc * r["c_prev"] * f_g * (1.0 - f_g),
                    dc * i_g * (1.0 - g_g**2),
                    dh * tanh_c * o_g * (1.0 - o_g),
                ]
            )
            grads["weight_ih"] += np.outer(dpre, r["u"])
            grads["weight_hh"] += np.outer(dpre, r["h_prev"])
            grads["bias_ih"] += dpre
            grads["bias_hh"] += dpre
            du = p["weight_ih"].T @ dpre
            if dx is not None:
                dx[b, t] += du[:I]
            dzg = du[I:]
            dh_prev = p["weight_hh"].T @ dpre
            # gate
            dz = r["beta"] * dzg
            if gate:
                dgpre = (dzg @ r["z"]) * r["beta"] * (1.0 - r["beta"])
                grads["gate_weight"] += dgpre * r["h_prev"]
                grads["gate_bias"] += dgpre
                dh_prev += dgpre * p["gate_weight"]
            # context
            dal = np.array([dz @ ann[i] for i in range(L)])
            if dalpha is not None:
                dal = dal + np.asarray(dalpha[b, t], np.float64)
            da_map = np.zeros((L, D))
            for i in range(L):
                da_map[i] += r["alpha"][i] * dz
            # softmax: Jacobian written out
            alpha = r["alpha"]
            jac = np.diag(alpha) - np.outer(alpha, alpha)
            de = jac @ dal
            for i in range(L):
                s_i = r["s"][i]
                grads["attn_v"] += de[i] * s_i
                dpre_s = de[i] * p["attn_v"] * (1.0 - s_i**2)
                grads["attn_weight_a"] += np.outer(dpre_s, ann[i])
                grads["attn_bias"] += dpre_s
                grads["attn_weight_h"] += np.outer(dpre_s, r["h_prev"])
                da_map[i] += p["attn_weight_a"].T @ dpre_s
                dh_prev += p["attn_weight_h"].T @ dpre_s
            if a.ndim == 3:
                da[b] += da_map
            else:
                da[b, t] += da_map
            dh_next = dh_prev
            dc_next = dc * f_g
        dh0[0, b] = dh_next
        dc0[0, b] = dc_next
    return da, dx, grads, (dh0, dc0)


def temporal_attention_forward_naive(params, x, lengths=None):
    """Reference additive attention pooling: (out (B, F), alpha (B, T))."""
    p = _params(params)
    x = np.asarray(x, np.float64)
    B, T, F = x.shape
    out = np.zeros((B, F))
    alphas = np.zeros((B, T))
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        e = np.array([p["v"] @ np.tanh(p["weight"] @ x[b, t] + p["bias"]) for t in range(n)])
        alpha = softmax(e)
        alphas[b, :n] = alpha
        out[b] = sum(alpha[t] * x[b, t] for t in range(n))
    return out, alphas


def temporal_attention_backward_naive(params, x, dy, lengths=None, dalpha=None):
    """Reference backward: (dx (B, T, F), grads); loss sum(out * dy) + sum(alpha * dalpha)."""
    p = _params(params)
    x = np.asarray(x, np.float64)
    _, alphas = temporal_attention_forward_naive(params, x, lengths)
    B, T, F = x.shape
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros(x.shape)
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        alpha = alphas[b, :n]
        dal = np.array([dy[b] @ x[b, t] for t in range(n)])
        if dalpha is not None:
            dal = dal + np.asarray(dalpha[b, :n], np.float64)
        de = (np.diag(alpha) - np.outer(alpha, alpha)) @ dal
        for t in range(n):
            s = np.tanh(p["weight"] @ x[b, t] + p["bias"])
            grads["v"] += de[t] * s
            du = de[t] * p["v"] * (1.0 - s**2)
            grads["weight"] += np.outer(du, x[b, t])
            grads["bias"] += du
            dx[b, t] = alpha[t] * dy[b] + p["weight"].T @ du
    return dx, grads
