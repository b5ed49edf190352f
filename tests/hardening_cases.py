"""Case tables of the hardening suite (issue 7), and the child process that runs them.

Every binding of ``diy_nn._core`` has a ``BindingSpec`` and every public module and
loss of ``diy_nn.__all__`` a ``ModuleSpec``/``LossSpec``: a small valid call plus a
reference. From each spec the same mutations are generated: wrong ndim, mismatched
and zero sizes, Fortran / strided / negative-stride views, integer, bool, complex,
object and float16 dtypes, NaN and inf, bad integer arguments (0, negative, huge,
not an int). The reference (numpy, strict about shapes) says what the right
answer is; a case passes when the call gives that answer, or raises the
ValueError/TypeError the reference expects with a message naming the argument
and showing the actual value.

Run as a script (``python tests/hardening_cases.py START``) it runs the cases from
index START and prints one JSON line per case, after a ``{"start": i}`` line
flushed before the call, so that the parent (``test_hardening.py``) can tell which
case killed or hung the process and carry on after it.
"""

from __future__ import annotations

import json
import math
import re
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import diy_nn as nn
import numpy as np
from diy_nn import _core

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


class RefError(Exception):
    """The reference refuses the arguments: the call under test must raise."""


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


# --- references (numpy, strict) ----------------------------------------------------------


def _arr(a: Any, name: str, ndim: int, kind: str = "f") -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise RefError(f"{name} must be an ndarray")
    if kind == "f" and a.dtype not in (np.float32, np.float64):
        raise RefError(f"{name} must be float32/float64")
    if kind == "i" and a.dtype != np.int64:
        raise RefError(f"{name} must be int64")
    if kind == "i32" and a.dtype != np.int32:
        raise RefError(f"{name} must be int32")
    if a.ndim != ndim:
        raise RefError(f"{name} must have {ndim} dims")
    return a


def _same_dtype(*arrays: np.ndarray | None) -> np.dtype:
    dts = {a.dtype for a in arrays if a is not None}
    if len(dts) != 1:
        raise RefError("dtypes differ")
    return dts.pop()


