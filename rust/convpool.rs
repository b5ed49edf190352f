//! A convolution followed by a max pooling, as one kernel per direction.
//!
//! The report's CNNs pool right after their convolution. Run apart, the
//! convolution writes its whole output (`(100, 14, 14, 32)` floats, 2.5 MB,
//! for a USPS batch) for the pooling to read back, and the backward pass
//! writes the same amount of δ for the weight gradient to read. Here the
//! batch goes by small groups of samples whose convolution output (or δ)
//! lives in a per-thread buffer that stays in cache. Each group runs the
//! convolution's own functions then the pooling's (`pool::max_pool_sample`
//! forward, `pool::max_pool_backward_sample` backward, the argmax being
//! `max_pool`'s flat `int32` positions), so the results are those of `conv` then
//! `max_pool`, and each direction is one parallel region instead of two.
//!
//! Layouts are those of `conv` and `pool`: channels last, a 1-D case being a
//! 2-D one with `H = 1`.

use ndarray::{Array, Array4, ArrayView, ArrayView1, ArrayView4, ArrayViewMut, ArrayViewMut1};
use ndarray::{ArrayViewMut4, Dimension};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::conv::{
    add_grads, add_pair, check_shape, conv_params, input_grad_chunk, rename_w, weight_matrix,
    with_scratch_in, zero_grads, Conv2dParams, ForwardPlan, WeightPlan, CONV_PAR_MIN_WORK,
};
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::pool::{self, from_4d, op_name, pool_params, to_4d, Pool2dParams, Pooled};
use crate::softmax::check_same;
use crate::threads;

thread_local! {
    /// Each thread's buffer for a group's convolution output or its δ.
    static GROUP_OUT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The sizes of a convolution and of the max pooling of its output.
#[derive(Clone, Copy, Debug)]
struct Plan {
    conv: Conv2dParams,
    /// The pooling of one sample's convolution output (`n = 1`).
    pool: Pool2dParams,
    /// Samples per group.
    group: usize,
    parallel: bool,
}

impl Plan {
    /// The convolution of `x_shape` by `w_shape` (3-D in 1-D, 4-D in 2-D)
    /// pooled by windows of `k` (`k×k` in 2-D) every `pool_stride`.
    fn new<T>(
        op: &'static str,
        (x_shape, w_shape): (&[usize], &[usize]),
        (stride, padding): (usize, usize),
        (k, pool_stride): (usize, usize),
    ) -> Result<Self, KernelError> {
        let conv = conv_params(op, x_shape, w_shape, stride, padding)?;
        let ((ho, wo), one_d) = (conv.out_dims(), x_shape.len() == 3);
        // (axis, convolution output, input, kernel, stride, padding), height skipped in 1-D
        let axis = if one_d { "length" } else { "width" };
        let axes = [
            ("height", ho, conv.h, conv.kh, conv.sh, conv.ph),
            (axis, wo, conv.w, conv.kw, conv.sw, conv.pw),
        ];
        for &(axis, out, n, kc, s, pad) in &axes[one_d as usize..] {
            if k > out {
                return Err(KernelError::invalid(
                    op,
                    format!(
                        "pooling kernel size {k} is larger than the convolution's output \
                         {axis} {out} (input {axis} {n}, kernel {kc}, stride {s}, padding {pad})"
                    ),
                ));
            }
        }
        let out = [1, ho, wo, conv.cout];
        let pool = pool_params(op, &out[one_d as usize..], k, pool_stride)?;
        pool::check_positions(op, (ho, wo))?;
        let sample = (ho * wo * conv.cout * std::mem::size_of::<T>()).max(1);
        // a group's output in a quarter of the core's L2 cache, beside the input
        let group = (crate::simd::l2_bytes() / 4 / sample).clamp(1, conv.n.max(1));
        let parallel = cfg!(feature = "multi-threads")
            && conv.n > group
            && conv.work() >= crate::simd::per_lanes::<T>(CONV_PAR_MIN_WORK)
            && threads::num_threads() > 1;
        Ok(Plan {
            conv,
            pool,
            group,
            parallel,
        })
    }

    /// Elements of one sample's convolution output.
    fn conv_len(&self) -> usize {
        self.pool.h * self.pool.w * self.pool.c
    }

    /// Elements of one sample's pooled output.
    fn pool_len(&self) -> usize {
        let (ho, wo) = self.pool.out_dims();
        ho * wo * self.pool.c
    }

    /// Samples `n0..n1` of group `g`.
    fn samples(&self, g: usize) -> (usize, usize) {
        let n0 = g * self.group;
        (n0, (n0 + self.group).min(self.conv.n))
    }
}

fn forward_impl<T: Float>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    plan: &Plan,
) -> (Array4<T>, Array4<i32>) {
    let (ho, wo) = plan.pool.out_dims();
    let shape = (plan.conv.n, ho, wo, plan.conv.cout);
    let mut y = Array4::<T>::uninit(shape);
    let mut arg = Array4::<i32>::uninit(shape);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let w = w.as_standard_layout();
    let conv = ForwardPlan::new(&w, b, &plan.conv);
    let (conv_len, pool_len) = (plan.conv_len(), plan.pool_len());
    let ys = y.as_slice_mut().expect("fresh array");
    let args = arg.as_slice_mut().expect("fresh array");
    let (len, parts) = (plan.group * pool_len, threads::parts(plan.parallel));
    let groups = ys.chunks_mut(len.max(1)).zip(args.chunks_mut(len.max(1)));
    threads::par_items(groups, parts, |g, (yc, ac)| {
        let (n0, n1) = plan.samples(g);
        with_scratch_in(&GROUP_OUT, (n1 - n0) * conv_len, |out: &mut [T]| {
            conv.run(xs, n0, n1, out);
            let pooled = yc
                .chunks_exact_mut(pool_len)
                .zip(ac.chunks_exact_mut(pool_len));
            for (o, (ys, als)) in out.chunks_exact(conv_len).zip(pooled) {
                pool::max_pool_sample(o, ys, als, &plan.pool);
            }
        });
    });
    // SAFETY: `par_items` ran on every group's slices, each cut into
    // whole samples (the arrays hold `N` of them), and `max_pool_sample`
    // wrote all of each sample's.
    unsafe { (y.assume_init(), arg.assume_init()) }
}

