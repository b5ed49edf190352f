//! Bindings of `conv` and `convpool`: `conv1d`, `conv2d`, their backward
//! passes and `conv1d_maxpool`... (a convolution, then the max pooling of its
//! output), one macro row per dimension (1-D: 3-D arrays, 2-D: 4-D); also the
//! argument helpers the pooling, softmax and fused bindings share.

use ndarray::{Dimension, Ix1, IxDyn};
use numpy::{PyArray, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::pool::two;
use super::{array_arg, common_dtype, dispatch, one, optional, repr, FloatArg, Int, ShapeError};
use crate::conv;
use crate::convpool::{conv_maxpool, conv_maxpool_backward};

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

/// A convolution's `(stride, padding)`, or a pooling's `(k, stride)` (`pool`).
pub(super) fn pair(op: &'static str, (a, b): (Int, Int), pool: bool) -> PyResult<(usize, usize)> {
    let (names, min) = [(["stride", "padding"], 0), (["k", "stride"], 1)][usize::from(pool)];
    Ok((int(op, names[0], a, 1)?, int(op, names[1], b, min)?))
}

/// The size of the input a backward pass returns, `[L]` or `[H, W]`:
/// `input_len`, an int, for 3-D arrays; `input_hw`, a tuple or list of two
/// ints, for 4-D ones.
pub(super) fn input_size(
    op: &'static str,
    name: &str,
    obj: &Bound<'_, PyAny>,
    nd: usize,
) -> PyResult<Vec<usize>> {
    if nd == 3 {
        return Ok(vec![int(op, name, obj.extract::<Int>()?, 0)?]);
    }
    match obj.extract::<Vec<i64>>() {
        Ok(v) if v.len() == 2 && !obj.is_instance_of::<pyo3::types::PyString>() => {
            Ok(vec![size(op, name, v[0], 0)?, size(op, name, v[1], 0)?])
        }
        _ => Err(PyTypeError::new_err(format!(
            "{op}: {name} must be a tuple of two ints (H, W), got {}",
            repr(obj)
        ))),
    }
}

/// Checks that `obj` is an ndarray of the integers `E` with `ndim`
/// dimensions and borrows it: class indices (`i64`), max pooling's argmax (`i32`).
pub(super) fn int_arg<'py, E: numpy::Element, D: Dimension>(
    op: &'static str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    (ndim, expected): (usize, &str),
) -> PyResult<PyReadonlyArray<'py, E, D>> {
    let want = numpy::dtype::<E>(obj.py());
    let dims = (Some(ndim), expected);
    let ok = |d: &Bound<'py, _>| d.is_equiv_to(&want).then_some(());
    let (array, ()) = array_arg((op, name), obj, dims, &want, ok)?;
    let typed = array.cast::<PyArray<E, D>>()?;
    let err = |e| ShapeError::new_err(format!("{op}: cannot read {name}: {e}"));
    typed.try_readonly().map_err(err)
}

/// `(k, pool_stride)` of a convolution's max pooling.
fn pool_sizes(op: &'static str, k: Int, pool_stride: Int) -> PyResult<(usize, usize)> {
    Ok((int(op, "k", k, 1)?, int(op, "pool_stride", pool_stride, 1)?))
}

/// The forward pass of `op`: the convolution of `x` by `w` plus `b` (`nd`-D
/// arrays, of the shapes `(xs, ws)` named in errors), then, with `pool`, the
/// max pooling of its output as `(y, argmax)`.
fn forward<'py>(
    py: Python<'py>,
    (op, nd, xs, ws): (&'static str, usize, &str, &str),
    (x, w, b): (
        &Bound<'py, PyAny>,
        &Bound<'py, PyAny>,
        Option<&Bound<'py, PyAny>>,
    ),
    conv: (Int, Int),
    pool: Option<(Int, Int)>,
) -> PyResult<Bound<'py, PyAny>> {
    let x = FloatArg::new(op, "x", x, nd, xs)?;
    let w = FloatArg::new(op, "w", w, nd, ws)?;
    let b = optional(op, "b", b, "(Cout,)")?;
    let dtype = common_dtype(op, [&x, &w].into_iter().chain(&b))?;
    let conv = pair(op, conv, false)?;
    let pool = pool.map(|(k, s)| pool_sizes(op, k, s)).transpose()?;
    dispatch!(dtype, |T| {
        let (x, w) = (x.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
        let b = b.map(|b| b.readonly::<T, Ix1>()).transpose()?;
        let (x, w, b) = (x.as_array(), w.as_array(), b.as_ref().map(|b| b.as_array()));
        Ok(match pool {
            None => one(py.detach(|| conv::conv(x, w, b, conv.0, conv.1))?, py),
            Some(pool) => two(py.detach(|| conv_maxpool(x, w, b, conv, pool))?, py),
        })
    })
}

