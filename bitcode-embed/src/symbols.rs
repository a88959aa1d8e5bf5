//! The names of a portable F+ object's symbols (issue 12): every address of the requesting
//! process that F+ refers to is a symbol named after its place in the JIT request, so the
//! agent (no LLVM) resolves an object from a compiler process or a cache with the values
//! of the request it made itself.
//!
//! | symbol | stands for |
//! |---|---|
//! | `__drti.m<k>.<name>` | global `name` of the request's module `k` |
//! | `__drti.slot.<i>.<j>` | the guard slot of site `i`'s target `j` |
//! | `__drti.miss.<i>` | site `i`'s miss counter |
//! | `__drti.area.m<k>` | module `k`'s runtime area |
//! | `__drti.sample_fn`, `__drti.count_fn` | the agent's sampler entry points |
//! | `__drti.countdown_offset` | the countdown's offset from the thread pointer (a value) |

use crate::jit_abi::{array as slice, text, JitOwner, JitRequest};
use std::collections::HashMap;

/// The symbol standing for global `name` of the request's module `k`.
pub fn module_symbol(k: usize, name: &str) -> String {
    format!("__drti.m{k}.{name}")
}

/// Every address `req` names, with its symbol, in a fixed order: module globals (sorted by
/// name, null ones left out), then per site its targets, slots and miss counter and runtime
/// area, the probes' areas, the sampler, the countdown offset. An address may appear under
/// several names (aliases); the compiler names it by the first.
///
/// # Safety
/// Every pointer of `req` must be valid for the counts it gives.
pub unsafe fn request_symbols(req: &JitRequest) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    // SAFETY: per the function contract, for every array and string read below.
    unsafe {
        for (k, m) in slice(req.modules, req.n_modules).iter().enumerate() {
            let mut names: Vec<(String, u64)> = slice(m.symbols, m.n_symbols).iter().filter(|s| s.address != 0).map(|s| (text(s.name, s.name_len), s.address)).collect();
            names.sort();
            out.extend(names.into_iter().map(|(n, a)| (module_symbol(k, &n), a)));
        }
        let area_of = |o: &JitOwner| if o.name_len == 0 { req.function_module } else { o.module };
        for (i, s) in slice(req.sites, req.n_sites).iter().enumerate() {
            for (j, t) in slice(s.targets, s.n_targets as usize).iter().enumerate() {
                out.push((module_symbol(t.module as usize, &text(t.name, t.name_len)), t.address));
                if !t.slot.is_null() {
                    out.push((format!("__drti.slot.{i}.{j}"), t.slot as u64));
                }
            }
            out.push((format!("__drti.miss.{i}"), s.miss_counter as u64));
            if s.area != 0 {
                out.push((format!("__drti.area.m{}", area_of(&s.owner)), s.area));
            }
        }
        for p in slice(req.probes, req.n_probes) {
            out.push((format!("__drti.area.m{}", area_of(&p.owner)), p.area));
        }
    }
    if req.sample_fn != 0 {
        out.push(("__drti.sample_fn".into(), req.sample_fn));
        out.push(("__drti.count_fn".into(), req.count_fn));
    }
    if req.countdown_static != 0 {
        out.push(("__drti.countdown_offset".into(), req.countdown_offset as u64));
    }
    out
}

/// The values of a portable object's symbols in the process that made `req`: what the
/// agent's linker resolves them with.
///
/// # Safety
/// As [`request_symbols`].
pub unsafe fn object_symbols(req: &JitRequest) -> HashMap<String, u64> {
    // SAFETY: per the function contract.
    unsafe { request_symbols(req) }.into_iter().collect()
}
