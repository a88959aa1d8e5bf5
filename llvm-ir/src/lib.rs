//! The LLVM helpers that the instrumenter (`instrument/`, drti-cc) and the JIT
//! (`agent/jit/`) share, so both sides agree on what a call site is ([`ir`]) and where an
//! activation may move into a compiled continuation ([`osr`]).
//! Depends on LLVM (llvm-sys) and nothing of drti; only LLVM-linking crates (instrument,
//! agent/jit, jitd, never the agent) may depend on it.

pub mod ir;
pub mod osr;
