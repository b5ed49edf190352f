"""``BatchNorm1D``: batch normalisation of features on the last axis."""

from __future__ import annotations

import numpy as np

from ._validation import ShapeError, as_float_array, check_positive_int, fmt_shape
from .dtype import get_default_dtype, resolve_dtype
from .module import Module

__all__ = ["BatchNorm1D"]


def _number(value: object, name: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"BatchNorm1D: {name} must be a real number, got {value!r}")
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"BatchNorm1D: {name} must be a finite number {bound}, got {value}")
    return float(value)


class BatchNorm1D(Module):
    """Batch normalisation (torch's ``nn.BatchNorm1d``), features on the last axis.

    Training mode: each feature is normalised with the batch's mean ``mu`` and biased
    variance ``var`` over every other axis (``m`` values each):
    ``xhat = (x - mu) / sqrt(var + eps)``, ``y = weight * xhat + bias``; the running
    statistics move as torch's: ``running_mean = (1 - momentum) running_mean +
    momentum mu``, ``running_var = (1 - momentum) running_var + momentum var * m / (m - 1)``
    (the unbiased variance). Evaluation mode: ``running_mean``/``running_var`` replace
    ``mu``/``var``, and the layer is affine.

    Derivatives (training, through the batch statistics; ``g = delta * weight``):
    ``dL/dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)``, the means over
    the ``m`` values of a feature; ``dL/dweight = sum(delta * xhat)``,
    ``dL/dbias = sum(delta)``. Evaluation: ``dL/dx = g / sqrt(running_var + eps)``.

    Args:
        num_features: ``C``, the size of the last axis.
        eps: added to the variance (default 1e-5).
        momentum: the running statistics' update rate, in [0, 1] (default 0.1).
        dtype: float32 or float64 (default: ``get_default_dtype()``).

    Parameters: ``_parameters`` (weight, ones) and ``_bias`` (zeros), shape ``(C,)``,
    gradients ``_gradient``/``_grad_bias``. Buffers (``_buffer_names``; saved in model
    files as torch saves them, not trained): ``running_mean`` (zeros) and ``running_var``
    (ones), shape ``(C,)``, and ``num_batches_tracked``, an int64 count of the training
    batches seen (shape ``()``).

    Shape: input ``(N, C)`` or ``(N, L, C)`` (channels last); output the same. A
    training batch needs more than one value per feature.

    Example:
        >>> bn = BatchNorm1D(3)
        >>> y = bn.forward(np.random.default_rng(0).normal(5, 2, (64, 3)))
        >>> bool(np.allclose(y.mean(0), 0) and np.allclose(y.std(0), 1, atol=1e-3))
        True
    """

    _param_names = ("_parameters", "_bias")
    _grad_names = ("_gradient", "_grad_bias")
    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype: object = None
    ) -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "BatchNorm1D: num_features")
        self.eps = _number(eps, "eps", 0.0)
        if self.eps == 0:
            raise ValueError("BatchNorm1D: eps must be > 0 (it keeps the division finite), got 0")
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        dt = resolve_dtype(get_default_dtype() if dtype is None else dtype)
        c = self.num_features
        self._parameters = np.ones(c, dt)
        self._bias = np.zeros(c, dt)
        self.running_mean = np.zeros(c, dt)
        self.running_var = np.ones(c, dt)
        self.num_batches_tracked = np.zeros((), np.int64)
        self.zero_grad()

    def to(self, dtype: object) -> BatchNorm1D:
        super().to(dtype)
        dt = resolve_dtype(dtype)
        self.running_mean = self.running_mean.astype(dt)
        self.running_var = self.running_var.astype(dt)
        return self

    def _input(self, X: object, name: str) -> np.ndarray:
        dtype = self._parameters.dtype
        x = as_float_array(X, f"BatchNorm1D.{name}: input", dtype)
        if x.ndim not in (2, 3) or x.shape[-1] != self.num_features:
            raise ShapeError(
                f"BatchNorm1D.{name}: input must have shape (N, {self.num_features}) or "
                f"(N, L, {self.num_features}), got {fmt_shape(x.shape)}"
            )
        return x

    def _stats(self, x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The mean and biased variance of each feature over the batch (training mode)."""
        m = x.size // self.num_features
        if m < 2:
            raise ValueError(
                f"BatchNorm1D.{name}: training mode needs more than 1 value per feature, got "
                f"input {fmt_shape(x.shape)}; use eval() for single samples"
            )
        axes = tuple(range(x.ndim - 1))
        mu = x.mean(axis=axes)
        return mu, ((x - mu) ** 2).mean(axis=axes)

    def forward(self, X: np.ndarray) -> np.ndarray:
        x = self._input(X, "forward")
        if self.training:
            mu, var = self._stats(x, "forward")
            m = x.size // self.num_features
            k = self.momentum
            self.running_mean = (1 - k) * self.running_mean + k * mu
            self.running_var = (1 - k) * self.running_var + k * var * (m / (m - 1))
            self.num_batches_tracked = np.asarray(self.num_batches_tracked + 1, np.int64)
        else:
            mu, var = self.running_mean, self.running_var
        inv = 1 / np.sqrt(var + x.dtype.type(self.eps))
        return (x - mu) * (inv * self._parameters) + self._bias

    def _xhat(self, x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``xhat`` and ``1 / sqrt(var + eps)`` for ``x``, with the statistics of the mode."""
        if self.training:
            mu, var = self._stats(x, name)
        else:
            mu, var = self.running_mean, self.running_var
        inv = 1 / np.sqrt(var + x.dtype.type(self.eps))
        return (x - mu) * inv, inv

    def _delta(self, x: np.ndarray, delta: object, name: str) -> np.ndarray:
        d = as_float_array(delta, f"BatchNorm1D.{name}: delta", x.dtype)
        if d.shape != x.shape:
            raise ShapeError(
                f"BatchNorm1D.{name}: delta must have the shape of input "
                f"{fmt_shape(x.shape)}, got {fmt_shape(d.shape)}"
            )
        return d

    def backward_update_gradient(self, input: np.ndarray, delta: np.ndarray) -> None:
        x = self._input(input, "backward_update_gradient")
        d = self._delta(x, delta, "backward_update_gradient")
        xhat, _ = self._xhat(x, "backward_update_gradient")
        if self._gradient is None or self._gradient.shape != self._parameters.shape:
            self.zero_grad()
        axes = tuple(range(x.ndim - 1))
        self._gradient += (d * xhat).sum(axis=axes)
        self._grad_bias += d.sum(axis=axes)

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = self._input(input, "backward_delta")
        d = self._delta(x, delta, "backward_delta")
        xhat, inv = self._xhat(x, "backward_delta")
        g = d * self._parameters
        if not self.training:
            return g * inv
        axes = tuple(range(x.ndim - 1))
        return (g - g.mean(axis=axes) - xhat * (g * xhat).mean(axis=axes)) * inv

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
