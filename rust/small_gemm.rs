//! Products of the linear layer, laid out so that the `gemm` crate takes its
//! fast paths on small batches.
//!
//! The crate's vector axis runs along the `n` columns of `out (m, n) = a (m,
//! k)·b (k, n)`. Two of its choices cost more than the product itself when
//! the batch is small:
//!
//! - it copies ("prepacks") all of `b` on every call when `n` is not a
//!   multiple of the vector width (16 `f32`). Here the widest multiple runs
//!   in place and the last full vector of columns into a small tile, whose
//!   last `n mod 16` columns are copied out: bitwise the result of one call
//!   (the same microkernels, the same order; only where the crate takes no
//!   other path: `3 <= k <= 512`, at least 2 rows).
//! - `δ (m, k)·Wᵀ`, `b` with unit *row* stride, makes the packing a strided
//!   gather. With both operands contiguous along `k` the crate has
//!   dot-product kernels for outputs of at most 256 elements: the columns are
//!   taken in chunks that fit (when `k >= 64`). These sum in another order
//!   (within a few ulp).
//!
//! Both only for outputs of at most `MAX_ROWS` rows; anything else is
//! [`gemm_into`] as it is (`cargo bench --bench kernels -- small_products`).

use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};

use crate::error::KernelError;
use crate::float::Float;
use crate::matmul::{gemm_into, par_min_work};

/// Outputs of at most this many elements go to the crate's dot-product kernels.
const HORIZONTAL_MAX: usize = 256;

/// The dot-product chunks pay from sums of this length.
const HORIZONTAL_MIN_K: usize = 64;

/// Both paths are taken up to this many rows of `out` (beyond, the packing
/// is small next to the product).
const MAX_ROWS: usize = 16;

/// The crate accumulates `k` in one block up to here (its `kc`), whatever `m` and `n`.
const ONE_K_BLOCK: usize = 512;

/// The vector width of the crate's widest kernels, in elements (64 bytes).
fn lanes<T>() -> usize {
    64 / std::mem::size_of::<T>()
}

