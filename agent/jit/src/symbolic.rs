//! Process-independent objects: every address of this process that the compiled code
//! holds (the program's globals bound by `bind`, guard targets and slots, miss counters,
//! runtime areas, the agent's sampler and countdown offset) becomes a reference to a
//! symbol named after its place in the request (`bitcode_embed::symbols`). The agent's linker resolves those names from the request it sent, so the same
//! object serves any process running the same modules with the same plan, whatever the
//! load addresses: what a compiler process and a persistent cache need.

// Raw LLVM handles passed in come from live modules of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;

/// Replaces, in `m` (before optimisation), every `__drti_abs_<hex>` declaration and every
/// `inttoptr` of a constant address named in `by_addr` by the named symbol. Fails if an
/// absolute name is left whose address the request does not name.
pub fn rewrite(m: LLVMModuleRef, by_addr: &HashMap<u64, String>) -> Result<(), String> {
    // Declarations first, so the constants below reuse them (one name, one value).
    for g in ir::functions(m).into_iter().chain(ir::global_vars(m)) {
        let Some(addr) = crate::bind::parse_abs_name(&ir::name(g)) else { continue };
        let name = by_addr.get(&addr).ok_or_else(|| format!("address {addr:#x} has no name in the request"))?;
        ir::set_name(g, name);
    }
    // SAFETY: `m` is live; operands are replaced by constants of the same type, built in
    // `m`'s context; new declarations are external i8 globals of `m`.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        let i64t = LLVMInt64TypeInContext(ctx);
        for f in ir::functions(m) {
            for inst in ir::instructions(f) {
                for i in 0..LLVMGetNumOperands(inst).max(0) as u32 {
                    let v = LLVMGetOperand(inst, i);
                    if v.is_null() || LLVMIsAConstantExpr(v).is_null() || LLVMGetConstOpcode(v) != llvm_sys::LLVMOpcode::LLVMIntToPtr {
                        continue;
                    }
                    let c = LLVMGetOperand(v, 0);
                    if LLVMIsAConstantInt(c).is_null() {
                        continue;
                    }
                    let Some(name) = by_addr.get(&LLVMConstIntGetZExtValue(c)) else { continue };
                    let sym = declaration(m, name);
                    let repl = LLVMConstIntToPtr(LLVMConstPtrToInt(sym, i64t), LLVMTypeOf(v));
                    LLVMSetOperand(inst, i, repl);
                }
            }
        }
    }
    Ok(())
}

/// The global named `name` in `m`, or a new external `i8` declaration of it.
fn declaration(m: LLVMModuleRef, name: &str) -> LLVMValueRef {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: `m` is live; the declaration is created in its context.
    unsafe {
        let f = LLVMGetNamedFunction(m, c.as_ptr());
        if !f.is_null() {
            return f;
        }
        let g = LLVMGetNamedGlobal(m, c.as_ptr());
        if !g.is_null() {
            return g;
        }
        LLVMAddGlobal(m, LLVMInt8TypeInContext(LLVMGetModuleContext(m)), c.as_ptr())
    }
}
