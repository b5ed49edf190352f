//! Softmax and log-softmax along the last axis of `(N, k)`, forward and
//! backward, numerically stable (the cross-entropy on logits, in
//! [`crate::loss`], runs on the same row helpers).
//!
//! Every row subtracts its maximum before `exp`, so the largest term is
//! `exp(0) = 1`: logits of magnitude 1e4 give finite values and gradients.
//! `log_softmax = (x - max) - log(sum(exp(x - max)))`.
//!
//! Derivatives: for `y = softmax(x)` and `δ = dL/dy`, `dL/dx = y ⊙ (δ - Σ y·δ)`;
//! for `y = log_softmax(x)`, `dL/dx = δ - softmax(x)·Σ δ`.
//!
//! Speed: with AVX-512F (detected at run time) the four row ops of `f32`
//! run whole-row SIMD functions (module `avx512`, on [`math::avx512::exp16`]):
//! masked tails, rows of up to 16 kept in one register each, long rows in
//! fused passes (max; exp-sum without a store; the write) finished while in
//! L1. Otherwise the row loops work on independent lanes with the `exp` of
//! [`crate::math`], each row function compiled per instruction set by
//! [`multiversion!`]. Outputs are allocated uninitialized and written once.

use ndarray::{Array2, ArrayView2, CowArray, Ix2};

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
#[cfg(doc)]
use crate::math;
use crate::math::Math;
#[cfg(target_arch = "x86_64")]
use crate::simd::avx512;
use crate::simd::multiversion;
use crate::threads;

/// Elements below which a row-wise op stays on the calling thread: below it
/// the hand-off to the pool costs more than the split saves ((1000, 10)
/// stays serial, (256, 1000) runs on all threads; `cargo bench --bench
/// kernels -- threads/softmax` measures it).
pub const SOFTMAX_PAR_MIN_WORK: usize = 64 * 1024;

const LANES: usize = 32;

/// A float with the `exp` passes the row functions use ([`Math::exp_`]
/// element by element, the widest SIMD form the CPU has for `f32`).
pub trait Exp: Math {
    /// `sum(e^(x - m))`, nothing stored.
    #[inline(always)]
    fn exp_sum(x: &[Self], m: Self) -> Self {
        x.iter().fold(Self::zero(), |s, &v| s + (v - m).exp_())
    }

    /// `y = e^(x - m)`, returns `sum(y)`.
    #[inline(always)]
    fn exp_store_sum(x: &[Self], m: Self, y: &mut [Self]) -> Self {
        let mut s = Self::zero();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = (v - m).exp_();
            s += *o;
        }
        s
    }

    /// `dx = d - e^y·s`, the log-softmax backward step.
    #[inline(always)]
    fn sub_exp_scaled(y: &[Self], d: &[Self], s: Self, dx: &mut [Self]) {
        for ((g, &yv), &dv) in dx.iter_mut().zip(y).zip(d) {
            *g = dv - yv.exp_() * s;
        }
    }

    /// Whole row functions of a wider instruction set, when the type and the
    /// CPU have one: each returns `false` (having done nothing) otherwise, and
    /// the portable row functions run instead.
    #[inline(always)]
    fn simd_rows(_op: RowOp, _a: &[Self], _b: &[Self], _out: &mut [Self], _k: usize) -> bool {
        false
    }
}

/// The row-wise ops with a whole-row SIMD form (see [`Exp::simd_rows`]).
/// Forward ops read `a` (x) and ignore `b`; backward ops read `a` (y) and
/// `b` (delta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// Softmax forward.
    Softmax,
    /// Log-softmax forward.
    LogSoftmax,
    /// Softmax backward.
    SoftmaxBackward,
    /// Log-softmax backward.
    LogSoftmaxBackward,
}

impl Exp for f64 {}

