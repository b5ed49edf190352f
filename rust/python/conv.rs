//! Bindings of `conv`: `conv1d`, `conv2d` and their backward passes; also
//! the argument helpers the pooling, convpool and softmax bindings share.
//!
//! Each op is a macro row for 1-D and one for 2-D: the rows differ only in
//! the kernel, the dimensions and the shapes named in the error messages.

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
        let msg = format!("{op}: {name} must be >= {min}, got {v}");
        return Err(ShapeError::new_err(msg));
    }
    usize::try_from(v).map_err(|_| ShapeError::new_err(format!("{op}: {name} is too large: {v}")))
}

/// An integer argument given as an [`Int`]: checked as [`size`], or a
/// `TypeError`/`ValueError` naming it when it is not an int or overflows i64.
pub(super) fn int(op: &'static str, name: &str, v: Int, min: i64) -> PyResult<usize> {
    size(op, name, v.get(op, name, min)?, min)
}

/// A convolution's `(stride, padding)`.
pub(super) fn stride_padding(op: &'static str, s: Int, p: Int) -> PyResult<(usize, usize)> {
    Ok((int(op, "stride", s, 1)?, int(op, "padding", p, 0)?))
}

/// The size of the input a backward pass returns: `input_len`, an int, in
/// 1-D; `input_hw`, a tuple or list of two ints, in 2-D.
pub(super) trait InputSize: Sized + Copy + Send {
    fn parse(op: &'static str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self>;
}

impl InputSize for usize {
    fn parse(op: &'static str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        int(op, name, obj.extract::<Int>()?, 0)
    }
}

impl InputSize for (usize, usize) {
    fn parse(op: &'static str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        match obj.extract::<Vec<i64>>() {
            Ok(v) if v.len() == 2 && !obj.is_instance_of::<pyo3::types::PyString>() => {
                Ok((size(op, name, v[0], 0)?, size(op, name, v[1], 0)?))
            }
            _ => Err(PyTypeError::new_err(format!(
                "{op}: {name} must be a tuple of two ints (H, W), got {}",
                obj.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))),
        }
    }
}

/// Checks that `obj` is an ndarray of integers `E` (numpy's `dtype_name`) of
/// `D`'s dimensions and borrows it.
pub(super) fn int_arg<'py, E: numpy::Element, D: Dimension>(
    op: &'static str,
    dtype_name: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, E, D>> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "{op}: {name} must be a numpy.ndarray of {dtype_name}, got {ty}"
        ))
    })?;
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<E>(obj.py())) {
        let msg = format!("{op}: {name} must have dtype {dtype_name}, got {dtype}");
        return Err(PyTypeError::new_err(msg));
    }
    let ndim = D::NDIM.unwrap_or(array.ndim());
    if array.ndim() != ndim {
        return Err(ShapeError::new_err(format!(
            "{op}: {name} must have {ndim} dimensions {expected}, got shape {}",
            fmt_shape(array.shape())
        )));
    }
    let typed = array.cast::<PyArray<E, D>>()?;
    let err = |e| ShapeError::new_err(format!("{op}: cannot read {name}: {e}"));
    typed.try_readonly().map_err(err)
}

/// [`int_arg`] for `int64` (class indices).
pub(super) fn int64_arg<'py, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, i64, D>> {
    int_arg::<i64, D>(op, "int64", name, obj, expected)
}

/// [`int_arg`] for `int32` (max pooling's argmax positions).
pub(super) fn int32_arg<'py, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, i32, D>> {
    int_arg::<i32, D>(op, "int32", name, obj, expected)
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

/// Adds the `#[pyfunction]`s named to the module `m`.
macro_rules! add_functions {
    ($m:ident, $($f:ident),* $(,)?) => {{
        $($m.add_function(wrap_pyfunction!($f, $m)?)?;)*
        Ok(())
    }};
}
pub(super) use add_functions;

macro_rules! conv_forward {
    ($($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal, $ws:literal);* $(;)?) => {$(
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            (x, w, b): (&FloatArg<'py>, &FloatArg<'py>, Option<&FloatArg<'py>>),
            (stride, padding): (usize, usize),
        ) -> PyResult<Bound<'py, PyAny>> {
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
            let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
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
            let sizes = stride_padding(OP, stride, padding)?;
            let mut args = vec![&x, &w];
            args.extend(b.as_ref());
            dispatch!(common_dtype(OP, &args)?, $t(py, (&x, &w, b.as_ref()), sizes))
        }
    )*};
}

conv_forward! {
    conv1d_t, conv1d_py, "conv1d", conv::conv1d, Ix3, 3, "(N, L, Cin)", "(K, Cin, Cout)";
    conv2d_t, conv2d_py, "conv2d", conv::conv2d, Ix4, 4, "(N, H, W, Cin)", "(K, K, Cin, Cout)";
}

macro_rules! conv_backward_input {
    ($($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $size:ident: $st:ty,
       $sig:literal, $ds:literal, $ws:literal);* $(;)?) => {$(
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            (delta, w): (&FloatArg<'py>, &FloatArg<'py>),
            $size: $st,
            (stride, padding): (usize, usize),
        ) -> PyResult<Bound<'py, PyAny>> {
            let (d, w) = (delta.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let (d, w) = (d.as_array(), w.as_array());
            let out = py.detach(|| $kernel(d, w, $size, stride, padding))?;
            Ok(out.into_pyarray(py).into_any())
        }

        #[pyfunction(name = $name)]
        #[pyo3(
            signature = (delta, w, $size, stride = Int::of(1), padding = Int::of(0)),
            text_signature = $sig
        )]
        fn $py<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let w = FloatArg::new(OP, "w", w, $nd, $ws)?;
            let $size = <$st>::parse(OP, stringify!($size), $size)?;
            let sizes = stride_padding(OP, stride, padding)?;
            dispatch!(common_dtype(OP, &[&delta, &w])?, $t(py, (&delta, &w), $size, sizes))
        }
    )*};
}

conv_backward_input! {
    conv1d_backward_input_t, conv1d_backward_input_py, "conv1d_backward_input",
    conv::conv1d_backward_input, Ix3, 3, input_len: usize,
    "(delta, w, input_len, stride=1, padding=0)", "(N, Lout, Cout)", "(K, Cin, Cout)";
    conv2d_backward_input_t, conv2d_backward_input_py, "conv2d_backward_input",
    conv::conv2d_backward_input, Ix4, 4, input_hw: (usize, usize),
    "(delta, w, input_hw, stride=1, padding=0)", "(N, H', W', Cout)", "(K, K, Cin, Cout)";
}

macro_rules! conv_backward_weight {
    ($($t:ident, $py:ident, $name:literal, $kernel:path, $ix:ty, $nd:literal, $xs:literal, $ds:literal,
       $ws:literal);* $(;)?) => {$(
        fn $t<T: Float + numpy::Element>(
            py: Python<'_>,
            (x, delta): (&FloatArg<'_>, &FloatArg<'_>),
            (grad_w, grad_b): (&FloatArg<'_>, Option<&FloatArg<'_>>),
            (stride, padding): (usize, usize),
        ) -> PyResult<()> {
            let mut gw = grad_w.readwrite::<T, $ix>($name)?;
            let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>($name)).transpose()?;
            let (x, d) = (x.readonly::<T, $ix>()?, delta.readonly::<T, $ix>()?);
            let (x, d) = (x.as_array(), d.as_array());
            let (gw, gb) = (gw.as_array_mut(), gb.as_mut().map(|b| b.as_array_mut()));
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
            let sizes = stride_padding(OP, stride, padding)?;
            let mut args = vec![&x, &delta, &grad_w];
            args.extend(grad_b.as_ref());
            let dtype = common_dtype(OP, &args)?;
            dispatch!(dtype, $t(py, (&x, &delta), (&grad_w, grad_b.as_ref()), sizes))
        }
    )*};
}

conv_backward_weight! {
    conv1d_backward_weight_t, conv1d_backward_weight_py, "conv1d_backward_weight",
    conv::conv1d_backward_weight, Ix3, 3, "(N, L, Cin)", "(N, Lout, Cout)", "(K, Cin, Cout)";
    conv2d_backward_weight_t, conv2d_backward_weight_py, "conv2d_backward_weight",
    conv::conv2d_backward_weight, Ix4, 4, "(N, H, W, Cin)", "(N, H', W', Cout)", "(K, K, Cin, Cout)";
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    super::conv::add_functions! { m,
        conv1d_py, conv1d_backward_input_py, conv1d_backward_weight_py, conv2d_py,
        conv2d_backward_input_py, conv2d_backward_weight_py
    }
}
