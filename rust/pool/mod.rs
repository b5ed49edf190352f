//! Max and average pooling, channels last, forward and backward.
//!
//! Layouts: `x (N, H, W, C)` pooled by `kh×kw` windows every `(sh, sw)`, no
//! padding, into `y (N, Ho, Wo, C)` with `Ho = (H - kh) / sh + 1` (`Wo`
//! alike). A 1-D pooling, `x (N, L, C)` by windows of `k`, is a 2-D one with
//! `H = kh = sh = 1`, so both go through the same code. With `P(i, j)` the
//! positions `(h, w)` of window `(i, j)` and `δ = ∂L/∂y`:
//!
//! ```text
//! max      y[n,i,j,c] = max_{(h,w) ∈ P(i,j)} x[n,h,w,c],  argmax[n,i,j,c] = h·W + w of it
//! ∂max     ∂L/∂x[n,h,w,c] = Σ_{(i,j) : argmax[n,i,j,c] = h·W + w} δ[n,i,j,c]
//! avg      y[n,i,j,c] = Σ_{(h,w) ∈ P(i,j)} x[n,h,w,c] / (kh·kw)
//! ∂avg     ∂L/∂x[n,h,w,c] = Σ_{(i,j) : (h,w) ∈ P(i,j)} δ[n,i,j,c] / (kh·kw)
//! ```
//!
//! Max pooling returns each position as `int32` (the index along `L` in 1-D;
//! see [`check_positions`]); ties keep the first maximum and a NaN wins, as
//! in torch. The sample kernels take the channels by blocks of [`LANES`].

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{Array, Array4, ArrayBase, ArrayView, Axis};
use ndarray::{Dimension, Ix4, RawData};

use crate::conv::check_shape;
use crate::error::{check_alloc, KernelError};
use crate::float::Float;
use crate::simd::multiversion;
use crate::softmax::check_same;
use crate::threads;

/// Element visits below which pooling stays on the calling thread
/// (`f32`, AVX2: [`crate::simd::per_lanes`]; `--bench kernels -- threads/max_pool2d`).
pub const POOL_PAR_MIN_WORK: usize = 128 * 1024;

/// Channels per block of the sample kernels: a loop of this fixed length
/// becomes whole vector registers (16 `f32` in one AVX-512 register), where a
/// loop over a short `C` would be mostly its scalar tail. From `LANES`
/// channels on, max pooling loops over whole rows of `C` instead.
const LANES: usize = 16;

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
    /// The pooling of an input of `shape`, `(N, L, C)` or `(N, H, W, C)`,
    /// by windows of `k` (`k×k` in 2-D) every `stride`, unchecked.
    pub(crate) fn new(shape: &[usize], k: usize, stride: usize) -> Self {
        let (h, w, kh, sh) = match *shape {
            [_, h, w, _] => (h, w, k, stride),
            _ => (1, shape[1], 1, 1),
        };
        Pool2dParams {
            n: shape[0],
            h,
            w,
            c: shape[shape.len() - 1],
            kh,
            kw: k,
            sh,
            sw: stride,
        }
    }

    /// Output height and width, `((H - kh) / sh + 1, (W - kw) / sw + 1)`.
    pub fn out_dims(&self) -> (usize, usize) {
        (
            (self.h - self.kh) / self.sh + 1,
            (self.w - self.kw) / self.sw + 1,
        )
    }

    /// The output's shape, `(N, Wo, C)` for an `nd = 3` input, else `(N, Ho, Wo, C)`.
    pub(crate) fn out_shape(&self, nd: usize) -> Vec<usize> {
        let (ho, wo) = self.out_dims();
        match nd {
            3 => vec![self.n, wo, self.c],
            _ => vec![self.n, ho, wo, self.c],
        }
    }

    /// `1 / (kh·kw)`, the weight of each position in an average.
    fn scale<T: Float>(&self) -> T {
        T::one() / T::from_usize(self.kh * self.kw).expect("window size is a float")
    }

    /// Panics unless a sample of `len_in` input and `len_out` output
    /// elements holds every window of `self`: what the unchecked reads of
    /// the sample kernels rely on.
    fn check_sample(&self, len_in: usize, len_out: usize) {
        let (ho, wo) = self.out_dims();
        assert!(len_in >= self.h * self.w * self.c && len_out >= ho * wo * self.c);
        assert!((ho - 1) * self.sh + self.kh <= self.h && (wo - 1) * self.sw + self.kw <= self.w);
    }

    /// Calls `f(o, first)` for each output window: `o` the offset of its
    /// channels in a sample's output, `first` its top left input position.
    #[inline(always)]
    fn each_window(&self, mut f: impl FnMut(usize, usize)) {
        let (ho, wo) = self.out_dims();
        for i in 0..ho {
            for j in 0..wo {
                f((i * wo + j) * self.c, i * self.sh * self.w + j * self.sw);
            }
        }
    }

    /// Calls `f(pos)` for each input position (flat `h·W + w`) of the window
    /// whose top left position is `first`, row by row.
    #[inline(always)]
    fn each_in_window(&self, first: usize, mut f: impl FnMut(usize)) {
        for ki in 0..self.kh {
            let row = first + ki * self.w;
            for pos in row..row + self.kw {
                f(pos);
            }
        }
    }

    /// Whether the batch is split: by the element visits, output elements
    /// times the window's size.
    fn parallel<T>(&self) -> bool {
        let out: usize = self.out_shape(4).iter().product();
        parallel_for::<T>(self.n, out.saturating_mul(self.kh * self.kw))
    }
}

