//! The agent: profiling, dumps, JIT inlining, patching — output never changes.

use drti_tests::*;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The drti -O2 demo build, shared by the tests of this file.
fn demos() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("agent-demos");
        build_demos(&d, true, &["-O2"]);
        d
    })
}

#[test]
fn profile_only_dump_counts_edges() {
    let dir = demos();
    let dump = dir.join("profile.json");
    let d = dump.to_str().unwrap();
    let out = run(dir, "kernel", &["twice", "1000", "1000"], Some(&[("DRTI_JIT", "0"), ("DRTI_DUMP", d)]));
    let plain = run(dir, "kernel", &["twice", "1000", "1000"], None);
    assert_eq!(stdout_ok(&out, "kernel"), stdout_ok(&plain, "kernel"));
    let v = read_dump_typed(&dump);
    assert_eq!(v.drti_dump_version, 1);
    let e = v.edge("apply", "twice").expect("edge apply->twice");
    assert_eq!(e.state, "hot");
    // Documented error: at most about 1.25 x period per sampled site, plus the first sample.
    let calls = e.calls as i64;
    let period = v.sample_period as i64;
    let truth = 1000 * 1000;
    assert!((calls - truth).abs() <= 3 * period, "calls {calls} vs {truth} (period {period})");
    assert_eq!(v.compiles.len(), 0, "DRTI_JIT=0 compiles nothing");
}

