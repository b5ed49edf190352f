//! Convolutions, channels last: forward, gradient of the input, gradient of
//! the weight and bias.
//!
//! Layouts: `x (N, L, Cin)` with `w (K, Cin, Cout)` in 1-D, `x (N, H, W, Cin)`
//! with `w (Kh, Kw, Cin, Cout)` in 2-D. A 1-D convolution is a 2-D one with
//! `H = 1` and `Kh = 1`, so both go through the same code.
//!
//! The method is im2col + GEMM. With channels last, the receptive field of one
//! output pixel is `Kh` runs of `Kw·Cin` contiguous numbers, so the patch
//! matrix `(rows = N·Ho·Wo, Kh·Kw·Cin)` is filled by a few `memcpy`s per row,
//! and its row order is that of the output: one product with the weight seen
//! as `(Kh·Kw·Cin, Cout)` writes the output in place. The backward passes are
//! the two other products of the same matrices: `dcol = δ·Wᵀ` scattered back
//! (col2im) for the input, `dW += colᵀ·δ` for the weight.
//!
//! The batch is cut into chunks: one chunk (and one patch buffer) on the
//! calling thread for small work, one chunk per thread above
//! [`CONV_PAR_MIN_WORK`]. Each chunk runs a single-threaded GEMM, so there is
//! never a parallel GEMM inside a parallel loop.

use gemm::Parallelism;
use ndarray::{Array1, Array2, Array3, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4};
use ndarray::{ArrayViewMut1, ArrayViewMut2, ArrayViewMut3, ArrayViewMut4, Axis, Zip};
use rayon::prelude::*;

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::threads;

/// Multiply-adds (per pass) below which a convolution stays on the calling thread.
///
/// Measured with `cargo bench --bench kernels -- threads/conv1d` (the report's
/// conv1d at batch 2, 8, 20, 100, forced onto 1 and 2 threads) on the 2-core
/// dev machine: 2 threads were 2.4x slower at 300k multiply-adds (6 → 14 µs),
/// 1.25x slower at 760k (13.7 → 17 µs) and 1.6x faster at 3.8M
/// (69 → 43 µs): waking a pool thread costs ~10 µs here. Crossover ≈ 1.5M.
pub const CONV_PAR_MIN_WORK: usize = 1_500_000;

/// Largest patch buffer (in elements) one chunk may use; bigger batches are
/// processed in several chunks.
const COL_MAX_ELEMS: usize = 1 << 22;

thread_local! {
    /// Each thread's patch buffer, kept between calls: a fresh one per call
    /// costs a page fault per 4 KiB (the USPS conv2d's 700 KB buffer took
    /// longer to fault in than the product took). Never above
    /// [`COL_MAX_ELEMS`] elements (32 MB in f64) per thread.
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` elements whose content is arbitrary (every
/// user writes all of it first): the thread's kept buffer, or a fresh one if
/// that is in use.
fn with_scratch<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
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

/// Runs `f` on the kernels' pool when it will split its work, else right
/// here: handing a small job to a pool thread and back costs more (5-15 µs)
/// than the job.
pub(crate) fn run_on_pool<R: Send>(parallel: bool, f: impl FnOnce() -> R + Send) -> R {
    if parallel {
        threads::install(f)
    } else {
        f()
    }
}

/// The sizes of a 2-D convolution (a 1-D one has `h = kh = 1`, `ph = 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Conv2dParams {
    /// Output height and width: `(H + 2p - K) / s + 1` (sizes already checked).
    pub fn out_dims(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph - self.kh) / self.sh + 1,
            (self.w + 2 * self.pw - self.kw) / self.sw + 1,
        )
    }

    /// Length of one patch, a row of the im2col matrix.
    fn patch(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Output pixels per sample.
    fn out_pixels(&self) -> usize {
        let (ho, wo) = self.out_dims();
        ho * wo
    }

    /// Multiply-adds of one pass over the whole batch.
    fn work(&self) -> usize {
        self.n
            .saturating_mul(self.out_pixels())
            .saturating_mul(self.patch())
            .saturating_mul(self.cout.max(1))
    }

    /// Samples per chunk: the whole batch when small, one chunk per thread
    /// when parallel, and never a patch buffer above [`COL_MAX_ELEMS`].
    fn chunk(&self) -> usize {
        let per_sample = (self.out_pixels() * self.patch()).max(1);
        let cap = (COL_MAX_ELEMS / per_sample).max(1);
        let n = self.n.max(1);
        let threads = threads::num_threads();
        let want =
            if cfg!(feature = "multi-threads") && self.work() >= CONV_PAR_MIN_WORK && threads > 1 {
                n.div_ceil(threads)
            } else {
                n
            };
        want.min(cap).max(1)
    }

    /// Whether chunks run in parallel.
    fn parallel(&self) -> bool {
        self.chunk() < self.n && cfg!(feature = "multi-threads") && threads::num_threads() > 1
    }
}

