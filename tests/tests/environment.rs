//! Tests that depend on the machine: a debugger (gdb) and root (setuid/setgid programs).
//! Own harness (libtest-mimic): where the tool or the privilege is missing, the test is
//! reported as ignored with the reason, not as passed. Moved here from reliability.rs.

use drti_tests::*;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::ignorable_test("gdb_backtrace_through_jit_code_names_the_function", gdb_backtrace_through_jit_code_names_the_function),
        Trial::ignorable_test("agent_does_nothing_in_setuid_or_setgid_process", agent_does_nothing_in_setuid_or_setgid_process),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Compiles `src` (relative to the repository) with drti-cc -O2 into `dir/out`.
fn compile(dir: &Path, src: &str, out: &str, flags: &[&str]) {
    drti_tests::compile(dir, "drti-cc", &[src], out, flags);
}

/// The programs of this file, built once into target/e2e/environment.
fn progs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("environment");
        compile(&d, "tests/progs/rel_gdb_abort.c", "rel_gdb_abort", &["-rdynamic", "-ldl"]);
        compile(&d, "tests/progs/rel_secure.c", "rel_secure", &["-ldl"]);
        d
    })
}

/// A command for `prog` without any drti or preload variable from the caller.
fn clean_command(prog: &Path) -> Command {
    let mut cmd = Command::new(prog);
    clean_env(&mut cmd);
    cmd
}

/// Runs `cmd`, killing it (by its pid) after `limit`: a hang is a failure, not a stuck suite.
fn output_within(cmd: Command, limit: Duration) -> Result<Output, Failed> {
    try_output_within(cmd, limit).map_err(Into::into)
}

