"""CUDA kernels for one LSTM layer direction over a whole sequence.

The twin of ``numlstm.kernels.cpu.lstm``: same notation (gate storage order
i, f, g, o), same time-major layout ``(T, B, ...)``, same schedule, same
results (float64 to rounding; float32 uses the exact ``tanhf``/``expf``
where the CPU uses its rational approximation)::

    a_t = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T        a_t: (B, 4H)
    i_t = sigmoid(a_i)   f_t = sigmoid(a_f)   g_t = tanh(a_g)   o_t = sigmoid(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Two paths, chosen per call by ``use_persistent`` (thresholds in ``config``):

* general: the input projection of all steps is ONE GEMM
  ``(T*B, I) x (I, 4H)``; per step one GEMM ``h_{t-1} W_hh^T`` and one fused
  gate kernel (one thread per (row, unit): all four gates and the cell).
  Backward: per step one fused gate-derivative kernel and one GEMM
  ``dh_{t-1} = dA_t W_hh``.
* persistent (Diamos et al. 2016, for small batch and hidden sizes): ONE
  launch runs the whole time loop, one block per group of
  ``config.PERSISTENT_ROWS_PER_BLOCK`` batch rows (rows are independent, so
  no grid-wide synchronisation is needed: ``syncthreads`` between the phases
  of a step suffices, and the kernel also runs on the simulator; each weight
  read serves every row of the block). ``W_hh`` is staged in shared memory once per launch when it
  fits in ``config.PERSISTENT_MAX_SHARED_BYTES`` (else read from global
  memory, where it stays L2-resident); ``h``, ``c`` and the step's gate
  pre-activations live in shared memory. Forward and backward both.

After the backward loop both paths form ``dx``, ``dW_ih``, ``dW_hh`` as ONE
GEMM each over all steps and ``db`` as one column sum of ``dA``.

Kernels never validate: the layer above does.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config, elementwise
from numlstm.kernels.cuda._launch import grid_1d

# the elementwise entry points the layer's loop uses, the same on both backends' drivers
from numlstm.kernels.cuda.elementwise import add, add_into, copy, copy_cols, fill, multiply, swap01  # noqa: F401
from numlstm.kernels.cuda.linalg import gemm

_KERNELS: dict = {}


def _make_kernels(dtype: np.dtype) -> dict:
    one = dtype.type(1)
    zero = dtype.type(0)

    @cuda.jit
    def forward_step(t, gates, rec, bias, h, c, hprev, cprev, y, lengths):
        # gates: (T, B, 4H) x_t W_ih^T in, activations out; rec: (B, 4H) = h_{t-1} W_hh^T
        # h, c: (B, H) running state; hprev, cprev, y: (T, B, H); one thread per (b, k)
        B = h.shape[0]
        H = h.shape[1]
        for j in range(cuda.grid(1), B * H, cuda.gridsize(1)):
            b = j // H
            k = j % H
            if t >= lengths[b]:
                hprev[t, b, k] = h[b, k]
                cprev[t, b, k] = c[b, k]
                y[t, b, k] = zero
                for q in range(4):
                    gates[t, b, q * H + k] = zero
                continue
            # sigmoid written out: kernels call no device functions, so the
            # PTX compile check (perf/gpu_check.py --ptx) runs without a driver
            ai = one / (one + math.exp(-(gates[t, b, k] + rec[b, k] + bias[k])))
            af = one / (one + math.exp(-(gates[t, b, H + k] + rec[b, H + k] + bias[H + k])))
            ag = math.tanh(gates[t, b, 2 * H + k] + rec[b, 2 * H + k] + bias[2 * H + k])
            ao = one / (one + math.exp(-(gates[t, b, 3 * H + k] + rec[b, 3 * H + k] + bias[3 * H + k])))
            gates[t, b, k] = ai
            gates[t, b, H + k] = af
            gates[t, b, 2 * H + k] = ag
            gates[t, b, 3 * H + k] = ao
            hprev[t, b, k] = h[b, k]
            cprev[t, b, k] = c[b, k]
            cn = af * c[b, k] + ai * ag
            c[b, k] = cn
            hn = ao * math.tanh(cn)
            h[b, k] = hn
            y[t, b, k] = hn

    @cuda.jit
    def backward_step(t, tprev, gates, dh, dc, cprev, dy, rec, lengths):
        # gates: (T, B, 4H) activations in, dA out (step t); dh, dc: (B, H) running gradients;
        # rec: (B, H) = dA_{tprev} W_hh from the step processed before (tprev < 0: none)
        B = dh.shape[0]
        H = dh.shape[1]
        for j in range(cuda.grid(1), B * H, cuda.gridsize(1)):
            b = j // H
            k = j % H
            if tprev >= 0 and tprev < lengths[b]:
                dh[b, k] = rec[b, k]
            if t >= lengths[b]:
                continue
            d_h = dh[b, k] + dy[t, b, k]
            dh[b, k] = d_h
            i = gates[t, b, k]
            f = gates[t, b, H + k]
            g = gates[t, b, 2 * H + k]
            o = gates[t, b, 3 * H + k]
            cp = cprev[t, b, k]
            tc = math.tanh(f * cp + i * g)
            d_c = dc[b, k] + d_h * o * (one - tc * tc)
            gates[t, b, 3 * H + k] = d_h * tc * o * (one - o)
            gates[t, b, k] = d_c * g * i * (one - i)
            gates[t, b, 2 * H + k] = d_c * i * (one - g * g)
            gates[t, b, H + k] = d_c * cp * f * (one - f)
            dc[b, k] = d_c * f

    @cuda.jit
    def backward_finish(tprev, dh, dc, rec, lengths, dh0, dc0):
        # dh0 = dA_{tprev} W_hh for rows active at the last processed step, else dh
        B = dh.shape[0]
        H = dh.shape[1]
        for j in range(cuda.grid(1), B * H, cuda.gridsize(1)):
            b = j // H
            k = j % H
            if tprev >= 0 and tprev < lengths[b]:
                dh0[b, k] = rec[b, k]
            else:
                dh0[b, k] = dh[b, k]
            dc0[b, k] = dc[b, k]

    return {"forward_step": forward_step, "backward_step": backward_step, "backward_finish": backward_finish}


@cuda.jit(device=True, inline=True)
def _stage_flat(dst, src, rows, cols):
    """dst (flat, shared) <- src (rows, cols) in row-major order, by the threads of the block."""
    for j in range(cuda.threadIdx.x, rows * cols, cuda.blockDim.x):
        dst[j] = src[j // cols, j % cols]


@cuda.jit(device=True, inline=True)
def _rows_to_shared(s1, s2, g1, g2, b0, R, B, H):
    """s1, s2 (R*H, shared) <- rows b0 .. b0+R-1 of g1, g2 (B, H), by the threads of the block; rows past B are left alone."""
    for q in range(cuda.threadIdx.x, R * H, cuda.blockDim.x):
        b = b0 + q // H
        if b < B:
            s1[q] = g1[b, q % H]
            s2[q] = g2[b, q % H]


@cuda.jit(device=True, inline=True)
def _rows_from_shared(g1, g2, s1, s2, b0, R, B, H):
    """Rows b0 .. b0+R-1 of g1, g2 (B, H) <- s1, s2 (R*H, shared); rows past B are skipped."""
    for q in range(cuda.threadIdx.x, R * H, cuda.blockDim.x):
        b = b0 + q // H
        if b < B:
            g1[b, q % H] = s1[q]
            g2[b, q % H] = s2[q]


@cuda.jit(device=True, inline=True)
def _rows_dot_col(acc, R, v, L, w, wg, stage_w, cols, col, zero):
    """acc[rr] = sum_t v[rr*L + t] * W[t, col] for the R rows of v (R*L, shared), with W (L, cols)
    staged row-major in w (shared) when ``stage_w``, else read from wg (global): one read of
    W serves the R rows."""
    for rr in range(R):
        acc[rr] = zero
    for t in range(L):
        wv = w[t * cols + col] if stage_w else wg[t, col]
        for rr in range(R):
            acc[rr] += v[rr * L + t] * wv


def _make_persistent(dtype: np.dtype, R: int) -> dict:
    """The persistent kernels for ``R`` batch rows per block (a compile-time
    constant: each thread keeps R partial sums, so one read of a weight
    serves R rows)."""
    one = dtype.type(1)
    zero = dtype.type(0)
    nbtype = numba.from_dtype(dtype)  # a numba type: valid for typed arrays compiled and simulated

    @cuda.jit
    def persistent_forward(gates, whh_t, bias, h0, c0, lengths, reverse, y, hprev, cprev, hn, cn, stage_w):
        # block: rows b0 .. b0+R-1; whh_t: (H, 4H)
        # shared: h (R, H) | c (R, H) | a (R, 4H) | [W (H, 4H)]
        sh = cuda.shared.array(0, nbtype)
        T, B, H4 = gates.shape
        H = H4 // 4
        b0 = cuda.blockIdx.x * R
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        hs = sh[0 : R * H]
        cs = sh[R * H : 2 * R * H]
        a = sh[2 * R * H : 2 * R * H + R * H4]
        w = sh[2 * R * H + R * H4 :]
        acc = cuda.local.array(R, nbtype)
        if stage_w:
            _stage_flat(w, whh_t, H, H4)
        _rows_to_shared(hs, cs, h0, c0, b0, R, B, H)
        cuda.syncthreads()
        for s in range(T):
            t = T - 1 - s if reverse else s
            # phase 1: the gate pre-activations of every row and unit, h_{t-1} W_hh^T from shared h
            for j in range(tid, H4, nt):
                _rows_dot_col(acc, R, hs, H, w, whh_t, stage_w, H4, j, zero)
                for rr in range(R):
                    b = b0 + rr
                    if b < B:
                        if t < lengths[b]:
                            v = gates[t, b, j] + acc[rr] + bias[j]
                            if 2 * H <= j and j < 3 * H:
                                v = math.tanh(v)
                            else:
                                v = one / (one + math.exp(-v))
                            a[rr * H4 + j] = v
                            gates[t, b, j] = v
                        else:
                            gates[t, b, j] = zero
            cuda.syncthreads()
            # phase 2: the cell of every row and unit (inactive rows pass their state through)
            for q in range(tid, R * H, nt):
                rr = q // H
                k = q % H
                b = b0 + rr
                if b < B:
                    hprev[t, b, k] = hs[q]
                    cprev[t, b, k] = cs[q]
                    if t < lengths[b]:
                        ar = rr * H4
                        c_new = a[ar + H + k] * cs[q] + a[ar + k] * a[ar + 2 * H + k]
                        cs[q] = c_new
                        h_new = a[ar + 3 * H + k] * math.tanh(c_new)
                        hs[q] = h_new
                        y[t, b, k] = h_new
                    else:
                        y[t, b, k] = zero
            cuda.syncthreads()
        _rows_from_shared(hn, cn, hs, cs, b0, R, B, H)

    @cuda.jit
    def persistent_backward(gates, w_hh, lengths, reverse, cprev, dy, dhn, dcn, dh0, dc0, stage_w):
        # block: rows b0 .. b0+R-1; w_hh: (4H, H)
        # shared: dh (R, H) | dc (R, H) | da (R, 4H) | [W (4H, H)]
        sh = cuda.shared.array(0, nbtype)
        T, B, H4 = gates.shape
        H = H4 // 4
        b0 = cuda.blockIdx.x * R
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        dhs = sh[0 : R * H]
        dcs = sh[R * H : 2 * R * H]
        da = sh[2 * R * H : 2 * R * H + R * H4]
        w = sh[2 * R * H + R * H4 :]
        acc = cuda.local.array(R, nbtype)
        if stage_w:
            _stage_flat(w, w_hh, H4, H)
        _rows_to_shared(dhs, dcs, dhn, dcn, b0, R, B, H)
        cuda.syncthreads()
        for s in range(T):
            t = s if reverse else T - 1 - s
            # phase 1: the fused gate derivative of every active row and unit
            for q in range(tid, R * H, nt):
                rr = q // H
                k = q % H
                b = b0 + rr
                if b < B and t < lengths[b]:
                    d_h = dhs[q] + dy[t, b, k]
                    i = gates[t, b, k]
                    f = gates[t, b, H + k]
                    g = gates[t, b, 2 * H + k]
                    o = gates[t, b, 3 * H + k]
                    cp = cprev[t, b, k]
                    tc = math.tanh(f * cp + i * g)
                    d_c = dcs[q] + d_h * o * (one - tc * tc)
                    v_o = d_h * tc * o * (one - o)
                    v_i = d_c * g * i * (one - i)
                    v_g = d_c * i * (one - g * g)
                    v_f = d_c * cp * f * (one - f)
                    gates[t, b, k] = v_i
                    gates[t, b, H + k] = v_f
                    gates[t, b, 2 * H + k] = v_g
                    gates[t, b, 3 * H + k] = v_o
                    ar = rr * H4
                    da[ar + k] = v_i
                    da[ar + H + k] = v_f
                    da[ar + 2 * H + k] = v_g
                    da[ar + 3 * H + k] = v_o
                    dcs[q] = d_c * f
            cuda.syncthreads()
            # phase 2: dh_{t-1} = dA_t W_hh for the active rows (inactive rows keep dh)
            for m in range(tid, H, nt):
                _rows_dot_col(acc, R, da, H4, w, w_hh, stage_w, H, m, zero)
                for rr in range(R):
                    b = b0 + rr
                    if b < B and t < lengths[b]:
                        dhs[rr * H + m] = acc[rr]
            cuda.syncthreads()
        _rows_from_shared(dh0, dc0, dhs, dcs, b0, R, B, H)

    return {"persistent_forward": persistent_forward, "persistent_backward": persistent_backward}


def _kernels(dtype) -> dict:
    dt = np.dtype(dtype)
    k = _KERNELS.get(dt)
    if k is None:
        k = _KERNELS[dt] = _make_kernels(dt)
    return k


def _persistent_kernels(dtype, R: int) -> dict:
    key = (np.dtype(dtype), int(R))
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = _make_persistent(*key)
    return k


# -- path choice -----------------------------------------------------------------------------------


def use_persistent(B: int, H: int) -> bool:
    """True when the persistent kernel runs for batch ``B`` and hidden size ``H``
    (``config.PERSISTENT`` forces it either way)."""
    forced = config.PERSISTENT
    if forced is not None:
        return bool(forced)
    return B <= int(config.PERSISTENT_MAX_BATCH) and H <= int(config.PERSISTENT_MAX_HIDDEN)


def _persistent_launch(B: int, H: int, itemsize: int) -> tuple[int, int, int, int, bool]:
    """(rows per block R, blocks, threads, shared bytes, stage W_hh in shared memory)."""
    R = max(1, min(int(config.PERSISTENT_ROWS_PER_BLOCK), B))
    base = 6 * R * H * itemsize
    w_bytes = 4 * H * H * itemsize
    stage = base + w_bytes <= int(config.PERSISTENT_MAX_SHARED_BYTES)
    nt = config.PERSISTENT_THREADS
    nt = min(1024, -(-4 * H // 32) * 32) if nt is None else int(nt)
    return R, -(-B // R), nt, base + (w_bytes if stage else 0), stage


# -- host drivers ----------------------------------------------------------------------------------


def lstm_plan(B: int, T: int, I: int, H: int, dtype) -> bool:
    """The plan of one layer direction on the GPU (the CPU twin: ``kernels.cpu.lstm.lstm_plan``):
    True for the persistent kernel (``use_persistent``), False for the general path."""
    return bool(use_persistent(B, H))


def lstm_forward_direction(x2, w_ih, w_hh, bias, h0, c0, lengths, reverse, gates, y, hprev, cprev, hn, cn, plan):
    """Forward pass of one layer direction on device arrays.

    Parameters
    ----------
    x2 : (T*B, I) time-major input rows; w_ih : (4H, I); w_hh : (4H, H);
    bias : (4H,) = b_ih + b_hh; h0, c0 : (B, H); lengths : (B,) int64;
    reverse : bool; plan : ``lstm_plan(...)`` (True: the persistent kernel).

    Outputs
    -------
    gates : (T, B, 4H) gate activations (``lstm_backward_direction`` consumes them);
    y, hprev, cprev : (T, B, H); hn, cn : (B, H) final state.
    """
    T, B, H4 = gates.shape
    H = H4 // 4
    k = _kernels(gates.dtype)
    gemm(x2, w_ih, gates.reshape(T * B, H4), trans_b=True)  # the input projection of every step
    if plan:
        whh_t = cuda.device_array((H, H4), w_hh.dtype)
        elementwise.swap01(w_hh.reshape(H4, H, 1), whh_t.reshape(H, H4, 1))
        R, blocks, nt, shared, stage = _persistent_launch(B, H, gates.dtype.itemsize)
        _persistent_kernels(gates.dtype, R)["persistent_forward"][blocks, nt, 0, shared](
            gates, whh_t, bias, h0, c0, lengths, bool(reverse), y, hprev, cprev, hn, cn, stage
        )
        return
    elementwise.copy(h0, hn)
    elementwise.copy(c0, cn)
    rec = cuda.device_array((B, H4), gates.dtype)
    blocks, tpb = grid_1d(B * H)
    step = k["forward_step"]
    for s in range(T):
        t = T - 1 - s if reverse else s
        gemm(hn, w_hh, rec, trans_b=True)
        step[blocks, tpb](t, gates, rec, bias, hn, cn, hprev, cprev, y, lengths)


def lstm_backward_direction(
    x2, w_ih, w_hh, lengths, reverse, gates, hprev, cprev, dy, dhn, dcn, dx_add, dx2, dw_ih, dw_hh, dbias, dh0, dc0, plan
):
    """BPTT of one layer direction on device arrays.

    Parameters
    ----------
    x2 : (T*B, I); w_ih : (4H, I); w_hh : (4H, H); lengths : (B,) int64;
    gates : (T, B, 4H) saved activations, CONSUMED (become dA);
    hprev, cprev : (T, B, H) saved; dy : (T, B, H); dhn, dcn : (B, H) gradients
    of the final state (``dhn``/``dcn`` are read only).
    dx_add : add into ``dx2`` instead of writing it; plan : the forward pass's.

    Outputs
    -------
    dx2 : (T*B, I) written or added to; dw_ih (4H, I), dw_hh (4H, H) added to;
    dbias : (4H,) written (the caller adds it to both bias gradients);
    dh0, dc0 : (B, H) gradients of the initial state.
    """
    T, B, H4 = gates.shape
    H = H4 // 4
    k = _kernels(gates.dtype)
    if plan:
        R, blocks, nt, shared, stage = _persistent_launch(B, H, gates.dtype.itemsize)
        _persistent_kernels(gates.dtype, R)["persistent_backward"][blocks, nt, 0, shared](
            gates, w_hh, lengths, bool(reverse), cprev, dy, dhn, dcn, dh0, dc0, stage
        )
    else:
        dh = cuda.device_array((B, H), gates.dtype)
        dc = cuda.device_array((B, H), gates.dtype)
        elementwise.copy(dhn, dh)
        elementwise.copy(dcn, dc)
        rec = cuda.device_array((B, H), gates.dtype)
        blocks, tpb = grid_1d(B * H)
        step = k["backward_step"]
        tprev = -1
        for s in range(T):
            t = s if reverse else T - 1 - s
            step[blocks, tpb](t, tprev, gates, dh, dc, cprev, dy, rec, lengths)
            gemm(gates[t], w_hh, rec)  # dh_{t-1} = dA_t W_hh (selected per row next step)
            tprev = t
        k["backward_finish"][blocks, tpb](tprev, dh, dc, rec, lengths, dh0, dc0)
    da2 = gates.reshape(T * B, H4)
    gemm(da2, w_ih, dx2, accumulate=dx_add)
    gemm(da2, x2, dw_ih, trans_a=True, accumulate=True)
    gemm(da2, hprev.reshape(T * B, H), dw_hh, trans_a=True, accumulate=True)
    elementwise.col_sum(da2, dbias)
