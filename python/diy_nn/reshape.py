"""Reshaping layers: ``Flatten``."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from ._validation import ShapeError, as_float_array, fmt_shape
from .activation import _float_input
from .module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """Flattens every axis but the batch axis, in C order.

    torch counterpart: ``nn.Flatten()`` (on channels-last data the order is
    ``(L, C)``, not torch's ``(C, L)``).

    Shape: input ``(N, *)``; output ``(N, prod(*))``.

    Views: like ``torch.flatten``, ``forward`` returns a view of ``X`` (and
    ``backward_delta`` one of ``delta``) when numpy's ``reshape`` can make one,
    i.e. for a C-contiguous float32/float64 array; otherwise a new array.
    Writing into the result then writes into the argument: copy it first.

    Example:
        >>> Flatten().forward(np.zeros((2, 3, 4))).shape
        (2, 12)
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _grad_names: ClassVar[tuple[str, ...]] = ()

    def forward(self, X: np.ndarray) -> np.ndarray:
        x = _float_input(X, "Flatten.forward: input")
        if x.ndim < 1:
            raise ShapeError("Flatten.forward: input must have a batch axis, got a scalar")
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = _float_input(input, "Flatten.backward_delta: input")
        expected = (x.shape[0], math.prod(x.shape[1:]))
        if type(delta) is np.ndarray and delta.dtype is x.dtype and delta.shape == expected:
            return delta.reshape(x.shape)
        d = as_float_array(delta, "Flatten.backward_delta: delta", x.dtype)
        if d.shape != expected:
            raise ShapeError(
                f"Flatten.backward_delta: delta must have shape {fmt_shape(expected)}, "
                f"got {fmt_shape(d.shape)}"
            )
        return d.reshape(x.shape)
