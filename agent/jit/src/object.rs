//! F+ as a relocatable x86-64 ELF object instead of code linked by ORC in this process:
//! the form a compiler process sends back (issue 12), which the agent links itself
//! (`drti_agent::link`). Globals of the program stay undefined symbols (`bind`'s
//! `__drti_abs_<hex>` names and the process's own symbols), resolved by the linker.

// Raw LLVM handles passed in come from live modules of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use llvm_sys::core::*;
use llvm_sys::prelude::*;
use llvm_sys::target_machine::*;

/// Emits `m` (optimised; consumed) as an ELF object for the host, position independent
/// (small code model, so the linker can place it near the program or reach far symbols
/// through its GOT and stubs).
pub fn emit(m: LLVMModuleRef) -> Result<Vec<u8>, String> {
    crate::orc::initialize_native_target();
    // SAFETY: C API calls on the host triple; strings LLVM returns are freed with
    // LLVMDisposeMessage; the target machine and the module are disposed here; the
    // buffer is copied before it is disposed.
    unsafe {
        let triple = LLVMGetDefaultTargetTriple();
        let mut target = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let result = if LLVMGetTargetFromTriple(triple, &mut target, &mut err) != 0 {
            Err(format!("no target for this host: {}", drti_llvm_ir::ir::take_message(err)))
        } else {
            // CPU and features come from each function's attributes (F's own, as clang set them).
            let tm = LLVMCreateTargetMachine(
                target,
                triple,
                c"".as_ptr(),
                c"".as_ptr(),
                LLVMCodeGenOptLevel::LLVMCodeGenLevelLess,
                // The large code model: the process's addresses (symbols here) are
                // materialised as 64-bit immediates, as the in-process JIT's constants were,
                // not loaded from a GOT at every use; the code is linked anywhere.
                LLVMRelocMode::LLVMRelocStatic,
                LLVMCodeModel::LLVMCodeModelLarge,
            );
            if tm.is_null() {
                Err("cannot create a target machine for this host".into())
            } else {
                if drti_llvm_ir::ir::module_triple(m).is_empty() {
                    LLVMSetTarget(m, triple);
                }
                let layout = LLVMCreateTargetDataLayout(tm);
                llvm_sys::target::LLVMSetModuleDataLayout(m, layout);
                llvm_sys::target::LLVMDisposeTargetData(layout);
                let mut buf = std::ptr::null_mut();
                let mut msg = std::ptr::null_mut();
                let failed = LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMCodeGenFileType::LLVMObjectFile, &mut msg, &mut buf);
                let r = if failed != 0 {
                    Err(format!("code generation failed: {}", drti_llvm_ir::ir::take_message(msg)))
                } else {
                    let bytes = std::slice::from_raw_parts(LLVMGetBufferStart(buf) as *const u8, LLVMGetBufferSize(buf)).to_vec();
                    LLVMDisposeMemoryBuffer(buf);
                    Ok(bytes)
                };
                LLVMDisposeTargetMachine(tm);
                r
            }
        };
        LLVMDisposeMessage(triple);
        LLVMDisposeModule(m);
        result
    }
}
