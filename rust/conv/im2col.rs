//! Convolution as matrix products (im2col + GEMM), for any patch length.
//!
//! With channels last, a receptive field is `Kh` runs of `Kw·Cin` numbers,
//! so the patch matrix `col (N·Ho·Wo, Kh·Kw·Cin)` is filled by a few
//! `memcpy`s per row and, with `wm (Kh·Kw·Cin, Cout)`, `out = col·wm + b`.
//! The backward passes: `dcol = δ·wmᵀ` scattered back (col2im) for the input,
//! `dW += colᵀ·δ` for the weight. Each product runs on the calling thread.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::Conv2dParams;
use crate::float::Float;
use crate::matmul::{gemm_unchecked, sum_rows_into};

thread_local! {
    /// Each thread's patch buffer, kept between calls: a fresh one per call
    /// costs a page fault per 4 KiB, which can take longer than the product.
    /// Never above [`super::col_max_elems`] elements per thread.
    pub(super) static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` elements whose content is arbitrary (every
/// user writes all of it first): the thread's kept buffer `key` ([`SCRATCH`],
/// or a key of its own for a kernel that needs two buffers at once), or a
/// fresh one if that is in use.
pub(crate) fn with_scratch_in<T: Float, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<u64>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let words = (len * std::mem::size_of::<T>()).div_ceil(8);
            if buf.len() < words {
                buf.resize(words, 0);
            }
            // SAFETY: the buffer holds at least `len * size_of::<T>()` bytes,
            // u64 alignment covers f32 and f64, every bit pattern is a valid
            // float, and the borrow of `buf` lives as long as the slice.
            let slice =
                unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<T>(), len) };
            f(slice)
        }
        Err(_) => f(&mut vec![T::zero(); len]),
    })
}

/// `out (m, n) = a (m, k)·b (k, n)`, plus `out` when `accumulate`, on this
/// thread; an empty product leaves `out` as it is.
fn product<T: Float>(
    out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accumulate: bool,
) {
    if a.nrows() * a.ncols() * b.ncols() > 0 {
        let beta = if accumulate { T::one() } else { T::zero() };
        gemm_unchecked(out, a, b, T::one(), beta);
    }
}

/// The output `oc (n1 - n0, Ho, Wo, Cout)` of samples `n0..n1` of `xs`:
/// `col·wm + b`.
pub(super) fn forward<T: Float>(
    xs: &[T],
    p: &Conv2dParams,
    (wm, b): (ArrayView2<'_, T>, Option<&[T]>),
    (n0, n1): (usize, usize),
    oc: &mut [T],
) {
    let rows = (n1 - n0) * p.out_pixels();
    match b {
        Some(b) => oc
            .chunks_exact_mut(p.cout)
            .for_each(|r| r.copy_from_slice(b)),
        None if p.patch() == 0 => oc.fill(T::zero()),
        None => {}
    }
    with_scratch_in(&SCRATCH, rows * p.patch(), |col: &mut [T]| {
        im2col(xs, p, n0, n1, col);
        let colv = ArrayView2::from_shape((rows, p.patch()), &*col).expect("sized");
        let ov = ArrayViewMut2::from_shape((rows, p.cout), oc).expect("sized");
        product(ov, colv, wm, b.is_some());
    });
}

/// Adds d loss / d input of samples `n0..n1` into `dxc`, their `(n1 - n0,
/// H, W, Cin)` gradient (zeroed by the caller), from `ds`, their δ:
/// `col2im(δ·wmᵀ)`, `wt` being `wmᵀ` ([`super::weight_matrix`]).
pub(crate) fn input_grad<T: Float>(
    ds: &[T],
    wt: ArrayView2<'_, T>,
    p: &Conv2dParams,
    n0: usize,
    n1: usize,
    dxc: &mut [T],
) {
    let rows = (n1 - n0) * p.out_pixels();
    let dv = ArrayView2::from_shape((rows, p.cout), ds).expect("sized");
    with_scratch_in(&SCRATCH, rows * p.patch(), |col: &mut [T]| {
        let cv = ArrayViewMut2::from_shape((rows, p.patch()), &mut *col).expect("sized");
        product(cv, dv, wt, false);
        if p.cout > 0 {
            col2im(col, p, dxc);
        }
    });
}

/// Adds the weight gradient `colᵀ·δ` of samples `n0..n1` of `xs` into
/// `gw (Kh·Kw·Cin, Cout)`, and the sums of the rows of `ds`, their δ, into
/// `gb` when it is not empty.
pub(super) fn weight_grad<T: Float>(
    (xs, ds): (&[T], &[T]),
    p: &Conv2dParams,
    (n0, n1): (usize, usize),
    gw: &mut [T],
    gb: &mut [T],
) {
    let (rows, kc) = ((n1 - n0) * p.out_pixels(), p.patch());
    let dv = ArrayView2::from_shape((rows, p.cout), ds).expect("sized");
    let gwv = ArrayViewMut2::from_shape((kc, p.cout), gw).expect("sized");
    with_scratch_in(&SCRATCH, rows * kc, |col: &mut [T]| {
        im2col(xs, p, n0, n1, col);
        let cv = ArrayView2::from_shape((rows, kc), &*col).expect("sized");
        product(gwv, cv.t(), dv, true);
    });
    if !gb.is_empty() {
        sum_rows_into(gb, ds, true);
    }
}

/// Walks the patch matrix of `samples` samples: `f(at, len, from)` for each
/// run of `len` entries at offset `at` of the matrix, `from` being where the
/// run lies in the samples' standard-layout `(samples, H, W, Cin)` buffer, or
/// None where it falls on the padding.
#[inline(always)]
fn patch_runs(p: &Conv2dParams, samples: usize, mut f: impl FnMut(usize, usize, Option<usize>)) {
    let (ho, wo) = p.out_dims();
    let (cin, run, line) = (p.cin, p.kw * p.cin, p.w * p.cin);
    let mut at = 0;
    for n in 0..samples {
        for oi in 0..ho {
            for oj in 0..wo {
                let w0 = (oj * p.sw) as isize - p.pw as isize;
                let inside = w0 >= 0 && w0 as usize + p.kw <= p.w;
                for ki in 0..p.kh {
                    let hi = (oi * p.sh + ki) as isize - p.ph as isize;
                    let start = (n * p.h + hi.max(0) as usize) * line;
                    if hi < 0 || hi as usize >= p.h {
                        f(at, run, None);
                    } else if inside {
                        f(at, run, Some(start + w0 as usize * cin));
                    } else {
                        for kj in 0..p.kw {
                            let wi = w0 + kj as isize;
                            let from = (wi >= 0 && (wi as usize) < p.w).then(|| wi as usize * cin);
                            f(at + kj * cin, cin, from.map(|o| start + o));
                        }
                    }
                    at += run;
                }
            }
        }
    }
}

/// Fills `col` (rows of `p.patch()`) with the patches of samples `n0..n1` of
/// `x`, a standard-layout `(N, H, W, Cin)` buffer; padding reads as zeros.
fn im2col<T: Float>(x: &[T], p: &Conv2dParams, n0: usize, n1: usize, col: &mut [T]) {
    let sample = p.h * p.w * p.cin;
    let xs = &x[n0 * sample..n1 * sample];
    patch_runs(p, n1 - n0, |at, len, from| {
        let dst = &mut col[at..at + len];
        match from {
            Some(s) => dst.copy_from_slice(&xs[s..s + len]),
            None => dst.fill(T::zero()),
        }
    });
}

/// Adds the patch rows `col` back into `dx`, the standard-layout
/// `(n, H, W, Cin)` gradient of their samples; the parts that fall on the
/// padding are dropped.
fn col2im<T: Float>(col: &[T], p: &Conv2dParams, dx: &mut [T]) {
    let samples = dx.len() / (p.h * p.w * p.cin).max(1);
    patch_runs(p, samples, |at, len, from| {
        if let Some(s) = from {
            for (d, &v) in dx[s..s + len].iter_mut().zip(&col[at..at + len]) {
                *d += v;
            }
        }
    });
}
