//! The thread pool the kernels run on.
//!
//! The library never builds rayon's global pool: by default the kernels run on
//! whatever pool is current (the global one, sized by `RAYON_NUM_THREADS` or the
//! number of cores). [`set_num_threads`] gives them a pool of their own instead.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, RwLock};

use crate::error::KernelError;

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

/// Runs the kernels on a pool of `n` threads from now on; `n = 0` goes back to
/// the default (rayon's global pool).
pub fn set_num_threads(n: usize) -> Result<(), KernelError> {
    let pool = if n == 0 {
        None
    } else {
        let pool = ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("diy_nn-{i}"))
            .build()
            .map_err(|e| KernelError::invalid("set_num_threads", e.to_string()))?;
        Some(Arc::new(pool))
    };
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

/// The number of threads the kernels use.
pub fn num_threads() -> usize {
    match current_pool() {
        Some(pool) => pool.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}

fn current_pool() -> Option<Arc<ThreadPool>> {
    POOL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `f` on the kernels' pool: inside it, `rayon::current_num_threads()` and
/// every parallel iterator use that pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match current_pool() {
        Some(pool) if rayon::current_thread_index().is_none() => pool.install(f),
        _ => f(),
    }
}

/// Runs `op` on the calling thread with a scope whose spawned tasks go to the
/// kernels' pool: the caller works on its share instead of sleeping while pool
/// threads wake up (a wake-up costs about 10 µs here, as much as a 100k-element
/// softmax pass).
pub fn in_place_scope<'scope, R>(op: impl FnOnce(&rayon::Scope<'scope>) -> R) -> R {
    match current_pool() {
        Some(pool) => pool.in_place_scope(op),
        None => rayon::in_place_scope(op),
    }
}

/// Whether work of `cost` (roughly, multiply-adds) should be split across threads.
///
/// Below [`PAR_MIN_WORK`] the hand-off to other threads costs more than it saves.
#[inline]
pub fn worth_parallel(cost: usize) -> bool {
    cfg!(feature = "multi-threads") && cost >= PAR_MIN_WORK && rayon::current_num_threads() > 1
}

/// The work (in multiply-adds) below which kernels stay on the calling thread.
///
/// Measured with `cargo bench` (see benches/kernels.rs): a rayon hand-off costs
/// a few microseconds, about the time of 30k multiply-adds on one core.
pub const PAR_MIN_WORK: usize = 32 * 1024;
