//! Near trampolines: when F+ is beyond the ±2 GiB a `jmp rel32` reaches, F's entry jumps
//! to a 16-byte slot near F holding `jmp [rip+0]; .quad F+`.
//!
//! Pages are mapped r-x from the start and never made writable: every slot, the first one
//! included, is written through `/proc/self/mem`, the same single write path as all other
//! code. A slot is written before any jump points at it (the patch protocol syncs cores
//! before the jump becomes reachable), and a slot in use is never rewritten: retargeting
//! takes a new slot. Slots and pages are never freed — a thread may still be inside an old
//! slot's jump — and at 16 bytes each the leak is negligible next to the JIT'd code.

use super::decode::jmp_rel32;
use super::procmem::ProcMem;
use super::PatchError;

const PAGE: u64 = 4096;
pub(crate) const SLOT: u64 = 16;
/// Hints for new pages step away from the patch point by this much, both ways.
const STEP: u64 = 1 << 20;
/// Below this the kernel refuses mappings (vm.mmap_min_addr); above, no user space.
const LOWEST: u64 = 1 << 16;
const HIGHEST: u64 = (1 << 47) - PAGE;

/// `jmp qword ptr [rip+0]`, the absolute target, then int3 padding.
pub(crate) fn slot_bytes(to: u64) -> [u8; SLOT as usize] {
    let mut s = [0xCC; SLOT as usize];
    s[..6].copy_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]);
    s[6..14].copy_from_slice(&to.to_le_bytes());
    s
}

struct Page {
    base: u64,
    used: u64,
}

#[derive(Default)]
pub(crate) struct Trampolines {
    pages: Vec<Page>,
}

impl Trampolines {
    /// A new slot that jumps to `to`, reachable by a `jmp rel32` at `from`.
    pub(crate) fn make(&mut self, mem: &ProcMem, from: u64, to: u64) -> Result<u64, PatchError> {
        let slot = self.take_slot(from).ok_or(PatchError::NoTrampolineSpace {
            patch_point: from,
            target: to,
        })?;
        mem.write(slot, &slot_bytes(to))?;
        Ok(slot)
    }

    fn take_slot(&mut self, from: u64) -> Option<u64> {
        for page in &mut self.pages {
            let slot = page.base + page.used * SLOT;
            if page.used < PAGE / SLOT && jmp_rel32(from, slot).is_some() {
                page.used += 1;
                return Some(slot);
            }
        }
        let base = map_near(from)?;
        self.pages.push(Page { base, used: 1 });
        Some(base)
    }
}

/// Maps an r-x page whose every slot is reachable from `from`, trying hints ever further
/// away; MAP_FIXED_NOREPLACE makes a taken hint fail instead of clobbering a mapping.
fn map_near(from: u64) -> Option<u64> {
    let center = from & !(PAGE - 1);
    let fits = |base: u64| {
        jmp_rel32(from, base).is_some() && jmp_rel32(from, base + PAGE - SLOT).is_some()
    };
    for k in 1..(1u64 << 31) / STEP {
        let below = center.checked_sub(k * STEP);
        let above = center.checked_add(k * STEP);
        for hint in [below, above].into_iter().flatten() {
            if !(LOWEST..=HIGHEST).contains(&hint) || !fits(hint) {
                continue;
            }
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the new page
            // is anonymous and not yet referenced by anything.
            let p = unsafe {
                libc::mmap(
                    hint as *mut libc::c_void,
                    PAGE as usize,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                continue;
            }
            if fits(p as u64) {
                return Some(p as u64);
            }
            // Kernels before 4.17 treat the flag as a plain hint and may map elsewhere.
            // SAFETY: unmaps the page we just mapped and nobody has seen.
            unsafe { libc::munmap(p, PAGE as usize) };
        }
    }
    None
}
