"""numlstm layers: each obeys the layer contract in numlstm.layers.base."""

from numlstm.layers.activation import Dropout, Flatten, LastStep, ReLU, Sigmoid, Tanh
from numlstm.layers.base import Layer
from numlstm.layers.dense import Dense
from numlstm.layers.lstm import LSTM
from numlstm.layers.registry import layer_from_config, layer_to_config, register

__all__ = [
    "LSTM",
    "Dense",
    "Dropout",
    "Flatten",
    "LastStep",
    "Layer",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "layer_from_config",
    "layer_to_config",
    "register",
]
