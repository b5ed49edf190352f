//! PyO3 bindings: the thin layer between numpy arrays and the kernels.
//!
//! Each binding (1) checks that every argument is a float32 or float64
//! ndarray of the right number of dimensions, with one dtype for all of them,
//! raising `TypeError`/`ValueError` that name the argument otherwise; (2) takes
//! stride-aware views (any layout works: C, Fortran, sliced, reversed);
//! (3) runs the kernel with the GIL released; (4) hands the result to numpy
//! without a copy. Kernel errors become `diy_nn.ShapeError` (a `ValueError`).

use ndarray::{Array, Dimension};
use numpy::{
    Element, IntoPyArray, PyArray, PyArrayDescr, PyArrayDescrMethods, PyArrayMethods,
    PyReadonlyArray, PyReadwriteArray, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::error::{fmt_shape, KernelError};

mod conv;
mod fused;
mod linalg;
mod optim;
mod pool;
mod softmax;

create_exception!(
    _core,
    ShapeError,
    PyValueError,
    "An array argument has a shape (or size) the operation cannot take."
);

impl From<KernelError> for PyErr {
    fn from(e: KernelError) -> PyErr {
        ShapeError::new_err(e.to_string())
    }
}

/// The element type chosen at the boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DType {
    F32,
    F64,
}

/// Runs `$body` with the type `$t` set to `f32` or `f64`, as `$dtype` says.
macro_rules! dispatch {
    ($dtype:expr, |$t:ident| $body:block) => {
        match $dtype {
            $crate::python::DType::F32 => {
                type $t = f32;
                $body
            }
            $crate::python::DType::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// An array argument that passed the checks: its untyped handle and dtype.
pub(crate) struct FloatArg<'py> {
    pub array: Bound<'py, PyUntypedArray>,
    pub dtype: DType,
    pub name: &'static str,
    pub op: &'static str,
}

/// Checks that `obj` is an ndarray whose dtype `kind` takes (`want` names
/// the dtypes it takes) with `ndim` dimensions (None: any); `expected`
/// describes the shape for the error message, e.g. `"(N, in)"`.
pub(crate) fn array_arg<'py, K>(
    (op, name): (&str, &str),
    obj: &Bound<'py, PyAny>,
    (ndim, expected): (Option<usize>, &str),
    want: &dyn std::fmt::Display,
    kind: impl FnOnce(&Bound<'py, PyArrayDescr>) -> Option<K>,
) -> PyResult<(Bound<'py, PyUntypedArray>, K)> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let ty = type_name(obj);
        PyTypeError::new_err(format!(
            "{op}: {name} must be a numpy.ndarray of {want}, got {ty}"
        ))
    })?;
    let dtype = array.dtype();
    let Some(kind) = kind(&dtype) else {
        let msg = format!("{op}: {name} must have dtype {want}, got {dtype}");
        return Err(PyTypeError::new_err(msg));
    };
    match ndim {
        Some(ndim) if array.ndim() != ndim => Err(ShapeError::new_err(format!(
            "{op}: {name} must have {ndim} dimensions {expected}, got shape {}",
            fmt_shape(array.shape())
        ))),
        _ => Ok((array.clone(), kind)),
    }
}

impl<'py> FloatArg<'py> {
    /// Checks that `obj` is a float32/float64 ndarray with `ndim` dimensions
    /// (None: any); `expected` describes the shape for the error message.
    pub fn new(
        op: &'static str,
        name: &'static str,
        obj: &Bound<'py, PyAny>,
        ndim: impl Into<Option<usize>>,
        expected: &str,
    ) -> PyResult<Self> {
        let py = obj.py();
        let dims = (ndim.into(), expected);
        let (array, dtype) = array_arg((op, name), obj, dims, &"float32 or float64", |d| {
            let is = |t: Bound<'py, PyArrayDescr>| d.is_equiv_to(&t);
            (is(numpy::dtype::<f32>(py)).then_some(DType::F32))
                .or_else(|| is(numpy::dtype::<f64>(py)).then_some(DType::F64))
        })?;
        Ok(FloatArg {
            array,
            dtype,
            name,
            op,
        })
    }

    /// A read-only, stride-aware borrow as `T` with dimension `D`.
    pub fn readonly<T: Element, D: Dimension>(&self) -> PyResult<PyReadonlyArray<'py, T, D>> {
        readonly(self.op, self.name, self.array.cast::<PyArray<T, D>>()?)
    }

    /// A writeable borrow; fails if the array is read-only or overlaps another argument.
    pub fn readwrite<T: Element, D: Dimension>(&self) -> PyResult<PyReadwriteArray<'py, T, D>> {
        readwrite(self.op, self.name, self.array.cast::<PyArray<T, D>>()?)
    }
}

/// The `ndim` of a [`FloatArg`] that may have any number of dimensions.
pub(crate) const ANY: Option<usize> = None;

/// An optional float argument: None (or Python's None) is absent.
pub(crate) fn optional<'py>(
    op: &'static str,
    name: &'static str,
    obj: Option<&Bound<'py, PyAny>>,
    expected: &str,
) -> PyResult<Option<FloatArg<'py>>> {
    (obj.filter(|b| !b.is_none()))
        .map(|b| FloatArg::new(op, name, b, 1, expected))
        .transpose()
}

