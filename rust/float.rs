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
