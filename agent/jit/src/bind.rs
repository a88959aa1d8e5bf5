//! Binding a module to the running program.
//!
//! The JIT compiles a copy of a few functions (F, the callees it inlines); everything else
//! the copy refers to must be the program's original: the same statics, the same C++
//! guard variables, the same functions (so address comparisons hold). `bind` keeps the
//! bodies of the chosen functions under new names and replaces every other global with
//! `inttoptr (i64 ADDR to ptr)` of its run-time address from the module's address table,
//! then deletes it. Read-only data with no significant address (local `unnamed_addr`
//! constants, string literals) is kept as a private copy so it can be constant-folded.
//! Declarations the table does not know keep their names and are resolved by the JIT
//! against the process's global symbols.

// Raw LLVM handles passed in come from live modules and sessions of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use drti_instrument::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;

/// `inttoptr (i64 addr to ptr)` in `m`'s context.
pub fn address_constant(m: LLVMModuleRef, addr: u64) -> LLVMValueRef {
    // SAFETY: `m` is live; constants are uniqued in its context.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        LLVMConstIntToPtr(LLVMConstInt(LLVMInt64TypeInContext(ctx), addr, 0), LLVMPointerTypeInContext(ctx, 0))
    }
}

fn has_uses(v: LLVMValueRef) -> bool {
    // SAFETY: `v` is live.
    unsafe { !LLVMGetFirstUse(v).is_null() }
}

fn unnamed_addr(g: LLVMValueRef) -> bool {
    // SAFETY: `g` is a live global.
    unsafe { LLVMGetUnnamedAddress(g) != llvm_sys::LLVMUnnamedAddr::LLVMNoUnnamedAddr }
}

/// Keeps `keep` (old name → new name) and binds everything else of `m` to `symbols`.
pub fn bind(m: LLVMModuleRef, keep: &HashMap<String, String>, symbols: &HashMap<String, u64>) -> Result<(), String> {
    let addr_of = |name: &str| symbols.get(name).copied().filter(|&a| a != 0);
    // LLVM's own tables: constructors must never run twice, and used-lists would pin
    // globals we are about to replace.
    for g in ir::global_vars(m) {
        if ir::is_llvm_reserved(&ir::name(g)) {
            // SAFETY: `g` is a live global variable of `m`.
            unsafe { LLVMDeleteGlobal(g) };
        }
    }
    // Aliases: bound by address, then pointed at a dead dummy so their aliasee can go.
    let aliases = ir::aliases(m);
    if !aliases.is_empty() {
        // SAFETY: creating a private byte global in `m`.
        let dummy = unsafe {
            let ctx = LLVMGetModuleContext(m);
            let ty = LLVMInt8TypeInContext(ctx);
            let d = LLVMAddGlobal(m, ty, c"drti.dead".as_ptr());
            LLVMSetInitializer(d, LLVMConstNull(ty));
            LLVMSetLinkage(d, llvm_sys::LLVMLinkage::LLVMPrivateLinkage);
            d
        };
        for a in aliases {
            let name = ir::name(a);
            if has_uses(a) {
                let addr = addr_of(&name).ok_or_else(|| format!("no run-time address for alias {name}"))?;
                // SAFETY: both are pointers; `a` is live.
                unsafe { LLVMReplaceAllUsesWith(a, address_constant(m, addr)) };
            }
            // SAFETY: `a` is live and now unused.
            unsafe {
                LLVMAliasSetAliasee(a, dummy);
                LLVMSetLinkage(a, llvm_sys::LLVMLinkage::LLVMPrivateLinkage);
            }
        }
    }
    for f in ir::ifuncs(m) {
        if has_uses(f) {
            return Err(format!("uses ifunc {}", ir::name(f)));
        }
        // SAFETY: `f` is a live, unused ifunc.
        unsafe { LLVMEraseGlobalIFunc(f) };
    }
    // Functions: keep the chosen bodies, bind or drop the rest.
    let mut kept = Vec::new();
    for f in ir::functions(m) {
        let name = ir::name(f);
        if ir::is_llvm_reserved(&name) {
            continue;
        }
        if let Some(new_name) = keep.get(&name) {
            let addr = addr_of(&name).ok_or_else(|| format!("no run-time address for {name}"))?;
            // SAFETY: `f` is live; references to it now mean the original function.
            unsafe {
                LLVMReplaceAllUsesWith(f, address_constant(m, addr));
                llvm_sys::comdat::LLVMSetComdat(f, std::ptr::null_mut());
                LLVMSetLinkage(f, llvm_sys::LLVMLinkage::LLVMExternalLinkage);
                LLVMSetVisibility(f, llvm_sys::LLVMVisibility::LLVMDefaultVisibility);
                LLVMSetSection(f, c"".as_ptr());
            }
            ir::set_name(f, new_name);
            ir::remove_fn_attr(f, "optnone");
            ir::remove_fn_attr(f, "noinline");
            kept.push(f);
            continue;
        }
    }
    // Personality routines stay symbols: codegen only emits a personality (and the
    // LSDA that runs cleanups during unwinding) for a personality that is a function,
    // not for an address constant. They resolve by name (`__gxx_personality_v0`).
    let personalities: Vec<LLVMValueRef> = kept
        .iter()
        // SAFETY: `f` is a live kept function; the personality is only read.
        .filter_map(|&f| unsafe { (LLVMHasPersonalityFn(f) != 0).then(|| LLVMGetPersonalityFn(f)) })
        .collect();
    for f in ir::functions(m) {
        let name = ir::name(f);
        if ir::is_llvm_reserved(&name) || kept.contains(&f) || personalities.contains(&f) {
            continue;
        }
        replace_or_drop(m, f, &name, addr_of(&name), true)?;
    }
    for g in ir::global_vars(m) {
        let name = ir::name(g);
        if name == "drti.dead" {
            continue;
        }
        let local_const = ir::is_local(g) && ir::is_constant(g) && unnamed_addr(g) && !ir::is_declaration(g) && !ir::is_thread_local(g);
        if local_const {
            // SAFETY: `g` is live.
            unsafe { LLVMSetLinkage(g, llvm_sys::LLVMLinkage::LLVMPrivateLinkage) };
            continue;
        }
        if ir::is_thread_local(g) && has_uses(g) {
            return Err(format!("uses thread-local variable {name}"));
        }
        replace_or_drop(m, g, &name, addr_of(&name), false)?;
    }
    Ok(())
}

/// Replaces a global by its address and deletes it; unused ones are deleted; external
/// declarations without an address stay for name resolution.
fn replace_or_drop(m: LLVMModuleRef, g: LLVMValueRef, name: &str, addr: Option<u64>, function: bool) -> Result<(), String> {
    match addr {
        Some(a) => {
            // SAFETY: `g` is live and a pointer-typed global like the constant.
            unsafe { LLVMReplaceAllUsesWith(g, address_constant(m, a)) };
        }
        None if !has_uses(g) => {}
        None if ir::is_declaration(g) && !ir::is_local(g) => return Ok(()),
        None => return Err(format!("no run-time address for {name}")),
    }
    // SAFETY: `g` has no uses left.
    unsafe {
        if function {
            LLVMDeleteFunction(g);
        } else {
            LLVMDeleteGlobal(g);
        }
    }
    Ok(())
}
