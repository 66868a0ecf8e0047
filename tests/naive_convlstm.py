"""Slow, obviously correct numpy twin of ConvLSTM: per-step direct-loop convolutions, float64.

Forward and a step-by-step BPTT backward, built on the direct-loop
convolutions of ``naive_conv``; shares no code with the layer.
"""

from __future__ import annotations

import numpy as np
from naive_conv import conv2d_backward_naive, conv2d_forward_naive


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def same_pads_naive(size, k, stride, dilation):
    """TensorFlow 'SAME': output ceil(size/stride), total pad split floor before, rest after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _geometry(k, H, W, kernel, stride, dilation):
    s = stride if k == 0 else (1, 1)
    pt, pb = same_pads_naive(H, kernel[0], s[0], dilation[0])
    pl, pr = same_pads_naive(W, kernel[1], s[1], dilation[1])
    kh, kw = kernel
    rec = ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
    return s, (pt, pb, pl, pr), rec


def convlstm_forward_naive(x, params, num_layers, kernel, stride=(1, 1), dilation=(1, 1), h0=None, c0=None):
    """(y (B, T, C, H', W') of the top layer, h_n, c_n, tape) for x (B, T, C_in, H, W).

    params: ``weight_x_l{k}``, ``weight_h_l{k}``, optional ``bias_l{k}``."""
    x = np.asarray(x, np.float64)
    B, T = x.shape[:2]
    inp = x
    hs, cs, tape = [], [], []
    for k in range(num_layers):
        wx, wh = params[f"weight_x_l{k}"], params[f"weight_h_l{k}"]
        b = params.get(f"bias_l{k}")
        C = wh.shape[1]
        s, pads, rec = _geometry(k, inp.shape[3], inp.shape[4], kernel, stride, dilation)
        steps = []
        h = c = None
        outs = []
        for t in range(T):
            ax = conv2d_forward_naive(inp[:, t], wx, b, s, pads, dilation)
            if h is None:
                shp = (B, C) + ax.shape[2:]
                h = np.zeros(shp) if h0 is None else np.array(h0[k], np.float64)
                c = np.zeros(shp) if c0 is None else np.array(c0[k], np.float64)
            a = ax + conv2d_forward_naive(h, wh, None, (1, 1), rec, (1, 1))
            i, f = _sigmoid(a[:, :C]), _sigmoid(a[:, C : 2 * C])
            g, o = np.tanh(a[:, 2 * C : 3 * C]), _sigmoid(a[:, 3 * C :])
            c_new = f * c + i * g
            h_new = o * np.tanh(c_new)
            steps.append({"x": inp[:, t], "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "c_new": c_new})
            h, c = h_new, c_new
            outs.append(h)
        hs.append(h)
        cs.append(c)
        tape.append({"steps": steps, "stride": s, "pads": pads, "rec": rec})
        inp = np.stack(outs, axis=1)
    return inp, np.stack(hs), np.stack(cs), tape


def convlstm_backward_naive(params, num_layers, tape, dy, dhn, dcn, dilation=(1, 1)):
    """(dx, grads, dh0, dc0) by BPTT one step at a time; dy: (B, T, C, H', W') for the top layer's outputs."""
    grads = {name: np.zeros(p.shape) for name, p in params.items()}
    dh0, dc0 = np.zeros(dhn.shape), np.zeros(dcn.shape)
    dout = np.array(dy, np.float64)
    for k in range(num_layers - 1, -1, -1):
        wx, wh = params[f"weight_x_l{k}"], params[f"weight_h_l{k}"]
        lt = tape[k]
        steps = lt["steps"]
        dh, dc = np.array(dhn[k], np.float64), np.array(dcn[k], np.float64)
        dxs = [None] * len(steps)
        for t in range(len(steps) - 1, -1, -1):
            st = steps[t]
            dh = dh + dout[:, t]
            tc = np.tanh(st["c_new"])
            dct = dc + dh * st["o"] * (1 - tc**2)
            da = np.concatenate(
                [
                    dct * st["g"] * st["i"] * (1 - st["i"]),
                    dct * st["c"] * st["f"] * (1 - st["f"]),
                    dct * st["i"] * (1 - st["g"] ** 2),
                    dh * tc * st["o"] * (1 - st["o"]),
                ],
                axis=1,
            )
            dc = dct * st["f"]
            dhp, dwh, db = conv2d_backward_naive(st["h"], wh, da, (1, 1), lt["rec"], (1, 1))
            grads[f"weight_h_l{k}"] += dwh
            dxt, dwx, _ = conv2d_backward_naive(st["x"], wx, da, lt["stride"], lt["pads"], dilation)
            grads[f"weight_x_l{k}"] += dwx
            if f"bias_l{k}" in grads:
                grads[f"bias_l{k}"] += db
            dxs[t] = dxt
            dh = dhp
        dh0[k], dc0[k] = dh, dc
        dout = np.stack(dxs, axis=1)
    return dout, grads, dh0, dc0
