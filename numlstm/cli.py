"""The ``numlstm`` command: ``demo``, ``train``, ``predict``, ``bench``, ``info``.

``numlstm demo`` trains the ConvLSTM encoder-forecaster on moving digits for a
few minutes and writes what it learned (pictures, curves, metrics, a
resumable checkpoint) into a folder. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from numlstm.backend import check_device, cuda_available, to_numpy
from numlstm.callbacks import Callback
from numlstm.tasks import DEFAULT_HIDDEN, MODELS, TASKS, TaskConfig

#: exit status after Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130

#: ``numlstm bench NAME`` -> script in the source checkout's perf/
BENCHMARKS = {
    "lstm": "lstm_cpu.py",
    "convlstm": "convlstm_cpu.py",
    "layers": "layers_cpu.py",
    "train": "train_cpu.py",
    "activations": "activations.py",
    "startup": "startup.py",
    "gpu": "gpu_check.py",
    "shi2015": "repro_shi2015.py",
    "row-digits": "repro_row_digits.py",
}


class CLIError(Exception):
    """A bad option or a failed step: printed as ``numlstm: error: ...``, exit status 2."""


# -- argument types -----------------------------------------------------------------------------------------


def _number(cast, valid, what: str):
    """An argparse type: ``cast(text)``, finite and ``valid``, else "expected {what}"."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (np.isfinite(value) and valid(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 32,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 32,32, got {text!r}")
    return values


# -- the parser -----------------------------------------------------------------------------------------------


def _add_training_options(p: argparse.ArgumentParser, *, demo: bool) -> None:
    p.add_argument("--out", type=Path, default=Path("numlstm-demo" if demo else "numlstm-run"), help="output folder")
    p.add_argument("--hidden", type=_int_list, default=None, help="hidden sizes per layer, e.g. 32,32 (default by task)")
    p.add_argument("--layers", type=_positive_int, default=None, help="number of recurrent layers (with a single --hidden size)")
    p.add_argument("--kernel-size", type=_positive_int, default=3, help="ConvLSTM / CNN kernel size")
    p.add_argument("--size", type=_positive_int, default=None, help="frame side in pixels (default 64 or 28)")
    p.add_argument("--patch", type=_positive_int, default=4, help="moving digits: patch side (64x64 -> 16 channels of 16x16)")
    p.add_argument("--digits", type=_positive_int, default=2, help="moving digits: digits per sequence")
    p.add_argument("--mnist", type=Path, default=None, help="moving digits: real MNIST files (IDX folder or .npz) to move")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs in total (a resumed run continues to this number)")
    p.add_argument("--epoch-size", type=_positive_int, default=None, help="training samples per epoch")
    p.add_argument("--val-size", type=_positive_int, default=None, help="held-out samples for validation and the final metrics")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="default 8 for the demo, 16 for train")
    p.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate")
    p.add_argument("--minutes", type=_positive_float, default=None, help="stop training after this many minutes")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint written by an earlier run")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds): for tests and a first look")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numlstm",
        description="LSTM, ConvLSTM, CNN-LSTM and attention-LSTM in Numba: train, predict, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="train a ConvLSTM to predict moving digits and draw what it learned")
    _add_training_options(p, demo=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model on a generated task")
    p.add_argument("--task", choices=TASKS, default="moving-digits")
    p.add_argument("--model", default=None, help="; ".join(f"{t}: {', '.join(m)}" for t, m in MODELS.items()))
    _add_training_options(p, demo=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="run a checkpoint written by demo/train on new data")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--input", type=Path, default=None, help=".npy of inputs (default: generate --n held-out samples)")
    p.add_argument("--n", type=_positive_int, default=8, help="samples to generate when no --input is given")
    p.add_argument("--seed", type=_non_negative_int, default=12345, help="seed of the generated samples")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the checkpoint's folder)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="run a perf/ comparison against PyTorch (needs the source checkout)")
    p.add_argument("name", choices=list(BENCHMARKS) + ["all"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script (e.g. --sizes ... --no-torch)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "tune",
        help="time the CPU schedules for this host and keep the fastest in its plan file",
        description="Time the CPU drivers' candidate schedules (BLAS, small-matrix tiles, numlstm's own kernels, "
        "row blocks) for LSTM shapes and keep the winners in this host's plan file (numlstm.tune).",
    )
    p.add_argument("--lstm", action="append", default=None, metavar="B,T,I,H", help="an LSTM shape (repeatable; default: a grid)")
    p.add_argument("--remeasure", action="store_true", help="time again the shapes the plan already has")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("info", help="versions, threads, CUDA")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"numlstm {args.command}: error: {exc}", file=sys.stderr)
        return 2


# -- training ---------------------------------------------------------------------------------------------------

# settings of `numlstm demo` (a few minutes on 2 cores) and of --quick (seconds)
_DEMO = {"epochs": 200, "epoch_size": 256, "val_size": 64, "lr": 1e-2, "minutes": 4.0, "batch_size": 8}
_QUICK = {"epochs": 2, "epoch_size": 8, "val_size": 4, "lr": 5e-3, "minutes": None, "batch_size": 4}
_TRAIN = {"epochs": 10, "epoch_size": 512, "val_size": 128, "lr": 2e-3, "minutes": None, "batch_size": 16}


class _TimeLimit(Callback):
    """Stop after ``seconds`` of training (checked after each batch)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.hit = False

    def on_train_begin(self, logs=None) -> None:
        self.start = time.monotonic()

    def on_batch_end(self, batch, logs=None) -> None:
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            self.hit = True
            self.trainer.stop_training = True


class _StopOnInterrupt(Callback):
    """The first Ctrl-C finishes the current batch, ends the epoch and stops;
    a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nnumlstm: Ctrl-C: finishing this batch, then saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def on_batch_end(self, batch, logs=None) -> None:
        if self.requested:
            self.trainer.stop_training = True


def _task_config(args, task: str, model: str | None) -> TaskConfig:
    model = model or MODELS[task][0]
    if model not in MODELS[task]:
        raise CLIError(f"--model: task {task!r} trains one of {', '.join(MODELS[task])}; got {model!r}")
    hidden = args.hidden or DEFAULT_HIDDEN[(task, model)]
    if args.layers is not None:
        if args.hidden is not None and len(args.hidden) not in (1, args.layers):
            raise CLIError(f"--layers: {args.layers} layers but --hidden gives {len(args.hidden)} sizes {list(args.hidden)}")
        hidden = (hidden[0],) * args.layers
    if args.quick and args.hidden is None:
        hidden = tuple(min(h, 8) for h in hidden)
    size = args.size or (64 if task == "moving-digits" else 28)
    if args.quick and args.size is None and task == "moving-digits":
        size = 16 if args.mnist is None else 32
    try:
        return TaskConfig(
            task=task,
            model=model,
            hidden=hidden,
            kernel_size=args.kernel_size,
            size=size,
            patch=args.patch,
            digits=args.digits,
            in_frames=10 if not args.quick else 3,
            future=10 if not args.quick else 3,
            seq_len=8 if not args.quick else 3,
            seed=args.seed,
            mnist=None if args.mnist is None else str(args.mnist),
        )
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc).replace("patch:", "--patch:").replace("size:", "--size:").replace("mnist:", "--mnist:")) from None


