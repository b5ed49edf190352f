//! Elementwise activations and their derivatives, in place on contiguous
//! slices.
//!
//! Reference, for an input `x` and output `y = f(x)`:
//!
//! | activation | `f(x)`               | `f'(x)`, from `y`      |
//! |------------|----------------------|------------------------|
//! | identity   | `x`                  | `1`                    |
//! | tanh       | `tanh x`             | `1 - y²`               |
//! | sigmoid    | `1 / (1 + e^-x)`     | `y (1 - y)`            |
//! | ReLU       | `max(x, 0)`, NaN kept| `0` where `y <= 0`, else `1` |
//!
//! The derivatives are written in terms of the output, so a backward pass
//! needs only what the forward pass kept. NaN propagates through every one
//! (torch's convention, also for ReLU's derivative: NaN is not `<= 0`). The
//! elementary functions come from [`crate::math`].

use crate::float::Float;
use crate::math::Math;
use crate::simd::multiversion;

/// An activation after a linear layer; `_core.Activation` in Python.
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(eq, eq_int, frozen, hash, from_py_object, module = "diy_nn._core")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    TanH,
    Sigmoid,
    ReLU,
}

impl Activation {
    /// `v = f(v)`, in place.
    pub fn forward<T: Math>(self, v: &mut [T]) {
        match self {
            Activation::Identity => {}
            Activation::TanH => T::tanh_slice(v),
            Activation::Sigmoid => T::sigmoid_slice(v),
            Activation::ReLU => relu_slice(v),
        }
    }

    /// `f'(x)` computed from the output `y = f(x)`: `1 - y²`, `y (1 - y)`, `[!(y <= 0)]`.
    #[inline(always)]
    pub fn derivative<T: Float>(self, y: T) -> T {
        let one = T::one();
        match self {
            Activation::Identity => one,
            Activation::TanH => one - y * y,
            Activation::Sigmoid => y * (one - y),
            Activation::ReLU => {
                if y <= T::zero() {
                    T::zero()
                } else {
                    one
                }
            }
        }
    }

    /// `d *= f'(x)` where `y = f(x)` is the forward output, in place.
    pub fn backward<T: Float>(self, y: &[T], d: &mut [T]) {
        if self != Activation::Identity {
            backward_slice(self, y, d);
        }
    }
}

multiversion! {
    /// `max(v, 0)` in place, NaN kept.
    fn relu_slice<T: Float>(v: &mut [T]) {
        v.iter_mut().for_each(|x| {
            if *x < T::zero() {
                *x = T::zero();
            }
        });
    }
}

multiversion! {
    /// [`Activation::backward`], vectorized.
    fn backward_slice<T: Float>(act: Activation, y: &[T], d: &mut [T]) {
        let pairs = d.iter_mut().zip(y);
        match act {
            Activation::Identity => {}
            Activation::TanH => pairs.for_each(|(d, &y)| *d *= Activation::TanH.derivative(y)),
            Activation::Sigmoid => {
                pairs.for_each(|(d, &y)| *d *= Activation::Sigmoid.derivative(y))
            }
            Activation::ReLU => pairs.for_each(|(d, &y)| *d *= Activation::ReLU.derivative(y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_derivatives_from_outputs() {
        let y = [0.5_f64, -0.5, 0.0];
        let mut d = [2.0, 2.0, 2.0];
        Activation::TanH.backward(&y, &mut d);
        assert_eq!(d, [1.5, 1.5, 2.0]);
        let mut d = [1.0, 1.0, 1.0];
        Activation::Sigmoid.backward(&y, &mut d);
        assert_eq!(d, [0.25, -0.75, 0.0]);
        let mut d = [1.0, 1.0, 1.0];
        Activation::ReLU.backward(&y, &mut d);
        assert_eq!(d, [1.0, 0.0, 0.0]);
        for act in [
            Activation::Identity,
            Activation::TanH,
            Activation::Sigmoid,
            Activation::ReLU,
        ] {
            let mut v = [-1.0_f32, 0.0, 2.0, f32::NAN];
            act.forward(&mut v);
            assert!(v[3].is_nan(), "{act:?}");
            let mut v = [f64::NAN];
            act.forward(&mut v);
            assert!(v[0].is_nan(), "{act:?}");
        }
        let mut v = [-1.0_f64, -0.0, 2.0];
        Activation::ReLU.forward(&mut v);
        assert_eq!(v, [0.0, 0.0, 2.0]);
    }
}
