//! The profiling path, run by application threads: decorated code counts every profiled
//! call down on a countdown of its own thread (`ThreadState`, one per thread and decorated
//! object file, see `bitcode_embed::format`) and calls [`hook`] when it goes negative. The
//! hook draws the next countdown and pushes one [`Sample`] into a bounded lock-free queue
//! that the agent thread drains. No locks, no allocation, no syscalls, and no memory that
//! several threads write on the per-call path: countdowns and random state are
//! thread-local; only the queue (once per sample), and while it is full the drop counter
//! and the [`overflow`] table, are shared.
//!
//! Compiled code (F+) keeps sampling the sites it did not specialise (tiered profiling):
//! it counts down a thread-local countdown of the agent's own, at a fixed offset from the
//! thread pointer ([`jit_countdown_offset`]), and calls [`jit_sample`], which pushes the
//! sample through [`hook`] exactly as decorated code does, under the owner's site id.
//!
//! # Count estimates
//! A sample stands for the calls its countdown counted, i.e. its weight: the calls of all
//! sites of that thread and object file since the previous sample, attributed to the edge
//! seen at the sample. Weights are drawn uniformly from [period/2, 3·period/2), so that
//! periodic call patterns cannot alias with the period, and the weight travels with the
//! countdown (`ThreadState::reset`), so a sample is weighted right whatever the period was
//! when it was drawn. Because a countdown's length is drawn before the calls it counts,
//! the sum of the weights of an edge's samples is an unbiased estimate of its calls; for an
//! edge with share p of N calls the error is about ±period·sqrt(N·p·(1-p)/period)
//! (binomial), plus, per thread and object file, the calls since its last sample (below
//! one weight, < 1.5 × period) that are not counted yet. A new thread's first profiled
//! call is a sample of weight 1.
//!
//! # Adaptive period (never flood)
//! The period starts at the configured one (threshold / 16, so an edge needs about 16
//! samples to get hot). The agent thread calls [`adapt`] after draining: it measures the
//! profiled calls per second (from the weights it drained) and sets the period to
//! calls/s ÷ [`TARGET_RATE`], never below the configured one. Until the agent thread gets
//! to run (start-up, a long compile), a hook that finds the queue full doubles the period
//! itself (up to [`BRAKE_LIMIT`] times the agent's choice, at least [`BRAKE_FLOOR`]), so a
//! flood ends after a handful of dropped samples. A dropped (refused) sample is not lost:
//! its weight waits in [`overflow`] under its own edge until the agent reads it, so a
//! lagging agent biases no estimate (carried to the thread's next sample instead, as
//! before, one sample stood for all the calls of the lag and gave them to one edge).
//! Estimates stay unbiased at any period; a larger period only makes them coarser. An
//! edge whose estimate reaches `DRTI_HOT_THRESHOLD` is hot: with the configured period
//! that is after about the threshold's calls; when the period has been raised above the
//! threshold (a program making millions of profiled calls per second), one sample of an
//! edge (weight ≥ threshold) is the evidence, and the chance that an edge with n calls
//! shows one is about n/period.

use bitcode_embed::format::{RuntimeAreaHeader, ThreadState};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod overflow;

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
    /// Milliseconds the sample's calls took place over: since this thread's previous
    /// sample of the module (0 for a thread's first). An edge's first sample may stand for
    /// calls made over a long time; its rate must not be taken as made in an instant.
    pub span_ms: u32,
}

/// Queue capacity: at [`TARGET_RATE`], seconds of samples (a compile may keep the agent
/// thread away that long).
const QUEUE_CAPACITY: usize = 1 << 16;

/// Samples per second the agent aims at, all threads together: about 100 ns of application
/// and agent CPU each, so 0.1% of one core; far more than a hot edge needs to be found.
pub const TARGET_RATE: u64 = 10_000;

/// Largest period (countdowns stay far from `i32::MAX`).
pub const MAX_PERIOD: u32 = 1 << 26;

/// How often [`adapt`] measures the sample rate.
const ADAPT_WINDOW: Duration = Duration::from_millis(10);

