//! Bindings of `fused.rs` and `activation.rs`: `dense_forward`,
//! `dense_backward`, the `DenseTrainer` class (a whole SGD step
//! in one call), `activation` and `activation_backward`.
//!
//! The layers arrive as parallel lists (weights, biases or `None`,
//! `Activation`s); every array is borrowed, none is copied, and the gradients
//! are written in place. `x` gives the dtype, and each other array is cast to
//! it once (the binding's own cost stays small beside the small models'
//! kernels); see [`typed`].

use std::any::Any;

use ndarray::{Dimension, Ix2, IxDyn};
use numpy::{
    Element, IntoPyArray, PyArray, PyArray1, PyArray2, PyReadwriteArray1, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::conv::int_arg;
use super::softmax::INDICES;
use super::{common_dtype, dispatch, one, readonly, readwrite, DType, FloatArg, ANY};
use crate::activation::{backward_at_input, forward_array, Activation};
use crate::fused::{self, Dense, DenseGrad, TrainLayer, TrainScratch};
use crate::loss::{LossKind, Target};

/// The per-layer lists of a fused call, their lengths checked: weights,
/// biases (or None), activations and, for the backward pass and the training
/// step, the weight and bias gradients.
struct Lists<'a, 'py> {
    op: &'static str,
    w: &'a [Bound<'py, PyAny>],
    b: &'a [Bound<'py, PyAny>],
    gw: &'a [Bound<'py, PyAny>],
    gb: &'a [Bound<'py, PyAny>],
    acts: Vec<Activation>,
}

/// Two per-layer lists: weights and biases, or their gradients.
type Pair<'a, 'py> = (&'a [Bound<'py, PyAny>], &'a [Bound<'py, PyAny>]);

/// One layer's arrays as `T` ndarrays (the gradients absent in a forward pass).
struct Layer<'a, 'py, T: Element> {
    w: &'a Bound<'py, PyArray2<T>>,
    b: Option<&'a Bound<'py, PyArray1<T>>>,
    gw: Option<&'a Bound<'py, PyArray2<T>>>,
    gb: Option<&'a Bound<'py, PyArray1<T>>>,
}

impl<'a, 'py> Lists<'a, 'py> {
    fn new(
        op: &'static str,
        (w, b): Pair<'a, 'py>,
        acts: Vec<Activation>,
        grads: Option<Pair<'a, 'py>>,
    ) -> PyResult<Self> {
        let (gw, gb) = grads.unwrap_or_default();
        let mut counts = vec![("activations", acts.len()), ("biases", b.len())];
        if grads.is_some() {
            counts.extend([("grad_weights", gw.len()), ("grad_biases", gb.len())]);
        }
        check_counts(op, w.len(), &counts)?;
        Ok(Lists {
            op,
            w,
            b,
            gw,
            gb,
            acts,
        })
    }

    /// The layers as ndarrays of `x`'s dtype `T`; else the error of [`typed`].
    fn layers<T: Element>(&self, x: &FloatArg<'py>) -> PyResult<Vec<Layer<'a, 'py, T>>> {
        let given = |name, a: &'a Bound<'py, PyAny>| match a.is_none() {
            true => Err(PyValueError::new_err(format!(
                "{}: a {name} is None",
                self.op
            ))),
            false => typed(x, (name, "(in, out)"), a),
        };
        let optional = |name, b: Option<&'a Bound<'py, PyAny>>| {
            (b.filter(|b| !b.is_none()))
                .map(|b| typed(x, (name, "(out,)"), b))
                .transpose()
        };
        (0..self.w.len())
            .map(|i| {
                Ok(Layer {
                    w: given("weight", &self.w[i])?,
                    b: optional("bias", self.b.get(i))?,
                    gw: (self.gw.get(i).map(|g| given("grad_weight", g))).transpose()?,
                    gb: optional("grad_bias", self.gb.get(i))?,
                })
            })
            .collect()
    }
}

/// `obj`, the argument `name` (of the shape `shape` in errors), as a `T` ndarray of dimension `D`, `T` being
/// `x`'s dtype: one cast; when it fails, the `FloatArg` checks say why.
fn typed<'a, 'py, T: Element, D: Dimension>(
    x: &FloatArg<'py>,
    (name, shape): (&'static str, &str),
    obj: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyArray<T, D>>> {
    obj.cast().or_else(|_| {
        let ndim = D::NDIM.expect("a fixed dimension");
        common_dtype(x.op, [x, &FloatArg::new(x.op, name, obj, ndim, shape)?])?;
        let msg = format!("{}: {name} must be an ndarray of x's dtype", x.op);
        Err(PyTypeError::new_err(msg))
    })
}

impl<'py, T: Element> Layer<'_, 'py, T> {
    /// Writeable borrows of the layer's gradients.
    fn grads(&self, op: &str) -> PyResult<Grads<'py, T>> {
        let gw = readwrite(op, "grad_weight", self.gw.expect("a gradient list"))?;
        Ok((
            gw,
            self.gb.map(|b| readwrite(op, "grad_bias", b)).transpose()?,
        ))
    }
}

