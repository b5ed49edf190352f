//! The threads the kernels run on.
//!
//! A kernel that splits its work runs one part on the calling thread and the
//! others on a rayon pool ([`par_parts`]), the way OpenMP runs a parallel
//! region: with `n` threads, the caller and `n - 1` pool workers, never more
//! threads than that at work. Two habits keep the hand-offs cheap on small
//! models, where a training step is a dozen parallel regions of 50-200 µs:
//!
//! - the caller waits for the other parts by spinning, not sleeping: a thread
//!   put to sleep takes tens of µs to wake on a virtual machine (its virtual
//!   CPU halts), as long as a whole part;
//! - after a region, the workers stay awake for [`LINGER`] (spinning, then
//!   back to rayon's sleep), so that the next region, a few µs of Python
//!   later, finds them ready. OpenMP runtimes spin the same way.
//!
//! Measured on the 2-core dev machine (a VM): the USPS CNN's epoch at 2
//! threads went from slower than at 1 thread to faster (see the commit).
//!
//! By default the pool is rayon's global one (sized by `RAYON_NUM_THREADS`
//! or the number of cores); [`set_num_threads`] gives the kernels a pool of
//! their own.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::error::KernelError;

/// The kernels' own pool and the thread count it serves (workers + caller).
static POOL: RwLock<Option<(Arc<ThreadPool>, usize)>> = RwLock::new(None);

/// Bumped at the start of every parallel region: lingering workers stop.
static EPOCH: AtomicUsize = AtomicUsize::new(0);

/// Workers spinning in [`linger`] now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// How long workers stay awake after a parallel region.
///
/// Long enough to span the Python between two kernels of a training step
/// (tens of µs) and the loss and update between two steps; short enough
/// that an idle program gives its cores back at once. GNU OpenMP spins for
/// a comparable time by default.
pub const LINGER: Duration = Duration::from_micros(300);

/// Spins of the waiting caller before it falls back to sleeping (about a
/// millisecond): a part that long is worth a wake-up.
const CALLER_SPINS: u32 = 1 << 16;

/// Runs the kernels on `n` threads from now on (the caller and `n - 1` pool
/// workers); `n = 0` goes back to the default (rayon's global pool).
pub fn set_num_threads(n: usize) -> Result<(), KernelError> {
    let pool = if n == 0 {
        None
    } else {
        let pool = ThreadPoolBuilder::new()
            .num_threads((n - 1).max(1))
            .thread_name(|i| format!("diy_nn-{i}"))
            .build()
            .map_err(|e| KernelError::invalid("set_num_threads", e.to_string()))?;
        Some((Arc::new(pool), n))
    };
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

/// The number of threads the kernels use.
pub fn num_threads() -> usize {
    match current_pool() {
        Some((_, n)) => n,
        None => rayon::current_num_threads(),
    }
}

fn current_pool() -> Option<(Arc<ThreadPool>, usize)> {
    POOL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Counts a part done when dropped (also when the part panics, so that the
/// waiting caller never spins forever).
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Runs `f(0), …, f(parts - 1)` and returns when all are done: part 0 on the
/// calling thread, the others on the pool's workers. A panic in a part is
/// raised again here once every part has ended.
pub fn par_parts<F: Fn(usize) + Sync>(parts: usize, f: F) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    EPOCH.fetch_add(1, Ordering::AcqRel);
    let pending = AtomicUsize::new(parts - 1);
    match current_pool() {
        Some((pool, _)) => {
            pool.in_place_scope(|s| run_parts(s, parts, &f, &pending));
            linger(|job| pool.spawn(job), pool.current_num_threads());
        }
        None => {
            rayon::in_place_scope(|s| run_parts(s, parts, &f, &pending));
            linger(rayon::spawn, rayon::current_num_threads());
        }
    }
}

/// The body of [`par_parts`]'s scope: spawn parts `1..`, run part 0, wait.
fn run_parts<'scope, F: Fn(usize) + Sync>(
    s: &rayon::Scope<'scope>,
    parts: usize,
    f: &'scope F,
    pending: &'scope AtomicUsize,
) {
    for i in 1..parts {
        s.spawn(move |_| {
            let _done = Done(pending);
            f(i);
        });
    }
    f(0);
    // A pool worker that calls this (nested parallelism) must not spin: the
    // other parts may wait in its own queue, and the scope's end runs them.
    if rayon::current_thread_index().is_none() {
        let mut spins = 0u32;
        while pending.load(Ordering::Acquire) != 0 && spins < CALLER_SPINS {
            std::hint::spin_loop();
            spins += 1;
        }
    }
}

/// Keeps up to `workers` pool threads awake for [`LINGER`] or until the
/// next parallel region starts, whichever comes first.
fn linger(spawn: impl Fn(Box<dyn FnOnce() + Send>), workers: usize) {
    let epoch = EPOCH.load(Ordering::Acquire);
    while LINGERING.load(Ordering::Acquire) < workers {
        LINGERING.fetch_add(1, Ordering::AcqRel);
        spawn(Box::new(move || {
            let start = Instant::now();
            'spin: while start.elapsed() < LINGER {
                for _ in 0..64 {
                    if EPOCH.load(Ordering::Acquire) != epoch {
                        break 'spin;
                    }
                    std::hint::spin_loop();
                }
            }
            LINGERING.fetch_sub(1, Ordering::AcqRel);
        }));
    }
}

