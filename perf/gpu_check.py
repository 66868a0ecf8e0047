"""The CUDA backend on a real GPU: correctness checks, then training-step timings against cuDNN.

Run on a machine with an NVIDIA GPU (``pip install -e ".[cuda,compare]"``)::

    python perf/gpu_check.py            # checks + timings, prints tables
    python perf/gpu_check.py --write    # ... and puts them into docs/performance.md
    python perf/gpu_check.py --smoke    # tiny sizes; works on the CUDA simulator
                                        # (NUMBA_ENABLE_CUDASIM=1) and without torch

(a) Checks: every CUDA kernel and layer path against the CPU path in float64
on random inputs (non-zero biases, arbitrary upstream gradients) at several
sizes: the tiled GEMM (every variant), the elementwise and reduction
kernels, the LSTM (general and persistent paths; lengths, bidirectional,
stacked with dropout, initial state, ``return_sequences=False``), Dense and
the activation layers, the losses, the optimizers, gradient clipping, and a
Trainer step; plus helper checks of the image layers from
``perf/_gpu_image_checks.py`` when that file exists. Each row gives the
largest relative error over every output and gradient; the script exits with
status 1 when one is above 1e-10.

(b) Timings: float32 LSTM training steps (forward, backward, Adam step) on
the GPU against ``torch.nn.LSTM`` (cuDNN) on the same GPU, medians of
synchronised calls after warm-up, for both numlstm paths (general GEMM path
and persistent kernel) and the one chosen automatically; plus the ConvLSTM
rows of ``perf/_gpu_image_checks.time_convlstm`` when present.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import write_section  # noqa: E402

import numlstm  # noqa: E402
from numlstm import backend  # noqa: E402

LIMIT = 1e-10  # float64 checks: relative error

#: (B, T, I, H) of the timed LSTM training steps
LSTM_SIZES = [(64, 100, 64, 128), (128, 100, 256, 512), (4, 100, 256, 256), (1, 200, 128, 128)]
SMOKE_SIZES = [(2, 3, 2, 3)]


def rel(a, b) -> float:
    a = np.asarray(backend.to_numpy(a), np.float64)
    b = np.asarray(backend.to_numpy(b), np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _randomize(a, b, rng):
    for k in a.params:
        v = rng.standard_normal(a.params[k].shape) * 0.5
        a.params[k][...] = v
        b.params[k][...] = v


# -- (a) checks ------------------------------------------------------------------------------------


def check_gemm(sizes) -> float:
    from numlstm.kernels.cuda import linalg

    rng = np.random.default_rng(0)
    worst = 0.0
    for M, N, K in sizes:
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((K, M) if ta else (M, K))
                b = rng.standard_normal((N, K) if tb else (K, N))
                out0 = rng.standard_normal((M, N))
                out = backend.to_device(out0, "cuda")
                linalg.gemm(backend.to_device(a, "cuda"), backend.to_device(b, "cuda"), out, ta, tb, True)
                worst = max(worst, rel(out, out0 + (a.T if ta else a) @ (b.T if tb else b)))
    return worst


def check_elementwise(n) -> float:
    from numlstm.kernels.cuda import elementwise as ew

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, 3, 5))
    d = backend.to_device(a, "cuda")
    out = backend.zeros(4, a.dtype, "cuda")
    ew.reduce_into(d, out, 0, ew.SUM)
    ew.reduce_into(d, out, 1, ew.SUM_SQUARES)
    ew.reduce_into(d, out, 2, ew.SUM_ABS_POW, 3.0)
    ew.reduce_into(d, out, 3, ew.MAX_ABS)
    worst = rel(out, [a.sum(), (a * a).sum(), (np.abs(a) ** 3).sum(), np.abs(a).max()])
    sw = backend.empty((3, n, 5), a.dtype, "cuda")
    ew.swap01(d, sw)
    worst = max(worst, rel(sw, a.transpose(1, 0, 2)))
    cs = backend.empty(5, a.dtype, "cuda")
    ew.col_sum(d.reshape(3 * n, 5), cs)
    return max(worst, rel(cs, a.reshape(-1, 5).sum(axis=0)))


def check_lstm(B, T, I, H, persistent: bool, **opts) -> float:
    from numlstm.kernels.cuda import config

    saved = config.PERSISTENT
    config.PERSISTENT = persistent
    try:
        rng = np.random.default_rng(2)
        lengths = opts.pop("lengths", None)
        with_state = opts.pop("state", False)
        cpu = numlstm.LSTM(I, H, dtype=np.float64, seed=3, **opts)
        gpu = numlstm.LSTM(I, H, dtype=np.float64, seed=3, **opts)
        _randomize(cpu, gpu, rng)
        gpu.to("cuda")
        LD = cpu.num_layers * cpu.num_directions
        x = rng.standard_normal((B, T, I))
        st = tuple(rng.standard_normal((LD, B, H)) for _ in range(2)) if with_state else None
        y_c = cpu(x, state=st, lengths=lengths)
        y_g = gpu(x, state=st, lengths=lengths)
        dy = rng.standard_normal(y_c.shape)
        ds = tuple(rng.standard_normal((LD, B, H)) for _ in range(2)) if with_state else None
        errs = [rel(y_g, y_c), rel(gpu.backward(dy, ds), cpu.backward(dy, ds))]
        errs += [rel(gpu.state[i], cpu.state[i]) for i in range(2)]
        errs += [rel(gpu.dstate[i], cpu.dstate[i]) for i in range(2)]
        errs += [rel(gpu.grads[k], cpu.grads[k]) for k in cpu.grads]
        return max(errs)
    finally:
        config.PERSISTENT = saved


def check_layers(n) -> float:
    rng = np.random.default_rng(4)
    worst = 0.0
    makers = [
        lambda: numlstm.Dense(7, 5, dtype=np.float64, seed=0),
        numlstm.ReLU,
        numlstm.Tanh,
        numlstm.Sigmoid,
        lambda: numlstm.Flatten(1),
        lambda: numlstm.Dropout(0.3, seed=1),
        numlstm.LastStep,
    ]
    for make in makers:
        cpu, gpu = make(), make()
        if cpu.params:
            _randomize(cpu, gpu, rng)
        gpu.to("cuda")
        x = rng.standard_normal((n, 3, 7)) * 3
        y_c, y_g = cpu(x), gpu(x)
        dy = rng.standard_normal(y_c.shape)
        worst = max(worst, rel(y_g, y_c), rel(gpu.backward(dy), cpu.backward(dy)))
        worst = max([worst] + [rel(gpu.grads[k], cpu.grads[k]) for k in cpu.grads])
    return worst


def check_losses(n) -> float:
    from numlstm import losses

    rng = np.random.default_rng(5)
    p = rng.standard_normal((n, 4, 6)) * 3
    labels = rng.integers(0, 6, (n, 4))
    labels[0, 0] = -100
    worst = 0.0
    for red in ("mean", "sum", "none"):
        for make, target in [
            (lambda r: losses.MSELoss(r), rng.standard_normal(p.shape)),
            (lambda r: losses.BCEWithLogitsLoss(r, pos_weight=np.linspace(0.5, 2, 6)), rng.random(p.shape)),
            (lambda r: losses.CrossEntropyLoss(r, label_smoothing=0.1), labels),
        ]:
            cpu, gpu = make(red), make(red)
            v_c, v_g = cpu(p, target), gpu(backend.to_device(p, "cuda"), target)
            worst = max(worst, rel(np.asarray(v_g if red != "none" else backend.to_numpy(v_g)), np.asarray(v_c)))
            dout = rng.standard_normal(np.shape(v_c)) if red == "none" else 0.7
            worst = max(worst, rel(gpu.backward(dout), cpu.backward(dout)))
    return worst


def check_optimizers() -> float:
    from numlstm import optim

    rng = np.random.default_rng(6)
    worst = 0.0
    for make in [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
        lambda ps: optim.AdamW(ps, lr=0.01),
        lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, weight_decay=0.1),
    ]:
        cpu = numlstm.Dense(9, 5, dtype=np.float64, seed=0)
        gpu = numlstm.Dense(9, 5, dtype=np.float64, seed=0).to("cuda")
        o_c, o_g = make(cpu.parameters()), make(gpu.parameters())
        for _ in range(3):
            for k in cpu.grads:
                g = rng.standard_normal(cpu.grads[k].shape)
                cpu.grads[k][...] = g
                gpu.grads[k].copy_to_device(g)
            n_c = optim.clip_grad_norm(cpu.parameters(), 1.0)
            n_g = optim.clip_grad_norm(gpu.parameters(), 1.0)
            worst = max(worst, abs(n_g - n_c) / n_c)
            o_c.step()
            o_g.step()
        worst = max([worst] + [rel(gpu.params[k], cpu.params[k]) for k in cpu.params])
    return worst


def check_trainer(n) -> float:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2 * n, 5, 3))
    y = rng.integers(0, 3, 2 * n)
    out = {}
    for dev in ("cpu", "cuda"):
        model = numlstm.Sequential(
            [
                numlstm.LSTM(3, 6, num_layers=2, dropout=0.2, dtype=np.float64, seed=1),
                numlstm.LastStep(),
                numlstm.Dense(6, 3, dtype=np.float64, seed=2),
            ]
        )
        trainer = numlstm.Trainer(model, "cross_entropy", numlstm.optim.Adam(model.parameters(), lr=0.01), seed=0, device=dev)
        trainer.fit(x, y, epochs=1, batch_size=n, progress=False)
        out[dev] = {k: backend.to_numpy(v) for k, v in model.params.items()}
    return max(rel(out["cuda"][k], out["cpu"][k]) for k in out["cpu"])


def _image_module():
    path = HERE / "_gpu_image_checks.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("_gpu_image_checks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_checks(smoke: bool) -> list[tuple[str, float]]:
    """(name, max relative error) of every check."""
    rows = []
    gemm_sizes = [(5, 7, 9)] if smoke else [(5, 7, 9), (64, 100, 33), (257, 130, 129), (1, 512, 128)]
    rows.append(("GEMM NN/NT/TN/TT, accumulate", check_gemm(gemm_sizes)))
    rows.append(("reductions, transposes, column sums", check_elementwise(4 if smoke else 300)))
    lstm_sizes = [(3, 4, 2, 3)] if smoke else [(3, 4, 2, 3), (5, 17, 12, 33), (16, 30, 40, 64)]
    for B, T, I, H in lstm_sizes:
        lengths = [max(1, T - (b * 3) % T) for b in range(B)]
        for persistent in (False, True):
            path = "persistent" if persistent else "general"
            rows.append((f"LSTM {path} ({B},{T},{I},{H})", check_lstm(B, T, I, H, persistent, state=True)))
            rows.append(
                (
                    f"LSTM {path} ({B},{T},{I},{H}) bidirectional, lengths",
                    check_lstm(B, T, I, H, persistent, bidirectional=True, lengths=lengths),
                )
            )
            if not smoke or persistent:
                rows.append(
                    (
                        f"LSTM {path} ({B},{T},{I},{H}) 2 layers, dropout, last step",
                        check_lstm(B, T, I, H, persistent, num_layers=2, dropout=0.3, return_sequences=False, state=True),
                    )
                )
    rows.append(("Dense, ReLU, Tanh, Sigmoid, Flatten, Dropout, LastStep", check_layers(2 if smoke else 40)))
    rows.append(("MSE, BCE (pos_weight), cross-entropy (smoothing, ignore)", check_losses(2 if smoke else 50)))
    rows.append(("SGD, Adam, AdamW, RMSprop, clip_grad_norm", check_optimizers()))
    rows.append(("Trainer: 2-layer LSTM + Dense, Adam", check_trainer(2 if smoke else 8)))
    image = _image_module()
    if image is not None:
        rows.extend((str(name), float(err)) for name, err in image.checks(smoke))
    return rows


# -- (b) timings -----------------------------------------------------------------------------------


def median_time(fn, sync, reps: int, warmup: int = 2) -> float:
    """Median seconds of ``reps`` calls of ``fn``, each followed by ``sync()``, after ``warmup`` synchronised calls."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_numlstm(B, T, I, H, persistent, reps, warmup=3) -> tuple[float, str]:
    from numba import cuda

    from numlstm.kernels.cuda import config

    saved = config.PERSISTENT
    config.PERSISTENT = persistent
    try:
        rng = np.random.default_rng(0)
        layer = numlstm.LSTM(I, H, dtype=np.float32, seed=0).to("cuda")
        opt = numlstm.optim.Adam(layer.parameters(), lr=1e-3)
        x = backend.to_device(rng.standard_normal((B, T, I)).astype(np.float32), "cuda")
        dy = backend.to_device(rng.standard_normal((B, T, H)).astype(np.float32), "cuda")

        def step():
            opt.zero_grad()
            layer(x)
            layer.backward(dy)
            opt.step()

        t = median_time(step, cuda.synchronize, reps, warmup)
        return t, "persistent" if layer.last_plan else "general"
    finally:
        config.PERSISTENT = saved


