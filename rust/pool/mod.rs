//! Max and average pooling, channels last, forward and backward.
//!
//! Layouts: `(N, L, C)` in 1-D, `(N, H, W, C)` in 2-D; no padding, the output
//! length is `(L - k) / stride + 1`, kernel and stride independent. A 1-D
//! pooling is a 2-D one with `H = 1` and a `1×k` window, so both share the
//! code below. The innermost loop always runs over the channels, which are
//! contiguous, so it vectorizes.
//!
//! Max pooling returns the position of each maximum (`int32`, the index along
//! `L` in 1-D, the flat index `h·W + w` in 2-D; a sample may hold up to
//! 2³¹ − 1 positions, see [`check_positions`]); the backward pass scatters
//! `delta` there. Ties keep the first maximum and a NaN wins, as in torch.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};

use crate::conv::check_shape;
use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::simd::{as_f32, avx512, multiversion};
use crate::threads;

/// Element visits below which pooling stays on the calling thread: a
/// hand-off to the pool costs about 10 µs, the time of ~90k visits
/// (`cargo bench --bench kernels -- threads/max_pool2d`).
pub const POOL_PAR_MIN_WORK: usize = 128 * 1024;

/// The sizes of a pooling (a 1-D one has `h = kh = sh = 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
}

impl Pool2dParams {
    /// Output height and width, `((H - kh) / sh + 1, (W - kw) / sw + 1)`.
    pub fn out_dims(&self) -> (usize, usize) {
        (
            (self.h - self.kh) / self.sh + 1,
            (self.w - self.kw) / self.sw + 1,
        )
    }

    fn parallel(&self) -> bool {
        let (ho, wo) = self.out_dims();
        let work = self
            .n
            .saturating_mul(ho * wo * self.c)
            .saturating_mul(self.kh * self.kw);
        parallel_for(self.n, work)
    }
}

/// Whether pooling `n` samples with `work` element visits splits the batch.
pub(crate) fn parallel_for(n: usize, work: usize) -> bool {
    cfg!(feature = "multi-threads")
        && n > 1
        && work >= POOL_PAR_MIN_WORK
        && threads::num_threads() > 1
}

pub(crate) fn check_window(
    op: &'static str,
    what: &str,
    k: usize,
    stride: usize,
    len: usize,
) -> Result<(), KernelError> {
    if k == 0 {
        return Err(KernelError::invalid(
            op,
            "kernel size k must be >= 1, got 0",
        ));
    }
    if stride == 0 {
        return Err(KernelError::invalid(op, "stride must be >= 1, got 0"));
    }
    if k > len {
        return Err(KernelError::invalid(
            op,
            format!("kernel size {k} is larger than the {what} {len}"),
        ));
    }
    Ok(())
}

/// Argmax positions are `int32` (4 bytes an entry, against 8, to write in
/// the forward pass and read in the backward one): an error unless the
/// `h·w` positions of a sample fit.
pub(crate) fn check_positions(op: &'static str, (h, w): (usize, usize)) -> Result<(), KernelError> {
    match h.checked_mul(w) {
        Some(size) if size <= i32::MAX as usize => Ok(()),
        _ => Err(KernelError::invalid(
            op,
            format!(
                "an input of {h}x{w} positions per sample and channel is too large for \
                 max pooling, whose int32 argmax holds at most 2^31 - 1 positions"
            ),
        )),
    }
}

/// Checks and returns the sizes of a pooling of `(N, L, C)` by windows of
/// `k`, or of `(N, H, W, C)` by `k×k` windows.
pub fn pool_params(
    op: &'static str,
    shape: &[usize],
    k: usize,
    stride: usize,
) -> Result<Pool2dParams, KernelError> {
    let (h, w, (kh, sh)) = match *shape {
        [_, l, _] => (1, l, (1, 1)),
        [_, h, w, _] => (h, w, (k, stride)),
        _ => unreachable!("the callers pass 3-D or 4-D shapes"),
    };
    if shape.len() == 3 {
        check_window(op, "input length", k, stride, w)?;
    } else {
        check_window(op, "input height", k, stride, h)?;
        check_window(op, "input width", k, stride, w)?;
    }
    check_alloc(op, "the input", shape)?;
    let (n, c, kw, sw) = (shape[0], shape[shape.len() - 1], k, stride);
    Ok(Pool2dParams {
        n,
        h,
        w,
        c,
        kh,
        kw,
        sh,
        sw,
    })
}

