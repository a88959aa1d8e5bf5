//! drti build time: the decoration pass and the compiler wrappers drti-cc / drti-c++
//! (clang-19 drop-ins). Depends on `bitcode-embed` (the metadata it writes),
//! `drti-llvm-ir` (the LLVM helpers it shares with the JIT) and LLVM; the `drti` tool is
//! in `tools/`, and nothing at run time (agent, JIT, jitd) depends on this crate.

pub mod decorate;
pub mod driver;
pub mod help;
pub mod module;
