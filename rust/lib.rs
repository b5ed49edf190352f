//! Numeric kernels of diy_nn.
//!
//! Every kernel is a plain Rust function over `ndarray` views, generic over
//! [`Float`] (`f32` and `f64`), with no Python types: `cargo test` and
//! `cargo bench` need no libpython. The PyO3 bindings live in `python/`,
//! compiled only with the `python` feature that maturin turns on.
//!
//! Layouts are batch first and channels last, as in the course:
//! `(N, features)`, `(N, L, C)` and `(N, H, W, C)`.

pub mod activation;
pub mod conv;
pub mod convpool;
pub mod error;
pub mod float;
pub mod fused;
pub mod loss;
pub mod math;
pub mod matmul;
pub mod optim;
pub mod pool;
mod simd;
pub mod small_gemm;
pub mod softmax;
pub mod threads;

#[cfg(feature = "python")]
mod python;

pub use error::KernelError;
pub use float::Float;
