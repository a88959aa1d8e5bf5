//! Smoke test of `make bench-real` (scripts/bench-real.sh) on one program: the Lua 5.4
//! interpreter from crates.io lua-src, built four ways (clang-19 -O2, IR PGO, drti-cc) with
//! small workloads and one round. Checks that the script prints its table with a row per Lua
//! workload, that every variant's output matched the plain build's, and that the agent runs
//! left a dump. The full benchmark is not part of `make test`. Without network (and without
//! a cached copy of the crate) the script exits 77 and this test prints "skip: ..." instead.

use drti_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_real_quick_lua_prints_the_table_and_outputs_match() {
    tool("drti-cc");
    tool("drti-c++");
    agent();
    tool("drti-jitd");
    for t in ["clang-19", "clang++-19", "llvm-profdata-19", "python3", "make"] {
        if Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().map_or(true, |o| !o.status.success()) {
            println!("skip: {t} not found");
            return;
        }
    }
    let start = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/bench-real.sh"))
        .current_dir(repo())
        .env("BENCH_REAL_ONLY", "lua")
        .env("BENCH_ROUNDS", "1")
        .env("BENCH_REAL_QUICK", "1");
    clean_env(&mut cmd);
    let out = output_within(cmd, Duration::from_secs(900));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        println!("{}", stdout.trim());
        assert!(stdout.contains("bench-real: skip:"), "exit 77 without a skip line:\n{stdout}\n{stderr}");
        return;
    }
    assert!(out.status.success(), "scripts/bench-real.sh failed:\n{}", describe(&out));
    eprintln!("{stdout}\n(bench-real quick lua: {:.1} s)", start.elapsed().as_secs_f64());

    assert!(stdout.contains("| program: workload | plain ms | PGO ms | decorated ms | agent ms |"), "no table header:\n{stdout}");
    for workload in ["sort", "text"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| lua: {workload} |")))
            .unwrap_or_else(|| panic!("no row for lua: {workload}:\n{stdout}"));
        // Every timing and ratio cell holds a number: all four variants ran and matched.
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        for (i, c) in cells.iter().enumerate().skip(1).take(8) {
            let num = c.trim_matches('*');
            assert!(num.parse::<f64>().is_ok(), "cell {i} of {row:?} is not a number");
        }
    }
    assert!(stdout.contains("outputs: all 8 runs identical to the plain build's output"), "outputs not all identical:\n{stdout}");

    // The agent runs wrote their dumps, and the sort's comparator calls were sampled.
    let dump = read_dump(&repo().join("build/bench-real-quick/dumps/sort-1.json"));
    assert_eq!(dump["drti_dump_version"], 1);
    assert!(
        dump["edges"].as_array().is_some_and(|e| !e.is_empty()),
        "the agent saw no edge in lua sort.lua: {dump}"
    );
}
