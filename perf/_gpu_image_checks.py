"""The image half of ``perf/gpu_check.py``: checks and ConvLSTM timings on the GPU.

``checks(smoke)`` runs every image layer (and so every kernel of
``numlstm/kernels/cuda/{conv,batchnorm,convlstm,attention}.py``) on the
device and on the CPU in float64, on the same random inputs, weights and
upstream gradients, at several sizes (tiny ones in smoke mode, which runs on
the CUDA simulator), and returns ``(name, max relative error)`` over the
outputs, the input gradients and the parameter gradients.

``time_convlstm(smoke)`` times a float32 ConvLSTM training step (forward +
backward, as ``perf/convlstm_cpu.py``) and the forward pass on the device
against the Conv2d-based PyTorch ConvLSTM of ``perf/convlstm_cpu.py`` on the
same GPU: warm-up calls first, a device synchronisation after every call,
medians of ``reps`` calls. Torch is skipped when it is not installed, has no
CUDA device, or in smoke mode on the simulator.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import median_time, rel, small_launches  # noqa: E402

import numlstm  # noqa: E402
from numlstm.backend import to_numpy  # noqa: E402

#: (B, T, C_in, C, H, W, k) of the timed ConvLSTM (issue 6), and the smoke size
CONVLSTM_SIZE = (8, 10, 1, 64, 64, 64, 5)
CONVLSTM_SMOKE = (1, 2, 1, 2, 3, 3, 3)


def _randomise(layer, rng) -> None:
    """Non-zero random parameters (biases included), on the host before ``to()``."""
    for v in layer.params.values():
        v[...] = rng.uniform(-0.5, 0.5, v.shape)


def _compare(make, inputs, rng, call=None, grad_call=None, backward: bool = True) -> float:
    """Max relative error of outputs, gradients and parameter gradients of a
    layer built twice by ``make`` (one moved to the GPU)."""
    cpu_layer = make()
    _randomise(cpu_layer, rng)
    gpu_layer = make()
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    if hasattr(cpu_layer, "buffers"):
        for k, v in cpu_layer.buffers.items():
            gpu_layer.buffers[k][...] = v
    gpu_layer.to("cuda")
    call = call or (lambda layer, *xs: layer(*xs))
    y = call(cpu_layer, *inputs)
    gy = call(gpu_layer, *inputs)
    errs = [rel(gy, y)]
    for k, v in getattr(cpu_layer, "buffers", {}).items():
        errs.append(rel(gpu_layer.buffers[k], v))
    if not backward:
        return max(errs)
    dy = rng.standard_normal(np.shape(y))
    grad_call = grad_call or (lambda layer, d: layer.backward(d))
    dx = grad_call(cpu_layer, dy)
    gdx = grad_call(gpu_layer, dy)
    errs.append(rel(gdx, dx))
    for k, v in cpu_layer.grads.items():
        errs.append(rel(gpu_layer.grads[k], v))
    return max(errs)


def checks(smoke: bool) -> list[tuple[str, float]]:
    """``(name, max relative error)`` of every image layer's device path against the CPU, float64."""
    with small_launches():
        return _checks(smoke)


