//! The bridge to `libdrti_jit.so`: loaded by the agent thread from the directory the
//! agent itself was loaded from, when decorated code is first seen calling decorated code
//! through a pointer (an edge that may get hot; see `worker::record`), so a process
//! without such calls never loads LLVM and most hot edges find it loaded. Checked
//! against the ABI version, then called through the C ABI of `bitcode_embed::jit_abi`.

use bitcode_embed::jit_abi::*;
use std::ffi::CString;

/// The loaded JIT library.
pub struct Jit {
    compile: CompileFn,
    release: ReleaseFn,
}

/// File name of the JIT library.
pub const JIT_LIBRARY: &str = "libdrti_jit.so";

/// The directory `libdrti_agent.so` was loaded from.
fn agent_dir() -> Option<std::path::PathBuf> {
    let mut info = libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    // SAFETY: dladdr reads the loader's tables for an address inside this library.
    let ok = unsafe { libc::dladdr(agent_dir as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    std::path::Path::new(&path).parent().map(|p| p.to_path_buf())
}

/// Looks up `name` in `handle`.
fn symbol(handle: *mut libc::c_void, name: &str) -> Result<*mut libc::c_void, String> {
    let c = CString::new(name).unwrap();
    // SAFETY: `handle` is a live dlopen handle; dlsym only reads.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        Err(format!("{JIT_LIBRARY} has no symbol {name}"))
    } else {
        Ok(p)
    }
}

/// The JIT's log callback: its messages and LLVM's diagnostics go to the drti log (target
/// `drti_agent::jit`), never to the program's stderr.
unsafe extern "C" fn jit_log(level: u32, msg: *const u8, len: usize) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the JIT passes `len` valid bytes for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(msg, len) };
    let text = String::from_utf8_lossy(bytes);
    // A panic must not unwind into the JIT (C frames): it is dropped with the message.
    let _ = std::panic::catch_unwind(|| match level {
        JIT_LOG_ERROR => tracing::error!(target: "drti_agent::jit", "{text}"),
        JIT_LOG_WARN => tracing::warn!(target: "drti_agent::jit", "{text}"),
        JIT_LOG_INFO => tracing::info!(target: "drti_agent::jit", "{text}"),
        _ => tracing::debug!(target: "drti_agent::jit", "{text}"),
    });
}

impl Jit {
    /// Loads and initialises the JIT. `dlopen` is the real one (not our interposer).
    pub fn load(perf_map: bool) -> Result<Jit, String> {
        let dir = agent_dir().ok_or("cannot find the agent's own directory")?;
        let path = dir.join(JIT_LIBRARY);
        let cpath = CString::new(path.to_string_lossy().into_owned()).map_err(|e| e.to_string())?;
        // SAFETY: loading a library we ship; RTLD_LOCAL keeps LLVM's symbols out of the
        // program's global scope.
        let handle = unsafe { crate::preload::real_dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a thread-local message or null.
            let err = unsafe { libc::dlerror() };
            let msg = if err.is_null() { "unknown error".into() } else { unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned() };
            return Err(format!("cannot load {}: {msg}", path.display()));
        }
        // SAFETY: the symbols are the JIT's exported functions with the ABI's signatures,
        // checked by the version call before any other is used.
        unsafe {
            let version: AbiVersionFn = std::mem::transmute(symbol(handle, "drti_jit_abi_version")?);
            let v = version();
            if v != JIT_ABI_VERSION {
                return Err(format!("{} speaks JIT ABI {v}, this agent {JIT_ABI_VERSION}", path.display()));
            }
            let init: InitFn = std::mem::transmute(symbol(handle, "drti_jit_init")?);
            let compile: CompileFn = std::mem::transmute(symbol(handle, "drti_jit_compile")?);
            let release: ReleaseFn = std::mem::transmute(symbol(handle, "drti_jit_release")?);
            let mut res = JitResult::default();
            if init(if perf_map { JIT_INIT_PERF_MAP } else { 0 }, Some(jit_log), &mut res) != 0 {
                return Err(format!("JIT initialisation failed: {}", res.error_text()));
            }
            Ok(Jit { compile, release })
        }
    }

    /// Frees the code of compile `handle` (no redirect points at it, no thread is inside).
    pub fn release(&self, handle: u64) {
        // SAFETY: `handle` came from a successful compile and is released once.
        unsafe { (self.release)(handle) }
    }

    /// Runs one compile.
    pub fn compile(&self, req: &JitRequest) -> JitResult {
        let mut out = JitResult::default();
        // SAFETY: `req` and everything it points to are valid for the call (the caller
        // keeps them alive); `out` is a valid result buffer.
        unsafe { (self.compile)(req, &mut out) };
        out
    }
}
