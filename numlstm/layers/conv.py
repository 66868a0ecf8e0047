"""2-d convolution (PyTorch ``nn.Conv2d``) and the argument parsing shared with the pooling layers.

The layer validates and allocates; the work is done by the conv driver of its
device (``numlstm.backend.driver("conv", device)``: ``numlstm.kernels.cpu.conv``
splits the batch over threads, ``numlstm.kernels.cuda.conv`` launches the GPU
kernels), through the same entry points with the same arguments.
"""

from __future__ import annotations

import numbers

import numpy as np

from numlstm import backend
from numlstm._validation import check_bool, check_dtype, check_int
from numlstm.kernels.cpu.conv import conv_output_size
from numlstm.layers.base import Layer


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
        ho = conv_output_size(h, kh, sh, pt, pb, dh)
        wo = conv_output_size(w, kw, sw, pl, pr, dw)
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
        names = ("batch", "channels", "height", "width")
        dev, dt = self.device, self.dtype
        conv = backend.driver("conv", dev)
        x = backend.check_input(x, "x", (None, self.in_channels, None, None), dt, names, dev)
        N, C, H, W = x.shape
        ho, wo = self._out_hw(H, W, "x", x.shape)
        y = backend.empty((N, self.out_channels, ho, wo), dt, dev)
        b = self.params["bias"] if self.bias else backend.empty(0, dt, dev)
        keep = None
        if self.training:
            # what the backward pass reads instead of x (on the CPU the padded
            # channels-last images, written during the forward pass); it is also
            # the copy that protects the cache from a caller who reuses its x buffer
            keep = self._kept = conv.conv2d_keep(x.shape, self.pads, dt, self._kept)
        conv.conv2d_forward(x, self.params["weight"], b, self.stride, self.pads, self.dilation, y, keep)
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
        if self._cache is None:
            raise RuntimeError(
                "backward: no forward pass to differentiate; call forward(x) in training mode (layer.train()) before backward(dy)"
            )
        shape = self._cache
        ho, wo = self._out_hw(shape[2], shape[3], "x", shape)
        dev, dt = self.device, self.dtype
        dy = backend.check_input(dy, "dy", (shape[0], self.out_channels, ho, wo), dt, device=dev)
        self._cache = None
        dx = backend.empty(shape, dt, dev)
        db = self.grads["bias"] if self.bias else backend.empty(0, dt, dev)
        w, dw = self.params["weight"], self.grads["weight"]
        conv = backend.driver("conv", dev)
        conv.conv2d_backward(None, w, dy, self.stride, self.pads, self.dilation, dx, dw, db, kept=self._kept)
        return dx

    def _to_device_hook(self, device: str) -> None:
        super()._to_device_hook(device)
        self._kept = None
