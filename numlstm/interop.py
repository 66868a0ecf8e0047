"""Load and export LSTM and ConvLSTM weights in PyTorch and Keras layouts (no torch import).

See docs/interop.md for the tables. numlstm's LSTM parameters already have
PyTorch ``nn.LSTM`` names, shapes and gate order (i, f, g, o); Keras uses the
same gate order (i, f, c, o) with transposed matrices and one bias.
"""

from __future__ import annotations

import re

import numpy as np

from numlstm._validation import check_dtype
from numlstm.layers.conv import _pair
from numlstm.layers.convlstm import ConvLSTM
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


# -- ConvLSTM --------------------------------------------------------------------------------------
# ndrplz/ConvLSTM_pytorch: one Conv2d(C_in + C, 4C) per layer over cat([x, h]), split as i, f, o, g.
_IFOG_TO_IFGO = np.array([0, 1, 3, 2])  # block permutation; its own inverse


def _swap_go(a: np.ndarray, C: int) -> np.ndarray:
    """Exchange the 3rd and 4th blocks of C rows (i, f, o, g <-> i, f, g, o)."""
    return np.concatenate([a[b * C : (b + 1) * C] for b in _IFOG_TO_IFGO], axis=0)


def _check_plain_convlstm(layer, name: str = "layer") -> None:
    if not isinstance(layer, ConvLSTM):
        raise TypeError(f"{name}: expected a numlstm.ConvLSTM, got {type(layer).__name__}")
    if getattr(layer, "bidirectional", False) or any(k.endswith("_reverse") for k in layer.params):
        raise ValueError(
            f"{name}: a bidirectional ConvLSTM has no counterpart in this format; only unidirectional layers convert"
        )
    if any(getattr(layer, a, False) for a in ("peephole", "peepholes")) or any(k.startswith("peephole") for k in layer.params):
        raise ValueError(
            f"{name}: a ConvLSTM with peephole connections has no counterpart in this format; "
            "only layers without peepholes convert"
        )


def _even_kernel_error(where: str, kh: int, kw: int) -> ValueError:
    return ValueError(
        f"{where}: kernel {kh}x{kw} has an even side; the ndrplz ConvLSTM pads k//2 on both sides, which for an even "
        "kernel grows every frame by one row/column per step (its h no longer fits x), unlike numlstm's 'SAME' padding "
        "(equal for odd kernels only); only odd kernels convert"
    )


def _reject_geometry(kwargs: dict, where: str) -> None:
    for arg in ("stride", "dilation"):
        if arg in kwargs and np.any(np.asarray(kwargs[arg]) != 1):
            raise ValueError(f"{where}: {arg}={kwargs[arg]!r}; the ndrplz ConvLSTM has stride 1 and dilation 1 only")