/// Whether pooling `n` samples with `work` element visits splits the batch.
pub(crate) fn parallel_for<T>(n: usize, work: usize) -> bool {
    cfg!(feature = "multi-threads")
        && n > 1
        && work >= crate::simd::per_lanes::<T>(POOL_PAR_MIN_WORK)
        && threads::num_threads() > 1
}

pub(crate) fn check_window(
    op: &'static str,
    what: &str,
    k: usize,
    stride: usize,
    len: usize,
) -> Result<(), KernelError> {
    let why = if k == 0 {
        "kernel size k must be >= 1, got 0".to_string()
    } else if stride == 0 {
        "stride must be >= 1, got 0".to_string()
    } else if k > len {
        format!("kernel size {k} is larger than the {what} {len}")
    } else {
        return Ok(());
    };
    Err(KernelError::invalid(op, why))
}

/// Argmax positions are `int32` (4 bytes an entry, against 8, to write in
/// the forward pass and read in the backward one): an error unless the
/// `h·w` positions of a sample fit.
pub(crate) fn check_positions(op: &'static str, (h, w): (usize, usize)) -> Result<(), KernelError> {
    let fits = h
        .checked_mul(w)
        .is_some_and(|size| size <= i32::MAX as usize);
    if fits {
        return Ok(());
    }
    let why = format!(
        "an input of {h}x{w} positions per sample and channel is too large for max \
         pooling, whose int32 argmax holds at most 2^31 - 1 positions"
    );
    Err(KernelError::invalid(op, why))
}

/// Checks and returns the pooling of an input of `shape`, `(N, L, C)` by
/// windows of `k` or `(N, H, W, C)` by `k×k` windows.
pub fn pool_params(
    op: &'static str,
    shape: &[usize],
    k: usize,
    stride: usize,
) -> Result<Pool2dParams, KernelError> {
    let p = Pool2dParams::new(shape, k, stride);
    if shape.len() == 4 {
        check_window(op, "input height", k, stride, p.h)?;
    }
    let axis = if shape.len() == 3 { "length" } else { "width" };
    check_window(op, &format!("input {axis}"), k, stride, p.w)?;
    check_alloc(op, "the input", shape)?;
    Ok(p)
}

/// The pooling by `(k, stride)` whose gradient is `delta`, of an input of
/// spatial size `input` (`[L]` or `[H, W]`): checked, `delta`'s shape too.
fn backward_params(
    op: &'static str,
    delta: &[usize],
    input: &[usize],
    (k, stride): (usize, usize),
) -> Result<Pool2dParams, KernelError> {
    let p = pool_params(op, &input_shape(delta, input), k, stride)?;
    check_shape(op, "delta", &p.out_shape(delta.len()), delta)?;
    Ok(p)
}

/// The shape of the input whose pooled gradient has shape `delta`: its `N`
/// and `C`, and the spatial size `input`.
fn input_shape(delta: &[usize], input: &[usize]) -> Vec<usize> {
    [&delta[..1], input, &delta[delta.len() - 1..]].concat()
}

