//! Process limits (issue 10, items 7 and 8): under a memory limit (`ulimit -v`, `ulimit -d`)
//! and in sanitizer builds, a program under the agent prints what it prints without it and
//! exits with the same code; the agent says so in at most one line.
//!
//! Before the guardrails, `ulimit -v 80000` and `ulimit -d 8000` ended in `std::bad_alloc`
//! (or "LLVM ERROR: out of memory") from LLVM, `ulimit -v 100000` in "memory allocation of
//! N bytes failed" from the agent's Rust code, all killed by SIGABRT; the ASan and MSan
//! builds exited 1 with reports, and the TSan build ran the agent (no note).
//!
//! Own harness (libtest-mimic): a sanitizer clang-19 cannot build or run here is reported
//! as ignored with the reason, not as passed.

use drti_tests::*;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const PROG: &str = "tests/progs/limits_hot.c";
/// Arguments of limits_hot: 1 MB of its own, 40000 calls of apply (~150 ms: the edge is
/// hot and the JIT requested well before the end), no threads, exit code 3.
const ARGS: &[&str] = &["1", "40000", "0", "3"];

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test("ulimit_v_80mb_same_output_at_most_one_warning", || limit_case("-v", 80_000)),
        Trial::test("ulimit_v_100mb_same_output_at_most_one_warning", || limit_case("-v", 100_000)),
        Trial::test("ulimit_d_8mb_same_output_at_most_one_warning", || limit_case("-d", 8_000)),
        Trial::test("generous_limit_still_optimises", generous_limit_still_optimises),
    ];
    for (flag, name) in [("address", "AddressSanitizer"), ("thread", "ThreadSanitizer"), ("memory", "MemorySanitizer")] {
        trials.push(Trial::ignorable_test(format!("sanitizer_{flag}_agent_stays_off_with_one_note"), move || sanitizer_case(flag, name)));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Builds `src` with `cc` and flags into `dir/out`; Err(clang's message) on failure.
fn build(dir: &Path, cc: &Path, flags: &[&str], out: &str) -> Result<(), String> {
    let o = Command::new(cc).args(flags).arg(repo().join(PROG)).args(["-pthread", "-o", out]).current_dir(dir).output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).lines().take(3).collect::<Vec<_>>().join(" / "))
    }
}

/// limits_hot built with drti-cc -O2, once.
fn decorated() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("process_limits");
        build(&d, &tool("drti-cc"), &["-O2"], "limits_hot").expect("drti-cc limits_hot.c");
        d
    })
}

/// Runs `prog ARGS` in `dir` through `sh -c 'ulimit FLAG KB; exec ...'` (no limit when
/// `limit` is None), with the agent and `env` when `agent` is true.
fn run_limited(dir: &Path, prog: &str, args: &[&str], limit: Option<(&str, u64)>, agent_env: Option<&[(&str, &str)]>) -> Output {
    let mut script = String::new();
    if let Some((flag, kb)) = limit {
        script.push_str(&format!("ulimit {flag} {kb} || exit 99; "));
    }
    script.push_str("exec \"$@\"");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("sh").arg(dir.join(prog)).args(args).current_dir(dir);
    clean_env(&mut cmd);
    if let Some(env) = agent_env {
        with_agent(&mut cmd, env);
    }
    cmd.output().expect("run sh")
}

/// Lines of `with`'s stderr that `without`'s stderr does not have.
fn extra_stderr_lines(with: &Output, without: &Output) -> Vec<String> {
    let base = String::from_utf8_lossy(&without.stderr).into_owned();
    String::from_utf8_lossy(&with.stderr).lines().filter(|l| !base.lines().any(|b| b == *l)).map(str::to_owned).collect()
}

