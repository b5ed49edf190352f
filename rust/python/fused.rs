//! Bindings of `fused.rs`: `dense_forward`, `dense_backward`, `sgd_update`
//! and the `DenseTrainer` class (a whole SGD step in one call).
//!
//! The layers arrive as parallel lists (weights, biases or `None`,
//! `Activation`s); every array is borrowed, none is copied, and the gradients
//! are written in place.

use ndarray::{Ix1, Ix2, IxDyn};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray, PyReadwriteArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::conv::int64_arg;
use super::{common_dtype, dispatch, readonly, readwrite, DType, FloatArg};
use crate::activation::{backward_at_input, forward_array, Activation};
use crate::fused::{self, Dense, DenseGrad, TrainLayer, TrainScratch};
use crate::loss::LossKind;
use crate::loss::Target;
use crate::softmax::Exp;

/// Checks that every per-layer list has one entry per layer.
fn check_counts(op: &str, n: usize, lists: &[(&str, usize)]) -> PyResult<()> {
    match lists.iter().find(|(_, len)| *len != n) {
        Some((what, len)) => Err(PyValueError::new_err(format!(
            "{op}: expected one entry of {what} per layer ({n}), got {len}"
        ))),
        None => Ok(()),
    }
}

/// A list of arrays (`optional`: `None` entries allowed), each checked.
fn arrays<'py>(
    op: &'static str,
    name: &'static str,
    items: &[Bound<'py, PyAny>],
    ndim: usize,
    optional: bool,
) -> PyResult<Vec<Option<FloatArg<'py>>>> {
    let expected = if ndim == 1 { "(out,)" } else { "(in, out)" };
    (items.iter())
        .map(|item| match item.is_none() {
            true if optional => Ok(None),
            true => Err(PyValueError::new_err(format!("{op}: a {name} is None"))),
            false => FloatArg::new(op, name, item, ndim, expected).map(Some),
        })
        .collect()
}

/// The checked layer lists of a fused call: weights, biases and, for the
/// backward pass and the training step, the gradients; all of one dtype
/// with `others`.
struct Lists<'py> {
    w: Vec<Option<FloatArg<'py>>>,
    b: Vec<Option<FloatArg<'py>>>,
    gw: Vec<Option<FloatArg<'py>>>,
    gb: Vec<Option<FloatArg<'py>>>,
    dtype: DType,
}

impl<'py> Lists<'py> {
    fn new(
        op: &'static str,
        params: [&[Bound<'py, PyAny>]; 4],
        others: &[&FloatArg<'py>],
    ) -> PyResult<Self> {
        let [w, b, gw, gb] = params;
        let lists = Lists {
            w: arrays(op, "weight", w, 2, false)?,
            b: arrays(op, "bias", b, 1, true)?,
            gw: arrays(op, "grad_weight", gw, 2, false)?,
            gb: arrays(op, "grad_bias", gb, 1, true)?,
            dtype: DType::F32,
        };
        let all: Vec<&FloatArg<'py>> = (others.iter().copied())
            .chain(
                [&lists.w, &lists.b, &lists.gw, &lists.gb]
                    .into_iter()
                    .flatten()
                    .flatten(),
            )
            .collect();
        let dtype = common_dtype(op, &all)?;
        Ok(Lists { dtype, ..lists })
    }
}

/// Read-only borrows of `args` (None stays None).
fn ro<'py, T: numpy::Element, D: ndarray::Dimension>(
    args: &[Option<FloatArg<'py>>],
) -> PyResult<Vec<Option<PyReadonlyArray<'py, T, D>>>> {
    (args.iter())
        .map(|a| a.as_ref().map(|a| a.readonly::<T, D>()).transpose())
        .collect()
}

/// Writeable borrows of `args` (None stays None).
fn rw<'py, T: numpy::Element, D: ndarray::Dimension>(
    op: &'static str,
    args: &[Option<FloatArg<'py>>],
) -> PyResult<Vec<Option<PyReadwriteArray<'py, T, D>>>> {
    (args.iter())
        .map(|a| a.as_ref().map(|a| a.readwrite::<T, D>(op)).transpose())
        .collect()
}

/// The `Dense` views of borrowed weights and biases.
fn dense<'a, T: numpy::Element>(
    ws: &'a [Option<PyReadonlyArray<'_, T, Ix2>>],
    bs: &'a [Option<PyReadonlyArray<'_, T, Ix1>>],
    acts: &[Activation],
) -> Vec<Dense<'a, T>> {
    (ws.iter().zip(bs).zip(acts))
        .map(|((w, b), &act)| Dense {
            w: w.as_ref().expect("weights are not None").as_array(),
            b: b.as_ref().map(|b| b.as_array()),
            act,
        })
        .collect()
}

