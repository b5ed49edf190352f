//! Bindings of `fused.rs` and `activation.rs`: `dense_forward`,
//! `dense_backward`, the `DenseTrainer` class (a whole SGD step
//! in one call), `activation` and `activation_backward`.
//!
//! The layers arrive as parallel lists (weights, biases or `None`,
//! `Activation`s); every array is borrowed, none is copied, and the gradients
//! are written in place. Each call casts its arrays to `T` ndarrays, trying
//! `f32` then `f64` (one cast an array: the binding's own cost stays small
//! beside the small models' kernels); when neither fits, the `FloatArg`
//! checks run only to name the failing argument.

use std::any::Any;

use ndarray::{Ix1, IxDyn};
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::conv::int64_arg;
use super::{common_dtype, dispatch, readonly, readwrite, FloatArg};
use crate::activation::{backward_at_input, forward_array, Activation};
use crate::fused::{self, Dense, DenseGrad, TrainLayer, TrainScratch};
use crate::loss::{LossKind, Target};
use crate::softmax::Exp;

/// Runs `$f::<f32>`, else `$f::<f64>` (each `None` when an array is not of
/// its type); `$explain` is the error when neither fits.
macro_rules! typed {
    ($f:ident($($arg:expr),* $(,)?), $explain:expr) => {
        match $f::<f32>($($arg),*) {
            Some(result) => result,
            None => $f::<f64>($($arg),*).unwrap_or_else(|| Err($explain)),
        }
    };
}

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

    /// The layers as `T` ndarrays; None if some array is not one.
    fn layers<T: Element>(&self) -> Option<Vec<Layer<'a, 'py, T>>> {
        let vector = |b: Option<&'a Bound<'py, PyAny>>| match b.filter(|b| !b.is_none()) {
            None => Some(None),
            Some(b) => b.cast::<PyArray1<T>>().ok().map(Some),
        };
        (0..self.w.len())
            .map(|i| {
                Some(Layer {
                    w: self.w[i].cast().ok()?,
                    b: vector(self.b.get(i))?,
                    gw: match self.gw.get(i) {
                        Some(gw) => Some(gw.cast().ok()?),
                        None => None,
                    },
                    gb: vector(self.gb.get(i))?,
                })
            })
            .collect()
    }

    /// Why the arrays (`others`: name, array, dimensions, expected shape, then
    /// the lists) are not all `T` ndarrays of one dtype: the checks name the
    /// first that fails.
    fn explain(&self, others: &[(&'static str, &Bound<'py, PyAny>, usize, &str)]) -> PyErr {
        let op = self.op;
        let lists = [
            ("weight", self.w, 2, false),
            ("bias", self.b, 1, true),
            ("grad_weight", self.gw, 2, false),
            ("grad_bias", self.gb, 1, true),
        ];
        let check = || -> PyResult<()> {
            let mut all = (others.iter())
                .map(|&(name, obj, ndim, shape)| FloatArg::new(op, name, obj, ndim, shape))
                .collect::<PyResult<Vec<_>>>()?;
            for (name, items, ndim, optional) in lists {
                let shape = if ndim == 1 { "(out,)" } else { "(in, out)" };
                for item in items.iter().filter(|item| !(optional && item.is_none())) {
                    if item.is_none() {
                        let msg = format!("{op}: a {name} is None");
                        return Err(PyValueError::new_err(msg));
                    }
                    all.push(FloatArg::new(op, name, item, ndim, shape)?);
                }
            }
            common_dtype(op, &all.iter().collect::<Vec<_>>()).map(|_| ())
        };
        check().err().unwrap_or_else(|| {
            let msg = "every array must be a float32 or float64 ndarray of one dtype";
            PyTypeError::new_err(format!("{op}: {msg}"))
        })
    }
}

/// Checks that every per-layer list has one entry per layer.
fn check_counts(op: &str, n: usize, lists: &[(&str, usize)]) -> PyResult<()> {
    match lists.iter().find(|(_, len)| *len != n) {
        Some((what, len)) => Err(PyValueError::new_err(format!(
            "{op}: expected one entry of {what} per layer ({n}), got {len}"
        ))),
        None => Ok(()),
    }
}

