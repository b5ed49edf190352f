//! The threads the kernels run on.
//!
//! A kernel that splits its work runs one part on the calling thread and the
//! others on a rayon pool ([`par_parts`]), as OpenMP runs a parallel region:
//! with `n` threads, the caller and `n - 1` pool workers. A training step of
//! a small model is a dozen regions of 50-200 µs, and a sleeping thread takes
//! tens of µs to wake on a VM, so:
//!
//! - after a region, the workers stay awake for [`LINGER`] (spinning, then
//!   back to rayon's sleep), ready for the next one, as OpenMP runtimes do;
//! - a part that no worker has begun when the caller is done with its own,
//!   the caller runs: a worker still asleep, or whose core another program
//!   holds, delays nobody;
//! - the caller waits for the parts running on workers by spinning, for at
//!   most twice its own part and [`SPIN_SLACK`] (a worker that late is
//!   probably descheduled), then sleeps.
//!
//! Nobody spins with more threads than cores (libgomp throttles likewise),
//! and a spinning thread yields its core every [`YIELD_EVERY`] spins, to
//! whoever is runnable: perhaps the thread it waits for.
//!
//! The pool is the kernels' own, never rayon's global one: it is built at the
//! first parallel region (not by [`set_num_threads`], which only records the
//! count, at most [`MAX_THREADS`]), for `RAYON_NUM_THREADS` or the number of
//! cores the process may use by default.
//!
//! **Fork.** A forked child has the parent's memory but only the thread that
//! called `fork`: a pool inherited from the parent has no workers, and a
//! region handed to it would wait forever. `pthread_atfork` handlers hold the
//! pool's lock across `fork` (so the child never inherits it locked) and, in
//! the child, forget the inherited pool without dropping it (dropping waits
//! on its workers); the child's first region builds a pool of its own.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::KernelError;

/// The most threads [`set_num_threads`] accepts: far above any machine's
/// cores, it refuses an absurd count (a typo, `2**20`).
pub const MAX_THREADS: usize = 1024;

/// A built pool: `threads - 1` workers (at least one) and the caller.
struct Pool {
    rayon: ThreadPool,
    threads: usize,
    /// Whether waiting threads spin: only with no more threads than cores.
    spin: bool,
    /// Workers spinning in [`linger`] now.
    lingering: Arc<AtomicUsize>,
}

/// The pool for the current thread count, once a region needed it.
struct State {
    pool: Option<Arc<Pool>>,
    /// A thread count whose pool could not be built (threads could not be
    /// spawned): its regions run on the caller alone, without retrying.
    failed: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    pool: None,
    failed: 0,
});

/// The thread count asked for by [`set_num_threads`]; 0 = the default.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Bumped at the start of every parallel region: lingering workers stop.
static EPOCH: AtomicUsize = AtomicUsize::new(0);

/// How long workers stay awake after a parallel region: across the Python
/// between two kernels and between two training steps, but an idle program
/// gives its cores back at once.
pub const LINGER: Duration = Duration::from_micros(300);

/// The longest the caller spins for the parts running on workers before it
/// sleeps: a part that long is worth a wake-up.
const CALLER_SPIN: Duration = Duration::from_millis(1);

/// What the caller's spin may exceed twice its own part by: the parts'
/// unevenness, and a worker that began its part after the caller.
const SPIN_SLACK: Duration = Duration::from_micros(100);

/// Spins between two yields of a spinning thread (some 100 µs on a 2020s
/// x86 core, whose `pause` takes tens of ns).
const YIELD_EVERY: u32 = 1 << 12;