/// Under `ulimit FLAG KB`, the agent's run prints and exits like the plain one, with at
/// most one line of its own on stderr.
fn limit_case(flag: &str, kb: u64) -> Result<(), Failed> {
    let dir = decorated();
    let plain = run_limited(dir, "limits_hot", ARGS, Some((flag, kb)), None);
    check(plain.status.code() == Some(3) && plain.stdout.starts_with(b"job 0: "), || format!("plain run under ulimit {flag} {kb}: {}", describe(&plain)))?;
    for threshold in ["1", "100"] {
        let out = run_limited(dir, "limits_hot", ARGS, Some((flag, kb)), Some(&[("DRTI_HOT_THRESHOLD", threshold)]));
        let what = format!("ulimit {flag} {kb}, DRTI_HOT_THRESHOLD={threshold}");
        check(out.status.code() == plain.status.code() && out.stdout == plain.stdout, || {
            format!("{what}: expected exit {:?} and\n{}\ngot {}", plain.status.code(), String::from_utf8_lossy(&plain.stdout), describe(&out))
        })?;
        let extra = extra_stderr_lines(&out, &plain);
        check(extra.len() <= 1, || format!("{what}: more than one line from the agent:\n{}", extra.join("\n")))?;
        check(extra.iter().all(|l| l.contains("WARN") && (l.contains("JIT off") || l.contains("agent off"))), || {
            format!("{what}: the agent's line must be its memory warning:\n{}", extra.join("\n"))
        })?;
    }
    Ok(())
}

/// With room to spare (`ulimit -v` 2 GiB) the guardrails let the JIT work: `apply` is
/// compiled and patched.
fn generous_limit_still_optimises() -> Result<(), Failed> {
    let dir = decorated();
    let dump = dir.join("generous.json");
    let _ = std::fs::remove_file(&dump);
    let plain = run_limited(dir, "limits_hot", ARGS, None, None);
    let out = run_limited(dir, "limits_hot", ARGS, Some(("-v", 2 << 20)), Some(&[("DRTI_HOT_THRESHOLD", "100"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    check(out.status.code() == Some(3) && out.stdout == plain.stdout && out.stderr.is_empty(), || describe(&out))?;
    let v = read_dump_typed(&dump);
    let patched = v.patches.iter().any(|p| p.function == "apply");
    check(patched, || format!("apply was not patched under a 2 GiB limit: {v:#}"))?;
    Ok(())
}

/// A `-fsanitize=FLAG` build (drti-cc and plain clang-19, same flags) runs under the agent
/// exactly as without it, exit 0, plus one note naming the sanitizer.
fn sanitizer_case(flag: &str, name: &str) -> Result<Completion, Failed> {
    let dir = decorated();
    let flags = ["-O1", "-g", &format!("-fsanitize={flag}")];
    let (plain_exe, drti_exe) = (format!("plain_{flag}"), format!("drti_{flag}"));
    if let Err(e) = build(dir, Path::new("clang-19"), &flags, &plain_exe) {
        return Ok(Completion::ignored_with(format!("skip: clang-19 -fsanitize={flag} cannot build here: {e}")));
    }
    build(dir, &tool("drti-cc"), &flags, &drti_exe).map_err(|e| format!("drti-cc -fsanitize={flag}: {e}"))?;
    // Two threads for ThreadSanitizer's sake; exit code 0 (sanitizers exit non-zero on a report).
    let args = ["1", "40000", "2", "0"];
    let plain = run_limited(dir, &plain_exe, &args, None, None);
    if !plain.status.success() {
        return Ok(Completion::ignored_with(format!("skip: a -fsanitize={flag} program does not run here: {}", describe(&plain).replace('\n', " / "))));
    }
    let reference = run_limited(dir, &drti_exe, &args, None, None);
    check(reference.status.success() && reference.stdout == plain.stdout, || format!("{drti_exe} without the agent: {}", describe(&reference)))?;
    let out = run_limited(dir, &drti_exe, &args, None, Some(&[("DRTI_HOT_THRESHOLD", "1")]));
    check(out.status.success() && out.stdout == plain.stdout, || format!("{drti_exe} under the agent: expected exit 0 and\n{}\ngot {}", String::from_utf8_lossy(&plain.stdout), describe(&out)))?;
    let extra = extra_stderr_lines(&out, &reference);
    check(extra.len() == 1 && extra[0].contains(name) && extra[0].contains("agent off"), || {
        format!("{drti_exe}: expected exactly one note naming {name}, got:\n{}", extra.join("\n"))
    })?;
    Ok(Completion::Completed)
}
