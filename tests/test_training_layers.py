"""Issue 14: modes, Dropout, BatchNorm1D, LeakyReLU and Softplus against torch and finite
differences, float32 and float64, random shapes."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import ParamMap, assert_close, check_module, check_module_fd, require_torch

DTYPES = [np.float32, np.float64]
EXAMPLES = settings(max_examples=10)
# float32 sums over the batch (BatchNorm's statistics): a little looser than the default
TOL = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {}}
BN_PARAMS = (
    ParamMap("_parameters", "_gradient", "weight"),
    ParamMap("_bias", "_grad_bias", "bias"),
)
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3)


def _x(seed: int, shape, dtype, scale: float = 3.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


# --- LeakyReLU, Softplus ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(shape=shapes, slope=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_leaky_relu_matches_torch(dtype, shape, slope, seed):
    torch = require_torch()
    x = _x(seed, shape, dtype)
    x.reshape(-1)[0] = 0.0  # the kink: slope negative_slope there, as torch
    check_module(nn.LeakyReLU(slope), torch.nn.LeakyReLU(slope), x)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(
    shape=shapes,
    beta=st.sampled_from([0.5, 1.0, 2.0, -1.0]),
    threshold=st.sampled_from([20.0, 1.0, 5.0]),
    seed=st.integers(0, 2**16),
)
def test_softplus_matches_torch(dtype, shape, beta, threshold, seed):
    torch = require_torch()
    x = _x(seed, shape, dtype, scale=8.0)  # both sides of the threshold
    check_module(nn.Softplus(beta, threshold), torch.nn.Softplus(beta, threshold), x)


def test_softplus_large_inputs_and_nan():
    torch = require_torch()
    for dtype in DTYPES:
        x = np.array([-1e4, -50.0, 0.0, 19.9, 20.1, 1e4, 3e38, np.nan], dtype)
        sp = nn.Softplus()
        expected = torch.nn.functional.softplus(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(sp.forward(x), expected)
        assert np.isnan(sp.backward_delta(x, np.ones_like(x))[-1])
        lr = nn.LeakyReLU()
        assert np.isnan(lr.forward(x)[-1]) and np.isnan(lr.backward_delta(x, np.ones_like(x))[-1])


@pytest.mark.parametrize("module", [nn.LeakyReLU(0.2), nn.Softplus(), nn.Softplus(2.0, 3.0)])
def test_activations_finite_differences(module):
    x = _x(4, (5, 7), np.float64)
    x[np.abs(x) < 1e-3] = 0.5  # away from LeakyReLU's kink
    check_module_fd(module, x)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: nn.LeakyReLU("a"), TypeError),
        (lambda: nn.LeakyReLU(float("nan")), ValueError),
        (lambda: nn.Softplus(beta=0), ValueError),
        (lambda: nn.Softplus(threshold=None), TypeError),
        (lambda: nn.Dropout(1.5), ValueError),
        (lambda: nn.Dropout("0.5"), TypeError),
        (lambda: nn.BatchNorm1D(0), ValueError),
        (lambda: nn.BatchNorm1D(3, eps=0), ValueError),
        (lambda: nn.BatchNorm1D(3, momentum=2), ValueError),
    ],
)
def test_new_layers_check_their_arguments(make, error):
    with pytest.raises(error):
        make()


# --- BatchNorm1D --------------------------------------------------------------------------
def _bn_pair(torch, c: int, dtype, seed: int, momentum: float = 0.1):
    ours = nn.BatchNorm1D(c, momentum=momentum, dtype=dtype)
    rng = np.random.default_rng(seed)
    ours._parameters = rng.uniform(0.5, 2.0, c)
    ours._bias = rng.standard_normal(c)
    theirs = torch.nn.BatchNorm1d(c, momentum=momentum)
    return ours, theirs


def _channels_first(m, t):
    return m(t.transpose(1, 2)).transpose(1, 2) if t.dim() == 3 else m(t)


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(
    n=st.integers(2, 9),
    length=st.sampled_from([None, 1, 4]),
    c=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_batchnorm_train_mode_matches_torch(dtype, n, length, c, seed):
    torch = require_torch()
    ours, theirs = _bn_pair(torch, c, dtype, seed)
    shape = (n, c) if length is None else (n, length, c)
    x = _x(seed, shape, dtype) + 5.0
    check_module(ours, theirs, x, BN_PARAMS, torch_forward=_channels_first, **TOL[dtype])
    # the running statistics moved as torch's (unbiased running variance)
    tol = TOL[dtype] or {"rtol": 1e-12}
    assert_close(ours.running_mean, theirs.running_mean.numpy(), "running_mean", **tol)
    assert_close(ours.running_var, theirs.running_var.numpy(), "running_var", **tol)
    assert ours.running_mean.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(n=st.integers(1, 9), c=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_batchnorm_eval_mode_matches_torch(dtype, n, c, seed):
    torch = require_torch()
    ours, theirs = _bn_pair(torch, c, dtype, seed, momentum=0.3)
    theirs = theirs.to(torch.float32 if dtype == np.float32 else torch.float64)
    for k in range(3):  # a few training batches move the running statistics
        batch = _x(seed + k, (6, c), dtype) * (k + 1) + k
        ours.forward(batch)
        with torch.no_grad():
            theirs(torch.from_numpy(batch))
    ours.eval()
    theirs.eval()
    check_module(ours, theirs, _x(seed + 9, (n, c), dtype), BN_PARAMS, **TOL[dtype])


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_finite_differences(training):
    bn = nn.BatchNorm1D(4)
    rng = np.random.default_rng(1)
    bn._parameters = rng.uniform(0.5, 2, 4)
    bn._bias = rng.standard_normal(4)
    bn.running_mean, bn.running_var = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    bn.train(training)
    check_module_fd(bn, _x(2, (7, 4), np.float64))
    check_module_fd(bn, _x(3, (3, 5, 4), np.float64))


def test_batchnorm_refuses_one_value_per_feature_in_training():
    bn = nn.BatchNorm1D(3)
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        bn.forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        bn.forward(np.ones((4, 2)))
    assert bn.eval().forward(np.ones((1, 3))).shape == (1, 3)


# --- Dropout and modes --------------------------------------------------------------------
def test_dropout_masks_and_rescales_in_train_mode_identity_in_eval():
    net = nn.Sequential(
        nn.Linear(6, 50, rng=0), nn.TanH(), nn.Dropout(0.5, rng=1), nn.Linear(50, 3, rng=2)
    )
    x = np.random.default_rng(0).standard_normal((20, 6))
    hidden = np.tanh(x @ net[0]._parameters + net[0]._bias)
    assert net.eval() is net and not any(m.training for m in net.modules())
    a, b = net.forward(x), net.forward(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, hidden @ net[3]._parameters + net[3]._bias, rtol=1e-12)
    assert net.train() is net and all(m.training for m in net.modules())
    dropped = net[2].forward(hidden)
    zero = dropped == 0
    assert 0.3 < zero.mean() < 0.7  # p = 0.5 of 1000 entries
    np.testing.assert_allclose(dropped[~zero], 2 * hidden[~zero], rtol=1e-15)  # 1 / (1 - p)
    c, d = net.forward(x), net.forward(x)
    assert not np.array_equal(c, d)  # a fresh mask per forward
    assert not np.array_equal(c, a)


def test_dropout_backward_uses_the_forward_mask_and_matches_torch():
    torch = require_torch()
    for dtype in DTYPES:
        drop = nn.Dropout(0.3, rng=5)
        x = _x(0, (8, 9), dtype)
        y = drop.forward(x)
        mask = y != 0
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        out_t = xt * torch.from_numpy(mask.astype(dtype)) / (1 - 0.3)
        assert_close(y, out_t.detach().numpy(), "Dropout forward", **(TOL[dtype] or {}))
        delta = _x(1, x.shape, dtype)
        out_t.backward(torch.from_numpy(delta))
        grad = drop.backward_delta(x, delta)
        assert grad.dtype == dtype
        assert_close(grad, xt.grad.numpy(), "Dropout backward", **(TOL[dtype] or {}))
        with pytest.raises(ValueError, match="no mask for this input"):
            drop.backward_delta(x.copy(), delta)


def test_dropout_finite_differences_with_a_fixed_mask():
    x = _x(3, (5, 6), np.float64)
    drop = nn.Dropout(0.4)

    class Reseeded(nn.Module):  # the same mask on every forward: a fixed linear map
        _param_names = _grad_names = ()

        def forward(self, X):
            drop._rng = np.random.default_rng(11)
            return drop.forward(X)

        def backward_delta(self, input, delta):
            return drop.backward_delta(input, delta)

    check_module_fd(Reseeded(), x)


def test_dropout_is_seeded_by_manual_seed_and_rng():
    x = np.ones((30, 30))
    nn.manual_seed(3)
    a = nn.Dropout(0.5).forward(x)
    nn.manual_seed(3)
    b = nn.Dropout(0.5).forward(x)
    np.testing.assert_array_equal(a, b)
    seeded = [nn.Dropout(0.5, rng=4).forward(x) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)
    assert np.all(nn.Dropout(1.0).forward(x) == 0) and np.all(nn.Dropout(0.0).forward(x) == 1)


def test_modes_are_recursive_and_course_modules_have_them():
    class Course(nn.Module):  # a course-style module that never calls Module.__init__
        def __init__(self):
            pass

    ae = nn.AutoEncoder(nn.Sequential(nn.Linear(3, 2), Course()), nn.Sequential(nn.Dropout()))
    assert all(m.training for m in ae.modules())
    assert ae.eval() is ae
    assert [m.training for m in ae.modules()] == [False] * 6
    ae.decoder.train()
    assert not ae.training and ae.decoder[0].training and not ae.encoder[1].training
    with pytest.raises(TypeError, match="bool"):
        ae.train("no")
