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
//! The four ops are one row function, [`rows`]: module `avx512` for `f32`
//! where the CPU has it, else the portable loops. Outputs are allocated
//! uninitialized and written once.

use ndarray::{Array2, ArrayView2, CowArray, Ix2};

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::math::Math;
use crate::simd::multiversion;
#[cfg(target_arch = "x86_64")]
use crate::simd::{as_f32, as_f32_mut, avx512};
use crate::threads;

/// Elements below which a row-wise op stays on the calling thread ((1000,
/// 10) does, (256, 1000) splits; `cargo bench --bench kernels -- threads/softmax`;
/// `f32`, AVX2: [`crate::simd::per_lanes`]).
pub const SOFTMAX_PAR_MIN_WORK: usize = 64 * 1024;

/// The bound of the softmax and loss kernels: the [`Math`] floats.
pub use crate::math::Math as Exp;

/// `sum(e^(x - m))`, the terms also stored in `y` (of the length of `x`)
/// when given, in one pass for `f32` with AVX-512F (AVX2: the sum alone).
#[inline(always)]
pub(crate) fn exp_sum<T: Math>(x: &[T], m: T, y: Option<&mut [T]>) -> T {
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(x32)) = (avx512(), as_f32(x)) {
        let y = y.map(|y| as_f32_mut(y).expect("y has the type of x"));
        let m = m.to_f32().expect("m is an f32");
        // SAFETY: the CPU has AVX-512F.
        return T::from(unsafe { avx512::exp_sum(x32, m, y) }).expect("an f32");
    }
    #[cfg(target_arch = "x86_64")]
    if let (None, 32, Some(x32)) = (&y, crate::simd::vector_bytes(), as_f32(x)) {
        // SAFETY: the CPU has AVX2 and FMA.
        let s = unsafe { crate::math::avx2::exp_sum(x32, m.to_f32().expect("an f32")) };
        return T::from(s).expect("an f32");
    }
    match y {
        Some(y) => exp_shift_sum(x, m, y),
        None => {
            let (mut terms, mut s) = ([T::zero(); 256], T::zero());
            for p in x.chunks(terms.len()) {
                s += exp_shift_sum(p, m, &mut terms[..p.len()]);
            }
            s
        }
    }
}

/// The four row-wise ops. Forward ops read `a` (x) and ignore `b` (given
/// `a` again); backward ops read `a` (y) and `b` (δ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowOp {
    Softmax,
    LogSoftmax,
    SoftmaxBackward,
    LogSoftmaxBackward,
}

/// `f32` row functions on 16 lanes with AVX-512F.
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Below this row length the reductions run on 4 independent accumulators,
/// above on 32 (4 AVX2 registers): independent chains hide the latency of
/// `max`/`add` (a row of 10 is a chain of 4 dependent steps, not 10).
const WIDE: usize = 64;

/// Folds `f(acc, a[i], b[i])` over `a` and `b` on `N` independent
/// accumulators, joined one after the other by `f(acc, other, 1)` (LLVM
/// vectorizes that form at full width; a pairwise join made it use 2 lanes).
#[inline(always)]
fn fold<T: Float, const N: usize>(a: &[T], b: &[T], init: T, f: impl Fn(T, T, T) -> T) -> T {
    let mut acc = [init; N];
    let (mut ca, mut cb) = (a.chunks_exact(N), b.chunks_exact(N));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..N {
            acc[i] = f(acc[i], x[i], y[i]);
        }
    }
    let tail = ca.remainder().iter().zip(cb.remainder());
    let t = tail.fold(init, |s, (&x, &y)| f(s, x, y));
    acc.iter().fold(t, |s, &v| f(s, v, T::one()))
}

/// [`fold`] on 4 accumulators below [`WIDE`], on 32 above.
#[inline(always)]
fn reduce<T: Float>(a: &[T], b: &[T], init: T, f: impl Fn(T, T, T) -> T) -> T {
    if a.len() < WIDE {
        fold::<T, 4>(a, b, init, f)
    } else {
        fold::<T, 32>(a, b, init, f)
    }
}

/// The maximum of `x`, NaN ignored (a NaN row still comes out NaN: `x - max`
/// is NaN where `x` is).
#[inline(always)]
pub(crate) fn row_max<T: Float>(x: &[T]) -> T {
    reduce(x, x, T::neg_infinity(), |a, v, _| if v > a { v } else { a })
}

