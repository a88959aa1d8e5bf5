//! The patcher on slots and functions of this test process. `decorated` below does what the
//! instrumenter makes a decorated function's entry do (load the slot, call what it holds
//! or run its own body), so these tests exercise the same protocol without a drti-cc build.
//! Each test uses its own slots, since tests run in parallel.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// An 8-byte aligned slot, zero at start, as in a runtime area.
#[repr(align(8))]
struct Slot(AtomicU64);

impl Slot {
    const fn new() -> Slot {
        Slot(AtomicU64::new(0))
    }
    fn addr(&'static self) -> u64 {
        &self.0 as *const AtomicU64 as u64
    }
}

extern "C" fn body(x: u64) -> u64 {
    x + 1
}
extern "C" fn plus_a(x: u64) -> u64 {
    x + 1000
}
extern "C" fn plus_b(x: u64) -> u64 {
    x + 2000
}

/// A "decorated function": the redirect check of the instrumenter, then its body.
fn decorated(slot: &Slot, x: u64) -> u64 {
    let t = slot.0.load(Ordering::Acquire);
    if t != 0 {
        // SAFETY: the tests only ever store addresses of `extern "C" fn(u64) -> u64`.
        let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(t as usize) };
        return f(x);
    }
    body(x)
}

fn addr(f: extern "C" fn(u64) -> u64) -> u64 {
    f as usize as u64
}

#[test]
fn redirect_retarget_revert_round_trip() {
    static S: Slot = Slot::new();
    let p = Patcher::new().expect("membarrier is available here");
    assert_eq!(decorated(&S, 1), 2);
    // SAFETY: S is a static slot of a "function" of type fn(u64) -> u64; the targets have it.
    let mut rec = unsafe { p.redirect(0x1234, S.addr(), addr(plus_a)) }.unwrap();
    assert_eq!(rec, PatchRecord { entry: 0x1234, slot: S.addr(), target: addr(plus_a) });
    assert_eq!(decorated(&S, 1), 1001);
    // SAFETY: as above.
    unsafe { p.retarget(&mut rec, addr(plus_b)) }.unwrap();
    assert_eq!(rec.target, addr(plus_b));
    assert_eq!(decorated(&S, 1), 2001);
    // SAFETY: as above.
    unsafe { p.revert(&rec) }.unwrap();
    assert_eq!(decorated(&S, 1), 2);
    assert_eq!(S.0.load(Ordering::Relaxed), 0);
    // Redirected again after a revert (deopt, then recompile).
    // SAFETY: as above.
    let rec = unsafe { p.redirect(0x1234, S.addr(), addr(plus_a)) }.unwrap();
    assert_eq!(decorated(&S, 1), 1001);
    // SAFETY: as above.
    unsafe { p.revert(&rec) }.unwrap();
}

/// The profiled twin's life cycle: null -> F.prof (attach) -> F+ (patch) -> F.prof (deopt)
/// -> null (decided); a store from a value the slot does not hold is refused.
#[test]
fn resting_values_profiled_twin_and_null() {
    static S: Slot = Slot::new();
    let p = Patcher::new().unwrap();
    let prof = addr(plus_b); // stands for F.prof
    // SAFETY: as in the round trip; `prof` has the function's type.
    unsafe {
        set_resting(S.addr(), 0, prof).unwrap();
        assert_eq!(decorated(&S, 1), 2001);
        // Storing what is already there is fine (a module attached again).
        set_resting(S.addr(), 0, prof).unwrap();
        // A redirect expects the resting value: from null it is refused, from F.prof not.
        assert!(p.redirect(1, S.addr(), addr(plus_a)).is_err());
        let rec = p.redirect_from(1, S.addr(), prof, addr(plus_a)).unwrap();
        assert_eq!(decorated(&S, 1), 1001);
        // A resting store never replaces an F+.
        assert!(set_resting(S.addr(), prof, 0).is_err());
        assert_eq!(decorated(&S, 1), 1001);
        // Deopt: back to F.prof, then decided: null.
        p.revert_to(&rec, prof).unwrap();
        assert_eq!(decorated(&S, 1), 2001);
        set_resting(S.addr(), prof, 0).unwrap();
        assert_eq!(decorated(&S, 1), 2);
    }
}

