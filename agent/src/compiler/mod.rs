//! Compiling outside the application (issue 12). A compile the worker planned (a
//! `JitRequest` with this process's addresses) is made portable (`bitcode_embed::portable`),
//! answered from the persistent code cache or by the compiler process (`jitd_client`), and
//! the relocatable object that comes back is linked into this process (`link`) with the
//! request's own addresses (`bitcode_embed::symbols`). No LLVM is ever mapped here.
//!
//! Failure handling: a compiler process that dies or stops answering costs the compile in
//! flight (it may be what killed it) and is started again for the next one, at most
//! `Restarts` times; then [`Compiled::unavailable`] tells the worker to stop compiling.
//! Only the agent thread uses a `Compiler`.

pub mod cache_key;

use crate::jitd_client::{Endpoint, ModuleData, Restarts, Session, SessionError};
use crate::link::{self, LinkedObject};
use bitcode_embed::jit_abi::{JitRequest, JitResult};
use bitcode_embed::protocol::{CompileResult, Hash, Outcome, Phases};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long a compiler may take to greet a new session.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one compile may take (the largest functions take seconds on a loaded machine).
const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a compile was served by the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    /// The cache is off (`DRTI_CACHE=0`, or it could not be opened) or not used for this
    /// compile (a test's injected failure).
    Off,
}

impl CacheUse {
    /// The dump's `cache` field.
    pub fn dump_name(self) -> Option<&'static str> {
        match self {
            CacheUse::Hit => Some("hit"),
            CacheUse::Miss => Some("miss"),
            CacheUse::Off => None,
        }
    }
}

/// One compile's outcome as the worker uses it.
pub struct Compiled {
    /// As the in-process JIT reported it: ok/rejected/error, code, size, handle, phases.
    pub result: JitResult,
    pub cache: CacheUse,
    /// Set when no compiler can be had any more: compiling stops for the process.
    pub unavailable: Option<String>,
}

/// What the compiler needs of the request's modules.
pub struct Modules<'a> {
    /// Hash of each module's embedded bitcode, in the request's module order.
    pub hashes: &'a [Hash],
    /// A module's embedded bitcode and global names, by hash (asked only on a cache miss
    /// by a server that does not hold it).
    pub data: &'a mut dyn FnMut(&Hash) -> Option<ModuleData>,
}

/// The compiler service of this process: cache, compiler process, linked code.
pub struct Compiler {
    endpoint: Endpoint,
    /// `protocol::compiler_identity` of the compiler: part of every cache key.
    identity: Option<String>,
    cpu: String,
    cache: Option<drti_cache::Cache>,
    /// Processes started that may not have exited yet (see `spawn::reap`).
    starters: Vec<std::process::Child>,
    session: Option<Session>,
    /// A pidfd of the private server of `session`, taken when it greeted us: a signal
    /// through it reaches that process or none, never another that reused its pid.
    server: Option<std::os::fd::OwnedFd>,
    restarts: Restarts,
    /// Why no compiler can be had any more.
    dead: Option<String>,
    perf_map: bool,
    linked: HashMap<u64, LinkedObject>,
    next_handle: u64,
    next_id: u64,
}

