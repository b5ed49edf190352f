//! The elementary functions of the kernels: `exp`, `ln`, `tanh`, `sigmoid`.
//!
//! Reference definitions (what every version below computes):
//!
//! - `exp(x) = e^x`, derivative `exp(x)`;
//! - `ln_clamped(x) = max(ln x, -100)` (torch's `BCELoss` clamp), derivative `1/x`;
//! - `tanh(x) = (e^x - e^-x) / (e^x + e^-x)`, derivative `1 - tanh(x)²`;
//! - `sigmoid(x) = 1 / (1 + e^-x)`, derivative `s (1 - s)`;
//! - `softplus(x) = ln(1 + e^x)`, derivative `sigmoid(x)`.
//!
//! NaN in gives NaN out, everywhere. `exp`, `tanh` and `sigmoid` are
//! branch-free polynomials and rational fits, `ln` too for `f32` (within a
//! few ulp of the correctly rounded value, subnormal results included) that
//! LLVM vectorizes; the slice forms are compiled once per instruction set by
//! [`multiversion!`]. The `f32` slice `exp` (softmax, losses) is also written
//! by hand, `avx2::exp8` (the scalar steps with FMA), and so is the 16-lane
//! `avx512::exp16` of the AVX-512 softmax rows.

use crate::float::Float;
use crate::simd::multiversion;

/// A float with the kernels' elementary functions, scalar and over slices.
pub trait Math: Float {
    /// `e^self`.
    fn exp_(self) -> Self;
    /// `max(ln self, -100)`; NaN for a negative or NaN `self`.
    fn ln_clamped(self) -> Self;
    /// `tanh(self)`.
    fn tanh_(self) -> Self;
    /// `1 / (1 + e^-self)`, without overflow.
    fn sigmoid(self) -> Self;
    /// `ln(1 + e^self)`, without overflow: `max(self, 0) + ln(1 + e^-|self|)`.
    fn softplus(self) -> Self;

    /// `v = e^v` for every `v`.
    fn exp_slice(v: &mut [Self]) {
        exp_all(v);
    }

    /// `dst = e^src`, of one length.
    fn exp_into(src: &[Self], dst: &mut [Self]) {
        dst.copy_from_slice(src);
        Self::exp_slice(dst);
    }
}

multiversion! {
    fn exp_all<T: Math>(v: &mut [T]) {
        v.iter_mut().for_each(|x| *x = x.exp_());
    }
}

/// `max(v, floor)` that keeps NaN, as `np.maximum`.
#[inline(always)]
pub(crate) fn max_nan<T: Float>(v: T, floor: T) -> T {
    if v < floor {
        floor
    } else {
        v
    }
}

/// `x` where `x > 0`, else 0 (NaN too: the other term of softplus carries it).
#[inline(always)]
fn positive_part<T: Float>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        T::zero()
    }
}

impl Math for f64 {
    #[inline(always)]
    fn exp_(self) -> f64 {
        // `e^g / 2 = 1/2 + gP / (Q - gP)`: the rounding of the quotient is scaled down.
        let (n, p, q) = exp_parts_f64(if self > 710.0 { 710.0 } else { self }); // NaN stays
        scale_f64(0.5 + p / (q - p), n + 1.0)
    }

    #[inline(always)]
    fn ln_clamped(self) -> f64 {
        max_nan(self.ln(), -100.0)
    }

    /// `tanh(x)` for `f64` (Cody and Waite): `a + a·z·P(z)/Q(z)` with `a = |x|`,
    /// `z = a²` below `a = 0.5`, above `(1 - E) / (1 + E) = (d - e) / (d + e)`
    /// with `E = e^{-2a} = e / d` (one division); the sign put back.
    #[inline(always)]
    fn tanh_(self) -> f64 {
        let (a, (n, p, q)) = (self.abs(), exp_parts_f64(-2.0 * self.abs()));
        let (e, d) = (scale_f64(q + p, n), q - p);
        let z = a * a;
        let small = a + a * (z * horner(z, &TANH_P64) / horner(z, &TANH_Q64));
        let large = (d - e) / (d + e);
        let t = if a < 0.5 { small } else { large };
        t.copysign(self)
    }

    #[inline(always)]
    fn sigmoid(self) -> f64 {
        // `e / (1 + e)` below 0, `1 / (1 + e)` above, as `e^-|x| = e / d`: one division.
        let (n, p, q) = exp_parts_f64(-self.abs());
        let (e, d) = (scale_f64(q + p, n), q - p);
        (if self < 0.0 { e } else { d }) / (d + e)
    }

