//! The one anonymous mapping a linked object lives in: placed within ±2 GiB of a given
//! address when the address space allows it (so calls and PC-relative references to the
//! module reach directly), mapped read-write while it is filled and relocated, then each
//! part protected for good. Code is never writable and executable at once.

use std::io;

/// Largest distance between `near` and any byte of the mapping we accept as "in reach":
/// 2 GiB minus a margin, so a 32-bit displacement from anywhere in the mapping to `near`
/// (and to the module around it) still fits.
const REACH: u64 = (1 << 31) - (64 << 20);
/// Distance between successive placement attempts.
const STEP: u64 = 32 << 20;

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; nothing in it is tied to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Map `len` bytes (a multiple of the page size) read-write, within reach of `near`
    /// if possible, else anywhere. Returns the mapping and whether it is in reach.
    pub fn new(len: usize, near: Option<u64>) -> io::Result<(Mapping, bool)> {
        assert!(len > 0 && len.is_multiple_of(page_size()));
        if let Some(near) = near {
            for hint in candidates(near, len as u64) {
                if let Some(m) = try_map(len, Some(hint))? {
                    if in_reach(near, m.base as u64, len as u64) {
                        return Ok((m, true));
                    }
                    // A kernel without MAP_FIXED_NOREPLACE took it as a plain hint and put
                    // the mapping elsewhere: drop it and try the next address.
                }
            }
        }
        let m = try_map(len, None)?.ok_or_else(|| io::Error::other("mmap failed"))?;
        let reach = near.is_some_and(|n| in_reach(n, m.base as u64, len as u64));
        Ok((m, reach))
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The mapping's bytes, for filling and relocating before `protect`.
    ///
    /// # Safety
    /// The range must still be writable (not yet protected) and no code in it may be
    /// running or referenced by another thread.
    pub unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: base..base+len is our mapping (alive while self is); the caller
        // guarantees it is writable and unshared.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }

    /// Set the protection of `[offset, offset + len)` (page-aligned) to `prot`.
    pub fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        assert!(offset.is_multiple_of(page_size()) && offset + len <= self.len);
        // SAFETY: the range lies inside our own mapping; changing its protection cannot
        // affect memory we do not own.
        let r = unsafe { libc::mprotect(self.base.add(offset).cast(), len, prot) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len describe a mapping created by try_map and unmapped only here.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn in_reach(near: u64, base: u64, len: u64) -> bool {
    base.abs_diff(near) <= REACH && (base + len).abs_diff(near) <= REACH
}

/// Addresses to try, closest first, alternating below `near` (free space under a
/// module, away from the heap that grows above the executable) and above it.
fn candidates(near: u64, len: u64) -> impl Iterator<Item = u64> {
    let page = page_size() as u64;
    let near = near & !(page - 1);
    (0..REACH / STEP).flat_map(move |i| {
        let d = i * STEP;
        let below = near.checked_sub(d + len).filter(|&a| a >= 1 << 16);
        let above = near.checked_add(d + page).filter(|a| a.checked_add(len).is_some_and(|e| e < 1 << 47));
        below.into_iter().chain(above)
    })
}

/// One mmap attempt; `Ok(None)` when the hinted range is taken.
fn try_map(len: usize, hint: Option<u64>) -> io::Result<Option<Mapping>> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if hint.is_some() { libc::MAP_FIXED_NOREPLACE } else { 0 };
    let addr = hint.unwrap_or(0) as *mut libc::c_void;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping (and is a mere hint
    // on kernels before 4.17), so this cannot clobber memory anyone uses.
    let p = unsafe { libc::mmap(addr, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::EPERM) | Some(libc::EINVAL) if hint.is_some() => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(Mapping { base: p.cast(), len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_near_and_protected() {
        let near = placed_near_and_protected as *const () as usize as u64;
        let page = page_size();
        let (m, reach) = Mapping::new(3 * page, Some(near)).unwrap();
        assert!(reach, "mapping at {:#x} for {near:#x}", m.base());
        assert!(m.base().abs_diff(near) < 1 << 31);
        m.protect(page, page, libc::PROT_READ).unwrap();
    }

    #[test]
    fn candidates_stay_in_reach() {
        let near = 0x5555_0000_0000;
        for a in candidates(near, 1 << 20).take(200) {
            assert!(in_reach(near, a, 1 << 20), "{a:#x}");
        }
        // Near the bottom of the address space nothing below 64 KiB is proposed.
        assert!(candidates(0x20_0000, 1 << 20).all(|a| a >= 1 << 16));
    }
}
