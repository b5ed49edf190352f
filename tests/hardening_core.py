"""The common part of the hardening suite: outcomes, the ``Case`` record and how a case is
judged, and the array mutations every spec is put through."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from diy_nn import _core
from hardening_refs import RefError

# outcomes
OUTCOMES = ("result", "error", "wrong", "bad_error", "crash", "pending")
RESULT, ERROR, WRONG, BAD_ERROR, CRASH, PENDING = (
    "result",  # the right result
    "error",  # a ValueError/TypeError as intended, with a clear message
    "wrong",  # a wrong result, a missing error, or an error message that says too little
    "bad_error",  # an exception of another type (IndexError, MemoryError, OverflowError...)
    "crash",  # a Rust panic, an abort or a hang
    "pending",  # the binding this case needs has not landed yet
)


@dataclass
class Case:
    """One call and how to judge it.

    ``call`` runs the code under test. ``ref`` gives the expected value, or raises
    ``RefError`` when an error is expected. ``names``: one of these words must be
    in the error message (the argument); ``actual``: one of these strings too (the
    value given). ``loose``: NaN/inf input: compare only where the reference is
    finite. ``error_ok``: an error is accepted instead of the result (zero sizes).
    """

    name: str
    call: Callable[[], Any]
    ref: Callable[[], Any]
    names: tuple[str, ...] = ()
    actual: tuple[str, ...] = ()
    loose: bool = False
    error_ok: bool = False
    needs: tuple[str, ...] = ()


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + str(shape[0]) + ",)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"


# --- comparing ------------------------------------------------------------------------


def _tol(dtype: np.dtype) -> dict[str, float]:
    return {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}


def same(got: Any, exp: Any, loose: bool = False) -> str | None:
    """None when ``got`` matches ``exp`` (arrays, tuples of arrays, None, numbers); else why."""
    if isinstance(exp, tuple):
        if not isinstance(got, tuple) or len(got) != len(exp):
            return f"expected a tuple of {len(exp)}, got {type(got).__name__}"
        for g, e in zip(got, exp, strict=True):
            why = same(g, e, loose)
            if why:
                return why
        return None
    if exp is None:
        return None if got is None else f"expected None, got {type(got).__name__}"
    if not isinstance(exp, np.ndarray):
        return None if got == exp else f"expected {exp!r}, got {got!r}"
    if not isinstance(got, np.ndarray):
        return f"expected an ndarray, got {type(got).__name__}"
    if got.shape != exp.shape:
        return f"shape {got.shape}, expected {exp.shape}"
    if got.dtype != exp.dtype:
        return f"dtype {got.dtype}, expected {exp.dtype}"
    if exp.dtype.kind != "f":
        return None if np.array_equal(got, exp) else "values differ"
    if loose:
        mask = np.isfinite(exp)
        g, e = got[mask], exp[mask]
        ok = np.allclose(g, e, **_tol(exp.dtype))
    else:
        ok = np.allclose(got, exp, equal_nan=True, **_tol(exp.dtype))
    if not ok:
        err = np.nanmax(np.abs(np.asarray(got, float) - exp)) if got.size else 0
        return f"values differ (max abs diff {err:.3g})"
    return None


def _shows(value: str, msg: str) -> bool:
    """Whether ``msg`` shows ``value`` (a number must stand alone, not inside another)."""
    if value.lstrip("-").isdigit():
        return re.search(rf"(?<![\d.]){re.escape(value)}(?![\d.])", msg) is not None
    return value in msg


def run_case(case: Case) -> tuple[str, str]:
    """Runs one case; returns (outcome, detail)."""
    missing = [n for n in case.needs if not hasattr(_core, n)]
    if missing:
        return PENDING, f"_core.{missing[0]} has not landed"
    try:
        expected = case.ref()
        want_error = False
    except RefError as e:
        expected, want_error = str(e), True
    except Exception as e:  # noqa: BLE001 - a bug of the reference, reported as such
        return WRONG, f"the reference failed: {type(e).__name__}: {e}"
    try:
        got = case.call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        if not (want_error or case.error_ok or case.loose):
            return WRONG, f"unexpected {type(e).__name__}: {msg}"
        if case.names and not any(n in msg for n in case.names):
            return WRONG, f"message names none of {case.names}: {msg}"
        if case.actual and not any(_shows(a, msg) for a in case.actual):
            return WRONG, f"message shows none of {case.actual}: {msg}"
        return ERROR, f"{type(e).__name__}: {msg}"
    except Exception as e:  # noqa: BLE001 - every other type is a finding
        return BAD_ERROR, f"{type(e).__name__}: {e}"
    except BaseException as e:  # PanicException derives from BaseException
        if type(e).__name__ == "PanicException":
            return CRASH, f"Rust panic: {e}"
        raise
    if want_error:
        return WRONG, f"no error raised (reference: {expected})"
    why = same(got, expected, case.loose)
    return (WRONG, why) if why else (RESULT, "")


# --- array mutations --------------------------------------------------------------------


def fortran(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a)


def strided(a: np.ndarray) -> np.ndarray:
    """The same values in a view with every stride doubled (not contiguous)."""
    if a.ndim == 0:
        return a.copy()
    big = np.zeros(tuple(2 * d for d in a.shape), a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def reversed_view(a: np.ndarray) -> np.ndarray:
    """The same values in a view with negative strides on every axis."""
    flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
    return flipped[tuple(slice(None, None, -1) for _ in a.shape)]


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fortran": fortran,
    "strided": strided,
    "negative": reversed_view,
}

# The dtype each integer array takes (max pooling's argmax positions are int32).
INT_DTYPES = {"argmax": "int32"}
BAD_DTYPES = ("int64", "int32", "uint8", "bool", "float16", "complex128", "object")
BAD_INTS: tuple[Any, ...] = (0, -1, -(2**31), 2**31, 2**62, 2**63 - 1, 2**64, 1.5, None, "2")


def cast(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "object":
        return a.astype(object)
    return a.astype(dtype)


def with_nonfinite(a: np.ndarray) -> np.ndarray:
    """A copy with NaN first, +inf in the middle and -inf last (if there is room)."""
    b = a.copy()
    flat = b.reshape(-1)
    if flat.size:
        flat[0] = np.nan
        flat[flat.size // 2] = np.inf
        if flat.size > 2:
            flat[-1] = -np.inf
    return b
