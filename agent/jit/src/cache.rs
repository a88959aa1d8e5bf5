//! Each module's bitcode is loaded once per process, lazily: a compile materialises only
//! the bodies it copies (F, the targets) and extracts them into a small module of their
//! own ([`extract`]), so parsing, binding and optimising cost what F+ needs, not what its
//! module holds.
//!
//! The loaded modules live in one thread-safe context shared by every compile (modules
//! handed to ORC must be in the context they were made in). Modules are found by their
//! bytes (length, then a full comparison), so a module unloaded and loaded again, or the
//! same library mapped twice, reuses its parse. Least recently used modules are dropped
//! once the cached bitcode passes [`CAP_BYTES`].

use llvm_sys::core::*;
use llvm_sys::orc2::*;
use llvm_sys::prelude::*;

/// Bitcode kept loaded before the least recently used modules are dropped.
pub const CAP_BYTES: usize = 256 << 20;

extern "C" {
    fn drti_materialize(f: LLVMValueRef, err: *mut *mut libc::c_char) -> i32;
    fn drti_materialize_metadata(m: LLVMModuleRef, err: *mut *mut libc::c_char) -> i32;
    fn drti_is_materializable(f: LLVMValueRef) -> i32;
    fn drti_extract(src: LLVMModuleRef, fns: *const LLVMValueRef, n: u32, err: *mut *mut libc::c_char) -> LLVMModuleRef;
}

/// Loads the body of `f` (a function of a lazily loaded module) if it is not loaded yet.
///
/// # Safety
/// `f` must be a live function of a module of this cache.
pub unsafe fn materialize(f: LLVMValueRef) -> Result<(), String> {
    let mut err = std::ptr::null_mut();
    // SAFETY: `f` is a live function of a module of this cache; `err` receives a message
    // we own on failure.
    if unsafe { drti_materialize(f, &mut err) } != 0 {
        return Err(format!("loading a function's bitcode: {}", drti_llvm_ir::ir::take_message(err)));
    }
    Ok(())
}

/// True while `f` (a function of a lazily loaded module) has a body not loaded yet.
///
/// # Safety
/// `f` must be a live function.
pub unsafe fn is_materializable(f: LLVMValueRef) -> bool {
    // SAFETY: `f` is a live function.
    unsafe { drti_is_materializable(f) != 0 }
}

/// A new module in `src`'s context with copies of `fns` (materialised functions of
/// `src`) under their own names, declarations of every global they refer to, and
/// private copies of the local unnamed constants they read. The caller owns it.
///
/// # Safety
/// `src` must be a live module and `fns` live, materialised functions of it.
pub unsafe fn extract(src: LLVMModuleRef, fns: &[LLVMValueRef]) -> Result<LLVMModuleRef, String> {
    let mut err = std::ptr::null_mut();
    // SAFETY: `src` is a live module holding `fns`; the new module is returned to the
    // caller, or null with a message we own.
    let m = unsafe { drti_extract(src, fns.as_ptr(), fns.len() as u32, &mut err) };
    if m.is_null() {
        return Err(drti_llvm_ir::ir::take_message(err));
    }
    Ok(m)
}

/// One loaded module.
struct Entry {
    module: LLVMModuleRef,
    /// The bitcode the module was loaded from (owned by the module's reader).
    start: *const u8,
    len: usize,
    last_used: u64,
}

/// The shared context and the modules loaded in it.
pub struct Cache {
    tsc: LLVMOrcThreadSafeContextRef,
    ctx: LLVMContextRef,
    entries: Vec<Entry>,
    clock: u64,
}

// SAFETY: the cache is only used under the mutex that owns it, by one thread at a time;
// LLVM contexts and modules may move between threads when not used concurrently.
unsafe impl Send for Cache {}

impl Cache {
    /// A cache with a fresh thread-safe context whose diagnostics go to the JIT's log.
    pub fn new() -> Cache {
        // SAFETY: creating a context; it lives until `Drop`.
        let tsc = unsafe { LLVMOrcCreateNewThreadSafeContext() };
        // SAFETY: `tsc` is live.
        let ctx = unsafe { LLVMOrcThreadSafeContextGetContext(tsc) };
        crate::report::attach(ctx);
        Cache { tsc, ctx, entries: Vec::new(), clock: 0 }
    }

    /// The thread-safe context of every module of the cache.
    pub fn tsc(&self) -> LLVMOrcThreadSafeContextRef {
        self.tsc
    }

    /// Starts a compile: modules used from now on are not dropped until the next one.
    pub fn begin(&mut self) {
        self.clock += 1;
    }

    /// The lazily loaded module of `bitcode`, loading it on first use.
    pub fn module(&mut self, bitcode: &[u8]) -> Result<LLVMModuleRef, String> {
        let clock = self.clock;
        // SAFETY: an entry's bytes stay alive (owned by its module's reader) while it is
        // cached.
        let found = self.entries.iter_mut().find(|e| e.len == bitcode.len() && unsafe { std::slice::from_raw_parts(e.start, e.len) } == bitcode);
        if let Some(e) = found {
            e.last_used = clock;
            return Ok(e.module);
        }
        self.evict(bitcode.len());
        // SAFETY: LLVM copies the bytes; the lazy reader takes the buffer on success and
        // keeps it as long as the module lives; on failure the buffer is still ours.
        let (module, start) = unsafe {
            let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(bitcode.as_ptr().cast(), bitcode.len(), c"drti".as_ptr());
            let start = LLVMGetBufferStart(buf) as *const u8;
            let mut m = std::ptr::null_mut();
            if llvm_sys::bit_reader::LLVMGetBitcodeModuleInContext2(self.ctx, buf, &mut m) != 0 || m.is_null() {
                LLVMDisposeMemoryBuffer(buf);
                return Err("embedded bitcode does not parse".into());
            }
            (m, start)
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: `module` is live; a message on failure is ours.
        if unsafe { drti_materialize_metadata(module, &mut err) } != 0 {
            // SAFETY: the module is ours and unused.
            unsafe { LLVMDisposeModule(module) };
            return Err(format!("embedded bitcode: {}", drti_llvm_ir::ir::take_message(err)));
        }
        self.entries.push(Entry { module, start, len: bitcode.len(), last_used: clock });
        Ok(module)
    }

    /// Drops least recently used modules (not used by the current compile) until
    /// `incoming` more bytes fit under the cap.
    fn evict(&mut self, incoming: usize) {
        loop {
            let total: usize = self.entries.iter().map(|e| e.len).sum::<usize>() + incoming;
            if total <= CAP_BYTES {
                return;
            }
            let Some(i) = self.entries.iter().enumerate().filter(|(_, e)| e.last_used < self.clock).min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else {
                return;
            };
            let e = self.entries.swap_remove(i);
            // SAFETY: extracted modules do not refer to cached ones (they hold their own
            // declarations), so the module can go.
            unsafe { LLVMDisposeModule(e.module) };
        }
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // SAFETY: the modules are ours; then our reference to the context goes (ORC keeps
        // its own while it holds modules of it).
        unsafe {
            for e in self.entries.drain(..) {
                LLVMDisposeModule(e.module);
            }
            LLVMOrcDisposeThreadSafeContext(self.tsc);
        }
    }
}
