//! Bindings of `softmax.rs`: softmax, log-softmax and cross-entropy on logits.

use ndarray::{Ix1, Ix2};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::conv::int_arg;
use super::{common_dtype, dispatch, one, FloatArg};
use crate::loss::{self, Target};
use crate::softmax as kernels;

/// `#[pyfunction] $name($($arg),+)`: the row-wise kernel of that name, GIL released.
macro_rules! rowwise {
    ($name:ident, $($arg:ident),+) => {
        #[pyfunction]
        pub(super) fn $name<'py>(
            py: Python<'py>,
            $($arg: &Bound<'py, PyAny>),+
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = stringify!($name);
            $(let $arg = FloatArg::new(OP, stringify!($arg), $arg, 2, "(N, k)")?;)+
            dispatch!(common_dtype(OP, [$(&$arg),+])?, |T| {
                $(let $arg = $arg.readonly::<T, Ix2>()?;)+
                $(let $arg = $arg.as_array();)+
                Ok(one(py.detach(|| kernels::$name($($arg),+))?, py))
            })
        }
    };
}

rowwise!(softmax, x);
rowwise!(log_softmax, x);
rowwise!(softmax_backward, y, delta);
rowwise!(log_softmax_backward, y, delta);

/// The cross-entropy of `logits` (`(N, k)`) for `target`, or its gradient
/// (`backward`): the bindings `cross_entropy` and `cross_entropy_backward`.
fn ce<'py>(
    py: Python<'py>,
    op: &'static str,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    backward: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let logits = FloatArg::new(op, "logits", logits, 2, "(N, k)")?;
    dispatch!(logits.dtype, |T| {
        let x = logits.readonly::<T, Ix2>()?;
        let x = x.as_array();
        let run = |t: Target<'_, T>| -> PyResult<Bound<'py, PyAny>> {
            Ok(match backward {
                true => one(py.detach(|| loss::cross_entropy_backward(x, t))?, py),
                false => one(py.detach(|| loss::cross_entropy(x, t))?, py),
            })
        };
        // Class indices: int64, or any 1-D array (its dtype then gets an error).
        let index = (target.cast::<PyUntypedArray>())
            .is_ok_and(|a| a.dtype().is_equiv_to(&numpy::dtype::<i64>(py)) || a.ndim() == 1);
        if index {
            let t = int_arg::<i64, Ix1>(op, "target", target, (1, "(N,) of class indices"))?;
            run(Target::Index(t.as_array()))
        } else {
            let p = FloatArg::new(op, "target", target, 2, "(N, k) of probabilities")?;
            common_dtype(op, [&logits, &p])?;
            run(Target::Prob(p.readonly::<T, Ix2>()?.as_array()))
        }
    })
}

/// cross_entropy(logits, target) -> ndarray
///
/// Per-sample loss `(N,)`; `target` is `(N,)` int64 class indices or `(N, k)`
/// float probabilities of the dtype of `logits`.
#[pyfunction]
pub(super) fn cross_entropy<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    ce(py, "cross_entropy", logits, target, false)
}

/// cross_entropy_backward(logits, target) -> ndarray
///
/// Gradient of the sum of the per-sample losses with respect to `logits`.
#[pyfunction]
pub(super) fn cross_entropy_backward<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    ce(py, "cross_entropy_backward", logits, target, true)
}
