"""Argument checks shared by every module, loss and optimizer.

Every public entry point checks its arrays here, before any work, so that a
wrong shape or dtype raises a ``ValueError``/``TypeError`` naming the argument,
the expected and the actual value instead of a panic or a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._core import ShapeError

__all__ = [
    "MAX_SIZE",
    "ShapeError",
    "as_float_array",
    "check_n_elements",
    "check_positive_int",
    "fmt_shape",
    "is_float_array",
    "ready",
]

# numpy kinds that can be cast to a float without losing meaning: bool, signed,
# unsigned, float. Complex (would drop the imaginary part), object, strings,
# datetimes and structured dtypes are refused.
_CASTABLE_KINDS = "biuf"


def fmt_shape(shape: Sequence[int | str]) -> str:
    """Formats a shape as numpy prints it: ``(3, 4)``, ``(5,)``."""
    items = [str(d) for d in shape]
    return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"


def as_float_array(
    x: object,
    name: str,
    dtype: np.dtype | type,
    shape: Sequence[int | str | None] | None = None,
    min_ndim: int | None = None,
) -> np.ndarray:
    """Returns ``x`` as an ndarray of ``dtype``, checking its shape.

    Args:
        x: array-like input.
        name: how the error message calls it, e.g. ``"Linear.forward: input"``.
        dtype: the float dtype to cast to (the module's parameters' dtype).
        shape: the expected shape; ``None`` or a string (a symbolic name such as
            ``"N"``) accepts any size on that axis.
        min_ndim: when ``shape`` is None, the least number of dimensions.

    Raises:
        TypeError: ``x`` is not numeric (complex, object, string, ...).
        ValueError: ``x`` has the wrong number of dimensions or sizes.
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    dt = arr.dtype
    if dt.kind not in _CASTABLE_KINDS:
        raise TypeError(
            f"{name} must be a real numeric array (cast to {np.dtype(dtype).name}), got dtype {dt}"
        )
    if shape is not None:
        # an exact match (every size given) needs no walk over the axes
        if arr.shape != shape and not (
            arr.ndim == len(shape)
            and all(not isinstance(d, int) or d == a for d, a in zip(shape, arr.shape, strict=True))
        ):
            expected = tuple("?" if d is None else d for d in shape)
            raise ShapeError(
                f"{name} must have shape {fmt_shape(expected)}, got {fmt_shape(arr.shape)}"
            )
    elif min_ndim is not None and arr.ndim < min_ndim:
        raise ShapeError(
            f"{name} must have at least {min_ndim} dimensions, got shape {fmt_shape(arr.shape)}"
        )
    if dt is not dtype and dt != dtype:
        arr = arr.astype(dtype)
    return arr


def ready(x: object, dtype: np.dtype, ndim: int, last: int) -> bool:
    """Whether ``as_float_array`` would take ``x`` as it is, for a shape of ``ndim``
    axes, the last one ``last`` long and the others free: an ndarray of ``dtype``
    (the layers' cheap first check; anything else goes through the full one). The
    dtype is compared by identity first: numpy hands out one object per built-in dtype."""
    return (
        type(x) is np.ndarray
        and ((dt := x.dtype) is dtype or dt == dtype)
        and x.ndim == ndim
        and x.shape[-1] == last
    )


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def is_float_array(x: object) -> bool:
    """Whether ``x`` is an ndarray of float32 or float64 (native byte order): the
    modules' cheap first check of an input they keep in its own float dtype."""
    return type(x) is np.ndarray and ((dt := x.dtype) is _F32 or dt is _F64 or dt in (_F32, _F64))


# The largest size argument (and number of elements of one parameter) a module
# takes: beyond it an array could not be allocated, or its size would overflow.
MAX_SIZE = 2**31 - 1


def check_positive_int(value: object, name: str, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """Checks a size argument (``k_size``, ``stride``, ``input``...) and returns it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return int(value)


def check_n_elements(shape: Sequence[int], name: str) -> None:
    """Refuses an array of ``shape`` with more than ``MAX_SIZE`` elements (before allocating)."""
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_SIZE:
        raise ValueError(
            f"{name} of shape {fmt_shape(shape)} would have {n} elements, more than {MAX_SIZE}"
        )
