//! The optimisation pipeline of F+, chosen by the size of what is compiled.
//!
//! F's body and every target's body come from clang's `-O2` bitcode: they were already
//! optimised, vectorised included. What the JIT adds is guarded inlining, so what needs the
//! pipeline is the code inlining exposes. The one pass whose cost grows much faster than
//! that benefit is the SLP vectoriser: on a 10.8k-instruction interpreter function it was
//! 47% of `default<O2>` (0.15 of 0.33 s), for straight-line code clang had already
//! vectorised. Above [`SLP_LIMIT`] instructions the pipeline runs without it; loop
//! vectorisation, which is what inlining a callback into a loop enables, stays on.

// Raw LLVM handles passed in come from live modules of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use drti_llvm_ir::ir;
use llvm_sys::prelude::*;

/// Instructions (over all defined functions of the module) above which SLP vectorisation
/// is skipped: below it, `default<O2>` takes a few milliseconds whatever it runs.
pub const SLP_LIMIT: usize = 2_000;

/// What the optimiser runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// LLVM's default pipeline at this level (2 or 3).
    pub level: u32,
    /// Whether the SLP vectoriser runs.
    pub slp: bool,
}

/// The pipeline for a module of `instructions` IR instructions at `opt_level` (2 or 3).
pub fn choose(instructions: usize, opt_level: u32) -> Choice {
    Choice { level: opt_level.clamp(2, 3), slp: instructions <= SLP_LIMIT }
}

/// IR instructions in the defined functions of `m`.
pub fn instruction_count(m: LLVMModuleRef) -> usize {
    ir::functions(m).into_iter().filter(|&f| !ir::is_declaration(f)).map(|f| ir::instructions(f).len()).sum()
}

extern "C" {
    /// optimise.cpp: LLVM's default pipeline at O2/O3 with a target machine, optionally
    /// without the SLP vectoriser.
    fn drti_optimise(m: LLVMModuleRef, level: u32, skip_slp: i32);
}

/// Optimises `m` with the pipeline [`choose`] picks for it; returns the choice.
pub fn optimise(m: LLVMModuleRef, opt_level: u32) -> Choice {
    let choice = choose(instruction_count(m), opt_level);
    // SAFETY: `m` is a live module owned by the caller, not used elsewhere meanwhile.
    unsafe { drti_optimise(m, choice.level, (!choice.slp) as i32) };
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_modules_get_the_whole_pipeline() {
        assert_eq!(choose(40, 2), Choice { level: 2, slp: true });
        assert_eq!(choose(SLP_LIMIT, 3), Choice { level: 3, slp: true });
    }

    #[test]
    fn big_modules_skip_slp_but_keep_the_level() {
        assert_eq!(choose(SLP_LIMIT + 1, 2), Choice { level: 2, slp: false });
        assert_eq!(choose(50_000, 3), Choice { level: 3, slp: false });
    }
}
