//! Profiling that scales with threads and never floods: each thread counts down on its own
//! thread-local countdown (no cache line written by several threads per call), the sampling
//! period follows the call rate so the queue drops under 1% of samples at any threshold,
//! and sample weights keep edge estimates unbiased, also when the agent thread falls
//! behind. Counts and ratios only, no timings.

use drti_tests::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Calls per thread of the busy runs: long enough for the period to adapt several times.
const ITERS: &str = "50000000";

/// prof_mix and prof_two_threads, built plain and with drti-cc.
fn progs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("profiling-scale");
        for p in ["prof_mix", "prof_two_threads"] {
            let src = format!("tests/progs/{p}.c");
            compile(&d, "clang-19", &[&src], &format!("{p}-plain"), &["-pthread"]);
            compile(&d, "drti-cc", &[&src], p, &["-pthread"]);
        }
        d
    })
}

fn run_limited(dir: &std::path::Path, prog: &str, args: &[&str], env: Option<&[(&str, &str)]>) -> String {
    let out = output_within(program(dir, prog, args, env), Duration::from_secs(120));
    stdout_ok(&out, prog)
}

/// Runs `prog` under the agent with `env` and a dump; returns the dump.
fn dumped(prog: &str, args: &[&str], env: &[(&str, &str)], name: &str) -> (String, serde_json::Value) {
    let dir = progs();
    let dump = dir.join(name);
    let d = dump.to_str().unwrap().to_owned();
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push(("DRTI_DUMP", &d));
    let out = run_limited(dir, prog, args, Some(&all));
    (out, read_dump(&dump))
}

#[test]
fn outputs_unchanged_with_and_without_the_agent() {
    let dir = progs();
    for (prog, args) in [("prof_mix", ["2000000", "2"]), ("prof_two_threads", ["2000000", "2"])] {
        let plain = run_limited(dir, &format!("{prog}-plain"), &args, None);
        assert_eq!(run_limited(dir, prog, &args, None), plain, "{prog} decorated, no agent");
        for env in [&[("DRTI_JIT", "0")][..], &[("DRTI_HOT_THRESHOLD", "100")][..], &[][..]] {
            assert_eq!(run_limited(dir, prog, &args, Some(env)), plain, "{prog} under the agent with {env:?}");
        }
    }
}

#[test]
fn countdowns_are_thread_local() {
    // The countdown lives in a thread-local of the object file (`__drti_tls`), not in the
    // runtime area that every thread would write.
    let bin = progs().join("prof_two_threads");
    let out = Command::new("readelf").args(["-sW"]).arg(&bin).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("skip: readelf not available");
        return;
    };
    let syms = String::from_utf8_lossy(&out.stdout);
    let tls = syms.lines().find(|l| l.ends_with(" __drti_tls"));
    assert!(tls.is_some_and(|l| l.contains(" TLS ")), "no thread-local __drti_tls in {}:\n{tls:?}", bin.display());
}

/// `dropped / taken` of a dump, checking both fields are there.
fn drop_ratio(v: &serde_json::Value) -> f64 {
    let taken = v["samples_taken"].as_u64().expect("samples_taken in the dump");
    let dropped = v["samples_dropped"].as_u64().expect("samples_dropped in the dump");
    assert!(taken > 0, "no samples taken: {v}");
    dropped as f64 / taken as f64
}

#[test]
fn threshold_100_drops_under_one_percent() {
    // Two threads making hundreds of millions of profiled calls per second: at the
    // configured period (100 / 16 = 6) that would be tens of millions of samples per second.
    for (jit, name) in [("0", "t100-profile.json"), ("1", "t100-jit.json")] {
        let env = [("DRTI_HOT_THRESHOLD", "100"), ("DRTI_JIT", jit)];
        let (_, v) = dumped("prof_mix", &[ITERS, "2"], &env, name);
        let r = drop_ratio(&v);
        assert!(r < 0.01, "DRTI_JIT={jit}: {} of {} samples dropped ({:.2}%)", v["samples_dropped"], v["samples_taken"], r * 100.0);
    }
}

