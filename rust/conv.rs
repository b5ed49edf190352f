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
use ndarray::{Array3, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4};
use ndarray::{ArrayViewMut1, ArrayViewMut2, ArrayViewMut3, ArrayViewMut4, Axis, Zip};

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::simd::{avx2_fma, avx512};
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
pub(crate) fn with_scratch<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    with_scratch_in(&SCRATCH, len, f)
}

/// A per-thread buffer kept between calls, as [`SCRATCH`].
pub(crate) type ScratchKey = std::thread::LocalKey<std::cell::RefCell<Vec<u64>>>;

/// [`with_scratch`] on the thread's buffer `key` (a kernel that needs two
/// buffers at once keeps the second in a key of its own).
pub(crate) fn with_scratch_in<T: Float, R>(
    key: &'static ScratchKey,
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
    pub(crate) fn patch(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Output pixels per sample.
    pub(crate) fn out_pixels(&self) -> usize {
        let (ho, wo) = self.out_dims();
        ho * wo
    }

    /// Multiply-adds of one pass over the whole batch.
    pub(crate) fn work(&self) -> usize {
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

    pub(crate) fn as_2d(&self) -> Conv2dParams {
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

pub(crate) fn check_bias(
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

pub(crate) fn check_delta(
    op: &'static str,
    expected: &[usize],
    actual: &[usize],
) -> Result<(), KernelError> {
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
/// parallel (one chunk per thread) when asked.
fn for_chunks<T: Float>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let parts = if parallel {
        out.len().div_ceil(len.max(1))
    } else {
        1
    };
    threads::par_chunks_mut(out, len, parts, f);
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

/// The longest patch (`Kh·Kw·Cin`) the direct kernels below take.
const DIRECT_MAX_PATCH: usize = 64;

/// Patch lengths up to which the direct forward kernel replaces im2col + GEMM.
///
/// Measured with `cargo test --release --lib direct_vs_gemm_timing --
/// --ignored --nocapture` (f32, batch 100, 16×16 input, Cout 32, 1 thread,
/// AVX-512 dev machine, best of 100; µs gemm → direct): patch 9 (3×3×1)
/// 223 → 131, 16 (1×1×16) 252 → 227, 18 (3×3×2) 256 → 184, 25 (5×5×1)
/// 269 → 150, 27 (3×3×3) 305 → 228, 36 (3×3×4) 335 → 259, 45 (3×3×5)
/// 380 → 308, 49 (7×7×1) 278 → 164: the direct kernel wins at every
/// length measured, so it takes all up to the largest one measured.
const DIRECT_FORWARD_MAX: usize = 49;

/// Patch lengths up to which the direct weight gradient replaces
/// im2col + GEMM.
///
/// Measured as above (µs gemm → direct), after the kernel kept its bias sums
/// and δ rows in registers: patch 9 198 → 64, 16 (1×1×16) 227 → 147,
/// 18 (3×3×2) 234 → 113, 25 (5×5×1) 274 → 113, 27 (3×3×3) 296 → 158,
/// 36 (3×3×4) 327 → 207, 45 (3×3×5) 388 → 257, 49 (7×7×1) 318 → 145: the
/// direct kernel wins at every length measured. With several input channels
/// it needs `Cout` a multiple of its register block (32 lanes in f32 with
/// AVX-512): the kernel benchmark's conv1d (20, 50, 16) → 33 channels,
/// padded to 64, took 81 µs for its three passes against 43 by GEMM.
const DIRECT_WEIGHT_MAX: usize = 49;

/// Which pass asks [`use_direct`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    Weight,
}

thread_local! {
    /// Tests only: `Some(true)` takes the direct kernels for every patch up
    /// to [`DIRECT_MAX_PATCH`], `Some(false)` never.
    static DIRECT_OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether a convolution's pass goes through the direct kernels (decided on
/// the calling thread, before any hand-off to the pool).
fn use_direct(p: &Conv2dParams, pass: Pass) -> bool {
    let kc = p.patch();
    if kc == 0 || kc > DIRECT_MAX_PATCH || p.cout == 0 {
        return false;
    }
    if let Some(forced) = DIRECT_OVERRIDE.with(|c| c.get()) {
        return forced;
    }
    match pass {
        Pass::Forward => kc <= DIRECT_FORWARD_MAX,
        Pass::Weight => kc <= DIRECT_WEIGHT_MAX && (p.cin == 1 || p.cout.is_multiple_of(32)),
    }
}

/// Where the direct kernels read: samples of the input, zero padded, as
/// `(n, hp, wp, cin)`, and the offset of each patch entry from the corner of
/// its receptive field.
pub(crate) struct Direct {
    /// Padded sample size (`hp·wp·cin`).
    sample: usize,
    /// Offsets of the `Kh·Kw·Cin` patch entries, in the weight's order.
    offs: [usize; DIRECT_MAX_PATCH],
    kc: usize,
    ho: usize,
    wo: usize,
    /// Steps between receptive fields along the rows and the columns.
    step_h: usize,
    step_w: usize,
}

impl Direct {
    fn new(p: &Conv2dParams) -> Self {
        let (ho, wo) = p.out_dims();
        let wp = p.w + 2 * p.pw;
        let hp = p.h + 2 * p.ph;
        let line = wp * p.cin;
        let mut offs = [0; DIRECT_MAX_PATCH];
        let mut t = 0;
        for ki in 0..p.kh {
            for kj in 0..p.kw {
                for ci in 0..p.cin {
                    offs[t] = ki * line + kj * p.cin + ci;
                    t += 1;
                }
            }
        }
        Direct {
            sample: hp * line,
            offs,
            kc: p.patch(),
            ho,
            wo,
            step_h: p.sh * line,
            step_w: p.sw * p.cin,
        }
    }
}

impl Direct {
    /// Checks that `xp` is whole padded samples and that the last patch entry
    /// of the last receptive field lies inside a sample: every read of the
    /// forward kernels (`bases[i] + offs[t]`) is then in bounds.
    fn assert_inside<T>(&self, xp: &[T]) {
        let last = (self.ho - 1) * self.step_h + (self.wo - 1) * self.step_w;
        assert!(
            last + self.offs[self.kc - 1] < self.sample && xp.len().is_multiple_of(self.sample)
        );
    }

    /// The starts of the receptive fields of the next `R` output pixels from
    /// `(oi, oj)` (`nr` of them real; past the last one, the last repeats, its
    /// sums never stored), leaving `(oi, oj)` on the pixel after the group.
    #[inline(always)]
    fn group_bases<const R: usize>(&self, nr: usize, oi: &mut usize, oj: &mut usize) -> [usize; R] {
        let mut bases = [0usize; R];
        for (i, b) in bases.iter_mut().enumerate() {
            *b = *oi * self.step_h + *oj * self.step_w;
            if i + 1 < nr {
                self.next_pixel(oi, oj);
            }
        }
        self.next_pixel(oi, oj);
        bases
    }

    #[inline(always)]
    fn next_pixel(&self, oi: &mut usize, oj: &mut usize) {
        *oj += 1;
        if *oj == self.wo {
            (*oi, *oj) = (*oi + 1, 0);
        }
    }
}

/// Runs `f` on samples `n0..n1` of `x` (standard layout `(N, H, W, Cin)`)
/// zero padded to `(hp, wp, cin)`: the input itself without padding, else a
/// padded copy in the thread's scratch buffer.
fn with_padded<T: Float, R>(
    xs: &[T],
    p: &Conv2dParams,
    n0: usize,
    n1: usize,
    f: impl FnOnce(&[T]) -> R,
) -> R {
    let sample = p.h * p.w * p.cin;
    if p.ph == 0 && p.pw == 0 {
        return f(&xs[n0 * sample..n1 * sample]);
    }
    let (hp, wp) = (p.h + 2 * p.ph, p.w + 2 * p.pw);
    let (line, run) = (wp * p.cin, p.w * p.cin);
    with_scratch((n1 - n0) * hp * line, |buf: &mut [T]| {
        buf.fill(T::zero());
        for (dst, src) in buf
            .chunks_exact_mut(hp * line)
            .zip(xs[n0 * sample..n1 * sample].chunks_exact(sample.max(1)))
        {
            for (i, row) in src.chunks_exact(run.max(1)).enumerate() {
                let o = (i + p.ph) * line + p.pw * p.cin;
                dst[o..o + run].copy_from_slice(row);
            }
        }
        f(buf)
    })
}

/// `a + x·y`, fused where the caller is compiled with FMA.
#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, x: T, y: T) -> T {
    if FMA {
        x.mul_add(y, a)
    } else {
        a + x * y
    }
}

/// Forward pass of one chunk: `out (rows, cout) = patches · w + b`, `R`
/// output pixels of a row by `L` output channels at a time in registers.
/// `wpad (kc, cpad)` and `bpad (cpad,)` are zero padded to `cpad`, a
/// multiple of `L`.
#[inline(always)]
fn direct_forward_body<T: Float, const L: usize, const R: usize, const FMA: bool>(
    xp: &[T],
    d: &Direct,
    wpad: &[T],
    bpad: &[T],
    cpad: usize,
    out: &mut [T],
    cout: usize,
) {
    let kc = d.kc;
    let offs = &d.offs[..kc];
    let (ho, wo) = (d.ho, d.wo);
    let pixels = ho * wo;
    d.assert_inside(xp);
    for (xsmp, osmp) in xp
        .chunks_exact(d.sample)
        .zip(out.chunks_exact_mut(pixels * cout))
    {
        // the pixels of a sample in rows of `R`, across the output's rows
        let (mut oi, mut oj) = (0, 0);
        let mut p0 = 0;
        while p0 < pixels {
            let nr = R.min(pixels - p0);
            let bases = d.group_bases::<R>(nr, &mut oi, &mut oj);
            for c0 in (0..cpad).step_by(L) {
                let bias: [T; L] = bpad[c0..c0 + L].try_into().expect("L lanes");
                let mut acc = [bias; R];
                for (t, &off) in offs.iter().enumerate() {
                    let wv: &[T; L] = wpad[t * cpad + c0..t * cpad + c0 + L]
                        .try_into()
                        .expect("L lanes");
                    for i in 0..R {
                        // SAFETY: `bases[i]` starts a receptive field of this
                        // sample and `off <= offs[kc - 1]`: inside the sample
                        // (`assert_inside` above).
                        let xv = unsafe { *xsmp.get_unchecked(bases[i] + off) };
                        for l in 0..L {
                            acc[i][l] = madd::<T, FMA>(acc[i][l], xv, wv[l]);
                        }
                    }
                }
                let valid = L.min(cout - c0);
                for (i, a) in acc.iter().enumerate().take(nr) {
                    let o = (p0 + i) * cout + c0;
                    if valid == L {
                        // a constant length: stores, not a call to memmove
                        osmp[o..o + L].copy_from_slice(a);
                    } else {
                        osmp[o..o + valid].copy_from_slice(&a[..valid]);
                    }
                }
            }
            p0 += R;
        }
    }
}

/// Weight gradient of one chunk, added into `gw (kc, cpad)`, and the bias
/// gradient, added into `gb (cpad,)`: for `G` patch entries by `L` output
/// channels at a time, the products of every output pixel summed in
/// registers, tiles of `TILE` pixels at a time.
#[inline(always)]
fn direct_weight_body<T: Float, const L: usize, const G: usize, const FMA: bool>(
    xp: &[T],
    d: &Direct,
    delta: &[T],
    cout: usize,
    gw: &mut [T],
    gb: &mut [T],
    cpad: usize,
) {
    const TILE: usize = 64;
    let kc = d.kc;
    let wo = d.wo;
    let rows = delta.len() / cout;
    // the last patch entry of the last receptive field lies inside `xp`
    let n = rows / (d.ho * wo).max(1);
    let last =
        (n.max(1) - 1) * d.sample + (d.ho - 1) * d.step_h + (wo - 1) * d.step_w + d.offs[kc - 1];
    assert!(rows == 0 || last < xp.len());
    assert!(delta.len() == rows * cout && gw.len() >= kc * cpad && gb.len() >= cpad);
    // (row of delta, start of its receptive field), tile by tile
    let mut starts = [(0usize, 0usize); TILE];
    // the output pixel the next tile starts at
    let (mut smp, mut oi, mut oj) = (0, 0, 0);
    let mut r0 = 0;
    while r0 < rows {
        let nt = TILE.min(rows - r0);
        for (k, st) in starts.iter_mut().enumerate().take(nt) {
            *st = (
                (r0 + k) * cout,
                smp * d.sample + oi * d.step_h + oj * d.step_w,
            );
            oj += 1;
            if oj == wo {
                oj = 0;
                oi += 1;
                if oi == d.ho {
                    oi = 0;
                    smp += 1;
                }
            }
        }
        let tile = &starts[..nt];
        for c0 in (0..cpad).step_by(L) {
            for t0 in (0..kc).step_by(G) {
                // past the patch's end, repeat its last entry (those sums are dropped)
                let offs: [usize; G] = std::array::from_fn(|g| d.offs[(t0 + g).min(kc - 1)]);
                let (acc, acc_b) = if t0 == 0 {
                    weight_tile::<T, L, G, FMA, true>(xp, tile, delta, cout, c0, &offs)
                } else {
                    weight_tile::<T, L, G, FMA, false>(xp, tile, delta, cout, c0, &offs)
                };
                if t0 == 0 {
                    for (o, &v) in gb[c0..c0 + L].iter_mut().zip(&acc_b) {
                        *o += v;
                    }
                }
                for (g, a) in acc.iter().enumerate().take(kc - t0) {
                    let row = (t0 + g) * cpad + c0;
                    for (o, &v) in gw[row..row + L].iter_mut().zip(a) {
                        *o += v;
                    }
                }
            }
        }
        r0 += nt;
    }
}

/// One tile of [`direct_weight_body`]: `Σ x[start + offs[g]] · δ[row, c0..c0 + L]`
/// over the tile's pixels for each `g`, and with `BIAS` the sum of those δ rows.
///
/// Everything stays in registers: `G·L` products, `L` bias sums, one δ row
/// (`BIAS` is a constant so that the bias sums are not spilled around a
/// branch, which made the whole loop wait on a store).
#[inline(always)]
fn weight_tile<T: Float, const L: usize, const G: usize, const FMA: bool, const BIAS: bool>(
    xp: &[T],
    tile: &[(usize, usize)],
    delta: &[T],
    cout: usize,
    c0: usize,
    offs: &[usize; G],
) -> ([[T; L]; G], [T; L]) {
    let mut acc = [[T::zero(); L]; G];
    let mut acc_b = [T::zero(); L];
    let valid = L.min(cout - c0);
    if valid == L {
        for &(dr, xs) in tile {
            assert!(dr + c0 + L <= delta.len());
            // SAFETY: `dr + c0 + L <= delta.len()`, checked just above; an
            // unaligned read of `L` values compiles to vector loads, where
            // `try_into` on the slice built the vector lane by lane.
            let dv = unsafe { (delta.as_ptr().add(dr + c0) as *const [T; L]).read_unaligned() };
            weight_pixel::<T, L, G, FMA, BIAS>(xp, xs, offs, &dv, &mut acc, &mut acc_b);
        }
    } else {
        for &(dr, xs) in tile {
            let mut dv = [T::zero(); L];
            dv[..valid].copy_from_slice(&delta[dr + c0..dr + c0 + valid]);
            weight_pixel::<T, L, G, FMA, BIAS>(xp, xs, offs, &dv, &mut acc, &mut acc_b);
        }
    }
    (acc, acc_b)
}

/// One pixel of [`weight_tile`] (a function, not a closure: a closure is not
/// compiled with the caller's target features, and `mul_add` became a call).
#[inline(always)]
fn weight_pixel<T: Float, const L: usize, const G: usize, const FMA: bool, const BIAS: bool>(
    xp: &[T],
    xs: usize,
    offs: &[usize; G],
    dv: &[T; L],
    acc: &mut [[T; L]; G],
    acc_b: &mut [T; L],
) {
    if BIAS {
        for l in 0..L {
            acc_b[l] += dv[l];
        }
    }
    for g in 0..G {
        // SAFETY: `xs` starts a receptive field inside `xp` and
        // `offs[g] <= offs[kc - 1]`, so the index is at most the `last`
        // checked by `direct_weight_body`.
        let xv = unsafe { *xp.get_unchecked(xs + offs[g]) };
        for l in 0..L {
            acc[g][l] = madd::<T, FMA>(acc[g][l], xv, dv[l]);
        }
    }
}

/// Patch entries per pass of the weight kernel, among those it is
/// instantiated for: at most `gmax` (what the registers hold), spread evenly
/// over the fewest passes.
fn weight_group(kc: usize, sizes: &[usize]) -> usize {
    let gmax = *sizes.last().expect("some sizes");
    let need = kc.div_ceil(kc.div_ceil(gmax));
    sizes.iter().copied().find(|&g| g >= need).unwrap_or(gmax)
}

/// Lanes (output channels) per register block: two vectors of the widest
/// instruction set found.
fn direct_lanes<T: Float>() -> usize {
    let bytes = if avx512() {
        128
    } else if avx2_fma() {
        64
    } else {
        32
    };
    bytes / std::mem::size_of::<T>()
}

/// Instantiates a body for `L` lanes (16, 8 or 4 bytes per lane... see
/// [`direct_lanes`]) on the instruction set found at run time.
macro_rules! multiversion {
    ($name:ident, $body:ident, $k4:literal, $k:literal, ($($arg:ident: $ty:ty),*)) => {
        fn $name<T: Float>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn v4<T: Float>($($arg: $ty),*) {
                    if std::mem::size_of::<T>() == 4 {
                        $body::<T, 32, $k4, true>($($arg),*)
                    } else {
                        $body::<T, 16, $k4, true>($($arg),*)
                    }
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3<T: Float>($($arg: $ty),*) {
                    if std::mem::size_of::<T>() == 4 {
                        $body::<T, 16, $k, true>($($arg),*)
                    } else {
                        $body::<T, 8, $k, true>($($arg),*)
                    }
                }
                if avx512() {
                    // SAFETY: the CPU has the features v4 is compiled for.
                    return unsafe { v4::<T>($($arg),*) };
                }
                if avx2_fma() {
                    // SAFETY: the CPU has the features v3 is compiled for.
                    return unsafe { v3::<T>($($arg),*) };
                }
            }
            if std::mem::size_of::<T>() == 4 {
                $body::<T, 8, $k, false>($($arg),*)
            } else {
                $body::<T, 4, $k, false>($($arg),*)
            }
        }
    };
}

multiversion!(direct_forward_generic, direct_forward_body, 6, 4, (xp: &[T], d: &Direct, wpad: &[T], bpad: &[T], cpad: usize, out: &mut [T], cout: usize));

/// The direct forward kernel: for `f32` with up to 32 output channels on
/// AVX-512, [`forward_f32_c32`]; else the generic body.
fn direct_forward<T: Float>(
    xp: &[T],
    d: &Direct,
    wpad: &[T],
    bpad: &[T],
    cpad: usize,
    out: &mut [T],
    cout: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if cpad == 32 && avx512() {
        if let (Some(xp), Some(wpad), Some(bpad), Some(out)) = (
            crate::simd::as_f32(xp),
            crate::simd::as_f32(wpad),
            crate::simd::as_f32(bpad),
            crate::simd::as_f32_mut(out),
        ) {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { forward_f32_c32::<6>(xp, d, wpad, bpad, out, cout) };
        }
    }
    direct_forward_generic(xp, d, wpad, bpad, cpad, out, cout)
}

/// [`direct_forward_body`] for `f32`, at most 32 output channels (two
/// registers), `R` output pixels at a time, by explicit AVX-512, the sums in
/// registers and the channels past `cout` masked off at the store.
///
/// Measured as [`DIRECT_FORWARD_MAX`] (µs, generic body → this one, R = 6):
/// patch 9 151 → 76, 25 162 → 104, 49 179 → 132; R = 3, 4, 8, 12 and 14
/// were slower (patch 9: 93, 83, 101, 120, 141).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_f32_c32<const R: usize>(
    xp: &[f32],
    d: &Direct,
    wpad: &[f32],
    bpad: &[f32],
    out: &mut [f32],
    cout: usize,
) {
    use std::arch::x86_64::*;
    let kc = d.kc;
    let offs = &d.offs[..kc];
    let (ho, wo) = (d.ho, d.wo);
    let pixels = ho * wo;
    d.assert_inside(xp);
    assert!(cout <= 32 && wpad.len() >= kc * 32 && bpad.len() >= 32);
    assert!(out.len() >= xp.len() / d.sample * pixels * cout);
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (mask_lo, mask_hi) = (lanes(cout), lanes(cout.saturating_sub(16)));
    // SAFETY: every read of `xsmp` lies inside its sample (`assert_inside`); `wpad` and `bpad` hold `kc·32` and 32 values; each output
    // pixel's `cout` values lie in `out` and the masks store no more.
    unsafe {
        let (b0, b1) = (
            _mm512_loadu_ps(bpad.as_ptr()),
            _mm512_loadu_ps(bpad.as_ptr().add(16)),
        );
        for (smp, xsmp) in xp.chunks_exact(d.sample).enumerate() {
            let osmp = out.as_mut_ptr().add(smp * pixels * cout);
            let (mut oi, mut oj) = (0, 0);
            let mut p0 = 0;
            while p0 < pixels {
                let nr = R.min(pixels - p0);
                let bases = d.group_bases::<R>(nr, &mut oi, &mut oj);
                let mut lo = [b0; R];
                let mut hi = [b1; R];
                for (t, &off) in offs.iter().enumerate() {
                    let w0 = _mm512_loadu_ps(wpad.as_ptr().add(t * 32));
                    let w1 = _mm512_loadu_ps(wpad.as_ptr().add(t * 32 + 16));
                    for i in 0..R {
                        let x = _mm512_set1_ps(*xsmp.get_unchecked(bases[i] + off));
                        lo[i] = _mm512_fmadd_ps(x, w0, lo[i]);
                        hi[i] = _mm512_fmadd_ps(x, w1, hi[i]);
                    }
                }
                for i in 0..nr {
                    let o = osmp.add((p0 + i) * cout);
                    _mm512_mask_storeu_ps(o, mask_lo, lo[i]);
                    _mm512_mask_storeu_ps(o.wrapping_add(16), mask_hi, hi[i]);
                }
                p0 += R;
            }
        }
    }
}

/// [`direct_weight_body`] on the widest instruction set found, with as many
/// patch entries per pass as the registers hold: two registers per patch
/// entry (`L` lanes) besides the bias sums and the δ row. AVX-512 has 32
/// registers: up to 9 entries, a 3×3 patch in one pass over δ (11 or 13 per
/// pass spilled: a 5×5 patch took 205 µs in two passes of 13, 113 in three
/// of 9). AVX2 has 16: up to 5.
fn direct_weight<T: Float>(
    xp: &[T],
    d: &Direct,
    delta: &[T],
    cout: usize,
    gw: &mut [T],
    gb: &mut [T],
    cpad: usize,
) {
    macro_rules! go {
        ($l32:literal, $l64:literal, $g:literal, $fma:literal, $args:tt) => {
            if std::mem::size_of::<T>() == 4 {
                direct_weight_body::<T, $l32, $g, $fma> $args
            } else {
                direct_weight_body::<T, $l64, $g, $fma> $args
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn v4<T: Float>(
            xp: &[T],
            d: &Direct,
            delta: &[T],
            cout: usize,
            gw: &mut [T],
            gb: &mut [T],
            cpad: usize,
        ) {
            match weight_group(d.kc, &[3, 5, 7, 9]) {
                3 => go!(32, 16, 3, true, (xp, d, delta, cout, gw, gb, cpad)),
                5 => go!(32, 16, 5, true, (xp, d, delta, cout, gw, gb, cpad)),
                7 => go!(32, 16, 7, true, (xp, d, delta, cout, gw, gb, cpad)),
                _ => go!(32, 16, 9, true, (xp, d, delta, cout, gw, gb, cpad)),
            }
        }
        #[target_feature(enable = "avx2,fma")]
        fn v3<T: Float>(
            xp: &[T],
            d: &Direct,
            delta: &[T],
            cout: usize,
            gw: &mut [T],
            gb: &mut [T],
            cpad: usize,
        ) {
            match weight_group(d.kc, &[3, 5]) {
                3 => go!(16, 8, 3, true, (xp, d, delta, cout, gw, gb, cpad)),
                _ => go!(16, 8, 5, true, (xp, d, delta, cout, gw, gb, cpad)),
            }
        }
        if avx512() {
            // SAFETY: the CPU has the features v4 is compiled for.
            return unsafe { v4::<T>(xp, d, delta, cout, gw, gb, cpad) };
        }
        if avx2_fma() {
            // SAFETY: the CPU has the features v3 is compiled for.
            return unsafe { v3::<T>(xp, d, delta, cout, gw, gb, cpad) };
        }
    }
    go!(8, 4, 4, false, (xp, d, delta, cout, gw, gb, cpad))
}

/// `cout` rounded up to a whole number of register blocks.
fn padded_cout<T: Float>(cout: usize) -> usize {
    cout.div_ceil(direct_lanes::<T>()) * direct_lanes::<T>()
}

/// What the forward pass of a convolution needs for any run of samples: the
/// weight matrix, the bias, and for small patches the direct kernel's
/// padded copies of both.
pub(crate) struct ForwardPlan<'a, T> {
    p: Conv2dParams,
    wm: ArrayView2<'a, T>,
    b: Option<Vec<T>>,
    direct: Option<(Direct, Vec<T>, Vec<T>, usize)>,
}

impl<'a, T: Float> ForwardPlan<'a, T> {
    /// `w` in standard layout; decides the kernel on the calling thread.
    pub(crate) fn new(
        w: &'a ndarray::CowArray<'a, T, ndarray::Ix4>,
        b: Option<ArrayView1<'_, T>>,
        p: &Conv2dParams,
    ) -> Self {
        let wm = weight_matrix(w, p);
        // a plain Vec: `to_owned` keeps a reversed view's negative stride
        let b: Option<Vec<T>> = b.map(|b| b.iter().copied().collect());
        let direct = use_direct(p, Pass::Forward).then(|| {
            let cpad = padded_cout::<T>(p.cout);
            let mut wpad = vec![T::zero(); p.patch() * cpad];
            for (dst, src) in wpad.chunks_exact_mut(cpad).zip(wm.rows()) {
                for (d, &s) in dst.iter_mut().zip(src.iter()) {
                    *d = s;
                }
            }
            let mut bpad = vec![T::zero(); cpad];
            if let Some(b) = &b {
                bpad[..p.cout].copy_from_slice(b);
            }
            (Direct::new(p), wpad, bpad, cpad)
        });
        ForwardPlan {
            p: *p,
            wm,
            b,
            direct,
        }
    }

    /// The output `oc (n1 - n0, Ho, Wo, Cout)` of samples `n0..n1` of `xs`
    /// (the standard-layout input), on this thread.
    pub(crate) fn run(&self, xs: &[T], n0: usize, n1: usize, oc: &mut [T]) {
        let p = &self.p;
        if let Some((dir, wpad, bpad, cpad)) = &self.direct {
            with_padded(xs, p, n0, n1, |xp| {
                direct_forward(xp, dir, wpad, bpad, *cpad, oc, p.cout)
            });
            return;
        }
        let rows = (n1 - n0) * p.out_pixels();
        with_scratch(rows * p.patch(), |col: &mut [T]| {
            im2col(xs, p, n0, n1, col);
            if let Some(b) = &self.b {
                for r in oc.chunks_exact_mut(p.cout) {
                    r.copy_from_slice(b);
                }
            }
            let colv = ArrayView2::from_shape((rows, p.patch()), &*col).expect("sized");
            let ov = ArrayViewMut2::from_shape((rows, p.cout), oc).expect("sized");
            gemm_view(ov, colv, self.wm, self.b.is_some(), Parallelism::None);
        });
    }
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
    {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let plan = ForwardPlan::new(&w, b, p);
        let chunk = p.chunk();
        let os = out.as_slice_mut().expect("fresh array");
        for_chunks(
            os,
            chunk * p.out_pixels() * p.cout,
            p.parallel(),
            |i, oc| {
                let n0 = i * chunk;
                plan.run(xs, n0, (n0 + chunk).min(p.n), oc);
            },
        );
    };
    out
}

/// Adds d loss / d input of samples `n0..n1` into `dxc`, their
/// `(n1 - n0, H, W, Cin)` gradient (zeroed by the caller), from `ds`, the δ
/// of those samples; `wt` is the transposed weight matrix.
pub(crate) fn input_grad_chunk<T: Float>(
    ds: &[T],
    wt: ArrayView2<'_, T>,
    p: &Conv2dParams,
    n0: usize,
    n1: usize,
    dxc: &mut [T],
) {
    let rows = (n1 - n0) * p.out_pixels();
    let dv = ArrayView2::from_shape((rows, p.cout), ds).expect("sized");
    with_scratch(rows * p.patch(), |col: &mut [T]| {
        let cv = ArrayViewMut2::from_shape((rows, p.patch()), &mut *col).expect("sized");
        gemm_view(cv, dv, wt, false, Parallelism::None);
        col2im(col, p, dxc);
    });
}

/// The weight as the transposed `(Cout, Kh·Kw·Cin)` matrix, for [`input_grad_chunk`].
pub(crate) fn transposed_weight<'a, T: Float>(
    w: &'a ndarray::CowArray<'a, T, ndarray::Ix4>,
    p: &Conv2dParams,
) -> ArrayView2<'a, T> {
    weight_matrix(w, p).reversed_axes()
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
    {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let wt = transposed_weight(&w, p);
        let chunk = p.chunk();
        let per = p.out_pixels() * p.cout;
        let dxs = dx.as_slice_mut().expect("fresh array");
        for_chunks(dxs, chunk * p.h * p.w * p.cin, p.parallel(), |i, dxc| {
            let n0 = i * chunk;
            let n1 = (n0 + chunk).min(p.n);
            input_grad_chunk(&ds[n0 * per..n1 * per], wt, p, n0, n1, dxc);
        });
    };
    dx
}

/// `acc += Σ rows of d`, `d` a row-major matrix with `acc.len()` columns
/// (iterating ndarray rows instead took as long as the weight gradient).
fn sum_rows<T: Float>(d: &[T], acc: &mut [T]) {
    #[inline(always)]
    fn body<T: Float>(d: &[T], acc: &mut [T]) {
        for r in d.chunks_exact(acc.len()) {
            for (g, &v) in acc.iter_mut().zip(r) {
                *g += v;
            }
        }
    }
    if acc.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2")]
        fn v4<T: Float>(d: &[T], acc: &mut [T]) {
            body(d, acc)
        }
        if avx512() {
            // SAFETY: the CPU has the features v4 is compiled for.
            return unsafe { v4(d, acc) };
        }
    }
    body(d, acc)
}

/// Adds the weight gradient `colᵀ·δ` of samples `n0..n1` of `xs` (the
/// standard-layout input) into `gw (Kh·Kw·Cin, Cout)`, and the row sums of
/// `ds`, their δ, into `gb` when it is not empty. `direct` is
/// [`weight_plan`]'s decision.
pub(crate) fn weight_grad_chunk<T: Float>(
    xs: &[T],
    ds: &[T],
    p: &Conv2dParams,
    (n0, n1): (usize, usize),
    direct: Option<&(Direct, usize)>,
    gw: &mut [T],
    gb: &mut [T],
) {
    let (kc, cout) = (p.patch(), p.cout);
    if let Some((dir, cpad)) = direct {
        let mut gwpad = vec![T::zero(); kc * cpad];
        let mut gbpad = vec![T::zero(); *cpad];
        with_padded(xs, p, n0, n1, |xp| {
            direct_weight(xp, dir, ds, cout, &mut gwpad, &mut gbpad, *cpad)
        });
        for (dst, src) in gw.chunks_exact_mut(cout).zip(gwpad.chunks_exact(*cpad)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
        for (d, &s) in gb.iter_mut().zip(&gbpad) {
            *d += s;
        }
        return;
    }
    let rows = (n1 - n0) * p.out_pixels();
    let dv = ArrayView2::from_shape((rows, cout), ds).expect("sized");
    let gwv = ArrayViewMut2::from_shape((kc, cout), gw).expect("sized");
    with_scratch(rows * kc, |col: &mut [T]| {
        im2col(xs, p, n0, n1, col);
        let cv = ArrayView2::from_shape((rows, kc), &*col).expect("sized");
        gemm_view(gwv, cv.t(), dv, true, Parallelism::None);
    });
    if !gb.is_empty() {
        sum_rows(ds, gb);
    }
}

/// Whether the weight gradient of `p` takes the direct kernel, and its padded
/// channel count (decided on the calling thread).
pub(crate) fn weight_plan<T: Float>(p: &Conv2dParams) -> Option<(Direct, usize)> {
    use_direct(p, Pass::Weight).then(|| (Direct::new(p), padded_cout::<T>(p.cout)))
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
    let direct = weight_plan::<T>(p);
    let want_b = gb.is_some();
    let (acc_w, acc_b) = {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let chunk = p.chunk();
        let per = p.out_pixels() * cout;
        let one = |i: usize| -> (Vec<T>, Vec<T>) {
            let n0 = i * chunk;
            let n1 = (n0 + chunk).min(p.n);
            let mut gw = vec![T::zero(); kc * cout];
            let mut gb = vec![T::zero(); if want_b { cout } else { 0 }];
            let dslice = &ds[n0 * per..n1 * per];
            weight_grad_chunk(xs, dslice, p, (n0, n1), direct.as_ref(), &mut gw, &mut gb);
            (gw, gb)
        };
        let chunks = p.n.div_ceil(chunk);
        if p.parallel() {
            threads::par_map(chunks, one).into_iter().reduce(add_pair)
        } else {
            (0..chunks).map(one).reduce(add_pair)
        }
        .expect("at least one chunk")
    };
    let acc_w = ArrayView4::from_shape((p.kh, p.kw, p.cin, p.cout), &acc_w)
        .expect("owned gradient reshapes");
    Zip::from(&mut gw).and(&acc_w).for_each(|g, &a| *g += a);
    if let Some(mut gb) = gb {
        Zip::from(&mut gb).and(&acc_b).for_each(|g, &a| *g += a);
    }
}

/// Element-wise sums of two (weight, bias) gradient pairs.
pub(crate) fn add_pair<T: Float>(
    (mut a, mut b): (Vec<T>, Vec<T>),
    (c, d): (Vec<T>, Vec<T>),
) -> (Vec<T>, Vec<T>) {
    a.iter_mut().zip(&c).for_each(|(x, &y)| *x += y);
    b.iter_mut().zip(&d).for_each(|(x, &y)| *x += y);
    (a, b)
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
pub(crate) fn rename_w(e: KernelError, name: &'static str) -> KernelError {
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

    /// The direct kernels against im2col + GEMM (the same sums, another
    /// order) on odd shapes: strides 1-3, padding, 1-3 input channels, 1-40
    /// output channels (every register-block tail), batch 1 and more, f64
    /// and f32.
    #[test]
    fn direct_matches_im2col() {
        fn check<T: Float>(p: &Conv2dParams, tol: f64) {
            let (ho, wo) = p.out_dims();
            let cast = |a: Array4<f64>| a.mapv(|v| T::from_f64(v).unwrap());
            let x = cast(filled((p.n, p.h, p.w, p.cin), 0.1));
            let w = cast(filled((p.kh, p.kw, p.cin, p.cout), 0.2));
            let b = filled(p.cout, 0.3).mapv(|v| T::from_f64(v).unwrap());
            let d = cast(filled((p.n, ho, wo, p.cout), 0.4));
            let close = |a: T, b: T| {
                let (a, b) = (a.to_f64().unwrap(), b.to_f64().unwrap());
                (a - b).abs() <= tol * (1.0 + b.abs())
            };
            DIRECT_OVERRIDE.with(|c| c.set(Some(true)));
            let y = forward_impl(x.view(), w.view(), Some(b.view()), p);
            let mut gw = Array4::<T>::zeros(w.raw_dim());
            let mut gb = Array1::<T>::zeros(p.cout);
            backward_weight_impl(x.view(), d.view(), gw.view_mut(), Some(gb.view_mut()), p);
            DIRECT_OVERRIDE.with(|c| c.set(Some(false)));
            // the same through im2col: a patch one longer than the threshold
            // is not what we want, so call the GEMM path on a wider copy of
            // the problem instead: zero-padded input channels keep the sums.
            let extra = DIRECT_MAX_PATCH / (p.kh * p.kw) + 1;
            let q = Conv2dParams {
                cin: p.cin + extra,
                ..*p
            };
            let mut xq = Array4::<T>::zeros((p.n, p.h, p.w, q.cin));
            xq.slice_mut(s![.., .., .., ..p.cin]).assign(&x);
            let mut wq = Array4::<T>::zeros((p.kh, p.kw, q.cin, p.cout));
            wq.slice_mut(s![.., .., ..p.cin, ..]).assign(&w);
            let yq = forward_impl(xq.view(), wq.view(), Some(b.view()), &q);
            let mut gwq = Array4::<T>::zeros(wq.raw_dim());
            let mut gbq = Array1::<T>::zeros(p.cout);
            backward_weight_impl(
                xq.view(),
                d.view(),
                gwq.view_mut(),
                Some(gbq.view_mut()),
                &q,
            );
            // and the plain GEMM path on the problem itself
            let yg = forward_impl(x.view(), w.view(), Some(b.view()), p);
            DIRECT_OVERRIDE.with(|c| c.set(None));
            for (a, b) in y.iter().zip(&yg) {
                assert!(close(*a, *b), "forward {p:?}: {a:?} vs {b:?}");
            }
            for (a, b) in gb.iter().zip(&gbq) {
                assert!(close(*a, *b), "bias {p:?}: {a:?} vs {b:?}");
            }
            for (a, b) in y.iter().zip(&yq) {
                assert!(close(*a, *b), "forward {p:?}: {a:?} vs {b:?}");
            }
            let gwq = gwq.slice(s![.., .., ..p.cin, ..]);
            for (a, b) in gw.iter().zip(gwq.iter()) {
                assert!(close(*a, *b), "weight {p:?}: {a:?} vs {b:?}");
            }
        }
        for cout in [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40] {
            for (i, &(n, h, w, cin, k, s, pad)) in [
                (1, 5, 6, 1, 3, 1, 0),
                (2, 7, 5, 2, 3, 2, 1),
                (1, 6, 9, 3, 3, 3, 2),
                (3, 4, 4, 1, 2, 1, 1),
                (1, 1, 11, 3, 1, 2, 0),
            ]
            .iter()
            .enumerate()
            {
                // (K, K) kernels, and the 1-D ones' (1, K)
                let (kh, ph) = if h == 1 { (1, 0) } else { (k, pad) };
                let p = Conv2dParams {
                    n,
                    h,
                    w,
                    cin,
                    cout,
                    kh,
                    kw: k + usize::from(h == 1 && i == 4) * 4,
                    sh: s,
                    sw: s,
                    ph,
                    pw: pad,
                };
                check::<f64>(&p, 1e-12);
                check::<f32>(&p, 1e-5);
            }
        }
    }

    /// Times the direct kernels against im2col + GEMM (the same problem,
    /// both ways) for the patch lengths around the threshold:
    /// `cargo test --release --lib direct_vs_gemm_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn direct_vs_gemm_timing() {
        use std::time::Instant;
        threads::set_num_threads(1).unwrap();
        for (k, cin) in [
            (3, 1),
            (3, 2),
            (3, 3),
            (1, 16),
            (5, 1),
            (3, 4),
            (7, 1),
            (3, 5),
        ] {
            let p = Conv2dParams {
                n: 100,
                h: 16,
                w: 16,
                cin,
                cout: 32,
                kh: k,
                kw: k,
                sh: 1,
                sw: 1,
                ph: 0,
                pw: 0,
            };
            let (ho, wo) = p.out_dims();
            let x = filled((p.n, p.h, p.w, cin), 0.1).mapv(|v| v as f32);
            let w = filled((k, k, cin, p.cout), 0.2).mapv(|v| v as f32);
            let d = filled((p.n, ho, wo, p.cout), 0.3).mapv(|v| v as f32);
            let mut gw = Array4::<f32>::zeros(w.raw_dim());
            let mut time = |direct: bool| {
                DIRECT_OVERRIDE.with(|c| c.set(Some(direct)));
                let best = |f: &mut dyn FnMut()| {
                    (0..100)
                        .map(|_| {
                            let t = Instant::now();
                            f();
                            t.elapsed().as_secs_f64() * 1e6
                        })
                        .fold(f64::INFINITY, f64::min)
                };
                let fwd = best(&mut || {
                    std::hint::black_box(forward_impl(x.view(), w.view(), None, &p));
                });
                let bww =
                    best(&mut || backward_weight_impl(x.view(), d.view(), gw.view_mut(), None, &p));
                (fwd, bww)
            };
            let (gf, gw_) = time(false);
            let (df, dw) = time(true);
            DIRECT_OVERRIDE.with(|c| c.set(None));
            println!(
                "patch {:2}: forward gemm {gf:7.1} us direct {df:7.1} us; weight gemm {gw_:7.1} us direct {dw:7.1} us",
                p.patch()
            );
        }
        threads::set_num_threads(0).unwrap();
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
