"""Convolutions, channels last: ``Conv1D`` on ``(N, L, C)``, ``Conv2D`` on ``(N, H, W, C)``.

Forward and both backward passes run on the Rust kernels (``_core.conv1d``,
``conv1d_backward_input``, ``conv1d_backward_weight`` and the 2-D ones).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _core
from ._validation import as_float_array, check_positive_int, ready
from .init import Initialiser, weight_and_bias
from .module import Module

__all__ = ["Conv1D", "Conv2D"]


class _ConvNd(Module):
    """Shared code of ``Conv1D``/``Conv2D``: parameters, checks, kernel calls.

    Subclasses set ``_nd`` (1 or 2) and ``_kernels`` (the forward, input-gradient
    and weight-gradient kernels).
    """

    _param_names: ClassVar[tuple[str, ...]] = ("_parameters", "_bias")
    _grad_names: ClassVar[tuple[str, ...]] = ("_gradient", "_grad_bias")
    _nd: ClassVar[int] = 1
    _kernels: ClassVar[tuple[Any, ...]] = (
        _core.conv1d,
        _core.conv1d_backward_input,
        _core.conv1d_backward_weight,
    )

    def __init__(
        self,
        k_size: int,
        chan_in: int,
        chan_out: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        init: str | Initialiser = "uniform",
        dtype: object = None,
        rng: None | int | np.random.Generator = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.k_size = check_positive_int(k_size, f"{name}: k_size")
        self.chan_in = check_positive_int(chan_in, f"{name}: chan_in")
        self.chan_out = check_positive_int(chan_out, f"{name}: chan_out")
        self.stride = check_positive_int(stride, f"{name}: stride")
        self.padding = check_positive_int(padding, f"{name}: padding", minimum=0)
        shape = (self.k_size,) * self._nd + (self.chan_in, self.chan_out)
        fan_in = self.k_size**self._nd * self.chan_in
        fan_out = self.k_size**self._nd * self.chan_out
        self._parameters, self._bias = weight_and_bias(
            init, shape, fan_in, fan_out, rng, dtype, bias
        )
        self.zero_grad()

    def _check(self, X: object, op: str) -> np.ndarray:
        dtype = self._parameters.dtype
        if ready(X, dtype, self._nd + 2, self.chan_in):
            return X  # type: ignore[return-value]
        spatial: tuple[str, ...] = ("L",) if self._nd == 1 else ("H", "W")
        name = f"{type(self).__name__}.{op}: input"
        return as_float_array(X, name, dtype, ("N", *spatial, self.chan_in))

    def _check_delta(self, X: np.ndarray, delta: object, op: str) -> np.ndarray:
        expected, dtype = self._out_shape(X.shape), self._parameters.dtype
        if (
            type(delta) is np.ndarray
            and ((dt := delta.dtype) is dtype or dt == dtype)
            and delta.shape == expected
        ):
            return delta
        name = f"{type(self).__name__}.{op}: delta"
        return as_float_array(delta, name, dtype, expected)

    def _out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        cut, s = 2 * self.padding - self.k_size, self.stride
        if len(in_shape) == 3:  # written out: a comprehension costs a call per use
            return (in_shape[0], (in_shape[1] + cut) // s + 1, self.chan_out)
        n, h, w = in_shape[:3]
        return (n, (h + cut) // s + 1, (w + cut) // s + 1, self.chan_out)

    def forward(self, X: np.ndarray) -> np.ndarray:
        x = self._check(X, "forward")
        return self._kernels[0](x, self._parameters, self._bias, self.stride, self.padding)

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        x = self._check(input, "backward_update_gradient")
        d = self._check_delta(x, delta, "backward_update_gradient")
        grad = self._gradient
        if grad is None or grad.shape != self._parameters.shape:
            self.zero_grad()
            grad = self._gradient
        self._kernels[2](x, d, grad, self._grad_bias, self.stride, self.padding)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = self._check(input, "backward_delta")
        d = self._check_delta(x, delta, "backward_delta")
        size = x.shape[1] if self._nd == 1 else x.shape[1:3]
        return self._kernels[1](d, self._parameters, size, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = f"{self.k_size}, {self.chan_in}, {self.chan_out}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        return s + f", bias={self._bias is not None}"


class Conv1D(_ConvNd):
    """1-D convolution (cross-correlation, as torch), channels last.

    Args:
        k_size: kernel length.
        chan_in: input channels.
        chan_out: output channels (number of filters).
        stride: step between two windows (default 1).
        padding: zeros added at both ends (default 0).
        bias: whether to learn one bias per output channel.
        init: ``"uniform"`` (default, U(±1/sqrt(k_size·chan_in))), ``"rand"``,
            ``"xavier"``, ``"he"`` or a callable, as for ``Linear``.
        dtype: float32 or float64 (default: ``diy_nn.get_default_dtype()``).
        rng: None (global generator), a seed or a ``numpy.random.Generator``.

    Shape:
        - input ``(N, L, chan_in)``; output ``(N, L', chan_out)`` with
          ``L' = (L + 2·padding - k_size) // stride + 1``.
        - ``_parameters`` ``(k_size, chan_in, chan_out)`` (torch's weight
          ``(chan_out, chan_in, k_size)`` transposed); ``_bias`` ``(chan_out,)``.

    Forward, with ``X̃`` the input zero padded by ``padding`` at both ends:
    ``Y[n, i, o] = b[o] + Σ_{k, c} X̃[n, i·stride + k, c] · W[k, c, o]``.

    Backward, with ``δ = ∂L/∂Y`` ``(N, L', chan_out)``:
        - ``∂L/∂W[k, c, o] = Σ_{n, i} X̃[n, i·stride + k, c] · δ[n, i, o]`` and
          ``∂L/∂b[o] = Σ_{n, i} δ[n, i, o]``, added to ``_gradient`` and
          ``_grad_bias`` by ``backward_update_gradient``;
        - ``∂L/∂X̃[n, i·stride + k, c] = Σ_o δ[n, i, o] · W[k, c, o]``, summed over
          every ``(i, k)`` that reaches the position (a transposed convolution
          of δ), the padding's part dropped: ``backward_delta``.

    Example:
        >>> conv = Conv1D(3, 1, 5, stride=2, rng=0)
        >>> conv.forward(np.ones((4, 11, 1))).shape
        (4, 5, 5)
    """


class Conv2D(_ConvNd):
    """2-D convolution with a square kernel, channels last.

    Args:
        k_size: kernel height and width.
        chan_in: input channels.
        chan_out: output channels (number of filters).
        stride: step between two windows, on both axes (default 1).
        padding: zeros added on each side of both axes (default 0).
        bias: whether to learn one bias per output channel.
        init: ``"uniform"`` (default, U(±1/sqrt(k_size²·chan_in))), ``"rand"``,
            ``"xavier"``, ``"he"`` or a callable, as for ``Linear``.
        dtype: float32 or float64 (default: ``diy_nn.get_default_dtype()``).
        rng: None (global generator), a seed or a ``numpy.random.Generator``.

    Shape:
        - input ``(N, H, W, chan_in)``; output ``(N, H', W', chan_out)`` with
          ``H' = (H + 2·padding - k_size) // stride + 1`` (same for W).
        - ``_parameters`` ``(k_size, k_size, chan_in, chan_out)`` (torch's weight
          ``(chan_out, chan_in, kh, kw)`` permuted); ``_bias`` ``(chan_out,)``.

    Forward, with ``X̃`` the input zero padded by ``padding`` on each side and
    ``s = stride``:
    ``Y[n, i, j, o] = b[o] + Σ_{ki, kj, c} X̃[n, i·s + ki, j·s + kj, c] · W[ki, kj, c, o]``.

    Backward, with ``δ = ∂L/∂Y`` ``(N, H', W', chan_out)``:
        - ``∂L/∂W[ki, kj, c, o] = Σ_{n, i, j} X̃[n, i·s + ki, j·s + kj, c] · δ[n, i, j, o]``
          and ``∂L/∂b[o] = Σ_{n, i, j} δ[n, i, j, o]``, added to ``_gradient``
          and ``_grad_bias`` by ``backward_update_gradient``;
        - ``∂L/∂X̃[n, i·s + ki, j·s + kj, c] = Σ_o δ[n, i, j, o] · W[ki, kj, c, o]``,
          summed over every ``(i, j, ki, kj)`` that reaches the position (a
          transposed convolution of δ), the padding's part dropped: ``backward_delta``.

    Example:
        >>> conv = Conv2D(3, 1, 8, rng=0)
        >>> conv.forward(np.ones((2, 16, 16, 1))).shape
        (2, 14, 14, 8)
    """

    _nd = 2
    _kernels = (_core.conv2d, _core.conv2d_backward_input, _core.conv2d_backward_weight)