def time_torch(torch, B, T, I, H, reps, warmup=3) -> float:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H, batch_first=True).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.randn(B, T, I, device=dev)
    dy = torch.randn(B, T, H, device=dev)

    def step():
        opt.zero_grad()
        y, _ = m(x)
        y.backward(dy)
        opt.step()

    return median_time(step, torch.cuda.synchronize, reps, warmup)


def _torch_cuda(skip: bool):
    if skip:
        return None
    try:
        import torch
    except ImportError:
        print("torch not installed: timing numlstm only")
        return None
    if not torch.cuda.is_available():
        print("torch has no CUDA device: timing numlstm only")
        return None
    torch.backends.cudnn.benchmark = True
    return torch


def run_timings(smoke: bool, torch, reps: int) -> list[dict]:
    from numlstm.kernels.cuda.lstm import use_persistent

    rows = []
    warmup = 1 if smoke else 3
    for B, T, I, H in SMOKE_SIZES if smoke else LSTM_SIZES:
        t_gen, _ = time_numlstm(B, T, I, H, False, reps, warmup)
        t_per, _ = time_numlstm(B, T, I, H, True, reps, warmup)
        path = "persistent" if use_persistent(B, H) else "general"
        t_auto = t_per if path == "persistent" else t_gen
        t_torch = time_torch(torch, B, T, I, H, reps, warmup) if torch is not None else None
        rows.append({"size": (B, T, I, H), "general": t_gen, "persistent": t_per, "auto": t_auto, "path": path, "torch": t_torch})
        print(f"  LSTM {(B, T, I, H)}: general {t_gen * 1e3:.2f} ms, persistent {t_per * 1e3:.2f} ms, chosen {path}", flush=True)
    return rows


