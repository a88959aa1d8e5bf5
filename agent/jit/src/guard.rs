//! Guarded inlining at one call site of F+.
//!
//! The indirect call `r = call FTy %t(args)` becomes `r = call @drti.disp.N(args, %t)`;
//! the dispatcher, always inlined, is
//! ```text
//!   if (%t == T1) return T1.inl(args);   // a copy of T1, always inlined
//!   if (%t == T2) return T2.inl(args);
//!   ...
//!   atomicrmw add misses, 1              // no guard matched: count it (and sample it,
//!                                        // when the site has a sampler: see `probe`)
//!   return %t(args);                     // the original indirect call
//! ```
//! T1.. are the targets' original addresses, so the guard compares exactly what the
//! program would have called. A target given with a slot is compared instead with a
//! monotonic atomic load of the slot (`%t == load atomic i64 *slot`): the agent keeps
//! the target's address there while it may be inlined and zeroes it before the target's
//! code can go away, so a frame that is still inside F+ when a new function is loaded at
//! the same address takes the real call, not the old copy. An `invoke` becomes an invoke of the dispatcher with the
//! same normal and unwind destinations (the inliner turns the inner calls into invokes).
//! Call-site attributes (byval, sret, zeroext, ...) and the calling convention are copied
//! to every inner call.

// Raw LLVM handles passed in come from live modules and sessions of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::bind::address_constant;
use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;

/// A guarded target: original address and the function holding its inlinable copy.
pub struct Guarded {
    /// Run-time address compared against.
    pub address: u64,
    /// 0, or the address of an 8-byte word holding the address to compare against.
    pub slot: u64,
    /// The copy (internal, always inlined).
    pub body: LLVMValueRef,
}

/// Copies the call-site attributes of `from` to `to` (same argument list).
fn copy_call_attrs(from: LLVMValueRef, to: LLVMValueRef, n_args: u32) {
    // SAFETY: both are live calls with `n_args` arguments; attribute refs belong to the
    // same context and are re-added, not moved.
    unsafe {
        for idx in std::iter::once(llvm_sys::LLVMAttributeReturnIndex).chain(1..=n_args) {
            let n = LLVMGetCallSiteAttributeCount(from, idx);
            if n == 0 {
                continue;
            }
            let mut attrs = vec![std::ptr::null_mut(); n as usize];
            LLVMGetCallSiteAttributes(from, idx, attrs.as_mut_ptr());
            for a in attrs {
                LLVMAddCallSiteAttribute(to, idx, a);
            }
        }
        LLVMSetInstructionCallConv(to, LLVMGetInstructionCallConv(from));
    }
}

/// Where a site's misses are sampled: the sampler, the owner module's runtime area and
/// the site's index in that module.
pub type MissSampling<'a> = Option<(&'a crate::probe::Sampler, u64, u32)>;

