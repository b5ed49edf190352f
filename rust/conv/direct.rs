//! The direct convolution kernels, for small patches: the sums of
//! `im2col.rs`'s products (in another order) held in registers, `R` output
//! pixels (or `G` patch entries) by `L` output channels at a time, read from
//! the input where it lies. The input is read zero padded (a padded copy
//! when the convolution has padding), so no read needs a bounds test; the
//! weight and bias are zero padded to whole register blocks once per call.

use ndarray::{s, ArrayView2, ArrayViewMut2};

use super::im2col::{with_scratch_in, SCRATCH};
use super::Conv2dParams;
use crate::float::Float;
use crate::matmul::sum_rows_into;
use crate::simd::{multiversion, vector_bytes};

/// The longest patch (`Kh·Kw·Cin`) the direct kernels take (see
/// [`super::use_direct`]).
pub(super) const DIRECT_MAX_PATCH: usize = 160;

/// Where the direct kernels read: samples of the input, zero padded, as
/// `(n, hp, wp, cin)`, and the offset of each patch entry from the corner of
/// its receptive field.
struct Direct {
    /// Padded sample size (`hp·wp·cin`).
    sample: usize,
    /// Offsets of the `Kh·Kw·Cin` patch entries, in the weight's order.
    offs: [usize; DIRECT_MAX_PATCH],
    kc: usize,
    ho: usize,
    wo: usize,
    /// Steps between receptive fields along the rows and the columns.
    step_h: usize,
    step_w: usize,
}

impl Direct {
    fn new(p: &Conv2dParams) -> Self {
        let (ho, wo) = p.out_dims();
        let wp = p.w + 2 * p.pw;
        let hp = p.h + 2 * p.ph;
        let line = wp * p.cin;
        // entry `t = (ki·Kw + kj)·Cin + c` lies `ki` lines and `kj·Cin + c` further
        let run = p.kw * p.cin;
        let offs = std::array::from_fn(|t| t / run.max(1) * line + t % run.max(1));
        Direct {
            sample: hp * line,
            offs,
            kc: p.patch(),
            ho,
            wo,
            step_h: p.sh * line,
            step_w: p.sw * p.cin,
        }
    }

    /// Checks that `xp` is whole padded samples and that the last patch entry
    /// of the last receptive field lies inside a sample: every read of the
    /// forward kernels (`bases[i] + offs[t]`) is then in bounds. Returns
    /// the patch's offsets and the output pixels per sample.
    fn assert_inside<T>(&self, xp: &[T]) -> (&[usize], usize) {
        let last = (self.ho - 1) * self.step_h + (self.wo - 1) * self.step_w;
        assert!(
            last + self.offs[self.kc - 1] < self.sample && xp.len().is_multiple_of(self.sample)
        );
        (&self.offs[..self.kc], self.ho * self.wo)
    }

    /// The starts of the receptive fields of the next `R` output pixels from
    /// `(oi, oj)` (`nr` of them real; past the last one, the last repeats, its
    /// sums never stored), leaving `(oi, oj)` on the pixel after the group.
    #[inline(always)]
    fn group_bases<const R: usize>(&self, nr: usize, oi: &mut usize, oj: &mut usize) -> [usize; R] {
        let mut bases = [0usize; R];
        for (i, b) in bases.iter_mut().enumerate() {
            *b = *oi * self.step_h + *oj * self.step_w;
            if i + 1 < nr {
                self.next_pixel(oi, oj);
            }
        }
        self.next_pixel(oi, oj);
        bases
    }

    #[inline(always)]
    fn next_pixel(&self, oi: &mut usize, oj: &mut usize) {
        *oj += 1;
        if *oj == self.wo {
            (*oi, *oj) = (*oi + 1, 0);
        }
    }
}

