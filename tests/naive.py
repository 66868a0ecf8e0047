"""Slow, obviously correct numpy references for the LSTM (float64 throughout).

Written independently of ``numlstm.kernels``: one Python loop over sequences
and time steps, full matrix-vector products per step, the exact ``np.tanh``
and ``1 / (1 + exp(-x))``. Semantics are PyTorch's ``nn.LSTM`` with
``batch_first=True`` (and a PackedSequence when ``lengths`` is given):

* parameters use ``nn.LSTM`` names and shapes, gate order i, f, g, o::

      a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
      i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
      c_t = f * c_{t-1} + i * g
      h_t = o * tanh(c_t)

* ``lengths`` is right padding: sequence ``b`` has valid steps
  ``0 .. lengths[b]-1``; outputs past its length are 0; the forward direction
  runs ``0 -> len-1`` and the reverse direction ``len-1 -> 0``, each starting
  from the given initial state; the final state is the state after the last
  step each direction ran;
* a bidirectional layer outputs ``concat([forward, reverse])`` on the feature
  axis; state arrays are ``(num_layers * num_directions, B, H)`` with index
  ``layer * num_directions + direction``;
* ``return_sequences=False`` returns ``concat(h_n forward, h_n reverse)`` of the
  top layer, ``(B, D*H)``;
* ``dropout_masks`` (optional, one ``(B, T, D*H)`` array per layer but the
  last) multiplies each layer's output before the next layer reads it.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def _suffix(d: int) -> str:
    return "_reverse" if d == 1 else ""


def _layer_params(params, k: int, d: int):
    """(W_ih (4H, I_k), W_hh (4H, H), b (4H,)) of layer k, direction d, in float64."""
    sfx = _suffix(d)
    w_ih = np.asarray(params[f"weight_ih_l{k}{sfx}"], np.float64)
    w_hh = np.asarray(params[f"weight_hh_l{k}{sfx}"], np.float64)
    b = np.zeros(w_hh.shape[0])
    if f"bias_ih_l{k}{sfx}" in params:
        b = b + np.asarray(params[f"bias_ih_l{k}{sfx}"], np.float64)
    if f"bias_hh_l{k}{sfx}" in params:
        b = b + np.asarray(params[f"bias_hh_l{k}{sfx}"], np.float64)
    return w_ih, w_hh, b


def _steps(n: int, d: int):
    """Time steps of one sequence of valid length n, in the order direction d visits them."""
    return range(n) if d == 0 else range(n - 1, -1, -1)


def _setup(x, params, num_layers, bidirectional, state, lengths):
    x = np.asarray(x, np.float64)
    B, T, _ = x.shape
    D = 2 if bidirectional else 1
    H = np.asarray(params["weight_hh_l0"]).shape[1]
    if state is None:
        h0 = np.zeros((num_layers * D, B, H))
        c0 = np.zeros((num_layers * D, B, H))
    else:
        h0 = np.asarray(state[0], np.float64)
        c0 = np.asarray(state[1], np.float64)
    lens = np.full(B, T) if lengths is None else np.asarray(lengths).astype(int)
    return x, B, T, D, H, h0, c0, lens


def _forward(x, params, num_layers, bidirectional, state, lengths, dropout_masks):
    """Forward pass; also returns the per-step records the backward needs."""
    x, B, T, D, H, h0, c0, lens = _setup(x, params, num_layers, bidirectional, state, lengths)
    h_n = np.zeros((num_layers * D, B, H))
    c_n = np.zeros((num_layers * D, B, H))
    records = []  # records[k] = {"input": (B, T, I_k), "steps": {(d, b, t): (h_prev, c_prev, i, f, g, o, c)}}
    inp = x
    for k in range(num_layers):
        rec = {"input": inp, "steps": {}}
        out = np.zeros((B, T, D * H))
        for d in range(D):
            w_ih, w_hh, bias = _layer_params(params, k, d)
            idx = k * D + d
            for b in range(B):
                h = h0[idx, b].copy()
                c = c0[idx, b].copy()
                for t in _steps(lens[b], d):
                    a = w_ih @ inp[b, t] + w_hh @ h + bias
                    i = sigmoid(a[0:H])
                    f = sigmoid(a[H : 2 * H])
                    g = np.tanh(a[2 * H : 3 * H])
                    o = sigmoid(a[3 * H : 4 * H])
                    h_prev, c_prev = h, c
                    c = f * c_prev + i * g
                    h = o * np.tanh(c)
                    rec["steps"][d, b, t] = (h_prev, c_prev, i, f, g, o, c)
                    out[b, t, d * H : (d + 1) * H] = h
                h_n[idx, b] = h
                c_n[idx, b] = c
        if dropout_masks is not None and k < num_layers - 1:
            out = out * dropout_masks[k]
        records.append(rec)
        inp = out
    return inp, h_n, c_n, records


def _top_h(h_n, num_layers, D):
    top = (num_layers - 1) * D
    return np.concatenate([h_n[top + d] for d in range(D)], axis=1)


def lstm_forward_naive(x, params, num_layers, bidirectional, state=None, lengths=None, return_sequences=True, dropout_masks=None):
    """Reference forward pass.

    Parameters
    ----------
    x : (B, T, I) batch-first input.
    params : dict of nn.LSTM-named arrays (bias keys optional).
    num_layers : int; bidirectional : bool.
    state : (h0, c0), each (num_layers * D, B, H), or None for zeros.
    lengths : (B,) valid lengths (right padding) or None for all T.
    return_sequences : every step's output, or the top layer's h_n.
    dropout_masks : optional list of (B, T, D*H) multipliers, one per layer but the last.

    Returns
    -------
    y : (B, T, D*H) or (B, D*H); (h_n, c_n) : each (num_layers * D, B, H).
    """
    y, h_n, c_n, _ = _forward(x, params, num_layers, bidirectional, state, lengths, dropout_masks)
    D = 2 if bidirectional else 1
    if not return_sequences:
        y = _top_h(h_n, num_layers, D)
    return y, (h_n, c_n)


def lstm_backward_naive(
    x,
    params,
    num_layers,
    bidirectional,
    dy,
    dstate=None,
    state=None,
    lengths=None,
    return_sequences=True,
    dropout_masks=None,
):
    """Reference backward pass (BPTT one step and one sequence at a time).

    The loss is ``sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n)``.

    Parameters
    ----------
    x, params, num_layers, bidirectional, state, lengths, return_sequences, dropout_masks
        As in ``lstm_forward_naive`` (the forward pass is recomputed).
    dy : gradient w.r.t. y, the shape of the forward output.
    dstate : (dh_n, dc_n), each (num_layers * D, B, H), or None for zeros.

    Returns
    -------
    dx : (B, T, I); grads : dict with the keys of ``params``; (dh0, dc0).
    """
    _, h_n, _, records = _forward(x, params, num_layers, bidirectional, state, lengths, dropout_masks)
    x, B, T, D, H, _, _, lens = _setup(x, params, num_layers, bidirectional, state, lengths)
    dy = np.asarray(dy, np.float64)
    if dstate is None:
        dh_n = np.zeros(h_n.shape)
        dc_n = np.zeros(h_n.shape)
    else:
        dh_n = np.array(dstate[0], np.float64)
        dc_n = np.array(dstate[1], np.float64)
    if return_sequences:
        d_out = dy.copy()
    else:
        # y is the top layer's h_n: its gradient joins dh_n
        d_out = np.zeros((B, T, D * H))
        top = (num_layers - 1) * D
        for d in range(D):
            dh_n[top + d] += dy[:, d * H : (d + 1) * H]

    grads = {}
    dh0 = np.zeros(h_n.shape)
    dc0 = np.zeros(h_n.shape)
    for k in range(num_layers - 1, -1, -1):
        rec = records[k]
        inp = rec["input"]
        d_inp = np.zeros(inp.shape)
        for d in range(D):
            w_ih, w_hh, _ = _layer_params(params, k, d)
            dw_ih = np.zeros(w_ih.shape)
            dw_hh = np.zeros(w_hh.shape)
            db = np.zeros(4 * H)
            idx = k * D + d
            for b in range(B):
                dh_next = dh_n[idx, b].copy()
                dc_next = dc_n[idx, b].copy()
                for t in reversed(list(_steps(lens[b], d))):
                    h_prev, c_prev, i, f, g, o, c = rec["steps"][d, b, t]
                    tanh_c = np.tanh(c)
                    dh = dh_next + d_out[b, t, d * H : (d + 1) * H]
                    dc = dc_next + dh * o * (1.0 - tanh_c**2)
                    da = np.concatenate(
                        [
                            dc * g * i * (1.0 - i),  # d a_i
                            dc * c_prev * f * (1.0 - f),  # d a_f
                            dc * i * (1.0 - g**2),  # d a_g
                            dh * tanh_c * o * (1.0 - o),  # d a_o
                        ]
                    )
                    dw_ih += np.outer(da, inp[b, t])
                    dw_hh += np.outer(da, h_prev)
                    db += da
                    d_inp[b, t] += w_ih.T @ da
                    dh_next = w_hh.T @ da
                    dc_next = dc * f
                dh0[idx, b] = dh_next
                dc0[idx, b] = dc_next
            sfx = _suffix(d)
            grads[f"weight_ih_l{k}{sfx}"] = dw_ih
            grads[f"weight_hh_l{k}{sfx}"] = dw_hh
            for name in (f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"):
                if name in params:
                    grads[name] = db.copy()
        if k > 0 and dropout_masks is not None:
            d_inp = d_inp * dropout_masks[k - 1]
        d_out = d_inp
    return d_out, grads, (dh0, dc0)