#[test]
fn cross_dso_and_virtual_edges() {
    let dir = demos();
    let dump = dir.join("plugin.json");
    let out = run(dir, "plugin_host", &["./plugin_twice.so", "3000"], Some(&[("DRTI_JIT", "0"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    stdout_ok(&out, "plugin_host");
    let v = read_dump_typed(&dump);
    let e = v.edges.iter().find(|e| e.callee == "plugin_fn").expect("edge into the plugin");
    assert!(e.callee_module.ends_with("plugin_twice.so"));
    assert!(!e.caller_module.ends_with(".so"));

    let dump = dir.join("virtual.json");
    let out = run(dir, "virtual", &["mono", "300"], Some(&[("DRTI_JIT", "0"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    stdout_ok(&out, "virtual");
    let v = read_dump_typed(&dump);
    assert!(v.edge("_Z10total_areaPKP5Shapem", "_ZNK6Square4areaEv").is_some() || v.edges.iter().any(|e| e.callee.contains("Square4area")), "virtual edge to Square::area: {v}");
}

#[test]
fn jit_inlines_every_demo_without_changing_output() {
    let dir = demos();
    // Default sizes (0.3-0.6 s plain): long enough for LLVM to load and compile on a
    // busy machine before the program exits.
    for (i, (prog, args)) in DEMO_RUNS.iter().map(|(p, a)| (*p, &a[..a.len() - 1])).enumerate() {
        let dump = dir.join(format!("jit{i}.json"));
        let plain = stdout_ok(&run(dir, prog, args, None), prog);
        let out = run(dir, prog, args, Some(&[("DRTI_HOT_THRESHOLD", "50"), ("DRTI_DUMP", dump.to_str().unwrap())]));
        assert_eq!(stdout_ok(&out, prog), plain, "{prog} {args:?} prints differently under the agent");
        let v = read_dump_typed(&dump);
        // plugin_host dlcloses its plugin before exit: its inlined edge is then
        // invalidated and the patch reverted, as invariant 4 requires.
        let unloads = prog == "plugin_host";
        let (want_state, want_active) = if unloads { ("invalidated", false) } else { ("inlined", true) };
        let inlined = v.edges.iter().any(|e| e.state == want_state);
        let patched = v.patches.iter().any(|p| p.active == want_active);
        assert!(inlined && patched, "{prog} {args:?}: no {want_state} edge with a patch (active={want_active}): {v:#}");
        for c in &v.compiles {
            assert!(c.ok, "{prog}: compile failed: {c}");
        }
    }
}

#[test]
fn inlined_callee_really_runs_inlined() {
    let dir = scratch("inlined");
    let st = std::process::Command::new(tool("drti-cc"))
        .args(["-O2", "-rdynamic"])
        .arg(repo().join("tests/progs/inlined.c"))
        .args(["-o", "inlined", "-ldl"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let plain = run(&dir, "inlined", &[], None);
    let agent = run(&dir, "inlined", &[], Some(&[("DRTI_HOT_THRESHOLD", "100")]));
    assert_eq!(stdout_ok(&plain, "inlined"), stdout_ok(&agent, "inlined"));
    let outside = |o: &std::process::Output| -> u64 {
        let e = String::from_utf8_lossy(&o.stderr);
        e.lines().find_map(|l| l.strip_prefix("outside=")).unwrap().trim().parse().unwrap()
    };
    assert_eq!(outside(&plain), 0, "without the agent probe() is always called from run()");
    assert!(outside(&agent) > 0, "with the agent probe() must run inlined into run+ at least once");
}

#[test]
fn bad_environment_values_warn_and_run() {
    let dir = demos();
    let plain = run(dir, "kernel", &["twice", "200"], None);
    let out = run(dir, "kernel", &["twice", "200"], Some(&[("DRTI_HOT_THRESHOLD", "lots"), ("DRTI_MAX_TARGETS", "-3")]));
    assert_eq!(stdout_ok(&out, "kernel"), stdout_ok(&plain, "kernel"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DRTI_HOT_THRESHOLD"), "{err}");
    assert!(err.contains("DRTI_MAX_TARGETS"), "{err}");
    assert_eq!(err.matches("DRTI_HOT_THRESHOLD").count(), 1, "one warning: {err}");
}

#[test]
fn disabled_agent_does_nothing() {
    let dir = demos();
    let dump = dir.join("disabled.json");
    let _ = std::fs::remove_file(&dump);
    let out = run(dir, "kernel", &["twice", "200"], Some(&[("DRTI_DISABLE", "1"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    stdout_ok(&out, "kernel");
    assert!(!dump.exists(), "DRTI_DISABLE=1 must not write a dump");
}

#[test]
fn injected_jit_failure_leaves_program_unaffected() {
    let dir = demos();
    let dump = dir.join("fail.json");
    let plain = run(dir, "kernel", &["twice"], None);
    let out = run(dir, "kernel", &["twice"], Some(&[("DRTI_HOT_THRESHOLD", "50"), ("DRTI_TEST_JIT_FAIL", "apply"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, "kernel"), stdout_ok(&plain, "kernel"));
    assert_eq!(out.status.code(), plain.status.code());
    let v = read_dump_typed(&dump);
    assert_eq!(v.edge("apply", "twice").unwrap().state, "rejected");
    assert!(!v.compiles[0].ok, "{v:#}");
    assert!(v.patches.is_empty());
}

#[test]
fn report_reads_the_dump() {
    let dir = demos();
    let dump = dir.join("report.json");
    stdout_ok(&run(dir, "kernel", &["twice"], Some(&[("DRTI_HOT_THRESHOLD", "50"), ("DRTI_DUMP", dump.to_str().unwrap())])), "kernel");
    let out = std::process::Command::new(tool("drti")).arg("report").arg(&dump).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("apply") && text.contains("twice") && text.contains("inlined"), "{text}");
    // Unknown versions are refused clearly.
    let future = dir.join("future.json");
    std::fs::write(&future, r#"{"drti_dump_version": 99}"#).unwrap();
    let out = std::process::Command::new(tool("drti")).arg("report").arg(&future).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 99"));
    // A version-1 dump missing a field of the contract is refused, naming the field.
    let torn = dir.join("torn.json");
    std::fs::write(&torn, r#"{"drti_dump_version": 1, "pid": 7, "exe": "x", "threshold": 1, "modules": [], "edges": []}"#).unwrap();
    let out = std::process::Command::new(tool("drti")).arg("report").arg(&torn).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("malformed") && err.contains("compiles"), "{err}");
}

#[test]
fn corrupt_metadata_on_disk_runs_unoptimised_with_one_warning() {
    let dir = demos();
    let plain = run(dir, "kernel", &["twice", "300"], None);
    let bytes = std::fs::read(dir.join("kernel")).unwrap();
    let at = bytes.windows(8).position(|w| w == b"DRTIMOD\0").expect("blob magic in the file");
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("wrong version", Box::new(move |b: &mut Vec<u8>| b[at + 8] = 7)),
        ("bad magic", Box::new(move |b: &mut Vec<u8>| b[at] = b'X')),
        ("huge counts", Box::new(move |b: &mut Vec<u8>| b[at + 24..at + 28].copy_from_slice(&u32::MAX.to_le_bytes()))),
        ("zero total size", Box::new(move |b: &mut Vec<u8>| b[at + 16..at + 24].copy_from_slice(&0u64.to_le_bytes()))),
    ];
    for (what, mutate) in cases {
        let mut m = bytes.clone();
        mutate(&mut m);
        let path = dir.join("kernel-corrupt");
        std::fs::write(&path, &m).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dump = dir.join("corrupt.json");
        let out = run(dir, "kernel-corrupt", &["twice", "300"], Some(&[("DRTI_HOT_THRESHOLD", "50"), ("DRTI_DUMP", dump.to_str().unwrap())]));
        assert_eq!(stdout_ok(&out, what), stdout_ok(&plain, "kernel"), "{what}");
        assert_eq!(out.status.code(), plain.status.code());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("skipping drti module").count(), 1, "{what}: one warning expected: {err}");
        let v = read_dump_typed(&dump);
        assert!(v.compiles.is_empty(), "{what}: nothing compiled");
    }
}

/// Builds one test program from tests/progs with drti-cc -O2.
fn build_prog(dir: &std::path::Path, src: &str, out: &str, extra: &[&str]) {
    let st = std::process::Command::new(tool("drti-cc"))
        .arg("-O2")
        .arg(repo().join("tests/progs").join(src))
        .args(["-o", out])
        .args(extra)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "building {src}");
}

#[test]
fn guard_misses_deopt_then_recompile_with_the_new_target() {
    let dir = scratch("phases");
    build_prog(&dir, "phases.c", "phases", &[]);
    let plain = run(&dir, "phases", &["40000"], None);
    let dump = dir.join("phases.json");
    let out = run(&dir, "phases", &["40000"], Some(&[("DRTI_HOT_THRESHOLD", "1000"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, "phases"), stdout_ok(&plain, "phases"));
    let v = read_dump_typed(&dump);
    let compiles: Vec<&DumpCompile> = v.compiles_of("run").collect();
    assert!(compiles.len() >= 2, "run compiled once only: {v:#}");
    assert_eq!(compiles[0].inlined, ["a"]);
    assert!(compiles.last().unwrap().inlined.iter().any(|t| t == "b"), "{v:#}");
    assert_eq!(v.edge("run", "a").unwrap().state, "invalidated");
    assert_eq!(v.edge("run", "b").unwrap().state, "inlined");
    assert!(v.patches.iter().any(|p| !p.active) && v.patches.iter().any(|p| p.active), "{v:#}");
    // After the deopt, run()'s slot went back to its profiled twin (not to null): the edge
    // to b was found by sampling run() again, and run() never ran unprofiled.
    assert!(v.edge("run", "b").unwrap().samples > 0, "{v:#}");
    assert!(!v.unprofiled.iter().any(|u| u.function == "run"), "{v:#}");
}

#[test]
fn perf_map_names_jit_code() {
    let dir = demos();
    // Spawned here (not through `run`) to know the child's pid: only its own map is read.
    let mut cmd = std::process::Command::new(dir.join("kernel"));
    cmd.arg("twice").current_dir(dir);
    for v in ["DRTI_HOT_THRESHOLD", "DRTI_LOG", "DRTI_LOG_FILE", "DRTI_DUMP", "DRTI_JIT", "DRTI_MAX_TARGETS", "DRTI_PERF_MAP", "DRTI_DISABLE"] {
        cmd.env_remove(v);
    }
    // The agent thread at the program's priority, as `with_agent` runs it: tests share the cores.
    cmd.env("LD_PRELOAD", agent()).env("DRTI_HOT_THRESHOLD", "50").env("DRTI_PERF_MAP", "1").env("DRTI_JIT_NICE", "0");
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn kernel");
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let out = child.wait_with_output().unwrap();
    stdout_ok(&out, "kernel");
    let text = std::fs::read_to_string(&map).unwrap_or_else(|e| panic!("{}: {e}", map.display()));
    let _ = std::fs::remove_file(&map);
    let line = text.lines().find(|l| l.contains("drti:apply+[twice]")).unwrap_or_else(|| panic!("{} does not name drti:apply+[twice]:\n{text}", map.display()));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(u64::from_str_radix(fields[0], 16).is_ok() && u64::from_str_radix(fields[1], 16).unwrap() > 0, "{line}");
}

#[test]
fn a_target_that_cannot_be_inlined_is_dropped_and_the_rest_compiled() {
    let dir = scratch("mixed");
    build_prog(&dir, "mixed_targets.c", "mixed", &[]);
    let plain = run(&dir, "mixed", &[], None);
    let dump = dir.join("mixed.json");
    let out = run(&dir, "mixed", &[], Some(&[("DRTI_HOT_THRESHOLD", "100"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, "mixed"), stdout_ok(&plain, "mixed"));
    let v = read_dump_typed(&dump);
    let va = v.edge("run", "va3").expect("edge run->va3");
    assert_eq!(va.state, "rejected");
    assert!(va.reason.as_deref().unwrap().contains("variadic"), "{va}");
    assert_eq!(v.edge("run", "plain3").unwrap().state, "inlined");
    let ok: Vec<_> = v.compiles.iter().filter(|c| c.ok).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].inlined, ["plain3"]);
}

#[test]
fn cxx_standard_library_program_with_a_periodic_type_mix() {
    let dir = scratch("cxx_mix");
    let st = std::process::Command::new(tool("drti-c++"))
        .args(["-O1", "-g"])
        .arg(repo().join("tests/progs/cxx_mix.cpp"))
        .args(["-o", "cxx_mix"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let plain = run(&dir, "cxx_mix", &["300000"], None);
    let dump = dir.join("cxx.json");
    let out = run(&dir, "cxx_mix", &["300000"], Some(&[("DRTI_HOT_THRESHOLD", "100"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    assert_eq!(stdout_ok(&out, "cxx_mix"), stdout_ok(&plain, "cxx_mix"));
    let v = read_dump_typed(&dump);
    // Every 10th shape is a circle: sampling must not alias with that period, so both
    // types are guarded in one compile of total().
    let total: Vec<_> = v.compiles.iter().filter(|c| c.function.starts_with("_Z5total")).collect();
    assert!(!total.is_empty(), "total() not compiled: {v:#}");
    let inlined = &total[0].inlined;
    assert!(inlined.iter().any(|t| t == "_ZNK2Sq4areaEv") && inlined.iter().any(|t| t == "_ZNK2Ci4areaEv"), "{v:#}");
    assert!(v.edges.iter().any(|e| e.callee.contains("_Function_handler") && e.state == "inlined"), "std::function call not inlined: {v:#}");
}

#[test]
fn log_goes_to_the_log_file() {
    let dir = demos();
    let log = dir.join("agent.log");
    let _ = std::fs::remove_file(&log);
    let out = run(dir, "kernel", &["twice", "300"], Some(&[("DRTI_LOG", "info"), ("DRTI_LOG_FILE", log.to_str().unwrap())]));
    stdout_ok(&out, "kernel");
    assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "nothing on stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).expect("log file written");
    assert!(text.contains("drti agent starting") && text.contains("decorated module found"), "{text}");
}
