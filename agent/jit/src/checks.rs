//! What the JIT refuses to compile, because a copy could behave differently from the
//! original: thread-local variables (checked while binding), setjmp-like calls (a copy
//! would return twice into different code), computed goto (`indirectbr`, block addresses
//! that name the original function), and variadic functions that read their arguments.

use drti_instrument::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use llvm_sys::LLVMOpcode;

const RETURNS_TWICE: &[&str] = &["setjmp", "_setjmp", "sigsetjmp", "__sigsetjmp", "savectx", "vfork", "getcontext"];

/// `Err(reason)` if function `f` must not be compiled by the JIT.
pub fn check(f: LLVMValueRef) -> Result<(), String> {
    let name = ir::name(f);
    if ir::has_fn_attr(f, "returns_twice") {
        return Err(format!("{name} returns twice"));
    }
    for inst in ir::instructions(f) {
        // SAFETY: `inst` is a live instruction of `f`; operands are only inspected.
        unsafe {
            match LLVMGetInstructionOpcode(inst) {
                LLVMOpcode::LLVMIndirectBr => return Err(format!("{name} uses computed goto")),
                LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                    let callee = LLVMGetCalledValue(inst);
                    if !LLVMIsAFunction(callee).is_null() {
                        let cname = ir::name(callee);
                        if RETURNS_TWICE.contains(&cname.as_str()) || ir::has_fn_attr(callee, "returns_twice") {
                            return Err(format!("{name} calls {cname} (setjmp-like)"));
                        }
                        if cname == "llvm.va_start" || cname.starts_with("llvm.va_start.") {
                            return Err(format!("{name} is variadic (va_start)"));
                        }
                        if cname == "llvm.localescape" {
                            return Err(format!("{name} uses llvm.localescape"));
                        }
                    }
                    if LLVMGetNumOperandBundles(inst) > 0 && ir::is_indirect_call(inst) {
                        return Err(format!("{name} has a call with operand bundles"));
                    }
                }
                _ => {}
            }
            for i in 0..LLVMGetNumOperands(inst).max(0) as u32 {
                let op = LLVMGetOperand(inst, i);
                if !op.is_null() && !LLVMIsABlockAddress(op).is_null() {
                    return Err(format!("{name} takes block addresses"));
                }
            }
        }
    }
    Ok(())
}
