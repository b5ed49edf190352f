//! The losses a training step ends with: the summed per-sample cost of a
//! prediction `ŷ (N, k)` against a target `y`, and `δ = d cost / d ŷ`.
//!
//! Reference (per sample, summed over the `k` outputs; `p` = softmax(ŷ)):
//!
//! | loss | cost | `δ` |
//! |------|------|-----|
//! | MSE  | `Σ (y - ŷ)²` | `2 (ŷ - y)` |
//! | MAE  | `Σ |y - ŷ|` | `sign(ŷ - y)` (0 where equal) |
//! | BCE  | `-Σ y ln ŷ + (1 - y) ln(1 - ŷ)`, logs clamped at -100 | `(ŷ - y) / max(ŷ (1 - ŷ), 1e-12)` |
//! | cross-entropy on logits | `logsumexp(ŷ)·Σy - Σ y ŷ` | `p·Σy - y` |
//! | log-softmax + NLL | `-Σ y log_softmax(ŷ)` | `p·Σy - y`, chained through log-softmax |
//!
//! The two cross-entropies also take class indices `t` (one-hot `y`), and
//! read a zero target as contributing nothing (so a `-inf` logit of a class
//! that is not the target gives a finite cost, as torch's index form does).
//! NaN in `ŷ` or `y` propagates into the cost and `δ`. The cross-entropy on
//! logits runs on the row helpers of [`softmax`].

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, CowArray, Ix1, Ix2};

use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::math::{max_nan, Math};
use crate::simd::multiversion;
use crate::softmax::{
    self, block_rows, check_rows, check_same, exp_sum, filled_by, over_rows, row_max, standard,
    sum, Exp,
};

/// The loss of a training step; `_core.LossKind` in Python.
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(eq, eq_int, frozen, hash, from_py_object, module = "diy_nn._core")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum LossKind {
    /// Squared error (`MSELoss`).
    MSE,
    /// Absolute error (`MAELoss`).
    MAE,
    /// Binary cross-entropy on probabilities (`BCELoss`).
    BCE,
    /// Cross-entropy on logits (`CELogSoftMax`).
    CrossEntropy,
    /// `log_softmax` then the negative log-likelihood (`CrossEntropyCriterion`).
    LogSoftmaxNLL,
}

/// Checks `target` against a prediction of shape `(n, k)` for `loss`.
pub fn check_target<T: Float>(
    op: &'static str,
    loss: LossKind,
    target: &Target<'_, T>,
    n: usize,
    k: usize,
) -> Result<(), KernelError> {
    let takes_indices = matches!(loss, LossKind::CrossEntropy | LossKind::LogSoftmaxNLL);
    if matches!(target, Target::Index(_)) && !takes_indices {
        return Err(KernelError::invalid(
            op,
            "class indices are a target of the cross-entropy losses only",
        ));
    }
    check_target_shape(op, n, k, target)
}

