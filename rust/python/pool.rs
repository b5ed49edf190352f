//! Bindings of `pool`: max and average pooling, 1-D and 2-D, with their
//! backward passes; a macro row per dimension, as in `conv.rs`.

use ndarray::{Array, Dimension, IxDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::conv::{input_size, int_arg, pair};
use super::{dispatch, one, FloatArg, Int};
use crate::pool;

/// `(y, argmax)` handed to Python as a tuple.
pub(super) fn two<'py, T: numpy::Element, D: Dimension>(
    (y, a): (Array<T, D>, Array<i32, D>),
    py: Python<'py>,
) -> Bound<'py, PyAny> {
    let pair = PyTuple::new(py, [one(y, py), one(a, py)]);
    pair.expect("a tuple of two").into_any()
}

/// Max pooling (`(y, argmax)`) or average pooling of a checked `x`.
fn forward<'py>(
    py: Python<'py>,
    x: &FloatArg<'py>,
    (k, stride): (usize, usize),
    max: bool,
) -> PyResult<Bound<'py, PyAny>> {
    dispatch!(x.dtype, |T| {
        let x = x.readonly::<T, IxDyn>()?;
        let x = x.as_array();
        Ok(match max {
            true => two(py.detach(|| pool::max_pool(x, k, stride))?, py),
            false => one(py.detach(|| pool::avg_pool(x, k, stride))?, py),
        })
    })
}

/// The optional `(k, stride)` of a max-pooling backward: both or neither.
fn window(
    op: &'static str,
    k: Option<Int>,
    stride: Option<Int>,
) -> PyResult<Option<(usize, usize)>> {
    match (k, stride) {
        (None, None) => Ok(None),
        (Some(k), Some(stride)) => Ok(Some(pair(op, (k, stride), true)?)),
        _ => Err(PyValueError::new_err(format!(
            "{op}: give k and stride together (the forward's window), or neither"
        ))),
    }
}

/// The four functions of one dimension, named `$names`: max and average
/// pooling of `x` (`$nd`-D, shape `$xs`) and their backward passes, from δ
/// (shape `$ds`) and the input's size `$size`.
macro_rules! pool_bindings {
    ($($max:ident, $max_bw:ident, $avg:ident, $avg_bw:ident,
       [$mn:literal, $mbn:literal, $an:literal, $abn:literal], $nd:literal, $size:ident,
       $xs:literal, $ds:literal);* $(;)?) => {$(
        #[pyfunction(name = $mn)]
        pub(super) fn $max<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = FloatArg::new($mn, "x", x, $nd, $xs)?;
            forward(py, &x, pair($mn, (k, stride), true)?, true)
        }

        #[pyfunction(name = $an)]
        pub(super) fn $avg<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = FloatArg::new($an, "x", x, $nd, $xs)?;
            forward(py, &x, pair($an, (k, stride), true)?, false)
        }

        #[pyfunction(name = $mbn)]
        #[pyo3(signature = (delta, argmax, $size, k=None, stride=None))]
        pub(super) fn $max_bw<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            argmax: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            k: Option<Int>,
            stride: Option<Int>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let delta = FloatArg::new($mbn, "delta", delta, $nd, $ds)?;
            let size = input_size($mbn, stringify!($size), $size, $nd)?;
            let win = window($mbn, k, stride)?;
            dispatch!(delta.dtype, |T| {
                let a = int_arg::<i32, IxDyn>($mbn, "argmax", argmax, ($nd, $ds))?;
                let d = delta.readonly::<T, IxDyn>()?;
                let (d, a) = (d.as_array(), a.as_array());
                Ok(one(py.detach(|| pool::max_pool_backward(d, a, &size, win))?, py))
            })
        }

        #[pyfunction(name = $abn)]
        pub(super) fn $avg_bw<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let delta = FloatArg::new($abn, "delta", delta, $nd, $ds)?;
            let size = input_size($abn, stringify!($size), $size, $nd)?;
            let (k, stride) = pair($abn, (k, stride), true)?;
            dispatch!(delta.dtype, |T| {
                let d = delta.readonly::<T, IxDyn>()?;
                let d = d.as_array();
                Ok(one(py.detach(|| pool::avg_pool_backward(d, &size, k, stride))?, py))
            })
        }
    )*};
}

pool_bindings! {
    max_pool1d_py, max_pool1d_backward_py, avg_pool1d_py, avg_pool1d_backward_py,
    ["max_pool1d", "max_pool1d_backward", "avg_pool1d", "avg_pool1d_backward"], 3, input_len,
    "(N, L, C)", "(N, Lout, C)";
    max_pool2d_py, max_pool2d_backward_py, avg_pool2d_py, avg_pool2d_backward_py,
    ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"], 4, input_hw,
    "(N, H, W, C)", "(N, H', W', C)";
}
