//! Live code patching: the only code in drti that writes code (invariant 3).
//!
//! Every decorated function F starts with a patchable entry (optional `endbr64`, then a
//! 5-byte NOP). `Patcher::redirect` turns the NOP into `jmp F+`, directly or through a near
//! trampoline; `retarget` points it at a newer F+; `revert` puts the NOP back. All writes
//! go through `/proc/self/mem` (code stays r-x, see `procmem`) with the int3-first
//! protocol (see `poke`), so threads may run F meanwhile.

mod decode;
mod error;
mod membarrier;
mod points;
mod poke;
mod procmem;
mod trampoline;
mod trap;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard, OnceLock};

pub use error::PatchError;

use decode::{classify, jmp_rel32, patch_offset, Site};
use membarrier::CoreSync;
use procmem::ProcMem;
use trampoline::Trampolines;

/// One redirected entry, as written. Give it back to `retarget` / `revert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRecord {
    /// The function's entry address.
    pub entry: u64,
    /// The 5 patched bytes (after `endbr64`, if any).
    pub patch_point: u64,
    /// Where the function now goes (F+).
    pub target: u64,
    /// The NOP that was there; `revert` writes it back.
    pub original: [u8; 5],
    /// The near trampoline slot the jump goes through, when `target` is out of rel32 reach.
    pub trampoline: Option<u64>,
    /// The `jmp rel32` we wrote; checked before we overwrite it.
    written: [u8; 5],
}

/// Process-wide state: one /proc/self/mem fd, one membarrier registration, one handler,
/// one lock serialising every patch.
struct Shared {
    mem: ProcMem,
    sync: CoreSync,
    trampolines: Mutex<Trampolines>,
}

static SHARED: OnceLock<Result<Shared, PatchError>> = OnceLock::new();

fn setup() -> Result<Shared, PatchError> {
    let sync = CoreSync::register()?;
    let mem = ProcMem::open()?;
    mem.self_test()?;
    trap::install()?;
    Ok(Shared {
        mem,
        sync,
        trampolines: Mutex::new(Trampolines::default()),
    })
}

/// Handle to the process's patcher. Every `Patcher::new` returns a handle to the same
/// state, so patches from any handle are serialised.
#[derive(Clone, Copy)]
pub struct Patcher {
    shared: &'static Shared,
}

impl Patcher {
    /// Sets up patching on first use: membarrier SYNC_CORE (or the expedited fallback),
    /// the SIGTRAP handler, and a proof that /proc/self/mem writes work. On error the agent
    /// runs unoptimised; the same error is returned on every later call.
    pub fn new() -> Result<Patcher, PatchError> {
        match SHARED.get_or_init(setup) {
            Ok(shared) => Ok(Patcher { shared }),
            Err(e) => Err(e.clone()),
        }
    }

    /// The address of the 5 patchable bytes of the function at `entry`: after an optional
    /// `endbr64`, a 5-byte NOP or a `jmp rel32` we wrote. Anything else is an error.
    pub fn patch_point(entry: u64) -> Result<u64, PatchError> {
        let mut bytes = [0u8; 9];
        let n = match SHARED.get() {
            Some(Ok(shared)) => shared.mem.read(entry, &mut bytes)?,
            _ => ProcMem::open()?.read(entry, &mut bytes)?,
        };
        patch_offset(&bytes[..n], entry)
            .map(|off| entry + off)
            .map_err(|why| PatchError::NotPatchable {
                entry,
                found: bytes[..n].to_vec(),
                why,
            })
    }

    /// Whether cores are serialised with SYNC_CORE (`false`: the expedited fallback).
    pub fn has_sync_core(&self) -> bool {
        self.shared.sync == CoreSync::SyncCore
    }

