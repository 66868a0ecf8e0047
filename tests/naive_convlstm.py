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


def _direction_forward(inp, params, k, sfx, kernel, stride, dilation, h, c, reverse):
    """One layer, one direction: (outs list indexed by t, h_last, c_last, tape)."""
    wx, wh = params[f"weight_x_l{k}{sfx}"], params[f"weight_h_l{k}{sfx}"]
    b = params.get(f"bias_l{k}{sfx}")
    wci = params.get(f"peephole_i_l{k}{sfx}")
    wcf = params.get(f"peephole_f_l{k}{sfx}")
    wco = params.get(f"peephole_o_l{k}{sfx}")
    C = wh.shape[1]
    B, T = inp.shape[:2]
    s, pads, rec = _geometry(k, inp.shape[3], inp.shape[4], kernel, stride, dilation)
    steps = [None] * T
    outs = [None] * T
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        a = conv2d_forward_naive(inp[:, t], wx, b, s, pads, dilation)
        a = a + conv2d_forward_naive(h, wh, None, (1, 1), rec, (1, 1))
        ai, af, ag, ao = a[:, :C], a[:, C : 2 * C], a[:, 2 * C : 3 * C], a[:, 3 * C :]
        if wci is not None:
            ai = ai + wci * c
            af = af + wcf * c
        i, f, g = _sigmoid(ai), _sigmoid(af), np.tanh(ag)
        c_new = f * c + i * g
        if wco is not None:
            ao = ao + wco * c_new
        o = _sigmoid(ao)
        h_new = o * np.tanh(c_new)
        steps[t] = {"x": inp[:, t], "h": h, "c": c, "i": i, "f": f, "g": g, "o": o, "c_new": c_new}
        h, c = h_new, c_new
        outs[t] = h
    return outs, h, c, {"steps": steps, "stride": s, "pads": pads, "rec": rec, "reverse": reverse, "sfx": sfx}


def convlstm_forward_naive(x, params, num_layers, kernel, stride=(1, 1), dilation=(1, 1), h0=None, c0=None, bidirectional=False):
    """(y (B, T, D*C, H', W') of the top layer, h_n, c_n, tape) for x (B, T, C_in, H, W).

    params: ``weight_x_l{k}``, ``weight_h_l{k}``, optional ``bias_l{k}``,
    optional peepholes ``peephole_{i,f,o}_l{k}`` (C, H', W'); suffix
    ``_reverse`` for the reverse direction. State index ``layer*D + direction``."""
    x = np.asarray(x, np.float64)
    B, T = x.shape[:2]
    D = 2 if bidirectional else 1
    inp = x
    hs, cs, tape = [], [], []
    for k in range(num_layers):
        C = params[f"weight_h_l{k}"].shape[1]
        ho = -(-x.shape[3] // stride[0])
        wo = -(-x.shape[4] // stride[1])
        ys = []
        for d in range(D):
            idx = k * D + d
            h = np.zeros((B, C, ho, wo)) if h0 is None else np.array(h0[idx], np.float64)
            c = np.zeros((B, C, ho, wo)) if c0 is None else np.array(c0[idx], np.float64)
            sfx = ("", "_reverse")[d]
            outs, h, c, tp = _direction_forward(inp, params, k, sfx, kernel, stride, dilation, h, c, d == 1)
            hs.append(h)
            cs.append(c)
            tape.append(tp)
            ys.append(np.stack(outs, axis=1))
        inp = np.concatenate(ys, axis=2)
    return inp, np.stack(hs), np.stack(cs), tape


def convlstm_backward_naive(params, num_layers, tape, dy, dhn, dcn, dilation=(1, 1), bidirectional=False):
    """(dx, grads, dh0, dc0) by BPTT one step at a time; dy: (B, T, D*C, H', W') for the top layer's outputs."""
    D = 2 if bidirectional else 1
    grads = {name: np.zeros(p.shape) for name, p in params.items()}
    dh0, dc0 = np.zeros(dhn.shape), np.zeros(dcn.shape)
    dout = np.array(dy, np.float64)
    for k in range(num_layers - 1, -1, -1):
        dx_layer = None
        for d in range(D):
            idx = k * D + d
            lt = tape[idx]
            sfx = lt["sfx"]
            wx, wh = params[f"weight_x_l{k}{sfx}"], params[f"weight_h_l{k}{sfx}"]
            peep = f"peephole_i_l{k}{sfx}" in params
            C = wh.shape[1]
            steps = lt["steps"]
            T = len(steps)
            dh, dc = np.array(dhn[idx], np.float64), np.array(dcn[idx], np.float64)
            dxs = [None] * T
            order = range(T) if lt["reverse"] else range(T - 1, -1, -1)
            for t in order:
                st = steps[t]
                dh = dh + dout[:, t, d * C : (d + 1) * C]
                tc = np.tanh(st["c_new"])
                dao = dh * tc * st["o"] * (1 - st["o"])
                dct = dc + dh * st["o"] * (1 - tc**2)
                if peep:
                    dct = dct + dao * params[f"peephole_o_l{k}{sfx}"]
                dai = dct * st["g"] * st["i"] * (1 - st["i"])
                daf = dct * st["c"] * st["f"] * (1 - st["f"])
                da = np.concatenate([dai, daf, dct * st["i"] * (1 - st["g"] ** 2), dao], axis=1)
                dc = dct * st["f"]
                if peep:
                    dc = dc + dai * params[f"peephole_i_l{k}{sfx}"] + daf * params[f"peephole_f_l{k}{sfx}"]
                    grads[f"peephole_i_l{k}{sfx}"] += (dai * st["c"]).sum(axis=0)
                    grads[f"peephole_f_l{k}{sfx}"] += (daf * st["c"]).sum(axis=0)
                    grads[f"peephole_o_l{k}{sfx}"] += (dao * st["c_new"]).sum(axis=0)
                dhp, dwh, db = conv2d_backward_naive(st["h"], wh, da, (1, 1), lt["rec"], (1, 1))
                grads[f"weight_h_l{k}{sfx}"] += dwh
                dxt, dwx, _ = conv2d_backward_naive(st["x"], wx, da, lt["stride"], lt["pads"], dilation)
                grads[f"weight_x_l{k}{sfx}"] += dwx
                if f"bias_l{k}{sfx}" in grads:
                    grads[f"bias_l{k}{sfx}"] += db
                dxs[t] = dxt
                dh = dhp
            dh0[idx], dc0[idx] = dh, dc
            dxd = np.stack(dxs, axis=1)
            dx_layer = dxd if dx_layer is None else dx_layer + dxd
        dout = dx_layer
    return dout, grads, dh0, dc0
