//! Binding of `optim.rs`: `optim_update`, one optimizer step over every parameter.

use numpy::{Element, PyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::{dispatch, readonly, readwrite, FloatArg, ShapeError};
use crate::error::fmt_shape;
use crate::optim::{self, Hyper, Rule, Slot};

const OP: &str = "optim_update";
const NAMES: [&str; 5] = [
    "param",
    "grad",
    "state buffer",
    "state buffer",
    "state buffer",
];

/// Array `j` of a slot as a `T` ndarray with the shape and memory order of its parameter `p`.
fn typed<'py, T: Element>(
    a: &Bound<'py, PyAny>,
    j: usize,
    p: &Bound<'py, PyUntypedArray>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = FloatArg::new(OP, NAMES[j], a, p.ndim(), "(its parameter's)")?.array;
    let same = (a.is_c_contiguous() && p.is_c_contiguous())
        || (a.is_fortran_contiguous() && p.is_fortran_contiguous());
    if a.shape() != p.shape() || !same {
        let (want, got) = (fmt_shape(p.shape()), fmt_shape(a.shape()));
        let msg = format!("{OP}: {} must be contiguous, with its parameter's shape {want} and memory order, got shape {got}", NAMES[j]);
        return Err(ShapeError::new_err(msg));
    }
    let msg = format!("{OP}: {} must have the first parameter's dtype", NAMES[j]);
    a.cast_into::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err(msg))
}

fn update_t<T: crate::float::Float + Element>(
    py: Python<'_>,
    hyper: Hyper,
    slots: &[(FloatArg<'_>, Vec<Bound<'_, PyAny>>)],
) -> PyResult<()> {
    let mut borrows = Vec::with_capacity(slots.len());
    for (p, arrays) in slots {
        let p = &p.array;
        let mut rw = vec![readwrite(OP, "param", &typed::<T>(&arrays[0], 0, p)?)?];
        let g = readonly(OP, "grad", &typed::<T>(&arrays[1], 1, p)?)?;
        for (j, a) in arrays.iter().enumerate().skip(2) {
            rw.push(readwrite(OP, NAMES[j], &typed::<T>(a, j, p)?)?);
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
}

/// optim_update(hyper, slots) -> None
///
/// One step of a torch.optim rule over every parameter, in place. ``hyper``:
/// a dict of ``rule`` (a ``Rule``), ``lr``, ``mu`` (momentum), ``wd`` (weight
/// decay), ``b1``, ``b2`` (Adam's betas; RMSprop's alpha is ``b2``), ``eps``
/// and ``t`` (Adam's step, from 1). ``slots``: per parameter ``[param, grad,
/// *state]``, the state buffers in the rule's order (SGD: momentum; Adam: m,
/// v; RMSprop: square average, gradient average if centered, momentum), each
/// of the first parameter's dtype and of its own parameter's shape and memory order.
#[pyfunction(name = "optim_update")]
fn optim_update_py(
    py: Python<'_>,
    hyper: Hyper,
    slots: Vec<Vec<Bound<'_, PyAny>>>,
) -> PyResult<()> {
    let k = hyper.buffers() + 2;
    if let Some(arrays) = slots.iter().find(|s| s.len() != k) {
        let msg = format!(
            "{OP}: {:?} needs {k} arrays a parameter, got {}",
            hyper.rule,
            arrays.len()
        );
        return Err(PyValueError::new_err(msg));
    }
    let ndim = |a: &Bound<'_, PyAny>| a.cast::<PyUntypedArray>().map_or(0, |a| a.ndim());
    let slots = slots
        .into_iter()
        .map(|s| Ok((FloatArg::new(OP, "param", &s[0], ndim(&s[0]), "")?, s)));
    let slots = slots.collect::<PyResult<Vec<_>>>()?;
    let Some((first, _)) = slots.first() else {
        return Ok(());
    };
    dispatch!(first.dtype, update_t(py, hyper, &slots))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Rule>()?;
    m.add_function(wrap_pyfunction!(optim_update_py, m)?)
}