impl Exp for f32 {
    #[inline(always)]
    fn exp_sum(x: &[f32], m: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::exp_store_sum(x, m, None) };
        }
        x.iter().fold(0.0, |s, &v| s + (v - m).exp_())
    }

    #[inline(always)]
    fn exp_store_sum(x: &[f32], m: f32, y: &mut [f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::exp_store_sum(x, m, Some(y)) };
        }
        let mut s = 0.0;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = (v - m).exp_();
            s += *o;
        }
        s
    }

    #[inline(always)]
    fn sub_exp_scaled(y: &[f32], d: &[f32], s: f32, dx: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            unsafe { avx512::sub_exp_scaled(y, d, s, dx) };
            return;
        }
        for ((g, &yv), &dv) in dx.iter_mut().zip(y).zip(d) {
            *g = dv - yv.exp_() * s;
        }
    }

    #[inline(always)]
    fn simd_rows(op: RowOp, a: &[f32], b: &[f32], out: &mut [f32], k: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            unsafe { avx512::rows(op, a, b, out, k) };
            return true;
        }
        let _ = (op, a, b, out, k);
        false
    }
}

/// `f32` row functions on 16 lanes with AVX-512F.
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Below this row length the reductions are plain loops; above, they run on
/// [`LANES`] independent accumulators (4 AVX2 registers), which hides the
/// latency of `max`/`add` (with a single register the chain of dependent
/// `vmaxps` made `row_max` the slowest pass).
pub(crate) const WIDE: usize = 64;

/// A reduction of a short row on 4 independent accumulators: a row of 10
/// is a chain of 4 dependent steps instead of 10 (the rows of a classifier's
/// softmax are that short, and latency-bound).
#[inline(always)]
fn small4<T: Exp>(x: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 4];
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        for i in 0..4 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let r = chunks.remainder().iter().fold(init, |a, &v| f(a, v));
    f(f(acc[0], acc[1]), f(f(acc[2], acc[3]), r))
}

#[inline(always)]
pub(crate) fn row_max<T: Exp>(x: &[T]) -> T {
    let pick = |a: T, v: T| if v > a { v } else { a };
    if x.len() < WIDE {
        return x.iter().fold(T::neg_infinity(), |a, &v| pick(a, v));
    }
    let mut acc = [T::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = pick(acc[i], c[i]);
        }
    }
    let m = acc.iter().fold(T::neg_infinity(), |a, &v| pick(a, v));
    chunks.remainder().iter().fold(m, |a, &v| pick(a, v))
}

#[inline(always)]
fn lane_sum<T: Exp>(acc: [T; LANES], tail: T) -> T {
    let mut half = [T::zero(); 8];
    for (i, h) in half.iter_mut().enumerate() {
        *h = (acc[i] + acc[i + 8]) + (acc[i + 16] + acc[i + 24]);
    }
    let a = (half[0] + half[4]) + (half[1] + half[5]);
    let b = (half[2] + half[6]) + (half[3] + half[7]);
    (a + b) + tail
}

/// `dst = exp(src - m)`, returns the sum of `dst`.
#[inline(always)]
pub(crate) fn exp_shift_sum<T: Exp>(src: &[T], m: T, dst: &mut [T]) -> T {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s - m;
    }
    T::exp_slice(dst);
    sum(dst)
}

