//! Replacing the 5 bytes of a patch point while other threads may be executing them.
//!
//! Why int3-first and not one atomic store: x86 only guarantees that an aligned 8-byte
//! store is seen whole by instruction fetch on other cores, and the 5 bytes are not
//! 8-byte aligned in general — after an `endbr64` they sit at offset 4 and, for an
//! 8-aligned function, straddle an 8-byte boundary. A core could then fetch half old,
//! half new bytes and execute garbage. So (as the kernel's text_poke_bp does):
//!
//! 1. byte 0 := int3, sync cores  — from now on nobody starts the old instruction;
//!    a thread that hits the int3 is sent to patch point + 5 by the SIGTRAP handler;
//! 2. bytes 1..5 := new, sync      — nobody can reach them: they are behind the int3;
//! 3. byte 0 := new, sync          — the new instruction appears whole.
//!
//! A thread sent to patch point + 5 skips the old and new instruction alike and runs F's
//! original code, which is always correct.

use super::membarrier::CoreSync;
use super::procmem::ProcMem;
use super::trap::POINTS;
use super::PatchError;

const INT3: u8 = 0xCC;

pub(crate) fn poke5(
    mem: &ProcMem,
    sync: CoreSync,
    at: u64,
    old: [u8; 5],
    new: [u8; 5],
) -> Result<(), PatchError> {
    // Registered before the int3 exists, so the handler always recognises it.
    if !POINTS.insert(at) {
        return Err(PatchError::TableFull { patch_point: at });
    }
    mem.write(at, &[INT3])?;
    let steps = || {
        sync.sync(at)?;
        mem.write(at + 1, &new[1..])?;
        sync.sync(at)?;
        mem.write(at, &new[..1])?;
        sync.sync(at)
    };
    if let Err(e) = steps() {
        // Best effort back to the old bytes, same protocol; the int3 alone is already
        // correct (just slow), so errors here change nothing for running threads.
        let _ = mem.write(at, &[INT3]);
        let _ = sync.sync(at);
        let _ = mem.write(at + 1, &old[1..]);
        let _ = sync.sync(at);
        let _ = mem.write(at, &old[..1]);
        let _ = sync.sync(at);
        return Err(e);
    }
    let now: [u8; 5] = mem.read_exact(at)?;
    if now != new {
        return Err(PatchError::UnexpectedBytes {
            patch_point: at,
            found: now,
            expected: "the bytes just written (another writer?)",
        });
    }
    Ok(())
}
