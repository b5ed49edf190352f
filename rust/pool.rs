//! Max and average pooling, channels last, forward and backward.
//!
//! Layouts: `(N, L, C)` in 1-D, `(N, H, W, C)` in 2-D; no padding, the output
//! length is `(L - k) / stride + 1`, kernel and stride independent. A 1-D
//! pooling is a 2-D one with `H = 1` and a `1×k` window, so both share the
//! code below. The innermost loop always runs over the channels, which are
//! contiguous, so it vectorizes.
//!
//! Max pooling returns the position of each maximum (`int64`, the index along
//! `L` in 1-D, the flat index `h·W + w` in 2-D); the backward pass scatters
//! `delta` there. Ties keep the first maximum and a NaN wins, as in torch.

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::threads;

/// Element visits below which pooling stays on the calling thread.
///
/// Measured with `cargo bench --bench kernels -- pool` on the 2-core dev
/// machine: a visit costs about 0.3 ns, a rayon hand-off a few µs, so the
/// parallel path pays off from roughly 64k visits (the USPS CNN's
/// `(100, 14, 14, 32)` 2×2 max pooling, 630k visits, gains ~1.6x).
pub const POOL_PAR_MIN_WORK: usize = 64 * 1024;

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
        self.n > 1 && threads::worth_parallel(work) && work >= POOL_PAR_MIN_WORK
    }
}

fn check_window(
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

/// Checks and returns the sizes of a 1-D pooling of `(N, L, C)`.
pub fn pool1d_params(
    op: &'static str,
    shape: &[usize],
    k: usize,
    stride: usize,
) -> Result<Pool2dParams, KernelError> {
    check_window(op, "input length", k, stride, shape[1])?;
    check_alloc(op, "the input", shape)?;
    Ok(Pool2dParams {
        n: shape[0],
        h: 1,
        w: shape[1],
        c: shape[2],
        kh: 1,
        kw: k,
        sh: 1,
        sw: stride,
    })
}

/// Checks and returns the sizes of a 2-D pooling of `(N, H, W, C)` with a `k×k` window.
pub fn pool2d_params(
    op: &'static str,
    shape: &[usize],
    k: usize,
    stride: usize,
) -> Result<Pool2dParams, KernelError> {
    check_window(op, "input height", k, stride, shape[1])?;
    check_window(op, "input width", k, stride, shape[2])?;
    check_alloc(op, "the input", shape)?;
    Ok(Pool2dParams {
        n: shape[0],
        h: shape[1],
        w: shape[2],
        c: shape[3],
        kh: k,
        kw: k,
        sh: stride,
        sw: stride,
    })
}

/// Runs `f(sample, out)` for each sample's slice of `out`, in parallel when asked.
fn per_sample<A: Send>(
    out: &mut [A],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [A]) + Sync,
) {
    if len == 0 {
        return;
    }
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

fn max_pool_impl<T: Float>(x: ArrayView4<'_, T>, p: &Pool2dParams) -> (Array4<T>, Array4<i64>) {
    let (ho, wo) = p.out_dims();
    let mut y = Array4::<T>::zeros((p.n, ho, wo, p.c));
    let mut arg = Array4::<i64>::zeros((p.n, ho, wo, p.c));
    if y.is_empty() {
        return (y, arg);
    }
    threads::install(|| {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let c = p.c;
        let (sample_in, sample_out) = (p.h * p.w * c, ho * wo * c);
        let ys = y.as_slice_mut().expect("fresh array");
        let args = arg.as_slice_mut().expect("fresh array");
        let body = |n: usize, yc: &mut [T], ac: &mut [i64]| {
            let xs = &xs[n * sample_in..(n + 1) * sample_in];
            for oi in 0..ho {
                for oj in 0..wo {
                    let o = (oi * wo + oj) * c;
                    let (best, at) = (&mut yc[o..o + c], &mut ac[o..o + c]);
                    let (h0, w0) = (oi * p.sh, oj * p.sw);
                    let first = h0 * p.w + w0;
                    best.copy_from_slice(&xs[first * c..(first + 1) * c]);
                    at.fill(first as i64);
                    for ki in 0..p.kh {
                        for kj in 0..p.kw {
                            let pos = (h0 + ki) * p.w + w0 + kj;
                            if pos == first {
                                continue;
                            }
                            let v = &xs[pos * c..(pos + 1) * c];
                            for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
                                // `v > b`, or the first NaN (b == b: b is no NaN).
                                if v > *b || (v.is_nan() && !b.is_nan()) {
                                    *b = v;
                                    *a = pos as i64;
                                }
                            }
                        }
                    }
                }
            }
        };
        if p.parallel() {
            ys.par_chunks_mut(sample_out)
                .zip(args.par_chunks_mut(sample_out))
                .enumerate()
                .for_each(|(n, (yc, ac))| body(n, yc, ac));
        } else {
            for (n, (yc, ac)) in ys
                .chunks_mut(sample_out)
                .zip(args.chunks_mut(sample_out))
                .enumerate()
            {
                body(n, yc, ac);
            }
        }
    });
    (y, arg)
}

