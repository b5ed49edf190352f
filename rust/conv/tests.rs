//! The convolutions against a plain reference, and the direct kernels against im2col + GEMM.

use super::*;
use crate::error::assert_err;
use crate::float::{assert_close, filled};
use ndarray::{s, Array, Array1, Array3, Array4, ArrayView2, ArrayViewD, Axis, ShapeBuilder};

/// Reads `x[n, i, j, c]` with zero padding (i, j in padded coordinates).
fn at(x: &Array4<f64>, n: usize, i: isize, j: isize, c: usize, p: &Conv2dParams) -> f64 {
    let (i, j) = (i - p.ph as isize, j - p.pw as isize);
    if i < 0 || j < 0 || i as usize >= p.h || j as usize >= p.w {
        0.0
    } else {
        x[[n, i as usize, j as usize, c]]
    }
}

/// Straightforward 2-D convolution (rectangular kernel), and its two gradients.
fn reference(
    x: &Array4<f64>,
    w: &Array4<f64>,
    b: &Array1<f64>,
    d: &Array4<f64>,
    p: &Conv2dParams,
) -> (Array4<f64>, Array4<f64>, Array4<f64>, Array1<f64>) {
    let (ho, wo) = p.out_dims();
    let mut y = Array4::zeros((p.n, ho, wo, p.cout));
    let mut dx = Array4::zeros((p.n, p.h, p.w, p.cin));
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(p.cout);
    for n in 0..p.n {
        for oi in 0..ho {
            for oj in 0..wo {
                for co in 0..p.cout {
                    let mut acc = b[co];
                    db[co] += d[[n, oi, oj, co]];
                    for ki in 0..p.kh {
                        for kj in 0..p.kw {
                            let (i, j) = ((oi * p.sh + ki) as isize, (oj * p.sw + kj) as isize);
                            for ci in 0..p.cin {
                                let xv = at(x, n, i, j, ci, p);
                                acc += xv * w[[ki, kj, ci, co]];
                                dw[[ki, kj, ci, co]] += xv * d[[n, oi, oj, co]];
                                let (ii, jj) = (i - p.ph as isize, j - p.pw as isize);
                                if ii >= 0 && jj >= 0 && (ii as usize) < p.h && (jj as usize) < p.w
                                {
                                    dx[[n, ii as usize, jj as usize, ci]] +=
                                        w[[ki, kj, ci, co]] * d[[n, oi, oj, co]];
                                }
                            }
                        }
                    }
                    y[[n, oi, oj, co]] = acc;
                }
            }
        }
    }
    (y, dx, dw, db)
}

/// (n, h, w, cin, cout, k, stride, padding); `h = 0` is a 1-D case of length `w`.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
const CASES: &[Case] = &[
    (2, 0, 7, 3, 4, 3, 1, 0),
    (1, 0, 9, 1, 1, 1, 1, 0),
    (3, 0, 5, 2, 3, 5, 1, 0),
    (2, 0, 11, 3, 2, 3, 2, 1),
    (1, 0, 6, 1, 5, 2, 3, 2),
    (4, 0, 50, 16, 33, 3, 2, 0),
    (64, 0, 50, 16, 33, 3, 2, 0),
    (5, 0, 4, 2, 3, 6, 1, 1),
    (2, 5, 10, 2, 2, 3, 1, 0),
    (1, 4, 4, 1, 1, 1, 1, 0),
    (2, 3, 3, 2, 3, 3, 1, 0),
    (3, 7, 6, 3, 4, 3, 2, 1),
    (1, 5, 5, 1, 2, 2, 3, 2),
    (40, 16, 16, 1, 32, 3, 1, 0),
    (0, 0, 8, 2, 4, 3, 1, 0),
    (0, 4, 4, 2, 3, 3, 1, 1),
];

/// A case's array: as it is in 2-D, without its axis `axis` of length 1 in
/// 1-D (`(N, 1, L, C)` as `(N, L, C)`, `(1, K, Cin, Cout)` as `(K, Cin, Cout)`).
fn view(a: &Array4<f64>, axis: usize, one_d: bool) -> ArrayViewD<'_, f64> {
    match one_d {
        true => a.index_axis(Axis(axis), 0).into_dyn(),
        false => a.view().into_dyn(),
    }
}

