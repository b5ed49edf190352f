//! The element types the kernels are written for.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point element: `f32` or `f64`.
///
/// Kernels are generic over this trait; the dtype is chosen once, at the
/// Python boundary.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Debug
    + Default
    + Send
    + Sync
    + 'static
{
    /// The numpy name of the type, for error messages.
    const NAME: &'static str;
}

impl Float for f32 {
    const NAME: &'static str = "float32";
}

impl Float for f64 {
    const NAME: &'static str = "float64";
}

#[cfg(test)]
use ndarray::{Array, Dimension, ShapeBuilder};

/// Asserts one shape and every `|a - b| <= tol·(1 + |b|)`: the tests' check
/// of a kernel against its straightforward loops.
#[cfg(test)]
pub(crate) fn assert_close<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (p, q) in a.iter().zip(b) {
        assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{p} vs {q}");
    }
}

/// An array of `shape` filled with `sin(0.618·i + seed)`, `i = 1, 2, ...` in
/// logical order: the tests' inputs.
#[cfg(test)]
pub(crate) fn filled<Sh: ShapeBuilder>(shape: Sh, seed: f64) -> Array<f64, Sh::Dim> {
    let mut i = 0.0;
    Array::from_shape_simple_fn(shape, || {
        i += 1.0;
        (i * 0.618 + seed).sin()
    })
}

/// An `(r, c)` array of `sin(0.37·(7i + 3j) + seed) / 2`: the products' test inputs.
#[cfg(test)]
pub(crate) fn seq<T: Float>(r: usize, c: usize, seed: f64) -> ndarray::Array2<T> {
    let v = |i: usize, j: usize| ((i * 7 + j * 3) as f64 * 0.37 + seed).sin() * 0.5;
    ndarray::Array2::from_shape_fn((r, c), |(i, j)| T::from_f64(v(i, j)).expect("a float"))
}
