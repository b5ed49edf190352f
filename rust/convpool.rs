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
//! Layouts are those of `conv.rs` and `pool.rs`: channels last, a 1-D case
//! being a 2-D one with `H = 1`.

use ndarray::{Array3, Array4, ArrayView1, ArrayView3, ArrayView4, ArrayViewMut1, ArrayViewMut3};
use ndarray::{ArrayViewMut4, Axis};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::conv::{
    add_grads, add_pair, check_shape, conv_params, input_grad_chunk, rename_w, transposed_weight,
    with_scratch_in, Conv2dParams, ForwardPlan, WeightPlan, CONV_PAR_MIN_WORK,
};
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::pool::{self, check_argmax, check_window, Pool2dParams};
use crate::threads;

thread_local! {
    /// Each thread's buffer for a group's convolution output or its δ.
    static GROUP_OUT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes of convolution output per group of samples: small enough to stay
/// in a core's L2 cache (1-2 MB on current x86) beside the input.
const GROUP_BYTES: usize = 128 * 1024;

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
    fn new(
        op: &'static str,
        (x_shape, w_shape): (&[usize], &[usize]),
        (stride, padding): (usize, usize),
        (k, pool_stride): (usize, usize),
    ) -> Result<Self, KernelError> {
        let conv = conv_params(op, x_shape, w_shape, stride, padding)?;
        let (ho, wo) = conv.out_dims();
        let one_d = x_shape.len() == 3;
        let (kh, sh) = if one_d { (1, 1) } else { (k, pool_stride) };
        let (kw, sw) = (k, pool_stride);
        // (axis, pooling kernel, convolution output, input, conv kernel, stride, padding)
        let mut axes = vec![("length", kw, wo, conv.w, conv.kw, conv.sw, conv.pw)];
        if !one_d {
            axes[0].0 = "width";
            axes.insert(0, ("height", kh, ho, conv.h, conv.kh, conv.sh, conv.ph));
        }
        for (axis, k, out, n, kc, s, pad) in axes {
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
        // zero kernel sizes and strides (sizes checked just above)
        check_window(op, "convolution's output height", kh.min(ho), sh, ho)?;
        check_window(op, "convolution's output width", kw.min(wo), sw, wo)?;
        pool::check_positions(op, (ho, wo))?;
        let pool = Pool2dParams {
            n: 1,
            h: ho,
            w: wo,
            c: conv.cout,
            kh,
            kw,
            sh,
            sw,
        };
        let sample = (ho * wo * conv.cout * std::mem::size_of::<f64>()).max(1);
        let group = (GROUP_BYTES / sample).clamp(1, conv.n.max(1));
        let parallel = cfg!(feature = "multi-threads")
            && conv.n > group
            && conv.work() >= CONV_PAR_MIN_WORK
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

    /// The shape of the pooled output, `(N, Ho', Wo', Cout)`.
    fn pooled(&self) -> [usize; 4] {
        let (ho, wo) = self.pool.out_dims();
        [self.conv.n, ho, wo, self.conv.cout]
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
    let shape = plan.pooled();
    if shape.iter().product::<usize>() == 0 {
        return (Array4::zeros(shape), Array4::zeros(shape));
    }
    let mut y = Array4::<T>::uninit(shape);
    let mut arg = Array4::<i32>::uninit(shape);
    {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let conv = ForwardPlan::new(&w, b, &plan.conv);
        let (conv_len, pool_len) = (plan.conv_len(), plan.pool_len());
        let one = |g: usize, (yc, ac): (&mut [MaybeUninit<T>], &mut [MaybeUninit<i32>])| {
            let (n0, n1) = plan.samples(g);
            with_scratch_in(&GROUP_OUT, (n1 - n0) * conv_len, |out: &mut [T]| {
                conv.run(xs, n0, n1, out);
                let samples = out.chunks_exact(conv_len);
                let pooled = yc
                    .chunks_exact_mut(pool_len)
                    .zip(ac.chunks_exact_mut(pool_len));
                for (o, (ys, als)) in samples.zip(pooled) {
                    pool::max_pool_sample(o, ys, als, &plan.pool);
                }
            });
        };
        let len = plan.group * pool_len;
        let ys = y.as_slice_mut().expect("fresh array");
        let args = arg.as_slice_mut().expect("fresh array");
        let parts = threads::parts(plan.parallel);
        threads::par_chunks_mut2(ys, len, args, len, parts, |g, yc, ac| one(g, (yc, ac)));
    };
    // SAFETY: `par_chunks_mut2` ran on every group's slices, each cut into
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
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i32>,
    gw: ArrayViewMut4<'_, T>,
    gb: Option<ArrayViewMut1<'_, T>>,
    plan: &Plan,
    input_delta: bool,
) -> Result<Option<Array4<T>>, KernelError> {
    let p = &plan.conv;
    let mut dx = input_delta.then(|| Array4::<T>::zeros((p.n, p.h, p.w, p.cin)));
    if p.n == 0 || p.out_pixels() == 0 || p.cout == 0 {
        return Ok(dx);
    }
    let (kc, cout) = (p.patch(), p.cout);
    let argmax = argmax.as_standard_layout();
    let am = argmax.as_slice().expect("standard layout");
    let weights = WeightPlan::new::<T>(p);
    let tiled = pool::tiles(&plan.pool);
    let found_bad = AtomicBool::new(false);
    let want_b = gb.is_some();
    let sums = {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let w = w.as_standard_layout();
        let wt = transposed_weight(&w, p);
        let delta = delta.as_standard_layout();
        let ds = delta.as_slice().expect("standard layout");
        let (conv_len, pool_len) = (plan.conv_len(), plan.pool_len());
        let zeros = || {
            let b = if want_b { cout } else { 0 };
            (vec![T::zero(); kc * cout], vec![T::zero(); b])
        };
        let one = |(mut gw, mut gb): (Vec<T>, Vec<T>), (g, dxc): (usize, Option<&mut [T]>)| {
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
        let dx_len = plan.group * p.h * p.w * p.cin;
        let parts = threads::parts(plan.parallel).min(groups);
        // each part: a run of groups, its own gradient sums, its slice of dx
        let runs = threads::split_even(groups, parts);
        let mut dx_parts: Vec<Mutex<Option<&mut [T]>>> = Vec::with_capacity(parts);
        let mut rest = dx
            .as_mut()
            .map(|dx| dx.as_slice_mut().expect("fresh array"));
        for r in &runs {
            let head = rest.take().map(|d| {
                let (head, tail) = d.split_at_mut((r.len() * dx_len).min(d.len()));
                rest = Some(tail);
                head
            });
            dx_parts.push(Mutex::new(head));
        }
        let sums = threads::par_map(parts, |part| {
            let mut dxp = dx_parts[part].lock().unwrap_or_else(|e| e.into_inner());
            let mut dx_chunks = dxp.as_mut().map(|d| d.chunks_mut(dx_len));
            let mut acc = zeros();
            for g in runs[part].clone() {
                let dxc = dx_chunks.as_mut().and_then(|c| c.next());
                acc = one(acc, (g, dxc));
            }
            acc
        });
        sums.into_iter().reduce(add_pair).unwrap_or_else(zeros)
    };
    if found_bad.load(Ordering::Relaxed) {
        return Err(pool::bad_index(op, am, (plan.pool.h, plan.pool.w)));
    }
    add_grads(p, sums, gw, gb);
    Ok(dx)
}

/// The plan of a forward pass, the bias length checked against it.
fn forward_plan(
    op: &'static str,
    shapes: (&[usize], &[usize]),
    b: Option<usize>,
    conv: (usize, usize),
    pool: (usize, usize),
) -> Result<Plan, KernelError> {
    let plan = Plan::new(op, shapes, conv, pool)?;
    if let Some(len) = b {
        check_shape(op, "b", &[plan.conv.cout], &[len])?;
    }
    Ok(plan)
}

/// The plan of a backward pass, with the gradients `(w, grad_w, grad_b
/// length)` and the pooled `(delta, argmax)` shapes checked against it (a
/// 1-D pass names its 3-D shapes).
fn backward_plan(
    op: &'static str,
    (x, w): (&[usize], &[usize]),
    (gw, gb): (&[usize], Option<usize>),
    (delta, argmax): (&[usize], &[usize]),
    conv: (usize, usize),
    pool: (usize, usize),
) -> Result<Plan, KernelError> {
    let plan = Plan::new(op, (x, w), conv, pool)?;
    if w != gw {
        return Err(rename_w(
            KernelError::shape(op, "w", fmt_shape(w), fmt_shape(gw)),
            "grad_w",
        ));
    }
    if let Some(len) = gb {
        check_shape(op, "grad_b", &[plan.conv.cout], &[len])?;
    }
    let [n, ho, wo, c] = plan.pooled();
    let expected = if delta.len() == 3 {
        vec![n, wo, c]
    } else {
        vec![n, ho, wo, c]
    };
    check_shape(op, "delta", &expected, delta)?;
    check_argmax(op, delta, argmax)?;
    Ok(plan)
}

/// `max_pool1d(conv1d(x, w, b, stride, padding), k, pool_stride)` as
/// `(y, argmax)` (argmax along the convolution's output, as `max_pool1d`).
///
/// Shapes: `x (N, L, Cin)`, `w (K, Cin, Cout)`, `b (Cout,)`; `y` and `argmax`
/// `(N, (Lc - k) / pool_stride + 1, Cout)` with `Lc` the convolution's length.
pub fn conv1d_maxpool<T: Float>(
    x: ArrayView3<'_, T>,
    w: ArrayView3<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    conv: (usize, usize),
    pool: (usize, usize),
) -> Result<(Array3<T>, Array3<i32>), KernelError> {
    let shapes = (x.shape(), w.shape());
    let plan = forward_plan("conv1d_maxpool", shapes, b.map(|b| b.len()), conv, pool)?;
    let (y, a) = forward_impl(x.insert_axis(Axis(1)), w.insert_axis(Axis(0)), b, &plan);
    Ok((y.remove_axis(Axis(1)), a.remove_axis(Axis(1))))
}

/// `max_pool2d(conv2d(x, w, b, stride, padding), k, pool_stride)` as
/// `(y, argmax)` (argmax the flat index `h·Wc + w` in the convolution's
/// output, as `max_pool2d`).
pub fn conv2d_maxpool<T: Float>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    conv: (usize, usize),
    pool: (usize, usize),
) -> Result<(Array4<T>, Array4<i32>), KernelError> {
    let shapes = (x.shape(), w.shape());
    let plan = forward_plan("conv2d_maxpool", shapes, b.map(|b| b.len()), conv, pool)?;
    Ok(forward_impl(x, w, b, &plan))
}

/// Backward pass of [`conv1d_maxpool`]: adds d loss / d w and d loss / d b
/// into `grad_w` and `grad_b`, and returns d loss / d x `(N, L, Cin)` when
/// `input_delta`. `delta` and `argmax` have the pooled output's shape.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_maxpool_backward<T: Float>(
    x: ArrayView3<'_, T>,
    w: ArrayView3<'_, T>,
    delta: ArrayView3<'_, T>,
    argmax: ArrayView3<'_, i32>,
    grad_w: ArrayViewMut3<'_, T>,
    grad_b: Option<ArrayViewMut1<'_, T>>,
    conv: (usize, usize),
    pool: (usize, usize),
    input_delta: bool,
) -> Result<Option<Array3<T>>, KernelError> {
    const OP: &str = "conv1d_maxpool_backward";
    let grads = (grad_w.shape(), grad_b.as_ref().map(|b| b.len()));
    let pooled = (delta.shape(), argmax.shape());
    let plan = backward_plan(OP, (x.shape(), w.shape()), grads, pooled, conv, pool)?;
    let (x, w, delta) = (
        x.insert_axis(Axis(1)),
        w.insert_axis(Axis(0)),
        delta.insert_axis(Axis(1)),
    );
    let (argmax, grad_w) = (argmax.insert_axis(Axis(1)), grad_w.insert_axis(Axis(0)));
    let dx = backward_impl(OP, x, w, delta, argmax, grad_w, grad_b, &plan, input_delta)?;
    Ok(dx.map(|d| d.remove_axis(Axis(1))))
}

/// Backward pass of [`conv2d_maxpool`], as [`conv1d_maxpool_backward`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_maxpool_backward<T: Float>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    delta: ArrayView4<'_, T>,
    argmax: ArrayView4<'_, i32>,
    grad_w: ArrayViewMut4<'_, T>,
    grad_b: Option<ArrayViewMut1<'_, T>>,
    conv: (usize, usize),
    pool: (usize, usize),
    input_delta: bool,
) -> Result<Option<Array4<T>>, KernelError> {
    const OP: &str = "conv2d_maxpool_backward";
    let grads = (grad_w.shape(), grad_b.as_ref().map(|b| b.len()));
    let pooled = (delta.shape(), argmax.shape());
    let plan = backward_plan(OP, (x.shape(), w.shape()), grads, pooled, conv, pool)?;
    backward_impl(OP, x, w, delta, argmax, grad_w, grad_b, &plan, input_delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv, conv_backward_input, conv_backward_weight};
    use crate::pool::{max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward};
    use ndarray::{Array, Array1, Dimension};

    fn filled<Sh: ndarray::ShapeBuilder>(shape: Sh, seed: f64) -> Array<f64, Sh::Dim> {
        let mut a = Array::zeros(shape);
        for (i, v) in a.iter_mut().enumerate() {
            *v = ((i as f64 * 0.731 + seed) * 12.9898).sin();
        }
        a
    }

    fn assert_close<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn conv2d_maxpool_is_conv_then_pool() {
        // (n, h, w, cin, cout, k, stride, padding, pool k, pool stride): the
        // USPS layer (direct kernels), a big patch (im2col), overlapping and
        // gapped pools, padding, a batch split in several groups.
        for &(n, h, w, cin, cout, k, s, pad, pk, ps) in &[
            (100, 16, 16, 1, 32, 3, 1, 0, 2, 2),
            (3, 9, 8, 2, 5, 3, 1, 1, 3, 1),
            (2, 12, 12, 3, 4, 5, 2, 2, 2, 3),
            (5, 10, 10, 9, 7, 3, 1, 0, 2, 2),
            (1, 4, 4, 1, 1, 1, 1, 0, 4, 1),
        ] {
            let x = filled((n, h, w, cin), 0.1);
            let wt = filled((k, k, cin, cout), 0.2);
            let b = filled(cout, 0.3);
            let conv = conv(x.view(), wt.view(), Some(b.view()), s, pad).unwrap();
            let (y0, a0) = max_pool2d(conv.view(), pk, ps).unwrap();
            let (y, a) =
                conv2d_maxpool(x.view(), wt.view(), Some(b.view()), (s, pad), (pk, ps)).unwrap();
            assert_close(&y, &y0);
            assert_eq!(a, a0);
            let d = filled(y.raw_dim(), 0.4);
            let dconv = max_pool2d_backward(
                d.view(),
                a0.view(),
                (conv.shape()[1], conv.shape()[2]),
                None,
            )
            .unwrap();
            let mut gw0 = filled(wt.raw_dim(), 0.5);
            let mut gb0 = filled(cout, 0.6);
            conv_backward_weight(
                x.view(),
                dconv.view(),
                gw0.view_mut(),
                Some(gb0.view_mut()),
                s,
                pad,
            )
            .unwrap();
            let dx0 = conv_backward_input(dconv.view(), wt.view(), &[h, w], s, pad).unwrap();
            let mut gw = filled(wt.raw_dim(), 0.5);
            let mut gb = filled(cout, 0.6);
            let dx = conv2d_maxpool_backward(
                x.view(),
                wt.view(),
                d.view(),
                a.view(),
                gw.view_mut(),
                Some(gb.view_mut()),
                (s, pad),
                (pk, ps),
                true,
            )
            .unwrap()
            .unwrap();
            assert_close(&gw, &gw0);
            assert_close(&gb, &gb0);
            assert_close(&dx, &dx0);
            let none = conv2d_maxpool_backward(
                x.view(),
                wt.view(),
                d.view(),
                a.view(),
                gw.view_mut(),
                None,
                (s, pad),
                (pk, ps),
                false,
            )
            .unwrap();
            assert!(none.is_none());
        }
    }

    #[test]
    fn conv1d_maxpool_is_conv_then_pool() {
        for &(n, l, cin, cout, k, s, pad, pk, ps) in &[
            (100, 256, 1, 32, 3, 1, 0, 2, 2),
            (3, 20, 3, 5, 4, 2, 1, 3, 2),
            (2, 9, 1, 2, 9, 1, 0, 1, 1),
        ] {
            let x = filled((n, l, cin), 0.7);
            let wt = filled((k, cin, cout), 0.8);
            let b = filled(cout, 0.9);
            let conv = conv(x.view(), wt.view(), Some(b.view()), s, pad).unwrap();
            let (y0, a0) = max_pool1d(conv.view(), pk, ps).unwrap();
            let (y, a) =
                conv1d_maxpool(x.view(), wt.view(), Some(b.view()), (s, pad), (pk, ps)).unwrap();
            assert_close(&y, &y0);
            assert_eq!(a, a0);
            let d = filled(y.raw_dim(), 1.0);
            let dconv = max_pool1d_backward(d.view(), a0.view(), conv.shape()[1], None).unwrap();
            let mut gw0 = Array::zeros(wt.raw_dim());
            let mut gb0 = Array1::zeros(cout);
            conv_backward_weight(
                x.view(),
                dconv.view(),
                gw0.view_mut(),
                Some(gb0.view_mut()),
                s,
                pad,
            )
            .unwrap();
            let dx0 = conv_backward_input(dconv.view(), wt.view(), &[l], s, pad).unwrap();
            let mut gw = Array::zeros(wt.raw_dim());
            let mut gb = Array1::zeros(cout);
            let dx = conv1d_maxpool_backward(
                x.view(),
                wt.view(),
                d.view(),
                a.view(),
                gw.view_mut(),
                Some(gb.view_mut()),
                (s, pad),
                (pk, ps),
                true,
            )
            .unwrap()
            .unwrap();
            assert_close(&gw, &gw0);
            assert_close(&gb, &gb0);
            assert_close(&dx, &dx0);
        }
    }

    #[test]
    fn f32_simd_matches_the_generic_path() {
        // Channels in multiples of 16 take the AVX-512 code in f32 (where the
        // CPU has it); f64 takes the generic code. Small integers keep every
        // sum exact in both, with many ties; a NaN and an inf in the input.
        for &(cout, k, pk, ps) in &[(16, 3, 2, 2), (32, 3, 2, 2), (48, 2, 3, 3), (16, 3, 3, 1)] {
            let int = |a: Array<f64, ndarray::Ix4>| a.mapv(|v| (v * 3.0).round());
            let mut x = int(filled((3, 11, 10, 2), 0.1));
            x[[1, 4, 4, 0]] = f64::NAN;
            x[[2, 0, 0, 1]] = f64::INFINITY;
            let w = int(filled((k, k, 2, cout), 0.2));
            let b = filled(cout, 0.3).mapv(|v| v.round());
            let (y64, a64) =
                conv2d_maxpool(x.view(), w.view(), Some(b.view()), (1, 0), (pk, ps)).unwrap();
            let (xf, wf, bf) = (
                x.mapv(|v| v as f32),
                w.mapv(|v| v as f32),
                b.mapv(|v| v as f32),
            );
            let (y32, a32) =
                conv2d_maxpool(xf.view(), wf.view(), Some(bf.view()), (1, 0), (pk, ps)).unwrap();
            assert_eq!(a32, a64);
            for (p, q) in y32.iter().zip(&y64) {
                assert!(*p as f64 == *q || (p.is_nan() && q.is_nan()), "{p} vs {q}");
            }
            // the backward pass, without the NaN
            let x = x.mapv(|v| if v.is_finite() { v } else { 1.0 });
            let (_, a) =
                conv2d_maxpool(x.view(), w.view(), Some(b.view()), (1, 0), (pk, ps)).unwrap();
            let d = int(filled(a.raw_dim(), 0.4));
            let (mut gw64, mut gb64) = (Array::zeros(w.raw_dim()), Array1::zeros(cout));
            let dx64 = conv2d_maxpool_backward(
                x.view(),
                w.view(),
                d.view(),
                a.view(),
                gw64.view_mut(),
                Some(gb64.view_mut()),
                (1, 0),
                (pk, ps),
                true,
            )
            .unwrap()
            .unwrap();
            let (mut gw32, mut gb32) = (Array::zeros(w.raw_dim()), Array1::zeros(cout));
            let (xf, df) = (x.mapv(|v| v as f32), d.mapv(|v| v as f32));
            let dx32 = conv2d_maxpool_backward(
                xf.view(),
                wf.view(),
                df.view(),
                a.view(),
                gw32.view_mut(),
                Some(gb32.view_mut()),
                (1, 0),
                (pk, ps),
                true,
            )
            .unwrap()
            .unwrap();
            assert_eq!(gw32.mapv(f64::from), gw64);
            assert_eq!(gb32.mapv(f64::from), gb64);
            assert_eq!(dx32.mapv(f64::from), dx64);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = filled((2, 8, 1), 0.1);
        let w = filled((3, 1, 4), 0.2);
        let e = conv1d_maxpool(x.view(), w.view(), None, (1, 0), (7, 1)).unwrap_err();
        assert!(
            e.to_string()
                .contains("larger than the convolution's output length 6"),
            "{e}"
        );
        let (y, a) = conv1d_maxpool(x.view(), w.view(), None, (1, 0), (2, 2)).unwrap();
        let mut gw = Array::zeros(w.raw_dim());
        let d = Array::zeros((2, 4, 4));
        let e = conv1d_maxpool_backward(
            x.view(),
            w.view(),
            d.view(),
            a.view(),
            gw.view_mut(),
            None,
            (1, 0),
            (2, 2),
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("delta must have shape (2, 3, 4)"),
            "{e}"
        );
        let mut bad = a.clone();
        bad[[1, 2, 3]] = 6;
        let e = conv1d_maxpool_backward(
            x.view(),
            w.view(),
            y.view(),
            bad.view(),
            gw.view_mut(),
            None,
            (1, 0),
            (2, 2),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("index 6, outside [0, 6)"), "{e}");
        let mut gw_bad = Array::zeros((3, 1, 5));
        let e = conv1d_maxpool_backward(
            x.view(),
            w.view(),
            y.view(),
            a.view(),
            gw_bad.view_mut(),
            None,
            (1, 0),
            (2, 2),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("grad_w"), "{e}");
    }
}
