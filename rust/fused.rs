//! Fused training paths: a chain of dense layers (each a linear map followed
//! by an optional activation) forward and backward in one call, and one SGD
//! step over every parameter.
//!
//! On small models a training step is a few dozen tiny operations; run one by
//! one from Python, each pays for a call, its checks and an allocation. Here
//! the whole chain runs in Rust, once per direction, with the same maths as the
//! layers run one by one:
//!
//! - forward: `y_i = f_i(y_{i-1}·W_i + b_i)`, the bias written first and the
//!   product accumulated on it; every `y_i` is returned (the backward pass
//!   needs them, the last one is the network's output);
//! - backward: `δ_i = δ ⊙ f_i'(y_i)`, then `∇W_i += y_{i-1}ᵀ·δ_i`,
//!   `∇b_i += Σ_rows δ_i` (accumulated in place into the existing gradient
//!   arrays) and `δ = δ_i·W_iᵀ`, skipped for the first layer unless the
//!   caller wants d loss / d input.
//!
//! The products go through [`product_into`], which steers the `gemm` crate
//! to its fast paths on small batches; only `δ_i·W_iᵀ` with at most 16 rows
//! and more than 256 outputs then sums in another order than the layers' own
//! product (a few ulp).

use ndarray::{
    Array2, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD, Zip,
};

use crate::activation::{Act, Activation};
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::simd::multiversion;
use crate::small_gemm::product_into;
use crate::softmax::{self, Exp, Target};

/// One layer of a chain: `y = act(x·w + b)`, `w (in, out)`, `b (out,)`.
pub struct Dense<'a, T> {
    pub w: ArrayView2<'a, T>,
    pub b: Option<ArrayView1<'a, T>>,
    pub act: Activation,
}

/// The gradient arrays of one layer, updated in place.
pub struct DenseGrad<'a, T> {
    pub w: ArrayViewMut2<'a, T>,
    pub b: Option<ArrayViewMut1<'a, T>>,
}

