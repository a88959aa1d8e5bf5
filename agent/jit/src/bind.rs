//! Binding a module to the running program.
//!
//! The JIT compiles a copy of a few functions (F, the callees it inlines); everything else
//! the copy refers to must be the program's original: the same statics, the same C++
//! guard variables, the same functions (so address comparisons hold). `bind` keeps the
//! bodies of the chosen functions under new names and replaces every other global by a
//! declaration named after its run-time address (`__drti_abs_<hex>`, from the module's
//! address table), then deletes it. The JIT defines those names as absolute symbols
//! (`orc`). They stay globals, not `inttoptr` constants, because some IR needs a global:
//! catch clauses, exception-specification filters and `llvm.eh.typeid.for` match C++
//! exceptions by their `type_info` global (a constant address makes every typed handler a
//! catch-all, and a filter crashes code generation). One address is one name, in every
//! module and every compile. Read-only data with no significant address (local
//! `unnamed_addr` constants, string literals) is kept as a private copy so it can be
//! constant-folded. Weak declarations the program resolved to nothing (0 in the table)
//! become null. Declarations the table does not know keep their names and are
//! resolved by the JIT against the process's global symbols. Module-level assembly is
//! dropped: the original module's already ran, a copy would define its symbols again.

// Raw LLVM handles passed in come from live modules and sessions of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;

/// Prefix of the names that stand for absolute addresses.
pub const ABS_PREFIX: &str = "__drti_abs_";

/// The symbol name bound to run-time address `addr`.
pub fn abs_name(addr: u64) -> String {
    format!("{ABS_PREFIX}{addr:x}")
}

/// The address a `__drti_abs_<hex>` name stands for.
pub fn parse_abs_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(ABS_PREFIX)?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|&a| a != 0)
}

/// `inttoptr (i64 addr to ptr)` in `m`'s context.
pub fn address_constant(m: LLVMModuleRef, addr: u64) -> LLVMValueRef {
    // SAFETY: `m` is live; constants are uniqued in its context.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        LLVMConstIntToPtr(LLVMConstInt(LLVMInt64TypeInContext(ctx), addr, 0), LLVMPointerTypeInContext(ctx, 0))
    }
}

/// The calling convention of calls to `g`: a function's own, an alias's aliasee's.
fn call_conv(g: LLVMValueRef) -> u32 {
    // SAFETY: `g` is a live global; an alias's aliasee is only inspected.
    unsafe {
        let f = if LLVMIsAGlobalAlias(g).is_null() { g } else { LLVMAliasGetAliasee(g) };
        if LLVMIsAFunction(f).is_null() {
            llvm_sys::LLVMCallConv::LLVMCCallConv as u32
        } else {
            LLVMGetFunctionCallConv(f)
        }
    }
}

/// The declaration that stands for `g` at run-time address `addr`: `__drti_abs_<hex>`,
/// a fresh external (not dso_local) declaration of `g`'s kind and value type, with `g`'s
/// calling convention (a call whose convention differs from its callee's is undefined)
/// or, for a variable, alignment and constness. When the name is already declared (another global at the
/// same address) that one is reused, unless its calling convention differs: then the
/// address constant, which has no convention.
fn bound_value(m: LLVMModuleRef, g: LLVMValueRef, addr: u64, function: bool) -> LLVMValueRef {
    let name = abs_name(addr);
    let cname = std::ffi::CString::new(name).unwrap();
    // SAFETY: `m` and `g` are live; new declarations are created in `m`'s context.
    unsafe {
        let ptr_ty = LLVMTypeOf(g);
        let existing_fn = LLVMGetNamedFunction(m, cname.as_ptr());
        let existing_var = LLVMGetNamedGlobal(m, cname.as_ptr());
        if !existing_fn.is_null() {
            if function && LLVMGetFunctionCallConv(existing_fn) != call_conv(g) {
                return address_constant(m, addr);
            }
            return existing_fn;
        }
        if !existing_var.is_null() {
            if function && call_conv(g) != llvm_sys::LLVMCallConv::LLVMCCallConv as u32 {
                return address_constant(m, addr);
            }
            if !LLVMIsAGlobalVariable(g).is_null() {
                let a = LLVMGetAlignment(g);
                if a > LLVMGetAlignment(existing_var) {
                    // Both names are the same address: each one's alignment holds.
                    LLVMSetAlignment(existing_var, a);
                }
            }
            return existing_var;
        }
        if LLVMGetTypeKind(ptr_ty) != llvm_sys::LLVMTypeKind::LLVMPointerTypeKind || LLVMGetPointerAddressSpace(ptr_ty) != 0 {
            return address_constant(m, addr);
        }
        let value_ty = LLVMGlobalGetValueType(g);
        if function {
            let d = LLVMAddFunction(m, cname.as_ptr(), value_ty);
            LLVMSetFunctionCallConv(d, call_conv(g));
            d
        } else {
            let d = LLVMAddGlobal(m, value_ty, cname.as_ptr());
            // What a variable promises of its memory (an alias may point into the middle
            // of one: it promises nothing).
            if !LLVMIsAGlobalVariable(g).is_null() {
                LLVMSetAlignment(d, LLVMGetAlignment(g));
                LLVMSetGlobalConstant(d, LLVMIsGlobalConstant(g));
            }
            d
        }
    }
}

