//! Fused dense training paths: a chain of dense layers (each a linear map
//! followed by an activation) forward and backward in one call, and one
//! whole SGD training step.
//!
//! On small models a training step is a few dozen tiny operations; run one by
//! one from Python, each pays for a call, its checks and an allocation. Here
//! the chain runs in Rust as a composition of the ops' own functions, with
//! buffers kept between steps:
//!
//! - forward: `y_i = f_i(y_{i-1}·W_i + b_i)` ([`matmul::linear_into`], then
//!   [`Activation::forward`]); every `y_i` is kept for the backward pass;
//! - loss: [`loss::cost_and_delta`] gives the cost and `δ = dL/dy_last`;
//! - backward: `δ_i = δ ⊙ f_i'(y_i)` ([`Activation::backward`]), then
//!   [`matmul::linear_backward_into`]: `∇W_i (+)= y_{i-1}ᵀ·δ_i`,
//!   `∇b_i (+)= Σₙ δ_i`, `δ = δ_i·W_iᵀ` (skipped for the first layer unless
//!   d loss / d input is wanted);
//! - SGD: `p -= lr·∇p` ([`optim::sgd`]) once the backward pass is done.

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use crate::activation::Activation;
use crate::conv::check_shape;
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::loss::{self, try_fit, LossKind, Target};
use crate::matmul::{self, linear_backward_into, linear_into, LinearGrads};
use crate::optim;
use crate::softmax::Exp;

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