    #[inline(always)]
    fn softplus(self) -> f64 {
        positive_part(self) + (-self.abs()).exp().ln_1p()
    }
}

/// `c[0]·z^(n-1) + ... + c[n-1]`, by Horner's rule.
#[inline(always)]
fn horner<T: Float>(z: T, c: &[T]) -> T {
    c[1..].iter().fold(c[0], |p, &k| p * z + k)
}

/// Cody and Waite's rational fits for `f64`, highest degree first: the
/// `P` and `Q` of [`exp_parts_f64`] and of [`Math::tanh_`].
const EXP_P64: [f64; 3] = [1.6520330026827912e-5, 6.943600015117929e-3, 0.25];
const EXP_Q64: [f64; 3] = [4.958628849054413e-4, 5.555386669690012e-2, 0.5];
const TANH_P64: [f64; 3] = [-0.9643749277722548, -99.22592967223608, -1613.4119023996227];
#[rustfmt::skip]
const TANH_Q64: [f64; 4] = [1.0, 112.74474380534949, 2233.7720718962314, 4840.235707198869];

/// `e^x = 2^n·(Q + gP) / (Q - gP)` for `f64` (Cody and Waite), as `(n, gP,
/// Q)`: `x = n·ln2 + g` with `|g| <= ln2/2` (`ln2 = LN2_HI - 2.12e-4`,
/// `n·LN2_HI` exact), `P` and `Q` of `g²` (about 1 ulp); `x` is clamped at
/// -746 (`e^x` rounds to 0), NaN kept. Callers clamp at 710 (`inf`).
#[inline(always)]
fn exp_parts_f64(x: f64) -> (f64, f64, f64) {
    let x = if x < -746.0 { -746.0 } else { x };
    let n = (x * std::f64::consts::LOG2_E + ROUND_F64) - ROUND_F64;
    let g = (x - n * f64::from(LN2_HI)) + n * 2.1219444005469057e-4;
    (n, g * horner(g * g, &EXP_P64), horner(g * g, &EXP_Q64))
}

/// 1.5·2^52: adding it rounds an `f64` to an integer.
const ROUND_F64: f64 = 6_755_399_441_055_744.0;

/// `y·2^n` for an integer `n` in `[-1076, 1025]`, in two normal halves so
/// that a subnormal result is rounded once; `2^e` from `e + 1023` in the low
/// bits of `e + ROUND_F64 + 1023`, shifted into the exponent.
#[inline(always)]
fn scale_f64(y: f64, n: f64) -> f64 {
    let pow2 = |e: f64| f64::from_bits((e + (ROUND_F64 + 1023.0)).to_bits() << 52);
    let half = (n * 0.5 + ROUND_F64) - ROUND_F64;
    y * pow2(half) * pow2(n - half)
}

/// `ln 2` in two parts, the first with few enough bits that `n·LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// The polynomial of [`exp_le_f32`], highest degree first: `e^r = 1 + r +
/// r²·p(r)` on `|r| <= ln2/2`.
#[rustfmt::skip]
const EXP_P: [f32; 6] = [1.9875691e-4, 1.3982e-3, 8.333452e-3, 4.1665796e-2, 1.6666665e-1, 0.5];

/// `e^x` for `f32`, `x <= 89` or NaN (Cephes' `expf`): `x = n·ln2 + r` with
/// `|r| <= ln2/2`, `e^r` by a degree-7 polynomial, then `2^n` in two halves
/// (each a normal float), so that results down to the subnormals are right;
/// `x` is clamped at -104 (0), NaN kept. [`Math::exp_`] clamps at 89 (`inf`).
#[inline(always)]
fn exp_le_f32(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to the nearest integer, kept in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -104.0 { -104.0 } else { x }; // NaN stays NaN
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let nf = t - ROUND;
    let r = x - nf * LN2_HI - nf * LN2_LO;
    let y = horner(r, &EXP_P) * r * r + r + 1.0;
    let half = n >> 1;
    let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) as u32).wrapping_shl(23));
    y * pow2(half) * pow2(n.wrapping_sub(half))
}

impl Math for f32 {
    #[inline(always)]
    fn exp_(self) -> f32 {
        exp_le_f32(if self > 89.0 { 89.0 } else { self }) // NaN stays NaN
    }

