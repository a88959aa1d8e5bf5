//! Logging setup (tracing) and the JSON dump (`DRTI_DUMP`, DESIGN.md's schema, version 1).
//!
//! The dump is written by an `atexit` handler, so `exit()` from any thread and a return
//! from `main` produce it. `_exit`, `abort` and death by a signal skip atexit handlers:
//! no dump is written then (the log still has everything up to that point). A forked
//! child writes its own dump to `<DRTI_DUMP>.<pid>` so parent and child never share a file.

use crate::config::Config;
use crate::state::Agent;
use serde_json::{json, Value};

/// Installs the tracing subscriber: `DRTI_LOG` filter, stderr or `DRTI_LOG_FILE`.
pub fn init_logging(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            warnings.push(format!("DRTI_LOG={:?} is not a valid filter ({e}); using the default warn", config.log));
            tracing_subscriber::EnvFilter::new("warn")
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(false).without_time();
    let result = match &config.log_file {
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => builder.with_writer(std::sync::Mutex::new(file)).try_init(),
            Err(e) => {
                warnings.push(format!("DRTI_LOG_FILE={path:?} cannot be opened ({e}); logging to stderr"));
                builder.with_writer(std::io::stderr).try_init()
            }
        },
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    drop(result);
    warnings
}

/// The dump as JSON.
pub fn to_json(agent: &Agent) -> Value {
    let modules: Vec<Value> = agent
        .modules
        .iter()
        .map(|m| json!({"path": m.path, "source": m.source, "functions": m.functions, "sites": m.sites,
                        "bitcode_bytes": m.bitcode_bytes, "loaded": m.live.is_some()}))
        .collect();
    let live: Vec<(crate::edges::EdgeKey, crate::edges::Edge)> = agent.edges.map.iter().map(|e| (*e.key(), e.value().clone())).collect();
    let mut edges: Vec<Value> = live
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
            json!({"caller": caller, "site": ordinal, "module_site": site, "callee": callee, "calls": e.calls,
                   "samples": e.samples, "state": e.state.as_str(), "reason": e.reason, "target": format!("{target:#x}"),
                   "caller_module": agent.modules[mid].path, "callee_module": callee_module})
        })
        .collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e["calls"].as_u64().unwrap_or(0)));
    let compiles: Vec<Value> = agent
        .compiles
        .iter()
        .map(|c| json!({"function": c.function, "inlined": c.inlined, "ms": c.ms, "code_bytes": c.code_bytes,
                        "ok": c.ok, "error": c.error, "hot_to_patch_ms": c.hot_to_patch_ms}))
        .collect();
    let patches: Vec<Value> = agent
        .patches
        .iter()
        .map(|p| json!({"function": p.function, "from": format!("{:#x}", p.record.entry), "to": format!("{:#x}", p.record.target),
                        "active": p.active, "slot": format!("{:#x}", p.record.slot)}))
        .collect();
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    json!({"drti_dump_version": 1, "pid": std::process::id(), "exe": exe, "threshold": agent.config.hot_threshold,
           "sample_period": agent.config.sample_period(), "samples_dropped": crate::profile::dropped(),
           "jit_load_ms": agent.jit_load_ms,
           "modules": modules, "edges": edges, "compiles": compiles, "patches": patches})
}

/// Writes the dump to `path` (atomically: a temporary file renamed into place).
pub fn write(agent: &Agent, path: &str) {
    let text = match serde_json::to_string_pretty(&to_json(agent)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot serialise the dump: {e}");
            return;
        }
    };
    let tmp = format!("{path}.tmp{}", std::process::id());
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
        tracing::warn!("cannot write DRTI_DUMP={path}: {e}");
    }
}
