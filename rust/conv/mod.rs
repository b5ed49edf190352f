//! Convolutions, channels last: forward, gradient of the input, gradient of
//! the weight and bias.
//!
//! Layouts: `x (N, H, W, Cin)`, `w (Kh, Kw, Cin, Cout)`, `b (Cout,)`, output
//! `y (N, Ho, Wo, Cout)` with `Ho = (H + 2·ph - Kh) / sh + 1` (and `Wo`
//! alike). A 1-D convolution, `x (N, L, Cin)` with `w (K, Cin, Cout)`, is a
//! 2-D one with `H = Kh = 1`, so both go through the same code. With `x̃`
//! the input zero padded by `ph`, `pw` and `δ = ∂L/∂y`, every kernel here
//! computes these sums (in some order):
//!
//! ```text
//! forward  y[n,i,j,o]  = b[o] + Σ_{ki,kj,c} x̃[n, i·sh+ki, j·sw+kj, c] · w[ki,kj,c,o]
//! weight   ∂L/∂w[ki,kj,c,o] = Σ_{n,i,j} x̃[n, i·sh+ki, j·sw+kj, c] · δ[n,i,j,o]
//! bias     ∂L/∂b[o]    = Σ_{n,i,j} δ[n,i,j,o]
//! input    ∂L/∂x̃[n, i·sh+ki, j·sw+kj, c] = Σ over the (i, j, ki, kj) that reach it
//!                        of Σ_o δ[n,i,j,o] · w[ki,kj,c,o]   (the padding's part dropped)
//! ```
//!
//! (in 1-D, drop `i` and `ki`). Two implementations, `im2col` and
//! `direct`, chosen per pass by `use_direct`. The batch is cut into
//! chunks ([`Conv2dParams::chunk`]), each run single-threaded.

mod direct;
mod im2col;
#[cfg(test)]
mod tests;

use ndarray::{Array, ArrayView, ArrayView1, ArrayView2, ArrayView4};
use ndarray::{ArrayViewMut, ArrayViewMut1, ArrayViewMut4, Dimension, Zip};

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::pool::{from_4d, op_name, to_4d};
use crate::softmax::filled_by;
use crate::threads;
use direct::{DirectForward, DirectWeight, DIRECT_MAX_PATCH};
pub(crate) use im2col::{input_grad as input_grad_chunk, with_scratch_in};

/// Multiply-adds (per pass) below which a convolution stays on the calling
/// thread (`f32`, AVX2: [`crate::simd::per_lanes`]; `--bench kernels -- threads/conv1d`).
pub const CONV_PAR_MIN_WORK: usize = 1_500_000;

