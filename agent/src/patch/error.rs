//! What can go wrong while redirecting, worded for the log: what failed, on which slot, and
//! what happens now (the function, or the whole agent, runs unoptimised).

use std::fmt;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Redirecting cannot work in this process at all (set-up of `Patcher::new`).
    Unavailable { what: &'static str, errno: i32 },
    /// The function has no redirect slot (its module marks it not redirectable).
    NoSlot { entry: u64 },
    /// A slot address or target that no store may use.
    BadSlot { slot: u64, why: &'static str },
    /// The slot does not hold what this operation expects to replace.
    UnexpectedSlot { slot: u64, found: u64, expected: &'static str },
    /// `membarrier` failed before a new target was published (nothing was stored).
    Sync { slot: u64, errno: i32 },
}

fn os(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PatchError::*;
        match self {
            Unavailable { what, errno } => {
                write!(f, "live redirection unavailable: {what} failed ({}); the agent runs unoptimised", os(*errno))
            }
            NoSlot { entry } => write!(f, "function at {entry:#x} has no redirect slot; it stays unoptimised"),
            BadSlot { slot, why } => write!(f, "redirect slot {slot:#x}: {why}; not touching it, the function stays unoptimised"),
            UnexpectedSlot { slot, found, expected } => write!(
                f,
                "redirect slot {slot:#x} holds {found:#x}, expected {expected}; not touching it, the function stays unoptimised"
            ),
            Sync { slot, errno } => write!(
                f,
                "membarrier failed before publishing through slot {slot:#x} ({}); the function stays unoptimised",
                os(*errno)
            ),
        }
    }
}

impl std::error::Error for PatchError {}