static QUEUE: OnceLock<ArrayQueue<Sample>> = OnceLock::new();
/// The period new countdowns are drawn with (written by the agent thread, or by a hook
/// that found the queue full; read once per sample).
static PERIOD: AtomicU32 = AtomicU32::new(256);
/// The configured period: the floor of [`PERIOD`].
static BASE_PERIOD: AtomicU32 = AtomicU32::new(256);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Samples popped by the consumer (agent thread or exit handler), never by the hook.
static POPPED: AtomicU64 = AtomicU64::new(0);
/// The calls those samples stand for (the sum of their weights).
static POPPED_CALLS: AtomicU64 = AtomicU64::new(0);
/// The period [`adapt`] chose last: a hook that finds the queue full may double
/// [`PERIOD`], up to [`BRAKE_LIMIT`] times this.
static AGENT_PERIOD: AtomicU32 = AtomicU32::new(256);

/// How far hooks may raise the period above the agent's choice on their own: enough to
/// outlast a compile of seconds at any call rate the agent last saw, without leaving
/// countdowns so long that a thread goes unsampled for long.
const BRAKE_LIMIT: u32 = 16;

/// The period hooks may always brake up to (before the agent has measured anything, its
/// choice is the configured period, maybe 6; LLVM's loading stops the draining for a while).
const BRAKE_FLOOR: u32 = 1 << 16;

/// Samples before the agent adapts the period: a short run keeps the configured one
/// (and its resolution); so few samples cost nothing anyway.
const EARLY_SAMPLES: u64 = 4096;

/// Time constant of the call-rate smoothing.
const SMOOTHING: Duration = Duration::from_millis(100);

/// Sets the sampling period. The queue is allocated when the first module attaches, so
/// a process without decorated code never pays for it.
pub fn init(period: u32) {
    let p = period.clamp(1, MAX_PERIOD);
    BASE_PERIOD.store(p, Ordering::Relaxed);
    AGENT_PERIOD.store(p, Ordering::Relaxed);
    PERIOD.store(p, Ordering::Relaxed);
}

/// The samples waiting for the agent thread (allocates the queue on first use).
pub fn queue() -> &'static ArrayQueue<Sample> {
    QUEUE.get_or_init(|| ArrayQueue::new(QUEUE_CAPACITY))
}

/// Samples waiting in the queue, plus one if refused samples wait in [`overflow`].
pub fn queued() -> usize {
    QUEUE.get().map_or(0, ArrayQueue::len) + overflow::waiting() as usize
}

/// The next sample: a queued one, else (the queue empty) the calls of refused samples of
/// one edge. One consumer at a time (the agent thread or the exit handler, under the
/// state lock).
pub fn pop() -> Option<Sample> {
    let s = QUEUE.get().and_then(ArrayQueue::pop).or_else(overflow::take);
    if let Some(s) = &s {
        POPPED.fetch_add(1, Ordering::Relaxed);
        POPPED_CALLS.fetch_add(s.weight as u64, Ordering::Relaxed);
    }
    s
}

/// Samples a full queue refused so far (their calls still reach the agent, see [`overflow`]).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Samples the hook has taken so far: queued (popped or still waiting) or dropped (the
/// samples popped from [`overflow`] stand for dropped ones, counted already).
pub fn samples_taken() -> u64 {
    (POPPED.load(Ordering::Relaxed) + QUEUE.get().map_or(0, |q| q.len() as u64) + dropped()).saturating_sub(overflow::taken())
}

/// The period countdowns are drawn with now.
pub fn period() -> u32 {
    PERIOD.load(Ordering::Relaxed)
}

/// The call-rate measurement of [`adapt`] (agent thread only).
struct Meter {
    since: Instant,
    calls: u64,
    /// Smoothed profiled calls per second (all threads).
    rate: f64,
}

static METER: Mutex<Option<Meter>> = Mutex::new(None);