/// Checks that the layers chain from `in_features` and that each bias fits.
fn check_chain<T>(
    op: &'static str,
    in_features: usize,
    layers: &[Dense<'_, T>],
) -> Result<(), KernelError> {
    if layers.is_empty() {
        return Err(KernelError::invalid(op, "the chain has no layer"));
    }
    let mut features = in_features;
    for layer in layers {
        let (rows, cols) = layer.w.dim();
        if rows != features {
            return Err(KernelError::shape(
                op,
                "weight",
                format!("({features}, out) to chain with the previous layer"),
                fmt_shape(&[rows, cols]),
            ));
        }
        if let Some(b) = &layer.b {
            if b.len() != cols {
                return Err(KernelError::shape(
                    op,
                    "bias",
                    fmt_shape(&[cols]),
                    fmt_shape(b.shape()),
                ));
            }
        }
        features = cols;
    }
    Ok(())
}

/// Checks that a layer's gradients have its parameters' shapes, and that a
/// bias gradient is given exactly when the layer has a bias.
fn check_grads(
    op: &'static str,
    w: &[usize],
    gw: &[usize],
    b: Option<usize>,
    gb: Option<usize>,
) -> Result<(), KernelError> {
    if gw != w {
        return Err(KernelError::shape(
            op,
            "weight gradient",
            fmt_shape(w),
            fmt_shape(gw),
        ));
    }
    match (gb, b) {
        (Some(gb), Some(b)) if gb != b => Err(KernelError::shape(
            op,
            "bias gradient",
            fmt_shape(&[b]),
            fmt_shape(&[gb]),
        )),
        (None, Some(_)) | (Some(_), None) => Err(KernelError::invalid(
            op,
            "give a bias gradient exactly for the layers that have a bias",
        )),
        _ => Ok(()),
    }
}

/// The chain's forward pass on `x (N, in)`: the output of every layer.
pub fn dense_forward<T: Act>(
    x: ArrayView2<'_, T>,
    layers: &[Dense<'_, T>],
) -> Result<Vec<Array2<T>>, KernelError> {
    const OP: &str = "dense_forward";
    check_chain(OP, x.ncols(), layers)?;
    let n = x.nrows();
    // (each product big enough splits itself across the threads)
    {
        let mut tile = Vec::new();
        let mut outputs: Vec<Array2<T>> = Vec::with_capacity(layers.len());
        for layer in layers {
            let input = outputs.last().map_or(x, |y| y.view());
            let out_features = layer.w.ncols();
            let mut y = match &layer.b {
                Some(b) => b
                    .broadcast((n, out_features))
                    .expect("bias length checked")
                    .to_owned(),
                None => Array2::zeros((n, out_features)),
            };
            product_into(y.view_mut(), input, layer.w, layer.b.is_some(), &mut tile)?;
            layer.act.apply(y.as_slice_mut().expect("fresh array"));
            outputs.push(y);
        }
        Ok(outputs)
    }
}

/// The chain's backward pass.
///
/// `outputs` are what [`dense_forward`] returned for this `x`, `delta` is
/// d loss / d (last output). Adds d loss / d parameters into `grads` and
/// returns d loss / d x when `input_delta` is true.
pub fn dense_backward<T: Act>(
    x: ArrayView2<'_, T>,
    outputs: &[ArrayView2<'_, T>],
    layers: &[Dense<'_, T>],
    grads: &mut [DenseGrad<'_, T>],
    delta: ArrayView2<'_, T>,
    input_delta: bool,
) -> Result<Option<Array2<T>>, KernelError> {
    const OP: &str = "dense_backward";
    check_chain(OP, x.ncols(), layers)?;
    let n = x.nrows();
    if outputs.len() != layers.len() || grads.len() != layers.len() {
        return Err(KernelError::invalid(
            OP,
            format!(
                "expected one output and one gradient per layer ({}), got {} and {}",
                layers.len(),
                outputs.len(),
                grads.len()
            ),
        ));
    }
    for ((layer, y), g) in layers.iter().zip(outputs).zip(grads.iter()) {
        let expected = (n, layer.w.ncols());
        if y.dim() != expected {
            return Err(KernelError::shape(
                OP,
                "output",
                fmt_shape(&[expected.0, expected.1]),
                fmt_shape(y.shape()),
            ));
        }
        check_grads(
            OP,
            layer.w.shape(),
            g.w.shape(),
            layer.b.as_ref().map(|b| b.len()),
            g.b.as_ref().map(|b| b.len()),
        )?;
    }
    let last = layers.len() - 1;
    if delta.dim() != outputs[last].dim() {
        return Err(KernelError::shape(
            OP,
            "delta",
            fmt_shape(outputs[last].shape()),
            fmt_shape(delta.shape()),
        ));
    }
    {
        // δ of the last layer, through its activation.
        let act = layers[last].act;
        let mut tile = Vec::new();
        let mut cur = Zip::from(&delta)
            .and(&outputs[last])
            .map_collect(|&d, &y| d * act.derivative(y));
        for i in (0..layers.len()).rev() {
            let input = if i == 0 { x } else { outputs[i - 1] };
            let grad = &mut grads[i];
            product_into(grad.w.view_mut(), input.t(), cur.view(), true, &mut tile)?;
            if let Some(gb) = grad.b.as_mut() {
                for row in cur.rows() {
                    gb.zip_mut_with(&row, |g, &d| *g += d);
                }
            }
            if i == 0 && !input_delta {
                return Ok(None);
            }
            let w = layers[i].w;
            let mut next = Array2::zeros((n, w.nrows()));
            product_into(next.view_mut(), cur.view(), w.t(), false, &mut tile)?;
            if i > 0 {
                let y = outputs[i - 1].as_standard_layout();
                layers[i - 1].act.backward(
                    y.as_slice().expect("standard layout"),
                    next.as_slice_mut().expect("fresh array"),
                );
            }
            cur = next;
        }
        Ok(Some(cur))
    }
}

/// The loss a fused training step ends the chain with (the per-sample costs
/// and gradients of `python/diy_nn/loss.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepLoss {
    /// `Σ (y - ŷ)²`, gradient `2 (ŷ - y)`.
    Mse,
    /// `Σ |y - ŷ|`, gradient `sign(ŷ - y)`.
    Mae,
    /// `-Σ y log ŷ + (1 - y) log(1 - ŷ)`, logs clamped at -100, gradient
    /// `(ŷ - y) / max(ŷ (1 - ŷ), 1e-12)` (torch's `BCELoss`).
    Bce,
    /// Cross-entropy on logits by [`softmax::cross_entropy`].
    CeLogSoftmax,
    /// `log_softmax` then the negative log-likelihood, chained back.
    CeCriterion,
}

impl StepLoss {
    /// The code the Python layer passes: 0 MSE, 1 MAE, 2 BCE, 3 CELogSoftMax,
    /// 4 CrossEntropyCriterion.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => StepLoss::Mse,
            1 => StepLoss::Mae,
            2 => StepLoss::Bce,
            3 => StepLoss::CeLogSoftmax,
            4 => StepLoss::CeCriterion,
            _ => return None,
        })
    }
}

/// One layer of a chain being trained: its parameters (read, then updated)
/// and its gradient arrays (written).
pub struct TrainLayer<'a, T> {
    pub w: ArrayViewMut2<'a, T>,
    pub b: Option<ArrayViewMut1<'a, T>>,
    pub gw: ArrayViewMut2<'a, T>,
    pub gb: Option<ArrayViewMut1<'a, T>>,
    pub act: Activation,
}