def _settings(args, defaults: dict) -> dict:
    base = dict(_QUICK if args.quick else defaults)
    for key in ("epochs", "epoch_size", "val_size", "lr", "minutes", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            base[key] = value
    return base


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out: cannot create {out}: {exc}") from None
    return out


def _device(name: str) -> str:
    """``--device`` checked before any work: "cpu", or "cuda" where a driver is."""
    if name not in ("cpu", "cuda"):
        raise CLIError(f"--device: expected cpu or cuda, got {name!r}")
    try:
        return check_device(name)
    except RuntimeError as exc:
        raise CLIError(f"--device: {exc}") from None


def _move(model, device: str):
    return model if device == "cpu" else model.to(device)


def _save_checkpoint(trainer, cfg: TaskConfig, path: Path, settings: dict) -> None:
    """The trainer's resumable checkpoint plus the task settings that ``predict`` needs."""
    from numlstm.checkpoint import save

    extra = {"trainer": trainer._trainer_state(), "cli": {"task": cfg.to_dict(), "settings": settings}}
    save(trainer.model, path, optimizer=trainer.optimizer, extra=extra)


def run_training(args, cfg: TaskConfig, settings: dict) -> int:
    """Train ``cfg`` with ``settings``; write the checkpoint, pictures and metrics into ``args.out``."""
    from numlstm.optim import Adam
    from numlstm.tasks import build_model, epoch_batches, epoch_seed, loss_name, make_batch
    from numlstm.trainer import Trainer

    device = _device(args.device)
    out = _check_out(args.out)
    if cfg.mnist is not None:
        try:
            from numlstm.tasks import _mnist

            _mnist(cfg.mnist)
        except (OSError, ValueError) as exc:
            raise CLIError(f"--mnist: {exc}") from None
    if args.resume is not None and not args.resume.is_file():
        raise CLIError(f"--resume: no checkpoint at {args.resume}")
    if args.resume is not None:
        _check_resume(args.resume, cfg)
    model = _move(build_model(cfg), device)
    optimizer = Adam(model.parameters(), lr=settings["lr"])
    limit = _TimeLimit(None if settings["minutes"] is None else 60.0 * settings["minutes"])
    interrupt = _StopOnInterrupt()
    trainer = Trainer(
        model,
        loss_name(cfg),
        optimizer,
        clip_norm=1.0,
        metrics=() if cfg.is_frame_prediction else ("accuracy",),
        callbacks=[limit, interrupt],
        seed=cfg.seed,
    )
    x_val, y_val = make_batch(cfg, settings["val_size"], epoch_seed(cfg.seed, -1))
    batch = settings["batch_size"]
    source = epoch_batches(cfg, trainer, settings["epoch_size"], batch)

    t0 = time.monotonic()
    with interrupt:
        print(f"numlstm: training {cfg.model} on {cfg.task} ({model.num_parameters():,} parameters) -> {out}", flush=True)
        trainer.fit(
            source,
            epochs=settings["epochs"],
            batch_size=batch,
            validation_data=(x_val, y_val),
            progress=not args.no_progress,
            resume_from=args.resume,
        )
    seconds = time.monotonic() - t0
    ckpt = out / "checkpoint.npz"
    _save_checkpoint(trainer, cfg, ckpt, settings)
    if interrupt.requested:
        print(f"numlstm: interrupted after epoch {trainer.epoch}; checkpoint saved: {ckpt}")
        print(f"numlstm: continue with --resume {ckpt}")
        return EXIT_INTERRUPTED
    files = _report(trainer, cfg, out, x_val, y_val, seconds, settings, stopped_by_time=limit.hit)
    print("numlstm: wrote")
    for f in [ckpt, *files]:
        print(f"  {f}")
    return 0


def _check_resume(path: Path, cfg: TaskConfig) -> None:
    from numlstm.checkpoint import load

    try:
        ck = load(path, with_optimizer_state=True)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"--resume: {exc}") from None
    saved = ((ck.extra or {}).get("cli") or {}).get("task")
    if saved is not None and saved != cfg.to_dict():
        diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if saved.get(k) != v}
        raise CLIError(f"--resume: {path} was trained with other settings (saved, asked): {diff}")


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_frame_predictions(cfg: TaskConfig, x, y, pred_frames, path: Path) -> Path:
    """Up to three sequences: input frames, true future, predicted future
    (``pred_frames``: probabilities in pixels, (N, future, 1, size, size))."""
    from numlstm import plots, tasks

    plt = _pyplot()
    inputs, truth = tasks.frames_of(cfg, x), tasks.frames_of(cfg, y)
    k = min(3, x.shape[0])
    fig, axes = plt.subplots(k, 1, figsize=(12, 3.4 * k), squeeze=False)
    for i in range(k):
        plots.plot_frames(truth[i], pred_frames[i], ax=axes[i, 0], inputs=inputs[i])
        axes[i, 0].set_title(f"held-out sequence {i + 1}: input frames, true future, predicted future")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _report(trainer, cfg: TaskConfig, out: Path, x_val, y_val, seconds: float, settings: dict, stopped_by_time: bool):
    from numlstm import plots, tasks

    plt = _pyplot()

    logits = to_numpy(trainer.predict(x_val, batch_size=16))
    metrics = {
        "task": cfg.task,
        "model": cfg.model,
        "parameters": int(trainer.model.num_parameters()),
        "epochs": trainer.epoch,
        "training_seconds": round(seconds, 1),
        "stopped_by_time_limit": stopped_by_time,
        "samples_seen": trainer.epoch * settings["epoch_size"],
        "val_samples": int(x_val.shape[0]),
        "history": trainer.history.history,
    }
    files = []
    if cfg.is_frame_prediction:
        metrics.update(tasks.frame_metrics(logits, x_val, y_val))
        pred = tasks.frames_of(cfg, 1.0 / (1.0 + np.exp(-logits)))
        files.append(_plot_frame_predictions(cfg, x_val, y_val, pred, out / "predictions.png"))
    else:
        metrics["val_accuracy"] = tasks.accuracy(logits, y_val)
        files.append(_plot_examples(cfg, x_val, y_val, logits, out / "predictions.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    plots.plot_history(trainer.history, ax=ax)
    ax.set_title(f"{cfg.model} on {cfg.task}")
    fig.tight_layout()
    path = out / "learning_curve.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    files.append(path)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    files.append(path)
    _print_metrics(metrics)
    return files


def _plot_examples(cfg: TaskConfig, x, y, logits, path: Path) -> Path:
    plt = _pyplot()

    k = min(6, x.shape[0])
    pred = np.argmax(logits, axis=-1)
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k), squeeze=False)
    for i in range(k):
        if cfg.task == "row-digits":
            img = x[i].reshape(cfg.size, cfg.size)
        else:
            img = np.concatenate(list(x[i].reshape(cfg.seq_len, cfg.size, cfg.size)), axis=1)
        axes[i, 0].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_axis_off()
        axes[i, 0].set_title(f"true {y[i]}, predicted {pred[i]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _print_metrics(metrics: dict) -> None:
    if "cross_entropy_per_sequence" in metrics:
        ce, base = metrics["cross_entropy_per_sequence"], metrics["copy_last_frame_cross_entropy_per_sequence"]
        print(
            f"numlstm: held-out cross-entropy per sequence {ce:.1f} (copy-last-frame baseline {base:.1f}); "
            f"MSE per frame {metrics['mse_per_frame']:.1f} (baseline {metrics['copy_last_frame_mse_per_frame']:.1f})"
        )
    if "val_accuracy" in metrics:
        print(f"numlstm: held-out accuracy {metrics['val_accuracy']:.3f}")
    print(f"numlstm: {metrics['epochs']} epochs in {metrics['training_seconds']:.0f} s")


def cmd_demo(args) -> int:
    cfg = _task_config(args, "moving-digits", "convlstm")
    return run_training(args, cfg, _settings(args, _DEMO))


def cmd_train(args) -> int:
    cfg = _task_config(args, args.task, args.model)
    return run_training(args, cfg, _settings(args, _TRAIN))


# -- predict -------------------------------------------------------------------------------------------------


def cmd_predict(args) -> int:
    from numlstm import tasks
    from numlstm.checkpoint import load

    device = _device(args.device)
    if not args.checkpoint.is_file():
        raise CLIError(f"checkpoint: no file at {args.checkpoint}")
    try:
        ck = load(args.checkpoint, with_optimizer_state=True)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"checkpoint: {exc}") from None
    saved = (ck.extra or {}).get("cli")
    if not saved:
        raise CLIError(f"checkpoint: {args.checkpoint} was not written by `numlstm demo` / `numlstm train` (no task settings)")
    cfg = TaskConfig.from_dict(saved["task"])
    model = _move(ck.model, device)
    model.eval()
    out = _check_out(args.out or args.checkpoint.parent)
    if args.input is not None:
        x = _load_input(args.input, cfg)
        y = None
    else:
        x, y = tasks.make_batch(cfg, args.n, tasks.epoch_seed(args.seed, -1) + 7)
    logits = np.concatenate([to_numpy(model.forward(x[s : s + args.batch_size])) for s in range(0, x.shape[0], args.batch_size)])
    result = {}
    if cfg.is_frame_prediction:
        prob = tasks.frames_of(cfg, 1.0 / (1.0 + np.exp(-logits)))
        np.save(out / "predicted_frames.npy", prob.astype(np.float32))
        result["predicted_frames"] = str(out / "predicted_frames.npy")
        if y is not None:
            result.update(tasks.frame_metrics(logits, x, y))
            result["picture"] = str(_plot_frame_predictions(cfg, x, y, prob, out / "predict.png"))
    else:
        labels = np.argmax(logits, axis=-1)
        np.save(out / "predicted_labels.npy", labels)
        result["predicted_labels"] = str(out / "predicted_labels.npy")
        if y is not None:
            result["accuracy"] = tasks.accuracy(logits, y)
    path = out / "predict.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"numlstm: wrote {path}")
    return 0


