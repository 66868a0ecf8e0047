"""``@cuda.jit`` twins of the ConvLSTM gate kernels (``numlstm.kernels.cpu.convlstm``), the
driver of one layer direction with the CPU driver's entry points and arguments
(``convlstm_forward_direction``, ``convlstm_backward_direction``), and the
small glue the device ConvLSTM needs (time-major transposes, channel slices).

Gate order i, f, g, o; ``P = H'*W'`` pixels; optional Hadamard peepholes
``wci, wcf, wco`` (C, P)::

    i = s(A_i + wci*c_{t-1})  f = s(A_f + wcf*c_{t-1})  g = tanh(A_g)
    c_t = f*c_{t-1} + i*g     o = s(A_o + wco*c_t)      h_t = o*tanh(c_t)

float32 uses the rational tanh/sigmoid of the CPU kernels (``approx``),
float64 the exact functions, as on the CPU.

The forward kernel runs one thread per ``(b, k, p)``. The backward kernel
runs one thread per ``(k, p)`` and loops over the batch, so that the
peephole gradients (summed over the batch) are accumulated without atomics.

The drivers follow the CPU schedule (the input convolution of all frames in
one launch; per step the recurrent convolution and the fused gate kernel),
except that backward forms dW_h after the loop as ONE reduction over all
steps, from the saved outputs (h_{t-1} is the previous step's output).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from numlstm.kernels.cuda import conv, elementwise
from numlstm.kernels.cuda._launch import grid_1d

# the constants of numlstm.kernels.cpu.activations.tanh_fast (float32, so that
# float32 arithmetic is not promoted)
_CLAMP = np.float32(7.99881172180175781)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF = np.float32(0.5)


@cuda.jit(device=True, inline=True)
def tanh_fast(x):
    """The CPU's rational float32 tanh (clamped; NaN passes through)."""
    x = _CLAMP if x > _CLAMP else x
    x = -_CLAMP if x < -_CLAMP else x
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


@cuda.jit(device=True, inline=True)
def sigmoid_fast(x):
    """0.5 + 0.5 tanh_fast(x / 2), as the CPU."""
    return _HALF + _HALF * tanh_fast(_HALF * x)


@cuda.jit(device=True, inline=True)
def sigmoid_exact(x):
    """1 / (1 + exp(-x))."""
    return 1.0 / (1.0 + math.exp(-x))


@cuda.jit(device=True, inline=True)
def _tanh(x, approx):
    return tanh_fast(x) if approx else math.tanh(x)


@cuda.jit(device=True, inline=True)
def _sigmoid(x, approx):
    return sigmoid_fast(x) if approx else sigmoid_exact(x)


@cuda.jit
def _gates_forward_kernel(gt, rec, c, cpt, ht, wci, wcf, wco, peep, approx):
    # gt: (B, 4C, P) conv(x_t) + b in, activations i, f, g, o out; rec: (B, 4C, P);
    # c: (B, C, P) c_{t-1} in, c_t out; cpt: (B, C, P) <- c_{t-1}; ht: (B, C, P) <- h_t;
    # wci, wcf, wco: (C, P) read when peep
    B, C4, P = gt.shape
    C = C4 // 4
    for idx in range(cuda.grid(1), B * C * P, cuda.gridsize(1)):
        p = idx % P
        r = idx // P
        k = r % C
        b = r // C
        cp = c[b, k, p]
        ai = gt[b, k, p] + rec[b, k, p]
        af = gt[b, C + k, p] + rec[b, C + k, p]
        ag = gt[b, 2 * C + k, p] + rec[b, 2 * C + k, p]
        ao = gt[b, 3 * C + k, p] + rec[b, 3 * C + k, p]
        if peep:
            ai = ai + wci[k, p] * cp
            af = af + wcf[k, p] * cp
        i = _sigmoid(ai, approx)
        f = _sigmoid(af, approx)
        g = _tanh(ag, approx)
        cn = f * cp + i * g
        if peep:
            ao = ao + wco[k, p] * cn
        o = _sigmoid(ao, approx)
        gt[b, k, p] = i
        gt[b, C + k, p] = f
        gt[b, 2 * C + k, p] = g
        gt[b, 3 * C + k, p] = o
        cpt[b, k, p] = cp
        c[b, k, p] = cn
        ht[b, k, p] = o * _tanh(cn, approx)


