//! Criterion benchmarks of the kernels, on named shape tables.
//!
//! Run with `cargo bench --bench kernels`. The matmul table compares the `gemm`
//! crate (which diy_nn uses) with `matrixmultiply` on the same shapes. The
//! conv, pool and softmax tables time forward and both backward passes on the
//! report's shapes; the `*_threads` groups run the same work on 1 and 2
//! threads, which is how the parallel thresholds of the kernels were chosen
//! (`cargo bench --bench kernels -- threads`).

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use ndarray::{Array, Array1, Array2, Array3, Array4, Dimension, ShapeBuilder};
use std::hint::black_box;
use std::time::{Duration, Instant};

use _core::matmul::{gemm_into, matmul};
use _core::small_gemm::product_into;
use _core::{conv, loss, pool, softmax, threads};

/// Wall time, whose `Throughput::Elements` counts floating-point operations: criterion
/// has no FLOP unit, and its own formatter prints a count of 2·m·n·k FLOPs as "Gelem/s".
/// The products and convolutions are measured with it and read in GFLOP/s.
struct FlopTime;

struct FlopFormatter;

impl ValueFormatter for FlopFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_values(typical_value, values)
    }

    fn scale_throughputs(
        &self,
        typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        match *throughput {
            Throughput::Elements(flops) => {
                // values are nanoseconds per iteration: FLOPs per ns are GFLOP/s
                for v in values.iter_mut() {
                    *v = flops as f64 / *v;
                }
                "GFLOP/s"
            }
            _ => WallTime
                .formatter()
                .scale_throughputs(typical_value, throughput, values),
        }
    }

    fn scale_for_machines(&self, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_for_machines(values)
    }
}

impl Measurement for FlopTime {
    type Intermediate = Instant;
    type Value = Duration;

    fn start(&self) -> Instant {
        WallTime.start()
    }
    fn end(&self, i: Instant) -> Duration {
        WallTime.end(i)
    }
    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, val: &Duration) -> f64 {
        WallTime.to_f64(val)
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &FlopFormatter
    }
}

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

fn bench_matmul(c: &mut Criterion<FlopTime>) {
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

/// The autoencoder's (batch 10) products that `small_gemm` steers, each by
/// one `gemm_into` call and by `product_into`: (name, out = a·b, a
/// transposed, b transposed) with `a (m, k)`, `b (k, n)`.
const SMALL_PRODUCTS: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("forward_x_w_10x256x100", 10, 256, 100, false, false),
    ("weight_grad_xT_d_256x10x100", 256, 10, 100, true, false),
    ("input_grad_d_wT_10x256x100", 10, 256, 100, false, true),
];

fn bench_small_products(c: &mut Criterion<FlopTime>) {
    let mut group = c.benchmark_group("small_products");
    for &(name, m, k, n, at, bt) in SMALL_PRODUCTS {
        let a = if at { filled(k, m) } else { filled(m, k) };
        let b = if bt { filled(n, k) } else { filled(k, n) };
        let (a, b) = (
            if at { a.t() } else { a.view() },
            if bt { b.t() } else { b.view() },
        );
        let mut out = Array2::<f32>::zeros((m, n));
        let mut tile = Vec::new();
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_with_input(BenchmarkId::new("gemm_into", name), &(), |bench, _| {
            bench.iter(|| gemm_into(out.view_mut(), black_box(a), black_box(b), 1.0, 0.0).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("product_into", name), &(), |bench, _| {
            bench.iter(|| {
                product_into(out.view_mut(), black_box(a), black_box(b), false, &mut tile).unwrap()
            })
        });
    }
    group.finish();
}

fn sample<Sh: ShapeBuilder>(shape: Sh) -> Array<f32, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let mut i = 0u32;
    Array::from_shape_simple_fn(shape, || {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (i >> 9) as f32 / (1u32 << 23) as f32 - 0.5
    })
}

/// (name, n, l, cin, cout, k, stride): the report's check shape and the
/// course's USPS 1-D CNN (a digit read as a 256-long signal).
const CONV1D_SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("report_check_20x50x16_to_33_k3_s2", 20, 50, 16, 33, 3, 2),
    ("usps_cnn1d_100x256x1_to_32_k3", 100, 256, 1, 32, 3, 1),
    ("iris_4x1_to_16_k2_b20", 20, 4, 1, 16, 2, 1),
];

/// (name, n, hw, cin, cout, k): the USPS 2-D CNN and the report's check.
const CONV2D_SHAPES: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("usps_cnn2d_100x16x16x1_to_32_k3", 100, 16, 1, 32, 3),
    ("report_check_20x5x10x2_to_2_k3", 20, 5, 2, 2, 3),
];

