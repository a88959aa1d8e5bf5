//! Redirecting a decorated function F to its compiled F+: the only code in drti that writes
//! redirect slots (invariant 3).
//!
//! The instrumenter gave every redirectable F an 8-byte, 8-aligned slot in its module's
//! writable runtime area (zero at load) and made F's entry do
//! `t = load atomic slot (acquire or weaker); if t != null { musttail call t(args) }`
//! (`bitcode_embed::format`, "Redirect slots"). So:
//! * `Patcher::redirect` publishes F+ with one release store of its address: calls that
//!   load the slot afterwards run F+, calls that loaded null run F's own body, and no call
//!   sees anything else. `retarget` stores a newer F+, `revert` stores null (or, `revert_to`,
//!   F's profiled twin F.prof); `set_resting` switches a slot without F+ between null and
//!   F.prof (profiling off / on).
//! * No code is written: text stays r-x, no int3, no SIGTRAP handler, no /proc/self/mem.
//!   A thread that blocks every signal runs F like any other.
//! * Before the first store of a new F+ every thread of the process executes a
//!   core-serialising instruction (`membarrier` SYNC_CORE): the JIT wrote F+'s bytes through
//!   data stores (possibly into memory that held other code before), and Intel's
//!   cross-modifying-code rule (SDM vol. 3, 9.1.3) asks for a serialising instruction on
//!   the executing core between the write and the execution. A thread can only reach F+
//!   after loading the new slot value, which comes after that barrier.
//! * A thread already inside F+ (or in F's body) when the slot changes finishes there; the
//!   owner of F+'s memory must not free it while a thread can be inside.
//!
//! Every store is a compare-and-swap against the value the record says is there, so a stale
//! or foreign record is refused instead of overwriting someone else's redirection.

mod error;
mod membarrier;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub use error::PatchError;

use membarrier::CoreSync;

/// One redirected function, as published. Give it back to `retarget` / `revert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRecord {
    /// F's entry address (for logs and the dump; never written).
    pub entry: u64,
    /// F's redirect slot.
    pub slot: u64,
    /// Where F's calls now go (F+).
    pub target: u64,
}

static SYNC: OnceLock<Result<CoreSync, PatchError>> = OnceLock::new();

/// Handle to the process's patcher: cheap to copy, every handle shares one membarrier
/// registration. Callers serialise operations on the same slot (the agent does all of them
/// from its own thread); the compare-and-swap catches any that are not.
#[derive(Clone, Copy, Debug)]
pub struct Patcher {
    sync: CoreSync,
}

impl Patcher {
    /// Registers for `membarrier` on first use. On error the agent runs unoptimised; the
    /// same error is returned on every later call.
    pub fn new() -> Result<Patcher, PatchError> {
        match SYNC.get_or_init(CoreSync::register) {
            Ok(sync) => Ok(Patcher { sync: *sync }),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether cores are serialised with SYNC_CORE (`false`: the expedited fallback).
    pub fn has_sync_core(&self) -> bool {
        self.sync == CoreSync::SyncCore
    }

    /// Sends every later call of the function at `entry` to `to`, through its redirect
    /// slot `slot`, which must still be null (not redirected).
    ///
    /// # Safety
    /// `slot` is the redirect slot of the function at `entry` in a decorated module that
    /// stays loaded while the record is used, and `to` is the entry of code with exactly
    /// that function's type, calling convention and parameter attributes (an F+ compiled
    /// from its clean bitcode), which stays mapped while the slot points at it.
    pub unsafe fn redirect(&self, entry: u64, slot: u64, to: u64) -> Result<PatchRecord, PatchError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.redirect_from(entry, slot, 0, to) }
    }

    /// [`Patcher::redirect`] for a slot that holds `from`: null or F's profiled entry
    /// (the slot's value while F has no F+, see [`set_resting`]).
    ///
    /// # Safety
    /// As for [`Patcher::redirect`].
    pub unsafe fn redirect_from(&self, entry: u64, slot: u64, from: u64, to: u64) -> Result<PatchRecord, PatchError> {
        let cell = checked_slot(slot, to)?;
        self.sync.sync(slot)?;
        cell.compare_exchange(from, to, Ordering::Release, Ordering::Relaxed)
            .map_err(|found| PatchError::UnexpectedSlot { slot, found, expected: "F's resting value (already redirected? use retarget)" })?;
        Ok(PatchRecord { entry, slot, target: to })
    }

