"""Issue 4: the course's own check. Weights are set directly, as course scripts do
(``layer._parameters = W``, ``layer._bias = b``); values and gradients are compared
with plain formulas written here, loop by loop."""

from __future__ import annotations

import diy_nn as nn
import numpy as np

RNG = np.random.default_rng(2024)


def test_linear_then_mse():
    X, y = RNG.standard_normal((6, 10)), RNG.standard_normal((6, 1))
    W, b = RNG.standard_normal((10, 1)), RNG.standard_normal(1)
    lin, mse = nn.Linear(10, 1), nn.MSELoss()
    lin._parameters, lin._bias = W, b
    lin.zero_grad()

    yhat = lin.forward(X)
    cost = mse.forward(y, yhat)
    delta = mse.backward(y, yhat)
    lin.backward_update_gradient(X, delta)
    dx = lin.backward_delta(X, delta)

    for i in range(6):
        pred = sum(X[i, j] * W[j, 0] for j in range(10)) + b[0]
        assert np.isclose(yhat[i, 0], pred, rtol=1e-12)
        assert np.isclose(cost[i], (y[i, 0] - pred) ** 2, rtol=1e-12)
        assert np.isclose(delta[i, 0], -2 * (y[i, 0] - pred), rtol=1e-12)
        for j in range(10):
            assert np.isclose(dx[i, j], delta[i, 0] * W[j, 0], rtol=1e-12)
    for j in range(10):
        assert np.isclose(lin._gradient[j, 0], sum(X[i, j] * delta[i, 0] for i in range(6)))
    assert np.isclose(lin._grad_bias[0], delta[:, 0].sum())

    # the course's update rule
    grad = lin._gradient.copy()
    lin.update_parameters(gradient_step=0.1)
    np.testing.assert_allclose(lin._parameters, W - 0.1 * grad, rtol=1e-12)


def _conv_ref(x, w, b, stride):
    """Plain 1-D convolution: out[n, t, o] = b[o] + sum_{k, c} x[n, t*stride + k, c] w[k, c, o]."""
    n_, length, cin = x.shape
    k_, _, cout = w.shape
    lout = (length - k_) // stride + 1
    out = np.zeros((n_, lout, cout))
    for n in range(n_):
        for t in range(lout):
            for o in range(cout):
                s = b[o]
                for k in range(k_):
                    for c in range(cin):
                        s += x[n, t * stride + k, c] * w[k, c, o]
                out[n, t, o] = s
    return out


def test_conv1d_maxpool_flatten_linear_mse():
    n, length = 3, 15
    X = RNG.standard_normal((n, length, 1))
    w, b = RNG.standard_normal((3, 1, 5)), RNG.standard_normal(5)
    W2, b2 = RNG.standard_normal((3 * 5, 1)), RNG.standard_normal(1)
    y = RNG.standard_normal((n, 1))

    conv = nn.Conv1D(3, 1, 5, stride=2)
    conv._parameters, conv._bias = w, b
    lin = nn.Linear(15, 1)
    lin._parameters, lin._bias = W2, b2
    net = nn.Sequential(conv, nn.MaxPool1D(2, 2), nn.Flatten(), lin)
    mse = nn.MSELoss()
    net.zero_grad()
    yhat = net.forward(X)
    cost = mse.forward(y, yhat)
    dx = net.backward(X, mse.backward(y, yhat))

    # forward, by hand: conv (7 steps), max over pairs (3 windows), flatten (t, c), linear
    c = _conv_ref(X, w, b, 2)
    assert c.shape == (n, 7, 5)
    p = np.zeros((n, 3, 5))
    arg = np.zeros((n, 3, 5), dtype=int)
    for i in range(n):
        for t in range(3):
            for o in range(5):
                j = 2 * t if c[i, 2 * t, o] >= c[i, 2 * t + 1, o] else 2 * t + 1
                p[i, t, o], arg[i, t, o] = c[i, j, o], j
    f = np.array([[p[i, t, o] for t in range(3) for o in range(5)] for i in range(n)])
    out = np.array([[sum(f[i, j] * W2[j, 0] for j in range(15)) + b2[0]] for i in range(n)])
    np.testing.assert_allclose(yhat, out, rtol=1e-12)
    np.testing.assert_allclose(cost, (y[:, 0] - out[:, 0]) ** 2, rtol=1e-12)

    # backward, by hand
    d_out = 2 * (out - y)
    np.testing.assert_allclose(lin._gradient[:, 0], (f * d_out).sum(0), rtol=1e-12)
    np.testing.assert_allclose(lin._grad_bias, d_out.sum(0), rtol=1e-12)
    d_c = np.zeros_like(c)
    for i in range(n):
        for t in range(3):
            for o in range(5):
                d_c[i, arg[i, t, o], o] += d_out[i, 0] * W2[t * 5 + o, 0]
    gw = np.zeros_like(w)
    d_x = np.zeros_like(X)
    for i in range(n):
        for t in range(7):
            for k in range(3):
                for o in range(5):
                    gw[k, 0, o] += X[i, 2 * t + k, 0] * d_c[i, t, o]
                    d_x[i, 2 * t + k, 0] += w[k, 0, o] * d_c[i, t, o]
    np.testing.assert_allclose(conv._gradient, gw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(conv._grad_bias, d_c.sum((0, 1)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, d_x, rtol=1e-12, atol=1e-14)


def test_cross_entropy_on_integer_labels_and_logits():
    z = 3 * RNG.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    for loss in (nn.CELogSoftMax(), nn.CrossEntropyCriterion()):
        cost, grad = loss.forward(labels, z), loss.backward(labels, z)
        for i in range(5):
            lse = np.log(sum(np.exp(z[i, j]) for j in range(4)))
            assert np.isclose(cost[i], lse - z[i, labels[i]], rtol=1e-12)
            for j in range(4):
                soft = np.exp(z[i, j]) / sum(np.exp(z[i, m]) for m in range(4))
                assert np.isclose(grad[i, j], soft - (j == labels[i]), rtol=1e-10, atol=1e-14)
    # the same on probabilities: SoftMax then CrossEntropyLoss, chained by hand
    sm, ce = nn.SoftMax(), nn.CrossEntropyLoss()
    p = sm.forward(z)
    dz = sm.backward_delta(z, ce.backward(labels, p))
    np.testing.assert_allclose(
        ce.forward(labels, p), nn.CELogSoftMax().forward(labels, z), rtol=1e-12
    )
    np.testing.assert_allclose(dz, nn.CELogSoftMax().backward(labels, z), rtol=1e-9, atol=1e-14)


def test_course_optim_and_report_sgd_scripts():
    """``Optim(net, loss, eps).step`` and the report's ``SGD(...).update()`` with one-hot
    targets and ``ABSLoss`` run as written."""
    X = RNG.standard_normal((40, 3))
    Y = nn.one_hot((X[:, 0] > 0).astype(int), 2)
    net = nn.Sequentiel(nn.Linear(3, 4, rng=0), nn.TanH(), nn.Linear(4, 2, rng=1), nn.Sigmoide())
    opt = nn.Optim(net, nn.MSELoss(), eps=0.05)
    first = opt.step(X, Y)
    for _ in range(50):
        last = opt.step(X, Y)
    assert last < first
    sgd = nn.SGD(net, nn.ABSLoss(), X, Y, batch_size=10, maxIter=5, eps=0.01)
    assert len(sgd.update()) == 5