/// `sum(a·b)`.
#[inline(always)]
fn dot<T: Exp>(a: &[T], b: &[T]) -> T {
    if a.len() < WIDE {
        let (mut acc, n4) = ([T::zero(); 4], a.len() / 4 * 4);
        for (x, y) in a[..n4].chunks_exact(4).zip(b[..n4].chunks_exact(4)) {
            for i in 0..4 {
                acc[i] += x[i] * y[i];
            }
        }
        let tail = a[n4..]
            .iter()
            .zip(&b[n4..])
            .fold(T::zero(), |t, (&x, &y)| t + x * y);
        return (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
    }
    let mut acc = [T::zero(); LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |t, (&x, &y)| t + x * y);
    lane_sum(acc, tail)
}

#[inline(always)]
pub(crate) fn sum<T: Exp>(a: &[T]) -> T {
    if a.len() < WIDE {
        return small4(a, T::zero(), |t, x| t + x);
    }
    let mut acc = [T::zero(); LANES];
    let mut c = a.chunks_exact(LANES);
    for x in &mut c {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    let tail = c.remainder().iter().fold(T::zero(), |t, &x| t + x);
    lane_sum(acc, tail)
}

/// Rows per block of the block-wise passes: about 4096 elements, so a block
/// stays in L1 while it is read three times.
pub(crate) fn block_rows(k: usize) -> usize {
    (4096 / k.max(1)).max(1)
}

/// `exp` over a whole block at once. For short rows (the (1000, 10) of a
/// classifier) a per-row `exp` would spend most of its time in the scalar
/// tail of each row; over the block the loop is one long SIMD run.
#[inline(always)]
pub(crate) fn exp_inplace<T: Exp>(y: &mut [T]) {
    T::exp_slice(y);
}

/// Pass 1 of the stable forms: `y = x - max(row)` for each row of the block;
/// returns nothing, the maxima go to `maxes`.
#[inline(always)]
pub(crate) fn shift_rows<T: Exp>(x: &[T], y: &mut [T], k: usize, maxes: &mut [T]) {
    for ((xr, yr), m) in x
        .chunks_exact(k)
        .zip(y.chunks_exact_mut(k))
        .zip(maxes.iter_mut())
    {
        *m = row_max(xr);
        for (v, &xv) in yr.iter_mut().zip(xr) {
            *v = xv - *m;
        }
    }
}

multiversion! {
    /// Softmax of the rows (length `k`) of `x` into `y`. Long rows: max,
    /// then one fused pass `y = exp(x - max)` with its sum, then the scaling.
    /// Short rows go block by block: shift by the row max, `exp` of the
    /// whole block, scale by 1/sum.
    fn softmax_rows<T: Exp>(x: &[T], y: &mut [T], k: usize) {
        if k >= WIDE {
            for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(k)) {
                let inv = T::one() / T::exp_store_sum(xr, row_max(xr), yr);
                for v in yr.iter_mut() {
                    *v *= inv;
                }
            }
            return;
        }
        let rows = block_rows(k);
        let mut maxes = vec![T::zero(); rows];
        for (xb, yb) in x.chunks(rows * k).zip(y.chunks_mut(rows * k)) {
            shift_rows(xb, yb, k, &mut maxes);
            exp_inplace(yb);
            for yr in yb.chunks_exact_mut(k) {
                let inv = T::one() / sum(yr);
                for v in yr.iter_mut() {
                    *v *= inv;
                }
            }
        }
    }
}

multiversion! {
    /// Log-softmax of the rows of `x` into `y`: `(x - max) - log(sum)`, the
    /// sum of exps from a pass that stores nothing (long rows) or from the
    /// block's `exp` written into `y` first (short rows).
    fn log_softmax_rows<T: Exp>(x: &[T], y: &mut [T], k: usize) {
        if k >= WIDE {
            for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(k)) {
                let m = row_max(xr);
                let ls = T::exp_sum(xr, m).ln();
                for (v, &xv) in yr.iter_mut().zip(xr) {
                    *v = (xv - m) - ls;
                }
            }
            return;
        }
        let rows = block_rows(k);
        let mut maxes = vec![T::zero(); rows];
        for (xb, yb) in x.chunks(rows * k).zip(y.chunks_mut(rows * k)) {
            shift_rows(xb, yb, k, &mut maxes);
            exp_inplace(yb);
            for ((xr, yr), &m) in xb.chunks_exact(k).zip(yb.chunks_exact_mut(k)).zip(&maxes) {
                // (x - m) - log(s), in that order: x - (m + log(s)) would lose
                // the digits of log(s) when |m| is large.
                let ls = sum(yr).ln();
                for (v, &xv) in yr.iter_mut().zip(xr) {
                    *v = (xv - m) - ls;
                }
            }
        }
    }
}