/// A layer's gradients, borrowed.
type Grads<'py, T> = (PyReadwriteArray2<'py, T>, Option<PyReadwriteArray1<'py, T>>);

/// Checks that every per-layer list has one entry per layer.
fn check_counts(op: &str, n: usize, lists: &[(&str, usize)]) -> PyResult<()> {
    match lists.iter().find(|(_, len)| *len != n) {
        Some((what, len)) => Err(PyValueError::new_err(format!(
            "{op}: expected one entry of {what} per layer ({n}), got {len}"
        ))),
        None => Ok(()),
    }
}

/// Read-only borrows of the layers' weights and biases, then their `Dense`
/// views in `f`.
fn with_dense<T: Element, R>(
    op: &str,
    layers: &[Layer<'_, '_, T>],
    acts: &[Activation],
    f: impl FnOnce(Vec<Dense<'_, T>>) -> PyResult<R>,
) -> PyResult<R> {
    let ws = (layers.iter()).map(|l| readonly(op, "weight", l.w));
    let ws = ws.collect::<PyResult<Vec<_>>>()?;
    let bs = (layers.iter()).map(|l| l.b.map(|b| readonly(op, "bias", b)).transpose());
    let bs = bs.collect::<PyResult<Vec<_>>>()?;
    f((ws.iter().zip(&bs).zip(acts))
        .map(|((w, b), &act)| Dense {
            w: w.as_array(),
            b: b.as_ref().map(|b| b.as_array()),
            act,
        })
        .collect())
}

/// dense_forward(x, weights, biases, activations) -> list[ndarray]
///
/// A chain of dense layers in one call: ``y_i = act_i(y_{i-1} @ W_i + b_i)``
/// from ``y_0 = x (N, in)``; returns every ``y_i`` (the last one is the
/// output). ``biases`` holds arrays or None; ``activations`` holds one
/// ``Activation`` per layer.
#[pyfunction(name = "dense_forward")]
pub(super) fn dense_forward_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    activations: Vec<Activation>,
) -> PyResult<Bound<'py, PyList>> {
    let lists = Lists::new("dense_forward", (&weights, &biases), activations, None)?;
    let x = FloatArg::new(lists.op, "x", x, 2, "(N, in)")?;
    dispatch!(x.dtype, |T| {
        let layers = lists.layers::<T>(&x)?;
        let x = x.readonly::<T, Ix2>()?;
        let x = x.as_array();
        with_dense(lists.op, &layers, &lists.acts, |layers| {
            let outputs = py.detach(|| fused::dense_forward(x, &layers))?;
            PyList::new(py, outputs.into_iter().map(|y| y.into_pyarray(py)))
        })
    })
}

/// dense_backward(x, outputs, weights, biases, activations, grad_weights,
///                grad_biases, delta, input_delta=True) -> ndarray | None
///
/// The backward pass of ``dense_forward``: ``outputs`` are its result for
/// ``x``, ``delta`` is d loss / d output. Adds d loss / d W_i and d loss / d b_i
/// into ``grad_weights``/``grad_biases`` (in place; None where a layer has no
/// bias) and returns d loss / d x, or None when ``input_delta`` is false (its
/// product is then skipped).
#[pyfunction(name = "dense_backward")]
#[pyo3(signature = (x, outputs, weights, biases, activations, grad_weights, grad_biases, delta, input_delta = true))]
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_backward_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    outputs: Vec<Bound<'py, PyAny>>,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    activations: Vec<Activation>,
    grad_weights: Vec<Bound<'py, PyAny>>,
    grad_biases: Vec<Bound<'py, PyAny>>,
    delta: &Bound<'py, PyAny>,
    input_delta: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    const OP: &str = "dense_backward";
    check_counts(OP, weights.len(), &[("outputs", outputs.len())])?;
    let grads = Some((&grad_weights[..], &grad_biases[..]));
    let lists = Lists::new(OP, (&weights, &biases), activations, grads)?;
    let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
    dispatch!(x.dtype, |T| {
        let delta = typed::<T, Ix2>(&x, ("delta", "(N, out)"), delta)?;
        let ys = (outputs.iter()).map(|y| typed::<T, Ix2>(&x, ("output", "(N, out)"), y));
        let ys = ys.collect::<PyResult<Vec<_>>>()?;
        let layers = lists.layers::<T>(&x)?;
        let (x, delta) = (x.readonly::<T, Ix2>()?, readonly(OP, "delta", delta)?);
        let ys =
            (ys.into_iter().map(|y| readonly(OP, "output", y))).collect::<PyResult<Vec<_>>>()?;
        with_dense(OP, &layers, &lists.acts, |dense| {
            let grads = (layers.iter()).map(|l| l.grads(OP));
            let mut grads = grads.collect::<PyResult<Vec<_>>>()?;
            let mut grads: Vec<_> = (grads.iter_mut())
                .map(|(w, b)| DenseGrad {
                    w: w.as_array_mut(),
                    b: b.as_mut().map(|b| b.as_array_mut()),
                })
                .collect();
            let ys: Vec<_> = ys.iter().map(|y| y.as_array()).collect();
            let (x, delta) = (x.as_array(), delta.as_array());
            let dx = py
                .detach(|| fused::dense_backward(x, &ys, &dense, &mut grads, delta, input_delta))?;
            Ok(dx.map(|dx| one(dx, py)))
        })
    })
}

