"""Issue 2: Linear, activations and MSELoss against torch and finite differences."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import ParamMap, check_loss, check_loss_fd, check_module, check_module_fd, require_torch

DTYPES = [np.float32, np.float64]
LINEAR_PARAMS = (
    ParamMap("_parameters", "_gradient", "weight", to_torch=np.transpose, to_ours=np.transpose),
    ParamMap("_bias", "_grad_bias", "bias"),
)

batch = st.integers(1, 17)
features = st.integers(1, 24)


def _x(rng: np.random.Generator, shape: tuple[int, ...], dtype, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50)
@given(n=batch, fin=features, fout=features, bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_matches_torch(dtype, n, fin, fout, bias, seed):
    torch = require_torch()
    rng = np.random.default_rng(seed)
    ours = nn.Linear(fin, fout, bias=bias, dtype=dtype, rng=seed)
    theirs = torch.nn.Linear(fin, fout, bias=bias)
    params = LINEAR_PARAMS if bias else LINEAR_PARAMS[:1]
    check_module(ours, theirs, _x(rng, (n, fin), dtype), params)


ACTIVATIONS = {
    "TanH": (nn.TanH, lambda t: t.nn.Tanh()),
    "Sigmoid": (nn.Sigmoid, lambda t: t.nn.Sigmoid()),
    "ReLU": (nn.ReLU, lambda t: t.nn.ReLU()),
    "Threshold": (lambda: nn.Threshold(0.3, -2.0), lambda t: t.nn.Threshold(0.3, -2.0)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_activation_matches_torch(name, dtype, shape, seed):
    torch = require_torch()
    ours_factory, theirs_factory = ACTIVATIONS[name]
    x = _x(np.random.default_rng(seed), tuple(shape), dtype, scale=3.0)
    check_module(ours_factory(), theirs_factory(torch), x)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50)
@given(n=batch, d=features, seed=st.integers(0, 2**16))
def test_mse_matches_torch(dtype, n, d, seed):
    torch = require_torch()
    rng = np.random.default_rng(seed)
    y, yhat = _x(rng, (n, d), dtype), _x(rng, (n, d), dtype)
    check_loss(
        nn.MSELoss(),
        lambda yh, yt: torch.nn.functional.mse_loss(yh, yt, reduction="none").sum(1),
        y,
        yhat,
    )


def test_sigmoid_is_accurate_far_from_zero():
    torch = require_torch()
    x = np.array([-700.0, -40.0, -10.0, 0.0, 10.0, 40.0, 700.0])
    np.testing.assert_allclose(
        nn.Sigmoid().forward(x), torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-14, atol=0
    )


@pytest.mark.parametrize(
    "module",
    [
        lambda: nn.Linear(5, 3, rng=1),
        nn.TanH,
        nn.Sigmoid,
        lambda: nn.Sequential(nn.Linear(5, 4, rng=2), nn.TanH(), nn.Linear(4, 2, rng=3)),
    ],
)
def test_modules_pass_finite_differences(module):
    check_module_fd(module(), np.random.default_rng(0).standard_normal((6, 5)))


def test_mse_passes_finite_differences():
    rng = np.random.default_rng(1)
    check_loss_fd(nn.MSELoss(), rng.standard_normal((7, 3)), rng.standard_normal((7, 3)))


def test_sequential_matches_torch_end_to_end():
    torch = require_torch()
    rng = np.random.default_rng(3)
    ours = nn.Sequential(nn.Linear(4, 6, rng=0), nn.TanH(), nn.Linear(6, 2, rng=1), nn.Sigmoid())
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2), torch.nn.Sigmoid()
    ).double()
    with torch.no_grad():
        for i in (0, 2):
            theirs[i].weight.copy_(torch.from_numpy(ours[i]._parameters.T.copy()))
            theirs[i].bias.copy_(torch.from_numpy(ours[i]._bias))
    x = rng.standard_normal((8, 4))
    xt = torch.from_numpy(x).requires_grad_(True)
    delta = rng.standard_normal((8, 2))
    theirs(xt).backward(torch.from_numpy(delta))
    ours.forward(x)
    ours.zero_grad()
    din = ours.backward(x, delta)
    np.testing.assert_allclose(din, xt.grad.numpy(), rtol=1e-10)
    for i in (0, 2):
        np.testing.assert_allclose(ours[i]._gradient, theirs[i].weight.grad.numpy().T, rtol=1e-10)
        np.testing.assert_allclose(ours[i]._grad_bias, theirs[i].bias.grad.numpy(), rtol=1e-10)


def test_course_scripts_can_set_weights_and_read_gradients():
    layer = nn.Linear(3, 2)
    W = np.arange(6.0).reshape(3, 2)
    b = np.array([1.0, -1.0])
    layer._parameters, layer._bias = W, b
    x = np.ones((4, 3))
    np.testing.assert_array_equal(layer.forward(x), x @ W + b)
    layer.zero_grad()
    layer.backward_update_gradient(x, np.ones((4, 2)))
    np.testing.assert_array_equal(layer._gradient, x.T @ np.ones((4, 2)))
    layer.update_parameters(0.1)
    # The arrays the script assigned are not trained in place.
    np.testing.assert_array_equal(W, np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(layer._parameters, np.arange(6.0).reshape(3, 2) - 0.4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_parameters_steps_every_layout(dtype):
    """The kernel (C-contiguous pairs) and numpy (any other layout) give ``p - lr g``."""
    rng = np.random.default_rng(3)
    for order in ("C", "F"):
        layer = nn.Linear(4, 3, dtype=dtype)
        W = np.asarray(rng.standard_normal((4, 3)), dtype=dtype, order=order)
        layer._parameters = W.copy(order=order)
        layer.zero_grad()
        layer._gradient[...] = rng.standard_normal((4, 3))
        layer._grad_bias[...] = rng.standard_normal(3)
        grad, bias, grad_bias = layer._gradient.copy(), layer._bias.copy(), layer._grad_bias.copy()
        layer.update_parameters(0.25)
        np.testing.assert_array_equal(layer._parameters, W - dtype(0.25) * grad)
        np.testing.assert_array_equal(layer._bias, bias - dtype(0.25) * grad_bias)
    layer = nn.Linear(4, 3, dtype=dtype)
    layer.zero_grad()
    layer._gradient = np.zeros((3, 4), dtype)
    with pytest.raises(ValueError, match=r"grad must be C-contiguous of shape \(4, 3\)"):
        layer.update_parameters(0.25)