fn dense_forward_t<'py, T: Exp + numpy::Element>(
    py: Python<'py>,
    x: &FloatArg<'py>,
    lists: &Lists<'py>,
    acts: &[Activation],
) -> PyResult<Bound<'py, PyList>> {
    let x = x.readonly::<T, Ix2>()?;
    let (ws, bs) = (ro::<T, Ix2>(&lists.w)?, ro::<T, Ix1>(&lists.b)?);
    let layers = dense(&ws, &bs, acts);
    let x = x.as_array();
    let outputs = py.detach(|| fused::dense_forward(x, &layers))?;
    PyList::new(py, outputs.into_iter().map(|y| y.into_pyarray(py)))
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
    const OP: &str = "dense_forward";
    let n = weights.len();
    check_counts(
        OP,
        n,
        &[("activations", activations.len()), ("biases", biases.len())],
    )?;
    let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
    let lists = Lists::new(OP, [&weights, &biases, &[], &[]], &[&x])?;
    dispatch!(lists.dtype, dense_forward_t(py, &x, &lists, &activations))
}

fn dense_backward_t<'py, T: Exp + numpy::Element>(
    py: Python<'py>,
    x: &FloatArg<'py>,
    outputs: &[Option<FloatArg<'py>>],
    lists: &Lists<'py>,
    acts: &[Activation],
    delta: &FloatArg<'py>,
    input_delta: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    const OP: &str = "dense_backward";
    let (x, delta) = (x.readonly::<T, Ix2>()?, delta.readonly::<T, Ix2>()?);
    let ys = ro::<T, Ix2>(outputs)?;
    let (ws, bs) = (ro::<T, Ix2>(&lists.w)?, ro::<T, Ix1>(&lists.b)?);
    let (mut gws, mut gbs) = (rw::<T, Ix2>(OP, &lists.gw)?, rw::<T, Ix1>(OP, &lists.gb)?);
    let layers = dense(&ws, &bs, acts);
    let mut grads: Vec<DenseGrad<'_, T>> = (gws.iter_mut().zip(gbs.iter_mut()))
        .map(|(w, b)| DenseGrad {
            w: w.as_mut().expect("not None").as_array_mut(),
            b: b.as_mut().map(|b| b.as_array_mut()),
        })
        .collect();
    let ys: Vec<_> = (ys.iter())
        .map(|y| y.as_ref().expect("not None").as_array())
        .collect();
    let (x, delta) = (x.as_array(), delta.as_array());
    let dx =
        py.detach(|| fused::dense_backward(x, &ys, &layers, &mut grads, delta, input_delta))?;
    Ok(dx.map(|dx| dx.into_pyarray(py).into_any()))
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
    let counts = [
        ("activations", activations.len()),
        ("outputs", outputs.len()),
        ("biases", biases.len()),
        ("grad_weights", grad_weights.len()),
        ("grad_biases", grad_biases.len()),
    ];
    check_counts(OP, weights.len(), &counts)?;
    let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
    let delta = FloatArg::new(OP, "delta", delta, 2, "(N, out)")?;
    let ys = arrays(OP, "output", &outputs, 2, false)?;
    let mut others = vec![&x, &delta];
    others.extend(ys.iter().flatten());
    let params = [&weights[..], &biases, &grad_weights, &grad_biases];
    let lists = Lists::new(OP, params, &others)?;
    let acts = &activations;
    dispatch!(
        lists.dtype,
        dense_backward_t(py, &x, &ys, &lists, acts, &delta, input_delta)
    )
}

