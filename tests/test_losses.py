"""Issue 4: every loss against its torch counterpart and finite differences.

Labels are given both ways the course allows: one-hot ``(N, k)`` and class
indices ``(N,)``.
"""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import check_loss, check_loss_fd, require_torch

DTYPES = [np.float32, np.float64]
EXAMPLES = settings(max_examples=15)
shapes = st.tuples(st.integers(1, 12), st.integers(2, 9))


def _classes(seed: int, n: int, k: int, dtype, one_hot: bool):
    """Random logits ``(n, k)`` and labels, as indices or one-hot rows of ``dtype``."""
    rng = np.random.default_rng(seed)
    logits = (2 * rng.standard_normal((n, k))).astype(dtype)
    labels = rng.integers(0, k, n)
    return (nn.one_hot(labels, k, dtype) if one_hot else labels), logits


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# name -> (our loss, torch per-sample cost(yhat_t, y_t), turns logits into our yhat)
CLASS_LOSSES = {
    "CrossEntropyLoss": (
        nn.CrossEntropyLoss,
        lambda F, p, y: (
            F.nll_loss(p.log(), y, reduction="none") if y.ndim == 1 else -(y * p.log()).sum(1)
        ),
        _softmax,
    ),
    "NLLLoss": (
        nn.NLLLoss,
        lambda F, lp, y: F.nll_loss(lp, y, reduction="none") if y.ndim == 1 else -(y * lp).sum(1),
        lambda z: np.log(_softmax(z)),
    ),
    "CELogSoftMax": (
        nn.CELogSoftMax,
        lambda F, z, y: F.cross_entropy(z, y, reduction="none"),
        lambda z: z,
    ),
    "CrossEntropyCriterion": (
        nn.CrossEntropyCriterion,
        lambda F, z, y: (
            F.nll_loss(F.log_softmax(z, -1), y, reduction="none")
            if y.ndim == 1
            else F.cross_entropy(z, y, reduction="none")
        ),
        lambda z: z,
    ),
    "HingeLoss": (
        nn.HingeLoss,
        lambda F, z, y: F.multi_margin_loss(z, y if y.ndim == 1 else y.argmax(1), reduction="none"),
        lambda z: z,
    ),
}


@pytest.mark.parametrize("name", sorted(CLASS_LOSSES))
@pytest.mark.parametrize("one_hot", [False, True], ids=["indices", "one-hot"])
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_class_loss_matches_torch(name, one_hot, dtype, shape, seed):
    F = require_torch().nn.functional
    ours, theirs, to_yhat = CLASS_LOSSES[name]
    y, logits = _classes(seed, *shape, dtype, one_hot)
    yhat = to_yhat(logits.astype(np.float64)).astype(dtype)
    check_loss(
        ours(), lambda t, yt: theirs(F, t, yt), y, yhat, rtol=1e-4 if dtype == np.float32 else None
    )


@pytest.mark.parametrize("name", sorted(CLASS_LOSSES))
@pytest.mark.parametrize("one_hot", [False, True], ids=["indices", "one-hot"])
def test_class_loss_finite_differences(name, one_hot):
    ours, _, to_yhat = CLASS_LOSSES[name]
    y, logits = _classes(3, 7, 5, np.float64, one_hot)
    check_loss_fd(ours(), y, to_yhat(logits / 2))  # no tiny probabilities: 1/p is steep


# name: (the loss, its course name checked by finite differences, torch's loss per
# sample from torch.nn.functional, y and yhat drawn from a generator, float32 rtol)
ELEMENTWISE_LOSSES = {
    "mae": (
        nn.MAELoss,
        nn.ABSLoss,
        lambda F: lambda t, yt: F.l1_loss(t, yt, reduction="none").sum(1),
        lambda rng, shape: rng.standard_normal((2, *shape)),
        None,
    ),
    "bce": (
        nn.BCELoss,
        nn.BCELoss,
        lambda F: lambda t, yt: F.binary_cross_entropy(t, yt, reduction="none").sum(1),
        lambda rng, shape: (rng.random(shape), rng.uniform(0.02, 0.98, shape)),
        1e-4,
    ),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_elementwise_loss_matches_torch(name, dtype, shape, seed):
    ours, course, theirs, draw, rtol32 = ELEMENTWISE_LOSSES[name]
    F = require_torch().nn.functional
    y, yhat = (a.astype(dtype) for a in draw(np.random.default_rng(seed), shape))
    check_loss(ours(), theirs(F), y, yhat, rtol=rtol32 if dtype == np.float32 else None)
    check_loss_fd(course(), y.astype(np.float64), yhat)


def test_bce_is_clipped_like_torch():
    F = require_torch().nn.functional
    y = np.array([[1.0, 0.0, 1.0, 0.0]])
    yhat = np.array([[0.0, 1.0, 1.0, 0.0]])  # two certain mistakes, two certain hits
    bce = lambda t, yt: F.binary_cross_entropy(t, yt, reduction="none").sum(1)  # noqa: E731
    # torch's gradient floor is 1e-12 rounded to float32: a relative 4e-9 off
    check_loss(nn.BCELoss(), bce, y, yhat, rtol=1e-8)
    assert np.all(np.isfinite(nn.BCELoss().backward(y, yhat)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2])
@EXAMPLES
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_binary_hinge_matches_torch(dtype, ndim, shape, seed):
    torch = require_torch()
    rng = np.random.default_rng(seed)
    shape = shape[:ndim]
    y = rng.choice([-1.0, 1.0], shape).astype(dtype)
    yhat = (2 * rng.standard_normal(shape)).astype(dtype)
    per_sample = lambda t, yt: torch.relu(1 - yt * t).reshape(len(t), -1).sum(1)  # noqa: E731
    check_loss(nn.HingeLoss(), per_sample, y, yhat)
    check_loss_fd(nn.HingeLoss(), y.astype(np.float64), yhat)


def test_hinge_margin_matches_torch():
    F = require_torch().nn.functional
    y, z = _classes(1, 6, 4, np.float64, False)
    check_loss(
        nn.HingeLoss(margin=0.5),
        lambda t, yt: F.multi_margin_loss(t, yt, margin=0.5, reduction="none"),
        y,
        z,
    )


def test_cross_entropy_stable_on_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 1e4, 0.0]])
    y = np.array([0, 1])
    for loss in (nn.CELogSoftMax(), nn.CrossEntropyCriterion()):
        cost, grad = loss.forward(y, z), loss.backward(y, z)
        np.testing.assert_allclose(cost, [0.0, 0.0], atol=1e-12)
        assert np.all(np.isfinite(grad))


