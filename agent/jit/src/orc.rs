//! The ORC LLJIT session (llvm-sys `orc2`; inkwell has no LLJIT).
//!
//! One LLJIT per process, created on the first compile. Objects are linked by RTDyld with
//! LLVM's section memory manager (pages are mapped writable, filled, then made
//! executable: never both) and LLVM's GDB registration listener, so debuggers see JIT'd
//! functions by name. An object transform reads each object's symbol table before it is
//! linked, which gives the machine-code size of F+ for the dump and the perf map. Each
//! compile gets its own resource tracker, so its code can be released. A definition
//! generator gives every `__drti_abs_<hex>` name `bind` uses the absolute address it
//! spells, the first time a compile needs it; the definition stays for later compiles.
//! Code is generated for the JIT's default code model (large on x86-64), so references
//! to the program's functions and data are 64-bit absolute, whatever the distance.

// Raw LLVM handles passed in come from live modules and sessions of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use llvm_sys::error::*;
use llvm_sys::orc2::ee::*;
use llvm_sys::orc2::lljit::*;
use llvm_sys::orc2::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// The process's JIT.
pub struct Session {
    jit: LLVMOrcLLJITRef,
    dylib: LLVMOrcJITDylibRef,
}

// SAFETY: the LLJIT is only used under the SESSION mutex.
unsafe impl Send for Session {}

/// Function sizes seen in linked objects, by symbol name.
static SIZES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn error_text(err: LLVMErrorRef) -> String {
    // SAFETY: `err` is a live error, consumed by LLVMGetErrorMessage; the message is freed.
    unsafe { drti_llvm_ir::ir::take_message(LLVMGetErrorMessage(err)) }
}

extern "C" fn object_linking_layer(_ctx: *mut libc::c_void, es: LLVMOrcExecutionSessionRef, _triple: *const libc::c_char) -> LLVMOrcObjectLayerRef {
    // SAFETY: called by LLJIT with its execution session; the listener is LLVM's own
    // singleton and outlives the layer.
    unsafe {
        let layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
        LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, llvm_sys::execution_engine::LLVMCreateGDBRegistrationListener());
        layer
    }
}

/// Defines the `__drti_abs_<hex>` names of a lookup as absolute symbols.
extern "C" fn define_absolute(
    _gen: LLVMOrcDefinitionGeneratorRef,
    _ctx: *mut libc::c_void,
    _state: *mut LLVMOrcLookupStateRef,
    _kind: LLVMOrcLookupKind,
    jd: LLVMOrcJITDylibRef,
    _flags: LLVMOrcJITDylibLookupFlags,
    set: LLVMOrcCLookupSet,
    n: usize,
) -> LLVMErrorRef {
    // SAFETY: ORC passes `n` lookup elements valid for the call; each name we define is
    // retained once for LLVMOrcAbsoluteSymbols, which takes ownership of the pairs; the
    // unit is disposed if the dylib refuses it.
    unsafe {
        let elems = if n == 0 { &[][..] } else { std::slice::from_raw_parts(set, n) };
        let mut pairs: Vec<LLVMOrcCSymbolMapPair> = Vec::new();
        for e in elems {
            let name = std::ffi::CStr::from_ptr(LLVMOrcSymbolStringPoolEntryStr(e.Name));
            let Some(addr) = name.to_str().ok().and_then(crate::bind::parse_abs_name) else { continue };
            LLVMOrcRetainSymbolStringPoolEntry(e.Name);
            let flags = LLVMJITSymbolFlags { GenericFlags: LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsExported as u8, TargetFlags: 0 };
            pairs.push(LLVMOrcCSymbolMapPair { Name: e.Name, Sym: LLVMJITEvaluatedSymbol { Address: addr, Flags: flags } });
        }
        if pairs.is_empty() {
            return std::ptr::null_mut();
        }
        let mu = LLVMOrcAbsoluteSymbols(pairs.as_mut_ptr(), pairs.len());
        let err = LLVMOrcJITDylibDefine(jd, mu);
        if !err.is_null() {
            LLVMOrcDisposeMaterializationUnit(mu);
        }
        err
    }
}