impl Compiler {
    /// A compiler reached through `endpoint`, with the cache `cache` describes (a cache
    /// that cannot be opened is one warning, and compiles go uncached). A private compiler
    /// is only checked for here and started at the first cache miss: a program the cache
    /// serves never starts one (starting it ahead cost such a run 10 ms of CPU). A shared
    /// one is greeted, since its identity keys the cache. Err: no compiler can be had.
    pub fn new(endpoint: Endpoint, cache: &drti_cache::Settings, perf_map: bool) -> Result<Compiler, String> {
        let identity = match &endpoint {
            Endpoint::Spawn { program } => Some(bitcode_embed::protocol::compiler_identity(program).map_err(|e| format!("{}: {e}", program.display()))?),
            // A shared server says who it is when greeted.
            Endpoint::Connect { .. } => None,
        };
        let cache = cache.dir.as_ref().and_then(|dir| match drti_cache::Cache::open(dir, cache.max_bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("code cache off: {e}");
                None
            }
        });
        let mut c = Compiler {
            endpoint,
            identity,
            cpu: cache_key::cpu(),
            cache,
            starters: Vec::new(),
            session: None,
            server: None,
            restarts: Restarts::default(),
            dead: None,
            perf_map,
            linked: HashMap::new(),
            next_handle: 1,
            next_id: 1,
        };
        if matches!(c.endpoint, Endpoint::Connect { .. }) {
            c.session().map_err(|e| e.to_string())?;
        }
        Ok(c)
    }

    /// A new connection to the compiler.
    fn open(&mut self) -> Result<UnixStream, String> {
        crate::jitd_client::spawn::reap(&mut self.starters);
        let c = self.endpoint.open(None)?;
        self.starters.extend(c.starter);
        Ok(c.stream)
    }

    /// The open session, greeting a started server or starting one.
    fn session(&mut self) -> Result<&mut Session, SessionError> {
        if self.session.is_none() {
            let stream = self.open().map_err(SessionError::Gone)?;
            let s = Session::open(stream, HELLO_TIMEOUT)?;
            tracing::info!(pid = s.server_pid, llvm = %s.llvm, compiler = %s.identity, "compiler process ready");
            match self.endpoint {
                Endpoint::Connect { .. } => self.identity = Some(s.identity.clone()),
                Endpoint::Spawn { .. } => self.server = pidfd_open(s.server_pid),
            }
            self.session = Some(s);
        }
        Ok(self.session.as_mut().expect("just opened"))
    }

    /// Compiles `req` (from the cache if it holds it) and links the code near `near`.
    /// `map_name` names the code in the perf map.
    pub fn compile(&mut self, req: &JitRequest, modules: Modules, near: Option<u64>, map_name: &str) -> Compiled {
        let id = self.next_id;
        self.next_id += 1;
        crate::jitd_client::spawn::reap(&mut self.starters);
        // SAFETY: the worker's request points into its job, alive for this call.
        let portable = match unsafe { bitcode_embed::portable::portable_request(req, modules.hashes, id) } {
            Ok(p) => p,
            Err(e) => return self.finish(failed(&format!("request: {e}")), CacheUse::Off, req, near, map_name),
        };
        let key = match (&self.cache, &self.identity) {
            (Some(_), Some(identity)) if !portable.inject_failure => Some(cache_key::key(&portable, identity, &self.cpu)),
            _ => None,
        };
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            match cache.get(key) {
                drti_cache::Lookup::Hit(payload) => match cache_key::decode(&payload) {
                    Ok(res) => return self.finish(CompileResult { phases: Phases::default(), ..res }, CacheUse::Hit, req, near, map_name),
                    Err(e) => tracing::warn!("code cache entry {} unusable ({e}); compiling", key.hex()),
                },
                drti_cache::Lookup::Miss => {}
                drti_cache::Lookup::Corrupt(why) => tracing::warn!("code cache: {why}; compiling"),
            }
        }
        if let Some(why) = &self.dead {
            let why = why.clone();
            return Compiled { result: to_result(&failed(&why)), cache: CacheUse::Off, unavailable: Some(why) };
        }
        let asked = self.session().and_then(|s| s.compile(&portable, modules.data, COMPILE_TIMEOUT));
        let res = match asked {
            Ok(res) => {
                log_messages(&res.messages);
                res
            }
            Err(e) => {
                let why = e.to_string();
                self.lose_session();
                let unavailable = match e {
                    SessionError::Gone(_) if self.restarts.after_failure() => {
                        let (n, of) = (self.restarts.used(), crate::jitd_client::restarts::DEFAULT_RESTARTS);
                        if n == 1 {
                            tracing::warn!("{why}; it is started again for the next compile ({n} of {of} restarts)");
                        } else {
                            tracing::info!("{why}; it is started again for the next compile ({n} of {of} restarts)");
                        }
                        None
                    }
                    _ => {
                        let dead = format!("no compiler process: {why}");
                        self.dead = Some(dead.clone());
                        Some(dead)
                    }
                };
                // The compile in flight is not tried again: it may be what killed the
                // compiler (an LLVM abort on this function).
                let mut result = to_result(&failed(&format!("{why} (while compiling it)")));
                result.rejected = 1;
                return Compiled { result, cache: CacheUse::Off, unavailable };
            }
        };
        let cache_use = match (&self.cache, &key) {
            (Some(cache), Some(key)) => {
                if cache_key::cacheable(&res) {
                    // The compiler's messages are this compile's, not the code's.
                    if let Err(e) = cache.put(key, &cache_key::encode(&CompileResult { id: 0, messages: vec![], ..res.clone() })) {
                        tracing::warn!("code cache: cannot store a compile: {e}");
                    }
                }
                CacheUse::Miss
            }
            _ => CacheUse::Off,
        };
        self.finish(res, cache_use, req, near, map_name)
    }

    /// Closes the session; a private server that may still be busy is killed (it would
    /// otherwise finish a compile nobody waits for).
    fn lose_session(&mut self) {
        self.session = None;
        if let Some(pidfd) = self.server.take() {
            kill(&pidfd);
        }
    }

    /// Links an object answer; turns every answer into the worker's `JitResult`.
    fn finish(&mut self, res: CompileResult, cache: CacheUse, req: &JitRequest, near: Option<u64>, map_name: &str) -> Compiled {
        let Outcome::Object { bytes, entry } = &res.outcome else {
            return Compiled { result: to_result(&res), cache, unavailable: None };
        };
        // SAFETY: the worker's request points into its job, alive for this call.
        let symbols = unsafe { bitcode_embed::symbols::object_symbols(req) };
        let linked = match link::link(bytes, near, |name| symbols.get(name).copied().or_else(|| runtime_symbol(name))) {
            Ok(l) => l,
            Err(e) => return Compiled { result: to_result(&failed(&e.to_string())), cache, unavailable: None },
        };
        let Some((code, size)) = linked.function(entry) else {
            return Compiled { result: to_result(&failed(&format!("the object does not define {entry}"))), cache, unavailable: None };
        };
        if self.perf_map {
            crate::perf_map::append(code, size, map_name);
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        self.linked.insert(handle, linked);
        let mut result = to_result(&res);
        result.ok = 1;
        result.code = code;
        result.code_size = size;
        result.handle = handle;
        Compiled { result, cache, unavailable: None }
    }

    /// Frees the code of `handle`.
    ///
    /// # Safety
    /// No redirect points at the code any more and no thread is inside it.
    pub unsafe fn release(&mut self, handle: u64) {
        if let Some(l) = self.linked.remove(&handle) {
            // SAFETY: per the function contract.
            unsafe { l.release() };
        }
    }

    /// In a fork child: the session's socket is the parent's; let it go (the child's
    /// linked code stays mapped and registered).
    pub fn forget_session(&mut self) {
        self.session = None;
        self.server = None;
    }
}

