//! Bindings of `pool.rs`: max and average pooling, 1-D and 2-D, with their
//! backward passes.

use ndarray::{Ix3, Ix4};
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::conv::{int, int64_arg, pair};
use super::{dispatch, FloatArg, Int};
use crate::float::Float;
use crate::pool;

macro_rules! max_forward {
    ($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal) => {
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            k: usize,
            stride: usize,
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
            let x = x.readonly::<T, $ix>()?;
            let x = x.as_array();
            let (y, a) = py.detach(|| $kernel(x, k, stride))?;
            Ok((y.into_pyarray(py).into_any(), a.into_pyarray(py).into_any()))
        }

        #[pyfunction(name = $name)]
        fn $py<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
            const OP: &str = $name;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let (k, stride) = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
            dispatch!(x.dtype, $t(py, &x, k, stride))
        }
    };
}

max_forward!(
    max_pool1d_t,
    max_pool1d_py,
    "max_pool1d",
    pool::max_pool1d,
    Ix3,
    3,
    "(N, L, C)"
);
max_forward!(
    max_pool2d_t,
    max_pool2d_py,
    "max_pool2d",
    pool::max_pool2d,
    Ix4,
    4,
    "(N, H, W, C)"
);

macro_rules! avg_forward {
    ($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal) => {
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            k: usize,
            stride: usize,
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = x.readonly::<T, $ix>()?;
            let x = x.as_array();
            let y = py.detach(|| $kernel(x, k, stride))?;
            Ok(y.into_pyarray(py).into_any())
        }

        #[pyfunction(name = $name)]
        fn $py<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let (k, stride) = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
            dispatch!(x.dtype, $t(py, &x, k, stride))
        }
    };
}

avg_forward!(
    avg_pool1d_t,
    avg_pool1d_py,
    "avg_pool1d",
    pool::avg_pool1d,
    Ix3,
    3,
    "(N, L, C)"
);
avg_forward!(
    avg_pool2d_t,
    avg_pool2d_py,
    "avg_pool2d",
    pool::avg_pool2d,
    Ix4,
    4,
    "(N, H, W, C)"
);

/// The optional `(k, stride)` of a max-pooling backward: both or neither.
fn window(
    op: &'static str,
    k: Option<Int>,
    stride: Option<Int>,
) -> PyResult<Option<(usize, usize)>> {
    match (k, stride) {
        (None, None) => Ok(None),
        (Some(k), Some(stride)) => Ok(Some((int(op, "k", k, 1)?, int(op, "stride", stride, 1)?))),
        _ => Err(PyValueError::new_err(format!(
            "{op}: give k and stride together (the forward's window), or neither"
        ))),
    }
}

fn max_pool1d_backward_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    argmax: &Bound<'py, PyAny>,
    input_len: usize,
    win: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "max_pool1d_backward";
    let a = int64_arg::<Ix3>(OP, "argmax", argmax, "(N, Lout, C)")?;
    let d = delta.readonly::<T, Ix3>()?;
    let (d, a) = (d.as_array(), a.as_array());
    let dx = py.detach(|| pool::max_pool1d_backward(d, a, input_len, win))?;
    Ok(dx.into_pyarray(py).into_any())
}

/// max_pool1d_backward(delta, argmax, input_len, k=None, stride=None) -> ndarray
#[pyfunction(name = "max_pool1d_backward")]
#[pyo3(signature = (delta, argmax, input_len, k=None, stride=None))]
fn max_pool1d_backward_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    argmax: &Bound<'py, PyAny>,
    input_len: Int,
    k: Option<Int>,
    stride: Option<Int>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "max_pool1d_backward";
    let delta = FloatArg::new(OP, "delta", delta, 3, "(N, Lout, C)")?;
    let input_len = int(OP, "input_len", input_len, 0)?;
    let win = window(OP, k, stride)?;
    dispatch!(
        delta.dtype,
        max_pool1d_backward_t(py, &delta, argmax, input_len, win)
    )
}

fn max_pool2d_backward_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    argmax: &Bound<'py, PyAny>,
    hw: (usize, usize),
    win: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "max_pool2d_backward";
    let a = int64_arg::<Ix4>(OP, "argmax", argmax, "(N, H', W', C)")?;
    let d = delta.readonly::<T, Ix4>()?;
    let (d, a) = (d.as_array(), a.as_array());
    let dx = py.detach(|| pool::max_pool2d_backward(d, a, hw, win))?;
    Ok(dx.into_pyarray(py).into_any())
}

/// max_pool2d_backward(delta, argmax, input_hw, k=None, stride=None) -> ndarray
#[pyfunction(name = "max_pool2d_backward")]
#[pyo3(signature = (delta, argmax, input_hw, k=None, stride=None))]
fn max_pool2d_backward_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    argmax: &Bound<'py, PyAny>,
    input_hw: &Bound<'py, PyAny>,
    k: Option<Int>,
    stride: Option<Int>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "max_pool2d_backward";
    let delta = FloatArg::new(OP, "delta", delta, 4, "(N, H', W', C)")?;
    let hw = pair(OP, "input_hw", input_hw)?;
    let win = window(OP, k, stride)?;
    dispatch!(
        delta.dtype,
        max_pool2d_backward_t(py, &delta, argmax, hw, win)
    )
}

fn avg_pool1d_backward_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    input_len: usize,
    k: usize,
    stride: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let d = delta.readonly::<T, Ix3>()?;
    let d = d.as_array();
    let dx = py.detach(|| pool::avg_pool1d_backward(d, input_len, k, stride))?;
    Ok(dx.into_pyarray(py).into_any())
}

/// avg_pool1d_backward(delta, input_len, k, stride) -> ndarray
#[pyfunction(name = "avg_pool1d_backward")]
fn avg_pool1d_backward_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    input_len: Int,
    k: Int,
    stride: Int,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "avg_pool1d_backward";
    let delta = FloatArg::new(OP, "delta", delta, 3, "(N, Lout, C)")?;
    let input_len = int(OP, "input_len", input_len, 0)?;
    let (k, stride) = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
    dispatch!(
        delta.dtype,
        avg_pool1d_backward_t(py, &delta, input_len, k, stride)
    )
}

fn avg_pool2d_backward_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    hw: (usize, usize),
    k: usize,
    stride: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let d = delta.readonly::<T, Ix4>()?;
    let d = d.as_array();
    let dx = py.detach(|| pool::avg_pool2d_backward(d, hw, k, stride))?;
    Ok(dx.into_pyarray(py).into_any())
}

/// avg_pool2d_backward(delta, input_hw, k, stride) -> ndarray
#[pyfunction(name = "avg_pool2d_backward")]
fn avg_pool2d_backward_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    input_hw: &Bound<'py, PyAny>,
    k: Int,
    stride: Int,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "avg_pool2d_backward";
    let delta = FloatArg::new(OP, "delta", delta, 4, "(N, H', W', C)")?;
    let hw = pair(OP, "input_hw", input_hw)?;
    let (k, stride) = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
    dispatch!(
        delta.dtype,
        avg_pool2d_backward_t(py, &delta, hw, k, stride)
    )
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(max_pool1d_py, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool1d_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(avg_pool1d_py, m)?)?;
    m.add_function(wrap_pyfunction!(avg_pool1d_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool2d_py, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool2d_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(avg_pool2d_py, m)?)?;
    m.add_function(wrap_pyfunction!(avg_pool2d_backward_py, m)?)?;
    Ok(())
}