/// Runs `f` on samples `n0..n1` of `x` (standard layout `(N, H, W, Cin)`)
/// zero padded to `(hp, wp, cin)`: the input itself without padding, else a
/// padded copy in the thread's scratch buffer.
fn with_padded<T: Float, R>(
    xs: &[T],
    p: &Conv2dParams,
    n0: usize,
    n1: usize,
    f: impl FnOnce(&[T]) -> R,
) -> R {
    let sample = p.h * p.w * p.cin;
    if p.ph == 0 && p.pw == 0 {
        return f(&xs[n0 * sample..n1 * sample]);
    }
    let (hp, wp) = (p.h + 2 * p.ph, p.w + 2 * p.pw);
    let (line, run) = (wp * p.cin, p.w * p.cin);
    with_scratch_in(&SCRATCH, (n1 - n0) * hp * line, |buf: &mut [T]| {
        buf.fill(T::zero());
        for (dst, src) in buf
            .chunks_exact_mut(hp * line)
            .zip(xs[n0 * sample..n1 * sample].chunks_exact(sample.max(1)))
        {
            for (i, row) in src.chunks_exact(run.max(1)).enumerate() {
                let o = (i + p.ph) * line + p.pw * p.cin;
                dst[o..o + run].copy_from_slice(row);
            }
        }
        f(buf)
    })
}

/// `a + x·y`, fused where the caller is compiled with FMA.
#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, x: T, y: T) -> T {
    if FMA {
        x.mul_add(y, a)
    } else {
        a + x * y
    }
}

/// Forward pass of one chunk: `out (rows, cout) = patches · w + b`, `R`
/// output pixels of a row by `L` output channels at a time in registers.
/// `wpad (kc, cpad)` and `bpad (cpad,)` are zero padded to `cpad`, a
/// multiple of `L`.
#[inline(always)]
fn direct_forward_body<T: Float, const L: usize, const R: usize, const FMA: bool>(
    xp: &[T],
    d: &Direct,
    wpad: &[T],
    bpad: &[T],
    cpad: usize,
    out: &mut [T],
    cout: usize,
) {
    let (offs, pixels) = d.assert_inside(xp);
    for (xsmp, osmp) in xp
        .chunks_exact(d.sample)
        .zip(out.chunks_exact_mut(pixels * cout))
    {
        // the pixels of a sample in rows of `R`, across the output's rows
        let (mut oi, mut oj) = (0, 0);
        let mut p0 = 0;
        while p0 < pixels {
            let nr = R.min(pixels - p0);
            let bases = d.group_bases::<R>(nr, &mut oi, &mut oj);
            for c0 in (0..cpad).step_by(L) {
                let bias: [T; L] = bpad[c0..c0 + L].try_into().expect("L lanes");
                let mut acc = [bias; R];
                // the weight rows zipped in: one bounds test per row, hoisted
                for (&off, wrow) in offs.iter().zip(wpad.chunks_exact(cpad)) {
                    let wv: &[T; L] = wrow[c0..c0 + L].try_into().expect("L lanes");
                    for i in 0..R {
                        // SAFETY: `bases[i]` starts a receptive field of this
                        // sample and `off <= offs[kc - 1]`: inside the sample
                        // (`assert_inside` above).
                        let xv = unsafe { *xsmp.get_unchecked(bases[i] + off) };
                        for l in 0..L {
                            acc[i][l] = madd::<T, FMA>(acc[i][l], xv, wv[l]);
                        }
                    }
                }
                let valid = L.min(cout - c0);
                for (i, a) in acc.iter().enumerate().take(nr) {
                    let o = (p0 + i) * cout + c0;
                    if valid == L {
                        // a constant length: stores, not a call to memmove
                        osmp[o..o + L].copy_from_slice(a);
                    } else {
                        osmp[o..o + valid].copy_from_slice(&a[..valid]);
                    }
                }
            }
            p0 += R;
        }
    }
}