/// `m` locked, also after a panic of its last holder.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the kernels on `n` threads from now on (the caller and `n - 1` pool
/// workers); `n = 0` goes back to the default (`RAYON_NUM_THREADS`, else the
/// number of cores the process may use). Cheap: the pool is built by the
/// next parallel region.
///
/// # Errors
/// `n` above [`MAX_THREADS`].
pub fn set_num_threads(n: usize) -> Result<(), KernelError> {
    if n > MAX_THREADS {
        let why = format!("n must be at most {MAX_THREADS} (0 = default), got {n}");
        return Err(KernelError::invalid("set_num_threads", why));
    }
    REQUESTED.store(n, Release);
    let threads = num_threads();
    let old = {
        let mut state = lock(&STATE);
        state.failed = 0;
        match &state.pool {
            Some(p) if p.threads != threads => state.pool.take(),
            _ => None,
        }
    };
    drop(old); // its idle workers exit now, outside the lock
    Ok(())
}

/// The number of threads the kernels use.
pub fn num_threads() -> usize {
    match REQUESTED.load(Acquire) {
        0 => default_threads(),
        n => n,
    }
}

/// `RAYON_NUM_THREADS` when it is a count from 1 to [`MAX_THREADS`], else
/// the cores this process may use (read once).
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=MAX_THREADS).contains(n))
            .unwrap_or_else(cores)
    })
}

/// The cores this process may use (affinity and cgroup quota), read once.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pool for `threads` threads, built now if none is; `None` when its
/// workers cannot be spawned (the caller then runs every part itself).
fn pool(threads: usize) -> Option<Arc<Pool>> {
    {
        let state = lock(&STATE);
        match &state.pool {
            Some(p) if p.threads == threads => return Some(Arc::clone(p)),
            _ if state.failed == threads => return None,
            _ => {}
        }
    }
    if !fork::handlers_installed() {
        return None;
    }
    // Built outside the lock: spawning threads takes a while, and a fork
    // meanwhile (from another thread) must not wait for it.
    let built = ThreadPoolBuilder::new()
        .num_threads((threads - 1).max(1))
        .thread_name(|i| format!("diy_nn-{i}"))
        .build()
        .ok()
        .map(|rayon| {
            Arc::new(Pool {
                rayon,
                threads,
                spin: threads <= cores(),
                lingering: Arc::new(AtomicUsize::new(0)),
            })
        });
    let mut state = lock(&STATE);
    match (&state.pool, built) {
        // Another thread was quicker: ours is dropped.
        (Some(p), _) if p.threads == threads => Some(Arc::clone(p)),
        (_, Some(p)) => {
            let old = state.pool.replace(Arc::clone(&p));
            drop((state, old)); // the old pool's workers exit outside the lock
            Some(p)
        }
        (_, None) => {
            state.failed = threads;
            None
        }
    }
}

#[cfg(unix)]
mod fork {
    //! The `pthread_atfork` handlers (see the module's documentation).

    use super::{lock, State, STATE};
    use std::cell::RefCell;
    use std::sync::{MutexGuard, OnceLock};

    thread_local! {
        /// The state's lock, held by the forking thread across `fork`.
        static HELD: RefCell<Option<MutexGuard<'static, State>>> = const { RefCell::new(None) };
    }

    extern "C" fn before() {
        let guard = lock(&STATE);
        HELD.with(|h| *h.borrow_mut() = Some(guard));
    }

    extern "C" fn in_parent() {
        HELD.with(|h| drop(h.borrow_mut().take()));
    }

    extern "C" fn in_child() {
        HELD.with(|h| {
            if let Some(mut state) = h.borrow_mut().take() {
                // Its workers stayed in the parent: never use it, never drop it.
                std::mem::forget(state.pool.take());
                state.failed = 0;
            }
        });
    }

    /// Registers the handlers once per process (a child inherits them);
    /// false if that failed (ENOMEM): then no pool is built, since a forked
    /// child could hang in its first region, and every part runs serially.
    pub(super) fn handlers_installed() -> bool {
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        *INSTALLED.get_or_init(|| {
            // SAFETY: the handlers are `extern "C"` functions that live as long
            // as the program and do not unwind (`lock` ignores poisoning).
            unsafe { libc::pthread_atfork(Some(before), Some(in_parent), Some(in_child)) == 0 }
        })
    }
}

#[cfg(not(unix))]
mod fork {
    /// No `fork` outside Unix: nothing to install.
    pub(super) fn handlers_installed() -> bool {
        true
    }
}