    /// `max(ln x, -100)`: `x = m·2^e` with `m` in `[√½, √2)` (subnormals scaled by
    /// 2^24 first), `ln m = 2 atanh(s)`, `s = (m-1)/(m+1)`, by its odd series to
    /// `s^9` (`|s| <= 0.172`: truncation < 1e-9); 0 gives -100, a negative or NaN
    /// `x` NaN, `+inf` itself.
    #[inline(always)]
    fn ln_clamped(self) -> f32 {
        const SQRT_HALF: i32 = 0x3f35_04f3;
        let tiny = self < f32::MIN_POSITIVE;
        let xs = if tiny { self * 16_777_216.0 } else { self };
        let off = (xs.to_bits() as i32).wrapping_sub(SQRT_HALF);
        let e = (off >> 23) as f32 - if tiny { 24.0 } else { 0.0 };
        let m = f32::from_bits(((off & 0x007f_ffff) + SQRT_HALF) as u32);
        let s = (m - 1.0) / (m + 1.0);
        let z = s * s;
        let p = horner(z, &[1.0 / 9.0, 1.0 / 7.0, 0.2, 1.0 / 3.0]);
        let l = e * LN2_HI + (2.0 * s + 2.0 * s * z * p + e * LN2_LO);
        let l = if l < -100.0 { -100.0 } else { l };
        let l = if self == f32::INFINITY { self } else { l };
        if self > 0.0 {
            l
        } else if self == 0.0 {
            -100.0
        } else {
            f32::NAN
        }
    }

    /// `tanh(x)`: its odd Taylor series up to `x^15` below `|x| = 0.5` (error
    /// < 1e-8 relative), `(1 - e) / (1 + e)` with `e = e^{-2|x|}` above, the
    /// sign put back.
    #[inline(always)]
    fn tanh_(self) -> f32 {
        let a = self.abs();
        let z = a * a;
        #[rustfmt::skip]
        let p = horner(z, &[-929_569.0 / 638_512_875.0, 21_844.0 / 6_081_075.0, -1_382.0 / 155_925.0,
            62.0 / 2_835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0]);
        let small = a + a * z * p;
        let e = exp_le_f32(-2.0 * a);
        let large = (1.0 - e) / (1.0 + e);
        let t = if a < 0.5 { small } else { large };
        t.copysign(self)
    }

    #[inline(always)]
    fn sigmoid(self) -> f32 {
        // `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` below, `e = e^-|x|`:
        // neither form overflows or cancels.
        let e = exp_le_f32(-self.abs());
        (if self < 0.0 { e } else { 1.0 }) / (1.0 + e)
    }

    /// `ln(1 + e)` with `e = e^-|x|` as `ln(u)·e / (u - 1)`, `u = 1 + e`
    /// rounded: the ratio makes up for the rounding of `u` (Goldberg).
    #[inline(always)]
    fn softplus(self) -> f32 {
        let e = exp_le_f32(-self.abs());
        let u = 1.0 + e;
        let ln1p = if u == 1.0 {
            e
        } else {
            u.ln_clamped() * (e / (u - 1.0))
        };
        positive_part(self) + ln1p
    }

    fn exp_slice(v: &mut [f32]) {
        let p = v.as_mut_ptr();
        // SAFETY: `p` holds `v.len()` floats, read and written in place.
        unsafe { exp_f32s(p, p, v.len()) }
    }

    fn exp_into(src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "exp_into: lengths");
        // SAFETY: `src` and `dst` hold `dst.len()` floats each, apart.
        unsafe { exp_f32s(src.as_ptr(), dst.as_mut_ptr(), dst.len()) }
    }
}

/// `dst[i] = e^src[i]` for `i < n`, on 8-lane vectors where the CPU has AVX2
/// and FMA (on AVX-512 CPUs too: their softmax rows run `avx512::exp16`).
///
/// # Safety
/// `src` and `dst` are valid for `n` floats, and equal if they overlap.
unsafe fn exp_f32s(src: *const f32, dst: *mut f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vector_bytes() >= 32 {
        // SAFETY: the CPU has AVX2 and FMA; the pointers: this function's contract.
        return unsafe { avx2::exp_slice(src, dst, n) };
    }
    for i in 0..n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = (*src.add(i)).exp_() };
    }
}