/// Checks that the layers chain from `in_features`, each bias of its layer's width.
fn check_chain<T>(
    op: &'static str,
    in_features: usize,
    layers: &[Dense<'_, T>],
) -> Result<(), KernelError> {
    if layers.is_empty() {
        return Err(KernelError::invalid(op, "the chain has no layer"));
    }
    let mut features = in_features;
    for l in layers {
        let ((rows, cols), b) = (l.w.dim(), l.b.map(|b| b.len()));
        if rows != features {
            return Err(KernelError::shape(
                op,
                "weight",
                format!("({features}, out) to chain with the previous layer"),
                fmt_shape(&[rows, cols]),
            ));
        }
        b.map_or(Ok(()), |len| check_shape(op, "bias", &[cols], &[len]))?;
        features = cols;
    }
    Ok(())
}

/// Checks that a layer's gradients have its parameters' shapes, and that a
/// bias gradient is given exactly when the layer has a bias.
fn check_grads<T>(
    op: &'static str,
    l: &Dense<'_, T>,
    g: &DenseGrad<'_, T>,
) -> Result<(), KernelError> {
    check_shape(op, "weight gradient", l.w.shape(), g.w.shape())?;
    match (g.b.as_ref().map(|b| b.len()), l.b.map(|b| b.len())) {
        (Some(gb), Some(b)) => check_shape(op, "bias gradient", &[b], &[gb]),
        (None, Some(_)) | (Some(_), None) => Err(KernelError::invalid(
            op,
            "give a bias gradient exactly for the layers that have a bias",
        )),
        (None, None) => Ok(()),
    }
}

/// The forward pass of every layer into `outputs` (of the layers' shapes):
/// `outputs[i] = act_i(outputs[i - 1]·w_i + b_i)`, from `x` for the first.
fn forward_into<T: Exp>(
    x: ArrayView2<'_, T>,
    layers: &[Dense<'_, T>],
    outputs: &mut [Array2<T>],
    tile: &mut Vec<T>,
) -> Result<(), KernelError> {
    for (i, layer) in layers.iter().enumerate() {
        let (done, rest) = outputs.split_at_mut(i);
        let input = done.last().map_or(x, |y| y.view());
        linear_into(rest[0].view_mut(), input, layer.w, layer.b, tile)?;
        (layer.act).forward(rest[0].as_slice_mut().expect("standard layout"));
    }
    Ok(())
}

/// The chain's forward pass on `x (N, in)`: the output of every layer.
pub fn dense_forward<T: Exp>(
    x: ArrayView2<'_, T>,
    layers: &[Dense<'_, T>],
) -> Result<Vec<Array2<T>>, KernelError> {
    const OP: &str = "dense_forward";
    check_chain(OP, x.ncols(), layers)?;
    let mut outputs = (layers.iter())
        .map(|l| matmul::zeros(OP, "an output", x.nrows(), l.w.ncols()))
        .collect::<Result<Vec<_>, _>>()?;
    forward_into(x, layers, &mut outputs, &mut Vec::new())?;
    Ok(outputs)
}

/// The buffers of the backward pass: `δ` of the current layer (from
/// `delta[..N·out]` of the last one on) and of the one below it.
struct Deltas<'a, T> {
    delta: &'a mut Vec<T>,
    next: &'a mut Vec<T>,
    tile: &'a mut Vec<T>,
}

/// The backward pass from `δ` of the last output in `bufs.delta`: for each
/// layer from the last, `δ_i = δ ⊙ f_i'(y_i)`, then [`linear_backward_into`]
/// into `grads[i]` (added to them if `accumulate`) and `δ` of the layer
/// below; below the first layer only if `input_delta` (then left in
/// `bufs.delta[..N·in]`).
#[allow(clippy::too_many_arguments)]
fn backward_into<T: Exp>(
    x: ArrayView2<'_, T>,
    outputs: &[ArrayView2<'_, T>],
    layers: &[Dense<'_, T>],
    grads: &mut [DenseGrad<'_, T>],
    accumulate: bool,
    input_delta: bool,
    bufs: Deltas<'_, T>,
) -> Result<(), KernelError> {
    let Deltas { delta, next, tile } = bufs;
    let n = x.nrows();
    let mut width = outputs[outputs.len() - 1].ncols();
    for i in (0..layers.len()).rev() {
        let y = outputs[i].as_standard_layout();
        let d = &mut delta[..n * width];
        (layers[i].act).backward(y.as_slice().expect("standard layout"), d);
        let below = layers[i].w.nrows();
        let wants_dx = i > 0 || input_delta;
        let dx = wants_dx
            .then(|| ArrayViewMut2::from_shape((n, below), &mut next[..n * below]).expect("n·in"));
        let g = &mut grads[i];
        let mut lg = LinearGrads {
            w: g.w.view_mut(),
            b: g.b.as_mut().map(|b| b.view_mut()),
            accumulate,
        };
        let input = if i == 0 { x } else { outputs[i - 1] };
        let cur = ArrayView2::from_shape((n, width), &*d).expect("n·width");
        linear_backward_into(input, layers[i].w, cur, &mut lg, dx, tile)?;
        if wants_dx {
            std::mem::swap(delta, next);
            width = below;
        }
    }
    Ok(())
}

/// The chain's backward pass.
///
/// `outputs` are what [`dense_forward`] returned for this `x`, `delta` is
/// d loss / d (last output). Adds d loss / d parameters into `grads` and
/// returns d loss / d x when `input_delta` is true.
pub fn dense_backward<T: Exp>(
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
        let (l, o, g) = (layers.len(), outputs.len(), grads.len());
        let why = format!("expected one output and one gradient per layer ({l}), got {o} and {g}");
        return Err(KernelError::invalid(OP, why));
    }
    for ((layer, y), g) in layers.iter().zip(outputs).zip(grads.iter()) {
        check_shape(OP, "output", &[n, layer.w.ncols()], y.shape())?;
        check_grads(OP, layer, g)?;
    }
    let last = outputs[layers.len() - 1];
    check_shape(OP, "delta", last.shape(), delta.shape())?;
    // δ alternates between `d` and `next`: the last layer's, then each layer's input's.
    let widths = std::iter::once(delta.ncols()).chain(layers.iter().rev().map(|l| l.w.nrows()));
    let widest = |from| n * widths.clone().skip(from).step_by(2).max().unwrap_or(0);
    let (mut d, mut next) = (Vec::new(), Vec::new());
    try_fit(&mut d, widest(0)).and(try_fit(&mut next, widest(1)))?;
    d[..delta.len()]
        .iter_mut()
        .zip(delta.iter())
        .for_each(|(d, &v)| *d = v);
    let bufs = Deltas {
        delta: &mut d,
        next: &mut next,
        tile: &mut Vec::new(),
    };
    backward_into(x, outputs, layers, grads, true, input_delta, bufs)?;
    d.truncate(n * x.ncols());
    Ok(input_delta.then(|| Array2::from_shape_vec((n, x.ncols()), d).expect("n·in")))
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
    /// The losses' scratch.
    work: Vec<T>,
    /// The tile of the small products.
    tile: Vec<T>,
}

impl<T: Float> TrainScratch<T> {
    /// The network's output of the last step, if any.
    pub fn output(&self) -> Option<ArrayView2<'_, T>> {
        self.outputs.last().map(|y| y.view())
    }

    fn fit(&mut self, op: &'static str, n: usize, widths: &[usize]) -> Result<(), KernelError> {
        self.outputs
            .resize_with(widths.len(), || Array2::zeros((0, 0)));
        for (y, &w) in self.outputs.iter_mut().zip(widths) {
            if y.dim() != (n, w) {
                *y = matmul::zeros(op, "an output", n, w)?;
            }
        }
        let most = n.saturating_mul(widths.iter().copied().max().unwrap_or(0));
        try_fit(&mut self.delta, most)?;
        try_fit(&mut self.next, most)
    }
}

/// One whole training step of a dense chain with plain SGD: forward, the
/// loss, its gradient, the backward pass and `p -= lr·∇p` for every parameter
/// (the optimizers' SGD rule, [`optim::sgd`]; with `lr` None, the gradients
/// only: an optimizer's rule updates after).
///
/// The results are those of the layers run one by one (the same functions):
/// after the step every gradient array holds d (summed loss) / d parameter
/// at the parameters *before* the update (written, not accumulated), and the
/// parameters are updated. Returns the mean of the per-sample costs. Every
/// check runs before anything is written.
pub fn dense_train_step<T: Exp>(
    x: ArrayView2<'_, T>,
    target: Target<'_, T>,
    loss: LossKind,
    layers: &mut [TrainLayer<'_, T>],
    lr: Option<T>,
    scratch: &mut TrainScratch<T>,
) -> Result<f64, KernelError> {
    const OP: &str = "dense_train_step";
    let (params, mut grads): (Vec<_>, Vec<_>) = (layers.iter_mut())
        .map(|TrainLayer { w, b, gw, gb, act }| {
            let layer = Dense {
                w: w.view(),
                b: b.as_ref().map(|b| b.view()),
                act: *act,
            };
            let g = DenseGrad {
                w: gw.view_mut(),
                b: gb.as_mut().map(|g| g.view_mut()),
            };
            (layer, g)
        })
        .unzip();
    check_chain(OP, x.ncols(), &params)?;
    for (l, g) in params.iter().zip(&grads) {
        check_grads(OP, l, g)?;
    }
    let n = x.nrows();
    let widths: Vec<usize> = params.iter().map(|l| l.w.ncols()).collect();
    let k = *widths.last().expect("checked: at least one layer");
    loss::check_target(OP, loss, &target, n, k)?;
    if n == 0 {
        return Err(KernelError::invalid(OP, "the batch is empty"));
    }
    scratch.fit(OP, n, &widths)?;
    let TrainScratch {
        outputs,
        delta,
        next,
        work,
        tile,
    } = scratch;
    forward_into(x, &params, outputs, tile)?;
    let ys: Vec<ArrayView2<'_, T>> = outputs.iter().map(|y| y.view()).collect();
    let total = loss::cost_and_delta(loss, ys[ys.len() - 1], &target, &mut delta[..n * k], work)?;
    let bufs = Deltas { delta, next, tile };
    backward_into(x, &ys, &params, &mut grads, false, false, bufs)?;
    drop((params, grads));
    if let Some(lr) = lr.map(|lr| lr.to_f64().expect("a float converts")) {
        for l in layers.iter_mut() {
            optim::sgd(l.w.view_mut(), l.gw.view(), lr);
            if let (Some(b), Some(gb)) = (l.b.as_mut(), l.gb.as_ref()) {
                optim::sgd(b.view_mut(), gb.view(), lr);
            }
        }
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::seq;

    #[test]
    fn shape_errors() {
        let w1 = seq::<f64>(4, 3, 0.0);
        let w2 = seq::<f64>(5, 2, 0.0);
        let layers = [
            Dense {
                w: w1.view(),
                b: None,
                act: Activation::TanH,
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
}