fn sgd_update_t<T: crate::float::Float + numpy::Element>(
    py: Python<'_>,
    params: &[Option<FloatArg<'_>>],
    grads: &[Option<FloatArg<'_>>],
    lr: f64,
) -> PyResult<()> {
    let (mut ps, gs) = (
        rw::<T, IxDyn>("sgd_update", params)?,
        ro::<T, IxDyn>(grads)?,
    );
    let mut pv: Vec<_> = (ps.iter_mut())
        .flatten()
        .map(|p| p.as_array_mut())
        .collect();
    let gv: Vec<_> = gs.iter().flatten().map(|g| g.as_array()).collect();
    let lr = T::from_f64(lr).expect("a float converts");
    py.detach(|| fused::sgd_update(&mut pv, &gv, lr))?;
    Ok(())
}

/// sgd_update(params, grads, lr) -> None
///
/// One plain SGD step over every pair, in place: ``p -= lr * g``. All arrays
/// share one dtype; each gradient has the shape of its parameter.
#[pyfunction(name = "sgd_update")]
fn sgd_update_py<'py>(
    py: Python<'py>,
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    lr: f64,
) -> PyResult<()> {
    const OP: &str = "sgd_update";
    if params.is_empty() {
        return Ok(());
    }
    let checked = |list: &[Bound<'py, PyAny>], name| -> PyResult<Vec<_>> {
        (list.iter())
            .map(|a| any_dims(OP, name, a).map(Some))
            .collect()
    };
    let (ps, gs) = (checked(&params, "param")?, checked(&grads, "grad")?);
    let all: Vec<&FloatArg<'_>> = ps.iter().chain(&gs).flatten().collect();
    dispatch!(common_dtype(OP, &all)?, sgd_update_t(py, &ps, &gs, lr))
}

/// The buffers of the fused training step, one set per dtype.
#[derive(Default)]
struct Scratches {
    f32: TrainScratch<f32>,
    f64: TrainScratch<f64>,
}

trait Pick: Sized {
    fn pick(s: &mut Scratches) -> &mut TrainScratch<Self>;
}

impl Pick for f32 {
    fn pick(s: &mut Scratches) -> &mut TrainScratch<f32> {
        &mut s.f32
    }
}

impl Pick for f64 {
    fn pick(s: &mut Scratches) -> &mut TrainScratch<f64> {
        &mut s.f64
    }
}

/// DenseTrainer()
///
/// Whole training steps of a dense chain with plain SGD, each in one call:
/// ``step(x, target, weights, biases, activations, grad_weights, grad_biases,
/// loss, lr)`` runs forward, the loss (a ``LossKind``), its gradient, the
/// backward pass (the gradients are *written*) and ``p -= lr * grad``, and
/// returns the mean per-sample cost. The layers' outputs live in buffers the
/// object keeps between steps; ``output()`` copies the network's output of
/// the last step. ``target``: ``(N, out)`` in the parameters' dtype, or
/// ``(N,)`` int64 class indices for the cross-entropies.
#[pyclass(name = "DenseTrainer", module = "diy_nn._core")]
#[derive(Default)]
struct DenseTrainer {
    scratch: Scratches,
    dtype: Option<super::DType>,
}

/// The layer lists of `DenseTrainer.step`: weights, biases, weight and bias gradients.
type RawLists<'a, 'py> = [&'a [Bound<'py, PyAny>]; 4];

/// One layer's arrays as `T` ndarrays of their dimensions.
struct TypedLayer<'a, 'py, T: numpy::Element> {
    w: &'a Bound<'py, PyArray2<T>>,
    b: Option<&'a Bound<'py, PyArray1<T>>>,
    gw: &'a Bound<'py, PyArray2<T>>,
    gb: Option<&'a Bound<'py, PyArray1<T>>>,
}

/// The arrays of one step as `T` ndarrays of their dimensions: what the
/// `FloatArg` checks (float dtype, dimensions, one dtype for all) establish,
/// in one typed cast each. The checks then run only to name a failing
/// argument. One cast per array, kept in per-layer vectors, keeps the binding's
/// own cost per step small beside the small models' kernels; what remains is
/// mostly numpy's borrow bookkeeping, about 0.1 µs an array.
struct Typed<'a, 'py, T: numpy::Element> {
    x: &'a Bound<'py, PyArray2<T>>,
    layers: Vec<TypedLayer<'a, 'py, T>>,
}

