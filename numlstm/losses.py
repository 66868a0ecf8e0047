"""Loss functions with a numerically stable forward and an exact backward.

Every loss is an object with PyTorch's semantics::

    loss = CrossEntropyLoss()
    value = loss(logits, labels)        # forward: a float ("mean"/"sum") or an array ("none")
    dlogits = loss.backward()           # d value / d logits, same shape and dtype as logits
    model.backward(dlogits)

``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``. With
``"none"`` the forward returns the per-element losses and
``backward(dout=None)`` takes the upstream gradient of that array (ones when
None); with ``"mean"`` / ``"sum"``, ``backward(dout=1.0)`` scales the
gradient by a number.

Losses compute in the dtype of the prediction (float32 or float64); targets
of another float dtype are refused, as in the layers (no silent casts).
``backward`` may be called more than once after a ``forward``.
"""

from __future__ import annotations

import numbers

import numpy as np

from numlstm import backend
from numlstm._validation import FLOAT_DTYPES, as_array, check_float, check_int

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "Loss", "MSELoss", "get_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_pred(pred, name: str = "pred") -> np.ndarray:
    if backend.is_device_array(pred):
        if np.dtype(pred.dtype) not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {pred.dtype}")
        if pred.size == 0:
            raise ValueError(f"{name}: expected a non-empty array, got shape {pred.shape}")
        if not pred.is_c_contiguous():
            raise ValueError(f"{name}: expected a C-contiguous device array, got a strided view; copy it first")
        return pred
    pred = as_array(pred, name)
    if pred.dtype not in FLOAT_DTYPES:
        hint = f": use {name}.astype(np.float32)" if pred.dtype.kind in "iub" else ""
        raise TypeError(f"{name}: expected dtype float32 or float64, got {pred.dtype}{hint}")
    if pred.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {pred.shape}")
    return pred


def _check_float_target(target, pred: np.ndarray, name: str = "target") -> np.ndarray:
    """A float array of pred's shape and dtype."""
    if backend.is_device_array(target):
        target = target.copy_to_host()  # values are checked on the host
    if not isinstance(target, np.ndarray):
        if isinstance(target, (list, tuple, numbers.Real)) or hasattr(target, "__array__"):
            try:
                target = np.asarray(target, dtype=pred.dtype if isinstance(target, (list, tuple, numbers.Real)) else None)
            except ValueError as exc:
                raise ValueError(f"{name}: expected a rectangular array, got a ragged nested sequence") from exc
        else:
            raise TypeError(f"{name}: expected a numpy array, got {type(target).__name__}")
    if target.shape != pred.shape:
        raise ValueError(f"{name}: expected the shape of pred {pred.shape}, got {target.shape}")
    if target.dtype != pred.dtype:
        hint = f": use {name}.astype(np.{pred.dtype.name})" if target.dtype.kind in "fiub" else ""
        raise TypeError(f"{name}: expected dtype {pred.dtype.name} (the dtype of pred), got {target.dtype}{hint}")
    return target