/// `obj` as a `T` ndarray of dimension 2.
fn matrix<'a, 'py, T: Element>(obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyArray2<T>>> {
    obj.cast().ok()
}

/// Read-only borrows of the layers' weights and biases.
type Params<'py, T> = (
    Vec<PyReadonlyArray2<'py, T>>,
    Vec<Option<PyReadonlyArray1<'py, T>>>,
);

fn params<'py, T: Element>(op: &str, layers: &[Layer<'_, 'py, T>]) -> PyResult<Params<'py, T>> {
    let ws = (layers.iter()).map(|l| readonly(op, "weight", l.w));
    let bs = (layers.iter()).map(|l| l.b.map(|b| readonly(op, "bias", b)).transpose());
    Ok((ws.collect::<PyResult<_>>()?, bs.collect::<PyResult<_>>()?))
}

/// The `Dense` views of borrowed weights and biases.
fn dense<'a, T: Element>((ws, bs): &'a Params<'_, T>, acts: &[Activation]) -> Vec<Dense<'a, T>> {
    (ws.iter().zip(bs).zip(acts))
        .map(|((w, b), &act)| Dense {
            w: w.as_array(),
            b: b.as_ref().map(|b| b.as_array()),
            act,
        })
        .collect()
}

fn dense_forward_t<'py, T: Exp + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    lists: &Lists<'_, 'py>,
) -> Option<PyResult<Bound<'py, PyList>>> {
    let (x, layers) = (matrix::<T>(x)?, lists.layers::<T>()?);
    Some((|| {
        let (x, params) = (readonly(lists.op, "x", x)?, params(lists.op, &layers)?);
        let (x, layers) = (x.as_array(), dense(&params, &lists.acts));
        let outputs = py.detach(|| fused::dense_forward(x, &layers))?;
        PyList::new(py, outputs.into_iter().map(|y| y.into_pyarray(py)))
    })())
}

/// dense_forward(x, weights, biases, activations) -> list[ndarray]
///
/// A chain of dense layers in one call: ``y_i = act_i(y_{i-1} @ W_i + b_i)``
/// from ``y_0 = x (N, in)``; returns every ``y_i`` (the last one is the
/// output). ``biases`` holds arrays or None; ``activations`` holds one
/// ``Activation`` per layer.
#[pyfunction(name = "dense_forward")]
fn dense_forward_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    activations: Vec<Activation>,
) -> PyResult<Bound<'py, PyList>> {
    let lists = Lists::new("dense_forward", (&weights, &biases), activations, None)?;
    let explain = || lists.explain(&[("x", x, 2, "(N, in)")]);
    typed!(dense_forward_t(py, x, &lists), explain())
}

