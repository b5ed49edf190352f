//! `f32` row functions on 16 lanes with AVX-512F: masked loads and stores
//! instead of scalar tails, `exp` by [`crate::math::avx512`].

use std::arch::x86_64::*;

use super::RowOp;
use crate::math::avx512::{exp16, exp16_le};

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

/// Folds `f(acc, i, m)` over the steps of `[0, n)` on 4 independent
/// accumulators (the latency of one `add` or `max` hidden behind the
/// others), joined by `join`.
#[inline(always)]
fn fold(
    n: usize,
    init: __m512,
    mut f: impl FnMut(__m512, usize, __mmask16) -> __m512,
    join: impl Fn(__m512, __m512) -> __m512,
) -> __m512 {
    let mut acc = [init; 4];
    let n64 = n / 64 * 64;
    for i in (0..n64).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = f(*a, i + 16 * j, 0xffff);
        }
    }
    let mut m = join(join(acc[0], acc[1]), join(acc[2], acc[3]));
    steps(n - n64, |j, mk| m = f(m, n64 + j, mk));
    m
}

/// The sum of `f(i, m)` over the steps of `[0, n)`.
#[inline]
#[target_feature(enable = "avx512f")]
fn sum_of(n: usize, mut f: impl FnMut(usize, __mmask16) -> __m512) -> f32 {
    let s = fold(
        n,
        _mm512_setzero_ps(),
        |s, i, m| _mm512_add_ps(s, f(i, m)),
        |a, b| _mm512_add_ps(a, b),
    );
    _mm512_reduce_add_ps(s)
}

/// The maximum of `x`.
#[inline]
#[target_feature(enable = "avx512f")]
fn row_max(x: &[f32]) -> f32 {
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    // SAFETY: every step lies inside x.
    let max = |m, i, mk| _mm512_max_ps(m, unsafe { load(x, i, mk, ninf) });
    _mm512_reduce_max_ps(fold(x.len(), ninf, max, |a, b| _mm512_max_ps(a, b)))
}

/// `sum(e^(x - m))`, the terms also stored in `y` (of the length of `x`)
/// when given.
#[target_feature(enable = "avx512f")]
pub(super) fn exp_sum(x: &[f32], m: f32, mut y: Option<&mut [f32]>) -> f32 {
    let (mv, ninf) = (_mm512_set1_ps(m), _mm512_set1_ps(f32::NEG_INFINITY));
    sum_of(x.len(), |i, mk| {
        // SAFETY: the step lies inside x (and y).
        unsafe {
            let e = exp16_le(_mm512_sub_ps(load(x, i, mk, ninf), mv));
            let e = _mm512_maskz_mov_ps(mk, e);
            if let Some(y) = y.as_deref_mut() {
                store(y, i, mk, e);
            }
            e
        }
    })
}

