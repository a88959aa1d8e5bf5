//! On-stack replacement (issue 13), end to end: a hot loop in a function entered once
//! (main, or a function whose only call never returns before the loop is hot) moves into
//! compiled code with its hot target inlined; an exception thrown there reaches the
//! caller; outputs never change.

use drti_tests::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("osr");
        compile(&d, "drti-cc", &["tests/progs/osr_main.c"], "osr_main_c", &[]);
        compile(&d, "drti-c++", &["tests/progs/osr_main.cpp"], "osr_main_cpp", &[]);
        compile(&d, "drti-c++", &["tests/progs/osr_throw.cpp"], "osr_throw", &[]);
        compile(&d, "drti-cc", &["demo/sort.c"], "sort", &[]);
        compile(&d, "drti-cc", &["tests/progs/osr_setjmp.c"], "osr_setjmp", &[]);
        d
    })
}

/// Runs `prog args` without and with the agent (`env`); the outputs must be equal; the
/// agent's dump.
fn same_output(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Dump {
    let want = stdout_ok(&output_within(program(dir(), prog, args, None), LIMIT), prog);
    let dump = dir().join(format!("{prog}-{}.json", env.iter().map(|(k, v)| format!("{k}{v}")).collect::<String>()));
    let mut e = vec![("DRTI_DUMP", dump.to_str().unwrap())];
    e.extend_from_slice(env);
    let out = output_within(program(dir(), prog, args, Some(&e)), LIMIT);
    assert_eq!(stdout_ok(&out, prog), want, "{prog} {args:?} {env:?}: {}", describe(&out));
    read_dump_typed(&dump)
}

/// The OSR continuations of `function` the agent armed.
fn continuations<'a>(d: &'a Dump, function: &str) -> Vec<&'a DumpCompile> {
    d.compiles.iter().filter(|c| c.ok && c.function == function && c.osr_header.is_some()).collect()
}

#[test]
fn a_hot_loop_in_main_moves_into_compiled_code() {
    for (prog, rounds, target) in [("osr_main_c", "20000", "add"), ("osr_main_cpp", "40000", "_ZNK6Square4areaEl")] {
        for threshold in [Some("1"), Some("100"), None] {
            let env: Vec<(&str, &str)> = threshold.map(|t| ("DRTI_HOT_THRESHOLD", t)).into_iter().collect();
            let d = same_output(prog, &[rounds], &env);
            let c = continuations(&d, "main");
            assert!(!c.is_empty(), "{prog} threshold {threshold:?}: no continuation of main: {:?}", d.compiles);
            assert!(c.iter().any(|c| c.inlined.iter().any(|t| t == target)), "{prog}: {target} not inlined: {c:?}");
        }
    }
}

#[test]
fn an_exception_through_a_continuation_is_caught_in_the_caller() {
    let d = same_output("osr_throw", &["10000"], &[("DRTI_HOT_THRESHOLD", "100")]);
    let c = continuations(&d, "_Z3runPK2Opl");
    assert!(!c.is_empty(), "run's activation was not moved: {:?}", d.compiles);
}

#[test]
fn the_sort_demos_checking_loop_moves_into_compiled_code() {
    // A given threshold: the default payback rule may defer main on a loaded machine (its
    // loop calls the comparator ~30M times a second, close to repaying a compile in 0.5 s).
    let d = same_output("sort", &["asc", "4000", "2000"], &[("DRTI_HOT_THRESHOLD", "100")]);
    let c = continuations(&d, "main");
    assert!(c.iter().any(|c| c.inlined.iter().any(|t| t == "cmp_asc")), "main's loops were not moved: {:?}", d.compiles);
    // msort is recursive: activations in flight when its F+ is installed leave its twin
    // within milliseconds; that is no stuck loop, and no continuation is compiled for it.
    assert!(continuations(&d, "msort").is_empty(), "{:?}", d.compiles);
}

#[test]
fn a_main_with_setjmp_is_rejected_with_the_reason() {
    let d = same_output("osr_setjmp", &["5000"], &[("DRTI_HOT_THRESHOLD", "100")]);
    assert!(continuations(&d, "main").is_empty(), "{:?}", d.compiles);
    let e = d.edge("main", "add").unwrap_or_else(|| panic!("no edge main -> add: {:?}", d.edges));
    assert_eq!(e.state, "rejected", "{e:?}");
    assert!(e.reason.as_deref().unwrap_or("").contains("no OSR point"), "{e:?}");
}