def _checks(smoke: bool) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    f64 = np.float64
    rows = []
    # (N, C, O, H, W, k, stride, padding, dilation)
    conv_sizes = [(2, 2, 3, 5, 6, 3, 1, "same", 1), (2, 2, 2, 5, 5, (2, 3), (2, 1), (0, 1, 1, 0), (1, 2))]
    if not smoke:
        conv_sizes += [
            (8, 16, 32, 32, 32, 3, 1, "same", 1),
            (4, 32, 64, 31, 29, 5, 2, (2, 1, 2, 1), 1),
            (4, 8, 16, 24, 24, 4, 1, "same", 2),
        ]
    for N, C, O, H, W, k, s, p, d in conv_sizes:
        x = rng.standard_normal((N, C, H, W))
        err = _compare(partial(numlstm.Conv2D, C, O, k, stride=s, padding=p, dilation=d, dtype=f64), (x,), rng)
        rows.append((f"Conv2D {N}x{C}x{H}x{W} -> {O}, k={k}, stride={s}, pad={p}, dil={d}", err))
    pool_sizes = [(2, 2, 5, 5)] if smoke else [(2, 2, 5, 5), (8, 16, 32, 32)]
    for N, C, H, W in pool_sizes:
        x = rng.standard_normal((N, C, H, W))
        for name, make in (
            ("MaxPool2D(2)", lambda: numlstm.MaxPool2D(2)),
            ("MaxPool2D(3, stride=(1, 2), padding=1)", lambda: numlstm.MaxPool2D(3, stride=(1, 2), padding=1)),
            ("AvgPool2D(3, stride=2, padding=1)", lambda: numlstm.AvgPool2D(3, stride=2, padding=1)),
            ("GlobalAvgPool2D", numlstm.GlobalAvgPool2D),
        ):
            rows.append((f"{name} {N}x{C}x{H}x{W}", _compare(make, (x,), rng)))
        for training in (True, False):
            mode = "train" if training else "eval"

            def make_bn(C=C, training=training):
                return numlstm.BatchNorm2D(C, momentum=0.3, dtype=f64).train(training)

            err = _compare(make_bn, (x * 2 + 1,), rng, backward=training)  # eval mode keeps no cache
            rows.append((f"BatchNorm2D {mode} {N}x{C}x{H}x{W}", err))
    # (B, T, C_in, C, H, W, k, options)
    cl_sizes = [
        (2, 3, 2, 2, 4, 5, 3, {}),
        (2, 2, 1, 2, 4, 4, 3, {"num_layers": 2, "bidirectional": True, "peephole": True, "frame_size": (4, 4), "stride": 2}),
        (1, 2, 2, 1, 4, 5, (2, 3), {"dilation": 2, "return_sequences": False}),
    ]
    if not smoke:
        cl_sizes += [
            (4, 5, 3, 16, 16, 16, 5, {"peephole": True, "frame_size": (16, 16)}),
            (2, 4, 8, 8, 12, 12, 3, {"num_layers": 2, "bidirectional": True}),
        ]
    for B, T, Cin, C, H, W, k, opts in cl_sizes:
        x = rng.standard_normal((B, T, Cin, H, W))
        err = _compare(partial(numlstm.ConvLSTM, Cin, C, k, dtype=f64, seed=0, **opts), (x,), rng)
        rows.append((f"ConvLSTM {(B, T, Cin, C, H, W)} k={k} {opts or ''}".rstrip(), err))
    # (B, T, L, D, H, A, input_size, gate, one map)
    at_sizes = [(3, 2, 3, 2, 2, 3, 0, True, True), (2, 3, 4, 3, 2, 2, 2, False, False)]
    if not smoke:
        at_sizes += [(16, 10, 49, 32, 64, 32, 8, True, False)]
    for B, T, L, D, H, A, I, gate, one_map in at_sizes:
        a = rng.standard_normal((B, L, D) if one_map else (B, T, L, D))
        x = rng.standard_normal((B, T, I)) if I else None

        def fwd(layer, a, x=x, T=T, one_map=one_map):
            return layer(a, x=x, steps=T if one_map and x is None else None)

        def bwd(layer, dy):
            _, dattn = numlstm.attention_penalty(layer.attention, 0.5)
            return layer.backward(dy, None, dattn)

        err = _compare(partial(numlstm.AttentionLSTM, D, H, A, input_size=I, gate=gate, dtype=f64), (a,), rng, fwd, bwd)
        rows.append((f"AttentionLSTM B={B} T={T} L={L} D={D} H={H} A={A} I={I} gate={gate} + penalty", err))
    for B, T, F, A in [(2, 3, 3, 2)] + ([] if smoke else [(32, 50, 64, 32)]):
        x = rng.standard_normal((B, T, F))
        err = _compare(partial(numlstm.TemporalAttention, F, A, dtype=f64), (x,), rng)
        rows.append((f"TemporalAttention {(B, T, F)} A={A}", err))
    return rows