/// DenseTrainer()
///
/// Whole training steps of a dense chain with plain SGD, each in one call:
/// ``step(x, target, weights, biases, activations, grad_weights, grad_biases,
/// loss, lr)`` runs forward, the loss (a ``LossKind``), its gradient, the
/// backward pass (the gradients are *written*) and ``p -= lr * grad`` (not
/// with ``lr`` None), and returns the mean per-sample cost. The layers'
/// outputs live in buffers the object keeps between steps; ``output()``
/// copies the network's output of the last step. ``target``: ``(N, out)``
/// in the parameters' dtype, or ``(N,)`` int64 class indices for the
/// cross-entropies.
#[pyclass(name = "DenseTrainer", module = "diy_nn._core")]
#[derive(Default)]
pub(super) struct DenseTrainer {
    /// The buffers of the last step (a `TrainScratch` of its dtype).
    scratch: Option<Box<dyn Any + Send + Sync>>,
    /// The dtype of the last step if it succeeded (its output is then in `scratch`).
    done: Option<DType>,
}

#[pymethods]
impl DenseTrainer {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    #[pyo3(signature = (x, target, weights, biases, activations, grad_weights, grad_biases, loss, lr))]
    #[allow(clippy::too_many_arguments)]
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        weights: Vec<Bound<'py, PyAny>>,
        biases: Vec<Bound<'py, PyAny>>,
        activations: Vec<Activation>,
        grad_weights: Vec<Bound<'py, PyAny>>,
        grad_biases: Vec<Bound<'py, PyAny>>,
        loss: LossKind,
        lr: Option<f64>,
    ) -> PyResult<f64> {
        const OP: &str = "DenseTrainer.step";
        let grads = Some((&grad_weights[..], &grad_biases[..]));
        let lists = Lists::new(OP, (&weights, &biases), activations, grads)?;
        if let Some(lr) = lr.filter(|lr| !lr.is_finite()) {
            let msg = format!("{OP}: lr must be a finite number, got {lr}");
            return Err(PyValueError::new_err(msg));
        }
        self.done = None;
        let xa = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
        let mean = dispatch!(xa.dtype, |T| {
            let layers = lists.layers::<T>(&xa)?;
            let (index, prob);
            let target = match target.cast::<numpy::PyUntypedArray>() {
                Ok(a) if a.ndim() == 1 => {
                    index = int_arg(OP, "target", target, (1, INDICES))?;
                    Target::Index(index.as_array())
                }
                _ => {
                    prob = readonly(OP, "target", typed(&xa, ("target", "(N, out)"), target)?)?;
                    Target::Prob(prob.as_array())
                }
            };
            let x = xa.readonly::<T, Ix2>()?;
            let mut borrows = (layers.iter())
                .map(|l| {
                    let w = readwrite(OP, "weight", l.w)?;
                    let b = l.b.map(|b| readwrite(OP, "bias", b)).transpose()?;
                    Ok(((w, b), l.grads(OP)?))
                })
                .collect::<PyResult<Vec<_>>>()?;
            let mut layers: Vec<TrainLayer<'_, T>> = (borrows.iter_mut().zip(&lists.acts))
                .map(|(((w, b), (gw, gb)), &act)| TrainLayer {
                    w: w.as_array_mut(),
                    b: b.as_mut().map(|b| b.as_array_mut()),
                    gw: gw.as_array_mut(),
                    gb: gb.as_mut().map(|b| b.as_array_mut()),
                    act,
                })
                .collect();
            let x = x.as_array();
            let lr = lr.map(|lr| lr as T);
            // The buffers for `T`, new if the last step had another dtype.
            let scratch = &mut self.scratch;
            if !(scratch.as_ref()).is_some_and(|s| s.is::<TrainScratch<T>>()) {
                *scratch = Some(Box::<TrainScratch<T>>::default());
            }
            let scratch = (scratch.as_mut().and_then(|s| s.downcast_mut())).expect("set above");
            py.detach(|| fused::dense_train_step(x, target, loss, &mut layers, lr, scratch))?
        });
        self.done = Some(xa.dtype);
        Ok(mean)
    }

    /// output() -> ndarray | None
    ///
    /// A copy of the network's output in the last successful step.
    fn output<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let s = self.scratch.as_deref()?;
        dispatch!(self.done?, |T| {
            let y = s.downcast_ref::<TrainScratch<T>>()?.output()?;
            Some(one(y.to_owned(), py))
        })
    }
}

