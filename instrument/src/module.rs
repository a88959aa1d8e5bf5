//! Owning handles for an LLVM context and a module parsed from bitcode.

use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;

/// An LLVM context; modules parsed in it must be dropped first.
pub struct Context(LLVMContextRef);

impl Context {
    /// A fresh context.
    pub fn new() -> Context {
        // SAFETY: creating a context has no preconditions.
        Context(unsafe { LLVMContextCreate() })
    }

    /// The raw handle.
    pub fn raw(&self) -> LLVMContextRef {
        self.0
    }

    /// Parses bitcode into a module of this context.
    pub fn parse(&self, bitcode: &[u8], name: &str) -> Result<Module<'_>, String> {
        let cname = std::ffi::CString::new(name).unwrap_or_default();
        // SAFETY: LLVM copies the bytes into its own buffer; the buffer is disposed after
        // parsing (the module does not keep a reference to it with ParseBitcode).
        unsafe {
            let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(bitcode.as_ptr().cast(), bitcode.len(), cname.as_ptr());
            let mut m = std::ptr::null_mut();
            let failed = llvm_sys::bit_reader::LLVMParseBitcodeInContext2(self.0, buf, &mut m);
            LLVMDisposeMemoryBuffer(buf);
            if failed != 0 || m.is_null() {
                return Err(format!("{name}: not valid LLVM 19 bitcode"));
            }
            Ok(Module { raw: m, _ctx: std::marker::PhantomData })
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: every Module borrows the context, so all of them are gone by now.
        unsafe { LLVMContextDispose(self.0) }
    }
}

/// A module owned by Rust, living in a [`Context`].
pub struct Module<'c> {
    raw: LLVMModuleRef,
    _ctx: std::marker::PhantomData<&'c Context>,
}

impl Module<'_> {
    /// The raw handle (valid while `self` lives).
    pub fn raw(&self) -> LLVMModuleRef {
        self.raw
    }

    /// Gives up ownership (for APIs that take the module, like the ORC JIT or the linker).
    pub fn into_raw(self) -> LLVMModuleRef {
        let m = self.raw;
        std::mem::forget(self);
        m
    }

    /// The module as bitcode.
    pub fn bitcode(&self) -> Vec<u8> {
        crate::decorate::module_bitcode(self.raw)
    }

    /// Names of the functions defined in the module.
    pub fn defined_functions(&self) -> Vec<String> {
        ir::functions(self.raw).into_iter().filter(|&f| !ir::is_declaration(f)).map(ir::name).collect()
    }
}

impl Drop for Module<'_> {
    fn drop(&mut self) {
        // SAFETY: the module is owned (not handed over with into_raw) and disposed once.
        unsafe { LLVMDisposeModule(self.raw) }
    }
}

/// Decorates bitcode: returns the decorated bitcode and what was added.
pub fn decorate_bitcode(bitcode: &[u8], opts: &crate::decorate::Options) -> Result<(Vec<u8>, crate::decorate::Stats), String> {
    let ctx = Context::new();
    let m = ctx.parse(bitcode, &opts.source_name)?;
    let stats = crate::decorate::decorate(m.raw(), opts)?;
    Ok((m.bitcode(), stats))
}