/// One region's parts, shared with the workers' jobs (which may start after
/// the region has ended, and then find nothing to do).
struct Region {
    /// Per part: 0 free, 1 taken and running, 2 done.
    state: Vec<AtomicU8>,
    /// The first panic of a part, raised by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    caller: Thread,
}

impl Region {
    /// Runs part `i` unless another thread took it; `f` is the address of
    /// the caller's `&dyn Fn`.
    fn take(&self, i: usize, f: usize) {
        if self.state[i].fetch_max(1, AcqRel) != 0 {
            return; // taken by another thread: running or done
        }
        // SAFETY: the caller's `f` lives until no part is running.
        let f = unsafe { *(f as *const &(dyn Fn(usize) + Sync)) };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            lock(&self.panic).get_or_insert(p);
        }
        self.state[i].store(2, Release);
        self.caller.unpark();
    }
}

/// Runs `f(0), …, f(parts - 1)`: part 0 on the calling thread, the others on
/// the pool's workers, or on the caller where no worker has begun them (see
/// the module doc). A panic in a part is raised here once all have ended.
pub fn par_parts<F: Fn(usize) + Sync>(parts: usize, f: F) {
    let pool = if parts > 1 { pool(num_threads()) } else { None };
    let Some(pool) = pool else {
        (0..parts).for_each(f); // one part, or no workers: every part here, in order
        return;
    };
    EPOCH.fetch_add(1, AcqRel);
    let state = (0..parts).map(|_| AtomicU8::new(0)).collect();
    let (panic, caller) = (Mutex::new(None), std::thread::current());
    let region = Arc::new(Region {
        state,
        panic,
        caller,
    });
    let f: &(dyn Fn(usize) + Sync) = &f;
    let addr = &f as *const _ as usize;
    for i in 1..parts {
        let region = Arc::clone(&region);
        pool.rayon.spawn(move || region.take(i, addr));
    }
    let start = Instant::now();
    (0..parts).for_each(|i| region.take(i, addr));
    let busy = || region.state.iter().any(|s| s.load(Acquire) == 1);
    if pool.spin {
        let wait = (start.elapsed() * 2 + SPIN_SLACK).min(CALLER_SPIN);
        spin_until(Instant::now() + wait, || !busy());
    }
    while busy() {
        std::thread::park_timeout(Duration::from_millis(1));
    }
    if let Some(p) = lock(&region.panic).take() {
        resume_unwind(p);
    }
    if pool.spin {
        linger(&pool);
    }
}

/// Keeps the pool's workers awake for [`LINGER`] or until the next parallel
/// region starts, whichever comes first.
fn linger(pool: &Pool) {
    let epoch = EPOCH.load(Acquire);
    let workers = pool.rayon.current_num_threads();
    while pool.lingering.load(Acquire) < workers {
        pool.lingering.fetch_add(1, AcqRel);
        let lingering = Arc::clone(&pool.lingering);
        pool.rayon.spawn(move || {
            spin_until(Instant::now() + LINGER, || EPOCH.load(Acquire) != epoch);
            lingering.fetch_sub(1, AcqRel);
        });
    }
}

