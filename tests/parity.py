"""The test harness every module and loss goes through.

- ``check_module``: a diy_nn module against its torch counterpart — forward,
  ``backward_delta``, ``backward_update_gradient`` (and that gradients
  accumulate) — in the dtype of the input.
- ``check_loss``: a diy_nn loss against a torch per-sample cost.
- ``check_module_fd`` / ``check_loss_fd``: central finite differences (float64), by
  ``diy_nn.gradcheck.finite_differences`` with this harness's tolerances.

torch is imported lazily, through ``require_torch()``: outside CI a missing
torch skips the test; under ``CI=true`` it fails it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import diy_nn as nn
import numpy as np
import pytest
from diy_nn.gradcheck import finite_differences

# Default tolerances: the rtol, with an atol for values near zero. The
# atol is relative to the largest magnitude in the tensor compared (see
# assert_close): an entry that is a sum of terms cancelling to near zero
# carries the rounding error of those terms, not of the result.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}


# A small CNN through which every kind of layer's backward runs (conv, pool,
# flatten, dense, softmax): shared by the gradcheck and finite-difference tests.
SMALL_CNN_INPUT = (2, 10, 2)


def small_cnn() -> nn.Sequential:
    """Conv1D(3, 2, 4) -> MaxPool1D(2, 2) -> Flatten -> Linear(16, 3) -> SoftMax, seeded."""
    return nn.Sequential(
        nn.Conv1D(3, 2, 4, rng=0),
        nn.MaxPool1D(2, 2),
        nn.Flatten(),
        nn.Linear(16, 3, rng=1),
        nn.SoftMax(),
    )


def small_mlp(seed: int = 0) -> nn.Sequential:
    """Linear(5, 4) -> TanH -> Linear(4, 3), seeded: the optimizer tests' net."""
    return nn.Sequential(nn.Linear(5, 4, rng=seed), nn.TanH(), nn.Linear(4, 3, rng=seed + 1))


def torch_copy_of_small_mlp(torch: Any, net: nn.Sequential) -> Any:
    """The same net in torch (float64), with ``net``'s parameters."""
    t = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for i in (0, 2):
            t[i].weight.copy_(torch.from_numpy(net[i]._parameters.T.copy()))
            t[i].bias.copy_(torch.from_numpy(net[i]._bias.copy()))
    return t


def train_beside_torch(
    make_ours: Callable[..., Any],
    make_theirs: Callable[..., Any],
    steps: int,
    batches: int,
    size: int,
) -> tuple[nn.Sequential, Any]:
    """``small_mlp`` and its torch copy, each stepped ``steps`` times by its optimizer
    (``make_ours(net, loss)``, ``make_theirs(torch, parameters)``) on the summed squared
    error of seeded data cut in ``batches`` batches of ``size`` rows, taken in turn."""
    torch = require_torch()
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((batches * size, 5)), rng.standard_normal((batches * size, 3))
    net = small_mlp()
    tnet = torch_copy_of_small_mlp(torch, net)
    opt, topt = make_ours(net, nn.MSELoss()), make_theirs(torch, tnet.parameters())
    for step in range(steps):
        batch = slice(step % batches * size, step % batches * size + size)
        opt.step(X[batch], Y[batch])
        topt.zero_grad()
        ((tnet(torch.from_numpy(X[batch])) - torch.from_numpy(Y[batch])) ** 2).sum().backward()
        topt.step()
    return net, tnet


def require_torch() -> Any:
    """Returns the torch module; skips (outside CI) or fails (CI=true) without it."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("torch is required for the parity tests under CI (pip install .[test])")
        pytest.skip("torch is not installed (pip install .[test])")
    return torch


def _identity(a: np.ndarray) -> np.ndarray:
    return a


@dataclass(frozen=True)
class ParamMap:
    """How one diy_nn parameter corresponds to a torch parameter.

    ``to_torch`` turns our array into torch's layout; ``to_ours`` turns a torch
    array (value or gradient) into ours. For ``Linear``: ours ``(in, out)``,
    torch ``(out, in)``, so both are a transpose.
    """

    ours: str
    grad: str
    theirs: str
    to_torch: Callable[[np.ndarray], np.ndarray] = field(default=_identity)
    to_ours: Callable[[np.ndarray], np.ndarray] = field(default=_identity)


def _tol(dtype: np.dtype, rtol: float | None, atol: float | None) -> dict[str, float]:
    tol = dict(TOLERANCES[np.dtype(dtype)])
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    return tol


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, **tol: float) -> None:
    """Asserts shape and values; the message says which quantity differs.

    ``|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|``
    elementwise: the absolute part scales with the tensor, so a float32 entry
    whose summands cancel (a gradient of -0.04 among entries of magnitude 10)
    is held to the rounding error of its summands, as torch's own result is.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    tol = dict(tol)
    tol["atol"] = tol.get("atol", 0.0) * scale
    np.testing.assert_allclose(actual, expected, err_msg=what, **tol)


