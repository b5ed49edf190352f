"""LeakyReLU and Softplus on the Rust activation kernels (issue 14): the layers
alone and fused into dense runs, against torch (values and gradients, float32
and float64, random shapes, NaN, large inputs) and finite differences; the
bindings' argument checks."""

from __future__ import annotations

import diy_nn as dn
import numpy as np
import pytest
from diy_nn import _core
from diy_nn.plan import DenseRun
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close, require_torch

DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}
LAYERS = {
    "leaky": (lambda: dn.LeakyReLU(0.1), lambda t: t.nn.LeakyReLU(0.1)),
    "leaky0": (lambda: dn.LeakyReLU(0.0), lambda t: t.nn.LeakyReLU(0.0)),
    "softplus": (lambda: dn.Softplus(), lambda t: t.nn.Softplus()),
    "softplus40": (lambda: dn.Softplus(0.5, 40.0), lambda t: t.nn.Softplus(0.5, 40.0)),
    "softplus_negative": (lambda: dn.Softplus(-2.0, 30.0), lambda t: t.nn.Softplus(-2.0, 30.0)),
}
# Large and special inputs: both sides of every threshold, overflow of exp, NaN.
SPECIAL = [-3e38, -1e4, -100.0, -50.0, -20.5, -1.0, -0.0, 0.0, 1e-30, 0.5, 19.9, 20.1, 79.0]
SPECIAL += [81.0, 1e4, 3e38, np.inf, -np.inf, np.nan]


def _torch_grad(torch, layer, x, delta):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = layer(xt)
    out.backward(torch.from_numpy(delta))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=8, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_layer_matches_torch_on_random_and_special_inputs(dtype, name, shape, seed):
    torch = require_torch()
    ours, theirs = LAYERS[name][0](), LAYERS[name][1](torch)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 30).astype(dtype)
    flat = x.reshape(-1)
    flat[: len(SPECIAL)] = np.array(SPECIAL, dtype)[: flat.size]
    delta = rng.standard_normal(shape).astype(dtype)
    before = x.copy()
    want_y, want_dx = _torch_grad(torch, theirs, x, delta)
    y, dx = ours.forward(x), ours.backward_delta(x, delta)
    assert y.dtype == dx.dtype == dtype
    assert_close(y, want_y, "forward", **TOL[dtype])
    if isinstance(ours, dn.LeakyReLU):
        # NaN propagates through our backward; torch gives negative_slope * delta there.
        want_dx = np.where(np.isnan(x), np.nan, want_dx)
    assert_close(dx, want_dx, "backward_delta", **TOL[dtype])
    np.testing.assert_array_equal(x, before)