/// The activations by name: `_core.Activation`. One with parameters crosses
/// as a tuple, `(Activation.LeakyReLU, negative_slope)` or
/// `(Activation.Softplus, beta, threshold)`; alone it takes torch's defaults.
#[pyclass(name = "Activation", eq, eq_int, frozen, hash)]
#[pyo3(from_py_object, module = "diy_nn._core")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Identity,
    TanH,
    Sigmoid,
    ReLU,
    LeakyReLU,
    Softplus,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Activation {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let (kind, p): (Kind, Vec<f64>) = match obj.cast::<PyTuple>() {
            Ok(t) if !t.is_empty() => {
                let p = t.iter().skip(1).map(|v| v.extract::<f64>());
                (t.get_item(0)?.extract()?, p.collect::<PyResult<_>>()?)
            }
            _ => (obj.extract()?, vec![]),
        };
        let bad = |what: &str| PyValueError::new_err(format!("{what}, got {p:?}"));
        if p.iter().any(|v| !v.is_finite()) {
            return Err(bad("an activation's parameters must be finite"));
        }
        Ok(match (kind, &p[..]) {
            (Kind::Identity, []) => Activation::Identity,
            (Kind::TanH, []) => Activation::TanH,
            (Kind::Sigmoid, []) => Activation::Sigmoid,
            (Kind::ReLU, []) => Activation::ReLU,
            (Kind::LeakyReLU, []) => Activation::LeakyReLU { slope: 0.01 },
            (Kind::LeakyReLU, &[slope]) => Activation::LeakyReLU { slope },
            (Kind::Softplus, []) => Activation::Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
            (Kind::Softplus, &[beta, threshold]) if beta != 0.0 => {
                Activation::Softplus { beta, threshold }
            }
            (Kind::Softplus, _) => return Err(bad("Softplus takes (beta != 0, threshold)")),
            _ => {
                return Err(bad(
                    "LeakyReLU takes (negative_slope,); the others no parameter",
                ))
            }
        })
    }
}

/// activation(x, act) -> ndarray
///
/// ``act`` (an ``Activation``, or a tuple with its parameters) of ``x``,
/// elementwise, any shape; a new array.
#[pyfunction(name = "activation")]
pub(super) fn activation_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    act: Activation,
) -> PyResult<Bound<'py, PyAny>> {
    let x = FloatArg::new("activation", "x", x, ANY, "")?;
    dispatch!(x.dtype, |T| {
        let x = x.readonly::<T, IxDyn>()?;
        let x = x.as_array();
        Ok(one(py.detach(|| forward_array(act, x)), py))
    })
}

/// activation_backward(x, delta, act) -> ndarray
///
/// ``delta ⊙ act'(x)``, from the input ``x`` (exact for every activation);
/// ``delta`` has the shape and dtype of ``x``.
#[pyfunction(name = "activation_backward")]
pub(super) fn activation_backward_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    delta: &Bound<'py, PyAny>,
    act: Activation,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "activation_backward";
    let x = FloatArg::new(OP, "x", x, ANY, "")?;
    let delta = FloatArg::new(OP, "delta", delta, ANY, "")?;
    dispatch!(common_dtype(OP, [&x, &delta])?, |T| {
        let (x, d) = (x.readonly::<T, IxDyn>()?, delta.readonly::<T, IxDyn>()?);
        let (x, d) = (x.as_array(), d.as_array());
        Ok(one(py.detach(|| backward_at_input(act, x, d))?, py))
    })
}

/// `__reduce__` of the enums: the name of the member (`"Activation.TanH"`),
/// which pickle and `copy` look up in `diy_nn._core`.
macro_rules! reduce_to_name {
    ($($t:ty),*) => {$(
        #[pymethods]
        impl $t {
            fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<String> {
                slf.as_any().repr()?.extract()
            }
        }
    )*};
}
reduce_to_name!(Kind, LossKind);