class Loss:
    """Base class: ``forward(pred, target)`` (also ``loss(pred, target)``) and
    ``backward(dout=None)``.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
    """

    def __init__(self, reduction: str = "mean") -> None:
        if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {list(_REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def forward(self, pred, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout=None) -> np.ndarray:
        """Gradient of the value returned by ``forward`` with respect to ``pred``.

        Parameters
        ----------
        dout : float or ndarray or None
            Upstream gradient: a number for ``"mean"`` / ``"sum"`` (default
            1.0); an array of the shape of the per-element losses for
            ``"none"`` (default ones), of ``pred``'s dtype.

        Returns
        -------
        ndarray
            Same shape and dtype as ``pred``.
        """
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward(pred, target) first")
        dtype, loss_shape = self._cache["dtype"], self._cache["loss_shape"]
        if self.reduction == "none":
            if dout is None:
                dout = np.ones(loss_shape, dtype)
            else:
                if not isinstance(dout, np.ndarray) and not backend.is_device_array(dout):
                    raise TypeError(
                        f"dout: expected a numpy array of shape {loss_shape} (reduction='none'), got {type(dout).__name__}"
                    )
                if dout.shape != loss_shape:
                    raise ValueError(f"dout: expected shape {loss_shape} (the per-element losses), got {dout.shape}")
                if dout.dtype != dtype:
                    hint = f": use dout.astype(np.{dtype.name})" if dout.dtype.kind in "fiub" else ""
                    raise TypeError(f"dout: expected dtype {dtype.name}, got {dout.dtype}{hint}")
        else:
            if dout is None:
                dout = 1.0
            elif isinstance(dout, np.ndarray) and dout.size == 1:
                dout = dout.reshape(()).item()
            dout = check_float(dout, "dout")
        return self._backward(dout)

    def _backward(self, dout) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reduce_cuda(self, per_elem, count=None):
        """``_reduce`` of a device array: the sum on the device, one scalar back."""
        if self.reduction == "none":
            return per_elem
        total = backend.cuda_kernels().elementwise.total(per_elem)
        if self.reduction == "sum":
            return float(total)
        n = per_elem.size if count is None else count
        return float(total / per_elem.dtype.type(n)) if n else float("nan")

    def _dout_cuda(self, dout, dtype):
        """(k, rows, use_rows) for the gradient kernels: a dtype scalar, or the
        upstream array on the device (reduction "none")."""
        t = np.dtype(dtype).type
        if self.reduction == "none":
            return t(0), backend.to_device(dout, "cuda"), True
        k = t(dout)
        if self.reduction == "mean":
            count = self._cache["count"] if "count" in self._cache else self._cache["size"]
            k = k / t(count) if count else t(0)
        return k, backend.empty(1, dtype, "cuda"), False

    def _reduce(self, per_elem: np.ndarray, count=None):
        if self.reduction == "none":
            return per_elem
        total = per_elem.sum(dtype=per_elem.dtype)
        if self.reduction == "sum":
            return float(total)
        n = per_elem.size if count is None else count
        return float(total / per_elem.dtype.type(n)) if n else float("nan")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Mean squared error: ``l = (pred - target)**2`` per element, then the reduction.

    ``pred`` any shape (float32/float64), ``target`` the same shape and dtype.
    Gradient: ``2 (pred - target) * dout`` (divided by the element count for
    ``"mean"``).
    """

    def forward(self, pred, target):
        """pred: (...) float; target: (...) same shape and dtype. Returns a float, or (...) for "none"."""
        pred = _check_pred(pred)
        target = _check_float_target(target, pred)
        if backend.is_device_array(pred):
            ew = backend.cuda_kernels().elementwise
            diff = backend.empty(pred.shape, pred.dtype, "cuda")
            ew.subtract(pred, backend.to_device(target, "cuda"), diff)
            per = backend.empty(pred.shape, pred.dtype, "cuda")
            ew.multiply(diff, diff, per)
            dt = np.dtype(pred.dtype)
            self._cache = {"dtype": dt, "loss_shape": pred.shape, "diff": diff, "device": True, "size": pred.size}
            return self._reduce_cuda(per)
        diff = pred - target
        self._cache = {"dtype": pred.dtype, "loss_shape": pred.shape, "diff": diff}
        return self._reduce(diff * diff)

    def _backward(self, dout):
        diff = self._cache["diff"]
        if self._cache.get("device"):
            ew = backend.cuda_kernels().elementwise
            t = self._cache["dtype"].type
            grad = backend.empty(diff.shape, diff.dtype, "cuda")
            if self.reduction == "none":
                ew.scale(diff, t(2), grad)
                ew.multiply(grad, backend.to_device(dout, "cuda"), grad)
                return grad
            scale = t(2) * t(dout)
            if self.reduction == "mean":
                scale = scale / t(diff.size)
            ew.scale(diff, scale, grad)
            return grad
        t = diff.dtype.type
        if self.reduction == "none":
            return t(2) * diff * dout
        scale = t(2) * t(dout)
        if self.reduction == "mean":
            scale = scale / t(diff.size)
        return diff * scale


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy between logits and integer class labels.

    Shapes (C, the number of classes, is the LAST axis)::

        pred (N, C),    target (N,)       one label per row
        pred (N, T, C), target (N, T)     one label per time step (numlstm's
                                          (batch, time, features) layout;
                                          PyTorch wants (N, C, T) instead)

    Per element, with ``log p = logits - logsumexp(logits)`` (computed with
    the maximum subtracted, so logits of any size are safe) and label
    smoothing ``eps``::

        l = -(1 - eps) * log p[y] - eps / C * sum_c log p[c]
        dl/dlogits = softmax(logits) - (1 - eps) * onehot(y) - eps / C

    Elements whose label is ``ignore_index`` contribute 0 and get a zero
    gradient; ``"mean"`` divides by the number of the others (as PyTorch; NaN
    if every label is ignored, with a zero gradient).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
    ignore_index : int, default -100
    label_smoothing : float in [0, 1], default 0.0
    """

    def __init__(self, reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        self.ignore_index = check_int(ignore_index, "ignore_index")
        self.label_smoothing = check_float(label_smoothing, "label_smoothing", 0.0, 1.0)

    def forward(self, pred, target):
        """pred: (N, C) or (N, T, C) float logits; target: (N,) or (N, T) integer labels in
        [0, C) or ``ignore_index``. Returns a float, or (N,) / (N, T) for "none"."""
        pred = _check_pred(pred)
        if pred.ndim not in (2, 3):
            raise ValueError(
                f"pred: expected logits of shape (N, C) or (N, T, C) (classes on the last axis), got shape {pred.shape}"
            )
        C = tuple(pred.shape)[-1]  # tuple(): the simulator's device shapes refuse negative indices
        lead = tuple(pred.shape)[:-1]
        if backend.is_device_array(target):
            target = target.copy_to_host()  # labels are checked on the host
        if not isinstance(target, np.ndarray):
            if isinstance(target, (list, tuple)) or hasattr(target, "__array__"):
                try:
                    target = np.asarray(target)
                except ValueError as exc:
                    raise ValueError("target: expected a rectangular array, got a ragged nested sequence") from exc
            else:
                raise TypeError(f"target: expected a numpy array of integer labels, got {type(target).__name__}")
        if target.dtype.kind not in "iu":
            hint = ": use target.astype(np.int64)" if target.dtype.kind in "fb" else ""
            raise TypeError(f"target: expected integer class labels, got dtype {target.dtype}{hint}")
        if target.shape != lead:
            raise ValueError(
                f"target: expected shape {lead} (pred's shape {pred.shape} without the class axis), got {target.shape}"
            )
        labels = target.reshape(-1).astype(np.int64)
        valid = labels != self.ignore_index
        bad = valid & ((labels < 0) | (labels >= C))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            where = np.unravel_index(k, lead)
            raise ValueError(
                f"target: expected class labels in [0, {C}) or ignore_index={self.ignore_index}, "
                f"got {labels[k]} at index {tuple(int(i) for i in where)}"
            )
        if backend.is_device_array(pred):
            return self._forward_cuda(pred, labels, valid, lead)
        dt = pred.dtype
        t = dt.type
        z = pred.reshape(-1, C)
        m = z.max(axis=1, keepdims=True)
        shifted = z - m
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        logp = shifted - np.log(s)  # (M, C)
        safe = np.where(valid, labels, 0)
        nll = -logp[np.arange(labels.size), safe]
        eps = self.label_smoothing
        if eps > 0:
            smooth = -logp.sum(axis=1) / t(C)
            per = t(1 - eps) * nll + t(eps) * smooth
        else:
            per = nll
        per = np.where(valid, per, t(0)).astype(dt, copy=False)
        count = int(valid.sum())
        self._cache = {
            "dtype": dt,
            "loss_shape": lead,
            "prob": e / s,
            "labels": safe,
            "valid": valid,
            "count": count,
            "shape": pred.shape,
        }
        return self._reduce(per.reshape(lead), count)

    def _forward_cuda(self, pred, labels, valid, lead):
        """The forward pass on device logits (labels checked on the host, copied once)."""
        kl = backend.cuda_kernels().losses
        dt = np.dtype(pred.dtype)
        C = tuple(pred.shape)[-1]
        M = labels.size
        marked = backend.to_device(np.where(valid, labels, -1), "cuda")  # one copy: ignored rows hold -1
        prob = backend.empty((M, C), dt, "cuda")
        per = backend.empty(M, dt, "cuda")
        kl.cross_entropy_forward(pred.reshape(M, C), marked, dt.type(self.label_smoothing), prob, per)
        count = int(valid.sum())
        self._cache = {
            "dtype": dt,
            "loss_shape": lead,
            "prob": prob,
            "labels": marked,
            "count": count,
            "shape": tuple(pred.shape),
            "device": True,
        }
        return self._reduce_cuda(per.reshape(lead), count)

    def _backward(self, dout):
        c = self._cache
        if c.get("device"):
            t = c["dtype"].type
            eps = self.label_smoothing
            k, rows, use_rows = self._dout_cuda(dout, c["dtype"])
            if use_rows:
                rows = rows.reshape(rows.size)
            grad = backend.empty(c["prob"].shape, c["dtype"], "cuda")
            backend.cuda_kernels().losses.cross_entropy_backward(
                c["prob"], c["labels"], t(1 - eps), t(eps) / t(c["prob"].shape[1]) if eps > 0 else t(0),
                k, rows, use_rows, grad,
            )  # fmt: skip
            return grad.reshape(c["shape"])
        prob, labels, valid = c["prob"], c["labels"], c["valid"]
        M, C = prob.shape
        t = prob.dtype.type
        eps = self.label_smoothing
        grad = prob.copy()
        grad[np.arange(M), labels] -= t(1 - eps)
        if eps > 0:
            grad -= t(eps) / t(C)
        if self.reduction == "none":
            scale = np.where(valid, dout.reshape(-1), t(0))[:, None]
            grad = grad * scale
        else:
            k = t(dout)
            if self.reduction == "mean":
                k = k / t(c["count"]) if c["count"] else t(0)
            grad *= k
            grad[~valid] = 0
        return grad.reshape(c["shape"])

    def __repr__(self) -> str:
        return (
            f"CrossEntropyLoss(reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing})"
        )


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid and BCE fused), per element.

    For logits ``z`` and targets ``y`` in [0, 1] of the same shape (e.g.
    per-pixel frame prediction, ``(B, T, C, H, W)``)::

        l = -[pos_weight * y * log sigmoid(z) + (1 - y) * log(1 - sigmoid(z))]
          = (1 - y) * z + w * softplus(-z),       w = 1 + (pos_weight - 1) * y
        dl/dz = (1 - y) - w * sigmoid(-z)         (= sigmoid(z) - y without pos_weight)

    with ``softplus(-z) = max(-z, 0) + log1p(exp(-|z|))``, so large logits
    of either sign are safe.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
    pos_weight : float or array-like or None
        Weight (>= 0) of the positive term, broadcast against the target
        (PyTorch: one per class along the last axis). None means 1.
    """

    def __init__(self, reduction: str = "mean", pos_weight=None) -> None:
        super().__init__(reduction)
        if pos_weight is not None:
            if isinstance(pos_weight, bool):
                raise TypeError("pos_weight: expected a number or a float array, got bool")
            try:
                pw = np.asarray(pos_weight)
            except ValueError as exc:
                raise ValueError("pos_weight: expected a rectangular array, got a ragged nested sequence") from exc
            if pw.dtype.kind not in "fiu":
                raise TypeError(f"pos_weight: expected a number or a float array, got dtype {pw.dtype}")
            pw = pw.astype(np.float64)
            if not np.all(np.isfinite(pw)) or np.any(pw < 0):
                raise ValueError(f"pos_weight: expected finite values >= 0, got min {pw.min()}, max {pw.max()}")
            pos_weight = pw
        self.pos_weight = pos_weight

    def forward(self, pred, target):
        """pred: (...) float logits; target: (...) same shape and dtype, values in [0, 1].
        Returns a float, or (...) for "none"."""
        z = _check_pred(pred)
        y = _check_float_target(target, z)
        if not np.all((y >= 0) & (y <= 1)):
            bad = ~((y >= 0) & (y <= 1))
            k = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(
                f"target: expected values in [0, 1], got {y.reshape(-1)[k]} "
                f"at index {tuple(int(i) for i in np.unravel_index(k, y.shape))}"
            )
        dt = np.dtype(z.dtype)
        t = dt.type
        one = t(1)
        w = None
        if self.pos_weight is not None:
            try:
                np.broadcast_shapes(self.pos_weight.shape, z.shape)
            except ValueError as exc:
                raise ValueError(
                    f"pos_weight: expected a shape that broadcasts to pred's {z.shape} (e.g. ({z.shape[-1]},), one per class "
                    f"on the last axis), got {self.pos_weight.shape}"
                ) from exc
            if np.broadcast_shapes(self.pos_weight.shape, z.shape) != z.shape:
                raise ValueError(f"pos_weight: shape {self.pos_weight.shape} would broadcast pred's {z.shape} to a larger shape")
            w = one + (self.pos_weight.astype(dt) - one) * y
        if backend.is_device_array(z):
            return self._forward_cuda(z, y, w)
        e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
        softplus_neg = np.maximum(-z, t(0)) + np.log1p(e)  # log(1 + exp(-z))
        # sigmoid(-z) = 1 / (1 + exp(z)), from e = exp(-|z|) without overflow
        sig_neg = np.where(z >= 0, e / (one + e), one / (one + e))
        if w is None:
            per = np.maximum(z, t(0)) - z * y + np.log1p(e)
        else:
            per = (one - y) * z + w * softplus_neg
        self._cache = {"dtype": dt, "loss_shape": z.shape, "y": y, "w": w, "sig_neg": sig_neg}
        return self._reduce(per.astype(dt, copy=False))

    def _forward_cuda(self, z, y, w):
        """The forward pass on device logits (targets checked on the host, copied once)."""
        dt = np.dtype(z.dtype)
        y_d = backend.to_device(y, "cuda")
        w_d = y_d if w is None else backend.to_device(np.ascontiguousarray(w, dtype=dt), "cuda")
        per = backend.empty(z.shape, dt, "cuda")
        sig_neg = backend.empty(z.shape, dt, "cuda")
        backend.cuda_kernels().losses.bce_forward(z, y_d, w_d, w is not None, per, sig_neg)
        self._cache = {
            "dtype": dt,
            "loss_shape": tuple(z.shape),
            "y": y_d,
            "w": w_d,
            "use_w": w is not None,
            "sig_neg": sig_neg,
            "device": True,
            "size": z.size,
        }
        return self._reduce_cuda(per)

    def _backward(self, dout):
        c = self._cache
        if c.get("device"):
            k, rows, use_rows = self._dout_cuda(dout, c["dtype"])
            if not use_rows:
                rows = c["y"]  # not read
            grad = backend.empty(c["loss_shape"], c["dtype"], "cuda")
            backend.cuda_kernels().losses.bce_backward(c["y"], c["w"], c["use_w"], c["sig_neg"], k, rows, use_rows, grad)
            return grad
        y, w, sig_neg = c["y"], c["w"], c["sig_neg"]
        t = c["dtype"].type
        one = t(1)
        grad = (one - y) - (sig_neg if w is None else w * sig_neg)
        if self.reduction == "none":
            return (grad * dout).astype(c["dtype"], copy=False)
        k = t(dout)
        if self.reduction == "mean":
            k = k / t(y.size)
        return (grad * k).astype(c["dtype"], copy=False)

    def __repr__(self) -> str:
        pw = None if self.pos_weight is None else self.pos_weight.tolist()
        return f"BCEWithLogitsLoss(reduction={self.reduction!r}, pos_weight={pw})"


_LOSSES = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "crossentropy": CrossEntropyLoss,
    "ce": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
    "bce_with_logits": BCEWithLogitsLoss,
}


def get_loss(name_or_loss) -> Loss:
    """A loss object from a name, or the given loss object itself.

    Parameters
    ----------
    name_or_loss : str or Loss
        ``"mse"``; ``"cross_entropy"`` (also ``"crossentropy"``, ``"ce"``);
        ``"bce"`` or ``"bce_with_logits"`` (``BCEWithLogitsLoss``: the
        prediction is a logit, there is no probability-input BCE). Names are
        case-insensitive. A ``Loss`` instance is returned as is.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones).
    TypeError
        Neither a string nor a Loss.
    """
    if isinstance(name_or_loss, Loss):
        return name_or_loss
    if isinstance(name_or_loss, type) and issubclass(name_or_loss, Loss):
        raise TypeError(
            f"name_or_loss: expected a loss instance or a name, got the class {name_or_loss.__name__}: "
            f"use {name_or_loss.__name__}()"
        )
    if not isinstance(name_or_loss, str):
        raise TypeError(f"name_or_loss: expected a loss name (str) or a numlstm.losses.Loss, got {type(name_or_loss).__name__}")
    key = name_or_loss.strip().lower()
    if key not in _LOSSES:
        raise ValueError(f"name_or_loss: unknown loss {name_or_loss!r}; expected one of {sorted(_LOSSES)}")
    return _LOSSES[key]()