/// The 1-D convolution's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dParams {
    pub n: usize,
    pub l: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv1dParams {
    /// Output length `(L + 2p - K) / stride + 1`.
    pub fn out_len(&self) -> usize {
        (self.l + 2 * self.padding - self.k) / self.stride + 1
    }

    fn as_2d(&self) -> Conv2dParams {
        Conv2dParams {
            n: self.n,
            h: 1,
            w: self.l,
            cin: self.cin,
            cout: self.cout,
            kh: 1,
            kw: self.k,
            sh: 1,
            sw: self.stride,
            ph: 0,
            pw: self.padding,
        }
    }
}

fn check_stride(op: &'static str, stride: usize) -> Result<(), KernelError> {
    if stride == 0 {
        return Err(KernelError::invalid(op, "stride must be >= 1, got 0"));
    }
    Ok(())
}

fn check_kernel_fits(
    op: &'static str,
    what: &str,
    k: usize,
    len: usize,
    padding: usize,
) -> Result<(), KernelError> {
    if k == 0 {
        return Err(KernelError::invalid(op, "kernel size must be >= 1, got 0"));
    }
    let padded = padding.checked_mul(2).and_then(|p2| p2.checked_add(len));
    let Some(padded) = padded else {
        return Err(KernelError::invalid(
            op,
            format!("padding {padding} is too large for the {what} {len}"),
        ));
    };
    if k > padded {
        return Err(KernelError::invalid(
            op,
            format!("kernel size {k} is larger than the {what} {len} (+ 2 x padding {padding})"),
        ));
    }
    Ok(())
}

/// Checks a 1-D convolution's input and weight shapes and returns its sizes.
pub fn conv1d_params(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    stride: usize,
    padding: usize,
) -> Result<Conv1dParams, KernelError> {
    let (n, l, cin) = (x_shape[0], x_shape[1], x_shape[2]);
    let (k, wcin, cout) = (w_shape[0], w_shape[1], w_shape[2]);
    if wcin != cin {
        return Err(KernelError::shape(
            op,
            "w",
            format!("(K, {cin}, Cout) to match x {}", fmt_shape(x_shape)),
            fmt_shape(w_shape),
        ));
    }
    check_stride(op, stride)?;
    check_kernel_fits(op, "input length", k, l, padding)?;
    let p = Conv1dParams {
        n,
        l,
        cin,
        cout,
        k,
        stride,
        padding,
    };
    let why = format!("for input length {l}, stride {stride} and padding {padding}");
    check_alloc(op, &format!("the output {why}"), &[n, p.out_len(), cout])?;
    check_alloc(op, &format!("the input {why}"), &[n, l, cin])?;
    Ok(p)
}

/// Checks a 2-D convolution's input and (square) weight shapes.
pub fn conv2d_params(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    stride: usize,
    padding: usize,
) -> Result<Conv2dParams, KernelError> {
    let (n, h, w, cin) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
    let (kh, kw, wcin, cout) = (w_shape[0], w_shape[1], w_shape[2], w_shape[3]);
    if wcin != cin || kh != kw {
        return Err(KernelError::shape(
            op,
            "w",
            format!("(K, K, {cin}, Cout) to match x {}", fmt_shape(x_shape)),
            fmt_shape(w_shape),
        ));
    }
    check_stride(op, stride)?;
    check_kernel_fits(op, "input height", kh, h, padding)?;
    check_kernel_fits(op, "input width", kw, w, padding)?;
    let p = Conv2dParams {
        n,
        h,
        w,
        cin,
        cout,
        kh,
        kw,
        sh: stride,
        sw: stride,
        ph: padding,
        pw: padding,
    };
    let (ho, wo) = p.out_dims();
    let why = format!("for input size ({h}, {w}), stride {stride} and padding {padding}");
    check_alloc(op, &format!("the output {why}"), &[n, ho, wo, cout])?;
    check_alloc(op, &format!("the input {why}"), &[n, h, w, cin])?;
    Ok(p)
}

