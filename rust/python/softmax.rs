//! Bindings of `softmax.rs`: softmax, log-softmax and cross-entropy on logits.

use ndarray::{Ix1, Ix2};
use numpy::{IntoPyArray, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::conv::int64_arg;
use super::{common_dtype, dispatch, FloatArg};
use crate::loss::{self, Target};
use crate::softmax::{self as kernels, Exp};

/// `#[pyfunction] $name($($arg),+)`: the row-wise kernel of that name, GIL released.
macro_rules! rowwise {
    ($name:ident, $($arg:ident),+) => {
        #[pyfunction]
        fn $name<'py>(
            py: Python<'py>,
            $($arg: &Bound<'py, PyAny>),+
        ) -> PyResult<Bound<'py, PyAny>> {
            fn run<'py, T: Exp + numpy::Element>(
                py: Python<'py>,
                $($arg: &FloatArg<'py>),+
            ) -> PyResult<Bound<'py, PyAny>> {
                $(let $arg = $arg.readonly::<T, Ix2>()?;)+
                $(let $arg = $arg.as_array();)+
                Ok(py.detach(|| kernels::$name($($arg),+))?.into_pyarray(py).into_any())
            }
            const OP: &str = stringify!($name);
            $(let $arg = FloatArg::new(OP, stringify!($arg), $arg, 2, "(N, k)")?;)+
            dispatch!(common_dtype(OP, &[$(&$arg),+])?, run(py, $(&$arg),+))
        }
    };
}

rowwise!(softmax, x);
rowwise!(log_softmax, x);
rowwise!(softmax_backward, y, delta);
rowwise!(log_softmax_backward, y, delta);

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
    // Class indices: int64, or any 1-D array (its dtype then gets an error).
    let index = target
        .cast::<PyUntypedArray>()
        .is_ok_and(|a| a.dtype().is_equiv_to(&numpy::dtype::<i64>(py)) || a.ndim() == 1);
    if index {
        let t = int64_arg::<Ix1>(op, "target", target, "(N,) of class indices")?;
        run(Target::Index(t.as_array()))
    } else {
        let p = FloatArg::new(op, "target", target, 2, "(N, k) of probabilities")?;
        common_dtype(op, &[logits, &p])?;
        run(Target::Prob(p.readonly::<T, Ix2>()?.as_array()))
    }
}

/// `#[pyfunction] $name(logits, target)`: [`ce_t`], the loss or its gradient.
macro_rules! cross_entropy {
    ($(#[$doc:meta])* $name:ident, $backward:literal) => {
        $(#[$doc])*
        #[pyfunction]
        fn $name<'py>(
            py: Python<'py>,
            logits: &Bound<'py, PyAny>,
            target: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = stringify!($name);
            let x = FloatArg::new(OP, "logits", logits, 2, "(N, k)")?;
            dispatch!(x.dtype, ce_t(py, OP, &x, target, $backward))
        }
    };
}

cross_entropy!(
    /// cross_entropy(logits, target) -> ndarray
    ///
    /// Per-sample loss `(N,)`; `target` is `(N,)` int64 class indices or `(N, k)`
    /// float probabilities of the dtype of `logits`.
    cross_entropy,
    false
);
cross_entropy!(
    /// cross_entropy_backward(logits, target) -> ndarray
    ///
    /// Gradient of the sum of the per-sample losses with respect to `logits`.
    cross_entropy_backward,
    true
);

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(softmax, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy_backward, m)?)?;
    Ok(())
}
