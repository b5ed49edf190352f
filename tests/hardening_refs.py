"""Plain numpy references of the hardening suite (``hardening_cases.py``), strict about
shapes, dtypes and integer arguments: each returns what a binding of ``diy_nn._core``
must return, or raises ``RefError`` when the call under test must raise instead."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


class RefError(Exception):
    """The reference refuses the arguments: the call under test must raise."""


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