/// Max pooling of `f32` by explicit AVX-512, 16 channels at a time: the
/// maximum in one register, its position in another (the compiler's version
/// of the generic loop, with a float and an `i32` select per channel, is
/// several times slower).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::Pool2dParams;

    /// [`super::max_pool_sample`] for `f32`, `p.c` a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) fn max_pool_f32(
        xs: &[f32],
        yc: &mut [MaybeUninit<f32>],
        ac: &mut [MaybeUninit<i32>],
        p: &Pool2dParams,
    ) {
        let (ho, wo) = p.out_dims();
        let c = p.c;
        assert!(c.is_multiple_of(16) && xs.len() >= p.h * p.w * c);
        assert!(yc.len() >= ho * wo * c && ac.len() >= ho * wo * c);
        // every window lies inside the sample: (ho - 1)·sh + kh <= h, same along w
        assert!(ho == 0 || (ho - 1) * p.sh + p.kh <= p.h);
        assert!(wo == 0 || (wo - 1) * p.sw + p.kw <= p.w);
        for oi in 0..ho {
            for oj in 0..wo {
                let o = (oi * wo + oj) * c;
                let (h0, w0) = (oi * p.sh, oj * p.sw);
                let first = h0 * p.w + w0;
                for c0 in (0..c).step_by(16) {
                    // SAFETY: every position read is inside the sample (checked
                    // above) and `c0 + 16 <= c`; the outputs hold `ho·wo·c`.
                    unsafe {
                        let mut best = _mm512_loadu_ps(xs.as_ptr().add(first * c + c0));
                        let mut at = _mm512_set1_epi32(first as i32);
                        for ki in 0..p.kh {
                            for kj in 0..p.kw {
                                let pos = (h0 + ki) * p.w + w0 + kj;
                                if pos == first {
                                    continue;
                                }
                                let v = _mm512_loadu_ps(xs.as_ptr().add(pos * c + c0));
                                // `v > best`, or the first NaN
                                let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                                let v_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                                let b_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(best, best);
                                let take = gt | (v_nan & !b_nan);
                                best = _mm512_mask_mov_ps(best, take, v);
                                at = _mm512_mask_mov_epi32(at, take, _mm512_set1_epi32(pos as i32));
                            }
                        }
                        _mm512_storeu_ps(yc.as_mut_ptr().add(o + c0).cast(), best);
                        _mm512_storeu_si512(ac.as_mut_ptr().add(o + c0).cast(), at);
                    }
                }
            }
        }
    }

    /// [`super::tiled_sample`] for `f32`, `c` a multiple of 16: the hits
    /// are counted from the compare masks (a popcount), not lane by lane.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) fn tiled_f32(
        ds: &[f32],
        am: &[i32],
        dx: &mut [MaybeUninit<f32>],
        p: &Pool2dParams,
    ) -> bool {
        let (h, w, c) = (p.h, p.w, p.c);
        let (ho, wo) = p.out_dims();
        let (kh, kw, sh, sw) = (p.kh, p.kw, p.sh, p.sw);
        assert!(c.is_multiple_of(16) && ds.len() >= ho * wo * c && am.len() >= ho * wo * c);
        assert!(dx.len() >= h * w * c);
        let mut hits = 0usize;
        for i in 0..h {
            let (oi, ki) = (i / sh, i % sh);
            let row_in = oi < ho && ki < kh;
            let (mut oj, mut kj) = (0, 0); // j = oj·sw + kj, without a division
            for j in 0..w {
                let pos = i * w + j;
                let out = dx[pos * c..(pos + 1) * c].as_mut_ptr().cast::<f32>();
                let inside = row_in && oj < wo && kj < kw;
                let o = (oi * wo + oj) * c;
                let at = _mm512_set1_epi32(pos as i32);
                for c0 in (0..c).step_by(16) {
                    // SAFETY: `out` holds `c` values; when `inside`, the window
                    // `o` is an output (`oi < ho`, `oj < wo`), so `o + c <= ho·wo·c`.
                    unsafe {
                        let v = if inside {
                            let a = _mm512_loadu_si512(am.as_ptr().add(o + c0).cast());
                            let m = _mm512_cmpeq_epi32_mask(a, at);
                            hits += m.count_ones() as usize;
                            _mm512_maskz_loadu_ps(m, ds.as_ptr().add(o + c0))
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_storeu_ps(out.add(c0), v);
                    }
                }
                kj += 1;
                if kj == sw {
                    (oj, kj) = (oj + 1, 0);
                }
            }
        }
        hits == ho * wo * c
    }
}