/// Weight gradient of one chunk, added into `gw (kc, cpad)`, and the bias
/// gradient, added into `gb (cout,)` unless empty: for `G` patch entries by
/// `L` output channels at a time, the products of every output pixel summed
/// in registers, tiles of `TILE` pixels at a time (the bias from each tile's
/// δ rows, in cache).
#[inline(always)]
fn direct_weight_body<T: Float, const L: usize, const G: usize, const FMA: bool>(
    (xp, d, delta, cout): (&[T], &Direct, &[T], usize),
    gw: &mut [T],
    gb: &mut [T],
    cpad: usize,
) {
    const TILE: usize = 64;
    let kc = d.kc;
    let wo = d.wo;
    let rows = delta.len() / cout;
    // the last patch entry of the last receptive field lies inside `xp`
    let n = rows / (d.ho * wo).max(1);
    let last =
        (n.max(1) - 1) * d.sample + (d.ho - 1) * d.step_h + (wo - 1) * d.step_w + d.offs[kc - 1];
    assert!(rows == 0 || last < xp.len());
    assert!(delta.len() == rows * cout && gw.len() >= kc * cpad);
    assert!(gb.is_empty() || gb.len() == cout);
    // the start of each receptive field of a tile
    let mut starts = [0usize; TILE];
    // the output pixel the next tile starts at
    let (mut smp, mut oi, mut oj) = (0, 0, 0);
    let mut r0 = 0;
    while r0 < rows {
        let nt = TILE.min(rows - r0);
        for st in starts.iter_mut().take(nt) {
            *st = smp * d.sample + oi * d.step_h + oj * d.step_w;
            d.next_pixel(&mut oi, &mut oj);
            if oi == d.ho {
                (oi, smp) = (0, smp + 1);
            }
        }
        // the tile's δ rows
        let dt = &delta[r0 * cout..(r0 + nt) * cout];
        if !gb.is_empty() {
            sum_rows_into(gb, dt, true);
        }
        for c0 in (0..cpad).step_by(L) {
            for t0 in (0..kc).step_by(G) {
                // past the patch's end, repeat its last entry (those sums are dropped)
                let offs: [usize; G] = std::array::from_fn(|g| d.offs[(t0 + g).min(kc - 1)]);
                let acc = weight_tile::<T, L, G, FMA>(xp, &starts[..nt], dt, cout, c0, &offs);
                for (g, a) in acc.iter().enumerate().take(kc - t0) {
                    let row = (t0 + g) * cpad + c0;
                    for (o, &v) in gw[row..row + L].iter_mut().zip(a) {
                        *o += v;
                    }
                }
            }
        }
        r0 += nt;
    }
}

/// One tile of [`direct_weight_body`]: `Σ x[start + offs[g]] · δ[row, c0..c0 + L]`
/// over the tile's pixels (`starts`, one per row of `dt`) for each `g`, the
/// `G·L` sums, the δ row and the input value in registers.
#[inline(always)]
fn weight_tile<T: Float, const L: usize, const G: usize, const FMA: bool>(
    xp: &[T],
    starts: &[usize],
    dt: &[T],
    cout: usize,
    c0: usize,
    offs: &[usize; G],
) -> [[T; L]; G] {
    let mut acc = [[T::zero(); L]; G];
    let valid = L.min(cout - c0);
    if valid == L {
        assert!(dt.len() >= starts.len() * cout && c0 + L <= cout);
        for (k, &xs) in starts.iter().enumerate() {
            // SAFETY: `k·cout + c0 + L <= dt.len()`, checked above; an
            // unaligned read of `L` values compiles to vector loads, where
            // `try_into` on the slice built the vector lane by lane.
            let dv = unsafe { (dt.as_ptr().add(k * cout + c0) as *const [T; L]).read_unaligned() };
            weight_pixel::<T, L, G, FMA>(xp, xs, offs, &dv, &mut acc);
        }
    } else {
        for (dr, &xs) in dt.chunks_exact(cout).zip(starts) {
            let mut dv = [T::zero(); L];
            dv[..valid].copy_from_slice(&dr[c0..c0 + valid]);
            weight_pixel::<T, L, G, FMA>(xp, xs, offs, &dv, &mut acc);
        }
    }
    acc
}

