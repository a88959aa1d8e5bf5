//! Reliability (issue 5): never wrong, never a crash — under threads, exceptions, fork,
//! dlclose/dlopen and W^X sampling (the gdb and AT_SECURE tests are in environment.rs).
//! Programs come from `demo/` and `tests/progs/rel_*.c`, built with drti-cc -O2 and run
//! with and without the agent.
//!
//! Repeated cases run `runs()` times: 10 by default, 100 with `DRTI_LONG_TESTS=1`.

use drti_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// Runs per repeated case.
fn runs() -> usize {
    if std::env::var("DRTI_LONG_TESTS").is_ok_and(|v| v == "1") {
        100
    } else {
        10
    }
}

/// The programs of this file, built once into target/e2e/reliability.
fn progs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("reliability");
        compile(&d, "drti-cc", &["demo/threads.c"], "threads", &["-pthread"]);
        compile(&d, "drti-cc", &["tests/progs/rel_threads_quiesce.c"], "rel_threads_quiesce", &["-pthread"]);
        compile(&d, "drti-c++", &["demo/exception.cpp"], "exception", &[]);
        compile(&d, "drti-cc", &["tests/progs/rel_fork.c"], "rel_fork", &[]);
        compile(&d, "drti-cc", &["tests/progs/rel_reload_host.c"], "rel_reload_host", &["-ldl"]);
        compile(&d, "drti-cc", &["tests/progs/rel_reload_plugin.c"], "reload_a.so", &["-fPIC", "-shared", "-DPLUGIN_MUL=3"]);
        compile(&d, "drti-cc", &["tests/progs/rel_reload_plugin.c"], "reload_b.so", &["-fPIC", "-shared", "-DPLUGIN_MUL=5"]);
        compile(&d, "drti-cc", &["tests/progs/rel_wx.c"], "rel_wx", &["-pthread"]);
        d
    })
}

/// Spawns all `cmds` at once (at most `batch` at a time) and returns their outputs in order.
fn outputs_batched(cmds: Vec<Command>, batch: usize, limit: Duration) -> Vec<Output> {
    let mut out = Vec::new();
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let group: Vec<_> = cmds.by_ref().take(batch).map(|c| std::thread::spawn(move || output_within(c, limit))).collect();
        out.extend(group.into_iter().map(|h| h.join().unwrap()));
    }
    out
}

/// stdout of a run that must have exited 0 with exactly `want` on stdout.
fn assert_same(out: &Output, want: &str, what: &str) {
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout) == want, "{what}: expected exit 0 and\n{want}\ngot {}", describe(out));
}

/// The dump of `path`, which must be a dump of version 1.
fn dump_v1(path: &Path) -> Dump {
    read_dump_typed(path)
}

// ---------------------------------------------------------------------------------------
// 1. 8 threads through one site while its function is patched and re-patched.

/// demo/threads: identical output and exit 0 on every run, under `threshold` (None =
/// default). The program exits right after its threads finish, often while the agent
/// thread is still compiling (this used to crash: SIGSEGV/SIGABRT inside LLVM, or a hang,
/// fixed in 4b1b791).
fn threads_case(threshold: Option<&str>) {
    let dir = progs();
    let args = ["1000"];
    let plain = stdout_ok(&run(dir, "threads", &args, None), "threads");
    let mut env: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = threshold {
        env.push(("DRTI_HOT_THRESHOLD", t));
    }
    let mut failures = Vec::new();
    for i in 0..runs() {
        let out = output_within(program(dir, "threads", &args, Some(&env)), Duration::from_secs(60));
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) != plain {
            failures.push(format!("run {i}: {}", describe(&out)));
        }
    }
    assert!(failures.is_empty(), "threshold {threshold:?}: {} of {} runs failed; first:\n{}", failures.len(), runs(), failures[0]);
}

#[test]
fn threads_repatching_threshold_1() {
    threads_case(Some("1"));
}

#[test]
fn threads_repatching_default_threshold() {
    threads_case(None);
}

