"""``@cuda.jit`` twins of ``numlstm.kernels.cpu.attention`` (the soft-attention LSTM),
``TemporalAttention`` and the doubly stochastic penalty, plus the small
matrix products needed before and after the time loops. The drivers
(``attention_lstm_forward``, ``attention_lstm_backward``,
``temporal_attention_forward``, ``temporal_attention_backward``,
``attention_penalty``) have the CPU drivers' names and arguments.

Notation as in the CPU module (docs/attention.md). The sequences of a batch
are independent, so each time loop is ONE launch with one block per batch
row: the block runs every step of its row, its threads splitting each
step's work (the products with h_{t-1}, the scores of the L locations, the
context, the 4H gates, the cell) with ``syncthreads`` between the phases.
No grid-wide synchronisation is needed, and nothing returns to the host
between steps. Gradients that sum over the batch (``dv``) are written per
row and summed after the launch (no atomics, deterministic).

Arrays are time-major ``(T, B, ...)``; ``a``/``p`` have a leading axis of 1
(one map read at every step) or T. Drivers take device arrays; the layers
validate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from numlstm.kernels.cuda import config, elementwise
from numlstm.kernels.cuda._launch import grid_1d
from numlstm.kernels.cuda.conv import add_partials, channel_sum, split_count
from numlstm.kernels.cuda.convlstm import _sigmoid, _tanh, copy_channels, swap01


def _row_launch(B: int) -> tuple[int, int]:
    """One block per batch row (grid-stride over rows)."""
    return max(1, min(int(B), int(config.MAX_BLOCKS))), int(config.ATTENTION_THREADS)


# -- the attention LSTM -----------------------------------------------------------------------------
@cuda.jit
def _attention_lstm_forward_kernel(
    a, p, xproj, w_rec_t, w_iz_t, v, b_gate, gate, approx, h0, c0, I,
    inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn, rec, zg, e,
):  # fmt: skip
    # a: (Ta, B, L, D); p: (Ta, B, L, A); xproj: (T, B, 4H); w_rec_t: (H, 4H + A + 1);
    # w_iz_t: (D, 4H); v: (A,); b_gate: (1,); h0, c0: (B, H); outputs as the CPU kernel's;
    # hn, cn: (B, H) also hold the running state; rec: (B, 4H + A + 1), zg: (B, D),
    # e: (B, L) scratch
    T, B, H4 = xproj.shape
    H = H4 // 4
    Ta, _, L, D = a.shape
    A = v.shape[0]
    R = H4 + A + 1
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for k in range(tid, H, nt):
            hn[b, k] = h0[b, k]
            cn[b, k] = c0[b, k]
        for t in range(T):
            ta = 0 if Ta == 1 else t
            cuda.syncthreads()
            # [h W_hh^T | h W_h^T | h . w_b]
            for j in range(tid, R, nt):
                acc = rec.dtype.type(0)
                for k in range(H):
                    acc += hn[b, k] * w_rec_t[k, j]
                rec[b, j] = acc
            cuda.syncthreads()
            # scores e_i = v . tanh(p_i + q)
            for i in range(tid, L, nt):
                ei = e.dtype.type(0)
                for k in range(A):
                    sv = _tanh(p[ta, b, i, k] + rec[b, H4 + k], approx)
                    s[t, b, i, k] = sv
                    ei += v[k] * sv
                e[b, i] = ei
            cuda.syncthreads()
            if tid == 0:
                # softmax shifted by the maximum; the gate
                emax = e[b, 0]
                for i in range(1, L):
                    if e[b, i] > emax:
                        emax = e[b, i]
                total = 0.0
                for i in range(L):
                    e[b, i] = math.exp(e[b, i] - emax)
                    total += e[b, i]
                for i in range(L):
                    alpha[t, b, i] = e[b, i] / total
                if gate:
                    beta[t, b] = _sigmoid(rec[b, H4 + A] + b_gate[0], approx)
                else:
                    beta[t, b] = 1.0
            cuda.syncthreads()
            # context z = sum_i alpha_i a_i, gated
            bt = beta[t, b]
            for d in range(tid, D, nt):
                zd = z.dtype.type(0)
                for i in range(L):
                    zd += alpha[t, b, i] * a[ta, b, i, d]
                z[t, b, d] = zd
                zg[b, d] = bt * zd
                inp[t, b, I + d] = zg[b, d]
            cuda.syncthreads()
            # gates from [x_t, beta z_t]
            for j in range(tid, H4, nt):
                zin = gates.dtype.type(0)
                for d in range(D):
                    zin += zg[b, d] * w_iz_t[d, j]
                pre = xproj[t, b, j] + zin + rec[b, j]
                if 2 * H <= j < 3 * H:
                    gates[t, b, j] = _tanh(pre, approx)
                else:
                    gates[t, b, j] = _sigmoid(pre, approx)
            cuda.syncthreads()
            # the cell
            for k in range(tid, H, nt):
                hprev[t, b, k] = hn[b, k]
                cprev[t, b, k] = cn[b, k]
                cnew = gates[t, b, H + k] * cn[b, k] + gates[t, b, k] * gates[t, b, 2 * H + k]
                cn[b, k] = cnew
                tc = _tanh(cnew, approx)
                tanh_c[t, b, k] = tc
                hk = gates[t, b, 3 * H + k] * tc
                hn[b, k] = hk
                y[t, b, k] = hk
        cuda.syncthreads()


@cuda.jit
def _attention_lstm_backward_kernel(
    a, w_hh, w_q, w_iz, v, gate, gates, cprev, tanh_c, alpha, s, beta, z, dy, dattn, has_dattn, dhn, dcn,
    dgates, dq, dp, da_ctx, dv_rows, dh0, dc0, dzg, dal, sdot,
):  # fmt: skip
    # as the CPU kernel; dv_rows: (B, A) per-row dv (+=); dh0, dc0: (B, H) also hold the
    # running gradient of the state; dzg: (B, D), dal: (B, L), sdot: (B,) scratch
    T, B, H4 = dgates.shape
    H = H4 // 4
    Ta, _, L, D = a.shape
    A = v.shape[0]
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for k in range(tid, H, nt):
            dh0[b, k] = dhn[b, k]
            dc0[b, k] = dcn[b, k]
        for t in range(T - 1, -1, -1):
            ta = 0 if Ta == 1 else t
            cuda.syncthreads()
            # the cell: dA_t, and dc becomes dL/dc_{t-1}
            for k in range(tid, H, nt):
                dhk = dh0[b, k] + dy[t, b, k]
                i = gates[t, b, k]
                f = gates[t, b, H + k]
                g = gates[t, b, 2 * H + k]
                o = gates[t, b, 3 * H + k]
                tc = tanh_c[t, b, k]
                dck = dc0[b, k] + dhk * o * (1.0 - tc * tc)
                dgates[t, b, k] = dck * g * i * (1.0 - i)
                dgates[t, b, H + k] = dck * cprev[t, b, k] * f * (1.0 - f)
                dgates[t, b, 2 * H + k] = dck * i * (1.0 - g * g)
                dgates[t, b, 3 * H + k] = dhk * tc * o * (1.0 - o)
                dc0[b, k] = dck * f
            cuda.syncthreads()
            # dL/d(beta z) = dA_t W_iz
            for d in range(tid, D, nt):
                acc = dzg.dtype.type(0)
                for j in range(H4):
                    acc += dgates[t, b, j] * w_iz[j, d]
                dzg[b, d] = acc
            cuda.syncthreads()
            bt = beta[t, b]
            if tid == 0:
                if gate:
                    dbeta = 0.0
                    for d in range(D):
                        dbeta += dzg[b, d] * z[t, b, d]
                    dq[t, b, A] = dbeta * bt * (1.0 - bt)
                else:
                    dq[t, b, A] = 0.0
            # z = sum_i alpha_i a_i: dalpha_i = dz . a_i, da_i += alpha_i dz
            for i in range(tid, L, nt):
                di = dal.dtype.type(0)
                if has_dattn:
                    di = dattn[t, b, i]
                al = alpha[t, b, i]
                for d in range(D):
                    dz = bt * dzg[b, d]
                    di += dz * a[ta, b, i, d]
                    da_ctx[ta, b, i, d] += al * dz
                dal[b, i] = di
            cuda.syncthreads()
            if tid == 0:
                sd = 0.0
                for i in range(L):
                    sd += alpha[t, b, i] * dal[b, i]
                sdot[b] = sd
            cuda.syncthreads()
            # softmax: de_i = alpha_i (dalpha_i - sum_j alpha_j dalpha_j), kept in dal
            for i in range(tid, L, nt):
                dal[b, i] = alpha[t, b, i] * (dal[b, i] - sdot[b])
            cuda.syncthreads()
            # e_i = v . s_i, s_i = tanh(p_i + q)
            for k in range(tid, A, nt):
                dqk = dq.dtype.type(0)
                dvk = dv_rows.dtype.type(0)
                for i in range(L):
                    de = dal[b, i]
                    sv = s[t, b, i, k]
                    dvk += de * sv
                    du = de * v[k] * (1.0 - sv * sv)
                    dp[ta, b, i, k] += du
                    dqk += du
                dq[t, b, k] = dqk
                dv_rows[b, k] += dvk
            cuda.syncthreads()
            # dh_{t-1} = dA_t W_hh + [dq_t | dgate_t] [W_h; w_b]
            for k in range(tid, H, nt):
                r1 = dh0.dtype.type(0)
                for j in range(H4):
                    r1 += dgates[t, b, j] * w_hh[j, k]
                r2 = dh0.dtype.type(0)
                for m in range(A + 1):
                    r2 += dq[t, b, m] * w_q[m, k]
                dh0[b, k] = r1 + r2
        cuda.syncthreads()


def attention_lstm_forward_loop(
    a, p, xproj, w_rec_t, w_iz_t, v, b_gate, gate, approx, h0, c0, inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn
) -> None:
    """Forward time loop (the CPU kernel's arguments; device arrays), one launch.

    ``b_gate`` may be a (1,) device array (the layer's ``gate_bias``, read on
    the device: no transfer) or a number."""
    T, B, H4 = xproj.shape
    D = a.shape[3]
    L = a.shape[2]
    A = v.shape[0]
    dt = xproj.dtype
    rec = cuda.device_array((B, H4 + A + 1), dt)
    zg = cuda.device_array((B, D), dt)
    e = cuda.device_array((B, L), dt)
    I = inp.shape[2] - D
    if np.ndim(b_gate) == 0 and not hasattr(b_gate, "copy_to_host"):  # a number (the CPU kernel's argument)
        b_gate = cuda.to_device(np.array([b_gate], dt))
    _attention_lstm_forward_kernel[_row_launch(B)](
        a, p, xproj, w_rec_t, w_iz_t, v, b_gate, bool(gate), bool(approx), h0, c0, I,
        inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn, rec, zg, e,
    )  # fmt: skip


def attention_lstm_backward_loop(
    a, w_hh, w_q, w_iz, v, gate, gates, cprev, tanh_c, alpha, s, beta, z, dy, dattn, has_dattn, dhn, dcn,
    dgates, dq, dp, da_ctx, dv, dh0, dc0,
) -> None:  # fmt: skip
    """Backward time loop (the CPU kernel's arguments; device arrays), one launch
    plus the batch sum of ``dv`` (ADDED, as ``dp`` and ``da_ctx``)."""
    T, B, H4 = dgates.shape
    L, D = a.shape[2], a.shape[3]
    A = v.shape[0]
    dt = dgates.dtype
    dv_rows = cuda.device_array((B, A), dt)
    _zero_kernel[grid_1d(B * A)](dv_rows.reshape(B * A))
    dzg = cuda.device_array((B, D), dt)
    dal = cuda.device_array((B, L), dt)
    sdot = cuda.device_array(B, np.float64)
    _attention_lstm_backward_kernel[_row_launch(B)](
        a, w_hh, w_q, w_iz, v, bool(gate), gates, cprev, tanh_c, alpha, s, beta, z, dy, dattn, bool(has_dattn),
        dhn, dcn, dgates, dq, dp, da_ctx, dv_rows, dh0, dc0, dzg, dal, sdot,
    )  # fmt: skip
    col_sum(dv_rows, dv)


# -- the drivers of the attention LSTM (numlstm.kernels.cpu.attention's entry points) ----------------
def attention_lstm_forward(a, x, T, params, gate, approx, h0, c0, return_sequences, training):
    """The attention LSTM over T steps (the CPU driver's arguments and results; device
    arrays): the products before the loop, then the whole time loop in ONE launch
    (a block per batch row)."""
    P = params
    B, L, D = a.shape[0], a.shape[len(a.shape) - 2], a.shape[len(a.shape) - 1]
    H = P["weight_hh"].shape[1]
    A = P["attn_v"].shape[0]
    I = P["weight_ih"].shape[1] - D
    dt = np.dtype(a.dtype)
    a_tm = a.reshape((1,) + tuple(a.shape)) if len(a.shape) == 3 else swap01(a)  # (Ta, B, L, D)
    Ta = a_tm.shape[0]
    p = cuda.device_array((Ta, B, L, A), dt)
    matmul(a_tm.reshape(Ta * B * L, D), P["attn_weight_a"], p.reshape(Ta * B * L, A), trans_b=True, bias=P["attn_bias"])
    inp = cuda.device_array((T, B, I + D), dt)
    xproj = cuda.device_array((T, B, 4 * H), dt)
    bsum = cuda.device_array(4 * H, dt)
    add(P["bias_ih"], P["bias_hh"], bsum)
    x2 = xproj.reshape(T * B, 4 * H)
    if I > 0:
        x_tm = swap01(x)  # (T, B, I)
        copy_channels(x_tm.reshape(T * B, I, 1, 1), 0, inp.reshape(T * B, I + D, 1, 1), 0, I)
        matmul(x_tm.reshape(T * B, I), P["weight_ih"][:, :I], x2, trans_b=True, bias=bsum)
    else:
        fill_rows(bsum, x2)
    w_rec_t = cuda.device_array((H, 4 * H + A + 1), dt)
    w_b = P["gate_weight"] if gate else P["attn_bias"]
    build_w_rec(P["weight_hh"], P["attn_weight_h"], w_b, gate, w_rec_t)
    b_gate = P["gate_bias"] if gate else _zeros(1, dt)
    w_iz_t = cuda.device_array((D, 4 * H), dt)
    transpose(P["weight_ih"][:, I:], w_iz_t)
    hprev, cprev, tanh_c, y = (cuda.device_array((T, B, H), dt) for _ in range(4))
    gates = cuda.device_array((T, B, 4 * H), dt)
    alpha = cuda.device_array((T, B, L), dt)
    s = cuda.device_array((T, B, L, A), dt)
    beta = cuda.device_array((T, B), dt)
    z = cuda.device_array((T, B, D), dt)
    hn = cuda.device_array((B, H), dt)
    cn = cuda.device_array((B, H), dt)
    attention_lstm_forward_loop(
        a_tm, p, xproj, w_rec_t, w_iz_t, P["attn_v"], b_gate, gate, approx, h0, c0,
        inp, hprev, cprev, gates, tanh_c, alpha, s, beta, z, y, hn, cn,
    )  # fmt: skip
    saved = None
    if training:
        saved = {
            "a": a_tm, "inp": inp, "hprev": hprev, "cprev": cprev, "gates": gates, "tanh_c": tanh_c,
            "alpha": alpha, "s": s, "beta": beta, "z": z, "B": B, "T": T, "L": L, "has_x": I > 0, "single": len(a.shape) == 3,
        }  # fmt: skip
    if return_sequences:
        out = swap01(y)
    else:
        out = cuda.device_array((B, H), dt)
        out.copy_to_device(hn)
    return out, hn, cn, swap01(alpha), saved


def attention_lstm_backward(saved, dy, dhn, dcn, dattention, params, grads, gate, return_sequences):
    """Backpropagation through ``attention_lstm_forward`` (the CPU driver's arguments and
    results; device arrays): the time loop in ONE launch, then every weight gradient
    as one reduction over all steps."""
    P, G = params, grads
    B, T, L = saved["B"], saved["T"], saved["L"]
    a_tm = saved["a"]
    Ta, D = a_tm.shape[0], a_tm.shape[3]
    H = P["weight_hh"].shape[1]
    A = P["attn_v"].shape[0]
    I = P["weight_ih"].shape[1] - D
    dt = np.dtype(a_tm.dtype)
    if dattention is not None:
        dattn = swap01(dattention)
    else:
        dattn = _zeros((1, 1, 1), dt)
    if return_sequences:
        dy_tm = swap01(dy)
    else:
        dy_tm = _zeros((T, B, H), dt)
        d = cuda.device_array((B, H), dt)
        add(dhn.reshape(B * H), dy.reshape(B * H), d.reshape(B * H))
        dhn = d
    w_q = cuda.device_array((A + 1, H), dt)
    build_w_q(P["attn_weight_h"], P["gate_weight"] if gate else P["attn_bias"], gate, w_q)
    dgates = cuda.device_array((T, B, 4 * H), dt)
    dq = cuda.device_array((T, B, A + 1), dt)
    dp = _zeros((Ta, B, L, A), dt)
    da = _zeros((Ta, B, L, D), dt)  # da_ctx, then the whole annotations' gradient
    dh0 = cuda.device_array((B, H), dt)
    dc0 = cuda.device_array((B, H), dt)
    attention_lstm_backward_loop(
        a_tm, P["weight_hh"], w_q, P["weight_ih"][:, I:], P["attn_v"], gate,
        saved["gates"], saved["cprev"], saved["tanh_c"], saved["alpha"], saved["s"], saved["beta"], saved["z"],
        dy_tm, dattn, dattention is not None, dhn, dcn, dgates, dq, dp, da, G["attn_v"], dh0, dc0,
    )  # fmt: skip
    # weight gradients: one reduction each over all steps
    dg2 = dgates.reshape(T * B, 4 * H)
    dq2 = dq.reshape(T * B, A + 1)
    hp2 = saved["hprev"].reshape(T * B, H)
    matmul_tn_acc(dg2, saved["inp"].reshape(T * B, I + D), G["weight_ih"])
    matmul_tn_acc(dg2, hp2, G["weight_hh"])
    col_sum(dg2, G["bias_ih"])
    col_sum(dg2, G["bias_hh"])
    matmul_tn_acc(dq2[:, :A], hp2, G["attn_weight_h"])
    if gate:
        matmul_tn_acc(dq2[:, A : A + 1], hp2, G["gate_weight"].reshape(1, H))
        col_sum_strided(dq2[:, A : A + 1], G["gate_bias"])
    dp2 = dp.reshape(Ta * B * L, A)
    matmul_tn_acc(dp2, a_tm.reshape(Ta * B * L, D), G["attn_weight_a"])
    col_sum(dp2, G["attn_bias"])
    matmul(dp2, P["attn_weight_a"], da.reshape(Ta * B * L, D), accumulate=True)
    dx = None
    if saved["has_x"]:
        dxt = cuda.device_array((T, B, I), dt)
        matmul(dg2, P["weight_ih"][:, :I], dxt.reshape(T * B, I))
        dx = swap01(dxt)
    da = da.reshape(B, L, D) if saved["single"] else swap01(da)
    return da, dx, dh0, dc0


def _zeros(shape, dtype):
    """A device array of zeros (filled by a kernel: no host copy)."""
    out = cuda.device_array(shape, dtype)
    if out.size:
        elementwise.fill(out, 0.0)
    return out


# -- TemporalAttention ------------------------------------------------------------------------------
@cuda.jit
def _temporal_forward_kernel(x, w, bias, v, lens, has_lens, s, e, alpha, out):
    # x: (B, T, F); w: (A, F); bias, v: (A,); lens: (B,) int64; s: (B, T, A) <- tanh(x W^T + b);
    # e: (B, T) scratch; alpha: (B, T); out: (B, F)
    B, T, F = x.shape
    A = w.shape[0]
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        n = lens[b] if has_lens else T
        for q in range(tid, T * A, nt):
            t = q // A
            k = q % A
            acc = s.dtype.type(0)
            for f in range(F):
                acc += x[b, t, f] * w[k, f]
            s[b, t, k] = math.tanh(acc + bias[k])
        cuda.syncthreads()
        for t in range(tid, T, nt):
            acc = e.dtype.type(0)
            for k in range(A):
                acc += s[b, t, k] * v[k]
            e[b, t] = acc
        cuda.syncthreads()
        if tid == 0:
            emax = e[b, 0]
            for t in range(1, n):
                if e[b, t] > emax:
                    emax = e[b, t]
            total = e.dtype.type(0)
            for t in range(n):
                e[b, t] = math.exp(e[b, t] - emax)
                total += e[b, t]
            for t in range(T):
                alpha[b, t] = e[b, t] / total if t < n else 0.0
        cuda.syncthreads()
        for f in range(tid, F, nt):
            acc = out.dtype.type(0)
            for t in range(T):
                acc += alpha[b, t] * x[b, t, f]
            out[b, f] = acc
        cuda.syncthreads()


@cuda.jit
def _temporal_backward_kernel(x, w, v, s, alpha, dy, dattn, has_dattn, dal, sdot, du, gv_rows, dx):
    # x: (B, T, F); w: (A, F); v: (A,); s: (B, T, A); alpha: (B, T); dy: (B, F);
    # dattn: (B, T) read when has_dattn; dal: (B, T), sdot: (B,) scratch;
    # du: (B, T, A) <- dL/d(pre-tanh); gv_rows: (B, A) <- per-row dv; dx: (B, T, F)
    B, T, F = x.shape
    A = w.shape[0]
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for b in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for t in range(tid, T, nt):
            acc = dal.dtype.type(0)
            for f in range(F):
                acc += x[b, t, f] * dy[b, f]
            if has_dattn:
                acc += dattn[b, t]
            dal[b, t] = acc
        cuda.syncthreads()
        if tid == 0:
            sd = dal.dtype.type(0)
            for t in range(T):
                sd += alpha[b, t] * dal[b, t]
            sdot[b] = sd
        cuda.syncthreads()
        for t in range(tid, T, nt):
            dal[b, t] = alpha[b, t] * (dal[b, t] - sdot[b])  # de, 0 at padded steps
        cuda.syncthreads()
        for k in range(tid, A, nt):
            acc = gv_rows.dtype.type(0)
            for t in range(T):
                sv = s[b, t, k]
                acc += dal[b, t] * sv
                du[b, t, k] = (dal[b, t] * v[k]) * (1.0 - sv * sv)
            gv_rows[b, k] = acc
        cuda.syncthreads()
        for q in range(tid, T * F, nt):
            t = q // F
            f = q % F
            acc = dx.dtype.type(0)
            for k in range(A):
                acc += du[b, t, k] * w[k, f]
            dx[b, t, f] = alpha[b, t] * dy[b, f] + acc
        cuda.syncthreads()


def temporal_attention_forward(x, w, bias, v, lens, s, alpha, out) -> None:
    """TemporalAttention forward. x (B, T, F); w (A, F); bias, v (A,); lens: (B,) int64
    device array or None; s (B, T, A), alpha (B, T), out (B, F) written."""
    B, T, F = x.shape
    has_lens = lens is not None
    if lens is None:
        lens = cuda.device_array(1, np.int64)
    e = cuda.device_array((B, T), x.dtype)
    _temporal_forward_kernel[_row_launch(B)](x, w, bias, v, lens, has_lens, s, e, alpha, out)


def temporal_attention_backward(x, w, v, s, alpha, dy, dattn, dw_acc, db_acc, dv_acc, dx) -> None:
    """TemporalAttention backward: dx (B, T, F) written; dW (A, F), db, dv (A,) ADDED.
    dattn: (B, T) device array or None."""
    B, T, F = x.shape
    A = w.shape[0]
    dt = x.dtype
    has = dattn is not None
    dal = cuda.device_array((B, T), dt)
    sdot = cuda.device_array(B, dt)
    du = cuda.device_array((B, T, A), dt)
    gv = cuda.device_array((B, A), dt)
    _temporal_backward_kernel[_row_launch(B)](x, w, v, s, alpha, dy, dattn if has else dal, has, dal, sdot, du, gv, dx)
    du2 = du.reshape(B * T, A)
    matmul_tn_acc(du2, x.reshape(B * T, F), dw_acc)
    col_sum(du2, db_acc)
    col_sum(gv, dv_acc)


# -- the doubly stochastic penalty ------------------------------------------------------------------
@cuda.jit
def _penalty_kernel(alpha, lam, dalpha, rr):
    # alpha, dalpha: (B, T, L); rr: (B, L) float64 <- (1 - sum_t alpha)^2
    B, T, L = alpha.shape
    for idx in range(cuda.grid(1), B * L, cuda.gridsize(1)):
        i = idx % L
        b = idx // L
        acc = 0.0
        for t in range(T):
            acc += alpha[b, t, i]
        r = 1.0 - acc
        rr[b, i] = r * r
        g = -2.0 * lam * r
        for t in range(T):
            dalpha[b, t, i] = g


def attention_penalty(alpha, lam: float):
    """(value, dalpha) of ``lam * sum_b sum_i (1 - sum_t alpha[b, t, i])^2`` for a
    device ``alpha`` (B, T, L); ``dalpha`` stays on the device, ``value`` is a float
    (one small copy of B*L partial sums)."""
    B, T, L = alpha.shape
    dalpha = cuda.device_array(alpha.shape, alpha.dtype)
    rr = cuda.device_array((B, L), np.float64)
    _penalty_kernel[grid_1d(B * L)](alpha, float(lam), dalpha, rr)
    return float(lam) * float(np.sum(rr.copy_to_host())), dalpha


# -- small products and sums ------------------------------------------------------------------------
@cuda.jit
def _zero_kernel(a):
    for j in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[j] = 0


@cuda.jit
def _matmul_kernel(a, b, trans_b, bias, has_bias, acc, out):
    # out (M, N) (+)= a (M, K) @ (b (N, K)^T if trans_b else b (K, N)) (+ bias (N,))
    M, N = out.shape
    K = a.shape[1]
    for idx in range(cuda.grid(1), M * N, cuda.gridsize(1)):
        n = idx % N
        m = idx // N
        s = out.dtype.type(0)
        if trans_b:
            for k in range(K):
                s += a[m, k] * b[n, k]
        else:
            for k in range(K):
                s += a[m, k] * b[k, n]
        if has_bias:
            s += bias[n]
        if acc:
            out[m, n] += s
        else:
            out[m, n] = s


@cuda.jit
def _matmul_tn_kernel(a, b, partial):
    # a (M, K1), b (M, K2); partial (K1*K2, S) <- lane s of each output's sum over
    # the rows m = s, s + S, ...
    M, K1 = a.shape
    K2 = b.shape[1]
    S = partial.shape[1]
    for idx in range(cuda.grid(1), K1 * K2 * S, cuda.gridsize(1)):
        s = idx % S
        q = idx // S
        j = q % K2
        i = q // K2
        acc = partial.dtype.type(0)
        for m in range(s, M, S):
            acc += a[m, i] * b[m, j]
        partial[q, s] = acc


def matmul(a, b, out, trans_b=False, bias=None, accumulate=False) -> None:
    """out (M, N) = (or +=) a (M, K) @ b (K, N) (b (N, K) transposed with ``trans_b``) + bias (N,)."""
    if out.size == 0:
        return
    has = bias is not None
    blocks, tpb = grid_1d(out.size)
    _matmul_kernel[blocks, tpb](a, b, bool(trans_b), bias if has else out[0], has, bool(accumulate), out)


def matmul_tn_acc(a, b, out) -> None:
    """out (K1, K2) += a (M, K1)^T @ b (M, K2) (a split reduction over M, no atomics)."""
    if out.size == 0:
        return
    S = split_count(out.size, a.shape[0])
    partial = cuda.device_array((out.size, S), out.dtype)
    _matmul_tn_kernel[grid_1d(partial.size)](a, b, partial)
    add_partials(partial, out)


def col_sum(a, out) -> None:
    """out (K,) += a (M, K) summed over rows."""
    M, K = a.shape
    channel_sum(a.reshape(M, K, 1), out)


@cuda.jit
def _col_sum_kernel(a, partial):
    # a: (M, K), any strides; partial: (K, S) <- lane s of each column's sum (rows s, s + S, ...)
    M, K = a.shape
    S = partial.shape[1]
    for idx in range(cuda.grid(1), K * S, cuda.gridsize(1)):
        s = idx % S
        k = idx // S
        acc = partial.dtype.type(0)
        for m in range(s, M, S):
            acc += a[m, k]
        partial[k, s] = acc


def col_sum_strided(a, out) -> None:
    """out (K,) += a (M, K) summed over rows, for a strided 2-d view ``a``."""
    M, K = a.shape
    S = split_count(K, M)
    partial = cuda.device_array((K, S), out.dtype)
    _col_sum_kernel[grid_1d(K * S)](a, partial)
    add_partials(partial, out)


# -- parameter layouts the time loops read -----------------------------------------------------------
@cuda.jit
def _build_w_rec_kernel(w_hh, w_h, w_b, gate, out):
    # out (H, 4H + A + 1) = [W_hh^T | W_h^T | w_b] (last column 0 without gating)
    H, R = out.shape
    H4 = w_hh.shape[0]
    A = w_h.shape[0]
    for idx in range(cuda.grid(1), H * R, cuda.gridsize(1)):
        j = idx % R
        k = idx // R
        if j < H4:
            out[k, j] = w_hh[j, k]
        elif j < H4 + A:
            out[k, j] = w_h[j - H4, k]
        else:
            out[k, j] = w_b[k] if gate else 0.0


@cuda.jit
def _build_w_q_kernel(w_h, w_b, gate, out):
    # out (A + 1, H) = [W_h; w_b] (last row 0 without gating)
    A1, H = out.shape
    for idx in range(cuda.grid(1), A1 * H, cuda.gridsize(1)):
        k = idx % H
        m = idx // H
        if m < A1 - 1:
            out[m, k] = w_h[m, k]
        else:
            out[m, k] = w_b[k] if gate else 0.0


@cuda.jit
def _transpose_kernel(src, out):
    # src (R, C), any strides -> out (C, R)
    R, C = src.shape
    for idx in range(cuda.grid(1), R * C, cuda.gridsize(1)):
        r = idx % R
        c = idx // R
        out[c, r] = src[r, c]


@cuda.jit
def _add_kernel(a, b, out):
    # out = a + b, 1-d
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[j] = a[j] + b[j]


def build_w_rec(w_hh, w_h, w_b, gate, out) -> None:
    """out (H, 4H + A + 1) = [W_hh^T | W_h^T | w_b] (w_b: (H,), read when ``gate``)."""
    _build_w_rec_kernel[grid_1d(out.size)](w_hh, w_h, w_b, bool(gate), out)


def build_w_q(w_h, w_b, gate, out) -> None:
    """out (A + 1, H) = [W_h; w_b] (last row 0 without ``gate``)."""
    _build_w_q_kernel[grid_1d(out.size)](w_h, w_b, bool(gate), out)


def transpose(src, out) -> None:
    """out (C, R) = src (R, C)^T (src may be a strided view)."""
    _transpose_kernel[grid_1d(out.size)](src, out)


def add(a, b, out) -> None:
    """out = a + b for 1-d device arrays."""
    _add_kernel[grid_1d(out.size)](a, b, out)


@cuda.jit
def _rows_kernel(v, out):
    # out (M, N): every row = v (N,)
    M, N = out.shape
    for idx in range(cuda.grid(1), M * N, cuda.gridsize(1)):
        out[idx // N, idx % N] = v[idx % N]


def fill_rows(v, out) -> None:
    """Every row of out (M, N) = v (N,)."""
    _rows_kernel[grid_1d(out.size)](v, out)
