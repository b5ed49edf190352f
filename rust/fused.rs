//! Fused dense training paths: a chain of dense layers (each a linear map
//! followed by an activation) forward and backward in one call, one whole
//! SGD training step, and one SGD update over many parameters.
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
//! - SGD: `p -= lr·∇p`, each layer updated as soon as the `δ` below it is known.

use ndarray::{
    Array2, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD,
};

use crate::activation::Activation;
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::loss::Target;
use crate::loss::{self, try_fit, LossKind};
use crate::matmul::{self, linear_backward_into, linear_into, LinearGrads};
use crate::simd::multiversion;
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

/// Checks that the layers (`(w shape, bias length)`) chain from `in_features`.
fn check_chain(
    op: &'static str,
    in_features: usize,
    layers: impl ExactSizeIterator<Item = (usize, usize, Option<usize>)>,
) -> Result<(), KernelError> {
    if layers.len() == 0 {
        return Err(KernelError::invalid(op, "the chain has no layer"));
    }
    let mut features = in_features;
    for (rows, cols, b) in layers {
        if rows != features {
            return Err(KernelError::shape(
                op,
                "weight",
                format!("({features}, out) to chain with the previous layer"),
                fmt_shape(&[rows, cols]),
            ));
        }
        if let Some(len) = b.filter(|&len| len != cols) {
            return Err(KernelError::shape(
                op,
                "bias",
                fmt_shape(&[cols]),
                fmt_shape(&[len]),
            ));
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

/// The forward pass of one layer into `y`: `act(input·w + b)`.
fn layer_forward<T: Exp>(
    y: &mut Array2<T>,
    input: ArrayView2<'_, T>,
    layer: &Dense<'_, T>,
    tile: &mut Vec<T>,
) -> Result<(), KernelError> {
    linear_into(y.view_mut(), input, layer.w, layer.b, tile)?;
    layer
        .act
        .forward(y.as_slice_mut().expect("standard layout"));
    Ok(())
}

/// The chain's forward pass on `x (N, in)`: the output of every layer.
pub fn dense_forward<T: Exp>(
    x: ArrayView2<'_, T>,
    layers: &[Dense<'_, T>],
) -> Result<Vec<Array2<T>>, KernelError> {
    const OP: &str = "dense_forward";
    check_chain(OP, x.ncols(), layers.iter().map(shape_of))?;
    let mut tile = Vec::new();
    let mut outputs: Vec<Array2<T>> = Vec::with_capacity(layers.len());
    for layer in layers {
        let mut y = matmul::zeros(OP, "an output", x.nrows(), layer.w.ncols())?;
        layer_forward(
            &mut y,
            outputs.last().map_or(x, |y| y.view()),
            layer,
            &mut tile,
        )?;
        outputs.push(y);
    }
    Ok(outputs)
}

fn shape_of<T>(l: &Dense<'_, T>) -> (usize, usize, Option<usize>) {
    (l.w.nrows(), l.w.ncols(), l.b.map(|b| b.len()))
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
    check_chain(OP, x.ncols(), layers.iter().map(shape_of))?;
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
        let expected = [n, layer.w.ncols()];
        if y.shape() != expected {
            return Err(KernelError::shape(
                OP,
                "output",
                fmt_shape(&expected),
                fmt_shape(y.shape()),
            ));
        }
        let (b, gb) = (layer.b.map(|b| b.len()), g.b.as_ref().map(|b| b.len()));
        check_grads(OP, layer.w.shape(), g.w.shape(), b, gb)?;
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
    let mut tile = Vec::new();
    let mut cur = matmul::zeros(OP, "delta", n, delta.ncols())?;
    cur.assign(&delta);
    for i in (0..layers.len()).rev() {
        let y = outputs[i].as_standard_layout();
        layers[i].act.backward(
            y.as_slice().expect("standard layout"),
            cur.as_slice_mut().expect("fresh"),
        );
        let input = if i == 0 { x } else { outputs[i - 1] };
        let wants_dx = i > 0 || input_delta;
        let mut next = matmul::zeros(
            OP,
            "delta",
            if wants_dx { n } else { 0 },
            layers[i].w.nrows(),
        )?;
        let grad = &mut grads[i];
        let mut lg = LinearGrads {
            w: grad.w.view_mut(),
            b: grad.b.as_mut().map(|b| b.view_mut()),
            accumulate: true,
        };
        let dx = wants_dx.then(|| next.view_mut());
        linear_backward_into(input, layers[i].w, cur.view(), &mut lg, dx, &mut tile)?;
        if !wants_dx {
            return Ok(None);
        }
        cur = next;
    }
    Ok(Some(cur))
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
        self.outputs.truncate(widths.len());
        for (i, &w) in widths.iter().enumerate() {
            if i == self.outputs.len() {
                self.outputs.push(matmul::zeros(op, "an output", n, w)?);
            } else if self.outputs[i].dim() != (n, w) {
                self.outputs[i] = matmul::zeros(op, "an output", n, w)?;
            }
        }
        let most = n.saturating_mul(widths.iter().copied().max().unwrap_or(0));
        try_fit(&mut self.delta, most)?;
        try_fit(&mut self.next, most)
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

/// One whole training step of a dense chain with plain SGD: forward, the
/// loss, its gradient, the backward pass and `p -= lr·∇p` for every parameter
/// (with `lr` None, the gradients only: an optimizer's rule updates after).
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
    let shapes = layers
        .iter()
        .map(|l| (l.w.nrows(), l.w.ncols(), l.b.as_ref().map(|b| b.len())));
    check_chain(OP, x.ncols(), shapes)?;
    for l in layers.iter() {
        let (b, gb) = (
            l.b.as_ref().map(|b| b.len()),
            l.gb.as_ref().map(|b| b.len()),
        );
        check_grads(OP, l.w.shape(), l.gw.shape(), b, gb)?;
    }
    let n = x.nrows();
    let widths: Vec<usize> = layers.iter().map(|l| l.w.ncols()).collect();
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
    for (i, l) in layers.iter().enumerate() {
        let (done, rest) = outputs.split_at_mut(i);
        let layer = Dense {
            w: l.w.view(),
            b: l.b.as_ref().map(|b| b.view()),
            act: l.act,
        };
        layer_forward(
            &mut rest[0],
            done.last().map_or(x, |y| y.view()),
            &layer,
            tile,
        )?;
    }
    let last = layers.len() - 1;
    let total = loss::cost_and_delta(
        loss,
        outputs[last].view(),
        &target,
        &mut delta[..n * k],
        work,
    )?;
    let mut width = k;
    for i in (0..layers.len()).rev() {
        let d = &mut delta[..n * width];
        layers[i]
            .act
            .backward(outputs[i].as_slice().expect("scratch array"), d);
        let input = if i == 0 { x } else { outputs[i - 1].view() };
        let cur = ArrayView2::from_shape((n, width), &*d).expect("n·width");
        let below = layers[i].w.nrows();
        let dx = (i > 0)
            .then(|| ArrayViewMut2::from_shape((n, below), &mut next[..n * below]).expect("n·in"));
        let TrainLayer { w, b, gw, gb, .. } = &mut layers[i];
        let mut grads = LinearGrads {
            w: gw.view_mut(),
            b: gb.as_mut().map(|g| g.view_mut()),
            accumulate: false,
        };
        linear_backward_into(input, w.view(), cur, &mut grads, dx, tile)?;
        if let Some(lr) = lr {
            sgd_step(w.view_mut().into_dyn(), gw.view().into_dyn(), lr);
            if let (Some(b), Some(gb)) = (b.as_mut(), gb.as_ref()) {
                sgd_step(b.view_mut().into_dyn(), gb.view().into_dyn(), lr);
            }
        }
        if i > 0 {
            std::mem::swap(delta, next);
            width = below;
        }
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    fn seq(r: usize, c: usize, seed: f64) -> Array2<f64> {
        Array::from_shape_fn((r, c), |(i, j)| {
            ((i * 7 + j * 3) as f64 * 0.37 + seed).sin() * 0.5
        })
    }

    #[test]
    fn shape_errors() {
        let w1 = seq(4, 3, 0.0);
        let w2 = seq(5, 2, 0.0);
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

    #[test]
    fn sgd_slice_matches_plain_loop() {
        let rows: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut p = vec![1.0_f32; 37];
        sgd_slice(&mut p, &rows, 0.5);
        for (j, &q) in p.iter().enumerate() {
            assert_eq!(q, 1.0 - 0.5 * rows[j]);
        }
    }
}
