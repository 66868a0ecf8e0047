"""The layer contract every numlstm layer follows (see docs/api.md)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

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
    """

    #: recurrent layers take ``forward(x, state=None)`` and have ``.state`` / ``.dstate``
    recurrent = False

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

    # -- parameters --------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every gradient to 0 (in place)."""
        for g in self.grads.values():
            g.fill(0)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(name, array) pairs of the trainable parameters (the arrays themselves)."""
        for k, v in self.params.items():
            yield prefix + k, v

    def parameters(self, prefix: str = "") -> list[Parameter]:
        """The trainable parameters as ``Parameter(name, data, grad)`` objects
        whose ``data``/``grad`` are the layer's own arrays: what optimizers
        take, as in ``numlstm.optim.Adam(layer.parameters(), lr=1e-3)``."""
        return [Parameter(prefix + k, v, self.grads[k]) for k, v in self.params.items()]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, by name."""
        return {k: v.copy() for k, v in self.params.items()}

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
            v = np.asarray(state_dict[k])
            if v.shape != p.shape:
                raise ValueError(f"state_dict[{k!r}]: expected shape {p.shape}, got {v.shape}")
            if not np.issubdtype(v.dtype, np.number):
                raise TypeError(f"state_dict[{k!r}]: expected a numeric array, got dtype {v.dtype}")
        for k, p in self.params.items():
            if k in state_dict:
                p[...] = np.asarray(state_dict[k])

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError
