//! Bindings of `pool.rs`: max and average pooling, 1-D and 2-D, with their
//! backward passes; a macro row per op and dimension, as in `conv.rs`.

use ndarray::{Array, Dimension, Ix3, Ix4};
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::conv::{int, int32_arg, InputSize};
use super::{dispatch, FloatArg, Int};
use crate::float::Float;
use crate::pool;

/// An array handed to Python.
pub(super) fn one<'py, T: numpy::Element, D: Dimension>(
    a: Array<T, D>,
    py: Python<'py>,
) -> Bound<'py, PyAny> {
    a.into_pyarray(py).into_any()
}

/// `(y, argmax)` handed to Python as a tuple.
pub(super) fn two<'py, T: numpy::Element, D: Dimension>(
    (y, a): (Array<T, D>, Array<i32, D>),
    py: Python<'py>,
) -> Bound<'py, PyAny> {
    let pair = PyTuple::new(py, [one(y, py), one(a, py)]);
    pair.expect("a tuple of two").into_any()
}

macro_rules! pool_forward {
    ($($t:ident, $py:ident, $name:literal, $kernel:path, $out:ident, $ix:ty, $nd:literal, $xs:literal);* $(;)?) => {$(
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            (k, stride): (usize, usize),
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = x.readonly::<T, $ix>()?;
            let x = x.as_array();
            Ok($out(py.detach(|| $kernel(x, k, stride))?, py))
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
            let win = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
            dispatch!(x.dtype, $t(py, &x, win))
        }
    )*};
}

pool_forward! {
    max_pool1d_t, max_pool1d_py, "max_pool1d", pool::max_pool, two, Ix3, 3, "(N, L, C)";
    max_pool2d_t, max_pool2d_py, "max_pool2d", pool::max_pool, two, Ix4, 4, "(N, H, W, C)";
    avg_pool1d_t, avg_pool1d_py, "avg_pool1d", pool::avg_pool, one, Ix3, 3, "(N, L, C)";
    avg_pool2d_t, avg_pool2d_py, "avg_pool2d", pool::avg_pool, one, Ix4, 4, "(N, H, W, C)";
}

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

macro_rules! max_backward {
    ($($t:ident, $py:ident, $name:literal, $ix:ty, $nd:literal, $size:ident: $st:ty,
       $ds:literal);* $(;)?) => {$(
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            (delta, argmax): (&FloatArg<'py>, &Bound<'py, PyAny>),
            $size: $st,
            win: Option<(usize, usize)>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let a = int32_arg::<$ix>($name, "argmax", argmax, $ds)?;
            let d = delta.readonly::<T, $ix>()?;
            let (d, a) = (d.as_array(), a.as_array());
            Ok(one(py.detach(|| pool::max_pool_backward(d, a, &$size.dims(), win))?, py))
        }

        #[pyfunction(name = $name)]
        #[pyo3(signature = (delta, argmax, $size, k=None, stride=None))]
        fn $py<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            argmax: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            k: Option<Int>,
            stride: Option<Int>,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let $size = <$st>::parse(OP, stringify!($size), $size)?;
            let win = window(OP, k, stride)?;
            dispatch!(delta.dtype, $t(py, (&delta, argmax), $size, win))
        }
    )*};
}

max_backward! {
    max_pool1d_backward_t, max_pool1d_backward_py, "max_pool1d_backward", Ix3, 3,
    input_len: usize, "(N, Lout, C)";
    max_pool2d_backward_t, max_pool2d_backward_py, "max_pool2d_backward", Ix4, 4,
    input_hw: (usize, usize), "(N, H', W', C)";
}

macro_rules! avg_backward {
    ($($t:ident, $py:ident, $name:literal, $ix:ty, $nd:literal, $size:ident: $st:ty,
       $ds:literal);* $(;)?) => {$(
        fn $t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            delta: &FloatArg<'py>,
            $size: $st,
            (k, stride): (usize, usize),
        ) -> PyResult<Bound<'py, PyAny>> {
            let d = delta.readonly::<T, $ix>()?;
            let d = d.as_array();
            Ok(one(py.detach(|| pool::avg_pool_backward(d, &$size.dims(), k, stride))?, py))
        }

        #[pyfunction(name = $name)]
        fn $py<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let $size = <$st>::parse(OP, stringify!($size), $size)?;
            let win = (int(OP, "k", k, 1)?, int(OP, "stride", stride, 1)?);
            dispatch!(delta.dtype, $t(py, &delta, $size, win))
        }
    )*};
}

avg_backward! {
    avg_pool1d_backward_t, avg_pool1d_backward_py, "avg_pool1d_backward", Ix3, 3,
    input_len: usize, "(N, Lout, C)";
    avg_pool2d_backward_t, avg_pool2d_backward_py, "avg_pool2d_backward", Ix4, 4,
    input_hw: (usize, usize), "(N, H', W', C)";
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    super::conv::add_functions! { m,
        max_pool1d_py, max_pool1d_backward_py, avg_pool1d_py, avg_pool1d_backward_py,
        max_pool2d_py, max_pool2d_backward_py, avg_pool2d_py, avg_pool2d_backward_py
    }
}
