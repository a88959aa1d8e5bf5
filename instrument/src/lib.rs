//! drti build time: the decoration pass, the compiler-driver wrapper and the inspection
//! tool. The JIT reuses [`ir`] and [`module`] so that both sides agree on what a call site is.

pub mod cache_cmd;
pub mod decorate;
pub mod driver;
pub mod graph;
pub mod help;
pub mod inspect;
pub mod ir;
pub mod module;
pub mod report;
