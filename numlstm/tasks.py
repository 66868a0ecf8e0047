"""Ready-made tasks: generated data, a model for it, and its metrics.

What ``numlstm demo`` / ``numlstm train`` and the reproductions in ``perf/``
run. Three tasks, all on digits generated on the machine (``numlstm.data``):

* ``"moving-digits"``: frame prediction (Shi et al. 2015). Sequences of
  ``in_frames + future`` frames of ``digits`` digits bouncing in a
  ``size x size`` frame; the model sees the first ``in_frames`` and predicts
  per-pixel logits of the next ``future``. Frames are cut into
  ``patch x patch`` patches (``space_to_depth``, as the paper does: 64x64 ->
  16 channels of 16x16), so the model reads ``(B, T, patch**2, size/patch,
  size/patch)``. Models: ``"convlstm"`` (``EncoderForecaster``) and
  ``"lstm"`` (``FCEncoderForecaster``, the paper's FC-LSTM). Metric: the
  cross-entropy per sequence (summed over all pixels of the ``future``
  frames, the paper's Table 1 number) against the copy-last-frame baseline.
* ``"sequence-digits"``: image-sequence classification: ``seq_len`` frames of
  one drifting digit -> its class. Models ``"cnn-lstm"`` (``CNNLSTM``),
  ``"attention"`` (``AttentionCNNLSTM``), ``"lstm"`` (flattened frames ->
  ``LSTM`` -> ``Dense``), ``"convlstm"`` (``ConvLSTM`` -> global average
  pool -> ``Dense``).
* ``"row-digits"``: row-by-row digit classification: a ``size x size`` digit
  image read one row per time step. Models ``"lstm"`` (rows of ``size``
  features) and ``"cnn-lstm"`` (bands of 4 rows as frames).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from numlstm._validation import check_int

TASKS = ("moving-digits", "sequence-digits", "row-digits")

#: models each task can train, the first is the default
MODELS = {
    "moving-digits": ("convlstm", "lstm"),
    "sequence-digits": ("cnn-lstm", "attention", "lstm", "convlstm"),
    "row-digits": ("lstm", "cnn-lstm"),
}

#: default hidden sizes per (task, model)
DEFAULT_HIDDEN = {
    ("moving-digits", "convlstm"): (32, 16, 16),
    ("moving-digits", "lstm"): (256,),
    ("sequence-digits", "cnn-lstm"): (64,),
    ("sequence-digits", "attention"): (64,),
    ("sequence-digits", "lstm"): (64,),
    ("sequence-digits", "convlstm"): (16,),
    ("row-digits", "lstm"): (128,),
    ("row-digits", "cnn-lstm"): (64,),
}

#: rows per frame of the row-digits CNN-LSTM
ROW_BAND = 4

#: the validation stream's seed offset (training epoch e uses seed * STREAM + e + 1)
STREAM = 1_000_003


@dataclass
class TaskConfig:
    """Everything that defines a task's data and model (stored in CLI checkpoints).

    Attributes
    ----------
    task : one of ``TASKS``; model : one of ``MODELS[task]``
    hidden : hidden sizes (channels for ConvLSTM), one per recurrent layer
    kernel_size : of the ConvLSTM / CNN convolutions
    size : frame side in pixels; patch : patch side (moving-digits)
    digits : digits per moving-digits sequence
    in_frames, future : input and predicted frames (moving-digits)
    seq_len : frames per sequence-digits sequence
    seed : seeds the data streams and the model's weights
    mnist : path of real MNIST files (``numlstm.data.load_mnist``) whose
        training digits move in the moving-digits frames instead of the
        rendered glyphs; None: the glyphs
    """

    task: str = "moving-digits"
    model: str = "convlstm"
    hidden: tuple = field(default_factory=lambda: (32, 16, 16))
    kernel_size: int = 3
    size: int = 64
    patch: int = 4
    digits: int = 2
    in_frames: int = 10
    future: int = 10
    seq_len: int = 8
    seed: int = 0
    mnist: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {list(TASKS)}, got {self.task!r}")
        if self.model not in MODELS[self.task]:
            raise ValueError(f"model: task {self.task!r} trains one of {list(MODELS[self.task])}, got {self.model!r}")
        self.hidden = tuple(check_int(h, f"hidden[{i}]", 1) for i, h in enumerate(self.hidden))
        if not self.hidden:
            raise ValueError("hidden: expected at least one layer size, got ()")
        for name in ("kernel_size", "size", "patch", "digits", "in_frames", "future", "seq_len"):
            setattr(self, name, check_int(getattr(self, name), name, 1))
        self.seed = check_int(self.seed, "seed", 0)
        if self.task == "moving-digits" and self.size % self.patch:
            raise ValueError(f"patch: expected a divisor of size={self.size}, got {self.patch}")
        if self.task == "row-digits" and self.model == "cnn-lstm" and self.size % ROW_BAND:
            raise ValueError(
                f"size: the row-digits CNN-LSTM reads bands of {ROW_BAND} rows; expected a multiple, got {self.size}"
            )
        if self.mnist is not None:
            if self.task != "moving-digits":
                raise ValueError(f"mnist: real MNIST digits are used by the moving-digits task only, not {self.task!r}")
            self.mnist = str(self.mnist)
            if self.size < 28:
                raise ValueError(f"size: MNIST digits are 28 x 28; expected size >= 28, got {self.size}")
        if self.task != "moving-digits" and self.size < 8:
            raise ValueError(f"size: expected >= 8 for a digit image, got {self.size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d) -> TaskConfig:
        known = {k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def is_frame_prediction(self) -> bool:
        return self.task == "moving-digits"


# -- data ------------------------------------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of training epoch ``epoch`` (>= 0); ``epoch=-1`` is the validation stream."""
    return seed * STREAM + epoch + 1


