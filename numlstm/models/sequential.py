"""Containers of layers: ``Model`` (any graph) and ``Sequential`` (a chain)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from numlstm import backend
from numlstm._validation import as_array, check_array
from numlstm.layers.base import Layer
from numlstm.layers.lstm import LSTM
from numlstm.layers.registry import layer_from_config, layer_to_config
from numlstm.parameter import Parameter

#: axis names of image sequences (batch, time, channels, height, width), for error messages
IMAGE_SEQUENCE_AXES = ("batch", "time", "channels", "height", "width")


def _shape_str(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _check_input_shape(input_shape) -> tuple:
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(f"input_shape: expected a tuple of ints (None for unknown sizes), got {input_shape!r}")
    shape = tuple(input_shape)
    for s in shape:
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1):
            raise ValueError(f"input_shape: expected sizes >= 1 or None, got {shape}")
    return tuple(None if s is None else int(s) for s in shape)


def infer_output_shape(layer: Layer, input_shape) -> tuple | None:
    """Output shape of ``layer`` for an input of ``input_shape`` without running
    it, or ``None`` when the layer cannot tell (no ``compute_output_shape``).

    Raises
    ------
    ValueError
        The shape does not fit the layer.
    """
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if isinstance(layer, LSTM):
        if len(shape) != 3 or shape[2] not in (None, layer.input_size):
            raise ValueError(f"input_shape: expected (batch, time, {layer.input_size}) (batch, time, input_size), got {shape}")
        f = layer.num_directions * layer.hidden_size
        return (shape[0], shape[1], f) if layer.return_sequences else (shape[0], f)
    fn = getattr(layer, "compute_output_shape", None)
    return None if fn is None else tuple(fn(shape))


def _buffers_of(layer: Layer) -> Mapping[str, np.ndarray]:
    """A layer's non-trainable state arrays (``layer.buffers``), ``{}`` when it has none."""
    buffers = getattr(layer, "buffers", None)
    return buffers if isinstance(buffers, Mapping) else {}


def _reraise_with_layer(exc: Exception, name: str, layer: Layer, owner: str):
    """The same error type with the failing layer named (only for plain TypeError/ValueError)."""
    if type(exc) in (TypeError, ValueError):
        raise type(exc)(f"{owner} layer {name} ({type(layer).__name__}): {exc}") from exc
    raise exc


