//! The agent thread, which compiles, runs at a lower priority than the program
//! (`DRTI_JIT_NICE`, default 10 over the program's nice value), so compiles on a machine
//! whose cores are busy do not take the program's CPU time. Program: tests/progs/agent_nice.c.

use drti_tests::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn progs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("scheduling");
        compile(&d, "drti-cc", &["tests/progs/agent_nice.c"], "agent_nice", &[]);
        d
    })
}

/// What the program says about the agent thread's nice value, waiting for `delta`; the
/// agent gets `env` and no `DRTI_JIT_NICE` of the test helpers.
fn agent_nice(delta: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = program(progs(), "agent_nice", &[delta], Some(&[]));
    cmd.env_remove("DRTI_JIT_NICE").envs(env.iter().copied());
    let out = output_within(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "agent_nice: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_agent_thread_runs_ten_nice_levels_below_the_program_by_default() {
    assert_eq!(agent_nice("10", &[]), "agent thread nice +10 over the program's");
}

#[test]
fn drti_jit_nice_sets_the_increment() {
    assert_eq!(agent_nice("0", &[("DRTI_JIT_NICE", "0")]), "agent thread nice +0 over the program's");
    assert_eq!(agent_nice("19", &[("DRTI_JIT_NICE", "19")]), "agent thread nice +19 over the program's");
}
