//! Bindings of `conv.rs`: `conv1d`, `conv2d` and their backward passes; also
//! the argument helpers the pooling and softmax bindings share.

use ndarray::{Dimension, Ix1, Ix3, Ix4};
use numpy::{
    IntoPyArray, PyArray, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::{common_dtype, dispatch, FloatArg, Int, ShapeError};
use crate::conv;
use crate::error::fmt_shape;
use crate::float::Float;

/// A size argument given as a Python int: `min` or more, else a `ShapeError`
/// (a `ValueError`) naming it.
pub(super) fn size(op: &'static str, name: &str, v: i64, min: i64) -> PyResult<usize> {
    if v < min {
        return Err(ShapeError::new_err(format!(
            "{op}: {name} must be >= {min}, got {v}"
        )));
    }
    usize::try_from(v).map_err(|_| ShapeError::new_err(format!("{op}: {name} is too large: {v}")))
}

/// An integer argument given as an [`Int`]: checked as [`size`], or a
/// `TypeError`/`ValueError` naming it when it is not an int or overflows i64.
pub(super) fn int(op: &'static str, name: &str, v: Int, min: i64) -> PyResult<usize> {
    size(op, name, v.get(op, name, min)?, min)
}

/// An `(H, W)` pair of sizes (a tuple or list of two ints).
pub(super) fn pair(
    op: &'static str,
    name: &str,
    obj: &Bound<'_, PyAny>,
) -> PyResult<(usize, usize)> {
    let v: Vec<i64> = obj
        .extract()
        .ok()
        .filter(|v: &Vec<i64>| v.len() == 2 && !obj.is_instance_of::<pyo3::types::PyString>())
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{op}: {name} must be a tuple of two ints (H, W), got {}",
                obj.repr()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| "?".into())
            ))
        })?;
    Ok((size(op, name, v[0], 0)?, size(op, name, v[1], 0)?))
}

/// Checks that `obj` is an int64 ndarray of `ndim` dimensions and borrows it.
pub(super) fn int64_arg<'py, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, i64, D>> {
    int_arg(op, name, obj, expected, "int64")
}

/// Checks that `obj` is an ndarray of `E` (numpy's `dtype_name`) with
/// `ndim` dimensions and borrows it.
pub(super) fn int_arg<'py, E: numpy::Element, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
    dtype_name: &str,
) -> PyResult<PyReadonlyArray<'py, E, D>> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!(
            "{op}: {name} must be a numpy.ndarray of {dtype_name}, got {ty}"
        ))
    })?;
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<E>(obj.py())) {
        return Err(PyTypeError::new_err(format!(
            "{op}: {name} must have dtype {dtype_name}, got {dtype}"
        )));
    }
    let ndim = D::NDIM.unwrap_or(array.ndim());
    if array.ndim() != ndim {
        return Err(ShapeError::new_err(format!(
            "{op}: {name} must have {ndim} dimensions {expected}, got shape {}",
            fmt_shape(array.shape())
        )));
    }
    let typed = array.cast::<PyArray<E, D>>()?;
    typed
        .try_readonly()
        .map_err(|e| ShapeError::new_err(format!("{op}: cannot read {name}: {e}")))
}

/// An optional `(Cout,)` float argument: None (or Python's None) is absent.
pub(super) fn optional<'py>(
    op: &'static str,
    name: &'static str,
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<FloatArg<'py>>> {
    obj.filter(|b| !b.is_none())
        .map(|b| FloatArg::new(op, name, b, 1, "(Cout,)"))
        .transpose()
}

macro_rules! conv_forward {
    ($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal, $ws:literal) => {
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            w: &FloatArg<'py>,
            b: Option<&FloatArg<'py>>,
            stride: usize,
            padding: usize,
        ) -> PyResult<Bound<'py, PyAny>> {
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
            let (x, w) = (x.as_array(), w.as_array());
            let b = b.as_ref().map(|b| b.as_array());
            let out = py.detach(|| $kernel(x, w, b, stride, padding))?;
            Ok(out.into_pyarray(py).into_any())
        }

        #[pyfunction(name = $name)]
        #[pyo3(
                            signature = (x, w, b = None, stride = Int::of(1), padding = Int::of(0)),
                            text_signature = "(x, w, b=None, stride=1, padding=0)"
                        )]
        fn $py<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let w = FloatArg::new(OP, "w", w, $nd, $ws)?;
            let b = optional(OP, "b", b)?;
            let (stride, padding) = (
                int(OP, "stride", stride, 1)?,
                int(OP, "padding", padding, 0)?,
            );
            let mut args = vec![&x, &w];
            args.extend(b.as_ref());
            dispatch!(
                common_dtype(OP, &args)?,
                $t(py, &x, &w, b.as_ref(), stride, padding)
            )
        }
    };
}

conv_forward!(
    conv1d_t,
    conv1d_py,
    "conv1d",
    conv::conv1d,
    Ix3,
    3,
    "(N, L, Cin)",
    "(K, Cin, Cout)"
);
conv_forward!(
    conv2d_t,
    conv2d_py,
    "conv2d",
    conv::conv2d,
    Ix4,
    4,
    "(N, H, W, Cin)",
    "(K, K, Cin, Cout)"
);

fn conv1d_backward_input_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    w: &FloatArg<'py>,
    input_len: usize,
    stride: usize,
    padding: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (d, w) = (delta.readonly::<T, Ix3>()?, w.readonly::<T, Ix3>()?);
    let (d, w) = (d.as_array(), w.as_array());
    let out = py.detach(|| conv::conv1d_backward_input(d, w, input_len, stride, padding))?;
    Ok(out.into_pyarray(py).into_any())
}