def _int(v: Any, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise RefError(f"{name} must be an int")
    if v < minimum or v >= 2**63:
        raise RefError(f"{name} out of range")
    return int(v)


def _shape(a: np.ndarray, expected: tuple[int, ...], name: str) -> None:
    if a.shape != expected:
        raise RefError(f"{name} must have shape {expected}, got {a.shape}")


MAX_ELEMENTS = 2**26  # a reference output larger than this: the call must refuse it


def _out(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if math.prod(shape) > MAX_ELEMENTS:
        raise RefError(f"output {shape} too large")
    return np.zeros(shape, dtype)


def _pad(x: np.ndarray, p: int, axes: tuple[int, ...]) -> np.ndarray:
    if p > 2**20:
        raise RefError("padding too large")
    width = [(p, p) if i in axes else (0, 0) for i in range(x.ndim)]
    return np.pad(x, width)


def _out_len(n: int, k: int, s: int, p: int, name: str) -> int:
    if n + 2 * p < k:
        raise RefError(f"{name}: kernel larger than input")
    return (n + 2 * p - k) // s + 1


def _rows(a: np.ndarray) -> np.ndarray:
    """``(N, ...)`` as ``(N, prod(...))``, zero sizes included."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _cols(a: np.ndarray) -> np.ndarray:
    """``(..., C)`` as ``(prod(...), C)``."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _mid(a: np.ndarray) -> np.ndarray:
    """``(N, ..., C)`` as ``(N, prod(...), C)``."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:-1]), a.shape[-1])


def ref_matmul(a: Any, b: Any) -> np.ndarray:
    a, b = _arr(a, "a", 2), _arr(b, "b", 2)
    _same_dtype(a, b)
    _shape(b, (a.shape[1], b.shape[1]), "b")
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(a.dtype)


def ref_addmm(out: Any, a: Any, b: Any, alpha: Any = 1.0, beta: Any = 1.0) -> np.ndarray:
    out, a, b = _arr(out, "out", 2), _arr(a, "a", 2), _arr(b, "b", 2)
    _same_dtype(out, a, b)
    _shape(b, (a.shape[1], b.shape[1]), "b")
    _shape(out, (a.shape[0], b.shape[1]), "out")
    prod = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    res = prod if beta == 0 else beta * out.astype(np.float64) + prod
    return res.astype(out.dtype)


def ref_linear(x: Any, w: Any, b: Any = None) -> np.ndarray:
    x, w = _arr(x, "x", 2), _arr(w, "w", 2)
    if b is not None:
        b = _arr(b, "b", 1)
        _shape(b, (w.shape[1],), "b")
    _same_dtype(x, w, b)
    _shape(w, (x.shape[1], w.shape[1]), "w")
    y = x.astype(np.float64) @ w.astype(np.float64)
    return (y if b is None else y + b).astype(x.dtype)


def _conv_dims(nd: int, x: Any, w: Any, stride: Any, padding: Any) -> tuple[Any, ...]:
    x, w = _arr(x, "x", nd + 2), _arr(w, "w", nd + 2)
    s, p = _int(stride, "stride", 1), _int(padding, "padding", 0)
    k = w.shape[0]
    if nd == 2 and w.shape[1] != k:
        raise RefError("kernel not square")
    if w.shape[nd] != x.shape[-1]:
        raise RefError("w Cin")
    return x, w, k, s, p


def ref_conv(nd: int) -> Callable[..., np.ndarray]:
    def ref(x: Any, w: Any, b: Any = None, stride: Any = 1, padding: Any = 0) -> np.ndarray:
        x, w, k, s, p = _conv_dims(nd, x, w, stride, padding)
        if b is not None:
            b = _arr(b, "b", 1)
            _shape(b, (w.shape[-1],), "b")
        dt = _same_dtype(x, w, b)
        outs = [_out_len(n, k, s, p, "x") for n in x.shape[1:-1]]
        y = _out((x.shape[0], *outs, w.shape[-1]), dt).astype(np.float64)
        xp = _pad(x.astype(np.float64), p, tuple(range(1, nd + 1)))
        for pos in np.ndindex(*outs):
            win = tuple(slice(i * s, i * s + k) for i in pos)
            patch = _rows(xp[(slice(None), *win)])
            y[(slice(None), *pos)] = patch @ _cols(w)
        if b is not None:
            y += b
        return y.astype(dt)

    return ref


def ref_conv_backward_input(nd: int) -> Callable[..., np.ndarray]:
    def ref(delta: Any, w: Any, size: Any, stride: Any = 1, padding: Any = 0) -> np.ndarray:
        delta, w = _arr(delta, "delta", nd + 2), _arr(w, "w", nd + 2)
        dt = _same_dtype(delta, w)
        if nd == 1:
            sizes = (_int(size, "input_len", 0),)
        else:
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise RefError("input_hw must be a pair")
            sizes = (_int(size[0], "input_hw", 0), _int(size[1], "input_hw", 0))
        s, p = _int(stride, "stride", 1), _int(padding, "padding", 0)
        k = w.shape[0]
        if nd == 2 and w.shape[1] != k:
            raise RefError("kernel not square")
        if delta.shape[-1] != w.shape[-1]:
            raise RefError("delta Cout")
        outs = tuple(_out_len(n, k, s, p, "input") for n in sizes)
        _shape(delta, (delta.shape[0], *outs, w.shape[-1]), "delta")
        _out((delta.shape[0], *sizes, w.shape[nd]), dt)
        dxp = np.zeros((delta.shape[0], *(n + 2 * p for n in sizes), w.shape[nd]))
        wf = _cols(w.astype(np.float64))
        for pos in np.ndindex(*outs):
            win = tuple(slice(i * s, i * s + k) for i in pos)
            contrib = delta[(slice(None), *pos)].astype(np.float64) @ wf.T
            dxp[(slice(None), *win)] += contrib.reshape(delta.shape[0], *w.shape[:-1])
        inner = tuple(slice(p, p + n) for n in sizes)
        return dxp[(slice(None), *inner)].astype(dt)

    return ref


def ref_conv_backward_weight(nd: int) -> Callable[..., tuple[np.ndarray, np.ndarray | None]]:
    def ref(
        x: Any, delta: Any, grad_w: Any, grad_b: Any = None, stride: Any = 1, padding: Any = 0
    ) -> tuple[np.ndarray, np.ndarray | None]:
        grad_w = _arr(grad_w, "grad_w", nd + 2)
        x, w, k, s, p = _conv_dims(nd, x, grad_w, stride, padding)
        delta = _arr(delta, "delta", nd + 2)
        if grad_b is not None:
            grad_b = _arr(grad_b, "grad_b", 1)
            _shape(grad_b, (w.shape[-1],), "grad_b")
        dt = _same_dtype(x, delta, grad_w, grad_b)
        outs = tuple(_out_len(n, k, s, p, "x") for n in x.shape[1:-1])
        _shape(delta, (x.shape[0], *outs, w.shape[-1]), "delta")
        gw = _cols(grad_w.astype(np.float64))
        xp = _pad(x.astype(np.float64), p, tuple(range(1, nd + 1)))
        for pos in np.ndindex(*outs):
            win = tuple(slice(i * s, i * s + k) for i in pos)
            patch = _rows(xp[(slice(None), *win)])
            gw += patch.T @ delta[(slice(None), *pos)].astype(np.float64)
        gb = None
        if grad_b is not None:
            gb = (grad_b + _cols(delta).sum(axis=0)).astype(dt)
        return gw.reshape(grad_w.shape).astype(dt), gb

    return ref


def _pool_windows(nd: int, x: np.ndarray, k: int, s: int) -> tuple[list[int], Any]:
    outs = [_out_len(n, k, s, 0, "x") for n in x.shape[1:-1]]
    return outs, np.ndindex(*outs)


def ref_max_pool(nd: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def ref(x: Any, k: Any, stride: Any) -> tuple[np.ndarray, np.ndarray]:
        x = _arr(x, "x", nd + 2)
        k, s = _int(k, "k", 1), _int(stride, "stride", 1)
        outs, positions = _pool_windows(nd, x, k, s)
        y = _out((x.shape[0], *outs, x.shape[-1]), x.dtype)
        idx = np.zeros(y.shape, np.int32)
        width = x.shape[2] if nd == 2 else 1
        for pos in positions:
            win = tuple(slice(i * s, i * s + k) for i in pos)
            patch = _mid(x[(slice(None), *win)])
            y[(slice(None), *pos)] = patch.max(axis=1)
            j = patch.argmax(axis=1)  # first maximum, window-relative, row major
            if nd == 1:
                idx[:, pos[0]] = pos[0] * s + j
            else:
                idx[:, pos[0], pos[1]] = (pos[0] * s + j // k) * width + pos[1] * s + j % k
        return y, idx

    return ref


def ref_avg_pool(nd: int) -> Callable[..., np.ndarray]:
    def ref(x: Any, k: Any, stride: Any) -> np.ndarray:
        x = _arr(x, "x", nd + 2)
        k, s = _int(k, "k", 1), _int(stride, "stride", 1)
        outs, positions = _pool_windows(nd, x, k, s)
        y = _out((x.shape[0], *outs, x.shape[-1]), x.dtype).astype(np.float64)
        for pos in positions:
            win = tuple(slice(i * s, i * s + k) for i in pos)
            patch = x[(slice(None), *win)].astype(np.float64)
            y[(slice(None), *pos)] = _mid(patch).mean(axis=1)
        return y.astype(x.dtype)

    return ref


def _sizes(nd: int, size: Any, name: str) -> tuple[int, ...]:
    if nd == 1:
        return (_int(size, name, 0),)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise RefError(f"{name} must be a pair")
    return (_int(size[0], name, 0), _int(size[1], name, 0))


def ref_max_pool_backward(nd: int) -> Callable[..., np.ndarray]:
    def ref(delta: Any, argmax: Any, size: Any) -> np.ndarray:
        delta = _arr(delta, "delta", nd + 2)
        argmax = _arr(argmax, "argmax", nd + 2, kind="i32")
        sizes = _sizes(nd, size, "input_len" if nd == 1 else "input_hw")
        _shape(argmax, delta.shape, "argmax")
        dx = _out((delta.shape[0], *sizes, delta.shape[-1]), delta.dtype).astype(np.float64)
        flat = _mid(dx)
        limit = math.prod(sizes)
        if argmax.size and (argmax.min() < 0 or argmax.max() >= limit):
            raise RefError("argmax out of range")
        a = _mid(argmax)
        d = _mid(delta).astype(np.float64)
        for n in range(a.shape[0]):
            for c in range(a.shape[2]):
                np.add.at(flat[n, :, c], a[n, :, c], d[n, :, c])
        return dx.astype(delta.dtype)

    return ref


def ref_conv_maxpool(nd: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def ref(
        x: Any, w: Any, b: Any, stride: Any, padding: Any, k: Any, pool_stride: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        k, ps = _int(k, "k", 1), _int(pool_stride, "pool_stride", 1)
        conv = ref_conv(nd)(x, w, b, stride, padding)
        return ref_max_pool(nd)(conv, k, ps)

    return ref


def ref_conv_maxpool_backward(nd: int) -> Callable[..., tuple[np.ndarray, np.ndarray | None]]:
    def ref(
        x: Any,
        w: Any,
        delta: Any,
        argmax: Any,
        grad_w: Any,
        grad_b: Any,
        stride: Any,
        padding: Any,
        k: Any,
        pool_stride: Any,
        input_delta: Any,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        x, w, kw, s, p = _conv_dims(nd, x, w, stride, padding)
        grad_w = _arr(grad_w, "grad_w", nd + 2)
        delta = _arr(delta, "delta", nd + 2)
        argmax = _arr(argmax, "argmax", nd + 2, kind="i32")
        if grad_b is not None:
            grad_b = _arr(grad_b, "grad_b", 1)
        _same_dtype(x, w, delta, grad_w, grad_b)
        _shape(grad_w, w.shape, "grad_w")
        k, ps = _int(k, "k", 1), _int(pool_stride, "pool_stride", 1)
        conv_out = tuple(_out_len(n, kw, s, p, "x") for n in x.shape[1:-1])
        pooled = tuple(_out_len(n, k, ps, 0, "x") for n in conv_out)
        _shape(delta, (x.shape[0], *pooled, w.shape[-1]), "delta")
        _shape(argmax, delta.shape, "argmax")
        size = conv_out[0] if nd == 1 else conv_out
        dconv = ref_max_pool_backward(nd)(delta, argmax, size)
        return ref_conv_backward_weight(nd)(x, dconv, grad_w, grad_b, stride, padding)

    return ref


def ref_avg_pool_backward(nd: int) -> Callable[..., np.ndarray]:
    def ref(delta: Any, size: Any, k: Any, stride: Any) -> np.ndarray:
        delta = _arr(delta, "delta", nd + 2)
        sizes = _sizes(nd, size, "input_len" if nd == 1 else "input_hw")
        k, s = _int(k, "k", 1), _int(stride, "stride", 1)
        outs = tuple(_out_len(n, k, s, 0, "input") for n in sizes)
        _shape(delta, (delta.shape[0], *outs, delta.shape[-1]), "delta")
        dx = _out((delta.shape[0], *sizes, delta.shape[-1]), delta.dtype).astype(np.float64)
        for pos in np.ndindex(*outs):
            win = tuple(slice(i * s, i * s + k) for i in pos)
            d = delta[(slice(None), *pos)].astype(np.float64) / k**nd
            dx[(slice(None), *win)] += d.reshape(d.shape[0], *([1] * nd), d.shape[-1])
        return dx.astype(delta.dtype)

    return ref


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
    with np.errstate(invalid="ignore", over="ignore"):
        z = x - m
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ref_softmax(x: Any) -> np.ndarray:
    x = _arr(x, "x", 2)
    return np.exp(_log_softmax(x)).astype(x.dtype)


def ref_log_softmax(x: Any) -> np.ndarray:
    x = _arr(x, "x", 2)
    return _log_softmax(x).astype(x.dtype)


def ref_softmax_backward(y: Any, delta: Any) -> np.ndarray:
    y, delta = _arr(y, "y", 2), _arr(delta, "delta", 2)
    _same_dtype(y, delta)
    _shape(delta, y.shape, "delta")
    yf, d = y.astype(np.float64), delta.astype(np.float64)
    return (yf * (d - (d * yf).sum(axis=1, keepdims=True))).astype(y.dtype)


def ref_log_softmax_backward(y: Any, delta: Any) -> np.ndarray:
    y, delta = _arr(y, "y", 2), _arr(delta, "delta", 2)
    _same_dtype(y, delta)
    _shape(delta, y.shape, "delta")
    yf, d = y.astype(np.float64), delta.astype(np.float64)
    return (d - np.exp(yf) * d.sum(axis=1, keepdims=True)).astype(y.dtype)


def _ce_target(logits: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _arr(logits, "logits", 2)
    if isinstance(target, np.ndarray) and target.ndim == 1:
        t = _arr(target, "target", 1, kind="i")
        _shape(t, (x.shape[0],), "target")
        if t.size and (t.min() < 0 or t.max() >= x.shape[1]):
            raise RefError("target out of range")
        p = np.zeros(x.shape)
        p[np.arange(t.size), t] = 1
    else:
        p = _arr(target, "target", 2)
        _same_dtype(x, p)
        _shape(p, x.shape, "target")
        p = p.astype(np.float64)
    return x, p


def ref_cross_entropy(logits: Any, target: Any) -> np.ndarray:
    x, p = _ce_target(logits, target)
    with np.errstate(invalid="ignore"):
        return -(p * _log_softmax(x)).sum(axis=1).astype(x.dtype)


def ref_cross_entropy_backward(logits: Any, target: Any) -> np.ndarray:
    x, p = _ce_target(logits, target)
    sm = np.exp(_log_softmax(x))
    return (sm * p.sum(axis=1, keepdims=True) - p).astype(x.dtype)


# --- binding specs ----------------------------------------------------------------------


@dataclass
class BindingSpec:
    """A binding of ``_core``: its parameters in order, a valid call and a reference.

    ``make(rng, dtype)`` returns the keyword arguments of a valid call; ``arrays``
    maps each array parameter to the name its error messages use; ``ints`` lists
    the integer parameters; ``outputs`` the arrays written in place, which are
    then the result (``ref`` returns their expected values).
    """

    name: str
    params: tuple[str, ...]
    make: Callable[[np.random.Generator, type], dict[str, Any]]
    ref: Callable[..., Any]
    arrays: dict[str, str]
    ints: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    int_arrays: tuple[str, ...] = ()
    extra: Callable[[dict[str, Any]], list[tuple[str, dict[str, Any], tuple[str, ...]]]] = field(
        default=lambda kw: []
    )


def _r(rng: np.random.Generator, dt: type, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(dt)


N, L, H, W, CIN, COUT, K, S, P = 2, 7, 6, 5, 3, 2, 3, 2, 1


def _conv_make(nd: int, bias: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        kw: dict[str, Any] = {
            "x": _r(rng, dt, N, *sp, CIN),
            "w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "stride": S,
            "padding": P,
        }
        if bias:
            kw["b"] = _r(rng, dt, COUT)
        return kw

    return make


def _conv_out(nd: int) -> tuple[int, ...]:
    sp = (L,) if nd == 1 else (H, W)
    return tuple((n + 2 * P - K) // S + 1 for n in sp)


def _conv_bi_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        return {
            "delta": _r(rng, dt, N, *_conv_out(nd), COUT),
            "w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "size": L if nd == 1 else (H, W),
            "stride": S,
            "padding": P,
        }

    return make


def _conv_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        return {
            "x": _r(rng, dt, N, *sp, CIN),
            "delta": _r(rng, dt, N, *_conv_out(nd), COUT),
            "grad_w": _r(rng, dt, *([K] * nd), CIN, COUT),
            "grad_b": _r(rng, dt, COUT),
            "stride": S,
            "padding": P,
        }

    return make


def _pool_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        sp = (L,) if nd == 1 else (H, W)
        return {"x": _r(rng, dt, N, *sp, CIN), "k": 2, "stride": 2}

    return make


def _pool_out(nd: int, k: int = 2, s: int = 2) -> tuple[int, ...]:
    sp = (L,) if nd == 1 else (H, W)
    return tuple((n - k) // s + 1 for n in sp)


def _max_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, N, *((L,) if nd == 1 else (H, W)), CIN)
        _, argmax = ref_max_pool(nd)(x, 2, 2)
        return {
            "delta": _r(rng, dt, *argmax.shape),
            "argmax": argmax,
            "size": L if nd == 1 else (H, W),
        }

    return make


def _max_bw_extra(nd: int) -> Callable[[dict[str, Any]], list[Any]]:
    def extra(kw: dict[str, Any]) -> list[Any]:
        cases = []
        limit = L if nd == 1 else H * W
        for bad in (-1, limit, 2**31 - 1, -(2**31)):  # int32's extremes
            a = kw["argmax"].copy()
            a.reshape(-1)[1] = bad
            cases.append((f"argmax={bad}", {**kw, "argmax": a}, ("argmax", str(bad))))
        return cases

    return extra


def _conv_pool_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        kw = _conv_make(nd, True)(rng, dt)
        return {**kw, "k": 2, "pool_stride": 2}

    return make


def _conv_pool_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        kw = _conv_pool_make(nd)(rng, dt)
        _, argmax = ref_conv_maxpool(nd)(**kw)
        return {
            "x": kw["x"],
            "w": kw["w"],
            "delta": _r(rng, dt, *argmax.shape),
            "argmax": argmax,
            "grad_w": _r(rng, dt, *kw["w"].shape),
            "grad_b": _r(rng, dt, COUT),
            "stride": S,
            "padding": P,
            "k": 2,
            "pool_stride": 2,
            "input_delta": False,
        }

    return make


def _conv_pool_bw_extra(nd: int) -> Callable[[dict[str, Any]], list[Any]]:
    def extra(kw: dict[str, Any]) -> list[Any]:
        cases = []
        conv_out = [(n + 2 * P - K) // S + 1 for n in kw["x"].shape[1:-1]]
        for bad in (-1, math.prod(conv_out), 2**31 - 1):  # outside the convolution's output
            a = kw["argmax"].copy()
            a.reshape(-1)[1] = bad
            cases.append((f"argmax={bad}", {**kw, "argmax": a}, ("argmax", str(bad))))
        return cases

    return extra


def _avg_bw_make(nd: int) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        return {
            "delta": _r(rng, dt, N, *_pool_out(nd), CIN),
            "size": L if nd == 1 else (H, W),
            "k": 2,
            "stride": 2,
        }

    return make


def _ce_make(index: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, 4, 3)
        if index:
            return {"logits": x, "target": np.array([0, 2, 1, 2], np.int64)}
        p = rng.uniform(size=(4, 3)).astype(dt)
        return {"logits": x, "target": (p / p.sum(axis=1, keepdims=True)).astype(dt)}

    return make


def _ce_extra(kw: dict[str, Any]) -> list[Any]:
    if kw["target"].dtype != np.int64:
        return []
    cases = []
    for bad in (-1, 3, 2**40, -(2**62)):
        t = kw["target"].copy()
        t[1] = bad
        cases.append((f"target={bad}", {**kw, "target": t}, ("target", str(bad))))
    return cases


def _softmax_bw_make(log: bool) -> Callable[[np.random.Generator, type], dict[str, Any]]:
    def make(rng: np.random.Generator, dt: type) -> dict[str, Any]:
        x = _r(rng, dt, 4, 5)
        y = ref_log_softmax(x) if log else ref_softmax(x)
        return {"y": y, "delta": _r(rng, dt, 4, 5)}

    return make


def _binding_specs() -> list[BindingSpec]:
    specs = [
        BindingSpec(
            "matmul",
            ("a", "b"),
            lambda rng, dt: {"a": _r(rng, dt, 3, 4), "b": _r(rng, dt, 4, 2)},
            ref_matmul,
            {"a": "a", "b": "b"},
        ),
        BindingSpec(
            "addmm",
            ("out", "a", "b", "alpha", "beta"),
            lambda rng, dt: {
                "out": _r(rng, dt, 3, 2),
                "a": _r(rng, dt, 3, 4),
                "b": _r(rng, dt, 4, 2),
                "alpha": 0.5,
                "beta": 2.0,
            },
            ref_addmm,
            {"out": "out", "a": "a", "b": "b"},
            outputs=("out",),
        ),
        BindingSpec(
            "linear",
            ("x", "w", "b"),
            lambda rng, dt: {"x": _r(rng, dt, 3, 4), "w": _r(rng, dt, 4, 2), "b": _r(rng, dt, 2)},
            ref_linear,
            {"x": "x", "w": "w", "b": "bias"},
        ),
    ]
    for nd in (1, 2):
        c = f"conv{nd}d"
        size = "input_len" if nd == 1 else "input_hw"
        specs += [
            BindingSpec(
                c,
                ("x", "w", "b", "stride", "padding"),
                _conv_make(nd, True),
                ref_conv(nd),
                {"x": "x", "w": "w", "b": "b"},
                ints=("stride", "padding"),
            ),
            BindingSpec(
                f"{c}_backward_input",
                ("delta", "w", "size", "stride", "padding"),
                _conv_bi_make(nd),
                ref_conv_backward_input(nd),
                {"delta": "delta", "w": "w"},
                ints=("stride", "padding", *(("size",) if nd == 1 else ())),
                pairs=("size",) if nd == 2 else (),
            ),
            BindingSpec(
                f"{c}_backward_weight",
                ("x", "delta", "grad_w", "grad_b", "stride", "padding"),
                _conv_bw_make(nd),
                ref_conv_backward_weight(nd),
                {"x": "x", "delta": "delta", "grad_w": "grad_w", "grad_b": "grad_b"},
                ints=("stride", "padding"),
                outputs=("grad_w", "grad_b"),
            ),
            BindingSpec(
                f"max_pool{nd}d",
                ("x", "k", "stride"),
                _pool_make(nd),
                ref_max_pool(nd),
                {"x": "x"},
                ints=("k", "stride"),
            ),
            BindingSpec(
                f"max_pool{nd}d_backward",
                ("delta", "argmax", "size"),
                _max_bw_make(nd),
                ref_max_pool_backward(nd),
                {"delta": "delta"},
                ints=("size",) if nd == 1 else (),
                pairs=("size",) if nd == 2 else (),
                int_arrays=("argmax",),
                extra=_max_bw_extra(nd),
            ),
            BindingSpec(
                f"avg_pool{nd}d",
                ("x", "k", "stride"),
                _pool_make(nd),
                ref_avg_pool(nd),
                {"x": "x"},
                ints=("k", "stride"),
            ),
            BindingSpec(
                f"avg_pool{nd}d_backward",
                ("delta", "size", "k", "stride"),
                _avg_bw_make(nd),
                ref_avg_pool_backward(nd),
                {"delta": "delta"},
                ints=("k", "stride", *(("size",) if nd == 1 else ())),
                pairs=("size",) if nd == 2 else (),
            ),
            BindingSpec(
                f"{c}_maxpool",
                ("x", "w", "b", "stride", "padding", "k", "pool_stride"),
                _conv_pool_make(nd),
                ref_conv_maxpool(nd),
                {"x": "x", "w": "w", "b": "b"},
                ints=("stride", "padding", "k", "pool_stride"),
            ),
            BindingSpec(
                f"{c}_maxpool_backward",
                (
                    "x",
                    "w",
                    "delta",
                    "argmax",
                    "grad_w",
                    "grad_b",
                    "stride",
                    "padding",
                    "k",
                    "pool_stride",
                    "input_delta",
                ),
                _conv_pool_bw_make(nd),
                ref_conv_maxpool_backward(nd),
                {"x": "x", "w": "w", "delta": "delta", "grad_w": "grad_w", "grad_b": "grad_b"},
                ints=("stride", "padding", "k", "pool_stride"),
                outputs=("grad_w", "grad_b"),
                int_arrays=("argmax",),
                extra=_conv_pool_bw_extra(nd),
            ),
        ]
        del size
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        specs += [
            BindingSpec(
                name,
                ("x",),
                lambda rng, dt: {"x": _r(rng, dt, 4, 5)},
                ref_log_softmax if log else ref_softmax,
                {"x": "x"},
            ),
            BindingSpec(
                f"{name}_backward",
                ("y", "delta"),
                _softmax_bw_make(log),
                ref_log_softmax_backward if log else ref_softmax_backward,
                {"y": "y", "delta": "delta"},
            ),
        ]
    for index in (True, False):
        for name, ref in (
            ("cross_entropy", ref_cross_entropy),
            ("cross_entropy_backward", ref_cross_entropy_backward),
        ):
            specs.append(
                BindingSpec(
                    name,
                    ("logits", "target"),
                    _ce_make(index),
                    ref,
                    {"logits": "logits", **({} if index else {"target": "target"})},
                    int_arrays=("target",) if index else (),
                    extra=_ce_extra,
                )
            )
    return specs


BINDING_SPECS = _binding_specs()
# bindings that are not array kernels, with their own cases below
# Bindings that take lists of arrays (the fused training paths): their bad inputs
# are tested in tests/test_fused.py.
OTHER_BINDINGS = (
    "set_num_threads",
    "get_num_threads",
    "debug_build",
    "dense_forward",
    "dense_backward",
    "sgd_update",
    "DenseTrainer",
    "Activation",  # the enums those take
    "LossKind",
)


def _call_binding(spec: BindingSpec, kw: dict[str, Any]) -> Callable[[], Any]:
    def call() -> Any:
        fn = getattr(_core, spec.name)
        ret = fn(*[kw[p] for p in spec.params if p in kw])
        if spec.outputs:
            outs = tuple(kw.get(o) for o in spec.outputs)
            return outs if len(outs) > 1 else outs[0]
        return ret

    return call


def _ref_binding(spec: BindingSpec, kw: dict[str, Any]) -> Callable[[], Any]:
    def ref() -> Any:
        # the reference sees private copies: in-place outputs must not be touched twice
        kw2 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        return spec.ref(*[kw2[p] for p in spec.params if p in kw2])

    return ref


def _copy(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


def _shape_strings(kw: dict[str, Any]) -> tuple[str, ...]:
    """The concrete values an error message may show: shapes, dtypes, type names."""
    out: list[str] = []
    for v in kw.values():
        if isinstance(v, np.ndarray):
            out += [fmt_shape(v.shape) if v.ndim else "()", str(v.dtype)]
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            out.append(type(v).__name__)
    return tuple(out)


def binding_cases(spec: BindingSpec) -> list[Case]:
    """Every mutation of one binding's valid call."""
    cases: list[Case] = []
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    names = tuple(spec.arrays.values()) + spec.ints + spec.pairs + spec.int_arrays
    names += tuple(p for p in spec.params if p not in names)
    if "size" in names:
        names += ("input_len", "input_hw")
    if spec.name.startswith("conv"):
        names += ("kernel",)  # the weight's spatial size
    if spec.name.startswith("cross_entropy"):
        names += ("x",)  # the kernel's name of the logits
    needs = (spec.name,)

    def add(label: str, kw: dict[str, Any], **opts: Any) -> None:
        opts.setdefault("names", names)
        opts.setdefault("actual", _shape_strings(kw))
        cases.append(
            Case(f"{spec.name}[{label}]", _call_binding(spec, kw), _ref_binding(spec, kw), **opts)
        )
        cases[-1].needs = needs

    def fresh(dt: type = np.float64) -> dict[str, Any]:
        return spec.make(rng, dt)

    for dt in (np.float64, np.float32):
        add(f"valid {np.dtype(dt).name}", fresh(dt))
    float_arrays = [a for a in spec.arrays]
    all_arrays = float_arrays + list(spec.int_arrays)
    # layouts: the same result as the contiguous input
    for arr in all_arrays:
        for lname, fn in LAYOUTS.items():
            kw = fresh()
            if kw.get(arr) is None:
                continue
            base = _copy(kw)
            kw[arr] = fn(kw[arr])
            cases.append(
                Case(
                    f"{spec.name}[{arr} {lname}]",
                    _call_binding(spec, kw),
                    _ref_binding(spec, base),
                    needs=needs,
                )
            )
    # every array argument Fortran-ordered at once, and every one reversed
    for lname in ("fortran", "negative"):
        kw = fresh(np.float32)
        base = _copy(kw)
        for arr in all_arrays:
            kw[arr] = LAYOUTS[lname](kw[arr])
        cases.append(
            Case(
                f"{spec.name}[all {lname}]",
                _call_binding(spec, kw),
                _ref_binding(spec, base),
                needs=needs,
            )
        )
    # dtypes
    for arr in all_arrays:
        for bad in BAD_DTYPES + (("float64",) if arr in spec.int_arrays else ()):
            kw = fresh()
            if arr in spec.int_arrays and bad == INT_DTYPES.get(arr, "int64"):
                continue
            kw[arr] = cast(kw[arr], bad)
            add(f"{arr} {bad}", kw, actual=(bad, "O", *_shape_strings(kw)))
        kw = fresh()
        kw[arr] = kw[arr].tolist()
        add(f"{arr} list", kw, actual=("list",))
    if len(float_arrays) > 1:
        for arr in float_arrays:
            kw = fresh()
            kw[arr] = kw[arr].astype(np.float32)
            add(f"{arr} float32 among float64", kw, actual=("float32",))
    # ndim
    for arr in all_arrays:
        kw = fresh()
        kw[arr] = kw[arr][None]
        add(f"{arr} extra axis", kw)
        kw = fresh()
        kw[arr] = kw[arr][0, ...]
        add(f"{arr} missing axis", kw)
        kw = fresh()
        kw[arr] = np.asarray(kw[arr].reshape(-1)[0])
        add(f"{arr} 0-d", kw)
    # mismatched and zero sizes, axis by axis
    for arr in all_arrays:
        for axis in range(kw[arr].ndim if isinstance(kw.get(arr), np.ndarray) else 0):
            for label, delta in (("+1", 1), ("=0", None)):
                kw = fresh()
                a = kw[arr]
                shape = list(a.shape)
                shape[axis] = 0 if delta is None else shape[axis] + delta
                if arr in spec.int_arrays:
                    kw[arr] = np.zeros(shape, a.dtype)
                else:
                    kw[arr] = rng.standard_normal(shape).astype(a.dtype)
                add(
                    f"{arr} axis {axis} {label}",
                    kw,
                    error_ok=delta is None,
                    actual=(*_shape_strings(kw), str(shape[axis])),
                )
    # NaN and inf in each float input: propagate (or a ValueError)
    for arr in float_arrays:
        if arr in spec.outputs:
            continue
        kw = fresh()
        kw[arr] = with_nonfinite(kw[arr])
        add(f"{arr} nan/inf", kw, loose=True)
    if spec.name == "addmm":
        for v in (math.nan, math.inf):
            for p in ("alpha", "beta"):
                kw = fresh()
                kw[p] = v
                add(f"{p}={v}", kw, loose=True)
    # integer arguments
    for p in spec.ints:
        for bad in BAD_INTS:
            kw = fresh()
            kw[p] = bad
            add(
                f"{p}={bad!r}",
                kw,
                names=(p, *names),
                actual=(str(bad), type(bad).__name__, *_shape_strings(kw)),
            )
    for p in spec.pairs:
        for bad in ((-1, 3), (3, -1), (2**62, 2**62), (2**64, 1), (3,), (1, 2, 3), "ab", None, 5):
            kw = fresh()
            kw[p] = bad
            parts = tuple(str(b) for b in bad) if isinstance(bad, tuple) else ()
            add(
                f"{p}={bad!r}",
                kw,
                actual=(str(bad), type(bad).__name__, *parts, *_shape_strings(kw)),
            )
        kw = fresh()
        kw[p] = list(kw[p])
        add(f"{p} as list", kw, error_ok=True)
    # kernel larger than the input, huge kernel
    if "k" in spec.ints or spec.name.startswith("conv"):
        for k in (8, 2**31, 2**62):
            kw = fresh()
            if "k" in kw:
                kw["k"] = k
            elif "w" in kw and k < 100:
                kw["w"] = rng.standard_normal((k,) * (kw["w"].ndim - 2) + kw["w"].shape[-2:])
            else:
                continue
            add(f"kernel {k}", kw, actual=(str(k), *_shape_strings(kw)))
    for label, kw, words in spec.extra(fresh()):
        add(label, kw, names=words[:1], actual=words[1:])
    return cases


def other_binding_cases() -> list[Case]:
    def set_then_restore(n: Any) -> Callable[[], Any]:
        def call() -> Any:
            before = _core.get_num_threads()
            try:
                _core.set_num_threads(n)
                return _core.get_num_threads() >= 1
            finally:
                _core.set_num_threads(0)
                del before

        return call

    def ok_ref() -> bool:
        return True

    def refuse() -> bool:
        raise RefError("bad n")

    cases = [
        Case("get_num_threads[]", lambda: _core.get_num_threads() >= 1, ok_ref),
        Case("debug_build[]", lambda: _core.debug_build() in (True, False), ok_ref),
        Case("set_num_threads[1]", set_then_restore(1), ok_ref),
        Case("set_num_threads[0]", set_then_restore(0), ok_ref),
    ]
    for bad in (-1, -(2**62), 2**64, 1.5, "2", None):
        cases.append(
            Case(
                f"set_num_threads[{bad!r}]",
                set_then_restore(bad),
                refuse,
                names=("n",),
                actual=(str(bad), type(bad).__name__),
            )
        )
    return cases


# --- module and loss specs --------------------------------------------------------------


@dataclass
class ModuleSpec:
    """A public module: how to build it, a valid input, and its constructor's int params.

    ``elementwise``: the numpy function it computes on any shape (activations).
    ``ctor``: ``(keyword, valid kwargs)`` of the integer constructor arguments.
    """

    cls: type
    make: Callable[[type], Any]
    input_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    elementwise: Callable[[np.ndarray], np.ndarray] | None = None
    ctor: Callable[..., Any] | None = None
    ctor_ints: dict[str, int] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


def _sig(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# Pooling layers: (class, k_size, stride, input shape, output shape, kernel needed).
_POOL_TABLE = [
    (nn.MaxPool1D, 2, 2, (2, 7, 3), (2, 3, 3), "max_pool1d"),
    (nn.AvgPool1D, 3, 1, (2, 7, 3), (2, 5, 3), "avg_pool1d"),
    (nn.MaxPool2D, 2, 2, (2, 6, 5, 3), (2, 3, 2, 3), "max_pool2d"),
    (nn.AvgPool2D, 2, 1, (2, 6, 5, 3), (2, 5, 4, 3), "avg_pool2d"),
]


def _pool_spec(
    cls: type, k: int, stride: int, shape: tuple[int, ...], out: tuple[int, ...], need: str
) -> ModuleSpec:
    return ModuleSpec(
        cls,
        lambda dt: cls(k, stride),
        shape,
        out,
        ctor=cls,
        ctor_ints={"k_size": k, "stride": stride},
        needs=(need,),
    )


_POOL_SPECS = [_pool_spec(*row) for row in _POOL_TABLE]


def _module_specs() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            nn.Linear,
            lambda dt: nn.Linear(4, 3, dtype=dt, rng=0),
            (5, 4),
            (5, 3),
            ctor=nn.Linear,
            ctor_ints={"input": 4, "output": 3},
        ),
        ModuleSpec(nn.TanH, lambda dt: nn.TanH(), (3, 4), (3, 4), elementwise=np.tanh),
        ModuleSpec(nn.Sigmoid, lambda dt: nn.Sigmoid(), (3, 4), (3, 4), elementwise=_sig),
        ModuleSpec(
            nn.ReLU, lambda dt: nn.ReLU(), (3, 4), (3, 4), elementwise=lambda x: np.maximum(x, 0)
        ),
        ModuleSpec(
            nn.Threshold,
            lambda dt: nn.Threshold(0.1, -2.0),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 0.1, x, -2.0),
        ),
        ModuleSpec(
            nn.LeakyReLU,
            lambda dt: nn.LeakyReLU(0.1),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 0, x, 0.1 * x),
        ),
        ModuleSpec(
            nn.Softplus,
            lambda dt: nn.Softplus(),
            (3, 4),
            (3, 4),
            elementwise=lambda x: np.where(x > 20, x, np.logaddexp(0, np.minimum(x, 20))),
        ),
        ModuleSpec(
            nn.Dropout,  # seeded: the mask of default_rng(0), entries kept scaled by 1/(1-p)
            lambda dt: nn.Dropout(0.5, rng=0),
            (3, 4),
            (3, 4),
            elementwise=lambda x: x * (np.random.default_rng(0).random(np.shape(x)) >= 0.5) * 2.0,
        ),
        ModuleSpec(
            nn.BatchNorm1D,
            lambda dt: nn.BatchNorm1D(4, dtype=dt),
            (5, 4),
            (5, 4),
            ctor=nn.BatchNorm1D,
            ctor_ints={"num_features": 4},
        ),
        ModuleSpec(nn.SoftMax, lambda dt: nn.SoftMax(), (3, 4), (3, 4), needs=("softmax",)),
        ModuleSpec(
            nn.LogSoftMax, lambda dt: nn.LogSoftMax(), (3, 4), (3, 4), needs=("log_softmax",)
        ),
        ModuleSpec(nn.Flatten, lambda dt: nn.Flatten(), (3, 2, 4), (3, 8)),
        ModuleSpec(
            nn.Conv1D,
            lambda dt: nn.Conv1D(3, 2, 4, stride=2, dtype=dt, rng=0),
            (2, 9, 2),
            (2, 4, 4),
            ctor=nn.Conv1D,
            ctor_ints={"k_size": 3, "chan_in": 2, "chan_out": 4, "stride": 2},
            needs=("conv1d",),
        ),
        ModuleSpec(
            nn.Conv2D,
            lambda dt: nn.Conv2D(3, 2, 4, stride=1, dtype=dt, rng=0),
            (2, 6, 5, 2),
            (2, 4, 3, 4),
            ctor=nn.Conv2D,
            ctor_ints={"k_size": 3, "chan_in": 2, "chan_out": 4, "stride": 1},
            needs=("conv2d",),
        ),
        *_POOL_SPECS,
        ModuleSpec(
            nn.Sequential,
            lambda dt: nn.Sequential(
                nn.Linear(4, 3, dtype=dt, rng=1), nn.TanH(), nn.Linear(3, 2, dtype=dt, rng=2)
            ),
            (5, 4),
            (5, 2),
        ),
        ModuleSpec(
            nn.AutoEncoder,
            lambda dt: nn.AutoEncoder(
                nn.Sequential(nn.Linear(4, 2, dtype=dt, rng=3), nn.TanH()),
                nn.Sequential(nn.Linear(2, 4, dtype=dt, rng=4), nn.Sigmoid()),
            ),
            (5, 4),
            (5, 4),
        ),
    ]


