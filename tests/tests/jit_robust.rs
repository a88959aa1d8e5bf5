//! The JIT under programs that used to break it (issue 10 items 1, 3, 4 and 11): C++
//! exceptions through F+, inline and file-scope assembly, LLVM diagnostics, and a perf
//! map planted by someone else. Programs are `tests/progs/jit_*`, built with drti-cc -O2
//! and run with and without the agent; each case must print the same, exit 0, and the
//! dump must show that the JIT really compiled (or knowingly rejected) the code.

use drti_tests::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Compiles `src` (under tests/progs) with `compiler` -O2 and `flags` into `dir/out`.
fn compile(dir: &Path, compiler: &str, src: &str, out: &str, flags: &[&str]) {
    drti_tests::compile(dir, compiler, &[&format!("tests/progs/{src}")], out, flags);
}

/// The programs of this file, built once into target/e2e/jit_robust.
fn progs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("jit_robust");
        // Dynamic exception specifications were removed in C++17.
        compile(&d, "drti-c++", "jit_eh.cpp", "jit_eh", &["-std=c++14", "-Wno-deprecated"]);
        compile(&d, "drti-cc", "jit_asm.c", "jit_asm", &[]);
        compile(&d, "drti-cc", "jit_vectorize.c", "jit_vectorize", &["-Wno-pass-failed"]);
        compile(&d, "drti-cc", "jit_perfmap.c", "jit_perfmap", &[]);
        compile(&d, "drti-cc", "jit_weak.c", "jit_weak", &[]);
        d
    })
}

/// A command for `prog` with a clean drti environment, plus the agent and `env` when
/// `agent_env` is given.
fn command(dir: &Path, prog: &str, agent_env: Option<&[(&str, &str)]>) -> Command {
    program(dir, prog, &[], agent_env)
}

fn describe(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `prog` plain, then under the agent at each threshold; every agent run must exit
/// 0 with the plain run's stdout (and stderr too when `same_stderr`). Returns the dumps.
fn same_as_plain(prog: &str, thresholds: &[&str], same_stderr: bool) -> Vec<Dump> {
    let dir = progs();
    let plain = output_within(command(dir, prog, None), Duration::from_secs(60));
    assert!(plain.status.success(), "{prog} plain: {}", describe(&plain));
    thresholds
        .iter()
        .map(|t| {
            let dump = dir.join(format!("{prog}.{t}.json"));
            let _ = std::fs::remove_file(&dump);
            let env = [("DRTI_HOT_THRESHOLD", *t), ("DRTI_DUMP", dump.to_str().unwrap())];
            let out = output_within(command(dir, prog, Some(&env)), Duration::from_secs(120));
            let what = format!("{prog} under the agent at threshold {t}");
            assert!(out.status.success() && out.stdout == plain.stdout, "{what}: expected exit 0 and\n{}\ngot {}", String::from_utf8_lossy(&plain.stdout), describe(&out));
            if same_stderr {
                assert_eq!(String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&plain.stderr), "{what}: stderr differs");
            }
            read_dump_typed(&dump)
        })
        .collect()
}

/// The successful compiles of the dump whose function name starts with `prefix`.
fn ok_compiles<'a>(dump: &'a Dump, prefix: &str) -> Vec<&'a DumpCompile> {
    dump.compiles.iter().filter(|c| c.ok && c.function.starts_with(prefix)).collect()
}

// ---------------------------------------------------------------------------------------
// Item 1: C++ exceptions through F+ — typed catch, catch by base class, catch (...),
// rethrow, a dynamic exception specification, nested try, the standard exceptions. Used to catch by the wrong
// handler (type_info bound as an address constant) and to crash the JIT on `throw(A)`.

