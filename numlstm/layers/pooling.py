"""Pooling over images ``(N, C, H, W)``: ``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D``.

Parameter-free: each takes float32 or float64 input and answers in the same
dtype (``layer.dtype`` reports the dtype of the last input). On the GPU
(``to("cuda")``) ``_Stateless`` calls ``_forward_cuda`` / ``_backward_cuda``
(``numlstm.kernels.cuda.conv``).
"""

from __future__ import annotations

import numpy as np

from numlstm import backend
from numlstm.kernels.cpu import conv as _k
from numlstm.layers.activation import _Stateless
from numlstm.layers.conv import _pair


def _check_rank4(x: np.ndarray, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-d array (batch, channels, height, width), got shape {x.shape}")


class _Pool2D(_Stateless):
    """Shared arguments and shape rules of the windowed pools."""

    _min_ndim = 4
    _axes = "(batch, channels, height, width)"

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)
        self._stride_arg = None if stride is None else list(self.stride)
        self.padding = _pair(padding, "padding", 0)
        for axis in range(2):
            if 2 * self.padding[axis] > self.kernel_size[axis]:
                raise ValueError(
                    f"padding: expected at most half the kernel size (as PyTorch), got padding={self.padding} "
                    f"with kernel_size={self.kernel_size}"
                )

    def config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": self._stride_arg, "padding": list(self.padding)}

    def _out_hw(self, h, w, name, shape) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho = _k.conv_output_size(h, kh, sh, ph, ph, 1)
        wo = _k.conv_output_size(w, kw, sw, pw, pw, 1)
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{name}: the pooling window {self.kernel_size} is larger than the padded input "
                f"({h + 2 * ph}, {w + 2 * pw}); got shape {tuple(shape)}"
            )
        return ho, wo

    def compute_output_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        if len(s) != 4:
            raise ValueError(f"input_shape: expected (batch, channels, height, width), got {s}")
        ho = wo = None
        if s[2] is not None and s[3] is not None:
            ho, wo = self._out_hw(s[2], s[3], "input_shape", s)
        return (s[0], s[1], ho, wo)


class MaxPool2D(_Pool2D):
    """Maximum over ``kernel_size`` windows (PyTorch ``nn.MaxPool2d``).

    ``(N, C, H, W) -> (N, C, H', W')`` with ``H' = (H + 2*ph - kh) // sh + 1``.
    Padding counts as -inf. The backward pass sends each output gradient to
    the first maximum of its window (row-major order, as PyTorch).

    Parameters
    ----------
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default kernel_size
    padding : int or (ph, pw), default 0; at most half the kernel size
    """

    def _forward(self, x):
        _check_rank4(x, "x")
        ho, wo = self._out_hw(x.shape[2], x.shape[3], "x", x.shape)
        out = np.empty(x.shape[:2] + (ho, wo), x.dtype)
        argmax = np.empty(out.shape, np.int64)
        _k.maxpool2d_forward(x, *self.kernel_size, *self.stride, *self.padding, out, argmax)
        return out, argmax

    def _backward(self, dy, argmax, x_shape):
        dx = np.empty(x_shape, dy.dtype)
        _k.maxpool2d_backward(dy, argmax, dx)
        return dx

    def _forward_cuda(self, x):
        ho, wo = self._out_hw(x.shape[2], x.shape[3], "x", x.shape)
        out = backend.empty(x.shape[:2] + (ho, wo), x.dtype, "cuda")
        argmax = backend.empty(out.shape, np.int64, "cuda")
        backend.cuda_kernels().conv.maxpool2d_forward(x, *self.kernel_size, *self.stride, *self.padding, out, argmax)
        return out, argmax

    def _backward_cuda(self, dy, argmax, x_shape):
        dx = backend.empty(x_shape, dy.dtype, "cuda")
        backend.cuda_kernels().conv.maxpool2d_backward(dy, argmax, dx, *self.kernel_size, *self.stride, *self.padding)
        return dx


class AvgPool2D(_Pool2D):
    """Mean over ``kernel_size`` windows (PyTorch ``nn.AvgPool2d``, ``count_include_pad=True``).

    Padding counts as zeros and every window divides by ``kh*kw``.

    Parameters
    ----------
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default kernel_size
    padding : int or (ph, pw), default 0; at most half the kernel size
    """

    def _forward(self, x):
        _check_rank4(x, "x")
        ho, wo = self._out_hw(x.shape[2], x.shape[3], "x", x.shape)
        out = np.empty(x.shape[:2] + (ho, wo), x.dtype)
        _k.avgpool2d_forward(x, *self.kernel_size, *self.stride, *self.padding, out)
        return out, None

    def _backward(self, dy, saved, x_shape):
        dx = np.empty(x_shape, dy.dtype)
        _k.avgpool2d_backward(dy, *self.kernel_size, *self.stride, *self.padding, dx)
        return dx

    def _forward_cuda(self, x):
        ho, wo = self._out_hw(x.shape[2], x.shape[3], "x", x.shape)
        out = backend.empty(x.shape[:2] + (ho, wo), x.dtype, "cuda")
        backend.cuda_kernels().conv.avgpool2d_forward(x, *self.kernel_size, *self.stride, *self.padding, out)
        return out, None

    def _backward_cuda(self, dy, saved, x_shape):
        dx = backend.empty(x_shape, dy.dtype, "cuda")
        backend.cuda_kernels().conv.avgpool2d_backward(dy, *self.kernel_size, *self.stride, *self.padding, dx)
        return dx


class GlobalAvgPool2D(_Stateless):
    """Mean over height and width: ``(N, C, H, W) -> (N, C)``."""

    _min_ndim = 4
    _axes = "(batch, channels, height, width)"

    def compute_output_shape(self, input_shape) -> tuple:
        s = tuple(input_shape)
        if len(s) != 4:
            raise ValueError(f"input_shape: expected (batch, channels, height, width), got {s}")
        return s[:2]

    def _forward(self, x):
        _check_rank4(x, "x")
        return x.mean(axis=(2, 3)), None

    def _backward(self, dy, saved, x_shape):
        scale = dy.dtype.type(1.0 / (x_shape[2] * x_shape[3]))
        return np.ascontiguousarray(np.broadcast_to((dy * scale)[:, :, None, None], x_shape))

    def _forward_cuda(self, x):
        out = backend.empty(x.shape[:2], x.dtype, "cuda")
        backend.cuda_kernels().conv.global_avgpool2d_forward(x, out)
        return out, None

    def _backward_cuda(self, dy, saved, x_shape):
        dx = backend.empty(x_shape, dy.dtype, "cuda")
        backend.cuda_kernels().conv.global_avgpool2d_backward(dy, dx)
        return dx
