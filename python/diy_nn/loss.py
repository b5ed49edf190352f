"""Losses: ``forward(y, yhat)`` gives one cost per sample, ``backward`` d cost / d yhat."""

from __future__ import annotations

import numpy as np

from ._validation import ShapeError, as_float_array, fmt_shape
from .dtype import get_default_dtype

__all__ = ["Loss", "MSELoss"]


class Loss:
    """Base of the losses, with the course's method names.

    ``forward(y, yhat)`` returns the cost of each sample, shape ``(N,)``;
    ``backward(y, yhat)`` returns d cost / d yhat, the shape of ``yhat``. The
    gradient a network receives is that of the *sum* of the per-sample costs.
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        return self.forward(y, yhat)

    def _pair(self, y: np.ndarray, yhat: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
        """Checks ``yhat`` (N, ...) and a ``y`` of the same shape; casts both to one float dtype."""
        name = f"{type(self).__name__}.{op}"
        yhat_arr = np.asarray(yhat)
        dtype = yhat_arr.dtype if yhat_arr.dtype in (np.float32, np.float64) else get_default_dtype()
        yhat_arr = as_float_array(yhat_arr, f"{name}: yhat", dtype, min_ndim=1)
        y_arr = as_float_array(y, f"{name}: y", dtype)
        if y_arr.shape != yhat_arr.shape:
            raise ShapeError(
                f"{name}: y must have the shape of yhat {fmt_shape(yhat_arr.shape)}, "
                f"got {fmt_shape(y_arr.shape)}"
            )
        return y_arr, yhat_arr

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _per_sample(values: np.ndarray) -> np.ndarray:
    """Sums every axis but the batch axis."""
    return values.reshape(values.shape[0], -1).sum(axis=1)


class MSELoss(Loss):
    """Squared error per sample: ``||y - yhat||²`` (summed over features).

    torch counterpart: ``nn.MSELoss(reduction="none")(yhat, y).sum(1)``.

    Shape: ``y``, ``yhat``: ``(N, d)`` (or ``(N,)``); forward ``(N,)``;
    backward ``-2 (y - yhat)``, the shape of ``yhat``.
    """

    def forward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "forward")
        diff = y - yhat
        return _per_sample(diff * diff)

    def backward(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
        y, yhat = self._pair(y, yhat, "backward")
        return 2 * (yhat - y)