/// Rewrites `call` (an indirect call in F+) to go through a guard chain over `targets`.
pub fn guard_site(m: LLVMModuleRef, call: LLVMValueRef, targets: &[Guarded], misses: u64, sample: MissSampling, n: usize) {
    // SAFETY: `call` is a live call/invoke of a function in `m`; every value and type is
    // from `m`'s context; builders are disposed before returning; the old call is erased
    // only after all its uses were redirected to the new one.
    unsafe {
        let ctx = LLVMGetModuleContext(m);
        let fty = LLVMGetCalledFunctionType(call);
        let ret_ty = LLVMGetReturnType(fty);
        let is_void = LLVMGetTypeKind(ret_ty) == llvm_sys::LLVMTypeKind::LLVMVoidTypeKind;
        let n_args = LLVMGetNumArgOperands(call);
        let args: Vec<LLVMValueRef> = (0..n_args).map(|i| LLVMGetOperand(call, i)).collect();
        let ptr_ty = LLVMPointerTypeInContext(ctx, 0);
        let mut params: Vec<LLVMTypeRef> = args.iter().map(|&a| LLVMTypeOf(a)).collect();
        params.push(ptr_ty);
        let dty = LLVMFunctionType(ret_ty, params.as_mut_ptr(), params.len() as u32, 0);
        let dname = std::ffi::CString::new(format!("drti.disp.{n}")).unwrap();
        let disp = LLVMAddFunction(m, dname.as_ptr(), dty);
        LLVMSetLinkage(disp, llvm_sys::LLVMLinkage::LLVMInternalLinkage);
        ir::add_fn_attr(disp, "alwaysinline");
        // The dispatcher runs inside F+: it inherits F's target attributes.
        let caller = LLVMGetBasicBlockParent(LLVMGetInstructionParent(call));
        for key in ["target-cpu", "target-features", "frame-pointer"] {
            if let Some(v) = ir::string_fn_attr(caller, key) {
                ir::add_string_fn_attr(disp, key, &v);
            }
        }
        let dargs: Vec<LLVMValueRef> = (0..n_args).map(|i| LLVMGetParam(disp, i)).collect();
        let target = LLVMGetParam(disp, n_args);
        let b = LLVMCreateBuilderInContext(ctx);
        let entry = LLVMAppendBasicBlockInContext(ctx, disp, c"entry".as_ptr());
        LLVMPositionBuilderAtEnd(b, entry);
        let emit_call = |b: LLVMBuilderRef, callee: LLVMValueRef| {
            let mut a = dargs.clone();
            let c = LLVMBuildCall2(b, fty, callee, a.as_mut_ptr(), a.len() as u32, c"".as_ptr());
            copy_call_attrs(call, c, n_args);
            if is_void {
                LLVMBuildRetVoid(b);
            } else {
                LLVMBuildRet(b, c);
            }
        };
        for t in targets {
            let hit = LLVMAppendBasicBlockInContext(ctx, disp, c"hit".as_ptr());
            let next = LLVMAppendBasicBlockInContext(ctx, disp, c"next".as_ptr());
            let eq = if t.slot != 0 {
                let i64t = LLVMInt64TypeInContext(ctx);
                let cur = LLVMBuildLoad2(b, i64t, address_constant(m, t.slot), c"slot".as_ptr());
                LLVMSetOrdering(cur, llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic);
                LLVMSetAlignment(cur, 8);
                let t_int = LLVMBuildPtrToInt(b, target, i64t, c"".as_ptr());
                let same = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntEQ, t_int, cur, c"".as_ptr());
                // A cleared slot matches nothing, not even a null target.
                let live = LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntNE, cur, LLVMConstInt(i64t, 0, 0), c"".as_ptr());
                LLVMBuildAnd(b, same, live, c"".as_ptr())
            } else {
                LLVMBuildICmp(b, llvm_sys::LLVMIntPredicate::LLVMIntEQ, target, address_constant(m, t.address), c"".as_ptr())
            };
            LLVMBuildCondBr(b, eq, hit, next);
            LLVMPositionBuilderAtEnd(b, hit);
            emit_call(b, t.body);
            LLVMPositionBuilderAtEnd(b, next);
        }
        if let Some((sampler, area, site)) = sample {
            crate::probe::build_probe(m, b, sampler, area, site, target);
        }
        let i64t = LLVMInt64TypeInContext(ctx);
        LLVMBuildAtomicRMW(
            b,
            llvm_sys::LLVMAtomicRMWBinOp::LLVMAtomicRMWBinOpAdd,
            address_constant(m, misses),
            LLVMConstInt(i64t, 1, 0),
            llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingMonotonic,
            0,
        );
        emit_call(b, target);

        // Replace the site.
        LLVMPositionBuilderBefore(b, call);
        let mut cargs = args.clone();
        cargs.push(LLVMGetCalledValue(call));
        let new = if ir::is_invoke(call) {
            LLVMBuildInvoke2(b, dty, disp, cargs.as_mut_ptr(), cargs.len() as u32, LLVMGetNormalDest(call), LLVMGetUnwindDest(call), c"".as_ptr())
        } else {
            LLVMBuildCall2(b, dty, disp, cargs.as_mut_ptr(), cargs.len() as u32, c"".as_ptr())
        };
        llvm_sys::debuginfo::LLVMInstructionSetDebugLoc(new, llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(call));
        if !is_void {
            LLVMReplaceAllUsesWith(call, new);
        }
        LLVMInstructionEraseFromParent(call);
        LLVMDisposeBuilder(b);
    }
}