multiversion! {
    /// `dx = y·(δ - sum(y·δ))`, the softmax backward pass, row by row.
    fn softmax_backward_rows<T: Exp>(y: &[T], d: &[T], dx: &mut [T], k: usize) {
        for ((yr, dr), gr) in y.chunks_exact(k).zip(d.chunks_exact(k)).zip(dx.chunks_exact_mut(k)) {
            let s = dot(yr, dr);
            for ((g, &yv), &dv) in gr.iter_mut().zip(yr).zip(dr) {
                *g = yv * (dv - s);
            }
        }
    }
}

multiversion! {
    /// `dx = δ - exp(y)·sum(δ)`, the log-softmax backward pass: one fused
    /// pass per long row, block by block for short rows.
    fn log_softmax_backward_rows<T: Exp>(y: &[T], d: &[T], dx: &mut [T], k: usize) {
        if k >= WIDE {
            for ((yr, dr), gr) in y.chunks_exact(k).zip(d.chunks_exact(k)).zip(dx.chunks_exact_mut(k)) {
                T::sub_exp_scaled(yr, dr, sum(dr), gr);
            }
            return;
        }
        let rows = block_rows(k);
        for ((yb, db), gb) in y.chunks(rows * k).zip(d.chunks(rows * k)).zip(dx.chunks_mut(rows * k)) {
            gb.copy_from_slice(yb);
            exp_inplace(gb);
            for (dr, gr) in db.chunks_exact(k).zip(gb.chunks_exact_mut(k)) {
                let s = sum(dr);
                for (g, &dv) in gr.iter_mut().zip(dr) {
                    *g = dv - *g * s;
                }
            }
        }
    }
}

/// Rows per task when a row-wise op of `n × k` runs in parallel (0 = serial).
fn rows_per_task(n: usize, k: usize) -> usize {
    let work = n.saturating_mul(k);
    if !cfg!(feature = "multi-threads") || n < 2 || work < SOFTMAX_PAR_MIN_WORK {
        return 0;
    }
    match threads::num_threads() {
        0 | 1 => 0,
        t => n.div_ceil(t).max(1),
    }
}

/// Runs `f(first_row, rows_of_out)` over `out` (rows of `width`), split in
/// tasks when worth it.
pub(crate) fn over_rows<T: Float>(
    out: &mut [T],
    n: usize,
    width: usize,
    k: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if out.is_empty() || width == 0 {
        return;
    }
    // Small work runs right here: a trip to the pool costs 5-15 µs.
    match rows_per_task(n, k) {
        0 => f(0, out),
        // One part per thread, the calling thread's among them.
        rows => {
            let parts = n.div_ceil(rows);
            threads::par_chunks_mut(out, rows * width, parts, |i, c| f(i * rows, c));
        }
    }
}

fn check_rows(op: &'static str, x: &ArrayView2<'_, impl Float>) -> Result<(), KernelError> {
    if x.ncols() == 0 && x.nrows() > 0 {
        return Err(KernelError::shape(
            op,
            "x",
            "(N, k) with k >= 1",
            fmt_shape(x.shape()),
        ));
    }
    Ok(())
}

pub(crate) fn check_same(
    op: &'static str,
    arg: &'static str,
    other: &'static str,
    a: &[usize],
    b: &[usize],
) -> Result<(), KernelError> {
    if a != b {
        return Err(KernelError::shape(
            op,
            arg,
            format!("{} (the shape of {other})", fmt_shape(b)),
            fmt_shape(a),
        ));
    }
    Ok(())
}

/// A `(n, k)` array whose elements `fill` writes, every one of them, before
/// it reads any: no zeroing pass over an output that is overwritten anyway.
pub(crate) fn filled_by<T: Float>(
    op: &'static str,
    n: usize,
    k: usize,
    fill: impl FnOnce(&mut [T]),
) -> Result<Array2<T>, KernelError> {
    check_alloc(op, "the output", &[n, k])?;
    let mut y = Array2::<T>::uninit((n, k));
    let cells = y.as_slice_mut().expect("fresh array");
    // SAFETY: `T` is `f32` or `f64`, for which `MaybeUninit<T>` has the
    // layout of `T`; `fill` only writes the uninitialized elements until it
    // has written them (every row function below writes a whole row before
    // reading any of it back).
    let out =
        unsafe { std::slice::from_raw_parts_mut(cells.as_mut_ptr().cast::<T>(), cells.len()) };
    fill(out);
    // SAFETY: `fill` wrote every element.
    Ok(unsafe { y.assume_init() })
}

