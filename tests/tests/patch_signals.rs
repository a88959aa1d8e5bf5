//! Redirecting functions that threads with every signal blocked are running (issue 10,
//! item 5). The old protocol put an int3 on the entry while it rewrote it and relied on a
//! SIGTRAP handler; a thread that blocks SIGTRAP and hits the int3 is killed by the kernel
//! (20 of 20 runs of tests/progs/patch_sigblock.c died with SIGTRAP on the commit before
//! redirect slots). Now the agent redirects through a data slot the instrumenter laid out,
//! so no signal is ever involved.

use drti_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RUNS: usize = 20;
/// About 1 s per run: the agent thread competes with 32 busy threads for 2 cores, and exit
/// does not wait for its compiles.
const ARGS: &[&str] = &["3000000"];

fn build(dir: &Path) -> PathBuf {
    let out = dir.join("patch_sigblock");
    let st = Command::new(tool("drti-cc"))
        .args(["-O2", "-pthread"])
        .arg(repo().join("tests/progs/patch_sigblock.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run drti-cc");
    assert!(st.status.success(), "drti-cc failed:\n{}", String::from_utf8_lossy(&st.stderr));
    out
}

fn command(prog: &Path, dir: &Path, env: &[(&str, &str)], agent: bool) -> Command {
    let mut cmd = Command::new(prog);
    cmd.current_dir(dir);
    clean_env(&mut cmd);
    if agent {
        with_agent(&mut cmd, env);
    } else {
        cmd.envs(env.iter().copied());
    }
    cmd
}

/// 32 threads with all signals blocked call `work` while it is redirected, reverted (its
/// target moves through three phases) and redirected again, at threshold 1: every one of
/// 20 runs exits 0 with the plain run's output, and the dumps show that `work` really was
/// redirected and compiled more than once per run on average.
#[test]
fn threads_blocking_all_signals_survive_redirection() {
    let dir = scratch("patch_signals");
    let prog = build(&dir);
    let mut cmd = command(&prog, &dir, &[], false);
    cmd.args(ARGS);
    let plain = output_within(cmd, Duration::from_secs(60));
    assert!(plain.status.success(), "plain run failed: {plain:?}");
    let want = String::from_utf8_lossy(&plain.stdout).into_owned();

    let mut failures = Vec::new();
    let (mut patched_runs, mut compiles) = (0, 0);
    for i in 0..RUNS {
        let dump = dir.join(format!("run-{i}.json"));
        let _ = std::fs::remove_file(&dump);
        let env = [("DRTI_HOT_THRESHOLD", "1"), ("DRTI_DUMP", dump.to_str().unwrap())];
        let mut cmd = command(&prog, &dir, &env, true);
        cmd.args(ARGS);
        let out = output_within(cmd, Duration::from_secs(120));
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) != want {
            failures.push(format!("run {i}: status {:?}, stdout:\n{}stderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
            continue;
        }
        let v = read_dump_typed(&dump);
        if v.patches.iter().any(|p| p.function == "work") {
            patched_runs += 1;
        }
        compiles += v.compiles_of("work").filter(|c| c.ok).count();
    }
    assert!(failures.is_empty(), "{} of {RUNS} runs failed; first:\n{}", failures.len(), failures[0]);
    assert!(patched_runs >= RUNS * 3 / 4, "work was redirected in only {patched_runs} of {RUNS} runs");
    assert!(compiles > RUNS, "work was never re-compiled after its target moved: {compiles} compiles in {RUNS} runs");
}

/// Function shapes the redirect entry must forward exactly (tests/progs/patch_entry_kinds.cpp)
/// at -O0, -O2 and -O2 -g: same output as the plain build, the shapes that can be
/// redirected were, and the byval one (which LLVM 19 cannot musttail correctly: it
/// crashed with SIGSEGV before it was excluded) has no slot and stays unoptimised.
#[test]
fn entry_kinds_forward_exactly() {
    let dir = scratch("patch_entry_kinds");
    let src = repo().join("tests/progs/patch_entry_kinds.cpp");
    for (i, flags) in [&["-O0"][..], &["-O2"], &["-O2", "-g"]].iter().enumerate() {
        let (plain, drti) = (dir.join(format!("plain{i}")), dir.join(format!("drti{i}")));
        for (cc, out) in [("clang++-19".into(), &plain), (tool("drti-c++").display().to_string(), &drti)] {
            let st = Command::new(&cc).args(*flags).arg(&src).arg("-o").arg(out).output().expect("compile");
            assert!(st.status.success(), "{cc} {flags:?}: {}", String::from_utf8_lossy(&st.stderr));
        }
        let dump = dir.join(format!("dump{i}.json"));
        let env = [("DRTI_HOT_THRESHOLD", "1"), ("DRTI_DUMP", dump.to_str().unwrap())];
        let mut cmd = command(&drti, &dir, &env, true);
        cmd.args(["6000000", "127"]); // ~0.5 s at -O0: compiles finish before exit (exit does not wait for them)
        let got = output_within(cmd, Duration::from_secs(120));
        let mut cmd = command(&plain, &dir, &[], false);
        cmd.args(["6000000", "127"]); // ~0.5 s at -O0: compiles finish before exit (exit does not wait for them)
        let want = output_within(cmd, Duration::from_secs(60));
        assert!(got.status.success() && got.stdout == want.stdout, "{flags:?}: {got:?}\nwant {:?}", String::from_utf8_lossy(&want.stdout));
        let v = read_dump_typed(&dump);
        let patched: Vec<&str> = v.patches.iter().map(|p| p.function.as_str()).collect();
        for f in ["_Z4vignPFiiEiz", "_Z3recPFiiEi", "_Z2exPFiiEi", "_Z6mkpairPFiiEi"] {
            assert!(patched.contains(&f), "{flags:?}: {f} was not redirected: {v:#}");
        }
        assert!(!patched.contains(&"_Z8by_value3BigPFiiE"), "{flags:?}: the byval function has no slot: {v:#}");
    }
}
