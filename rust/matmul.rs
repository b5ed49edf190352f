//! Matrix products on the `gemm` crate, and the linear layer built on them.
//!
//! Reference, for `x (N, in)`, `W (in, out)`, `b (out,)` and `δ = dL/dy`:
//!
//! - forward: `y = x·W + b`;
//! - backward: `dL/dW = xᵀ·δ`, `dL/db = Σₙ δ` (over the batch), `dL/dx = δ·Wᵀ`.
//!
//! `gemm` reads any row and column strides, negative ones included, so a
//! transpose is a view with swapped strides (`x.t()`), never a copy. Small
//! batches take the layouts of [`small_gemm`](crate::small_gemm).

use gemm::Parallelism;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use std::sync::Mutex;

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::simd::multiversion;
use crate::small_gemm::product_into;
use crate::threads;

/// Products with fewer multiply-adds than this stay on the calling thread:
/// below it a hand-off to the pool costs more than the split saves (the
/// MLP's `(100, 256)·(256, 128)` stays whole, the CNNs' larger products split).
pub const GEMM_PAR_MIN_WORK: usize = 4 * 1024 * 1024;

/// Whether a product is split across the kernels' threads.
pub(crate) fn parallel(m: usize, n: usize, k: usize) -> bool {
    let work = m.saturating_mul(n).saturating_mul(k);
    cfg!(feature = "multi-threads") && work >= GEMM_PAR_MIN_WORK && threads::num_threads() > 1
}

/// Checks that `a (m, k)` and `b (k, n)` can be multiplied.
fn check_inner(op: &'static str, a: &[usize], b: &[usize]) -> Result<(), KernelError> {
    if a[1] != b[0] {
        return Err(KernelError::shape(
            op,
            "b",
            format!("({}, n) to match a {}", a[1], fmt_shape(a)),
            fmt_shape(b),
        ));
    }
    Ok(())
}

