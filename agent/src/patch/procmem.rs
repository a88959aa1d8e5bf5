//! Reading and writing our own code through `/proc/self/mem`.
//!
//! A write to `/proc/self/mem` goes through page protections (the kernel uses FOLL_FORCE and
//! breaks copy-on-write for private mappings), so code pages stay r-x the whole time and no
//! mapping is ever writable and executable at once (invariant 3). Reads through it are safe
//! on any address: an unmapped one is an error, not a fault.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use super::PatchError;

pub(crate) struct ProcMem {
    file: File,
    /// The fd names the address space it was opened in; after fork it still writes the
    /// parent's memory, so every use checks we are still that process.
    pid: u32,
}

impl ProcMem {
    pub(crate) fn open() -> Result<ProcMem, PatchError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/self/mem")
            .map_err(|e| PatchError::Unavailable {
                what: "opening /proc/self/mem for writing",
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        Ok(ProcMem {
            file,
            pid: std::process::id(),
        })
    }

    fn check_pid(&self) -> Result<(), PatchError> {
        if std::process::id() == self.pid {
            Ok(())
        } else {
            Err(PatchError::Forked)
        }
    }

    /// Reads up to `buf.len()` bytes at `addr`; returns how many (fewer at a mapping's end).
    pub(crate) fn read(&self, addr: u64, buf: &mut [u8]) -> Result<usize, PatchError> {
        self.check_pid()?;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO past the end of a mapping: return what we have.
                Err(_) if done > 0 => break,
                Err(e) => return Err(PatchError::access("reading", addr, &e)),
            }
        }
        Ok(done)
    }

    pub(crate) fn read_exact<const N: usize>(&self, addr: u64) -> Result<[u8; N], PatchError> {
        let mut buf = [0u8; N];
        if self.read(addr, &mut buf)? != N {
            return Err(PatchError::Access {
                op: "reading",
                addr,
                errno: 0,
            });
        }
        Ok(buf)
    }

    /// Writes all of `bytes` at `addr`, whatever the page protection.
    pub(crate) fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), PatchError> {
        self.check_pid()?;
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write_at(&bytes[done..], addr + done as u64) {
                Ok(0) => {
                    return Err(PatchError::Access {
                        op: "writing",
                        addr,
                        errno: 0,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PatchError::access("writing", addr, &e)),
            }
        }
        Ok(())
    }

    /// Proves that writes through page protections work here: some kernels
    /// (`proc_mem.force_override=never`) or sandboxes refuse them.
    pub(crate) fn self_test(&self) -> Result<(), PatchError> {
        let page = ReadOnlyPage::map()?;
        let unavailable = |errno| PatchError::Unavailable {
            what: "writing a read-only page through /proc/self/mem",
            errno,
        };
        self.write(page.addr, &[0xCC]).map_err(|e| match e {
            PatchError::Access { errno, .. } => unavailable(errno),
            other => other,
        })?;
        let back: [u8; 1] = self.read_exact(page.addr)?;
        if back != [0xCC] {
            return Err(unavailable(0));
        }
        Ok(())
    }
}

/// An anonymous read-only page, unmapped on drop.
struct ReadOnlyPage {
    addr: u64,
}

impl ReadOnlyPage {
    fn map() -> Result<ReadOnlyPage, PatchError> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel; touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(PatchError::Unavailable {
                what: "mmap of a test page",
                errno,
            });
        }
        Ok(ReadOnlyPage { addr: p as u64 })
    }
}

impl Drop for ReadOnlyPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` created, which nothing else references.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, 4096) };
    }
}
