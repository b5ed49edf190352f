//! `f32` row functions on 16 lanes with AVX-512F: masked loads and stores
//! instead of scalar tails, `2^n` by `vscalefps`, rounding by `vrndscaleps`.

use std::arch::x86_64::*;

use super::RowOp;
use crate::math::avx512::{exp16_le, exp16_summand};

/// The mask of the first `n <= 16` lanes.
#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

/// Lanes `[i, i + m)` of `x`, the others `fill`.
///
/// # Safety
/// `i + popcount(m) <= x.len()` with `m` a prefix mask.
#[inline(always)]
unsafe fn load(x: &[f32], i: usize, m: __mmask16, fill: __m512) -> __m512 {
    // SAFETY: the masked-off lanes are not read (caller's contract).
    unsafe { _mm512_mask_loadu_ps(fill, m, x.as_ptr().add(i)) }
}

/// # Safety
/// `i + popcount(m) <= y.len()` with `m` a prefix mask.
#[inline(always)]
unsafe fn store(y: &mut [f32], i: usize, m: __mmask16, v: __m512) {
    // SAFETY: the masked-off lanes are not written (caller's contract).
    unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), m, v) }
}

/// Calls `f(i, m)` over `[0, n)`: full 16-lane steps, then one masked.
#[inline(always)]
fn steps(n: usize, mut f: impl FnMut(usize, __mmask16)) {
    let mut i = 0;
    while i + 16 <= n {
        f(i, 0xffff);
        i += 16;
    }
    if i < n {
        f(i, mask(n - i));
    }
}

/// `max(a, b)` (`MAX`) or `a + b` of 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn combine<const MAX: bool>(a: __m512, b: __m512) -> __m512 {
    if MAX {
        _mm512_max_ps(a, b)
    } else {
        _mm512_add_ps(a, b)
    }
}

/// The maximum (`MAX`) or the sum of `x`, on 4 independent accumulators.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce<const MAX: bool>(x: &[f32]) -> f32 {
    let fill = _mm512_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 });
    let mut acc = [fill; 4];
    let n64 = x.len() / 64 * 64;
    let mut i = 0;
    while i < n64 {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 64 <= x.len().
            *a = combine::<MAX>(*a, unsafe { load(x, i + 16 * j, 0xffff, fill) });
        }
        i += 64;
    }
    let mut m = combine::<MAX>(
        combine::<MAX>(acc[0], acc[1]),
        combine::<MAX>(acc[2], acc[3]),
    );
    steps(x.len() - n64, |j, mk| {
        // SAFETY: the step is inside x.
        m = combine::<MAX>(m, unsafe { load(x, n64 + j, mk, fill) });
    });
    if MAX {
        _mm512_reduce_max_ps(m)
    } else {
        _mm512_reduce_add_ps(m)
    }
}

#[target_feature(enable = "avx512f")]
fn row_max(x: &[f32]) -> f32 {
    reduce::<true>(x)
}

#[target_feature(enable = "avx512f")]
fn sum(x: &[f32]) -> f32 {
    reduce::<false>(x)
}

#[target_feature(enable = "avx512f")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let zero = _mm512_setzero_ps();
    let (mut s0, mut s1) = (zero, zero);
    let n32 = a.len() / 32 * 32;
    let mut i = 0;
    while i < n32 {
        // SAFETY: i + 32 <= len of a and b (equal lengths).
        unsafe {
            s0 = _mm512_fmadd_ps(load(a, i, 0xffff, zero), load(b, i, 0xffff, zero), s0);
            s1 = _mm512_fmadd_ps(
                load(a, i + 16, 0xffff, zero),
                load(b, i + 16, 0xffff, zero),
                s1,
            );
        }
        i += 32;
    }
    steps(a.len() - n32, |j, mk| {
        // SAFETY: the step is inside a and b.
        unsafe { s0 = _mm512_fmadd_ps(load(a, n32 + j, mk, zero), load(b, n32 + j, mk, zero), s0) };
    });
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
}

/// `sum(e^(x - m))`, also stored in `y` (of the length of `x`) when given.
#[target_feature(enable = "avx512f")]
pub(super) fn exp_store_sum(x: &[f32], m: f32, y: Option<&mut [f32]>) -> f32 {
    match y {
        Some(y) => exp_store_sum_impl::<false>(x, m, Some(y)),
        None => exp_store_sum_impl::<true>(x, m, None),
    }
}