#[inline(always)]
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    reduce(x, x, T::zero(), |s, v, _| s + v)
}

/// `sum(a·b)`.
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    reduce(a, b, T::zero(), |s, u, v| s + u * v)
}

/// `dst = exp(src - m)`, returns the sum of `dst`.
#[inline(always)]
fn exp_shift_sum<T: Math>(src: &[T], m: T, dst: &mut [T]) -> T {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s - m;
    }
    T::exp_slice(dst);
    sum(dst)
}

/// Rows per block of the block-wise passes: about 4096 elements, so a block
/// stays in L1 while it is read three times.
pub(crate) fn block_rows(k: usize) -> usize {
    (4096 / k.max(1)).max(1)
}

/// Pass 1 of the stable forms: `y = x - max(row)` for each row of the block;
/// returns nothing, the maxima go to `maxes`.
#[inline(always)]
pub(crate) fn shift_rows<T: Float>(x: &[T], y: &mut [T], k: usize, maxes: &mut [T]) {
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

/// `op` over whole rows of length `k` of `a` and `b` into `out` (see
/// [`RowOp`]): the AVX-512 row functions for `f32` on a CPU that has them,
/// else the portable loops.
fn rows<T: Math>(op: RowOp, a: &[T], b: &[T], out: &mut [T], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(a), Some(b), Some(out)) = (avx512(), as_f32(a), as_f32(b), as_f32_mut(out)) {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { avx512::rows(op, a, b, out, k) };
    }
    match op {
        RowOp::Softmax => softmax_rows(a, b, out, k),
        RowOp::LogSoftmax => log_softmax_rows(a, b, out, k),
        RowOp::SoftmaxBackward => softmax_backward_rows(a, b, out, k),
        RowOp::LogSoftmaxBackward => log_softmax_backward_rows(a, b, out, k),
    }
}

/// `y = softmax(x)` over whole rows of length `k` (the cross-entropy's
/// gradient starts from it).
pub(crate) fn softmax_into<T: Math>(x: &[T], y: &mut [T], k: usize) {
    rows(RowOp::Softmax, x, x, y, k);
}

/// Compiles [`exp_rows`] once per op (the op a constant, each copy keeps
/// its own loops only: one copy for all three spilled registers in them)
/// and per instruction set.
macro_rules! exp_rows_of {
    ($($name:ident: $op:ident),+) => {$(
        multiversion! {
            fn $name<T: Math>(a: &[T], b: &[T], out: &mut [T], k: usize) {
                exp_rows(RowOp::$op, a, b, out, k)
            }
        }
    )+};
}

exp_rows_of!(softmax_rows: Softmax, log_softmax_rows: LogSoftmax);
exp_rows_of!(log_softmax_backward_rows: LogSoftmaxBackward);

