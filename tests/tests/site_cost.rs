//! Issue 11 item 4, "a decided site costs nothing": a decorated function F carries no
//! sampling code of its own; its profiled twin F.prof does, and the agent sends F's calls
//! there (through F's redirect slot) only while it still has to decide about F.

use drti_tests::*;
use std::process::Command;

/// Rounds of 10000 indirect calls each the programs make (about a second of calls).
const ROUNDS: u64 = 100_000;

/// Runs `prog` (built from tests/progs/`prog`.c) without and with the agent; returns the
/// dump and the agent's log.
fn run_both(prog: &str) -> (bitcode_embed::dump::Dump, String) {
    let dir = scratch(&format!("site_cost_{prog}"));
    compile(&dir, "drti-cc", &[&format!("tests/progs/{prog}.c")], prog, &[]);
    let rounds = ROUNDS.to_string();
    let plain = run(&dir, prog, &[&rounds], None);
    let dump = dir.join(format!("{prog}.json"));
    let out = run(&dir, prog, &[&rounds], Some(&[("DRTI_LOG", "info"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, prog), stdout_ok(&plain, prog), "output differs with the agent");
    (read_dump_typed(&dump), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The dump's count of `caller`'s calls at its only site: an unbiased estimate of the
/// calls made while its sites were profiled, so it stops growing once profiling is off.
fn counted_calls(v: &bitcode_embed::dump::Dump, caller: &str) -> u64 {
    v.edges.iter().filter(|e| e.caller == caller).map(|e| e.calls).sum()
}

#[test]
fn a_function_whose_sites_call_only_outside_code_stops_being_profiled() {
    let (v, log) = run_both("cost_outside");
    let off = v.unprofiled.iter().find(|u| u.function == "batch");
    assert!(off.is_some_and(|u| u.why.contains("outside decorated")), "batch still profiled at exit: {:?}\n{log}", v.unprofiled);
    assert!(log.contains("profiling off"), "{log}");
    // The program made ROUNDS * 10000 calls; with profiling on to the end (old code) the
    // dump counts about all of them, once it is off only those before the decision.
    let counted = counted_calls(&v, "batch");
    let total = ROUNDS * 10_000;
    assert!(counted > 0 && counted < total / 2, "{counted} of {total} calls were profiled:\n{log}");
}

#[test]
fn a_function_the_jit_rejects_stops_being_profiled() {
    let (v, log) = run_both("cost_rejected");
    assert_eq!(v.edge("step", "twice").map(|e| e.state.as_str()), Some("rejected"), "{log}");
    let off = v.unprofiled.iter().find(|u| u.function == "step");
    assert!(off.is_some_and(|u| u.why.contains("setjmp")), "step still profiled at exit: {:?}\n{log}", v.unprofiled);
    let counted = counted_calls(&v, "step");
    let total = ROUNDS * 10_000;
    assert!(counted > 0 && counted < total / 2, "{counted} of {total} calls were profiled:\n{log}");
}

#[test]
fn a_loop_in_a_function_entered_once_stops_counting_once_it_is_decided() {
    let (v, log) = run_both("cost_main_loop");
    let off = v.unprofiled.iter().find(|u| u.function == "main");
    assert!(off.is_some(), "main still profiled at exit: {:?}\n{log}", v.unprofiled);
    // main never returns to its entry: only its sites' words can stop the activation that
    // runs main.drti.prof from counting (on the old code it counted about every call).
    let counted = counted_calls(&v, "main");
    let total = ROUNDS * 10_000;
    assert!(counted > 0 && counted < total / 2, "{counted} of {total} calls were profiled:\n{log}");
}

/// The body of `name` in `objdump -dr` output (instructions and relocations).
fn body<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("<{name}>:\n");
    let start = listing.find(&head)? + head.len();
    let rest = &listing[start..];
    Some(&rest[..rest.find("\n\n").unwrap_or(rest.len())])
}

#[test]
fn inspect_shows_the_profiled_twin_after_the_globals() {
    let dir = scratch("site_cost_inspect");
    compile(&dir, "drti-cc", &["tests/progs/cost_outside.c"], "cost_outside", &[]);
    let out = Command::new(tool("drti")).args(["inspect", "--json", "cost_outside"]).current_dir(&dir).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let m = &v["modules"][0];
    let globals = m["globals"].as_u64().unwrap();
    let f = m["functions"].as_array().unwrap().iter().find(|f| f["name"] == "batch").unwrap();
    // Address slot `globals` (the first after the globals') holds batch.drti.prof, whose
    // code is in the binary; main has no sites and no twin.
    assert_eq!(f["profiled_entry"].as_u64(), Some(globals), "{m:#}");
    assert_eq!(m["address_slots"].as_u64(), Some(globals + 1), "{m:#}");
    assert!(f["profiled_size"].as_u64().is_some_and(|s| s > 0), "{m:#}");
    let main = m["functions"].as_array().unwrap().iter().find(|f| f["name"] == "main").unwrap();
    assert!(main["profiled_entry"].is_null(), "{m:#}");
    let text = Command::new(tool("drti")).args(["inspect", "cost_outside"]).current_dir(&dir).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("profiled twin: address slot {globals}")));
}

#[test]
fn the_decorated_function_has_no_sampling_code_its_twin_has() {
    let dir = scratch("site_cost_objdump");
    compile(&dir, "drti-cc", &["tests/progs/cost_outside.c"], "cost_outside.o", &["-c"]);
    let out = match Command::new("objdump").args(["-dr", "--no-show-raw-insn", "cost_outside.o"]).current_dir(&dir).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("skip: objdump is not available");
            return;
        }
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    let f = body(&listing, "batch").unwrap_or_else(|| panic!("no batch in:\n{listing}"));
    let twin = body(&listing, "batch.drti.prof").unwrap_or_else(|| panic!("no profiled twin batch.drti.prof in:\n{listing}"));
    // F: its redirect-slot check reads the runtime area (internal, so relocated against
    // .bss, the program has no other zeroed data) once; no thread-local countdown, no
    // hook load, no hook call.
    let area_refs = |code: &str| code.lines().filter(|l| l.contains("R_X86_64") && (l.contains(".bss") || l.contains("__drti_runtime"))).count();
    assert!(!f.contains("__drti_tls") && !f.contains(".tbss") && !f.contains("%fs:"), "batch has sampling code:\n{f}");
    assert_eq!(area_refs(f), 1, "batch reads the runtime area more than once (slot check only):\n{f}");
    // F.prof: the countdown (thread-local) and the hook in the runtime area.
    assert!(twin.contains("%fs:"), "batch.drti.prof has no countdown:\n{twin}");
    assert!(area_refs(twin) >= 1, "batch.drti.prof never reads the hook:\n{twin}");
}

