//! Bindings of `conv`: `conv1d`, `conv2d` and their backward passes; also
//! the argument helpers the pooling, convpool, softmax and fused bindings
//! share.
//!
//! One function per pass calls the kernel, which takes 1-D (3-D arrays) and
//! 2-D (4-D) alike; a macro row per dimension names the Python functions,
//! their arguments and the shapes in their error messages.

use ndarray::{Dimension, Ix1, IxDyn};
use numpy::{
    PyArray, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::pool::one;
use super::{common_dtype, dispatch, DType, FloatArg, Int, ShapeError};
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
    /// The sizes as `[L]` or `[H, W]`.
    fn dims(self) -> Vec<usize>;
}

impl InputSize for usize {
    fn parse(op: &'static str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        int(op, name, obj.extract::<Int>()?, 0)
    }

    fn dims(self) -> Vec<usize> {
        vec![self]
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

    fn dims(self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

/// Checks that `obj` is an ndarray of the integers `E` with `D`'s dimensions
/// and borrows it.
fn int_arg<'py, E: numpy::Element, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> PyResult<PyReadonlyArray<'py, E, D>> {
    let want = numpy::dtype::<E>(obj.py());
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "{op}: {name} must be a numpy.ndarray of {want}, got {ty}"
        ))
    })?;
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&want) {
        let msg = format!("{op}: {name} must have dtype {want}, got {dtype}");
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

/// [`int_arg`] for one integer type, as `int64_arg::<D>(op, name, obj, expected)`.
macro_rules! int_args {
    ($($(#[$doc:meta])* $f:ident: $e:ty;)*) => {$(
        $(#[$doc])*
        pub(super) fn $f<'py, D: Dimension>(
            op: &'static str,
            name: &str,
            obj: &Bound<'py, PyAny>,
            expected: &str,
        ) -> PyResult<PyReadonlyArray<'py, $e, D>> {
            int_arg(op, name, obj, expected)
        }
    )*};
}

int_args! {
    /// `int64` arrays: class indices.
    int64_arg: i64;
    /// `int32` arrays: max pooling's argmax positions.
    int32_arg: i32;
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

/// A convolution's checked `x`, `w`, optional `b` and their common dtype.
type ConvInputs<'py> = (FloatArg<'py>, FloatArg<'py>, Option<FloatArg<'py>>, DType);

/// The `x` and `w` (`nd`-D, of the shapes `(xs, ws)` named in errors) and
/// the optional `b` of a convolution's forward pass, checked in this order.
pub(super) fn conv_inputs<'py>(
    op: &'static str,
    (x, w, b): (
        &Bound<'py, PyAny>,
        &Bound<'py, PyAny>,
        Option<&Bound<'py, PyAny>>,
    ),
    nd: usize,
    (xs, ws): (&str, &str),
) -> PyResult<ConvInputs<'py>> {
    let x = FloatArg::new(op, "x", x, nd, xs)?;
    let w = FloatArg::new(op, "w", w, nd, ws)?;
    let b = optional(op, "b", b)?;
    let args: Vec<_> = [&x, &w].into_iter().chain(b.as_ref()).collect();
    let dtype = common_dtype(op, &args)?;
    Ok((x, w, b, dtype))
}

/// [`conv::conv`] on checked arguments, 1-D and 2-D alike.
fn forward_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    (x, w, b): (&FloatArg<'py>, &FloatArg<'py>, Option<&FloatArg<'py>>),
    (stride, padding): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let (x, w) = (x.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
    let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
    let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
    Ok(one(py.detach(|| conv::conv(x, w, b, stride, padding))?, py))
}

/// [`conv::conv_backward_input`] on checked arguments.
fn backward_input_t<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    (delta, w): (&FloatArg<'py>, &FloatArg<'py>),
    size: &[usize],
    (stride, padding): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let (d, w) = (delta.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
    let (d, w) = (d.as_array(), w.as_array());
    let dx = py.detach(|| conv::conv_backward_input(d, w, size, stride, padding))?;
    Ok(one(dx, py))
}

/// [`conv::conv_backward_weight`] on checked arguments.
fn backward_weight_t<T: Float + numpy::Element>(
    py: Python<'_>,
    (x, delta): (&FloatArg<'_>, &FloatArg<'_>),
    (grad_w, grad_b): (&FloatArg<'_>, Option<&FloatArg<'_>>),
    (stride, padding): (usize, usize),
) -> PyResult<()> {
    let mut gw = grad_w.readwrite::<T, IxDyn>(grad_w.op)?;
    let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>(b.op)).transpose()?;
    let (x, d) = (x.readonly::<T, IxDyn>()?, delta.readonly::<T, IxDyn>()?);
    let (x, d) = (x.as_array(), d.as_array());
    let (gw, gb) = (gw.as_array_mut(), gb.as_mut().map(|b| b.as_array_mut()));
    py.detach(|| conv::conv_backward_weight(x, d, gw, gb, stride, padding))?;
    Ok(())
}

