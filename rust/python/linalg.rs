//! Bindings of `matmul.rs`: `matmul`, `addmm`, `linear`.

use ndarray::{Ix1, Ix2};
use numpy::IntoPyArray;
use pyo3::prelude::*;

use super::{common_dtype, dispatch, FloatArg};
use crate::float::Float;
use crate::matmul;

fn matmul_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    a: &FloatArg<'py>,
    b: &FloatArg<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let (a, b) = (a.readonly::<T, Ix2>()?, b.readonly::<T, Ix2>()?);
    let (a, b) = (a.as_array(), b.as_array());
    let out = py.detach(|| matmul::matmul(a, b))?;
    Ok(out.into_pyarray(py).into_any())
}

/// matmul(a, b) -> ndarray
///
/// The product ``a @ b`` of ``a (m, k)`` and ``b (k, n)``, shape ``(m, n)``.
/// Any strides work, so ``matmul(x.T, delta)`` multiplies by a transpose
/// without copying it.
#[pyfunction(name = "matmul")]
fn matmul_py<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "matmul";
    let a = FloatArg::new(OP, "a", a, 2, "(m, k)")?;
    let b = FloatArg::new(OP, "b", b, 2, "(k, n)")?;
    dispatch!(common_dtype(OP, &[&a, &b])?, matmul_t(py, &a, &b))
}

fn addmm_t<T: Float + numpy::Element>(
    py: Python<'_>,
    out: &FloatArg<'_>,
    a: &FloatArg<'_>,
    b: &FloatArg<'_>,
    alpha: f64,
    beta: f64,
) -> PyResult<()> {
    let mut out = out.readwrite::<T, Ix2>("addmm")?;
    let (a, b) = (a.readonly::<T, Ix2>()?, b.readonly::<T, Ix2>()?);
    let (out, a, b) = (out.as_array_mut(), a.as_array(), b.as_array());
    let (alpha, beta) = (T::from_f64(alpha).unwrap(), T::from_f64(beta).unwrap());
    py.detach(|| matmul::gemm_into(out, a, b, alpha, beta))?;
    Ok(())
}

/// addmm(out, a, b, alpha=1.0, beta=1.0) -> None
///
/// In place: ``out = beta * out + alpha * (a @ b)``. Shapes ``out (m, n)``,
/// ``a (m, k)``, ``b (k, n)``. With the defaults it accumulates a gradient:
/// ``addmm(grad_w, x.T, delta)`` adds ``xᵀ·δ`` to ``grad_w`` with no temporary.
#[pyfunction(name = "addmm")]
#[pyo3(signature = (out, a, b, alpha = 1.0, beta = 1.0))]
fn addmm_py(
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
    dispatch!(
        common_dtype(OP, &[&out, &a, &b])?,
        addmm_t(py, &out, &a, &b, alpha, beta)
    )
}

fn linear_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    x: &FloatArg<'py>,
    w: &FloatArg<'py>,
    b: Option<&FloatArg<'py>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, w) = (x.readonly::<T, Ix2>()?, w.readonly::<T, Ix2>()?);
    let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
    let (x, w) = (x.as_array(), w.as_array());
    let b = b.as_ref().map(|b| b.as_array());
    let out = py.detach(|| matmul::linear(x, w, b))?;
    Ok(out.into_pyarray(py).into_any())
}

/// linear(x, w, b=None) -> ndarray
///
/// ``x @ w + b`` in one call: ``x (N, in)``, ``w (in, out)``, ``b (out,)``,
/// result ``(N, out)``. The bias is written first, then the product is
/// accumulated on it, so there is no temporary.
#[pyfunction(name = "linear")]
#[pyo3(signature = (x, w, b = None))]
fn linear_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    b: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "linear";
    let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
    let w = FloatArg::new(OP, "w", w, 2, "(in, out)")?;
    let b = b
        .filter(|b| !b.is_none())
        .map(|b| FloatArg::new(OP, "bias", b, 1, "(out,)"))
        .transpose()?;
    let mut args = vec![&x, &w];
    args.extend(b.as_ref());
    dispatch!(common_dtype(OP, &args)?, linear_t(py, &x, &w, b.as_ref()))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(matmul_py, m)?)?;
    m.add_function(wrap_pyfunction!(addmm_py, m)?)?;
    m.add_function(wrap_pyfunction!(linear_py, m)?)?;
    Ok(())
}
