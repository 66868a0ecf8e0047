"""``Trainer``: fit / evaluate / predict over any numlstm model (Keras-shaped)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable

import numpy as np

from numlstm import backend
from numlstm._validation import check_float, check_int
from numlstm.callbacks import Callback

_METRICS = ("accuracy",)


class History:
    """What ``fit`` returns: per-epoch values, as Keras' ``History``.

    Attributes
    ----------
    history : dict[str, list[float]]
        ``loss``, each metric, ``val_loss`` / ``val_<metric>`` with
        validation data, and ``lr``.
    epoch : list[int]
        Epoch numbers (0-based) of the rows.
    stopped_reason : str or None
        Why training stopped early (non-finite loss, a callback), if it did.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(int(epoch))
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def to_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch, "stopped_reason": self.stopped_reason}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        h = cls()
        h.history = {k: [float(v) for v in vs] for k, vs in d.get("history", {}).items()}
        h.epoch = [int(e) for e in d.get("epoch", [])]
        h.stopped_reason = d.get("stopped_reason")
        return h

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def _iter_layers(model):
    """The model and every sub-layer, depth first."""
    yield model
    layers = getattr(model, "layers", None)
    if layers is None:
        return
    children = layers.values() if hasattr(layers, "values") else layers
    for child in children:
        if child is not model:
            yield from _iter_layers(child)


def _generators(model) -> list[np.random.Generator]:
    """Random generators held by layers (dropout masks), in a fixed order."""
    out = []
    for layer in _iter_layers(model):
        rng = getattr(layer, "_rng", None)
        if isinstance(rng, np.random.Generator):
            out.append(rng)
    return out