@cuda.jit
def _gates_backward_kernel(at, cpt, dh, dy, has_dy, dy_off, dc, wci, wcf, wco, dwci, dwcf, dwco, peep, approx):
    # at: (B, 4C, P) activations in, dL/dA_t out; cpt: (B, C, P) c_{t-1};
    # dh: (B, C, P) gradient reaching h_t from step t+1; dy: (B, Cy, P) the output
    # gradient of this step, channels dy_off:dy_off+C added to dh when has_dy;
    # dc: (B, C, P) gradient reaching c_t in, for c_{t-1} out;
    # dwci, dwcf, dwco: (C, P) += peephole gradients (summed over the batch) when peep
    B, C4, P = at.shape
    C = C4 // 4
    one = at.dtype.type(1)
    for idx in range(cuda.grid(1), C * P, cuda.gridsize(1)):
        p = idx % P
        k = idx // P
        gi = at.dtype.type(0)
        gf = at.dtype.type(0)
        go = at.dtype.type(0)
        for b in range(B):
            i = at[b, k, p]
            f = at[b, C + k, p]
            g = at[b, 2 * C + k, p]
            o = at[b, 3 * C + k, p]
            cp = cpt[b, k, p]
            cn = f * cp + i * g
            tc = _tanh(cn, approx)
            d_h = dh[b, k, p]
            if has_dy:
                d_h = d_h + dy[b, dy_off + k, p]
            d_ao = d_h * tc * o * (one - o)
            d_c = dc[b, k, p] + d_h * o * (one - tc * tc)
            if peep:
                d_c = d_c + d_ao * wco[k, p]
            d_ai = d_c * g * i * (one - i)
            d_af = d_c * cp * f * (one - f)
            at[b, k, p] = d_ai
            at[b, C + k, p] = d_af
            at[b, 2 * C + k, p] = d_c * i * (one - g * g)
            at[b, 3 * C + k, p] = d_ao
            if peep:
                dc[b, k, p] = d_c * f + d_ai * wci[k, p] + d_af * wcf[k, p]
                gi += d_ai * cp
                gf += d_af * cp
                go += d_ao * cn
            else:
                dc[b, k, p] = d_c * f
        if peep:
            dwci[k, p] += gi
            dwcf[k, p] += gf
            dwco[k, p] += go


def _dummy(dtype):
    """A (1, 1) stand-in for absent peepholes (never read)."""
    return cuda.device_array((1, 1), dtype)


