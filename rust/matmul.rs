//! Matrix products on the `gemm` crate, and the linear layer built on them.
//!
//! Reference, for `x (N, in)`, `W (in, out)`, `b (out,)` and `δ = dL/dy`:
//!
//! - forward: `y = x·W + b`;
//! - backward: `dL/dW = xᵀ·δ`, `dL/db = Σₙ δ` (over the batch), `dL/dx = δ·Wᵀ`.
//!
//! `gemm` reads any row and column strides, negative ones included, so a
//! transpose is a view with swapped strides (`x.t()`), never a copy. Small
//! batches take the layouts of [`small_gemm`](crate::small_gemm); one row of
//! output from a row-major `b` (batch 1) is [`gemv`]'s. The thread split is
//! chosen from the shape: see [`parallel`] and [`split_inner`].

use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use std::borrow::Cow;
use std::sync::Mutex;

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::simd::multiversion;
use crate::small_gemm::product_into;
use crate::threads;

/// Products of at least this many multiply-adds split across the kernels'
/// threads: those that take some 15 µs or more on one core, far above a
/// hand-off to a lingering worker (a few µs). A core does about two
/// vector FMAs a cycle at ~3 GHz, so 15 µs is about 100K multiply-adds per
/// vector lane of `T`: 800K `f32` with AVX2, 1.6M with AVX-512, 400K `f64`
/// with AVX2. The MLP's `(100, 256)·(256, 128)` splits; its batch-1 forward
/// and the autoencoder's batch-10 products do not.
pub(crate) fn par_min_work<T>() -> usize {
    crate::simd::per_lanes::<T>(800_000)
}

/// Whether a product is split across the kernels' threads: by its multiply-adds,
/// one row or more (a batch-1 forward is over before a split's waiting pays).
pub(crate) fn parallel<T>(m: usize, n: usize, k: usize) -> bool {
    let enough = m.saturating_mul(n).saturating_mul(k) >= par_min_work::<T>();
    cfg!(feature = "multi-threads") && enough && threads::num_threads() > 1
}