/// `a` as a 4-D array: itself, or, 3-D, with a length-1 axis inserted at `axis`.
pub(crate) fn to_4d<S: RawData, D: Dimension>(
    a: ArrayBase<S, D>,
    axis: usize,
) -> ArrayBase<S, Ix4> {
    let mut a = a.into_dyn();
    if a.ndim() == 3 {
        a = a.insert_axis(Axis(axis));
    }
    a.into_dimensionality().expect("a 3-D or 4-D array")
}

/// The inverse of [`to_4d`] at axis 1 for an `nd`-dimensional array.
pub(crate) fn from_4d<S: RawData, D: Dimension>(
    a: ArrayBase<S, Ix4>,
    nd: usize,
) -> ArrayBase<S, D> {
    let mut a = a.into_dyn();
    if nd == 3 {
        a = a.index_axis_move(Axis(1), 0);
    }
    a.into_dimensionality().expect("a 3-D or 4-D array")
}

/// Max pooling's `(y, argmax)`.
pub type Pooled<T, D> = (Array<T, D>, Array<i32, D>);

/// The name of a 1-D op (`one`) for a 3-D array, else of the 2-D op (`two`).
pub(crate) fn op_name(nd: usize, one: &'static str, two: &'static str) -> &'static str {
    if nd == 3 {
        one
    } else {
        two
    }
}

/// Whether `v` replaces `best` as a window's maximum: greater, or the first
/// NaN (ties keep the first maximum; a NaN wins, as in torch).
#[inline(always)]
fn beats<T: Float>(v: T, best: T) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// Calls `f(c0, n)` for the channels `c0..c0 + n` of `0..c`: blocks of
/// [`LANES`], then of 8 and 4, then single channels (constant `n`s once inlined).
#[inline(always)]
fn by_lanes(c: usize, mut f: impl FnMut(usize, usize)) {
    let mut c0 = 0;
    while c0 + LANES <= c {
        f(c0, LANES);
        c0 += LANES;
    }
    if c0 + 8 <= c {
        f(c0, 8);
        c0 += 8;
    }
    if c0 + 4 <= c {
        f(c0, 4);
        c0 += 4;
    }
    for c0 in c0..c {
        f(c0, 1);
    }
}

/// `xs[at..at + n]`, unchecked: the sample kernels' inner loops read a block
/// at every window position.
///
/// # Safety
/// `at + n <= xs.len()`, which [`Pool2dParams::check_sample`] guarantees
/// for every window position and channel block.
#[inline(always)]
unsafe fn block<T>(xs: &[T], at: usize, n: usize) -> &[T] {
    // SAFETY: in bounds, by the caller.
    unsafe { xs.get_unchecked(at..at + n) }
}

multiversion! {
    /// Max pooling of one sample `xs (H, W, C)` into `yc`, `ac (Ho, Wo, C)`,
    /// every element of both written (they may come uninitialized).
    ///
    /// From [`LANES`] channels on, window by window: the `C` maxima start as
    /// the window's first position and each further position is compared over
    /// all channels at once, contiguous runs that the compiler turns into
    /// vectors. The running maxima alternate between two scratch rows, so that
    /// each compare writes every lane: updating one row in place becomes a
    /// masked store, which is slow on some CPUs (AMD's). Fewer channels go by
    /// blocks held in registers (a row's loops cost more than their work).
    pub(crate) fn max_pool_sample<T: Float>(
        xs: &[T],
        yc: &mut [MaybeUninit<T>],
        ac: &mut [MaybeUninit<i32>],
        p: &Pool2dParams,
    ) {
        p.check_sample(xs.len(), yc.len().min(ac.len()));
        let c = p.c;
        if c >= LANES {
            let row = || (vec![T::zero(); c], vec![0i32; c]);
            let mut rows = [row(), row()];
            p.each_window(#[inline(always)] |o, first| {
                let [cur, next] = &mut rows;
                // SAFETY: `first` is a window position, checked above.
                for ((b, a), &v) in cur.0.iter_mut().zip(&mut cur.1).zip(unsafe { block(xs, first * c, c) }) {
                    *b = v;
                    *a = first as i32;
                }
                p.each_in_window(first, #[inline(always)] |pos| {
                    if pos == first {
                        return;
                    }
                    // SAFETY: a window position, checked above.
                    let v = unsafe { block(xs, pos * c, c) };
                    let lanes = cur.0.iter().zip(&cur.1).zip(v);
                    for ((nb, na), ((&b, &a), &v)) in next.0.iter_mut().zip(&mut next.1).zip(lanes) {
                        // selects, no branch: on random data a branch here
                        // mispredicts half the time
                        let take = beats(v, b);
                        *nb = if take { v } else { b };
                        *na = if take { pos as i32 } else { a };
                    }
                    std::mem::swap(cur, next);
                });
                let (y, a) = (&mut yc[o..o + c], &mut ac[o..o + c]);
                for ((y, a), (&b, &t)) in y.iter_mut().zip(a).zip(cur.0.iter().zip(&cur.1)) {
                    y.write(b);
                    a.write(t);
                }
            });
            return;
        }
        p.each_window(#[inline(always)] |o, first| {
            by_lanes(c, #[inline(always)] |c0, n| {
                let (mut best, mut at) = ([T::zero(); LANES], [first as i32; LANES]);
                best[..n].copy_from_slice(&xs[first * c + c0..][..n]);
                p.each_in_window(first, #[inline(always)] |pos| {
                    if pos == first {
                        return;
                    }
                    // SAFETY: a window position, checked above.
                    let v = unsafe { block(xs, pos * c + c0, n) };
                    for ((b, a), &v) in best.iter_mut().zip(&mut at).zip(v) {
                        let take = beats(v, *b);
                        *b = if take { v } else { *b };
                        *a = if take { pos as i32 } else { *a };
                    }
                });
                let (y, a) = (&mut yc[o + c0..][..n], &mut ac[o + c0..][..n]);
                for ((y, a), (&b, &t)) in y.iter_mut().zip(a).zip(best.iter().zip(&at)) {
                    y.write(b);
                    a.write(t);
                }
            })
        });
    }
}

