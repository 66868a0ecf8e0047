"""numlstm layers: each obeys the layer contract in numlstm.layers.base."""

from numlstm.layers.activation import Dropout, Flatten, LastStep, ReLU, Sigmoid, Tanh
from numlstm.layers.attention import AttentionLSTM, TemporalAttention, attention_penalty
from numlstm.layers.base import Layer
from numlstm.layers.batchnorm import BatchNorm2D
from numlstm.layers.conv import Conv2D
from numlstm.layers.convlstm import ConvLSTM
from numlstm.layers.dense import Dense
from numlstm.layers.lstm import LSTM
from numlstm.layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from numlstm.layers.registry import layer_from_config, layer_to_config, register
from numlstm.layers.time_distributed import TimeDistributed

__all__ = [
    "LSTM",
    "AvgPool2D",
    "BatchNorm2D",
    "Conv2D",
    "ConvLSTM",
    "GlobalAvgPool2D",
    "MaxPool2D",
    "TimeDistributed",
    "AttentionLSTM",
    "TemporalAttention",
    "attention_penalty",
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
