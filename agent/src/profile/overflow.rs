//! Samples the full queue refused, kept per edge until the agent thread reads them, so a
//! lagging agent loses no evidence and credits no edge with another's calls.
//!
//! A refused sample is an observation of its edge like any other: its weight belongs to
//! that edge. Carried to the thread's next sample instead, it went to whatever edge that
//! sample saw: one sample could stand for millions of calls of other edges (a 90/10 mix
//! came out 81/19), or for the calls of a phase that had ended by then.
//!
//! The table is open-addressed by edge (runtime area, site, target) and lock-free: a hook
//! that finds the queue full adds the sample's weight and span to its edge's entry (two
//! atomic adds, claiming the entry first if it is new); the agent thread takes each entry's
//! sum out as one sample once the queue is empty. Entries are never reused for another
//! edge, so a key read after the entry is published is stable; a hook that finds no entry
//! within [`PROBES`] slots (table full) says so and the caller carries the weight instead.
//! Application threads write here only while the queue is full, which the brake keeps
//! short.

use super::Sample;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Distinct edges the table can hold.
const ENTRIES: usize = 1024;

/// Slots a hook looks at for its edge before giving up.
const PROBES: usize = 32;

const EMPTY: u32 = 0;
/// A hook is writing the key: others pass by (a second entry for the same edge is harmless).
const CLAIMING: u32 = 1;
/// The key is written and stays.
const READY: u32 = 2;

struct Entry {
    state: AtomicU32,
    site: AtomicU32,
    area: AtomicUsize,
    target: AtomicU64,
    /// Calls of refused samples not taken yet.
    calls: AtomicU64,
    /// The sum of those samples' spans.
    span_ms: AtomicU64,
}

impl Entry {
    const fn new() -> Entry {
        Entry { state: AtomicU32::new(EMPTY), site: AtomicU32::new(0), area: AtomicUsize::new(0), target: AtomicU64::new(0), calls: AtomicU64::new(0), span_ms: AtomicU64::new(0) }
    }

    /// Whether the entry is published for this edge.
    fn holds(&self, s: &Sample) -> bool {
        // The key fields were written before `state` became READY (release) and never change.
        self.state.load(Ordering::Acquire) == READY
            && self.area.load(Ordering::Relaxed) == s.area
            && self.site.load(Ordering::Relaxed) == s.site
            && self.target.load(Ordering::Relaxed) == s.target
    }
}

static TABLE: [Entry; ENTRIES] = [const { Entry::new() }; ENTRIES];

/// Set after calls are added, cleared by the consumer before it scans.
static WAITING: AtomicBool = AtomicBool::new(false);

/// The consumer's next entry to look at in the scan under way (`ENTRIES`: none).
static CURSOR: AtomicUsize = AtomicUsize::new(ENTRIES);

/// Samples taken out of the table (each stands for one or more refused samples).
static TAKEN: AtomicU64 = AtomicU64::new(0);

fn slot(s: &Sample) -> usize {
    let k = (s.area as u64) ^ s.target.rotate_left(32) ^ (s.site as u64).wrapping_mul(0x9e37_79b9);
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % ENTRIES
}

/// Hook side: keeps refused sample `s` under its edge. False when the table has no entry
/// for it (full around its slot): the caller must account for the weight itself.
pub fn keep(s: &Sample) -> bool {
    let start = slot(s);
    for i in 0..PROBES {
        let e = &TABLE[(start + i) % ENTRIES];
        if e.state.load(Ordering::Relaxed) == EMPTY && e.state.compare_exchange(EMPTY, CLAIMING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            e.area.store(s.area, Ordering::Relaxed);
            e.site.store(s.site, Ordering::Relaxed);
            e.target.store(s.target, Ordering::Relaxed);
            e.state.store(READY, Ordering::Release);
        }
        if e.holds(s) {
            e.span_ms.fetch_add(s.span_ms as u64, Ordering::Relaxed);
            // Release: a consumer that takes these calls sees the span added with them.
            e.calls.fetch_add(s.weight as u64, Ordering::Release);
            WAITING.store(true, Ordering::Release);
            return true;
        }
    }
    false
}

/// Consumer side (one at a time: the agent thread, or the exit handler, under the state
/// lock): the next edge with calls waiting, as one sample of all of them.
pub fn take() -> Option<Sample> {
    let mut i = CURSOR.load(Ordering::Relaxed);
    if i >= ENTRIES {
        // A hook that adds after this swap sets WAITING again: the next scan finds it.
        if !WAITING.swap(false, Ordering::Acquire) {
            return None;
        }
        i = 0;
    }
    while i < ENTRIES {
        let e = &TABLE[i];
        i += 1;
        if e.state.load(Ordering::Acquire) != READY {
            continue;
        }
        let calls = e.calls.swap(0, Ordering::Acquire);
        if calls == 0 {
            continue;
        }
        let weight = calls.min(u32::MAX as u64);
        if calls > weight {
            // More than a sample can say: the rest in a later one.
            e.calls.fetch_add(calls - weight, Ordering::Relaxed);
            WAITING.store(true, Ordering::Relaxed);
        }
        let span_ms = e.span_ms.swap(0, Ordering::Relaxed).min(u32::MAX as u64) as u32;
        CURSOR.store(i, Ordering::Relaxed);
        TAKEN.fetch_add(1, Ordering::Relaxed);
        let (area, site, target) = (e.area.load(Ordering::Relaxed), e.site.load(Ordering::Relaxed), e.target.load(Ordering::Relaxed));
        return Some(Sample { area, site, weight: weight as u32, target, span_ms });
    }
    CURSOR.store(ENTRIES, Ordering::Relaxed);
    None
}

/// Whether calls may be waiting (a scan is under way or a hook added since the last).
pub fn waiting() -> bool {
    CURSOR.load(Ordering::Relaxed) < ENTRIES || WAITING.load(Ordering::Relaxed)
}

/// Samples [`take`] returned so far.
pub fn taken() -> u64 {
    TAKEN.load(Ordering::Relaxed)
}

/// Drops what waits for `area`, whose object is gone (agent thread; no hook of that area
/// runs any more). Its entries stay keyed to it: an object loaded there later reuses them.
pub fn forget(area: usize) {
    for e in &TABLE {
        if e.state.load(Ordering::Acquire) == READY && e.area.load(Ordering::Relaxed) == area {
            e.calls.store(0, Ordering::Relaxed);
            e.span_ms.store(0, Ordering::Relaxed);
        }
    }
}

