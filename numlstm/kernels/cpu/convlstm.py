"""ConvLSTM on the CPU: the fused gate kernels and the driver of one layer direction.

Gate order i, f, g, o; ``P = H'*W'`` pixels; optional Hadamard peepholes
``wci, wcf, wco`` (C, P)::

    i = s(A_i + wci*c_{t-1})  f = s(A_f + wcf*c_{t-1})  g = tanh(A_g)
    c_t = f*c_{t-1} + i*g     o = s(A_o + wco*c_t)      h_t = o*tanh(c_t)

The schedule mirrors the LSTM's: ``convlstm_forward_direction`` runs the
input convolution of ALL frames as one ``conv2d_forward`` call (time folded
into the batch), then per step only the recurrent convolution and one fused
``@njit`` pass over the four gates and the cell. ``convlstm_backward_direction``
walks the steps in reverse through the gates and the recurrent convolution
(its dW_h collected per thread and folded once), then forms the input
convolution's dW_x, db and dx with ONE ``conv2d_backward`` over all frames.
``numlstm.kernels.cuda.convlstm`` has the same entry points with the same
arguments; the layer (``numlstm.layers.convlstm``) validates and calls one
of them per layer and direction. See docs/convlstm.md.

Arrays are time-major, ``(T, B, C, H, W)``. Nothing here validates.
"""

import numpy as np
from numba import njit

from numlstm.kernels.cpu.activations import sigmoid_exact, sigmoid_fast, tanh_exact, tanh_fast
from numlstm.kernels.cpu.conv import ConvGradAcc, conv2d_backward, conv2d_backward_acc, conv2d_forward, weight_matrix

_KW = {"cache": True, "error_model": "numpy", "nogil": True}


# -- fused gate kernels ----------------------------------------------------------------------------
@njit(**_KW)
def convlstm_gates_forward(gt, rec, c, cpt, ht, wci, wcf, wco, approx):
    """One step, every sequence and pixel.

    gt: (B, 4C, P) holds conv(x_t, W_x) + b on entry, the activations
    i, f, g, o on return; rec: (B, 4C, P) = conv(h_{t-1}, W_h);
    c: (B, C, P) c_{t-1} on entry, c_t on return; cpt: (B, C, P) receives
    c_{t-1}; ht: (B, C, P) receives h_t. P = H'*W'. wci, wcf, wco: (C, P)
    Hadamard peepholes, or (0, 0) arrays for none::

        i = s(A_i + wci*c_{t-1})  f = s(A_f + wcf*c_{t-1})  g = tanh(A_g)
        c_t = f*c_{t-1} + i*g     o = s(A_o + wco*c_t)      h_t = o*tanh(c_t)

    Written as simple passes with the branches outside the pixel loops, so
    that LLVM vectorises each pass (a single fused loop ran 17x slower).
    """
    B, C4, P = gt.shape
    C = C4 // 4
    peep = wci.shape[0] > 0
    for b in range(B):
        # pre-activations; every gate that does not depend on c is activated here
        for j in range(C4):
            is_g = 2 * C <= j < 3 * C
            if peep and not is_g:
                for p in range(P):
                    gt[b, j, p] = gt[b, j, p] + rec[b, j, p]
                continue
            for p in range(P):
                v = gt[b, j, p] + rec[b, j, p]
                if approx:
                    gt[b, j, p] = tanh_fast(v) if is_g else sigmoid_fast(v)
                else:
                    gt[b, j, p] = tanh_exact(v) if is_g else sigmoid_exact(v)
        if peep:
            for k in range(C):
                for p in range(P):
                    cp = c[b, k, p]
                    vi = gt[b, k, p] + wci[k, p] * cp
                    vf = gt[b, C + k, p] + wcf[k, p] * cp
                    if approx:
                        gt[b, k, p] = sigmoid_fast(vi)
                        gt[b, C + k, p] = sigmoid_fast(vf)
                    else:
                        gt[b, k, p] = sigmoid_exact(vi)
                        gt[b, C + k, p] = sigmoid_exact(vf)
        for k in range(C):
            for p in range(P):
                cpt[b, k, p] = c[b, k, p]
                cn = gt[b, C + k, p] * c[b, k, p] + gt[b, k, p] * gt[b, 2 * C + k, p]
                c[b, k, p] = cn
        if peep:
            for k in range(C):
                for p in range(P):
                    vo = gt[b, 3 * C + k, p] + wco[k, p] * c[b, k, p]
                    gt[b, 3 * C + k, p] = sigmoid_fast(vo) if approx else sigmoid_exact(vo)
        for k in range(C):
            for p in range(P):
                cn = c[b, k, p]
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                ht[b, k, p] = gt[b, 3 * C + k, p] * tc


