//! Issue 13 (OSR), build time: drti-cc finds the loops of a function that hold indirect
//! calls (the OSR points), records them in the metadata (`drti inspect` lists them) and
//! gives the profiled twin, never the function itself, a check of each point's OSR slot at
//! the loop head. The agent does not arm the slots (yet): programs print the same with it.

use drti_tests::*;
use std::process::Command;

/// Builds tests/progs/osr_main.`ext` with drti-cc (C) or drti-c++ (C++) into `out`.
fn build(dir: &std::path::Path, ext: &str, out: &str, flags: &[&str]) {
    let cc = if ext == "cpp" { "drti-c++" } else { "drti-cc" };
    compile(dir, cc, &[&format!("tests/progs/osr_main.{ext}")], out, flags);
}

/// The first module of `drti inspect --json file`.
fn inspect(dir: &std::path::Path, file: &str) -> serde_json::Value {
    let out = Command::new(tool("drti")).args(["inspect", "--json", file]).current_dir(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["modules"][0].clone()
}

/// `(function, header block, number of live values, site ordinals)` of every OSR point.
fn points(m: &serde_json::Value) -> Vec<(String, u64, u64, Vec<u64>)> {
    m["osr_points"]
        .as_array()
        .unwrap_or_else(|| panic!("no osr_points in {m:#}"))
        .iter()
        .map(|p| {
            let live = p["live"].as_array().unwrap().len() as u64;
            assert_eq!(p["n_live"].as_u64(), Some(live), "{p:#}");
            let sites = p["sites"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
            (p["function"].as_str().unwrap().to_owned(), p["header"].as_u64().unwrap(), live, sites)
        })
        .collect()
}

#[test]
fn inspect_lists_the_points_of_main_with_their_live_values() {
    let dir = scratch("osr_build_inspect");
    // clang-19 -O2 rotates the C loop into block 4 (of 5); live at its head: the step
    // function and the trip count (PHIs of the pre-header), the induction variable and the
    // accumulator (the header's PHIs). argc/argv are dead by then.
    build(&dir, "c", "osr_c", &[]);
    let m = inspect(&dir, "osr_c");
    assert_eq!(points(&m), [("main".to_owned(), 4, 4, vec![0])], "{m:#}");
    // Its slot follows main's redirect slot (the only function with sites).
    assert_eq!(m["osr_points"][0]["slot"], 1, "{m:#}");
    // C++: the outer loop (block 3) needs the object, the round count and its two PHIs;
    // the inner one (block 6) also its own two PHIs. The virtual call is main's second
    // indirect call (the first, the deleting destructor, is in the exit block before it).
    build(&dir, "cpp", "osr_cpp", &[]);
    let m = inspect(&dir, "osr_cpp");
    assert_eq!(points(&m), [("main".to_owned(), 3, 4, vec![1]), ("main".to_owned(), 6, 6, vec![1])], "{m:#}");
    let text = Command::new(tool("drti")).args(["inspect", "osr_cpp"]).current_dir(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("osr point: main block 6, slot 2, 6 live"), "{text}");
}

#[test]
fn programs_print_the_same_with_the_agent_and_their_twin_runs_the_unarmed_checks() {
    let dir = scratch("osr_build_run");
    // -O0: the loop's live values are the allocas of its variables.
    for (ext, callee, flags) in [("c", "add", &[][..]), ("c", "add", &["-O0", "-g"][..]), ("cpp", "_ZNK6Square4areaEl", &[][..])] {
        let prog = format!("osr_{ext}{}", flags.join(""));
        build(&dir, ext, &prog, flags);
        let plain = stdout_ok(&run(&dir, &prog, &["30"], None), &prog);
        let dump = dir.join(format!("{prog}.json"));
        let out = run(&dir, &prog, &["30"], Some(&[("DRTI_HOT_THRESHOLD", "1000"), ("DRTI_DUMP", dump.to_str().unwrap())]));
        assert_eq!(stdout_ok(&out, &prog), plain, "{prog}: output differs with the agent\n{}", describe(&out));
        // main was sampled: the activation ran main.drti.prof, whose loop heads carry the
        // OSR checks (main itself has no sampling code), and went through them unarmed.
        let v = read_dump_typed(&dump);
        let e = v.edge("main", callee).unwrap_or_else(|| panic!("{prog}: no main -> {callee} edge: {:?}\n{}", v.edges, describe(&out)));
        assert!(e.calls > 0, "{prog}: {e:?}");
    }
}

/// The body of `name` in `objdump -dr` output (instructions and relocations).
fn body<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    let head = format!("<{name}>:\n");
    let start = listing.find(&head)? + head.len();
    let rest = &listing[start..];
    Some(&rest[..rest.find("\n\n").unwrap_or(rest.len())])
}

/// The runtime-area offsets `code` reads through RIP-relative relocations against `.bss`
/// (the area is the programs' only zeroed data): addend + 4 (the displacement ends the
/// instruction for the loads the checks make).
fn area_offsets(code: &str) -> Vec<i64> {
    code.lines()
        .filter(|l| l.contains("R_X86_64_PC32"))
        .filter_map(|l| {
            let sym = l.split_whitespace().last()?;
            let rest = sym.strip_prefix(".bss")?;
            let addend = if rest.is_empty() {
                0
            } else {
                let (sign, hex) = rest.split_at(1);
                let v = i64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()?;
                if sign == "-" {
                    -v
                } else {
                    v
                }
            };
            Some(addend + 4)
        })
        .collect()
}

#[test]
fn only_the_twin_checks_the_osr_slots() {
    let dir = scratch("osr_build_objdump");
    for ext in ["c", "cpp"] {
        // The object for its relocations, the program (same code) for its metadata.
        let (prog, obj) = (format!("osr_{ext}"), format!("osr_{ext}.o"));
        build(&dir, ext, &obj, &["-c"]);
        build(&dir, ext, &prog, &[]);
        let out = match Command::new("objdump").args(["-dr", "--no-show-raw-insn", &obj]).current_dir(&dir).output() {
            Ok(o) if o.status.success() => o,
            _ => {
                println!("skip: objdump is not available");
                return;
            }
        };
        let m = inspect(&dir, &prog);
        let n_sites = m["sites"].as_array().unwrap().len() as u32;
        let slots = bitcode_embed::format::runtime_slots_offset(n_sites) as i64;
        let osr: Vec<i64> = m["osr_points"].as_array().unwrap().iter().map(|p| slots + 8 * p["slot"].as_i64().unwrap()).collect();
        assert!(!osr.is_empty(), "{m:#}");
        let listing = String::from_utf8_lossy(&out.stdout);
        let f = body(&listing, "main").unwrap_or_else(|| panic!("no main in:\n{listing}"));
        let twin = body(&listing, "main.drti.prof").unwrap_or_else(|| panic!("no main.drti.prof in:\n{listing}"));
        // main: clang's code plus its redirect-slot check (slot 0), nothing else of the area.
        assert_eq!(area_offsets(f), [slots], "{ext}: main reads more of the runtime area than its redirect slot:\n{f}");
        // main.drti.prof: every OSR slot, each once per loop head.
        let read = area_offsets(twin);
        for off in &osr {
            assert_eq!(read.iter().filter(|&o| o == off).count(), 1, "{ext}: OSR slot at {off} not checked once in the twin ({read:?}):\n{twin}");
        }
    }
}