multiversion! {
    /// δ of one sample when windows do not overlap: window by window, each
    /// of its positions in `dx (H, W, C)` written once, δ where the window's
    /// argmax points at it, else 0 (positions in no window are zeroed
    /// first). Returns false when some argmax is not a position of its own
    /// window (an argmax not made by `max_pool`): then the caller scatters
    /// instead.
    fn tiled_sample<T: Float>(
        ds: &[T],
        am: &[i32],
        dx: &mut [MaybeUninit<T>],
        p: &Pool2dParams,
    ) -> bool {
        p.check_sample(dx.len(), ds.len().min(am.len()));
        let ((ho, wo), c) = (p.out_dims(), p.c);
        if ho * p.kh * wo * p.kw < p.h * p.w {
            dx.fill(MaybeUninit::new(T::zero()));
        }
        let mut missed = false;
        p.each_window(#[inline(always)] |o, first| {
            by_lanes(c, #[inline(always)] |c0, n| {
                // SAFETY: `o` is an output window, checked above.
                let (d, a) = unsafe { (block(ds, o + c0, n), block(am, o + c0, n)) };
                // whether the argmax of each lane lies in this window (as
                // `u32`, the width of the compares: `bool` lanes were split
                // over several registers)
                let mut found = [0u32; LANES];
                p.each_in_window(first, #[inline(always)] |pos| {
                    // SAFETY: a window position, checked above.
                    let out = unsafe { dx.get_unchecked_mut(pos * c + c0..pos * c + c0 + n) };
                    for (((x, f), &d), &a) in out.iter_mut().zip(&mut found).zip(d).zip(a) {
                        let here = a == pos as i32;
                        *f |= u32::from(here);
                        x.write(if here { d } else { T::zero() });
                    }
                });
                missed |= found[..n].contains(&0);
            })
        });
        !missed
    }
}

/// Whether [`max_pool_backward_sample`] may take its one-pass path for `p`:
/// windows that do not overlap.
pub(crate) fn tiles(p: &Pool2dParams) -> bool {
    p.kw > 0 && p.sh >= p.kh && p.sw >= p.kw
}

