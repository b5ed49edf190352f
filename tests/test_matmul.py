"""The Rust matmul bindings against numpy, on every memory layout."""

from __future__ import annotations

import numpy as np
import pytest
from diy_nn import _core
from hypothesis import given, settings
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 2e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same matrix as C-contiguous, Fortran, transposed-of-transpose, sliced, reversed."""
    big = np.zeros((2 * a.shape[0] + 1, 3 * a.shape[1] + 1), dtype=a.dtype)
    big[1::2, 1::3] = a
    return {
        "C": np.ascontiguousarray(a),
        "F": np.asfortranarray(a),
        "TT": np.ascontiguousarray(a.T).T,
        "sliced": big[1::2, 1::3],
        "reversed": np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1],
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout_a", ["C", "F", "TT", "sliced", "reversed"])
@pytest.mark.parametrize("layout_b", ["C", "F", "sliced", "reversed"])
def test_matmul_every_layout(dtype, layout_a, layout_b):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 23)).astype(dtype)
    b = rng.standard_normal((23, 19)).astype(dtype)
    got = _core.matmul(_layouts(a)[layout_a], _layouts(b)[layout_b])
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60)
@given(m=st.integers(0, 70), k=st.integers(0, 70), n=st.integers(0, 70), seed=st.integers(0, 1000))
def test_matmul_random_shapes_including_empty(dtype, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    np.testing.assert_allclose(_core.matmul(a, b), a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_three_backprop_products_without_copies(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 30)).astype(dtype)
    w = rng.standard_normal((30, 20)).astype(dtype)
    d = rng.standard_normal((50, 20)).astype(dtype)
    np.testing.assert_allclose(_core.matmul(x, w), x @ w, **TOL[dtype])
    np.testing.assert_allclose(_core.matmul(x.T, d), x.T @ d, **TOL[dtype])
    np.testing.assert_allclose(_core.matmul(d, w.T), d @ w.T, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_product_runs_parallel_and_matches(dtype):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((300, 257)).astype(dtype)
    b = rng.standard_normal((257, 301)).astype(dtype)
    np.testing.assert_allclose(_core.matmul(a, b), a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_addmm_accumulates_in_place(dtype):
    rng = np.random.default_rng(3)
    out = rng.standard_normal((6, 4)).astype(dtype)
    a = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal((5, 4)).astype(dtype)
    expected = 0.5 * out + 2.0 * (a @ b)
    _core.addmm(out, a, b, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(out, expected, **TOL[dtype])
    # into a Fortran-ordered, strided output
    big = np.zeros((12, 8), dtype=dtype, order="F")
    view = big[::2, ::2]
    _core.addmm(view, a, b)
    np.testing.assert_allclose(view, a @ b, **TOL[dtype])
    assert np.all(big[1::2] == 0)


def test_linear_binding():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((7, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    np.testing.assert_allclose(_core.linear(x, w, b), x @ w + b, rtol=1e-12)
    np.testing.assert_allclose(_core.linear(x, w), x @ w, rtol=1e-12)


def test_num_threads_round_trip():
    before = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        assert _core.get_num_threads() == 1
        a = np.random.default_rng(5).standard_normal((200, 200))
        np.testing.assert_allclose(_core.matmul(a, a), a @ a, rtol=1e-10, atol=1e-10)
    finally:
        _core.set_num_threads(0)
    assert _core.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be >= 0"):
        _core.set_num_threads(-1)
