"""Conv → non-decreasing activation → max pool runs fused, as conv → max pool →
activation (issue 16): values and every gradient against torch (which runs the
user's order) and against the layers one by one, ties and NaN included."""

from __future__ import annotations

import diy_nn as dn
import numpy as np
import pytest
from diy_nn import serialization
from diy_nn.plan import ConvPool, DenseRun, LayerStep, _ByLayer
from parity import require_torch
from test_fused import TOL, Unfused

# our activation, torch's module (by name and arguments)
ACTS = {
    "relu": (dn.ReLU, ("ReLU",)),
    "leaky_relu": (lambda: dn.LeakyReLU(0.1), ("LeakyReLU", 0.1)),
    "tanh": (dn.TanH, ("Tanh",)),
    "sigmoid": (dn.Sigmoid, ("Sigmoid",)),
}


def _layers(nd, act, dtype, rng, k=3, chan=(2, 3), pool=(2, 2), padding=0):
    conv_cls, pool_cls = (dn.Conv1D, dn.MaxPool1D) if nd == 1 else (dn.Conv2D, dn.MaxPool2D)
    conv = conv_cls(k, *chan, padding=padding, dtype=dtype, rng=rng)
    return [conv, ACTS[act][0](), pool_cls(*pool)]


def _input(case, shape, dtype, rng):
    if case == "ties":  # integers: exact ties in the convolution, and ReLU's zeros
        return rng.integers(-1, 2, shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if case == "nan":  # a 1-wide convolution: one NaN output per 2-wide pooling window
        for n, i, c in ((0, 0, 0), (1, 4, 1), (3, 7, 0)):
            x[(n, i, *([3] * (x.ndim - 3)), c)] = np.nan
    if case == "nan_runs":  # a 3-wide one: windows holding 2 NaN
        x.reshape(-1)[rng.choice(x.size, 3, replace=False)] = np.nan
    return x


def _torch_net(torch, nd, act, layers, dtype):
    T = torch.nn
    conv, _, pool = layers
    tconv = (T.Conv1d if nd == 1 else T.Conv2d)(
        conv.chan_in, conv.chan_out, conv.k_size, stride=conv.stride, padding=conv.padding
    )
    tpool = (T.MaxPool1d if nd == 1 else T.MaxPool2d)(pool.k_size, pool.stride)
    name, *args = ACTS[act][1]
    tnet = T.Sequential(tconv, getattr(T, name)(*args), tpool)
    tnet.to(torch.float32 if dtype == np.float32 else torch.float64)
    state = serialization.state_dict(dn.Sequential(conv))  # torch's names and layout
    tnet.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    return tnet


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("case", ["random", "ties", "nan", "nan_runs"])
def test_conv_activation_pool_against_torch_and_the_layers(dtype, nd, act, case):
    torch = require_torch()
    rng = np.random.default_rng([nd, len(act), len(case)])
    spatial = (11,) if nd == 1 else (9, 8)
    pool = (2, 2) if case != "ties" else (3, 1)  # overlapping windows: more ties
    k, padding = (1, 0) if case == "nan" else (3, nd - 1)
    layers = _layers(nd, act, dtype, np.random.default_rng(4), k, pool=pool, padding=padding)
    if case == "ties":
        conv = layers[0]
        conv._parameters[...] = rng.integers(-1, 2, conv._parameters.shape)
        conv._bias[...] = -3  # most outputs <= 0: ReLU maps them all to 0
    net = dn.Sequential(*layers)
    assert [type(s) for s in net.steps()] == [ConvPool] and net.steps()[0].act is layers[1]
    plain = Unfused(*layers)
    x = _input(case, (4, *spatial, 2), dtype, rng)
    _, kept = net.steps()[0].forward(x, False, False)
    # NaN: the layers' order, but for ReLU, exact in both orders
    assert (type(kept) is _ByLayer) == (case.startswith("nan") and act != "relu")

    y = net.forward(x)
    delta = rng.standard_normal(y.shape).astype(dtype)
    dx = net.backward(x, delta)
    grads = [g.copy() for _, _, g in net.named_parameters()]
    net.zero_grad()
    np.testing.assert_allclose(y, plain.forward(x), **TOL[dtype])
    np.testing.assert_allclose(dx, plain.backward(x, delta), **TOL[dtype])
    for g, (_, _, g_plain) in zip(grads, plain.named_parameters(), strict=True):
        np.testing.assert_allclose(g, g_plain, **TOL[dtype])
    if case == "ties":
        assert (y == 0).mean() > 0.2 if act == "relu" else True  # whole windows of zeros
    if case.startswith("nan"):
        assert np.isnan(y).any() and not np.isnan(y).all()
        if act == "leaky_relu":
            return  # LeakyReLU's own backward gives NaN where torch's gives slope * δ

    tnet = _torch_net(torch, nd, act, layers, dtype)
    channels_first = (0, nd + 1, *range(1, nd + 1))
    xt = torch.from_numpy(x).permute(*channels_first).contiguous().requires_grad_()
    yt = tnet(xt)
    yt.backward(torch.from_numpy(delta).permute(*channels_first))
    back = np.argsort(channels_first)
    np.testing.assert_allclose(y, yt.detach().permute(*back).numpy(), **TOL[dtype])
    if case == "nan_runs":
        return  # of 2 NaN in a window, torch's max pool picks the last, diy_nn's the first
    np.testing.assert_allclose(dx, xt.grad.permute(*back).numpy(), **TOL[dtype])
    tconv = tnet[0]
    gw = serialization._to_torch("_parameters", grads[0])
    np.testing.assert_allclose(gw, tconv.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(grads[1], tconv.bias.grad.numpy(), **TOL[dtype])


def test_the_plan_fuses_non_decreasing_activations_only():
    conv = lambda: dn.Conv2D(3, 1, 4, rng=0)  # noqa: E731
    pool = lambda: dn.MaxPool2D(2, 2)  # noqa: E731
    for act in (dn.ReLU(), dn.TanH(), dn.Sigmoid(), dn.LeakyReLU(), dn.LeakyReLU(0.0)):
        layers = [conv(), act, pool(), dn.Flatten(), dn.Linear(36, 3), dn.ReLU()]
        steps = dn.Sequential(*layers).steps()
        assert [type(s) for s in steps] == [ConvPool, LayerStep, DenseRun], act
        assert steps[0].layers == layers[:3]
    # not non-decreasing (Softplus: see below), another pool's kind, a shared or
    # patched activation: the layers run as themselves, in the user's order
    patched = dn.ReLU()
    patched.forward = lambda x: np.maximum(x, 0)
    relu = dn.ReLU()
    for layers in (
        [conv(), dn.Softplus(), pool()],
        [conv(), dn.LeakyReLU(-0.5), pool()],
        [conv(), patched, pool()],
        [dn.Conv1D(3, 1, 4), dn.ReLU(), pool()],
        [conv(), relu, pool(), relu],
    ):
        steps = dn.Sequential(*layers).steps()
        assert not any(isinstance(s, ConvPool) and len(s.layers) == 3 for s in steps), layers
        assert [layer for s in steps for layer in s.layers] == layers
    # conv → pool → activation keeps its order (a pair, then the activation)
    layers = [conv(), pool(), dn.ReLU()]
    assert [type(s) for s in dn.Sequential(*layers).steps()] == [ConvPool, LayerStep]


def test_softplus_is_not_non_decreasing_at_its_threshold():
    """Why Softplus is not fused: just below ``threshold / beta`` it gives
    ``log1p(exp(threshold)) / beta``, above it ``x``, which is smaller."""
    below, above = np.nextafter(20.0, 0.0), np.nextafter(20.0, 21.0)
    f = dn.Softplus().forward(np.array([below, above]))
    assert f[0] > f[1]
    window = np.array([[[below], [above]]])  # a Conv1D output: N=1, L=2, C=1
    pooled_then_f = dn.Softplus().forward(dn.MaxPool1D(2).forward(window))
    f_then_pooled = dn.MaxPool1D(2).forward(dn.Softplus().forward(window))
    assert pooled_then_f[0, 0, 0] < f_then_pooled[0, 0, 0]