    /// Points an existing redirection at `to` (a newer F+).
    ///
    /// # Safety
    /// As for [`Patcher::redirect`], with `rec` returned by it (or updated by `retarget`)
    /// for a module that is still loaded.
    pub unsafe fn retarget(&self, rec: &mut PatchRecord, to: u64) -> Result<(), PatchError> {
        let cell = checked_slot(rec.slot, to)?;
        self.sync.sync(rec.slot)?;
        cell.compare_exchange(rec.target, to, Ordering::Release, Ordering::Relaxed)
            .map_err(|found| PatchError::UnexpectedSlot { slot: rec.slot, found, expected: "the target this record published" })?;
        rec.target = to;
        Ok(())
    }

    /// Stores null: the function runs its own body again. Threads already in F+ may still
    /// be running there; freeing F+ is the caller's business.
    ///
    /// # Safety
    /// `rec` came from [`Patcher::redirect`] / [`Patcher::retarget`] and its module is
    /// still loaded (revert before dlclose unmaps it, invariant 4).
    pub unsafe fn revert(&self, rec: &PatchRecord) -> Result<(), PatchError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.revert_to(rec, 0) }
    }

    /// [`Patcher::revert`] to `to`: null, or F's profiled entry F.prof when F is still
    /// being profiled (see [`set_resting`]).
    ///
    /// # Safety
    /// As for [`Patcher::revert`]; a non-null `to` is the profiled entry of the function
    /// whose slot this is, in the same loaded module.
    pub unsafe fn revert_to(&self, rec: &PatchRecord, to: u64) -> Result<(), PatchError> {
        // SAFETY: forwarded from the caller; null and F.prof are valid slot values.
        let cell = unsafe { slot_cell(rec.slot)? };
        cell.compare_exchange(rec.target, to, Ordering::Release, Ordering::Relaxed)
            .map_err(|found| PatchError::UnexpectedSlot { slot: rec.slot, found, expected: "the target this record published" })?;
        Ok(())
    }
}

/// Switches F's slot between its two values without an F+: null (F runs unprofiled) and
/// F's profiled entry F.prof (F's own clone with sampling code, `bitcode_embed::format`,
/// "Sampling"), compare-and-swap from `from`. F.prof is code the loader mapped and nobody
/// ever writes, so unlike a new F+ it needs no core serialisation; it needs no `Patcher`
/// either (profile-only mode has none).
///
/// # Safety
/// `slot` is the redirect slot of a function F of a loaded module, `from` and `to` are each
/// null or F.prof's address in that module, and the module stays mapped during the call.
pub unsafe fn set_resting(slot: u64, from: u64, to: u64) -> Result<(), PatchError> {
    // SAFETY: forwarded from the caller.
    let cell = unsafe { slot_cell(slot)? };
    match cell.compare_exchange(from, to, Ordering::Release, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(found) if found == to => Ok(()),
        Err(found) => Err(PatchError::UnexpectedSlot { slot, found, expected: "null or F's profiled entry" }),
    }
}

/// The slot as an atomic, after the checks every store needs: a non-null target.
///
/// # Safety
/// As for [`slot_cell`].
unsafe fn checked_slot(slot: u64, to: u64) -> Result<&'static AtomicU64, PatchError> {
    if to == 0 {
        return Err(PatchError::BadSlot { slot, why: "target is null" });
    }
    // SAFETY: forwarded from the caller.
    unsafe { slot_cell(slot) }
}

/// The 8 bytes at `slot` as an atomic, if the address is non-null and 8-aligned.
///
/// # Safety
/// `slot` names 8 writable bytes of a loaded module's runtime area that only atomic
/// accesses touch, and stays mapped for as long as the returned reference is used.
unsafe fn slot_cell(slot: u64) -> Result<&'static AtomicU64, PatchError> {
    if slot == 0 || !slot.is_multiple_of(8) {
        return Err(PatchError::BadSlot { slot, why: "not a non-null, 8-byte aligned address" });
    }
    // SAFETY: aligned and non-null (checked); validity and lifetime are the caller's
    // contract. The decorated code reads it with atomic loads only.
    Ok(unsafe { AtomicU64::from_ptr(slot as *mut u64) })
}
