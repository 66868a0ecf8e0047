"""Image models on the device: TimeDistributed CNNs, and training steps of ConvLSTM,
CNN-LSTM, attention CNN-LSTM and the encoder-forecaster against the CPU (float64)."""

import numpy as np
import pytest
from core_util import rel
from numba import cuda

import numlstm
from numlstm import backend

TOL = 1e-11  # a few optimizer steps on top of 1e-12 kernels


def _fit(make, loss, x, y, device, epochs=1, batch_size=2):
    model = make()
    opt = numlstm.optim.Adam(model.parameters(), lr=0.01)
    trainer = numlstm.Trainer(model, loss, opt, seed=0, device=device)
    hist = trainer.fit(x, y, epochs=epochs, batch_size=batch_size, progress=False)
    return trainer, hist


def _same_training(make, loss, x, y, **kw):
    t_cpu, h_cpu = _fit(make, loss, x, y, "cpu", **kw)
    t_gpu, h_gpu = _fit(make, loss, x, y, "cuda", **kw)
    for k, v in h_cpu.history.items():
        assert np.allclose(h_gpu.history[k], v, rtol=TOL, atol=0), k
    state = t_gpu.model.state_dict()
    for k, v in t_cpu.model.state_dict().items():
        assert rel(state[k], v) < TOL, k
    return t_cpu, t_gpu


def test_time_distributed_cnn():
    def make():
        return numlstm.TimeDistributed(
            numlstm.Sequential(
                [
                    numlstm.Conv2D(1, 2, 3, padding="same", bias=False, dtype=np.float64, seed=0),
                    numlstm.BatchNorm2D(2, dtype=np.float64),
                    numlstm.ReLU(),
                    numlstm.MaxPool2D(2),
                ]
            )
        )

    cpu_model, gpu_model = make(), make().to("cuda")
    assert gpu_model.device == "cuda" and gpu_model.layer.device == "cuda"
    assert [p.name for p in gpu_model.parameters()] == [p.name for p in cpu_model.parameters()]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 1, 4, 4))
    y = cpu_model(x)
    gy = gpu_model(cuda.to_device(x))
    assert backend.is_device_array(gy) and gy.shape == y.shape
    assert rel(gy, y) < 1e-12
    dy = rng.standard_normal(y.shape)
    assert rel(gpu_model.backward(dy), cpu_model.backward(dy)) < 1e-12
    for k, v in cpu_model.grads.items():
        assert rel(gpu_model.grads[k], v) < 1e-12, k
    gpu_model.to("cpu")
    assert all(isinstance(v, np.ndarray) for v in gpu_model.params.values())


def test_convlstm_training_step():
    def make():
        return numlstm.Sequential([numlstm.ConvLSTM(1, 2, 3, peephole=True, frame_size=(3, 3), dtype=np.float64, seed=1)])

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 1, 3, 3))
    y = rng.standard_normal((2, 2, 2, 3, 3))
    _same_training(make, "mse", x, y)


def test_cnn_lstm_training_step():
    def make():
        return numlstm.CNNLSTM(1, 3, conv_channels=(2,), hidden_size=3, dtype=np.float64, seed=2)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 1, 4, 4))
    y = rng.integers(0, 3, 2)
    _same_training(make, "cross_entropy", x, y)


def test_attention_cnn_lstm_step_with_penalty():
    def make():
        return numlstm.AttentionCNNLSTM(1, 2, conv_channels=(2,), hidden_size=2, attention_size=2, dtype=np.float64, seed=3)

    cpu_model, gpu_model = make(), make().to("cuda")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 1, 4, 4))
    y = cpu_model(x)
    gy = gpu_model(x)
    assert rel(gy, y) < 1e-12
    assert rel(gpu_model.attention_maps(), cpu_model.attention_maps()) < 1e-12
    dy = rng.standard_normal(y.shape)
    _, da = numlstm.attention_penalty(cpu_model.attention, 0.5)
    _, gda = numlstm.attention_penalty(gpu_model.attention, 0.5)
    assert rel(gpu_model.backward(dy, gda), cpu_model.backward(dy, da)) < 1e-12
    for k, v in cpu_model.grads.items():
        assert rel(gpu_model.grads[k], v) < 1e-12, k


def test_encoder_forecaster_training_step():
    def make():
        return numlstm.EncoderForecaster(1, hidden_channels=(2, 1), kernel_size=3, future_steps=2, dtype=np.float64, seed=4)

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 1, 3, 3))
    y = rng.uniform(0, 1, (2, 2, 1, 3, 3))
    _same_training(make, "bce", x, y)


def test_round_trip_to_cpu_keeps_buffers_and_state():
    rng = np.random.default_rng(5)
    bn = numlstm.BatchNorm2D(2, dtype=np.float64).to("cuda")
    bn(rng.standard_normal((2, 2, 3, 3)))
    assert backend.is_device_array(bn.buffers["running_mean"])
    stats = {k: backend.to_numpy(v) for k, v in bn.buffers.items()}
    bn.to("cpu")
    for k, v in stats.items():
        assert isinstance(bn.buffers[k], np.ndarray) and np.array_equal(bn.buffers[k], v)
    layer = numlstm.ConvLSTM(1, 2, 3, peephole=True, frame_size=(3, 3), dtype=np.float64, seed=0).to("cuda")
    x = rng.standard_normal((1, 2, 1, 3, 3))
    y = backend.to_numpy(layer(x))
    assert all(backend.is_device_array(s) for s in layer.state)
    layer.to("cpu")
    assert all(isinstance(s, np.ndarray) for s in layer.state)
    assert isinstance(layer.params["peephole_i_l0"], np.ndarray)
    assert rel(layer(x), y) < 1e-12
    with pytest.raises(RuntimeError, match="no forward pass"):
        numlstm.Conv2D(1, 1, 3, dtype=np.float64).to("cuda").backward(np.zeros((1, 1, 1, 1)))


def test_attention_cnn_lstm_training_step():
    def make():
        return numlstm.AttentionCNNLSTM(1, 2, conv_channels=(2,), hidden_size=2, attention_size=2, dtype=np.float64, seed=6)

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 1, 4, 4))
    y = rng.integers(0, 2, 2)
    _same_training(make, "cross_entropy", x, y)
