"""Stateless maths of the layers (the ``F`` of diy_nn): plain numpy or Rust kernels.

Each function takes and returns ndarrays; the modules call these so that the
forward and backward formulas can be read in one place.
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = [
    "tanh",
    "tanh_backward",
    "sigmoid",
    "sigmoid_backward",
    "threshold",
    "threshold_backward",
    "relu",
    "relu_backward",
]


def tanh(x: np.ndarray) -> np.ndarray:
    """``tanh(x)``, elementwise; its derivative is ``1 - tanh(x)²``.

    The Rust kernel (``rust/math.rs``) that fused dense and conv runs use too.
    """
    return _core.activation(x, _core.Activation.TanH)


def tanh_backward(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """d loss / d x of ``tanh``: ``delta * (1 - tanh(x)²)``, in Rust."""
    return _core.activation_backward(x, delta, _core.Activation.TanH)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``s = 1 / (1 + exp(-x))``, accurate for large ``|x|`` (no overflow, no cancellation).

    Its derivative is ``s (1 - s)``. The Rust kernel (``rust/math.rs``) that fused
    dense and conv runs use too.
    """
    return _core.activation(x, _core.Activation.Sigmoid)


def sigmoid_backward(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """d loss / d x of ``sigmoid``: ``delta * s (1 - s)``, in Rust."""
    return _core.activation_backward(x, delta, _core.Activation.Sigmoid)


def threshold(x: np.ndarray, threshold: float, value: float) -> np.ndarray:
    """``value`` where ``x <= threshold``, else ``x`` (torch's ``F.threshold``): NaN stays NaN."""
    return np.where(x <= threshold, np.asarray(value, dtype=x.dtype), x)


def threshold_backward(x: np.ndarray, delta: np.ndarray, threshold: float) -> np.ndarray:
    """d loss / d x of ``threshold``: 0 where ``x <= threshold``, else ``delta`` (NaN passes)."""
    return np.where(x <= threshold, np.zeros((), delta.dtype), delta)


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``, NaN kept (``threshold(x, 0, 0)`` in one pass)."""
    return np.maximum(x, np.zeros((), x.dtype))


def relu_backward(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """d loss / d x of ``relu``: 0 where ``x <= 0``, else ``delta`` (NaN passes), in Rust."""
    return _core.activation_backward(x, delta, _core.Activation.ReLU)