fn max_pool_backward_impl<T: Float>(
    op: &'static str,
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i64>,
    h: usize,
    w: usize,
) -> Result<Array4<T>, KernelError> {
    if argmax.shape() != delta.shape() {
        return Err(KernelError::shape(
            op,
            "argmax",
            format!("{} (the shape of delta)", fmt_shape(delta.shape())),
            fmt_shape(argmax.shape()),
        ));
    }
    let (n, c) = (delta.shape()[0], delta.shape()[3]);
    let what = format!("the input of input_len/input_hw ({h}, {w})");
    check_alloc(op, &what, &[n, h, w, c])?;
    let size = h * w; // fits: checked with the other axes above
    if let Some(bad) = argmax.iter().find(|&&a| a < 0 || a as usize >= size) {
        return Err(KernelError::invalid(
            op,
            format!("argmax holds the index {bad}, outside [0, {size}) of an input of {h}x{w} positions"),
        ));
    }
    let mut dx = Array4::<T>::zeros((n, h, w, c));
    if dx.is_empty() || delta.is_empty() {
        return Ok(dx);
    }
    let out_per = delta.shape()[1] * delta.shape()[2];
    let work = n * out_per * c;
    threads::install(|| {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let argmax = argmax.as_standard_layout();
        let am = argmax.as_slice().expect("standard layout");
        let parallel = n > 1 && threads::worth_parallel(work) && work >= POOL_PAR_MIN_WORK;
        let dxs = dx.as_slice_mut().expect("fresh array");
        per_sample(dxs, size * c, parallel, |s, dxc| {
            let range = s * out_per * c..(s + 1) * out_per * c;
            for (d, a) in ds[range.clone()]
                .chunks_exact(c)
                .zip(am[range].chunks_exact(c))
            {
                for (ch, (&d, &a)) in d.iter().zip(a).enumerate() {
                    dxc[a as usize * c + ch] += d;
                }
            }
        });
    });
    Ok(dx)
}

