//! "Sync cores": make every thread of this process serialise its instruction stream, so no
//! core runs stale bytes of memory the JIT has just filled with code (see `patch`).

use super::PatchError;

const CMD_PRIVATE_EXPEDITED: libc::c_int = 8;
const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 16;
const CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 32;
const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoreSync {
    /// Linux ≥ 4.16: the kernel guarantees a core-serialising instruction on every CPU
    /// running one of our threads before the call returns.
    SyncCore,
    /// Fallback for kernels without SYNC_CORE (before 4.16). The IPI interrupts every
    /// running thread of ours, and on x86 it returns to user mode through IRET, which is
    /// serialising; a thread that was off-CPU comes back through a context switch and a
    /// kernel exit before it can fetch our bytes. A thread inside a syscall at that moment
    /// may leave through SYSRET, which is not architecturally serialising; the kernel
    /// treated x86's return to user mode as sufficient before SYNC_CORE existed, and so do we.
    Expedited,
}

fn membarrier(cmd: libc::c_int) -> Result<(), i32> {
    // SAFETY: membarrier takes only integer arguments and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl CoreSync {
    /// Registers this process once (registration is per address space and idempotent).
    pub(crate) fn register() -> Result<CoreSync, PatchError> {
        if membarrier(CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE).is_ok() {
            return Ok(CoreSync::SyncCore);
        }
        membarrier(CMD_REGISTER_PRIVATE_EXPEDITED)
            .map(|()| CoreSync::Expedited)
            .map_err(|errno| PatchError::Unavailable {
                what: "membarrier registration",
                errno,
            })
    }

    /// Serialises every core running a thread of this process, before `slot` is made to
    /// point at new code. A child of `fork` may not inherit the registration: `EPERM`
    /// registers again and retries once.
    pub(crate) fn sync(self, slot: u64) -> Result<(), PatchError> {
        let (cmd, register) = match self {
            CoreSync::SyncCore => (CMD_PRIVATE_EXPEDITED_SYNC_CORE, CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE),
            CoreSync::Expedited => (CMD_PRIVATE_EXPEDITED, CMD_REGISTER_PRIVATE_EXPEDITED),
        };
        let mut registered_again = false;
        loop {
            match membarrier(cmd) {
                Ok(()) => return Ok(()),
                Err(libc::EINTR) => continue,
                Err(libc::EPERM) if !registered_again => {
                    registered_again = true;
                    membarrier(register).map_err(|errno| PatchError::Sync { slot, errno })?;
                }
                Err(errno) => return Err(PatchError::Sync { slot, errno }),
            }
        }
    }
}