/// conv1d_backward_input(delta, w, input_len, stride=1, padding=0) -> ndarray
#[pyfunction(name = "conv1d_backward_input")]
#[pyo3(
    signature = (delta, w, input_len, stride = Int::of(1), padding = Int::of(0)),
    text_signature = "(delta, w, input_len, stride=1, padding=0)"
)]
fn conv1d_backward_input_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    input_len: Int,
    stride: Int,
    padding: Int,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "conv1d_backward_input";
    let delta = FloatArg::new(OP, "delta", delta, 3, "(N, Lout, Cout)")?;
    let w = FloatArg::new(OP, "w", w, 3, "(K, Cin, Cout)")?;
    let input_len = int(OP, "input_len", input_len, 0)?;
    let (stride, padding) = (
        int(OP, "stride", stride, 1)?,
        int(OP, "padding", padding, 0)?,
    );
    dispatch!(
        common_dtype(OP, &[&delta, &w])?,
        conv1d_backward_input_t(py, &delta, &w, input_len, stride, padding)
    )
}

fn conv2d_backward_input_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    delta: &FloatArg<'py>,
    w: &FloatArg<'py>,
    hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (d, w) = (delta.readonly::<T, Ix4>()?, w.readonly::<T, Ix4>()?);
    let (d, w) = (d.as_array(), w.as_array());
    let out = py.detach(|| conv::conv2d_backward_input(d, w, hw, stride, padding))?;
    Ok(out.into_pyarray(py).into_any())
}

/// conv2d_backward_input(delta, w, input_hw, stride=1, padding=0) -> ndarray
#[pyfunction(name = "conv2d_backward_input")]
#[pyo3(
    signature = (delta, w, input_hw, stride = Int::of(1), padding = Int::of(0)),
    text_signature = "(delta, w, input_hw, stride=1, padding=0)"
)]
fn conv2d_backward_input_py<'py>(
    py: Python<'py>,
    delta: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    input_hw: &Bound<'py, PyAny>,
    stride: Int,
    padding: Int,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "conv2d_backward_input";
    let delta = FloatArg::new(OP, "delta", delta, 4, "(N, H', W', Cout)")?;
    let w = FloatArg::new(OP, "w", w, 4, "(K, K, Cin, Cout)")?;
    let hw = pair(OP, "input_hw", input_hw)?;
    let (stride, padding) = (
        int(OP, "stride", stride, 1)?,
        int(OP, "padding", padding, 0)?,
    );
    dispatch!(
        common_dtype(OP, &[&delta, &w])?,
        conv2d_backward_input_t(py, &delta, &w, hw, stride, padding)
    )
}

macro_rules! conv_backward_weight {
    ($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal, $ds:literal, $ws:literal) => {
        fn $t<T: Float + numpy::Element>(
            py: Python<'_>,
            x: &FloatArg<'_>,
            delta: &FloatArg<'_>,
            grad_w: &FloatArg<'_>,
            grad_b: Option<&FloatArg<'_>>,
            stride: usize,
            padding: usize,
        ) -> PyResult<()> {
            const OP: &str = $name;
            let mut gw = grad_w.readwrite::<T, $ix>(OP)?;
            let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>(OP)).transpose()?;
            let (x, d) = (x.readonly::<T, $ix>()?, delta.readonly::<T, $ix>()?);
            let (x, d) = (x.as_array(), d.as_array());
            let gw = gw.as_array_mut();
            let gb = gb.as_mut().map(|b| b.as_array_mut());
            py.detach(|| $kernel(x, d, gw, gb, stride, padding))?;
            Ok(())
        }

        #[pyfunction(name = $name)]
        #[pyo3(
            signature = (x, delta, grad_w, grad_b = None, stride = Int::of(1), padding = Int::of(0)),
            text_signature = "(x, delta, grad_w, grad_b=None, stride=1, padding=0)"
        )]
        fn $py(
            py: Python<'_>,
            x: &Bound<'_, PyAny>,
            delta: &Bound<'_, PyAny>,
            grad_w: &Bound<'_, PyAny>,
            grad_b: Option<&Bound<'_, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<()> {
            const OP: &str = $name;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let grad_w = FloatArg::new(OP, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional(OP, "grad_b", grad_b)?;
            let (stride, padding) = (
                int(OP, "stride", stride, 1)?,
                int(OP, "padding", padding, 0)?,
            );
            let mut args = vec![&x, &delta, &grad_w];
            args.extend(grad_b.as_ref());
            dispatch!(
                common_dtype(OP, &args)?,
                $t(py, &x, &delta, &grad_w, grad_b.as_ref(), stride, padding)
            )
        }
    };
}

conv_backward_weight!(
    conv1d_backward_weight_t,
    conv1d_backward_weight_py,
    "conv1d_backward_weight",
    conv::conv1d_backward_weight,
    Ix3,
    3,
    "(N, L, Cin)",
    "(N, Lout, Cout)",
    "(K, Cin, Cout)"
);
conv_backward_weight!(
    conv2d_backward_weight_t,
    conv2d_backward_weight_py,
    "conv2d_backward_weight",
    conv::conv2d_backward_weight,
    Ix4,
    4,
    "(N, H, W, Cin)",
    "(N, H', W', Cout)",
    "(K, K, Cin, Cout)"
);

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv1d_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv1d_backward_input_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv1d_backward_weight_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_backward_input_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_backward_weight_py, m)?)?;
    Ok(())
}
