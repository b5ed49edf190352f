//! Max and average pooling against plain loops, the SIMD paths against the generic ones.

use super::*;
use crate::error::assert_err;
use crate::float::{assert_close, filled};
use ndarray::{s, Array3, ShapeBuilder};

/// Straightforward pooling: argmax and [max, avg, the two gradients for `d`].
fn reference(
    x: &Array4<f64>,
    d: &Array4<f64>,
    p: &Pool2dParams,
) -> (Array4<i32>, [Array4<f64>; 4]) {
    let (ho, wo) = p.out_dims();
    let mut mx = Array4::zeros((p.n, ho, wo, p.c));
    let mut am = Array4::zeros((p.n, ho, wo, p.c));
    let mut av = Array4::zeros((p.n, ho, wo, p.c));
    let mut dmax = Array4::zeros(x.raw_dim());
    let mut davg = Array4::zeros(x.raw_dim());
    let area = (p.kh * p.kw) as f64;
    for n in 0..p.n {
        for i in 0..ho {
            for j in 0..wo {
                for c in 0..p.c {
                    let (mut best, mut at, mut sum) = (f64::NEG_INFINITY, 0, 0.0);
                    for a in i * p.sh..i * p.sh + p.kh {
                        for b in j * p.sw..j * p.sw + p.kw {
                            let v = x[[n, a, b, c]];
                            sum += v;
                            if v > best {
                                (best, at) = (v, a * p.w + b);
                            }
                            davg[[n, a, b, c]] += d[[n, i, j, c]] / area;
                        }
                    }
                    mx[[n, i, j, c]] = best;
                    am[[n, i, j, c]] = at as i32;
                    av[[n, i, j, c]] = sum / area;
                    dmax[[n, at / p.w, at % p.w, c]] += d[[n, i, j, c]];
                }
            }
        }
    }
    (am, [mx, av, dmax, davg])
}

#[test]
fn pool_matches_reference() {
    // (shape, k, stride): overlapping, gapped, k = input, batch 1, channel
    // 1, 1-D and 2-D.
    let cases: [(&[usize], _, _); 10] = [
        (&[2, 6, 7, 3], 2, 2),
        (&[1, 5, 5, 1], 3, 1),
        (&[3, 4, 4, 2], 4, 1),
        (&[2, 9, 8, 2], 2, 3),
        (&[1, 3, 3, 5], 1, 1),
        (&[100, 14, 14, 32], 2, 2),
        (&[2, 9, 3], 2, 2),
        (&[1, 7, 1], 7, 1),
        (&[3, 10, 2], 3, 4),
        (&[1, 4, 1], 1, 1),
    ];
    for (shape, k, s) in cases {
        let x = filled(ndarray::IxDyn(shape), 0.3);
        let p = pool_params("t", shape, k, s).unwrap();
        let d = filled(ndarray::IxDyn(&p.out_shape(shape.len())), 0.9);
        let (am, [mx, av, dmax, davg]) = reference(&to_4d(x.clone(), 1), &to_4d(d.clone(), 1), &p);
        let input = &shape[1..shape.len() - 1];
        let (y, a) = max_pool(x.view(), k, s).unwrap();
        assert_close(&to_4d(y, 1), &mx, 1e-12);
        assert_eq!(to_4d(a.clone(), 1), am);
        for win in [None, Some((k, s))] {
            let dx = max_pool_backward(d.view(), a.view(), input, win).unwrap();
            assert_close(&to_4d(dx, 1), &dmax, 1e-12);
        }
        assert_close(&to_4d(avg_pool(x.view(), k, s).unwrap(), 1), &av, 1e-12);
        let dx = avg_pool_backward(d.view(), input, k, s).unwrap();
        assert_close(&to_4d(dx, 1), &davg, 1e-12);
    }
}

#[test]
fn f32_simd_paths_match_the_reference() {
    // f32 takes twice the lanes of f64 per vector register (16 and 8 per
    // AVX-512 register); ties, NaN and -inf included. The f64 code is
    // checked against the reference and torch elsewhere.
    for &(n, h, w, c, k, s) in &[
        (3, 6, 7, 16, 2, 2),
        (2, 5, 5, 32, 3, 1),
        (2, 9, 8, 48, 2, 3),
        (1, 3, 9, 16, 3, 3),
        (2, 6, 6, 29, 2, 2),
    ] {
        let mut x = filled((n, h, w, c), 0.5);
        for (i, v) in x.iter_mut().enumerate() {
            match i % 37 {
                0 => *v = f64::NAN,
                5 => *v = f64::NEG_INFINITY,
                11 | 12 => *v = 0.25, // ties, often in one window
                _ => *v = (*v * 64.0).round() / 64.0, // exact in f32
            }
        }
        // the oracle: the generic code, on the same values in f64
        let (mx, am) = max_pool(x.view(), k, s).unwrap();
        let d = filled(mx.raw_dim(), 0.9).mapv(|v| (v * 64.0).round() / 64.0);
        let dmax = max_pool_backward(d.view(), am.view(), &[h, w], None).unwrap();
        let xf = x.mapv(|v| v as f32);
        let (y, a) = max_pool(xf.view(), k, s).unwrap();
        assert_eq!(a, am);
        for (got, want) in y.iter().zip(&mx) {
            assert!(got.to_bits() == (*want as f32).to_bits() || (got.is_nan() && want.is_nan()));
        }
        let df = d.mapv(|v| v as f32);
        for win in [None, Some((k, s))] {
            let dx = max_pool_backward(df.view(), a.view(), &[h, w], win).unwrap();
            assert_close(&dx.mapv(|v| v as f64), &dmax, 1e-12);
        }
    }
}