MODULE_SPECS = _module_specs()


def _grads(m: Any) -> list[np.ndarray]:
    return [g.copy() for _, _, g in m.named_parameters()]


def module_run(spec: ModuleSpec, x: Any, delta: Any, dt: type = np.float64) -> tuple[Any, ...]:
    """forward, backward_delta, and the gradients of backward_update_gradient, on a fresh module."""
    m = spec.make(dt)
    y = m.forward(x)
    d = delta if delta is not None else np.ones_like(y)
    dx = m.backward_delta(x, d)
    m.zero_grad()
    m.backward_update_gradient(x, d)
    return (y, dx, *_grads(m))


def module_cases(spec: ModuleSpec) -> list[Case]:
    cases: list[Case] = []
    name = spec.cls.__name__
    rng = np.random.default_rng(len(name))
    x0 = rng.standard_normal(spec.input_shape)
    d0 = rng.standard_normal(spec.out_shape)
    needs = spec.needs

    def add(label: str, call: Callable[[], Any], ref: Callable[[], Any], **opts: Any) -> None:
        cases.append(Case(f"{name}[{label}]", call, ref, needs=needs, **opts))

    def run(x: Any, d: Any, dt: type = np.float64) -> Callable[[], Any]:
        return lambda: module_run(spec, x, d, dt)

    def refuse(why: str) -> Callable[[], Any]:
        def ref() -> Any:
            raise RefError(why)

        return ref

    for dt in (np.float64, np.float32):
        add(f"valid {np.dtype(dt).name}", run(x0.astype(dt), d0, dt), run(x0.astype(dt), d0, dt))
    for lname, fn in LAYOUTS.items():
        add(f"input {lname}", run(fn(x0), d0), run(x0, d0))
        add(f"delta {lname}", run(x0, fn(d0)), run(x0, d0))
    for bad in ("int64", "int32", "uint8", "bool", "float16"):
        xi = cast(x0 * 3, bad)
        add(f"input {bad}", run(xi, d0), run(xi.astype(np.float64), d0))
    add("input list", run(x0.tolist(), d0), run(x0, d0))
    for bad in ("complex128", "object"):
        add(
            f"input {bad}",
            run(cast(x0, bad), d0),
            refuse(bad),
            names=("input",),
            actual=(bad, "O"),
        )
    add(
        "input str",
        run(x0.astype(str), d0),
        refuse("str"),
        names=("input",),
        actual=("<U",),
    )
    for bad in ("complex128", "object"):
        add(
            f"delta {bad}",
            run(x0, cast(d0, bad)),
            refuse(bad),
            names=("delta",),
            actual=(bad, "O"),
        )
    for axis in range(d0.ndim):
        shape = list(d0.shape)
        shape[axis] += 1
        add(
            f"delta axis {axis} +1",
            run(x0, np.ones(shape)),
            refuse("delta"),
            names=("delta",),
            actual=(fmt_shape(tuple(shape)),),
        )
    add(
        "delta extra axis",
        run(x0, d0[None]),
        refuse("delta"),
        names=("delta",),
        actual=(fmt_shape((1, *d0.shape)),),
    )
    if spec.elementwise is None:
        for label, xb in (("extra axis", x0[None]), ("missing axis", x0[0])):
            if name == "Flatten" or (name == "BatchNorm1D" and label == "extra axis"):
                continue  # BatchNorm1D takes (N, C) and (N, L, C)
            add(
                f"input {label}",
                run(xb, None),
                refuse(label),
                names=("input",),
                actual=(fmt_shape(xb.shape),),
            )
        for axis in range(1, x0.ndim):
            shape = list(x0.shape)
            shape[axis] += 1
            xb = rng.standard_normal(shape)
            if name in ("Flatten", "SoftMax", "LogSoftMax") or "Pool" in name:
                continue  # any spatial size / channel count is valid
            if name.startswith("Conv") and axis < x0.ndim - 1:
                continue
            add(
                f"input axis {axis} +1",
                run(xb, None),
                refuse("features"),
                names=("input",),
                actual=(fmt_shape(tuple(shape)),),
            )
    else:
        fn = spec.elementwise
        for shape in ((), (7,), (2, 3, 4, 5)):
            xe = rng.standard_normal(shape)
            add(
                f"any shape {shape}",
                lambda xe=xe: spec.make(np.float64).forward(xe),
                lambda xe=xe: fn(xe),
            )
    # zero sizes: a result with no elements (gradients untouched) or a clear error
    for axis in range(x0.ndim):
        shape = list(x0.shape)
        shape[axis] = 0
        xz = np.zeros(shape)

        def zero_call(xz: np.ndarray = xz) -> Any:
            m = spec.make(np.float64)
            y = m.forward(xz)
            dx = m.backward_delta(xz, np.zeros_like(y))
            m.zero_grad()
            m.backward_update_gradient(xz, np.zeros_like(y))
            ok = y.size == 0 and dx.shape == xz.shape
            return ok and all(not g.any() for g in _grads(m))

        add(
            f"input axis {axis} =0",
            zero_call,
            lambda: True,
            error_ok=True,
            names=("input", "delta"),
            actual=(fmt_shape(tuple(shape)), "0"),
        )
    # NaN and inf: propagate or error, never crash
    xn = with_nonfinite(x0)

    def nan_call(xn: np.ndarray = xn) -> Any:
        y, dx, *_ = module_run(spec, xn, d0)
        return y.shape, dx.shape

    add("input nan/inf", nan_call, lambda: (spec.out_shape, x0.shape), loose=True)
    # constructor: every int argument, refused when out of range or not an int
    if spec.ctor is not None:
        for p, valid in spec.ctor_ints.items():
            for bad in (0, -1, 2**62, 2**64, 1.5, "3", None, True):
                kw = {**spec.ctor_ints, p: bad}
                if p == "stride" and bad is None:
                    continue  # pools: stride=None means stride=k_size
                add(
                    f"{p}={bad!r}",
                    lambda kw=kw: _build_and_forward(spec, kw, x0),
                    _ctor_ref(kw, p, x0, spec),
                    names=(p,),
                    actual=(repr(bad), str(bad)),
                )
            del valid
    return cases