/// Whether `v` replaces `best` as a window's maximum: greater, or the first
/// NaN (ties keep the first maximum; a NaN wins, as in torch).
#[inline(always)]
pub(crate) fn beats<T: Float>(v: T, best: T) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// Max pooling of one sample `xs (H, W, C)` into `yc`/`ac (Ho, Wo, C)`:
/// explicit AVX-512 for `f32` by 16 channels, else [`max_pool_generic`].
/// Every element of `yc` and `ac` is written (they may come uninitialized).
pub(crate) fn max_pool_sample<T: Float>(
    xs: &[T],
    yc: &mut [MaybeUninit<T>],
    ac: &mut [MaybeUninit<i32>],
    p: &Pool2dParams,
) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(xs), Some(yc)) = (as_f32(xs), as_f32_uninit(yc)) {
        if avx512() && p.c.is_multiple_of(16) {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::max_pool_f32(xs, yc, ac, p) };
        }
    }
    max_pool_generic(xs, yc, ac, p)
}

multiversion! {
    /// [`max_pool_sample`] on the widest instruction set found: the channel
    /// loop, with its two selects (a float and an `i32` lane per channel),
    /// only vectorizes well with wide registers.
    fn max_pool_generic<T: Float>(
        xs: &[T],
        yc: &mut [MaybeUninit<T>],
        ac: &mut [MaybeUninit<i32>],
        p: &Pool2dParams,
    ) {
        let (ho, wo) = p.out_dims();
        let c = p.c;
        for oi in 0..ho {
            for oj in 0..wo {
                let o = (oi * wo + oj) * c;
                let (best, at) = (&mut yc[o..o + c], &mut ac[o..o + c]);
                let (h0, w0) = (oi * p.sh, oj * p.sw);
                let first = h0 * p.w + w0;
                for (b, &v) in best.iter_mut().zip(&xs[first * c..(first + 1) * c]) {
                    b.write(v);
                }
                at.fill(MaybeUninit::new(first as i32));
                // SAFETY: every element of both was just written.
                let (best, at) = unsafe { (assume_init_mut(best), assume_init_mut(at)) };
                for ki in 0..p.kh {
                    for kj in 0..p.kw {
                        let pos = (h0 + ki) * p.w + w0 + kj;
                        if pos == first {
                            continue;
                        }
                        let v = &xs[pos * c..(pos + 1) * c];
                        let pos = pos as i32;
                        for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
                            // selects, no branch: on random data a branch
                            // here mispredicts half the time
                            let take = beats(v, *b);
                            *b = if take { v } else { *b };
                            *a = if take { pos } else { *a };
                        }
                    }
                }
            }
        }
    }
}

fn max_pool_impl<T: Float>(x: ArrayView4<'_, T>, p: &Pool2dParams) -> (Array4<T>, Array4<i32>) {
    let (ho, wo) = p.out_dims();
    let shape = (p.n, ho, wo, p.c);
    if shape.0 * shape.1 * shape.2 * shape.3 == 0 {
        return (Array4::zeros(shape), Array4::zeros(shape));
    }
    let mut y = Array4::<T>::uninit(shape);
    let mut arg = Array4::<i32>::uninit(shape);
    {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let c = p.c;
        let (sample_in, sample_out) = (p.h * p.w * c, ho * wo * c);
        let ys = y.as_slice_mut().expect("fresh array");
        let args = arg.as_slice_mut().expect("fresh array");
        let body = |n: usize, yc: &mut [MaybeUninit<T>], ac: &mut [MaybeUninit<i32>]| {
            max_pool_sample(&xs[n * sample_in..(n + 1) * sample_in], yc, ac, p);
        };
        let parts = threads::parts(p.parallel());
        threads::par_chunks_mut2(ys, sample_out, args, sample_out, parts, body);
    };
    // SAFETY: `par_chunks_mut2` ran on every sample's slices, and
    // `max_pool_sample` wrote all of both.
    unsafe { (y.assume_init(), arg.assume_init()) }
}