#[test]
fn window_path_matches_scatter_for_any_argmax() {
    // Indices outside their own window (valid positions all the same) and
    // repeated ones: the one-pass path hands those samples to the scatter.
    let d = filled((3, 2, 2, 2), 0.4);
    let mut a = Array4::<i32>::zeros((3, 2, 2, 2));
    for (i, v) in a.iter_mut().enumerate() {
        *v = [0, 5, 10, 15, 3, 12, 1, 6][i % 8] + (i / 24) as i32;
    }
    let scatter = max_pool_backward(d.view(), a.view(), &[4, 4], None).unwrap();
    let windowed = max_pool_backward(d.view(), a.view(), &[4, 4], Some((2, 2))).unwrap();
    assert_close(&windowed, &scatter, 1e-12);
    // the first sample's indices all lie in their windows: no fallback there
    a.index_axis_mut(Axis(0), 0)
        .assign(&Array3::from_shape_vec((2, 2, 2), vec![0, 5, 2, 7, 8, 13, 10, 15]).unwrap());
    let scatter = max_pool_backward(d.view(), a.view(), &[4, 4], None).unwrap();
    let windowed = max_pool_backward(d.view(), a.view(), &[4, 4], Some((2, 2))).unwrap();
    assert_close(&windowed, &scatter, 1e-12);
    // a bad index is an error on both paths
    a[[2, 1, 1, 1]] = 16;
    assert!(max_pool_backward(d.view(), a.view(), &[4, 4], Some((2, 2))).is_err());
    // delta that the window does not make
    let e = max_pool_backward(d.view(), a.view(), &[4, 4], Some((3, 2)));
    assert_err(e, "delta");
    let (d1, a1) = (filled((1, 3, 2), 0.1), Array3::zeros((1, 3, 2)));
    assert_err(
        max_pool_backward(d1.view(), a1.view(), &[8], Some((2, 2))),
        "(1, 4, 2)",
    );
}

/// Ties, NaN, strided inputs and an empty batch.
#[test]
fn ties_nan_layouts_and_empty_batch() {
    let x = Array3::from_shape_vec((1, 4, 1), vec![1.0, 1.0, 2.0, f64::NAN]).unwrap();
    let (y, a) = max_pool(x.view(), 2, 2).unwrap();
    assert_eq!(a.as_slice().unwrap(), &[0, 3]);
    assert_eq!(y[[0, 0, 0]], 1.0);
    assert!(y[[0, 1, 0]].is_nan());
    let x = filled((3, 8, 8, 2).f(), 0.4);
    let xc = x.as_standard_layout().to_owned();
    assert_eq!(
        max_pool(x.view(), 2, 2).unwrap(),
        max_pool(xc.view(), 2, 2).unwrap()
    );
    let xr = x.slice(s![..;-1, .., .., ..]);
    let xrc = xr.to_owned();
    assert_eq!(
        avg_pool(xr, 3, 2).unwrap(),
        avg_pool(xrc.view(), 3, 2).unwrap()
    );
    let x = Array4::<f32>::zeros((0, 4, 4, 2));
    let (y, a) = max_pool(x.view(), 2, 2).unwrap();
    assert_eq!((y.dim(), a.dim()), ((0, 2, 2, 2), (0, 2, 2, 2)));
    let dx = max_pool_backward(y.view(), a.view(), &[4, 4], None).unwrap();
    assert_eq!(dx.dim(), (0, 4, 4, 2));
}

#[test]
fn bad_arguments_are_errors() {
    let x = filled((2, 5, 3), 0.0);
    assert_err(max_pool(x.view(), 0, 1), "kernel size k must be >= 1");
    assert_err(max_pool(x.view(), 2, 0), "stride must be >= 1");
    let larger = "kernel size 6 is larger than the input length 5";
    assert_err(max_pool(x.view(), 6, 1), larger);
    let d = filled((2, 2, 3), 0.0);
    let bad = Array3::<i32>::from_elem((2, 2, 3), 5);
    let e = max_pool_backward(d.view(), bad.view(), &[5], None);
    assert_err(e, "argmax holds the index 5");
    let e = max_pool_backward(d.view(), Array3::zeros((2, 1, 3)).view(), &[5], None);
    assert_err(e, "argmax must have shape (2, 2, 3)");
    let e = avg_pool_backward(d.view(), &[5], 2, 1);
    assert_err(e, "delta must have shape (2, 4, 3), got (2, 2, 3)");
    let e = max_pool(filled((1, 4, 3, 1), 0.0).view(), 4, 1);
    assert_err(e, "larger than the input width 3");
}

#[test]
fn positions_beyond_int32_are_errors() {
    // An empty batch allocates nothing, whatever the length.
    let big = 1usize << 31;
    let x = Array3::<f32>::zeros((0, big, 1));
    assert_err(max_pool(x.view(), 2, 2), "int32 argmax");
    let a = Array3::<i32>::zeros((0, big / 2, 1));
    let e = max_pool_backward(a.mapv(|v| v as f32).view(), a.view(), &[big], None);
    assert_err(e, "int32 argmax");
    let x = Array4::<f32>::zeros((0, 1 << 16, 1 << 15, 1));
    assert!(max_pool(x.view(), 2, 2).is_err());
    // the largest that fits
    let x = Array3::<f32>::zeros((0, big - 1, 1));
    let (_, a) = max_pool(x.view(), 2, 2).unwrap();
    assert_eq!(a.dim(), (0, big / 2 - 1, 1));
}
