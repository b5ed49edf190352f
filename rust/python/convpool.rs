//! Bindings of `convpool.rs`: a convolution and the max pooling of its
//! output, forward and backward, in 1-D and 2-D (a macro row each).

use ndarray::{Ix1, IxDyn};
use pyo3::prelude::*;

use super::conv::{conv_inputs, int, int_arg, pair};
use super::pool::two;
use super::{common_dtype, dispatch, one, optional, FloatArg, Int};
use crate::convpool::{conv_maxpool, conv_maxpool_backward};

/// `(stride, padding)` of the convolution and `(k, pool_stride)` of the pooling.
type Sizes = ((usize, usize), (usize, usize));

fn sizes(op: &'static str, conv: (Int, Int), (k, pool_stride): (Int, Int)) -> PyResult<Sizes> {
    let pool = (int(op, "k", k, 1)?, int(op, "pool_stride", pool_stride, 1)?);
    Ok((pair(op, conv, false)?, pool))
}

macro_rules! conv_pool {
    ($($fwd:ident, $bwd:ident, $name:literal, $bname:literal,
       $nd:literal, $xs:literal, $ws:literal, $ys:literal);* $(;)?) => {$(
        #[pyfunction(name = $name)]
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $fwd<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
            k: Int,
            pool_stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let (x, w, b, dtype) = conv_inputs($name, (x, w, b), $nd, ($xs, $ws))?;
            let (conv, pool) = sizes($name, (stride, padding), (k, pool_stride))?;
            dispatch!(dtype, |T| {
                let (x, w) = (x.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
                let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
                let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
                Ok(two(py.detach(|| conv_maxpool(x, w, b, conv, pool))?, py))
            })
        }

        #[pyfunction(name = $bname)]
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $bwd<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            delta: &Bound<'py, PyAny>,
            argmax: &Bound<'py, PyAny>,
            grad_w: &Bound<'py, PyAny>,
            grad_b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
            k: Int,
            pool_stride: Int,
            input_delta: bool,
        ) -> PyResult<Option<Bound<'py, PyAny>>> {
            let x = FloatArg::new($bname, "x", x, $nd, $xs)?;
            let w = FloatArg::new($bname, "w", w, $nd, $ws)?;
            let delta = FloatArg::new($bname, "delta", delta, $nd, $ys)?;
            let grad_w = FloatArg::new($bname, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional($bname, "grad_b", grad_b, "(Cout,)")?;
            let (conv, pool) = sizes($bname, (stride, padding), (k, pool_stride))?;
            let args = [&x, &w, &delta, &grad_w].into_iter().chain(&grad_b);
            dispatch!(common_dtype($bname, args)?, |T| {
                let a = int_arg::<i32, IxDyn>($bname, "argmax", argmax, ($nd, $ys))?;
                let mut gw = grad_w.readwrite::<T, IxDyn>()?;
                let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>()).transpose()?;
                let (x, w) = (x.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
                let d = delta.readonly::<T, IxDyn>()?;
                let (xw, da) = ((x.as_array(), w.as_array()), (d.as_array(), a.as_array()));
                let grads = (gw.as_array_mut(), gb.as_mut().map(|b| b.as_array_mut()));
                let dx =
                    py.detach(|| conv_maxpool_backward(xw, da, grads, conv, pool, input_delta))?;
                Ok(dx.map(|dx| one(dx, py)))
            })
        }
    )*};
}

conv_pool! {
    conv1d_maxpool_py, conv1d_maxpool_backward_py, "conv1d_maxpool", "conv1d_maxpool_backward",
    3, "(N, L, Cin)", "(K, Cin, Cout)", "(N, L', Cout)";
    conv2d_maxpool_py, conv2d_maxpool_backward_py, "conv2d_maxpool", "conv2d_maxpool_backward",
    4, "(N, H, W, Cin)", "(K, K, Cin, Cout)", "(N, H', W', Cout)";
}