/// The ops that take `exp` (all but the softmax backward) in plain loops,
/// block by block ([`block_rows`]): the `exp` of a whole block at once
/// ([`Math::exp_slice`], on whole vectors), then each row's sum and output.
#[inline(always)]
fn exp_rows<T: Math>(op: RowOp, a: &[T], b: &[T], out: &mut [T], k: usize) {
    let rows = block_rows(k);
    let mut maxes = vec![T::zero(); rows];
    for (i, ob) in out.chunks_mut(rows * k).enumerate() {
        let span = i * rows * k..i * rows * k + ob.len();
        let (ab, bb) = (&a[span.clone()], &b[span]);
        if op == RowOp::LogSoftmaxBackward {
            T::exp_into(ab, ob);
        } else {
            shift_rows(ab, ob, k, &mut maxes);
            T::exp_slice(ob);
        }
        let rows = ab.chunks_exact(k).zip(bb.chunks_exact(k));
        for (((xr, dr), yr), &m) in rows.zip(ob.chunks_exact_mut(k)).zip(&maxes) {
            match op {
                RowOp::Softmax => {
                    let inv = T::one() / sum(yr);
                    yr.iter_mut().for_each(|v| *v *= inv);
                }
                RowOp::LogSoftmax => {
                    // (x - m) - log(s), in that order: x - (m + log(s))
                    // would lose the digits of log(s) when |m| is large.
                    let ls = sum(yr).ln();
                    for (v, &xv) in yr.iter_mut().zip(xr) {
                        *v = (xv - m) - ls;
                    }
                }
                _ => {
                    // exp(y) is in `yr` already.
                    let s = sum(dr);
                    for (g, &d) in yr.iter_mut().zip(dr) {
                        *g = d - *g * s;
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `dx = y·(δ - sum(y·δ))`, row by row (a function of its own: it ran
    /// slower inside [`exp_rows`]).
    fn softmax_backward_rows<T: Math>(y: &[T], d: &[T], dx: &mut [T], k: usize) {
        for ((yr, dr), gr) in y.chunks_exact(k).zip(d.chunks_exact(k)).zip(dx.chunks_exact_mut(k)) {
            let s = dot(yr, dr);
            for ((g, &y), &d) in gr.iter_mut().zip(yr).zip(dr) {
                *g = y * (d - s);
            }
        }
    }
}

/// Runs `f(first_row, rows_of_out)` over `out` (rows of `width`), split in
/// one part per thread when the work, `n·k`, is worth it.
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
    let threads = threads::num_threads();
    let parallel = cfg!(feature = "multi-threads") && n >= 2 && threads > 1;
    if !parallel || n.saturating_mul(k) < crate::simd::per_lanes::<T>(SOFTMAX_PAR_MIN_WORK) {
        return f(0, out);
    }
    let rows = n.div_ceil(threads);
    let parts = n.div_ceil(rows);
    threads::par_items(out.chunks_mut(rows * width), parts, |i, c| f(i * rows, c));
}

/// Rejects an input `x (n, k)` whose `n > 0` rows have no element.
pub(crate) fn check_rows(op: &'static str, n: usize, k: usize) -> Result<(), KernelError> {
    if k == 0 && n > 0 {
        let got = fmt_shape(&[n, k]);
        return Err(KernelError::shape(op, "x", "(N, k) with k >= 1", got));
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
        let want = format!("{} (the shape of {other})", fmt_shape(b));
        return Err(KernelError::shape(op, arg, want, fmt_shape(a)));
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

/// Runs `op` over the rows of `a` (and of `delta`, for the backward ops;
/// `a` again for the forward ones) into a new `(N, k)` array, in parallel
/// tasks when the work is large.
fn map_rows<T: Math>(
    op_name: &'static str,
    op: RowOp,
    a: ArrayView2<'_, T>,
    delta: Option<ArrayView2<'_, T>>,
) -> Result<Array2<T>, KernelError> {
    let (n, k) = a.dim();
    let what = match &delta {
        Some(d) => {
            check_same(op_name, "delta", "y", d.shape(), a.shape())?;
            "y"
        }
        None => {
            check_rows(op_name, n, k)?;
            "the input"
        }
    };
    let a = standard(op_name, what, &a)?;
    let d = delta
        .as_ref()
        .map(|d| standard(op_name, "delta", d))
        .transpose()?;
    let as_ = a.as_slice().expect("standard layout");
    let ds = d
        .as_ref()
        .map_or(as_, |d| d.as_slice().expect("standard layout"));
    filled_by(op_name, n, k, |out| {
        over_rows(out, n, k, k, |r0, oc| {
            let r = r0 * k..r0 * k + oc.len();
            rows(op, &as_[r.clone()], &ds[r], oc, k);
        });
    })
}

/// Softmax along the last axis of `x (N, k)`.
pub fn softmax<T: Exp>(x: ArrayView2<'_, T>) -> Result<Array2<T>, KernelError> {
    map_rows("softmax", RowOp::Softmax, x, None)
}

/// Log-softmax along the last axis of `x (N, k)`.
pub fn log_softmax<T: Exp>(x: ArrayView2<'_, T>) -> Result<Array2<T>, KernelError> {
    map_rows("log_softmax", RowOp::LogSoftmax, x, None)
}

/// Gradient of softmax given its output `y` and `delta = dL/dy`.
pub fn softmax_backward<T: Exp>(
    y: ArrayView2<'_, T>,
    delta: ArrayView2<'_, T>,
) -> Result<Array2<T>, KernelError> {
    map_rows("softmax_backward", RowOp::SoftmaxBackward, y, Some(delta))
}

/// Gradient of log-softmax given its output `y` and `delta = dL/dy`.
pub fn log_softmax_backward<T: Exp>(
    y: ArrayView2<'_, T>,
    delta: ArrayView2<'_, T>,
) -> Result<Array2<T>, KernelError> {
    let op = RowOp::LogSoftmaxBackward;
    map_rows("log_softmax_backward", op, y, Some(delta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_err;
    use crate::loss::{cross_entropy, cross_entropy_backward, Target};
    use ndarray::{s, Array, Array1, Axis, ShapeBuilder};

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

    fn assert_close(a: &Array2<f64>, b: &Array2<f64>, tol: f64, what: &str) {
        assert_eq!(a.shape(), b.shape());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{what}: {p} vs {q}");
        }
    }

    /// The four ops on `x`, `p = softmax(x)`, `ln p` and `d` converted to
    /// `T`, the backward ones from the exact forward values; results in f64.
    fn four_ops<T: Exp>(x: &Array2<f64>, p: &Array2<f64>, d: &Array2<f64>) -> Vec<Array2<f64>> {
        let t = |a: &Array2<f64>| a.mapv(|v| T::from(v).unwrap());
        let (x, lp, p, d) = (t(x), t(&p.mapv(f64::ln)), t(p), t(d));
        [
            softmax(x.view()),
            log_softmax(x.view()),
            softmax_backward(p.view(), d.view()),
            log_softmax_backward(lp.view(), d.view()),
        ]
        .map(|r| r.unwrap().mapv(|v| v.to_f64().unwrap()))
        .into()
    }

    /// The four ops against the reference, on named shapes (a classifier's
    /// output, serial and parallel sizes) at logit scales 5 and 20, then on
    /// every row length through the 16- and 32-lane steps, their tails and
    /// [`WIDE`] (scale 8): f64 to 1e-13 (1e-12 for the log-softmax
    /// backward), f32 within a few ulp of the larger terms.
    #[test]
    fn every_op_dtype_and_shape_matches_the_reference() {
        let shapes = [(1, 1), (3, 7), (5, 8), (4, 17), (1000, 10), (256, 1000)];
        let mut cases: Vec<_> = (shapes.iter().chain(&[(2, 5000)]))
            .flat_map(|&(n, k)| [(n, k, 5.0), (n, k, 20.0)])
            .collect();
        for k in [1, 2, 7, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000] {
            cases.extend([1, 3, 70].map(|n| (n, k, 8.0)));
        }
        for (n, k, scale) in cases {
            let x = filled(n, k, scale);
            let d = filled(n, k, 1.0).mapv(|v| v - 0.3);
            let p = reference(&x);
            // d softmax: y·(d - Σ y·d); d log_softmax: d - p·Σ d.
            let dot = (&p * &d).sum_axis(Axis(1)).insert_axis(Axis(1));
            let sd = d.sum_axis(Axis(1)).insert_axis(Axis(1));
            let want = [
                &p,
                &p.mapv(f64::ln),
                &(&p * &(&d - &dot)),
                &(&d - &(&p * &sd)),
            ];
            let tol64 = [1e-13, 1e-13, 1e-13, 1e-12];
            for (dtype, got, tol) in [
                ("f64", four_ops::<f64>(&x, &p, &d), tol64),
                ("f32", four_ops::<f32>(&x, &p, &d), [2e-6, 2e-6, 2e-6, 4e-6]),
            ] {
                let ops = ["softmax", "log_softmax", "backward", "log backward"];
                for (i, op) in ops.iter().enumerate() {
                    let what = format!("{op} {dtype} ({n}, {k}) scale {scale}");
                    assert_close(&got[i], want[i], tol[i], &what);
                }
            }
        }
    }

    #[test]
    fn exp_is_accurate_and_keeps_special_values() {
        // With δ = 0 but for a last column of -1, the log-softmax backward
        // writes e^y exactly (δ - e^y·(-1)) in the other columns: the `exp`
        // of the sums and of the backward step, short rows and long ones,
        // over [-87, 10].
        for k in [16, 1001] {
            let n = 1_000_000 / (k - 1);
            let at = |i: usize, j: usize| -87.0 + 97.0 * ((i * (k - 1) + j) as f32 / 1e6);
            let y = Array2::from_shape_fn((n, k), |(i, j)| if j + 1 < k { at(i, j) } else { 0.0 });
            let d = Array2::from_shape_fn((n, k), |(_, j)| if j + 1 < k { 0.0 } else { -1.0 });
            let e = log_softmax_backward(y.view(), d.view()).unwrap();
            let (y, e) = (y.slice(s![.., ..k - 1]), e.slice(s![.., ..k - 1]));
            for (&x, &g) in y.iter().zip(&e) {
                let want = f64::from(x).exp();
                let err = ((f64::from(g) - want) / want).abs();
                assert!(err < 2e-7 + 3e-9 * f64::from(x.abs()), "e^{x}: {err}");
            }
        }
        // The sums of exp agree with the scalar form.
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 30.0).collect();
        for n in [1, 7, 15, 16, 17, 31, 32, 33, 37] {
            let x = &x[..n];
            let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let want: f64 = x.iter().map(|&v| f64::from(v - m).exp()).sum();
            let mut y = vec![0.0; n];
            let s = exp_sum(x, m, Some(&mut y[..]));
            assert!((f64::from(s) - want).abs() < 1e-6 * want, "n = {n}");
            assert!((f64::from(exp_sum(x, m, None)) - want).abs() < 1e-6 * want);
        }
    }

    #[test]
    fn huge_and_special_logits_every_row_length() {
        for &k in &[1usize, 7, 10, 15, 16, 17, 1000] {
            let x = filled(5, k, 1e4).mapv(|v| v as f32);
            let p = reference(&x.mapv(f64::from));
            let y = softmax(x.view()).unwrap();
            let ly = log_softmax(x.view()).unwrap();
            assert_close(&y.mapv(f64::from), &p, 2e-6, "softmax");
            assert!(y.iter().chain(ly.iter()).all(|v| v.is_finite()), "k = {k}");
            let d = Array2::<f32>::ones((5, k));
            let g = log_softmax_backward(ly.view(), d.view()).unwrap();
            let gs = softmax_backward(y.view(), d.view()).unwrap();
            assert!(g.iter().chain(gs.iter()).all(|v| v.is_finite()), "k = {k}");
            let t = Array1::from(vec![0i64; 5]);
            let ce = cross_entropy(x.view(), Target::Index(t.view())).unwrap();
            assert!(ce.iter().all(|v| v.is_finite()), "k = {k}");
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
        for target in [Target::Index(t.view()), Target::Prob(onehot.view())] {
            let got = cross_entropy_backward(x.view(), target).unwrap();
            assert_close(&got, &g, 1e-13, "cross_entropy_backward");
        }
        // Soft targets that do not sum to 1: grad = softmax·Σp - p.
        let soft = onehot.mapv(|v| v * 2.0 + 0.1);
        let sp = soft.sum_axis(Axis(1)).insert_axis(Axis(1));
        let got = cross_entropy_backward(x.view(), Target::Prob(soft.view())).unwrap();
        assert_close(&got, &(&(&p * &sp) - &soft), 1e-13, "soft targets");
    }

    #[test]
    fn layouts_and_errors() {
        let x = filled(9, 6, 2.0);
        let f = x.as_standard_layout().to_owned().reversed_axes();
        let xf = Array::from_shape_vec((9, 6).f(), f.iter().copied().collect()).unwrap();
        assert_eq!(softmax(xf.view()).unwrap(), softmax(x.view()).unwrap());
        let xr = x.slice(s![..;-1, ..]);
        let xrc = xr.to_owned();
        assert_eq!(log_softmax(xr).unwrap(), log_softmax(xrc.view()).unwrap());
        let e = softmax_backward(x.view(), filled(9, 5, 1.0).view());
        let want = "delta must have shape (9, 6) (the shape of y), got (9, 5)";
        assert_err(e, want);
        let t = Array1::from(vec![0i64, 6, 0, 0, 0, 0, 0, 0, 0]);
        let e = cross_entropy(x.view(), Target::Index(t.view()));
        assert_err(e, "target[1] = 6 is not a class index in [0, 6)");
        assert_err(softmax(Array2::<f64>::zeros((2, 0)).view()), "k >= 1");
        let y = softmax(Array2::<f32>::zeros((0, 4)).view()).unwrap();
        assert_eq!(y.dim(), (0, 4));
    }
}