/// `out = a·b` (`accumulate` false) or `out += a·b`, any strides, on small
/// batches through the crate's fast paths (see the module doc).
///
/// `tile` is a scratch buffer the caller keeps between calls.
pub fn product_into<T: Float>(
    mut out: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accumulate: bool,
    tile: &mut Vec<T>,
) -> Result<(), KernelError> {
    let beta = if accumulate { T::one() } else { T::zero() };
    let (m, k) = a.dim();
    let n = b.ncols();
    let plain = out.dim() != (m, n)
        || b.nrows() != k
        || !(2..=MAX_ROWS).contains(&m)
        || k < 3
        || m.saturating_mul(n).saturating_mul(k) >= par_min_work::<T>();
    if plain {
        return gemm_into(out, a, b, T::one(), beta);
    }
    let (a_cs, b_rs, b_cs) = (a.strides()[1], b.strides()[0], b.strides()[1]);
    let [o_rs, o_cs] = [out.strides()[0], out.strides()[1]];
    if a_cs == 1 && b_rs == 1 {
        // δ·Wᵀ: column chunks of at most HORIZONTAL_MAX outputs.
        if m * n <= HORIZONTAL_MAX || k < HORIZONTAL_MIN_K {
            return gemm_into(out, a, b, T::one(), beta);
        }
        let chunk = (HORIZONTAL_MAX / m / 4 * 4).max(4);
        let outs = out.axis_chunks_iter_mut(Axis(1), chunk);
        for (o, b) in outs.zip(b.axis_chunks_iter(Axis(1), chunk)) {
            gemm_into(o, a, b, T::one(), beta)?;
        }
        return Ok(());
    }
    let lanes = lanes::<T>();
    let row_major_out = o_cs == 1 && o_rs.unsigned_abs() >= n;
    if !(row_major_out && b_cs == 1 && k <= ONE_K_BLOCK && n > lanes && !n.is_multiple_of(lanes)) {
        return gemm_into(out, a, b, T::one(), beta);
    }
    // The last `lanes` columns into the tile (row-major, m × lanes), the rest in place.
    let main = n / lanes * lanes;
    let first = n - lanes;
    tile.resize(m * lanes, T::zero());
    let rows = out.rows_mut().into_iter().zip(tile.chunks_exact_mut(lanes));
    if accumulate {
        for (row, t) in rows {
            t.copy_from_slice(&row.as_slice().expect("unit column stride")[first..]);
        }
    }
    let mut t = ArrayViewMut2::from_shape((m, lanes), &mut tile[..]).expect("m·lanes elements");
    gemm_into(t.view_mut(), a, b.slice(s![.., first..]), T::one(), beta)?;
    for (mut row, t) in out.rows_mut().into_iter().zip(tile.chunks_exact(lanes)) {
        let row = row.as_slice_mut().expect("unit column stride");
        row[main..].copy_from_slice(&t[main - first..]);
    }
    let (out, b) = (out.slice_mut(s![.., ..main]), b.slice(s![.., ..main]));
    gemm_into(out, a, b, T::one(), beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::seq;
    use ndarray::{Array2, ShapeBuilder};

    /// The product by one `gemm_into` call and by `product_into`, on fresh
    /// outputs (`accumulate` false) or on a copy of `init`.
    fn both<T: Float>(
        a: ArrayView2<'_, T>,
        b: ArrayView2<'_, T>,
        init: &Array2<T>,
        accumulate: bool,
        out_f: bool,
    ) -> (Array2<T>, Array2<T>) {
        let (m, n) = (a.nrows(), b.ncols());
        let mk = || {
            let mut o = Array2::from_elem((m, n).set_f(out_f), T::nan());
            if accumulate {
                o.assign(init);
            }
            o
        };
        let (mut want, mut got) = (mk(), mk());
        let beta = if accumulate { T::one() } else { T::zero() };
        gemm_into(want.view_mut(), a, b, T::one(), beta).unwrap();
        let mut tile = vec![];
        product_into(got.view_mut(), a, b, accumulate, &mut tile).unwrap();
        (want, got)
    }

    fn check_bitwise<T: Float>() {
        // (m, k, n): the autoencoder's, odd widths, batch 1, k = 1 and 2.
        for &(m, k, n) in &[
            (10, 256, 100),
            (10, 100, 256),
            (10, 10, 100),
            (256, 10, 100),
            (100, 10, 10),
            (3, 17, 33),
            (1, 40, 100),
            (10, 2, 100),
            (10, 1, 37),
            (7, 600, 20),
            (12, 512, 40),
            (16, 40, 50),
            (5, 300, 17),
            (32, 32, 140),
            (2, 5, 9),
        ] {
            for accumulate in [false, true] {
                for out_f in [false, true] {
                    let init = seq::<T>(m, n, 2.0);
                    let (a, b) = (seq::<T>(m, k, 0.1), seq::<T>(k, n, 0.7));
                    let (want, got) = both(a.view(), b.view(), &init, accumulate, out_f);
                    assert_eq!(want, got, "{m}x{k}x{n} {accumulate} {out_f}");
                    // aᵀ strided, as the weight gradient's input.
                    let at = seq::<T>(k, m, 0.3);
                    let (want, got) = both(at.t(), b.view(), &init, accumulate, out_f);
                    assert_eq!(want, got, "ᵀ {m}x{k}x{n} {accumulate}");
                }
            }
        }
    }

    fn check_nt<T: Float>(tol: f64) {
        // δ (m, k)·Wᵀ for W (n, k): close to one call (another summation order).
        for &(m, k, n) in &[
            (10, 256, 100),
            (16, 100, 10),
            (16, 70, 33),
            (3, 64, 97),
            (3, 50, 97),
            (1, 9, 300),
            (17, 300, 40),
        ] {
            let d = seq::<T>(m, k, 0.2);
            let w = seq::<T>(n, k, 0.9);
            for accumulate in [false, true] {
                let init = seq::<T>(m, n, 1.0);
                let (want, got) = both(d.view(), w.t(), &init, accumulate, false);
                for (p, q) in want.iter().zip(&got) {
                    let (p, q) = (p.to_f64().unwrap(), q.to_f64().unwrap());
                    let ok = (p - q).abs() <= tol * (1.0 + p.abs());
                    assert!(ok, "{m}x{k}x{n}: {p} vs {q}");
                }
            }
        }
    }

    #[test]
    fn tail_split_is_bitwise_one_call_and_weight_chunks_match_it() {
        check_bitwise::<f32>();
        check_bitwise::<f64>();
        check_nt::<f32>(1e-5);
        check_nt::<f64>(1e-13);
    }
}
