//! Sampling at the unguarded indirect calls of F+ (tiered profiling: F+ keeps reporting
//! the edges it did not specialise, so an edge that gets hot later is still found).
//!
//! Before such a call `%t(args)`, F+ calls `@drti.probe(area, site, %t)`, always inlined:
//! ```text
//!   c = load i32, ptr addrspace(257) OFFSET   ; the agent's thread-local countdown (%fs)
//!   c = c - 1; store c
//!   if c < 0: call @drti.sample(area, site, %t)   ; cold, not inlined
//! ```
//! The countdown is the agent's own (static TLS, same offset from the thread pointer in
//! every thread), not the decorated object's, which JIT code cannot name. When the agent
//! could not establish a fixed offset, the probe calls the agent's counting function at
//! every call instead (slower, same samples). `area` and `site` are the owner's: a site
//! inside an inlined copy of G reports G's site in G's module.

// Raw LLVM handles passed in come from live modules of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::bind::address_constant;
use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;

/// How F+ reaches the agent's sampler.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    /// `void(ptr area, i32 site, ptr target)`: takes one sample.
    pub sample_fn: u64,
    /// `void(ptr area, i32 site, ptr target)`: counts one call, samples when due.
    pub count_fn: u64,
    /// Offset of the thread's `i32` countdown from the thread pointer, if fixed.
    pub countdown_offset: Option<i64>,
}

/// x86-64 address space of `%fs`-relative accesses.
const FS: u32 = 257;

/// `name` in `m`, or a new internal function of type `ty` built by `body`.
fn helper(m: LLVMModuleRef, name: &std::ffi::CStr, ty: LLVMTypeRef, body: impl FnOnce(LLVMValueRef)) -> LLVMValueRef {
    // SAFETY: `m` is live; the new function is given a body by `body` before use.
    unsafe {
        let f = LLVMGetNamedFunction(m, name.as_ptr());
        if !f.is_null() {
            return f;
        }
        let f = LLVMAddFunction(m, name.as_ptr(), ty);
        LLVMSetLinkage(f, llvm_sys::LLVMLinkage::LLVMInternalLinkage);
        body(f);
        f
    }
}

/// The probe function of `m` (made on first use): `void(ptr area, i32 site, ptr target)`,
/// always inlined.
pub fn probe_fn(m: LLVMModuleRef, s: &Sampler) -> LLVMValueRef {
    // SAFETY: every value and type is created in `m`'s context; builders are disposed.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        let ptr = LLVMPointerTypeInContext(ctx, 0);
        let i32t = LLVMInt32TypeInContext(ctx);
        let i64t = LLVMInt64TypeInContext(ctx);
        let void = LLVMVoidTypeInContext(ctx);
        let mut params = [ptr, i32t, ptr];
        let ty = LLVMFunctionType(void, params.as_mut_ptr(), 3, 0);
        // One call of the agent's function `addr` with the helper's own arguments.
        let forward = |f: LLVMValueRef, addr: u64, b: LLVMBuilderRef| {
            let mut args: Vec<LLVMValueRef> = (0..3).map(|i| LLVMGetParam(f, i)).collect();
            LLVMBuildCall2(b, ty, address_constant(m, addr), args.as_mut_ptr(), 3, c"".as_ptr());
        };
        let sample = helper(m, c"drti.sample", ty, |f| {
            for a in ["cold", "noinline", "nounwind"] {
                ir::add_fn_attr(f, a);
            }
            let b = LLVMCreateBuilderInContext(ctx);
            LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, f, c"entry".as_ptr()));
            forward(f, s.sample_fn, b);
            LLVMBuildRetVoid(b);
            LLVMDisposeBuilder(b);
        });
        helper(m, c"drti.probe", ty, |f| {
            ir::add_fn_attr(f, "alwaysinline");
            ir::add_fn_attr(f, "nounwind");
            let b = LLVMCreateBuilderInContext(ctx);
            let entry = LLVMAppendBasicBlockInContext(ctx, f, c"entry".as_ptr());
            LLVMPositionBuilderAtEnd(b, entry);
            match s.countdown_offset {
                Some(off) => {
                    let slot = LLVMConstIntToPtr(LLVMConstInt(i64t, off as u64, 1), LLVMPointerTypeInContext(ctx, FS));
                    let c = LLVMBuildLoad2(b, i32t, slot, c"countdown".as_ptr());
                    let next = LLVMBuildSub(b, c, LLVMConstInt(i32t, 1, 0), c"".as_ptr());
                    LLVMBuildStore(b, next, slot);
                    let due = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntSLT, next, LLVMConstInt(i32t, 0, 0), c"".as_ptr());
                    let take = LLVMAppendBasicBlockInContext(ctx, f, c"sample".as_ptr());
                    let done = LLVMAppendBasicBlockInContext(ctx, f, c"done".as_ptr());
                    LLVMBuildCondBr(b, due, take, done);
                    LLVMPositionBuilderAtEnd(b, take);
                    let mut args: Vec<LLVMValueRef> = (0..3).map(|i| LLVMGetParam(f, i)).collect();
                    LLVMBuildCall2(b, ty, sample, args.as_mut_ptr(), 3, c"".as_ptr());
                    LLVMBuildBr(b, done);
                    LLVMPositionBuilderAtEnd(b, done);
                }
                None => forward(f, s.count_fn, b),
            }
            LLVMBuildRetVoid(b);
            LLVMDisposeBuilder(b);
        })
    }
}

/// Makes the indirect call `call` (in a function of `m`) sample its target as site
/// `site` of the module whose runtime area is `area`.
pub fn probe_site(m: LLVMModuleRef, call: LLVMValueRef, s: &Sampler, area: u64, site: u32) {
    // SAFETY: `call` is a live call/invoke of a function in `m`; the new call goes right
    // before it and takes its called value, which dominates it.
    unsafe {
        let b = LLVMCreateBuilderInContext(LLVMGetModuleContext(m));
        LLVMPositionBuilderBefore(b, call);
        let c = build_probe(m, b, s, area, site, ir::called_value(call));
        llvm_sys::debuginfo::LLVMInstructionSetDebugLoc(c, llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(call));
        LLVMDisposeBuilder(b);
    }
}

/// Emits, at `b`'s position in a function of `m`, the probe of `target` as site `site` of
/// the module whose runtime area is `area`; returns the call.
pub fn build_probe(m: LLVMModuleRef, b: LLVMBuilderRef, s: &Sampler, area: u64, site: u32, target: LLVMValueRef) -> LLVMValueRef {
    let probe = probe_fn(m, s);
    // SAFETY: `b` is positioned in a function of `m`; `target` is a pointer value there.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        let mut args = [address_constant(m, area), LLVMConstInt(LLVMInt32TypeInContext(ctx), site as u64, 0), target];
        LLVMBuildCall2(b, LLVMGlobalGetValueType(probe), probe, args.as_mut_ptr(), 3, c"".as_ptr())
    }
}
