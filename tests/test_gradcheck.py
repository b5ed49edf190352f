"""diy_nn.gradcheck: passes the library's own layers and losses, catches planted mistakes."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from diy_nn.gradcheck import finite_differences
from parity import SMALL_CNN_INPUT, small_cnn


def _x(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


LAYERS = {
    "Linear": (lambda: nn.Linear(4, 3, rng=0), (5, 4)),
    "TanH": (nn.TanH, (3, 4)),
    "Sigmoid": (nn.Sigmoid, (3, 4)),
    "ReLU": (nn.ReLU, (3, 4)),
    "SoftMax": (nn.SoftMax, (3, 5)),
    "LogSoftMax": (nn.LogSoftMax, (3, 5)),
    "Conv1D": (lambda: nn.Conv1D(3, 2, 4, stride=2, rng=0), (2, 9, 2)),
    "Conv2D": (lambda: nn.Conv2D(2, 2, 3, rng=0), (2, 4, 5, 2)),
    "MaxPool1D": (lambda: nn.MaxPool1D(2, 2), (2, 6, 3)),
    "AvgPool2D": (lambda: nn.AvgPool2D(2, 1), (2, 4, 5, 2)),
    "Flatten": (nn.Flatten, (2, 3, 4)),
    "Sequential MLP": (
        lambda: nn.Sequential(nn.Linear(4, 6, rng=0), nn.TanH(), nn.Linear(6, 2, rng=1)),
        (5, 4),
    ),
    "Sequential CNN": (small_cnn, SMALL_CNN_INPUT),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_own_layers_pass(name):
    factory, shape = LAYERS[name]
    assert nn.gradcheck(factory(), _x(0, shape)) is True


def _probabilities(seed: int, shape: tuple[int, int]) -> np.ndarray:
    z = np.exp(_x(seed, shape) / 2)
    return z / z.sum(axis=1, keepdims=True)


LOSSES = {
    "MSELoss": (nn.MSELoss, lambda: (_x(1, (4, 3)), _x(2, (4, 3)))),
    "MAELoss": (nn.MAELoss, lambda: (_x(1, (4, 3)), _x(2, (4, 3)))),
    "BCELoss": (
        nn.BCELoss,
        lambda: ((_x(1, (4, 3)) > 0).astype(float), 1 / (1 + np.exp(-_x(2, (4, 3))))),
    ),
    "CrossEntropyLoss": (
        nn.CrossEntropyLoss,
        lambda: (np.array([0, 2, 1, 2]), _probabilities(3, (4, 3))),
    ),
    "CELogSoftMax": (nn.CELogSoftMax, lambda: (np.array([0, 2, 1, 2]), _x(3, (4, 3)))),
    "NLLLoss": (nn.NLLLoss, lambda: (np.eye(3)[[0, 2, 1, 2]], np.log(_probabilities(4, (4, 3))))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_own_losses_pass(name):
    loss, data = LOSSES[name]
    y, yhat = data()
    assert nn.gradcheck(loss(), y, yhat) is True


class WrongSoftplus(nn.Module):
    """A user-style layer whose backward_delta forgets the chain rule's ``delta`` factor."""

    def forward(self, X):
        return np.logaddexp(0, X)

    def backward_delta(self, input, delta):
        return 1 / (1 + np.exp(-input))  # should be multiplied by delta


class Affine(nn.Module):
    """A user-style layer with parameters: y = x W + b, with a planted bias mistake if asked."""

    _param_names = ("_parameters", "_bias")
    _grad_names = ("_gradient", "_grad_bias")

    def __init__(self, n_in, n_out, wrong_bias=False):
        super().__init__()
        rng = np.random.default_rng(0)
        self._parameters = rng.standard_normal((n_in, n_out))
        self._bias = rng.standard_normal(n_out)
        self.wrong_bias = wrong_bias
        self.zero_grad()

    def forward(self, X):
        return X @ self._parameters + self._bias

    def backward_update_gradient(self, input, delta):
        self._gradient += input.T @ delta
        self._grad_bias += delta.mean(axis=0) if self.wrong_bias else delta.sum(axis=0)

    def backward_delta(self, input, delta):
        return delta @ self._parameters.T


def test_planted_wrong_backward_delta_is_caught():
    x = _x(0, (3, 4))
    with pytest.raises(nn.GradcheckError, match=r"d loss / d input") as info:
        nn.gradcheck(WrongSoftplus(), x)
    message = str(info.value)
    assert "WrongSoftplus" in message and "worst at index (" in message
    assert "analytic" in message and "numeric" in message
    assert nn.gradcheck(WrongSoftplus(), x, raise_exception=False) is False