/// The gradients of the weight and bias, added into `gw` and `gb`, and
/// d loss / d x when `input_delta`; an error, with nothing added, when an
/// argmax index lies outside the convolution's output.
#[allow(clippy::too_many_arguments)]
fn backward_impl<T: Float>(
    op: &'static str,
    (x, w): (ArrayView4<'_, T>, ArrayView4<'_, T>),
    (delta, argmax): (ArrayView4<'_, T>, ArrayView4<'_, i32>),
    (gw, gb): (ArrayViewMut4<'_, T>, Option<ArrayViewMut1<'_, T>>),
    plan: &Plan,
    input_delta: bool,
) -> Result<Option<Array4<T>>, KernelError> {
    let p = &plan.conv;
    let mut dx = input_delta.then(|| Array4::<T>::zeros((p.n, p.h, p.w, p.cin)));
    if p.n == 0 || p.out_pixels() == 0 || p.cout == 0 {
        return Ok(dx);
    }
    let argmax = argmax.as_standard_layout();
    let am = argmax.as_slice().expect("standard layout");
    let (weights, tiled) = (WeightPlan::new::<T>(p), pool::tiles(&plan.pool));
    let found_bad = AtomicBool::new(false);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let w = w.as_standard_layout();
    let wt = weight_matrix(&w, p).reversed_axes();
    let delta = delta.as_standard_layout();
    let ds = delta.as_slice().expect("standard layout");
    let (conv_len, pool_len) = (plan.conv_len(), plan.pool_len());
    let want_b = gb.is_some();
    let zeros = || zero_grads(p, want_b);
    // Adds the gradients of group `g` into `(gw, gb)`, and writes its `dx`.
    let one = |(mut gw, mut gb): (Vec<T>, Vec<T>), g: usize, dxc: Option<&mut [T]>| {
        let (n0, n1) = plan.samples(g);
        with_scratch_in(&GROUP_OUT, (n1 - n0) * conv_len, |dy: &mut [T]| {
            // δ of the convolution's output: the pooling's backward pass
            for (s, dys) in (n0..n1).zip(dy.chunks_exact_mut(conv_len)) {
                let range = s * pool_len..(s + 1) * pool_len;
                let (d, a) = (&ds[range.clone()], &am[range]);
                // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the pass
                // writes only initialized values.
                let dys = unsafe { &mut *(dys as *mut [T] as *mut [MaybeUninit<T>]) };
                if !pool::max_pool_backward_sample(d, a, dys, &plan.pool, tiled) {
                    found_bad.store(true, Ordering::Relaxed);
                }
            }
            weights.run(xs, dy, (n0, n1), &mut gw, &mut gb);
            if let Some(dxc) = dxc {
                input_grad_chunk(dy, wt, p, n0, n1, dxc);
            }
        });
        (gw, gb)
    };
    let groups = p.n.div_ceil(plan.group);
    let parts = threads::parts(plan.parallel).min(groups);
    // each part: a run of groups, with its own gradient sums
    let runs = threads::split_even(groups, parts);
    let dx_len = plan.group * p.h * p.w * p.cin;
    let dx_groups: Vec<Mutex<&mut [T]>> = (dx.iter_mut())
        .flat_map(|d| d.as_slice_mut().expect("fresh array").chunks_mut(dx_len))
        .map(Mutex::new)
        .collect();
    let sums = threads::par_map(parts, |part| {
        runs[part].clone().fold(zeros(), |acc, g| {
            let mut dxc = dx_groups
                .get(g)
                .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()));
            one(acc, g, dxc.as_deref_mut().map(|d| &mut **d))
        })
    });
    let sums = sums.into_iter().reduce(add_pair).unwrap_or_else(zeros);
    if found_bad.load(Ordering::Relaxed) {
        return Err(pool::bad_index(op, am, (plan.pool.h, plan.pool.w)));
    }
    add_grads(p, sums, gw, gb);
    drop(dx_groups);
    Ok(dx)
}

