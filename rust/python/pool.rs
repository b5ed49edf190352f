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

/// Max pooling (`$out` = `two`: `(y, argmax)`) or average pooling (`one`)
/// of `x`, `$nd`-D of shape `$xs`, by the kernel `$kernel`.
macro_rules! pool_forward {
    ($($f:ident, $name:literal, $kernel:path, $out:ident, $nd:literal, $xs:literal;)*) => {$(
        #[pyfunction(name = $name)]
        pub(super) fn $f<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            k: Int,
            stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = FloatArg::new($name, "x", x, $nd, $xs)?;
            let (k, stride) = pair($name, (k, stride), true)?;
            dispatch!(x.dtype, |T| {
                let x = x.readonly::<T, IxDyn>()?;
                let x = x.as_array();
                Ok($out(py.detach(|| $kernel(x, k, stride))?, py))
            })
        }
    )*};
}

pool_forward! {
    max_pool1d_py, "max_pool1d", pool::max_pool, two, 3, "(N, L, C)";
    max_pool2d_py, "max_pool2d", pool::max_pool, two, 4, "(N, H, W, C)";
    avg_pool1d_py, "avg_pool1d", pool::avg_pool, one, 3, "(N, L, C)";
    avg_pool2d_py, "avg_pool2d", pool::avg_pool, one, 4, "(N, H, W, C)";
}

/// The backward passes of max and average pooling in one dimension, named
/// `$names`: from δ (`$nd`-D, shape `$ds`) and the input's size `$size`.
macro_rules! pool_backward {
    ($($max_bw:ident, $avg_bw:ident, [$mbn:literal, $abn:literal], $nd:literal, $size:ident,
       $ds:literal);* $(;)?) => {$(
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
            let win = match (k, stride) {
                (None, None) => None,
                (Some(k), Some(stride)) => Some(pair($mbn, (k, stride), true)?),
                _ => Err(PyValueError::new_err(concat!(
                    $mbn, ": give k and stride together (the forward's window), or neither"
                )))?,
            };
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

pool_backward! {
    max_pool1d_backward_py, avg_pool1d_backward_py, ["max_pool1d_backward", "avg_pool1d_backward"],
    3, input_len, "(N, Lout, C)";
    max_pool2d_backward_py, avg_pool2d_backward_py, ["max_pool2d_backward", "avg_pool2d_backward"],
    4, input_hw, "(N, H', W', C)";
}
