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
//! | LeakyReLU  | `x` where `x > 0`, else `a·x` | `1` where `y > 0`, else `a` (`a >= 0`) |
//! | softplus   | `ln(1 + e^{βx}) / β`; `x` where `βx > t` | `σ(βx) = 1 - e^{-βy}`; `1` where `βy > t` |
//!
//! The derivatives are written in terms of the output, so a backward pass
//! needs only what the forward pass kept. Two read the output only under a
//! condition: LeakyReLU's when `a >= 0` (else a positive `y` comes from either
//! side of 0), softplus's to within `e^{-t}` (an output just above `t/β` comes
//! from the identity side or the soft side). [`backward_at_input`] reads the
//! input instead and is exact for all. NaN propagates through every one
//! (torch's convention, also for ReLU's derivative: NaN is not `<= 0`). The
//! elementary functions come from [`crate::math`].

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::math::Math;
use crate::simd::{multiversion, per_lanes};
use crate::threads;

/// Elements from which a slice splits across the kernels' threads (some
/// 10 µs of one core's work; `f32`, AVX2: [`per_lanes`]), weighted by [`Activation::runs`].
const SPLIT_MIN_WORK: usize = 128 * 1024;

/// An activation after a linear layer (`_core.Activation` in Python, with its
/// parameters in a tuple).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    TanH,
    Sigmoid,
    ReLU,
    /// `x` where `x > 0`, else `slope·x`.
    LeakyReLU {
        slope: f64,
    },
    /// `ln(1 + e^{beta·x}) / beta`, and `x` where `beta·x > threshold`.
    Softplus {
        beta: f64,
        threshold: f64,
    },
}

/// `v` in `T`.
fn cast<T: Float>(v: f64) -> T {
    T::from_f64(v).expect("a float converts")
}

impl Activation {
    /// `v = f(v)`, in place; a long slice in one run per thread.
    pub fn forward<T: Math>(self, v: &mut [T]) {
        if self != Activation::Identity {
            let (len, parts) = self.runs::<T>(v.len());
            threads::par_items(v.chunks_mut(len), parts, |_, v| forward_slice(self, v));
        }
    }

    /// Run length and count for `n` elements: one run per thread from
    /// [`SPLIT_MIN_WORK`]; an elementary function weighs ~16 selects.
    fn runs<T>(self, n: usize) -> (usize, usize) {
        let exp = matches!(
            self,
            Activation::TanH | Activation::Sigmoid | Activation::Softplus { .. }
        );
        let work = if exp { 16 * n } else { n };
        let split = cfg!(feature = "multi-threads") && work >= per_lanes::<T>(SPLIT_MIN_WORK);
        let parts = threads::parts(split);
        (n.div_ceil(parts).next_multiple_of(64).max(1), parts)
    }

    /// `f'(x)` computed from the output `y = f(x)` (see the module doc).
    #[inline(always)]
    pub fn derivative<T: Math>(self, y: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            Activation::Identity => one,
            Activation::TanH => one - y * y,
            Activation::Sigmoid => y * (one - y),
            Activation::ReLU => match y <= zero {
                true => zero,
                false => one,
            },
            Activation::LeakyReLU { slope } => match y > zero {
                true => one,
                false if y.is_nan() => y,
                false => cast(slope),
            },
            Activation::Softplus { beta, threshold } => {
                // 1 - e^{-s} = tanh(s/2)·(1 + e^{-s}): no cancellation near 0.
                let s = y * cast(beta);
                let half = cast::<T>(0.5);
                match s > cast(threshold) {
                    true => one,
                    false => (s * half).tanh_() * (one + (-s).exp_()),
                }
            }
        }
    }

    /// `d *= f'(x)` where `y = f(x)` is the forward output, in place; a long
    /// slice in one run per thread.
    pub fn backward<T: Math>(self, y: &[T], d: &mut [T]) {
        if self != Activation::Identity {
            let (len, parts) = self.runs::<T>(d.len());
            let runs = y.chunks(len).zip(d.chunks_mut(len));
            threads::par_items(runs, parts, |_, (y, d)| backward_slice(self, y, d));
        }
    }
}

multiversion! {
    /// [`Activation::forward`], vectorized: one loop per activation.
    fn forward_slice<T: Math>(act: Activation, v: &mut [T]) {
        let zero = T::zero();
        match act {
            Activation::Identity => {}
            Activation::TanH => v.iter_mut().for_each(|x| *x = x.tanh_()),
            Activation::Sigmoid => v.iter_mut().for_each(|x| *x = x.sigmoid()),
            // `max(v, 0)`, NaN kept.
            Activation::ReLU => v.iter_mut().for_each(|x| {
                if *x < zero {
                    *x = zero;
                }
            }),
            Activation::LeakyReLU { slope } => {
                let slope: T = cast(slope);
                v.iter_mut().for_each(|x| {
                    if *x <= zero {
                        *x *= slope;
                    }
                })
            }
            Activation::Softplus { beta, threshold } => {
                let (beta, threshold): (T, T) = (cast(beta), cast(threshold));
                v.iter_mut().for_each(|x| {
                    let bx = *x * beta;
                    if bx <= threshold {
                        *x = bx.softplus() / beta;
                    }
                })
            }
        }
    }
}