/// Largest patch buffer one chunk may use, in elements: a core's L2 cache of `f32`
/// (bigger batches are processed in several chunks), where it stays between im2col and
/// the product; `f64` keeps as many elements, which measured faster than as many bytes.
fn col_max_elems() -> usize {
    crate::simd::l2_bytes() / 4
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

    /// The output's shape: `(N, Wo, Cout)` in 1-D, `(N, Ho, Wo, Cout)` in 2-D.
    pub(crate) fn out_shape(&self, one_d: bool) -> Vec<usize> {
        let (ho, wo) = self.out_dims();
        let spatial: &[usize] = if one_d { &[wo] } else { &[ho, wo] };
        [&[self.n], spatial, &[self.cout]].concat()
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

    /// Samples per chunk: the whole batch when small, never a patch buffer
    /// above [`col_max_elems`], and when parallel a number of chunks that
    /// is a multiple of the threads, so that each thread gets as many.
    fn chunk<T>(&self) -> usize {
        let per_sample = (self.out_pixels() * self.patch()).max(1);
        let cap = (col_max_elems() / per_sample).max(1);
        let n = self.n.max(1);
        let threads = threads::num_threads();
        let split = self.work() >= crate::simd::per_lanes::<T>(CONV_PAR_MIN_WORK);
        let split = cfg!(feature = "multi-threads") && split;
        let threads = if split { threads } else { 1 };
        n.div_ceil(n.div_ceil(cap).next_multiple_of(threads))
    }

    /// Whether chunks run in parallel.
    fn parallel<T>(&self) -> bool {
        self.chunk::<T>() < self.n && cfg!(feature = "multi-threads") && threads::num_threads() > 1
    }
}

/// Checks that a kernel of size `k` fits the input's `what` of `len` padded
/// by `padding` on both sides.
fn check_kernel_fits(
    op: &'static str,
    what: &str,
    k: usize,
    len: usize,
    padding: usize,
) -> Result<(), KernelError> {
    let why = match padding.checked_mul(2).and_then(|p2| p2.checked_add(len)) {
        _ if k == 0 => "kernel size must be >= 1, got 0".to_string(),
        None => format!("padding {padding} is too large for the {what} {len}"),
        Some(padded) if k > padded => {
            format!("kernel size {k} is larger than the {what} {len} (+ 2 x padding {padding})")
        }
        Some(_) => return Ok(()),
    };
    Err(KernelError::invalid(op, why))
}

/// Checks a convolution's input and weight shapes, `x (N, L, Cin)` and
/// `w (K, Cin, Cout)` in 1-D, `x (N, H, W, Cin)` and a square
/// `w (K, K, Cin, Cout)` in 2-D, and returns its sizes (`H = Kh = 1` in 1-D).
pub fn conv_params(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    stride: usize,
    padding: usize,
) -> Result<Conv2dParams, KernelError> {
    let one_d = x_shape.len() == 3;
    let (x, w, (sh, ph)) = match (x_shape, w_shape) {
        (&[n, l, c], &[k, wc, co]) => ([n, 1, l, c], [1, k, wc, co], (1, 0)),
        (&[n, h, w, c], &[kh, kw, wc, co]) => ([n, h, w, c], [kh, kw, wc, co], (stride, padding)),
        _ => {
            let why = "x and w must be both 3-D (1-D) or both 4-D (2-D)";
            return Err(KernelError::invalid(op, why));
        }
    };
    let ([n, h, w, cin], [kh, kw, wcin, cout]) = (x, w);
    if wcin != cin || (!one_d && kh != kw) {
        let k = if one_d { "K" } else { "K, K" };
        let want = format!("({k}, {cin}, Cout) to match x {}", fmt_shape(x_shape));
        return Err(KernelError::shape(op, "w", want, fmt_shape(w_shape)));
    }
    if stride == 0 {
        return Err(KernelError::invalid(op, "stride must be >= 1, got 0"));
    }
    if !one_d {
        check_kernel_fits(op, "input height", kh, h, padding)?;
    }
    let width = if one_d { "input length" } else { "input width" };
    check_kernel_fits(op, width, kw, w, padding)?;
    let (sw, pw) = (stride, padding);
    let p = Conv2dParams {
        n,
        h,
        w,
        cin,
        cout,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
    };
    let size = if one_d {
        format!("length {w}")
    } else {
        format!("size ({h}, {w})")
    };
    let why = format!("for input {size}, stride {stride} and padding {padding}");
    check_alloc(op, &format!("the output {why}"), &p.out_shape(one_d))?;
    check_alloc(op, &format!("the input {why}"), x_shape)?;
    Ok(p)
}

/// Checks that the argument `arg` has the shape `expected`.
pub(crate) fn check_shape(
    op: &'static str,
    arg: &'static str,
    expected: &[usize],
    actual: &[usize],
) -> Result<(), KernelError> {
    if expected != actual {
        let (want, got) = (fmt_shape(expected), fmt_shape(actual));
        return Err(KernelError::shape(op, arg, want, got));
    }
    Ok(())
}

/// Runs `f(n0, n1, chunk)` for the runs of samples `n0..n1` of
/// [`Conv2dParams::chunk`] samples, `chunk` being their part of `out` (a
/// per-sample array), the chunks dealt evenly to the threads when parallel.
fn for_samples<T: Float>(
    p: &Conv2dParams,
    out: &mut [T],
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    let chunk = p.chunk::<T>();
    let len = chunk * (out.len() / p.n.max(1));
    let parts = threads::parts(p.parallel::<T>());
    threads::par_items(out.chunks_mut(len), parts, |i, c| {
        f(i * chunk, ((i + 1) * chunk).min(p.n), c)
    });
}

/// The weight as the `(Kh·Kw·Cin, Cout)` matrix of the products (its
/// transpose for [`input_grad_chunk`]).
pub(crate) fn weight_matrix<'a, T: Float>(
    w: &'a ndarray::CowArray<'a, T, ndarray::Ix4>,
    p: &Conv2dParams,
) -> ArrayView2<'a, T> {
    w.view()
        .into_shape_with_order((p.patch(), p.cout))
        .expect("standard layout weight reshapes")
}

/// The one choice between the two implementations, made on the calling
/// thread: the direct kernels for patches up to [`DIRECT_MAX_PATCH`] (the
/// faster there, see the commits), im2col + GEMM for longer ones and the
/// input gradient. With several input channels the direct weight gradient
/// also needs `Cout` a multiple of 32 (its f32 register block with AVX-512);
/// `weight` asks for the weight gradient, else for the forward pass.
fn use_direct(p: &Conv2dParams, weight: bool) -> bool {
    let kc = p.patch();
    let fits = kc > 0 && kc <= DIRECT_MAX_PATCH && p.cout > 0;
    fits && (!weight || p.cin == 1 || p.cout.is_multiple_of(32))
}

