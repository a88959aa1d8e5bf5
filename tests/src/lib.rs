//! Helpers for drti's end-to-end tests: paths of the built tools, building the demo
//! programs with clang-19 or drti-cc, running programs with or without the agent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Runs `prog args` in `dir` with extra environment; the agent is preloaded when `agent`.
pub fn run(dir: &Path, prog: &str, args: &[&str], agent_env: Option<&[(&str, &str)]>) -> Output {
    let mut cmd = Command::new(dir.join(prog));
    cmd.args(args).current_dir(dir);
    for v in ["DRTI_HOT_THRESHOLD", "DRTI_LOG", "DRTI_LOG_FILE", "DRTI_DUMP", "DRTI_JIT", "DRTI_MAX_TARGETS", "DRTI_PERF_MAP", "DRTI_DISABLE"] {
        cmd.env_remove(v);
    }
    if let Some(env) = agent_env {
        cmd.env("LD_PRELOAD", agent());
        for (k, v) in env {
            cmd.env(k, v);
        }
    }
    cmd.output().unwrap_or_else(|e| panic!("run {prog}: {e}"))
}

/// stdout of a successful run.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads a JSON dump.
pub fn read_dump(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("dump {}: {e}", path.display()));
    serde_json::from_str(&text).expect("dump is valid JSON")
}

/// The edge caller→callee of a dump, if present.
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
