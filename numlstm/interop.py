"""Load and export LSTM weights in PyTorch and Keras layouts (no torch import).

See docs/interop.md for the tables. numlstm's LSTM parameters already have
PyTorch ``nn.LSTM`` names, shapes and gate order (i, f, g, o); Keras uses the
same gate order (i, f, c, o) with transposed matrices and one bias.
"""

from __future__ import annotations

import re

import numpy as np

from numlstm._validation import check_dtype
from numlstm.layers.lstm import LSTM

_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


def _to_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: no torch import needed for this
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr


def lstm_from_torch(state_dict, dtype=np.float32, **kwargs) -> LSTM:
    """Build an LSTM from a PyTorch ``nn.LSTM`` state dict.

    Parameters
    ----------
    state_dict : mapping str -> array or CPU tensor
        ``weight_ih_l{k}[_reverse]`` (4H, I_k), ``weight_hh_l{k}[_reverse]``
        (4H, H) and optionally ``bias_ih_l{k}``/``bias_hh_l{k}`` (4H,). Sizes,
        layer count, directions and bias are read from the names and shapes.
        A common prefix such as ``"lstm."`` is stripped.
    dtype : np.float32 or np.float64
    **kwargs
        Other ``LSTM`` arguments (``dropout``, ``return_sequences``, ``seed``).

    Returns
    -------
    LSTM
    """
    dtype = check_dtype(dtype)
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    if not state_dict:
        raise ValueError("state_dict: expected nn.LSTM parameters, got an empty mapping")
    entries = {}
    for key, value in state_dict.items():
        short = str(key).rsplit(".", 1)[-1]
        if short.startswith("weight_hr"):
            raise ValueError(f"state_dict: {key!r} means proj_size > 0 (LSTM with projections), which numlstm does not support")
        if _TORCH_KEY.match(short) is None:
            raise ValueError(f"state_dict: unexpected key {key!r}; expected nn.LSTM names like 'weight_ih_l0'")
        if short in entries:
            raise ValueError(f"state_dict: key {short!r} appears twice (under different prefixes)")
        entries[short] = _to_numpy(value, f"state_dict[{key!r}]")
    if "weight_ih_l0" not in entries or "weight_hh_l0" not in entries:
        raise ValueError("state_dict: expected 'weight_ih_l0' and 'weight_hh_l0'")
    w_hh = entries["weight_hh_l0"]
    w_ih = entries["weight_ih_l0"]
    if w_hh.ndim != 2 or w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"state_dict['weight_hh_l0']: expected shape (4H, H), got {w_hh.shape}")
    H = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != 4 * H:
        raise ValueError(f"state_dict['weight_ih_l0']: expected shape ({4 * H}, input_size), got {w_ih.shape}")
    num_layers = 1 + max(int(_TORCH_KEY.match(k).group(2)) for k in entries)
    bidirectional = any(k.endswith("_reverse") for k in entries)
    bias = "bias_ih_l0" in entries
    lstm = LSTM(w_ih.shape[1], H, num_layers=num_layers, bias=bias, bidirectional=bidirectional, dtype=dtype, **kwargs)
    expected = set(lstm.params)
    got = set(entries)
    if expected != got:
        raise ValueError(
            f"state_dict: inconsistent nn.LSTM keys: missing {sorted(expected - got)}, unexpected {sorted(got - expected)}"
        )
    lstm.load_state_dict(entries)
    return lstm


def lstm_to_torch(lstm: LSTM, grads: bool = False) -> dict[str, np.ndarray]:
    """PyTorch ``nn.LSTM`` state dict (numpy arrays) of the parameters or, with
    ``grads=True``, of their gradients (both bias gradients are the same, as
    in PyTorch). Load it with ``{k: torch.from_numpy(v) ...}``."""
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm: expected a numlstm.LSTM, got {type(lstm).__name__}")
    src = lstm.grads if grads else lstm.params
    return {k: v.copy() for k, v in src.items()}


def _check_keras_list(weights, n_dirs: int, bias: bool | None, layer: int):
    per_dir = len(weights) // n_dirs if n_dirs else 0
    if len(weights) not in (2 * n_dirs, 3 * n_dirs):
        raise ValueError(
            f"weights[{layer}]: expected {2 * n_dirs} or {3 * n_dirs} arrays "
            f"(kernel, recurrent_kernel[, bias] per direction), got {len(weights)}"
        )
    has_bias = per_dir == 3
    if bias is not None and has_bias != bias:
        raise ValueError(f"weights[{layer}]: every layer must have a bias or none; layer {layer} differs")
    return per_dir, has_bias


