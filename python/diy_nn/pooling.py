"""Pooling, channels last: ``MaxPool1D``/``AvgPool1D`` on ``(N, L, C)``, the 2-D ones on
``(N, H, W, C)``, on the Rust kernels.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from . import _core
from ._validation import ShapeError, as_float_array, check_positive_int, fmt_shape, is_float_array
from .activation import _float_input
from .module import Module

__all__ = ["MaxPool1D", "AvgPool1D", "MaxPool2D", "AvgPool2D"]


class _PoolNd(Module):
    """Shared code of the pools: sizes, checks, output shape, the kernel calls.

    Max pools keep the argmax of their last forward with its input and reuse
    it when the same array object comes back; any other input is pooled again.
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _grad_names: ClassVar[tuple[str, ...]] = ()
    _nd: ClassVar[int] = 1
    _op: ClassVar[str] = "max_pool1d"

    def __init__(self, k_size: int, stride: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.k_size = check_positive_int(k_size, f"{name}: k_size")
        self.stride = (
            self.k_size if stride is None else check_positive_int(stride, f"{name}: stride")
        )
        self._last_input: object = None
        self._argmax: np.ndarray | None = None

    def _check(self, X: object, op: str) -> np.ndarray:
        if is_float_array(X):  # the message of the full check is built only when needed
            x: np.ndarray = X  # type: ignore[assignment]
        else:
            x = _float_input(X, f"{type(self).__name__}.{op}: input")  # type: ignore[arg-type]
        if x.ndim != self._nd + 2 or min(x.shape[1:-1]) < self.k_size:
            layout = "(N, L, C)" if self._nd == 1 else "(N, H, W, C)"
            raise ShapeError(
                f"{type(self).__name__}.{op}: input must have shape {layout} with each spatial "
                f"size >= k_size={self.k_size}, got {fmt_shape(x.shape)}"
            )
        return x

    def _size(self, x: np.ndarray) -> int | tuple[int, int]:
        return x.shape[1] if self._nd == 1 else (x.shape[1], x.shape[2])

    def _check_delta(self, x: np.ndarray, delta: object) -> np.ndarray:
        k, s, shape = self.k_size, self.stride, x.shape
        if self._nd == 1:
            expected: tuple[int, ...] = (shape[0], (shape[1] - k) // s + 1, shape[2])
        else:
            expected = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1, shape[3])
        if type(delta) is np.ndarray and delta.dtype is x.dtype and delta.shape == expected:
            return delta
        return as_float_array(
            delta, f"{type(self).__name__}.backward_delta: delta", x.dtype, expected
        )

    def extra_repr(self) -> str:
        return f"{self.k_size}, stride={self.stride}"


class _MaxPool(_PoolNd):
    def forward(self, X: np.ndarray) -> np.ndarray:
        x = self._check(X, "forward")
        y, self._argmax = getattr(_core, self._op)(x, self.k_size, self.stride)
        self._last_input = X
        return y

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = self._check(input, "backward_delta")
        if input is not self._last_input or self._argmax is None:
            self.forward(input)
        d = self._check_delta(x, delta)
        kernel = getattr(_core, self._op + "_backward")
        return kernel(d, self._argmax, self._size(x), self.k_size, self.stride)


class _AvgPool(_PoolNd):
    def forward(self, X: np.ndarray) -> np.ndarray:
        x = self._check(X, "forward")
        return getattr(_core, self._op)(x, self.k_size, self.stride)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = self._check(input, "backward_delta")
        d = self._check_delta(x, delta)
        kernel = getattr(_core, self._op + "_backward")
        return kernel(d, self._size(x), self.k_size, self.stride)


class MaxPool1D(_MaxPool):
    """Maximum over windows of ``k_size`` steps, channel by channel.

    Args:
        k_size: window length.
        stride: step between windows (default: ``k_size``).

    torch counterpart: ``nn.MaxPool1d(k_size, stride)`` on ``(N, C, L)``.

    Shape: input ``(N, L, C)``; output ``(N, (L - k_size) // stride + 1, C)``.

    Forward: ``Y[n, i, c] = max_{k < k_size} X[n, i·stride + k, c]``, at the
    position ``argmax[n, i, c]`` (the first maximum; a NaN wins).
    Backward: ``δ = ∂L/∂Y`` is routed to the argmax:
    ``∂L/∂X[n, p, c] = Σ_{i : argmax[n, i, c] = p} δ[n, i, c]``, 0 elsewhere
    (overlapping windows add up their shares).

    Example:
        >>> MaxPool1D(2, 2).forward(np.arange(6.0).reshape(1, 6, 1))[0, :, 0]
        array([1., 3., 5.])
    """


class AvgPool1D(_AvgPool):
    """Mean over windows of ``k_size`` steps, channel by channel.

    Args:
        k_size: window length.
        stride: step between windows (default: ``k_size``).

    torch counterpart: ``nn.AvgPool1d(k_size, stride)`` on ``(N, C, L)``.

    Shape: input ``(N, L, C)``; output ``(N, (L - k_size) // stride + 1, C)``.

    Forward: ``Y[n, i, c] = (1/k_size) Σ_{k < k_size} X[n, i·stride + k, c]``.
    Backward: each window spreads ``δ/k_size`` over its positions:
    ``∂L/∂X[n, i·stride + k, c] += δ[n, i, c] / k_size`` for every ``k < k_size``.

    Example:
        >>> AvgPool1D(2).forward(np.arange(4.0).reshape(1, 4, 1))[0, :, 0]
        array([0.5, 2.5])
    """

    _op = "avg_pool1d"


class MaxPool2D(_MaxPool):
    """Maximum over ``k_size x k_size`` windows, channel by channel.

    Args:
        k_size: window height and width.
        stride: step between windows on both axes (default: ``k_size``).

    torch counterpart: ``nn.MaxPool2d(k_size, stride)`` on ``(N, C, H, W)``.

    Shape: input ``(N, H, W, C)``; output ``(N, (H - k) // stride + 1, (W - k) // stride + 1, C)``.

    Forward, with ``s = stride``: ``Y[n, i, j, c] = max_{ki, kj < k} X[n, i·s + ki, j·s + kj, c]``,
    at the flat position ``argmax[n, i, j, c] = h·W + w`` (the first maximum in
    row-major order; a NaN wins).
    Backward: ``δ = ∂L/∂Y`` is routed to the argmax:
    ``∂L/∂X[n, h, w, c] = Σ_{(i, j) : argmax[n, i, j, c] = h·W + w} δ[n, i, j, c]``,
    0 elsewhere.

    Example:
        >>> MaxPool2D(2).forward(np.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
        array([[ 5.,  7.],
               [13., 15.]])
    """

    _nd = 2
    _op = "max_pool2d"


class AvgPool2D(_AvgPool):
    """Mean over ``k_size x k_size`` windows, channel by channel.

    Args:
        k_size: window height and width.
        stride: step between windows on both axes (default: ``k_size``).

    torch counterpart: ``nn.AvgPool2d(k_size, stride)`` on ``(N, C, H, W)``.

    Shape: input ``(N, H, W, C)``; output ``(N, (H - k) // stride + 1, (W - k) // stride + 1, C)``.

    Forward, with ``s = stride``:
    ``Y[n, i, j, c] = (1/k²) Σ_{ki, kj < k} X[n, i·s + ki, j·s + kj, c]``.
    Backward: each window spreads ``δ/k²`` over its ``k²`` positions:
    ``∂L/∂X[n, i·s + ki, j·s + kj, c] += δ[n, i, j, c] / k²``.

    Example:
        >>> AvgPool2D(2).forward(np.ones((1, 4, 4, 1))).shape
        (1, 2, 2, 1)
    """

    _nd = 2
    _op = "avg_pool2d"