/// [`FloatArg::readonly`] of an array already typed.
pub(crate) fn readonly<'py, T: Element, D: Dimension>(
    op: &str,
    name: &str,
    array: &Bound<'py, PyArray<T, D>>,
) -> PyResult<PyReadonlyArray<'py, T, D>> {
    array.try_readonly().map_err(|_| {
        PyValueError::new_err(format!(
            "{op}: {name} overlaps the output being written; pass a separate array"
        ))
    })
}

/// [`FloatArg::readwrite`] of an array already typed.
pub(crate) fn readwrite<'py, T: Element, D: Dimension>(
    op: &str,
    name: &str,
    array: &Bound<'py, PyArray<T, D>>,
) -> PyResult<PyReadwriteArray<'py, T, D>> {
    array.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "{op}: {name} must be a writeable array that overlaps no other argument ({e})"
        ))
    })
}

/// An array handed to Python.
pub(crate) fn one<'py, T: Element, D: Dimension>(
    a: Array<T, D>,
    py: Python<'py>,
) -> Bound<'py, PyAny> {
    a.into_pyarray(py).into_any()
}

/// The name of `obj`'s type, for error messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    (obj.get_type().name()).map_or_else(|_| "?".into(), |n| n.to_string())
}

/// `repr(obj)`, for error messages.
pub(crate) fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map_or_else(|_| "?".into(), |r| r.to_string())
}

/// An integer argument as Python passed it: its value, or a description of
/// what came instead. Extraction never fails, so that the binding can raise
/// an error naming the argument (PyO3's own says only "'float' object cannot
/// be interpreted as an integer", and an `OverflowError` for ints beyond i64).
pub(crate) struct Int(Result<i64, (bool, String)>);

impl Int {
    /// A default value.
    pub(crate) const fn of(v: i64) -> Self {
        Int(Ok(v))
    }

    /// The value; a `TypeError` (not an int) or `ShapeError` (beyond i64)
    /// naming `op`, `name`, the expected and the given value otherwise.
    pub(crate) fn get(&self, op: &str, name: &str, min: i64) -> PyResult<i64> {
        match &self.0 {
            Ok(v) => Ok(*v),
            Err((true, repr)) => Err(ShapeError::new_err(format!(
                "{op}: {name} must be an int >= {min} that fits in 64 bits, got {repr}"
            ))),
            Err((false, what)) => Err(PyTypeError::new_err(format!(
                "{op}: {name} must be an int >= {min}, got {what}"
            ))),
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Int(Ok(v)));
        }
        let repr = repr(&obj);
        let is_int = obj.is_instance_of::<PyInt>();
        let what = if is_int {
            repr
        } else {
            format!("{} {repr}", type_name(&obj))
        };
        Ok(Int(Err((is_int, what))))
    }
}

/// The one dtype shared by all `args`; a `TypeError` names the odd one out.
pub(crate) fn common_dtype<'a, 'py: 'a>(
    op: &'static str,
    args: impl IntoIterator<Item = &'a FloatArg<'py>>,
) -> PyResult<DType> {
    let mut args = args.into_iter();
    let first = args.next().expect("an argument");
    match args.find(|other| other.dtype != first.dtype) {
        None => Ok(first.dtype),
        Some(other) => Err(PyTypeError::new_err(format!(
            "{op}: all arrays must have the same dtype, but {} is {} and {} is {}",
            first.name,
            first.array.dtype(),
            other.name,
            other.array.dtype()
        ))),
    }
}

/// Sets the number of threads the kernels use: 0 = the default
/// (`RAYON_NUM_THREADS`, else the cores the process may use), at most 1024
/// (`ValueError` above). Cheap: the threads start at the next parallel kernel.
#[pyfunction]
fn set_num_threads(n: Int) -> PyResult<()> {
    let n = n.get("set_num_threads", "n", 0)?;
    let msg = |n| format!("set_num_threads: n must be >= 0 (0 = default), got {n}");
    let n = usize::try_from(n).map_err(|_| PyValueError::new_err(msg(n)))?;
    crate::threads::set_num_threads(n).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The number of threads the kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    crate::threads::num_threads()
}

/// Whether this extension was compiled with debug assertions, i.e. without the
/// release profile (`maturin develop --profile dev`): its kernels run tens of times slower.
#[pyfunction]
fn debug_build() -> bool {
    cfg!(debug_assertions)
}

/// The extension module `diy_nn._core`.
#[pymodule]
mod _core {
    #[pymodule_export]
    use super::{
        conv::{
            conv1d_backward_input_py, conv1d_backward_weight_py, conv1d_maxpool_backward_py,
            conv1d_maxpool_py, conv1d_py, conv2d_backward_input_py, conv2d_backward_weight_py,
            conv2d_maxpool_backward_py, conv2d_maxpool_py, conv2d_py,
        },
        debug_build,
        fused::{
            activation_backward_py, activation_py, dense_backward_py, dense_forward_py,
            DenseTrainer, Kind,
        },
        get_num_threads,
        linalg::{addmm_py, linear_py, matmul_py},
        optim::optim_update_py,
        pool::{
            avg_pool1d_backward_py, avg_pool1d_py, avg_pool2d_backward_py, avg_pool2d_py,
            max_pool1d_backward_py, max_pool1d_py, max_pool2d_backward_py, max_pool2d_py,
        },
        set_num_threads,
        softmax::{
            cross_entropy, cross_entropy_backward, log_softmax, log_softmax_backward, softmax,
            softmax_backward,
        },
    };
    #[pymodule_export]
    use crate::{loss::LossKind, optim::Rule};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("ShapeError", m.py().get_type::<super::ShapeError>())
    }
}