/// `max_pool(conv(x, w, b, stride, padding), k, pool_stride)` as `(y,
/// argmax)`, in 1-D or 2-D: `x (N, L, Cin)` with `w (K, Cin, Cout)`, or `x
/// (N, H, W, Cin)` with `w (K, K, Cin, Cout)`; `b (Cout,)`. `y` and `argmax`
/// have the pooled shape, `(N, (Lc - k) / pool_stride + 1, Cout)` in 1-D with
/// `Lc` the convolution's length, and argmax is `max_pool`'s: the flat
/// position `h·Wc + w` in the convolution's output.
pub fn conv_maxpool<T: Float, D: Dimension>(
    x: ArrayView<'_, T, D>,
    w: ArrayView<'_, T, D>,
    b: Option<ArrayView1<'_, T>>,
    conv: (usize, usize),
    pool: (usize, usize),
) -> Result<Pooled<T, D>, KernelError> {
    let (nd, op) = (
        x.ndim(),
        op_name(x.ndim(), "conv1d_maxpool", "conv2d_maxpool"),
    );
    let plan = Plan::new::<T>(op, (x.shape(), w.shape()), conv, pool)?;
    if let Some(b) = &b {
        check_shape(op, "b", &[plan.conv.cout], &[b.len()])?;
    }
    let (y, a) = forward_impl(to_4d(x, 1), to_4d(w, 0), b, &plan);
    Ok((from_4d(y, nd), from_4d(a, nd)))
}