def lstm_from_keras(weights, dtype=np.float32, bidirectional: bool = False, **kwargs) -> LSTM:
    """Build an LSTM from Keras ``LSTM`` (or ``Bidirectional(LSTM)``) weights.

    Parameters
    ----------
    weights : list
        One layer's ``get_weights()``: ``[kernel (I, 4H), recurrent_kernel
        (H, 4H), bias (4H,)]`` (bias optional), or a list of such lists for a
        stack of LSTM layers. With ``bidirectional=True`` each layer's list is
        the forward direction's arrays followed by the backward direction's.
    dtype : np.float32 or np.float64
    bidirectional : bool
    **kwargs : other ``LSTM`` arguments.
    """
    dtype = check_dtype(dtype)
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError(f"weights: expected a non-empty list of arrays (or of per-layer lists), got {type(weights).__name__}")
    layers = list(weights) if isinstance(weights[0], (list, tuple)) else [list(weights)]
    D = 2 if bidirectional else 1
    sd = {}
    bias = None
    H = None
    for k, lw in enumerate(layers):
        per_dir, bias = _check_keras_list(lw, D, bias, k)
        for d in range(D):
            sfx = "_reverse" if d == 1 else ""
            kernel = _to_numpy(lw[d * per_dir], f"weights[{k}] kernel")
            rec = _to_numpy(lw[d * per_dir + 1], f"weights[{k}] recurrent_kernel")
            if rec.ndim != 2 or rec.shape[1] != 4 * rec.shape[0]:
                raise ValueError(f"weights[{k}] recurrent_kernel: expected shape (H, 4H), got {rec.shape}")
            if H is not None and rec.shape[0] != H:
                raise ValueError(f"weights[{k}] recurrent_kernel: expected H = {H} as in layer 0, got {rec.shape}")
            H = rec.shape[0]
            if kernel.ndim != 2 or kernel.shape[1] != 4 * H:
                raise ValueError(f"weights[{k}] kernel: expected shape (input_size, {4 * H}), got {kernel.shape}")
            sd[f"weight_ih_l{k}{sfx}"] = kernel.T
            sd[f"weight_hh_l{k}{sfx}"] = rec.T
            if bias:
                b = _to_numpy(lw[d * per_dir + 2], f"weights[{k}] bias")
                if b.shape != (4 * H,):
                    raise ValueError(f"weights[{k}] bias: expected shape ({4 * H},), got {b.shape}")
                sd[f"bias_ih_l{k}{sfx}"] = b
                sd[f"bias_hh_l{k}{sfx}"] = np.zeros_like(b)
    input_size = sd["weight_ih_l0"].shape[1]
    lstm = LSTM(input_size, H, num_layers=len(layers), bias=bias, bidirectional=bidirectional, dtype=dtype, **kwargs)
    expected_in = [input_size] + [D * H] * (len(layers) - 1)
    for k, want in enumerate(expected_in):
        got = sd[f"weight_ih_l{k}"].shape[1]
        if got != want:
            raise ValueError(f"weights[{k}] kernel: expected {want} input features (from the layer below), got {got}")
    lstm.load_state_dict(sd)
    return lstm


def lstm_to_keras(lstm: LSTM) -> list[list[np.ndarray]]:
    """Per-layer Keras weight lists ``[kernel, recurrent_kernel, bias]`` (six
    arrays per layer when bidirectional; no bias arrays when ``bias=False``)."""
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm: expected a numlstm.LSTM, got {type(lstm).__name__}")
    out = []
    for k in range(lstm.num_layers):
        lw = []
        for sfx in lstm._suffixes():
            p = lstm.params
            lw.append(np.ascontiguousarray(p[f"weight_ih_l{k}{sfx}"].T))
            lw.append(np.ascontiguousarray(p[f"weight_hh_l{k}{sfx}"].T))
            if lstm.bias:
                lw.append(p[f"bias_ih_l{k}{sfx}"] + p[f"bias_hh_l{k}{sfx}"])
        out.append(lw)
    return out
