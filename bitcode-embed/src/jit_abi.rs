//! The C ABI of the JIT (`drti-jit`, LLVM 19): what a compile request holds. The agent
//! (`libdrti_agent.so`, no LLVM) builds one with its own addresses and sends its portable
//! form (`portable`) to the compiler process, which builds it again with stand-in
//! addresses and calls the JIT.
//!
//! The JIT exports `drti_jit_abi_version`, `drti_jit_init`, `drti_jit_compile` and
//! `drti_jit_release` with the signatures below. All pointers in a request stay valid for
//! the duration of the call only; the JIT copies what it keeps.

/// Bumped on any change to the types or functions below.
pub const JIT_ABI_VERSION: u32 = 6;

/// The `len` elements at `ptr` of a request (empty when `len` is 0, whatever `ptr` is).
///
/// # Safety
/// `ptr` must be valid for `len` elements (or `len` 0) for `'a`.
pub unsafe fn array<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: per the function contract.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

/// The `len` bytes at `ptr` of a request as text (invalid UTF-8 replaced).
///
/// # Safety
/// As [`array`].
pub unsafe fn text(ptr: *const u8, len: usize) -> String {
    // SAFETY: per the function contract.
    String::from_utf8_lossy(unsafe { array(ptr, len) }).into_owned()
}

/// One name → run-time address binding of a module's address table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitSymbol {
    /// IR name bytes (not NUL-terminated).
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// Run-time address of the global in the program.
    pub address: u64,
}

/// A module whose clean bitcode takes part in a compile.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitModule {
    /// Raw (decompressed) bitcode.
    pub bitcode: *const u8,
    /// Length of `bitcode`.
    pub bitcode_len: usize,
    /// The module's address table, by name.
    pub symbols: *const JitSymbol,
    /// Number of `symbols`.
    pub n_symbols: usize,
}

/// A hot target of a site, to be inlined behind `if target == address`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitTarget {
    /// The target's run-time address (what the call site observed).
    pub address: u64,
    /// Index into the request's modules of the module defining the target.
    pub module: u32,
    /// IR name of the target in that module.
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// Null, or the address of an aligned 8-byte word that holds the target's address
    /// while it may be inlined: the guard then compares against an atomic load of the
    /// slot, so the agent can zero it (e.g. before the target's module is unloaded) and
    /// frames already inside the compiled code fall back to the real call.
    pub slot: *const u64,
}

/// Names the function an indirect call site belongs to: the function being compiled
/// (`name_len` 0) or a function that is one of the request's targets, whose copy inside
/// F+ then carries the site (nested guards, sampled sites of inlined copies).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitOwner {
    /// Index into the request's modules of the module defining the owner.
    pub module: u32,
    /// IR name of the owner (not NUL-terminated); empty for the function being compiled.
    pub name: *const u8,
    /// Length of `name`; 0 = the function being compiled.
    pub name_len: usize,
}

impl JitOwner {
    /// The function being compiled.
    pub const F: JitOwner = JitOwner { module: 0, name: core::ptr::null(), name_len: 0 };
}

/// One hot site of the function being compiled or of one of its inlined targets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitSite {
    /// The function holding the site. A site of a target is guarded inside that
    /// target's copy, before the copy is inlined: every inlined copy of the target in F+
    /// carries the guards (one copy per (module, name)).
    pub owner: JitOwner,
    /// Ordinal of the indirect call within its owner (see `SiteRecord::ordinal`).
    pub ordinal: u32,
    /// Number of `targets`, hottest first.
    pub n_targets: u32,
    /// The guarded targets.
    pub targets: *const JitTarget,
    /// Incremented (atomically) by F+ each time no guard matches.
    pub miss_counter: *mut u64,
    /// The site's index in its owner's module: calls that match no guard are sampled as
    /// this site (like a [`JitProbe`]), so a target that gets hot later is seen.
    pub site: u32,
    /// The owner module's runtime area; 0 = misses are only counted.
    pub area: u64,
}

/// An unguarded indirect call site of F+ (of F or of an inlined copy) that keeps
/// sampling: before the call, F+ counts down the calling thread's countdown and, when it
/// goes negative, calls the request's `sample_fn(area, site, target)`, so the edge table
/// sees the site's edges as if the owner had run standalone.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitProbe {
    /// The function holding the site.
    pub owner: JitOwner,
    /// Ordinal of the indirect call within its owner.
    pub ordinal: u32,
    /// The site's index in its module (`SiteRecord` index), as the hook reports it.
    pub site: u32,
    /// The owner module's runtime area (identifies the module to the agent).
    pub area: u64,
}

