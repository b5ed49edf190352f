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
//! (in 1-D, drop `i` and `ki`). Two implementations, chosen per pass by
//! [`use_direct`]: [`im2col`] (the patches as the rows of a matrix, each pass
//! one product) for any patch, [`direct`] (the sums in registers) for small
//! patches. The batch is cut into chunks: one on the calling thread for
//! small work, one per thread above [`CONV_PAR_MIN_WORK`]; each chunk runs
//! single-threaded, so there is never a parallel product inside a parallel
//! loop.

mod direct;
mod im2col;
#[cfg(test)]
mod tests;

use ndarray::{Array3, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4};
use ndarray::{ArrayViewMut1, ArrayViewMut3, ArrayViewMut4, Axis, Zip};

use crate::error::{check_alloc, fmt_shape, KernelError};
use crate::float::Float;
use crate::threads;
use direct::{DirectForward, DirectWeight, DIRECT_MAX_PATCH};
pub(crate) use im2col::with_scratch_in;

/// Multiply-adds (per pass) below which a convolution stays on the calling
/// thread: waking a pool thread costs about 10 µs, the time of ~1.5M
/// multiply-adds on one core (`cargo bench --bench kernels -- threads/conv1d`).
pub const CONV_PAR_MIN_WORK: usize = 1_500_000;

/// Largest patch buffer (in elements) one chunk may use; bigger batches are
/// processed in several chunks.
const COL_MAX_ELEMS: usize = 1 << 22;

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
        _ => unreachable!("the callers pass 3-D or 4-D shapes"),
    };
    let ([n, h, w, cin], [kh, kw, wcin, cout]) = (x, w);
    if wcin != cin || (!one_d && kh != kw) {
        let k = if one_d { "K" } else { "K, K" };
        return Err(KernelError::shape(
            op,
            "w",
            format!("({k}, {cin}, Cout) to match x {}", fmt_shape(x_shape)),
            fmt_shape(w_shape),
        ));
    }
    check_stride(op, stride)?;
    if one_d {
        check_kernel_fits(op, "input length", kw, w, padding)?;
    } else {
        check_kernel_fits(op, "input height", kh, h, padding)?;
        check_kernel_fits(op, "input width", kw, w, padding)?;
    }
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
    let (ho, wo) = p.out_dims();
    let (size, out) = if one_d {
        (format!("length {w}"), vec![n, wo, cout])
    } else {
        (format!("size ({h}, {w})"), vec![n, ho, wo, cout])
    };
    let why = format!("for input {size}, stride {stride} and padding {padding}");
    check_alloc(op, &format!("the output {why}"), &out)?;
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
        return Err(KernelError::shape(
            op,
            arg,
            fmt_shape(expected),
            fmt_shape(actual),
        ));
    }
    Ok(())
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

/// Patch lengths (`Kh·Kw·Cin`) up to which the forward pass takes the
/// direct kernel: it was faster than im2col + GEMM at every length measured
/// up to 49 (1 to 5 input channels, 3×3 to 7×7 kernels; see the commits).
const DIRECT_FORWARD_MAX: usize = 49;

/// Patch lengths up to which the weight gradient takes the direct kernel,
/// measured as [`DIRECT_FORWARD_MAX`]. With several input channels it also
/// needs `Cout` a multiple of 32 (its register block in f32 with AVX-512):
/// padded to a whole block, the wasted lanes cost more than GEMM.
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

/// The one choice between the two implementations: whether a pass goes
/// through the direct kernels (small patches, see the two thresholds above)
/// or im2col + GEMM (everything else, and the input gradient always).
/// Decided on the calling thread, before any hand-off to the pool.
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
        let direct = use_direct(p, Pass::Forward).then(|| DirectForward::new(p, wm, b.as_deref()));
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
        let len = chunk * p.out_pixels() * p.cout;
        for_chunks(os, len, p.parallel(), |i, oc| {
            let n0 = i * chunk;
            plan.run(xs, n0, (n0 + chunk).min(p.n), oc);
        });
    };
    out
}