/// One pixel of [`weight_tile`] (a function, not a closure: a closure is not
/// compiled with the caller's target features, and `mul_add` became a call).
#[inline(always)]
fn weight_pixel<T: Float, const L: usize, const G: usize, const FMA: bool>(
    xp: &[T],
    xs: usize,
    offs: &[usize; G],
    dv: &[T; L],
    acc: &mut [[T; L]; G],
) {
    // SAFETY (here and below): `xs` starts a receptive field inside `xp` and
    // `offs[g] <= offs[kc - 1]`, so `xs + offs[g]` is at most the `last`
    // checked by `direct_weight_body`. A pointer to the field: each read is
    // then one addressing mode.
    let field = unsafe { xp.as_ptr().add(xs) };
    for g in 0..G {
        let xv = unsafe { *field.add(offs[g]) };
        for l in 0..L {
            acc[g][l] = madd::<T, FMA>(acc[g][l], xv, dv[l]);
        }
    }
}

/// Patch entries per pass of the weight kernel: one of the sizes
/// [`direct_weight_groups`] is instantiated for, at most `gmax` (what the
/// registers hold), spread evenly over the fewest passes.
fn weight_group(kc: usize, gmax: usize) -> usize {
    let need = kc.div_ceil(kc.div_ceil(gmax));
    [3, 5, 6, 7, 9]
        .into_iter()
        .find(|&g| g >= need && g <= gmax)
        .unwrap_or(gmax)
}

/// `$f::<T, L, K, FMA>(args)` for a [`multiversion!`] version of vector
/// width `W` bytes: `L` lanes (two vectors of `T`), `K = $k4` with AVX-512's
/// 32 registers, `$k` with 16 (AVX2, SSE), FMA with AVX2 and AVX-512. The
/// conditions are constants, so each version keeps only the call it takes.
macro_rules! by_width {
    ($w:ident, $t:ident, $f:ident::<$k4:literal, $k:literal>($($arg:expr),*)) => {
        if const { $w == 64 } {
            if const { std::mem::size_of::<$t>() == 4 } {
                $f::<$t, 32, $k4, true>($($arg),*)
            } else {
                $f::<$t, 16, $k4, true>($($arg),*)
            }
        } else if const { $w == 32 } {
            if const { std::mem::size_of::<$t>() == 4 } {
                $f::<$t, 16, $k, true>($($arg),*)
            } else {
                $f::<$t, 8, $k, true>($($arg),*)
            }
        } else if const { std::mem::size_of::<$t>() == 4 } {
            $f::<$t, 8, $k, false>($($arg),*)
        } else {
            $f::<$t, 4, $k, false>($($arg),*)
        }
    };
}

/// The direct forward kernel: for `f32` with at most 32 output channels on
/// AVX-512, [`forward_f32_c32`]; else [`direct_forward_generic`].
fn direct_forward<T: Float>(f: &DirectForward<T>, xp: &[T], out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if vector_bytes() == 64 && f.cpad == 32 {
        use crate::simd::{as_f32, as_f32_mut};
        let (w, b) = (as_f32(&f.wpad), as_f32(&f.bpad));
        if let (Some(xp), Some(w), Some(b), Some(out)) = (as_f32(xp), w, b, as_f32_mut(out)) {
            // SAFETY: `vector_bytes` is 64 only where the CPU has AVX-512F.
            return unsafe { forward_f32_c32::<6>(xp, &f.d, w, b, out, f.cout) };
        }
    }
    direct_forward_generic(xp, &f.d, &f.wpad, &f.bpad, f.cpad, out, f.cout)
}