class Trainer:
    """Train a model with a loss and an optimizer.

    Parameters
    ----------
    model : a numlstm layer or model (``Sequential``, ``Model`` subclass, or a
        single layer) with ``forward``, ``backward``, ``parameters``.
    loss : a loss object or name (``"mse"``, ``"cross_entropy"``, ``"bce"``).
    optimizer : a ``numlstm.optim`` optimizer over ``model.parameters()``.
    clip_norm : float or None
        Clip the global gradient norm to this value before each step.
    metrics : sequence of str
        ``"accuracy"`` (class scores on the last axis against integer labels);
        a metric that does not apply to the targets is skipped.
    callbacks : sequence of ``numlstm.callbacks.Callback``
    seed : int or None
        Seeds the shuffling; with the model's own seed, the same data and the
        same thread count, training is reproducible bit for bit.
    device : "cpu", "cuda" or None
        Where to train: the model and the optimizer state are moved there
        (``model.to(device)``, ``optimizer.to(device)``). None keeps the
        model's device. On ``"cuda"`` the whole step stays on the GPU: one
        host-to-device copy of each batch (inputs and targets), one scalar
        back for the loss and one small array back for the accuracy;
        ``predict`` returns host arrays.
    """

    def __init__(self, model, loss, optimizer, clip_norm=None, metrics=("accuracy",), callbacks=(), seed=None, device=None):
        from numlstm.losses import get_loss

        for attr in ("forward", "backward", "parameters", "train", "eval"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"model: expected a numlstm model or layer with {attr}(), got {type(model).__name__}")
        for attr in ("step", "zero_grad"):
            if not callable(getattr(optimizer, attr, None)):
                raise TypeError(f"optimizer: expected a numlstm optimizer with {attr}(), got {type(optimizer).__name__}")
        self.model = model
        self.loss = get_loss(loss)
        self.optimizer = optimizer
        self.clip_norm = None if clip_norm is None else check_float(clip_norm, "clip_norm", 0.0)
        if self.clip_norm == 0.0:
            raise ValueError("clip_norm: expected a positive number or None, got 0")
        if isinstance(metrics, str):
            metrics = (metrics,)
        for m in metrics:
            if m not in _METRICS:
                raise ValueError(f"metrics: unknown metric {m!r}; known: {list(_METRICS)}")
        self.metrics = tuple(metrics)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks: expected numlstm.callbacks.Callback objects, got {type(cb).__name__}")
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.rng = np.random.default_rng(seed)
        if device is not None:
            device = backend.check_device(device)
            model.to(device)
            if callable(getattr(optimizer, "to", None)):
                optimizer.to(device)
        self.epoch = 0
        self.history = History()
        self.stop_training = False

    @property
    def device(self) -> str:
        """Where the model lives (``"cpu"`` or ``"cuda"``): the step runs there."""
        return getattr(self.model, "device", "cpu")

    # -- data ----------------------------------------------------------------------
    @staticmethod
    def _check_xy(x, y, name="x"):
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"{name}: expected a numpy array (or a callable / iterable of (x, y) batches), got {type(x).__name__}"
            )
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one sample along axis 0, got shape {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(f"y: expected {x.shape[0]} targets (one per sample of {name}), got shape {y.shape}")
        return x, y

    def _batches(self, x, y, batch_size, shuffle):
        """(xb, yb) batches of arrays, or of the user's batch source."""
        if isinstance(x, np.ndarray):
            n = x.shape[0]
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                yield x[idx], (None if y is None else y[idx])
            return
        source = x() if callable(x) else x
        for item in source:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"x: a batch source must yield (x, y) pairs, got {type(item).__name__}")
            yield np.asarray(item[0]), np.asarray(item[1])

    def _check_source(self, x, y):
        if isinstance(x, np.ndarray):
            return self._check_xy(x, y)
        if callable(x) or (isinstance(x, Iterable) and not isinstance(x, (str, bytes))):
            if y is not None:
                raise ValueError("y: must be None when x is a callable or iterable of (x, y) batches")
            return x, None
        raise TypeError(f"x: expected a numpy array or a callable / iterable of (x, y) batches, got {type(x).__name__}")

    # -- metrics -----------------------------------------------------------------------
    def _metric_counts(self, pred, yb) -> dict[str, tuple[float, int]]:
        out = {}
        shape = tuple(pred.shape)
        if "accuracy" in self.metrics and yb is not None and yb.dtype.kind in "iu" and shape[:-1] == yb.shape:
            valid = yb != getattr(self.loss, "ignore_index", -100)
            if backend.is_device_array(pred):
                # the class of each row on the device, one small transfer back
                cls = backend.empty(int(np.prod(shape[:-1], dtype=np.int64)), np.int64, "cuda")
                backend.cuda_kernels().elementwise.argmax_rows(pred.reshape(cls.size, shape[-1]), cls)
                predicted = cls.copy_to_host().reshape(yb.shape)
            else:
                predicted = np.argmax(pred, axis=-1)
            correct = (predicted == yb) & valid
            out["accuracy"] = (float(correct.sum()), int(valid.sum()))
        return out

    # -- training ------------------------------------------------------------------------
    def _parameters(self):
        return self.model.parameters()

    def train_step(self, xb, yb) -> float:
        """One optimisation step on one batch; returns the batch loss. A NaN
        or infinite loss is returned WITHOUT backward or update."""
        self.model.train()
        self.optimizer.zero_grad()
        if self.device != "cpu":
            xb = backend.to_device(xb, self.device)  # one host-to-device copy of the batch
        pred = self.model.forward(xb)
        loss = float(self.loss.forward(pred, yb))
        if not math.isfinite(loss):
            return loss
        self.model.backward(self.loss.backward())
        if self.clip_norm is not None:
            from numlstm.optim import clip_grad_norm

            clip_grad_norm(self._parameters(), self.clip_norm)
        self.optimizer.step()
        self._last_pred = pred
        return loss

    def fit(
        self,
        x,
        y=None,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data=None,
        shuffle: bool = True,
        progress: bool = True,
        resume_from=None,
    ) -> History:
        """Train for ``epochs`` epochs in total (counting those already done).

        Parameters
        ----------
        x : ndarray (N, ...) inputs, or a callable returning an iterable of
            ``(x, y)`` batches each epoch, or a re-iterable of batches.
        y : ndarray (N, ...) targets (None with a batch source).
        epochs : int
            Total number of epochs; a resumed trainer continues from its epoch.
        batch_size : int >= 1
        validation_data : (x_val, y_val) or None
        shuffle : bool
            Reshuffle the samples each epoch (seeded).
        progress : bool
            A tqdm progress bar with loss and samples/s (tqdm hides it when
            the output is not a terminal).
        resume_from : path or None
            Load a checkpoint written by ``save_checkpoint`` / ``ModelCheckpoint``
            (model, optimizer, shuffling and dropout generators, epoch,
            history) and continue: the result is bit-identical to an
            uninterrupted run.

        Returns
        -------
        History
        """
        from tqdm.auto import tqdm

        epochs = check_int(epochs, "epochs", 0)
        batch_size = check_int(batch_size, "batch_size", 1)
        x, y = self._check_source(x, y)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a tuple (x_val, y_val)")
            self._check_xy(np.asarray(validation_data[0]), validation_data[1], "validation_data[0]")
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self.stop_training = False
        for cb in self.callbacks:
            cb.set_trainer(self)
            cb.on_train_begin({})
        n_total = x.shape[0] if isinstance(x, np.ndarray) else None
        while self.epoch < epochs and not self.stop_training:
            epoch = self.epoch
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch, {})
            loss_sum, n_seen, bad_loss = 0.0, 0, None
            counts: dict[str, list] = {}
            t0 = time.perf_counter()
            bar = tqdm(total=n_total, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", disable=None if progress else True)
            for b, (xb, yb) in enumerate(self._batches(x, y, batch_size, shuffle)):
                loss = self.train_step(xb, yb)
                n = xb.shape[0]
                if not math.isfinite(loss):
                    msg = (
                        f"loss became {loss} at epoch {epoch + 1}, batch {b + 1}: training stopped and that "
                        "batch's update was not applied (the weights are those before it)"
                    )
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
                    self.history.stopped_reason = msg
                    self.stop_training = True
                    bad_loss = loss
                    for cb in self.callbacks:
                        cb.on_batch_end(b, {"loss": loss})
                    break
                loss_sum += loss * n
                n_seen += n
                for k, (c, m) in self._metric_counts(self._last_pred, yb).items():
                    acc = counts.setdefault(k, [0.0, 0])
                    acc[0] += c
                    acc[1] += m
                bar.update(n)
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", rate=f"{n_seen / (time.perf_counter() - t0):.0f}/s")
                for cb in self.callbacks:
                    cb.on_batch_end(b, {"loss": loss})
                if self.stop_training:
                    break
            bar.close()
            if bad_loss is not None:
                logs = {"loss": bad_loss}
            elif n_seen == 0:
                raise ValueError("x: the batch source yielded no batches in this epoch")
            else:
                logs = {"loss": loss_sum / n_seen}
            logs.update({k: c / m for k, (c, m) in counts.items() if m})
            if validation_data is not None and math.isfinite(logs["loss"]):
                val = self.evaluate(validation_data[0], validation_data[1], batch_size=batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            logs["lr"] = float(getattr(self.optimizer, "lr", float("nan")))
            self.epoch += 1
            self.history.append(epoch, logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training and self.history.stopped_reason is None:
                self.history.stopped_reason = f"stopped by a callback after epoch {epoch + 1}"
        for cb in self.callbacks:
            cb.on_train_end({})
        return self.history

    def evaluate(self, x, y=None, batch_size: int = 32) -> dict[str, float]:
        """Mean loss (and metrics) over the data, in evaluation mode."""
        batch_size = check_int(batch_size, "batch_size", 1)
        x, y = self._check_source(x, y)
        self.model.eval()
        loss_sum, n_seen, counts = 0.0, 0, {}
        for xb, yb in self._batches(x, y, batch_size, shuffle=False):
            pred = self.model.forward(xb if self.device == "cpu" else backend.to_device(xb, self.device))
            n = xb.shape[0]
            loss_sum += float(self.loss.forward(pred, yb)) * n
            n_seen += n
            for k, (c, m) in self._metric_counts(pred, yb).items():
                acc = counts.setdefault(k, [0.0, 0])
                acc[0] += c
                acc[1] += m
        if n_seen == 0:
            raise ValueError("x: no batches to evaluate")
        out = {"loss": loss_sum / n_seen}
        out.update({k: c / m for k, (c, m) in counts.items() if m})
        return out

    def predict(self, x, batch_size: int = 32) -> np.ndarray:
        """Model outputs for every sample of ``x`` (N, ...), in evaluation mode."""
        batch_size = check_int(batch_size, "batch_size", 1)
        x, _ = self._check_xy(x, None)
        self.model.eval()
        outs = [backend.to_numpy(self.model.forward(x[s : s + batch_size])) for s in range(0, x.shape[0], batch_size)]
        return np.concatenate(outs, axis=0)

    # -- checkpoints ---------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {
            "epoch": self.epoch,
            "rng": self.rng.bit_generator.state,
            "layer_rngs": [g.bit_generator.state for g in _generators(self.model)],
            "history": self.history.to_dict(),
        }

    def save_checkpoint(self, path) -> None:
        """Write model, optimizer state and trainer state (epoch, generators,
        history) atomically to ``path`` (.npz, no pickle)."""
        from numlstm.checkpoint import save

        save(self.model, path, optimizer=self.optimizer, extra={"trainer": self._trainer_state()})

    def load_checkpoint(self, path) -> None:
        """Restore what ``save_checkpoint`` wrote into this trainer's model,
        optimizer and state."""
        from numlstm.checkpoint import load

        ck = load(path, with_optimizer_state=True)
        self.model.load_state_dict(ck.model.state_dict())
        if ck.optimizer_state is None:
            raise ValueError(f"resume_from: {path} holds no optimizer state; write it with Trainer.save_checkpoint")
        self.optimizer.load_state_dict(ck.optimizer_state)
        state = (ck.extra or {}).get("trainer")
        if state is None:
            raise ValueError(f"resume_from: {path} holds no trainer state; write it with Trainer.save_checkpoint")
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]
        gens = _generators(self.model)
        if len(gens) != len(state["layer_rngs"]):
            raise ValueError(f"resume_from: {path} was written by a model with a different number of random layers")
        for g, s in zip(gens, state["layer_rngs"], strict=True):
            g.bit_generator.state = s
        self.history = History.from_dict(state["history"])