def test_label_errors_name_the_problem():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        nn.CELogSoftMax().forward(np.array([0, 4, 1]), z)
    with pytest.raises(ValueError, match="y"):
        nn.NLLLoss().forward(np.array([0, 1]), z)
    with pytest.raises(ValueError, match="shape"):
        nn.CrossEntropyLoss().forward(np.zeros((3, 3)), z)
    with pytest.raises(ValueError, match="-1 or \\+1"):
        nn.HingeLoss().forward(np.array([0.0, 1.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="margin"):
        nn.HingeLoss(margin=-1)


def test_one_hot_and_indices_agree():
    y, z = _classes(0, 5, 3, np.float64, False)
    for loss in (nn.CrossEntropyLoss(), nn.NLLLoss(), nn.HingeLoss()):
        p = _softmax(z)
        np.testing.assert_array_equal(loss.forward(y, p), loss.forward(nn.one_hot(y, 3), p))
        np.testing.assert_array_equal(loss.backward(y, p), loss.backward(nn.one_hot(y, 3), p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_match_torch(dtype):
    """Issue 12 item 4: a -inf logit and logits at the float's range end give
    torch's finite cost and gradient, with indices and with one-hot targets."""
    torch = require_torch()
    big = 1e308 if dtype == np.float64 else 3e38
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for row in ([-np.inf, 0.0, 1.0], [big, 0.0, -big], [0.0, big, -big]):
        x = np.array([row, [0.5, -1.0, 2.0]], dtype)
        t = np.array([1, 2])
        xt = torch.tensor(x, requires_grad=True)
        cost = torch.nn.functional.cross_entropy(xt, torch.tensor(t), reduction="none")
        cost.sum().backward()
        for loss in (nn.CrossEntropyCriterion(), nn.CELogSoftMax()):
            for y in (t, nn.one_hot(t, 3, dtype)):
                got = loss.forward(y, x)
                assert np.all(np.isfinite(got)), (type(loss).__name__, row)
                np.testing.assert_allclose(got, cost.detach().numpy(), rtol=tol)
                np.testing.assert_allclose(loss.backward(y, x), xt.grad.numpy(), rtol=tol, atol=tol)
        nll = nn.NLLLoss().forward(t, nn.LogSoftMax().forward(x))
        np.testing.assert_allclose(nll, cost.detach().numpy(), rtol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "loss_cls",
    [nn.MSELoss, nn.MAELoss, nn.BCELoss, nn.CELogSoftMax, nn.CrossEntropyCriterion, nn.NLLLoss],
)
def test_nan_through_every_loss(dtype, loss_cls):
    """Issue 12 item 3: a NaN prediction gives a NaN cost and gradient, alone
    and in a fused training step."""
    yhat = np.array([[np.nan, 0.3], [0.2, 0.6]], dtype)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    loss = loss_cls()
    cost, grad = loss.forward(y, yhat), loss.backward(y, yhat)
    assert np.isnan(cost[0]) and np.isfinite(cost[1])
    if loss_cls is nn.NLLLoss:  # its gradient -y does not read yhat
        return
    assert np.isnan(grad[0]).any() and np.all(np.isfinite(grad[1]))
    lin = nn.Linear(2, 2, dtype=dtype)
    lin._parameters[...] = np.eye(2, dtype=dtype)
    lin._bias[...] = 0
    net = nn.Sequential(lin, nn.Sigmoid()) if loss_cls is nn.BCELoss else nn.Sequential(lin)
    assert np.isnan(nn.Optim(net, loss_cls(), 0.1).step(yhat, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_losses_equal_their_formulas_and_leave_inputs(dtype):
    """BCE and MSE compute in place on their own temporaries (issue 16): the values are
    those of the textbook expressions, bit for bit, and the caller's arrays are unchanged."""
    rng = np.random.default_rng(3)
    y = rng.random((7, 5)).astype(dtype)
    yhat = rng.random((7, 5)).astype(dtype)
    yhat[0, :2] = (0, 1)  # clamped logs
    y0, yhat0 = y.copy(), yhat.copy()
    with np.errstate(divide="ignore"):
        lp, lq = np.maximum(np.log(yhat), -100.0), np.maximum(np.log(1 - yhat), -100.0)
    bce = (-(y * lp + (1 - y) * lq)).sum(axis=1)
    bce_grad = (yhat - y) / np.maximum(yhat * (1 - yhat), 1e-12)
    np.testing.assert_array_equal(nn.BCELoss().forward(y, yhat), bce)
    np.testing.assert_array_equal(nn.BCELoss().backward(y, yhat), bce_grad)
    np.testing.assert_array_equal(nn.MSELoss().forward(y, yhat), ((y - yhat) ** 2).sum(axis=1))
    np.testing.assert_array_equal(nn.MSELoss().backward(y, yhat), 2 * (yhat - y))
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(yhat, yhat0)
