//! How application threads tell the agent thread that objects come and go, without ever
//! taking an agent lock or waiting for a compile (DESIGN.md invariant 2).
//!
//! * `dlopen` only bumps [`LOADS`] and wakes the agent thread, which reconciles.
//! * `dlclose`, before the loader may unmap the object, registers it as closing (a slot in
//!   [`CLOSING`]), clears the guard slots that name its code (`guard_slots`), and waits
//!   until the agent thread is outside any [`touching`] section. The agent thread reads
//!   and writes module memory (runtime areas, redirect slots, metadata copies) only inside
//!   such sections, and never for a module that is registered as closing, so nothing of
//!   the agent touches an object while it is unmapped. A section is a few loads and
//!   stores or a memory copy, never a compile and never a loader call, so the wait is
//!   short and cannot deadlock with the loader's lock.
//! * After the real `dlclose` returns the slot is marked done; the agent thread forgets
//!   done slots once it has reconciled the module list against the loader's.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::OnceLock;

/// dlopen calls that returned a handle so far.
pub static LOADS: AtomicU64 = AtomicU64::new(0);
/// dlclose calls that finished so far.
pub static UNLOADS: AtomicU64 = AtomicU64::new(0);

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const CLOSING_NOW: u8 = 2;
const CLOSED: u8 = 3;

struct ClosingSlot {
    state: AtomicU8,
    base: AtomicU64,
}

/// Concurrent dlcloses the protocol tracks at once; more wait (yielding) for a free slot.
const MAX_CLOSING: usize = 64;

static CLOSING: [ClosingSlot; MAX_CLOSING] = [const { ClosingSlot { state: AtomicU8::new(FREE), base: AtomicU64::new(0) } }; MAX_CLOSING];

/// 1 while the agent thread is inside a [`touching`] section.
static BUSY: AtomicU32 = AtomicU32::new(0);

/// The agent thread, once started (to wake it from application threads).
pub static AGENT_THREAD: OnceLock<std::thread::Thread> = OnceLock::new();

/// Wakes the agent thread (a futex wake: never blocks); `false` if it was never started
/// in this process.
pub fn wake_agent() -> bool {
    AGENT_THREAD.get().map(std::thread::Thread::unpark).is_some()
}

/// Set (before it starts) once the agent thread exists in this process.
pub static AGENT_STARTED: AtomicBool = AtomicBool::new(false);

/// dlcloses in progress that found no free slot: while any runs, and until the agent
/// thread has reconciled after the last one, every object counts as closing.
static OVERFLOW_ACTIVE: AtomicU32 = AtomicU32::new(0);
/// Bumped when an overflowing dlclose finishes; the agent thread acknowledges it.
static OVERFLOW_DONE: AtomicU64 = AtomicU64::new(0);
static OVERFLOW_SEEN: AtomicU64 = AtomicU64::new(0);

/// A dlclose in progress; [`Closing::done`] once the real dlclose returned.
pub struct Closing(Option<usize>);

/// Registers the object loaded at `base` as closing and waits until the agent thread is
/// outside module memory. Called by application threads before the real dlclose.
pub fn begin_close(base: u64) -> Closing {
    let slot = CLOSING.iter().position(|s| s.state.compare_exchange(FREE, CLAIMED, SeqCst, SeqCst).is_ok());
    match slot {
        Some(i) => {
            CLOSING[i].base.store(base, SeqCst);
            CLOSING[i].state.store(CLOSING_NOW, SeqCst);
        }
        // More dlcloses than slots since the agent thread last looked (it may be busy
        // compiling): never wait for it; count every object as closing meanwhile.
        None => {
            OVERFLOW_ACTIVE.fetch_add(1, SeqCst);
        }
    }
    // Dekker with `touching`: our store above, then its flag; its flag, then our slot.
    // Either it sees us, or we see it busy and wait out its (short) section.
    while BUSY.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    Closing(slot)
}

impl Closing {
    /// The real dlclose returned: the object may be gone now.
    pub fn done(self) {
        match self.0 {
            // Without an agent thread nobody touches module memory, and one started
            // later looks at the loader's list after this (see AGENT_STARTED).
            Some(i) if !AGENT_STARTED.load(SeqCst) => CLOSING[i].state.store(FREE, SeqCst),
            Some(i) => CLOSING[i].state.store(CLOSED, SeqCst),
            None => {
                OVERFLOW_DONE.fetch_add(1, SeqCst);
                OVERFLOW_ACTIVE.fetch_sub(1, SeqCst);
            }
        }
        UNLOADS.fetch_add(1, SeqCst);
        wake_agent();
    }
}