/// Adds d loss / d input of samples `n0..n1` into `dxc`, their
/// `(n1 - n0, H, W, Cin)` gradient (zeroed by the caller), from `ds`, the δ
/// of those samples; `wt` is [`transposed_weight`].
pub(crate) fn input_grad_chunk<T: Float>(
    ds: &[T],
    wt: ArrayView2<'_, T>,
    p: &Conv2dParams,
    n0: usize,
    n1: usize,
    dxc: &mut [T],
) {
    im2col::input_grad(ds, wt, p, (n0, n1), dxc);
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

/// How the weight gradient of a convolution is computed (decided on the
/// calling thread): the direct kernel or im2col + GEMM.
pub(crate) struct WeightPlan {
    p: Conv2dParams,
    direct: Option<DirectWeight>,
}

impl WeightPlan {
    pub(crate) fn new<T: Float>(p: &Conv2dParams) -> Self {
        let direct = use_direct(p, Pass::Weight).then(|| DirectWeight::new::<T>(p));
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

/// Adds `colᵀ·δ` and the row sums of `δ` of every chunk into `gw` and `gb`.
fn backward_weight_impl<T: Float>(
    x: ArrayView4<'_, T>,
    delta: ArrayView4<'_, T>,
    gw: ArrayViewMut4<'_, T>,
    gb: Option<ArrayViewMut1<'_, T>>,
    p: &Conv2dParams,
) {
    if p.n == 0 || p.out_pixels() == 0 {
        return;
    }
    let (kc, cout) = (p.patch(), p.cout);
    let plan = WeightPlan::new::<T>(p);
    let want_b = gb.is_some();
    let sums = {
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
            plan.run(xs, &ds[n0 * per..n1 * per], (n0, n1), &mut gw, &mut gb);
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
    add_grads(p, sums, gw, gb);
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

/// `(N, (L + 2·padding - K) / stride + 1, Cout)`.
pub fn conv1d<T: Float>(
    x: ArrayView3<'_, T>,
    w: ArrayView3<'_, T>,
    b: Option<ArrayView1<'_, T>>,
    stride: usize,
    padding: usize,
) -> Result<Array3<T>, KernelError> {
    const OP: &str = "conv1d";
    let p = conv_params(OP, x.shape(), w.shape(), stride, padding)?;
    if let Some(b) = &b {
        check_shape(OP, "b", &[p.cout], &[b.len()])?;
    }
    let out = forward_impl(x.insert_axis(Axis(1)), w.insert_axis(Axis(0)), b, &p);
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
    let p = conv_params(OP, &[n, input_len, cin], w.shape(), stride, padding)?;
    check_shape(OP, "delta", &[n, p.out_dims().1, p.cout], delta.shape())?;
    let dx = backward_input_impl(delta.insert_axis(Axis(1)), w.insert_axis(Axis(0)), &p);
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
    let p = conv_params(OP, x.shape(), grad_w.shape(), stride, padding)
        .map_err(|e| rename_w(e, "grad_w"))?;
    check_shape(OP, "delta", &[p.n, p.out_dims().1, p.cout], delta.shape())?;
    if let Some(gb) = &grad_b {
        check_shape(OP, "grad_b", &[p.cout], &[gb.len()])?;
    }
    backward_weight_impl(
        x.insert_axis(Axis(1)),
        delta.insert_axis(Axis(1)),
        grad_w.insert_axis(Axis(0)),
        grad_b,
        &p,
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
    let p = conv_params(OP, x.shape(), w.shape(), stride, padding)?;
    if let Some(b) = &b {
        check_shape(OP, "b", &[p.cout], &[b.len()])?;
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
    let p = conv_params(
        OP,
        &[n, input_hw.0, input_hw.1, cin],
        w.shape(),
        stride,
        padding,
    )?;
    let (ho, wo) = p.out_dims();
    check_shape(OP, "delta", &[n, ho, wo, p.cout], delta.shape())?;
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
    let p = conv_params(OP, x.shape(), grad_w.shape(), stride, padding)
        .map_err(|e| rename_w(e, "grad_w"))?;
    let (ho, wo) = p.out_dims();
    check_shape(OP, "delta", &[p.n, ho, wo, p.cout], delta.shape())?;
    if let Some(gb) = &grad_b {
        check_shape(OP, "grad_b", &[p.cout], &[gb.len()])?;
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