/// How far the estimated share of `rare` may be from the 10% made. When the agent thread
/// falls behind (a loaded machine), hooks brake the period to 2^16 or more: the run is then
/// described by about a thousand samples, ±1 point for one standard deviation.
const SHARE_TOLERANCE: f64 = 0.04;

/// Checks the estimates of a prof_mix dump against the calls made (`calls` in all, every
/// 10th to `rare`).
fn check_mix(v: &serde_json::Value, truth: f64, what: &str) {
    let (common, rare) = (calls(v, "mix", "common"), calls(v, "mix", "rare"));
    let total = common + rare;
    // Missing: per thread, the calls since its last sample (below 1.5 periods).
    assert!((total - truth).abs() / truth < 0.03, "{what}: {total} calls estimated, {truth} made");
    let share = rare / total;
    assert!((share - 0.10).abs() < SHARE_TOLERANCE, "{what}: rare share {share:.4} (10% made; {} of {} samples dropped)", v["samples_dropped"], v["samples_taken"]);
}

/// Estimated calls of caller→callee.
fn calls(v: &serde_json::Value, caller: &str, callee: &str) -> f64 {
    edge(v, caller, callee).unwrap_or_else(|| panic!("edge {caller}->{callee} in {v}"))["calls"].as_u64().unwrap() as f64
}

#[test]
fn estimates_hold_on_a_known_mix() {
    let iters: f64 = ITERS.parse().unwrap();
    for threshold in ["10000", "100"] {
        let env = [("DRTI_HOT_THRESHOLD", threshold), ("DRTI_JIT", "0")];
        let (_, v) = dumped("prof_mix", &[ITERS, "2"], &env, &format!("mix-{threshold}.json"));
        check_mix(&v, 2.0 * iters, &format!("threshold {threshold}"));
    }
    // Two threads, one target each: both edges counted, neither thread's calls lost.
    let env = [("DRTI_JIT", "0")];
    let (_, v) = dumped("prof_two_threads", &[ITERS, "2"], &env, "two.json");
    for callee in ["scale", "shift"] {
        let c = calls(&v, "run", callee);
        assert!((c - iters).abs() / iters < 0.03, "run->{callee}: {c} estimated, {iters} made");
    }
}

/// The first CPU this process may run on.
fn first_cpu() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let first = list.trim().split([',', '-']).next()?;
    first.parse::<u32>().ok().map(|c| c.to_string())
}

#[test]
fn estimates_hold_when_the_agent_falls_behind() {
    // The program's four threads and the agent thread on one CPU, the agent thread at nice
    // 19: it gets under 0.5% of the CPU, so after the first 65536 samples the queue stays
    // full and every sample is refused (about 1500, each standing for 2^16 calls or more).
    // Their calls must still go to their own edges: carried to each thread's next sample,
    // they went to one edge per thread (`rare` came out at 0-1.5%, or 45% and more).
    let Some(cpu) = first_cpu() else {
        println!("skip: no CPU list in /proc/self/status");
        return;
    };
    if !Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success()) {
        println!("skip: taskset not available");
        return;
    }
    let dir = progs();
    // The calls of the other runs, in four threads.
    let iters: u64 = ITERS.parse().unwrap();
    let args = [(iters / 2).to_string(), "4".to_owned()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plain = run_limited(dir, "prof_mix-plain", &args, None);
    let dump = dir.join("mix-behind.json");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu]).arg(dir.join("prof_mix")).args(&args).current_dir(dir);
    clean_env(&mut cmd);
    let env = [("DRTI_HOT_THRESHOLD", "100"), ("DRTI_JIT", "0"), ("DRTI_JIT_NICE", "19"), ("DRTI_DUMP", dump.to_str().unwrap())];
    with_agent(&mut cmd, &env);
    assert_eq!(stdout_ok(&output_within(cmd, Duration::from_secs(120)), "prof_mix on one CPU"), plain);
    let v = read_dump(&dump);
    // The agent did fall behind (a run that keeps up drops under ten).
    let dropped = v["samples_dropped"].as_u64().expect("samples_dropped in the dump");
    assert!(dropped >= 100, "only {dropped} samples dropped: the agent thread kept up, the test shows nothing");
    check_mix(&v, 2.0 * iters as f64, "agent behind");
}
