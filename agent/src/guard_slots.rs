//! Guard slots: the words F+'s guards compare a call's target against, for targets in
//! objects that can be unloaded (everything but the main program).
//!
//! A guard in F+ reads its slot at every call. Before the loader unmaps an object, the
//! dlclose interposer clears every slot naming a target in it ([`clear_object`]), so a
//! frame still running inside F+ after the unload never takes the inlined copy of a
//! function that is gone — even if another object later lands at the same address — and
//! takes the real call instead. Allocation and release are the agent thread's; clearing
//! is lock-free and may run on any thread. A slot is released only with the code that
//! reads it (see `code_owner`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};

/// What a cleared slot holds: the address of a private data byte, which no program calls.
static CLEARED_MARK: u8 = 0;

fn cleared() -> u64 {
    &CLEARED_MARK as *const u8 as u64
}

/// One guard word with the load address of the object its target lives in.
#[repr(C, align(64))]
struct Slot {
    /// The target's address (what the guard compares against), or the cleared mark.
    value: AtomicU64,
    /// Load address of the object holding the target.
    object: AtomicU64,
    used: AtomicU8,
}

/// Far more than the agent ever guards at once (compiles are few, slots are released).
const CAPACITY: usize = 4096;

static SLOTS: [Slot; CAPACITY] = [const { Slot { value: AtomicU64::new(0), object: AtomicU64::new(0), used: AtomicU8::new(0) } }; CAPACITY];

/// A slot the agent owns until [`release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSlot(usize);

impl GuardSlot {
    /// Address of the word the JIT'd guard loads.
    pub fn address(self) -> u64 {
        &SLOTS[self.0].value as *const AtomicU64 as u64
    }

    /// Whether the slot was cleared (its object started closing).
    pub fn is_cleared(self) -> bool {
        SLOTS[self.0].value.load(SeqCst) == cleared()
    }
}

/// Takes a free slot for `target` in the object loaded at `object`. Agent thread only.
/// After this, check that the object is not closing (`lifecycle::is_closing`): a dlclose
/// that began before the slot was published may have missed it.
pub fn allocate(target: u64, object: u64) -> Option<GuardSlot> {
    for (i, s) in SLOTS.iter().enumerate() {
        if s.used.load(SeqCst) == 0 {
            s.object.store(object, SeqCst);
            s.value.store(target, SeqCst);
            s.used.store(1, SeqCst);
            return Some(GuardSlot(i));
        }
    }
    None
}

/// Frees a slot once no code that reads it can run any more. Agent thread only.
pub fn release(slot: GuardSlot) {
    let s = &SLOTS[slot.0];
    s.value.store(cleared(), SeqCst);
    s.used.store(0, SeqCst);
}

/// Clears every slot naming a target in the object loaded at `object`. Any thread.
pub fn clear_object(object: u64) -> usize {
    let mut n = 0;
    for s in &SLOTS {
        if s.used.load(SeqCst) == 1 && s.object.load(SeqCst) == object {
            s.value.store(cleared(), SeqCst);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_an_object_clears_only_its_slots() {
        let a = allocate(0x1000, 0xaa00_0000).unwrap();
        let b = allocate(0x2000, 0xbb00_0000).unwrap();
        // SAFETY: the slot's address names a live static AtomicU64.
        let read = |s: GuardSlot| unsafe { (*(s.address() as *const AtomicU64)).load(SeqCst) };
        assert_eq!(read(a), 0x1000);
        assert!(clear_object(0xaa00_0000) >= 1);
        assert!(a.is_cleared() && !b.is_cleared());
        assert_eq!(read(b), 0x2000);
        assert_ne!(read(a), 0x1000);
        release(a);
        release(b);
    }
}