impl<'a, 'py, T: numpy::Element> Typed<'a, 'py, T> {
    /// None if some array is not a `T` ndarray of its dimensions. `lists`:
    /// weights, biases, weight and bias gradients, one entry per layer
    /// (checked by the caller).
    fn cast(x: &'a Bound<'py, PyAny>, lists: RawLists<'a, 'py>) -> Option<Self> {
        let [weights, biases, grad_w, grad_b] = lists;
        let vector = |b: &'a Bound<'py, PyAny>| {
            if b.is_none() {
                Some(None)
            } else {
                b.cast::<PyArray1<T>>().ok().map(Some)
            }
        };
        let layers = (weights.iter().zip(biases))
            .zip(grad_w.iter().zip(grad_b))
            .map(|((w, b), (gw, gb))| {
                Some(TypedLayer {
                    w: w.cast::<PyArray2<T>>().ok()?,
                    b: vector(b)?,
                    gw: gw.cast::<PyArray2<T>>().ok()?,
                    gb: vector(gb)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Typed {
            x: x.cast::<PyArray2<T>>().ok()?,
            layers,
        })
    }
}

/// One layer's borrows: parameters and gradients, all written.
struct LayerBorrow<'py, T: numpy::Element> {
    w: PyReadwriteArray<'py, T, Ix2>,
    b: Option<PyReadwriteArray<'py, T, Ix1>>,
    gw: PyReadwriteArray<'py, T, Ix2>,
    gb: Option<PyReadwriteArray<'py, T, Ix1>>,
}

fn train_step_t<'py, T: Exp + Pick + numpy::Element>(
    py: Python<'py>,
    scratch: &mut Scratches,
    arrays: &Typed<'_, 'py, T>,
    target: &Bound<'py, PyAny>,
    acts: &[Activation],
    loss: LossKind,
    lr: f64,
) -> PyResult<f64> {
    const OP: &str = "DenseTrainer.step";
    let index = target
        .cast::<numpy::PyUntypedArray>()
        .map(|a| numpy::PyUntypedArrayMethods::ndim(a) == 1)
        .unwrap_or(false);
    let (t_idx, t_prob) = if index {
        let t = int64_arg::<Ix1>(OP, "target", target, "(N,) of class indices")?;
        (Some(t), None)
    } else {
        let p = match target.cast::<PyArray2<T>>() {
            Ok(p) => p,
            Err(_) => {
                // Not x's dtype, or not a 2-D float array: the checks say which.
                let p = FloatArg::new(OP, "target", target, 2, "(N, out)")?;
                let x = FloatArg::new(OP, "x", arrays.x.as_any(), 2, "(N, in)")?;
                common_dtype(OP, &[&x, &p])?;
                return Err(PyTypeError::new_err(format!(
                    "{OP}: target must be a 2-D array of x's dtype"
                )));
            }
        };
        (None, Some(readonly(OP, "target", p)?))
    };
    let x = readonly(OP, "x", arrays.x)?;
    let optional =
        |b: Option<&Bound<'py, PyArray1<T>>>, name| b.map(|b| readwrite(OP, name, b)).transpose();
    let mut borrows = (arrays.layers.iter())
        .map(|l| {
            Ok(LayerBorrow {
                w: readwrite(OP, "weight", l.w)?,
                b: optional(l.b, "bias")?,
                gw: readwrite(OP, "grad_weight", l.gw)?,
                gb: optional(l.gb, "grad_bias")?,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut layers: Vec<TrainLayer<'_, T>> = borrows
        .iter_mut()
        .zip(acts)
        .map(|(l, &act)| TrainLayer {
            w: l.w.as_array_mut(),
            b: l.b.as_mut().map(|b| b.as_array_mut()),
            gw: l.gw.as_array_mut(),
            gb: l.gb.as_mut().map(|b| b.as_array_mut()),
            act,
        })
        .collect();
    let target = match (&t_idx, &t_prob) {
        (Some(t), _) => Target::Index(t.as_array()),
        (_, Some(p)) => Target::Prob(p.as_array()),
        _ => unreachable!("one of the two"),
    };
    let x = x.as_array();
    let lr = T::from_f64(lr).expect("a float converts");
    let scratch = T::pick(scratch);
    let mean = py.detach(|| fused::dense_train_step(x, target, loss, &mut layers, lr, scratch))?;
    Ok(mean)
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
        lr: f64,
    ) -> PyResult<f64> {
        const OP: &str = "DenseTrainer.step";
        let counts = [
            ("activations", activations.len()),
            ("biases", biases.len()),
            ("grad_weights", grad_weights.len()),
            ("grad_biases", grad_biases.len()),
        ];
        check_counts(OP, weights.len(), &counts)?;
        let acts = activations;
        if !lr.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{OP}: lr must be a finite number, got {lr}"
            )));
        }
        let lists = [&weights[..], &biases, &grad_weights, &grad_biases];
        let f32s = Typed::<f32>::cast(x, lists);
        let f64s = f32s
            .is_none()
            .then(|| Typed::<f64>::cast(x, lists))
            .flatten();
        if f32s.is_none() && f64s.is_none() {
            // Some array does not fit: the checks name it.
            let x = FloatArg::new(OP, "x", x, 2, "(N, in)")?;
            Lists::new(OP, lists, &[&x])?;
            return Err(PyTypeError::new_err(format!(
                "{OP}: every array must be a float32 or float64 ndarray of one dtype"
            )));
        }
        self.dtype = None;
        let scratch = &mut self.scratch;
        let (dtype, mean) = match (f32s, f64s) {
            (Some(arrays), _) => (
                DType::F32,
                train_step_t(py, scratch, &arrays, target, &acts, loss, lr)?,
            ),
            (_, Some(arrays)) => (
                DType::F64,
                train_step_t(py, scratch, &arrays, target, &acts, loss, lr)?,
            ),
            (None, None) => unreachable!("handled above"),
        };
        self.dtype = Some(dtype);
        Ok(mean)
    }

