"""The layer contract every numlstm layer follows (see docs/api.md)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from numlstm import backend
from numlstm.parameter import Parameter


class Layer:
    """Base class of all layers.

    Attributes
    ----------
    params : dict[str, ndarray]
        Trainable parameters.
    grads : dict[str, ndarray]
        Gradients, same keys and shapes as ``params``; ``backward`` ADDS to them.
    training : bool
        Training mode (``train()``) caches what ``backward`` needs and enables
        dropout; evaluation mode (``eval()``) does neither.
    device : str
        ``"cpu"`` (numpy arrays) or ``"cuda"`` (Numba device arrays), set by
        ``to(device)``; see docs/gpu.md for the device contract.
    """

    #: recurrent layers take ``forward(x, state=None)`` and have ``.state`` / ``.dstate``
    recurrent = False
    #: where params, grads and buffers live; an instance attribute after ``to()``
    device = "cpu"
    #: a layer class with a CUDA forward/backward sets this True; ``to("cuda")``
    #: refuses the others with NotImplementedError
    cuda_support = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    # -- modes -----------------------------------------------------------------
    def train(self, mode: bool = True) -> Layer:
        """Set training mode (or evaluation mode with ``mode=False``); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Set evaluation mode; returns self."""
        return self.train(False)

    # -- device ------------------------------------------------------------------
    def to(self, device: str) -> Layer:
        """Move parameters, gradients, buffers and state to ``device`` (``"cpu"``
        or ``"cuda"``); returns self.

        ``Parameter`` objects handed out by ``parameters()`` before the move
        are updated in place, so an optimizer built before ``to()`` keeps
        working (its state buffers follow the parameters at its next step, or
        with ``optimizer.to(device)``). The forward cache is dropped: call
        ``forward`` again before ``backward``.

        Raises
        ------
        TypeError, ValueError
            ``device`` is not ``"cpu"`` or ``"cuda"``.
        RuntimeError
            ``"cuda"`` is asked for and no CUDA device is available.
        NotImplementedError
            The layer (or a child) has no CUDA path.
        """
        device = backend.check_device(device)
        if device == "cuda":
            self._check_cuda_support()
        if device != self.device:
            for arrays in (self.params, self.grads):
                for k in list(arrays):
                    arrays[k] = backend.to_device(arrays[k], device)
            self._to_device_hook(device)
            self.device = device
        self._sync_parameter_views()
        return self

    def _check_cuda_support(self) -> None:
        """Raise NotImplementedError unless this layer (and every layer inside it) has a CUDA path."""
        if not self.cuda_support:
            raise backend.no_cuda_path(self, "to('cuda')")

    def _to_device_hook(self, device: str) -> None:
        """Move everything but params and grads; called by ``to()`` before ``self.device`` changes.

        The default moves a ``buffers`` dict (in place of its entries) and the
        recurrent ``state``/``dstate`` tuples, and drops ``_cache`` and
        ``_workspace``. A subclass with other device arrays overrides it and
        calls ``super()._to_device_hook(device)``.
        """
        buffers = self.__dict__.get("buffers")
        if isinstance(buffers, dict):
            for k in list(buffers):
                buffers[k] = backend.to_device(buffers[k], device)
        for name in ("state", "dstate"):
            if self.__dict__.get(name) is not None:
                setattr(self, name, backend.to_device(self.__dict__[name], device))
        if "_cache" in self.__dict__:
            self._cache = None
        if "_workspace" in self.__dict__:
            self._workspace = {}

    def _sync_parameter_views(self) -> None:
        """Point every ``Parameter`` handed out by ``parameters()`` at the current arrays."""
        views = self.__dict__.get("_parameter_views")
        if views:
            params, grads = self.params, self.grads
            for (_, k), p in views.items():
                if k in params:
                    p.data, p.grad = params[k], grads[k]

    # -- parameters --------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every gradient to 0 (in place, on the layer's device)."""
        if self.device == "cpu":
            for g in self.grads.values():
                g.fill(0)
        else:
            fill = backend.cuda_kernels().elementwise.fill
            for g in self.grads.values():
                fill(g, 0.0)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(name, array) pairs of the trainable parameters (the arrays themselves)."""
        for k, v in self.params.items():
            yield prefix + k, v

    def parameters(self, prefix: str = "") -> list[Parameter]:
        """The trainable parameters as ``Parameter(name, data, grad)`` objects
        whose ``data``/``grad`` are the layer's own arrays: what optimizers
        take, as in ``numlstm.optim.Adam(layer.parameters(), lr=1e-3)``.

        The objects are persistent (the same ones on every call with the same
        prefix) and ``to(device)`` repoints them at the moved arrays."""
        views = self.__dict__.get("_parameter_views")
        if views is None:
            views = self._parameter_views = {}
        grads = self.grads
        out = []
        for k, v in self.params.items():
            p = views.get((prefix, k))
            if p is None:
                p = views[(prefix, k)] = Parameter(prefix + k, v, grads[k])
            else:
                p.data, p.grad = v, grads[k]
            out.append(p)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters, by name (also for a layer on the GPU)."""
        if self.device == "cpu":
            return {k: v.copy() for k, v in self.params.items()}
        return {k: backend.to_numpy(v) for k, v in self.params.items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays into the parameters (in place, keeping dtype).

        Raises
        ------
        ValueError
            Naming missing or unexpected keys (with ``strict``) and mis-shaped
            arrays.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        missing = [k for k in self.params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self.params]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for k, p in self.params.items():
            if k not in state_dict:
                continue
            v = backend.to_numpy(state_dict[k])
            if v.shape != p.shape:
                raise ValueError(f"state_dict[{k!r}]: expected shape {p.shape}, got {v.shape}")
            if not np.issubdtype(v.dtype, np.number):
                raise TypeError(f"state_dict[{k!r}]: expected a numeric array, got dtype {v.dtype}")
        for k, p in self.params.items():
            if k in state_dict:
                if self.device == "cpu":
                    p[...] = np.asarray(state_dict[k])
                else:
                    p.copy_to_device(np.ascontiguousarray(backend.to_numpy(state_dict[k]), dtype=p.dtype))

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError
