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

/// `#[pyfunction] $name(logits, target)`: the kernel of that name (the
/// cross-entropy of `logits (N, k)` for `target`, or its gradient).
macro_rules! cross_entropy {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[pyfunction]
        pub(super) fn $name<'py>(
            py: Python<'py>,
            logits: &Bound<'py, PyAny>,
            target: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyAny>> {
            const OP: &str = stringify!($name);
            let logits = FloatArg::new(OP, "logits", logits, 2, "(N, k)")?;
            dispatch!(logits.dtype, |T| {
                let x = logits.readonly::<T, Ix2>()?;
                let x = x.as_array();
                let (index, prob);
                // Class indices: int64, or any 1-D array (its dtype then gets an error).
                let is_index = (target.cast::<PyUntypedArray>()).is_ok_and(|a| {
                    a.dtype().is_equiv_to(&numpy::dtype::<i64>(py)) || a.ndim() == 1
                });
                let t = if is_index {
                    index = int_arg::<i64, Ix1>(OP, "target", target, (1, INDICES))?;
                    Target::Index(index.as_array())
                } else {
                    let p = FloatArg::new(OP, "target", target, 2, "(N, k) of probabilities")?;
                    common_dtype(OP, [&logits, &p])?;
                    prob = p.readonly::<T, Ix2>()?;
                    Target::Prob(prob.as_array())
                };
                Ok(one(py.detach(|| loss::$name(x, t))?, py))
            })
        }
    )*};
}

/// What a class-index target must be, in error messages.
pub(super) const INDICES: &str = "(N,) of class indices";

cross_entropy! {
    /// cross_entropy(logits, target) -> ndarray
    ///
    /// Per-sample loss `(N,)`; `target` is `(N,)` int64 class indices or `(N, k)`
    /// float probabilities of the dtype of `logits`.
    cross_entropy;
    /// cross_entropy_backward(logits, target) -> ndarray
    ///
    /// Gradient of the sum of the per-sample losses with respect to `logits`.
    cross_entropy_backward;
}
