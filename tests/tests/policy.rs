//! Issue 11: the compile policy. Under the default threshold a compile must pay back
//! (benefit = calls/s x saving per call, cost = compile CPU); a threshold the user gives
//! keeps DESIGN.md's count ("compiled after N calls").

use drti_tests::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("policy");
        compile(&d, "drti-cc", &["tests/progs/policy_mix.c"], "policy_mix", &[]);
        compile(&d, "drti-c++", &["tests/progs/composite.cpp"], "composite", &[]);
        compile(&d, "clang++-19", &["tests/progs/composite.cpp"], "composite-plain", &[]);
        d
    })
}

fn compiled(v: &Dump, f: &str) -> bool {
    v.compiles.iter().any(|c| c.function == f && c.ok)
}

#[test]
fn a_cold_wrapper_is_deferred_a_hot_callback_is_compiled() {
    let plain = output_within(program(dir(), "policy_mix", &[], None), Duration::from_secs(60));
    let dump = dir().join("default.json");
    let env = [("DRTI_DUMP", dump.to_str().unwrap())];
    let out = output_within(program(dir(), "policy_mix", &[], Some(&env)), Duration::from_secs(60));
    assert_eq!(stdout_ok(&out, "policy_mix"), stdout_ok(&plain, "policy_mix"));
    let v = read_dump_typed(&dump);
    assert!(compiled(&v, "apply"), "the hot callback's function was not compiled: {v:#}");
    assert!(!compiled(&v, "locked"), "a wrapper called ~60k times a second got a compile that cannot pay back: {v:#}");
    assert!(v.deferred.iter().any(|d| d.function == "locked" && d.why.contains("pay back")), "{v:#}");
    assert!(v.jit_cpu_ms > 0.0, "{v:#}");
    // Latency is also measured from the edge's first sample, which precedes it turning hot.
    let c = v.compiles.iter().find(|c| c.function == "apply").unwrap();
    let (seen, hot) = (c.seen_to_patch_ms.unwrap(), c.hot_to_patch_ms.unwrap());
    assert!(seen >= hot, "first sample to patch {seen} ms < hot to patch {hot} ms: {c}");
}

#[test]
fn a_given_threshold_compiles_whatever_reaches_it() {
    let dump = dir().join("given.json");
    let env = [("DRTI_DUMP", dump.to_str().unwrap()), ("DRTI_HOT_THRESHOLD", "10000")];
    let out = output_within(program(dir(), "policy_mix", &[], Some(&env)), Duration::from_secs(60));
    stdout_ok(&out, "policy_mix");
    let v = read_dump_typed(&dump);
    assert!(compiled(&v, "apply") && compiled(&v, "locked"), "{v:#}");
}

#[test]
fn a_bad_budget_value_warns_once_and_the_program_runs() {
    let env = [("DRTI_JIT_BUDGET", "lots")];
    let out = output_within(program(dir(), "policy_mix", &["100", "10"], Some(&env)), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("DRTI_JIT_BUDGET").count(), 1, "{err}");
    stdout_ok(&out, "policy_mix");
}

/// A loop calling a container's virtual sum(), which loops over elements calling their
/// virtual f(): whatever the outer function becomes, its live code reaches sum()'s
/// specialisation: it inlines sum() with sum()'s guards nested inside the copy (or calls
/// sum()'s own compiled code), never sum()'s original body alone.
#[test]
fn specialised_inner_code_stays_reachable_from_the_outer_loop() {
    let plain = output_within(program(dir(), "composite-plain", &["300000"], None), Duration::from_secs(60));
    for threshold in ["1000", "1"] {
        let dump = dir().join(format!("composite-{threshold}.json"));
        let env = [("DRTI_DUMP", dump.to_str().unwrap()), ("DRTI_HOT_THRESHOLD", threshold)];
        let out = output_within(program(dir(), "composite", &["300000"], Some(&env)), Duration::from_secs(60));
        assert_eq!(stdout_ok(&out, "composite"), stdout_ok(&plain, "composite"));
        let v = read_dump_typed(&dump);
        let sum = "_ZNK3Vec3sumEd";
        let inner = v.compiles.iter().any(|c| c.function == sum && c.ok && c.inlined.len() == 3);
        assert!(inner, "threshold {threshold}: sum() not compiled with its three element types: {v:#}");
        assert!(v.patches.iter().any(|p| p.function == sum && p.active), "{v:#}");
        // Whatever run() became, its live code does not carry sum()'s original body.
        let run = "_Z3runRK9Containeri";
        let last_run = v.compiles.iter().rfind(|c| c.function == run && c.ok);
        if let (Some(c), true) = (last_run, v.patches.iter().any(|p| p.function == run && p.active)) {
            let nested = c.nested.iter().any(|n| n.owner == sum && n.targets.len() == 3);
            assert!(!c.inlined.iter().any(|t| t == sum) || nested, "threshold {threshold}: run()'s live code inlined sum()'s unspecialised body: {v:#}");
        }
    }
}