/// Backward pass of [`conv_maxpool`]: adds d loss / d w and d loss / d b
/// into `grad_w` and `grad_b`, and returns d loss / d x (`x`'s shape) when
/// `input_delta`. `delta` and `argmax` have the pooled output's shape.
pub fn conv_maxpool_backward<T: Float, D: Dimension>(
    (x, w): (ArrayView<'_, T, D>, ArrayView<'_, T, D>),
    (delta, argmax): (ArrayView<'_, T, D>, ArrayView<'_, i32, D>),
    (grad_w, grad_b): (ArrayViewMut<'_, T, D>, Option<ArrayViewMut1<'_, T>>),
    conv: (usize, usize),
    pool: (usize, usize),
    input_delta: bool,
) -> Result<Option<Array<T, D>>, KernelError> {
    let nd = x.ndim();
    let op = op_name(nd, "conv1d_maxpool_backward", "conv2d_maxpool_backward");
    let plan = Plan::new::<T>(op, (x.shape(), w.shape()), conv, pool)?;
    if w.shape() != grad_w.shape() {
        let e = KernelError::shape(op, "w", fmt_shape(w.shape()), fmt_shape(grad_w.shape()));
        return Err(rename_w(e, "grad_w"));
    }
    if let Some(gb) = &grad_b {
        check_shape(op, "grad_b", &[plan.conv.cout], &[gb.len()])?;
    }
    let mut pooled = plan.pool.out_shape(nd);
    pooled[0] = plan.conv.n;
    check_shape(op, "delta", &pooled, delta.shape())?;
    check_same(op, "argmax", "delta", argmax.shape(), delta.shape())?;
    let inputs = (to_4d(x, 1), to_4d(w, 0));
    let pooled = (to_4d(delta, 1), to_4d(argmax, 1));
    let grads = (to_4d(grad_w, 0), grad_b);
    let dx = backward_impl(op, inputs, pooled, grads, &plan, input_delta)?;
    Ok(dx.map(|d| from_4d(d, nd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv, conv_backward_input, conv_backward_weight};
    use crate::float::assert_close;
    use crate::pool::{max_pool, max_pool_backward};
    use ndarray::{Array1, ArrayD, IxDyn};

    fn filled(shape: &[usize], seed: f64) -> ArrayD<f64> {
        let mut a = ArrayD::zeros(IxDyn(shape));
        for (i, v) in a.iter_mut().enumerate() {
            *v = ((i as f64 * 0.731 + seed) * 12.9898).sin();
        }
        a
    }

    /// The unfused ops: `(y, argmax)` of the max pooling of the convolution,
    /// and for δ `d` of the pooled output d loss / d x, the gradients of the
    /// weight and bias added to `(gw, gb)`.
    fn unfused(
        (x, w, b, d): (&ArrayD<f64>, &ArrayD<f64>, &Array1<f64>, &ArrayD<f64>),
        (gw, gb): (&mut ArrayD<f64>, &mut Array1<f64>),
        (s, pad): (usize, usize),
        (pk, ps): (usize, usize),
    ) -> (ArrayD<f64>, ArrayD<i32>, ArrayD<f64>) {
        let c = conv(x.view(), w.view(), Some(b.view()), s, pad).unwrap();
        let (y, a) = max_pool(c.view(), pk, ps).unwrap();
        let spatial = |a: &ArrayD<f64>| a.shape()[1..a.ndim() - 1].to_vec();
        let dc = max_pool_backward(d.view(), a.view(), &spatial(&c), None).unwrap();
        let gb = Some(gb.view_mut());
        conv_backward_weight(x.view(), dc.view(), gw.view_mut(), gb, s, pad).unwrap();
        let dx = conv_backward_input(dc.view(), w.view(), &spatial(x), s, pad).unwrap();
        (y, a, dx)
    }

    #[test]
    fn conv_maxpool_is_conv_then_pool() {
        // (x shape, cout, k, stride, padding, pool k, pool stride): the USPS
        // layers (direct kernels), a big patch (im2col), overlapping and
        // gapped pools, padding, a batch split in several groups, a pool of
        // the whole output, a kernel of the whole input.
        let cases: [(&[usize], _, _, _, _, _, _); 8] = [
            (&[100, 16, 16, 1], 32, 3, 1, 0, 2, 2),
            (&[3, 9, 8, 2], 5, 3, 1, 1, 3, 1),
            (&[2, 12, 12, 3], 4, 5, 2, 2, 2, 3),
            (&[5, 10, 10, 9], 7, 3, 1, 0, 2, 2),
            (&[1, 4, 4, 1], 1, 1, 1, 0, 4, 1),
            (&[100, 256, 1], 32, 3, 1, 0, 2, 2),
            (&[3, 20, 3], 5, 4, 2, 1, 3, 2),
            (&[2, 9, 1], 2, 9, 1, 0, 1, 1),
        ];
        for (xs, cout, k, s, pad, pk, ps) in cases {
            let (nd, sizes) = (xs.len(), ((s, pad), (pk, ps)));
            let x = filled(xs, 0.1);
            let w = filled(&[&vec![k; nd - 2][..], &[xs[nd - 1], cout]].concat(), 0.2);
            let b = Array1::from_iter(filled(&[cout], 0.3));
            let (y, a) =
                conv_maxpool(x.view(), w.view(), Some(b.view()), sizes.0, sizes.1).unwrap();
            let d = filled(y.shape(), 0.4);
            let (mut gw0, mut gb0) = (filled(w.shape(), 0.5), Array1::from_elem(cout, 0.6));
            let (y0, a0, dx0) = unfused((&x, &w, &b, &d), (&mut gw0, &mut gb0), sizes.0, sizes.1);
            assert_close(&y, &y0, 1e-12);
            assert_eq!(a, a0);
            let (mut gw, mut gb) = (filled(w.shape(), 0.5), Array1::from_elem(cout, 0.6));
            let (xw, pooled) = ((x.view(), w.view()), (d.view(), a.view()));
            let grads = (gw.view_mut(), Some(gb.view_mut()));
            let dx =
                conv_maxpool_backward(xw.clone(), pooled.clone(), grads, sizes.0, sizes.1, true);
            assert_close(&dx.unwrap().unwrap(), &dx0, 1e-12);
            assert_close(&gw, &gw0, 1e-12);
            assert_close(&gb.into_dyn(), &gb0.into_dyn(), 1e-12);
            let grads = (gw.view_mut(), None);
            let none = conv_maxpool_backward(xw, pooled, grads, sizes.0, sizes.1, false);
            assert!(none.unwrap().is_none());
        }
    }

    #[test]
    fn f32_simd_matches_f64() {
        // Channels by whole vector registers and by smaller blocks, with many
        // ties: f32 and f64 (half as many lanes per register) agree exactly.
        // Small integers keep every sum exact in both; a NaN and an inf in the input.
        for (cout, k, pk, ps) in [
            (16, 3, 2, 2),
            (32, 3, 2, 2),
            (48, 2, 3, 3),
            (16, 3, 3, 1),
            (29, 3, 2, 2),
        ] {
            let int = |a: ArrayD<f64>| a.mapv(|v| (v * 3.0).round());
            let mut x = int(filled(&[3, 11, 10, 2], 0.1));
            x[[1, 4, 4, 0]] = f64::NAN;
            x[[2, 0, 0, 1]] = f64::INFINITY;
            let w = int(filled(&[k, k, 2, cout], 0.2));
            let b = Array1::from_iter(filled(&[cout], 0.3).mapv(f64::round));
            let f = |a: &ArrayD<f64>| a.mapv(|v| v as f32);
            let (wf, bf) = (f(&w), b.mapv(|v| v as f32));
            let (y64, a64) =
                conv_maxpool(x.view(), w.view(), Some(b.view()), (1, 0), (pk, ps)).unwrap();
            let xf = f(&x);
            let (y32, a32) =
                conv_maxpool(xf.view(), wf.view(), Some(bf.view()), (1, 0), (pk, ps)).unwrap();
            assert_eq!(a32, a64);
            for (p, q) in y32.iter().zip(&y64) {
                assert!(*p as f64 == *q || (p.is_nan() && q.is_nan()), "{p} vs {q}");
            }
            // the backward pass, without the NaN
            let x = x.mapv(|v| if v.is_finite() { v } else { 1.0 });
            let (_, a) =
                conv_maxpool(x.view(), w.view(), Some(b.view()), (1, 0), (pk, ps)).unwrap();
            let d = int(filled(a.shape(), 0.4));
            let (mut gw64, mut gb64) = (ArrayD::zeros(w.raw_dim()), Array1::zeros(cout));
            let grads = (gw64.view_mut(), Some(gb64.view_mut()));
            let xw = (x.view(), w.view());
            let dx64 =
                conv_maxpool_backward(xw, (d.view(), a.view()), grads, (1, 0), (pk, ps), true);
            let (mut gw32, mut gb32) = (ArrayD::zeros(w.raw_dim()), Array1::zeros(cout));
            let (xf, df) = (f(&x), f(&d));
            let grads = (gw32.view_mut(), Some(gb32.view_mut()));
            let xw = (xf.view(), wf.view());
            let dx32 =
                conv_maxpool_backward(xw, (df.view(), a.view()), grads, (1, 0), (pk, ps), true);
            assert_eq!(gw32.mapv(f64::from), gw64);
            assert_eq!(gb32.mapv(f64::from), gb64);
            assert_eq!(
                dx32.unwrap().unwrap().mapv(f64::from),
                dx64.unwrap().unwrap()
            );
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let (x, w) = (filled(&[2, 8, 1], 0.1), filled(&[3, 1, 4], 0.2));
        let e = conv_maxpool(x.view(), w.view(), None, (1, 0), (7, 1)).unwrap_err();
        let msg = "larger than the convolution's output length 6";
        assert!(e.to_string().contains(msg), "{e}");
        let (y, a) = conv_maxpool(x.view(), w.view(), None, (1, 0), (2, 2)).unwrap();
        let backward = |d: &ArrayD<f64>, a: &ArrayD<i32>, mut gw: ArrayD<f64>| {
            let (xw, grads) = ((x.view(), w.view()), (gw.view_mut(), None));
            let r = conv_maxpool_backward(xw, (d.view(), a.view()), grads, (1, 0), (2, 2), false);
            r.unwrap_err().to_string()
        };
        let gw = ArrayD::zeros(w.raw_dim());
        let e = backward(&ArrayD::zeros(IxDyn(&[2, 4, 4])), &a, gw.clone());
        assert!(e.contains("delta must have shape (2, 3, 4)"), "{e}");
        let mut bad = a.clone();
        bad[[1, 2, 3]] = 6;
        let e = backward(&y, &bad, gw);
        assert!(e.contains("index 6, outside [0, 6)"), "{e}");
        let e = backward(&y, &a, ArrayD::zeros(IxDyn(&[3, 1, 5])));
        assert!(e.contains("grad_w"), "{e}");
    }
}
