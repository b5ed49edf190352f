"""The default float dtype of new parameters: float64 (numpy's and the course's)."""

from __future__ import annotations

import numpy as np

__all__ = ["get_default_dtype", "set_default_dtype", "resolve_dtype"]

_DEFAULT: np.dtype = np.dtype(np.float64)


def resolve_dtype(dtype: object) -> np.dtype:
    """Returns ``np.dtype(dtype)`` if it is float32 or float64, else raises ``TypeError``."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def set_default_dtype(dtype: object) -> None:
    """Sets the dtype of parameters created from now on (``np.float32`` or ``np.float64``)."""
    global _DEFAULT
    _DEFAULT = resolve_dtype(dtype)


def get_default_dtype() -> np.dtype:
    """The dtype new parameters get (float64 unless changed)."""
    return _DEFAULT