/// `SUMMAND`: nothing stored, see [`exp16_le`].
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_store_sum_impl<const SUMMAND: bool>(x: &[f32], m: f32, mut y: Option<&mut [f32]>) -> f32 {
    let mv = _mm512_set1_ps(m);
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let zero = _mm512_setzero_ps();
    let (mut s0, mut s1) = (zero, zero);
    let n32 = x.len() / 32 * 32;
    let mut i = 0;
    while i < n32 {
        // SAFETY: i + 32 <= x.len() (and y.len() == x.len()).
        unsafe {
            let a = exp16_le::<SUMMAND>(_mm512_sub_ps(load(x, i, 0xffff, ninf), mv));
            let b = exp16_le::<SUMMAND>(_mm512_sub_ps(load(x, i + 16, 0xffff, ninf), mv));
            if let Some(y) = y.as_deref_mut() {
                store(y, i, 0xffff, a);
                store(y, i + 16, 0xffff, b);
            }
            s0 = _mm512_add_ps(s0, a);
            s1 = _mm512_add_ps(s1, b);
        }
        i += 32;
    }
    steps(x.len() - n32, |j, mk| {
        // SAFETY: the step is inside x (and y).
        unsafe {
            let e = _mm512_maskz_mov_ps(
                mk,
                exp16_le::<SUMMAND>(_mm512_sub_ps(load(x, n32 + j, mk, ninf), mv)),
            );
            if let Some(y) = y.as_deref_mut() {
                store(y, n32 + j, mk, e);
            }
            s0 = _mm512_add_ps(s0, e);
        }
    });
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
}

/// `dx = d - e^y·s` (equal lengths).
#[target_feature(enable = "avx512f")]
pub(super) fn sub_exp_scaled(y: &[f32], d: &[f32], s: f32, dx: &mut [f32]) {
    let sv = _mm512_set1_ps(s);
    let zero = _mm512_setzero_ps();
    steps(y.len(), |i, mk| {
        // SAFETY: the step is inside y, d and dx.
        unsafe {
            let e = exp16_summand(load(y, i, mk, zero));
            store(dx, i, mk, _mm512_fnmadd_ps(e, sv, load(d, i, mk, zero)));
        }
    });
}

/// `y = y·c`.
#[inline]
#[target_feature(enable = "avx512f")]
fn scale(y: &mut [f32], c: f32) {
    let cv = _mm512_set1_ps(c);
    let zero = _mm512_setzero_ps();
    steps(y.len(), |i, mk| {
        // SAFETY: the step is inside y.
        unsafe { store(y, i, mk, _mm512_mul_ps(load(y, i, mk, zero), cv)) };
    });
}

/// One of the row-wise ops over rows of length `k` (`a`, `b`, `out` hold
/// whole rows, `b` only for the backward ops).
///
/// Rows of up to 16 live in one register each: no loop inside a row and
/// no scalar tail, the rows independent of each other (the CPU overlaps
/// them). Longer rows: fused passes, each row finished while it is in L1.
#[target_feature(enable = "avx512f")]
pub(super) fn rows(op: RowOp, a: &[f32], b: &[f32], out: &mut [f32], k: usize) {
    if k <= 16 {
        short_rows(op, a, b, out, k);
        return;
    }
    let rows = out.len() / k;
    for r in 0..rows {
        let span = r * k..(r + 1) * k;
        let (x, o) = (&a[span.clone()], &mut out[span.clone()]);
        match op {
            RowOp::Softmax => {
                let s = exp_store_sum(x, row_max(x), Some(&mut *o));
                scale(o, 1.0 / s);
            }
            RowOp::LogSoftmax => {
                let m = row_max(x);
                let ls = _mm512_set1_ps(exp_store_sum(x, m, None).ln());
                let mv = _mm512_set1_ps(m);
                let zero = _mm512_setzero_ps();
                // (x - m) - log(s), in that order: x - (m + log(s)) would
                // lose the digits of log(s) when |m| is large.
                steps(k, |i, mk| {
                    // SAFETY: the step is inside the row.
                    unsafe {
                        let v = _mm512_sub_ps(_mm512_sub_ps(load(x, i, mk, zero), mv), ls);
                        store(o, i, mk, v);
                    }
                });
            }
            RowOp::SoftmaxBackward => {
                let d = &b[span];
                let sv = _mm512_set1_ps(dot(x, d));
                let zero = _mm512_setzero_ps();
                steps(k, |i, mk| {
                    // SAFETY: the step is inside the rows.
                    unsafe {
                        let yv = load(x, i, mk, zero);
                        let g = _mm512_mul_ps(yv, _mm512_sub_ps(load(d, i, mk, zero), sv));
                        store(o, i, mk, g);
                    }
                });
            }
            RowOp::LogSoftmaxBackward => {
                let d = &b[span];
                sub_exp_scaled(x, d, sum(d), o);
            }
        }
    }
}