/// The same 8-thread program with a pause before exit (tests/progs/rel_threads_quiesce.c),
/// so every compile ends before the process does and each run shows in its dump that
/// `work` was patched (and re-patched) while 8 threads ran it. Runs go 2 at a time (the
/// pause costs no CPU).
fn threads_quiesced_case(threshold: Option<&str>, tag: &str) -> usize {
    let dir = progs();
    let args = ["1000", "1000"];
    let plain = stdout_ok(&run(dir, "threads", &args[1..], None), "threads");
    let mut cmds = Vec::new();
    let dumps: Vec<PathBuf> = (0..runs()).map(|i| dir.join(format!("threads-{tag}-{i}.json"))).collect();
    for d in &dumps {
        let _ = std::fs::remove_file(d);
        let mut env: Vec<(&str, &str)> = vec![("DRTI_DUMP", d.to_str().unwrap())];
        if let Some(t) = threshold {
            env.push(("DRTI_HOT_THRESHOLD", t));
        }
        cmds.push(program(dir, "rel_threads_quiesce", &args, Some(&env)));
    }
    let outs = outputs_batched(cmds, 2, Duration::from_secs(120));
    let mut compiles = 0;
    for (i, (out, d)) in outs.iter().zip(&dumps).enumerate() {
        assert_same(out, &plain, &format!("run {i} (threshold {threshold:?})"));
        let v = dump_v1(d);
        // work was compiled and patched; the patch may since have been reverted (the
        // agent deoptimises when guard misses dominate, and the target moves here).
        for c in &v.compiles {
            assert!(c.ok, "run {i}: {c}");
        }
        assert!(v.patches.iter().any(|p| p.function == "work"), "run {i}: work was never patched: {v:#}");
        let active = v.patches.iter().filter(|p| p.function == "work" && p.active).count();
        assert!(active <= 1, "run {i}: at most one active patch of work: {v:#}");
        assert!(v.edges.iter().any(|e| e.caller == "work" && (e.state == "inlined" || e.state == "invalidated")), "run {i}: {v:#}");
        compiles += v.compiles.len();
    }
    compiles
}

#[test]
fn threads_repatching_quiesced_threshold_1() {
    let compiles = threads_quiesced_case(Some("1"), "t1");
    // The target moves (3 phases): work must have been compiled and patched again.
    assert!(compiles > runs(), "work was never re-compiled: {compiles} compiles in {} runs", runs());
}

#[test]
fn threads_repatching_quiesced_default_threshold() {
    threads_quiesced_case(None, "default");
}

// ---------------------------------------------------------------------------------------
// 2. Exceptions through F+.