/// The three passes, 1-D and 2-D, against the reference: the forward pass
/// with and without bias, the input gradient, and the weight and bias
/// gradients added twice onto what the arrays held.
#[test]
fn conv_matches_reference() {
    for &(n, h, wd, cin, cout, k, s, pad) in CASES {
        let one_d = h == 0;
        let (h, kh) = if one_d { (1, 1) } else { (h, k) };
        let x = filled((n, h, wd, cin), 0.1);
        let w = filled((kh, k, cin, cout), 0.2);
        let b = filled(cout, 0.3);
        let (xv, wv) = (view(&x, 1, one_d), view(&w, 0, one_d));
        let p = conv_params("t", xv.shape(), wv.shape(), s, pad).unwrap();
        let (ho, wo) = p.out_dims();
        let d = filled((n, ho, wo, cout), 0.4);
        let dv = view(&d, 1, one_d);
        let (y, dx, dw, db) = reference(&x, &w, &b, &d, &p);
        let y_nb = &y - &b;
        for (bias, want) in [(Some(b.view()), &y), (None, &y_nb)] {
            let got = conv(xv.view(), wv.view(), bias, s, pad).unwrap();
            assert_close(&got, &view(want, 1, one_d).to_owned(), 1e-11);
        }
        let size: &[usize] = if one_d { &[wd] } else { &[h, wd] };
        let got_dx = conv_backward_input(dv.view(), wv.view(), size, s, pad).unwrap();
        assert_close(&got_dx, &view(&dx, 1, one_d).to_owned(), 1e-11);
        let mut gw = filled(w.raw_dim(), 0.5);
        let mut gb = filled(cout, 0.6);
        let (gw0, gb0) = (gw.clone(), gb.clone());
        for _ in 0..2 {
            let gwv = match one_d {
                true => gw.index_axis_mut(Axis(0), 0).into_dyn(),
                false => gw.view_mut().into_dyn(),
            };
            conv_backward_weight(xv.view(), dv.view(), gwv, Some(gb.view_mut()), s, pad).unwrap();
        }
        assert_close(&gw, &(gw0 + &dw * 2.0), 1e-11);
        assert_close(&gb, &(gb0 + &db * 2.0), 1e-11);
    }
}

/// The direct kernels against im2col + GEMM (the same sums, another
/// order) on odd shapes: strides 1-3, padding, 1-10 input channels, patches
/// up to [`DIRECT_MAX_PATCH`], 1-40 output channels (every register-block
/// tail), batch 1 and more, f64 and f32.
#[test]
fn direct_matches_im2col() {
    fn check<T: Float>(p: &Conv2dParams, tol: f64) {
        let (ho, wo) = p.out_dims();
        let cast = |a: &[f64]| -> Vec<T> { a.iter().map(|&v| T::from_f64(v).unwrap()).collect() };
        let x = cast(filled(p.n * p.h * p.w * p.cin, 0.1).as_slice().unwrap());
        let w = cast(filled(p.patch() * p.cout, 0.2).as_slice().unwrap());
        let b = cast(filled(p.cout, 0.3).as_slice().unwrap());
        let d = cast(filled(p.n * ho * wo * p.cout, 0.4).as_slice().unwrap());
        let wm = ArrayView2::from_shape((p.patch(), p.cout), &w).unwrap();
        // [output, weight gradient, bias gradient] of each implementation
        let mut direct = [d.len(), w.len(), b.len()].map(|len| vec![T::zero(); len]);
        let mut gemm = direct.clone();
        let all = (0, p.n);
        DirectForward::new(p, wm, Some(&b)).run(&x, p, all, &mut direct[0]);
        let [_, gw, gb] = &mut direct;
        DirectWeight::new::<T>(p).run((&x, &d), p, all, gw, gb);
        im2col::forward(&x, p, (wm, Some(&b)), all, &mut gemm[0]);
        let [_, gw, gb] = &mut gemm;
        im2col::weight_grad((&x, &d), p, all, gw, gb);
        for (what, (a, b)) in ["forward", "weight", "bias"]
            .iter()
            .zip(direct.iter().zip(&gemm))
        {
            for (a, b) in a.iter().zip(b) {
                let (a, b) = (a.to_f64().unwrap(), b.to_f64().unwrap());
                let ok = (a - b).abs() <= tol * (1.0 + b.abs());
                assert!(ok, "{what} {p:?}: {a} vs {b}");
            }
        }
    }
    for cout in [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40] {
        for &(n, h, w, cin, k, s, pad) in &[
            (1, 5, 6, 1, 3, 1, 0),
            (2, 7, 5, 2, 3, 2, 1),
            (1, 6, 9, 3, 3, 3, 2),
            (3, 4, 4, 1, 2, 1, 1),
            (1, 0, 11, 3, 5, 2, 0),
            (1, 9, 9, 3, 7, 1, 2),
            (2, 6, 7, 10, 4, 2, 1),
        ] {
            // (K, K) kernels, and a 1-D case (`h = 0`), a (1, K) one
            let (x, wt): (&[usize], &[usize]) = match h {
                0 => (&[n, w, cin], &[k, cin, cout]),
                _ => (&[n, h, w, cin], &[k, k, cin, cout]),
            };
            let p = conv_params("t", x, wt, s, pad).unwrap();
            check::<f64>(&p, 1e-12);
            check::<f32>(&p, 1e-5);
        }
    }
}