/// The summed cost of `yhat (n, k)` against `target` (checked by
/// [`check_target`]), in `f64`, each sample's cost summed in `T`; `δ` into
/// `delta` (`n·k`, row-major). `work` is a scratch buffer kept by the caller.
pub fn cost_and_delta<T: Exp>(
    loss: LossKind,
    yhat: ArrayView2<'_, T>,
    target: &Target<'_, T>,
    delta: &mut [T],
    work: &mut Vec<T>,
) -> Result<f64, KernelError> {
    let (n, k) = yhat.dim();
    let yhat = yhat.as_standard_layout();
    let ys = yhat.as_slice().expect("standard layout");
    let as_f64 = |c: T| c.to_f64().unwrap_or(f64::NAN);
    let probs = |op| match target {
        Target::Prob(y) => Ok(y.as_standard_layout()),
        Target::Index(_) => Err(KernelError::invalid(
            op,
            "class indices for an elementwise loss",
        )),
    };
    Ok(match loss {
        LossKind::MSE | LossKind::MAE | LossKind::BCE => {
            let y = probs(match loss {
                LossKind::MSE => "mse",
                LossKind::MAE => "mae",
                _ => "bce",
            })?;
            let t = y.as_slice().expect("standard layout");
            try_fit(work, n * k)?;
            let cost = &mut work[..n * k];
            match loss {
                LossKind::MSE => mse_elements(t, ys, cost, delta),
                LossKind::MAE => mae_elements(t, ys, cost, delta),
                _ => bce_elements(t, ys, cost, delta),
            }
            row_sums(cost, k)
        }
        LossKind::CrossEntropy => {
            let costs = cross_entropy(yhat.view(), target.clone())?;
            let grad = cross_entropy_backward(yhat.view(), target.clone())?;
            delta.copy_from_slice(grad.as_slice().expect("fresh array"));
            costs.iter().map(|&c| as_f64(c)).sum()
        }
        LossKind::LogSoftmaxNLL => {
            // δ = log_softmax_backward(logp, -y), the NLL's gradient `-y` chained back.
            try_fit(work, n * k)?;
            let minus_y = &mut work[..n * k];
            for (row, r) in minus_y.chunks_exact_mut(k).enumerate() {
                for (j, v) in r.iter_mut().enumerate() {
                    *v = -match target {
                        Target::Index(t) => {
                            T::from_u8(u8::from(t[row] as usize == j)).expect("0 or 1")
                        }
                        Target::Prob(p) => p[(row, j)],
                    };
                }
            }
            let minus_y = ArrayView2::from_shape((n, k), &*minus_y).expect("n·k elements");
            let logp = softmax::log_softmax(yhat.view())?;
            let grad = softmax::log_softmax_backward(logp.view(), minus_y)?;
            delta.copy_from_slice(grad.as_slice().expect("fresh array"));
            // A class of target 0 adds nothing (not 0·-inf).
            let term = |y: T, l: T| if y == T::zero() { T::zero() } else { y * l };
            let rows = minus_y.rows().into_iter().zip(logp.rows());
            rows.map(|(y, l)| {
                as_f64(
                    y.iter()
                        .zip(l)
                        .fold(T::zero(), |s, (&y, &l)| s + term(y, l)),
                )
            })
            .sum()
        }
    })
}

/// Grows `buf` to at least `len` elements, or reports that the memory is not there.
pub fn try_fit<T: Float>(buf: &mut Vec<T>, len: usize) -> Result<(), KernelError> {
    if buf.len() < len {
        buf.try_reserve_exact(len - buf.len()).map_err(|_| {
            KernelError::invalid(
                "alloc",
                format!("a buffer of {len} {} is too large to allocate", T::NAME),
            )
        })?;
        buf.resize(len, T::zero());
    }
    Ok(())
}

multiversion! {
    /// The sum over the rows of `cost (n, k)` (row-major) of each row's sum
    /// in `T` (the per-sample costs), in `f64`.
    fn row_sums<T: Math>(cost: &[T], k: usize) -> f64 {
        // A loop: `map(..).sum()` was compiled for the baseline CPU.
        let mut total = 0.0;
        for row in cost.chunks_exact(k) {
            total += sum(row).to_f64().unwrap_or(f64::NAN);
        }
        total
    }
}

multiversion! {
    /// MSE element by element on targets `t` and outputs `p`: the costs
    /// `(t - p)²` into `cost`, the gradients `2 (p - t)` into `delta`.
    fn mse_elements<T: Math>(t: &[T], p: &[T], cost: &mut [T], delta: &mut [T]) {
        let two = T::one() + T::one();
        let outs = cost.iter_mut().zip(delta.iter_mut());
        for ((&t, &p), (c, d)) in t.iter().zip(p).zip(outs) {
            let e = p - t;
            *c = e * e;
            *d = two * e;
        }
    }
}

multiversion! {
    /// MAE element by element on targets `t` and outputs `p`: the costs
    /// `|p - t|` into `cost`, the gradients `sign(p - t)` into `delta`: ±1,
    /// or `p - t` itself where it is ±0 or NaN (a select, not a branch, so
    /// that the loop vectorizes).
    fn mae_elements<T: Math>(t: &[T], p: &[T], cost: &mut [T], delta: &mut [T]) {
        let (zero, one) = (T::zero(), T::one());
        let outs = cost.iter_mut().zip(delta.iter_mut());
        for ((&t, &p), (c, d)) in t.iter().zip(p).zip(outs) {
            let e = p - t;
            let a = e.abs();
            *c = a;
            *d = if a > zero { one.copysign(e) } else { e };
        }
    }
}

multiversion! {
    /// BCE element by element on row-major `(n, k)` targets `t` and outputs
    /// `p`: the costs into `cost`, the gradients into `delta`.
    fn bce_elements<T: Math>(t: &[T], p: &[T], cost: &mut [T], delta: &mut [T]) {
        let one = T::one();
        let floor = T::from_f64(1e-12).expect("a float");
        let outs = cost.iter_mut().zip(delta.iter_mut());
        for ((&t, &p), (c, d)) in t.iter().zip(p).zip(outs) {
            *c = -(t * p.ln_clamped() + (one - t) * (one - p).ln_clamped());
            *d = (p - t) / max_nan(p * (one - p), floor);
        }
    }
}