    /// How many times a thread hit one of our int3s and was sent around it.
    pub fn traps_handled() -> u64 {
        trap::TRAPS_HANDLED.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the function at `entry` jump to `to`. Its entry must still be the NOP.
    pub fn redirect(&self, entry: u64, to: u64) -> Result<PatchRecord, PatchError> {
        let at = Self::patch_point(entry)?;
        let mut pool = self.lock();
        let original: [u8; 5] = self.shared.mem.read_exact(at)?;
        if classify(&original, at) != Some(Site::Nop) {
            return Err(PatchError::UnexpectedBytes {
                patch_point: at,
                found: original,
                expected: "a 5-byte NOP (already redirected? use retarget)",
            });
        }
        let (written, trampoline) = self.jump(&mut pool, at, to)?;
        poke::poke5(&self.shared.mem, self.shared.sync, at, original, written)?;
        Ok(PatchRecord {
            entry,
            patch_point: at,
            target: to,
            original,
            trampoline,
            written,
        })
    }

    /// Points an existing redirection at `to`. A trampoline slot in use is never
    /// rewritten (a thread may be inside it); a new one is taken.
    pub fn retarget(&self, rec: &mut PatchRecord, to: u64) -> Result<(), PatchError> {
        let mut pool = self.lock();
        self.check_live(rec)?;
        let (written, trampoline) = self.jump(&mut pool, rec.patch_point, to)?;
        poke::poke5(
            &self.shared.mem,
            self.shared.sync,
            rec.patch_point,
            rec.written,
            written,
        )?;
        rec.target = to;
        rec.trampoline = trampoline;
        rec.written = written;
        Ok(())
    }

    /// Restores the original NOP: the function runs its own code again. Threads already
    /// in F+ (or its trampoline) may still be running there; freeing F+ is the caller's
    /// business.
    pub fn revert(&self, rec: &PatchRecord) -> Result<(), PatchError> {
        let _pool = self.lock();
        self.check_live(rec)?;
        if classify(&rec.original, rec.patch_point) != Some(Site::Nop) {
            return Err(PatchError::BadRecord {
                patch_point: rec.patch_point,
            });
        }
        poke::poke5(
            &self.shared.mem,
            self.shared.sync,
            rec.patch_point,
            rec.written,
            rec.original,
        )
    }

    /// Drops patch points in `[start, end)` from the SIGTRAP table, for a module that is
    /// gone (dlclose), so a later mapping at those addresses is not mistaken for ours.
    /// Call only once no thread can be executing there.
    pub fn forget_range(&self, start: u64, end: u64) {
        let _pool = self.lock();
        trap::POINTS.remove_range(start, end);
    }

    fn lock(&self) -> MutexGuard<'_, Trampolines> {
        // A panic elsewhere while holding it leaves the pool consistent (slots are only
        // ever added), so a poisoned lock is still usable.
        self.shared
            .trampolines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The jump to write at `at` for `to`, and the trampoline slot it goes through if any.
    fn jump(
        &self,
        pool: &mut Trampolines,
        at: u64,
        to: u64,
    ) -> Result<([u8; 5], Option<u64>), PatchError> {
        if let Some(j) = jmp_rel32(at, to) {
            return Ok((j, None));
        }
        let slot = pool.make(&self.shared.mem, at, to)?;
        let j = jmp_rel32(at, slot).ok_or(PatchError::NoTrampolineSpace {
            patch_point: at,
            target: to,
        })?;
        Ok((j, Some(slot)))
    }

    /// The record describes a jump we wrote, and that jump is still in place.
    fn check_live(&self, rec: &PatchRecord) -> Result<(), PatchError> {
        let at = rec.patch_point;
        let dest = rec.trampoline.unwrap_or(rec.target);
        if jmp_rel32(at, dest) != Some(rec.written) {
            return Err(PatchError::BadRecord { patch_point: at });
        }
        if let Some(slot) = rec.trampoline {
            let have: [u8; trampoline::SLOT as usize] = self.shared.mem.read_exact(slot)?;
            if have != trampoline::slot_bytes(rec.target) {
                return Err(PatchError::BadRecord { patch_point: at });
            }
        }
        let now: [u8; 5] = self.shared.mem.read_exact(at)?;
        if now != rec.written || classify(&now, at) != Some(Site::Jmp(dest)) {
            return Err(PatchError::UnexpectedBytes {
                patch_point: at,
                found: now,
                expected: "the jmp this record wrote",
            });
        }
        Ok(())
    }
}