/// Backward pass of [`max_pool_sample`] for one sample: `dx (H, W, C)`, all
/// of it written, is δ `ds` routed to the positions `am` (flat `h·W + w`).
/// `tiled` ([`tiles`], `p`'s window known) writes it in one pass; else, or
/// for an argmax outside its own window, it is zeroed and δ scattered into
/// it. False if an index lies outside `[0, H·W)` (it is skipped).
pub(crate) fn max_pool_backward_sample<T: Float>(
    ds: &[T],
    am: &[i32],
    dx: &mut [MaybeUninit<T>],
    p: &Pool2dParams,
    tiled: bool,
) -> bool {
    if tiled && tiled_sample(ds, am, dx, p) {
        return true;
    }
    dx.fill(MaybeUninit::new(T::zero()));
    // SAFETY: just initialized; `MaybeUninit<T>` has `T`'s layout.
    let dx = unsafe { &mut *(dx as *mut [MaybeUninit<T>] as *mut [T]) };
    let (size, c) = (p.h * p.w, p.c);
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

/// Average pooling of one sample `xs (H, W, C)` into `yc (Ho, Wo, C)`,
/// zeroed: each window's sum times `scale`.
fn avg_pool_sample<T: Float>(xs: &[T], yc: &mut [T], p: &Pool2dParams, scale: T) {
    let c = p.c;
    p.each_window(|o, first| {
        let acc = &mut yc[o..o + c];
        p.each_in_window(first, |pos| {
            for (a, &v) in acc.iter_mut().zip(&xs[pos * c..(pos + 1) * c]) {
                *a += v;
            }
        });
        acc.iter_mut().for_each(|a| *a *= scale);
    });
}

/// Backward pass of [`avg_pool_sample`]: adds each window's δ times `scale`
/// to its positions in `dx (H, W, C)`.
fn avg_pool_backward_sample<T: Float>(ds: &[T], dx: &mut [T], p: &Pool2dParams, scale: T) {
    let c = p.c;
    p.each_window(|o, first| {
        let d = &ds[o..o + c];
        p.each_in_window(first, |pos| {
            for (g, &v) in dx[pos * c..(pos + 1) * c].iter_mut().zip(d) {
                *g += v * scale;
            }
        });
    });
}

/// The error for an argmax with an index outside `[0, h·w)`.
pub(crate) fn bad_index(op: &'static str, am: &[i32], (h, w): (usize, usize)) -> KernelError {
    let size = h * w;
    let bad = am.iter().find(|&&a| a < 0 || a as usize >= size);
    let bad = bad.copied().unwrap_or(-1);
    let why = format!("argmax holds the index {bad}, outside [0, {size})");
    KernelError::invalid(op, format!("{why} of an input of {h}x{w} positions"))
}

/// Max pooling of `x (N, L, C)` over windows of `k`, or of `x (N, H, W, C)`
/// over `k×k` windows: `(y, argmax)`, both `(N, (L - k) / stride + 1, C)` in
/// 1-D, argmax the index along `L` in 1-D, the flat index `h·W + w` in 2-D.
pub fn max_pool<T: Float, D: Dimension>(
    x: ArrayView<'_, T, D>,
    k: usize,
    stride: usize,
) -> Result<Pooled<T, D>, KernelError> {
    let (nd, op) = (x.ndim(), op_name(x.ndim(), "max_pool1d", "max_pool2d"));
    let p = pool_params(op, x.shape(), k, stride)?;
    check_positions(op, (p.h, p.w))?;
    let (ho, wo) = p.out_dims();
    let mut y = Array4::<T>::uninit((p.n, ho, wo, p.c));
    let mut arg = Array4::<i32>::uninit(y.raw_dim());
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let ys = y.as_slice_mut().expect("fresh array");
    let args = arg.as_slice_mut().expect("fresh array");
    let (sample_in, sample_out) = (p.h * p.w * p.c, (ho * wo * p.c).max(1));
    let parts = threads::parts(p.parallel::<T>());
    let samples = ys.chunks_mut(sample_out).zip(args.chunks_mut(sample_out));
    threads::par_items(samples, parts, |n, (yc, ac)| {
        max_pool_sample(&xs[n * sample_in..][..sample_in], yc, ac, &p);
    });
    // SAFETY: `par_items` ran on every sample's slices, and
    // `max_pool_sample` wrote all of both.
    let (y, arg) = unsafe { (y.assume_init(), arg.assume_init()) };
    Ok((from_4d(y, nd), from_4d(arg, nd)))
}

/// Gradient of max pooling: `delta` goes where `argmax` points, in an input
/// of spatial size `input` (`[L]` or `[H, W]`).
///
/// `window`, the forward's `(k, stride)` if known, checks `delta`'s shape
/// against it and, for windows that do not overlap, writes the gradient in
/// one pass instead of zeroing it and scattering into it (same result).
pub fn max_pool_backward<T: Float, D: Dimension>(
    delta: ArrayView<'_, T, D>,
    argmax: ArrayView<'_, i32, D>,
    input: &[usize],
    window: Option<(usize, usize)>,
) -> Result<Array<T, D>, KernelError> {
    let (nd, shape) = (delta.ndim(), delta.shape());
    let op = op_name(nd, "max_pool1d_backward", "max_pool2d_backward");
    check_same(op, "argmax", "delta", argmax.shape(), shape)?;
    let p = match window {
        Some(win) => backward_params(op, shape, input, win)?,
        None => Pool2dParams::new(&input_shape(shape, input), 0, 1),
    };
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
            false => Ok(from_4d(Array4::zeros((n, h, w, c)), nd)),
        };
    }
    let delta = delta.as_standard_layout();
    let ds = delta.as_slice().expect("standard layout");
    let mut dx = Array4::<T>::uninit((n, h, w, c));
    let (tiled, per) = (tiles(&p), am.len() / n);
    // The indices are checked while they are used (one pass over argmax, not
    // two); a bad one fails the call, whose fresh output nobody has seen.
    let found_bad = AtomicBool::new(false);
    let dxs = dx.as_slice_mut().expect("fresh array");
    let parts = threads::parts(parallel_for::<T>(n, am.len()));
    threads::par_items(dxs.chunks_mut(size * c), parts, |s, dxc| {
        let range = s * per..(s + 1) * per;
        if !max_pool_backward_sample(&ds[range.clone()], &am[range], dxc, &p, tiled) {
            found_bad.store(true, Ordering::Relaxed);
        }
    });
    if found_bad.load(Ordering::Relaxed) {
        return Err(bad_index(op, am, (h, w)));
    }
    // SAFETY: `par_items` ran on every sample's slice, and each wrote all of it.
    Ok(from_4d(unsafe { dx.assume_init() }, nd))
}