/// The target of a cross-entropy: class indices or probabilities.
#[derive(Clone, Debug)]
pub enum Target<'a, T> {
    /// `(N,)` class indices in `[0, k)`.
    Index(ArrayView1<'a, i64>),
    /// `(N, k)` probabilities (one-hot or soft labels).
    Prob(ArrayView2<'a, T>),
}

/// Checks a cross-entropy target against logits of shape `(n, k)`.
fn check_target_shape<T: Float>(
    op: &'static str,
    n: usize,
    k: usize,
    target: &Target<'_, T>,
) -> Result<(), KernelError> {
    check_rows(op, n, k)?;
    match target {
        Target::Index(t) => {
            if t.len() != n {
                return Err(KernelError::shape(
                    op,
                    "target",
                    format!("({n},) class indices to match logits ({n}, {k})"),
                    fmt_shape(t.shape()),
                ));
            }
            if let Some((i, &bad)) = t
                .iter()
                .enumerate()
                .find(|(_, &c)| c < 0 || c as usize >= k)
            {
                return Err(KernelError::invalid(
                    op,
                    format!("target[{i}] = {bad} is not a class index in [0, {k})"),
                ));
            }
        }
        Target::Prob(p) => check_same(op, "target", "logits", p.shape(), &[n, k])?,
    }
    Ok(())
}

/// `f(x, t, p)` on logits and a cross-entropy target checked against each
/// other, in row-major order: class indices `t` or probabilities `p`, the
/// other one empty.
fn on_rows<T: Float, R>(
    op: &'static str,
    logits: ArrayView2<'_, T>,
    target: &Target<'_, T>,
    f: impl FnOnce(&[T], &[i64], &[T]) -> Result<R, KernelError>,
) -> Result<R, KernelError> {
    let (n, k) = logits.dim();
    check_target_shape(op, n, k, target)?;
    let x = standard(op, "the logits", &logits)?;
    let (t, p): (CowArray<'_, i64, Ix1>, CowArray<'_, T, Ix2>) = match target {
        Target::Index(t) => (t.as_standard_layout(), Array2::zeros((0, 0)).into()),
        Target::Prob(p) => (Array1::zeros(0).into(), p.as_standard_layout()),
    };
    let slice = "standard layout";
    f(
        x.as_slice().expect(slice),
        t.as_slice().expect(slice),
        p.as_slice().expect(slice),
    )
}

/// Per-sample cross-entropy on logits, `(N,)`: `-sum(target·log_softmax(x))`
/// (with indices: `logsumexp(x) - x[t]`).
pub fn cross_entropy<T: Exp>(
    logits: ArrayView2<'_, T>,
    target: Target<'_, T>,
) -> Result<Array1<T>, KernelError> {
    let (n, k) = logits.dim();
    on_rows("cross_entropy", logits, &target, |xs, ts, ps| {
        let mut loss = Array1::<T>::zeros(n);
        over_rows(loss.as_slice_mut().expect("fresh"), n, 1, k, |r0, lc| {
            let r = r0 * k..(r0 + lc.len()) * k;
            let t = ts.get(r0..r0 + lc.len()).unwrap_or_default();
            ce_rows(&xs[r.clone()], t, ps.get(r).unwrap_or_default(), lc, k);
        });
        Ok(loss)
    })
}

/// Gradient of the SUM over the batch of [`cross_entropy`] with respect to
/// the logits, `(N, k)`: `softmax(x)·sum(target) - target` (with indices,
/// from the softmax of [`softmax`]).
pub fn cross_entropy_backward<T: Exp>(
    logits: ArrayView2<'_, T>,
    target: Target<'_, T>,
) -> Result<Array2<T>, KernelError> {
    const OP: &str = "cross_entropy_backward";
    let ((n, k), rows) = (logits.dim(), block_rows(logits.ncols()));
    on_rows(OP, logits, &target, |xs, ts, ps| {
        filled_by(OP, n, k, |gs| {
            over_rows(gs, n, k, k, |r0, gc| {
                let r = r0 * k..r0 * k + gc.len();
                let Some(ts) = ts.get(r0..r0 + gc.len() / k) else {
                    return ce_prob_backward_rows(&xs[r.clone()], &ps[r], gc, k);
                };
                // softmax(x) - onehot(t), block by block while in L1.
                let blocks = gc.chunks_mut(rows * k).zip(xs[r].chunks(rows * k));
                for ((gb, xb), tb) in blocks.zip(ts.chunks(rows)) {
                    softmax::softmax_into(xb, gb, k);
                    for (gr, &ti) in gb.chunks_exact_mut(k).zip(tb) {
                        gr[ti as usize] -= T::one();
                    }
                }
            })
        })
    })
}

multiversion! {
    /// Per-row cross-entropy of logits `x` against class indices `t` (when
    /// not empty): `logsumexp(x) - x[t]`; else probabilities `p`:
    /// `-sum(p·log_softmax(x)) = sum(p)·(max + log(s)) - sum(p·x)`.
    fn ce_rows<T: Exp>(x: &[T], t: &[i64], p: &[T], loss: &mut [T], k: usize) {
        for (i, (xr, l)) in x.chunks_exact(k).zip(loss.iter_mut()).enumerate() {
            let m = row_max(xr);
            let s = exp_sum(xr, m, None);
            if let Some(&ti) = t.get(i) {
                *l = (m - xr[ti as usize]) + s.ln();
                continue;
            }
            // Σ p·(x - m) keeps the terms small when the logits are large; a
            // class of probability 0 adds nothing (not 0·-inf).
            let pr = &p[i * k..(i + 1) * k];
            let mut acc = T::zero();
            for (&xv, &pv) in xr.iter().zip(pr) {
                acc += if pv == T::zero() { T::zero() } else { pv * (xv - m) };
            }
            *l = sum(pr) * s.ln() - acc;
        }
    }
}

multiversion! {
    /// Gradient of the summed cross-entropy with target probabilities:
    /// `softmax(x)·sum(p) - p`.
    fn ce_prob_backward_rows<T: Exp>(x: &[T], p: &[T], dx: &mut [T], k: usize) {
        for ((xr, pr), gr) in x.chunks_exact(k).zip(p.chunks_exact(k)).zip(dx.chunks_exact_mut(k)) {
            let m = row_max(xr);
            let scale = sum(pr) / exp_sum(xr, m, Some(&mut *gr));
            for (g, &pv) in gr.iter_mut().zip(pr) {
                *g = *g * scale - pv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LossKind::{LogSoftmaxNLL, BCE, MAE, MSE};
    use super::*;
    use ndarray::{Array1, Array2};

    /// `cost_and_delta` against the formulas of the module doc, in `f64`.
    fn check(loss: LossKind, yhat: &Array2<f64>, y: &Array2<f64>) {
        let (n, k) = yhat.dim();
        let mut delta = vec![0.0; n * k];
        let target = Target::Prob(y.view());
        let total = cost_and_delta(loss, yhat.view(), &target, &mut delta, &mut vec![]).unwrap();
        let (mut want, mut want_d) = (0.0, vec![]);
        for (yr, pr) in y.rows().into_iter().zip(yhat.rows()) {
            let lse = pr.iter().map(|v| v.exp()).sum::<f64>().ln();
            let sy = yr.sum();
            for (&t, &p) in yr.iter().zip(pr) {
                let (c, d) = match loss {
                    LossKind::MSE => ((t - p).powi(2), 2.0 * (p - t)),
                    LossKind::MAE => ((t - p).abs(), if p == t { 0.0 } else { (p - t).signum() }),
                    LossKind::BCE => (
                        -(t * p.ln().max(-100.0) + (1.0 - t) * (1.0 - p).ln().max(-100.0)),
                        (p - t) / (p * (1.0 - p)).max(1e-12),
                    ),
                    _ => (-t * (p - lse), (p - lse).exp() * sy - t),
                };
                want += c;
                want_d.push(d);
            }
        }
        assert!(
            (total - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{loss:?}"
        );
        for (g, w) in delta.iter().zip(&want_d) {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{loss:?}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn every_loss_matches_its_formula() {
        let yhat = Array2::from_shape_fn((3, 4), |(i, j)| 0.05 + 0.9 * ((i * 4 + j) as f64 / 11.0));
        let y = Array2::from_shape_fn((3, 4), |(i, j)| f64::from(u8::from((i + j) % 3 == 0)));
        for loss in [MSE, MAE, BCE, LossKind::CrossEntropy, LogSoftmaxNLL] {
            check(loss, &yhat, &y);
        }
    }

    #[test]
    fn extreme_logits_and_nan() {
        // A -inf logit of another class, and logits at the ends of the range.
        for row in [[f64::NEG_INFINITY, 0.0, 1.0], [1e308, 0.0, -1e308]] {
            let x = Array2::from_shape_vec((1, 3), row.to_vec()).unwrap();
            let t = Array1::from(vec![1_i64]);
            for loss in [LossKind::CrossEntropy, LogSoftmaxNLL] {
                let (mut d, target) = (vec![0.0; 3], Target::Index(t.view()));
                let c = cost_and_delta(loss, x.view(), &target, &mut d, &mut vec![]).unwrap();
                assert!(
                    c.is_finite() && d.iter().all(|v| v.is_finite()),
                    "{loss:?} {row:?}"
                );
            }
        }
        let x = Array2::from_shape_vec((1, 2), vec![f32::NAN, 0.5]).unwrap();
        let y = Array2::from_shape_vec((1, 2), vec![1.0_f32, 0.0]).unwrap();
        for loss in [MSE, MAE, BCE, LogSoftmaxNLL] {
            let mut d = vec![0.0; 2];
            let c = cost_and_delta(loss, x.view(), &Target::Prob(y.view()), &mut d, &mut vec![])
                .unwrap();
            assert!(c.is_nan() && d[0].is_nan(), "{loss:?}");
        }
    }

    #[test]
    fn vectorized_helpers_match_plain_loops() {
        for len in [0, 1, 15, 16, 17, 100, 256] {
            let v: Vec<f64> = (0..len).map(|i| (i as f64 * 0.7).sin()).collect();
            let want: f64 = v.iter().sum();
            assert!((sum(&v) - want).abs() <= 1e-12, "{len}");
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            assert!((sum(&v32) as f64 - want).abs() <= 1e-5, "{len}");
        }
        // MSE and MAE: every pair of special values as the scalar formulas
        // (MAE's sign ±1, the difference itself where it is ±0 or NaN), over
        // lengths through the vector loops' tails.
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let vals = [0.0, -0.0, 1.5, -2.0, 1e-300, inf, -inf, nan];
        let pairs = vals.iter().flat_map(|&a| vals.iter().map(move |&b| (a, b)));
        let (t, p): (Vec<f64>, Vec<f64>) = pairs.unzip();
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for len in [t.len(), t.len() - 3, 5] {
            let (mut cost, mut delta) = (vec![0.0; len], vec![0.0; len]);
            let (t, p) = (&t[..len], &p[..len]);
            mae_elements(t, p, &mut cost, &mut delta);
            for i in 0..len {
                let e = p[i] - t[i];
                let sign = if e == 0.0 || e.is_nan() {
                    e
                } else {
                    e.signum()
                };
                assert!(same(cost[i], e.abs()) && same(delta[i], sign), "mae {i}");
            }
            mse_elements(t, p, &mut cost, &mut delta);
            for i in 0..len {
                let e = p[i] - t[i];
                assert!(same(cost[i], (t[i] - p[i]).powi(2)), "mse {i}");
                assert!(same(delta[i], 2.0 * e), "mse {i}");
            }
        }
        // BCE: saturated and NaN outputs as the scalar formula.
        let t = [1.0_f32, 0.0, 0.3, 1.0, 0.5, 0.25, 0.7, 0.0, 1.0];
        let yhat = [0.0_f32, 1.0, 0.3, 1.0, f32::NAN, 1e-30, 0.999_999, 0.0, 0.5];
        let (mut cost, mut delta) = ([0.0_f32; 9], [0.0_f32; 9]);
        bce_elements(&t, &yhat, &mut cost, &mut delta);
        for i in 0..9 {
            let (t, p) = (t[i], yhat[i]);
            // max(ln v, -100), NaN kept (np.maximum).
            let ln = |v: f32| max_nan((v as f64).ln(), -100.0) as f32;
            let c = -(t * ln(p) + (1.0 - t) * ln(1.0 - p));
            let d = (p - t) / max_nan(p * (1.0 - p), 1e-12);
            assert!(
                (cost[i] - c).abs() <= 1e-5 * c.abs().max(1.0) || (c.is_nan() && cost[i].is_nan()),
                "{i}: {} vs {c}",
                cost[i]
            );
            assert!(delta[i] == d || (d.is_nan() && delta[i].is_nan()), "{i}");
        }
    }
}