/// `xs` as initialized values.
///
/// # Safety
/// Every element of `xs` has been written.
pub(crate) unsafe fn assume_init_mut<T>(xs: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; initialized by the caller.
    unsafe { &mut *(xs as *mut [MaybeUninit<T>] as *mut [T]) }
}

pub(crate) fn check_argmax(
    op: &'static str,
    delta: &[usize],
    argmax: &[usize],
) -> Result<(), KernelError> {
    if argmax != delta {
        return Err(KernelError::shape(
            op,
            "argmax",
            format!("{} (the shape of delta)", fmt_shape(delta)),
            fmt_shape(argmax),
        ));
    }
    Ok(())
}

multiversion! {
    /// δ of one sample when windows do not overlap: every input position of
    /// `dx (H, W, C)` written once, δ where its window's argmax points at it,
    /// else 0, in one pass of selects that vectorize. Returns false when some
    /// argmax is not a position of its own window (an argmax not made by
    /// `max_pool`): then the caller scatters instead.
    fn tiled_sample<T: Float>(
        ds: &[T],
        am: &[i32],
        dx: &mut [MaybeUninit<T>],
        p: &Pool2dParams,
    ) -> bool {
        let (h, w, c) = (p.h, p.w, p.c);
        let (ho, wo) = p.out_dims();
        // hits per channel, summed once at the end (a sum per window position
        // cost more than the selects)
        let mut hits = vec![0u32; c];
        for i in 0..h {
            let (oi, ki) = (i / p.sh, i % p.sh);
            let row_in = oi < ho && ki < p.kh;
            let (mut oj, mut kj) = (0, 0); // j = oj·sw + kj, without a division
            for j in 0..w {
                let pos = i * w + j;
                let out = &mut dx[pos * c..(pos + 1) * c];
                if row_in && oj < wo && kj < p.kw {
                    let o = (oi * wo + oj) * c;
                    let (d, a) = (&ds[o..o + c], &am[o..o + c]);
                    for (((x, &d), &a), n) in out.iter_mut().zip(d).zip(a).zip(hits.iter_mut()) {
                        let here = a == pos as i32;
                        *n += here as u32;
                        x.write(if here { d } else { T::zero() });
                    }
                } else {
                    out.fill(MaybeUninit::new(T::zero()));
                }
                kj += 1;
                if kj == p.sw {
                    (oj, kj) = (oj + 1, 0);
                }
            }
        }
        hits.iter().map(|&n| n as usize).sum::<usize>() == ho * wo * c
    }
}

/// [`tiled_sample`]: explicit AVX-512 for `f32` by 16 channels, else the
/// generic loop on the widest instruction set found.
fn tiled_sample_dispatch<T: Float>(
    ds: &[T],
    am: &[i32],
    dx: &mut [MaybeUninit<T>],
    p: &Pool2dParams,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(ds), Some(dxf)) = (as_f32(ds), as_f32_uninit(dx)) {
        if avx512() && p.c.is_multiple_of(16) {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::tiled_f32(ds, am, dxf, p) };
        }
    }
    tiled_sample(ds, am, dx, p)
}

/// `xs` as `MaybeUninit<f32>` when `T` is `f32`.
fn as_f32_uninit<T: Float>(xs: &mut [MaybeUninit<T>]) -> Option<&mut [MaybeUninit<f32>]> {
    // SAFETY: `T` is `f32` itself, checked by the type id.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &mut *(xs as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]) })
}

/// Adds `delta` of one sample where `argmax` points, into `dx` (zeroed by
/// the caller); false if an index lies outside `[0, size)` (it is skipped).
fn scatter_sample<T: Float>(ds: &[T], am: &[i32], dx: &mut [T], size: usize, c: usize) -> bool {
    let mut ok = true;
    for (d, a) in ds.chunks_exact(c).zip(am.chunks_exact(c)) {
        for (ch, (&d, &a)) in d.iter().zip(a).enumerate() {
            // A negative index wraps to a huge u64.
            if (a as u64) < size as u64 {
                dx[a as usize * c + ch] += d;
            } else {
                ok = false;
            }
        }
    }
    ok
}