/// The Python functions of one dimension: the forward pass, the input
/// gradient, the weight gradient, then the convolution with max pooling and
/// its backward pass, named `$names`, their arrays `$nd`-D of the shapes `$xs`
/// (input), `$ws` (weight), `$ds` (δ) and `$ys` (the pooled output's δ).
macro_rules! conv_bindings {
    ($($fwd:ident, $bin:ident, $bw:ident, $cpf:ident, $cpb:ident,
       [$f:literal, $bi:literal, $bwn:literal, $cpn:literal, $cpbn:literal], $nd:literal,
       $size:ident, $sig:literal, $xs:literal, $ws:literal, $ds:literal, $ys:literal
    );* $(;)?) => {$(
        #[pyfunction(name = $f)]
        #[pyo3(
            signature = (x, w, b = None, stride = Int::of(1), padding = Int::of(0)),
            text_signature = "(x, w, b=None, stride=1, padding=0)"
        )]
        pub(super) fn $fwd<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            forward(py, ($f, $nd, $xs, $ws), (x, w, b), (stride, padding), None)
        }

        #[pyfunction(name = $bi)]
        #[pyo3(
            signature = (delta, w, $size, stride = Int::of(1), padding = Int::of(0)),
            text_signature = $sig
        )]
        pub(super) fn $bin<'py>(
            py: Python<'py>,
            delta: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            $size: &Bound<'py, PyAny>,
            stride: Int,
            padding: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let delta = FloatArg::new($bi, "delta", delta, $nd, $ds)?;
            let w = FloatArg::new($bi, "w", w, $nd, $ws)?;
            let size = input_size($bi, stringify!($size), $size, $nd)?;
            let (stride, padding) = pair($bi, (stride, padding), false)?;
            dispatch!(common_dtype($bi, [&delta, &w])?, |T| {
                let (d, w) = (delta.readonly::<T, IxDyn>()?, w.readonly::<T, IxDyn>()?);
                let (d, w) = (d.as_array(), w.as_array());
                let dx = py.detach(|| conv::conv_backward_input(d, w, &size, stride, padding))?;
                Ok(one(dx, py))
            })
        }

        #[pyfunction(name = $bwn)]
        #[pyo3(
            signature = (x, delta, grad_w, grad_b = None, stride = Int::of(1), padding = Int::of(0)),
            text_signature = "(x, delta, grad_w, grad_b=None, stride=1, padding=0)"
        )]
        pub(super) fn $bw(
            py: Python<'_>,
            x: &Bound<'_, PyAny>,
            delta: &Bound<'_, PyAny>,
            grad_w: &Bound<'_, PyAny>,
            grad_b: Option<&Bound<'_, PyAny>>,
            stride: Int,
            padding: Int,
        ) -> PyResult<()> {
            let x = FloatArg::new($bwn, "x", x, $nd, $xs)?;
            let delta = FloatArg::new($bwn, "delta", delta, $nd, $ds)?;
            let grad_w = FloatArg::new($bwn, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional($bwn, "grad_b", grad_b, "(Cout,)")?;
            let (stride, padding) = pair($bwn, (stride, padding), false)?;
            let args = [&x, &delta, &grad_w].into_iter().chain(&grad_b);
            dispatch!(common_dtype($bwn, args)?, |T| {
                let mut gw = grad_w.readwrite::<T, IxDyn>()?;
                let mut gb = grad_b.map(|b| b.readwrite::<T, Ix1>()).transpose()?;
                let (x, d) = (x.readonly::<T, IxDyn>()?, delta.readonly::<T, IxDyn>()?);
                let (x, d) = (x.as_array(), d.as_array());
                let (gw, gb) = (gw.as_array_mut(), gb.as_mut().map(|b| b.as_array_mut()));
                py.detach(|| conv::conv_backward_weight(x, d, gw, gb, stride, padding))?;
                Ok(())
            })
        }

        #[pyfunction(name = $cpn)]
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $cpf<'py>(
            py: Python<'py>,
            x: &Bound<'py, PyAny>,
            w: &Bound<'py, PyAny>,
            b: Option<&Bound<'py, PyAny>>,
            stride: Int,
            padding: Int,
            k: Int,
            pool_stride: Int,
        ) -> PyResult<Bound<'py, PyAny>> {
            let pool = Some((k, pool_stride));
            forward(py, ($cpn, $nd, $xs, $ws), (x, w, b), (stride, padding), pool)
        }

        #[pyfunction(name = $cpbn)]
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $cpb<'py>(
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
            let x = FloatArg::new($cpbn, "x", x, $nd, $xs)?;
            let w = FloatArg::new($cpbn, "w", w, $nd, $ws)?;
            let delta = FloatArg::new($cpbn, "delta", delta, $nd, $ys)?;
            let grad_w = FloatArg::new($cpbn, "grad_w", grad_w, $nd, $ws)?;
            let grad_b = optional($cpbn, "grad_b", grad_b, "(Cout,)")?;
            let conv = pair($cpbn, (stride, padding), false)?;
            let pool = pool_sizes($cpbn, k, pool_stride)?;
            let args = [&x, &w, &delta, &grad_w].into_iter().chain(&grad_b);
            dispatch!(common_dtype($cpbn, args)?, |T| {
                let a = int_arg::<i32, IxDyn>($cpbn, "argmax", argmax, ($nd, $ys))?;
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

conv_bindings! {
    conv1d_py, conv1d_backward_input_py, conv1d_backward_weight_py, conv1d_maxpool_py,
    conv1d_maxpool_backward_py,
    ["conv1d", "conv1d_backward_input", "conv1d_backward_weight", "conv1d_maxpool",
     "conv1d_maxpool_backward"], 3, input_len, "(delta, w, input_len, stride=1, padding=0)",
    "(N, L, Cin)", "(K, Cin, Cout)", "(N, Lout, Cout)", "(N, L', Cout)";
    conv2d_py, conv2d_backward_input_py, conv2d_backward_weight_py, conv2d_maxpool_py,
    conv2d_maxpool_backward_py,
    ["conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_maxpool",
     "conv2d_maxpool_backward"], 4, input_hw, "(delta, w, input_hw, stride=1, padding=0)",
    "(N, H, W, Cin)", "(K, K, Cin, Cout)", "(N, H', W', Cout)", "(N, H', W', Cout)";
}