/// Runs `f(chunk_index, chunk)` over `data` cut in chunks of `len` (the last
/// one shorter), the chunks dealt in `parts` contiguous runs to
/// [`par_parts`]: the same chunks and the same order within each run for a
/// given thread count, so results are reproducible. One part runs them in
/// order right here.
pub fn par_chunks_mut<T: Send>(
    data: &mut [T],
    len: usize,
    parts: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if parts <= 1 {
        data.chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let chunks: Vec<Mutex<&mut [T]>> = data.chunks_mut(len.max(1)).map(Mutex::new).collect();
    let parts = parts.clamp(1, chunks.len().max(1));
    let runs = split_even(chunks.len(), parts);
    par_parts(parts, |p| {
        for i in runs[p].clone() {
            let mut chunk = chunks[i].lock().unwrap_or_else(|e| e.into_inner());
            f(i, &mut chunk);
        }
    });
}

/// [`par_chunks_mut`] over two arrays cut in the same number of chunks (of
/// `la` and `lb` elements): `f(chunk_index, chunk_of_a, chunk_of_b)`.
pub fn par_chunks_mut2<A: Send, B: Send>(
    a: &mut [A],
    la: usize,
    b: &mut [B],
    lb: usize,
    parts: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    if parts <= 1 {
        let pairs = a.chunks_mut(la.max(1)).zip(b.chunks_mut(lb.max(1)));
        pairs.enumerate().for_each(|(i, (ca, cb))| f(i, ca, cb));
        return;
    }
    let chunks: Vec<Mutex<(&mut [A], &mut [B])>> = a
        .chunks_mut(la.max(1))
        .zip(b.chunks_mut(lb.max(1)))
        .map(Mutex::new)
        .collect();
    let parts = parts.clamp(1, chunks.len().max(1));
    let runs = split_even(chunks.len(), parts);
    par_parts(parts, |p| {
        for i in runs[p].clone() {
            let mut pair = chunks[i].lock().unwrap_or_else(|e| e.into_inner());
            let (ca, cb) = &mut *pair;
            f(i, ca, cb);
        }
    });
}

/// `parts` contiguous ranges covering `0..n`, their lengths differing by at most one.
pub fn split_even(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts)
        .map(|p| (p * n / parts)..((p + 1) * n / parts))
        .collect()
}

/// Runs `f(p)` for the `parts` parts and returns their results in order.
pub fn par_map<R: Send, F: Fn(usize) -> R + Sync>(parts: usize, f: F) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    par_parts(parts, |p| {
        let r = f(p);
        *slots[p].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every part ran")
        })
        .collect()
}

/// The parts a kernel splits into: one per thread when `parallel`, else one.
pub fn parts(parallel: bool) -> usize {
    if parallel {
        num_threads()
    } else {
        1
    }
}

/// Whether work of `cost` (roughly, multiply-adds) should be split across threads.
///
/// Below [`PAR_MIN_WORK`] the hand-off to other threads costs more than it saves.
#[inline]
pub fn worth_parallel(cost: usize) -> bool {
    cfg!(feature = "multi-threads") && cost >= PAR_MIN_WORK && num_threads() > 1
}

/// The work (in multiply-adds) below which kernels stay on the calling thread.
///
/// Measured with `cargo bench` (see benches/kernels.rs): a hand-off costs a
/// few microseconds, about the time of 30k multiply-adds on one core.
pub const PAR_MIN_WORK: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_run_once_each_and_chunks_cover_the_data() {
        set_num_threads(3).unwrap();
        let hits: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        par_parts(5, |p| {
            hits[p].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        let mut data: Vec<usize> = vec![0; 23];
        par_chunks_mut(&mut data, 4, 3, |i, c| {
            c.iter_mut().for_each(|v| *v += i + 1)
        });
        let expected: Vec<usize> = (0..23).map(|j| j / 4 + 1).collect();
        assert_eq!(data, expected);
        assert_eq!(par_map(4, |p| p * p), vec![0, 1, 4, 9]);
        assert_eq!(split_even(7, 3), vec![0..2, 2..4, 4..7]);
        set_num_threads(0).unwrap();
    }

    #[test]
    fn a_panicking_part_is_raised_in_the_caller() {
        set_num_threads(2).unwrap();
        let r = std::panic::catch_unwind(|| {
            par_parts(2, |p| {
                if p == 1 {
                    panic!("part 1");
                }
            })
        });
        assert!(r.is_err());
        set_num_threads(0).unwrap();
    }
}
