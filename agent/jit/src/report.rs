//! Where the JIT reports: the agent's log callback, never the process's stderr.
//!
//! LLVM prints diagnostics (remarks, warnings, errors) on stderr and ends the process on
//! a fatal error unless told otherwise. Every context the JIT creates gets
//! [`diagnostic_handler`], which sends diagnostics to the log and remembers errors so the
//! compile that caused them fails; [`install_fatal_handler`] replaces LLVM's abort by
//! "log, mark the JIT dead, park this thread": LLVM aborts if its fatal-error handler
//! returns, and unwinding through LLVM's C++ frames is not possible, so the thread that
//! hit the error never comes back while the application carries on unoptimised.

// Raw LLVM handles passed in come from live contexts of this crate.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use bitcode_embed::jit_abi::{LogFn, JIT_LOG_DEBUG, JIT_LOG_ERROR, JIT_LOG_INFO};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static LOG: OnceLock<Option<LogFn>> = OnceLock::new();
static DEAD: AtomicBool = AtomicBool::new(false);
/// Error diagnostics of the compile in progress (compiles are serialised by the session).
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Sets the log callback (the first call wins).
pub fn set_log(f: Option<LogFn>) {
    let _ = LOG.set(f);
}

/// Sends `msg` at `level` (`JIT_LOG_*`) to the agent's log; nothing without a callback.
pub fn log(level: u32, msg: &str) {
    if let Some(Some(f)) = LOG.get() {
        // SAFETY: the agent's callback takes (level, bytes, length) valid for the call.
        unsafe { f(level, msg.as_ptr(), msg.len()) }
    }
}

/// True once LLVM hit a fatal error: the JIT must not be used again.
pub fn dead() -> bool {
    DEAD.load(Ordering::Acquire)
}

thread_local! {
    /// True while this thread runs a call into the JIT.
    static IN_JIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as JIT work: a panic inside it is reported to the log, not to stderr.
pub fn in_jit<T>(f: impl FnOnce() -> T) -> T {
    let was = IN_JIT.with(|c| c.replace(true));
    let r = f();
    IN_JIT.with(|c| c.set(was));
    r
}

/// Sends panics of JIT work to the log (Rust's default hook prints them on stderr);
/// other panics of the process (this library may be linked into a test) go to the hook
/// that was there before.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_JIT.try_with(|c| c.get()).unwrap_or(false) {
                log(JIT_LOG_INFO, &format!("panic in the JIT: {info}"));
            } else {
                previous(info);
            }
        }));
    });
}

/// Installs the fatal-error handler (once per process; LLVM keeps one handler).
pub fn install_fatal_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the handler is a plain function valid for the life of the process.
    ONCE.call_once(|| unsafe { llvm_sys::error_handling::LLVMInstallFatalErrorHandler(Some(fatal_error)) });
}

extern "C" fn fatal_error(reason: *const libc::c_char) {
    DEAD.store(true, Ordering::Release);
    let text = if reason.is_null() {
        "unknown".into()
    } else {
        // SAFETY: LLVM passes a NUL-terminated message valid for the call.
        unsafe { std::ffi::CStr::from_ptr(reason) }.to_string_lossy().into_owned()
    };
    let _ = std::panic::catch_unwind(|| {
        log(JIT_LOG_ERROR, &format!("LLVM fatal error: {text}; the JIT is off and this thread stops, the program runs unoptimised"))
    });
    // Returning would make LLVM abort the process; LLVM's state (locks, half-built
    // objects) is unusable from here, so this thread never returns into it.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Routes the diagnostics of `ctx` to the log (call on every context the JIT creates).
pub fn attach(ctx: llvm_sys::prelude::LLVMContextRef) {
    // SAFETY: `ctx` is live; the handler is a plain function and takes no context.
    unsafe { llvm_sys::core::LLVMContextSetDiagnosticHandler(ctx, Some(diagnostic_handler), std::ptr::null_mut()) }
}

extern "C" fn diagnostic_handler(di: llvm_sys::prelude::LLVMDiagnosticInfoRef, _ctx: *mut libc::c_void) {
    use llvm_sys::LLVMDiagnosticSeverity::*;
    // SAFETY: `di` is live for the call; the description is ours to free.
    let (severity, text) = unsafe {
        (llvm_sys::core::LLVMGetDiagInfoSeverity(di), drti_llvm_ir::ir::take_message(llvm_sys::core::LLVMGetDiagInfoDescription(di)))
    };
    // LLVM's warnings and remarks are about the program's code (a transformation it
    // asked for and LLVM did not do), not about drti: information, not warnings. Errors
    // fail the compile, which the agent reports once with this text.
    let level = match severity {
        LLVMDSError => {
            ERRORS.lock().unwrap_or_else(|p| p.into_inner()).push(text.clone());
            JIT_LOG_INFO
        }
        LLVMDSWarning => JIT_LOG_INFO,
        LLVMDSRemark | LLVMDSNote => JIT_LOG_DEBUG,
    };
    let _ = std::panic::catch_unwind(|| log(level, &format!("LLVM: {text}")));
}

/// Forgets earlier error diagnostics (at the start of a compile).
pub fn clear_errors() {
    ERRORS.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The error diagnostics since [`clear_errors`], joined, if any.
pub fn take_errors() -> Option<String> {
    let mut e = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    (!e.is_empty()).then(|| std::mem::take(&mut *e).join("; "))
}

