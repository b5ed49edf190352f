"""``Dropout``: inverted dropout, the identity in evaluation mode."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ._validation import ShapeError, as_float_array, fmt_shape
from .activation import _float_input
from .init import get_rng
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zeroes each input entry with probability ``p`` in training mode and scales the
    others by ``1 / (1 - p)`` (inverted dropout, torch's ``nn.Dropout``), so that the
    expected output is the input; in evaluation mode (``eval()``) it is the identity.

    Forward (training): ``y = x * m / (1 - p)`` with ``m`` a fresh Bernoulli(1 - p)
    mask per call. Derivative: ``dy/dx = m / (1 - p)`` (the mask of the forward pass on
    that input); in evaluation mode ``1``. ``p = 1`` gives zeros (and a zero gradient).

    Args:
        p: the probability of zeroing an entry, in [0, 1] (default 0.5).
        rng: the masks' generator: None (the one ``diy_nn.manual_seed`` seeds),
            an int seed or a numpy Generator.

    Shape: any; the output has the shape of the input.

    The backward pass needs the forward's mask: it is kept with the input it was
    drawn for, and ``backward_delta`` must be given that same array (as
    ``Sequential`` does).

    Example:
        >>> drop = Dropout(0.5, rng=0)
        >>> drop.forward(np.ones((1, 4)))  # doctest: +SKIP
        array([[2., 0., 2., 2.]])
        >>> drop.eval().forward(np.ones((1, 2)))
        array([[1., 1.]])
    """

    _param_names: ClassVar[tuple[str, ...]] = ()
    _grad_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, p: float = 0.5, rng: None | int | np.random.Generator = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"Dropout: p must be a real number in [0, 1], got {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = None if rng is None else get_rng(rng)
        # (the input of the last training forward, the scaled mask m / (1 - p))
        self._last: tuple[object, np.ndarray] | None = None

    def _scaled_mask(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if self.p == 1:
            return np.zeros(shape, dtype)
        keep = np.asarray(get_rng(self._rng).random(shape)) >= self.p
        return keep.astype(dtype) * dtype.type(1 / (1 - self.p))

    def forward(self, X: np.ndarray) -> np.ndarray:
        x = _float_input(X, "Dropout.forward: input")
        if not self.training or self.p == 0:
            self._last = None
            return x.copy() if x is X else x
        mask = self._scaled_mask(x.shape, x.dtype)
        self._last = (X, mask)
        return x * mask

    def backward_delta(self, input: np.ndarray, delta: np.ndarray) -> np.ndarray:
        x = _float_input(input, "Dropout.backward_delta: input")
        d = as_float_array(delta, "Dropout.backward_delta: delta", x.dtype)
        if d.shape != x.shape:
            raise ShapeError(
                f"Dropout.backward_delta: delta must have the shape of input "
                f"{fmt_shape(x.shape)}, got {fmt_shape(d.shape)}"
            )
        if not self.training or self.p == 0:
            return d.copy() if d is delta else d
        if self._last is None or self._last[0] is not input:
            raise ValueError(
                "Dropout.backward_delta: no mask for this input; in training mode the "
                "backward pass needs the very array given to the last forward (its mask)"
            )
        return d * self._last[1]

    def extra_repr(self) -> str:
        return f"p={self.p}"