multiversion! {
    /// [`Activation::backward`], vectorized: one loop per activation.
    fn backward_slice<T: Math>(act: Activation, y: &[T], d: &mut [T]) {
        let pairs = d.iter_mut().zip(y);
        match act {
            Activation::TanH => pairs.for_each(|(d, &y)| *d *= Activation::TanH.derivative(y)),
            Activation::Sigmoid => {
                pairs.for_each(|(d, &y)| *d *= Activation::Sigmoid.derivative(y))
            }
            // A select, not a product: 0 where y <= 0 even for an infinite or NaN δ (torch).
            Activation::ReLU => pairs.for_each(|(d, &y)| {
                if y <= T::zero() {
                    *d = T::zero();
                }
            }),
            act => pairs.for_each(|(d, &y)| *d *= act.derivative(y)),
        }
    }
}

/// `f(x)`, elementwise, as a new array of any shape.
pub fn forward_array<T: Math>(act: Activation, x: ArrayViewD<'_, T>) -> ArrayD<T> {
    let mut y = x.as_standard_layout().into_owned();
    act.forward(y.as_slice_mut().expect("standard layout"));
    y
}

/// `delta ⊙ f'(x)` from the input `x` (any shape, that of `delta`): exact for
/// every activation (the module doc says where the output would not be).
pub fn backward_at_input<T: Math>(
    act: Activation,
    x: ArrayViewD<'_, T>,
    delta: ArrayViewD<'_, T>,
) -> Result<ArrayD<T>, KernelError> {
    if x.shape() != delta.shape() {
        let (want, got) = (fmt_shape(x.shape()), fmt_shape(delta.shape()));
        let op = "activation_backward";
        return Err(KernelError::shape(op, "delta", want, got));
    }
    let zip = Zip::from(&x).and(&delta);
    // One pass that writes the result: memory-bound, plain loops suffice.
    Ok(match act {
        // A select, not a product: 0 where x <= 0 even for an infinite or NaN δ (torch).
        Activation::ReLU => zip.map_collect(|&x, &d| if x <= T::zero() { T::zero() } else { d }),
        Activation::Softplus { beta, threshold } => {
            let (beta, threshold) = (cast::<T>(beta), cast::<T>(threshold));
            zip.map_collect(|&x, &d| match x * beta {
                bx if bx > threshold => d,
                bx => d * bx.sigmoid(),
            })
        }
        // The forward loop (vectorized), then the derivative read on its output:
        // exact, as the output is the rounded f(x) the derivative formula takes.
        Activation::TanH | Activation::Sigmoid => {
            let y = forward_array(act, x);
            let mut d = delta.as_standard_layout().into_owned();
            let layout = "standard layout";
            act.backward(y.as_slice().expect(layout), d.as_slice_mut().expect(layout));
            d
        }
        // LeakyReLU's rule reads the same on the input as on the output.
        Activation::Identity | Activation::LeakyReLU { .. } => {
            zip.map_collect(|&x, &d| d * act.derivative(x))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Activation::{Identity, ReLU, Sigmoid, TanH};
    use super::*;

    const LEAKY: Activation = Activation::LeakyReLU { slope: 0.1 };
    const SOFTPLUS: Activation = Activation::Softplus {
        beta: 2.0,
        threshold: 20.0,
    };

    #[test]
    fn forward_and_derivatives_from_outputs() {
        let y = [0.5_f64, -0.5, 0.0];
        for (act, d0, want) in [
            (Activation::TanH, 2.0, [1.5, 1.5, 2.0]),
            (Activation::Sigmoid, 1.0, [0.25, -0.75, 0.0]),
            (Activation::ReLU, 1.0, [1.0, 0.0, 0.0]),
            (LEAKY, 1.0, [1.0, 0.1, 0.1]),
        ] {
            let mut d = [d0; 3];
            act.backward(&y, &mut d);
            assert_eq!(d, want, "{act:?}");
        }
        for act in [Identity, TanH, Sigmoid, ReLU, LEAKY, SOFTPLUS] {
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

    /// Softplus and LeakyReLU against their formulas in `f64`, on both sides
    /// of the threshold and of 0, with the derivatives from the output and
    /// from the input (the torch parity tests cover `f32` and special values).
    #[test]
    fn softplus_and_leaky_relu_match_their_formulas() {
        let xs: Vec<f64> = (0..301).map(|i| -40.0 + i as f64 * 0.27).collect();
        let x = ndarray::ArrayView1::from(&xs).into_dyn();
        let ones = ndarray::ArrayD::from_elem(x.raw_dim(), 1.0);
        let y = forward_array(SOFTPLUS, x.view());
        let at_input = backward_at_input(SOFTPLUS, x.view(), ones.view()).unwrap();
        let mut from_output = vec![1.0; xs.len()];
        SOFTPLUS.backward(y.as_slice().unwrap(), &mut from_output);
        let leaky = forward_array(LEAKY, x.view());
        let dleaky = backward_at_input(LEAKY, x.view(), ones.view()).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let (want, dwant) = match 2.0 * x > 20.0 {
                true => (x, 1.0),
                false => (
                    (2.0 * x).exp().ln_1p() / 2.0,
                    1.0 / (1.0 + (-2.0 * x).exp()),
                ),
            };
            assert!((y[i] - want).abs() <= 1e-15 * want.abs(), "{x}");
            assert!((at_input[i] - dwant).abs() <= 1e-15 * dwant, "{x}");
            assert!((from_output[i] - dwant).abs() <= 4e-15 * dwant, "{x}");
            let want = if x > 0.0 { [x, 1.0] } else { [0.1 * x, 0.1] };
            assert_eq!([leaky[i], dleaky[i]], want);
        }
        assert!(backward_at_input(SOFTPLUS, x, ones.slice(ndarray::s![..3]).into_dyn()).is_err());
    }
}