/// Backward pass of [`max_pool_sample`] for one sample: `dx (H, W, C)`, all
/// of it written, is δ `ds` routed to the positions `am` (flat `h·W + w`).
/// `tiled` (windows that do not overlap, `p`'s window known) writes it in
/// one pass; else, or for an argmax outside its own window, it is zeroed
/// and δ scattered into it. False if an index lies outside `[0, H·W)`.
pub(crate) fn max_pool_backward_sample<T: Float>(
    ds: &[T],
    am: &[i32],
    dx: &mut [MaybeUninit<T>],
    p: &Pool2dParams,
    tiled: bool,
) -> bool {
    if tiled && tiled_sample_dispatch(ds, am, dx, p) {
        return true;
    }
    dx.fill(MaybeUninit::new(T::zero()));
    // SAFETY: just initialized; `MaybeUninit<T>` has `T`'s layout.
    let dx = unsafe { &mut *(dx as *mut [MaybeUninit<T>] as *mut [T]) };
    scatter_sample(ds, am, dx, p.h * p.w, p.c)
}

/// Whether [`max_pool_backward_sample`] may take its one-pass path for `p`:
/// windows that do not overlap (hit counts are `u32` per channel).
pub(crate) fn tiles(p: &Pool2dParams) -> bool {
    let (ho, wo) = p.out_dims();
    p.sh >= p.kh && p.sw >= p.kw && ho * wo < u32::MAX as usize
}

/// The error for an argmax with an index outside `[0, h·w)`.
pub(crate) fn bad_index(op: &'static str, am: &[i32], (h, w): (usize, usize)) -> KernelError {
    let size = h * w;
    let bad = am
        .iter()
        .find(|&&a| a < 0 || a as usize >= size)
        .copied()
        .unwrap_or(-1);
    KernelError::invalid(
        op,
        format!(
            "argmax holds the index {bad}, outside [0, {size}) of an input of {h}x{w} positions"
        ),
    )
}

/// `p` is the pooling of the input when the forward's window is known
/// (`delta` checked against it by the caller), else `p.kh = 0`: no window.
fn max_pool_backward_impl<T: Float>(
    op: &'static str,
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i32>,
    p: &Pool2dParams,
) -> Result<Array4<T>, KernelError> {
    check_argmax(op, delta.shape(), argmax.shape())?;
    let (n, h, w, c) = (p.n, p.h, p.w, p.c);
    check_positions(op, (h, w))?;
    let what = format!("the input of input_len/input_hw ({h}, {w})");
    check_alloc(op, &what, &[n, h, w, c])?;
    let argmax = argmax.as_standard_layout();
    let am = argmax.as_slice().expect("standard layout");
    let size = h * w; // fits: checked with the other axes above
    if n * size * c == 0 || delta.is_empty() {
        // Nothing is scattered, but a bad index is still an error.
        return match am.iter().any(|&a| a < 0 || a as usize >= size) {
            true => Err(bad_index(op, am, (h, w))),
            false => Ok(Array4::zeros((n, h, w, c))),
        };
    }
    let mut dx = Array4::<T>::uninit((n, h, w, c));
    let tiled = p.kh > 0 && tiles(p);
    let out_per = am.len() / n;
    let parallel = parallel_for(n, n * out_per);
    // The indices are checked while they are used (one pass over argmax, not
    // two); a bad one fails the call, whose fresh output nobody has seen.
    let found_bad = AtomicBool::new(false);
    {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let dxs = dx.as_slice_mut().expect("fresh array");
        threads::par_chunks_mut(dxs, size * c, threads::parts(parallel), |s, dxc| {
            let range = s * out_per..(s + 1) * out_per;
            if !max_pool_backward_sample(&ds[range.clone()], &am[range], dxc, p, tiled) {
                found_bad.store(true, Ordering::Relaxed);
            }
        });
    };
    if found_bad.load(Ordering::Relaxed) {
        return Err(bad_index(op, am, (h, w)));
    }
    // SAFETY: `par_chunks_mut` ran on every sample's slice, and each wrote all of it.
    Ok(unsafe { dx.assume_init() })
}