# -- timings ------------------------------------------------------------------------------------------
def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    return torch


def time_convlstm(smoke: bool, reps: int | None = None) -> list[dict]:
    """Median seconds of a float32 ConvLSTM training step (forward + backward)
    and forward pass on the GPU, numlstm against a Conv2d-based PyTorch
    ConvLSTM (cuDNN) on the same GPU; one dict per size."""
    with small_launches():
        return _time_convlstm(smoke, reps)


def _time_convlstm(smoke: bool, reps: int | None) -> list[dict]:
    from numba import cuda

    simulator = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    size = CONVLSTM_SMOKE if smoke else CONVLSTM_SIZE
    reps = reps or (1 if smoke else 10)
    warmup = 1 if smoke else 2
    B, T, Cin, C, H, W, k = size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, Cin, H, W)).astype(np.float32)
    layer = numlstm.ConvLSTM(Cin, C, k, dtype=np.float32, seed=0)
    dy = rng.standard_normal(layer.output_shape(B, T, H, W)).astype(np.float32)
    w_cat = np.concatenate([layer.params["weight_x_l0"], layer.params["weight_h_l0"]], axis=1)
    bias = layer.params["bias_l0"].copy()
    layer.to("cuda")
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)

    def nl_step():
        layer.train()
        layer.zero_grad()
        layer.forward(xd)
        layer.backward(dyd)

    def nl_fwd():
        layer.eval()
        layer.forward(xd)

    row = {"(B, T, C_in, C, H, W, k)": str(size)}
    row["numlstm step ms"] = median_time(nl_step, cuda.synchronize, reps, warmup)
    row["numlstm fwd ms"] = median_time(nl_fwd, cuda.synchronize, reps, warmup)
    torch = None if (smoke and simulator) else _torch_cuda()
    if torch is not None:
        from convlstm_cpu import torch_convlstm

        m = torch_convlstm(torch, Cin, C, k).cuda()
        with torch.no_grad():
            m.conv.weight.copy_(torch.from_numpy(w_cat))
            m.conv.bias.copy_(torch.from_numpy(bias))
        xt = torch.from_numpy(x).cuda().requires_grad_(True)
        dyt = torch.from_numpy(dy).cuda()
        if k % 2 == 1:  # the same function: check once that both agree
            with torch.no_grad():
                ref = m(xt).cpu().numpy()
            layer.eval()
            err = float(np.abs(to_numpy(layer.forward(xd)) - ref).max())
            row["max abs diff vs torch"] = f"{err:.1e}"

        def t_step():
            m.zero_grad()
            xt.grad = None
            m(xt).backward(dyt)

        def t_fwd():
            with torch.no_grad():
                m(xt)

        row["torch step ms"] = median_time(t_step, torch.cuda.synchronize, reps, warmup)
        row["torch fwd ms"] = median_time(t_fwd, torch.cuda.synchronize, reps, warmup)
        row["step ratio"] = f"{row['numlstm step ms'] / row['torch step ms']:.2f}"
        row["fwd ratio"] = f"{row['numlstm fwd ms'] / row['torch fwd ms']:.2f}"
    else:
        row["torch"] = "skipped (no torch with CUDA)" if not (smoke and simulator) else "skipped (simulator)"
    return [row]


if __name__ == "__main__":  # pragma: no cover - a manual run: python perf/_gpu_image_checks.py [--smoke]
    smoke = "--smoke" in sys.argv
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.setswitchinterval(1e-4)  # simulator threads synchronise often: hand the GIL over sooner
    for name, err in checks(smoke):
        print(f"{err:.1e}  {name}")
    for r in time_convlstm(smoke):
        print(r)