def _build_and_forward(spec: ModuleSpec, kw: dict[str, Any], x: np.ndarray) -> Any:
    assert spec.ctor is not None
    m = spec.ctor(**kw)
    return m.forward(x).shape


def _ctor_ref(kw: dict[str, Any], p: str, x: np.ndarray, spec: ModuleSpec) -> Callable[[], Any]:
    def ref() -> Any:
        v = kw[p]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RefError(f"{p} must be an int >= 1")
        if v >= 2**31:
            raise RefError(f"{p} too large")
        return _build_and_forward(spec, kw, x)

    return ref


def _has(needs: tuple[str, ...]) -> bool:
    return all(hasattr(_core, n) for n in needs)


@dataclass
class LossSpec:
    """A public loss and a valid ``(y, yhat)`` pair (``y`` as the loss expects it)."""

    cls: type
    make: Callable[[], Any]
    y: Callable[[np.random.Generator], np.ndarray]
    yhat: Callable[[np.random.Generator], np.ndarray]
    needs: tuple[str, ...] = ()


def _probs(rng: np.random.Generator) -> np.ndarray:
    p = rng.uniform(0.05, 1, (4, 3))
    return p / p.sum(axis=1, keepdims=True)


def _labels(rng: np.random.Generator) -> np.ndarray:
    return np.array([0, 2, 1, 2])


