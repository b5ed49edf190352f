//! The optimizers' update rules, every parameter of a step in one call.
//!
//! Each rule runs element by element in torch.optim's order of operations (its
//! single-tensor path; scalars such as `lr / (1 - b1ᵗ)` in f64, then cast; no
//! fused multiply-add), so that a step gives torch's numbers up to rounding.

use ndarray::{ArrayView, ArrayViewMut, Dimension};
use std::sync::Mutex;

use crate::error::KernelError;
use crate::float::Float;
use crate::simd::multiversion;
use crate::threads::{par_parts, parts};

/// The rules (`_core.Rule`). Each first adds the L2 decay, `g += wd p`
/// (AdamW instead shrinks the parameter, `p *= 1 - lr wd`).
#[cfg_attr(feature = "python", pyo3::pyclass(eq, eq_int, from_py_object))]
#[cfg_attr(feature = "python", pyo3(module = "diy_nn._core"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rule {
    #[default]
    /// SGD, state `[v]` if `mu > 0`: `v = mu v + g`, `p -= lr v` (no momentum: `p -= lr g`).
    Sgd,
    /// SGD with Nesterov momentum, state `[v]`: `v = mu v + g`, `p -= lr (g + mu v)`.
    Nesterov,
    /// Adam at step `t`, state `[m, v]`: `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g g`,
    /// `p -= lr / (1 - b1ᵗ) m / (sqrt(v) / sqrt(1 - b2ᵗ) + eps)`; AdamW: decoupled decay.
    Adam,
    AdamW,
    /// RMSprop, state `[s]` (centered: `[s, a]`), then `b` if `mu > 0`:
    /// `s = b2 s + (1 - b2) g g`, `den = sqrt(s) + eps` (centered: `a = lerp(a, g, 1 - b2)`,
    /// `den = sqrt(s - a a) + eps`); `b = mu b + g / den`, `p -= lr b` (else `p -= lr g / den`).
    RmsProp,
    Centered,
}

/// A rule with its hyper-parameters (RMSprop's `alpha` is `b2`; from Python,
/// a dict of these names).
#[cfg_attr(feature = "python", derive(pyo3::FromPyObject), pyo3(from_item_all))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hyper {
    pub rule: Rule,
    pub lr: f64,
    pub mu: f64,
    pub wd: f64,
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    pub t: f64,
}

impl Hyper {
    /// The number of state buffers each parameter has.
    pub fn buffers(&self) -> usize {
        let momentum = usize::from(self.mu > 0.0);
        match self.rule {
            Rule::Sgd | Rule::Nesterov => momentum,
            Rule::RmsProp => 1 + momentum,
            Rule::Centered => 2 + momentum,
            Rule::Adam | Rule::AdamW => 2,
        }
    }
}

/// One parameter's gradient, then the parameter and its state buffers, all of one length.
pub struct Slot<'a, T>(pub &'a [T], pub Vec<&'a mut [T]>);

/// torch's `lerp`: `a + w (b - a)` for `w < 0.5`, else `b - (b - a)(1 - w)`.
#[inline]
fn lerp<T: Float>(a: T, b: T, w: T) -> T {
    if w < T::from_f64(0.5).expect("0.5") {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

multiversion! {
    /// `r` on one run of elements (`s`: its state buffers, as many as [`Hyper::buffers`]).
    fn run<T: Float>(r: Hyper, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let c = |v: f64| T::from_f64(v).expect("a float converts");
        let (lr, mu, wd, eps, b2) = (c(r.lr), c(r.mu), c(r.wd), c(r.eps), c(r.b2));
        let (w1, w2, nesterov) = (c(1.0 - r.b1), c(1.0 - r.b2), r.rule == Rule::Nesterov);
        // branch-free loops (they vectorize): AdamW's shrink is 1 for the other rules
        let (decay, adamw) = (r.wd != 0.0, r.rule == Rule::AdamW);
        let shrink = if decay && adamw { c(1.0 - r.lr * r.wd) } else { T::one() };
        let decayed = |g: T, p: T| if decay && !adamw { g + wd * p } else { g };
        match (r.rule, s) {
            (Rule::Adam | Rule::AdamW, [m, v]) => {
                let step = c(-(r.lr / (1.0 - r.b1.powf(r.t))));
                let root = c((1.0 - r.b2.powf(r.t)).powf(0.5));
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *p *= shrink;
                    let g = decayed(g, *p);
                    *m = lerp(*m, g, w1);
                    *v = *v * b2 + w2 * g * g;
                    *p += step * *m / (v.sqrt() / root + eps);
                }
            }
            (Rule::RmsProp | Rule::Centered, [sq, rest @ ..]) => {
                let (avg, buf) = rest.split_at_mut(usize::from(r.rule == Rule::Centered));
                let (mut avg, mut buf) = (avg.first_mut(), buf.first_mut());
                for (i, ((p, &g), sq)) in p.iter_mut().zip(g).zip(sq.iter_mut()).enumerate() {
                    let g = decayed(g, *p);
                    *sq = *sq * b2 + w2 * g * g;
                    let mut den = sq.sqrt() + eps;
                    if let Some(a) = avg.as_deref_mut() {
                        a[i] = lerp(a[i], g, w2);
                        den = (*sq - a[i] * a[i]).sqrt() + eps;
                    }
                    if let Some(b) = buf.as_deref_mut() {
                        b[i] = b[i] * mu + g / den;
                        *p -= lr * b[i];
                    } else {
                        *p += -lr * g / den;
                    }
                }
            }
            (_, [v]) => {
                for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                    let d = decayed(g, *p);
                    *v = *v * mu + d;
                    *p -= lr * if nesterov { d + mu * *v } else { *v };
                }
            }
            _ => p.iter_mut().zip(g).for_each(|(p, &g)| *p -= lr * decayed(g, *p)),
        }
    }
}