    /// output() -> ndarray | None
    ///
    /// A copy of the network's output in the last successful step.
    fn output<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        match self.dtype? {
            super::DType::F32 => self
                .scratch
                .f32
                .output()
                .map(|y| y.to_owned().into_pyarray(py).into_any()),
            super::DType::F64 => self
                .scratch
                .f64
                .output()
                .map(|y| y.to_owned().into_pyarray(py).into_any()),
        }
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
        let (kind, p): (Kind, Vec<f64>) = match obj.extract::<Kind>() {
            Ok(kind) => (kind, vec![]),
            Err(_) => obj
                .extract::<(Kind, f64)>()
                .map(|(k, a)| (k, vec![a]))
                .or_else(|_| {
                    let bad = || {
                        PyTypeError::new_err(format!(
                            "expected an Activation or a tuple (Activation, parameters...), got {}",
                            obj.repr().map(|r| r.to_string()).unwrap_or_default()
                        ))
                    };
                    obj.extract::<(Kind, f64, f64)>()
                        .map(|(k, a, b)| (k, vec![a, b]))
                        .map_err(|_| bad())
                })?,
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
    let ndim = obj
        .cast::<numpy::PyUntypedArray>()
        .map(numpy::PyUntypedArrayMethods::ndim);
    FloatArg::new(op, name, obj, ndim.unwrap_or(0), "(the parameter's shape)")
}

fn activation_t<'py, T: Exp + numpy::Element>(
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
fn activation_py(py: Python<'_>, x: &Bound<'_, PyAny>, act: Activation) -> PyResult<Py<PyAny>> {
    let x = any_dims("activation", "x", x)?;
    Ok(dispatch!(x.dtype, activation_t(py, act, &x, None))?.unbind())
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
    dispatch!(
        common_dtype(OP, &[&x, &delta])?,
        activation_t(py, act, &x, Some(&delta))
    )
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
    m.add_function(wrap_pyfunction!(sgd_update_py, m)?)?;
    m.add_class::<DenseTrainer>()?;
    m.add_class::<Kind>()?;
    m.add_function(wrap_pyfunction!(activation_py, m)?)?;
    m.add_function(wrap_pyfunction!(activation_backward_py, m)?)?;
    m.add_class::<LossKind>()?;
    Ok(())
}