/// Logs what the compiler said during a compile, as the in-process JIT did (target
/// `drti_agent::jit`): LLVM's remarks at debug level, its errors as errors.
fn log_messages(messages: &[(u32, String)]) {
    use bitcode_embed::jit_abi::{JIT_LOG_ERROR, JIT_LOG_INFO, JIT_LOG_WARN};
    for (level, text) in messages {
        match *level {
            JIT_LOG_ERROR => tracing::error!(target: "drti_agent::jit", "{text}"),
            JIT_LOG_WARN => tracing::warn!(target: "drti_agent::jit", "{text}"),
            JIT_LOG_INFO => tracing::info!(target: "drti_agent::jit", "{text}"),
            _ => tracing::debug!(target: "drti_agent::jit", "{text}"),
        }
    }
}

/// A symbol the code generator introduced (`memcpy`, `_Unwind_Resume`, `__udivti3`, ...),
/// from the process's global scope. Never one of the request's own names: those are only
/// what the agent itself asked for.
fn runtime_symbol(name: &str) -> Option<u64> {
    if name.starts_with("__drti.") {
        return None;
    }
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: dlsym only looks a NUL-terminated name up in the loaded objects.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    (!p.is_null()).then_some(p as u64)
}

/// A pidfd of process `pid` (close-on-exec), if it still exists.
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if pid == 0 {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    // SAFETY: a non-negative result is a descriptor nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILLs the process of `pidfd`: that process or, if it is gone, none (a pid reused
/// by another process is never hit, as `kill(pid)` could).
fn kill(pidfd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal reads only its arguments (a null siginfo is allowed).
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0u32) == 0 }
}

fn failed(reason: &str) -> CompileResult {
    CompileResult { id: 0, phases: Phases::default(), outcome: Outcome::Failed { reason: reason.into() }, messages: vec![] }
}

/// A protocol answer as a `JitResult` (not linked: `ok` stays 0).
fn to_result(res: &CompileResult) -> JitResult {
    let mut r = JitResult { parse_ms: res.phases.parse_ms, bind_ms: res.phases.bind_ms, optimise_ms: res.phases.optimise_ms, codegen_ms: res.phases.codegen_ms, cpu_ms: res.phases.cpu_ms, ..JitResult::default() };
    match &res.outcome {
        Outcome::Object { .. } => {}
        Outcome::Rejected { target, reason } => {
            r.rejected = 1;
            r.rejected_target = *target;
            r.set_error(reason);
        }
        Outcome::Failed { reason } => r.set_error(reason),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_server_is_killed_through_its_pidfd_and_a_gone_one_is_not_signalled() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pidfd = pidfd_open(child.id()).expect("pidfd_open");
        assert!(kill(&pidfd));
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped: its pid may belong to another process now; the pidfd still names the
        // dead one, so nothing is signalled.
        assert!(!kill(&pidfd));
        assert!(pidfd_open(0).is_none());
    }
}