@njit(**_KW)
def convlstm_gates_backward(at, cpt, dh, dc, wci, wcf, wco, dwci, dwcf, dwco, approx):
    """Fused derivative of one step.

    at: (B, 4C, P) activations i, f, g, o on entry, dL/dA_t on return;
    cpt: (B, C, P) c_{t-1}; dh: (B, C, P) total gradient reaching h_t;
    dc: (B, C, P) gradient reaching c_t from later steps, on return the
    gradient for c_{t-1}. tanh(c_t) is recomputed with the forward's operations.
    wci, wcf, wco: (C, P) peepholes or (0, 0); dwci, dwcf, dwco: (C, P)
    gradients ADDED (summed over batch; the caller sums over time by calling
    once per step), or (0, 0).
    """
    B, C4, P = at.shape
    C = C4 // 4
    peep = wci.shape[0] > 0
    one = at.dtype.type(1)
    for b in range(B):
        if not peep:
            for k in range(C):
                for p in range(P):
                    i = at[b, k, p]
                    f = at[b, C + k, p]
                    g = at[b, 2 * C + k, p]
                    o = at[b, 3 * C + k, p]
                    cp = cpt[b, k, p]
                    cn = f * cp + i * g
                    tc = tanh_fast(cn) if approx else tanh_exact(cn)
                    d_h = dh[b, k, p]
                    d_c = dc[b, k, p] + d_h * o * (one - tc * tc)
                    at[b, k, p] = d_c * g * i * (one - i)
                    at[b, C + k, p] = d_c * cp * f * (one - f)
                    at[b, 2 * C + k, p] = d_c * i * (one - g * g)
                    at[b, 3 * C + k, p] = d_h * tc * o * (one - o)
                    dc[b, k, p] = d_c * f
            continue
        # peepholes: three passes, each writing one array (so that each vectorises)
        for k in range(C):
            for p in range(P):  # dW_co += dA_o * c_t, before the activations are overwritten
                i = at[b, k, p]
                f = at[b, C + k, p]
                g = at[b, 2 * C + k, p]
                o = at[b, 3 * C + k, p]
                cn = f * cpt[b, k, p] + i * g
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                dwco[k, p] += dh[b, k, p] * tc * o * (one - o) * cn
        for k in range(C):
            for p in range(P):
                i = at[b, k, p]
                f = at[b, C + k, p]
                g = at[b, 2 * C + k, p]
                o = at[b, 3 * C + k, p]
                cp = cpt[b, k, p]
                cn = f * cp + i * g
                tc = tanh_fast(cn) if approx else tanh_exact(cn)
                d_h = dh[b, k, p]
                d_ao = d_h * tc * o * (one - o)
                d_c = dc[b, k, p] + d_h * o * (one - tc * tc) + d_ao * wco[k, p]
                d_ai = d_c * g * i * (one - i)
                d_af = d_c * cp * f * (one - f)
                at[b, k, p] = d_ai
                at[b, C + k, p] = d_af
                at[b, 2 * C + k, p] = d_c * i * (one - g * g)
                at[b, 3 * C + k, p] = d_ao
                dc[b, k, p] = d_c * f + d_ai * wci[k, p] + d_af * wcf[k, p]
        for k in range(C):
            for p in range(P):
                dwci[k, p] += at[b, k, p] * cpt[b, k, p]
            for p in range(P):
                dwcf[k, p] += at[b, C + k, p] * cpt[b, k, p]


# -- glue (the same functions as in numlstm.kernels.cuda.convlstm) ---------------------------------
def swap01(src):
    """``src`` (A, B, ...) transposed to a new C-contiguous (B, A, ...) array (never a view)."""
    return src.swapaxes(0, 1).copy()