fn dense_backward_t<'py, T: Exp + Element>(
    py: Python<'py>,
    [x, delta]: [&Bound<'py, PyAny>; 2],
    outputs: &[Bound<'py, PyAny>],
    lists: &Lists<'_, 'py>,
    input_delta: bool,
) -> Option<PyResult<Option<Bound<'py, PyAny>>>> {
    let (x, delta, layers) = (matrix::<T>(x)?, matrix::<T>(delta)?, lists.layers::<T>()?);
    let ys = (outputs.iter()).map(matrix).collect::<Option<Vec<_>>>()?;
    let op = lists.op;
    Some((|| {
        let (x, delta) = (readonly(op, "x", x)?, readonly(op, "delta", delta)?);
        let ys =
            (ys.into_iter().map(|y| readonly(op, "output", y))).collect::<PyResult<Vec<_>>>()?;
        let params = params(op, &layers)?;
        let mut grads = (layers.iter())
            .map(|l| {
                let gw = readwrite(op, "grad_weight", l.gw.expect("a gradient list"))?;
                let gb = l.gb.map(|b| readwrite(op, "grad_bias", b)).transpose();
                Ok((gw, gb?))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut grads: Vec<_> = (grads.iter_mut())
            .map(|(w, b)| DenseGrad {
                w: w.as_array_mut(),
                b: b.as_mut().map(|b| b.as_array_mut()),
            })
            .collect();
        let ys: Vec<_> = ys.iter().map(|y| y.as_array()).collect();
        let (x, delta, layers) = (x.as_array(), delta.as_array(), dense(&params, &lists.acts));
        let dx =
            py.detach(|| fused::dense_backward(x, &ys, &layers, &mut grads, delta, input_delta))?;
        Ok(dx.map(|dx| dx.into_pyarray(py).into_any()))
    })())
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
fn dense_backward_py<'py>(
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
    let mut others = vec![("x", x, 2, "(N, in)"), ("delta", delta, 2, "(N, out)")];
    others.extend(outputs.iter().map(|y| ("output", y, 2, "(N, out)")));
    let arrays = [x, delta];
    typed!(
        dense_backward_t(py, arrays, &outputs, &lists, input_delta),
        lists.explain(&others)
    )
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
struct DenseTrainer {
    /// The buffers of the last step (a `TrainScratch` of its dtype).
    scratch: Option<Box<dyn Any + Send + Sync>>,
    /// Whether the last step succeeded (its output is then in `scratch`).
    done: bool,
}

impl DenseTrainer {
    /// The buffers for `T`, new if the last step had another dtype.
    fn scratch<T: Exp>(&mut self) -> &mut TrainScratch<T> {
        if !(self.scratch.as_ref()).is_some_and(|s| s.is::<TrainScratch<T>>()) {
            self.scratch = Some(Box::<TrainScratch<T>>::default());
        }
        (self.scratch.as_mut().and_then(|s| s.downcast_mut())).expect("set above")
    }
}

fn train_step_t<'py, T: Exp + Element>(
    py: Python<'py>,
    trainer: &mut DenseTrainer,
    [x, target]: [&Bound<'py, PyAny>; 2],
    lists: &Lists<'_, 'py>,
    loss: LossKind,
    lr: Option<f64>,
) -> Option<PyResult<f64>> {
    const OP: &str = "DenseTrainer.step";
    let (x, layers) = (matrix::<T>(x)?, lists.layers::<T>()?);
    Some((|| {
        let index = (target.cast::<numpy::PyUntypedArray>())
            .is_ok_and(|a| numpy::PyUntypedArrayMethods::ndim(a) == 1);
        let (t_idx, t_prob) = match (index, matrix::<T>(target)) {
            (true, _) => (
                Some(int64_arg::<Ix1>(
                    OP,
                    "target",
                    target,
                    "(N,) of class indices",
                )?),
                None,
            ),
            (false, Some(p)) => (None, Some(readonly(OP, "target", p)?)),
            (false, None) => {
                // Not x's dtype, or not a 2-D float array: the checks say which.
                let p = FloatArg::new(OP, "target", target, 2, "(N, out)")?;
                let x = FloatArg::new(OP, "x", x.as_any(), 2, "(N, in)")?;
                common_dtype(OP, &[&x, &p])?;
                let msg = format!("{OP}: target must be a 2-D array of x's dtype");
                return Err(PyTypeError::new_err(msg));
            }
        };
        let x = readonly(OP, "x", x)?;
        let optional = |b: Option<&Bound<'py, PyArray1<T>>>, name| {
            b.map(|b| readwrite(OP, name, b)).transpose()
        };
        let mut borrows = (layers.iter())
            .map(|l| {
                let w = readwrite(OP, "weight", l.w)?;
                let b = optional(l.b, "bias")?;
                let gw = readwrite(OP, "grad_weight", l.gw.expect("a gradient list"))?;
                Ok((w, b, gw, optional(l.gb, "grad_bias")?))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut layers: Vec<TrainLayer<'_, T>> = (borrows.iter_mut().zip(&lists.acts))
            .map(|((w, b, gw, gb), &act)| TrainLayer {
                w: w.as_array_mut(),
                b: b.as_mut().map(|b| b.as_array_mut()),
                gw: gw.as_array_mut(),
                gb: gb.as_mut().map(|b| b.as_array_mut()),
                act,
            })
            .collect();
        let target = match (&t_idx, &t_prob) {
            (Some(t), _) => Target::Index(t.as_array()),
            (_, Some(p)) => Target::Prob(p.as_array()),
            _ => unreachable!("one of the two"),
        };
        let x = x.as_array();
        let lr = lr.map(|lr| T::from_f64(lr).expect("a float converts"));
        let scratch = trainer.scratch::<T>();
        let step = || fused::dense_train_step(x, target, loss, &mut layers, lr, scratch);
        Ok(py.detach(step)?)
    })())
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
        self.done = false;
        let explain = || lists.explain(&[("x", x, 2, "(N, in)")]);
        let mean = typed!(
            train_step_t(py, self, [x, target], &lists, loss, lr),
            explain()
        )?;
        self.done = true;
        Ok(mean)
    }

    /// output() -> ndarray | None
    ///
    /// A copy of the network's output in the last successful step.
    fn output<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        fn copy<'py, T: Exp + Element>(py: Python<'py>, s: &dyn Any) -> Option<Bound<'py, PyAny>> {
            let y = s.downcast_ref::<TrainScratch<T>>()?.output()?;
            Some(y.to_owned().into_pyarray(py).into_any())
        }
        let s: &dyn Any = self.scratch.as_deref().filter(|_| self.done)?;
        copy::<f32>(py, s).or_else(|| copy::<f64>(py, s))
    }
}