extern "C" fn dispose_generator(_ctx: *mut libc::c_void) {}

/// The last session error ORC reported (its detail is not in the lookup's error).
static SESSION_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// ORC's reports of session errors (ORC would print them on stderr): logged, and kept
/// for the error of the compile whose lookup fails.
extern "C" fn session_error(_ctx: *mut libc::c_void, err: LLVMErrorRef) {
    let text = error_text(err);
    *SESSION_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
    let _ = std::panic::catch_unwind(|| crate::report::log(bitcode_embed::jit_abi::JIT_LOG_INFO, &format!("JIT session error: {text}")));
}

extern "C" fn record_sizes(_ctx: *mut libc::c_void, obj: *mut LLVMMemoryBufferRef) -> LLVMErrorRef {
    use object::{Object, ObjectSymbol};
    // SAFETY: `obj` points at the live object buffer ORC is about to link; it is only read.
    let bytes = unsafe {
        let buf = *obj;
        std::slice::from_raw_parts(llvm_sys::core::LLVMGetBufferStart(buf) as *const u8, llvm_sys::core::LLVMGetBufferSize(buf))
    };
    if let Ok(file) = object::File::parse(bytes) {
        let mut sizes = SIZES.lock().unwrap_or_else(|p| p.into_inner());
        let map = sizes.get_or_insert_with(HashMap::new);
        for sym in file.symbols() {
            if let Ok(name) = sym.name() {
                if sym.kind() == object::SymbolKind::Text && sym.size() > 0 {
                    map.insert(name.to_owned(), sym.size());
                }
            }
        }
    }
    std::ptr::null_mut()
}

/// Size of a JIT'd function's code, if its object declared one.
pub fn code_size(name: &str) -> u64 {
    SIZES.lock().ok().and_then(|s| s.as_ref().and_then(|m| m.get(name).copied())).unwrap_or(0)
}

/// A JIT target machine builder for the host at `CodeGenLevelLess`, or None (then LLJIT
/// detects the host itself, at its default level).
fn host_machine_builder() -> Option<LLVMOrcJITTargetMachineBuilderRef> {
    use llvm_sys::target_machine::*;
    // SAFETY: C API calls on the host triple; the strings LLVM returns are freed with
    // LLVMDisposeMessage; the target machine is consumed by the builder.
    unsafe {
        let triple = LLVMGetDefaultTargetTriple();
        let mut target = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        if LLVMGetTargetFromTriple(triple, &mut target, &mut err) != 0 {
            drti_llvm_ir::ir::take_message(err);
            llvm_sys::core::LLVMDisposeMessage(triple);
            return None;
        }
        let cpu = LLVMGetHostCPUName();
        let features = LLVMGetHostCPUFeatures();
        let tm = LLVMCreateTargetMachine(
            target,
            triple,
            cpu,
            features,
            LLVMCodeGenOptLevel::LLVMCodeGenLevelLess,
            LLVMRelocMode::LLVMRelocDefault,
            LLVMCodeModel::LLVMCodeModelJITDefault,
        );
        llvm_sys::core::LLVMDisposeMessage(triple);
        llvm_sys::core::LLVMDisposeMessage(cpu);
        llvm_sys::core::LLVMDisposeMessage(features);
        (!tm.is_null()).then(|| LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm))
    }
}

/// Registers the host target with LLVM, once per process: registration appends to a
/// global list without a lock, and two threads doing it at once (two sessions created
/// concurrently, as tests do) leave a cycle that `lookupTarget` then loops on forever.
pub fn initialize_native_target() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: LLVM's initialisers have no preconditions; `Once` runs them one time.
    ONCE.call_once(|| unsafe {
        llvm_sys::target::LLVM_InitializeNativeTarget();
        llvm_sys::target::LLVM_InitializeNativeAsmPrinter();
        // Inline assembly is parsed when the object is emitted: without the parser any
        // `asm` statement is a fatal error.
        llvm_sys::target::LLVM_InitializeNativeAsmParser();
    });
}