/// A fork child gets no agent thread and detached modules: the functions it inherited
/// as profiled run unprofiled in it (their slots go to null), and its dump says so.
#[test]
fn a_fork_child_runs_its_functions_unprofiled() {
    let dir = scratch("site_cost_fork");
    compile(&dir, "drti-cc", &["tests/progs/rel_fork.c"], "rel_fork", &[]);
    let args = ["300", "4", "0"];
    let plain = stdout_ok(&run(&dir, "rel_fork", &args, None), "rel_fork");
    let dump = dir.join("fork.json");
    // A threshold never reached: apply() stays undecided, profiled to the end in the parent.
    let out = run(&dir, "rel_fork", &args, Some(&[("DRTI_HOT_THRESHOLD", "1000000000"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, "rel_fork"), plain);
    let parent = read_dump_typed(&dump);
    assert!(!parent.unprofiled.iter().any(|u| u.function == "apply"), "the parent stopped profiling apply: {:?}", parent.unprofiled);
    let children: Vec<u32> = String::from_utf8_lossy(&out.stderr).lines().filter_map(|l| l.strip_prefix("child=")?.trim().parse().ok()).collect();
    assert_eq!(children.len(), 4, "{}", describe(&out));
    let mut checked = 0;
    for pid in children {
        let v = read_dump_typed(&std::path::PathBuf::from(format!("{}.{pid}", dump.display())));
        // A child that inherited the parent's modules (not a fresh state: the parent's
        // agent thread was not busy at the fork) turned their profiling off.
        if v.fork_child_note.is_some() || v.modules.is_empty() {
            continue;
        }
        let apply = v.unprofiled.iter().find(|u| u.function == "apply");
        assert!(apply.is_some_and(|u| u.why.contains("fork child")), "child {pid} still profiles apply: {:?}", v.unprofiled);
        checked += 1;
    }
    assert!(checked > 0, "no child inherited the parent's modules");
}

/// A function whose block addresses are taken (computed goto) or whose inline assembly
/// switches sections gets no profiled twin (a clone would jump into the original's blocks
/// or define its data twice): it is not redirectable, not profiled, and runs as built.
#[test]
fn functions_a_clone_would_change_get_no_twin() {
    let dir = scratch("site_cost_goto");
    compile(&dir, "drti-cc", &["tests/progs/cost_computed_goto.c"], "goto", &["-g"]);
    let plain = run(&dir, "goto", &[], None);
    let out = run(&dir, "goto", &[], Some(&[("DRTI_HOT_THRESHOLD", "100")]));
    assert_eq!(stdout_ok(&out, "goto"), stdout_ok(&plain, "goto"), "{}", describe(&out));
    let js = Command::new(tool("drti")).args(["inspect", "--json", "goto"]).current_dir(&dir).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&js.stdout).unwrap();
    for name in ["interp", "tagged"] {
        let f = v["modules"][0]["functions"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}: {v:#}"));
        assert!(f["flags"].as_array().unwrap().iter().any(|x| x == "no-redirect") && f["profiled_entry"].is_null(), "{name}: {f:#}");
    }
}
