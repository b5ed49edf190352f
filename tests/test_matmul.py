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


def _normal(seed: int, dtype, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Standard normal arrays of these shapes, drawn in order from one seed."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout_a", ["C", "F", "TT", "sliced", "reversed"])
@pytest.mark.parametrize("layout_b", ["C", "F", "sliced", "reversed"])
def test_matmul_every_layout(dtype, layout_a, layout_b):
    a, b = _normal(0, dtype, (37, 23), (23, 19))
    got = _core.matmul(_layouts(a)[layout_a], _layouts(b)[layout_b])
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60)
@given(m=st.integers(0, 70), k=st.integers(0, 70), n=st.integers(0, 70), seed=st.integers(0, 1000))
def test_matmul_random_shapes_including_empty(dtype, m, k, n, seed):
    a, b = _normal(seed, dtype, (m, k), (k, n))
    np.testing.assert_allclose(_core.matmul(a, b), a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_three_backprop_products_without_copies(dtype):
    x, w, d = _normal(1, dtype, (50, 30), (30, 20), (50, 20))
    np.testing.assert_allclose(_core.matmul(x, w), x @ w, **TOL[dtype])
    np.testing.assert_allclose(_core.matmul(x.T, d), x.T @ d, **TOL[dtype])
    np.testing.assert_allclose(_core.matmul(d, w.T), d @ w.T, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_product_runs_parallel_and_matches(dtype):
    a, b = _normal(2, dtype, (300, 257), (257, 301))
    np.testing.assert_allclose(_core.matmul(a, b), a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_addmm_accumulates_in_place(dtype):
    out, a, b = _normal(3, dtype, (6, 4), (6, 5), (5, 4))
    expected = 0.5 * out + 2.0 * (a @ b)
    _core.addmm(out, a, b, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(out, expected, **TOL[dtype])
    # into a Fortran-ordered, strided output
    big = np.zeros((12, 8), dtype=dtype, order="F")
    view = big[::2, ::2]
    _core.addmm(view, a, b)
    np.testing.assert_allclose(view, a @ b, **TOL[dtype])
    assert np.all(big[1::2] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_one_row_products(dtype, threads):
    """Batch 1, ``x (1, k) @ w (k, n)``: widths around the 16-lane groups of the
    one-row kernel, short and long ``k`` ((2100, 2000) has enough multiply-adds to split
    over 2 threads), with a bias, scaled and accumulated, from strided ``x`` and ``w``."""
    shapes = [
        (1, 1),
        (2, 48),
        (3, 100),
        (37, 33),
        (600, 17),
        (7936, 10),
        (784, 512),
        (4099, 65),
        (2100, 2000),
    ]
    try:
        _core.set_num_threads(threads)
        for k, n in shapes:
            x, w, b, out = _normal(k + n, dtype, (1, k), (k, n), (n,), (1, n))
            ref = x.astype(np.float64) @ w.astype(np.float64)
            # float32 sums of k products: rounding grows with sqrt(k)
            # sums of k products round like numpy's own float32 ones: ~sqrt(k)
            tol = {**TOL[dtype], "atol": TOL[dtype]["atol"] * max(1.0, np.sqrt(k / 64))}
            np.testing.assert_allclose(_core.linear(x, w, b), ref + b, **tol)
            expected = 0.5 * out + 2.0 * ref
            _core.addmm(out, x, w, alpha=2.0, beta=0.5)
            np.testing.assert_allclose(out, expected, **tol)
            for lx, lw in [("sliced", "C"), ("reversed", "C"), ("C", "sliced"), ("TT", "F")]:
                got = _core.matmul(_layouts(x)[lx], _layouts(w)[lw])
                np.testing.assert_allclose(got, ref, **tol)
    finally:
        _core.set_num_threads(0)


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