#[test]
fn stale_or_foreign_records_are_refused_and_change_nothing() {
    static S: Slot = Slot::new();
    let p = Patcher::new().unwrap();
    // SAFETY: as in the round trip.
    unsafe {
        let mut rec = p.redirect(1, S.addr(), addr(plus_a)).unwrap();
        // A second redirect of the same function must go through retarget.
        let e = p.redirect(1, S.addr(), addr(plus_b)).unwrap_err();
        assert!(matches!(e, PatchError::UnexpectedSlot { found, .. } if found == addr(plus_a)), "{e}");
        // A record that no longer describes the slot (someone else re-pointed it).
        let mut stale = rec.clone();
        p.retarget(&mut rec, addr(plus_b)).unwrap();
        assert!(p.retarget(&mut stale, addr(plus_a)).is_err());
        assert_eq!(stale.target, addr(plus_a), "a refused retarget leaves the record alone");
        assert!(p.revert(&stale).is_err());
        assert_eq!(decorated(&S, 0), 2000, "refused operations did not touch the slot");
        p.revert(&rec).unwrap();
        assert!(p.revert(&rec).is_err(), "reverting twice is refused");
        assert_eq!(decorated(&S, 0), 1);
    }
}

#[test]
fn bad_slots_and_targets_are_refused() {
    static S: Slot = Slot::new();
    let p = Patcher::new().unwrap();
    // SAFETY: every call below is refused before the slot is touched.
    unsafe {
        assert!(matches!(p.redirect(1, 0, addr(plus_a)), Err(PatchError::BadSlot { .. })));
        assert!(matches!(p.redirect(1, S.addr() + 4, addr(plus_a)), Err(PatchError::BadSlot { .. })));
        assert!(matches!(p.redirect(1, S.addr(), 0), Err(PatchError::BadSlot { .. })));
    }
    assert_eq!(S.0.load(Ordering::Relaxed), 0);
    let msg = PatchError::NoSlot { entry: 0x40 }.to_string();
    assert!(msg.contains("0x40") && msg.contains("unoptimised"), "{msg}");
}

/// The case that killed processes with the int3 protocol: threads that block every
/// signal call the function non-stop while it is redirected, re-targeted and reverted
/// thousands of times. Every call returns one of the three valid results, and nothing
/// was delivered to anyone (a SIGTRAP to a thread blocking it would kill the test binary).
#[test]
fn threads_blocking_every_signal_see_only_whole_targets() {
    static S: Slot = Slot::new();
    static STOP: AtomicBool = AtomicBool::new(false);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let p = Patcher::new().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                // SAFETY: plain libc signal-mask calls on this thread's own mask.
                unsafe {
                    let mut all: libc::sigset_t = std::mem::zeroed();
                    libc::sigfillset(&mut all);
                    assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()), 0);
                }
                let mut n = 0usize;
                while !STOP.load(Ordering::Relaxed) {
                    let r = decorated(&S, 5);
                    assert!(r == 6 || r == 1005 || r == 2005, "torn or wrong target: {r}");
                    n += 1;
                }
                CALLS.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    let mut cycles = 0;
    while cycles < 2000 || start.elapsed() < Duration::from_millis(200) {
        // SAFETY: as in the round trip.
        unsafe {
            let mut rec = p.redirect(7, S.addr(), addr(plus_a)).unwrap();
            p.retarget(&mut rec, addr(plus_b)).unwrap();
            p.revert(&rec).unwrap();
        }
        cycles += 1;
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(cycles >= 100, "only {cycles} redirect cycles");
    assert!(CALLS.load(Ordering::Relaxed) > 1000, "the callers barely ran");
}

#[test]
fn patcher_is_shared_and_reports_its_barrier() {
    let a = Patcher::new().unwrap();
    let b = Patcher::new().unwrap();
    assert_eq!(a.has_sync_core(), b.has_sync_core());
}
