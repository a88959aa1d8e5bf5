//! The SIGTRAP handler of the int3-first protocol.
//!
//! A thread that executes the int3 we put on byte 0 of a patch point is sent to the
//! patch point + 5: as if it had executed the 5-byte NOP, i.e. it runs F's original code,
//! which is always correct (invariant 1) whatever the bytes become.
//!
//! A patch point stays in the table after its write has finished, not only while it is
//! being written: membarrier does not wait for signal delivery, so a thread can hit the
//! int3, be preempted, and run this handler after we restored byte 0. Sending it to F's
//! original code is still correct then. Entries go when their module goes (`forget_range`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::points::PointTable;
use super::PatchError;

/// 4096 patch points, 32 KiB: far more functions than the agent will ever recompile.
pub(crate) static POINTS: PointTable<4096> = PointTable::new();

/// How many threads the handler sent around a patch point (for the log and tests).
pub(crate) static TRAPS_HANDLED: AtomicU64 = AtomicU64::new(0);

/// The SIGTRAP disposition before ours, for signals that are not ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
type PlainHandler = extern "C" fn(libc::c_int);

extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO
    // handler; writing RIP in the ucontext is how a handler redirects the thread on return.
    unsafe {
        // An int3 raises SIGTRAP with si_code SI_KERNEL and RIP just after the 0xCC.
        if !info.is_null() && !ctx.is_null() && (*info).si_code == libc::SI_KERNEL {
            let gregs = &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs;
            let at = (gregs[libc::REG_RIP as usize] as u64).wrapping_sub(1);
            if POINTS.contains(at) {
                gregs[libc::REG_RIP as usize] = (at + 5) as i64;
                TRAPS_HANDLED.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        chain(sig, info, ctx);
    }
}

/// Hands a SIGTRAP that is not ours to whoever had it before.
///
/// # Safety
/// Only from `on_sigtrap`, with the arguments the kernel gave it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(prev) = PREVIOUS.get() else {
        return default_action(sig);
    };
    match prev.sa_sigaction {
        libc::SIG_DFL => default_action(sig),
        libc::SIG_IGN => {}
        h if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: with SA_SIGINFO, sa_sigaction is a three-argument handler.
            let f: InfoHandler = unsafe { std::mem::transmute(h) };
            f(sig, info, ctx)
        }
        h => {
            // SAFETY: without SA_SIGINFO, sa_sigaction is a one-argument sa_handler.
            let f: PlainHandler = unsafe { std::mem::transmute(h) };
            f(sig)
        }
    }
}

/// Puts SIG_DFL back and re-sends the signal: it is blocked while we run, so it is
/// delivered with the default action (core dump) as soon as the handler returns — the
/// same end as if we had never been installed. Async-signal-safe.
fn default_action(sig: libc::c_int) {
    // SAFETY: sigaction/raise are async-signal-safe; the struct is fully initialised.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Installs the handler, remembering the previous one. Called once per process.
pub(crate) fn install() -> Result<(), PatchError> {
    let failed = |what| PatchError::Unavailable {
        what,
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    };
    // SAFETY: sigaction with valid, fully initialised structs; the handler is
    // async-signal-safe (atomics only, no locks, no allocation).
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTRAP, std::ptr::null(), &mut old) != 0 {
            return Err(failed("reading the SIGTRAP handler"));
        }
        if old.sa_sigaction != on_sigtrap as *const () as usize {
            let _ = PREVIOUS.set(old);
        }
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigtrap as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGTRAP, &new, std::ptr::null_mut()) != 0 {
            return Err(failed("installing the SIGTRAP handler"));
        }
    }
    Ok(())
}