def copy_channels(src, s_off, dst, d_off, n, add=False) -> None:
    """dst[..., d_off:d_off+n, :, :] (+)= src[..., s_off:s_off+n, :, :] over the channel axis 2-from-the-end.

    src (..., Cs, H, W) and dst (..., Cd, H, W) with the same leading axes and frame."""
    if add:
        dst[..., d_off : d_off + n, :, :] += src[..., s_off : s_off + n, :, :]
    else:
        dst[..., d_off : d_off + n, :, :] = src[..., s_off : s_off + n, :, :]


def add_into(dst, src) -> None:
    """dst += src (same shapes)."""
    dst += src


def _buffer(ws, key, shape, dtype, zero: bool = False) -> np.ndarray:
    """A work array kept in ``ws`` between calls (as the LSTM's): fresh large
    allocations cost page faults on every call. ``zero``: allocated with
    zeros (the padded 'keep' images, whose border must stay zero: the
    convolution only ever writes their interior). Safe because a new
    forward invalidates the previous cache and nothing returned to the
    caller is a view of these buffers. A fresh array when ``ws`` is None."""
    if ws is None:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    buf = ws.get(key)
    if buf is None or buf.shape != shape:
        ws.pop(key, None)
        buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        ws[key] = buf
    return buf


# -- the drivers of one layer direction --------------------------------------------------------------
def convlstm_forward_direction(
    x, w_x, b, w_h, peepholes, stride, pads, dilation, rpads, h0, c0, hn, cn, direction, zero_state, approx,
    saved=None, ws=None, layer=0,
):  # fmt: skip
    """One layer direction over the whole sequence; returns its outputs y (T, B, C, H', W').

    x: (T, B, C_in, H, W) the layer's input (time-major, C-contiguous); w_x:
    (4C, C_in, kh, kw); b: (4C,) or empty; w_h: (4C, C, kh, kw);
    peepholes: (wci, wcf, wco), each (C, P) or (0, 0) for none; stride, pads,
    dilation: of the input convolution; rpads: of the recurrent one (stride 1,
    dilation 1); h0, c0: (B, C, H', W') the initial state; hn, cn: (B, C, H', W')
    receive the final state; direction: 0 runs t = 0 .. T-1, 1 runs
    t = T-1 .. 0; zero_state: h0 and c0 are zeros (the first recurrent
    convolution is skipped: it is exactly 0); approx: the rational float32
    tanh/sigmoid.

    saved: a dict per layer (shared by its directions) that receives what
    ``convlstm_backward_direction`` reads, or None (no backward pass).
    ws, layer: a dict keeping the work arrays between calls and the layer's
    index, naming them (y is one of them: valid until the next forward).
    """
    T, B, cin, hi, wi = x.shape
    C = w_h.shape[1]
    ho, wo = hn.shape[2], hn.shape[3]
    P = ho * wo
    dt = x.dtype
    rt, rb, rl, rr = rpads
    pt, pb, pl, pr = pads
    key = (layer, direction)
    training = saved is not None
    keep_x = None
    if training and "keep_x" not in saved:
        # the padded frames, shared by both directions' backward
        keep_x = _buffer(ws, (layer, "keep_x"), (T * B, hi + pt + pb, wi + pl + pr, cin), dt, zero=True)
        saved["keep_x"] = keep_x
    no_bias = np.empty(0, dt)
    # the input convolution of every frame: ONE call, time folded into the batch
    gates = _buffer(ws, (key, "gates"), (T, B, 4 * C, ho, wo), dt)
    conv2d_forward(x.reshape(T * B, cin, hi, wi), w_x, b, stride, pads, dilation, gates.reshape(T * B, 4 * C, ho, wo), keep_x, ws)
    wci, wcf, wco = peepholes
    y = _buffer(ws, (key, "y"), (T, B, C, ho, wo), dt)
    cprev = _buffer(ws, (key, "cprev"), (T, B, C, ho, wo), dt)
    keep_h = _buffer(ws, (key, "keep_h"), (T, B, ho + rt + rb, wo + rl + rr, C), dt, zero=True) if training else None
    rec = _buffer(ws, (key, "rec"), (B, 4 * C, ho, wo), dt)
    c = _buffer(ws, (key, "c"), (B, C, ho, wo), dt)
    c[...] = c0
    h = h0
    steps = range(T - 1, -1, -1) if direction == 1 else range(T)
    g3, r3, c3 = gates.reshape(T, B, 4 * C, P), rec.reshape(B, 4 * C, P), c.reshape(B, C, P)
    cp3, y3 = cprev.reshape(T, B, C, P), y.reshape(T, B, C, P)
    for t in steps:
        # only the recurrent convolution per step (its padded h kept for backward);
        # from a zero initial state the first one is exactly 0
        if zero_state and t == steps[0]:
            rec.fill(0)
        else:
            conv2d_forward(h, w_h, no_bias, (1, 1), rpads, (1, 1), rec, None if keep_h is None else keep_h[t], ws)
        convlstm_gates_forward(g3[t], r3, c3, cp3[t], y3[t], wci, wcf, wco, approx)
        h = y[t]
    hn[...] = h
    cn[...] = c
    if training:
        saved[direction] = (gates, cprev, keep_h, zero_state)
    return y


