//! Smoke tests of `make bench-memory` and `make bench-osr` (one round each): the scripts
//! build their programs, check that every variant prints what plain prints, and print
//! their tables. The full benchmarks are not part of `make test`.

use drti_tests::*;
use std::process::Command;
use std::time::Duration;

fn run_script(script: &str) -> Option<String> {
    tool("drti-cc");
    tool("drti-c++");
    agent();
    tool("drti-jitd");
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts").join(script)).arg("1").current_dir(repo());
    clean_env(&mut cmd);
    let out = output_within(cmd, Duration::from_secs(600));
    if out.status.code() == Some(77) {
        println!("{}", String::from_utf8_lossy(&out.stdout).trim());
        return None;
    }
    assert!(out.status.success(), "{script}: {}", describe(&out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bench_memory_prints_the_application_and_compiler_peaks() {
    let Some(text) = run_script("bench-memory.sh") else { return };
    for want in ["plain", "agent, cache empty", "agent, cache filled", "compiles linked per run", "hot-to-patch of apply"] {
        assert!(text.contains(want), "no '{want}' in:\n{text}");
    }
}

#[test]
fn bench_osr_prints_every_case() {
    let Some(text) = run_script("bench-osr.sh") else { return };
    for want in ["| osr_main_c |", "| osr_main_cpp |", "| methcall |", "| sort |", "outputs identical"] {
        assert!(text.contains(want), "no '{want}' in:\n{text}");
    }
}