/// What the forward pass of a convolution needs for any run of samples: the
/// weight matrix and the bias, or the direct kernel's copies of both.
pub(crate) struct ForwardPlan<'a, T> {
    p: Conv2dParams,
    wm: ArrayView2<'a, T>,
    b: Option<Vec<T>>,
    direct: Option<DirectForward<T>>,
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
        let direct = use_direct(p, false).then(|| DirectForward::new(p, wm, b.as_deref()));
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
        match &self.direct {
            Some(d) => d.run(xs, &self.p, (n0, n1), oc),
            None => im2col::forward(xs, &self.p, (self.wm, self.b.as_deref()), (n0, n1), oc),
        }
    }
}

/// How the weight gradient of a convolution is computed (decided on the
/// calling thread): the direct kernel or im2col + GEMM.
pub(crate) struct WeightPlan {
    p: Conv2dParams,
    direct: Option<DirectWeight>,
}

impl WeightPlan {
    pub(crate) fn new<T: Float>(p: &Conv2dParams) -> Self {
        let direct = use_direct(p, true).then(|| DirectWeight::new::<T>(p));
        WeightPlan { p: *p, direct }
    }

    /// Adds the weight gradient of samples `n0..n1` of `xs` (the standard-
    /// layout input) into `gw (Kh·Kw·Cin, Cout)`, and the sums of the rows of
    /// `ds`, their δ, into `gb` when it is not empty.
    pub(crate) fn run<T: Float>(
        &self,
        xs: &[T],
        ds: &[T],
        (n0, n1): (usize, usize),
        gw: &mut [T],
        gb: &mut [T],
    ) {
        match &self.direct {
            Some(d) => d.run((xs, ds), &self.p, (n0, n1), gw, gb),
            None => im2col::weight_grad((xs, ds), &self.p, (n0, n1), gw, gb),
        }
    }
}