/// The buffers of [`dense_train_step`], kept between steps: once the batch
/// size and the layers stop changing, a step allocates nothing for them.
#[derive(Default)]
pub struct TrainScratch<T> {
    /// Every layer's output (after its activation).
    outputs: Vec<Array2<T>>,
    /// δ of the current layer and of the one below it.
    delta: Vec<T>,
    next: Vec<T>,
    /// A one-hot target built from class indices, or the BCE's costs.
    work: Vec<T>,
    /// The tile of [`product_into`].
    tile: Vec<T>,
}

impl<T: Float> TrainScratch<T> {
    /// The network's output of the last step, if any.
    pub fn output(&self) -> Option<ArrayView2<'_, T>> {
        self.outputs.last().map(|y| y.view())
    }

    fn fit(&mut self, n: usize, widths: &[usize]) {
        self.outputs.truncate(widths.len());
        for (i, &w) in widths.iter().enumerate() {
            if i == self.outputs.len() {
                self.outputs.push(Array2::zeros((n, w)));
            } else if self.outputs[i].dim() != (n, w) {
                self.outputs[i] = Array2::zeros((n, w));
            }
        }
        let most = n * widths.iter().copied().max().unwrap_or(0);
        for buf in [&mut self.delta, &mut self.next] {
            if buf.len() < most {
                buf.resize(most, T::zero());
            }
        }
    }
}

/// Checks `target` against the network's output `(n, k)` for `loss`.
fn check_step_target<T: Float>(
    op: &'static str,
    loss: StepLoss,
    target: &Target<'_, T>,
    n: usize,
    k: usize,
) -> Result<(), KernelError> {
    match target {
        Target::Index(t) => {
            if !matches!(loss, StepLoss::CeLogSoftmax | StepLoss::CeCriterion) {
                return Err(KernelError::invalid(
                    op,
                    "class indices are a target of the cross-entropy losses only",
                ));
            }
            if t.len() != n {
                return Err(KernelError::shape(
                    op,
                    "target",
                    fmt_shape(&[n]),
                    fmt_shape(t.shape()),
                ));
            }
            if let Some((i, &c)) = t
                .iter()
                .enumerate()
                .find(|(_, &c)| c < 0 || c as usize >= k)
            {
                return Err(KernelError::invalid(
                    op,
                    format!("target[{i}] = {c} is not a class index in [0, {k})"),
                ));
            }
        }
        Target::Prob(p) => {
            if p.dim() != (n, k) {
                return Err(KernelError::shape(
                    op,
                    "target",
                    fmt_shape(&[n, k]),
                    fmt_shape(p.shape()),
                ));
            }
        }
    }
    Ok(())
}

