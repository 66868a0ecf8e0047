"""Public float64 central-difference gradient check for any numlstm layer."""

from __future__ import annotations

import numpy as np

from numlstm._validation import check_float, check_int
from numlstm.layers.base import Layer


def _rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / max(||a||, ||n||), 0 when both are 0."""
    diff = float(np.linalg.norm((analytic - numeric).ravel()))
    scale = max(float(np.linalg.norm(analytic.ravel())), float(np.linalg.norm(numeric.ravel())))
    if scale == 0.0:
        return 0.0
    return diff / scale


def _forward(layer, x, state, forward_kwargs):
    if layer.recurrent:
        y = layer.forward(x, state=state, **forward_kwargs)
        return y, layer.state
    return layer.forward(x, **forward_kwargs), None


def gradcheck(
    layer: Layer,
    x: np.ndarray,
    /,
    state=None,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    max_elements: int | None = None,
    **forward_kwargs,
) -> dict[str, float]:
    """Compare a layer's backward with float64 central differences.

    The loss is ``L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n)`` with a
    random upstream gradient ``dy`` (and random ``dstate`` for recurrent
    layers), so every output and final state is checked, not just their sum.
    Each checked element ``p`` of the input, of every parameter and of the
    initial state is perturbed to ``p +- eps``; the numeric derivative
    ``(L(p+eps) - L(p-eps)) / (2 eps)`` is compared with ``backward``'s.

    Parameters
    ----------
    layer : Layer
        A float64 layer obeying the layer contract; it is put in training mode
        and its parameters are restored afterwards.
    x : ndarray, the layer's input (float64).
    state : initial state for recurrent layers, or None (then a random state
        is checked, so that ``dstate`` is checked too).
    eps : float, default 1e-6
        Central-difference step.
    seed : int
        Seeds the random upstream gradients and the random initial state.
    max_elements : int or None
        Check at most this many randomly chosen elements per tensor (all when
        None), for large layers.
    **forward_kwargs
        Passed to ``forward`` (e.g. ``lengths=``; ``layer`` and ``x`` are
        positional-only here, so a layer's own ``x=`` keyword passes through).

    Returns
    -------
    dict[str, float]
        Worst relative error ``||analytic - numeric|| / max(||analytic||,
        ||numeric||)`` per tensor: ``"x"``, each parameter name, and for
        recurrent layers ``"h0"`` and ``"c0"``.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer: expected a numlstm layer, got {type(layer).__name__}")
    # parameter-free layers (activations) take their dtype from the input
    layer_dtype = getattr(layer, "dtype", None)
    if layer_dtype is None and not layer.params and np.asarray(x).dtype == np.float64:
        layer_dtype = np.float64
    if layer_dtype != np.float64:
        raise ValueError(
            f"layer: gradcheck needs a float64 layer, got dtype {getattr(layer, 'dtype', None)}: "
            "build the layer with dtype=np.float64"
        )
    if float(getattr(layer, "dropout", 0.0) or 0.0) > 0.0:
        raise ValueError(f"layer: dropout={layer.dropout} makes the forward random; gradcheck needs dropout=0")
    eps = check_float(eps, "eps", 0.0)
    if eps == 0.0:
        raise ValueError("eps: expected a positive step, got 0")
    if max_elements is not None:
        max_elements = check_int(max_elements, "max_elements", 1)
    x = np.array(x, dtype=np.float64, copy=True)
    rng = np.random.default_rng(seed)
    was_training = layer.training
    layer.train()
    try:
        if layer.recurrent and state is None:
            y0 = layer.forward(x, **forward_kwargs)
            h, c = layer.state
            state = (rng.standard_normal(h.shape), rng.standard_normal(c.shape))
        if state is not None:
            state = tuple(np.array(s, dtype=np.float64, copy=True) for s in state)
        y0, st0 = _forward(layer, x, state, forward_kwargs)
        dy = rng.standard_normal(y0.shape)
        dst = None if st0 is None else tuple(rng.standard_normal(s.shape) for s in st0)

        def loss() -> float:
            y, st = _forward(layer, x, state, forward_kwargs)
            total = float(np.sum(y * dy))
            if st is not None:
                total += sum(float(np.sum(s * g)) for s, g in zip(st, dst, strict=True))
            return total

        # analytic
        saved_grads = {k: g.copy() for k, g in layer.grads.items()}
        layer.zero_grad()
        _forward(layer, x, state, forward_kwargs)
        dx = layer.backward(dy, dst) if layer.recurrent else layer.backward(dy)
        analytic = {"x": dx.copy()}
        analytic.update({k: g.copy() for k, g in layer.grads.items()})
        if layer.recurrent:
            analytic["h0"] = layer.dstate[0].copy()
            analytic["c0"] = layer.dstate[1].copy()
        for k, g in layer.grads.items():
            g[...] = saved_grads[k]

        tensors = {"x": x}
        tensors.update(layer.params)
        if layer.recurrent:
            tensors["h0"], tensors["c0"] = state
        errors = {}
        for name, arr in tensors.items():
            flat = arr.reshape(-1)  # a view: perturbing it perturbs the tensor
            idx = np.arange(flat.size)
            if max_elements is not None and flat.size > max_elements:
                idx = np.sort(rng.choice(flat.size, max_elements, replace=False))
            num = np.empty(idx.size)
            for n, i in enumerate(idx):
                orig = flat[i]
                flat[i] = orig + eps
                lp = loss()
                flat[i] = orig - eps
                lm = loss()
                flat[i] = orig
                num[n] = (lp - lm) / (2.0 * eps)
            errors[name] = _rel_error(analytic[name].reshape(-1)[idx], num)
        return errors
    finally:
        layer.train(was_training)