multiversion! {
    /// [`direct_forward_body`] for the vector width `W`: two vectors of
    /// channels by 6 pixels (12 sums, in 16 registers too). Slice arguments,
    /// which the compiler knows do not alias `out`.
    fn direct_forward_generic<T: Float, const W: usize>(
        xp: &[T],
        d: &Direct,
        w: &[T],
        b: &[T],
        cpad: usize,
        out: &mut [T],
        cout: usize,
    ) {
        by_width!(W, T, direct_forward_body::<6, 6>(xp, d, w, b, cpad, out, cout))
    }
}

/// [`direct_forward_body`] for `f32`, at most 32 output channels (two
/// registers), `R` output pixels at a time, by explicit AVX-512, the sums in
/// registers and the channels past `cout` masked off at the store (the
/// compiler's version of the generic body kept fewer sums in registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_f32_c32<const R: usize>(
    xp: &[f32],
    d: &Direct,
    wpad: &[f32],
    bpad: &[f32],
    out: &mut [f32],
    cout: usize,
) {
    use std::arch::x86_64::*;
    let (offs, pixels) = d.assert_inside(xp);
    let kc = offs.len();
    assert!(cout <= 32 && wpad.len() >= kc * 32 && bpad.len() >= 32);
    assert!(out.len() >= xp.len() / d.sample * pixels * cout);
    let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    let (mask_lo, mask_hi) = (lanes(cout), lanes(cout.saturating_sub(16)));
    // SAFETY: every read of `xsmp` lies inside its sample (`assert_inside`); `wpad` and `bpad` hold `kc·32` and 32 values; each output
    // pixel's `cout` values lie in `out` and the masks store no more.
    unsafe {
        let (b0, b1) = (
            _mm512_loadu_ps(bpad.as_ptr()),
            _mm512_loadu_ps(bpad.as_ptr().add(16)),
        );
        for (smp, xsmp) in xp.chunks_exact(d.sample).enumerate() {
            let osmp = out.as_mut_ptr().add(smp * pixels * cout);
            let (mut oi, mut oj) = (0, 0);
            let mut p0 = 0;
            while p0 < pixels {
                let nr = R.min(pixels - p0);
                let bases = d.group_bases::<R>(nr, &mut oi, &mut oj);
                let mut lo = [b0; R];
                let mut hi = [b1; R];
                for (t, &off) in offs.iter().enumerate() {
                    let w0 = _mm512_loadu_ps(wpad.as_ptr().add(t * 32));
                    let w1 = _mm512_loadu_ps(wpad.as_ptr().add(t * 32 + 16));
                    for i in 0..R {
                        let x = _mm512_set1_ps(*xsmp.get_unchecked(bases[i] + off));
                        lo[i] = _mm512_fmadd_ps(x, w0, lo[i]);
                        hi[i] = _mm512_fmadd_ps(x, w1, hi[i]);
                    }
                }
                for i in 0..nr {
                    let o = osmp.add((p0 + i) * cout);
                    _mm512_mask_storeu_ps(o, mask_lo, lo[i]);
                    _mm512_mask_storeu_ps(o.wrapping_add(16), mask_hi, hi[i]);
                }
                p0 += R;
            }
        }
    }
}

/// [`direct_weight_body`] with as many patch entries per pass (`G`) as
/// `GMAX` allows: two registers per patch entry (`L` lanes) besides the
/// δ row and the input value.
#[inline(always)]
fn direct_weight_groups<T: Float, const L: usize, const GMAX: usize, const FMA: bool>(
    xp: &[T],
    d: &Direct,
    delta: &[T],
    cout: usize,
    gw: &mut [T],
    gb: &mut [T],
    cpad: usize,
) {
    let args = (xp, d, delta, cout);
    match weight_group(d.kc, GMAX) {
        3 => direct_weight_body::<T, L, 3, FMA>(args, gw, gb, cpad),
        5 => direct_weight_body::<T, L, 5, FMA>(args, gw, gb, cpad),
        6 => direct_weight_body::<T, L, 6, FMA>(args, gw, gb, cpad),
        7 => direct_weight_body::<T, L, 7, FMA>(args, gw, gb, cpad),
        _ => direct_weight_body::<T, L, 9, FMA>(args, gw, gb, cpad),
    }
}

