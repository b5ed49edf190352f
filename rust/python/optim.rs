//! Binding of `optim.rs`: `optim_update`, one optimizer step over every parameter.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::{dispatch, readonly, readwrite, FloatArg, ShapeError, ANY};
use crate::error::fmt_shape;
use crate::optim::{self, Hyper, Slot};

const OP: &str = "optim_update";

/// Array `j` of a slot (the parameter, its gradient, then its state) as a C-contiguous
/// `T` ndarray of the parameter `p`'s shape (`p` None: the parameter itself).
fn typed<'py, T: Element>(
    a: &Bound<'py, PyAny>,
    j: usize,
    p: Option<&Bound<'py, PyUntypedArray>>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let name = ["param", "grad"].get(j).copied().unwrap_or("state buffer");
    // one cast when the array fits; the `FloatArg` checks only to name a misfit
    let Ok(a) = a.cast::<PyArrayDyn<T>>() else {
        FloatArg::new(OP, name, a, ANY, "")?;
        let msg = format!("{OP}: {name} must have the first parameter's dtype");
        return Err(PyTypeError::new_err(msg));
    };
    let p = p.unwrap_or(a.as_untyped());
    if a.shape() != p.shape() || !a.is_c_contiguous() {
        let (want, got) = (fmt_shape(p.shape()), fmt_shape(a.shape()));
        let msg = format!("{OP}: {name} must be C-contiguous of shape {want}, got {got}");
        return Err(ShapeError::new_err(msg));
    }
    Ok(a.clone())
}

/// optim_update(hyper, slots) -> None
///
/// One step of a torch.optim rule over every parameter, in place. ``hyper``: a dict
/// of ``rule`` (a ``Rule``), ``lr``, ``mu``, ``wd``, ``b1``, ``b2``, ``eps`` and ``t``
/// (``optim.rs``'s ``Hyper``); ``slots``: per parameter ``[param, grad, *state]``, all
/// C-contiguous, of its shape and the first parameter's dtype.
#[pyfunction(name = "optim_update")]
pub(super) fn optim_update_py(
    py: Python<'_>,
    hyper: Hyper,
    slots: Vec<Vec<Bound<'_, PyAny>>>,
) -> PyResult<()> {
    let k = hyper.buffers() + 2;
    if slots.iter().any(|s| s.len() != k) {
        let msg = format!("{OP}: {:?} takes {k} arrays a parameter", hyper.rule);
        return Err(PyValueError::new_err(msg));
    }
    let Some(first) = slots.first() else {
        return Ok(());
    };
    let dtype = FloatArg::new(OP, "param", &first[0], ANY, "")?.dtype;
    dispatch!(dtype, |T| {
        let mut borrows = Vec::with_capacity(slots.len());
        for arrays in &slots {
            let p = typed::<T>(&arrays[0], 0, None)?;
            let like = |j| typed::<T>(&arrays[j], j, Some(p.as_untyped()));
            let g = readonly(OP, "grad", &like(1)?)?;
            let mut rw = vec![readwrite(OP, "param", &p)?];
            for j in 2..arrays.len() {
                rw.push(readwrite(OP, "state buffer", &like(j)?)?);
            }
            borrows.push((g, rw));
        }
        const C: &str = "checked: contiguous";
        let slots = (borrows.iter_mut()).map(|(g, rw)| {
            Slot(
                g.as_slice().expect(C),
                rw.iter_mut().map(|a| a.as_slice_mut().expect(C)).collect(),
            )
        });
        let slots = slots.collect();
        py.detach(|| optim::update(hyper, slots))?;
        Ok(())
    })
}