/// The Python functions of one dimension: the forward pass, the input
/// gradient and the weight gradient, named `$names`, their arrays `$nd`-D of
/// the shapes `$xs` (input), `$ws` (weight) and `$ds` (δ).
macro_rules! conv_bindings {
    ($($fwd:ident, $bin:ident, $bw:ident, [$f:literal, $bi:literal, $bwn:literal], $nd:literal, $size:ident: $st:ty,
       $sig:literal, $xs:literal, $ws:literal, $ds:literal);* $(;)?) => {$(
        #[pyfunction(name = $f)]
        #[pyo3(
            signature = (x, w, b = None, stride = Int::of(1), padding = Int::of(0)),
            text_signature = "(x, w, b=None, stride=1, padding=0)"
        )]
        fn $fwd<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $f;
            let (x, w, b, dtype) = conv_inputs(OP, (x, w, b), $nd, ($xs, $ws))?;
            let sizes = stride_padding(OP, stride, padding)?;
            dispatch!(dtype, forward_t(py, (&x, &w, b.as_ref()), sizes))
        }

        #[pyfunction(name = $bi)]
        #[pyo3(
            signature = (delta, w, $size, stride = Int::of(1), padding = Int::of(0)),
            text_signature = $sig
        )]
        fn $bin<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $bi;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let w = FloatArg::new(OP, "w", w, $nd, $ws)?;
            let size = <$st>::parse(OP, stringify!($size), $size)?.dims();
            let sizes = stride_padding(OP, stride, padding)?;
            let dtype = common_dtype(OP, &[&delta, &w])?;
            dispatch!(dtype, backward_input_t(py, (&delta, &w), &size, sizes))
        }

        #[pyfunction(name = $bwn)]
        #[pyo3(
            signature = (x, delta, grad_w, grad_b = None, stride = Int::of(1), padding = Int::of(0)),
            text_signature = "(x, delta, grad_w, grad_b=None, stride=1, padding=0)"
        )]
        fn $bw(
            py: Python<'_>,
            x: &Bound<'_, PyAny>,
            delta: &Bound<'_, PyAny>,
            grad_w: &Bound<'_, PyAny>,
            grad_b: Option<&Bound<'_, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<()> {
            const OP: &str = $bwn;
            let x = FloatArg::new(OP, "x", x, $nd, $xs)?;
            let delta = FloatArg::new(OP, "delta", delta, $nd, $ds)?;
            let grad_w = FloatArg::new(OP, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional(OP, "grad_b", grad_b)?;
            let sizes = stride_padding(OP, stride, padding)?;
            let mut args = vec![&x, &delta, &grad_w];
            args.extend(grad_b.as_ref());
            let dtype = common_dtype(OP, &args)?;
            dispatch!(dtype, backward_weight_t(py, (&x, &delta), (&grad_w, grad_b.as_ref()), sizes))
        }
    )*};
}

conv_bindings! {
    conv1d_py, conv1d_backward_input_py, conv1d_backward_weight_py,
    ["conv1d", "conv1d_backward_input", "conv1d_backward_weight"], 3, input_len: usize,
    "(delta, w, input_len, stride=1, padding=0)", "(N, L, Cin)", "(K, Cin, Cout)", "(N, Lout, Cout)";
    conv2d_py, conv2d_backward_input_py, conv2d_backward_weight_py,
    ["conv2d", "conv2d_backward_input", "conv2d_backward_weight"], 4, input_hw: (usize, usize),
    "(delta, w, input_hw, stride=1, padding=0)", "(N, H, W, Cin)", "(K, K, Cin, Cout)",
    "(N, H', W', Cout)";
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    super::conv::add_functions! { m,
        conv1d_py, conv1d_backward_input_py, conv1d_backward_weight_py, conv2d_py,
        conv2d_backward_input_py, conv2d_backward_weight_py
    }
}