impl Session {
    /// Creates the LLJIT with the process's symbols visible.
    pub fn new() -> Result<Session, String> {
        // SAFETY: standard LLJIT construction through the C API; every error is consumed;
        // the builder is consumed by LLVMOrcCreateLLJIT.
        unsafe {
            initialize_native_target();
            let builder = LLVMOrcCreateLLJITBuilder();
            LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, object_linking_layer, std::ptr::null_mut());
            // Code generation at -O1: the IR is already optimised at O2; -O1 instruction
            // selection and register allocation give the same code here, a third faster.
            if let Some(jtmb) = host_machine_builder() {
                LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
            }
            let mut jit = std::ptr::null_mut();
            let err = LLVMOrcCreateLLJIT(&mut jit, builder);
            if !err.is_null() {
                return Err(format!("cannot create the LLJIT: {}", error_text(err)));
            }
            LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(jit), session_error, std::ptr::null_mut());
            let dylib = LLVMOrcLLJITGetMainJITDylib(jit);
            let mut gen = std::ptr::null_mut();
            let err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&mut gen, LLVMOrcLLJITGetGlobalPrefix(jit), None, std::ptr::null_mut());
            if !err.is_null() {
                return Err(format!("cannot search the process's symbols: {}", error_text(err)));
            }
            // Absolute names first: they never need a search of the process's symbols.
            LLVMOrcJITDylibAddGenerator(dylib, LLVMOrcCreateCustomCAPIDefinitionGenerator(define_absolute, std::ptr::null_mut(), dispose_generator));
            LLVMOrcJITDylibAddGenerator(dylib, gen);
            LLVMOrcObjectTransformLayerSetTransform(LLVMOrcLLJITGetObjTransformLayer(jit), record_sizes, std::ptr::null_mut());
            Ok(Session { jit, dylib })
        }
    }

    /// Adds `module` (taking ownership, with its thread-safe context) and returns the
    /// address of `symbol` once compiled, with the tracker that owns the code.
    pub fn add_and_lookup(&self, tsc: LLVMOrcThreadSafeContextRef, module: LLVMModuleRef, symbol: &str) -> Result<(u64, LLVMOrcResourceTrackerRef), String> {
        let csym = std::ffi::CString::new(symbol).map_err(|e| e.to_string())?;
        // SAFETY: `module` belongs to `tsc`'s context and is handed over to ORC; lookups
        // compile it; errors are consumed; the tracker is released on failure.
        unsafe {
            let tsm = LLVMOrcCreateNewThreadSafeModule(module, tsc);
            let rt = LLVMOrcJITDylibCreateResourceTracker(self.dylib);
            let err = LLVMOrcLLJITAddLLVMIRModuleWithRT(self.jit, rt, tsm);
            if !err.is_null() {
                LLVMOrcReleaseResourceTracker(rt);
                return Err(format!("cannot add the module: {}", error_text(err)));
            }
            let mut addr: LLVMOrcExecutorAddress = 0;
            SESSION_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take();
            let err = LLVMOrcLLJITLookup(self.jit, &mut addr, csym.as_ptr());
            if !err.is_null() {
                let mut msg = error_text(err);
                if let Some(detail) = SESSION_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    msg = format!("{msg}: {detail}");
                }
                let e2 = LLVMOrcResourceTrackerRemove(rt);
                if !e2.is_null() {
                    LLVMConsumeError(e2);
                }
                LLVMOrcReleaseResourceTracker(rt);
                return Err(format!("code generation failed: {msg}"));
            }
            Ok((addr, rt))
        }
    }

    /// Frees the code of one compile.
    pub fn release(&self, rt: LLVMOrcResourceTrackerRef) {
        // SAFETY: `rt` came from add_and_lookup and is released once.
        unsafe {
            let err = LLVMOrcResourceTrackerRemove(rt);
            if !err.is_null() {
                LLVMConsumeError(err);
            }
            LLVMOrcReleaseResourceTracker(rt);
        }
    }
}