/// `exp` of 8 `f32` lanes with AVX2 and FMA: the steps of [`exp_le_f32`],
/// each multiply-add fused (LLVM vectorizes the scalar form, but does not
/// fuse: this runs the same polynomial in about half the instructions).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let set = _mm256_set1_ps;
        // min/max return their second operand when either is NaN: NaN goes through.
        let x = _mm256_max_ps(set(-104.0), _mm256_min_ps(set(89.0), x));
        let t = _mm256_mul_ps(x, set(std::f32::consts::LOG2_E));
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let r = _mm256_fnmadd_ps(t, set(super::LN2_HI), x);
        let r = _mm256_fnmadd_ps(t, set(super::LN2_LO), r);
        let mut p = set(super::EXP_P[0]);
        for &c in &super::EXP_P[1..] {
            p = _mm256_fmadd_ps(p, r, set(c));
        }
        let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set(1.0)));
        // 2^n in two halves, each a normal float, as in the scalar form.
        let n = _mm256_cvtps_epi32(t);
        let half = _mm256_srai_epi32::<1>(n);
        let bias = _mm256_set1_epi32(127);
        let pow2 = |e| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(e, bias)));
        let (lo, hi) = (pow2(half), pow2(_mm256_sub_epi32(n, half)));
        _mm256_mul_ps(_mm256_mul_ps(y, lo), hi)
    }

    /// `sum(e^(x - m))`, one pass, nothing stored: `softmax::exp_sum` without
    /// `y` on AVX2 (its AVX-512 form, masked, is in `softmax/avx512.rs`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp_sum(x: &[f32], m: f32) -> f32 {
        let (mv, mut acc, steps) = (_mm256_set1_ps(m), _mm256_setzero_ps(), x.chunks_exact(8));
        let rest = steps.remainder();
        for c in steps {
            // SAFETY: `c` holds 8 floats.
            let e = exp8(_mm256_sub_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, mv));
            acc = _mm256_add_ps(acc, e);
        }
        // SAFETY: a vector of 8 `f32` has the layout of `[f32; 8]`.
        let lanes: [f32; 8] = unsafe { std::mem::transmute(acc) };
        let tail = rest.iter().map(|&v| super::Math::exp_(v - m));
        tail.fold(lanes.iter().sum(), |s: f32, e: f32| s + e)
    }

    /// [`super::exp_f32s`]: 8-lane steps, the tail through a buffer (an element
    /// gets the same bits wherever it falls; masked stores are slow on AMD).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_slice(src: *const f32, dst: *mut f32, n: usize) {
        let (tail, mut buf) = (n % 8, [0.0f32; 8]);
        // SAFETY (all three): every index is below n (the caller's contract).
        for i in (0..n - tail).step_by(8) {
            unsafe { _mm256_storeu_ps(dst.add(i), exp8(_mm256_loadu_ps(src.add(i)))) };
        }
        unsafe { std::ptr::copy(src.add(n - tail), buf.as_mut_ptr(), tail) };
        let e = exp8(_mm256_loadu_ps(buf.as_ptr()));
        unsafe { std::ptr::copy(&e as *const __m256 as *const f32, dst.add(n - tail), tail) };
    }
}

