"""Elementwise activations: no parameters, any input shape."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import _core
from . import functional as F
from ._validation import ShapeError, as_float_array, fmt_shape, is_float_array
from .dtype import get_default_dtype
from .module import Module

__all__ = ["TanH", "Sigmoid", "Sigmoide", "Threshold", "ReLU", "SoftMax", "LogSoftMax"]


def _float_input(x: np.ndarray, name: str) -> np.ndarray:
    """Keeps float32/float64 inputs as they are; casts other real numbers to the default."""
    if is_float_array(x):
        return x
    arr = np.asarray(x)
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else get_default_dtype()
    return as_float_array(arr, name, dtype)


class _Elementwise(Module):
    """Base of the activations: checks input and delta, then calls ``_f`` / ``_df``."""

    _param_names: ClassVar[tuple[str, ...]] = ()
    _grad_names: ClassVar[tuple[str, ...]] = ()

    def _f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, X: np.ndarray) -> np.ndarray:
        if is_float_array(X):  # the message of the full check is built only when needed
            return self._f(X)
        return self._f(_float_input(X, f"{type(self).__name__}.forward: input"))

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        if (
            is_float_array(input)
            and type(delta) is np.ndarray
            and delta.dtype is input.dtype
            and delta.shape == input.shape
        ):
            return self._df(input, delta)
        name = type(self).__name__
        x = _float_input(input, f"{name}.backward_delta: input")
        d = as_float_array(delta, f"{name}.backward_delta: delta", x.dtype)
        if d.shape != x.shape:
            raise ShapeError(
                f"{name}.backward_delta: delta must have the shape of input "
                f"{fmt_shape(x.shape)}, got {fmt_shape(d.shape)}"
            )
        return self._df(x, d)


class TanH(_Elementwise):
    """``tanh(x)``.

    Backward: ``∂L/∂x = δ ⊙ (1 - tanh(x)²)``.

    Shape: any; the output has the shape of the input.
    """

    def _f(self, x: np.ndarray) -> np.ndarray:
        return F.tanh(x)

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return F.tanh_backward(x, delta)


class Sigmoid(_Elementwise):
    """``s = 1 / (1 + exp(-x))``.

    Backward: ``∂L/∂x = δ ⊙ s (1 - s)``.

    Shape: any; the output has the shape of the input.
    """

    def _f(self, x: np.ndarray) -> np.ndarray:
        return F.sigmoid(x)

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return F.sigmoid_backward(x, delta)


Sigmoide = Sigmoid  # the course's French name


class Threshold(_Elementwise):
    """``value`` where ``x <= threshold``, else ``x`` (torch's ``nn.Threshold``); NaN stays NaN.

    Backward: ``∂L/∂x = δ`` where ``x > threshold`` (or NaN), else 0.

    Args:
        threshold: the cut-off.
        value: what replaces the inputs at or below it.

    Shape: any; the output has the shape of the input.
    """

    def __init__(self, threshold: float, value: float) -> None:
        super().__init__()
        for name, v in (("threshold", threshold), ("value", value)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"Threshold: {name} must be a real number, got {v!r}")
        self.threshold = float(threshold)
        self.value = float(value)

    def _f(self, x: np.ndarray) -> np.ndarray:
        return F.threshold(x, self.threshold, self.value)

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return F.threshold_backward(x, delta, self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}"


class ReLU(Threshold):
    """``max(x, 0)``, NaN kept: a ``Threshold(0, 0)``.

    Backward: ``∂L/∂x = δ`` where ``x > 0`` (or NaN), else 0.

    Shape: any; the output has the shape of the input.
    """

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)

    def _f(self, x: np.ndarray) -> np.ndarray:
        return F.relu(x)

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return F.relu_backward(x, delta)

    def extra_repr(self) -> str:
        return ""


class _LastAxis(Module):
    """Base of ``SoftMax``/``LogSoftMax``: input ``(N, k)``; runs the ``_op`` kernel.

    The backward pass needs the output ``y`` for ``input``: it computes it
    again, so nothing is kept that the caller could change in place (the
    returned output) or that outlives its use.
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _grad_names: ClassVar[tuple[str, ...]] = ()
    _op: ClassVar[str] = "softmax"

    def forward(self, X: np.ndarray) -> np.ndarray:
        x = _float_input(X, f"{type(self).__name__}.forward: input")
        if x.ndim != 2 or x.shape[1] == 0:
            raise ShapeError(
                f"{type(self).__name__}.forward: input must have shape (N, k) with k >= 1, "
                f"got {fmt_shape(x.shape)}"
            )
        return getattr(_core, self._op)(x)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        y = self.forward(input)
        d = as_float_array(delta, f"{type(self).__name__}.backward_delta: delta", y.dtype, y.shape)
        return getattr(_core, self._op + "_backward")(y, d)


class SoftMax(_LastAxis):
    """``y_j = exp(x_j) / sum_i exp(x_i)`` over the last axis, stable (row max subtracted).

    Backward: ``∂L/∂x = y ⊙ (δ - Σ_j y_j δ_j)`` (per row).

    torch counterpart: ``nn.Softmax(dim=-1)``.

    Shape: input ``(N, k)``; output ``(N, k)``, rows summing to 1.

    Example:
        >>> SoftMax().forward(np.zeros((1, 4)))
        array([[0.25, 0.25, 0.25, 0.25]])
    """


class LogSoftMax(_LastAxis):
    """``y_j = x_j - log sum_i exp(x_i)`` over the last axis, stable (row max subtracted).

    Backward: ``∂L/∂x = δ - softmax(x) Σ_j δ_j`` (per row).

    torch counterpart: ``nn.LogSoftmax(dim=-1)``.

    Shape: input ``(N, k)``; output ``(N, k)``.

    Example:
        >>> np.exp(LogSoftMax().forward(np.zeros((1, 2))))
        array([[0.5, 0.5]])
    """

    _op = "log_softmax"


# --- LeakyReLU and Softplus (issue 14) ---------------------------------------------------
__all__ += ["LeakyReLU", "Softplus"]


def _real(value: object, name: str) -> float:
    """A finite real hyper-parameter as a float (``TypeError``/``ValueError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


class _Kernel(_Elementwise):
    """An activation computed by ``_core.activation`` (forward) and
    ``_core.activation_backward`` (from the input, exact) for its ``kernel``."""

    @property
    def kernel(self) -> Any:
        raise NotImplementedError

    def _f(self, x: np.ndarray) -> np.ndarray:
        return _core.activation(x, self.kernel)

    def _df(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return _core.activation_backward(x, delta, self.kernel)


class LeakyReLU(_Kernel):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (torch's ``nn.LeakyReLU``).

    Derivative: ``1`` where ``x > 0``, else ``negative_slope`` (at 0 too, as torch).
    NaN stays NaN, forward and backward (torch's backward gives ``negative_slope``
    there). Fused into a dense run when ``negative_slope >= 0`` (its derivative
    then reads the same on the output).

    Args:
        negative_slope: the slope for negative inputs (default 0.01).

    Shape: any; the output has the shape of the input.

    Example:
        >>> LeakyReLU(0.1).forward(np.array([-2.0, 3.0]))
        array([-0.2,  3. ])
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _real(negative_slope, "LeakyReLU: negative_slope")

    @property
    def kernel(self) -> tuple[_core.Activation, float]:
        """The Rust activation this layer runs (also in fused dense runs)."""
        return (_core.Activation.LeakyReLU, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Softplus(_Kernel):
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``
    (torch's ``nn.Softplus``: there the two agree to rounding and exp would overflow).

    Derivative: ``sigmoid(beta * x)`` (``1`` where ``beta * x > threshold``). From the
    output ``y`` it is ``1 - exp(-beta * y)``, exact to within ``exp(-threshold)``
    (just above ``threshold / beta`` an output can come from either branch): a dense
    run fuses the layer only where that is below the dtype's rounding.

    Args:
        beta: the sharpness (default 1; finite and non-zero).
        threshold: above ``beta * x > threshold`` the layer is the identity (default 20).

    Shape: any; the output has the shape of the input.

    Example:
        >>> float(Softplus().forward(np.zeros(1))[0])  # log 2
        0.6931471805599453
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _real(beta, "Softplus: beta")
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero (it divides the output), got 0")
        self.threshold = _real(threshold, "Softplus: threshold")

    @property
    def kernel(self) -> tuple[_core.Activation, float, float]:
        """The Rust activation this layer runs (also in fused dense runs)."""
        return (_core.Activation.Softplus, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"