def _sequential(act, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return dn.Sequential(
        dn.Linear(6, 8, dtype=dtype, rng=rng), act, dn.Linear(8, 3, dtype=dtype, rng=rng)
    )


def _torch_copy(torch, net, tact):
    lins = [m for m in net.layers if isinstance(m, dn.Linear)]
    tdtype = torch.float32 if lins[0]._parameters.dtype == np.float32 else torch.float64
    tnet = torch.nn.Sequential(torch.nn.Linear(6, 8), tact, torch.nn.Linear(8, 3)).to(tdtype)
    with torch.no_grad():
        for lin, t in zip(lins, (tnet[0], tnet[2]), strict=True):
            t.weight.copy_(torch.from_numpy(lin._parameters.T.copy()))
            t.bias.copy_(torch.from_numpy(lin._bias.copy()))
    return lins, tnet


# (layer, dtype, whether the dense run fuses it)
FUSED_CASES = [
    ("leaky", np.float32, True),
    ("leaky", np.float64, True),
    ("leaky0", np.float64, True),
    ("softplus", np.float32, True),
    ("softplus", np.float64, False),  # exp(-20) is above float64's rounding
    ("softplus40", np.float64, True),
    ("softplus_negative", np.float32, True),
]


@pytest.mark.parametrize("name,dtype,fused", FUSED_CASES)
def test_fused_sequential_trains_as_torch(name, dtype, fused):
    """Linear → activation → Linear, a few plain-SGD steps (one Rust call each
    when fused) against torch: costs, parameters and gradients."""
    torch = require_torch()
    net = _sequential(LAYERS[name][0](), dtype)
    lins, tnet = _torch_copy(torch, net, LAYERS[name][1](torch))
    (step,) = net.steps()
    assert isinstance(step, DenseRun)
    rng = np.random.default_rng(3)
    opt = dn.Optim(net, dn.MSELoss(), 0.01)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.01)
    for _ in range(4):
        x = (rng.standard_normal((5, 6)) * 4).astype(dtype)
        y = rng.standard_normal((5, 3)).astype(dtype)
        cost = opt.step(x, y)
        topt.zero_grad()
        tl = ((tnet(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).sum()
        tl.backward()
        topt.step()
        assert cost == pytest.approx(tl.item() / 5, rel=1e-5 if dtype == np.float32 else 1e-11)
        assert (net.train_step_output() is not None) == fused, "the one-call step ran"
    for lin, t in zip(lins, (tnet[0], tnet[2]), strict=True):
        assert_close(lin._parameters, t.weight.detach().numpy().T, "weight", **TOL[dtype])
        assert_close(lin._bias, t.bias.detach().numpy(), "bias", **TOL[dtype])
        assert_close(lin._gradient, t.weight.grad.numpy().T, "gradient", **TOL[dtype])
    # The forward/backward of the run (fused or its layers) against torch too.
    x = np.array([SPECIAL[2:12], SPECIAL[8:18]], dtype)[:, :6]
    delta = rng.standard_normal((2, 3)).astype(dtype)
    want_y, want_dx = _torch_grad(torch, tnet, x, delta)
    assert_close(net.forward(x), want_y, "forward", **TOL[dtype])
    assert_close(net.backward_delta(x, delta), want_dx, "backward_delta", **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_large_inputs_through_fused_runs(dtype):
    """NaN stays NaN through a fused LeakyReLU/Softplus run, forward and backward,
    and ±large pre-activations give what the layers alone give."""
    for act in (dn.LeakyReLU(0.2), dn.Softplus(1.0, 40.0)):
        lin = dn.Linear(1, 1, dtype=dtype)
        lin._parameters[...] = 1
        lin._bias[...] = 0
        x = np.array(SPECIAL, dtype)[:, None]  # one pre-activation a row
        net = dn.Sequential(lin, act)
        assert isinstance(net.steps()[0], DenseRun)
        y = net.forward(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
        assert_close(y, act.forward(x), "forward", **TOL[dtype])
        d = net.backward_delta(x, np.ones_like(x))
        assert np.isnan(d[-1, 0])
        finite = np.isfinite(x[:, 0])
        want = act.backward_delta(x, np.ones_like(x))
        assert_close(d[finite], want[finite], "backward_delta", **TOL[dtype])


def test_fused_only_where_the_output_gives_the_derivative():
    """A negative slope, or a Softplus threshold whose band is above rounding, runs
    as the layer itself (its derivative needs the input)."""
    assert len(_sequential(dn.LeakyReLU(-0.5), np.float32).steps()) == 3
    assert len(_sequential(dn.Softplus(1.0, 5.0), np.float32).steps()) == 3
    torch = require_torch()
    for act, tact in ((dn.LeakyReLU(-0.5), torch.nn.LeakyReLU(-0.5)),):
        net = _sequential(act, np.float64)
        _, tnet = _torch_copy(torch, net, tact)
        x = np.random.default_rng(0).standard_normal((4, 6))
        delta = np.ones((4, 3))
        want_y, want_dx = _torch_grad(torch, tnet, x, delta)
        assert_close(net.forward(x), want_y, "forward", **TOL[np.float64])
        assert_close(net.backward_delta(x, delta), want_dx, "backward", **TOL[np.float64])


@pytest.mark.parametrize("act", [dn.LeakyReLU(0.3), dn.Softplus(2.0, 40.0), dn.Softplus(-1.0)])
def test_gradcheck_alone_and_fused(act):
    x = np.random.default_rng(1).standard_normal((4, 6)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # away from LeakyReLU's kink
    assert dn.gradcheck(act, x)
    assert dn.gradcheck(_sequential(act, np.float64), x)


def test_binding_checks():
    x = np.ones((2, 3))
    leaky, softplus = _core.Activation.LeakyReLU, _core.Activation.Softplus
    np.testing.assert_array_equal(_core.activation(-x, leaky), -0.01 * x)  # torch's default
    np.testing.assert_allclose(_core.activation(0 * x, softplus), np.log(2) + 0 * x, rtol=1e-15)
    f = np.asfortranarray(np.arange(-3.0, 3.0).reshape(2, 3))[:, ::-1]  # any layout
    np.testing.assert_array_equal(_core.activation(f, (leaky, 0.5)), np.where(f > 0, f, f / 2))
    bad = [
        ((x, (leaky, 0.1, 2.0)), ValueError, "LeakyReLU takes"),
        ((x, (softplus, 0.0, 20.0)), ValueError, "beta != 0"),
        ((x, (softplus, 1.0)), ValueError, "Softplus takes"),
        ((x, (leaky, np.nan)), ValueError, "finite"),
        ((x, (_core.Activation.TanH, 1.0)), ValueError, "the others no parameter"),
        ((x, 1), TypeError, "act"),
        ((x, (leaky, "a")), TypeError, "act"),
        ((x.astype(int), leaky), TypeError, "dtype float32 or float64"),
        (([1.0], leaky), TypeError, "numpy.ndarray"),
    ]
    for args, err, msg in bad:
        with pytest.raises(err, match=msg):
            _core.activation(*args)
    with pytest.raises(ValueError, match="delta must have shape"):
        _core.activation_backward(x, np.ones(3), leaky)
    with pytest.raises(TypeError, match="same dtype"):
        _core.activation_backward(x, x.astype(np.float32), leaky)
    with pytest.raises(TypeError, match="activations"):
        _core.dense_forward(x, [np.ones((3, 2))], [None], [(leaky, "a")])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_is_torchs_select(dtype):
    """Issue 16: ReLU's backward runs in Rust; as torch's threshold_backward it
    selects (0 where x <= 0, even for an infinite or NaN delta; delta where x is
    NaN), alone and fused, on any layout."""
    torch = require_torch()
    x = np.array([[-1.0, 0.0, -0.0, 2.0, np.nan, -3.0, 4.0, 1e-30]], dtype)
    delta = np.array([[np.inf, np.nan, 5.0, np.inf, 2.0, -np.inf, np.nan, 7.0]], dtype)
    want = torch.ops.aten.threshold_backward(torch.from_numpy(delta), torch.from_numpy(x), 0.0)
    np.testing.assert_array_equal(dn.ReLU().backward_delta(x, delta), want.numpy())
    xf = np.asfortranarray(np.tile(x, (3, 1)))[:, ::-1]
    df = np.tile(delta, (3, 1))[:, ::-1]
    want = torch.ops.aten.threshold_backward(
        torch.from_numpy(df.copy()), torch.from_numpy(xf.copy()), 0.0
    )
    np.testing.assert_array_equal(dn.ReLU().backward_delta(xf, df), want.numpy())
    lin = dn.Linear(1, 1, dtype=dtype)
    lin._parameters[...], lin._bias[...] = 1, 0
    net = dn.Sequential(lin, dn.ReLU())
    assert isinstance(net.steps()[0], DenseRun)
    finite = np.isfinite(x[0])
    xs, ds = x[0, finite][:, None], delta[0, finite][:, None]
    fused = net.backward_delta(xs, ds)
    np.testing.assert_array_equal(fused, dn.ReLU().backward_delta(xs, ds))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["TanH", "Sigmoid", "ReLU", "LeakyReLU", "Softplus"])
def test_long_slices_split_across_threads_give_the_serial_results(dtype, act):
    """Issue 16: an activation over a long array runs one slice per thread; each element
    is computed alone, so 2 threads give the 1-thread results bit for bit, forward and
    backward (from the output inside a dense run, from the input alone), NaN included."""
    layer = {"LeakyReLU": dn.LeakyReLU(0.1), "Softplus": dn.Softplus(2.0)}.get(act)
    layer = layer or getattr(dn, act)()
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((700, 301)) * 4).astype(dtype)  # 210,700: odd, past both thresholds
    x[::97, ::13] = np.nan
    delta = rng.standard_normal(x.shape).astype(dtype)
    lin = dn.Linear(301, 301, dtype=dtype, rng=0)
    net = dn.Sequential(lin, layer)
    results = {}
    before = _core.get_num_threads()
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            fused = (net.forward(x), net.backward_delta(x, delta)) if act != "Softplus" else ()
            results[threads] = (layer.forward(x), layer.backward_delta(x, delta), *fused)
    finally:
        _core.set_num_threads(before)
    for one, two in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(one, two)
