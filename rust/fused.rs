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

use ndarray::{
    Array2, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD, Zip,
};

use crate::activation::{Act, Activation};
use crate::error::{fmt_shape, KernelError};
use crate::float::Float;
use crate::matmul::{gemm_into, GEMM_PAR_MIN_WORK};
use crate::threads;

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

/// Runs `f` on the library's pool if some product of the chain is worth
/// splitting, else right here (no thread hand-off for small models).
fn on_pool<R: Send>(
    n: usize,
    layers_mnk: impl Iterator<Item = usize>,
    f: impl FnOnce() -> R + Send,
) -> R {
    let big = layers_mnk
        .map(|w| n.saturating_mul(w))
        .any(|work| work >= GEMM_PAR_MIN_WORK);
    if cfg!(feature = "multi-threads") && big && threads::num_threads() > 1 {
        threads::install(f)
    } else {
        f()
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
    on_pool(n, layers.iter().map(|l| l.w.len()), || {
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
            let beta = if layer.b.is_some() {
                T::one()
            } else {
                T::zero()
            };
            gemm_into(y.view_mut(), input, layer.w, T::one(), beta)?;
            layer.act.apply(y.as_slice_mut().expect("fresh array"));
            outputs.push(y);
        }
        Ok(outputs)
    })
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
        if g.w.dim() != layer.w.dim() {
            return Err(KernelError::shape(
                OP,
                "weight gradient",
                fmt_shape(layer.w.shape()),
                fmt_shape(g.w.shape()),
            ));
        }
        match (&g.b, &layer.b) {
            (Some(gb), Some(b)) if gb.len() != b.len() => {
                return Err(KernelError::shape(
                    OP,
                    "bias gradient",
                    fmt_shape(b.shape()),
                    fmt_shape(gb.shape()),
                ));
            }
            (None, Some(_)) | (Some(_), None) => {
                return Err(KernelError::invalid(
                    OP,
                    "give a bias gradient exactly for the layers that have a bias",
                ));
            }
            _ => {}
        }
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
    on_pool(n, layers.iter().map(|l| l.w.len()), move || {
        // δ of the last layer, through its activation.
        let act = layers[last].act;
        let mut cur = Zip::from(&delta)
            .and(&outputs[last])
            .map_collect(|&d, &y| d * act.derivative(y));
        for i in (0..layers.len()).rev() {
            let input = if i == 0 { x } else { outputs[i - 1] };
            let grad = &mut grads[i];
            gemm_into(grad.w.view_mut(), input.t(), cur.view(), T::one(), T::one())?;
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
            gemm_into(next.view_mut(), cur.view(), w.t(), T::one(), T::zero())?;
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
    })
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
        match (p.as_slice_mut(), g.as_slice()) {
            (Some(ps), Some(gs)) => ps.iter_mut().zip(gs).for_each(|(p, &g)| *p -= lr * g),
            _ => p.zip_mut_with(g, |p, &g| *p -= lr * g),
        }
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