def _load_input(path: Path, cfg: TaskConfig) -> np.ndarray:
    """A .npy of raw inputs: frames (N, in_frames, 1, size, size) in [0, 1] for
    moving digits (patched here), (N, seq_len, 1, size, size) or (N, size, size)
    for the classifiers."""
    from numlstm import data

    if not path.is_file():
        raise CLIError(f"--input: no file at {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CLIError(f"--input: {path} is not a .npy array file: {exc}") from None
    if x.dtype.kind not in "fiu":
        raise CLIError(f"--input: expected a numeric array, got dtype {x.dtype}")
    x = x.astype(np.float32)
    s = cfg.size
    if cfg.is_frame_prediction:
        expect = (None, cfg.in_frames, 1, s, s)
    elif cfg.task == "sequence-digits":
        expect = (None, cfg.seq_len, 1, s, s)
    else:
        expect = (None, s, s)
    if x.ndim != len(expect) or any(e is not None and e != g for e, g in zip(expect, x.shape, strict=False)):
        shown = "(N, " + ", ".join(str(e) for e in expect[1:]) + ")"
        raise CLIError(f"--input: expected an array of shape {shown}, got {x.shape}")
    if cfg.is_frame_prediction:
        return np.ascontiguousarray(data.space_to_depth(x, cfg.patch))
    if cfg.task == "sequence-digits" and cfg.model == "lstm":
        return x.reshape(x.shape[0], cfg.seq_len, -1)
    if cfg.task == "row-digits" and cfg.model == "cnn-lstm":
        return x.reshape(x.shape[0], s // 4, 1, 4, s)
    return x


# -- bench ------------------------------------------------------------------------------------------------------


def perf_dir() -> Path:
    """The source checkout's perf/ folder (benchmarks are not installed with the package)."""
    return Path(__file__).resolve().parent.parent / "perf"


def cmd_bench(args) -> int:
    folder = perf_dir()
    names = [n for n in BENCHMARKS if n not in ("gpu", "shi2015", "row-digits")] if args.name == "all" else [args.name]
    status = 0
    for name in names:
        script = folder / BENCHMARKS[name]
        if not script.is_file():
            raise CLIError(
                f"bench: {script} not found; the benchmarks live in the source checkout's perf/ folder "
                "(install with `pip install -e .` from a clone)"
            )
        print(f"numlstm bench: {name}: {script}", flush=True)
        extra = [a for a in args.args if a != "--"]
        rc = subprocess.call([sys.executable, str(script), *extra])
        status = status or rc
    return status


# -- info ---------------------------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cmd_tune(args) -> int:
    import numlstm
    from numlstm.kernels import plan

    shapes = None
    if args.lstm:
        shapes = []
        for text in args.lstm:
            try:
                shape = tuple(int(v) for v in text.split(","))
            except ValueError:
                raise CLIError(f"--lstm: expected B,T,I,H (four positive ints), got {text!r}") from None
            if len(shape) != 4 or min(shape) < 1:
                raise CLIError(f"--lstm: expected B,T,I,H (four positive ints), got {text!r}")
            shapes.append(shape)
    try:
        chosen = numlstm.tune(shapes, remeasure=args.remeasure)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"host: {plan.host_line()}")
    print(f"plan file: {plan.plan_path()}")
    for entry, choice in sorted(chosen.items()):
        print(f"  {entry}: {choice}")
    return 0


def cmd_info(args) -> int:
    import numba

    import numlstm
    from numlstm import config

    lines = [
        ("numlstm", f"{numlstm.__version__} ({Path(numlstm.__file__).parent})"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
    ]
    for dist in ("numpy", "numba", "llvmlite", "scipy", "matplotlib", "tqdm", "numba-cuda", "torch"):
        lines.append((dist, _version(dist)))
    lines.append(("cpu", f"{_cpu_name()}, {os.cpu_count()} logical cores"))
    env_threads = os.environ.get("NUMBA_NUM_THREADS", "unset")
    lines.append(("numba threads", f"{numba.get_num_threads()} (NUMBA_NUM_THREADS={env_threads})"))
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            name = f"{pool.get('user_api')} ({pool.get('internal_api')})"
            lines.append((name, f"{pool.get('num_threads')} threads, {pool.get('version')}"))
    except Exception as exc:  # threadpoolctl reads native libraries: report, never fail
        lines.append(("blas", f"unknown ({exc})"))
    lines.append(("numba cache", numba.config.CACHE_DIR or "next to the sources (__pycache__)"))
    from numlstm.kernels import plan

    lines.append(("plan", f"{config.PLAN!r}, file {plan.plan_path()}"))
    lines.append(("parallel thresholds", f"rows >= {config.PARALLEL_MIN_ROWS}, batch <= {config.PARALLEL_MAX_BATCH or 'any'}"))
    cuda = "available" if cuda_available() else "not available (no driver or numba-cuda not installed)"
    lines.append(("cuda", cuda))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