multiversion! {
    /// The direct weight-gradient kernel for the vector width `W`. AVX-512
    /// has 32 registers: up to 9 patch entries per pass, a 3×3 patch in one
    /// pass over δ (more spill); AVX2 and SSE have 16: up to 6.
    fn direct_weight<T: Float, const W: usize>(
        xp: &[T],
        d: &Direct,
        delta: &[T],
        cout: usize,
        gw: &mut [T],
        gb: &mut [T],
        cpad: usize,
    ) {
        by_width!(W, T, direct_weight_groups::<9, 6>(xp, d, delta, cout, gw, gb, cpad))
    }
}

/// `cout` rounded up to a whole number of register blocks: two vectors of
/// the version [`multiversion!`] runs.
fn padded_cout<T: Float>(cout: usize) -> usize {
    let lanes = 2 * vector_bytes() / std::mem::size_of::<T>();
    cout.div_ceil(lanes) * lanes
}

/// The direct forward pass of a convolution: the weight and bias zero
/// padded to `cpad` output channels, made once per call.
pub(super) struct DirectForward<T> {
    d: Direct,
    wpad: Vec<T>,
    bpad: Vec<T>,
    cpad: usize,
    cout: usize,
}

impl<T: Float> DirectForward<T> {
    /// `wm (Kh·Kw·Cin, Cout)`, the weight matrix, and the bias.
    pub(super) fn new(p: &Conv2dParams, wm: ArrayView2<'_, T>, b: Option<&[T]>) -> Self {
        let cpad = padded_cout::<T>(p.cout);
        let mut wpad = vec![T::zero(); p.patch() * cpad];
        let wv = ArrayViewMut2::from_shape((p.patch(), cpad), &mut wpad[..]).expect("sized");
        wv.slice_move(s![.., ..p.cout]).assign(&wm);
        let mut bpad = vec![T::zero(); cpad];
        if let Some(b) = b {
            bpad[..p.cout].copy_from_slice(b);
        }
        let (d, cout) = (Direct::new(p), p.cout);
        DirectForward {
            d,
            wpad,
            bpad,
            cpad,
            cout,
        }
    }

    /// The output `oc (n1 - n0, Ho, Wo, Cout)` of samples `n0..n1` of `xs`.
    pub(super) fn run(&self, xs: &[T], p: &Conv2dParams, (n0, n1): (usize, usize), oc: &mut [T]) {
        with_padded(xs, p, n0, n1, |xp| direct_forward(self, xp, oc));
    }
}

/// The direct weight gradient of a convolution.
pub(super) struct DirectWeight {
    d: Direct,
    cpad: usize,
}

impl DirectWeight {
    pub(super) fn new<T: Float>(p: &Conv2dParams) -> Self {
        let (d, cpad) = (Direct::new(p), padded_cout::<T>(p.cout));
        DirectWeight { d, cpad }
    }

    /// Adds the weight gradient of samples `n0..n1` of `xs` into `gw (Kh·Kw·Cin,
    /// Cout)` and the sums of their δ `ds` into `gb` (when it is not empty).
    pub(super) fn run<T: Float>(
        &self,
        (xs, ds): (&[T], &[T]),
        p: &Conv2dParams,
        (n0, n1): (usize, usize),
        gw: &mut [T],
        gb: &mut [T],
    ) {
        let (cpad, cout) = (self.cpad, p.cout);
        let mut gwpad = vec![T::zero(); p.patch() * cpad];
        with_padded(xs, p, n0, n1, |xp| {
            direct_weight(xp, &self.d, ds, cout, &mut gwpad, gb, cpad)
        });
        for (g, s) in gw.chunks_exact_mut(cout).zip(gwpad.chunks_exact(cpad)) {
            g.iter_mut().zip(s).for_each(|(d, &v)| *d += v);
        }
    }
}
