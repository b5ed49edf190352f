//! Bindings of `softmax.rs`: softmax, log-softmax and cross-entropy on logits.

use ndarray::{Ix1, Ix2};
use numpy::{IntoPyArray, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::conv::int64_arg;
use super::{common_dtype, dispatch, FloatArg};
use crate::loss::{self, Target};
use crate::softmax::{self, Exp};

macro_rules! rowwise {
    ($t:ident, $py:ident, $name:literal, $kernel:path) => {
        fn $t<'py, T: Exp + numpy::Element>(
            py: Python<'py>,
            x: &FloatArg<'py>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let x = x.readonly::<T, Ix2>()?;
            let x = x.as_array();
            let y = py.detach(|| $kernel(x))?;
            Ok(y.into_pyarray(py).into_any())
        }

        #[pyfunction(name = $name)]
        fn $py<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
            let x = FloatArg::new($name, "x", x, 2, "(N, k)")?;
            dispatch!(x.dtype, $t(py, &x))
        }
    };
}

rowwise!(softmax_t, softmax_py, "softmax", softmax::softmax);
rowwise!(
    log_softmax_t,
    log_softmax_py,
    "log_softmax",
    softmax::log_softmax
);

macro_rules! rowwise_backward {
    ($t:ident, $py:ident, $name:literal, $kernel:path) => {
        fn $t<'py, T: Exp + numpy::Element>(
            py: Python<'py>,
            y: &FloatArg<'py>,
            delta: &FloatArg<'py>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let (y, d) = (y.readonly::<T, Ix2>()?, delta.readonly::<T, Ix2>()?);
            let (y, d) = (y.as_array(), d.as_array());
            let dx = py.detach(|| $kernel(y, d))?;
            Ok(dx.into_pyarray(py).into_any())
        }

        #[pyfunction(name = $name)]
        fn $py<'py>(
            py: Python<'py>,
            y: &Bound<'py, PyAny>,
            delta: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = $name;
            let y = FloatArg::new(OP, "y", y, 2, "(N, k)")?;
            let delta = FloatArg::new(OP, "delta", delta, 2, "(N, k)")?;
            dispatch!(common_dtype(OP, &[&y, &delta])?, $t(py, &y, &delta))
        }
    };
}

rowwise_backward!(
    softmax_backward_t,
    softmax_backward_py,
    "softmax_backward",
    softmax::softmax_backward
);
rowwise_backward!(
    log_softmax_backward_t,
    log_softmax_backward_py,
    "log_softmax_backward",
    softmax::log_softmax_backward
);

/// Whether `target` holds integers (class indices) rather than probabilities.
fn is_index_target(target: &Bound<'_, PyAny>) -> bool {
    target
        .cast::<PyUntypedArray>()
        .map(|a| a.dtype().is_equiv_to(&numpy::dtype::<i64>(target.py())) || a.ndim() == 1)
        .unwrap_or(false)
}

fn ce_t<'py, T: Exp + numpy::Element>(
    py: Python<'py>,
    op: &'static str,
    logits: &FloatArg<'py>,
    target: &Bound<'py, PyAny>,
    backward: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let x = logits.readonly::<T, Ix2>()?;
    let x = x.as_array();
    let run = |t: Target<'_, T>| -> PyResult<Bound<'py, PyAny>> {
        Ok(if backward {
            let dx = py.detach(|| loss::cross_entropy_backward(x, t))?;
            dx.into_pyarray(py).into_any()
        } else {
            let l = py.detach(|| loss::cross_entropy(x, t))?;
            l.into_pyarray(py).into_any()
        })
    };
    if is_index_target(target) {
        let t = int64_arg::<Ix1>(op, "target", target, "(N,) of class indices")?;
        run(Target::Index(t.as_array()))
    } else {
        let p = FloatArg::new(op, "target", target, 2, "(N, k) of probabilities")?;
        common_dtype(op, &[logits, &p])?;
        run(Target::Prob(p.readonly::<T, Ix2>()?.as_array()))
    }
}

/// cross_entropy(logits, target) -> ndarray
///
/// Per-sample loss `(N,)`; `target` is `(N,)` int64 class indices or `(N, k)`
/// float probabilities of the dtype of `logits`.
#[pyfunction(name = "cross_entropy")]
fn cross_entropy_py<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy";
    let x = FloatArg::new(OP, "logits", logits, 2, "(N, k)")?;
    dispatch!(x.dtype, ce_t(py, OP, &x, target, false))
}

/// cross_entropy_backward(logits, target) -> ndarray
///
/// Gradient of the sum of the per-sample losses with respect to `logits`.
#[pyfunction(name = "cross_entropy_backward")]
fn cross_entropy_backward_py<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy_backward";
    let x = FloatArg::new(OP, "logits", logits, 2, "(N, k)")?;
    dispatch!(x.dtype, ce_t(py, OP, &x, target, true))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(softmax_py, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax_py, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy_py, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy_backward_py, m)?)?;
    Ok(())
}