/// An average pooling pass: `f(input sample, output sample, p, 1 / (kh·kw))`
/// over the samples of `a` and of a zeroed `out` array.
fn by_sample<T: Float, D: Dimension>(
    a: ArrayView<'_, T, D>,
    out: (usize, usize, usize, usize),
    p: &Pool2dParams,
    f: impl Fn(&[T], &mut [T], &Pool2dParams, T) + Sync,
) -> Array<T, D> {
    let (nd, a) = (a.ndim(), a.as_standard_layout());
    let xs = a.as_slice().expect("standard layout");
    let mut out = Array4::<T>::zeros(out);
    let (len_in, len_out) = (xs.len() / p.n.max(1), out.len() / p.n.max(1));
    let os = out.as_slice_mut().expect("fresh array");
    let chunks = os.chunks_mut(len_out.max(1));
    threads::par_items(chunks, threads::parts(p.parallel::<T>()), |n, o| {
        f(&xs[n * len_in..][..len_in], o, p, p.scale())
    });
    from_4d(out, nd)
}

/// Average pooling of `x (N, L, C)` over windows of `k`, or of `x (N, H, W,
/// C)` over `k×k` windows.
pub fn avg_pool<T: Float, D: Dimension>(
    x: ArrayView<'_, T, D>,
    k: usize,
    stride: usize,
) -> Result<Array<T, D>, KernelError> {
    let op = op_name(x.ndim(), "avg_pool1d", "avg_pool2d");
    let p = pool_params(op, x.shape(), k, stride)?;
    let (ho, wo) = p.out_dims();
    Ok(by_sample(x, (p.n, ho, wo, p.c), &p, avg_pool_sample))
}

/// Gradient of average pooling: each window spreads `delta / (kh·kw)` over
/// its positions, in an input of spatial size `input` (`[L]` or `[H, W]`).
pub fn avg_pool_backward<T: Float, D: Dimension>(
    delta: ArrayView<'_, T, D>,
    input: &[usize],
    k: usize,
    stride: usize,
) -> Result<Array<T, D>, KernelError> {
    let op = op_name(delta.ndim(), "avg_pool1d_backward", "avg_pool2d_backward");
    let p = backward_params(op, delta.shape(), input, (k, stride))?;
    let out = (p.n, p.h, p.w, p.c);
    Ok(by_sample(delta, out, &p, avg_pool_backward_sample))
}

#[cfg(test)]
mod tests;