/// The activations by name: `_core.Activation`. One with parameters crosses
/// as a tuple, `(Activation.LeakyReLU, negative_slope)` or
/// `(Activation.Softplus, beta, threshold)`; alone it takes torch's defaults.
#[pyclass(
    name = "Activation",
    eq,
    eq_int,
    frozen,
    hash,
    from_py_object,
    module = "diy_nn._core"
)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
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

/// An array of any number of dimensions, checked.
fn any_dims<'py>(
    op: &'static str,
    name: &'static str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<FloatArg<'py>> {
    let ndim = (obj.cast::<numpy::PyUntypedArray>()).map(numpy::PyUntypedArrayMethods::ndim);
    FloatArg::new(op, name, obj, ndim.unwrap_or(0), "")
}

fn activation_t<'py, T: Exp + Element>(
    py: Python<'py>,
    act: Activation,
    x: &FloatArg<'py>,
    delta: Option<&FloatArg<'py>>,
) -> PyResult<Bound<'py, PyAny>> {
    let x = x.readonly::<T, IxDyn>()?;
    let delta = delta.map(|d| d.readonly::<T, IxDyn>()).transpose()?;
    let (x, delta) = (x.as_array(), delta.as_ref().map(|d| d.as_array()));
    let y = py.detach(|| match delta {
        None => Ok(forward_array(act, x)),
        Some(d) => backward_at_input(act, x, d),
    })?;
    Ok(y.into_pyarray(py).into_any())
}

/// activation(x, act) -> ndarray
///
/// ``act`` (an ``Activation``, or a tuple with its parameters) of ``x``,
/// elementwise, any shape; a new array.
#[pyfunction(name = "activation")]
fn activation_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    act: Activation,
) -> PyResult<Bound<'py, PyAny>> {
    let x = any_dims("activation", "x", x)?;
    dispatch!(x.dtype, activation_t(py, act, &x, None))
}

/// activation_backward(x, delta, act) -> ndarray
///
/// ``delta ⊙ act'(x)``, from the input ``x`` (exact for every activation);
/// ``delta`` has the shape and dtype of ``x``.
#[pyfunction(name = "activation_backward")]
fn activation_backward_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    delta: &Bound<'py, PyAny>,
    act: Activation,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "activation_backward";
    let (x, delta) = (any_dims(OP, "x", x)?, any_dims(OP, "delta", delta)?);
    let dtype = common_dtype(OP, &[&x, &delta])?;
    dispatch!(dtype, activation_t(py, act, &x, Some(&delta)))
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

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dense_forward_py, m)?)?;
    m.add_function(wrap_pyfunction!(dense_backward_py, m)?)?;
    m.add_function(wrap_pyfunction!(activation_py, m)?)?;
    m.add_function(wrap_pyfunction!(activation_backward_py, m)?)?;
    m.add_class::<DenseTrainer>()?;
    m.add_class::<Kind>()?;
    m.add_class::<LossKind>()?;
    Ok(())
}
