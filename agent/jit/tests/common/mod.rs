//! Requests built by hand for the JIT's own tests: bitcode from IR text, symbols from
//! functions of the test process.

#![allow(dead_code)]

use bitcode_embed::jit_abi::*;
use llvm_sys::core::*;
use std::sync::Mutex;

/// Everything the JIT logged.
pub static LOGGED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn log(level: u32, msg: *const u8, len: usize) {
    // SAFETY: the JIT passes `len` valid bytes.
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) }).into_owned();
    LOGGED.lock().unwrap().push((level, text));
}

/// Initialises the JIT with the recording log.
pub fn init() {
    let mut err = JitResult::default();
    // SAFETY: a valid result buffer; the callback lives for the process.
    let rc = unsafe { drti_jit::drti_jit_init(0, Some(log), &mut err) };
    assert_eq!(rc, 0, "{}", err.error_text());
}

/// Bitcode of the IR module `text`.
pub fn bitcode(text: &str) -> Vec<u8> {
    // SAFETY: plain LLVM C API use on a context created and disposed here; the parser
    // takes the buffer; the output buffer is copied, then disposed.
    unsafe {
        let ctx = LLVMContextCreate();
        let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(text.as_ptr().cast(), text.len(), c"test".as_ptr());
        let mut m = std::ptr::null_mut();
        let mut msg = std::ptr::null_mut();
        let failed = llvm_sys::ir_reader::LLVMParseIRInContext(ctx, buf, &mut m, &mut msg);
        assert!(failed == 0, "IR does not parse: {}", std::ffi::CStr::from_ptr(msg).to_string_lossy());
        let out = llvm_sys::bit_writer::LLVMWriteBitcodeToMemoryBuffer(m);
        let bytes = std::slice::from_raw_parts(LLVMGetBufferStart(out) as *const u8, LLVMGetBufferSize(out)).to_vec();
        LLVMDisposeMemoryBuffer(out);
        LLVMDisposeModule(m);
        LLVMContextDispose(ctx);
        bytes
    }
}

/// Compiles `function` of the module `bc` (address table `symbols`) with one site
/// (ordinal 0) guarding `targets` (name, address, slot).
pub fn compile(bc: &[u8], symbols: &[(&str, u64)], function: &str, targets: &[(&str, u64, *const u64)], misses: &mut u64) -> JitResult {
    let syms: Vec<JitSymbol> = symbols.iter().map(|(n, a)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: *a }).collect();
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let t: Vec<JitTarget> = targets.iter().map(|(n, a, s)| JitTarget { address: *a, module: 0, name: n.as_ptr(), name_len: n.len(), slot: *s }).collect();
    let site = JitSite { owner: JitOwner::F, ordinal: 0, n_targets: t.len() as u32, targets: t.as_ptr(), miss_counter: misses, site: 0, area: 0 };
    // SAFETY: the request points at `module`, `site` and their arrays, alive until return.
    unsafe { run(&request(&module, function, std::slice::from_ref(&site), &[])) }
}

/// A request for `function` of `module` with `sites` and `probes` and no sampler (the
/// probes' functions, when a test has them, are set on the result).
pub fn request(module: &JitModule, function: &str, sites: &[JitSite], probes: &[JitProbe]) -> JitRequest {
    JitRequest {
        abi_version: JIT_ABI_VERSION,
        opt_level: 2,
        modules: module,
        n_modules: 1,
        function_module: 0,
        function_name: function.as_ptr(),
        function_name_len: function.len(),
        sites: sites.as_ptr(),
        n_sites: sites.len(),
        probes: if probes.is_empty() { std::ptr::null() } else { probes.as_ptr() },
        n_probes: probes.len(),
        sample_fn: 0,
        count_fn: 0,
        countdown_offset: 0,
        countdown_static: 0,
        inject_failure: 0,
        osr_header: NO_OSR,
        osr_live: std::ptr::null(),
        n_osr_live: 0,
    }
}

/// Runs `req`.
///
/// # Safety
/// Every pointer in `req` must be valid for the call (as `drti_jit_compile` requires).
pub unsafe fn run(req: &JitRequest) -> JitResult {
    let mut out = JitResult::default();
    // SAFETY: the caller keeps every pointer of the request alive for the call.
    unsafe { drti_jit::drti_jit_compile(req, &mut out) };
    out
}
