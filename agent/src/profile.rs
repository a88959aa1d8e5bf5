//! The profiling path, run by application threads: decorated code calls [`hook`] about
//! once every `period` calls of a site (its counter in the module's runtime area runs
//! down to -1). The hook resets the counter and pushes one [`Sample`] into a bounded
//! lock-free queue that the agent thread drains. No locks, no allocation, no syscalls: a
//! full queue drops the sample and counts the drop.
//!
//! Count estimate: a sample stands for the calls since the previous sample of that site,
//! i.e. its weight, drawn uniformly from [period/2, 3·period/2) so that periodic call
//! patterns cannot alias with the sampling period. An edge's estimated
//! calls are the sum of its samples' weights; each site's estimate is exact up to the
//! calls since its last sample (at most one weight, < 1.5 × period) plus the error of
//! attributing a whole weight to the target seen at the sample, which for an edge with
//! share p of a site's N calls is about ±period × sqrt(N p (1-p) / period) (binomial).
//! Counters start one weight away from the first sample, so with one target per site
//! the estimate is below the true count by less than one weight (the
//! calls since the last sample; below 1.5 × period).

use bitcode_embed::format::{RuntimeAreaHeader, RUNTIME_COUNTERS_OFFSET};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// One observation: site `site` of the module whose runtime area is `area` called `target`.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Runtime area of the module (identifies it).
    pub area: usize,
    /// Site index within the module.
    pub site: u32,
    /// Calls this sample stands for.
    pub weight: u32,
    /// The call's actual target.
    pub target: u64,
}

/// Queue capacity: enough for ~10 ms of samples from busy threads.
const QUEUE_CAPACITY: usize = 1 << 16;

static QUEUE: OnceLock<ArrayQueue<Sample>> = OnceLock::new();
static PERIOD: AtomicU32 = AtomicU32::new(256);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static RNG: AtomicU32 = AtomicU32::new(0x9e37_79b9);

/// Sets the sampling period. The queue is allocated when the first module attaches, so
/// a process without decorated code never pays for it.
pub fn init(period: u32) {
    PERIOD.store(period.max(1), Ordering::Relaxed);
}

/// The samples waiting for the agent thread (allocates the queue on first use).
pub fn queue() -> &'static ArrayQueue<Sample> {
    QUEUE.get_or_init(|| ArrayQueue::new(QUEUE_CAPACITY))
}

/// The next queued sample, if the queue exists and holds one.
pub fn pop() -> Option<Sample> {
    QUEUE.get().and_then(ArrayQueue::pop)
}

/// Samples lost to a full queue so far.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Calls until the next sample: uniform in [period - period/2, period + period/2), mean
/// `period`. The spread keeps periodic call patterns (every 10th element a different
/// type) from aliasing with the sampling period.
fn next_weight() -> u32 {
    let period = PERIOD.load(Ordering::Relaxed);
    if period <= 1 {
        return 1;
    }
    // xorshift on a shared word: a lost update between threads only repeats a jitter.
    let mut x = RNG.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    RNG.store(x, Ordering::Relaxed);
    period - period / 2 + x % period
}

/// The hook decorated code calls (`bitcode_embed::format::HookFn`).
///
/// # Safety
/// `area` must be the runtime area of a module the agent registered (it stores the
/// module's site count in `reserved` before publishing the hook).
pub unsafe extern "C" fn hook(area: *mut RuntimeAreaHeader, site: u32, target: *const libc::c_void) {
    // SAFETY: per the contract, `area` is a registered runtime area: its header is
    // readable and `reserved` holds the number of counters that follow it.
    let n_sites = unsafe { (*area).reserved };
    if site as u64 >= n_sites {
        return;
    }
    let weight = next_weight();
    // SAFETY: `site < n_sites`, so the counter lies inside the area; counters are i32
    // and only accessed atomically (decorated code uses unordered atomic loads/stores).
    let counter = unsafe { &*((area as *mut u8).add(RUNTIME_COUNTERS_OFFSET + site as usize * 4) as *const AtomicI32) };
    counter.store(weight as i32 - 1, Ordering::Relaxed);
    let sample = Sample { area: area as usize, site, weight, target: target as u64 };
    if let Some(q) = QUEUE.get() {
        if q.push(sample).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connects a module's sites to [`hook`]: counters first, then the hook pointer
/// (release), so a site that sees the hook also sees its counter.
///
/// # Safety
/// `area` must point at a runtime area with `n_sites` counters, writable and mapped.
pub unsafe fn attach(area: *mut RuntimeAreaHeader, n_sites: u32) {
    queue();
    remember(area);
    // SAFETY: the caller guarantees the area layout; `reserved` is plain memory only the
    // agent writes, before publishing the hook. Each counter starts one weight away from
    // its first sample, so the first sample stands for exactly the calls it weighs.
    unsafe {
        std::ptr::addr_of_mut!((*area).reserved).write_volatile(n_sites as u64);
        for site in 0..n_sites as usize {
            let counter = &*((area as *mut u8).add(RUNTIME_COUNTERS_OFFSET + site * 4) as *const AtomicI32);
            counter.store(next_weight() as i32 - 1, Ordering::Relaxed);
        }
        (*area).hook.store(hook as *mut libc::c_void, Ordering::Release);
    }
}

/// Runtime areas attached so far (for [`detach_all`], which must not need the state).
static ATTACHED: [AtomicUsize; 1024] = [const { AtomicUsize::new(0) }; 1024];

fn remember(area: *mut RuntimeAreaHeader) {
    let a = area as usize;
    if ATTACHED.iter().any(|s| s.load(Ordering::Acquire) == a) {
        return;
    }
    for s in &ATTACHED {
        if s.compare_exchange(0, a, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return;
        }
    }
}

/// Forgets an area whose object is gone (agent thread).
pub fn forget(area: *mut RuntimeAreaHeader) {
    for s in &ATTACHED {
        let _ = s.compare_exchange(area as usize, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Detaches every attached module that is still mapped, without any lock: for a fork
/// child, where only the forking thread exists.
///
/// # Safety
/// Every remembered area must still be mapped (areas of unloaded objects are forgotten
/// by the agent thread before it looks at the module list again; in a fork child, an
/// object being unloaded at the fork is still mapped).
pub unsafe fn detach_all() {
    for s in &ATTACHED {
        let a = s.load(Ordering::Acquire);
        if a != 0 {
            // SAFETY: per the function contract.
            unsafe { detach(a as *mut RuntimeAreaHeader) };
        }
    }
}

/// Whether the area's hook is set: the module instance is the one the agent attached (a
/// fresh instance of an object loaded again at the same address has a null hook).
///
/// # Safety
/// `area` must point at a mapped runtime area.
pub unsafe fn is_attached(area: *mut RuntimeAreaHeader) -> bool {
    // SAFETY: the caller guarantees `area` is a mapped runtime area.
    unsafe { !(*area).hook.load(Ordering::Acquire).is_null() }
}

/// Disconnects a module (fork child, agent shutdown): sites go back to one load and a branch.
///
/// # Safety
/// As for [`attach`].
pub unsafe fn detach(area: *mut RuntimeAreaHeader) {
    // SAFETY: the caller guarantees `area` is a mapped runtime area.
    unsafe { (*area).hook.store(std::ptr::null_mut(), Ordering::Release) };
}