/// Zeroed sums of the weight gradient and, when `bias`, of the bias gradient.
pub(crate) fn zero_grads<T: Float>(p: &Conv2dParams, bias: bool) -> (Vec<T>, Vec<T>) {
    let cout = if bias { p.cout } else { 0 };
    (vec![T::zero(); p.patch() * p.cout], vec![T::zero(); cout])
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

/// Adds the summed gradients `(Kh·Kw·Cin·Cout weight, Cout bias)` into the
/// caller's arrays, any layout.
pub(crate) fn add_grads<T: Float>(
    p: &Conv2dParams,
    (acc_w, acc_b): (Vec<T>, Vec<T>),
    mut gw: ArrayViewMut4<'_, T>,
    gb: Option<ArrayViewMut1<'_, T>>,
) {
    let acc_w = ArrayView4::from_shape((p.kh, p.kw, p.cin, p.cout), &acc_w)
        .expect("owned gradient reshapes");
    Zip::from(&mut gw).and(&acc_w).for_each(|g, &a| *g += a);
    if let Some(mut gb) = gb {
        Zip::from(&mut gb).and(&acc_b[..]).for_each(|g, &a| *g += a);
    }
}

/// The convolution, 1-D or 2-D as the arrays are 3-D or 4-D:
/// `x (N, L, Cin)`, `w (K, Cin, Cout)` → `(N, (L + 2·padding - K) / stride
/// + 1, Cout)`; `x (N, H, W, Cin)`, a square `w (K, K, Cin, Cout)` →
/// `(N, H', W', Cout)`; `b (Cout,)`.
pub fn conv<T: Float, D: Dimension>(
    x: ArrayView<'_, T, D>,
    w: ArrayView<'_, T, D>,
    b: Option<ArrayView1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<Array<T, D>, KernelError> {
    let nd = x.ndim();
    let op = op_name(nd, "conv1d", "conv2d");
    let p = conv_params(op, x.shape(), w.shape(), stride, padding)?;
    if let Some(b) = &b {
        check_shape(op, "b", &[p.cout], &[b.len()])?;
    }
    let (ho, wo) = p.out_dims();
    // every kernel writes its whole output: no zeroing pass before
    let out = filled_by(op, p.n, ho * wo * p.cout, |os| {
        if !os.is_empty() {
            let (x, w) = (x.as_standard_layout(), to_4d(w, 0));
            let w = w.as_standard_layout();
            let xs = x.as_slice().expect("standard layout");
            let plan = ForwardPlan::new(&w, b, &p);
            for_samples(&p, os, |n0, n1, oc| plan.run(xs, n0, n1, oc));
        }
    })?;
    Ok(from_4d(
        out.into_shape_with_order((p.n, ho, wo, p.cout))
            .expect("sized"),
        nd,
    ))
}

/// Gradient of the convolution with respect to its input, `(N, L, Cin)` or
/// `(N, H, W, Cin)` (`input_size` is `[L]` or `[H, W]`), from `delta`
/// `(N, Lout, Cout)` or `(N, H', W', Cout)` and `w`.
pub fn conv_backward_input<T: Float, D: Dimension>(
    delta: ArrayView<'_, T, D>,
    w: ArrayView<'_, T, D>,
    input_size: &[usize],
    stride: usize,
    padding: usize,
) -> Result<Array<T, D>, KernelError> {
    let nd = delta.ndim();
    let op = op_name(nd, "conv1d_backward_input", "conv2d_backward_input");
    let n = delta.shape().first().copied().unwrap_or(0);
    let cin = w.shape().iter().rev().nth(1).copied().unwrap_or(0);
    let x_shape = [&[n], input_size, &[cin]].concat();
    let p = conv_params(op, &x_shape, w.shape(), stride, padding)?;
    check_shape(op, "delta", &p.out_shape(nd == 3), delta.shape())?;
    // each chunk zeroed by its thread just before its sums (in cache, in parallel)
    let dx = filled_by(op, p.n, p.h * p.w * p.cin, |dxs| {
        if !dxs.is_empty() {
            let (delta, w) = (delta.as_standard_layout(), to_4d(w, 0));
            let w = w.as_standard_layout();
            let ds = delta.as_slice().expect("standard layout");
            let wt = weight_matrix(&w, &p).reversed_axes();
            let per = p.out_pixels() * p.cout;
            for_samples(&p, dxs, |n0, n1, dxc| {
                dxc.fill(T::zero());
                input_grad_chunk(&ds[n0 * per..n1 * per], wt, &p, n0, n1, dxc)
            });
        }
    })?;
    Ok(from_4d(
        dx.into_shape_with_order((p.n, p.h, p.w, p.cin))
            .expect("sized"),
        nd,
    ))
}

/// Accumulates the gradient of the convolution's weight (and bias):
/// `grad_w (K, Cin, Cout)` or `(K, K, Cin, Cout)` `+= Σ xᵀ·δ`,
/// `grad_b (Cout,) += Σ δ`.
pub fn conv_backward_weight<T: Float, D: Dimension>(
    x: ArrayView<'_, T, D>,
    delta: ArrayView<'_, T, D>,
    grad_w: ArrayViewMut<'_, T, D>,
    grad_b: Option<ArrayViewMut1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<(), KernelError> {
    let one_d = x.ndim() == 3;
    let op = op_name(x.ndim(), "conv1d_backward_weight", "conv2d_backward_weight");
    let p = conv_params(op, x.shape(), grad_w.shape(), stride, padding)
        .map_err(|e| rename_w(e, "grad_w"))?;
    check_shape(op, "delta", &p.out_shape(one_d), delta.shape())?;
    if let Some(gb) = &grad_b {
        check_shape(op, "grad_b", &[p.cout], &[gb.len()])?;
    }
    if p.n == 0 || p.out_pixels() == 0 {
        return Ok(());
    }
    let (plan, want_b) = (WeightPlan::new::<T>(&p), grad_b.is_some());
    let (x, delta) = (x.as_standard_layout(), delta.as_standard_layout());
    let xs = x.as_slice().expect("standard layout");
    let ds = delta.as_slice().expect("standard layout");
    let (chunk, per) = (p.chunk::<T>(), p.out_pixels() * p.cout);
    // each thread a run of chunks, summed into its own gradients
    let chunks = p.n.div_ceil(chunk);
    let runs = threads::split_even(chunks, threads::parts(p.parallel::<T>()).min(chunks));
    let sums = threads::par_map(runs.len(), |part| {
        runs[part]
            .clone()
            .fold(zero_grads(&p, want_b), |(mut gw, mut gb), i| {
                let (n0, n1) = (i * chunk, ((i + 1) * chunk).min(p.n));
                plan.run(xs, &ds[n0 * per..n1 * per], (n0, n1), &mut gw, &mut gb);
                (gw, gb)
            })
    });
    let sums = sums.into_iter().reduce(add_pair).expect("a chunk");
    add_grads(&p, sums, to_4d(grad_w, 0), grad_b);
    Ok(())
}

/// Names the gradient array in a weight-shape error instead of `w`.
pub(crate) fn rename_w(mut e: KernelError, name: &'static str) -> KernelError {
    if let KernelError::Shape { arg: arg @ "w", .. } = &mut e {
        *arg = name;
    }
    e
}