# -- (c) compile check without a GPU -----------------------------------------------------------------


def compile_all(cc=(9, 0)) -> list[tuple[str, str]]:
    """Compile every core CUDA kernel to PTX for compute capability ``cc``
    with the argument types the drivers launch them with: catches what the
    simulator accepts but the CUDA target does not, on a machine with the
    CUDA toolkit (NVVM) and no GPU. Returns (kernel, "ok" or the error)."""
    from numba import cuda, types

    from numlstm.kernels.cuda import activations, dense, elementwise, linalg, losses, lstm, optim

    i64, b1 = types.int64, types.boolean
    out = []
    for dt in (np.dtype(np.float32), np.dtype(np.float64)):
        f = types.float32 if dt == np.float32 else types.float64
        v, m, t3 = (types.Array(f, n, "C") for n in (1, 2, 3))
        iv = types.Array(i64, 1, "C")
        per = lstm._persistent_kernels(dt, 2)
        k = lstm._kernels(dt)
        sigs = {
            "gemm": (linalg._kernel(dt), (m, m, m, i64, i64, i64, b1, b1, b1, i64, i64)),
            "fill": (elementwise._fill_kernel, (v, f)),
            "fill_int": (elementwise._fill_kernel, (iv, i64)),
            "binary": (elementwise._binary_kernel, (v, v, v, i64)),
            "scale": (elementwise._scale_kernel, (v, f, v)),
            "swap01": (elementwise._swap01_kernel, (t3, t3)),
            "copy_cols": (elementwise._copy_cols_kernel, (m, i64, m, i64, i64, b1)),
            "col_sum": (elementwise._col_sum_kernel, (m, v, b1)),
            "reduce": (elementwise._make_reduce(dt), (v, i64, f, v, i64)),
            "argmax": (elementwise._argmax_kernel, (m, iv)),
            "act_forward": (activations._forward_kernel, (v, v, i64)),
            "act_backward": (activations._backward_kernel, (v, v, v, i64)),
            "add_bias": (dense._add_bias_kernel, (m, v)),
            "sgd": (optim._sgd_kernel, (v, v, v, f, f, f, b1, b1)),
            "adam": (optim._adam_kernel, (v, v, v, v) + (f,) * 9),
            "rmsprop": (optim._rmsprop_kernel, (v, v, v, v) + (f,) * 6),
            "ce_forward": (losses._ce_forward_kernel, (m, iv, f, m, v)),
            "ce_backward": (losses._ce_backward_kernel, (m, iv, f, f, f, v, b1, m)),
            "bce_forward": (losses._bce_forward_kernel, (v, v, v, b1, v, v)),
            "bce_backward": (losses._bce_backward_kernel, (v, v, b1, v, f, v, b1, v)),
            "lstm_forward_step": (k["forward_step"], (i64, t3, m, v, m, m, t3, t3, t3, iv)),
            "lstm_backward_step": (k["backward_step"], (i64, i64, t3, m, m, t3, t3, m, iv)),
            "lstm_backward_finish": (k["backward_finish"], (i64, m, m, m, iv, m, m)),
            "lstm_persistent_forward": (per["persistent_forward"], (t3, m, v, m, m, iv, b1, t3, t3, t3, m, m, b1)),
            "lstm_persistent_backward": (per["persistent_backward"], (t3, m, iv, b1, t3, t3, m, m, m, m, b1)),
        }
        for name, (kernel, sig) in sigs.items():
            try:
                cuda.compile_ptx(kernel.py_func, sig, cc=cc)
                out.append((f"{name} {dt.name}", "ok"))
            except Exception as exc:  # report every failure, not only the first
                out.append((f"{name} {dt.name}", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
    return out


# -- report ----------------------------------------------------------------------------------------


def _device_line() -> str:
    if not _real_gpu():
        return "none: Numba's CUDA simulator (timings meaningless)"
    from numba import cuda

    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def markdown(checks, timings, conv_rows, smoke: bool) -> str:
    lines = [f"GPU: {_device_line()}{' (smoke sizes)' if smoke else ''}.", ""]
    lines += ["| check (float64, vs the CPU path) | max rel. error | ok |", "|---|---|---|"]
    for name, err in checks:
        lines.append(f"| {name} | {err:.1e} | {'yes' if err <= LIMIT else '**NO**'} |")
    lines += [
        "",
        "LSTM training step (forward, backward, Adam), float32, median ms; ratio = numlstm (chosen path) / torch cuDNN:",
        "",
        "| (B, T, I, H) | general | persistent | chosen | torch cuDNN | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in timings:
        torch_cell = f"{r['torch'] * 1e3:.2f}" if r["torch"] else "n/a"
        ratio = f"{r['auto'] / r['torch']:.2f}" if r["torch"] else "n/a"
        lines.append(
            f"| {r['size']} | {r['general'] * 1e3:.2f} | {r['persistent'] * 1e3:.2f} | {r['path']} | {torch_cell} | {ratio} |"
        )
    if conv_rows:
        keys = list(dict.fromkeys(k for r in conv_rows for k in r))
        lines += ["", "ConvLSTM:", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in conv_rows:
            cells = []
            for k in keys:
                v = r.get(k, "")
                cells.append(f"{v * 1e3:.2f}" if isinstance(v, float) and v < 100 else str(v))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; runs on the CUDA simulator and without torch")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/performance.md")
    ap.add_argument("--no-torch", action="store_true", help="time numlstm only")
    ap.add_argument("--no-timings", action="store_true", help="run the checks only")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per configuration")
    ap.add_argument(
        "--ptx", action="store_true", help="only compile every core kernel to PTX (needs the CUDA toolkit's NVVM, no GPU)"
    )
    args = ap.parse_args(argv)
    if args.ptx:
        results = compile_all()
        for name, status in results:
            print(f"  {name:<36} {status}")
        return 0 if all(s == "ok" for _, s in results) else 1
    if not backend.cuda_available():
        print("no CUDA device (and the simulator is off): nothing to check; see docs/gpu.md")
        return 2
    smoke = args.smoke
    if not _real_gpu():
        sys.setswitchinterval(1e-4)  # simulator threads synchronise often: hand the GIL over sooner
    with small_launches():
        print("(a) checks against the CPU path, float64", flush=True)
        checks = run_checks(smoke)
        width = max(len(n) for n, _ in checks)
        for name, err in checks:
            print(f"  {name:<{width}}  {err:.1e}  {'ok' if err <= LIMIT else 'FAILED'}", flush=True)
        timings, conv_rows = [], []
        if not args.no_timings:
            print("(b) training-step timings, float32", flush=True)
            torch = _torch_cuda(args.no_torch or smoke and not _real_gpu())
            reps = args.reps or (2 if smoke else 20)
            timings = run_timings(smoke, torch, reps)
            image = _image_module()
            if image is not None and hasattr(image, "time_convlstm"):
                conv_rows = list(image.time_convlstm(smoke))
    md = markdown(checks, timings, conv_rows, smoke)
    print()
    print(md)
    if args.write:
        write_section("gpu", md)
    return 0 if all(err <= LIMIT for _, err in checks) else 1


@contextlib.contextmanager
def small_launches():
    """On the simulator, the small launch configuration (``config.SIMULATOR_LAUNCHES``), restored on exit."""
    if _real_gpu():
        yield
        return
    from numlstm.kernels.cuda import config

    saved = {k: getattr(config, k) for k in config.SIMULATOR_LAUNCHES}
    try:
        for k, v in config.SIMULATOR_LAUNCHES.items():
            setattr(config, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(config, k, v)


def _real_gpu() -> bool:
    import os

    return os.environ.get("NUMBA_ENABLE_CUDASIM") != "1"


if __name__ == "__main__":
    sys.exit(main())