/// Compile function `function_name` of module `function_module` with its hot sites inlined.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitRequest {
    /// [`JIT_ABI_VERSION`].
    pub abi_version: u32,
    /// 2 or 3: the LLVM pipeline (`default<O2>` / `default<O3>`).
    pub opt_level: u32,
    /// The modules involved; index 0 need not be the function's own.
    pub modules: *const JitModule,
    /// Number of `modules`.
    pub n_modules: usize,
    /// Index of the module defining the function.
    pub function_module: u32,
    /// IR name of the function.
    pub function_name: *const u8,
    /// Length of `function_name`.
    pub function_name_len: usize,
    /// The hot sites.
    pub sites: *const JitSite,
    /// Number of `sites`.
    pub n_sites: usize,
    /// Unguarded sites to keep sampling (see [`JitProbe`]).
    pub probes: *const JitProbe,
    /// Number of `probes`.
    pub n_probes: usize,
    /// `void sample(u64 area, u32 site, u64 target)`: takes one sample; called by F+ when
    /// the thread's countdown went negative (resets the countdown).
    pub sample_fn: u64,
    /// `void count(u64 area, u32 site, u64 target)`: counts one call down on the calling
    /// thread's countdown and samples when due; called at every probed call when
    /// `countdown_static` is 0.
    pub count_fn: u64,
    /// Offset from the thread pointer (x86-64: `%fs`, address space 257) of the calling
    /// thread's `i32` countdown, the same in every thread (static TLS).
    pub countdown_offset: i64,
    /// 1 when `countdown_offset` is valid; 0: F+ calls `count_fn` at each probed call.
    pub countdown_static: u32,
    /// Test hook: non-zero makes the JIT fail this compile with an injected error.
    pub inject_failure: u32,
    /// [`NO_OSR`] for F+; otherwise compile the OSR continuation of F's point whose loop
    /// header is this block (index in F's block list) instead: a function that takes the
    /// header's live values, in the order of `osr_live`, and finishes F's activation.
    pub osr_header: u32,
    /// The point's live values (`OsrLive` encoding: argument `i` = `i | OSR_LIVE_ARG`,
    /// instruction `j` of F counted over all blocks = `j`); the JIT checks them against
    /// its own analysis of F.
    pub osr_live: *const u32,
    /// Number of `osr_live`; 0 with [`NO_OSR`].
    pub n_osr_live: usize,
}

/// `osr_header` of a request for F+ (no continuation).
pub const NO_OSR: u32 = u32::MAX;

/// Marks a live value that is F's parameter (the low bits are its index); without it, the
/// value is F's instruction of that index.
pub const OSR_LIVE_ARG: u32 = 0x8000_0000;

/// Size of the error text buffer in [`JitResult`].
pub const JIT_ERROR_LEN: usize = 1024;

/// What a compile produced.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct JitResult {
    /// 1 on success.
    pub ok: u32,
    /// 1 when the function cannot be compiled correctly (TLS, setjmp, ...): a rejection,
    /// not an error.
    pub rejected: u32,
    /// When the rejection is one target's (it cannot be inlined; the rest could), its
    /// index in the request's targets, site by site in order; otherwise -1.
    pub rejected_target: i32,
    /// Address of F+ (on success).
    pub code: u64,
    /// Size of F+'s machine code in bytes (0 if unknown).
    pub code_size: u64,
    /// Handle for `drti_jit_release`.
    pub handle: u64,
    /// Milliseconds loading bitcode: modules not loaded yet, bodies not materialised yet.
    pub parse_ms: f64,
    /// Milliseconds copying F and the targets out of their modules, binding them to the
    /// program, linking and guarding.
    pub bind_ms: f64,
    /// Milliseconds in the LLVM optimisation pipeline.
    pub optimise_ms: f64,
    /// Milliseconds generating and linking machine code.
    pub codegen_ms: f64,
    /// CPU milliseconds of the compiling thread for the whole compile (the phases are
    /// wall-clock time, which a busy machine stretches).
    pub cpu_ms: f64,
    /// NUL-terminated reason on failure.
    pub error: [u8; JIT_ERROR_LEN],
}

impl Default for JitResult {
    fn default() -> Self {
        JitResult {
            ok: 0,
            rejected: 0,
            rejected_target: -1,
            code: 0,
            code_size: 0,
            handle: 0,
            parse_ms: 0.0,
            bind_ms: 0.0,
            optimise_ms: 0.0,
            codegen_ms: 0.0,
            cpu_ms: 0.0,
            error: [0; JIT_ERROR_LEN],
        }
    }
}

impl JitResult {
    /// Stores `msg` (truncated) as the error text.
    pub fn set_error(&mut self, msg: &str) {
        let n = msg.len().min(JIT_ERROR_LEN - 1);
        self.error[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.error[n] = 0;
    }

    /// The error text.
    pub fn error_text(&self) -> String {
        let end = self.error.iter().position(|&b| b == 0).unwrap_or(JIT_ERROR_LEN);
        String::from_utf8_lossy(&self.error[..end]).into_owned()
    }
}

/// Log levels of [`LogFn`].
pub const JIT_LOG_ERROR: u32 = 1;
/// A warning.
pub const JIT_LOG_WARN: u32 = 2;
/// Information.
pub const JIT_LOG_INFO: u32 = 3;
/// Debugging detail (LLVM remarks).
pub const JIT_LOG_DEBUG: u32 = 4;

/// `void log(u32 level, const u8 *msg, usize len)`: where the JIT reports (it never
/// writes to the process's stderr). `msg` is UTF-8, valid for the call only. May be
/// called from any thread that calls into the JIT.
pub type LogFn = unsafe extern "C" fn(level: u32, msg: *const u8, len: usize);

/// `u32 drti_jit_abi_version(void)`.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// `int drti_jit_init(u32 flags, LogFn log, JitResult *err)`: 0 on success. `log` may be
/// null (then the JIT reports nothing).
pub type InitFn = unsafe extern "C" fn(flags: u32, log: Option<LogFn>, err: *mut JitResult) -> i32;
/// `void drti_jit_compile(const JitRequest *req, JitResult *out)`.
pub type CompileFn = unsafe extern "C" fn(req: *const JitRequest, out: *mut JitResult);
/// `void drti_jit_release(u64 handle)`: frees the code of a compile no patch points at.
pub type ReleaseFn = unsafe extern "C" fn(handle: u64);