def test_wrong_parameter_gradient_is_caught_and_named():
    x = _x(0, (5, 4))
    assert nn.gradcheck(Affine(4, 3), x) is True
    with pytest.raises(nn.GradcheckError, match=r"parameter _bias gradient") as info:
        nn.gradcheck(Affine(4, 3, wrong_bias=True), x)
    assert "_parameters" not in str(info.value)
    # inside a Sequential the parameter is named by its path
    net = nn.Sequential(nn.Linear(4, 4, rng=0), nn.TanH(), Affine(4, 3, wrong_bias=True))
    with pytest.raises(nn.GradcheckError, match=r"parameter 2\._bias gradient"):
        nn.gradcheck(net, x)
    assert nn.gradcheck(net, x, raise_exception=False) is False


def test_the_worst_index_and_values_are_reported():
    checks = finite_differences(WrongSoftplus(), _x(0, (3, 4)))
    (check,) = checks
    excess = check.excess(1e-5, 1e-3)
    worst = int(check.indices[np.argmax(excess)])
    with pytest.raises(nn.GradcheckError) as info:
        nn.gradcheck(WrongSoftplus(), _x(0, (3, 4)))
    index = tuple(int(i) for i in np.unravel_index(worst, (3, 4)))
    assert f"index {index}" in str(info.value)
    assert f"analytic {check.analytic[np.argmax(excess)]:.8g}" in str(info.value)


def test_parameters_and_gradients_are_left_as_they_were():
    net = nn.Sequential(nn.Linear(4, 5, rng=0), nn.TanH(), nn.Linear(5, 2, rng=1)).to(np.float32)
    x = _x(0, (6, 4)).astype(np.float32)
    net.zero_grad()
    net.backward(x, np.ones((6, 2), np.float32))
    before = [(n, p, g, p.copy(), g.copy()) for n, p, g in net.named_parameters()]
    x_before = x.copy()
    assert nn.gradcheck(net, x, atol=1e-4) is True
    after = list(net.named_parameters())
    for (n, p, g, pv, gv), (n2, p2, g2) in zip(before, after, strict=True):
        assert n == n2 and p2 is p and g2 is g
        assert p2.dtype == np.float32 and g2.dtype == np.float32
        np.testing.assert_array_equal(p2, pv)
        np.testing.assert_array_equal(g2, gv)
    np.testing.assert_array_equal(x, x_before)
    # and the model still trains in float32 with the same results as an untouched copy
    assert net.forward(x).dtype == np.float32


def test_max_entries_samples_each_quantity():
    checks = finite_differences(nn.Linear(6, 5, rng=0), _x(0, (4, 6)), max_entries=7)
    assert [c.what for c in checks] == ["input", "parameter _parameters", "parameter _bias"]
    assert [len(c.indices) for c in checks] == [7, 7, 5]


def test_bad_arguments():
    with pytest.raises(TypeError, match="Module or Loss"):
        nn.gradcheck(lambda x: x, _x(0, (2, 2)))
    with pytest.raises(TypeError, match="y and yhat"):
        nn.gradcheck(nn.MSELoss(), _x(0, (2, 2)))
    with pytest.raises(TypeError, match="one input X"):
        nn.gradcheck(nn.TanH(), _x(0, (2, 2)), _x(1, (2, 2)))
    with pytest.raises(TypeError, match="real numeric"):
        nn.gradcheck(nn.TanH(), np.array([["a"]]))
    with pytest.raises(ValueError, match="eps"):
        nn.gradcheck(nn.TanH(), _x(0, (2, 2)), eps=0.0)


class Counting(nn.Module):
    """A user layer with state besides its parameters: a running mean updated by forward."""

    def __init__(self):
        super().__init__()
        self.running = np.zeros(3)
        self.calls = 0

    def forward(self, X):
        self.running += X.mean(axis=0)
        self.calls += 1
        return 2 * X

    def backward_delta(self, input, delta):
        return 2 * delta


def test_state_besides_parameters_is_left_as_it_was():
    layer = Counting()
    layer.forward(np.ones((2, 3)))
    running = layer.running
    assert nn.gradcheck(layer, _x(0, (4, 3))) is True
    assert layer.running is running and layer.calls == 1
    np.testing.assert_array_equal(layer.running, np.ones(3))
