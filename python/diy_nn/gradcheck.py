"""Checks a layer's hand-written backward pass against central finite differences.

``gradcheck(module, X)`` compares ``backward_delta`` (d loss / d input) and
every parameter gradient that ``backward_update_gradient`` accumulates with
numerical derivatives, in float64; ``gradcheck(loss, y, yhat)`` does the same
for a loss's ``backward``. It is the learner's counterpart of
``torch.autograd.gradcheck``, for modules that write their own backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .loss import Loss
from .module import Module

__all__ = ["GradcheckError", "GradientCheck", "finite_differences", "gradcheck"]


class GradcheckError(RuntimeError):
    """An analytic gradient differs from its finite-difference estimate.

    The message names the quantity (the input or a parameter), the worst index,
    and the analytic and numeric values there.
    """


@dataclass
class GradientCheck:
    """One quantity's analytic gradient beside its central finite differences.

    Attributes:
        what: ``"input"`` (``backward_delta``), ``"parameter NAME"`` (the gradient
            ``backward_update_gradient`` accumulates for ``NAME``, as
            ``named_parameters`` calls it) or ``"yhat"`` (a loss's ``backward``).
        shape: the shape of the quantity.
        indices: the flat indices checked.
        analytic: the analytic gradient at those indices.
        numeric: the finite-difference estimate at those indices.
    """

    what: str
    shape: tuple[int, ...]
    indices: np.ndarray
    analytic: np.ndarray
    numeric: np.ndarray

    def excess(self, atol: float, rtol: float) -> np.ndarray:
        """``|analytic - numeric| - (atol + rtol |numeric|)`` per entry; > 0 is a mismatch.

        A NaN on either side counts as an infinite excess.
        """
        diff = np.abs(self.analytic - self.numeric) - (atol + rtol * np.abs(self.numeric))
        return np.where(np.isnan(diff), np.inf, diff)


def _numeric(
    f: Callable[[], float], arr: np.ndarray, indices: np.ndarray, eps: float
) -> np.ndarray:
    """``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` for each flat index ``i``, in place."""
    flat = arr.reshape(-1)  # a view: arr is a contiguous float64 array
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        out[j] = (plus - minus) / (2 * eps)
    return out


def _indices(size: int, rng: np.random.Generator, max_entries: int | None) -> np.ndarray:
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))


def _float64(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"gradcheck: {name} must be a real numeric array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64, order="C", copy=True)


@contextmanager
def _restored(module: Module) -> Iterator[None]:
    """Runs the body in float64, then puts every module back as it was.

    Each attribute of each module (parameters, gradients, running statistics, caches)
    gets back its original object, and each array its original values: the body
    perturbs parameters in place, accumulates gradients and runs forward passes.
    """
    saved = []
    for m in module.modules():
        attrs = dict(vars(m))
        arrays = {k: v.copy() for k, v in attrs.items() if isinstance(v, np.ndarray)}
        saved.append((m, attrs, arrays))
    try:
        if module.dtype is not None and module.dtype != np.float64:
            module.to(np.float64)
        yield
    finally:
        for m, attrs, arrays in saved:
            for name, copy in arrays.items():
                value = attrs[name]
                if not np.array_equal(value, copy, equal_nan=True):
                    value[...] = copy
            vars(m).clear()
            vars(m).update(attrs)


def finite_differences(
    target: Module | Loss,
    *inputs: object,
    eps: float = 1e-6,
    seed: int = 0,
    max_entries: int | None = None,
) -> list[GradientCheck]:
    """The analytic gradients of ``target`` beside central finite differences, in float64.

    For a ``Module`` and an input ``X``: with a random ``delta`` (standard normal,
    seeded, the shape of the output) the scalar is ``sum(delta * forward(X))``;
    ``backward_delta(X, delta)`` is compared on ``X`` and, after ``zero_grad()``,
    the gradients ``backward_update_gradient(X, delta)`` accumulates on each
    parameter of ``named_parameters()``. For a ``Loss`` and ``(y, yhat)``: the
    scalar is ``sum(forward(y, yhat))``, compared with ``backward(y, yhat)``.

    Args:
        target: a ``Module`` (a layer, a ``Sequential``, a subclass of your own)
            or a ``Loss``.
        *inputs: ``X`` for a module; ``y, yhat`` for a loss.
        eps: the finite-difference step.
        seed: the seed of ``delta`` and of the sampled indices.
        max_entries: check at most this many random entries of each quantity
            (None: all of them).

    Returns:
        One ``GradientCheck`` per quantity: the input first, then the parameters.

    The module's parameters and gradients are the same arrays, with the same
    values and dtype, after the call as before (float32 modules are checked in
    float64 and cast back). ``X``, ``y`` and ``yhat`` are not modified.
    """
    if eps <= 0 or not np.isfinite(eps):
        raise ValueError(f"gradcheck: eps must be a positive finite number, got {eps}")
    rng = np.random.default_rng(seed)
    if isinstance(target, Loss):
        if len(inputs) != 2:
            raise TypeError(
                f"gradcheck(loss, y, yhat): expected y and yhat, got {len(inputs)} arrays"
            )
        y = np.asarray(inputs[0])
        y = y.copy() if y.dtype.kind in "iub" else _float64(y, "y")
        yhat = _float64(inputs[1], "yhat")
        grad = np.asarray(target.backward(y, yhat), dtype=np.float64)
        if grad.shape != yhat.shape:
            raise GradcheckError(
                f"gradcheck: {type(target).__name__}.backward returned shape {grad.shape}, "
                f"expected the shape of yhat {yhat.shape}"
            )
        idx = _indices(yhat.size, rng, max_entries)
        numeric = _numeric(lambda: float(np.sum(target.forward(y, yhat))), yhat, idx, eps)
        return [GradientCheck("yhat", yhat.shape, idx, grad.reshape(-1)[idx], numeric)]
    if not isinstance(target, Module):
        raise TypeError(f"gradcheck: expected a diy_nn Module or Loss, got {type(target).__name__}")
    if len(inputs) != 1:
        raise TypeError(f"gradcheck(module, X): expected one input X, got {len(inputs)} arrays")
    x = _float64(inputs[0], "X")
    name = type(target).__name__
    checks = []
    with _restored(target):
        out = np.asarray(target.forward(x))
        delta = rng.standard_normal(out.shape)

        def objective() -> float:
            return float(np.sum(delta * target.forward(x)))

        # The analytic gradients first: a Sequential reuses what its last forward kept.
        din = np.array(target.backward_delta(x, delta), dtype=np.float64)
        if din.shape != x.shape:
            raise GradcheckError(
                f"gradcheck: {name}.backward_delta returned shape {din.shape}, "
                f"expected the input's shape {x.shape}"
            )
        target.zero_grad()
        target.forward(x)
        target.backward_update_gradient(x, delta)
        params = [(n, p, np.array(g, dtype=np.float64)) for n, p, g in target.named_parameters()]
        for pname, param, grad in params:
            if grad.shape != param.shape:
                raise GradcheckError(
                    f"gradcheck: the gradient of parameter {pname} of {name} has shape "
                    f"{grad.shape}, expected the parameter's shape {param.shape}"
                )
        idx = _indices(x.size, rng, max_entries)
        checks.append(
            GradientCheck(
                "input", x.shape, idx, din.reshape(-1)[idx], _numeric(objective, x, idx, eps)
            )
        )
        for pname, param, grad in params:
            idx = _indices(param.size, rng, max_entries)
            numeric = _numeric(objective, param, idx, eps)
            checks.append(
                GradientCheck(
                    f"parameter {pname}", param.shape, idx, grad.reshape(-1)[idx], numeric
                )
            )
    return checks


def gradcheck(
    target: Module | Loss,
    *inputs: object,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
    max_entries: int | None = None,
) -> bool:
    """Checks the backward pass of ``target`` against central finite differences.

    ``gradcheck(module, X)`` checks ``backward_delta`` (d loss / d input) and the
    gradient of every parameter that ``backward_update_gradient`` accumulates;
    ``gradcheck(loss, y, yhat)`` checks ``backward`` (d cost / d yhat). The
    scalar differentiated is ``sum(delta * module.forward(X))`` for a random
    ``delta``, or ``sum(loss.forward(y, yhat))``; the derivative along entry
    ``i`` is estimated by ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``, in
    float64. An entry passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``.

    Args:
        target: a ``Module`` (any layer, a ``Sequential``, your own subclass) or a ``Loss``.
        *inputs: ``X`` for a module, ``y, yhat`` for a loss (small: two forward
            passes per checked entry).
        eps: the finite-difference step.
        atol: the absolute tolerance.
        rtol: the relative tolerance.
        raise_exception: raise ``GradcheckError`` on a mismatch (else return False).
        seed: the seed of ``delta`` and of the sampled entries.
        max_entries: check at most this many random entries per quantity
            (None: every entry).

    Returns:
        True when every checked entry agrees (False on a mismatch when
        ``raise_exception`` is False).

    Raises:
        GradcheckError: a gradient differs: the message names the input or the
            parameter, the worst index, the analytic and numeric values there.
        TypeError: ``target`` is neither a ``Module`` nor a ``Loss``, or the
            inputs do not fit it.

    The module's parameters and gradients are left as they were. Modules that
    draw random numbers in ``forward`` (dropout in training mode) cannot be checked
    this way.

    Example:
        >>> gradcheck(Linear(3, 2), np.random.default_rng(0).standard_normal((4, 3)))
        True
    """
    checks = finite_differences(target, *inputs, eps=eps, seed=seed, max_entries=max_entries)
    for check in checks:
        excess = check.excess(atol, rtol)
        if excess.size == 0 or float(excess.max()) <= 0:
            continue
        if not raise_exception:
            return False
        j = int(np.argmax(excess))
        where = tuple(int(i) for i in np.unravel_index(int(check.indices[j]), check.shape))
        label = {
            "input": "d loss / d input (backward_delta)",
            "yhat": "d loss / d yhat (backward)",
        }.get(check.what, f"{check.what} gradient (backward_update_gradient)")
        raise GradcheckError(
            f"gradcheck: {label} of {type(target).__name__} differs from finite differences: "
            f"{int(np.sum(excess > 0))} of {excess.size} checked entries; the worst at index "
            f"{where}: analytic {check.analytic[j]:.8g}, numeric {check.numeric[j]:.8g} "
            f"(atol={atol:g}, rtol={rtol:g}, eps={eps:g})"
        )
    return True
