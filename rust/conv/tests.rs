//! The convolutions against a plain reference, and the direct kernels against im2col + GEMM.

use super::*;
use ndarray::{s, Array, Array1, Dimension, ShapeBuilder};

fn filled<Sh: ndarray::ShapeBuilder>(shape: Sh, seed: f64) -> Array<f64, Sh::Dim> {
    let mut i = 0.0;
    Array::from_shape_simple_fn(shape, || {
        i += 1.0;
        (i * 0.618 + seed).sin()
    })
}

fn assert_close<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) {
    assert_eq!(a.shape(), b.shape());
    for (p, q) in a.iter().zip(b) {
        assert!((p - q).abs() <= 1e-11 * (1.0 + q.abs()), "{p} vs {q}");
    }
}

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

/// (n, l, cin, cout, k, stride, padding)
const CASES_1D: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (2, 7, 3, 4, 3, 1, 0),
    (1, 9, 1, 1, 1, 1, 0),
    (3, 5, 2, 3, 5, 1, 0),
    (2, 11, 3, 2, 3, 2, 1),
    (1, 6, 1, 5, 2, 3, 2),
    (4, 50, 16, 33, 3, 2, 0),
    (64, 50, 16, 33, 3, 2, 0),
    (5, 4, 2, 3, 6, 1, 1),
];

#[test]
fn conv1d_matches_reference() {
    for &(n, l, cin, cout, k, s, pad) in CASES_1D {
        let x = filled((n, l, cin), 0.1);
        let w = filled((k, cin, cout), 0.2);
        let b = filled(cout, 0.3);
        let p = conv_params("t", x.shape(), w.shape(), s, pad).unwrap();
        let d = filled((n, p.out_dims().1, cout), 0.4);
        let (y, dx, dw, db) = reference(
            &x.clone().insert_axis(Axis(1)),
            &w.clone().insert_axis(Axis(0)),
            &b,
            &d.clone().insert_axis(Axis(1)),
            &p,
        );
        let got = conv1d(x.view(), w.view(), Some(b.view()), s, pad).unwrap();
        assert_close(&got, &y.remove_axis(Axis(1)));
        let got_dx = conv1d_backward_input(d.view(), w.view(), l, s, pad).unwrap();
        assert_close(&got_dx, &dx.remove_axis(Axis(1)));
        let mut gw = filled((k, cin, cout), 0.5);
        let mut gb = filled(cout, 0.6);
        let (gw0, gb0) = (gw.clone(), gb.clone());
        conv1d_backward_weight(
            x.view(),
            d.view(),
            gw.view_mut(),
            Some(gb.view_mut()),
            s,
            pad,
        )
        .unwrap();
        assert_close(&gw, &(gw0 + dw.remove_axis(Axis(0))));
        assert_close(&gb, &(gb0 + db));
    }
}

/// (n, h, w, cin, cout, k, stride, padding)
type Case2d = (usize, usize, usize, usize, usize, usize, usize, usize);
const CASES_2D: &[Case2d] = &[
    (2, 5, 10, 2, 2, 3, 1, 0),
    (1, 4, 4, 1, 1, 1, 1, 0),
    (2, 3, 3, 2, 3, 3, 1, 0),
    (3, 7, 6, 3, 4, 3, 2, 1),
    (1, 5, 5, 1, 2, 2, 3, 2),
    (40, 16, 16, 1, 32, 3, 1, 0),
];

#[test]
fn conv2d_matches_reference() {
    for &(n, h, wd, cin, cout, k, s, pad) in CASES_2D {
        let x = filled((n, h, wd, cin), 0.1);
        let w = filled((k, k, cin, cout), 0.2);
        let b = filled(cout, 0.3);
        let p = conv_params("t", x.shape(), w.shape(), s, pad).unwrap();
        let (ho, wo) = p.out_dims();
        let d = filled((n, ho, wo, cout), 0.4);
        let (y, dx, dw, db) = reference(&x, &w, &b, &d, &p);
        assert_close(
            &conv2d(x.view(), w.view(), Some(b.view()), s, pad).unwrap(),
            &y,
        );
        assert_close(
            &conv2d(x.view(), w.view(), None, s, pad).unwrap(),
            &(y - &b),
        );
        let got_dx = conv2d_backward_input(d.view(), w.view(), (h, wd), s, pad).unwrap();
        assert_close(&got_dx, &dx);
        let mut gw = Array4::zeros(w.raw_dim());
        let mut gb = Array1::zeros(cout);
        for _ in 0..2 {
            conv2d_backward_weight(
                x.view(),
                d.view(),
                gw.view_mut(),
                Some(gb.view_mut()),
                s,
                pad,
            )
            .unwrap();
        }
        assert_close(&gw, &(&dw * 2.0));
        assert_close(&gb, &(&db * 2.0));
    }
}

