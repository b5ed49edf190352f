"""The linear (fully connected) layer."""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import numpy as np

from . import _core
from ._validation import as_float_array, check_positive_int, ready
from .init import Initialiser, weight_and_bias
from .module import Module

__all__ = ["Linear"]


@lru_cache(maxsize=64)
def _ones_row(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only ``(1, n)`` row of ones: ``ones·δ`` is ``Σₙ δ`` as one row product
    (the one-row kernel of ``_core.addmm``), the bias gradient without a numpy reduction."""
    row = np.ones((1, n), dtype)
    row.flags.writeable = False
    return row


class Linear(Module):
    """``y = x W + b``.

    Backward, for ``δ = ∂L/∂y``: ``∂L/∂W = Xᵀδ``, ``∂L/∂b = Σₙ δ`` (over the
    batch), ``∂L/∂X = δWᵀ``.

    Args:
        input: number of input features.
        output: number of output features.
        bias: whether to learn an additive bias.
        init: ``"uniform"`` (default, U(±1/sqrt(input))), ``"rand"`` (the
            report's ``2*(rand-0.5)``), ``"xavier"``, ``"he"``, or a callable
            ``(shape, fan_in, fan_out, rng) -> array``. The bias is always drawn
            from U(±1/sqrt(input)) (zero for ``"he"``), as torch does.
        dtype: float32 or float64 (default: ``diy_nn.get_default_dtype()``).
        rng: None (the global generator, see ``diy_nn.manual_seed``), a seed or
            a ``numpy.random.Generator``.

    Shape:
        - input: ``(N, input)``; output: ``(N, output)``.
        - ``_parameters`` (W): ``(input, output)``; ``_bias`` (b): ``(output,)``.

    Example:
        >>> layer = Linear(3, 2, rng=0)
        >>> layer.forward(np.ones((4, 3))).shape
        (4, 2)
    """

    _param_names: ClassVar[tuple[str, ...]] = ("_parameters", "_bias")
    _grad_names: ClassVar[tuple[str, ...]] = ("_gradient", "_grad_bias")

    def __init__(
        self,
        input: int,
        output: int,
        bias: bool = True,
        init: str | Initialiser = "uniform",
        dtype: object = None,
        rng: None | int | np.random.Generator = None,
    ) -> None:
        super().__init__()
        self.input = check_positive_int(input, "Linear: input")
        self.output = check_positive_int(output, "Linear: output")
        self._parameters, self._bias = weight_and_bias(
            init, (self.input, self.output), self.input, self.output, rng, dtype, bias
        )
        self.zero_grad()

    def _check_delta(
        self, X: np.ndarray, delta: np.ndarray, op: str
    ) -> tuple[np.ndarray, np.ndarray]:
        dtype = self._parameters.dtype
        if (  # ready(X, ...) and ready(delta, ...) written out: two calls fewer
            type(X) is np.ndarray
            and type(delta) is np.ndarray
            and ((dt := X.dtype) is dtype or dt == dtype)
            and ((dt := delta.dtype) is dtype or dt == dtype)
            and X.ndim == 2
            and X.shape[1] == self.input
            and delta.shape == (len(X), self.output)
        ):
            return X, delta
        X = as_float_array(X, f"Linear.{op}: input", dtype, ("N", self.input))
        delta = as_float_array(delta, f"Linear.{op}: delta", dtype, (X.shape[0], self.output))
        return X, delta

    def forward(self, X: np.ndarray) -> np.ndarray:
        W = self._parameters
        if not ready(X, W.dtype, 2, self.input):
            X = as_float_array(X, "Linear.forward: input", W.dtype, ("N", self.input))
        return _core.linear(X, W, self._bias)

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        X, delta = self._check_delta(input, delta, "backward_update_gradient")
        grad = self._gradient
        if grad is None or grad.shape != self._parameters.shape:
            self.zero_grad()
            grad = self._gradient
        _core.addmm(grad, X.T, delta)
        if self._bias is not None:
            grad_bias = self._grad_bias  # added in place, without a setattr
            ok = type(grad_bias) is np.ndarray and grad_bias.dtype is delta.dtype
            if ok and grad_bias.shape == (self.output,):
                _core.addmm(grad_bias[None], _ones_row(len(delta), delta.dtype), delta)
            else:
                grad_bias += delta.sum(axis=0)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        _, delta = self._check_delta(input, delta, "backward_delta")
        return _core.matmul(delta, self._parameters.T)

    def extra_repr(self) -> str:
        return f"{self.input}, {self.output}, bias={self._bias is not None}"