fn describe(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ---------------------------------------------------------------------------------------
// A debugger's backtrace through F+.

fn have_gdb() -> bool {
    Command::new("sh").args(["-c", "command -v gdb"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// victim() (reached through a pointer in run) aborts once it runs inlined in run+; the
/// backtrace gdb prints must name run+ (LLVM's GDB JIT registration).
fn gdb_backtrace_through_jit_code_names_the_function() -> Result<Completion, Failed> {
    if !have_gdb() {
        return Ok(Completion::ignored_with("skip: gdb is not installed (scripts/setup.sh installs it when it can)"));
    }
    let dir = progs();
    let mut cmd = Command::new("gdb");
    cmd.current_dir(dir)
        .env_remove("LD_PRELOAD")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("set environment LD_PRELOAD={}", agent().display()))
        .args(["-ex", "set environment DRTI_HOT_THRESHOLD=10", "-ex", "set environment DRTI_JIT_NICE=0", "-ex", "run", "-ex", "bt", "--args"])
        .arg(dir.join("rel_gdb_abort"));
    let out = output_within(cmd, Duration::from_secs(120))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    check(text.contains("inlined after"), || format!("victim never ran inlined (the JIT did not patch run):\n{text}"))?;
    check(text.contains("SIGABRT"), || text.clone())?;
    // Frame lines: "#4  0x... in drti.plus[run] ()" — the JIT'd copy of run.
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    let jit_frame = frames.iter().any(|l| {
        let name = l.split(" in ").nth(1).unwrap_or(l.split_whitespace().nth(1).unwrap_or(""));
        let name = name.split_whitespace().next().unwrap_or("");
        name.contains("run") && name.contains("drti")
    });
    check(jit_frame, || format!("no backtrace frame names the JIT'd run:\n{}", frames.join("\n")))?;
    check(frames.iter().any(|l| l.contains(" main ")), || format!("the backtrace continues to main:\n{}", frames.join("\n")))?;
    Ok(Completion::Completed)
}

// ---------------------------------------------------------------------------------------
// AT_SECURE.

/// Removes a directory tree when dropped.
struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &str) -> Result<(), Failed> {
    let st = Command::new("sh").args(["-c", cmd]).status().map_err(|e| e.to_string())?;
    check(st.success(), || format!("failed: {cmd}"))?;
    Ok(())
}

fn id(args: &[&str]) -> Option<String> {
    let o = Command::new("id").args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Three copies of rel_secure in a private directory, run as root: setuid root (AT_SECURE=0:
/// the control, the agent must act), setuid nobody and setgid nogroup (AT_SECURE=1: the agent
/// is loaded but must do nothing: no log, no dump, same output). In secure mode glibc
/// ignores LD_PRELOAD paths with a '/' and preloads bare names only from the system library
/// directories, so instead of installing the agent there, the program dlopen()s it by
/// absolute path — the agent's constructor then runs in the secure process all the same.
/// DRTI_JIT=0: a dlopen'd agent does not interpose `__cxa_atexit`, and LLVM must not be
/// loaded then (its static destructors would run while the agent thread compiles); the
/// secure-mode check comes before the configuration is read at all.
fn agent_does_nothing_in_setuid_or_setgid_process() -> Result<Completion, Failed> {
    if id(&["-u"]).as_deref() != Some("0") {
        return Ok(Completion::ignored_with("skip: needs root (to make setuid/setgid copies of the test program)"));
    }
    if id(&["-u", "nobody"]).is_none() || id(&["-g", "nobody"]).is_none() || Command::new("getent").args(["group", "nogroup"]).output().map_or(true, |o| !o.status.success()) {
        return Ok(Completion::ignored_with("skip: needs the user nobody and the group nogroup"));
    }
    // A private directory the test user nobody can reach wherever the repository lives
    // (a clone under a 0700 directory is not), removed afterwards.
    let tmp = std::env::temp_dir().join(format!("drti-secure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let _cleanup = RemoveDir(tmp.clone());
    // The secure copies run as nobody: they must be able to enter the directory (and an
    // agent that wrongly started would write its dump there, which the test would see).
    sh(&format!("chmod 0777 '{}'", tmp.display()))?;
    let agent_path = tmp.join("libdrti_agent.so");
    std::fs::copy(agent(), &agent_path).map_err(|e| e.to_string())?;
    let agent_arg = agent_path.to_str().ok_or("agent path is not UTF-8")?;
    let src = progs().join("rel_secure");
    let plain = output_within(clean_command(&src), Duration::from_secs(60))?;
    check(plain.status.success(), || describe(&plain))?;
    let cases = [("suid-root", "chown root:root", "4755", false), ("suid-nobody", "chown nobody", "4755", true), ("sgid-nogroup", "chgrp nogroup", "2755", true)];
    for (name, chown, mode, secure) in cases {
        let prog = tmp.join(name);
        std::fs::copy(&src, &prog).map_err(|e| e.to_string())?;
        sh(&format!("{chown} '{}' && chmod {mode} '{}'", prog.display(), prog.display()))?;
        let dump = tmp.join(format!("{name}.json"));
        let mut cmd = clean_command(&prog);
        cmd.current_dir(&tmp).args(["2000", agent_arg]).env("DRTI_JIT", "0").env("DRTI_LOG", "info").env("DRTI_DUMP", &dump);
        let out = output_within(cmd, Duration::from_secs(60))?;
        check(out.status.success() && out.stdout == plain.stdout, || format!("{name}: expected exit 0 and\n{}\ngot {}", String::from_utf8_lossy(&plain.stdout), describe(&out)))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let facts = err.lines().find(|l| l.starts_with("secure=")).ok_or_else(|| format!("{name}: {err}"))?;
        check(facts.contains("agent_mapped=1"), || format!("{name}: the agent was not loaded: {err}"))?;
        check(facts.starts_with(if secure { "secure=1" } else { "secure=0" }), || format!("{name}: {facts}"))?;
        let logged = err.lines().any(|l| l.contains("drti agent starting"));
        if secure {
            check(!logged, || format!("{name}: the agent started in an AT_SECURE process: {err}"))?;
            check(!dump.exists(), || format!("{name}: the agent wrote a dump in an AT_SECURE process"))?;
        } else {
            check(logged, || format!("{name} (control): the agent should start: {err}"))?;
            check(dump.exists(), || format!("{name} (control): the agent should write its dump"))?;
        }
    }
    Ok(Completion::Completed)
}