/// `op` over the rows of length `k` of `a` and `b` into `out` (see
/// [`RowOp`]).
///
/// Rows of up to 16 live in one register each (no loop, no tail); longer
/// rows run in fused passes, each row finished while it is in L1.
#[target_feature(enable = "avx512f")]
pub(super) fn rows(op: RowOp, a: &[f32], b: &[f32], out: &mut [f32], k: usize) {
    let zero = _mm512_setzero_ps();
    if k <= 16 {
        let (mk, ninf) = (mask(k), _mm512_set1_ps(f32::NEG_INFINITY));
        // SAFETY (the calls of `short_rows`): the slices hold whole rows.
        match op {
            RowOp::Softmax => unsafe {
                short_rows(a, b, out, k, ninf, |x, _| {
                    let e = exp16_le(_mm512_sub_ps(x, all::<true>(x)));
                    let e = _mm512_maskz_mov_ps(mk, e);
                    _mm512_div_ps(e, all::<false>(e))
                })
            },
            RowOp::LogSoftmax => unsafe {
                short_rows(a, b, out, k, ninf, |x, _| {
                    let z = _mm512_sub_ps(x, all::<true>(x));
                    let e = _mm512_maskz_mov_ps(mk, exp16_le(z));
                    let ls = _mm512_cvtss_f32(all::<false>(e)).ln();
                    _mm512_sub_ps(z, _mm512_set1_ps(ls))
                })
            },
            RowOp::SoftmaxBackward => unsafe {
                short_rows(a, b, out, k, zero, |y, d| {
                    let s = all::<false>(_mm512_mul_ps(y, d));
                    _mm512_mul_ps(y, _mm512_sub_ps(d, s))
                })
            },
            RowOp::LogSoftmaxBackward => unsafe {
                short_rows(a, b, out, k, zero, |y, d| {
                    _mm512_fnmadd_ps(exp16(y), all::<false>(d), d)
                })
            },
        }
        return;
    }
    for ((x, d), o) in a
        .chunks_exact(k)
        .zip(b.chunks_exact(k))
        .zip(out.chunks_exact_mut(k))
    {
        // SAFETY (every load and store below): the steps lie inside the
        // rows x, d and o, each of length k.
        match op {
            RowOp::Softmax => {
                let c = _mm512_set1_ps(1.0 / exp_sum(x, row_max(x), Some(&mut *o)));
                steps(k, |i, m| unsafe {
                    store(o, i, m, _mm512_mul_ps(load(o, i, m, zero), c));
                });
            }
            RowOp::LogSoftmax => {
                let m = row_max(x);
                let (mv, ls) = (_mm512_set1_ps(m), _mm512_set1_ps(exp_sum(x, m, None).ln()));
                // (x - m) - log(s), in that order: x - (m + log(s)) would
                // lose the digits of log(s) when |m| is large.
                steps(k, |i, mk| unsafe {
                    let v = _mm512_sub_ps(_mm512_sub_ps(load(x, i, mk, zero), mv), ls);
                    store(o, i, mk, v);
                });
            }
            RowOp::SoftmaxBackward => {
                let s = _mm512_set1_ps(sum_of(k, |i, m| unsafe {
                    _mm512_mul_ps(load(x, i, m, zero), load(d, i, m, zero))
                }));
                steps(k, |i, m| unsafe {
                    let g = _mm512_sub_ps(load(d, i, m, zero), s);
                    store(o, i, m, _mm512_mul_ps(load(x, i, m, zero), g));
                });
            }
            RowOp::LogSoftmaxBackward => {
                let s = _mm512_set1_ps(sum_of(k, |i, m| unsafe { load(d, i, m, zero) }));
                steps(k, |i, m| unsafe {
                    let e = exp16(load(x, i, m, zero));
                    store(o, i, m, _mm512_fnmadd_ps(e, s, load(d, i, m, zero)));
                });
            }
        }
    }
}

/// The max (`MAX`) or the sum of the 16 lanes, in every lane: a butterfly,
/// no trip through a scalar register and back. Each step joins lanes `i`
/// and `i ^ b` in both, so the lanes agree exactly.
#[inline]
#[target_feature(enable = "avx512f")]
fn all<const MAX: bool>(v: __m512) -> __m512 {
    let join = |a, b| {
        if MAX {
            _mm512_max_ps(a, b)
        } else {
            _mm512_add_ps(a, b)
        }
    };
    let v = join(v, _mm512_shuffle_f32x4::<0x4e>(v, v));
    let v = join(v, _mm512_shuffle_f32x4::<0xb1>(v, v));
    let v = join(v, _mm512_permute_ps::<0x4e>(v));
    join(v, _mm512_permute_ps::<0xb1>(v))
}

/// Row `r` of `out` = `f(row r of a, row r of b)`, for rows of `k <= 16`
/// held in one register each; the lanes past `k` of `a` are `fill`, of `b`
/// zero.
///
/// # Safety
/// `a`, `b` and `out` hold the same number of whole rows of length `k`.
#[inline(always)]
unsafe fn short_rows(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    k: usize,
    fill: __m512,
    f: impl Fn(__m512, __m512) -> __m512,
) {
    let mk = mask(k);
    for r in 0..out.len() / k {
        // SAFETY: row r spans [r·k, r·k + k) of a, b and out; mk has k lanes.
        unsafe {
            let (x, d) = (
                load(a, r * k, mk, fill),
                load(b, r * k, mk, _mm512_setzero_ps()),
            );
            store(out, r * k, mk, f(x, d));
        }
    }
}