/// The max of the 16 lanes, in every lane (a butterfly: no trip through
/// a scalar register and back).
#[inline]
#[target_feature(enable = "avx512f")]
fn all_max(v: __m512) -> __m512 {
    let v = _mm512_max_ps(v, _mm512_shuffle_f32x4::<0x4e>(v, v));
    let v = _mm512_max_ps(v, _mm512_shuffle_f32x4::<0xb1>(v, v));
    let v = _mm512_max_ps(v, _mm512_permute_ps::<0x4e>(v));
    _mm512_max_ps(v, _mm512_permute_ps::<0xb1>(v))
}

/// The sum of the 16 lanes, in every lane. Each step adds lanes `i` and
/// `i ^ b` in both, and `a + b == b + a`, so the lanes agree exactly.
#[inline]
#[target_feature(enable = "avx512f")]
fn all_sum(v: __m512) -> __m512 {
    let v = _mm512_add_ps(v, _mm512_shuffle_f32x4::<0x4e>(v, v));
    let v = _mm512_add_ps(v, _mm512_shuffle_f32x4::<0xb1>(v, v));
    let v = _mm512_add_ps(v, _mm512_permute_ps::<0x4e>(v));
    _mm512_add_ps(v, _mm512_permute_ps::<0xb1>(v))
}

#[target_feature(enable = "avx512f")]
fn short_rows(op: RowOp, a: &[f32], b: &[f32], out: &mut [f32], k: usize) {
    let mk = mask(k);
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let zero = _mm512_setzero_ps();
    let rows = out.len() / k;
    // SAFETY (all the loads and stores below): row r spans
    // [r·k, r·k + k) of a, b (backward) and out, and mk has k lanes.
    match op {
        RowOp::Softmax => {
            for r in 0..rows {
                let x = unsafe { load(a, r * k, mk, ninf) };
                let e = _mm512_maskz_mov_ps(mk, exp16_le::<false>(_mm512_sub_ps(x, all_max(x))));
                unsafe { store(out, r * k, mk, _mm512_div_ps(e, all_sum(e))) };
            }
        }
        RowOp::LogSoftmax => {
            for r in 0..rows {
                let x = unsafe { load(a, r * k, mk, ninf) };
                let z = _mm512_sub_ps(x, all_max(x));
                let e = _mm512_maskz_mov_ps(mk, exp16_le::<true>(z));
                let ls = _mm512_set1_ps(_mm512_cvtss_f32(all_sum(e)).ln());
                unsafe { store(out, r * k, mk, _mm512_sub_ps(z, ls)) };
            }
        }
        RowOp::SoftmaxBackward => {
            for r in 0..rows {
                let (y, d) = unsafe { (load(a, r * k, mk, zero), load(b, r * k, mk, zero)) };
                let s = all_sum(_mm512_mul_ps(y, d));
                unsafe { store(out, r * k, mk, _mm512_mul_ps(y, _mm512_sub_ps(d, s))) };
            }
        }
        RowOp::LogSoftmaxBackward => {
            for r in 0..rows {
                let (y, d) = unsafe { (load(a, r * k, mk, zero), load(b, r * k, mk, zero)) };
                let s = all_sum(d);
                unsafe { store(out, r * k, mk, _mm512_fnmadd_ps(exp16_summand(y), s, d)) };
            }
        }
    }
}
