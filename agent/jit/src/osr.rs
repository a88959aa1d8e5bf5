//! OSR continuations (issue 13): instead of F+, a request may ask for the continuation Fc
//! of one of F's OSR points, the function a running activation of F's profiled twin calls
//! at the start of a loop header H with the values live there, and whose result it
//! returns as F's. Fc is F's clean body entered at H: a new entry block passes each live
//! argument or instruction of F as a parameter (a PHI of H gets it on the new edge; any
//! other value replaces the original, or joins it through a stack slot when the new entry
//! can reach the original definition again, see `osr.cpp`), and the blocks H cannot reach
//! are gone. Then the usual F+ steps run on Fc: guards at the requested sites that are
//! still there (a site keeps the ordinal it has in F), inlining, O2, code generation.
//!
//! The point a request names is F's own IR's: header = index of H in F's block list,
//! live values in the encoding of `jit_abi::OSR_LIVE_ARG`. The request is refused (a
//! rejection, not an error) when it is not one of `drti_llvm_ir::osr::osr_points(F)`
//! recomputed on the clean F ([`check_point`]), or names a live value that cannot be a
//! parameter.

// Raw LLVM handles passed in come from live modules of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use bitcode_embed::jit_abi::OSR_LIVE_ARG;
use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use llvm_sys::LLVMTypeKind;

/// Why no continuation was built.
#[derive(Debug)]
pub enum OsrError {
    /// The request does not describe a point F can be continued from.
    Rejected(String),
    /// Building it failed.
    Error(String),
}

/// A built continuation and what became of F's indirect calls.
pub struct Continuation {
    /// Fc, in F's module (F itself is gone).
    pub function: LLVMValueRef,
    /// F's indirect calls by ordinal ([`ir::indirect_calls`] of F): the call in Fc, or
    /// None where Fc cannot reach it any more.
    pub calls: Vec<Option<LLVMValueRef>>,
}

/// A live value as the request encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// F's parameter `i`.
    Arg(u32),
    /// F's instruction `j`, counted over every block in order.
    Inst(u32),
}

impl Live {
    /// The request's word `w` as a live value.
    pub fn decode(w: u32) -> Live {
        if w & OSR_LIVE_ARG != 0 {
            Live::Arg(w & !OSR_LIVE_ARG)
        } else {
            Live::Inst(w)
        }
    }
}

/// Checks that (`header`, `live`) is one of the OSR points of `f` (clean F, as drti-cc saw
/// it) by the shared rule (`drti_llvm_ir::osr`): the same header, the same live values in
/// the same order. Anything else would hand the continuation values that are not the ones
/// its body expects.
pub fn check_point(f: LLVMValueRef, label: &str, header: u32, live: &[u32]) -> Result<(), OsrError> {
    use drti_llvm_ir::osr;
    if let Some(why) = osr::osr_blocker(f) {
        return Err(OsrError::Rejected(format!("{label} has no OSR points: {why}")));
    }
    let points = osr::osr_points(f);
    let p = points.iter().find(|p| p.header == header).ok_or_else(|| {
        let headers: Vec<u32> = points.iter().map(|p| p.header).collect();
        OsrError::Rejected(format!("block {header} of {label} is not an OSR point (its points' headers: {headers:?})"))
    })?;
    let want: Vec<u32> = p.live.iter().map(|r| r.encode()).collect();
    if want != live {
        let show = |w: &[u32]| w.iter().map(|&x| format!("{:?}", Live::decode(x))).collect::<Vec<_>>().join(", ");
        return Err(OsrError::Rejected(format!("the OSR point at block {header} of {label} has live values [{}], the request names [{}]", show(&want), show(live))));
    }
    Ok(())
}

/// Why a value of type `ty` cannot be a parameter of Fc, if it cannot.
fn unpassable(ty: LLVMTypeRef) -> Option<&'static str> {
    // SAFETY: `ty` is a live type.
    match unsafe { LLVMGetTypeKind(ty) } {
        LLVMTypeKind::LLVMVoidTypeKind => Some("void"),
        LLVMTypeKind::LLVMLabelTypeKind => Some("a label"),
        LLVMTypeKind::LLVMMetadataTypeKind => Some("metadata"),
        LLVMTypeKind::LLVMTokenTypeKind => Some("a token"),
        LLVMTypeKind::LLVMFunctionTypeKind => Some("a function type"),
        LLVMTypeKind::LLVMX86_AMXTypeKind => Some("an AMX tile"),
        LLVMTypeKind::LLVMTargetExtTypeKind => Some("a target extension type"),
        _ => None,
    }
}