fn avg_pool_impl<T: Float>(x: ArrayView4<'_, T>, p: &Pool2dParams) -> Array4<T> {
    let (ho, wo) = p.out_dims();
    let mut y = Array4::<T>::zeros((p.n, ho, wo, p.c));
    if y.is_empty() {
        return y;
    }
    let scale = T::one() / T::from_usize(p.kh * p.kw).expect("window size is a float");
    {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let c = p.c;
        let sample_in = p.h * p.w * c;
        let ys = y.as_slice_mut().expect("fresh array");
        threads::par_chunks_mut(ys, ho * wo * c, threads::parts(p.parallel()), |n, yc| {
            let xs = &xs[n * sample_in..(n + 1) * sample_in];
            for oi in 0..ho {
                for oj in 0..wo {
                    let o = (oi * wo + oj) * c;
                    let acc = &mut yc[o..o + c];
                    for ki in 0..p.kh {
                        for kj in 0..p.kw {
                            let pos = (oi * p.sh + ki) * p.w + oj * p.sw + kj;
                            for (a, &v) in acc.iter_mut().zip(&xs[pos * c..(pos + 1) * c]) {
                                *a += v;
                            }
                        }
                    }
                    for a in acc.iter_mut() {
                        *a *= scale;
                    }
                }
            }
        });
    };
    y
}

fn avg_pool_backward_impl<T: Float>(delta: ArrayView4<'_, T>, p: &Pool2dParams) -> Array4<T> {
    let (ho, wo) = p.out_dims();
    let mut dx = Array4::<T>::zeros((p.n, p.h, p.w, p.c));
    if dx.is_empty() {
        return dx;
    }
    let scale = T::one() / T::from_usize(p.kh * p.kw).expect("window size is a float");
    {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let c = p.c;
        let sample_out = ho * wo * c;
        let dxs = dx.as_slice_mut().expect("fresh array");
        threads::par_chunks_mut(
            dxs,
            p.h * p.w * c,
            threads::parts(p.parallel()),
            |n, dxc| {
                let ds = &ds[n * sample_out..(n + 1) * sample_out];
                for oi in 0..ho {
                    for oj in 0..wo {
                        let o = (oi * wo + oj) * c;
                        let d = &ds[o..o + c];
                        for ki in 0..p.kh {
                            for kj in 0..p.kw {
                                let pos = (oi * p.sh + ki) * p.w + oj * p.sw + kj;
                                for (g, &v) in dxc[pos * c..(pos + 1) * c].iter_mut().zip(d) {
                                    *g += v * scale;
                                }
                            }
                        }
                    }
                }
            },
        );
    };
    dx
}

/// The pooling a max-pooling backward pass undoes: its `input (N, H, W,
/// C)`, and the window when the forward's `(k, stride)` is known, with
/// `delta` (3-D in 1-D) checked against it; else `kh = 0`, no window.
fn backward_params(
    op: &'static str,
    input: [usize; 4],
    window: Option<(usize, usize)>,
    delta: &[usize],
) -> Result<Pool2dParams, KernelError> {
    let [n, h, w, c] = input;
    let Some((k, stride)) = window else {
        let (kh, kw, sh, sw) = (0, 0, 1, 1);
        return Ok(Pool2dParams {
            n,
            h,
            w,
            c,
            kh,
            kw,
            sh,
            sw,
        });
    };
    if delta.len() == 3 {
        let p = pool_params(op, &[n, w, c], k, stride)?;
        check_shape(op, "delta", &[n, p.out_dims().1, c], delta)?;
        return Ok(p);
    }
    let p = pool_params(op, &input, k, stride)?;
    let (ho, wo) = p.out_dims();
    check_shape(op, "delta", &[n, ho, wo, c], delta)?;
    Ok(p)
}

/// Max pooling of `x (N, L, C)` over windows of `k`: `(y, argmax)`, both
/// `(N, (L - k) / stride + 1, C)`, argmax the index along `L`.
pub fn max_pool1d<T: Float>(
    x: ArrayView3<'_, T>,
    k: usize,
    stride: usize,
) -> Result<(Array3<T>, Array3<i32>), KernelError> {
    let p = pool_params("max_pool1d", x.shape(), k, stride)?;
    check_positions("max_pool1d", (p.h, p.w))?;
    let (y, a) = max_pool_impl(x.insert_axis(Axis(1)), &p);
    Ok((y.remove_axis(Axis(1)), a.remove_axis(Axis(1))))
}

