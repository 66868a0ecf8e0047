"""Models: layers made of layers (``Model`` for any graph, ``Sequential`` for a chain)."""

from numlstm.models.sequential import Model, Sequential

__all__ = ["Model", "Sequential"]