/// Agent thread, after draining the queue: every [`ADAPT_WINDOW`], measures the profiled
/// calls per second (the weights of the samples drained: unlike the sample rate, it does
/// not depend on the period the pending countdowns were drawn with) and sets the period
/// that turns it into [`TARGET_RATE`] samples per second.
pub fn adapt() {
    let Ok(mut meter) = METER.try_lock() else { return };
    let now = Instant::now();
    let calls = POPPED_CALLS.load(Ordering::Relaxed);
    let Some(m) = meter.as_mut() else {
        *meter = Some(Meter { since: now, calls, rate: -1.0 });
        return;
    };
    let dt = now.duration_since(m.since);
    if dt < ADAPT_WINDOW {
        return;
    }
    let window = (calls - m.calls) as f64 / dt.as_secs_f64();
    // Smoothing over about SMOOTHING: a sample of a long countdown lands in one window.
    let a = (dt.as_secs_f64() / SMOOTHING.as_secs_f64()).min(1.0);
    m.rate = if m.rate < 0.0 { window } else { m.rate + a * (window - m.rate) };
    m.since = now;
    m.calls = calls;
    if samples_taken() < EARLY_SAMPLES {
        return;
    }
    let backlog = QUEUE.get().map_or(0, |q| q.len());
    let p = PERIOD.load(Ordering::Relaxed);
    let next = next_period(p, BASE_PERIOD.load(Ordering::Relaxed), m.rate, backlog);
    AGENT_PERIOD.store(next, Ordering::Relaxed);
    if next != p {
        PERIOD.store(next, Ordering::Relaxed);
        tracing::debug!(from = p, to = next, calls_per_s = m.rate, backlog, "sampling period");
    }
}

/// The period for the next window, from the current one, the configured floor, the
/// smoothed profiled calls per second and the queue's backlog.
fn next_period(p: u32, base: u32, calls_per_s: f64, backlog: usize) -> u32 {
    let mut next = (calls_per_s / TARGET_RATE as f64).ceil();
    if backlog >= QUEUE_CAPACITY / 2 {
        // Far behind (the queue is draining a flood): no lower than now until caught up.
        next = next.max(p as f64);
    }
    (next as u64).clamp(base as u64, MAX_PERIOD as u64) as u32
}

/// Calls until the next sample: uniform in [period - period/2, period + period/2), mean
/// `period`, from the thread's own xorshift state (seeded on first use from the state's
/// address, which differs per thread, and the time stamp counter).
fn next_weight(period: u32, rng: &mut u32) -> u32 {
    if period <= 1 {
        return 1;
    }
    let mut x = *rng;
    if x == 0 {
        x = seed(rng as *mut u32 as u64);
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *rng = x;
    period - period / 2 + x % period
}

/// A nonzero 32-bit seed from `salt` and the time stamp counter (splitmix64 finaliser).
fn seed(salt: u64) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions on x86-64.
    let t = unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    let t = 0u64;
    let mut z = salt ^ t.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z ^ (z >> 32)) as u32) | 1
}

/// A coarse millisecond clock for sample spans, never 0 (0 in `ThreadState::reserved`
/// means "no sample yet"); it wraps after 49 days, which `wrapping_sub` absorbs.
fn clock_ms() -> u32 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills `t`; the coarse clock is a vDSO read, no system call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    ((t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000) as u32) | 1
}