/// The direct kernels against im2col + GEMM (the same sums, another
/// order) on odd shapes: strides 1-3, padding, 1-3 input channels, 1-40
/// output channels (every register-block tail), batch 1 and more, f64
/// and f32.
#[test]
fn direct_matches_im2col() {
    fn check<T: Float>(p: &Conv2dParams, tol: f64) {
        let (ho, wo) = p.out_dims();
        let cast = |a: Array4<f64>| a.mapv(|v| T::from_f64(v).unwrap());
        let x = cast(filled((p.n, p.h, p.w, p.cin), 0.1));
        let w = cast(filled((p.kh, p.kw, p.cin, p.cout), 0.2));
        let b = filled(p.cout, 0.3).mapv(|v| T::from_f64(v).unwrap());
        let d = cast(filled((p.n, ho, wo, p.cout), 0.4));
        let close = |a: T, b: T| {
            let (a, b) = (a.to_f64().unwrap(), b.to_f64().unwrap());
            (a - b).abs() <= tol * (1.0 + b.abs())
        };
        DIRECT_OVERRIDE.with(|c| c.set(Some(true)));
        let y = forward_impl(x.view(), w.view(), Some(b.view()), p);
        let mut gw = Array4::<T>::zeros(w.raw_dim());
        let mut gb = Array1::<T>::zeros(p.cout);
        backward_weight_impl(x.view(), d.view(), gw.view_mut(), Some(gb.view_mut()), p);
        DIRECT_OVERRIDE.with(|c| c.set(Some(false)));
        // the same through im2col: a patch one longer than the threshold
        // is not what we want, so call the GEMM path on a wider copy of
        // the problem instead: zero-padded input channels keep the sums.
        let extra = DIRECT_MAX_PATCH / (p.kh * p.kw) + 1;
        let q = Conv2dParams {
            cin: p.cin + extra,
            ..*p
        };
        let mut xq = Array4::<T>::zeros((p.n, p.h, p.w, q.cin));
        xq.slice_mut(s![.., .., .., ..p.cin]).assign(&x);
        let mut wq = Array4::<T>::zeros((p.kh, p.kw, q.cin, p.cout));
        wq.slice_mut(s![.., .., ..p.cin, ..]).assign(&w);
        let yq = forward_impl(xq.view(), wq.view(), Some(b.view()), &q);
        let mut gwq = Array4::<T>::zeros(wq.raw_dim());
        let mut gbq = Array1::<T>::zeros(p.cout);
        backward_weight_impl(
            xq.view(),
            d.view(),
            gwq.view_mut(),
            Some(gbq.view_mut()),
            &q,
        );
        // and the plain GEMM path on the problem itself
        let yg = forward_impl(x.view(), w.view(), Some(b.view()), p);
        DIRECT_OVERRIDE.with(|c| c.set(None));
        for (a, b) in y.iter().zip(&yg) {
            assert!(close(*a, *b), "forward {p:?}: {a:?} vs {b:?}");
        }
        for (a, b) in gb.iter().zip(&gbq) {
            assert!(close(*a, *b), "bias {p:?}: {a:?} vs {b:?}");
        }
        for (a, b) in y.iter().zip(&yq) {
            assert!(close(*a, *b), "forward {p:?}: {a:?} vs {b:?}");
        }
        let gwq = gwq.slice(s![.., .., ..p.cin, ..]);
        for (a, b) in gw.iter().zip(gwq.iter()) {
            assert!(close(*a, *b), "weight {p:?}: {a:?} vs {b:?}");
        }
    }
    for cout in [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40] {
        for (i, &(n, h, w, cin, k, s, pad)) in [
            (1, 5, 6, 1, 3, 1, 0),
            (2, 7, 5, 2, 3, 2, 1),
            (1, 6, 9, 3, 3, 3, 2),
            (3, 4, 4, 1, 2, 1, 1),
            (1, 1, 11, 3, 1, 2, 0),
        ]
        .iter()
        .enumerate()
        {
            // (K, K) kernels, and the 1-D ones' (1, K)
            let (kh, ph) = if h == 1 { (1, 0) } else { (k, pad) };
            let p = Conv2dParams {
                n,
                h,
                w,
                cin,
                cout,
                kh,
                kw: k + usize::from(h == 1 && i == 4) * 4,
                sh: s,
                sw: s,
                ph,
                pw: pad,
            };
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
        &conv1d(xs, w.view(), None, 2, 1).unwrap(),
        &conv1d(xr.view(), w.view(), None, 2, 1).unwrap(),
    );
    // A Fortran-ordered gradient buffer is accumulated element by element.
    let d = filled((3, 6, 5), 0.3);
    let mut gw_f = Array::zeros((3, 4, 5).f());
    let mut gw_c = Array3::zeros((3, 4, 5));
    conv1d_backward_weight(x.view(), d.view(), gw_f.view_mut(), None, 2, 1).unwrap();
    conv1d_backward_weight(x.view(), d.view(), gw_c.view_mut(), None, 2, 1).unwrap();
    assert_close(&gw_f, &gw_c);
}

#[test]
fn empty_batch() {
    let x = Array3::<f32>::zeros((0, 8, 2));
    let w = Array3::<f32>::zeros((3, 2, 4));
    assert_eq!(
        conv1d(x.view(), w.view(), None, 1, 0).unwrap().dim(),
        (0, 6, 4)
    );
    let d = Array3::<f32>::zeros((0, 6, 4));
    assert_eq!(
        conv1d_backward_input(d.view(), w.view(), 8, 1, 0)
            .unwrap()
            .dim(),
        (0, 8, 2)
    );
    let mut gw = Array3::<f32>::ones((3, 2, 4));
    conv1d_backward_weight(x.view(), d.view(), gw.view_mut(), None, 1, 0).unwrap();
    assert!(gw.iter().all(|&v| v == 1.0));
}

#[test]
fn bad_arguments_are_errors() {
    let x = filled((2, 8, 3), 0.0);
    let w = filled((3, 3, 4), 0.0);
    let msg = |e: KernelError| e.to_string();
    let e = conv1d(x.view(), filled((3, 2, 4), 0.0).view(), None, 1, 0).unwrap_err();
    assert!(msg(e).contains("conv1d: w must have shape (K, 3, Cout)"));
    let e = conv1d(x.view(), w.view(), None, 0, 0).unwrap_err();
    assert!(msg(e).contains("stride must be >= 1"));
    let e = conv1d(x.view(), filled((9, 3, 4), 0.0).view(), None, 1, 0).unwrap_err();
    assert!(msg(e).contains("kernel size 9 is larger"));
    let e = conv1d(x.view(), w.view(), Some(filled(5, 0.0).view()), 1, 0).unwrap_err();
    assert!(msg(e).contains("b must have shape (4,), got (5,)"));
    let e = conv1d_backward_input(filled((2, 5, 4), 0.0).view(), w.view(), 8, 1, 0).unwrap_err();
    assert!(msg(e).contains("delta must have shape (2, 6, 4), got (2, 5, 4)"));
    let mut gw = filled((3, 2, 4), 0.0);
    let e = conv1d_backward_weight(
        x.view(),
        filled((2, 6, 4), 0.0).view(),
        gw.view_mut(),
        None,
        1,
        0,
    )
    .unwrap_err();
    assert!(msg(e.clone()).contains("grad_w must have shape"), "{e:?}");
    let x2 = filled((1, 4, 4, 2), 0.0);
    let e = conv2d(x2.view(), filled((3, 2, 2, 1), 0.0).view(), None, 1, 0).unwrap_err();
    assert!(msg(e).contains("conv2d: w must have shape (K, K, 2, Cout)"));
}