def make_batch(cfg: TaskConfig, n: int, seed: int):
    """``n`` samples of the task, seeded: ``(x, y)`` as the model reads them.

    moving-digits: x (n, in_frames, patch**2, size/patch, size/patch) and y
    (n, future, ...) float32 in [0, 1]. sequence-digits: x (n, seq_len, 1,
    size, size), y (n,) int64. row-digits: x (n, size, size) for the LSTM or
    (n, size/4, 1, 4, size) for the CNN-LSTM, y (n,) int64.
    """
    from numlstm import data

    if cfg.task == "moving-digits":
        seq_len = cfg.in_frames + cfg.future
        if cfg.mnist is not None:
            frames = data.moving_digits(n, seq_len=seq_len, size=cfg.size, digits=cfg.digits, seed=seed, images=_mnist(cfg.mnist))
        else:
            # the protocol's 28-pixel digits in 64-pixel frames, scaled with smaller frames
            digit = max(8, min(28, round(28 * cfg.size / 64), cfg.size))
            frames = data.moving_digits(n, seq_len=seq_len, size=cfg.size, digits=cfg.digits, seed=seed, digit_size=digit)
        frames = data.space_to_depth(frames, cfg.patch)
        return np.ascontiguousarray(frames[:, : cfg.in_frames]), np.ascontiguousarray(frames[:, cfg.in_frames :])
    if cfg.task == "sequence-digits":
        x, y = data.sequence_digits(n, seq_len=cfg.seq_len, size=cfg.size, seed=seed)
        if cfg.model == "lstm":
            x = x.reshape(n, cfg.seq_len, -1)
        return np.ascontiguousarray(x), np.asarray(y, np.int64)
    x, y = data.digit_images(n, size=cfg.size, seed=seed)
    if cfg.model == "cnn-lstm":
        x = x.reshape(n, cfg.size // ROW_BAND, 1, ROW_BAND, cfg.size)
    return np.ascontiguousarray(x), np.asarray(y, np.int64)


def epoch_batches(cfg: TaskConfig, trainer, epoch_size: int, batch_size: int):
    """A batch source for ``Trainer.fit``: fresh samples every epoch, seeded by
    (``cfg.seed``, ``trainer.epoch``, batch index), so a resumed run sees the
    same data as an uninterrupted one; one batch in memory at a time."""

    def source():
        seed = epoch_seed(cfg.seed, trainer.epoch)
        for s in range(0, epoch_size, batch_size):
            yield make_batch(cfg, min(batch_size, epoch_size - s), seed * 4096 + s // batch_size)

    return source


@functools.lru_cache(maxsize=2)
def _mnist(path: str) -> np.ndarray:
    """The training images of the MNIST files at ``path`` (read once per process)."""
    from numlstm import data

    (x_train, _), _ = data.load_mnist(path)
    return x_train


def frames_of(cfg: TaskConfig, patched: np.ndarray) -> np.ndarray:
    """Patched moving-digits frames back to pixels ``(n, T, 1, size, size)``."""
    from numlstm import data

    return data.depth_to_space(patched, cfg.patch)


# -- models ----------------------------------------------------------------------------------------------


def build_model(cfg: TaskConfig, dtype=np.float32):
    """The model ``cfg.model`` for ``cfg.task``, seeded with ``cfg.seed``."""
    from numlstm import LSTM, ConvLSTM, Dense, GlobalAvgPool2D, Sequential
    from numlstm.models import CNNLSTM, AttentionCNNLSTM, EncoderForecaster, FCEncoderForecaster

    h, s = cfg.hidden, cfg.seed
    if cfg.task == "moving-digits":
        side = cfg.size // cfg.patch
        channels = cfg.patch * cfg.patch
        if cfg.model == "convlstm":
            return EncoderForecaster(channels, h, cfg.kernel_size, future_steps=cfg.future, dtype=dtype, seed=s)
        return FCEncoderForecaster(channels, side, side, hidden_sizes=h, future_steps=cfg.future, dtype=dtype, seed=s)
    if cfg.model == "cnn-lstm":
        k = cfg.kernel_size
        return CNNLSTM(1, 10, conv_channels=(16, 32), kernel_size=k, hidden_size=h[0], num_layers=len(h), dtype=dtype, seed=s)
    if cfg.model == "attention":
        return AttentionCNNLSTM(1, 10, conv_channels=(16, 32), kernel_size=cfg.kernel_size, hidden_size=h[0], dtype=dtype, seed=s)
    if cfg.model == "convlstm":
        return Sequential(
            [
                ConvLSTM(1, h[0], cfg.kernel_size, num_layers=len(h), return_sequences=False, dtype=dtype, seed=s),
                GlobalAvgPool2D(),
                Dense(h[0], 10, dtype=dtype, seed=s + 1),
            ]
        )
    features = cfg.size if cfg.task == "row-digits" else cfg.size * cfg.size
    return Sequential(
        [
            LSTM(features, h[0], num_layers=len(h), return_sequences=False, dtype=dtype, seed=s),
            Dense(h[0], 10, dtype=dtype, seed=s + 1),
        ]
    )


def loss_name(cfg: TaskConfig) -> str:
    return "bce" if cfg.is_frame_prediction else "cross_entropy"


# -- metrics ---------------------------------------------------------------------------------------------


def sequence_cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    """Binary cross-entropy summed over every predicted pixel of a sequence,
    averaged over sequences (Shi et al. 2015, Table 1).

    logits, target : (n, future, ...) of the same shape; target in [0, 1].
    """
    from numlstm.losses import BCEWithLogitsLoss

    z = np.asarray(logits, np.float64)
    per = BCEWithLogitsLoss(reduction="none").forward(z, np.asarray(target, np.float64))  # checks the shapes
    return float(per.reshape(z.shape[0], -1).sum(axis=1).mean())


def copy_last_frame_cross_entropy(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """The copy-last-frame baseline: every future frame is the last input frame,
    as probabilities clipped to [eps, 1 - eps], with the eps that is best for
    the baseline on these sequences (the strongest version of it).

    Returns (cross-entropy per sequence, eps).
    """
    last = np.asarray(x[:, -1:], np.float64)
    pred = np.repeat(last, target.shape[1], axis=1)
    best = (math.inf, 0.0)
    for eps in np.logspace(-4, -0.5, 22):
        p = np.clip(pred, eps, 1 - eps)
        ce = sequence_cross_entropy(np.log(p / (1 - p)), target)
        best = min(best, (ce, float(eps)))
    return best


def frame_metrics(logits: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict:
    """Cross-entropy per sequence of the model, of the copy-last-frame
    baseline and of a forecast with every pixel at the mean brightness of the
    true future (it knows nothing of motion), and the mean squared error per
    frame (pixels in [0, 1])."""
    ce = sequence_cross_entropy(logits, y)
    base, eps = copy_last_frame_cross_entropy(x, y)
    # a forecast with no motion in it: every pixel at the mean brightness of the true future
    m = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
    constant = sequence_cross_entropy(np.full(y.shape, np.log(m / (1 - m))), y)
    prob = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    n_frames = y.shape[0] * y.shape[1]
    mse = float(((prob - y) ** 2).sum() / n_frames)
    last = np.repeat(np.asarray(x[:, -1:], np.float64), y.shape[1], axis=1)
    mse_copy = float(((last - y) ** 2).sum() / n_frames)
    return {
        "cross_entropy_per_sequence": ce,
        "copy_last_frame_cross_entropy_per_sequence": base,
        "copy_last_frame_eps": eps,
        "mean_brightness_cross_entropy_per_sequence": constant,
        "mse_per_frame": mse,
        "copy_last_frame_mse_per_frame": mse_copy,
    }


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == y))
