//! Bindings of `convpool.rs`: a convolution and the max pooling of its
//! output, forward and backward, in 1-D and 2-D (a macro row each).

use ndarray::{Ix1, Ix3, Ix4};
use pyo3::prelude::*;

use super::conv::{conv_inputs, int, int32_arg, optional, stride_padding};
use super::pool::{one, two};
use super::{common_dtype, dispatch, FloatArg, Int};
use crate::convpool::{conv_maxpool, conv_maxpool_backward};
use crate::float::Float;

/// `(stride, padding)` of the convolution and `(k, pool_stride)` of the pooling.
type Sizes = ((usize, usize), (usize, usize));

fn sizes(op: &'static str, conv: (Int, Int), (k, pool_stride): (Int, Int)) -> PyResult<Sizes> {
    let pool = (int(op, "k", k, 1)?, int(op, "pool_stride", pool_stride, 1)?);
    Ok((stride_padding(op, conv.0, conv.1)?, pool))
}

macro_rules! conv_pool {
    ($($fwd_t:ident, $fwd_py:ident, $bwd_t:ident, $bwd_py:ident, $name:literal, $bname:literal,
       $ix:ty, $nd:literal, $xs:literal, $ws:literal, $ys:literal);* $(;)?) => {$(
        fn $fwd_t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            (x, w, b): (&FloatArg<'py>, &FloatArg<'py>, Option<&FloatArg<'py>>),
            (conv, pool): Sizes,
        ) -> PyResult<Bound<'py, PyAny>> {
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
            let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
            Ok(two(py.detach(|| conv_maxpool(x, w, b, conv, pool))?, py))
        }

        #[pyfunction(name = $name)]
        #[allow(clippy::too_many_arguments)]
        fn $fwd_py<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
            k: Int,
            pool_stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let (x, w, b, dtype) = conv_inputs(OP, (x, w, b), $nd, ($xs, $ws))?;
            let sizes = sizes(OP, (stride, padding), (k, pool_stride))?;
            dispatch!(dtype, $fwd_t(py, (&x, &w, b.as_ref()), sizes))
        }

        fn $bwd_t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            (x, w, delta, argmax): (&FloatArg<'py>, &FloatArg<'py>, &FloatArg<'py>, &Bound<'py, PyAny>),
            (grad_w, grad_b): (&FloatArg<'py>, Option<&FloatArg<'py>>),
            (conv, pool): Sizes,
            input_delta: bool,
        ) -> PyResult<Option<Bound<'py, PyAny>>> {
            let a = int32_arg::<$ix>($bname, "argmax", argmax, $ys)?;
            let mut gw = grad_w.readwrite::<T, $ix>($bname)?;
            let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>($bname)).transpose()?;
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let d = delta.readonly::<T, $ix>()?;
            let (xw, da) = ((x.as_array(), w.as_array()), (d.as_array(), a.as_array()));
            let grads = (gw.as_array_mut(), gb.as_mut().map(|b| b.as_array_mut()));
            let dx = py.detach(|| conv_maxpool_backward(xw, da, grads, conv, pool, input_delta))?;
            Ok(dx.map(|dx| one(dx, py)))
        }

        #[pyfunction(name = $bname)]
        #[allow(clippy::too_many_arguments)]
        fn $bwd_py<'py>(
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
            const OP: &str = $bname;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let w = FloatArg::new(OP, "w", w, $nd, $ws)?;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ys)?;
            let grad_w = FloatArg::new(OP, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional(OP, "grad_b", grad_b)?;
            let sizes = sizes(OP, (stride, padding), (k, pool_stride))?;
            let args: Vec<_> = [&x, &w, &delta, &grad_w].into_iter().chain(grad_b.as_ref()).collect();
            let (dtype, grads) = (common_dtype(OP, &args)?, (&grad_w, grad_b.as_ref()));
            dispatch!(dtype, $bwd_t(py, (&x, &w, &delta, argmax), grads, sizes, input_delta))
        }
    )*};
}

conv_pool! {
    conv1d_maxpool_t, conv1d_maxpool_py, conv1d_maxpool_backward_t, conv1d_maxpool_backward_py,
    "conv1d_maxpool", "conv1d_maxpool_backward", Ix3, 3, "(N, L, Cin)", "(K, Cin, Cout)",
    "(N, L', Cout)";
    conv2d_maxpool_t, conv2d_maxpool_py, conv2d_maxpool_backward_t, conv2d_maxpool_backward_py,
    "conv2d_maxpool", "conv2d_maxpool_backward", Ix4, 4, "(N, H, W, Cin)", "(K, K, Cin, Cout)",
    "(N, H', W', Cout)";
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    super::conv::add_functions! { m,
        conv1d_maxpool_py, conv1d_maxpool_backward_py, conv2d_maxpool_py,
        conv2d_maxpool_backward_py
    }
}
