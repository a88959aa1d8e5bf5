//! Helpers for drti's end-to-end tests: paths of the built tools, building the demo
//! programs with clang-19 or drti-cc, running programs with or without the agent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A build product of `make build` (fails clearly when it is missing).
pub fn tool(name: &str) -> PathBuf {
    let p = repo().join("target/release").join(name);
    assert!(p.exists(), "{} is missing: run `make build` first (make test does)", p.display());
    p
}

/// The agent library.
pub fn agent() -> PathBuf {
    tool("libdrti_agent.so")
}

/// A fresh scratch directory under target/e2e.
pub fn scratch(name: &str) -> PathBuf {
    let d = repo().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds the demo programs into `out` with `cc`/`cxx` and extra flags.
pub fn build_demos(out: &Path, drti: bool, flags: &[&str]) {
    let (cc, cxx) = if drti {
        (tool("drti-cc").display().to_string(), tool("drti-c++").display().to_string())
    } else {
        ("clang-19".to_owned(), "clang++-19".to_owned())
    };
    let st = Command::new("bash")
        .arg(repo().join("demo/build.sh"))
        .arg(out)
        .arg(&cc)
        .arg(&cxx)
        .args(flags)
        .output()
        .expect("run demo/build.sh");
    assert!(st.status.success(), "demo/build.sh {cc} {flags:?} failed:\n{}", String::from_utf8_lossy(&st.stderr));
}

/// Removes every `DRTI_*` variable and `LD_PRELOAD` the test process inherited, and gives
/// the command a code cache of its own (empty), so every run compiles as the first run of
/// a program does and no test sees another's code (tests of the cache set
/// `DRTI_CACHE_DIR` themselves).
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("DRTI_") || k == "LD_PRELOAD") {
            cmd.env_remove(k);
        }
    }
    cmd.env("DRTI_CACHE_DIR", private_cache());
}

/// A fresh, unique cache directory under target/e2e/caches.
pub fn private_cache() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    repo().join("target/e2e/caches").join(format!("{}-{n}", std::process::id()))
}

/// `prog args` in `dir` with a clean drti environment, plus the agent and `agent_env` when
/// given.
pub fn program(dir: &Path, prog: &str, args: &[&str], agent_env: Option<&[(&str, &str)]>) -> Command {
    let mut cmd = Command::new(dir.join(prog));
    cmd.args(args).current_dir(dir);
    clean_env(&mut cmd);
    if let Some(env) = agent_env {
        with_agent(&mut cmd, env);
    }
    cmd
}

/// Preloads the agent with `env`, its thread at the program's priority. Unless `env` says
/// otherwise, exit waits (up to 20 s)
/// until the agent has nothing left to do (`DRTI_TEST_EXIT_WAIT_MS`), so what a test
/// reads in the dump does not depend on how busy the machine was; pass
/// `("DRTI_TEST_EXIT_WAIT_MS", "0")` to test exit itself.
pub fn with_agent(cmd: &mut Command, env: &[(&str, &str)]) {
    cmd.env("LD_PRELOAD", agent());
    cmd.env("DRTI_TEST_EXIT_WAIT_MS", "20000");
    // Tests run many programs at once on few cores: an agent thread at a lower priority
    // (the default) could be starved until a program ends. tests/tests/scheduling.rs
    // checks the default.
    cmd.env("DRTI_JIT_NICE", "0");
    cmd.envs(env.iter().copied());
}

/// Runs `prog args` in `dir` with extra environment; the agent is preloaded when `agent`.
pub fn run(dir: &Path, prog: &str, args: &[&str], agent_env: Option<&[(&str, &str)]>) -> Output {
    program(dir, prog, args, agent_env).output().unwrap_or_else(|e| panic!("run {prog}: {e}"))
}

/// Runs `cmd` (stdin closed), killing it by its pid after `limit`: `Err` with what it
/// printed on stderr if it was still running (a hang fails the test, it does not stall
/// the suite).
pub fn try_output_within(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    try_wait_within(child, limit).map_err(|e| format!("{cmd:?} {e}"))
}