/// Checks that `a (m, k)` and `b (k, n)` can be multiplied.
fn check_inner(op: &'static str, a: &[usize], b: &[usize]) -> Result<(), KernelError> {
    if a[1] != b[0] {
        let want = format!("({}, n) to match a {}", a[1], fmt_shape(a));
        return Err(KernelError::shape(op, "b", want, fmt_shape(b)));
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
        let (want, got) = (fmt_shape(&[m, n]), fmt_shape(out.shape()));
        return Err(KernelError::shape(OP, "out", want, got));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if std::iter::zip(out.strides(), out.shape()).any(|(&s, &d)| s == 0 && d > 1) {
        let why = "out has a zero stride (a broadcast view): it cannot be written";
        return Err(KernelError::invalid(OP, why));
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
    if parallel::<T>(m, n, k) {
        gemm_split(out, a, b, alpha, beta);
    } else {
        gemm_unchecked(out, a, b, alpha, beta);
    }
    Ok(())
}

/// Whether a product worth splitting splits its inner dimension: one row of
/// output, or a small output with a long inner dimension (a CNN's first dense
/// layer `(100, 1568)·(1568, 100)`), whose split would leave threads idle.
fn split_inner(m: usize, n: usize, k: usize) -> bool {
    m == 1 || (m.saturating_mul(n) <= SPLIT_K_MAX_OUT && k >= 8 * m.max(n))
}

/// Outputs up to this many elements may split their inner dimension.
const SPLIT_K_MAX_OUT: usize = 128 * 128;

/// `out = beta·out + alpha·(a·b)` as one single-threaded product per thread:
/// of a range of the inner dimension ([`split_inner`]; the first into `out`,
/// the others into scratch matrices added to `out` in order), or of a block
/// of rows of `out` (of columns, when it is wider than tall).
fn gemm_split<T: Float>(
    out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
) {
    let one = |out: ArrayViewMut2<'_, T>, a, b, beta| gemm_unchecked(out, a, b, alpha, beta);
    let part = |len| threads::split_even(len, threads::num_threads().min(len));
    let (m, n) = out.dim();
    if split_inner(m, n, a.ncols()) {
        let ranges = part(a.ncols());
        let out = Mutex::new(out);
        let partials = threads::par_map(ranges.len(), |p| {
            let r = ranges[p].clone();
            let (a, b) = (a.slice(s![.., r.clone()]), b.slice(s![r, ..]));
            if p == 0 {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                one(out.view_mut(), a, b, beta);
                return None;
            }
            let mut part = Array2::<T>::zeros((m, n));
            one(part.view_mut(), a, b, T::zero());
            Some(part)
        });
        let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
        for part in partials.into_iter().flatten() {
            out += &part;
        }
        return;
    }
    let axis = Axis(usize::from(m < n));
    let ranges = part(out.len_of(axis));
    let mut blocks = Vec::with_capacity(ranges.len());
    let mut rest = out;
    for r in &ranges[..ranges.len() - 1] {
        let (head, tail) = rest.split_at(axis, r.len());
        blocks.push(Mutex::new(head));
        rest = tail;
    }
    blocks.push(Mutex::new(rest));
    threads::par_parts(ranges.len(), |p| {
        let r = ranges[p].clone();
        let mut block = blocks[p].lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = if axis == Axis(0) {
            (a.slice(s![r, ..]), b)
        } else {
            (a, b.slice(s![.., r]))
        };
        one(block.view_mut(), a, b, beta);
    });
}

/// `out (n,) = beta·out + alpha·(x·w)` for the row-major `(x.len(), n)`
/// matrix `w`; with `beta = 0` the previous `out` is never read.
fn gemv<T: Float>(out: &mut [T], x: ArrayView1<'_, T>, w: &[T], alpha: T, beta: T) {
    let x: Cow<'_, [T]> = match x.as_slice() {
        Some(x) if alpha == T::one() => Cow::Borrowed(x),
        _ => x.iter().map(|&v| alpha * v).collect(),
    };
    let zero = beta == T::zero();
    out.iter_mut()
        .for_each(|o| *o = if zero { T::zero() } else { beta * *o });
    gemv_acc(out, &x, w);
}

multiversion! {
    /// `acc += Σₚ x[p]·w[p·n..(p + 1)·n]` for `n = acc.len()`, four rows of `w`
    /// at a time: one pass over `acc` per four rows ([`gemv_quad`]), or under
    /// 32 columns (where such passes are mostly loop overhead) one pass over
    /// the rows per band of columns summed in registers ([`gemv_band`]).
    fn gemv_acc<T: Float>(acc: &mut [T], x: &[T], w: &[T]) {
        let n = acc.len();
        if n < 32 {
            let mut col = 0;
            while col < n {
                col += match n - col {
                    8.. => gemv_band::<T, 8>(acc, x, w, col),
                    4.. => gemv_band::<T, 4>(acc, x, w, col),
                    2 | 3 => gemv_band::<T, 2>(acc, x, w, col),
                    _ => gemv_band::<T, 1>(acc, x, w, col),
                };
            }
        } else {
            for (x, w) in x.as_chunks::<4>().0.iter().zip(w.chunks_exact(4 * n)) {
                let col = gemv_quad::<T, 32>(acc, x, w, 0);
                let col = gemv_quad::<T, 8>(acc, x, w, col);
                gemv_quad::<T, 1>(acc, x, w, col);
            }
        }
        let done = x.len() / 4 * 4;
        for (&x, w) in x[done..].iter().zip(w[done * n..].chunks_exact(n)) {
            acc.iter_mut().zip(w).for_each(|(a, &v)| *a += x * v);
        }
    }
}

/// One pass of [`gemv_acc`] over the columns from `col` on, `V` at a time,
/// for the four rows of `w` (`(4, acc.len())`); returns where it stopped.
#[inline(always)]
fn gemv_quad<T: Float, const V: usize>(acc: &mut [T], x: &[T; 4], w: &[T], col: usize) -> usize {
    let n = acc.len();
    let rows = |i: usize| w[i * n + col..(i + 1) * n].chunks_exact(V);
    let quads = rows(0).zip(rows(1)).zip(rows(2).zip(rows(3)));
    for (a, ((p, q), (r, s))) in acc[col..].chunks_exact_mut(V).zip(quads) {
        for l in 0..V {
            a[l] += (x[0] * p[l] + x[1] * q[l]) + (x[2] * r[l] + x[3] * s[l]);
        }
    }
    col + (n - col) / V * V
}

/// Columns `col..col + V` of [`gemv_acc`] over the rows of `w` in fours, on four
/// sums per lane (rows `p mod 4`) that hide the adder's latency; returns `V`.
#[inline(always)]
fn gemv_band<T: Float, const V: usize>(acc: &mut [T], x: &[T], w: &[T], col: usize) -> usize {
    let n = acc.len();
    let mut sums = [[T::zero(); V]; 4];
    for (x, w) in x.chunks_exact(4).zip(w.chunks_exact(4 * n)) {
        for (i, s) in sums.iter_mut().enumerate() {
            let row: &[T; V] = w[i * n + col..][..V].try_into().unwrap();
            for l in 0..V {
                s[l] += x[i] * row[l];
            }
        }
    }
    for (l, a) in acc[col..col + V].iter_mut().enumerate() {
        *a += (sums[0][l] + sums[1][l]) + (sums[2][l] + sums[3][l]);
    }
    V
}

/// `out = beta·out + alpha·(a·b)` on the calling thread, shapes unchecked:
/// [`gemv`] for one row of output from a row-major `b` into a contiguous
/// `out`, the `gemm` crate otherwise.
///
/// The caller guarantees `a (m, k)`, `b (k, n)`, `out (m, n)` with `m, n, k > 0`
/// and no zero stride in `out`.
pub(crate) fn gemm_unchecked<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    beta: T,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert!(out.dim() == (m, n) && b.nrows() == k && m * n * k > 0);
    if let (1, Some(w), Some(out)) = (m, b.as_slice(), out.as_slice_mut()) {
        return gemv(out, a.row(0), w, alpha, beta);
    }
    let [ors, ocs] = [out.strides()[0], out.strides()[1]];
    let [ars, acs] = [a.strides()[0], a.strides()[1]];
    let [brs, bcs] = [b.strides()[0], b.strides()[1]];
    let (o, a, b, read_o) = (out.as_mut_ptr(), a.as_ptr(), b.as_ptr(), beta != T::zero());
    let (no, one_thread) = (false, gemm::Parallelism::None);
    // SAFETY: the caller checked the shapes; the pointers and strides come from
    // live ndarray views of those shapes, so every index gemm forms lies inside
    // its array. `out` is borrowed mutably, so it does not alias `a` or `b`.
    // gemm's arguments: sizes; dst, lhs, rhs, each with its column and row
    // strides (dst read or not); its alpha and beta, in dst := alpha·dst +
    // beta·lhs·rhs; no conjugations; no threads of its own.
    unsafe {
        gemm::gemm(
            m, n, k, o, ocs, ors, read_o, a, acs, ars, b, bcs, brs, beta, alpha, no, no, no,
            one_thread,
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

/// The linear layer's forward pass, `x·w + b`, as a new `(N, out)` array.
pub fn linear<T: Float>(
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    b: Option<ArrayView1<'_, T>>,
) -> Result<Array2<T>, KernelError> {
    check_inner("linear", x.shape(), w.shape())?;
    if let Some(b) = b.filter(|b| b.len() != w.ncols()) {
        let (want, got) = (fmt_shape(&[w.ncols()]), fmt_shape(&[b.len()]));
        return Err(KernelError::shape("linear", "bias", want, got));
    }
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
        out.assign(b); // broadcast over the rows
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
    pub(crate) fn sum_rows_into<T: Float>(sums: &mut [T], rows: &[T], accumulate: bool) {
        if !accumulate {
            sums.fill(T::zero());
        }
        for row in rows.chunks_exact(sums.len().max(1)) {
            sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_err;
    use crate::float::assert_close;
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
        crate::float::seq(r, c, seed)
    }

    #[test]
    fn split_thresholds_grow_with_the_lanes_of_the_type() {
        use crate::simd::{per_lanes, vector_bytes};
        assert_eq!(par_min_work::<f32>(), 100_000 * vector_bytes() / 4);
        assert_eq!(per_lanes::<f64>(1 << 17) * 2, per_lanes::<f32>(1 << 17));
    }

    #[test]
    fn matches_naive_on_odd_sizes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 1, 65),
            (130, 70, 50),
            // One row: gemv's narrow bands (8 + 2, 8 + 8 + 1, 4 + 2 + 1) and
            // wide passes (32 + 1, 32·3 + 4·1, 32 + 8 + 5·1), and its last rows.
            (1, 7936, 10),
            (1, 600, 17),
            (1, 41, 7),
            (1, 37, 33),
            (1, 3, 100),
            (1, 9, 45),
            (1, 2, 1),
        ] {
            let (a, b) = (seq(m, k, 0.1), seq(k, n, 0.7));
            let want = naive(a.view(), b.view());
            assert_close(&matmul(a.view(), b.view()).unwrap(), &want, 1e-12);
            let got = matmul(a.mapv(|v| v as f32).view(), b.mapv(|v| v as f32).view()).unwrap();
            // float32 sums of k products of terms in [-1, 1]
            assert!(std::iter::zip(&got, &want)
                .all(|(&p, q)| (f64::from(p) - q).abs() <= 1e-6 * k as f64));
        }
    }

    #[test]
    fn transposed_and_negative_strides_and_empty_dimensions() {
        let (a, b, b2) = (seq(9, 6, 0.3), seq(9, 4, 0.5), seq(3, 5, 0.9));
        // aᵀ·b without a copy, and a view with negative strides.
        for (a, b) in [(a.t(), b.view()), (a.slice(s![..;-1, ..;-2]), b2.view())] {
            assert_close(&matmul(a, b).unwrap(), &naive(a, b), 1e-12);
        }
        let out = matmul(seq(4, 0, 0.0).view(), seq(0, 3, 0.0).view()).unwrap();
        assert_eq!(out, Array2::<f64>::zeros((4, 3)));
        let out = matmul(seq(0, 5, 0.0).view(), seq(5, 3, 0.0).view()).unwrap();
        assert_eq!(out.dim(), (0, 3));
    }

    #[test]
    fn accumulates_and_scales_and_beta_zero_ignores_nan_in_out() {
        for (m, k, n) in [(5, 4, 3), (1, 40, 19)] {
            let (a, b) = (seq(m, k, 0.2), seq(k, n, 0.4));
            let mut out = seq(m, n, 0.6);
            let expected = &out * 0.5 + naive(a.view(), b.view()) * 2.0;
            gemm_into(out.view_mut(), a.view(), b.view(), 2.0, 0.5).unwrap();
            assert_close(&out, &expected, 1e-12);
            let mut out = Array2::from_elem((m, n), f64::NAN);
            gemm_into(out.view_mut(), a.view(), b.view(), 1.0, 0.0).unwrap();
            assert_close(&out, &naive(a.view(), b.view()), 1e-12);
        }
    }

    #[test]
    fn shape_errors_name_the_argument() {
        let e = matmul(seq(2, 3, 0.0).view(), seq(4, 5, 0.0).view());
        assert_err(e, "matmul: b must have shape (3, n)");
        let (x, w, b) = (seq(2, 3, 0.0), seq(3, 5, 0.0), Array1::zeros(4));
        let e = linear(x.view(), w.view(), Some(b.view()));
        assert_err(e, "bias must have shape (5,), got (4,)");
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
    fn linear_forward_and_backward_match_naive() {
        let (x, w, d) = (seq(6, 4, 0.1), seq(4, 3, 0.2), seq(6, 3, 0.3));
        let b = Array1::from(vec![1.0, -2.0, 0.5]);
        let y = linear(x.view(), w.view(), Some(b.view())).unwrap();
        assert_close(&y, &(naive(x.view(), w.view()) + &b), 1e-12);
        let (mut dx, mut gw, mut gb) = (seq(6, 4, 0.0), seq(4, 3, 0.0), Array1::<f64>::ones(3));
        let mut grads = LinearGrads {
            w: gw.view_mut(),
            b: Some(gb.view_mut()),
            accumulate: true,
        };
        let (xv, wv, dv) = (x.view(), w.view(), d.view());
        linear_backward_into(xv, wv, dv, &mut grads, Some(dx.view_mut()), &mut vec![]).unwrap();
        assert_close(&dx, &naive(d.view(), w.t()), 1e-12);
        assert_close(&gw, &(naive(x.t(), d.view()) + seq(4, 3, 0.0)), 1e-12);
        // Rows added in order onto what was there.
        let ones = Array1::<f64>::ones(3);
        assert_eq!(gb, d.rows().into_iter().fold(ones, |a, r| a + r));
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
        // The inner dimension cut in two on 2 threads, for small outputs with
        // a long inner dimension and for one-row products (gemv's, and the
        // gemm crate's for a transposed `b`): beta, alpha, NaN in `out` with
        // beta = 0, transposed views.
        crate::threads::set_num_threads(2).unwrap();
        let cases = [
            (20, 1000, 30, false),
            (33, 2049, 17, true),
            (1, 4099, 17, false),
            (1, 2000, 33, true),
        ];
        for (m, k, n, transposed) in cases {
            assert!(split_inner(m, n, k));
            let (a, b) = (seq(m, k, 0.1), seq(k, n, 0.2));
            let (at, bt) = (seq(k, m, 0.1), seq(n, k, 0.2));
            let (av, bv) = [(a.view(), b.view()), (at.t(), bt.t())][usize::from(transposed)];
            let expected = naive(av, bv);
            let mut out = Array2::from_elem((m, n), f64::NAN);
            gemm_split(out.view_mut(), av, bv, 1.0, 0.0);
            assert_close(&out, &expected, 1e-12);
            let start = seq(m, n, 0.3);
            let mut out = start.clone();
            gemm_split(out.view_mut(), av, bv, 0.5, 2.0);
            assert_close(&out, &(&start * 2.0 + &expected * 0.5), 1e-12);
        }
        crate::threads::set_num_threads(0).unwrap();
    }
}