/// The blocks of `f`, in order.
fn blocks(f: LLVMValueRef) -> Vec<LLVMBasicBlockRef> {
    let mut out = Vec::new();
    // SAFETY: `f` is a live function; LLVM's iterators return null at the end.
    unsafe {
        let mut b = LLVMGetFirstBasicBlock(f);
        while !b.is_null() {
            out.push(b);
            b = LLVMGetNextBasicBlock(b);
        }
    }
    out
}

/// The values of `f` that `live` names, after checking each can be a parameter.
fn resolve(f: LLVMValueRef, label: &str, live: &[u32]) -> Result<Vec<LLVMValueRef>, OsrError> {
    let insts = ir::instructions(f);
    // SAFETY: `f` is a live function.
    let n_args = unsafe { LLVMCountParams(f) };
    let mut out = Vec::with_capacity(live.len());
    for (k, &w) in live.iter().enumerate() {
        if live[..k].contains(&w) {
            return Err(OsrError::Rejected(format!("OSR live value {:?} is named twice", Live::decode(w))));
        }
        let v = match Live::decode(w) {
            // SAFETY: `i` is below F's parameter count.
            Live::Arg(i) if i < n_args => unsafe { LLVMGetParam(f, i) },
            Live::Inst(j) if (j as usize) < insts.len() => insts[j as usize],
            l => return Err(OsrError::Rejected(format!("OSR live value {l:?} is not in {label}"))),
        };
        // SAFETY: `v` is a live value.
        if let Some(what) = unpassable(unsafe { LLVMTypeOf(v) }) {
            return Err(OsrError::Rejected(format!("OSR live value {:?} of {label} is {what}, which cannot be a parameter", Live::decode(w))));
        }
        out.push(v);
    }
    Ok(out)
}

extern "C" {
    /// osr.cpp: moves `f`'s body into continuation `name` (see there).
    fn drti_osr_continuation(
        f: LLVMValueRef,
        header: LLVMBasicBlockRef,
        live: *const LLVMValueRef,
        n_live: usize,
        name: *const std::ffi::c_char,
        calls: *mut LLVMValueRef,
        n_calls: usize,
        err: *mut *mut std::ffi::c_char,
    ) -> LLVMValueRef;
}

/// Turns `f` (a copy of F being compiled, still F's block and instruction structure) into
/// the continuation `name` of the point (`header`, `live`): F is consumed, Fc takes its
/// place in the module. `label` names F in messages.
pub fn build(f: LLVMValueRef, label: &str, header: u32, live: &[u32], name: &str) -> Result<Continuation, OsrError> {
    let bbs = blocks(f);
    let h = *bbs.get(header as usize).ok_or_else(|| OsrError::Rejected(format!("OSR header block {header} is not in {label} ({} blocks)", bbs.len())))?;
    if header == 0 {
        return Err(OsrError::Rejected(format!("OSR header block 0 of {label} is its entry, not a loop header")));
    }
    let values = resolve(f, label, live)?;
    let mut calls = ir::indirect_calls(f);
    let cname = std::ffi::CString::new(name).map_err(|_| OsrError::Error("continuation name has a NUL".into()))?;
    let mut err = std::ptr::null_mut();
    // SAFETY: `f` is a live function with a body, `h` one of its blocks, `values` its
    // arguments and instructions, `calls` its instructions; the C++ side writes `calls`
    // in place and sets `err` only on failure.
    let fc = unsafe { drti_osr_continuation(f, h, values.as_ptr(), values.len(), cname.as_ptr(), calls.as_mut_ptr(), calls.len(), &mut err) };
    if fc.is_null() {
        return Err(OsrError::Error(ir::take_message(err)));
    }
    Ok(Continuation { function: fc, calls: calls.into_iter().map(|c| (!c.is_null()).then_some(c)).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_words_decode_as_the_metadata_encodes_them() {
        assert_eq!(Live::decode(OSR_LIVE_ARG), Live::Arg(0));
        assert_eq!(Live::decode(OSR_LIVE_ARG | 3), Live::Arg(3));
        assert_eq!(Live::decode(0), Live::Inst(0));
        assert_eq!(Live::decode(17), Live::Inst(17));
    }
}