/// Gradient of max pooling: `delta` goes where `argmax` points; `(N, input_len, C)`.
///
/// `window`, the forward's `(k, stride)` if known, checks `delta`'s length
/// against it and, for windows that do not overlap, writes the gradient in
/// one pass instead of zeroing it and scattering into it (same result).
pub fn max_pool1d_backward<T: Float>(
    delta: ArrayView3<'_, T>,
    argmax: ArrayView3<'_, i32>,
    input_len: usize,
    window: Option<(usize, usize)>,
) -> Result<Array3<T>, KernelError> {
    const OP: &str = "max_pool1d_backward";
    // Checked here too, so that the message shows the 3-D shapes.
    check_argmax(OP, delta.shape(), argmax.shape())?;
    let (n, c) = (delta.shape()[0], delta.shape()[2]);
    let p = backward_params(OP, [n, 1, input_len, c], window, delta.shape())?;
    let (delta, argmax) = (delta.insert_axis(Axis(1)), argmax.insert_axis(Axis(1)));
    Ok(max_pool_backward_impl(OP, delta, argmax, &p)?.remove_axis(Axis(1)))
}

/// Average pooling of `x (N, L, C)` over windows of `k`.
pub fn avg_pool1d<T: Float>(
    x: ArrayView3<'_, T>,
    k: usize,
    stride: usize,
) -> Result<Array3<T>, KernelError> {
    let p = pool_params("avg_pool1d", x.shape(), k, stride)?;
    Ok(avg_pool_impl(x.insert_axis(Axis(1)), &p).remove_axis(Axis(1)))
}

/// Gradient of average pooling: each window gets `delta / k`; `(N, input_len, C)`.
pub fn avg_pool1d_backward<T: Float>(
    delta: ArrayView3<'_, T>,
    input_len: usize,
    k: usize,
    stride: usize,
) -> Result<Array3<T>, KernelError> {
    const OP: &str = "avg_pool1d_backward";
    let (n, c) = (delta.shape()[0], delta.shape()[2]);
    let p = pool_params(OP, &[n, input_len, c], k, stride)?;
    check_shape(OP, "delta", &[n, p.out_dims().1, c], delta.shape())?;
    Ok(avg_pool_backward_impl(delta.insert_axis(Axis(1)), &p).remove_axis(Axis(1)))
}

/// Max pooling of `x (N, H, W, C)` over `k×k` windows: `(y, argmax)`, argmax
/// the flat index `h·W + w` of each maximum.
pub fn max_pool2d<T: Float>(
    x: ArrayView4<'_, T>,
    k: usize,
    stride: usize,
) -> Result<(Array4<T>, Array4<i32>), KernelError> {
    let p = pool_params("max_pool2d", x.shape(), k, stride)?;
    check_positions("max_pool2d", (p.h, p.w))?;
    Ok(max_pool_impl(x, &p))
}

/// Gradient of 2-D max pooling; `(N, H, W, C)` with `(H, W) = input_hw`.
/// `window` as in [`max_pool1d_backward`], for `k×k` windows.
pub fn max_pool2d_backward<T: Float>(
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i32>,
    input_hw: (usize, usize),
    window: Option<(usize, usize)>,
) -> Result<Array4<T>, KernelError> {
    const OP: &str = "max_pool2d_backward";
    check_argmax(OP, delta.shape(), argmax.shape())?;
    let (n, c) = (delta.shape()[0], delta.shape()[3]);
    let input = [n, input_hw.0, input_hw.1, c];
    let p = backward_params(OP, input, window, delta.shape())?;
    max_pool_backward_impl(OP, delta, argmax, &p)
}

/// Average pooling of `x (N, H, W, C)` over `k×k` windows.
pub fn avg_pool2d<T: Float>(
    x: ArrayView4<'_, T>,
    k: usize,
    stride: usize,
) -> Result<Array4<T>, KernelError> {
    let p = pool_params("avg_pool2d", x.shape(), k, stride)?;
    Ok(avg_pool_impl(x, &p))
}

/// Gradient of 2-D average pooling; `(N, H, W, C)` with `(H, W) = input_hw`.
pub fn avg_pool2d_backward<T: Float>(
    delta: ArrayView4<'_, T>,
    input_hw: (usize, usize),
    k: usize,
    stride: usize,
) -> Result<Array4<T>, KernelError> {
    const OP: &str = "avg_pool2d_backward";
    let (n, c) = (delta.shape()[0], delta.shape()[3]);
    let p = pool_params(OP, &[n, input_hw.0, input_hw.1, c], k, stride)?;
    let (ho, wo) = p.out_dims();
    check_shape(OP, "delta", &[n, ho, wo, c], delta.shape())?;
    Ok(avg_pool_backward_impl(delta, &p))
}

#[cfg(test)]
mod tests;
