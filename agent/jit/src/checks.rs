//! What the JIT refuses to compile, because a copy could behave differently from the
//! original: thread-local variables (checked while binding), setjmp-like calls (a copy
//! would return twice into different code), computed goto (`indirectbr`, block addresses
//! that name the original function), variadic functions that read their arguments, and
//! inline assembly a copy cannot reproduce: `asm goto`, assembly that switches sections
//! or defines symbols (data or labels the original's readers know by place or name), and
//! assembly given a global as an operand (its text may reference the symbol
//! PC-relatively, which cannot reach the program from JIT memory). Other inline assembly
//! is compiled like any code.

use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use llvm_sys::LLVMOpcode;

/// True if constant `v` is or contains a global (function, variable, alias).
fn mentions_global(v: LLVMValueRef, depth: u32) -> bool {
    // SAFETY: `v` is a live value; constant operands are only inspected.
    unsafe {
        if !LLVMIsAGlobalValue(v).is_null() {
            return true;
        }
        if depth > 8 || LLVMIsAConstant(v).is_null() {
            return false;
        }
        (0..LLVMGetNumOperands(v).max(0) as u32).any(|i| {
            let op = LLVMGetOperand(v, i);
            !op.is_null() && mentions_global(op, depth + 1)
        })
    }
}

/// `Err(why)` if the inline assembly called by `inst` cannot be copied faithfully.
fn check_asm(name: &str, inst: LLVMValueRef, asm: LLVMValueRef) -> Result<(), String> {
    if let Some(why) = ir::asm_defines_symbols(&ir::inline_asm_text(asm)) {
        return Err(format!("{name} has {why}"));
    }
    let constraints = ir::inline_asm_constraints(asm);
    // SAFETY: `inst` is a live call.
    let n_args = unsafe { LLVMGetNumArgOperands(inst) };
    let in_registers = register_operands(&constraints, n_args as usize);
    for i in 0..n_args {
        // SAFETY: as above, `i` is below the argument count.
        let global = mentions_global(unsafe { LLVMGetOperand(inst, i) }, 0);
        if global && !in_registers.get(i as usize).copied().unwrap_or(false) {
            return Err(format!("{name} has inline assembly with a global as a memory, immediate or symbol operand"));
        }
    }
    Ok(())
}

/// Per call argument of an inline-asm call with `constraints`: true if the operand is
/// only ever passed in a register (its value, an address the JIT'd code computes, is
/// then all the text sees). All false when the constraints cannot be matched to the
/// `n_args` arguments.
fn register_operands(constraints: &str, n_args: usize) -> Vec<bool> {
    // Arguments are, in order, the indirect outputs (`=*m`) and the inputs; direct
    // outputs and clobbers (`~{...}`) have none.
    let per_arg: Vec<bool> = constraints
        .split(',')
        .filter(|c| !c.starts_with('~') && (!c.starts_with('=') || c.starts_with("=*")))
        .map(|c| {
            let code = c.trim_start_matches(['=', '*', '&', '%', '+']);
            let register = |alt: &str| alt.starts_with('{') || (!alt.is_empty() && alt.bytes().all(|b| b"rqQRabcdSDxvlYz0123456789".contains(&b)));
            !c.contains('*') && code.split('|').all(register)
        })
        .collect();
    if per_arg.len() == n_args {
        per_arg
    } else {
        vec![false; n_args]
    }
}

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
                LLVMOpcode::LLVMCallBr => return Err(format!("{name} uses asm goto")),
                LLVMOpcode::LLVMCall | LLVMOpcode::LLVMInvoke => {
                    let callee = LLVMGetCalledValue(inst);
                    if !LLVMIsAInlineAsm(callee).is_null() {
                        check_asm(&name, inst, callee)?;
                        continue;
                    }
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

#[cfg(test)]
mod tests {
    use super::register_operands;

    #[test]
    fn register_operands_follow_the_constraints() {
        assert_eq!(register_operands("=r,r,~{dirflag},~{fpsr},~{flags}", 1), [true]);
        assert_eq!(register_operands("r,~{memory}", 1), [true]);
        assert_eq!(register_operands("=r,m,~{memory}", 1), [false]);
        assert_eq!(register_operands("=*m,r", 2), [false, true]);
        assert_eq!(register_operands("r,i,{ax},0", 4), [true, false, true, true]);
        assert_eq!(register_operands("rm", 1), [false]);
        assert_eq!(register_operands("X", 1), [false]);
        // Constraints that do not match the arguments: nothing is trusted.
        assert_eq!(register_operands("r", 2), [false, false]);
    }
}