/// Times a convolution's forward and both backward passes, one closure each, under `name`.
fn conv_passes<'a, M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    name: &str,
    forward: &'a mut dyn FnMut(),
    backward_input: &'a mut dyn FnMut(),
    backward_weight: &'a mut dyn FnMut(),
) {
    let passes = [
        ("forward", forward),
        ("backward_input", backward_input),
        ("backward_weight", backward_weight),
    ];
    for (pass, run) in passes {
        group.bench_function(BenchmarkId::new(pass, name), |bench| bench.iter(&mut *run));
    }
}

fn bench_conv(c: &mut Criterion<FlopTime>) {
    let mut group = c.benchmark_group("conv1d_f32");
    group.sample_size(30);
    for &(name, n, l, cin, cout, k, s) in CONV1D_SHAPES {
        let (x, w, b) = (sample((n, l, cin)), sample((k, cin, cout)), sample(cout));
        let lo = (l - k) / s + 1;
        let d = sample((n, lo, cout));
        let (mut gw, mut gb) = (
            Array3::<f32>::zeros((k, cin, cout)),
            Array1::<f32>::zeros(cout),
        );
        group.throughput(Throughput::Elements((2 * n * lo * k * cin * cout) as u64));
        let (x, d, w) = (x.view(), d.view(), w.view());
        conv_passes(
            &mut group,
            name,
            &mut || {
                black_box(conv::conv(black_box(x), w, Some(b.view()), s, 0).unwrap());
            },
            &mut || {
                black_box(conv::conv_backward_input(black_box(d), w, &[l], s, 0).unwrap());
            },
            &mut || {
                let grad_b = Some(gb.view_mut());
                conv::conv_backward_weight(x, d, gw.view_mut(), grad_b, s, 0).unwrap()
            },
        );
    }
    group.finish();
    let mut group = c.benchmark_group("conv2d_f32");
    group.sample_size(30);
    for &(name, n, hw, cin, cout, k) in CONV2D_SHAPES {
        let (x, w, b) = (
            sample((n, hw, hw, cin)),
            sample((k, k, cin, cout)),
            sample(cout),
        );
        let ho = hw - k + 1;
        let d = sample((n, ho, ho, cout));
        let (mut gw, mut gb) = (
            Array4::<f32>::zeros((k, k, cin, cout)),
            Array1::<f32>::zeros(cout),
        );
        group.throughput(Throughput::Elements(
            (2 * n * ho * ho * k * k * cin * cout) as u64,
        ));
        let (x, d, w) = (x.view(), d.view(), w.view());
        conv_passes(
            &mut group,
            name,
            &mut || {
                black_box(conv::conv(black_box(x), w, Some(b.view()), 1, 0).unwrap());
            },
            &mut || {
                black_box(conv::conv_backward_input(black_box(d), w, &[hw, hw], 1, 0).unwrap());
            },
            &mut || {
                let grad_b = Some(gb.view_mut());
                conv::conv_backward_weight(x, d, gw.view_mut(), grad_b, 1, 0).unwrap()
            },
        );
    }
    group.finish();
}

/// (name, n, h, w, c, k, stride)
const POOL_SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("usps_cnn2d_100x14x14x32_k2", 100, 14, 14, 32, 2, 2),
    ("usps_cnn1d_100x254x32_k2", 100, 1, 254, 32, 2, 2),
];

fn bench_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_f32");
    group.sample_size(30);
    for &(name, n, h, w, ch, k, s) in POOL_SHAPES {
        let x = sample((n, h, w, ch));
        let kh = if h == 1 { 1 } else { k };
        let d = sample((n, (h - kh) / s + 1, (w - k) / s + 1, ch));
        group.throughput(Throughput::Elements((n * h * w * ch) as u64));
        if h == 1 {
            let x3 = x.index_axis(ndarray::Axis(1), 0).to_owned();
            let d3 = d.index_axis(ndarray::Axis(1), 0).to_owned();
            let (_, arg) = pool::max_pool(x3.view(), k, s).unwrap();
            group.bench_function(BenchmarkId::new("max_forward", name), |bench| {
                bench.iter(|| pool::max_pool(black_box(x3.view()), k, s).unwrap())
            });
            group.bench_function(BenchmarkId::new("max_backward", name), |bench| {
                bench.iter(|| {
                    pool::max_pool_backward(black_box(d3.view()), arg.view(), &[w], Some((k, s)))
                        .unwrap()
                })
            });
        } else {
            let (_, arg) = pool::max_pool(x.view(), k, s).unwrap();
            group.bench_function(BenchmarkId::new("max_forward", name), |bench| {
                bench.iter(|| pool::max_pool(black_box(x.view()), k, s).unwrap())
            });
            group.bench_function(BenchmarkId::new("max_backward", name), |bench| {
                bench.iter(|| {
                    pool::max_pool_backward(black_box(d.view()), arg.view(), &[h, w], Some((k, s)))
                        .unwrap()
                })
            });
            group.bench_function(BenchmarkId::new("avg_forward", name), |bench| {
                bench.iter(|| pool::avg_pool(black_box(x.view()), k, s).unwrap())
            });
        }
    }
    group.finish();
}