/// Waits for a spawned child (stdout and stderr piped), killing it by its pid after `limit`.
pub fn try_wait_within(child: std::process::Child, limit: Duration) -> Result<Output, String> {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let start = Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = waiter.join().unwrap().map_err(|e| e.to_string())?;
            return Err(format!("(pid {pid}) still running after {limit:?}: killed; stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    waiter.join().unwrap().map_err(|e| e.to_string())
}

/// [`try_wait_within`] that panics on a hang.
pub fn wait_within(child: std::process::Child, limit: Duration) -> Output {
    try_wait_within(child, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// [`try_output_within`] that panics on a hang.
pub fn output_within(cmd: Command, limit: Duration) -> Output {
    try_output_within(cmd, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// Compiles `srcs` (relative to the repository) with `compiler` -O2 and `flags` into
/// `dir/out`; `compiler` is a build product (`drti-cc`, `drti-c++`) or a command on PATH.
pub fn compile(dir: &Path, compiler: &str, srcs: &[&str], out: &str, flags: &[&str]) {
    let cc = if compiler.starts_with("drti") { tool(compiler) } else { PathBuf::from(compiler) };
    let st = Command::new(&cc)
        .arg("-O2")
        .args(flags)
        .args(srcs.iter().map(|s| repo().join(s)))
        .args(["-o", out])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(st.status.success(), "{compiler} {srcs:?} {flags:?} failed:\n{}", String::from_utf8_lossy(&st.stderr));
}

/// `Err(msg())` unless `ok`: an assertion for tests that report failures as values (the
/// `libtest-mimic` ones, whose `?` turns the message into a failure).
pub fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Status, stdout and stderr of a run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// stdout of a successful run.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub use bitcode_embed::dump::{Dump, DumpCompile, DumpEdge, DumpModule, DumpPatch, DumpPhases};

/// Reads an agent's dump into the typed records ([`Dump`]; `dump.edge(caller, callee)`
/// finds an edge). Also checks that the types hold everything the agent wrote: the
/// records, written back, are the file's JSON exactly.
pub fn read_dump_typed(path: &Path) -> Dump {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("dump {}: {e}", path.display()));
    let dump = Dump::from_json(&text).unwrap_or_else(|e| panic!("dump {}: {e}", path.display()));
    let raw: serde_json::Value = serde_json::from_str(&text).expect("dump is valid JSON");
    let typed: serde_json::Value = serde_json::from_str(&dump.to_json().expect("dump serialises")).expect("valid JSON");
    assert_eq!(typed, raw, "dump {}: the agent wrote fields the dump types do not know", path.display());
    dump
}

/// Reads a dump as untyped JSON (prefer [`read_dump_typed`]; this is for a test that
/// looks at the raw text of a field).
pub fn read_dump(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("dump {}: {e}", path.display()));
    serde_json::from_str(&text).expect("dump is valid JSON")
}

/// The edge caller→callee of an untyped dump, if present (typed: [`Dump::edge`]).
pub fn edge<'a>(dump: &'a serde_json::Value, caller: &str, callee: &str) -> Option<&'a serde_json::Value> {
    dump["edges"].as_array()?.iter().find(|e| e["caller"] == caller && e["callee"] == callee)
}

/// The demo runs the tests compare: (program, small arguments).
pub const DEMO_RUNS: &[(&str, &[&str])] = &[
    ("kernel", &["twice", "300"]),
    ("kernel", &["square", "300"]),
    ("kernel", &["plus_one", "300"]),
    ("plugin_host", &["./plugin_twice.so", "300"]),
    ("plugin_host", &["./plugin_square.so", "300"]),
    ("virtual", &["mono", "300"]),
    ("virtual", &["poly", "300"]),
    ("sort", &["asc", "30"]),
    ("sort", &["desc", "30"]),
    ("counter", &["2000"]),
    ("threads", &["50"]),
    ("exception", &["1000"]),
];

#[cfg(test)]
mod dump_helper_tests {
    use super::*;

    fn write(name: &str, extra: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drti-read-dump-typed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut v: serde_json::Value = serde_json::from_str(&Dump { drti_dump_version: 1, pid: 9, ..Default::default() }.to_json().unwrap()).unwrap();
        if !extra.is_empty() {
            v["compiles"] = serde_json::json!([{"function": "f", "inlined": [], "ms": 1.0, "code_bytes": 2, "ok": true, "error": null,
                                                 "hot_to_patch_ms": null, "phases": null, extra: 1}]);
        }
        std::fs::write(&path, v.to_string()).unwrap();
        path
    }

    #[test]
    fn reads_what_the_types_hold() {
        assert_eq!(read_dump_typed(&write("ok.json", "")).pid, 9);
    }

    #[test]
    #[should_panic(expected = "fields the dump types do not know")]
    fn a_field_the_types_lack_is_caught() {
        read_dump_typed(&write("extra.json", "tier"));
    }
}