/// `x` in row-major order: itself, or a copy if it can be allocated.
pub(crate) fn standard<'a, T: Float>(
    op: &'static str,
    what: &str,
    x: &'a ArrayView2<'_, T>,
) -> Result<CowArray<'a, T, Ix2>, KernelError> {
    if !x.is_standard_layout() {
        check_alloc(op, what, x.shape())?;
    }
    Ok(x.as_standard_layout())
}

/// Applies a row op, as [`Exp::simd_rows`] or else the portable row
/// function `f(x, out, k)`, to a `(N, k)` array.
fn map_rows<T: Exp>(
    op_name: &'static str,
    x: ArrayView2<'_, T>,
    op: RowOp,
    f: fn(&[T], &mut [T], usize),
) -> Result<Array2<T>, KernelError> {
    check_rows(op_name, &x)?;
    let (n, k) = x.dim();
    let x = standard(op_name, "the input", &x)?;
    let xs = x.as_slice().expect("standard layout");
    filled_by(op_name, n, k, |ys| {
        over_rows(ys, n, k, k, |r0, yc| {
            let xr = &xs[r0 * k..r0 * k + yc.len()];
            if !T::simd_rows(op, xr, &[], yc, k) {
                f(xr, yc, k);
            }
        });
    })
}

/// Applies a backward row op (`f(y, delta, dx, k)` in the portable form).
fn map_rows2<T: Exp>(
    op_name: &'static str,
    y: ArrayView2<'_, T>,
    d: ArrayView2<'_, T>,
    op: RowOp,
    f: fn(&[T], &[T], &mut [T], usize),
) -> Result<Array2<T>, KernelError> {
    check_same(op_name, "delta", "y", d.shape(), y.shape())?;
    let (n, k) = y.dim();
    let y = standard(op_name, "y", &y)?;
    let d = standard(op_name, "delta", &d)?;
    let (ys, ds) = (
        y.as_slice().expect("standard layout"),
        d.as_slice().expect("standard layout"),
    );
    filled_by(op_name, n, k, |gs| {
        over_rows(gs, n, k, k, |r0, gc| {
            let r = r0 * k..r0 * k + gc.len();
            if !T::simd_rows(op, &ys[r.clone()], &ds[r.clone()], gc, k) {
                f(&ys[r.clone()], &ds[r], gc, k);
            }
        });
    })
}

/// Softmax along the last axis of `x (N, k)`.
pub fn softmax<T: Exp>(x: ArrayView2<'_, T>) -> Result<Array2<T>, KernelError> {
    map_rows("softmax", x, RowOp::Softmax, softmax_rows::<T>)
}

/// Log-softmax along the last axis of `x (N, k)`.
pub fn log_softmax<T: Exp>(x: ArrayView2<'_, T>) -> Result<Array2<T>, KernelError> {
    map_rows("log_softmax", x, RowOp::LogSoftmax, log_softmax_rows::<T>)
}

/// Gradient of softmax given its output `y` and `delta = dL/dy`.
pub fn softmax_backward<T: Exp>(
    y: ArrayView2<'_, T>,
    delta: ArrayView2<'_, T>,
) -> Result<Array2<T>, KernelError> {
    let f = softmax_backward_rows::<T>;
    map_rows2("softmax_backward", y, delta, RowOp::SoftmaxBackward, f)
}