/// `exp` of 16 `f32` lanes with AVX-512F, for the row kernels of softmax.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// Inputs are clamped to `[LO, HI]`: below `LO` the result rounds to 0
    /// (`2^-150`), above `HI` it is `+inf`, and `±inf` inputs stay in range
    /// of the reduction (no `inf - inf`).
    const LO: f32 = -104.0;
    const HI: f32 = 89.0;

    /// `e^x` of 16 lanes: `x = n·ln2 + r` (`n` the nearest integer of
    /// `x·log2(e)`, `ln2` in two parts so that `r` is exact), `e^r` by a
    /// degree-5 polynomial on `|r| <= ln2/2` (minimax for the relative error,
    /// fitted here with `c0 = 1`; 1.5e-7 at most after rounding), then
    /// `2^n·e^r` by `vscalefps`, which rounds to subnormals and to 0 below
    /// the range and gives `inf` above. NaN goes through: `max`/`min` return
    /// their second operand when either is NaN.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        exp16_le(_mm512_min_ps(_mm512_set1_ps(HI), x))
    }

    /// [`exp16`] of `x <= HI` (or NaN): the forward passes take `exp` of
    /// `x - max <= 0` only, and save the upper clamp.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp16_le(x: __m512) -> __m512 {
        let x = _mm512_max_ps(_mm512_set1_ps(LO), x);
        let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(t, _mm512_set1_ps(super::LN2_HI), x);
        let r = _mm512_fnmadd_ps(t, _mm512_set1_ps(super::LN2_LO), r);
        let mut p = _mm512_set1_ps(0.008_290_272);
        for c in [0.041_898_16, 0.166_676_39, 0.499_991_48, 0.999_999_7, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_of<T: Math>(v: T) -> f64 {
        v.to_f64().expect("a float")
    }

    /// The largest error of `f` against `want` (in `f64`), relative to
    /// `max(|want|, floor)`, over `xs`.
    fn worst<T: Math>(xs: &[T], f: impl Fn(T) -> T, want: impl Fn(f64) -> f64, floor: f64) -> f64 {
        let err = |w: f64, x: T| (f64_of(f(x)) - w).abs() / w.abs().max(floor);
        xs.iter()
            .map(|&x| err(want(f64_of(x)), x))
            .fold(0.0, f64::max)
    }

    fn grid<T: Math>(lo: f64, hi: f64, n: usize) -> Vec<T> {
        let at = |i| T::from_f64(lo + (hi - lo) * (i as f64 / n as f64)).expect("a float");
        (0..=n).map(at).collect()
    }

    #[test]
    fn functions_are_within_a_few_ulp() {
        let xs = grid(-20.0, 20.0, 80_000);
        assert!(worst(&xs, f32::tanh_, f64::tanh, 1e-30) < 4e-7);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!(worst(&xs, f32::sigmoid, sig, 1e-30) < 4e-7);
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        assert!(worst(&grid(-87.0, 100.0, 80_000), f32::softplus, softplus, 1e-30) < 4e-7);
        assert!(worst(&grid(-87.0, 88.0, 200_000), f32::exp_, f64::exp, 1e-30) < 3e-7);
        // Subnormal results: within one step of the subnormal grid.
        assert!(worst(&grid(-103.0, -87.5, 10_000), f32::exp_, f64::exp, 0.0) < 1.0);
        let ys: Vec<f32> = (1..=200_000).map(|i| i as f32 * 5e-6).collect();
        assert!(worst(&ys, f32::ln_clamped, |x| x.ln().max(-100.0), 1.0) < 2e-7);
        // f64 in units of `f64::EPSILON` relative to the standard library;
        // the floor `f64::MIN_POSITIVE` counts subnormal results in steps of
        // their grid (the reference sigmoid is `e^x / (1 + e^x)` below 0).
        let sig = |x: f64| x.min(0.0).exp() / (1.0 + (-x.abs()).exp());
        for (lo, hi) in [(-745.0, 709.7), (-40.0, 40.0), (-1.0, 1.0), (-1e-6, 1e-6)] {
            let xs = grid(lo, hi, 300_000);
            let ulps = |f: fn(f64) -> f64, want: fn(f64) -> f64| {
                worst(&xs, f, want, f64::MIN_POSITIVE) / f64::EPSILON
            };
            assert!(ulps(f64::exp_, f64::exp) < 2.0, "exp on [{lo}, {hi}]");
            assert!(ulps(f64::tanh_, f64::tanh) < 3.0, "tanh on [{lo}, {hi}]");
            assert!(ulps(f64::sigmoid, sig) < 4.0, "sigmoid on [{lo}, {hi}]");
        }
    }

    /// Relative error of `T::exp_slice` (the SIMD `exp` this CPU runs)
    /// against `f64::exp`, over `[lo, hi]`.
    fn exp_slice_worst<T: Math>(lo: f64, hi: f64, n: usize) -> f64 {
        let xs: Vec<T> = grid(lo, hi, n - 1);
        let mut ys = xs.clone();
        T::exp_slice(&mut ys);
        let (tiny, max) = (f64_of(T::min_positive_value()), f64_of(T::max_value()));
        let mut worst = 0.0f64;
        for (x, y) in xs.into_iter().map(f64_of).zip(ys.into_iter().map(f64_of)) {
            let want = x.exp();
            if want > tiny && want < max {
                worst = worst.max(((y - want) / want).abs());
            } else if want >= max * 1.001 {
                assert_eq!(y, f64::INFINITY, "exp({x})");
            } else {
                // Subnormal or 0: absolutely tiny, never negative or NaN.
                assert!((0.0..=tiny).contains(&y), "exp({x}) = {y}");
            }
        }
        worst
    }

    #[test]
    fn simd_exp_is_accurate_over_a_wide_range() {
        let worst = exp_slice_worst::<f32>(-87.0, 0.0, 1_000_003);
        assert!(worst < 2e-7, "worst relative error on [-87, 0]: {worst}");
        let worst = exp_slice_worst::<f32>(-87.0, 88.0, 1_000_003);
        assert!(worst < 2e-7, "worst relative error on [-87, 88]: {worst}");
        assert!(exp_slice_worst::<f32>(-1e4, 1e4, 200_001) < 2e-7);
        assert!(exp_slice_worst::<f64>(-1e4, 1e4, 200_001) < 2.0 * f64::EPSILON);
        // Every length through the tails of the vector loops.
        for n in 2..=40 {
            let w = [
                exp_slice_worst::<f32>(-20.0, 5.0, n),
                exp_slice_worst::<f64>(-20.0, 5.0, n),
            ];
            assert!(w[0] < 2e-7 && w[1] < 2.0 * f64::EPSILON, "n = {n}");
        }
    }

    /// NaN, `±inf` and `±1e4` in every function, then every slice form (each
    /// instruction set) on `[lo, hi]` and those values, against the scalar
    /// one: equal, or within `tol` for `f32::exp_slice` (its own SIMD `exp`).
    fn limits<T: Math>(lo: f64, hi: f64, tol: f64) {
        use crate::activation::Activation::{Sigmoid, TanH};
        let fs = [T::exp_, T::tanh_, T::sigmoid, T::ln_clamped, T::softplus];
        assert!(fs.iter().all(|f| f(T::nan()).is_nan()), "{}", T::NAME);
        let inf = f64::INFINITY;
        for (x, want) in [
            (-inf, [0.0, -1.0, 0.0]),
            (-1e4, [0.0, -1.0, 0.0]),
            (1e4, [inf, 1.0, 1.0]),
            (inf, [inf, 1.0, 1.0]),
        ] {
            let x = T::from_f64(x).expect("a float");
            let got = [x.exp_(), x.tanh_(), x.sigmoid()].map(f64_of);
            assert_eq!(got, want, "{}", T::NAME);
        }
        assert!(T::tanh_(-T::zero()).is_sign_negative() && T::exp_(T::zero()) == T::one());
        let mut xs = grid(lo, hi, 1_001);
        xs[0] = T::nan(); // in a whole vector, and in the tail below
        xs.extend([-T::infinity(), T::infinity(), -T::zero(), T::nan()]);
        for (slice, f) in [
            (T::exp_slice as fn(&mut [T]), T::exp_ as fn(T) -> T),
            (|v| TanH.forward(v), T::tanh_),
            (|v| Sigmoid.forward(v), T::sigmoid),
        ] {
            let mut v = xs.clone();
            slice(&mut v);
            for (&g, &x) in v.iter().zip(&xs) {
                let (g, w) = (f64_of(g), f64_of(f(x)));
                let same = g == w || (g.is_nan() && w.is_nan());
                assert!(same || (g - w).abs() <= tol * w.abs(), "{x:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn special_values_and_nan() {
        limits::<f32>(-110.0, 95.0, 4e-7);
        limits::<f64>(-760.0, 720.0, 0.0);
        assert_eq!(f32::exp_(100.0), f32::INFINITY);
        // sigmoid(-100) is e^-100 (subnormal), not a clamped constant.
        let s = f32::sigmoid(-100.0) as f64;
        assert!((s - (-100.0_f64).exp()).abs() <= 1.5e-45, "{s}");
        assert!((f64::sigmoid(-740.0) - (-740.0_f64).exp()).abs() <= 5e-324);
        // f64: the smallest subnormal result, the largest finite one, then inf.
        assert_eq!([-745.0, 709.79].map(f64::exp_), [5e-324, f64::INFINITY]);
        assert_eq!(f64::exp_(709.78), 709.78_f64.exp());
        assert_eq!(
            [200.0_f32, -200.0, 30.0, -100.0].map(f32::tanh_),
            [1.0, -1.0, 1.0, -1.0]
        );
        assert_eq!([200.0_f32, -200.0].map(f32::sigmoid), [1.0, 0.0]);
        let lns = [0.0_f32, -0.0, -1.0, f32::INFINITY, 1e-40].map(f32::ln_clamped);
        assert_eq!(lns[..2], [-100.0, -100.0]);
        assert!(lns[2].is_nan() && lns[3] == f32::INFINITY);
        assert!((lns[4] as f64 - 1e-40_f64.ln()).abs() < 1e-5, "{}", lns[4]);
    }
}