def check_module(
    ours: Any,
    theirs: Any,
    x: np.ndarray,
    params: Sequence[ParamMap] = (),
    torch_forward: Callable[[Any, Any], Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> None:
    """Checks a diy_nn module against a torch module on input ``x``.

    Copies our parameters into ``theirs`` (through ``params``), then compares
    in the dtype of ``x``: the forward output (shape, dtype, values),
    ``backward_delta`` against torch's input gradient, and each parameter
    gradient after ``zero_grad`` + ``backward_update_gradient``; a second
    ``backward_update_gradient`` must double the gradients (they accumulate).
    Also checks that neither ``x`` nor ``delta`` was modified.

    ``torch_forward(theirs, t)`` takes and returns tensors in diy_nn's layout
    (wrap layout permutes inside it); by default it is ``theirs(t)``.
    """
    torch = require_torch()
    dtype = x.dtype
    assert dtype in (np.float32, np.float64), f"x must be float32/float64, got {dtype}"
    tol = _tol(dtype, rtol, atol)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    theirs = theirs.to(tdtype)
    # (not `in (None, dtype)`: numpy finds np.dtype("float64") == None true)
    if getattr(ours, "dtype", None) is not None and ours.dtype != dtype:
        ours.to(dtype)
    with torch.no_grad():
        for p in params:
            getattr(theirs, p.theirs).copy_(
                torch.from_numpy(np.ascontiguousarray(p.to_torch(getattr(ours, p.ours))))
            )

    x_before = x.copy()
    forward = torch_forward or (lambda m, t: m(t))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = forward(theirs, xt)

    out = ours.forward(x)
    assert isinstance(out, np.ndarray), f"forward returned {type(out).__name__}"
    assert out.dtype == dtype, f"forward dtype {out.dtype} != input dtype {dtype}"
    assert_close(out, out_t.detach().numpy(), "forward", **tol)

    delta = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    delta_before = delta.copy()
    out_t.backward(torch.from_numpy(delta.copy()))

    din = ours.backward_delta(x, delta)
    assert din.dtype == dtype, f"backward_delta dtype {din.dtype} != {dtype}"
    assert_close(din, xt.grad.numpy(), "backward_delta", **tol)

    ours.zero_grad()
    ours.backward_update_gradient(x, delta)
    for p in params:
        expected = p.to_ours(getattr(theirs, p.theirs).grad.numpy())
        assert_close(getattr(ours, p.grad), expected, f"gradient {p.grad}", **tol)
    ours.backward_update_gradient(x, delta)
    for p in params:
        expected = 2 * p.to_ours(getattr(theirs, p.theirs).grad.numpy())
        assert_close(getattr(ours, p.grad), expected, f"accumulated {p.grad}", **tol)

    np.testing.assert_array_equal(x, x_before, err_msg="the module modified its input")
    np.testing.assert_array_equal(delta, delta_before, err_msg="the module modified delta")


def check_loss(
    ours: Any,
    torch_per_sample: Callable[[Any, Any], Any],
    y: np.ndarray,
    yhat: np.ndarray,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Checks a diy_nn loss against ``torch_per_sample(yhat_t, y_t) -> (N,)``.

    Compares ``forward`` with the per-sample costs and ``backward`` with the
    gradient of their sum with respect to ``yhat``, in the dtype of ``yhat``.
    Integer ``y`` (class indices) is passed to torch as int64.
    """
    torch = require_torch()
    dtype = yhat.dtype
    tol = _tol(dtype, rtol, atol)
    y_before, yhat_before = y.copy(), yhat.copy()
    yhat_t = torch.from_numpy(yhat.copy()).requires_grad_(True)
    y_t = torch.from_numpy(y.astype(np.int64) if y.dtype.kind in "iu" else y.copy())
    cost_t = torch_per_sample(yhat_t, y_t)
    cost_t.sum().backward()

    cost = ours.forward(y, yhat)
    assert cost.shape == (len(yhat),), f"forward must give one cost per sample, got {cost.shape}"
    assert cost.dtype == dtype, f"forward dtype {cost.dtype} != {dtype}"
    assert_close(cost, cost_t.detach().numpy(), "loss forward", **tol)
    grad = ours.backward(y, yhat)
    assert grad.dtype == dtype, f"backward dtype {grad.dtype} != {dtype}"
    assert_close(grad, yhat_t.grad.numpy(), "loss backward", **tol)
    np.testing.assert_array_equal(y, y_before, err_msg="the loss modified y")
    np.testing.assert_array_equal(yhat, yhat_before, err_msg="the loss modified yhat")


@dataclass(frozen=True)
class FDSettings:
    """Central differences: step ``eps``, tolerances, seed and how many entries to check."""

    eps: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-7
    seed: int = 0
    limit: int = 40


FD = FDSettings()


def _assert_fd(analytic: np.ndarray, numeric: np.ndarray, what: str, fd: FDSettings) -> None:
    assert_close(analytic, numeric, f"{what} vs finite differences", rtol=fd.rtol, atol=fd.atol)


def check_module_fd(module: Any, x: np.ndarray, fd: FDSettings = FD) -> None:
    """Compares the analytic gradients of ``sum(delta * module(x))`` with central differences.

    Works in float64 through ``diy_nn.gradcheck.finite_differences`` (the
    machinery of the public ``diy_nn.gradcheck``); checks ``backward_delta`` and
    every parameter gradient on up to ``fd.limit`` random entries each, with
    ``assert_close``'s tolerance (its atol scales with the tensor).
    """
    checks = finite_differences(module, x, eps=fd.eps, seed=fd.seed, max_entries=fd.limit)
    assert checks[0].what == "input"
    assert [c.what for c in checks[1:]] == [
        f"parameter {name}" for name, _, _ in module.named_parameters()
    ]
    for check in checks:
        what = (
            "backward_delta"
            if check.what == "input"
            else "gradient of " + check.what.removeprefix("parameter ")
        )
        _assert_fd(check.analytic, check.numeric, what, fd)


def check_loss_fd(loss: Any, y: np.ndarray, yhat: np.ndarray, fd: FDSettings = FD) -> None:
    """Compares ``loss.backward`` with central differences of ``sum(loss.forward)`` (float64)."""
    (check,) = finite_differences(loss, y, yhat, eps=fd.eps, seed=fd.seed, max_entries=fd.limit)
    _assert_fd(check.analytic, check.numeric, "loss backward", fd)
