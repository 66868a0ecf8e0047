"""numlstm layers: each obeys the layer contract in numlstm.layers.base."""

from numlstm.layers.base import Layer
from numlstm.layers.lstm import LSTM

__all__ = ["LSTM", "Layer"]