fn avg_pool_impl<T: Float>(x: ArrayView4<'_, T>, p: &Pool2dParams) -> Array4<T> {
    let (ho, wo) = p.out_dims();
    let mut y = Array4::<T>::zeros((p.n, ho, wo, p.c));
    if y.is_empty() {
        return y;
    }
    let scale = T::one() / T::from_usize(p.kh * p.kw).expect("window size is a float");
    threads::install(|| {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let c = p.c;
        let sample_in = p.h * p.w * c;
        let ys = y.as_slice_mut().expect("fresh array");
        per_sample(ys, ho * wo * c, p.parallel(), |n, yc| {
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
    });
    y
}

fn avg_pool_backward_impl<T: Float>(delta: ArrayView4<'_, T>, p: &Pool2dParams) -> Array4<T> {
    let (ho, wo) = p.out_dims();
    let mut dx = Array4::<T>::zeros((p.n, p.h, p.w, p.c));
    if dx.is_empty() {
        return dx;
    }
    let scale = T::one() / T::from_usize(p.kh * p.kw).expect("window size is a float");
    threads::install(|| {
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let c = p.c;
        let sample_out = ho * wo * c;
        let dxs = dx.as_slice_mut().expect("fresh array");
        per_sample(dxs, p.h * p.w * c, p.parallel(), |n, dxc| {
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
        });
    });
    dx
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

/// Max pooling of `x (N, L, C)` over windows of `k`: `(y, argmax)`, both
/// `(N, (L - k) / stride + 1, C)`, argmax the index along `L`.
pub fn max_pool1d<T: Float>(
    x: ArrayView3<'_, T>,
    k: usize,
    stride: usize,
) -> Result<(Array3<T>, Array3<i64>), KernelError> {
    let p = pool1d_params("max_pool1d", x.shape(), k, stride)?;
    let (y, a) = max_pool_impl(x.insert_axis(Axis(1)), &p);
    Ok((y.remove_axis(Axis(1)), a.remove_axis(Axis(1))))
}

/// Gradient of max pooling: `delta` goes where `argmax` points; `(N, input_len, C)`.
pub fn max_pool1d_backward<T: Float>(
    delta: ArrayView3<'_, T>,
    argmax: ArrayView3<'_, i64>,
    input_len: usize,
) -> Result<Array3<T>, KernelError> {
    let dx = max_pool_backward_impl(
        "max_pool1d_backward",
        delta.insert_axis(Axis(1)),
        argmax.insert_axis(Axis(1)),
        1,
        input_len,
    )?;
    Ok(dx.remove_axis(Axis(1)))
}

/// Average pooling of `x (N, L, C)` over windows of `k`.
pub fn avg_pool1d<T: Float>(
    x: ArrayView3<'_, T>,
    k: usize,
    stride: usize,
) -> Result<Array3<T>, KernelError> {
    let p = pool1d_params("avg_pool1d", x.shape(), k, stride)?;
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
    let p = pool1d_params(OP, &[n, input_len, c], k, stride)?;
    check_delta(OP, &[n, p.out_dims().1, c], delta.shape())?;
    Ok(avg_pool_backward_impl(delta.insert_axis(Axis(1)), &p).remove_axis(Axis(1)))
}

/// Max pooling of `x (N, H, W, C)` over `k×k` windows: `(y, argmax)`, argmax
/// the flat index `h·W + w` of each maximum.
pub fn max_pool2d<T: Float>(
    x: ArrayView4<'_, T>,
    k: usize,
    stride: usize,
) -> Result<(Array4<T>, Array4<i64>), KernelError> {
    let p = pool2d_params("max_pool2d", x.shape(), k, stride)?;
    Ok(max_pool_impl(x, &p))
}

/// Gradient of 2-D max pooling; `(N, H, W, C)` with `(H, W) = input_hw`.
pub fn max_pool2d_backward<T: Float>(
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i64>,
    input_hw: (usize, usize),
) -> Result<Array4<T>, KernelError> {
    max_pool_backward_impl("max_pool2d_backward", delta, argmax, input_hw.0, input_hw.1)
}

/// Average pooling of `x (N, H, W, C)` over `k×k` windows.
pub fn avg_pool2d<T: Float>(
    x: ArrayView4<'_, T>,
    k: usize,
    stride: usize,
) -> Result<Array4<T>, KernelError> {
    let p = pool2d_params("avg_pool2d", x.shape(), k, stride)?;
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
    let p = pool2d_params(OP, &[n, input_hw.0, input_hw.1, c], k, stride)?;
    let (ho, wo) = p.out_dims();
    check_delta(OP, &[n, ho, wo, c], delta.shape())?;
    Ok(avg_pool_backward_impl(delta, &p))
}