/// Replaces every use of `g` (at run-time address `addr`) by its bound declaration.
fn rebind(m: LLVMModuleRef, g: LLVMValueRef, addr: u64, function: bool) {
    let d = bound_value(m, g, addr, function);
    // SAFETY: `g` is live; `d` is a pointer in the same address space.
    unsafe { LLVMReplaceAllUsesWith(g, d) };
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
    // SAFETY: `m` is live; an empty string clears its module-level assembly.
    unsafe { LLVMSetModuleInlineAsm2(m, c"".as_ptr(), 0) };
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
                // An alias's value type tells whether it stands for a function.
                // SAFETY: `a` is live.
                let is_fn = unsafe { LLVMGetTypeKind(LLVMGlobalGetValueType(a)) == llvm_sys::LLVMTypeKind::LLVMFunctionTypeKind };
                rebind(m, a, addr, is_fn);
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
            // References to `f` now mean the original function.
            rebind(m, f, addr, true);
            // SAFETY: `f` is live.
            unsafe {
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
        if ir::is_llvm_reserved(&name) || kept.contains(&f) || personalities.contains(&f) || name.starts_with(ABS_PREFIX) {
            continue;
        }
        if absent_weak(f, &name, symbols) {
            continue;
        }
        replace_or_drop(m, f, &name, addr_of(&name), true)?;
    }
    for g in ir::global_vars(m) {
        let name = ir::name(g);
        if name == "drti.dead" || name.starts_with(ABS_PREFIX) {
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
        if absent_weak(g, &name, symbols) {
            continue;
        }
        replace_or_drop(m, g, &name, addr_of(&name), false)?;
    }
    Ok(())
}

/// A weak declaration the program resolved to nothing (address 0 in the table): its uses
/// become null, as in the original, and it is deleted. True if `g` was one.
fn absent_weak(g: LLVMValueRef, name: &str, symbols: &HashMap<String, u64>) -> bool {
    // SAFETY: `g` is a live global; once its uses are null it has none and is deleted.
    unsafe {
        let weak = LLVMGetLinkage(g) == llvm_sys::LLVMLinkage::LLVMExternalWeakLinkage;
        if !(weak && ir::is_declaration(g) && symbols.get(name) == Some(&0)) {
            return false;
        }
        LLVMReplaceAllUsesWith(g, LLVMConstNull(LLVMTypeOf(g)));
        if LLVMIsAFunction(g).is_null() {
            LLVMDeleteGlobal(g);
        } else {
            LLVMDeleteFunction(g);
        }
        true
    }
}

/// Replaces a global by its address and deletes it; unused ones are deleted; external
/// declarations without an address stay for name resolution.
fn replace_or_drop(m: LLVMModuleRef, g: LLVMValueRef, name: &str, addr: Option<u64>, function: bool) -> Result<(), String> {
    match addr {
        Some(a) => rebind(m, g, a, function),
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