/// Whether every module must be treated as dlclosed (slots overflowed); returns the
/// token to pass to [`overflow_reconciled`] once that was done.
pub fn overflowed() -> Option<u64> {
    let done = OVERFLOW_DONE.load(SeqCst);
    (done != OVERFLOW_SEEN.load(SeqCst)).then_some(done)
}

/// The agent thread reconciled every module after the overflow `token`.
pub fn overflow_reconciled(token: u64) {
    OVERFLOW_SEEN.store(token, SeqCst);
}

/// Whether an object at `base` is being (or was, since the last reconcile) closed.
pub fn is_closing(base: u64) -> bool {
    if OVERFLOW_ACTIVE.load(SeqCst) != 0 || OVERFLOW_DONE.load(SeqCst) != OVERFLOW_SEEN.load(SeqCst) {
        return true;
    }
    CLOSING.iter().any(|s| matches!(s.state.load(SeqCst), CLOSING_NOW | CLOSED) && s.base.load(SeqCst) == base)
}

/// Runs `f` (agent thread only: short, no locks, no loader calls) if none of the objects
/// at `bases` is closing; `None` if one is, and then `f` did not run.
pub fn touching<R>(bases: &[u64], f: impl FnOnce() -> R) -> Option<R> {
    /// Clears BUSY however the section ends (a panic must not leave dlclose waiting).
    struct Busy;
    impl Drop for Busy {
        fn drop(&mut self) {
            BUSY.store(0, SeqCst);
        }
    }
    BUSY.store(1, SeqCst);
    let _busy = Busy;
    if bases.iter().any(|&b| is_closing(b)) {
        None
    } else {
        Some(f())
    }
}

/// Bases of the dlcloses that have finished; [`forget_closed`] them once the module list
/// was reconciled with a loader snapshot taken after this call.
pub fn closed() -> Vec<(usize, u64)> {
    CLOSING
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state.load(SeqCst) == CLOSED)
        .map(|(i, s)| (i, s.base.load(SeqCst)))
        .collect()
}

/// Releases the slots returned by [`closed`].
pub fn forget_closed(done: &[(usize, u64)]) {
    for &(i, _) in done {
        CLOSING[i].state.store(FREE, SeqCst);
    }
}

/// In a fork child only the forking thread survives: a dlclose in progress in another
/// thread of the parent never finishes here, and the agent thread is gone.
pub fn reset_after_fork() {
    BUSY.store(0, SeqCst);
    AGENT_STARTED.store(false, SeqCst);
    OVERFLOW_ACTIVE.store(0, SeqCst);
    for s in &CLOSING {
        if s.state.load(SeqCst) != FREE {
            s.state.store(CLOSED, SeqCst);
        }
    }
}

/// What the agent thread needs to bring its module list up to date: the dlcloses that
/// finished and, taken after them, the loader's object list — in that order, so an object
/// whose dlclose finished is never seen as present in a snapshot older than its unmapping.
pub struct LoaderView {
    /// Overflow token (every module counts as closed), see [`overflowed`].
    pub overflow: Option<u64>,
    /// Finished dlcloses, see [`closed`].
    pub closed: Vec<(usize, u64)>,
    /// The loaded objects, listed after the above.
    pub objects: Vec<crate::discover::LoadedObject>,
}

impl LoaderView {
    /// Takes the view (a loader call: never with the state lock held).
    pub fn take() -> LoaderView {
        let overflow = overflowed();
        let closed = closed();
        LoaderView { overflow, closed, objects: crate::discover::loaded_objects() }
    }

    /// The objects loaded at start-up (nothing can have been closed yet).
    pub fn at_start() -> LoaderView {
        LoaderView { overflow: None, closed: Vec::new(), objects: crate::discover::loaded_objects() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_objects_are_not_touched_until_forgotten() {
        let base = 0x7777_0000_0000;
        AGENT_STARTED.store(true, SeqCst);
        assert_eq!(touching(&[base], || 1), Some(1));
        let c = begin_close(base);
        assert!(is_closing(base));
        assert_eq!(touching(&[1, base], || 2), None);
        assert_eq!(touching(&[base + 4096], || 3), Some(3));
        c.done();
        let done = closed();
        assert!(done.iter().any(|&(_, b)| b == base));
        assert_eq!(touching(&[base], || 4), None, "closed but not yet reconciled");
        forget_closed(&done);
        assert_eq!(touching(&[base], || 5), Some(5));
        // A section that panics still lets the next dlclose through.
        assert!(std::panic::catch_unwind(|| touching(&[base], || panic!("in section"))).is_err());
        begin_close(base).done();
        forget_closed(&closed());
    }
}
