//! What can go wrong while patching, worded for the log: what failed, on which address, and
//! what happens now (the function, or the whole agent, runs unoptimised).

use std::fmt;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Live patching cannot work in this process at all (set-up of `Patcher::new`).
    Unavailable { what: &'static str, errno: i32 },
    /// The bytes at a function entry are not a patchable entry.
    NotPatchable {
        entry: u64,
        found: Vec<u8>,
        why: &'static str,
    },
    /// The 5 bytes at a patch point are not what this operation expects to replace.
    UnexpectedBytes {
        patch_point: u64,
        found: [u8; 5],
        expected: &'static str,
    },
    /// A `PatchRecord` whose fields do not describe the jump we wrote.
    BadRecord { patch_point: u64 },
    /// Reading or writing code through `/proc/self/mem` failed (errno 0: short transfer).
    Access {
        op: &'static str,
        addr: u64,
        errno: i32,
    },
    /// `membarrier` failed while bytes at `patch_point` were half written.
    Sync { patch_point: u64, errno: i32 },
    /// No free page within ±2 GiB of the patch point for a trampoline.
    NoTrampolineSpace { patch_point: u64, target: u64 },
    /// The SIGTRAP patch-point table is full.
    TableFull { patch_point: u64 },
    /// This `Patcher` was set up in the parent before a `fork`.
    Forked,
}

impl PatchError {
    /// The calling thread's errno as an `Access` error.
    pub(crate) fn access(op: &'static str, addr: u64, e: &io::Error) -> Self {
        PatchError::Access {
            op,
            addr,
            errno: e.raw_os_error().unwrap_or(0),
        }
    }
}

fn os(errno: i32) -> String {
    if errno == 0 {
        "short transfer".to_string()
    } else {
        io::Error::from_raw_os_error(errno).to_string()
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PatchError::*;
        match self {
            Unavailable { what, errno } => write!(
                f,
                "live code patching unavailable: {what} failed ({}); the agent runs unoptimised",
                os(*errno)
            ),
            NotPatchable { entry, found, why } => write!(
                f,
                "function at {entry:#x} has no patchable entry ({why}; bytes {found:02x?}); \
                 it stays unoptimised"
            ),
            UnexpectedBytes {
                patch_point,
                found,
                expected,
            } => write!(
                f,
                "patch point {patch_point:#x} holds {found:02x?}, expected {expected}; \
                 not touching it, the function stays unoptimised"
            ),
            BadRecord { patch_point } => write!(
                f,
                "patch record for {patch_point:#x} does not describe the jump written there; \
                 not touching it"
            ),
            Access { op, addr, errno } => write!(
                f,
                "{op} code at {addr:#x} through /proc/self/mem failed ({}); \
                 the function stays unoptimised",
                os(*errno)
            ),
            Sync { patch_point, errno } => write!(
                f,
                "membarrier failed while patching {patch_point:#x} ({}); \
                 the function stays unoptimised",
                os(*errno)
            ),
            NoTrampolineSpace {
                patch_point,
                target,
            } => write!(
                f,
                "no free page within ±2 GiB of {patch_point:#x} for a trampoline to \
                 {target:#x}; the function stays unoptimised"
            ),
            TableFull { patch_point } => write!(
                f,
                "too many patch points, cannot track {patch_point:#x}; \
                 the function stays unoptimised"
            ),
            Forked => write!(
                f,
                "patcher was set up before fork and cannot patch this child process; \
                 it runs unoptimised"
            ),
        }
    }
}

impl std::error::Error for PatchError {}