def convlstm_from_torch(state_dict, kernel_size=None, dtype=np.float32, **kwargs):
    """Build a ConvLSTM from an ndrplz-style PyTorch ConvLSTM state dict.

    Parameters
    ----------
    state_dict : mapping str -> array or CPU tensor
        ``cell_list.{k}.conv.weight`` (4C, C_in_k + C, kh, kw) and optionally
        ``cell_list.{k}.conv.bias`` (4C,): per layer one ``nn.Conv2d`` over
        ``torch.cat([x, h], dim=1)`` whose output is split into the gates
        i, f, o, g. Keys may also be ``{k}.conv.weight`` (no ``cell_list.``),
        ``conv.weight`` (a single ``ConvLSTMCell``), or carry a common outer
        prefix (``"encoder.cell_list.0.conv.weight"``). Sizes, layer count and
        bias are read from the shapes.
    kernel_size : int or (kh, kw) or None
        Checked against the weights' shape when given.
    dtype : np.float32 or np.float64
    **kwargs
        Other ``ConvLSTM`` arguments (``return_sequences``, ``seed``);
        ``stride`` and ``dilation`` must stay 1, as in the ndrplz ConvLSTM.

    Returns
    -------
    ConvLSTM
    """
    dtype = check_dtype(dtype)
    _reject_geometry(kwargs, "convlstm_from_torch")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    if not state_dict:
        raise ValueError("state_dict: expected ConvLSTM parameters, got an empty mapping")
    weights, biases, prefixes = {}, {}, set()
    for key, value in state_dict.items():
        parts = str(key).split(".")
        if len(parts) < 2 or parts[-2] != "conv" or parts[-1] not in ("weight", "bias"):
            raise ValueError(
                f"state_dict: unexpected key {key!r}; expected ndrplz ConvLSTM names like 'cell_list.0.conv.weight' "
                "(peepholes and other ConvLSTM variants are not supported)"
            )
        outer = parts[:-2]
        k = 0
        if outer and outer[-1].isdigit():
            k = int(outer.pop())
            if outer and outer[-1] == "cell_list":
                outer.pop()
        elif outer and outer[-1] == "cell_list":
            raise ValueError(f"state_dict: unexpected key {key!r}; expected a layer index after 'cell_list.'")
        prefixes.add(".".join(outer))
        target = weights if parts[-1] == "weight" else biases
        if k in target:
            raise ValueError(f"state_dict: layer {k} conv.{parts[-1]} appears twice (under different prefixes), e.g. {key!r}")
        target[k] = _to_numpy(value, f"state_dict[{key!r}]")
    if len(prefixes) > 1:
        raise ValueError(f"state_dict: keys of more than one ConvLSTM (different prefixes): {sorted(map(str, state_dict))}")
    num_layers = 1 + max([*weights, *biases])
    missing = [k for k in range(num_layers) if k not in weights]
    if missing:
        raise ValueError(f"state_dict: missing conv.weight of layer(s) {missing}")
    if biases and len(biases) != num_layers:
        raise ValueError(
            f"state_dict: conv.bias present for layers {sorted(biases)} but not for layers "
            f"{sorted(set(range(num_layers)) - set(biases))}; every layer must have a bias or none"
        )
    w0 = weights[0]
    if w0.ndim != 4 or w0.shape[0] % 4 != 0 or w0.shape[0] == 0:
        raise ValueError(f"state_dict: layer 0 conv.weight: expected shape (4C, C_in + C, kh, kw), got {w0.shape}")
    C = w0.shape[0] // 4
    kh, kw = w0.shape[2:]
    cin = w0.shape[1] - C
    if cin < 1:
        raise ValueError(f"state_dict: layer 0 conv.weight: {w0.shape[1]} input channels leave none for x after C = {C} for h")
    if kernel_size is not None and _pair(kernel_size, "kernel_size", 1) != (kh, kw):
        raise ValueError(f"kernel_size: {kernel_size!r} differs from the weights' kernel {kh}x{kw}")
    if kh % 2 == 0 or kw % 2 == 0:
        raise _even_kernel_error("state_dict", kh, kw)
    sd = {}
    for k in range(num_layers):
        want = (4 * C, (cin if k == 0 else C) + C, kh, kw)
        w = weights[k]
        if w.shape != want:
            raise ValueError(
                f"state_dict: layer {k} conv.weight: expected shape {want} (C = {C}, kernel {kh}x{kw} as layer 0; "
                f"numlstm's ConvLSTM has one hidden size and kernel for all layers), got {w.shape}"
            )
        c_in_k = want[1] - C
        sd[f"weight_x_l{k}"] = _swap_go(w[:, :c_in_k], C)
        sd[f"weight_h_l{k}"] = _swap_go(w[:, c_in_k:], C)
        if biases:
            b = biases[k]
            if b.shape != (4 * C,):
                raise ValueError(f"state_dict: layer {k} conv.bias: expected shape ({4 * C},), got {b.shape}")
            sd[f"bias_l{k}"] = _swap_go(b, C)
    layer = ConvLSTM(cin, C, (kh, kw), num_layers=num_layers, bias=bool(biases), dtype=dtype, **kwargs)
    layer.load_state_dict(sd)
    return layer


def convlstm_to_torch(layer, grads: bool = False) -> dict[str, np.ndarray]:
    """ndrplz-style PyTorch ConvLSTM state dict (numpy arrays) of the
    parameters or, with ``grads=True``, of their gradients:
    ``cell_list.{k}.conv.weight`` (4C, C_in_k + C, kh, kw) with the gates in
    the order i, f, o, g, and ``cell_list.{k}.conv.bias`` (4C,). Only a
    unidirectional ConvLSTM without peepholes, with odd kernel sides, stride 1
    and dilation 1 has an ndrplz counterpart; others raise ``ValueError``."""
    _check_plain_convlstm(layer)
    kh, kw = layer.kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise _even_kernel_error("layer", kh, kw)
    _reject_geometry({"stride": layer.stride, "dilation": layer.dilation}, "layer")
    src = layer.grads if grads else layer.params
    C = layer.hidden_channels
    out = {}
    for k in range(layer.num_layers):
        w = np.concatenate([src[f"weight_x_l{k}"], src[f"weight_h_l{k}"]], axis=1)
        out[f"cell_list.{k}.conv.weight"] = _swap_go(w, C)
        if layer.bias:
            out[f"cell_list.{k}.conv.bias"] = _swap_go(src[f"bias_l{k}"], C)
    return out