/// `max(v, floor)` that keeps NaN, as `np.maximum`.
#[inline(always)]
fn max_nan<T: Float>(v: T, floor: T) -> T {
    if v < floor {
        floor
    } else {
        v
    }
}

multiversion! {
    /// `p -= lr·g`, element by element.
    fn sgd_slice<T: Float>(p: &mut [T], g: &[T], lr: T) {
        p.iter_mut().zip(g).for_each(|(p, &g)| *p -= lr * g);
    }
}

/// `p -= lr·g` for arrays of one shape, any strides.
fn sgd_step<T: Float>(mut p: ArrayViewMutD<'_, T>, g: ArrayViewD<'_, T>, lr: T) {
    match (p.as_slice_mut(), g.as_slice()) {
        (Some(ps), Some(gs)) => sgd_slice(ps, gs, lr),
        _ => p.zip_mut_with(&g, |p, &g| *p -= lr * g),
    }
}

multiversion! {
    /// `sums = Σ rows` of the row-major `(n, sums.len())` matrix `rows`,
    /// added row after row from zero (the order of `delta.sum(axis=0)`).
    fn sum_rows_into<T: Float>(sums: &mut [T], rows: &[T]) {
        sums.fill(T::zero());
        for row in rows.chunks_exact(sums.len()) {
            sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        }
    }
}

multiversion! {
    /// BCE element by element on row-major `(n, k)` targets `t` and outputs
    /// `p`: `-(t ln p + (1 - t) ln(1 - p))` (logs clamped at -100) into
    /// `cost`, `(p - t) / max(p (1 - p), 1e-12)` into `delta`.
    fn bce_elements<T: Act>(t: &[T], p: &[T], cost: &mut [T], delta: &mut [T]) {
        let one = T::one();
        let floor = T::from_f64(1e-12).expect("a float");
        let outs = cost.iter_mut().zip(delta.iter_mut());
        for ((&t, &p), (c, d)) in t.iter().zip(p).zip(outs) {
            *c = -(t * p.clamped_ln() + (one - t) * (one - p).clamped_ln());
            *d = (p - t) / max_nan(p * (one - p), floor);
        }
    }
}

multiversion! {
    /// The sum of `v`, in 16 interleaved partial sums (so that it vectorizes).
    fn sum_slice<T: Float>(v: &[T]) -> T {
        const W: usize = 16;
        let mut acc = [T::zero(); W];
        let chunks = v.chunks_exact(W);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += x;
            }
        }
        for (a, &x) in acc.iter_mut().zip(tail) {
            *a += x;
        }
        let mut w = W;
        while w > 1 {
            w /= 2;
            let (low, high) = acc.split_at_mut(w);
            low.iter_mut().zip(&*high).for_each(|(a, &b)| *a += b);
        }
        acc[0]
    }
}

/// `f(target, yhat) = (cost, gradient)` element by element: the gradients
/// into `delta`, the sum of the per-sample costs (each summed in `T`) in f64.
fn elementwise<T: Float>(
    target: &Target<'_, T>,
    ys: &[T],
    k: usize,
    delta: &mut [T],
    f: impl Fn(T, T) -> (T, T),
) -> f64 {
    let Target::Prob(y) = target else {
        unreachable!("checked: class indices only for the cross-entropies")
    };
    let mut total = 0.0;
    for ((row_y, row_yhat), row_d) in y
        .rows()
        .into_iter()
        .zip(ys.chunks_exact(k))
        .zip(delta.chunks_exact_mut(k))
    {
        let mut cost = T::zero();
        for ((&t, &p), d) in row_y.iter().zip(row_yhat).zip(row_d) {
            let (c, g) = f(t, p);
            cost += c;
            *d = g;
        }
        total += cost.to_f64().unwrap_or(f64::NAN);
    }
    total
}