/// Spins until `done()`, or until `end` is past, yielding the core every
/// [`YIELD_EVERY`] spins (the only times it reads the clock).
fn spin_until(end: Instant, done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(YIELD_EVERY) {
            if Instant::now() > end {
                return;
            }
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// Runs `f(i, item)` over the items (the chunks of an array, say), dealt in
/// `parts` contiguous runs to [`par_parts`]: the same runs and the same order
/// within each for a given thread count, so results are reproducible. One
/// part runs them in order right here.
pub fn par_items<I: Send>(
    items: impl Iterator<Item = I>,
    parts: usize,
    f: impl Fn(usize, I) + Sync,
) {
    if parts <= 1 {
        items.enumerate().for_each(|(i, item)| f(i, item));
        return;
    }
    let items: Vec<Mutex<Option<I>>> = items.map(|item| Mutex::new(Some(item))).collect();
    let runs = split_even(items.len(), parts.clamp(1, items.len().max(1)));
    par_parts(runs.len(), |p| {
        for i in runs[p].clone() {
            let item = lock(&items[i]).take();
            f(i, item.expect("each item is taken once"));
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
    let mut slots: Vec<Option<R>> = (0..parts).map(|_| None).collect();
    par_items(slots.iter_mut(), parts, |p, slot| *slot = Some(f(p)));
    slots.into_iter().flatten().collect() // every part ran, or its panic was raised
}

/// The parts a kernel splits into: one per thread when `parallel`, else one.
pub fn parts(parallel: bool) -> usize {
    num_threads().min(if parallel { usize::MAX } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn parts_run_once_each_and_chunks_cover_the_data() {
        set_num_threads(3).unwrap();
        let hits: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        par_parts(5, |p| _ = hits[p].fetch_add(1, Relaxed));
        assert!(hits.iter().all(|h| h.load(Relaxed) == 1));
        let mut data: Vec<usize> = vec![0; 23];
        par_items(data.chunks_mut(4), 3, |i, c| {
            c.iter_mut().for_each(|v| *v += i + 1)
        });
        let expected: Vec<usize> = (0..23).map(|j| j / 4 + 1).collect();
        assert_eq!(data, expected);
        assert_eq!(par_map(4, |p| p * p), vec![0, 1, 4, 9]);
        assert_eq!(split_even(7, 3), vec![0..2, 2..4, 4..7]);
        // A panic in a part is raised in the caller.
        let r = std::panic::catch_unwind(|| par_parts(2, |p| assert!(p != 1, "part 1")));
        assert!(r.is_err());
        set_num_threads(0).unwrap();
    }

    /// A region whose parts no worker can begin (the one worker is held by
    /// another region's part) ends on its caller alone.
    #[test]
    fn a_region_ends_while_the_workers_are_held_elsewhere() {
        use std::sync::atomic::AtomicBool;
        set_num_threads(2).unwrap();
        let (started, release) = (AtomicBool::new(false), AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                par_parts(2, |p| {
                    let flag = [&started, &release][p]; // part 1 holds the worker
                    started.fetch_or(p == 1, AcqRel);
                    while !flag.load(Acquire) {
                        std::thread::yield_now();
                    }
                })
            });
            while !started.load(Acquire) {
                std::thread::yield_now();
            }
            s.spawn(move || {
                par_parts(2, |_| ());
                tx.send(()).unwrap();
            });
            let ended = rx.recv_timeout(Duration::from_secs(20));
            release.store(true, Release);
            assert!(
                ended.is_ok(),
                "the second region waited for the held worker"
            );
        });
        set_num_threads(0).unwrap();
    }

    #[test]
    fn absurd_thread_counts_are_refused_and_setting_one_spawns_nothing() {
        let err = set_num_threads(MAX_THREADS + 1).unwrap_err();
        assert!(err.to_string().contains("at most 1024"), "{err}");
        assert!(set_num_threads(usize::MAX).is_err());
        let start = Instant::now();
        set_num_threads(MAX_THREADS).unwrap(); // recorded only: the pool is lazy
        set_num_threads(0).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[cfg(unix)]
    #[test]
    fn a_forked_child_runs_parallel_regions() {
        set_num_threads(2).unwrap();
        let sum = AtomicUsize::new(0);
        par_parts(4, |p| _ = sum.fetch_add(p, Relaxed));
        // SAFETY: the child runs only par_parts over atomics, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let sum = AtomicUsize::new(0);
            par_parts(4, |p| _ = sum.fetch_add(p + 1, Relaxed));
            let code = 3 * i32::from(sum.load(Relaxed) != 10);
            unsafe { libc::_exit(code) };
        }
        let start = Instant::now();
        let mut status = 0;
        while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
            if start.elapsed() > Duration::from_secs(30) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                unsafe { libc::waitpid(pid, &mut status, 0) };
                panic!("the forked child hung in its first parallel region");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(sum.load(Relaxed), 6);
        set_num_threads(0).unwrap();
    }
}