/// Gradient of log-softmax given its output `y` and `delta = dL/dy`.
pub fn log_softmax_backward<T: Exp>(
    y: ArrayView2<'_, T>,
    delta: ArrayView2<'_, T>,
) -> Result<Array2<T>, KernelError> {
    let f = log_softmax_backward_rows::<T>;
    map_rows2(
        "log_softmax_backward",
        y,
        delta,
        RowOp::LogSoftmaxBackward,
        f,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{cross_entropy, cross_entropy_backward, Target};
    use ndarray::Array1;
    use ndarray::{s, Array, ShapeBuilder};

    fn filled(n: usize, k: usize, scale: f64) -> Array2<f64> {
        Array::from_shape_fn((n, k), |(i, j)| {
            ((i * 13 + j * 7) as f64 * 0.37).sin() * scale
        })
    }

    /// Straightforward softmax with the row max subtracted, in f64.
    fn reference(x: &Array2<f64>) -> Array2<f64> {
        let mut y = x.clone();
        for mut r in y.rows_mut() {
            let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            r.mapv_inplace(|v| (v - m).exp());
            let s = r.sum();
            r /= s;
        }
        y
    }

    fn assert_close(a: &Array2<f64>, b: &Array2<f64>, tol: f64) {
        assert_eq!(a.shape(), b.shape());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    const SHAPES: &[(usize, usize)] = &[
        (1, 1),
        (3, 7),
        (5, 8),
        (4, 17),
        (1000, 10),
        (256, 1000),
        (2, 5000),
    ];

    #[test]
    fn forward_and_backward_match_reference() {
        for &(n, k) in SHAPES {
            let x = filled(n, k, 5.0);
            let d = filled(n, k, 1.0).mapv(|v| v - 0.3);
            let p = reference(&x);
            let y = softmax(x.view()).unwrap();
            assert_close(&y, &p, 1e-13);
            let ly = log_softmax(x.view()).unwrap();
            assert_close(&ly, &p.mapv(f64::ln), 1e-13);
            // d softmax: y·(d - Σ y·d); d log_softmax: d - p·Σ d.
            let dot = (&p * &d)
                .sum_axis(ndarray::Axis(1))
                .insert_axis(ndarray::Axis(1));
            assert_close(
                &softmax_backward(y.view(), d.view()).unwrap(),
                &(&p * &(&d - &dot)),
                1e-13,
            );
            let sd = d.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
            assert_close(
                &log_softmax_backward(ly.view(), d.view()).unwrap(),
                &(&d - &(&p * &sd)),
                1e-12,
            );
        }
    }

    #[test]
    fn f32_is_close_to_f64() {
        for &(n, k) in SHAPES {
            let x = filled(n, k, 20.0);
            let p = reference(&x);
            let y = softmax(x.mapv(|v| v as f32).view())
                .unwrap()
                .mapv(f64::from);
            assert_close(&y, &p, 2e-6);
            let ly = log_softmax(x.mapv(|v| v as f32).view())
                .unwrap()
                .mapv(f64::from);
            assert_close(&ly, &p.mapv(f64::ln), 2e-6);
        }
    }

    #[test]
    fn simd_summand_exp_is_accurate() {
        // sub_exp_scaled(y, 0, -1) = e^y, by the exp of the sums and of the
        // log-softmax backward step.
        let n = 1_000_003;
        let y: Vec<f32> = (0..n)
            .map(|i| -87.0 + 97.0 * (i as f32 / (n - 1) as f32))
            .collect();
        let mut e = vec![0.0; n];
        f32::sub_exp_scaled(&y, &vec![0.0; n], -1.0, &mut e);
        for (&x, &g) in y.iter().zip(&e) {
            let want = f64::from(x).exp();
            let err = ((f64::from(g) - want) / want).abs();
            assert!(err < 2e-7 + 3e-9 * f64::from(x.abs()), "e^{x}: {err}");
        }
    }

    #[test]
    fn simd_exp_special_values() {
        let mut v = vec![
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -1e4,
            1e4,
            -1e30,
            0.0,
            -0.0,
            -103.0,
            -88.0,
            89.0,
            88.5,
        ];
        v.resize(21, 1.0); // AVX-512 and AVX2 widths plus a tail
        let want = v.clone();
        f32::exp_slice(&mut v);
        assert!(v[0].is_nan());
        assert_eq!(
            &v[1..8],
            &[0.0, f32::INFINITY, 0.0, f32::INFINITY, 0.0, 1.0, 1.0]
        );
        assert!(v[8] >= 0.0 && v[8] < f32::MIN_POSITIVE);
        assert!(v[9] > 0.0 && v[9] < 1e-38);
        assert_eq!(v[10], f32::INFINITY);
        let r = (f64::from(v[11]) - 88.5f64.exp()) / 88.5f64.exp();
        assert!(r.abs() < 2e-7, "{r}");
        let e1 = f64::from(want[20]).exp();
        assert!(((f64::from(v[12]) - e1) / e1).abs() < 2e-7);
        assert!(v[12..].iter().all(|&e| e == v[12]), "the tail lanes agree");
        // The sums and the fused backward step agree with the scalar form.
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 30.0).collect();
        let d: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).cos()).collect();
        for n in [1, 7, 15, 16, 17, 31, 32, 33, 37] {
            let (x, d) = (&x[..n], &d[..n]);
            let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let want: f64 = x.iter().map(|&v| f64::from(v - m).exp()).sum();
            let mut y = vec![0.0; n];
            let s = f32::exp_store_sum(x, m, &mut y);
            assert!((f64::from(s) - want).abs() < 1e-6 * want, "n = {n}");
            assert!((f64::from(f32::exp_sum(x, m)) - want).abs() < 1e-6 * want);
            let mut g = vec![0.0; n];
            f32::sub_exp_scaled(x, d, 0.5, &mut g);
            for i in 0..n {
                let w = f64::from(d[i]) - f64::from(x[i]).exp() * 0.5;
                assert!(
                    (f64::from(g[i]) - w).abs() < 2e-6 * (1.0 + w.abs()),
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn every_row_length_f32_and_f64() {
        for &k in &[
            1usize, 2, 7, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000,
        ] {
            for &n in &[1usize, 3, 70] {
                let x = filled(n, k, 8.0);
                let d = filled(n, k, 1.0).mapv(|v| v + 0.2);
                let p = reference(&x);
                let dot = (&p * &d)
                    .sum_axis(ndarray::Axis(1))
                    .insert_axis(ndarray::Axis(1));
                let sd = d.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
                let gs = &p * &(&d - &dot);
                let gl = &d - &(&p * &sd);
                // f64: exact.
                assert_close(&softmax(x.view()).unwrap(), &p, 1e-13);
                assert_close(&log_softmax(x.view()).unwrap(), &p.mapv(f64::ln), 1e-13);
                assert_close(&softmax_backward(p.view(), d.view()).unwrap(), &gs, 1e-13);
                let lp = p.mapv(f64::ln);
                assert_close(
                    &log_softmax_backward(lp.view(), d.view()).unwrap(),
                    &gl,
                    1e-12,
                );
                // f32: within a few ulp (of the larger terms).
                let f = |a: &Array2<f64>| a.mapv(|v| v as f32);
                let g = |a: Array2<f32>| a.mapv(f64::from);
                assert_close(&g(softmax(f(&x).view()).unwrap()), &p, 2e-6);
                assert_close(&g(log_softmax(f(&x).view()).unwrap()), &lp, 2e-6);
                assert_close(
                    &g(softmax_backward(f(&p).view(), f(&d).view()).unwrap()),
                    &gs,
                    2e-6,
                );
                assert_close(
                    &g(log_softmax_backward(f(&lp).view(), f(&d).view()).unwrap()),
                    &gl,
                    4e-6,
                );
            }
        }
    }

    #[test]
    fn huge_and_special_logits_every_row_length() {
        for &k in &[1usize, 7, 10, 15, 16, 17, 1000] {
            let x = filled(5, k, 1e4).mapv(|v| v as f32);
            let p = reference(&x.mapv(f64::from));
            let y = softmax(x.view()).unwrap();
            let ly = log_softmax(x.view()).unwrap();
            assert_close(&y.mapv(f64::from), &p, 2e-6);
            assert!(y.iter().chain(ly.iter()).all(|v| v.is_finite()), "k = {k}");
            let d = Array2::<f32>::ones((5, k));
            let g = log_softmax_backward(ly.view(), d.view()).unwrap();
            let gs = softmax_backward(y.view(), d.view()).unwrap();
            assert!(g.iter().chain(gs.iter()).all(|v| v.is_finite()), "k = {k}");
            // A NaN logit makes its row NaN and leaves the others alone.
            let mut xn = x.clone();
            xn[[2, k / 2]] = f32::NAN;
            let yn = softmax(xn.view()).unwrap();
            assert!(yn.row(2).iter().all(|v| v.is_nan()), "k = {k}");
            assert_eq!(yn.row(1), y.row(1));
        }
    }

    #[test]
    fn cross_entropy_both_targets() {
        let (n, k) = (6, 5);
        let x = filled(n, k, 3.0);
        let t = Array1::from(vec![0i64, 4, 2, 1, 3, 0]);
        let onehot =
            Array::from_shape_fn((n, k), |(i, j)| if t[i] as usize == j { 1.0 } else { 0.0 });
        let p = reference(&x);
        let want: Array1<f64> = (0..n).map(|i| -p[[i, t[i] as usize]].ln()).collect();
        let by_index = cross_entropy(x.view(), Target::Index(t.view())).unwrap();
        let by_prob = cross_entropy(x.view(), Target::Prob(onehot.view())).unwrap();
        for i in 0..n {
            assert!((by_index[i] - want[i]).abs() < 1e-13);
            assert!((by_prob[i] - want[i]).abs() < 1e-13);
        }
        let g = &p - &onehot;
        assert_close(
            &cross_entropy_backward(x.view(), Target::Index(t.view())).unwrap(),
            &g,
            1e-13,
        );
        assert_close(
            &cross_entropy_backward(x.view(), Target::Prob(onehot.view())).unwrap(),
            &g,
            1e-13,
        );
        // Soft targets that do not sum to 1: grad = softmax·Σp - p.
        let soft = onehot.mapv(|v| v * 2.0 + 0.1);
        let sp = soft
            .sum_axis(ndarray::Axis(1))
            .insert_axis(ndarray::Axis(1));
        assert_close(
            &cross_entropy_backward(x.view(), Target::Prob(soft.view())).unwrap(),
            &(&(&p * &sp) - &soft),
            1e-13,
        );
    }

    #[test]
    fn huge_logits_are_finite() {
        let x = filled(8, 10, 1e4).mapv(|v| v as f32);
        let t = Array1::from(vec![1i64; 8]);
        for v in softmax(x.view())
            .unwrap()
            .iter()
            .chain(log_softmax(x.view()).unwrap().iter())
        {
            assert!(v.is_finite());
        }
        assert!(cross_entropy(x.view(), Target::Index(t.view()))
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
    }

    #[test]
    fn layouts_and_errors() {
        let x = filled(9, 6, 2.0);
        let f = x.as_standard_layout().to_owned().reversed_axes();
        let xf = Array::from_shape_vec((9, 6).f(), f.iter().copied().collect()).unwrap();
        assert_eq!(softmax(xf.view()).unwrap(), softmax(x.view()).unwrap());
        let xr = x.slice(s![..;-1, ..]);
        assert_eq!(
            log_softmax(xr).unwrap(),
            log_softmax(xr.to_owned().view()).unwrap()
        );
        let e = softmax_backward(x.view(), filled(9, 5, 1.0).view()).unwrap_err();
        assert!(
            e.to_string()
                .contains("delta must have shape (9, 6) (the shape of y), got (9, 5)"),
            "{e}"
        );
        let t = Array1::from(vec![0i64, 6, 0, 0, 0, 0, 0, 0, 0]);
        let e = cross_entropy(x.view(), Target::Index(t.view())).unwrap_err();
        assert!(
            e.to_string()
                .contains("target[1] = 6 is not a class index in [0, 6)"),
            "{e}"
        );
        let e = softmax(Array2::<f64>::zeros((2, 0)).view()).unwrap_err();
        assert!(e.to_string().contains("k >= 1"), "{e}");
        assert_eq!(
            softmax(Array2::<f32>::zeros((0, 4)).view()).unwrap().dim(),
            (0, 4)
        );
    }
}