def convlstm_backward_direction(
    saved, direction, w_x, w_h, peepholes, dpeepholes, stride, pads, dilation, rpads, dy, dhn, dcn, dh0, dc0,
    dx, dw_x, db, dw_h, approx, ws=None,
):  # fmt: skip
    """Backpropagation through one layer direction (the one ``convlstm_forward_direction`` ran).

    saved: the forward pass's dict; direction, w_x, w_h, peepholes, stride,
    pads, dilation, rpads, approx: as there. dpeepholes: (dwci, dwcf, dwco),
    each (C, P) ADDED, or (0, 0). dy: (T, B, Cy, H', W') the gradient of the
    layer's output, this direction's channels at direction*C, or None
    (only the final state has a gradient). dhn, dcn: (B, C, H', W') the
    gradient of the final state (read); dh0, dc0: (B, C, H', W') receive the
    gradient of the initial state. dx: (T, B, C_in, H, W) OVERWRITTEN with the
    input gradient; dw_x, db (or empty), dw_h: ADDED. The gate buffers
    become the gate gradients: differentiable once.
    """
    gates, cprev, keep_h, zero_state = saved[direction]
    T, B, C4, ho, wo = gates.shape
    C = C4 // 4
    P = ho * wo
    _, _, cin, hi, wi = dx.shape
    dt = gates.dtype
    no_bias = np.empty(0, dt)
    wci, wcf, wco = peepholes
    dwci, dwcf, dwco = dpeepholes
    dy_d = None if dy is None else dy[:, :, direction * C : (direction + 1) * C]
    dh = dhn.copy()
    dc = dcn.copy()
    dh_prev = np.empty((B, C, ho, wo), dt)
    w2_h = weight_matrix(w_h)
    acc_h = ConvGradAcc(w_h.shape, dt, ws)  # dW_h collected over the steps, folded once
    g3, cp3 = gates.reshape(T, B, 4 * C, P), cprev.reshape(T, B, C, P)
    steps = range(T) if direction == 1 else range(T - 1, -1, -1)
    for t in steps:
        if dy_d is not None:
            dh += dy_d[t]
        convlstm_gates_backward(g3[t], cp3[t], dh.reshape(B, C, P), dc.reshape(B, C, P), wci, wcf, wco, dwci, dwcf, dwco, approx)
        # dW_h += ...; dh_{t-1} = conv^T(dA_t, W_h)
        # the forward pass's first step (the last here) read h_{t-1} = 0
        # from a zero initial state: no dW_h term
        conv2d_backward_acc(
            None, w_h, gates[t], (1, 1), rpads, (1, 1), dh_prev, acc_h, kept=keep_h[t], ws=ws, w2=w2_h,
            need_dw=not (t == steps[-1] and zero_state),
        )  # fmt: skip
        dh, dh_prev = dh_prev, dh
    acc_h.fold(dw_h, no_bias)
    dh0[...] = dh
    dc0[...] = dc
    # input convolution: dW_x, db and dx as ONE call over all frames
    conv2d_backward(
        None, w_x, gates.reshape(T * B, C4, ho, wo), stride, pads, dilation, dx.reshape(T * B, cin, hi, wi), dw_x, db,
        kept=saved["keep_x"], ws=ws,
    )  # fmt: skip