/// Per-sample costs of `yhat` (summed in f64) and `d loss / d yhat` in `delta`.
fn loss_and_delta<T: Act + Exp>(
    loss: StepLoss,
    yhat: ArrayView2<'_, T>,
    target: &Target<'_, T>,
    delta: &mut [T],
    work: &mut Vec<T>,
) -> Result<f64, KernelError> {
    let (n, k) = yhat.dim();
    if work.len() < n * k {
        work.resize(n * k, T::zero());
    }
    let ys = yhat
        .as_slice()
        .expect("scratch outputs are standard layout");
    let total = match loss {
        StepLoss::Mse => {
            let two = T::one() + T::one();
            elementwise(target, ys, k, delta, |t, p| {
                ((t - p) * (t - p), two * (p - t))
            })
        }
        StepLoss::Mae => elementwise(target, ys, k, delta, |t, p| {
            let d = p - t;
            let sign = if d > T::zero() {
                T::one()
            } else if d < T::zero() {
                -T::one()
            } else {
                d // 0, or NaN
            };
            ((t - p).abs(), sign)
        }),
        StepLoss::Bce => {
            let Target::Prob(y) = target else {
                unreachable!("checked: class indices only for the cross-entropies")
            };
            let y = y.as_standard_layout();
            let cost = &mut work[..n * k];
            bce_elements(y.as_slice().expect("standard layout"), ys, cost, delta);
            cost.chunks_exact(k)
                .map(|row| sum_slice(row).to_f64().unwrap_or(f64::NAN))
                .sum()
        }
        StepLoss::CeLogSoftmax => {
            let costs = softmax::cross_entropy(yhat, target.clone())?;
            let grad = softmax::cross_entropy_backward(yhat, target.clone())?;
            delta.copy_from_slice(grad.as_slice().expect("fresh array"));
            costs.iter().map(|c| c.to_f64().unwrap_or(f64::NAN)).sum()
        }
        StepLoss::CeCriterion => {
            let y = match target {
                Target::Prob(p) => p.view(),
                Target::Index(t) => {
                    let onehot = &mut work[..n * k];
                    onehot.fill(T::zero());
                    for (row, &c) in t.iter().enumerate() {
                        onehot[row * k + c as usize] = T::one();
                    }
                    ArrayView2::from_shape((n, k), &*onehot).expect("n·k elements")
                }
            };
            let logp = softmax::log_softmax(yhat)?;
            let minus_y = y.mapv(|v| -v);
            let grad = softmax::log_softmax_backward(logp.view(), minus_y.view())?;
            delta.copy_from_slice(grad.as_slice().expect("fresh array"));
            Zip::from(y.rows()).and(logp.rows()).fold(0.0, |acc, y, l| {
                let cost = -y.iter().zip(l).fold(T::zero(), |s, (&a, &b)| s + a * b);
                acc + cost.to_f64().unwrap_or(f64::NAN)
            })
        }
    };
    Ok(total)
}

