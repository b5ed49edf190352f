//! Run-time choice of the instruction set for elementwise slice loops.
//!
//! The crate is built for the baseline x86-64 CPU (SSE2: 4 `f32` lanes). A
//! loop written with [`multiversion!`] is also compiled for AVX2+FMA and for
//! AVX-512F, and the widest the CPU has is picked at run time. The loops are
//! plain Rust that LLVM vectorizes; it never fuses a multiply and an add
//! into an FMA on its own, so every version gives the same bits.

/// Defines `fn name<T: Bound>(args) -> ret { body }` compiled three times
/// (AVX-512F, AVX2+FMA, baseline), the version chosen at each call by
/// [`vector_bytes`]. Written `fn name<T: Bound, const W: usize>`, the body
/// also gets its version's vector width in bytes as `W` (64, 32 or 16), for
/// kernels whose register blocks depend on it.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident<$t:ident: $bound:path $(, const $w:ident: usize)?>(
            $($arg:ident: $ty:ty),* $(,)?
        ) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$t: $bound $(, const $w: usize)?>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn v4<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
                    body::<$t $(, { const $w: usize = 64; $w })?>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
                    body::<$t $(, { const $w: usize = 32; $w })?>($($arg),*)
                }
                match $crate::simd::vector_bytes() {
                    // SAFETY: the CPU has the features `v4` is compiled for.
                    64 => return unsafe { v4::<$t>($($arg),*) },
                    // SAFETY: the CPU has the features `v3` is compiled for.
                    32 => return unsafe { v3::<$t>($($arg),*) },
                    _ => {}
                }
            }
            body::<$t $(, { const $w: usize = 16; $w })?>($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// The vector width in bytes of the [`multiversion!`] version the CPU runs:
/// 64 with AVX-512F, 32 with AVX2 and FMA, else 16.
#[inline]
pub(crate) fn vector_bytes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 64;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return 32;
        }
    }
    16
}

/// A thread-split threshold for `T` on this CPU from its value measured for `f32` with
/// AVX2: a core runs as many vector operations a µs whatever their type, so the work
/// that takes as long grows with the lanes of `T` in a vector (`f64` half, AVX-512 twice).
pub(crate) fn per_lanes<T>(at_avx2_f32: usize) -> usize {
    at_avx2_f32 * vector_bytes() / (8 * std::mem::size_of::<T>())
}

/// A core's L2 cache in bytes, as the `gemm` crate reads it from the CPU.
pub(crate) fn l2_bytes() -> usize {
    gemm_common::cache::CACHE_INFO[1].cache_bytes
}

/// Whether the CPU has AVX-512 with the subsets the explicit kernels use
/// (F, VL, DQ and BW: every AVX-512 CPU since Skylake-SP has them all).
#[inline]
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `xs` as `f32` when `T` is `f32` (for kernels written for `f32` alone).
pub(crate) fn as_f32<T: 'static>(xs: &[T]) -> Option<&[f32]> {
    // SAFETY: `T` is `f32` itself, checked by the type id.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &*(xs as *const [T] as *const [f32]) })
}

/// `xs` as `f32` when `T` is `f32`.
pub(crate) fn as_f32_mut<T: 'static>(xs: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: `T` is `f32` itself, checked by the type id.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { &mut *(xs as *mut [T] as *mut [f32]) })
}