#[test]
fn exceptions_through_f_plus_reach_the_right_handler() {
    for (t, dump) in ["1", "200"].iter().zip(same_as_plain("jit_eh", &["1", "200"], false)) {
        for f in ["_Z7f_typed", "_Z6f_base", "_Z5f_all", "_Z9f_rethrow", "_Z6f_spec", "_Z8f_nested", "_Z5f_std"] {
            assert!(!ok_compiles(&dump, f).is_empty(), "threshold {t}: {f}* not compiled: {dump:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Item 3: inline assembly in F and in an inlined target, file-scope assembly in the
// module, and assembly that writes into another section (rejected, not copied). Used to
// end the process: "LLVM ERROR: Inline asm not supported by this streamer", SIGABRT.

#[test]
fn inline_assembly_is_compiled_or_rejected_never_fatal() {
    for (t, dump) in ["1", "100"].iter().zip(same_as_plain("jit_asm", &["1", "100"], true)) {
        let runs = ok_compiles(&dump, "run");
        for target in ["asm_add", "asm_xor"] {
            assert!(runs.iter().any(|c| c.inlined.iter().any(|n| n == target)), "threshold {t}: run+[{target}] not compiled: {dump:#}");
        }
        let section = dump.edge("run", "asm_section").unwrap_or_else(|| panic!("threshold {t}: no edge run->asm_section: {dump:#}"));
        assert_eq!(section.state, "rejected", "threshold {t}: {section}");
        assert!(section.reason.as_deref().unwrap_or("").contains("inline assembly"), "{section}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 4: `#pragma clang loop vectorize(enable)` on a loop LLVM cannot vectorize. The JIT
// used to print LLVM's "remark: ... loop not vectorized" and "warning: ..." lines into
// the program's stderr.

#[test]
fn llvm_diagnostics_stay_out_of_the_programs_stderr() {
    for (t, dump) in ["1", "100"].iter().zip(same_as_plain("jit_vectorize", &["1", "100"], true)) {
        assert!(!ok_compiles(&dump, "run").is_empty(), "threshold {t}: run not compiled: {dump:#}");
    }
    // The diagnostics are not lost: they are in the drti log at debug level.
    let dir = progs();
    let log = dir.join("vectorize.log");
    let env = [("DRTI_HOT_THRESHOLD", "1"), ("DRTI_LOG", "debug"), ("DRTI_LOG_FILE", log.to_str().unwrap())];
    let out = output_within(command(dir, "jit_vectorize", Some(&env)), Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("loop not vectorized"), "no LLVM diagnostic in the debug log:\n{text}");
}

/// A weak function the program lacks, tested and called in F: ORC used to fail the
/// compile and print "JIT session error: Symbols not found" on the program's stderr.
#[test]
fn an_absent_weak_symbol_is_null_in_the_copy_and_orc_errors_stay_quiet() {
    for (t, dump) in ["1", "100"].iter().zip(same_as_plain("jit_weak", &["1", "100"], true)) {
        assert!(!ok_compiles(&dump, "run").is_empty(), "threshold {t}: run not compiled: {dump:#}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 11: `DRTI_PERF_MAP=1` and a /tmp/perf-<pid>.map planted before the agent writes
// it. The JIT used to follow the symlink and append to its target.

/// Starts jit_perfmap under the agent with the perf map on; `plant(pid)` runs once the
/// program has printed its pid and before it starts calling; returns the output and the
/// pid (the caller removes the map).
fn perf_map_run(tag: &str, plant: impl FnOnce(u32)) -> (Output, u32) {
    let dir = progs();
    let log = dir.join(format!("perfmap.{tag}.log"));
    let _ = std::fs::remove_file(&log);
    let env = [("DRTI_HOT_THRESHOLD", "10"), ("DRTI_PERF_MAP", "1"), ("DRTI_LOG_FILE", log.to_str().unwrap())];
    let mut child =
        command(dir, "jit_perfmap", Some(&env)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn jit_perfmap");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let pid: u32 = first.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no pid line: {first:?}"));
    assert_eq!(pid, child.id());
    plant(pid);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut out = wait_within(child, Duration::from_secs(60));
    out.stdout = format!("{first}{rest}").into_bytes();
    out.stderr.extend(std::fs::read(&log).unwrap_or_default());
    (out, pid)
}

fn warnings_about_the_map(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("WARN") && l.contains("perf map")).map(str::to_owned).collect()
}

#[test]
fn perf_map_does_not_follow_a_planted_symlink() {
    let dir = progs();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let (out, pid) = perf_map_run("symlink", |pid| {
        let map = format!("/tmp/perf-{pid}.map");
        let _ = std::fs::remove_file(&map);
        std::os::unix::fs::symlink(&victim, &map).unwrap();
    });
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the symlink's target was written");
    let warnings = warnings_about_the_map(&out);
    assert_eq!(warnings.len(), 1, "expected one warning about the perf map: {}", describe(&out));
    assert!(warnings[0].contains("symbolic link"), "{}", warnings[0]);
}

#[test]
fn perf_map_refuses_a_file_of_another_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        println!("skip: needs root to give the planted map file to another user");
        return;
    }
    let (out, pid) = perf_map_run("owner", |pid| {
        let map = format!("/tmp/perf-{pid}.map");
        std::fs::write(&map, "theirs\n").unwrap();
        let st = Command::new("chown").args(["65534:65534", &map]).status().unwrap();
        assert!(st.success());
    });
    let map = format!("/tmp/perf-{pid}.map");
    let content = std::fs::read_to_string(&map).unwrap();
    let _ = std::fs::remove_file(&map);
    assert_eq!(content, "theirs\n", "another user's map file was written");
    assert!(out.status.success(), "{}", describe(&out));
    let warnings = warnings_about_the_map(&out);
    assert_eq!(warnings.len(), 1, "expected one warning about the perf map: {}", describe(&out));
    // The uid check, or the kernel's own (fs.protected_regular) refusing the open.
    assert!(warnings[0].contains("belongs to uid 65534") || warnings[0].contains("cannot open"), "{}", warnings[0]);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