fn check_bias(
    op: &'static str,
    arg: &'static str,
    len: usize,
    cout: usize,
) -> Result<(), KernelError> {
    if len != cout {
        return Err(KernelError::shape(
            op,
            arg,
            fmt_shape(&[cout]),
            fmt_shape(&[len]),
        ));
    }
    Ok(())
}

fn check_delta(op: &'static str, expected: &[usize], actual: &[usize]) -> Result<(), KernelError> {
    if expected != actual {
        return Err(KernelError::shape(
            op,
            "delta",
            fmt_shape(expected),
            fmt_shape(actual),
        ));
    }
    Ok(())
}

/// `out (m, n) = a (m, k) · b (k, n)` (+ `out` when `accumulate`), on this thread
/// or with gemm's own threads.
fn gemm_view<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert_eq!(b.nrows(), k);
    debug_assert_eq!(out.dim(), (m, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(T::zero());
        }
        return;
    }
    let [ors, ocs] = [out.strides()[0], out.strides()[1]];
    let [ars, acs] = [a.strides()[0], a.strides()[1]];
    let [brs, bcs] = [b.strides()[0], b.strides()[1]];
    // SAFETY: the views have the shapes checked above, so every index gemm
    // forms from these pointers and strides lies inside its array; `out` is a
    // unique borrow, so it aliases neither `a` nor `b`. gemm computes
    // dst := alpha·dst + beta·lhs·rhs, alpha read only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            ocs,
            ors,
            accumulate,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// Fills `col` (rows of `p.patch()`) with the patches of samples `n0..n1` of