def convlstm_from_keras(weights, dtype=np.float32, **kwargs):
    """Build a ConvLSTM from Keras ``ConvLSTM2D`` weights.

    Parameters
    ----------
    weights : list
        One layer's ``get_weights()``: ``[kernel (kh, kw, C_in, 4F),
        recurrent_kernel (kh, kw, F, 4F), bias (4F,)]`` (bias optional,
        ``use_bias=False``), gates i, f, c, o; or a list of such lists for a
        stack of ConvLSTM2D layers (same ``filters`` and ``kernel_size``).
    dtype : np.float32 or np.float64
    **kwargs
        Other ``ConvLSTM`` arguments (``stride``, ``dilation``,
        ``return_sequences``, ``seed``). The Keras layers must use
        ``padding="same"``.
    """
    dtype = check_dtype(dtype)
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError(f"weights: expected a non-empty list of arrays (or of per-layer lists), got {type(weights).__name__}")
    layers = list(weights) if isinstance(weights[0], (list, tuple)) else [list(weights)]
    sd = {}
    bias = None
    F = kh = kw = cin = None
    for k, lw in enumerate(layers):
        if not isinstance(lw, (list, tuple)) or len(lw) not in (2, 3):
            n = len(lw) if isinstance(lw, (list, tuple)) else type(lw).__name__
            raise ValueError(f"weights[{k}]: expected 2 or 3 arrays (kernel, recurrent_kernel[, bias]), got {n}")
        if bias is not None and (len(lw) == 3) != bias:
            raise ValueError(f"weights[{k}]: every layer must have a bias or none; layer {k} differs from layer 0")
        bias = len(lw) == 3
        kernel = _to_numpy(lw[0], f"weights[{k}] kernel")
        rec = _to_numpy(lw[1], f"weights[{k}] recurrent_kernel")
        if rec.ndim != 4 or rec.shape[3] != 4 * rec.shape[2] or rec.shape[2] == 0:
            raise ValueError(f"weights[{k}] recurrent_kernel: expected shape (kh, kw, F, 4F), got {rec.shape}")
        if F is not None and rec.shape != (kh, kw, F, 4 * F):
            raise ValueError(
                f"weights[{k}] recurrent_kernel: expected shape {(kh, kw, F, 4 * F)} as layer 0 (numlstm's ConvLSTM "
                f"has one filter count and kernel for all layers), got {rec.shape}"
            )
        kh, kw, F = rec.shape[:3]
        want_in = "C_in" if k == 0 else F
        if kernel.ndim != 4 or kernel.shape[:2] != (kh, kw) or kernel.shape[3] != 4 * F or (k > 0 and kernel.shape[2] != F):
            raise ValueError(f"weights[{k}] kernel: expected shape ({kh}, {kw}, {want_in}, {4 * F}), got {kernel.shape}")
        if k == 0:
            cin = kernel.shape[2]
        sd[f"weight_x_l{k}"] = kernel.transpose(3, 2, 0, 1)
        sd[f"weight_h_l{k}"] = rec.transpose(3, 2, 0, 1)
        if bias:
            b = _to_numpy(lw[2], f"weights[{k}] bias")
            if b.shape != (4 * F,):
                raise ValueError(f"weights[{k}] bias: expected shape ({4 * F},), got {b.shape}")
            sd[f"bias_l{k}"] = b
    layer = ConvLSTM(cin, F, (kh, kw), num_layers=len(layers), bias=bias, dtype=dtype, **kwargs)
    layer.load_state_dict(sd)
    return layer


def convlstm_to_keras(layer) -> list[list[np.ndarray]]:
    """Per-layer Keras ``ConvLSTM2D`` weight lists ``[kernel (kh, kw, C_in_k,
    4C), recurrent_kernel (kh, kw, C, 4C), bias (4C,)]`` (no bias array when
    ``bias=False``). Only a unidirectional ConvLSTM without peepholes converts."""
    _check_plain_convlstm(layer)
    out = []
    for k in range(layer.num_layers):
        p = layer.params
        lw = [
            np.ascontiguousarray(p[f"weight_x_l{k}"].transpose(2, 3, 1, 0)),
            np.ascontiguousarray(p[f"weight_h_l{k}"].transpose(2, 3, 1, 0)),
        ]
        if layer.bias:
            lw.append(p[f"bias_l{k}"].copy())
        out.append(lw)
    return out
