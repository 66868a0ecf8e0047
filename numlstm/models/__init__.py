"""Models: layers made of layers (``Model`` for any graph, ``Sequential`` for a
chain) and the ready-made image-sequence models ``CNNLSTM``, ``AttentionCNNLSTM`` and
``EncoderForecaster`` (with its FC-LSTM baseline ``FCEncoderForecaster``)."""

from numlstm.models.cnn_lstm import CNNLSTM, AttentionCNNLSTM
from numlstm.models.encoder_forecaster import EncoderForecaster
from numlstm.models.fc_forecaster import FCEncoderForecaster
from numlstm.models.sequential import Model, Sequential

__all__ = ["CNNLSTM", "AttentionCNNLSTM", "EncoderForecaster", "FCEncoderForecaster", "Model", "Sequential"]
