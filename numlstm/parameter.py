"""``Parameter``: a trainable array together with its gradient."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A view of one trainable tensor of a layer, as optimizers see it.

    ``data`` and ``grad`` are the layer's own arrays (``layer.params[name]``
    and ``layer.grads[name]``), not copies: an optimizer that updates
    ``p.data`` in place updates the layer.

    Attributes
    ----------
    name : str
        Qualified name (``"0.weight_ih_l0"`` inside a ``Sequential``).
    data : ndarray
        The parameter values.
    grad : ndarray
        Its gradient, same shape and dtype.
    """

    __slots__ = ("name", "data", "grad")

    def __init__(self, name: str, data: np.ndarray, grad: np.ndarray) -> None:
        self.name = name
        self.data = data
        self.grad = grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def size(self) -> int:
        return self.data.size

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