def convlstm_gates_forward(gt, rec, c, cpt, ht, wci, wcf, wco, approx) -> None:
    """One step (the CPU kernel's arguments; device arrays, 3-d (B, ., P) views).

    wci, wcf, wco: (C, P) peepholes, or arrays with ``shape[0] == 0`` for none."""
    peep = wci.shape[0] > 0
    if not peep:
        wci = wcf = wco = _dummy(gt.dtype)
    B, C4, P = gt.shape
    blocks, tpb = grid_1d(B * (C4 // 4) * P)
    _gates_forward_kernel[blocks, tpb](gt, rec, c, cpt, ht, wci, wcf, wco, peep, bool(approx))


def convlstm_gates_backward(at, cpt, dh, dc, wci, wcf, wco, dwci, dwcf, dwco, approx, dy=None, dy_off=0) -> None:
    """Fused derivative of one step (the CPU kernel's arguments).

    ``dy``: optional (B, Cy, P) output gradient of this step, whose channels
    ``dy_off:dy_off+C`` are added to ``dh`` first (the CPU layer adds it to
    dh before the call; here it is fused). ``dh`` is read only."""
    peep = wci.shape[0] > 0
    if not peep:
        wci = wcf = wco = dwci = dwcf = dwco = _dummy(at.dtype)
    B, C4, P = at.shape
    has_dy = dy is not None
    blocks, tpb = grid_1d((C4 // 4) * P)
    _gates_backward_kernel[blocks, tpb](
        at, cpt, dh, dy if has_dy else dh, has_dy, dy_off, dc, wci, wcf, wco, dwci, dwcf, dwco, peep, bool(approx)
    )


# -- glue -----------------------------------------------------------------------------------------
def swap01(src, out=None):
    """``src`` (A, B, ...) transposed to (B, A, ...) (C-contiguous device arrays)."""
    A, B = src.shape[0], src.shape[1]
    if out is None:
        out = cuda.device_array((B, A) + tuple(src.shape[2:]), src.dtype)
    if src.size:
        R = src.size // (A * B)
        elementwise.swap01(src.reshape(A, B, R), out.reshape(B, A, R))
    return out


@cuda.jit
def _channels_kernel(src, s_off, dst, d_off, n, add):
    # src: (N, Cs, P); dst: (N, Cd, P): dst[:, d_off:d_off+n] (+)= src[:, s_off:s_off+n]
    N, Cs, P = src.shape
    for idx in range(cuda.grid(1), N * n * P, cuda.gridsize(1)):
        p = idx % P
        q = idx // P
        k = q % n
        m = q // n
        v = src[m, s_off + k, p]
        if add:
            dst[m, d_off + k, p] += v
        else:
            dst[m, d_off + k, p] = v


def copy_channels(src, s_off, dst, d_off, n, add=False) -> None:
    """dst[..., d_off:d_off+n, :, :] (+)= src[..., s_off:s_off+n, :, :] over the channel axis 2-from-the-end.

    src (..., Cs, H, W) and dst (..., Cd, H, W) C-contiguous with the same leading axes and frame."""
    ns, nd = len(src.shape), len(dst.shape)
    P = src.shape[ns - 1] * src.shape[ns - 2]
    cs, cd = src.shape[ns - 3], dst.shape[nd - 3]
    N = src.size // (cs * P)
    blocks, tpb = grid_1d(N * n * P)
    _channels_kernel[blocks, tpb](src.reshape(N, cs, P), s_off, dst.reshape(N, cd, P), d_off, n, add)


@cuda.jit
def _swap12_kernel(src, dst):
    # src: (N, A, R) -> dst: (N, R, A)
    N, A, R = src.shape
    for idx in range(cuda.grid(1), N * A * R, cuda.gridsize(1)):
        r = idx % R
        q = idx // R
        a = q % A
        n = q // A
        dst[n, r, a] = src[n, a, r]


def swap_last(src, lead: int):
    """``src`` (d_0 .. d_{lead-1}, A, R) transposed to (d_0 .. d_{lead-1}, R, A) (C-contiguous device arrays)."""
    shape = tuple(src.shape)
    A, R = shape[lead], shape[lead + 1]
    N = src.size // (A * R)
    out = cuda.device_array(shape[:lead] + (R, A), src.dtype)
    if src.size:
        blocks, tpb = grid_1d(src.size)
        _swap12_kernel[blocks, tpb](src.reshape(N, A, R), out.reshape(N, R, A))
    return out


def add_into(dst, src) -> None:
    """dst += src (same shapes, at least 3-d: (..., C, H, W))."""
    copy_channels(src, 0, dst, 0, src.shape[len(src.shape) - 3], add=True)


# -- the drivers of one layer direction (numlstm.kernels.cpu.convlstm's entry points) --------------
def convlstm_forward_direction(
    x, w_x, b, w_h, peepholes, stride, pads, dilation, rpads, h0, c0, hn, cn, direction, zero_state, approx,
    saved=None, ws=None, layer=0,
):  # fmt: skip
    """One layer direction over the whole sequence; returns its outputs y (T, B, C, H', W').

    The CPU driver's arguments (device arrays); ``ws`` and ``layer`` are
    accepted for its signature (the GPU keeps no work arrays between calls).
    ``saved`` receives the layer's input x (not copied: the layer's own
    array), and per direction the gates, c_{t-1}, y and h_0 (a copy unless
    ``zero_state``): the backward pass differentiates the recurrent
    convolution from them.
    """
    T, B, cin, hi, wi = x.shape
    C = w_h.shape[1]
    ho, wo = hn.shape[2], hn.shape[3]
    P = ho * wo
    dt = x.dtype
    no_bias = cuda.device_array(0, dt)
    # the input convolution of every frame: ONE launch, time folded into the batch
    gates = cuda.device_array((T, B, 4 * C, ho, wo), dt)
    conv.conv2d_forward(x.reshape(T * B, cin, hi, wi), w_x, b, stride, pads, dilation, gates.reshape(T * B, 4 * C, ho, wo))
    wci, wcf, wco = peepholes
    y = cuda.device_array((T, B, C, ho, wo), dt)
    cprev = cuda.device_array((T, B, C, ho, wo), dt)
    rec = cuda.device_array((B, 4 * C, ho, wo), dt)
    c = cuda.device_array((B, C, ho, wo), dt)
    c.copy_to_device(c0)
    h = h0
    r3, c3 = rec.reshape(B, 4 * C, P), c.reshape(B, C, P)
    for t in range(T - 1, -1, -1) if direction == 1 else range(T):
        conv.conv2d_forward(h, w_h, no_bias, (1, 1), rpads, (1, 1), rec)
        convlstm_gates_forward(
            gates[t].reshape(B, 4 * C, P), r3, c3, cprev[t].reshape(B, C, P), y[t].reshape(B, C, P), wci, wcf, wco, approx
        )
        h = y[t]
    hn.copy_to_device(h)
    cn.copy_to_device(c)
    if saved is not None:
        if not zero_state:  # the caller's state: the backward pass reads h_0
            h0_own = cuda.device_array(h0.shape, dt)
            h0_own.copy_to_device(h0)
            h0 = h0_own
        saved["x"] = x
        saved[direction] = (gates, cprev, y, h0)
    return y


def convlstm_backward_direction(
    saved, direction, w_x, w_h, peepholes, dpeepholes, stride, pads, dilation, rpads, dy, dhn, dcn, dh0, dc0,
    dx, dw_x, db, dw_h, approx, ws=None,
):  # fmt: skip
    """Backpropagation through one layer direction (the CPU driver's arguments; device arrays).

    Per step the fused gate derivative (with this step's output gradient
    fused in) and dh_{t-1} = conv^T(dA_t, W_h); after the loop dW_h as one
    reduction over all steps, and dW_x, db, dx of the input convolution over
    all frames."""
    gates, cprev, y, h0 = saved[direction]
    x_in = saved["x"]
    T, B, C4, ho, wo = gates.shape
    C = C4 // 4
    P = ho * wo
    _, _, cin, hi, wi = x_in.shape
    dt = gates.dtype
    wci, wcf, wco = peepholes
    dwci, dwcf, dwco = dpeepholes
    dh = cuda.device_array((B, C, ho, wo), dt)
    dh.copy_to_device(dhn)
    dc = cuda.device_array((B, C, ho, wo), dt)
    dc.copy_to_device(dcn)
    dh_prev = cuda.device_array((B, C, ho, wo), dt)
    dc3 = dc.reshape(B, C, P)
    for t in range(T) if direction == 1 else range(T - 1, -1, -1):
        dyt = None if dy is None else dy[t].reshape(B, dy.shape[2], P)
        convlstm_gates_backward(
            gates[t].reshape(B, 4 * C, P), cprev[t].reshape(B, C, P), dh.reshape(B, C, P), dc3,
            wci, wcf, wco, dwci, dwcf, dwco, approx, dy=dyt, dy_off=direction * C,
        )  # fmt: skip
        conv.conv2d_backward_dx(w_h, gates[t], (1, 1), rpads, (1, 1), dh_prev)
        dh, dh_prev = dh_prev, dh
    dh0.copy_to_device(dh)
    dc0.copy_to_device(dc)
    # dW_h over all steps: h_{t-1} is the previous step's output (h_0 at the first step)
    first, rest_h, rest_g = (0, y[0 : T - 1], gates[1:T]) if direction == 0 else (T - 1, y[1:T], gates[0 : T - 1])
    if T > 1:
        conv.conv2d_backward_dw(
            rest_h.reshape((T - 1) * B, C, ho, wo), rest_g.reshape((T - 1) * B, 4 * C, ho, wo), (1, 1), rpads, (1, 1), dw_h
        )
    conv.conv2d_backward_dw(h0, gates[first], (1, 1), rpads, (1, 1), dw_h)
    # input convolution: dW_x, db and dx over all frames at once
    conv.conv2d_backward(
        x_in.reshape(T * B, cin, hi, wi), w_x, gates.reshape(T * B, C4, ho, wo), stride, pads, dilation,
        dx.reshape(T * B, cin, hi, wi), dw_x, db, True,
    )  # fmt: skip