/// (name, n, k): a classifier's output and a wide log-softmax.
const SOFTMAX_SHAPES: &[(&str, usize, usize)] = &[
    ("classifier_1000x10", 1000, 10),
    ("usps_batch_100x10", 100, 10),
    ("wide_256x1000", 256, 1000),
];

fn bench_softmax(c: &mut Criterion) {
    let mut group = c.benchmark_group("softmax_f32");
    group.sample_size(50);
    for &(name, n, k) in SOFTMAX_SHAPES {
        let x = sample((n, k)).mapv(|v| v * 8.0);
        let d = sample((n, k));
        let y = softmax::softmax(x.view()).unwrap();
        let ly = softmax::log_softmax(x.view()).unwrap();
        let t: Array1<i64> = (0..n as i64).map(|i| i % k as i64).collect();
        group.throughput(Throughput::Elements((n * k) as u64));
        group.bench_function(BenchmarkId::new("softmax", name), |bench| {
            bench.iter(|| softmax::softmax(black_box(x.view())).unwrap())
        });
        group.bench_function(BenchmarkId::new("softmax_backward", name), |bench| {
            bench.iter(|| softmax::softmax_backward(black_box(y.view()), d.view()).unwrap())
        });
        group.bench_function(BenchmarkId::new("log_softmax", name), |bench| {
            bench.iter(|| softmax::log_softmax(black_box(x.view())).unwrap())
        });
        group.bench_function(BenchmarkId::new("log_softmax_backward", name), |bench| {
            bench.iter(|| softmax::log_softmax_backward(black_box(ly.view()), d.view()).unwrap())
        });
        group.bench_function(BenchmarkId::new("cross_entropy_fwd_bwd", name), |bench| {
            bench.iter(|| {
                let target = loss::Target::Index(t.view());
                loss::cross_entropy(black_box(x.view()), target.clone()).unwrap();
                loss::cross_entropy_backward(x.view(), target).unwrap()
            })
        });
    }
    group.finish();
}

/// The same work on 1 and 2 threads, around the parallel thresholds.
fn bench_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    group.sample_size(20);
    for &n in &[2usize, 8, 20, 100] {
        let (x, w) = (sample((n, 50, 16)), sample((3, 16, 33)));
        let work = n * 24 * 3 * 16 * 33;
        for t in [1usize, 2] {
            threads::set_num_threads(t).unwrap();
            group.bench_function(BenchmarkId::new(format!("conv1d_{t}t"), work), |bench| {
                bench.iter(|| conv::conv(black_box(x.view()), w.view(), None, 2, 0).unwrap())
            });
        }
    }
    for &n in &[4usize, 32, 128, 1024] {
        let x = sample((n, 256));
        for t in [1usize, 2] {
            threads::set_num_threads(t).unwrap();
            group.bench_function(
                BenchmarkId::new(format!("softmax_{t}t"), n * 256),
                |bench| bench.iter(|| softmax::softmax(black_box(x.view())).unwrap()),
            );
        }
    }
    for &n in &[2usize, 10, 50] {
        let x = sample((n, 14, 14, 32));
        for t in [1usize, 2] {
            threads::set_num_threads(t).unwrap();
            group.bench_function(
                BenchmarkId::new(format!("max_pool2d_{t}t"), n * 196 * 32),
                |bench| bench.iter(|| pool::max_pool(black_box(x.view()), 2, 2).unwrap()),
            );
        }
    }
    threads::set_num_threads(0).unwrap();
    group.finish();
}

criterion_group! {
    name = flops;
    config = Criterion::default().with_measurement(FlopTime);
    targets = bench_matmul, bench_small_products, bench_conv
}
criterion_group!(benches, bench_pool, bench_softmax, bench_threads);
criterion_main!(flops, benches);
