"""Optimizers, gradient clipping and learning-rate schedules.

PyTorch semantics: ``SGD``, ``Adam``, ``AdamW`` and ``RMSprop`` follow
``torch.optim`` operation by operation (float64 results agree to rounding),
``clip_grad_norm`` follows ``torch.nn.utils.clip_grad_norm_`` and the
schedules give ``torch.optim.lr_scheduler``'s learning-rate sequences.

>>> import numpy as np, numlstm
>>> from numlstm.optim import Adam, StepLR
>>> lstm = numlstm.LSTM(4, 8, seed=0)
>>> opt = Adam(lstm.parameters(), lr=1e-3)
>>> sched = StepLR(opt, step_size=10, gamma=0.5)
>>> opt.zero_grad()            # ... forward, loss, backward, then:
>>> opt.step()
>>> sched.step()

An optimizer has ONE learning rate ``opt.lr`` for all its parameters (one
PyTorch parameter group); build one optimizer per group when groups need
different settings.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import numpy as np

from numlstm import backend
from numlstm._validation import FLOAT_DTYPES, check_bool, check_float, check_int
from numlstm.kernels.cpu.optim import adam_update, rmsprop_update, sgd_update
from numlstm.parameter import Parameter

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "StepLR",
    "clip_grad_norm",
]


# -- parameters ---------------------------------------------------------------------------------


def _check_params(params, name: str = "params") -> list[Parameter]:
    """A non-empty list of distinct, well-formed Parameters (data C-contiguous and writeable,
    grad of the same shape and dtype)."""
    if isinstance(params, Parameter):
        params = [params]
    elif isinstance(params, (np.ndarray, str, bytes, Mapping)) or not isinstance(params, Iterable):
        raise TypeError(
            f"{name}: expected an iterable of numlstm.Parameter (e.g. layer.parameters()), got {type(params).__name__}"
        )
    params = list(params)
    if not params:
        raise ValueError(f"{name}: got an empty list of parameters; pass layer.parameters() of a layer that has some")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(
                f"{name}[{i}]: expected a numlstm.Parameter (from layer.parameters(), or "
                f"numlstm.Parameter(name, data, grad)), got {type(p).__name__}"
            )
        _check_param(p, f"{name}[{i}] ({p.name!r})")
    # duplicates / overlapping memory: an update applied twice to the same values
    for i, p in enumerate(params):
        for j in range(i):
            q = params[j]
            if p is q or p.data is q.data or _shares_memory(p.data, q.data):
                raise ValueError(
                    f"{name}: parameter {i} ({p.name!r}) shares its data with parameter {j} ({q.name!r}); "
                    f"pass every parameter once"
                )
    return params


def _shares_memory(a, b) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.shares_memory(a, b)
    if backend.is_device_array(a) and backend.is_device_array(b):
        pa, pb = _device_pointer(a), _device_pointer(b)
        return pa is not None and pa == pb
    return False


def _device_pointer(a):
    """Start address of a device array (None on the simulator, where identity is the test)."""
    iface = getattr(a, "__cuda_array_interface__", None)
    return None if iface is None else iface["data"][0]


def _check_device_param(p: Parameter, where: str) -> None:
    d, g = p.data, p.grad
    if not backend.is_device_array(g):
        raise TypeError(
            f"{where}: grad: expected a device array like data (move the layer with .to('cuda')), got {type(g).__name__}"
        )
    if np.dtype(d.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{where}: data: expected dtype float32 or float64, got {d.dtype}")
    if tuple(g.shape) != tuple(d.shape):
        raise ValueError(f"{where}: grad: expected the shape of data {tuple(d.shape)}, got {tuple(g.shape)}")
    if g.dtype != d.dtype:
        raise TypeError(f"{where}: grad: expected the dtype of data ({d.dtype}), got {g.dtype}")
    if not d.is_c_contiguous() or not g.is_c_contiguous():
        raise ValueError(f"{where}: data and grad: expected C-contiguous device arrays (updated in place), got a strided view")


def _check_param(p: Parameter, where: str) -> None:
    d, g = p.data, p.grad
    if not isinstance(d, np.ndarray):
        if backend.is_device_array(d):
            _check_device_param(p, where)
            return
        raise TypeError(f"{where}: data: expected a numpy array, got {type(d).__name__}")
    if not isinstance(g, np.ndarray):
        raise TypeError(f"{where}: grad: expected a numpy array, got {type(g).__name__}")
    if d.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: data: expected dtype float32 or float64, got {d.dtype}")
    if g.shape != d.shape:
        raise ValueError(f"{where}: grad: expected the shape of data {d.shape}, got {g.shape}")
    if g.dtype != d.dtype:
        raise TypeError(f"{where}: grad: expected the dtype of data ({d.dtype}), got {g.dtype}")
    if not d.flags.c_contiguous:
        raise ValueError(f"{where}: data: expected a C-contiguous array (updated in place), got a strided view")
    if not d.flags.writeable:
        raise ValueError(f"{where}: data: expected a writeable array (updated in place), got a read-only one")


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-d view of a C-contiguous array (a contiguous copy for a read-only strided grad)."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def _flat_device(a):
    """A 1-d view of a C-contiguous device array (checked by ``_check_device_param``)."""
    return a.reshape(a.size)


def _check_lr(lr) -> float:
    return check_float(lr, "lr", low=0.0)


def _check_positive(value, name: str) -> float:
    value = check_float(value, name)
    if value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    return value


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas: expected a tuple (beta1, beta2) of two numbers in [0, 1), got {betas!r}")
    return (
        check_float(betas[0], "betas[0]", 0.0, 1.0, high_open=True),
        check_float(betas[1], "betas[1]", 0.0, 1.0, high_open=True),
    )


# -- optimizers ---------------------------------------------------------------------------------


class Optimizer:
    """Base class: holds the parameters, the learning rate, the step count and
    per-parameter state buffers.

    Parameters
    ----------
    params : iterable of Parameter
        What ``layer.parameters()`` returns; their ``data`` is updated in place.
    lr : float
        Learning rate, >= 0. ``opt.lr`` can be changed between steps (the
        schedules do).

    Attributes
    ----------
    params : list[Parameter]
    lr : float
    step_count : int
        Number of ``step()`` calls so far (PyTorch's ``state["step"]``).
    state : list[dict[str, ndarray]]
        Per-parameter buffers (same order as ``params``, each of the
        parameter's shape and dtype), created at the first step that needs
        them, as in PyTorch (SGD's momentum buffer starts as the first
        gradient).
    """

    #: names of every per-parameter state buffer the class may create
    _buffers: tuple[str, ...] = ()
    #: buffers every parameter has after the first step
    _core_buffers: tuple[str, ...] = ()
    #: names of the hyperparameters saved in state_dict (besides lr)
    _hyper: tuple[str, ...] = ()

    def __init__(self, params, lr) -> None:
        self.params = _check_params(params)
        self.lr = lr
        self.step_count = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]

    # -- lr ----------------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _check_lr(value)

    # -- the training loop -------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0 (in place, on its device)."""
        for p in self.params:
            if isinstance(p.grad, np.ndarray):
                p.grad.fill(0)
            else:
                backend.cuda_kernels().elementwise.fill(p.grad, 0.0)

    def to(self, device: str) -> Optimizer:
        """Move the state buffers to ``device`` (``"cpu"`` or ``"cuda"``); returns self.

        Not needed for training (``step()`` moves a buffer to its parameter's
        device when they differ), but it moves them now, e.g. after
        ``model.to(device)`` and before timing."""
        device = backend.check_device(device)
        for st in self.state:
            for b in list(st):
                st[b] = backend.to_device(st[b], device)
        return self

    def step(self) -> None:
        """Update every parameter from its current gradient (in place)."""
        # cheap re-checks: a layer may have been given new arrays since __init__,
        # and the kernels run without bounds checks
        for i, (p, st) in enumerate(zip(self.params, self.state, strict=True)):
            where = f"params[{i}] ({p.name!r})"
            _check_param(p, where)
            on_cpu = isinstance(p.data, np.ndarray)
            for b, buf in st.items():
                if isinstance(buf, np.ndarray) != on_cpu:  # the parameter moved: its state follows
                    buf = st[b] = backend.to_device(buf, "cpu" if on_cpu else "cuda")
                if buf.shape != p.data.shape or buf.dtype != p.data.dtype:
                    raise ValueError(
                        f"{where}: data changed to shape {p.data.shape}, dtype {p.data.dtype} after the optimizer's "
                        f"first step (its {b} has shape {buf.shape}, dtype {buf.dtype}); build a new optimizer"
                    )
        self.step_count += 1
        for p, st in zip(self.params, self.state, strict=True):
            self._update(p, st)

    def _update(self, p: Parameter, st: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {h: getattr(self, h) for h in self._hyper}

    def state_dict(self) -> dict:
        """The optimizer's state as plain values: copies of every buffer, the step
        count and the hyperparameters.

        Returns
        -------
        dict
            ``"optimizer"``: the class name (str); ``"lr"`` and the other
            hyperparameters: floats (bool for ``nesterov``);
            ``"step_count"``: int; ``"param_names"``: a unicode array of the
            parameter names, in order; ``"state.{i}.{buffer}"``: a copy of
            buffer ``buffer`` of parameter ``i``, for the buffers that exist
            (SGD: ``momentum_buffer``; Adam/AdamW: ``exp_avg``,
            ``exp_avg_sq``; RMSprop: ``square_avg``, ``momentum_buffer``;
            none before the first step). Everything can be written with
            ``np.savez`` without pickling, and ``dict(np.load(path))`` loads
            back.
        """
        d = {"optimizer": type(self).__name__, "lr": self.lr, "step_count": self.step_count}
        for h, v in self._hyperparameters().items():
            d[h] = v
        d["param_names"] = np.array([p.name for p in self.params], dtype=str)
        for i, st in enumerate(self.state):
            for b, buf in st.items():
                d[f"state.{i}.{b}"] = buf.copy() if isinstance(buf, np.ndarray) else backend.to_numpy(buf)
        return d

    def load_state_dict(self, state_dict) -> None:
        """Restore a state saved by ``state_dict()`` of an optimizer of the same
        class over parameters of the same names, shapes and dtypes (in the same
        order); training then continues bit-identically.

        Raises
        ------
        TypeError
            Not a mapping, or a buffer of the wrong dtype.
        ValueError
            Another optimizer class, missing or unexpected keys, other
            parameter names, mis-shaped buffers or invalid hyperparameters.
            Nothing is changed when it raises.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping from Optimizer.state_dict(), got {type(state_dict).__name__}")
        kind = str(np.asarray(state_dict["optimizer"])) if "optimizer" in state_dict else None
        if kind != type(self).__name__:
            raise ValueError(f"state_dict: expected the state of a {type(self).__name__}, got one of {kind}")
        n = len(self.params)
        scalars = {"optimizer", "lr", "step_count", "param_names", *self._hyper}
        allowed = scalars | {f"state.{i}.{b}" for i in range(n) for b in self._buffers}
        keys = set(state_dict.keys())
        missing, unexpected = sorted(scalars - keys), sorted(keys - allowed)
        if missing or unexpected:
            raise ValueError(
                f"state_dict: missing keys {missing}, unexpected keys {unexpected} (this optimizer has {n} parameters)"
            )
        names = [str(x) for x in np.asarray(state_dict["param_names"]).reshape(-1)]
        mine = [p.name for p in self.params]
        if names != mine:
            raise ValueError(f"state_dict['param_names']: expected {mine}, got {names}")
        step_count = check_int(_scalar(state_dict["step_count"]), "state_dict['step_count']", 0)
        # a buffer exists for every parameter or for none; the core ones after step 1
        for b in self._buffers:
            have = [f"state.{i}.{b}" in keys for i in range(n)]
            required = step_count > 0 and b in self._core_buffers
            if (required or any(have)) and not all(have):
                absent = [f"state.{i}.{b}" for i in range(n) if not have[i]]
                raise ValueError(f"state_dict: missing keys {absent} (at step_count={step_count})")
        state = [{} for _ in range(n)]
        for key in sorted(keys - scalars):
            _, i, b = key.split(".", 2)
            p = self.params[int(i)]
            v = state_dict[key]
            if not isinstance(v, np.ndarray):
                raise TypeError(f"state_dict[{key!r}]: expected a numpy array, got {type(v).__name__}")
            if v.shape != tuple(p.data.shape):
                raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(p.data.shape)}, got {v.shape}")
            if v.dtype != p.data.dtype:
                raise TypeError(f"state_dict[{key!r}]: expected dtype {p.data.dtype}, got {v.dtype}")
            state[int(i)][b] = np.array(v, order="C", copy=True)
        hyper = {h: _scalar(state_dict[h]) for h in ("lr", *self._hyper)}
        # validate the hyperparameters on a scratch instance (raises without touching self)
        object.__new__(type(self))._set_hyperparameters(**hyper)
        # all checked: commit
        self._set_hyperparameters(**hyper)
        self.step_count = step_count
        self.state = state

    def _set_hyperparameters(self, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self._hyperparameters()}.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hp})"


#: stand-ins for buffers a kernel does not touch under the current settings
_EMPTY = {dt: np.empty(0, dt) for dt in FLOAT_DTYPES}


def _buffer(st: dict, name: str, p: Parameter) -> np.ndarray:
    """State buffer ``name``, created as zeros on first use."""
    buf = st.get(name)
    if buf is None:
        buf = st[name] = np.zeros_like(p.data)
    return buf


def _buffer_cuda(st: dict, name: str, p: Parameter):
    """``_buffer`` on the parameter's device: a flat view of a device array of zeros."""
    buf = st.get(name)
    if buf is None:
        buf = st[name] = backend.zeros(p.data.shape, p.data.dtype, "cuda")
    return _flat_device(buf)


def _cuda_optim():
    """The fused update kernels on the GPU (numlstm.kernels.cuda.optim)."""
    return backend.cuda_kernels().optim


def _empty_like(p: Parameter):
    return backend.empty(p.data.shape, p.data.dtype, "cuda")


def _unused(p: Parameter):
    """A stand-in for a buffer the kernel does not touch, on the device."""
    return backend.empty(0, p.data.dtype, "cuda")


def _scalar(v):
    """A Python scalar from a Python or 0-d / size-1 numpy value (as ``np.load`` returns them)."""
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(()).item()
    elif isinstance(v, np.generic):
        v = v.item()
    return v


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    For each parameter ``p`` with gradient ``g`` (``torch.optim.SGD`` with
    ``dampening=0``)::

        g = g + weight_decay * p
        b = g                            (first step)      b = momentum * b + g   (later)
        g = g + momentum * b             (nesterov)        g = b                  (momentum > 0)
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, >= 0
    momentum : float, >= 0
    nesterov : bool
        Needs ``momentum > 0``.
    weight_decay : float, >= 0
    """

    _buffers = ("momentum_buffer",)
    _hyper = ("momentum", "nesterov", "weight_decay")

    def __init__(self, params, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        self._set_hyperparameters(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, lr)

    def _set_hyperparameters(self, lr, momentum, nesterov, weight_decay) -> None:
        self.lr = lr
        self.momentum = check_float(momentum, "momentum", low=0.0)
        self.nesterov = check_bool(nesterov, "nesterov")
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0.0)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0.0")

    def _update(self, p: Parameter, st: dict) -> None:
        if not isinstance(p.data, np.ndarray):
            return self._update_cuda(p, st)
        t = p.data.dtype.type
        first = False
        if self.momentum != 0:
            buf = st.get("momentum_buffer")
            if buf is None:  # PyTorch: the buffer starts as the first gradient
                first = True
                buf = st["momentum_buffer"] = np.empty_like(p.data)
        else:
            buf = _EMPTY[p.data.dtype]
        sgd_update(
            _flat(p.data),
            _flat(p.grad),
            buf.reshape(-1),
            t(self.lr),
            t(self.momentum),
            t(self.weight_decay),
            self.nesterov,
            first,
        )

    def _update_cuda(self, p: Parameter, st: dict) -> None:
        """The same update on device arrays (numlstm.kernels.cuda.optim)."""
        t = p.data.dtype.type
        first = False
        if self.momentum != 0:
            buf = st.get("momentum_buffer")
            if buf is None:  # PyTorch: the buffer starts as the first gradient
                first = True
                buf = st["momentum_buffer"] = _empty_like(p)
        else:
            buf = _unused(p)
        _cuda_optim().sgd_update(
            _flat_device(p.data),
            _flat_device(p.grad),
            _flat_device(buf),
            t(self.lr),
            t(self.momentum),
            t(self.weight_decay),
            self.nesterov,
            first,
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay added to the gradient.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``
    (``torch.optim.Adam``, ``amsgrad=False``)::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, > 0
    weight_decay : float, >= 0
        L2 penalty added to the gradient; ``AdamW`` decouples it instead.
    """

    _buffers = ("exp_avg", "exp_avg_sq")
    _core_buffers = _buffers
    _hyper = ("beta1", "beta2", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        b1, b2 = _check_betas(betas)
        self._set_hyperparameters(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=weight_decay)
        super().__init__(params, lr)

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def _set_hyperparameters(self, lr, beta1, beta2, eps, weight_decay) -> None:
        self.lr = lr
        self.beta1, self.beta2 = _check_betas((beta1, beta2))
        self.eps = _check_positive(eps, "eps")
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0.0)

    def _scalars(self, t) -> tuple:
        """The update's scalars in dtype ``t``, in ``adam_update``'s argument
        order, exactly as torch.optim computes them (Python floats)."""
        step = self.step_count
        lr, beta1, beta2, wd = self.lr, self.beta1, self.beta2, self.weight_decay
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        w1 = t(1 - beta1)
        if self._decoupled:
            l2, decay = 0.0, 1 - lr * wd
        else:
            l2, decay = wd, 1.0
        return (
            w1,
            t(1) - w1,
            t(beta2),
            t(1 - beta2),
            t(l2),
            t(decay),
            t(-step_size),
            t(bias_correction2_sqrt),
            t(self.eps),
        )

    def _update(self, p: Parameter, st: dict) -> None:
        if not isinstance(p.data, np.ndarray):
            return self._update_cuda(p, st)
        adam_update(
            _flat(p.data),
            _flat(p.grad),
            _buffer(st, "exp_avg", p).reshape(-1),
            _buffer(st, "exp_avg_sq", p).reshape(-1),
            *self._scalars(p.data.dtype.type),
        )

    def _update_cuda(self, p: Parameter, st: dict) -> None:
        """The same update on device arrays (numlstm.kernels.cuda.optim)."""
        _cuda_optim().adam_update(
            _flat_device(p.data),
            _flat_device(p.grad),
            _buffer_cuda(st, "exp_avg", p),
            _buffer_cuda(st, "exp_avg_sq", p),
            *self._scalars(p.data.dtype.type),
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter).

    As ``Adam`` but the decay scales the parameter before the Adam step
    instead of entering the gradient (``torch.optim.AdamW``)::

        p = p * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, > 0
    weight_decay : float, >= 0, default 1e-2
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (not centered), with momentum and L2 weight decay.

    For each parameter ``p`` with gradient ``g`` (``torch.optim.RMSprop``,
    ``centered=False``)::

        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        b = momentum * b + g / (sqrt(v) + eps) ;  p = p - lr * b      (momentum > 0)
        p = p - lr * g / (sqrt(v) + eps)                              (momentum == 0)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, >= 0
    alpha : float in [0, 1]
        Smoothing constant of the running mean of squared gradients.
    eps : float, > 0
    weight_decay : float, >= 0
    momentum : float, >= 0
    """

    _buffers = ("square_avg", "momentum_buffer")
    _core_buffers = ("square_avg",)
    _hyper = ("alpha", "eps", "weight_decay", "momentum")

    def __init__(
        self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0
    ) -> None:
        self._set_hyperparameters(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        super().__init__(params, lr)

    def _set_hyperparameters(self, lr, alpha, eps, weight_decay, momentum) -> None:
        self.lr = lr
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0)
        self.eps = _check_positive(eps, "eps")
        self.weight_decay = check_float(weight_decay, "weight_decay", low=0.0)
        self.momentum = check_float(momentum, "momentum", low=0.0)

    def _update(self, p: Parameter, st: dict) -> None:
        if not isinstance(p.data, np.ndarray):
            return self._update_cuda(p, st)
        rmsprop_update(
            _flat(p.data),
            _flat(p.grad),
            _buffer(st, "square_avg", p).reshape(-1),
            _buffer(st, "momentum_buffer", p).reshape(-1) if self.momentum > 0 else _EMPTY[p.data.dtype],
            *self._scalars(p.data.dtype.type),
        )

    def _update_cuda(self, p: Parameter, st: dict) -> None:
        """The same update on device arrays (numlstm.kernels.cuda.optim)."""
        _cuda_optim().rmsprop_update(
            _flat_device(p.data),
            _flat_device(p.grad),
            _buffer_cuda(st, "square_avg", p),
            _buffer_cuda(st, "momentum_buffer", p) if self.momentum > 0 else _unused(p),
            *self._scalars(p.data.dtype.type),
        )

    def _scalars(self, t) -> tuple:
        """The update's scalars in dtype ``t``, in ``rmsprop_update``'s argument order."""
        return (
            t(self.lr),
            t(self.alpha),
            t(1 - self.alpha),
            t(self.eps),
            t(self.weight_decay),
            t(self.momentum),
        )


# -- gradient clipping --------------------------------------------------------------------------


def _check_norm_type(norm_type) -> float:
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type: expected a number > 0 or float('inf'), got {type(norm_type).__name__} {norm_type!r}")
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"norm_type: expected a number > 0 or float('inf'), got {norm_type}")
    return norm_type


def clip_grad_norm(params, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients together so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the
    ``norm_type``-norm of the per-parameter gradient norms (the norm of all
    gradients concatenated); when ``total_norm > max_norm`` every gradient is
    multiplied in place by ``max_norm / (total_norm + 1e-6)``.

    Unlike PyTorch, a NaN or infinite total norm leaves the gradients
    untouched (PyTorch multiplies them by NaN or 0); the caller sees the norm
    and can skip the step.

    Parameters
    ----------
    params : Parameter or iterable of Parameter
    max_norm : float, >= 0
    norm_type : float, > 0, or ``float("inf")`` (the largest absolute value)

    Returns
    -------
    float
        The total norm before clipping (0.0 for an empty list).
    """
    if isinstance(params, Parameter):
        params = [params]
    elif isinstance(params, (np.ndarray, str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"params: expected an iterable of numlstm.Parameter, got {type(params).__name__}")
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"params[{i}]: expected a numlstm.Parameter, got {type(p).__name__}")
        if backend.is_device_array(p.grad):
            if np.dtype(p.grad.dtype) not in FLOAT_DTYPES:
                raise TypeError(f"params[{i}] ({p.name!r}): grad: expected a float32 or float64 array")
        elif not isinstance(p.grad, np.ndarray) or p.grad.dtype not in FLOAT_DTYPES:
            raise TypeError(f"params[{i}] ({p.name!r}): grad: expected a float32 or float64 numpy array")
    max_norm = check_float(max_norm, "max_norm", low=0.0)
    norm_type = _check_norm_type(norm_type)
    if not params:
        return 0.0
    on_device = [backend.is_device_array(p.grad) for p in params]
    if any(on_device):
        if not all(on_device):
            raise ValueError("params: expected gradients all on the CPU or all on the GPU, got a mix; move the model with .to()")
        return _clip_grad_norm_cuda(params, max_norm, norm_type)
    if norm_type == math.inf:
        norms = [np.max(np.abs(p.grad)) if p.grad.size else p.grad.dtype.type(0) for p in params]
        total = float(np.max(np.asarray(norms)))
    else:
        norms = [np.linalg.norm(p.grad.reshape(-1), ord=norm_type) for p in params]
        total = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if not math.isfinite(total):
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad *= p.grad.dtype.type(coef)
    return total


def _clip_grad_norm_cuda(params, max_norm: float, norm_type: float) -> float:
    """``clip_grad_norm`` on device gradients: one reduction per parameter into
    one device array, ONE transfer of those per-parameter values, the total on
    the host, and the scaling on the device."""
    ew = backend.cuda_kernels().elementwise
    n = len(params)
    parts = {}
    for i, p in enumerate(params):
        dt = np.dtype(p.grad.dtype)
        out = parts.setdefault(dt, backend.zeros(n, dt, "cuda"))
        if p.grad.size == 0:
            continue
        if norm_type == math.inf:
            ew.reduce_into(p.grad, out, i, ew.MAX_ABS)
        elif norm_type == 2.0:
            ew.reduce_into(p.grad, out, i, ew.SUM_SQUARES)
        else:
            ew.reduce_into(p.grad, out, i, ew.SUM_ABS_POW, norm_type)
    host = {dt: backend.to_numpy(a) for dt, a in parts.items()}
    vals = [host[np.dtype(p.grad.dtype)][i] for i, p in enumerate(params)]
    if norm_type == math.inf:
        total = float(np.max(np.asarray(vals)))
    else:
        # per-parameter norms (as the CPU path), then the norm of the norms
        norms = [v ** (1.0 / norm_type) if norm_type != 2.0 else np.sqrt(v) for v in vals]
        total = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if not math.isfinite(total):
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            ew.scale(p.grad, coef, p.grad)
    return total


# -- learning-rate schedules --------------------------------------------------------------------


class LRScheduler:
    """Base class of the schedules: ``step()`` advances ``last_epoch`` by one and
    sets ``optimizer.lr``.

    Creating a schedule records ``base_lr = optimizer.lr`` and leaves the
    learning rate unchanged (epoch 0), as PyTorch. Call ``sched.step()`` after
    ``opt.step()``, once per epoch (or per batch, as the schedule is meant).
    """

    #: constructor settings, saved by state_dict
    _fields: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer, **settings) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a numlstm.optim.Optimizer, got {type(optimizer).__name__}")
        self._configure(**settings)
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr

    def _configure(self, **settings) -> None:  # pragma: no cover - abstract
        """Validate and set the settings named in ``_fields``."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last ``step()`` (or the initial one), as a
        one-element list like PyTorch's (an optimizer has one parameter group)."""
        return [self._last_lr]

    def step(self) -> None:
        """Advance one epoch and set ``optimizer.lr``."""
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr()
        self._last_lr = self.optimizer.lr

    def _next_lr(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _runtime_state(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        """The schedule's class name, ``last_epoch``, ``base_lr``, ``last_lr`` and
        settings, as plain str / int / float values. (The learning rate itself is
        restored by the optimizer's ``load_state_dict``, as in PyTorch.)"""
        d = {"scheduler": type(self).__name__, "last_epoch": self.last_epoch, "base_lr": self.base_lr, "last_lr": self._last_lr}
        for f in self._fields:
            d[f] = getattr(self, f)
        d.update(self._runtime_state())
        return d

    def load_state_dict(self, state_dict) -> None:
        """Restore a state saved by ``state_dict()`` of a schedule of the same class.

        Raises
        ------
        TypeError, ValueError
            Not a mapping, another schedule class, missing or unexpected keys,
            invalid values. Nothing is changed when it raises.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping from state_dict(), got {type(state_dict).__name__}")
        kind = str(np.asarray(state_dict["scheduler"])) if "scheduler" in state_dict else None
        if kind != type(self).__name__:
            raise ValueError(f"state_dict: expected the state of a {type(self).__name__}, got one of {kind}")
        expected = set(self.state_dict())
        keys = set(state_dict.keys())
        missing, unexpected = sorted(expected - keys), sorted(keys - expected)
        if missing or unexpected:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        v = {k: _scalar(state_dict[k]) for k in expected if k != "scheduler"}
        last_epoch = check_int(v["last_epoch"], "state_dict['last_epoch']", 0)
        base_lr = check_float(v["base_lr"], "state_dict['base_lr']", low=0.0)
        last_lr = check_float(v["last_lr"], "state_dict['last_lr']", low=0.0)
        settings = {f: v[f] for f in self._fields}
        runtime = self._check_runtime_state(v)
        object.__new__(type(self))._configure(**settings)  # validates without touching self
        self._configure(**settings)
        self.last_epoch, self.base_lr, self._last_lr = last_epoch, base_lr, last_lr
        for k, val in runtime.items():
            setattr(self, k, val)

    def _check_runtime_state(self, values: dict) -> dict:
        return {}

    def __repr__(self) -> str:
        fields = "".join(f"{f}={getattr(self, f)!r}, " for f in self._fields)
        return f"{type(self).__name__}({fields}last_epoch={self.last_epoch}, lr={self._last_lr})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs::

        lr_e = lr_{e-1} * gamma   if e % step_size == 0,   else lr_{e-1}

    that is ``base_lr * gamma ** (e // step_size)`` when nothing else changes
    ``optimizer.lr`` (as PyTorch, the factor applies to the current ``lr``).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int, >= 1
    gamma : float, >= 0
    """

    _fields = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer, step_size=step_size, gamma=gamma)

    def _configure(self, step_size, gamma) -> None:
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_float(gamma, "gamma", low=0.0)

    def _next_lr(self) -> float:
        if self.last_epoch % self.step_size != 0:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch: ``lr_e = lr_{e-1} * gamma``.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float, >= 0
    """

    _fields = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        super().__init__(optimizer, gamma=gamma)

    def _configure(self, gamma) -> None:
        self.gamma = check_float(gamma, "gamma", low=0.0)

    def _next_lr(self) -> float:
        return self.optimizer.lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs::

        lr_e = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2

    PyTorch's closed form (its recursive ``step()`` gives the same values to
    rounding); after ``T_max`` the cosine rises again, as in PyTorch. The
    closed form overrides other changes to ``optimizer.lr``.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int, >= 1
        Epochs from ``base_lr`` to ``eta_min``.
    eta_min : float, >= 0
    """

    _fields = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min)

    def _configure(self, T_max, eta_min) -> None:
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = check_float(eta_min, "eta_min", low=0.0)

    def _next_lr(self) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    ``step(metric)`` once per epoch. A metric improves on the best so far
    when (mode ``"min"``) ``metric < best * (1 - threshold)``
    (``threshold_mode="rel"``) or ``metric < best - threshold`` (``"abs"``);
    mirrored for ``"max"``. After more than ``patience`` epochs without
    improvement the learning rate becomes ``max(lr * factor, min_lr)``
    (skipped when that changes it by ``eps`` or less) and ``cooldown`` epochs
    follow in which bad epochs are not counted. As
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}
    factor : float in [0, 1)
    patience : int, >= 0
    threshold : float, >= 0
    threshold_mode : {"rel", "abs"}
    cooldown : int, >= 0
    min_lr : float, >= 0
    eps : float, >= 0
    """

    _fields = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _configure(self, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        self.mode = str(mode)
        self.threshold_mode = str(threshold_mode)
        self.factor = check_float(factor, "factor", 0.0, 1.0, high_open=True)
        self.patience = check_int(patience, "patience", 0)
        self.threshold = check_float(threshold, "threshold", low=0.0)
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.min_lr = check_float(min_lr, "min_lr", low=0.0)
        self.eps = check_float(eps, "eps", low=0.0)

    def _runtime_state(self) -> dict:
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter}

    def _check_runtime_state(self, values: dict) -> dict:
        best = values["best"]
        if isinstance(best, bool) or not isinstance(best, numbers.Real):
            raise TypeError(f"state_dict['best']: expected a number, got {best!r}")
        return {
            "best": float(best),
            "num_bad_epochs": check_int(values["num_bad_epochs"], "state_dict['num_bad_epochs']", 0),
            "cooldown_counter": check_int(values["cooldown_counter"], "state_dict['cooldown_counter']", 0),
        }

    def _is_better(self, a: float) -> bool:
        best = self.best
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metric) -> None:  # type: ignore[override]
        """Record one epoch's ``metric`` (e.g. the validation loss) and reduce the
        learning rate if it has not improved for more than ``patience`` epochs."""
        if isinstance(metric, np.ndarray) and metric.size == 1:
            metric = metric.reshape(()).item()
        if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
            raise TypeError(f"metric: expected a number, got {type(metric).__name__} {metric!r}")
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self.optimizer.lr