/// demo/exception at a size where the JIT patches `run` early and ~90% of the exceptions
/// are thrown by the inlined Checked::apply inside run+ (or pass through it on a guard
/// miss). `runs=` counts Tally destructors: it must equal ITERS, unwinding included (it
/// did not before 4b1b791: cleanups in F+ were skipped).
#[test]
fn exception_through_inlined_callee_is_caught_by_caller() {
    let dir = progs();
    let args = ["60000"];
    let plain = stdout_ok(&run(dir, "exception", &args, None), "exception");
    assert!(plain.contains("caught=600 runs=60000"), "{plain}");
    for threshold in ["50", "10000"] {
        let dump = dir.join(format!("exception-{threshold}.json"));
        let out = output_within(
            program(dir, "exception", &args, Some(&[("DRTI_HOT_THRESHOLD", threshold), ("DRTI_DUMP", dump.to_str().unwrap())])),
            Duration::from_secs(60),
        );
        assert_same(&out, &plain, &format!("exception, threshold {threshold}"));
        let v = dump_v1(&dump);
        let e = v.edge("_Z3runRK2Opll", "_ZNK7Checked5applyEl").unwrap_or_else(|| panic!("no edge run -> Checked::apply: {v:#}"));
        assert_eq!(e.state, "inlined", "{v:#}");
        assert!(v.patches.iter().any(|p| p.function == "_Z3runRK2Opll" && p.active), "{v:#}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. fork() while profiling and after patching.

#[test]
fn fork_parent_and_children_finish_with_valid_dumps() {
    let dir = progs();
    let args = ["200", "4", "400"];
    let plain = run(dir, "rel_fork", &args, None);
    let plain = stdout_ok(&plain, "rel_fork");
    for threshold in ["1", "50", "10000", "1000000000"] {
        let dump = dir.join(format!("fork-{threshold}.json"));
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("fork-{threshold}.json")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let out = output_within(
            program(dir, "rel_fork", &args, Some(&[("DRTI_HOT_THRESHOLD", threshold), ("DRTI_DUMP", dump.to_str().unwrap())])),
            Duration::from_secs(60),
        );
        assert_same(&out, &plain, &format!("rel_fork, threshold {threshold}"));
        let v = dump_v1(&dump);
        let children: Vec<u32> = String::from_utf8_lossy(&out.stderr).lines().filter_map(|l| l.strip_prefix("child=")?.trim().parse().ok()).collect();
        assert_eq!(children.len(), 4, "{}", describe(&out));
        assert!(!children.contains(&v.pid), "the parent's dump names the parent, not a child: {}", v.pid);
        for pid in children {
            let cd = dump_v1(&PathBuf::from(format!("{}.{pid}", dump.display())));
            assert_eq!(cd.pid, pid, "child dump names its own pid");
        }
        if threshold == "50" || threshold == "10000" {
            // Patched at some point (it may have been reverted since: targets alternate,
            // and the agent deoptimises when guard misses dominate).
            let compiled = v.compiles_of("apply").any(|c| c.ok);
            let patched = v.patches.iter().any(|p| p.function == "apply");
            assert!(compiled && patched, "threshold {threshold}: parent never patched apply: {v:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. dlclose of an inlined plugin, dlopen of another at the same address.

fn reload(threshold: &str, tag: &str) -> (Output, Dump, String) {
    let dir = progs();
    let args = ["300", "150", "./reload_a.so", "./reload_b.so", "./reload_a.so", "./reload_b.so"];
    let plain = stdout_ok(&run(dir, "rel_reload_host", &args, None), "rel_reload_host");
    assert_eq!(plain.lines().count(), 4, "{plain}");
    let dump = dir.join(format!("reload-{tag}.json"));
    let out = output_within(
        program(dir, "rel_reload_host", &args, Some(&[("DRTI_HOT_THRESHOLD", threshold), ("DRTI_DUMP", dump.to_str().unwrap())])),
        Duration::from_secs(60),
    );
    let v = dump_v1(&dump);
    (out, v, plain)
}

#[test]
fn dlclose_then_dlopen_at_same_address_never_runs_old_inlined_copy() {
    for (threshold, tag) in [("1", "t1"), ("10000", "default")] {
        let (out, v, plain) = reload(threshold, tag);
        // The host checks each plugin's sum against what that plugin computes and its
        // call counter; identical output means B's results were B's.
        assert_same(&out, &plain, &format!("rel_reload_host, threshold {threshold}"));
        let err = String::from_utf8_lossy(&out.stderr);
        let addrs: Vec<&str> = err.lines().filter_map(|l| l.split(" at ").nth(1)).collect();
        if addrs.windows(2).any(|w| w[0] != w[1]) {
            eprintln!("note: the plugins did not all land at the same address: {addrs:?}");
        }
        let a = v
            .edges
            .iter()
            .find(|e| e.callee == "plugin_fn" && e.callee_module.ends_with("reload_a.so"))
            .unwrap_or_else(|| panic!("threshold {threshold}: no edge into reload_a.so: {v:#}"));
        assert_eq!(a.state, "invalidated", "threshold {threshold}: A's inlined edge must be invalidated: {v:#}");
        assert!(v.patches.iter().all(|p| !p.active), "every plugin is closed at exit: {v:#}");
    }
}

/// After A is closed and B opened at the same address, B's calls are a new edge (callee
/// module reload_b.so), which is profiled and inlined on its own.
#[test]
fn reloaded_plugin_gets_its_own_edge() {
    let (out, v, plain) = reload("10000", "own-edge");
    assert_same(&out, &plain, "rel_reload_host");
    let b = v.edges.iter().find(|e| e.callee_module.ends_with("reload_b.so"));
    let b = b.unwrap_or_else(|| panic!("no edge into reload_b.so: {v:#}"));
    // B was inlined too; it is closed before exit, so its edge ends invalidated.
    assert_eq!(b.state, "invalidated", "B's edge: {v:#}");
    assert!(v.compiles.len() >= 2, "B needs a compile of its own: {v:#}");
}

// ---------------------------------------------------------------------------------------
// 5. W^X while patching.

/// The agent writes no code (F+ is published through a data redirect slot); the JIT maps
/// F+'s memory writable, then executable. No mapping may ever be both, while six functions
/// are compiled, redirected and re-targeted.
#[test]
fn no_mapping_is_ever_writable_and_executable() {
    let dir = progs();
    let plain = stdout_ok(&run(dir, "rel_wx", &["300", "0"], None), "rel_wx");
    let n = if runs() > 10 { 10 } else { 3 };
    for i in 0..n {
        let dump = dir.join(format!("wx-{i}.json"));
        let out = output_within(
            program(dir, "rel_wx", &["300", "800", "400"], Some(&[("DRTI_HOT_THRESHOLD", "1"), ("DRTI_DUMP", dump.to_str().unwrap())])),
            Duration::from_secs(60),
        );
        assert_same(&out, &plain, "rel_wx");
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.starts_with("samples=")).unwrap_or_else(|| panic!("{err}"));
        let field = |k: &str| -> u64 { line.split_whitespace().find_map(|w| w.strip_prefix(k)?.parse().ok()).unwrap() };
        assert!(field("samples=") > 20, "the sampler barely ran: {line}");
        assert_eq!(field("wx="), 0, "a mapping was writable and executable: {err}");
        let v = dump_v1(&dump);
        let patched = v.patches.len();
        assert!(patched >= 4, "several functions must have been patched while sampling, got {patched}: {v:#}");
    }
}