class Model(Layer):
    """Base class of layers made of layers.

    A subclass sets ``self.layers`` in its ``__init__`` (after
    ``super().__init__()``), as an ordered dict ``name -> layer`` or a list
    (names ``"0"``, ``"1"``, ...), and writes ``forward`` and ``backward``
    (for graphs that are not a chain: skip connections, two inputs, ...).
    ``Model`` provides the rest of the layer contract over the children:

    * ``params`` / ``grads``: qualified names ``"<layer>.<param>"`` mapping to
      the children's own arrays (read-only properties, rebuilt on access), so
      ``numlstm.gradcheck`` and optimizers work on a model as on a layer;
    * ``buffers``: the children's non-trainable state (BatchNorm2D's running
      statistics) under qualified names, saved by ``state_dict()`` beside the
      parameters and never seen by optimizers;
    * ``parameters()``, ``named_parameters()``, ``named_buffers()``,
      ``state_dict()``, ``load_state_dict()``, ``zero_grad()``, ``num_parameters()``;
    * ``train()`` / ``eval()`` propagated to every child;
    * ``summary()``, ``save(path)``; ``config()`` must come from the subclass
      (and the subclass must be registered) for ``numlstm.load`` to rebuild it.

    A model has no parameters of its own: put them in a child layer.
    """

    recurrent = False

    def __init__(self) -> None:
        # Layer.__init__ is not called: params and grads are views of the children
        self.training = True
        self.layers: Mapping[str, Layer] | list[Layer] = []
        self._output_shapes: dict[str, tuple] = {}

    # -- children --------------------------------------------------------------------
    def named_layers(self) -> list[tuple[str, Layer]]:
        """``(name, layer)`` pairs of the direct children, in order."""
        layers = getattr(self, "layers", None)
        if isinstance(layers, Mapping):
            items = list(layers.items())
        elif isinstance(layers, (list, tuple)):
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        else:
            raise TypeError(f"layers: expected a dict name -> layer or a list of layers, got {type(layers).__name__}")
        for name, layer in items:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"layers: expected names that are non-empty strings without '.', got {name!r}")
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{name!r}]: expected a numlstm layer, got {type(layer).__name__}")
        return items

    # -- the contract over the children -----------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """``"<layer>.<param>"`` -> the child's own parameter array."""
        return {f"{n}.{k}": v for n, layer in self.named_layers() for k, v in layer.params.items()}

    @params.setter
    def params(self, value) -> None:
        raise AttributeError("params: a Model's parameters are its layers' parameters; set them on the layers")

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """``"<layer>.<param>"`` -> the child's own gradient array."""
        return {f"{n}.{k}": v for n, layer in self.named_layers() for k, v in layer.grads.items()}

    @grads.setter
    def grads(self, value) -> None:
        raise AttributeError("grads: a Model's gradients are its layers' gradients; set them on the layers")

    @property
    def dtype(self) -> np.dtype | None:
        """The dtype shared by the children that report one; ``None`` when none does or they differ."""
        dts = {np.dtype(d) for _, layer in self.named_layers() if (d := getattr(layer, "dtype", None)) is not None}
        return dts.pop() if len(dts) == 1 else None

    @property
    def dropout(self) -> float:
        """The largest dropout rate of any child (0 when none): a model with dropout has a random forward."""
        return max((float(getattr(layer, "dropout", 0.0) or 0.0) for _, layer in self.named_layers()), default=0.0)

    def train(self, mode: bool = True) -> Model:
        """Set training mode (or evaluation mode with ``mode=False``) here and in every child; returns self."""
        self.training = bool(mode)
        for _, layer in self.named_layers():
            layer.train(mode)
        return self

    def zero_grad(self) -> None:
        """Set every child's gradients to 0 (in place)."""
        for _, layer in self.named_layers():
            layer.zero_grad()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(qualified name, array) pairs; an array shared by two children is listed once."""
        seen = set()
        for k, v in self.params.items():
            if id(v) not in seen:
                seen.add(id(v))
                yield prefix + k, v

    def parameters(self, prefix: str = "") -> list[Parameter]:
        """``Parameter(name, data, grad)`` objects over the children's arrays,
        names ``"<layer>.<param>"``; a shared array is listed once (an
        optimizer must not step it twice). They are the children's persistent
        objects (``Layer.parameters``), so ``to(device)`` keeps them valid."""
        seen = set()
        out = []
        for n, layer in self.named_layers():
            for p in layer.parameters(f"{prefix}{n}."):
                if id(p.data) not in seen:
                    seen.add(id(p.data))
                    out.append(p)
        return out

    # -- device ------------------------------------------------------------------------
    def to(self, device: str) -> Model:
        """Move every child to ``device`` (``"cpu"`` or ``"cuda"``); returns self.

        Every child is checked for a CUDA path before anything moves.
        """
        device = backend.check_device(device)
        if device == "cuda":
            self._check_cuda_support()
        for _, layer in self.named_layers():
            layer.to(device)
        self._to_device_hook(device)
        self.device = device
        return self

    def _check_cuda_support(self) -> None:
        for _, layer in self.named_layers():
            layer._check_cuda_support()

    def _to_device_hook(self, device: str) -> None:
        """Drop the model's own forward cache (children move their own arrays)."""
        if "_cached" in self.__dict__:
            self._cached = False

    def num_parameters(self) -> int:
        """Total number of trainable scalars (shared arrays counted once)."""
        return int(sum(v.size for _, v in self.named_parameters()))

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """``"<layer>.<buffer>"`` -> the child's own non-trainable state array
        (BatchNorm2D's ``running_mean`` / ``running_var``), rebuilt on access.

        A child takes part when it has a ``buffers`` mapping of name -> array
        (``Model`` and ``TimeDistributed`` pass their children's through)."""
        return {f"{n}.{k}": v for n, layer in self.named_layers() for k, v in _buffers_of(layer).items()}

    @buffers.setter
    def buffers(self, value) -> None:
        raise AttributeError("buffers: a Model's buffers are its layers' buffers; set them on the layers")

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(qualified name, array) pairs of the buffers; an array shared by two children is listed once."""
        seen = set()
        for k, v in self.buffers.items():
            if id(v) not in seen:
                seen.add(id(v))
                yield prefix + k, v

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by qualified name: the live arrays ``state_dict`` copies."""
        params, buffers = self.params, self.buffers
        clash = sorted(set(params) & set(buffers))
        if clash:
            raise ValueError(f"state_dict: names {clash} are both a parameter and a buffer; rename the buffer in the layer")
        return {**params, **buffers}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and buffers under their qualified names
        (``"0.weight"``, ``"1.running_mean"``), as PyTorch's ``state_dict``."""
        return {k: v.copy() if isinstance(v, np.ndarray) else backend.to_numpy(v) for k, v in self._state_arrays().items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (in place, keeping each array's dtype).

        Nothing is copied unless every check passes.

        Raises
        ------
        TypeError
            ``state_dict`` is not a mapping, or a value is not numeric.
        ValueError
            Naming, in one message, the missing and unexpected keys (with
            ``strict``) and the mis-shaped keys (always) with their expected
            and actual shapes.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        params = self._state_arrays()
        values = {}
        for k in params:
            if k in state_dict:
                v = backend.to_numpy(state_dict[k])
                if not (np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_):
                    raise TypeError(f"state_dict[{k!r}]: expected a numeric array, got dtype {v.dtype}")
                values[k] = v
        problems = []
        if strict:
            missing = [k for k in params if k not in state_dict]
            unexpected = [k for k in state_dict if k not in params]
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
        bad = {k: (params[k].shape, v.shape) for k, v in values.items() if v.shape != params[k].shape}
        if bad:
            problems.append(
                "mis-shaped keys " + ", ".join(f"{k!r} expected {_shape_str(e)} got {_shape_str(g)}" for k, (e, g) in bad.items())
            )
        if problems:
            raise ValueError(f"state_dict: {'; '.join(problems)}")
        for k, v in values.items():
            p = params[k]
            if isinstance(p, np.ndarray):
                p[...] = v
            else:
                p.copy_to_device(np.ascontiguousarray(v, dtype=p.dtype))

    # -- shapes and summary ---------------------------------------------------------------
    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        """Output shape of each child for a model input of ``input_shape``,
        without running anything. ``Model`` cannot know its graph and returns
        ``{}``; ``Sequential`` chains ``compute_output_shape``."""
        return {}

    def summary(self, input_shape=None) -> str:
        """A table of the children: name, type, output shape, parameter count, and the total.

        Parameters
        ----------
        input_shape : tuple or None
            Full input shape including the batch, ``None`` for unknown sizes,
            e.g. ``(None, 10, 3)``. Output shapes are then inferred without
            running the model; otherwise they are those of the last
            ``forward`` (``?`` before the first one).
        """
        if input_shape is not None:
            shapes = self.output_shapes(_check_input_shape(input_shape))
        else:
            shapes = self._output_shapes
        rows = [("layer", "type", "output shape", "params")]
        for name, layer in self.named_layers():
            rows.append((name, type(layer).__name__, _shape_str(shapes.get(name)), f"{layer.num_parameters():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = [f"{type(self).__name__}"]

        def fmt(r):
            return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3])])

        lines.append(fmt(rows[0]))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(fmt(r) for r in rows[1:])
        lines.append(f"total parameters: {self.num_parameters():,}")
        return "\n".join(lines)

    # -- persistence ------------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments (JSON-able); a Model subclass must define it to be saved and loaded."""
        raise NotImplementedError(
            f"{type(self).__name__}.config(): a Model subclass must define config() returning its constructor "
            "arguments (and be registered with numlstm.register) to be saved"
        )

    def save(self, path, optimizer=None, extra=None):
        """Write a checkpoint (see ``numlstm.checkpoint.save``); returns the path."""
        from numlstm.checkpoint import save

        return save(self, path, optimizer=optimizer, extra=extra)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for name, layer in self.named_layers():
            child = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        lines.append(")")
        return "\n".join(lines)

    def _call(self, name: str, fn, *args, **kwargs):
        """Run a child's method; a TypeError/ValueError names the child."""
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            _reraise_with_layer(exc, name, self.layers[name], type(self).__name__)

    def _check_image_sequence(self, x, name: str, shape: tuple):
        """``x`` checked as a 5-d image sequence of ``shape`` ``(B, T, C, H, W)``
        (``None``: any size) in the model's dtype, on the model's device (a host
        array is copied there once)."""
        arr = x if backend.is_device_array(x) else as_array(x, name)
        if arr.ndim != 5:
            shown = ", ".join("?" if s is None else str(s) for s in shape)
            raise ValueError(
                f"{name}: expected a 5-d array (batch, time, channels, height, width) of shape ({shown}), "
                f"got shape {tuple(arr.shape)}"
            )
        check = check_array if self.device == "cpu" else backend.device_input
        return check(arr, name, tuple(shape), self._dtype, IMAGE_SEQUENCE_AXES)

    def _check_cached(self) -> None:
        """Refuse backward without a training-mode forward (subclasses set ``self._cached``)."""
        if not getattr(self, "_cached", False):
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (model.train()) before backward(dy)"
            )

    def forward(self, x, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward: a Model subclass writes its forward")

    def backward(self, dy, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward: a Model subclass writes its backward")


class Sequential(Model):
    """A chain of layers: ``y = layers[-1](... layers[1](layers[0](x)))``.

    ``backward`` runs the chain in reverse. A recurrent layer inside gets
    ``state=None`` (a zero initial state) and ``dstate=None``; a
    ``Sequential`` is itself not recurrent. Parameters are named
    ``"<index>.<param>"`` as in PyTorch: ``"0.weight_ih_l0"``, ``"1.weight"``.

    Parameters
    ----------
    layers : list of Layer
        At least one; each layer object at most once (a layer holds one
        forward cache), all with the same dtype.

    Examples
    --------
    >>> model = Sequential([LSTM(3, 16, return_sequences=False), Dense(16, 2)])
    >>> y = model(np.zeros((8, 10, 3), np.float32))          # (8, 2)
    """

    def __init__(self, layers) -> None:
        super().__init__()
        if isinstance(layers, Layer):
            raise TypeError(f"layers: expected a list of layers, got a single {type(layers).__name__}: use Sequential([layer])")
        if not isinstance(layers, (list, tuple)):
            raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers: expected at least one layer, got an empty list")
        seen: dict[int, int] = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a numlstm layer, got {type(layer).__name__}")
            if id(layer) in seen:
                raise ValueError(
                    f"layers[{i}]: the same {type(layer).__name__} object as layers[{seen[id(layer)]}]; a layer keeps one "
                    "forward cache, so it cannot appear twice in a chain: create a second layer"
                )
            seen[id(layer)] = i
        dts = {f"layers[{i}]": np.dtype(d) for i, layer in enumerate(layers) if (d := getattr(layer, "dtype", None)) is not None}
        if len(set(dts.values())) > 1:
            got = ", ".join(f"{k} {v.name}" for k, v in dts.items())
            raise ValueError(f"layers: expected one dtype for all layers, got {got}: build every layer with the same dtype")
        self.layers = layers
        self._cached = False

    @classmethod
    def from_config(cls, config) -> Sequential:
        """Build from ``{"layers": [spec, ...]}`` (what ``config()`` returns)."""
        if not isinstance(config, Mapping) or set(config) != {"layers"} or not isinstance(config["layers"], list):
            raise ValueError(f"config: expected {{'layers': [spec, ...]}}, got {config!r}")
        return cls([layer_from_config(spec) for spec in config["layers"]])

    def config(self) -> dict:
        """``{"layers": [{"class": ..., "config": ...}, ...]}``, JSON-able."""
        return {"layers": [layer_to_config(layer) for layer in self.layers]}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def output_shapes(self, input_shape) -> dict[str, tuple | None]:
        shapes = {}
        shape = tuple(input_shape)
        for name, layer in self.named_layers():
            try:
                shape = infer_output_shape(layer, shape)
            except (TypeError, ValueError) as exc:
                _reraise_with_layer(exc, name, layer, "Sequential")
            shapes[name] = shape
        return shapes

    def compute_output_shape(self, input_shape) -> tuple | None:
        """Output shape for an input of shape ``input_shape`` (``None`` when a layer cannot tell)."""
        return list(self.output_shapes(input_shape).values())[-1]

    def forward(self, x) -> np.ndarray:
        """Run the chain.

        Parameters
        ----------
        x : ndarray, the first layer's input

        Returns
        -------
        y : ndarray, the last layer's output
        """
        self._cached = False
        shapes = {}
        out = x
        for name, layer in self.named_layers():
            try:
                out = layer.forward(out, state=None) if layer.recurrent else layer.forward(out)
            except (TypeError, ValueError) as exc:
                _reraise_with_layer(exc, name, layer, "Sequential")
            shapes[name] = out.shape
        self._output_shapes = shapes
        self._cached = self.training
        return out

    def backward(self, dy) -> np.ndarray:
        """Backpropagate through the chain; every layer accumulates into its grads.

        Parameters
        ----------
        dy : ndarray, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        if not self._cached:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (model.train()) before backward(dy)"
            )
        grad = dy
        for n, (name, layer) in enumerate(reversed(self.named_layers())):
            try:
                grad = layer.backward(grad, None) if layer.recurrent else layer.backward(grad)
            except Exception as exc:
                # a bad dy is refused by the last layer before it consumes its cache: the forward stays usable
                if n > 0 or type(exc) not in (TypeError, ValueError):
                    self._cached = False
                _reraise_with_layer(exc, name, layer, "Sequential")
            self._cached = False
        return grad


def child_seed(seed: int | None, i: int) -> int | None:
    """The seed of a model's i-th child: ``seed + i`` (None stays None)."""
    return None if seed is None else seed + i