/// The hook decorated code calls (`bitcode_embed::format::HookFn`).
///
/// # Safety
/// `area` must be the runtime area of a module the agent registered (it stores the
/// module's site count in `reserved` before publishing the hook) and `state` the calling
/// thread's `ThreadState` of that module (or null).
pub unsafe extern "C" fn hook(area: *mut RuntimeAreaHeader, site: u32, target: *const libc::c_void, state: *mut ThreadState) {
    if state.is_null() {
        return;
    }
    let period = PERIOD.load(Ordering::Relaxed);
    // SAFETY: `state` is this thread's state (the caller's contract); only this thread
    // touches it, so plain reads and writes through the raw pointer are race-free (a
    // signal handler of this thread running decorated code in between only loses or
    // repeats one countdown).
    let now = clock_ms();
    let (weight, since) = unsafe {
        let reset = std::ptr::addr_of!((*state).reset).read();
        let mut rng = std::ptr::addr_of!((*state).rng).read();
        let next = next_weight(period, &mut rng) as i32;
        std::ptr::addr_of_mut!((*state).rng).write(rng);
        std::ptr::addr_of_mut!((*state).reset).write(next - 1);
        std::ptr::addr_of_mut!((*state).countdown).write(next - 1);
        let since = std::ptr::addr_of!((*state).reserved).read();
        std::ptr::addr_of_mut!((*state).reserved).write(now);
        (reset.max(0) as u32 + 1, since)
    };
    // `reserved` holds the clock at the thread's previous sample (0: none yet).
    let span_ms = if since == 0 { 0 } else { now.wrapping_sub(since) };
    // SAFETY: per the contract, `area` is a registered runtime area: its header is
    // readable and `reserved` holds the module's number of sites.
    let n_sites = unsafe { (*area).reserved };
    if site as u64 >= n_sites {
        return;
    }
    let sample = Sample { area: area as usize, site, weight, target: target as u64, span_ms };
    if let Some(q) = QUEUE.get() {
        if q.push(sample).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            // Kept under its edge; only if the overflow table has no room, its calls go
            // to this thread's next sample (a longer interval, unbiased on average, but
            // one edge takes them all).
            if !overflow::keep(&sample) {
                // SAFETY: as above, this thread's own state.
                unsafe {
                    let reset = std::ptr::addr_of_mut!((*state).reset);
                    let carried = reset.read() as i64 + weight as i64;
                    if carried < (i32::MAX / 2) as i64 {
                        reset.write(carried as i32);
                        // ... and so does their span.
                        std::ptr::addr_of_mut!((*state).reserved).write(since);
                    }
                }
            }
            // The agent thread is not keeping up: sample half as often from now on (one
            // doubling per period seen, however many threads see it), within the limit.
            let limit = AGENT_PERIOD.load(Ordering::Relaxed).saturating_mul(BRAKE_LIMIT).clamp(BRAKE_FLOOR, MAX_PERIOD);
            if period < limit {
                let _ = PERIOD.compare_exchange(period, period.saturating_mul(2).min(limit), Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// The profiling state of JIT'd code (F+), per thread: F+ cannot name a decorated
/// object's `__drti_tls`, so its sampled sites count down this one, shared by all F+ of
/// the thread (weights stay unbiased: one countdown over all sites, as in an object file).
/// The agent is preloaded, so this lives in the static TLS block, at the same offset from
/// the thread pointer in every thread ([`jit_countdown_offset`]).
mod jit_tls {
    use bitcode_embed::format::ThreadState;
    use std::cell::UnsafeCell;

    thread_local! {
        pub static STATE: UnsafeCell<ThreadState> = const { UnsafeCell::new(ThreadState { countdown: 0, reset: 0, rng: 0, reserved: 0 }) };
    }

    /// This thread's state.
    pub fn state() -> *mut ThreadState {
        STATE.with(|s| s.get())
    }
}

/// The thread pointer (`%fs` base on x86-64).
#[cfg(target_arch = "x86_64")]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux, `%fs:0` holds the thread control block's own address (the
    // thread pointer, glibc and musl alike); reading it has no side effect.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
}

/// Offset of the calling thread's JIT countdown from its thread pointer.
#[cfg(target_arch = "x86_64")]
fn countdown_offset_here() -> i64 {
    jit_tls::state() as i64 - thread_pointer() as i64
}

/// The offset from the thread pointer of the JIT countdown (an `i32`, the first field of
/// the thread's [`ThreadState`]) when it is the same in every thread: measured on the
/// calling thread and on a fresh one, and within the static TLS block below the thread
/// pointer (x86-64 TLS variant II). `None` (F+ then calls [`jit_count`] at each sampled
/// call) if the agent's TLS is dynamic (the agent was dlopen'd) or not on x86-64.
pub fn jit_countdown_offset() -> Option<i64> {
    static OFFSET: OnceLock<Option<i64>> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let here = countdown_offset_here();
            let there = std::thread::Builder::new().name("drti-tls-probe".into()).spawn(countdown_offset_here).ok()?.join().ok()?;
            let ok = here == there && (-(1 << 20)..0).contains(&here);
            if ok {
                tracing::debug!(offset = here, "JIT countdown in static TLS");
            } else {
                tracing::debug!(here, there, "the JIT countdown is not in static TLS: compiled code calls the sampler at each sampled call");
            }
            ok.then_some(here)
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

/// Takes one sample for JIT'd code whose countdown (this thread's JIT countdown) went
/// negative at site `site` of the module whose runtime area is `area`: exactly what
/// [`hook`] does for decorated code. Ignored when the module is not attached (fork
/// child, agent shut down).
///
/// # Safety
/// `area` must be the runtime area of a module the agent attached and that is still
/// mapped (F+ passes the areas of the modules its code came from, which it depends on).
pub unsafe extern "C" fn jit_sample(area: *mut RuntimeAreaHeader, site: u32, target: *const libc::c_void) {
    let state = jit_tls::state();
    // SAFETY: the caller's contract: `area` is a mapped runtime area.
    if unsafe { !is_attached(area) } {
        // Stay quiet for a while (this thread's state only).
        // SAFETY: this thread's own state.
        unsafe { std::ptr::addr_of_mut!((*state).countdown).write(i32::MAX / 2) };
        return;
    }
    // SAFETY: `area` is attached (the contract of `hook`) and `state` is this thread's.
    unsafe { hook(area, site, target, state) }
}

/// For F+ when the countdown has no fixed offset: counts one call down on this thread's
/// JIT countdown and samples when it goes negative.
///
/// # Safety
/// As for [`jit_sample`].
pub unsafe extern "C" fn jit_count(area: *mut RuntimeAreaHeader, site: u32, target: *const libc::c_void) {
    let state = jit_tls::state();
    // SAFETY: this thread's own state, touched by this thread only.
    let c = unsafe {
        let p = std::ptr::addr_of_mut!((*state).countdown);
        let c = p.read() - 1;
        p.write(c);
        c
    };
    if c < 0 {
        // SAFETY: per the function contract.
        unsafe { jit_sample(area, site, target) }
    }
}

/// Connects a module's sites to [`hook`]: the site count first, then the hook pointer
/// (release), so a site that sees the hook also sees the count. Countdowns are
/// thread-local and start at zero: each thread's first profiled call takes a sample.
///
/// # Safety
/// `area` must point at a runtime area with `n_sites` sites, writable and mapped.
pub unsafe fn attach(area: *mut RuntimeAreaHeader, n_sites: u32) {
    queue();
    remember(area);
    // SAFETY: the caller guarantees the area layout; `reserved` is plain memory only the
    // agent writes, before publishing the hook.
    unsafe {
        std::ptr::addr_of_mut!((*area).reserved).write_volatile(n_sites as u64);
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

/// Forgets an area whose object is gone (agent thread), and the refused samples of it
/// that still wait.
pub fn forget(area: *mut RuntimeAreaHeader) {
    overflow::forget(area as usize);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_follows_the_call_rate() {
        let t = TARGET_RATE as f64;
        // The period that turns the call rate into the target sample rate.
        assert_eq!(next_period(6, 6, 1000.0 * t, 0), 1000);
        assert_eq!(next_period(5000, 6, 1000.0 * t, 0), 1000);
        // Never under the configured period nor over the maximum.
        assert_eq!(next_period(600, 6, 0.0, 0), 6);
        assert_eq!(next_period(MAX_PERIOD, 6, 1e18, 0), MAX_PERIOD);
        // A large backlog keeps it from falling.
        assert_eq!(next_period(600, 6, 10.0 * t, QUEUE_CAPACITY / 2), 600);
    }

    #[test]
    fn weights_have_the_period_as_mean_and_threads_differ() {
        let mut rng = 0;
        let n = 100_000u64;
        let sum: u64 = (0..n).map(|_| next_weight(1000, &mut rng) as u64).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 5.0, "mean weight {mean}");
        let mut other = 0;
        let a: Vec<u32> = (0..4).map(|_| next_weight(1000, &mut rng)).collect();
        let b: Vec<u32> = (0..4).map(|_| next_weight(1000, &mut other)).collect();
        assert_ne!(a, b);
        assert_eq!(next_weight(1, &mut rng), 1);
    }

    /// Tests that use the global queue run one at a time.
    static QUEUE_USERS: Mutex<()> = Mutex::new(());

    #[test]
    fn hook_weights_samples_by_their_countdown() {
        let _one = QUEUE_USERS.lock().unwrap_or_else(|p| p.into_inner());
        let q = queue();
        while q.pop().is_some() {}
        init(100);
        let mut area = RuntimeAreaHeader { hook: Default::default(), reserved: 3 };
        let mut st = ThreadState::default();
        let a = &mut area as *mut RuntimeAreaHeader;
        // SAFETY: `area` and `st` are live locals laid out as the hook expects.
        unsafe { hook(a, 1, 0x1234 as *const libc::c_void, &mut st) };
        let s = q.pop().expect("a sample");
        assert_eq!((s.site, s.weight, s.target), (1, 1, 0x1234));
        assert!((50..150).contains(&(st.countdown + 1)) && st.countdown == st.reset);
        let expect = st.reset as u32 + 1;
        st.countdown = -1;
        // SAFETY: as above.
        unsafe { hook(a, 2, std::ptr::null(), &mut st) };
        assert_eq!(q.pop().expect("a sample").weight, expect);
        // A full queue: the drop is counted, its weight is not carried to the thread's
        // next sample but kept under its own edge, read once the queue is empty.
        while q.push(Sample { area: 0, site: 0, weight: 0, target: 0, span_ms: 0 }).is_ok() {}
        let (dropped, taken) = (dropped(), samples_taken());
        st.countdown = -1;
        let refused = st.reset as u32 + 1;
        // SAFETY: as above.
        unsafe { hook(a, 2, 0x99 as *const libc::c_void, &mut st) };
        assert_eq!(dropped + 1, super::dropped());
        assert_eq!(st.reset, st.countdown);
        assert_eq!(taken + 1, samples_taken());
        while q.pop().is_some() {}
        assert!(queued() > 0, "the refused sample waits");
        let taken = samples_taken();
        let s = pop().expect("the refused sample");
        assert_eq!((s.area, s.site, s.weight, s.target), (a as usize, 2, refused, 0x99));
        assert!(pop().is_none() && queued() == 0);
        assert_eq!(taken, samples_taken(), "counted once, refused and read later");
        // A site out of range resets the countdown but records nothing.
        st.countdown = -1;
        // SAFETY: as above.
        unsafe { hook(a, 7, std::ptr::null(), &mut st) };
        assert!(st.countdown >= 0 && q.pop().is_none());
    }

    /// A scripted thread of one module: makes calls as decorated code does (counting down
    /// its countdown, calling the hook when it goes negative) while a scripted agent drains
    /// the queue, or does not (a full queue: the agent fell behind).
    struct Script {
        area: RuntimeAreaHeader,
        st: ThreadState,
        /// Estimated calls per target: the weights of the samples drained, as the agent sums them.
        est: std::collections::HashMap<u64, u64>,
    }

    impl Script {
        /// A fresh thread (fixed random state: the stream is the same at every run) with
        /// the configured period `period` and an empty queue.
        fn new(period: u32) -> Script {
            queue();
            while pop().is_some() {}
            init(period);
            Script { area: RuntimeAreaHeader { hook: Default::default(), reserved: 1 }, st: ThreadState { rng: 0x2545_f491, ..Default::default() }, est: Default::default() }
        }

        /// `n` calls, the i-th to `target(i)`; the agent drains every 10,000 calls if `drain`.
        fn calls(&mut self, n: u64, target: impl Fn(u64) -> u64, drain: bool) {
            for i in 0..n {
                self.st.countdown -= 1;
                if self.st.countdown < 0 {
                    // SAFETY: `area` and `st` are live fields laid out as the hook expects.
                    unsafe { hook(&mut self.area, 0, target(i) as *const libc::c_void, &mut self.st) };
                }
                if drain && i % 10_000 == 0 {
                    self.drain();
                }
            }
        }

        /// The agent catches up: every sample it can read is counted.
        fn drain(&mut self) {
            while let Some(s) = pop() {
                *self.est.entry(s.target).or_default() += s.weight as u64;
            }
        }

        /// The agent stops draining: the queue is full (of samples of no interest).
        fn fall_behind(&mut self) {
            self.drain();
            while queue().push(Sample { area: 0, site: 0, weight: 0, target: 0, span_ms: 0 }).is_ok() {}
        }

        fn estimate(&self, target: u64) -> f64 {
            self.est.get(&target).copied().unwrap_or(0) as f64
        }
    }

    #[test]
    fn a_lagging_agent_keeps_each_calls_edge() {
        let _one = QUEUE_USERS.lock().unwrap_or_else(|p| p.into_inner());
        // Phases: A, then only B while the queue is full (the agent fell behind; hooks
        // brake the period), then A again once the agent is back. The samples the full
        // queue refused are samples of B: their calls must not go to A.
        let (a, b) = (0xa, 0xb);
        let mut t = Script::new(6);
        t.calls(2_000_000, |_| a, true);
        t.fall_behind();
        let before = dropped();
        t.calls(20_000_000, |_| b, false);
        assert!(dropped() > before && period() > 6, "the queue refused samples and the period was raised");
        t.drain();
        t.calls(2_000_000, |_| a, true);
        t.drain();
        // Each estimate is off by at most the calls around a phase change that one
        // sample's weight spans (< 1.5 x the largest period, 65536 here).
        let slack = 1.5 * BRAKE_FLOOR as f64;
        let (ea, eb) = (t.estimate(a), t.estimate(b));
        assert!((eb - 20e6).abs() <= slack, "B: {eb} estimated, 20000000 made (A: {ea})");
        assert!((ea - 4e6).abs() <= 2.0 * slack, "A: {ea} estimated, 4000000 made (B: {eb})");
    }

    #[test]
    fn a_lagging_agent_keeps_a_known_mix() {
        let _one = QUEUE_USERS.lock().unwrap_or_else(|p| p.into_inner());
        // prof_mix's pattern (every 10th call to `rare`) with a long stretch of full queue
        // in the middle: the share of `rare` stays 10%, the total stays the calls made.
        let (common, rare) = (0xc0, 0x4a);
        let pick = |i: u64| if i % 10 == 9 { rare } else { common };
        let mut t = Script::new(6);
        t.calls(2_000_000, pick, true);
        t.fall_behind();
        t.calls(60_000_000, pick, false);
        t.drain();
        t.calls(10_000_000, pick, true);
        t.drain();
        let (c, r) = (t.estimate(common), t.estimate(rare));
        let total = c + r;
        assert!((total - 72e6).abs() <= 1.5 * BRAKE_FLOOR as f64, "{total} calls estimated, 72000000 made");
        // Over a thousand samples of weight ~65536 in the lag: about ±0.9 point for one
        // standard deviation.
        let share = r / total;
        assert!((share - 0.10).abs() < 0.03, "rare share {share:.4} (10% made)");
    }

    #[test]
    fn jit_countdown_is_thread_local_at_a_fixed_offset() {
        // The test binary is an executable: its TLS is static, as the preloaded agent's.
        let off = jit_countdown_offset().expect("static TLS in an executable");
        // SAFETY: this thread's own state, read through the thread pointer and directly.
        unsafe {
            (*jit_tls::state()).countdown = 12345;
            let via_fs = ((thread_pointer() as i64 + off) as *const i32).read();
            assert_eq!(via_fs, 12345);
        }
        let other = std::thread::spawn(|| {
            // SAFETY: as above, on another thread: its own, fresh countdown.
            unsafe { ((thread_pointer() as i64 + jit_countdown_offset().unwrap()) as *const i32).read() }
        });
        assert_eq!(other.join().unwrap(), 0);
    }

    #[test]
    fn jit_code_samples_through_the_hook_and_not_when_detached() {
        let _one = QUEUE_USERS.lock().unwrap_or_else(|p| p.into_inner());
        let q = queue();
        while q.pop().is_some() {}
        init(100);
        let mut area = RuntimeAreaHeader { hook: Default::default(), reserved: 3 };
        let a = &mut area as *mut RuntimeAreaHeader;
        // SAFETY: `area` is a live local laid out as an attached area; the state is this
        // thread's.
        unsafe {
            (*jit_tls::state()) = ThreadState::default();
            // Detached (no hook): no sample, and the countdown is pushed far away.
            jit_count(a, 1, 0x10 as *const libc::c_void);
            assert!(q.pop().is_none());
            assert!((*jit_tls::state()).countdown > 1 << 20);
            (*a).hook.store(hook as *mut libc::c_void, Ordering::Release);
            (*jit_tls::state()) = ThreadState::default();
            // A fresh thread's first call is a sample of weight 1, then one per countdown.
            jit_count(a, 2, 0x20 as *const libc::c_void);
            let s = q.pop().expect("a sample");
            assert_eq!((s.area, s.site, s.weight, s.target), (a as usize, 2, 1, 0x20));
            // The countdown stands for n calls: the n-th is the next sample, of weight n.
            let n = (*jit_tls::state()).countdown + 1;
            for _ in 0..n - 1 {
                jit_count(a, 1, 0x30 as *const libc::c_void);
            }
            assert!(q.pop().is_none());
            jit_count(a, 1, 0x30 as *const libc::c_void);
            assert_eq!(q.pop().map(|s| (s.site, s.weight, s.target)), Some((1, n as u32, 0x30)));
        }
    }
}
