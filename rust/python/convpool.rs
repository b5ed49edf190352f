//! Bindings of `convpool.rs`: a convolution and the max pooling of its
//! output, forward and backward, in 1-D and 2-D.

use ndarray::{Ix1, Ix3, Ix4};
use numpy::IntoPyArray;
use pyo3::prelude::*;

use super::conv::{int, int64_arg, optional};
use super::{common_dtype, dispatch, FloatArg, Int};
use crate::convpool;
use crate::float::Float;

/// `(stride, padding)` of the convolution and `(k, pool_stride)` of the pooling.
fn sizes(
    op: &'static str,
    stride: Int,
    padding: Int,
    k: Int,
    pool_stride: Int,
) -> PyResult<((usize, usize), (usize, usize))> {
    Ok((
        (
            int(op, "stride", stride, 1)?,
            int(op, "padding", padding, 0)?,
        ),
        (int(op, "k", k, 1)?, int(op, "pool_stride", pool_stride, 1)?),
    ))
}

macro_rules! conv_pool {
    ($fwd_t:ident, $fwd_py:ident, $bwd_t:ident, $bwd_py:ident, $name:literal, $bname:literal,
     $fwd:path, $bwd:path, $ix:ty, $nd:literal, $xs:literal, $ws:literal, $ys:literal) => {
        fn $fwd_t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            w: &FloatArg<'py>,
            b: Option<&FloatArg<'py>>,
            conv: (usize, usize),
            pool: (usize, usize),
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
            let (x, w) = (x.as_array(), w.as_array());
            let b = b.as_ref().map(|b| b.as_array());
            let (y, a) = py.detach(|| $fwd(x, w, b, conv, pool))?;
            Ok((y.into_pyarray(py).into_any(), a.into_pyarray(py).into_any()))
        }

        #[pyfunction(name = $name)]
        #[pyo3(signature = (x, w, b, stride, padding, k, pool_stride))]
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
        ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
            const OP: &str = $name;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let w = FloatArg::new(OP, "w", w, $nd, $ws)?;
            let b = optional(OP, "b", b)?;
            let (conv, pool) = sizes(OP, stride, padding, k, pool_stride)?;
            let mut args = vec![&x, &w];
            args.extend(b.as_ref());
            dispatch!(
                common_dtype(OP, &args)?,
                $fwd_t(py, &x, &w, b.as_ref(), conv, pool)
            )
        }

        #[allow(clippy::too_many_arguments)]
        fn $bwd_t<'py, T: Float + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
            w: &FloatArg<'py>,
            delta: &FloatArg<'py>,
            argmax: &Bound<'py, PyAny>,
            grad_w: &FloatArg<'py>,
            grad_b: Option<&FloatArg<'py>>,
            conv: (usize, usize),
            pool: (usize, usize),
            input_delta: bool,
        ) -> PyResult<Option<Bound<'py, PyAny>>> {
            const OP: &str = $bname;
            let a = int64_arg::<$ix>(OP, "argmax", argmax, $ys)?;
            let mut gw = grad_w.readwrite::<T, $ix>(OP)?;
            let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>(OP)).transpose()?;
            let (x, w) = (x.readonly::<T, $ix>()?, w.readonly::<T, $ix>()?);
            let d = delta.readonly::<T, $ix>()?;
            let (x, w, d, a) = (x.as_array(), w.as_array(), d.as_array(), a.as_array());
            let gw = gw.as_array_mut();
            let gb = gb.as_mut().map(|b| b.as_array_mut());
            let dx = py.detach(|| $bwd(x, w, d, a, gw, gb, conv, pool, input_delta))?;
            Ok(dx.map(|dx| dx.into_pyarray(py).into_any()))
        }

        #[pyfunction(name = $bname)]
        #[pyo3(signature = (
            x, w, delta, argmax, grad_w, grad_b, stride, padding, k, pool_stride, input_delta
        ))]
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
            let (conv, pool) = sizes(OP, stride, padding, k, pool_stride)?;
            let mut args = vec![&x, &w, &delta, &grad_w];
            args.extend(grad_b.as_ref());
            dispatch!(
                common_dtype(OP, &args)?,
                $bwd_t(py, &x, &w, &delta, argmax, &grad_w, grad_b.as_ref(), conv, pool, input_delta)
            )
        }
    };
}

conv_pool!(
    conv1d_maxpool_t,
    conv1d_maxpool_py,
    conv1d_maxpool_backward_t,
    conv1d_maxpool_backward_py,
    "conv1d_maxpool",
    "conv1d_maxpool_backward",
    convpool::conv1d_maxpool,
    convpool::conv1d_maxpool_backward,
    Ix3,
    3,
    "(N, L, Cin)",
    "(K, Cin, Cout)",
    "(N, L', Cout)"
);
conv_pool!(
    conv2d_maxpool_t,
    conv2d_maxpool_py,
    conv2d_maxpool_backward_t,
    conv2d_maxpool_backward_py,
    "conv2d_maxpool",
    "conv2d_maxpool_backward",
    convpool::conv2d_maxpool,
    convpool::conv2d_maxpool_backward,
    Ix4,
    4,
    "(N, H, W, Cin)",
    "(K, K, Cin, Cout)",
    "(N, H', W', Cout)"
);

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv1d_maxpool_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv1d_maxpool_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_maxpool_py, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_maxpool_backward_py, m)?)?;
    Ok(())
}
