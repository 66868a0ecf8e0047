"""2-d convolution (PyTorch ``nn.Conv2d``), and the threaded drivers of the conv kernels.

``conv2d_forward`` / ``conv2d_backward`` here are the entry points other
layers (ConvLSTM) call: they split the batch into blocks that run the
``nogil`` kernels on separate threads (BLAS single-threaded meanwhile), so
that the im2col copies use every core too, not only the BLAS products.
"""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np

from numlstm import backend
from numlstm._threads import max_chunks, product_chunks, run_blocks, single_threaded_blas, split_rows
from numlstm._validation import check_array, check_bool, check_dtype, check_int
from numlstm.kernels.cpu import conv as _k
from numlstm.kernels.cpu.linalg import small_tiles_nn, small_tiles_tn
from numlstm.layers.base import Layer


def _blocks(n: int, macs: int) -> list[tuple[int, int]]:
    """The batch of n images in one block per thread (at least one image each)."""
    return split_rows(n, product_chunks(n, macs, min_rows=1))


def _scratch(ws: dict | None, key, shape, dtype, zero: bool = False) -> np.ndarray:
    """A work array kept in ``ws`` (a layer's workspace) between calls, or a
    fresh one when ``ws`` is None. ``zero``: allocated zeroed (the kernels
    write only the interior of padded images, so a kept border stays 0)."""
    dtype = np.dtype(dtype)
    if ws is None:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    # keyed by shape too: a layer's convolutions of different sizes (ConvLSTM's
    # input and recurrent one) each keep their own
    key = (key, tuple(shape), dtype.str)
    buf = ws.get(key)
    if buf is None:
        buf = ws[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    return buf


def conv2d_forward(x, w, b, stride, pads, dilation, out, keep=None, ws=None) -> None:
    """out = conv2d(x, w) + b, the batch split over threads.

    x: (N, C, H, W) C-contiguous; w: (O, C, kh, kw) C-contiguous; b: (O,) or
    empty; stride (sh, sw); pads (top, bottom, left, right); dilation (dh, dw);
    out: (N, O, H', W') C-contiguous, overwritten. ``keep``: None, or an
    (N, H+top+bottom, W+left+right, C) C-contiguous array with a zero border
    that receives the padded channels-last images for ``conv2d_backward``.
    ``ws``: a dict that keeps the work arrays between calls (a layer's
    workspace). No validation.
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    wo = out.shape[3]
    pt, pb, pl, pr = pads
    T = _k.tile_rows(wo) * wo
    K = C * kh * kw
    tiles = small_tiles_nn(O, K, T)
    blocks = _blocks(N, out.size * w[0].size)
    stride, pads, dilation = tuple(stride), tuple(pads), tuple(dilation)
    wk = w.reshape(O, K)
    no_keep = np.zeros((0, 1, 1, 1), x.dtype)
    fns = []
    for i, (a, e) in enumerate(blocks):
        xpc = _scratch(ws, ("conv_xpc", i, pads), (C, H + pt + pb, W + pl + pr), x.dtype, zero=True)
        col = _scratch(ws, ("conv_col", i), (K, T), x.dtype)
        xps = no_keep if keep is None else keep[a:e]
        args = (x[a:e], wk, kh, kw, b, stride, pads, dilation, out[a:e], xps, keep is not None, xpc, col, tiles)
        fns.append(partial(_k.conv2d_forward_work, *args))
    with single_threaded_blas(len(fns) > 1):
        run_blocks(fns)


class ConvGradAcc:
    """Per-thread accumulators of a convolution's weight and bias gradients
    in the kernels' layout, summed over many ``conv2d_backward`` calls and
    moved into dW, db once (``fold``): ConvLSTM's recurrent convolution is
    differentiated once per step, its weight gradient folded once per pass."""

    def __init__(self, w_shape, dtype, ws=None, key="conv_acc"):
        O, C, kh, kw = w_shape
        n = max_chunks()
        self.w_shape = tuple(w_shape)
        self.acc = _scratch(ws, (key, "w"), (n, O, C * kh * kw), dtype)
        self.dbs = _scratch(ws, (key, "b"), (n, O), np.float64)
        self.acc.fill(0)
        self.dbs.fill(0)

    def fold(self, dw, db) -> None:
        """dw (O, C, kh, kw) += the sum of the accumulators; db (O,) likewise (or empty)."""
        _k.fold_weight_grad(self.acc.sum(axis=0), dw)
        if db.size:
            db += self.dbs.sum(axis=0).astype(db.dtype)


def conv2d_backward(
    x, w, dy, stride, pads, dilation, dx, dw, db, need_dx: bool = True, kept=None, ws=None, w2=None, acc=None,
    need_dw: bool = True,
) -> None:  # fmt: skip
    """dx = input gradient (when ``need_dx``), dw += weight gradient, db += bias gradient.

    Shapes as in ``conv2d_forward``; dy: (N, O, H', W'); db may be empty (no bias).
    ``kept``: the ``keep`` array filled by ``conv2d_forward`` for this x (then
    x is not read and may be None; dx gives the input shape), or None.
    ``ws``: as in ``conv2d_forward``; ``w2``: ``weight_matrix(w)`` when the
    caller already has it (ConvLSTM forms it once per pass for its per-step
    convolution). ``need_dw`` False: no weight gradient (x, kept not read).
    ``acc``: a ``ConvGradAcc`` that
    collects dW and db instead (dw and db are then not touched).
    """
    N, O, _, wo = dy.shape
    _, C, kh, kw = w.shape
    pt, pb, pl, pr = pads
    if kept is not None:
        Hp, Wp = kept.shape[1], kept.shape[2]
    else:
        Hp, Wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    T = _k.tile_rows(wo) * wo
    K = C * kh * kw
    # the weight gradient in short chunks of pixels (see small_tiles_nn)
    tiles = (*small_tiles_nn(O, T, K, kc_max=256, rows=24), *small_tiles_tn(O, T, K))
    blocks = _blocks(N, dy.size * w[0].size)
    stride, pads, dilation = tuple(stride), tuple(pads), tuple(dilation)
    w2 = _k.weight_matrix(w) if w2 is None else w2
    own = acc is None
    if own:
        acc = ConvGradAcc(w.shape, dy.dtype, ws, "conv_acc_call")
    if not need_dx:
        dx = np.empty((N, 0, 0, 0), dy.dtype)
    dt = dy.dtype
    fns = []
    for i, (a, e) in enumerate(blocks):
        if kept is None:
            xps = _scratch(ws, ("conv_xps", i, pads), (1, Hp, Wp, C), dt, zero=True)
            xa = x[a:e]
        else:
            xps = kept[a:e]
            xa = dx[a:e][:0]
        dxp = _scratch(ws, ("conv_dxp", i), (Hp, Wp, C) if need_dx else (1, 1, 1), dt)
        work = [_scratch(ws, (name, i), shape, dt) for name, shape in (("conv_colT", (T, K)), ("conv_dcolT", (T, K)))]
        args = (xa, xps, kept is not None, w2, kh, kw, dy[a:e], stride, pads, dilation, dx[a:e], need_dx, need_dw)
        fns.append(partial(_k.conv2d_backward_work, *args, acc.acc[i], acc.dbs[i], dxp, *work, tiles))
    with single_threaded_blas(len(fns) > 1):
        run_blocks(fns)
    if own:
        acc.fold(dw, db)


# -- argument parsing shared with the pooling layers ---------------------------------------------
def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        return check_int(value[0], f"{name}[0]", minimum), check_int(value[1], f"{name}[1]", minimum)
    v = check_int(value, name, minimum)
    return v, v


def _config_value(value):
    """Tuples as lists (what JSON gives back)."""
    return list(value) if isinstance(value, tuple) else value


def device_input(x, name: str, shape, dtype, names=None, copy: bool = False):
    """``backend.device_input`` (host input checked and copied once, device input
    checked on its shape and dtype), and with ``copy`` a device input is copied
    too, so that a cache does not alias the caller's buffer."""
    was_device = backend.is_device_array(x)
    x = backend.device_input(x, name, shape, dtype, names)
    if copy and was_device:
        out = backend.empty(x.shape, x.dtype, "cuda")
        out.copy_to_device(x)
        return out
    return x


def _image_input(x, name: str, channels: int | None, dtype) -> np.ndarray:
    shape = (None, channels, None, None)
    return check_array(x, name, shape, dtype, ("batch", "channels", "height", "width"))


class Conv2D(Layer):
    r"""2-d convolution over images ``(N, C, H, W) -> (N, O, H', W')`` (PyTorch ``nn.Conv2d``).

    ``y[n, o] = b[o] + sum_c W[o, c] (*) x[n, c]`` where ``(*)`` is the
    cross-correlation with the given stride, padding and dilation; per axis
    ``H' = (H + pad_top + pad_bottom - dilation*(kh-1) - 1) // stride + 1``.
    Computed as pixel-major im2col tiles + BLAS products (see docs/layers_image.md).

    Parameters
    ----------
    in_channels, out_channels : int >= 1
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default 1
    padding : int, (ph, pw), (top, bottom, left, right), "valid" or "same"
        Zeros added around the image. "valid" is 0. "same" keeps the size
        (stride 1 only, as PyTorch): total ``dilation*(k-1)`` per axis, with
        ``total // 2`` before and the rest after (for even kernels the extra
        row/column goes to the bottom/right, as TensorFlow and PyTorch).
    dilation : int or (dh, dw), default 1
    bias : bool, default True
    dtype : np.float32 or np.float64
    seed : int or None

    Attributes
    ----------
    params, grads : dict[str, ndarray]
        ``weight`` (O, C, kh, kw) and ``bias`` (O,): PyTorch's names, shapes
        and init (uniform in +-1/sqrt(C*kh*kw)).
    """

    cuda_support = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
        dtype=np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        self.padding = padding
        self.pads = self._parse_padding(padding)
        self.bias = check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        rng = np.random.default_rng(seed)
        kh, kw = self.kernel_size
        bound = 1.0 / np.sqrt(self.in_channels * kh * kw)
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params["weight"] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        if self.bias:
            self.params["bias"] = rng.uniform(-bound, bound, (self.out_channels,)).astype(self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None
        self._kept = None  # the padded channels-last images of the last training forward, reused

    def _parse_padding(self, padding) -> tuple[int, int, int, int]:
        if isinstance(padding, str):
            if padding == "valid":
                return 0, 0, 0, 0
            if padding == "same":
                if self.stride != (1, 1):
                    raise ValueError(f"padding: 'same' needs stride 1 (as PyTorch), got stride={self.stride}")
                th = self.dilation[0] * (self.kernel_size[0] - 1)
                tw = self.dilation[1] * (self.kernel_size[1] - 1)
                return th // 2, th - th // 2, tw // 2, tw - tw // 2
            raise ValueError(f"padding: expected an int, a pair, (top, bottom, left, right), 'same' or 'valid', got {padding!r}")
        if isinstance(padding, (list, tuple)):
            if len(padding) == 2:
                ph, pw = (check_int(v, f"padding[{i}]", 0) for i, v in enumerate(padding))
                return ph, ph, pw, pw
            if len(padding) == 4:
                return tuple(check_int(v, f"padding[{i}]", 0) for i, v in enumerate(padding))
            raise ValueError(f"padding: expected an int, a pair, (top, bottom, left, right), 'same' or 'valid', got {padding!r}")
        if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
            p = check_int(padding, "padding", 0)
            return p, p, p, p
        raise TypeError(f"padding: expected an int, a pair, (top, bottom, left, right), 'same' or 'valid', got {padding!r}")

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, dilation={self.dilation}, bias={self.bias}, dtype={self.dtype.name})"
        )

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable), enough to rebuild the layer."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": _config_value(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def _out_hw(self, h: int, w: int, name: str, shape) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        pt, pb, pl, pr = self.pads
        ho = _k.conv_output_size(h, kh, sh, pt, pb, dh)
        wo = _k.conv_output_size(w, kw, sw, pl, pr, dw)
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{name}: the kernel ({kh}, {kw}) with dilation {self.dilation} spans "
                f"({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1}) pixels, larger than the padded input "
                f"({h + pt + pb}, {w + pl + pr}) (pads {self.pads}); got shape {tuple(shape)}: use a larger input or more padding"
            )
        return ho, wo

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for an input of shape ``input_shape`` (``None`` entries: unknown sizes)."""
        s = tuple(input_shape)
        if len(s) != 4 or s[1] not in (None, self.in_channels):
            raise ValueError(f"input_shape: expected (batch, {self.in_channels}, height, width), got {s}")
        ho = wo = None
        if s[2] is not None and s[3] is not None:
            ho, wo = self._out_hw(s[2], s[3], "input_shape", s)
        return (s[0], self.out_channels, ho, wo)

    def forward(self, x) -> np.ndarray:
        """Apply the convolution.

        Parameters
        ----------
        x : ndarray (N, in_channels, H, W)

        Returns
        -------
        y : ndarray (N, out_channels, H', W')
        """
        if self.device != "cpu":
            return self._forward_cuda(x)
        x = _image_input(x, "x", self.in_channels, self.dtype)
        N, C, H, W = x.shape
        ho, wo = self._out_hw(H, W, "x", x.shape)
        y = np.empty((N, self.out_channels, ho, wo), self.dtype)
        b = self.params["bias"] if self.bias else np.empty(0, self.dtype)
        keep = None
        if self.training:
            # the backward pass reads x as the forward pass lays it out (padded,
            # channels last): written during the forward pass, it is also the
            # copy that protects the cache from a caller who reuses its x buffer
            pt, pb, pl, pr = self.pads
            shape = (N, H + pt + pb, W + pl + pr, C)
            keep = self._kept
            if keep is None or keep.shape != shape:
                keep = self._kept = np.zeros(shape, self.dtype)  # border stays zero
        conv2d_forward(x, self.params["weight"], b, self.stride, self.pads, self.dilation, y, keep)
        self._cache = None if keep is None else x.shape
        return y

    def backward(self, dy) -> np.ndarray:
        """Accumulate ``dW``, ``db`` into ``grads``; return ``dx``.

        Parameters
        ----------
        dy : ndarray (N, out_channels, H', W'), the shape of the last output

        Returns
        -------
        dx : ndarray (N, in_channels, H, W)
        """
        if self.device != "cpu":
            return self._backward_cuda(dy)
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        shape = self._cache
        ho, wo = self._out_hw(shape[2], shape[3], "x", shape)
        dy = check_array(dy, "dy", (shape[0], self.out_channels, ho, wo), self.dtype)
        self._cache = None
        dx = np.empty(shape, self.dtype)
        db = self.grads["bias"] if self.bias else np.empty(0, self.dtype)
        w = self.params["weight"]
        conv2d_backward(None, w, dy, self.stride, self.pads, self.dilation, dx, self.grads["weight"], db, kept=self._kept)
        return dx

    # -- the GPU path (numlstm.kernels.cuda.conv) ----------------------------------------------------
    def _forward_cuda(self, x):
        k = backend.cuda_kernels().conv
        names = ("batch", "channels", "height", "width")
        x = device_input(x, "x", (None, self.in_channels, None, None), self.dtype, names, copy=self.training)
        N, C, H, W = x.shape
        ho, wo = self._out_hw(H, W, "x", x.shape)
        y = backend.empty((N, self.out_channels, ho, wo), self.dtype, "cuda")
        b = self.params["bias"] if self.bias else backend.empty(0, self.dtype, "cuda")
        k.conv2d_forward(x, self.params["weight"], b, self.stride, self.pads, self.dilation, y)
        self._cache = x if self.training else None
        return y

    def _backward_cuda(self, dy):
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        x = self._cache
        ho, wo = self._out_hw(x.shape[2], x.shape[3], "x", x.shape)
        dy = device_input(dy, "dy", (x.shape[0], self.out_channels, ho, wo), self.dtype)
        self._cache = None
        dx = backend.empty(x.shape, self.dtype, "cuda")
        db = self.grads["bias"] if self.bias else backend.empty(0, self.dtype, "cuda")
        k = backend.cuda_kernels().conv
        w, dw = self.params["weight"], self.grads["weight"]
        k.conv2d_backward(x, w, dy, self.stride, self.pads, self.dilation, dx, dw, db, True)
        return dx

    def _to_device_hook(self, device: str) -> None:
        super()._to_device_hook(device)
        self._kept = None