#[test]
fn strided_inputs_and_outputs() {
    let x = filled((3, 12, 4), 0.1);
    let w = filled((3, 4, 5), 0.2);
    let xr = x.slice(s![..;-1, ..;1, ..]).to_owned();
    let xs = x.slice(s![..;-1, .., ..]);
    assert_close(
        &conv(xs, w.view(), None, 2, 1).unwrap(),
        &conv(xr.view(), w.view(), None, 2, 1).unwrap(),
        1e-11,
    );
    // A Fortran-ordered gradient buffer is accumulated element by element.
    let d = filled((3, 6, 5), 0.3);
    let mut gw_f = Array::zeros((3, 4, 5).f());
    let mut gw_c = Array3::zeros((3, 4, 5));
    conv_backward_weight(x.view(), d.view(), gw_f.view_mut(), None, 2, 1).unwrap();
    conv_backward_weight(x.view(), d.view(), gw_c.view_mut(), None, 2, 1).unwrap();
    assert_close(&gw_f, &gw_c, 1e-11);
}

#[test]
fn bad_arguments_are_errors() {
    let x = filled((2, 8, 3), 0.0);
    let w = filled((3, 3, 4), 0.0);
    let e = conv(x.view(), filled((3, 2, 4), 0.0).view(), None, 1, 0);
    assert_err(e, "conv1d: w must have shape (K, 3, Cout)");
    assert_err(conv(x.view(), w.view(), None, 0, 0), "stride must be >= 1");
    let e = conv(x.view(), filled((9, 3, 4), 0.0).view(), None, 1, 0);
    assert_err(e, "kernel size 9 is larger");
    let e = conv(x.view(), w.view(), Some(filled(5, 0.0).view()), 1, 0);
    assert_err(e, "b must have shape (4,), got (5,)");
    let e = conv_backward_input(filled((2, 5, 4), 0.0).view(), w.view(), &[8], 1, 0);
    assert_err(e, "delta must have shape (2, 6, 4), got (2, 5, 4)");
    let (d, mut gw) = (filled((2, 6, 4), 0.0), filled((3, 2, 4), 0.0));
    let e = conv_backward_weight(x.view(), d.view(), gw.view_mut(), None, 1, 0);
    assert_err(e, "grad_w must have shape");
    let x2 = filled((1, 4, 4, 2), 0.0);
    let e = conv(x2.view(), filled((3, 2, 2, 1), 0.0).view(), None, 1, 0);
    assert_err(e, "conv2d: w must have shape (K, K, 2, Cout)");
    let e = conv(x2.view().into_dyn(), w.view().into_dyn(), None, 1, 0);
    assert_err(
        e,
        "conv2d: x and w must be both 3-D (1-D) or both 4-D (2-D)",
    );
}
