//! Bindings of `matmul.rs`: `matmul`, `addmm`, `linear`.

use ndarray::{Ix1, Ix2};
use pyo3::prelude::*;

use super::{common_dtype, dispatch, one, optional, FloatArg};
use crate::matmul;

/// matmul(a, b) -> ndarray
///
/// The product ``a @ b`` of ``a (m, k)`` and ``b (k, n)``, shape ``(m, n)``.
/// Any strides work, so ``matmul(x.T, delta)`` multiplies by a transpose
/// without copying it.
#[pyfunction(name = "matmul")]
pub(super) fn matmul_py<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "matmul";
    let a = FloatArg::new(OP, "a", a, 2, "(m, k)")?;
    let b = FloatArg::new(OP, "b", b, 2, "(k, n)")?;
    dispatch!(common_dtype(OP, [&a, &b])?, |T| {
        let (a, b) = (a.readonly::<T, Ix2>()?, b.readonly::<T, Ix2>()?);
        let (a, b) = (a.as_array(), b.as_array());
        Ok(one(py.detach(|| matmul::matmul(a, b))?, py))
    })
}

/// addmm(out, a, b, alpha=1.0, beta=1.0) -> None
///
/// In place: ``out = beta * out + alpha * (a @ b)``. Shapes ``out (m, n)``,
/// ``a (m, k)``, ``b (k, n)``. With the defaults it accumulates a gradient:
/// ``addmm(grad_w, x.T, delta)`` adds ``xᵀ·δ`` to ``grad_w`` with no temporary.
#[pyfunction(name = "addmm")]
#[pyo3(signature = (out, a, b, alpha = 1.0, beta = 1.0))]
pub(super) fn addmm_py(
    py: Python<'_>,
    out: &Bound<'_, PyAny>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    alpha: f64,
    beta: f64,
) -> PyResult<()> {
    const OP: &str = "addmm";
    let out = FloatArg::new(OP, "out", out, 2, "(m, n)")?;
    let a = FloatArg::new(OP, "a", a, 2, "(m, k)")?;
    let b = FloatArg::new(OP, "b", b, 2, "(k, n)")?;
    dispatch!(common_dtype(OP, [&out, &a, &b])?, |T| {
        let mut out = out.readwrite::<T, Ix2>()?;
        let (a, b) = (a.readonly::<T, Ix2>()?, b.readonly::<T, Ix2>()?);
        let (out, a, b) = (out.as_array_mut(), a.as_array(), b.as_array());
        let (alpha, beta) = (alpha as T, beta as T);
        py.detach(|| matmul::gemm_into(out, a, b, alpha, beta))?;
        Ok(())
    })
}

/// linear(x, w, b=None) -> ndarray
///
/// ``x @ w + b`` in one call: ``x (N, in)``, ``w (in, out)``, ``b (out,)``,
/// result ``(N, out)``. The bias is written first, then the product is
/// accumulated on it, so there is no temporary.
#[pyfunction(name = "linear")]
#[pyo3(signature = (x, w, b = None))]
pub(super) fn linear_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    b: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "linear";
    let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
    let w = FloatArg::new(OP, "w", w, 2, "(in, out)")?;
    let b = optional(OP, "bias", b, "(out,)")?;
    dispatch!(common_dtype(OP, [&x, &w].into_iter().chain(&b))?, |T| {
        let (x, w) = (x.readonly::<T, Ix2>()?, w.readonly::<T, Ix2>()?);
        let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
        let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
        Ok(one(py.detach(|| matmul::linear(x, w, b))?, py))
    })
}