/// Plain SGD, `p -= lr·g` ([`run`]'s `Sgd` rule), for arrays of one shape in
/// any layout: in place when the two lie alike in memory, else through a
/// standard-layout copy of `p`.
pub(crate) fn sgd<T: Float, D: Dimension>(
    mut p: ArrayViewMut<'_, T, D>,
    g: ArrayView<'_, T, D>,
    lr: f64,
) {
    let rule = Hyper {
        lr,
        ..Hyper::default()
    };
    if p.strides() == g.strides() {
        if let (Some(ps), Some(gs)) = (p.as_slice_memory_order_mut(), g.as_slice_memory_order()) {
            return run(rule, ps, gs, &mut []);
        }
    }
    let (mut q, g) = (p.as_standard_layout().into_owned(), g.as_standard_layout());
    let layout = "standard layout";
    run(
        rule,
        q.as_slice_mut().expect(layout),
        g.as_slice().expect(layout),
        &mut [],
    );
    p.assign(&q);
}

/// The bytes of parameters below which an update stays on the calling
/// thread: the loops are memory-bound (a few loads and stores per element),
/// so a hand-off to the pool pays only from a MiB on (256K `f32`).
const PAR_MIN_BYTES: usize = 1 << 20;

/// One step of `rule` over every slot, in place; when they are large, in
/// parts of about equal numbers of elements, on the kernels' threads.
pub fn update<T: Float>(rule: Hyper, slots: Vec<Slot<'_, T>>) -> Result<(), KernelError> {
    let total: usize = slots.iter().map(|s| s.0.len()).sum();
    let parts = parts(total.saturating_mul(std::mem::size_of::<T>()) >= PAR_MIN_BYTES);
    let per = total.div_ceil(parts).max(1);
    let mut groups: Vec<Vec<Slot<'_, T>>> = (0..parts).map(|_| Vec::new()).collect();
    let (mut part, mut room) = (0, per);
    for (i, mut s) in slots.into_iter().enumerate() {
        let (n, k) = (s.0.len(), rule.buffers());
        if s.1.len() != k + 1 || s.1.iter().any(|b| b.len() != n) {
            let msg = format!("parameter {i} needs a gradient and {k} state buffer(s) of its size");
            return Err(KernelError::invalid("optim_update", msg));
        }
        while s.0.len() > room && part + 1 < parts {
            let (g, rest) = s.0.split_at(room);
            let (head, tail) = s.1.into_iter().map(|b| b.split_at_mut(room)).unzip();
            groups[part].push(Slot(g, head));
            (s, part, room) = (Slot(rest, tail), part + 1, per);
        }
        room = room.saturating_sub(s.0.len());
        groups[part].push(s);
    }
    let groups: Vec<Mutex<Vec<Slot<'_, T>>>> = groups.into_iter().map(Mutex::new).collect();
    par_parts(parts, |i| {
        let mut group = groups[i].lock().unwrap_or_else(|e| e.into_inner());
        for Slot(g, arrays) in group.iter_mut() {
            if let [p, state @ ..] = &mut arrays[..] {
                run(rule, p, g, state);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    #[test]
    fn sgd_steps_every_layout_as_the_plain_formula() {
        let g = Array2::from_shape_fn((3, 37), |(i, j)| ((i * 37 + j) as f32 * 0.3).cos());
        let expected = g.mapv(|g| 1.0 - 0.5 * g);
        for (p_fortran, g_fortran) in [(false, false), (true, true), (true, false)] {
            let mut p = Array2::from_elem((3, 37).set_f(p_fortran), 1.0_f32);
            let mut gl = Array2::zeros((3, 37).set_f(g_fortran));
            gl.assign(&g);
            sgd(p.view_mut(), gl.view(), 0.5);
            assert_eq!(p, expected);
        }
    }
}
