//! Logging setup (tracing) and the JSON dump (`DRTI_DUMP`, DESIGN.md's schema, version 1).
//!
//! The dump is written by an `atexit` handler, so `exit()` from any thread and a return
//! from `main` produce it. `_exit`, `abort` and death by a signal skip atexit handlers:
//! no dump is written then (the log still has everything up to that point). A forked
//! child writes its own dump to `<DRTI_DUMP>.<pid>` so parent and child never share a file.

use crate::config::Config;
use crate::state::Agent;
use bitcode_embed::dump::{Dump, DumpCompile, DumpDeferred, DumpEdge, DumpModule, DumpPatch, DumpUnprofiled, DUMP_VERSION};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where the log goes: the agent's own duplicate of stderr taken at start (so a program
/// that closes fd 2 and opens a file there never gets agent warnings in that file), or
/// the `DRTI_LOG_FILE` file; -1 when there is nowhere (stderr was closed at start).
static LOG_FD: AtomicI32 = AtomicI32::new(-1);
/// Most verbose level enabled (tracing's order: 1 error .. 5 trace), for [`emit`].
static MAX_LEVEL: AtomicU8 = AtomicU8::new(2);
/// Set by the exit handler: thread-locals of the exiting thread are gone, and tracing's
/// formatter needs them, so tracing events are off from then on (see [`emit`]).
static EXITING: AtomicBool = AtomicBool::new(false);

fn level_rank(l: tracing::Level) -> u8 {
    match l {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    }
}

/// Writes whole lines to [`LOG_FD`] with plain `write(2)`.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let fd = LOG_FD.load(Ordering::Relaxed);
        if fd < 0 {
            return Ok(buf.len());
        }
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: writing initialised bytes from `buf` to a descriptor we own.
            let n = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            done += n as usize;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Turns every tracing event off once the process is exiting.
struct ExitGate;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ExitGate {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        // Ask `enabled` at every event: the answer changes at exit.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        !EXITING.load(Ordering::Relaxed)
    }
}

/// The exit handler runs from here on: no more tracing (see [`EXITING`]).
pub fn exit_started() {
    EXITING.store(true, Ordering::Relaxed);
}

/// One log line without tracing (no thread-locals, no locks): for the exit handler.
pub fn emit(level: tracing::Level, msg: &str) {
    if level_rank(level) > MAX_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let _ = std::io::Write::write_all(&mut LogWriter, format!("{level:>5} {msg}\n").as_bytes());
}

/// Installs the tracing subscriber: `DRTI_LOG` filter, the agent's duplicate of stderr or
/// `DRTI_LOG_FILE`.
pub fn init_logging(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            warnings.push(format!("DRTI_LOG={:?} is not a valid filter ({e}); using the default warn", config.log));
            tracing_subscriber::EnvFilter::new("warn")
        }
    };
    let rank = match filter.max_level_hint() {
        Some(l) => l.into_level().map_or(0, level_rank),
        None => 5,
    };
    MAX_LEVEL.store(rank, Ordering::Relaxed);
    // SAFETY: F_DUPFD_CLOEXEC duplicates fd 2 if it is open (else fails with EBADF).
    let stderr_copy = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    LOG_FD.store(stderr_copy, Ordering::Relaxed);
    if let Some(path) = &config.log_file {
        match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                LOG_FD.store(std::os::fd::IntoRawFd::into_raw_fd(file), Ordering::Relaxed);
                if stderr_copy >= 0 {
                    // SAFETY: closing our own duplicate, which nothing else uses.
                    unsafe { libc::close(stderr_copy) };
                }
            }
            Err(e) => warnings.push(format!("DRTI_LOG_FILE={path:?} cannot be opened ({e}); logging to stderr")),
        }
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .with_writer(|| LogWriter)
        .finish()
        .with(ExitGate);
    let _ = subscriber.try_init();
    warnings
}

/// The dump's records, built from the agent's state.
pub fn to_dump(agent: &Agent) -> Dump {
    let modules: Vec<DumpModule> = agent
        .modules
        .iter()
        .map(|m| DumpModule { path: m.path.clone(), source: m.source.clone(), functions: m.functions, sites: m.sites, bitcode_bytes: m.bitcode_bytes, loaded: m.live.is_some() })
        .collect();
    let live: Vec<(crate::edges::EdgeKey, crate::edges::Edge)> = agent.edges.map.iter().map(|e| (*e.key(), e.value().clone())).collect();
    let mut edges: Vec<DumpEdge> = live
        .iter()
        .chain(agent.retired_edges.iter())
        .map(|(key, e)| {
            let (mid, site, target) = *key;
            let (caller, ordinal) = match agent.modules[mid].site_info.get(site as usize) {
                Some(&(f, ordinal)) => (agent.function_name(mid, f), ordinal),
                None => (format!("<module {mid}>"), site),
            };
            let (callee, callee_module) = match &e.callee {
                crate::edges::Callee::Decorated { module, function } => (agent.function_name(*module, *function), agent.modules[*module].path.clone()),
                crate::edges::Callee::Outside { name, object } => (name.clone(), object.clone()),
            };
            DumpEdge {
                caller,
                site: ordinal,
                module_site: site,
                callee,
                calls: e.calls,
                samples: e.samples,
                state: e.state.as_str().to_owned(),
                reason: e.reason.clone(),
                target: format!("{target:#x}"),
                caller_module: agent.modules[mid].path.clone(),
                callee_module,
            }
        })
        .collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e.calls));
    let compiles: Vec<DumpCompile> = agent.compiles.clone();
    let patches: Vec<DumpPatch> = agent
        .patches
        .iter()
        .map(|p| DumpPatch {
            function: p.function.clone(),
            from: format!("{:#x}", p.record.entry),
            to: format!("{:#x}", p.record.target),
            active: p.active,
            slot: format!("{:#x}", p.record.slot),
        })
        .collect();
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    Dump {
        drti_dump_version: DUMP_VERSION,
        pid: std::process::id(),
        exe,
        threshold: agent.config.hot_threshold,
        sample_period: agent.config.sample_period().into(),
        samples_dropped: crate::profile::dropped(),
        samples_taken: crate::profile::samples_taken(),
        jit_load_ms: agent.jit_load_ms,
        peak_rss_kb: peak_rss_kb(),
        jit_code_released: agent.code.released,
        jit_code_waiting: agent.code.retired() as u64,
        fork_child_note: agent.fork_child_note.clone(),
        jit_cpu_ms: agent.jit_cpu_ms,
        jit_budget: agent.config.jit_budget,
        deferred: agent.deferred.iter().map(|(&(m, f), why)| DumpDeferred { function: agent.function_name(m, f), why: why.clone() }).collect(),
        modules,
        edges,
        compiles,
        patches,
        unprofiled: agent.slot_off.iter().map(|(&(m, f), why)| DumpUnprofiled { function: agent.function_name(m, f), why: why.clone() }).collect(),
    }
}

/// Writes the dump to `path` (atomically: a temporary file renamed into place).
pub fn write(agent: &Agent, path: &str) {
    let text = match to_dump(agent).to_json() {
        Ok(t) => t,
        Err(e) => {
            emit(tracing::Level::WARN, &format!("cannot serialise the dump: {e}"));
            return;
        }
    };
    let tmp = format!("{path}.tmp{}", std::process::id());
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        emit(tracing::Level::WARN, &format!("cannot write DRTI_DUMP={path}: {e}"));
    }
}

/// VmHWM of this process in KiB (`/proc/self/status`).
fn peak_rss_kb() -> Option<u64> {
    crate::guardrails::status_kb(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