/// `x`, a standard-layout `(N, H, W, Cin)` buffer; padding reads as zeros.
fn im2col<T: Float>(x: &[T], p: &Conv2dParams, n0: usize, n1: usize, col: &mut [T]) {
    let (ho, wo) = p.out_dims();
    let (cin, run) = (p.cin, p.kw * p.cin);
    let sample = p.h * p.w * cin;
    let mut rows = col.chunks_exact_mut(p.patch().max(1));
    for n in n0..n1 {
        let xs = &x[n * sample..(n + 1) * sample];
        for oi in 0..ho {
            for oj in 0..wo {
                let Some(row) = rows.next() else { return };
                let w0 = (oj * p.sw) as isize - p.pw as isize;
                let inside = w0 >= 0 && w0 as usize + p.kw <= p.w;
                for ki in 0..p.kh {
                    let dst = &mut row[ki * run..(ki + 1) * run];
                    let hi = (oi * p.sh + ki) as isize - p.ph as isize;
                    if hi < 0 || hi as usize >= p.h {
                        dst.fill(T::zero());
                        continue;
                    }
                    let line = &xs[hi as usize * p.w * cin..(hi as usize + 1) * p.w * cin];
                    if inside {
                        let start = w0 as usize * cin;
                        dst.copy_from_slice(&line[start..start + run]);
                    } else {
                        for (kj, d) in dst.chunks_exact_mut(cin.max(1)).enumerate() {
                            let wi = w0 + kj as isize;
                            if wi < 0 || wi as usize >= p.w {
                                d.fill(T::zero());
                            } else {
                                let s = wi as usize * cin;
                                d.copy_from_slice(&line[s..s + cin]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the patch rows `col` of samples `n0..` back into `dx`, the
/// standard-layout `(n1 - n0, H, W, Cin)` gradient of those samples; the parts
/// that fall on the padding are dropped.
fn col2im<T: Float>(col: &[T], p: &Conv2dParams, dx: &mut [T]) {
    let (ho, wo) = p.out_dims();
    let (cin, run) = (p.cin, p.kw * p.cin);
    let sample = p.h * p.w * cin;
    let mut rows = col.chunks_exact(p.patch().max(1));
    for dxs in dx.chunks_exact_mut(sample.max(1)) {
        for oi in 0..ho {
            for oj in 0..wo {
                let Some(row) = rows.next() else { return };
                let w0 = (oj * p.sw) as isize - p.pw as isize;
                let inside = w0 >= 0 && w0 as usize + p.kw <= p.w;
                for ki in 0..p.kh {
                    let src = &row[ki * run..(ki + 1) * run];
                    let hi = (oi * p.sh + ki) as isize - p.ph as isize;
                    if hi < 0 || hi as usize >= p.h {
                        continue;
                    }
                    let line = &mut dxs[hi as usize * p.w * cin..(hi as usize + 1) * p.w * cin];
                    if inside {
                        let start = w0 as usize * cin;
                        for (d, &s) in line[start..start + run].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (kj, s) in src.chunks_exact(cin.max(1)).enumerate() {
                            let wi = w0 + kj as isize;
                            if wi >= 0 && (wi as usize) < p.w {
                                let o = wi as usize * cin;
                                for (d, &v) in line[o..o + cin].iter_mut().zip(s) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f(chunk_index, out_chunk)` over `out` cut in chunks of `len`, in
/// parallel when asked.
fn for_chunks<T: Float>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let len = len.max(1);
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// The weight as the `(Kh·Kw·Cin, Cout)` matrix of the products.
fn weight_matrix<'a, T: Float>(
    w: &'a ndarray::CowArray<'a, T, ndarray::Ix4>,
    p: &Conv2dParams,
) -> ArrayView2<'a, T> {
    w.view()
        .into_shape_with_order((p.patch(), p.cout))
        .expect("standard layout weight reshapes")
}

fn forward_impl<T: Float>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    p: &Conv2dParams,
) -> Array4<T> {
    let (ho, wo) = p.out_dims();
    let mut out = Array4::<T>::zeros((p.n, ho, wo, p.cout));
    if out.is_empty() {
        return out;
    }
    run_on_pool(p.parallel(), || {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let wm = weight_matrix(&w, p);
        // a plain Vec: `to_owned` keeps a reversed view's negative stride
        let b: Option<Vec<T>> = b.map(|b| b.iter().copied().collect());
        let chunk = p.chunk();
        let rows_per = p.out_pixels();
        let os = out.as_slice_mut().expect("fresh array");
        for_chunks(os, chunk * rows_per * p.cout, p.parallel(), |i, oc| {
            let n0 = i * chunk;
            let n1 = (n0 + chunk).min(p.n);
            let rows = (n1 - n0) * rows_per;
            with_scratch(rows * p.patch(), |col: &mut [T]| {
                im2col(xs, p, n0, n1, col);
                if let Some(b) = &b {
                    for r in oc.chunks_exact_mut(p.cout) {
                        r.copy_from_slice(b);
                    }
                }
                let colv = ArrayView2::from_shape((rows, p.patch()), &*col).expect("sized");
                let ov = ArrayViewMut2::from_shape((rows, p.cout), oc).expect("sized");
                gemm_view(ov, colv, wm, b.is_some(), Parallelism::None);
            });
        });
    });
    out
}

fn backward_input_impl<T: Float>(
    delta: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    p: &Conv2dParams,
) -> Array4<T> {
    let mut dx = Array4::<T>::zeros((p.n, p.h, p.w, p.cin));
    if dx.is_empty() {
        return dx;
    }
    run_on_pool(p.parallel(), || {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let wt = weight_matrix(&w, p).reversed_axes();
        let chunk = p.chunk();
        let rows_per = p.out_pixels();
        let sample = p.h * p.w * p.cin;
        let dxs = dx.as_slice_mut().expect("fresh array");
        for_chunks(dxs, chunk * sample, p.parallel(), |i, dxc| {
            let n0 = i * chunk;
            let n1 = (n0 + chunk).min(p.n);
            let rows = (n1 - n0) * rows_per;
            let dv = ArrayView2::from_shape(
                (rows, p.cout),
                &ds[n0 * rows_per * p.cout..n1 * rows_per * p.cout],
            )
            .expect("sized");
            with_scratch(rows * p.patch(), |col: &mut [T]| {
                let cv = ArrayViewMut2::from_shape((rows, p.patch()), &mut *col).expect("sized");
                gemm_view(cv, dv, wt, false, Parallelism::None);
                col2im(col, p, dxc);
            });
        });
    });
    dx
}

/// Adds `colᵀ·δ` and the row sums of `δ` of every chunk into `gw` and `gb`.
fn backward_weight_impl<T: Float>(
    x: ArrayView4<'_, T>,
    delta: ArrayView4<'_, T>,
    mut gw: ArrayViewMut4<'_, T>,
    gb: Option<ArrayViewMut1<'_, T>>,
    p: &Conv2dParams,
) {
    if p.n == 0 || p.out_pixels() == 0 {
        return;
    }
    let (kc, cout) = (p.patch(), p.cout);
    let (acc_w, acc_b) = run_on_pool(p.parallel(), || {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let chunk = p.chunk();
        let rows_per = p.out_pixels();
        let n_chunks = p.n.div_ceil(chunk);
        let want_b = gb.is_some();
        let one = |i: usize| -> (Array2<T>, Array1<T>) {
            let n0 = i * chunk;
            let n1 = (n0 + chunk).min(p.n);
            let rows = (n1 - n0) * rows_per;
            let dv = ArrayView2::from_shape(
                (rows, cout),
                &ds[n0 * rows_per * cout..n1 * rows_per * cout],
            )
            .expect("sized");
            let mut gw = Array2::<T>::zeros((kc, cout));
            with_scratch(rows * kc, |col: &mut [T]| {
                im2col(xs, p, n0, n1, col);
                let cv = ArrayView2::from_shape((rows, kc), &*col).expect("sized");
                gemm_view(gw.view_mut(), cv.t(), dv, false, Parallelism::None);
            });
            let mut gb = Array1::<T>::zeros(if want_b { cout } else { 0 });
            if want_b {
                let gbs = gb.as_slice_mut().expect("fresh");
                for r in dv.rows() {
                    for (g, &d) in gbs.iter_mut().zip(r.iter()) {
                        *g += d;
                    }
                }
            }
            (gw, gb)
        };
        let add = |(mut a, mut b): (Array2<T>, Array1<T>), (c, d): (Array2<T>, Array1<T>)| {
            a += &c;
            b += &d;
            (a, b)
        };
        if p.parallel() {
            (0..n_chunks)
                .into_par_iter()
                .map(one)
                .reduce_with(add)
                .expect("at least one chunk")
        } else {
            (0..n_chunks)
                .map(one)
                .reduce(add)
                .expect("at least one chunk")
        }
    });
    let acc_w = acc_w
        .into_shape_with_order((p.kh, p.kw, p.cin, p.cout))
        .expect("owned gradient reshapes");
    Zip::from(&mut gw).and(&acc_w).for_each(|g, &a| *g += a);
    if let Some(mut gb) = gb {
        Zip::from(&mut gb).and(&acc_b).for_each(|g, &a| *g += a);
    }
}

/// 1-D convolution: `x (N, L, Cin)`, `w (K, Cin, Cout)`, `b (Cout,)` →
/// `(N, (L + 2·padding - K) / stride + 1, Cout)`.
pub fn conv1d<T: Float>(
    x: ArrayView3<'_, T>,
    w: ArrayView3<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<Array3<T>, KernelError> {
    const OP: &str = "conv1d";
    let p = conv1d_params(OP, x.shape(), w.shape(), stride, padding)?;
    if let Some(b) = &b {
        check_bias(OP, "b", b.len(), p.cout)?;
    }
    let out = forward_impl(
        x.insert_axis(Axis(1)),
        w.insert_axis(Axis(0)),
        b,
        &p.as_2d(),
    );
    Ok(out.remove_axis(Axis(1)))
}

/// Gradient of the 1-D convolution with respect to its input:
/// `delta (N, Lout, Cout)`, `w (K, Cin, Cout)` → `(N, input_len, Cin)`.
pub fn conv1d_backward_input<T: Float>(
    delta: ArrayView3<'_, T>,
    w: ArrayView3<'_, T>,
    input_len: usize,
    stride: usize,
    padding: usize,
) -> Result<Array3<T>, KernelError> {
    const OP: &str = "conv1d_backward_input";
    let (n, cin) = (delta.shape()[0], w.shape()[1]);
    let p = conv1d_params(OP, &[n, input_len, cin], w.shape(), stride, padding)?;
    check_delta(OP, &[n, p.out_len(), p.cout], delta.shape())?;
    let dx = backward_input_impl(
        delta.insert_axis(Axis(1)),
        w.insert_axis(Axis(0)),
        &p.as_2d(),
    );
    Ok(dx.remove_axis(Axis(1)))
}

/// Accumulates the gradient of the 1-D convolution's weight (and bias):
/// `grad_w (K, Cin, Cout) += Σ xᵀ·δ`, `grad_b (Cout,) += Σ δ`.
pub fn conv1d_backward_weight<T: Float>(
    x: ArrayView3<'_, T>,
    delta: ArrayView3<'_, T>,
    grad_w: ArrayViewMut3<'_, T>,
    grad_b: Option<ArrayViewMut1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<(), KernelError> {
    const OP: &str = "conv1d_backward_weight";
    let p = conv1d_params(OP, x.shape(), grad_w.shape(), stride, padding)
        .map_err(|e| rename_w(e, "grad_w"))?;
    check_delta(OP, &[p.n, p.out_len(), p.cout], delta.shape())?;
    if let Some(gb) = &grad_b {
        check_bias(OP, "grad_b", gb.len(), p.cout)?;
    }
    backward_weight_impl(
        x.insert_axis(Axis(1)),
        delta.insert_axis(Axis(1)),
        grad_w.insert_axis(Axis(0)),
        grad_b,
        &p.as_2d(),
    );
    Ok(())
}

/// 2-D convolution with a square `K×K` kernel: `x (N, H, W, Cin)`,
/// `w (K, K, Cin, Cout)`, `b (Cout,)` → `(N, H', W', Cout)`.
pub fn conv2d<T: Float>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<Array4<T>, KernelError> {
    const OP: &str = "conv2d";
    let p = conv2d_params(OP, x.shape(), w.shape(), stride, padding)?;
    if let Some(b) = &b {
        check_bias(OP, "b", b.len(), p.cout)?;
    }
    Ok(forward_impl(x, w, b, &p))
}

/// Gradient of the 2-D convolution with respect to its input:
/// `delta (N, H', W', Cout)`, `w (K, K, Cin, Cout)` → `(N, H, W, Cin)`.
pub fn conv2d_backward_input<T: Float>(
    delta: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    input_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> Result<Array4<T>, KernelError> {
    const OP: &str = "conv2d_backward_input";
    let (n, cin) = (delta.shape()[0], w.shape()[2]);
    let p = conv2d_params(
        OP,
        &[n, input_hw.0, input_hw.1, cin],
        w.shape(),
        stride,
        padding,
    )?;
    let (ho, wo) = p.out_dims();
    check_delta(OP, &[n, ho, wo, p.cout], delta.shape())?;
    Ok(backward_input_impl(delta, w, &p))
}

/// Accumulates the gradient of the 2-D convolution's weight (and bias):
/// `grad_w (K, K, Cin, Cout)`, `grad_b (Cout,)`.
pub fn conv2d_backward_weight<T: Float>(
    x: ArrayView4<'_, T>,
    delta: ArrayView4<'_, T>,
    grad_w: ArrayViewMut4<'_, T>,
    grad_b: Option<ArrayViewMut1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_backward_weight";
    let p = conv2d_params(OP, x.shape(), grad_w.shape(), stride, padding)
        .map_err(|e| rename_w(e, "grad_w"))?;
    let (ho, wo) = p.out_dims();
    check_delta(OP, &[p.n, ho, wo, p.cout], delta.shape())?;
    if let Some(gb) = &grad_b {
        check_bias(OP, "grad_b", gb.len(), p.cout)?;
    }
    backward_weight_impl(x, delta, grad_w, grad_b, &p);
    Ok(())
}

/// Names the gradient array in a weight-shape error instead of `w`.
fn rename_w(e: KernelError, name: &'static str) -> KernelError {
    match e {
        KernelError::Shape {
            op,
            arg: "w",
            expected,
            actual,
        } => KernelError::Shape {
            op,
            arg: name,
            expected,
            actual,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, Array1, Dimension, ShapeBuilder};

    fn filled<Sh: ndarray::ShapeBuilder>(shape: Sh, seed: f64) -> Array<f64, Sh::Dim> {
        let mut i = 0.0;
        Array::from_shape_simple_fn(shape, || {
            i += 1.0;
            (i * 0.618 + seed).sin()
        })
    }

    fn assert_close<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) {
        assert_eq!(a.shape(), b.shape());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-11 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    /// Reads `x[n, i, j, c]` with zero padding (i, j in padded coordinates).
    fn at(x: &Array4<f64>, n: usize, i: isize, j: isize, c: usize, p: &Conv2dParams) -> f64 {
        let (i, j) = (i - p.ph as isize, j - p.pw as isize);
        if i < 0 || j < 0 || i as usize >= p.h || j as usize >= p.w {
            0.0
        } else {
            x[[n, i as usize, j as usize, c]]
        }
    }

    /// Straightforward 2-D convolution (rectangular kernel), and its two gradients.
    fn reference(
        x: &Array4<f64>,
        w: &Array4<f64>,
        b: &Array1<f64>,
        d: &Array4<f64>,
        p: &Conv2dParams,
    ) -> (Array4<f64>, Array4<f64>, Array4<f64>, Array1<f64>) {
        let (ho, wo) = p.out_dims();
        let mut y = Array4::zeros((p.n, ho, wo, p.cout));
        let mut dx = Array4::zeros((p.n, p.h, p.w, p.cin));
        let mut dw = Array4::zeros(w.raw_dim());
        let mut db = Array1::zeros(p.cout);
        for n in 0..p.n {
            for oi in 0..ho {
                for oj in 0..wo {
                    for co in 0..p.cout {
                        let mut acc = b[co];
                        db[co] += d[[n, oi, oj, co]];
                        for ki in 0..p.kh {
                            for kj in 0..p.kw {
                                let (i, j) = ((oi * p.sh + ki) as isize, (oj * p.sw + kj) as isize);
                                for ci in 0..p.cin {
                                    let xv = at(x, n, i, j, ci, p);
                                    acc += xv * w[[ki, kj, ci, co]];
                                    dw[[ki, kj, ci, co]] += xv * d[[n, oi, oj, co]];
                                    let (ii, jj) = (i - p.ph as isize, j - p.pw as isize);
                                    if ii >= 0
                                        && jj >= 0
                                        && (ii as usize) < p.h
                                        && (jj as usize) < p.w
                                    {
                                        dx[[n, ii as usize, jj as usize, ci]] +=
                                            w[[ki, kj, ci, co]] * d[[n, oi, oj, co]];
                                    }
                                }
                            }
                        }
                        y[[n, oi, oj, co]] = acc;
                    }
                }
            }
        }
        (y, dx, dw, db)
    }

    /// (n, l, cin, cout, k, stride, padding)
    const CASES_1D: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
        (2, 7, 3, 4, 3, 1, 0),
        (1, 9, 1, 1, 1, 1, 0),
        (3, 5, 2, 3, 5, 1, 0),
        (2, 11, 3, 2, 3, 2, 1),
        (1, 6, 1, 5, 2, 3, 2),
        (4, 50, 16, 33, 3, 2, 0),
        (64, 50, 16, 33, 3, 2, 0),
        (5, 4, 2, 3, 6, 1, 1),
    ];

    #[test]
    fn conv1d_matches_reference() {
        for &(n, l, cin, cout, k, s, pad) in CASES_1D {
            let x = filled((n, l, cin), 0.1);
            let w = filled((k, cin, cout), 0.2);
            let b = filled(cout, 0.3);
            let p = conv1d_params("t", x.shape(), w.shape(), s, pad).unwrap();
            let d = filled((n, p.out_len(), cout), 0.4);
            let p2 = p.as_2d();
            let (y, dx, dw, db) = reference(
                &x.clone().insert_axis(Axis(1)),
                &w.clone().insert_axis(Axis(0)),
                &b,
                &d.clone().insert_axis(Axis(1)),
                &p2,
            );
            let got = conv1d(x.view(), w.view(), Some(b.view()), s, pad).unwrap();
            assert_close(&got, &y.remove_axis(Axis(1)));
            let got_dx = conv1d_backward_input(d.view(), w.view(), l, s, pad).unwrap();
            assert_close(&got_dx, &dx.remove_axis(Axis(1)));
            let mut gw = filled((k, cin, cout), 0.5);
            let mut gb = filled(cout, 0.6);
            let (gw0, gb0) = (gw.clone(), gb.clone());
            conv1d_backward_weight(
                x.view(),
                d.view(),
                gw.view_mut(),
                Some(gb.view_mut()),
                s,
                pad,
            )
            .unwrap();
            assert_close(&gw, &(gw0 + dw.remove_axis(Axis(0))));
            assert_close(&gb, &(gb0 + db));
        }
    }

    /// (n, h, w, cin, cout, k, stride, padding)
    type Case2d = (usize, usize, usize, usize, usize, usize, usize, usize);
    const CASES_2D: &[Case2d] = &[
        (2, 5, 10, 2, 2, 3, 1, 0),
        (1, 4, 4, 1, 1, 1, 1, 0),
        (2, 3, 3, 2, 3, 3, 1, 0),
        (3, 7, 6, 3, 4, 3, 2, 1),
        (1, 5, 5, 1, 2, 2, 3, 2),
        (40, 16, 16, 1, 32, 3, 1, 0),
    ];

    #[test]
    fn conv2d_matches_reference() {
        for &(n, h, wd, cin, cout, k, s, pad) in CASES_2D {
            let x = filled((n, h, wd, cin), 0.1);
            let w = filled((k, k, cin, cout), 0.2);
            let b = filled(cout, 0.3);
            let p = conv2d_params("t", x.shape(), w.shape(), s, pad).unwrap();
            let (ho, wo) = p.out_dims();
            let d = filled((n, ho, wo, cout), 0.4);
            let (y, dx, dw, db) = reference(&x, &w, &b, &d, &p);
            assert_close(
                &conv2d(x.view(), w.view(), Some(b.view()), s, pad).unwrap(),
                &y,
            );
            assert_close(
                &conv2d(x.view(), w.view(), None, s, pad).unwrap(),
                &(y - &b),
            );
            let got_dx = conv2d_backward_input(d.view(), w.view(), (h, wd), s, pad).unwrap();
            assert_close(&got_dx, &dx);
            let mut gw = Array4::zeros(w.raw_dim());
            let mut gb = Array1::zeros(cout);
            for _ in 0..2 {
                conv2d_backward_weight(
                    x.view(),
                    d.view(),
                    gw.view_mut(),
                    Some(gb.view_mut()),
                    s,
                    pad,
                )
                .unwrap();
            }
            assert_close(&gw, &(&dw * 2.0));
            assert_close(&gb, &(&db * 2.0));
        }
    }

    #[test]
    fn strided_inputs_and_outputs() {
        let x = filled((3, 12, 4), 0.1);
        let w = filled((3, 4, 5), 0.2);
        let xr = x.slice(s![..;-1, ..;1, ..]).to_owned();
        let xs = x.slice(s![..;-1, .., ..]);
        assert_close(
            &conv1d(xs, w.view(), None, 2, 1).unwrap(),
            &conv1d(xr.view(), w.view(), None, 2, 1).unwrap(),
        );
        // A Fortran-ordered gradient buffer is accumulated element by element.
        let d = filled((3, 6, 5), 0.3);
        let mut gw_f = Array::zeros((3, 4, 5).f());
        let mut gw_c = Array3::zeros((3, 4, 5));
        conv1d_backward_weight(x.view(), d.view(), gw_f.view_mut(), None, 2, 1).unwrap();
        conv1d_backward_weight(x.view(), d.view(), gw_c.view_mut(), None, 2, 1).unwrap();
        assert_close(&gw_f, &gw_c);
    }

    #[test]
    fn empty_batch() {
        let x = Array3::<f32>::zeros((0, 8, 2));
        let w = Array3::<f32>::zeros((3, 2, 4));
        assert_eq!(
            conv1d(x.view(), w.view(), None, 1, 0).unwrap().dim(),
            (0, 6, 4)
        );
        let d = Array3::<f32>::zeros((0, 6, 4));
        assert_eq!(
            conv1d_backward_input(d.view(), w.view(), 8, 1, 0)
                .unwrap()
                .dim(),
            (0, 8, 2)
        );
        let mut gw = Array3::<f32>::ones((3, 2, 4));
        conv1d_backward_weight(x.view(), d.view(), gw.view_mut(), None, 1, 0).unwrap();
        assert!(gw.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = filled((2, 8, 3), 0.0);
        let w = filled((3, 3, 4), 0.0);
        let msg = |e: KernelError| e.to_string();
        let e = conv1d(x.view(), filled((3, 2, 4), 0.0).view(), None, 1, 0).unwrap_err();
        assert!(msg(e).contains("conv1d: w must have shape (K, 3, Cout)"));
        let e = conv1d(x.view(), w.view(), None, 0, 0).unwrap_err();
        assert!(msg(e).contains("stride must be >= 1"));
        let e = conv1d(x.view(), filled((9, 3, 4), 0.0).view(), None, 1, 0).unwrap_err();
        assert!(msg(e).contains("kernel size 9 is larger"));
        let e = conv1d(x.view(), w.view(), Some(filled(5, 0.0).view()), 1, 0).unwrap_err();
        assert!(msg(e).contains("b must have shape (4,), got (5,)"));
        let e =
            conv1d_backward_input(filled((2, 5, 4), 0.0).view(), w.view(), 8, 1, 0).unwrap_err();
        assert!(msg(e).contains("delta must have shape (2, 6, 4), got (2, 5, 4)"));
        let mut gw = filled((3, 2, 4), 0.0);
        let e = conv1d_backward_weight(
            x.view(),
            filled((2, 6, 4), 0.0).view(),
            gw.view_mut(),
            None,
            1,
            0,
        )
        .unwrap_err();
        assert!(msg(e.clone()).contains("grad_w must have shape"), "{e:?}");
        let x2 = filled((1, 4, 4, 2), 0.0);
        let e = conv2d(x2.view(), filled((3, 2, 2, 1), 0.0).view(), None, 1, 0).unwrap_err();
        assert!(msg(e).contains("conv2d: w must have shape (K, K, 2, Cout)"));
    }
}
