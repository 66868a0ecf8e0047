"""Layer classes by name: build a layer from ``{"class": ..., "config": ...}`` and back.

A spec is the JSON-able description of a layer that checkpoints store::

    {"class": "LSTM", "config": {"input_size": 3, "hidden_size": 4, ...}}

``config`` is what the layer's ``config()`` returns: its constructor keyword
arguments. A class with a ``from_config(config)`` classmethod (``Sequential``,
whose config holds the specs of its layers) is built with it; any other class
with ``cls(**config)``.

The built-in layers (LSTM, ConvLSTM, Dense, the activations, the image layers, the
attention layers, Sequential, CNNLSTM, AttentionCNNLSTM, EncoderForecaster) are registered on
first use. Register your own layer (or ``Model`` subclass) with::

    @numlstm.register
    class MyLayer(numlstm.Layer):
        def config(self): ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from numlstm.layers.base import Layer

_REGISTRY: dict[str, type] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    # imported here, not at module level: sequential.py imports this module
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from numlstm.layers.activation import Dropout, Flatten, LastStep, ReLU, Sigmoid, Tanh
    from numlstm.layers.attention import AttentionLSTM, TemporalAttention
    from numlstm.layers.batchnorm import BatchNorm2D
    from numlstm.layers.conv import Conv2D
    from numlstm.layers.convlstm import ConvLSTM
    from numlstm.layers.dense import Dense
    from numlstm.layers.lstm import LSTM
    from numlstm.layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
    from numlstm.layers.time_distributed import TimeDistributed
    from numlstm.models.cnn_lstm import CNNLSTM, AttentionCNNLSTM
    from numlstm.models.encoder_forecaster import EncoderForecaster
    from numlstm.models.fc_forecaster import FCEncoderForecaster
    from numlstm.models.sequential import Sequential

    for cls in (LSTM, ConvLSTM, Dense, ReLU, Tanh, Sigmoid, Flatten, Dropout, LastStep, Sequential):
        register(cls)
    for cls in (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, BatchNorm2D, TimeDistributed):
        register(cls)
    for cls in (AttentionLSTM, TemporalAttention):
        register(cls)
    for cls in (CNNLSTM, AttentionCNNLSTM, EncoderForecaster, FCEncoderForecaster):
        register(cls)


def register(cls: type, name: str | None = None) -> type:
    """Register a layer class under ``name`` (default: the class name); returns
    the class, so it also works as a decorator.

    Raises
    ------
    TypeError
        ``cls`` is not a ``Layer`` subclass, or has no ``config()`` method.
    ValueError
        Another class is already registered under that name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"cls: expected a subclass of numlstm.Layer, got {cls!r}")
    if not callable(getattr(cls, "config", None)):
        raise TypeError(
            f"cls: {cls.__name__} has no config() method returning its constructor arguments; define one to register it"
        )
    if name is None:
        name = cls.__name__
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str, got {name!r}")
    current = _REGISTRY.get(name)
    if current is not None and current is not cls:
        raise ValueError(
            f"name: {name!r} is already registered for {current.__module__}.{current.__qualname__}; "
            f"register {cls.__module__}.{cls.__qualname__} under another name"
        )
    _REGISTRY[name] = cls
    return cls


def registered_layers() -> dict[str, type]:
    """A copy of the registry: name -> class."""
    _load_builtins()
    return dict(_REGISTRY)


def _name_of(cls: type) -> str | None:
    for name, c in _REGISTRY.items():
        if c is cls:
            return name
    return None


def layer_to_config(layer: Layer) -> dict:
    """The spec ``{"class": name, "config": layer.config()}`` of a layer.

    The config is returned as it reads back from JSON (tuples become lists),
    so it is exactly what a checkpoint stores.

    Raises
    ------
    TypeError
        ``layer`` is not a Layer, or its ``config()`` is not a dict.
    ValueError
        Its class is not registered (subclasses are not covered by their
        parent's registration: their constructor may differ), or its config is
        not JSON-serialisable.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer: expected a numlstm layer, got {type(layer).__name__}")
    _load_builtins()
    cls = type(layer)
    name = _name_of(cls)
    if name is None:
        raise ValueError(
            f"layer: class {cls.__module__}.{cls.__qualname__} is not registered; "
            f"call numlstm.layers.registry.register({cls.__name__}) (known: {sorted(_REGISTRY)})"
        )
    config = layer.config()
    if not isinstance(config, dict):
        raise TypeError(f"layer: {name}.config() must return a dict, got {type(config).__name__}")
    try:
        config = json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer: {name}.config() is not JSON-serialisable: {exc}") from exc
    return {"class": name, "config": config}


def layer_from_config(spec) -> Layer:
    """Build a layer from a spec ``{"class": name, "config": {...}}``.

    Raises
    ------
    TypeError
        ``spec`` is not a mapping.
    ValueError
        The class name is unknown (the message lists the known ones), the
        spec lacks a key, or the constructor refuses the config.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"spec: expected a dict {{'class': name, 'config': dict}}, got {type(spec).__name__}")
    missing = [k for k in ("class", "config") if k not in spec]
    if missing:
        raise ValueError(f"spec: expected keys 'class' and 'config', missing {missing} in {dict(spec)!r}")
    name, config = spec["class"], spec["config"]
    if not isinstance(name, str):
        raise ValueError(f"spec['class']: expected a layer class name (str), got {name!r}")
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise ValueError(f"spec['config']: expected a dict of constructor arguments, got {config!r}")
    _load_builtins()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"spec['class']: unknown layer class {name!r}; known: {sorted(_REGISTRY)}")
    try:
        from_config = getattr(cls, "from_config", None)
        layer = from_config(dict(config)) if from_config is not None else cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"spec: cannot build {name} from config {dict(config)!r}: {exc}") from exc
    return layer