def _loss_specs() -> list[LossSpec]:
    def real(rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((4, 3))

    def unit(rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.05, 0.95, (4, 3))

    def onehot(rng: np.random.Generator) -> np.ndarray:
        return np.eye(3)[_labels(rng)]

    return [
        LossSpec(nn.MSELoss, nn.MSELoss, real, real),
        LossSpec(nn.MAELoss, nn.MAELoss, real, real),
        LossSpec(nn.BCELoss, nn.BCELoss, lambda r: (unit(r) > 0.5).astype(float), unit),
        LossSpec(nn.CrossEntropyLoss, nn.CrossEntropyLoss, onehot, _probs),
        LossSpec(nn.NLLLoss, nn.NLLLoss, _labels, lambda r: np.log(_probs(r))),
        LossSpec(nn.CELogSoftMax, nn.CELogSoftMax, _labels, real, needs=("cross_entropy",)),
        LossSpec(
            nn.CrossEntropyCriterion, nn.CrossEntropyCriterion, onehot, real, needs=("log_softmax",)
        ),
        LossSpec(nn.HingeLoss, nn.HingeLoss, _labels, real),
    ]


LOSS_SPECS = _loss_specs()


def loss_cases(spec: LossSpec) -> list[Case]:
    cases: list[Case] = []
    name = spec.cls.__name__
    rng = np.random.default_rng(len(name) + 100)
    y0, yh0 = spec.y(rng), spec.yhat(rng)

    def add(label: str, call: Callable[[], Any], ref: Callable[[], Any], **opts: Any) -> None:
        cases.append(Case(f"{name}[{label}]", call, ref, needs=spec.needs, **opts))

    def run(y: Any, yh: Any) -> Callable[[], Any]:
        def call() -> Any:
            loss = spec.make()
            return loss.forward(y, yh), loss.backward(y, yh)

        return call

    def refuse() -> Any:
        raise RefError("bad")

    add("valid", run(y0, yh0), run(y0, yh0))
    add("valid float32", run(y0, yh0.astype(np.float32)), run(y0, yh0.astype(np.float32)))
    for lname, fn in LAYOUTS.items():
        add(f"yhat {lname}", run(y0, fn(yh0)), run(y0, yh0))
        add(f"y {lname}", run(fn(y0), yh0), run(y0, yh0))
    add("lists", run(y0.tolist(), yh0.tolist()), run(y0, yh0))
    for bad in ("complex128", "object"):
        add(f"yhat {bad}", run(y0, cast(yh0, bad)), refuse, names=("yhat",), actual=(bad, "O"))
        if y0.dtype.kind == "f":
            add(f"y {bad}", run(cast(y0, bad), yh0), refuse, names=("y",), actual=(bad, "O"))
    add("yhat str", run(y0, yh0.astype(str)), refuse, names=("yhat",), actual=("<U",))
    for label, yh in (("extra axis", yh0[None]), ("missing axis", yh0[0]), ("0-d", yh0[0, 0])):
        shape = np.shape(yh)
        add(
            f"yhat {label}",
            run(y0, yh),
            refuse,
            names=("yhat", "y"),
            actual=(fmt_shape(shape) if shape else "()", fmt_shape(y0.shape)),
        )
    for axis in range(y0.ndim):
        shape = list(y0.shape)
        shape[axis] += 1
        yb = np.zeros(shape, y0.dtype)
        add(
            f"y axis {axis} +1",
            run(yb, yh0),
            refuse,
            names=("y",),
            actual=(fmt_shape(tuple(shape)),),
        )
    add("batch 0", run(y0[:0], yh0[:0]), lambda: (np.zeros(0), np.zeros((0, *yh0.shape[1:]))))
    add(
        "nan/inf yhat",
        lambda: tuple(a.shape for a in run(y0, with_nonfinite(yh0))()),
        lambda: ((y0.shape[0],), yh0.shape),
        loose=True,
    )
    if y0.dtype.kind == "i":
        for bad in (-1, 3, 2**40):
            yb = y0.copy()
            yb[1] = bad
            add(f"label {bad}", run(yb, yh0), refuse, names=("label", "y"), actual=(str(bad),))
        add("labels float 1.5", run(y0 + 0.5, yh0), refuse, names=("label", "y"), actual=("1.5",))
    return cases


# --- discovery and the full list -------------------------------------------------------


def public_modules_and_losses() -> dict[str, type]:
    """Every class in ``diy_nn.__all__`` that is a Module or a Loss (bases excluded)."""
    out = {}
    for n in nn.__all__:
        obj = getattr(nn, n)
        if isinstance(obj, type) and obj not in (nn.Module, nn.Loss):
            if issubclass(obj, (nn.Module, nn.Loss)):
                out[n] = obj
    return out


def core_bindings() -> list[str]:
    return sorted(
        n
        for n in dir(_core)
        if not n.startswith("_") and callable(getattr(_core, n)) and n != "ShapeError"
    )


def uncovered() -> list[str]:
    """Public modules, losses and bindings that no case table covers."""
    classes = {s.cls for s in MODULE_SPECS} | {s.cls for s in LOSS_SPECS}
    missing = [n for n, c in public_modules_and_losses().items() if c not in classes]
    covered = {s.name for s in BINDING_SPECS} | set(OTHER_BINDINGS)
    missing += [f"_core.{n}" for n in core_bindings() if n not in covered]
    return missing


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for bspec in BINDING_SPECS:
        cases += binding_cases(bspec)
    cases += other_binding_cases()
    for mspec in MODULE_SPECS:
        cases += module_cases(mspec)
    for lspec in LOSS_SPECS:
        cases += loss_cases(lspec)
    return cases


def main(argv: list[str]) -> None:
    start = int(argv[1]) if len(argv) > 1 else 0
    cases = all_cases()
    print(json.dumps({"total": len(cases)}), flush=True)
    for i in range(start, len(cases)):
        print(json.dumps({"start": i, "name": cases[i].name}), flush=True)
        outcome, detail = run_case(cases[i])
        print(json.dumps({"i": i, "outcome": outcome, "detail": detail[:500]}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