/// `out = beta·out + alpha·(a·b)`, in place, for any strides of `a`, `b` and `out`.
///
/// With `beta = 0` the previous content of `out` is never read (NaN in it
/// does not leak through). Shapes: `a (m, k)`, `b (k, n)`, `out (m, n)`.
pub fn gemm_into<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
) -> Result<(), KernelError> {
    const OP: &str = "addmm";
    check_inner(OP, a.shape(), b.shape())?;
    let (m, k) = a.dim();
    let n = b.ncols();
    if out.dim() != (m, n) {
        return Err(KernelError::shape(
            OP,
            "out",
            fmt_shape(&[m, n]),
            fmt_shape(out.shape()),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if out
        .strides()
        .iter()
        .zip(out.shape())
        .any(|(&s, &d)| s == 0 && d > 1)
    {
        return Err(KernelError::invalid(
            OP,
            "out has a zero stride (a broadcast view): it cannot be written",
        ));
    }
    if k == 0 {
        // An empty sum: only the scaling of `out` remains.
        if beta == T::zero() {
            out.fill(T::zero());
        } else {
            out.mapv_inplace(|v| v * beta);
        }
        return Ok(());
    }
    if !parallel(m, n, k) {
        gemm_unchecked(out, a, b, alpha, beta, Parallelism::None);
    } else if split_inner(m, n, k) {
        gemm_split_k(out, a, b, alpha, beta);
    } else {
        gemm_split_out(out, a, b, alpha, beta);
    }
    Ok(())
}

/// `out = beta·out + alpha·(a·b)` with `out` cut in one block of rows (or of
/// columns, when it is wider than tall) per thread, each a single-threaded
/// product run by [`threads::par_parts`].
fn gemm_split_out<T: Float>(
    out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
) {
    let (m, n) = out.dim();
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    let parts = threads::num_threads().min(len);
    let ranges = threads::split_even(len, parts);
    let mut blocks = Vec::with_capacity(parts);
    let mut rest = out;
    for r in ranges.iter().take(parts - 1) {
        let (head, tail) = rest.split_at(Axis(if by_rows { 0 } else { 1 }), r.len());
        blocks.push(Mutex::new(head));
        rest = tail;
    }
    blocks.push(Mutex::new(rest));
    threads::par_parts(parts, |p| {
        let r = ranges[p].clone();
        let mut block = blocks[p].lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = if by_rows {
            (a.slice(s![r, ..]), b)
        } else {
            (a, b.slice(s![.., r]))
        };
        gemm_unchecked(block.view_mut(), a, b, alpha, beta, Parallelism::None);
    });
}

/// Whether a product worth splitting splits its inner dimension instead of
/// its output: when the output is small and the inner dimension long, as in
/// a CNN's first dense layer `(100, 1568)·(1568, 100)`, a split of the
/// output leaves threads mostly idle.
fn split_inner(m: usize, n: usize, k: usize) -> bool {
    m.saturating_mul(n) <= SPLIT_K_MAX_OUT && k >= 8 * m.max(n) && threads::num_threads() >= 2
}

/// Outputs up to this many elements may split their inner dimension.
const SPLIT_K_MAX_OUT: usize = 128 * 128;

/// `out = beta·out + alpha·(a·b)` with the inner dimension cut in one run
/// per thread: the first run into `out`, each other into a scratch matrix
/// added to `out` afterwards, in order (the same sums for a thread count).
fn gemm_split_k<T: Float>(
    out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
) {
    let parts = threads::num_threads().min(a.ncols());
    let ranges = threads::split_even(a.ncols(), parts);
    let dim = out.raw_dim();
    let out = Mutex::new(out);
    let partials = threads::par_map(parts, |p| {
        let r = ranges[p].clone();
        let (a, b) = (a.slice(s![.., r.clone()]), b.slice(s![r, ..]));
        if p == 0 {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            gemm_unchecked(out.view_mut(), a, b, alpha, beta, Parallelism::None);
            None
        } else {
            let mut part = Array2::<T>::zeros(dim);
            gemm_unchecked(part.view_mut(), a, b, alpha, T::zero(), Parallelism::None);
            Some(part)
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    for part in partials.into_iter().flatten() {
        out += &part;
    }
}

/// `out = beta·out + alpha·(a·b)` on the calling thread's pool, shapes unchecked.
///
/// The caller guarantees `a (m, k)`, `b (k, n)`, `out (m, n)` with `m, n, k > 0`
/// and no zero stride in `out`.
pub(crate) fn gemm_unchecked<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
    par: Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert!(out.dim() == (m, n) && b.nrows() == k && m * n * k > 0);
    let [ors, ocs] = [out.strides()[0], out.strides()[1]];
    let [ars, acs] = [a.strides()[0], a.strides()[1]];
    let [brs, bcs] = [b.strides()[0], b.strides()[1]];
    // SAFETY: the caller checked the shapes; the pointers and strides come from
    // live ndarray views of those shapes, so every index gemm forms lies inside
    // its array. `out` is borrowed mutably, so it does not alias `a` or `b`.
    // gemm's convention is dst := alpha·dst + beta·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            ocs,
            ors,
            beta != T::zero(),
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// A zeroed `(n, k)` array, or an error naming `what` if it cannot be allocated.
pub(crate) fn zeros<T: Float>(
    op: &'static str,
    what: &str,
    n: usize,
    k: usize,
) -> Result<Array2<T>, KernelError> {
    check_alloc(op, what, &[n, k])?;
    Ok(Array2::zeros((n, k)))
}

/// `a·b` for `a (m, k)` and `b (k, n)`, any strides.
pub fn matmul<T: Float>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
) -> Result<Array2<T>, KernelError> {
    check_inner("matmul", a.shape(), b.shape())?;
    let mut out = zeros("matmul", "the output", a.nrows(), b.ncols())?;
    gemm_into(out.view_mut(), a, b, T::one(), T::zero())?;
    Ok(out)
}

/// Checks `x (N, in)`, `w (in, out)` and `b (out,)` of a linear layer.
fn check_linear(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    b: Option<usize>,
) -> Result<(), KernelError> {
    check_inner(op, x, w)?;
    match b {
        Some(len) if len != w[1] => Err(KernelError::shape(
            op,
            "bias",
            fmt_shape(&w[1..]),
            fmt_shape(&[len]),
        )),
        _ => Ok(()),
    }
}

/// The linear layer's forward pass, `x·w + b`, as a new `(N, out)` array.
pub fn linear<T: Float>(
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    b: Option<ArrayView1<'_, T>>,
) -> Result<Array2<T>, KernelError> {
    check_linear("linear", x.shape(), w.shape(), b.map(|b| b.len()))?;
    let mut out = zeros("linear", "the output", x.nrows(), w.ncols())?;
    linear_into(out.view_mut(), x, w, b, &mut Vec::new())?;
    Ok(out)
}

/// `out = x·w + b` (shapes checked by the caller): the bias written first,
/// the product accumulated on it. `tile` is [`product_into`]'s scratch.
pub fn linear_into<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    tile: &mut Vec<T>,
) -> Result<(), KernelError> {
    if let Some(b) = &b {
        for mut row in out.rows_mut() {
            row.assign(b);
        }
    }
    product_into(out, x, w, b.is_some(), tile)
}

/// The gradients of a linear layer's backward pass, written or accumulated.
pub struct LinearGrads<'a, T> {
    /// `dL/dW (in, out)`.
    pub w: ArrayViewMut2<'a, T>,
    /// `dL/db (out,)`, for a layer with a bias.
    pub b: Option<ArrayViewMut1<'a, T>>,
    /// Add into `w` and `b` (true) or overwrite them.
    pub accumulate: bool,
}

/// The linear layer's backward pass for `δ (N, out)`: `dL/dW (+)= xᵀ·δ`,
/// `dL/db (+)= Σₙ δ`, and `dx = δ·wᵀ` when `dx` is given (shapes checked by
/// the caller).
pub fn linear_backward_into<T: Float>(
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    delta: ArrayView2<'_, T>,
    grads: &mut LinearGrads<'_, T>,
    dx: Option<ArrayViewMut2<'_, T>>,
    tile: &mut Vec<T>,
) -> Result<(), KernelError> {
    let acc = grads.accumulate;
    product_into(grads.w.view_mut(), x.t(), delta, acc, tile)?;
    if let Some(gb) = grads.b.as_mut() {
        match (gb.as_slice_mut(), delta.as_slice()) {
            (Some(gb), Some(d)) => sum_rows_into(gb, d, acc),
            _ => {
                if !acc {
                    gb.fill(T::zero());
                }
                for row in delta.rows() {
                    gb.zip_mut_with(&row, |g, &d| *g += d);
                }
            }
        }
    }
    match dx {
        Some(dx) => product_into(dx, delta, w.t(), false, tile),
        None => Ok(()),
    }
}

multiversion! {
    /// `sums (+)= Σ rows` of the row-major `(n, sums.len())` matrix `rows`,
    /// added row after row (the order of `delta.sum(axis=0)`).
    fn sum_rows_into<T: Float>(sums: &mut [T], rows: &[T], accumulate: bool) {
        if !accumulate {
            sums.fill(T::zero());
        }
        for row in rows.chunks_exact(sums.len()) {
            sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, Array1};

    fn naive(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                out[[i, j]] = (0..a.ncols()).map(|p| a[[i, p]] * b[[p, j]]).sum();
            }
        }
        out
    }

    fn seq(r: usize, c: usize, seed: f64) -> Array2<f64> {
        Array::from_shape_fn((r, c), |(i, j)| {
            ((i * 7 + j * 3) as f64 * 0.37 + seed).sin()
        })
    }

    fn assert_close(x: &Array2<f64>, y: &Array2<f64>) {
        assert_eq!(x.shape(), y.shape());
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn matches_naive_on_odd_sizes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 1, 65),
            (130, 70, 50),
        ] {
            let (a, b) = (seq(m, k, 0.1), seq(k, n, 0.7));
            assert_close(
                &matmul(a.view(), b.view()).unwrap(),
                &naive(a.view(), b.view()),
            );
        }
    }

    #[test]
    fn transposed_and_negative_strides() {
        let a = seq(9, 6, 0.3);
        let b = seq(9, 4, 0.5);
        // aᵀ·b without a copy.
        assert_close(&matmul(a.t(), b.view()).unwrap(), &naive(a.t(), b.view()));
        let a_rev = a.slice(s![..;-1, ..;-2]);
        let b2 = seq(3, 5, 0.9);
        assert_close(&matmul(a_rev, b2.view()).unwrap(), &naive(a_rev, b2.view()));
    }

    #[test]
    fn empty_dimensions() {
        let out = matmul(seq(4, 0, 0.0).view(), seq(0, 3, 0.0).view()).unwrap();
        assert_eq!(out, Array2::<f64>::zeros((4, 3)));
        assert_eq!(
            matmul(seq(0, 5, 0.0).view(), seq(5, 3, 0.0).view())
                .unwrap()
                .dim(),
            (0, 3)
        );
    }

    #[test]
    fn accumulates_and_scales() {
        let (a, b) = (seq(5, 4, 0.2), seq(4, 3, 0.4));
        let mut out = seq(5, 3, 0.6);
        let expected = &out * 0.5 + naive(a.view(), b.view()) * 2.0;
        gemm_into(out.view_mut(), a.view(), b.view(), 2.0, 0.5).unwrap();
        assert_close(&out, &expected);
    }

    #[test]
    fn beta_zero_ignores_nan_in_out() {
        let (a, b) = (seq(3, 4, 0.2), seq(4, 2, 0.4));
        let mut out = Array2::from_elem((3, 2), f64::NAN);
        gemm_into(out.view_mut(), a.view(), b.view(), 1.0, 0.0).unwrap();
        assert_close(&out, &naive(a.view(), b.view()));
    }

    #[test]
    fn shape_errors_name_the_argument() {
        let err = matmul(seq(2, 3, 0.0).view(), seq(4, 5, 0.0).view()).unwrap_err();
        assert!(
            err.to_string().contains("matmul: b must have shape (3, n)"),
            "{err}"
        );
        let err = linear(
            seq(2, 3, 0.0).view(),
            seq(3, 5, 0.0).view(),
            Some(Array1::zeros(4).view()),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("bias must have shape (5,), got (4,)"),
            "{err}"
        );
    }

    #[test]
    fn bias_sums_in_row_order() {
        // Rows added in order onto zero (or onto what is there).
        let rows: Vec<f32> = (0..3 * 37).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut sums = vec![f32::NAN; 37];
        sum_rows_into(&mut sums, &rows, false);
        for (j, &s) in sums.iter().enumerate() {
            assert_eq!(s, 0.0 + rows[j] + rows[37 + j] + rows[74 + j]);
        }
        let mut sums = vec![1.0_f32; 37];
        sum_rows_into(&mut sums, &rows, true);
        assert_eq!(sums[5], 1.0 + rows[5] + rows[42] + rows[79]);
    }

    #[test]
    fn linear_backward_matches_naive() {
        let (x, w, d) = (seq(6, 4, 0.1), seq(4, 3, 0.2), seq(6, 3, 0.3));
        let (mut dx, mut gw, mut gb) = (seq(6, 4, 0.0), seq(4, 3, 0.0), Array1::<f64>::ones(3));
        let mut grads = LinearGrads {
            w: gw.view_mut(),
            b: Some(gb.view_mut()),
            accumulate: true,
        };
        let (xv, wv, dv) = (x.view(), w.view(), d.view());
        linear_backward_into(xv, wv, dv, &mut grads, Some(dx.view_mut()), &mut vec![]).unwrap();
        assert_close(&dx, &naive(d.view(), w.t()));
        assert_close(&gw, &(naive(x.t(), d.view()) + seq(4, 3, 0.0)));
        // Rows added in order onto what was there.
        assert_eq!(
            gb,
            d.rows()
                .into_iter()
                .fold(Array1::<f64>::ones(3), |a, r| a + r)
        );
    }

    #[test]
    fn linear_adds_bias() {
        let (x, w) = (seq(6, 4, 0.1), seq(4, 3, 0.2));
        let b = Array1::from(vec![1.0, -2.0, 0.5]);
        let expected = naive(x.view(), w.view()) + &b;
        assert_close(
            &linear(x.view(), w.view(), Some(b.view())).unwrap(),
            &expected,
        );
    }

    #[test]
    fn large_product_in_parallel_matches_f32() {
        let a = Array::from_shape_fn((200, 300), |(i, j)| ((i + 2 * j) % 7) as f32 - 3.0);
        let b = Array::from_shape_fn((300, 150), |(i, j)| ((3 * i + j) % 5) as f32 - 2.0);
        let got = matmul(a.view(), b.view()).unwrap();
        let expected = naive(a.mapv(f64::from).view(), b.mapv(f64::from).view());
        // Small integers: the f32 products are exact.
        assert_eq!(got.mapv(f64::from), expected);
    }

    #[test]
    fn inner_split_matches_naive() {
        // Small outputs with a long inner dimension split it in two halves on
        // 2 threads: beta, alpha, NaN in `out` with beta = 0, transposed views.
        crate::threads::set_num_threads(2).unwrap();
        for &(m, k, n, transposed) in &[(20, 1000, 30, false), (33, 2049, 17, true)] {
            assert!(split_inner(m, n, k));
            let (a, b) = (seq(m, k, 0.1), seq(k, n, 0.2));
            let (a, b) = if transposed {
                (a.t().to_owned(), b.t().to_owned())
            } else {
                (a, b)
            };
            let (av, bv) = if transposed {
                (a.t(), b.t())
            } else {
                (a.view(), b.view())
            };
            let expected = naive(av, bv);
            let mut out = Array2::from_elem((m, n), f64::NAN);
            gemm_into(out.view_mut(), av, bv, 1.0, 0.0).unwrap();
            assert_close(&out, &expected);
            let start = seq(m, n, 0.3);
            let mut out = start.clone();
            gemm_into(out.view_mut(), av, bv, 0.5, 2.0).unwrap();
            assert_close(&out, &(&start * 2.0 + &expected * 0.5));
        }
        crate::threads::set_num_threads(0).unwrap();
    }
}
