"""numlstm: LSTM, ConvLSTM, CNN-LSTM and attention-LSTM in Numba, no framework.

>>> import numpy as np, numlstm
>>> lstm = numlstm.LSTM(input_size=8, hidden_size=16, seed=0)
>>> y = lstm(np.zeros((4, 10, 8), np.float32))   # (batch, time, features)
>>> y.shape
(4, 10, 16)
"""

from numlstm import backend, callbacks, interop, losses, optim, plots
from numlstm._tune import tune
from numlstm._warmup import warmup
from numlstm.backend import cuda_available, device_of, to_device, to_numpy
from numlstm.checkpoint import Checkpoint, load, save
from numlstm.gradcheck import gradcheck
from numlstm.layers import (
    LSTM,
    AvgPool2D,
    BatchNorm2D,
    Conv2D,
    ConvLSTM,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LastStep,
    Layer,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
    TimeDistributed,
    register,
)
from numlstm.layers.attention import AttentionLSTM, TemporalAttention, attention_penalty
from numlstm.models import CNNLSTM, AttentionCNNLSTM, EncoderForecaster, Model, Sequential
from numlstm.parameter import Parameter
from numlstm.trainer import History, Trainer

__version__ = "0.1.0"


def __getattr__(name: str):
    # numlstm.data pulls in scipy.ndimage (about 0.5 s): imported on first use, not with numlstm
    if name == "data":
        import importlib

        return importlib.import_module("numlstm.data")
    raise AttributeError(f"module 'numlstm' has no attribute {name!r}")


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
    "AttentionCNNLSTM",
    "CNNLSTM",
    "EncoderForecaster",
    "TemporalAttention",
    "attention_penalty",
    "Layer",
    "Parameter",
    "gradcheck",
    "interop",
    "warmup",
    "tune",
    "__version__",
    "Checkpoint",
    "Dense",
    "Dropout",
    "Flatten",
    "LastStep",
    "Model",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "load",
    "register",
    "save",
    "History",
    "Trainer",
    "callbacks",
    "losses",
    "optim",
    "plots",
    "data",
    "backend",
    "cuda_available",
    "device_of",
    "to_device",
    "to_numpy",
]
