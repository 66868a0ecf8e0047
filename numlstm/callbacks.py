"""Training callbacks (Keras names): hooks the ``Trainer`` calls during ``fit``."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable

import numpy as np

from numlstm._validation import check_float, check_int


class Callback:
    """Base class. ``self.trainer`` is set by ``Trainer.fit`` before training.

    Hooks: ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
    ``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_train_end(logs)``. ``logs`` holds the epoch's metrics
    (``loss``, ``accuracy``, ``val_loss``, ``lr``, ...). Set
    ``self.trainer.stop_training = True`` to stop after the current epoch.
    """

    trainer = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_batch_end(self, batch: int, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass


def _check_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model gets back the parameters of its
    best epoch when training stops.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False):
        self.monitor = str(monitor)
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.patience = check_int(patience, "patience", 0)
        self.mode = _check_mode(mode, self.monitor)
        self.restore_best_weights = bool(restore_best_weights)
        self.best = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None) -> None:
        self.best, self.best_weights, self.wait, self.stopped_epoch = None, None, 0, None

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} is not among the logged values {sorted(logs)}")
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best = value
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.trainer.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save a checkpoint (model, optimizer and trainer state: resumable)
    after each epoch; ``{epoch}`` and log names in ``path`` are formatted,
    e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``. With ``save_best_only``
    only epochs that improve ``monitor`` are saved."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path = os.fspath(path)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _check_mode(mode, self.monitor)
        self.best = None
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} is not among the logged values {sorted(logs)}")
            value = float(logs[self.monitor])
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        self.trainer.save_checkpoint(path)
        self.saved.append(path)


class CSVLogger(Callback):
    """Append one CSV row of logs per epoch (header written first)."""

    def __init__(self, path, append=False):
        self.path = os.fspath(path)
        self.append = bool(append)
        self._keys = None

    def on_train_begin(self, logs=None) -> None:
        if not self.append and os.path.exists(self.path):
            os.remove(self.path)
        self._keys = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, **logs}
        new_file = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if self._keys is None:
            self._keys = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._keys, extrasaction="ignore")
            if new_file:
                w.writeheader()
            w.writerow(row)


class TerminateOnNaN(Callback):
    """Stop as soon as a batch loss is NaN or infinite. (The trainer itself
    never applies an update from a non-finite loss; this callback only makes
    the stop explicit in the callback list, as in Keras.)"""

    def on_batch_end(self, batch, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.trainer.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch.

    ``schedule`` is either a callable ``(epoch, lr) -> new_lr`` (Keras) or a
    numlstm schedule object with ``step()`` (``StepLR`` ...; stepped at the end
    of each epoch; ``ReduceLROnPlateau`` is stepped with ``logs[monitor]``).
    """

    def __init__(self, schedule: Callable | object, monitor: str = "val_loss"):
        if not callable(schedule) and not hasattr(schedule, "step"):
            raise TypeError(f"schedule: expected a callable (epoch, lr) -> lr or a schedule with step(), got {schedule!r}")
        self.schedule = schedule
        self.monitor = monitor

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if callable(self.schedule) and not hasattr(self.schedule, "step"):
            lr = float(self.schedule(epoch, self.trainer.optimizer.lr))
            if not np.isfinite(lr) or lr < 0:
                raise ValueError(f"schedule: returned lr {lr}; expected a finite number >= 0")
            self.trainer.optimizer.lr = lr

    def on_epoch_end(self, epoch, logs=None) -> None:
        if hasattr(self.schedule, "step"):
            if type(self.schedule).__name__ == "ReduceLROnPlateau":
                logs = logs or {}
                key = self.monitor if self.monitor in logs else "loss"
                self.schedule.step(float(logs[key]))
            else:
                self.schedule.step()