/// One whole training step of a dense chain with plain SGD: forward, the
/// loss, its gradient, the backward pass and `p -= lr·∇p` for every parameter.
///
/// The results are those of the layer-by-layer path (the same kernels in
/// the same order, but for the `δ·Wᵀ` of [`product_into`]'s dot-product
/// chunks, a few ulp away): after the step every gradient array holds d (summed
/// loss) / d parameter at the parameters *before* the update (written, not
/// accumulated), and the parameters are updated. Returns the mean of the
/// per-sample costs. Every check runs before anything is written.
pub fn dense_train_step<T: Act + Exp>(
    x: ArrayView2<'_, T>,
    target: Target<'_, T>,
    loss: StepLoss,
    layers: &mut [TrainLayer<'_, T>],
    lr: T,
    scratch: &mut TrainScratch<T>,
) -> Result<f64, KernelError> {
    const OP: &str = "dense_train_step";
    {
        let views: Vec<Dense<'_, T>> = layers
            .iter()
            .map(|l| Dense {
                w: l.w.view(),
                b: l.b.as_ref().map(|b| b.view()),
                act: l.act,
            })
            .collect();
        check_chain(OP, x.ncols(), &views)?;
    }
    for l in layers.iter() {
        check_grads(
            OP,
            l.w.shape(),
            l.gw.shape(),
            l.b.as_ref().map(|b| b.len()),
            l.gb.as_ref().map(|b| b.len()),
        )?;
    }
    let n = x.nrows();
    let widths: Vec<usize> = layers.iter().map(|l| l.w.ncols()).collect();
    let k = *widths.last().expect("checked: at least one layer");
    check_step_target(OP, loss, &target, n, k)?;
    if n == 0 {
        return Err(KernelError::invalid(OP, "the batch is empty"));
    }
    scratch.fit(n, &widths);
    {
        let TrainScratch {
            outputs,
            delta,
            next,
            work,
            tile,
        } = scratch;
        // Forward, as `dense_forward`.
        for (i, layer) in layers.iter().enumerate() {
            let (done, rest) = outputs.split_at_mut(i);
            let input = done.last().map_or(x, |y| y.view());
            let y = &mut rest[0];
            if let Some(b) = &layer.b {
                for mut row in y.rows_mut() {
                    row.assign(b);
                }
            }
            product_into(y.view_mut(), input, layer.w.view(), layer.b.is_some(), tile)?;
            layer.act.apply(y.as_slice_mut().expect("scratch array"));
        }
        let last = layers.len() - 1;
        let total = loss_and_delta(
            loss,
            outputs[last].view(),
            &target,
            &mut delta[..n * k],
            work,
        )?;
        // Backward, as `dense_backward` with zeroed gradients, each layer
        // updated once its gradient and the δ below it are known.
        layers[last].act.backward(
            outputs[last].as_slice().expect("scratch array"),
            &mut delta[..n * k],
        );
        let mut width = k;
        for i in (0..layers.len()).rev() {
            let input = if i == 0 { x } else { outputs[i - 1].view() };
            let cur = ArrayView2::from_shape((n, width), &delta[..n * width]).expect("n·width");
            let layer = &mut layers[i];
            product_into(layer.gw.view_mut(), input.t(), cur, false, tile)?;
            if let Some(gb) = layer.gb.as_mut() {
                match gb.as_slice_mut() {
                    Some(gb) => sum_rows_into(gb, &delta[..n * width]),
                    None => {
                        gb.fill(T::zero());
                        for row in cur.rows() {
                            gb.zip_mut_with(&row, |g, &d| *g += d);
                        }
                    }
                }
            }
            if i > 0 {
                let below = layer.w.nrows();
                let mut nd =
                    ArrayViewMut2::from_shape((n, below), &mut next[..n * below]).expect("n·in");
                product_into(nd.view_mut(), cur, layer.w.t(), false, tile)?;
                layers[i - 1].act.backward(
                    outputs[i - 1].as_slice().expect("scratch array"),
                    &mut next[..n * below],
                );
                width = below;
            }
            let layer = &mut layers[i];
            sgd_step(
                layer.w.view_mut().into_dyn(),
                layer.gw.view().into_dyn(),
                lr,
            );
            if let (Some(b), Some(gb)) = (layer.b.as_mut(), layer.gb.as_ref()) {
                sgd_step(b.view_mut().into_dyn(), gb.view().into_dyn(), lr);
            }
            if i > 0 {
                std::mem::swap(delta, next);
            }
        }
        Ok(total / n as f64)
    }
}

/// One plain SGD step over many parameters: `p -= lr · g` for each pair.
pub fn sgd_update<T: Float>(
    params: &mut [ArrayViewMutD<'_, T>],
    grads: &[ArrayViewD<'_, T>],
    lr: T,
) -> Result<(), KernelError> {
    const OP: &str = "sgd_update";
    if params.len() != grads.len() {
        return Err(KernelError::invalid(
            OP,
            format!(
                "got {} parameters and {} gradients",
                params.len(),
                grads.len()
            ),
        ));
    }
    for (p, g) in params.iter().zip(grads) {
        if p.shape() != g.shape() {
            return Err(KernelError::shape(
                OP,
                "gradient",
                fmt_shape(p.shape()),
                fmt_shape(g.shape()),
            ));
        }
    }
    for (p, g) in params.iter_mut().zip(grads) {
        sgd_step(p.view_mut(), g.view(), lr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Array1, IxDyn};

    fn seq(r: usize, c: usize, seed: f64) -> Array2<f64> {
        Array::from_shape_fn((r, c), |(i, j)| {
            ((i * 7 + j * 3) as f64 * 0.37 + seed).sin() * 0.5
        })
    }

    /// Outputs, weight gradients, bias gradients and d input.
    type Reference = (
        Vec<Array2<f64>>,
        Vec<Array2<f64>>,
        Vec<Array1<f64>>,
        Array2<f64>,
    );

    /// The chain one layer at a time, plainly.
    fn reference(
        x: &Array2<f64>,
        ws: &[Array2<f64>],
        bs: &[Array1<f64>],
        acts: &[Activation],
        delta: &Array2<f64>,
    ) -> Reference {
        let mut ys = vec![];
        let mut pre = vec![];
        let mut h = x.clone();
        for ((w, b), act) in ws.iter().zip(bs).zip(acts) {
            let z = h.dot(w) + b;
            pre.push(z.clone());
            h = z.mapv(|v| match act {
                Activation::Identity => v,
                Activation::Tanh => v.tanh(),
                Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                Activation::Relu => v.max(0.0),
            });
            ys.push(h.clone());
        }
        let mut d = delta.clone();
        let (mut gws, mut gbs) = (vec![], vec![]);
        for i in (0..ws.len()).rev() {
            let y = &ys[i];
            d = match acts[i] {
                Activation::Identity => d,
                Activation::Tanh => &d * &y.mapv(|y| 1.0 - y * y),
                Activation::Sigmoid => &d * &y.mapv(|y| y * (1.0 - y)),
                Activation::Relu => &d * &pre[i].mapv(|z| if z > 0.0 { 1.0 } else { 0.0 }),
            };
            let input = if i == 0 { x } else { &ys[i - 1] };
            gws.push(input.t().dot(&d));
            gbs.push(d.sum_axis(ndarray::Axis(0)));
            d = d.dot(&ws[i].t());
        }
        gws.reverse();
        gbs.reverse();
        (ys, gws, gbs, d)
    }

    fn close<D: ndarray::Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-12)
    }

    #[test]
    fn chain_matches_layer_by_layer() {
        let acts = [
            Activation::Tanh,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Identity,
        ];
        let sizes = [5, 7, 6, 4, 3];
        let ws: Vec<_> = (0..4)
            .map(|i| seq(sizes[i], sizes[i + 1], i as f64))
            .collect();
        let bs: Vec<_> = (0..4)
            .map(|i| Array1::from_shape_fn(sizes[i + 1], |j| (j as f64 + i as f64).cos() * 0.3))
            .collect();
        let x = seq(9, 5, 0.7);
        let delta = seq(9, 3, 1.3);
        let layers: Vec<_> = (0..4)
            .map(|i| Dense {
                w: ws[i].view(),
                b: Some(bs[i].view()),
                act: acts[i],
            })
            .collect();
        let ys = dense_forward(x.view(), &layers).unwrap();
        let (ref_ys, ref_gws, ref_gbs, ref_d) = reference(&x, &ws, &bs, &acts, &delta);
        for (a, b) in ys.iter().zip(&ref_ys) {
            assert!(close(a, b));
        }
        // Gradients accumulate on what is there.
        let mut gws: Vec<_> = ws.iter().map(|w| Array2::from_elem(w.dim(), 1.0)).collect();
        let mut gbs: Vec<_> = bs.iter().map(|b| Array1::from_elem(b.len(), 1.0)).collect();
        let mut grads: Vec<_> = gws
            .iter_mut()
            .zip(gbs.iter_mut())
            .map(|(w, b)| DenseGrad {
                w: w.view_mut(),
                b: Some(b.view_mut()),
            })
            .collect();
        let outs: Vec<_> = ys.iter().map(|y| y.view()).collect();
        let d = dense_backward(x.view(), &outs, &layers, &mut grads, delta.view(), true)
            .unwrap()
            .unwrap();
        assert!(close(&d, &ref_d));
        drop(grads);
        for i in 0..4 {
            assert!(close(&gws[i], &(&ref_gws[i] + 1.0)));
            assert!(close(&gbs[i], &(&ref_gbs[i] + 1.0)));
        }
        let mut grads: Vec<_> = gws
            .iter_mut()
            .zip(gbs.iter_mut())
            .map(|(w, b)| DenseGrad {
                w: w.view_mut(),
                b: Some(b.view_mut()),
            })
            .collect();
        assert!(
            dense_backward(x.view(), &outs, &layers, &mut grads, delta.view(), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn shape_errors() {
        let w1 = seq(4, 3, 0.0);
        let w2 = seq(5, 2, 0.0);
        let layers = [
            Dense {
                w: w1.view(),
                b: None,
                act: Activation::Tanh,
            },
            Dense {
                w: w2.view(),
                b: None,
                act: Activation::Identity,
            },
        ];
        let err = dense_forward(seq(2, 4, 0.0).view(), &layers).unwrap_err();
        assert!(
            err.to_string().contains("weight must have shape (3, out)"),
            "{err}"
        );
        assert!(dense_forward::<f64>(seq(2, 4, 0.0).view(), &[]).is_err());
    }

    #[test]
    fn vectorized_helpers_match_plain_loops() {
        for len in [0, 1, 15, 16, 17, 100, 256] {
            let v: Vec<f64> = (0..len).map(|i| (i as f64 * 0.7).sin()).collect();
            let want: f64 = v.iter().sum();
            assert!((sum_slice(&v) - want).abs() <= 1e-12, "{len}");
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            assert!((sum_slice(&v32) as f64 - want).abs() <= 1e-5, "{len}");
        }
        // Bias sums: rows added in order, the previous content overwritten.
        let rows: Vec<f32> = (0..3 * 37).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut sums = vec![f32::NAN; 37];
        sum_rows_into(&mut sums, &rows);
        for (j, &s) in sums.iter().enumerate() {
            assert_eq!(s, 0.0 + rows[j] + rows[37 + j] + rows[74 + j]);
        }
        let mut p = vec![1.0_f32; 37];
        sgd_slice(&mut p, &rows[..37], 0.5);
        for (j, &q) in p.iter().enumerate() {
            assert_eq!(q, 1.0 - 0.5 * rows[j]);
        }
        // BCE: saturated and NaN outputs as the scalar formula.
        let t = [1.0_f32, 0.0, 0.3, 1.0, 0.5, 0.25, 0.7, 0.0, 1.0];
        let yhat = [0.0_f32, 1.0, 0.3, 1.0, f32::NAN, 1e-30, 0.999_999, 0.0, 0.5];
        let (mut cost, mut delta) = ([0.0_f32; 9], [0.0_f32; 9]);
        bce_elements(&t, &yhat, &mut cost, &mut delta);
        for i in 0..9 {
            let (t, p) = (t[i], yhat[i]);
            // max(ln v, -100), NaN kept (np.maximum).
            let ln = |v: f32| max_nan((v as f64).ln(), -100.0) as f32;
            let c = -(t * ln(p) + (1.0 - t) * ln(1.0 - p));
            let d = (p - t) / max_nan(p * (1.0 - p), 1e-12);
            assert!(
                (cost[i] - c).abs() <= 1e-5 * c.abs().max(1.0) || (c.is_nan() && cost[i].is_nan()),
                "{i}: {} vs {c}",
                cost[i]
            );
            assert!(delta[i] == d || (d.is_nan() && delta[i].is_nan()), "{i}");
        }
    }

    #[test]
    fn sgd_update_steps_every_pair() {
        let mut p1 = Array::from_elem(IxDyn(&[2, 3]), 1.0_f32);
        let mut p2 = Array::from_elem(IxDyn(&[3]), 2.0_f32);
        let g1 = Array::from_elem(IxDyn(&[2, 3]), 10.0_f32);
        let g2 = Array::from_elem(IxDyn(&[3]), -10.0_f32);
        let mut ps = [p1.view_mut(), p2.view_mut()];
        sgd_update(&mut ps, &[g1.view(), g2.view()], 0.5).unwrap();
        assert!(p1.iter().all(|&v| v == -4.0));
        assert!(p2.iter().all(|&v| v == 7.0));
        let mut ps = [p1.view_mut()];
        assert!(sgd_update(&mut ps, &[g2.view()], 0.5).is_err());
    }
}
