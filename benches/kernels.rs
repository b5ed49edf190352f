//! Criterion benchmarks of the kernels, on named shape tables.
//!
//! Run with `cargo bench --bench kernels`. The matmul table compares the `gemm`
//! crate (which diy_nn uses) with `matrixmultiply` on the same shapes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use std::hint::black_box;

use _core::matmul::matmul;

/// (name, m, k, n): the products of the report's models, and a large square one.
const MATMUL_SHAPES: &[(&str, usize, usize, usize)] = &[
    ("usps_mlp_fwd_100x256x128", 100, 256, 128),
    ("usps_mlp_gradw_256x100x128", 256, 100, 128),
    ("autoencoder_fwd_10x256x100", 10, 256, 100),
    ("cnn1d_fc_100x4064x100", 100, 4064, 100),
    ("square_256", 256, 256, 256),
    ("square_1024", 1024, 1024, 1024),
];

fn filled(r: usize, c: usize) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| ((i * 31 + j * 17) % 13) as f32 * 0.1 - 0.6)
}

fn bench_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_f32");
    for &(name, m, k, n) in MATMUL_SHAPES {
        let (a, b) = (filled(m, k), filled(k, n));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        if m * n * k >= 1 << 28 {
            group.sample_size(10);
        } else {
            group.sample_size(50);
        }
        group.bench_with_input(BenchmarkId::new("gemm", name), &(), |bench, _| {
            bench.iter(|| matmul(black_box(a.view()), black_box(b.view())).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("matrixmultiply", name), &(), |bench, _| {
            bench.iter(|| {
                let mut out = Array2::<f32>::zeros((m, n));
                let (sa, sb, so) = (a.strides(), b.strides(), out.strides().to_vec());
                // SAFETY: pointers and strides of live arrays of the given shapes.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        sa[0],
                        sa[1],
                        b.as_ptr(),
                        sb[0],
                        sb[1],
                        0.0,
                        out.as_mut_ptr(),
                        so[0],
                        so[1],
                    );
                }
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matmul);
criterion_main!(benches);
