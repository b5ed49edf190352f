"""Issue 4: SoftMax/LogSoftMax, convolutions, pools, Flatten against torch (channels last
on our side, permuted for torch) and finite differences; containers, dtypes, arguments."""

from __future__ import annotations

import diy_nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import (
    SMALL_CNN_INPUT,
    ParamMap,
    check_module,
    check_module_fd,
    require_torch,
    small_cnn,
)

DTYPES = [np.float32, np.float64]
EXAMPLES = settings(max_examples=12)
# float32 sums over windows and channels: a little looser than the default
TOL = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {}}


def _x(seed: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _cl(fn):
    """Wraps a channels-first torch call into one on channels-last tensors."""

    def forward(m, t):
        nd = t.dim()
        to_first = (0, nd - 1, *range(1, nd - 1))
        to_last = (0, *range(2, nd), 1)
        return fn(m, t.permute(*to_first)).permute(*to_last)

    return forward


CL = _cl(lambda m, t: m(t))
CONV1D_PARAMS = (
    ParamMap(
        "_parameters",
        "_gradient",
        "weight",
        lambda a: a.transpose(2, 1, 0),
        lambda a: a.transpose(2, 1, 0),
    ),
    ParamMap("_bias", "_grad_bias", "bias"),
)
CONV2D_PARAMS = (
    ParamMap(
        "_parameters",
        "_gradient",
        "weight",
        lambda a: a.transpose(3, 2, 0, 1),
        lambda a: a.transpose(2, 3, 1, 0),
    ),
    ParamMap("_bias", "_grad_bias", "bias"),
)

conv_args = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "k": st.integers(1, 5),
        "stride": st.integers(1, 3),
        "padding": st.integers(0, 2),
        "cin": st.integers(1, 4),
        "cout": st.integers(1, 4),
        "extra": st.integers(0, 9),
        "bias": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def _conv_pair(ours_cls, theirs_cls, dtype, a):
    """Our convolution (k, c_in, c_out, stride, padding) and torch's, from one draw of conv_args."""
    ours = ours_cls(
        a["k"],
        a["cin"],
        a["cout"],
        a["stride"],
        a["padding"],
        bias=a["bias"],
        dtype=dtype,
        rng=a["seed"],
    )
    theirs = theirs_cls(a["cin"], a["cout"], a["k"], a["stride"], a["padding"], bias=a["bias"])
    return ours, theirs


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(a=conv_args)
def test_conv1d_matches_torch(dtype, a):
    torch = require_torch()
    length = max(a["k"] - 2 * a["padding"], 1) + a["extra"]
    ours, theirs = _conv_pair(nn.Conv1D, torch.nn.Conv1d, dtype, a)
    x = _x(a["seed"], (a["n"], length, a["cin"]), dtype)
    params = CONV1D_PARAMS if a["bias"] else CONV1D_PARAMS[:1]
    check_module(ours, theirs, x, params, torch_forward=CL, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(a=conv_args, extra_w=st.integers(0, 6))
@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_conv2d_matches_torch(dtype, a, extra_w):
    torch = require_torch()
    base = max(a["k"] - 2 * a["padding"], 1)
    ours, theirs = _conv_pair(nn.Conv2D, torch.nn.Conv2d, dtype, a)
    x = _x(a["seed"], (a["n"], base + a["extra"], base + extra_w, a["cin"]), dtype)
    params = CONV2D_PARAMS if a["bias"] else CONV2D_PARAMS[:1]
    # torch's oneDNN path gets the weight gradient of a float32 1x1 stride-2 conv on a
    # channels-last view wrong (-1.781 where its native path, float64 and numpy give
    # -1.292); test_kernels.py's conv parity test shows the same. Its native path is
    # the reference.
    with torch.backends.mkldnn.flags(enabled=False):
        check_module(ours, theirs, x, params, torch_forward=CL, **TOL[dtype])


def test_report_conv_shapes_match_torch():
    """The report's own checks: Conv1d(16, 33, 3, stride=2) on (20, 16, 50), Conv2d(2, 2, 3)."""
    torch = require_torch()
    x1 = _x(0, (20, 50, 16), np.float64)
    check_module(
        nn.Conv1D(3, 16, 33, stride=2, rng=0),
        torch.nn.Conv1d(16, 33, 3, stride=2),
        x1,
        CONV1D_PARAMS,
        torch_forward=CL,
    )
    x2 = _x(1, (20, 5, 10, 2), np.float64)
    check_module(
        nn.Conv2D(3, 2, 2, rng=0), torch.nn.Conv2d(2, 2, 3), x2, CONV2D_PARAMS, torch_forward=CL
    )


POOLS = {
    "MaxPool1D": (nn.MaxPool1D, lambda T, k, s: T.nn.MaxPool1d(k, s), 1),
    "AvgPool1D": (nn.AvgPool1D, lambda T, k, s: T.nn.AvgPool1d(k, s), 1),
    "MaxPool2D": (nn.MaxPool2D, lambda T, k, s: T.nn.MaxPool2d(k, s), 2),
    "AvgPool2D": (nn.AvgPool2D, lambda T, k, s: T.nn.AvgPool2d(k, s), 2),
}


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 4),
    stride=st.integers(1, 4),
    c=st.integers(1, 4),
    extra=st.lists(st.integers(0, 8), min_size=2, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_pool_matches_torch(name, dtype, n, k, stride, c, extra, seed):
    torch = require_torch()
    ours_cls, theirs_factory, nd = POOLS[name]
    x = _x(seed, (n, *(k + e for e in extra[:nd]), c), dtype)
    check_module(
        ours_cls(k, stride), theirs_factory(torch, k, stride), x, torch_forward=CL, **TOL[dtype]
    )


@pytest.mark.parametrize("name", ["SoftMax", "LogSoftMax"])
@pytest.mark.parametrize("dtype", DTYPES)
@EXAMPLES
@given(
    n=st.integers(1, 10),
    k=st.integers(1, 12),
    scale=st.sampled_from([0.1, 3.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_softmax_matches_torch(name, dtype, n, k, scale, seed):
    torch = require_torch()
    theirs = torch.nn.Softmax(-1) if name == "SoftMax" else torch.nn.LogSoftmax(-1)
    x = (scale * _x(seed, (n, k), np.float64)).astype(dtype)
    check_module(getattr(nn, name)(), theirs, x, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), seed=st.integers(0, 2**16))
@EXAMPLES
def test_flatten_matches_torch(dtype, shape, seed):
    torch = require_torch()
    check_module(nn.Flatten(), torch.nn.Flatten(), _x(seed, tuple(shape), dtype))


FD_MODULES = {
    "Conv1D": (lambda: nn.Conv1D(3, 2, 3, stride=2, padding=1, rng=0), (2, 9, 2)),
    "Conv2D": (lambda: nn.Conv2D(2, 2, 3, stride=1, padding=1, rng=0), (2, 4, 5, 2)),
    "MaxPool1D": (lambda: nn.MaxPool1D(2, 1), (2, 7, 3)),
    "AvgPool1D": (lambda: nn.AvgPool1D(3, 2), (2, 7, 3)),
    "MaxPool2D": (lambda: nn.MaxPool2D(2, 2), (2, 4, 6, 2)),
    "AvgPool2D": (lambda: nn.AvgPool2D(2, 1), (2, 4, 5, 2)),
    "SoftMax": (nn.SoftMax, (3, 5)),
    "LogSoftMax": (nn.LogSoftMax, (3, 5)),
    "Flatten": (nn.Flatten, (2, 3, 4)),
    "Sequential": (small_cnn, SMALL_CNN_INPUT),
}


@pytest.mark.parametrize("name", sorted(FD_MODULES))
def test_module_finite_differences(name):
    factory, shape = FD_MODULES[name]
    check_module_fd(factory(), _x(0, shape, np.float64))


def test_max_pool_cache_is_keyed_on_the_input():
    pool = nn.MaxPool1D(2, 2)
    a, b = _x(0, (2, 6, 3), np.float64), _x(1, (2, 6, 3), np.float64)
    pool.forward(a)
    delta = np.ones((2, 3, 3))
    fresh = nn.MaxPool1D(2, 2)
    np.testing.assert_array_equal(pool.backward_delta(b, delta), fresh.backward_delta(b, delta))
    c = a.copy()  # equal values, another array: recomputed, same result
    np.testing.assert_array_equal(pool.backward_delta(c, delta), fresh.backward_delta(a, delta))


def test_softmax_cache_is_keyed_on_the_input():
    sm = nn.SoftMax()
    a, b = _x(0, (3, 4), np.float64), _x(1, (3, 4), np.float64)
    sm.forward(a)
    delta = _x(2, (3, 4), np.float64)
    np.testing.assert_array_equal(
        sm.backward_delta(b, delta), nn.SoftMax().backward_delta(b, delta)
    )


def test_sequential_indexing_len_and_repr():
    net = nn.Sequential(nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1), nn.SoftMax())
    assert len(net) == 4
    assert isinstance(net[0], nn.Linear) and isinstance(net[-1], nn.SoftMax)
    assert len(net[1:3]) == 2
    text = repr(net)
    assert "(0): Linear(4, 3, bias=True)" in text and "(3): SoftMax()" in text
    assert "23 parameters" in text
    assert [n for n, _, _ in net.named_parameters()] == [
        "0._parameters",
        "0._bias",
        "2._parameters",
        "2._bias",
    ]


def test_extra_repr():
    assert repr(nn.Conv1D(3, 1, 5, stride=2)) == "Conv1D(3, 1, 5, stride=2, bias=True)"
    assert (
        repr(nn.Conv2D(3, 2, 4, padding=1, bias=False))
        == "Conv2D(3, 2, 4, stride=1, padding=1, bias=False)"
    )
    assert repr(nn.MaxPool2D(2)) == "MaxPool2D(2, stride=2)"
    assert repr(nn.Flatten()) == "Flatten()"


def test_autoencoder_encode_decode_and_training():
    enc = nn.Sequential(nn.Linear(8, 3, rng=0), nn.TanH())
    dec = nn.Sequential(nn.Linear(3, 8, rng=1), nn.Sigmoid())
    ae = nn.AutoEncoder(enc, dec)
    x = np.random.default_rng(0).random((30, 8))
    np.testing.assert_array_equal(ae.forward(x), dec.forward(enc.forward(x)))
    assert ae.encode(x).shape == (30, 3) and ae.decode(ae.encode(x)).shape == (30, 8)
    assert [n for n, _, _ in ae.named_parameters()][0] == "encoder.0._parameters"
    hist = nn.fit(nn.Adam(ae, nn.BCELoss(), eps=0.01), x, x, epochs=20, seed=0, verbose=False)
    assert hist["loss"][-1] < hist["loss"][0]
    check_module_fd(ae, x[:4])


def test_default_dtype_and_to():
    assert nn.get_default_dtype() == np.float64
    assert nn.Conv1D(2, 1, 2).dtype == np.float64
    nn.set_default_dtype(np.float32)
    try:
        net = nn.Sequential(nn.Conv1D(2, 1, 2), nn.Flatten(), nn.Linear(6, 2))
        assert net.dtype == np.float32
        assert net.forward(np.ones((2, 4, 1))).dtype == np.float32  # float64 input cast
    finally:
        nn.set_default_dtype(np.float64)
    net.to(np.float64)
    assert all(p.dtype == g.dtype == np.float64 for _, p, g in net.named_parameters())
    assert net.forward(np.ones((2, 4, 1), np.float32)).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        net.to(np.int32)


@pytest.mark.parametrize("init", ["uniform", "rand", "xavier", "he"])
def test_init_is_selectable_and_seeded(init):
    a = nn.Conv2D(3, 2, 4, init=init, rng=5)
    b = nn.Conv2D(3, 2, 4, init=init, rng=5)
    np.testing.assert_array_equal(a._parameters, b._parameters)
    bound = {"uniform": 1 / np.sqrt(18), "rand": 1.0, "xavier": np.sqrt(6 / (18 + 36))}.get(init)
    if bound is not None:
        assert np.abs(a._parameters).max() <= bound
    nn.manual_seed(3)
    c = nn.Conv1D(3, 2, 4, init=init)
    nn.manual_seed(3)
    np.testing.assert_array_equal(c._parameters, nn.Conv1D(3, 2, 4, init=init)._parameters)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.Conv1D(0, 1, 1), ValueError, "k_size.*0"),
        (lambda: nn.Conv1D(3, 1, 1, stride=0), ValueError, "stride.*0"),
        (lambda: nn.Conv2D(3, 1.5, 1), TypeError, "chan_in.*1.5"),
        (lambda: nn.Conv2D(3, 1, 1, padding=-1), ValueError, "padding.*-1"),
        (lambda: nn.Conv1D(3, 1, 1, init="nope"), ValueError, "init.*nope"),
        (lambda: nn.MaxPool1D(0), ValueError, "k_size.*0"),
        (lambda: nn.AvgPool2D(2, stride="2"), TypeError, "stride"),
    ],
)
def test_constructors_validate(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_name_the_module():
    with pytest.raises(ValueError, match=r"Conv1D.forward: input must have shape \(N, L, 2\)"):
        nn.Conv1D(3, 2, 1).forward(np.ones((4, 10, 3)))
    with pytest.raises(ValueError, match="MaxPool2D.forward"):
        nn.MaxPool2D(3).forward(np.ones((1, 2, 5, 1)))
    with pytest.raises(ValueError, match="SoftMax.forward"):
        nn.SoftMax().forward(np.ones((2, 3, 4)))
    with pytest.raises(
        ValueError, match=r"Conv2D.backward_delta: delta must have shape \(1, 3, 3, 2\)"
    ):
        nn.Conv2D(3, 1, 2).backward_delta(np.ones((1, 5, 5, 1)), np.ones((1, 3, 3, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_bias_gradient_adds_the_batch_sum(dtype):
    """``backward_update_gradient`` adds ``Σₙ δ`` to the bias gradient (a one-row product
    with ones in Rust): accumulated over calls, NaN kept in its column, an empty batch
    adding nothing, and a bias gradient of another dtype (set by hand) still added to."""
    rng = np.random.default_rng(5)
    layer = nn.Linear(5, 3, dtype=dtype, rng=0)
    x, delta = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-14, "atol": 1e-14}
    layer.zero_grad()
    layer.backward_update_gradient(x, delta)
    layer.backward_update_gradient(x, delta)
    np.testing.assert_allclose(layer._grad_bias, 2 * delta.astype(np.float64).sum(0), **tol)
    assert layer._grad_bias.dtype == dtype
    delta[3, 1] = np.nan
    layer.backward_update_gradient(x, delta)
    assert np.isnan(layer._grad_bias[1]) and np.isfinite(layer._grad_bias[[0, 2]]).all()
    before = layer._grad_bias.copy()
    layer.backward_update_gradient(x[:0], delta[:0])
    np.testing.assert_array_equal(layer._grad_bias, before)
    other = np.float64 if dtype == np.float32 else np.float32
    layer._grad_bias = np.zeros(3, other)
    layer.backward_update_gradient(x, np.nan_to_num(delta))
    want = np.nan_to_num(delta).astype(np.float64).sum(0)
    np.testing.assert_allclose(layer._grad_bias, want, rtol=1e-5, atol=1e-5)
