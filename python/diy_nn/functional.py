"""Stateless maths of the layers (the ``F`` of diy_nn): plain numpy or Rust kernels.

Each function takes and returns ndarrays; the modules call these so that the
forward and backward formulas can be read in one place.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "tanh",
    "tanh_backward",
    "sigmoid",
    "sigmoid_backward",
    "threshold",
    "threshold_backward",
]


def tanh(x: np.ndarray) -> np.ndarray:
    """``tanh(x)``, elementwise."""
    return np.tanh(x)


def tanh_backward(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """d loss / d x of ``tanh``: ``delta * (1 - tanh(x)²)``."""
    t = np.tanh(x)
    return delta * (1 - t * t)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, accurate for large ``|x|`` (no overflow, no cancellation)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """d loss / d x of ``sigmoid``: ``delta * s (1 - s)``."""
    s = sigmoid(x)
    return delta * s * (1 - s)


def threshold(x: np.ndarray, threshold: float, value: float) -> np.ndarray:
    """``x`` where ``x > threshold``, else ``value`` (torch's ``F.threshold``)."""
    return np.where(x > threshold, x, np.asarray(value, dtype=x.dtype))


def threshold_backward(x: np.ndarray, delta: np.ndarray, threshold: float) -> np.ndarray:
    """d loss / d x of ``threshold``: ``delta`` where ``x > threshold``, else 0."""
    return delta * (x > threshold)
