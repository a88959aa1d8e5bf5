//! drti-cc builds programs that behave exactly like clang-19's, and drti inspect sees
//! what was embedded.

use drti_tests::*;
use std::process::Command;

fn compare_builds(tag: &str, flags: &[&str]) {
    let plain = scratch(&format!("plain-{tag}"));
    let drti = scratch(&format!("drti-{tag}"));
    build_demos(&plain, false, flags);
    build_demos(&drti, true, flags);
    for (prog, args) in DEMO_RUNS {
        let a = stdout_ok(&run(&plain, prog, args, None), prog);
        let b = stdout_ok(&run(&drti, prog, args, None), prog);
        assert_eq!(a, b, "{prog} {args:?} ({tag}): drti-cc build prints differently");
    }
}

#[test]
fn decorated_demos_match_plain_o0() {
    compare_builds("O0", &["-O0"]);
}

#[test]
fn decorated_demos_match_plain_o2_pie() {
    compare_builds("O2", &["-O2", "-fPIC", "-pie"]);
}

#[test]
fn inspect_lists_functions_sites_and_bitcode() {
    let dir = scratch("inspect");
    build_demos(&dir, true, &["-O2"]);
    let out = Command::new(tool("drti")).args(["inspect", "--json"]).arg(dir.join("kernel")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["modules"][0];
    assert_eq!(m["abi_version"], bitcode_embed::format::VERSION);
    let apply = m["functions"].as_array().unwrap().iter().find(|f| f["name"] == "apply").expect("apply listed");
    assert_eq!(apply["sites"], 1);
    assert!(apply["flags"].as_array().unwrap().iter().any(|f| f == "decorated"));
    for f in ["twice", "square", "main"] {
        assert!(m["functions"].as_array().unwrap().iter().any(|x| x["name"] == f), "{f} missing");
    }
    assert_eq!(m["sites"].as_array().unwrap().len(), 1);

    // The plugin, a shared object, carries its own module.
    let out = Command::new(tool("drti")).args(["inspect", "--json"]).arg(dir.join("plugin_twice.so")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["modules"][0]["functions"].as_array().unwrap().iter().any(|f| f["name"] == "plugin_fn"));

    // C++: the virtual call site in total_area.
    let out = Command::new(tool("drti")).args(["inspect"]).arg(dir.join("virtual")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("total_area"), "{text}");

    // Round trip: extract the bitcode and have LLVM read it back.
    let bc_dir = dir.join("bc");
    let out = Command::new(tool("drti")).args(["inspect", "--extract"]).arg(&bc_dir).arg(dir.join("kernel")).output().unwrap();
    assert!(out.status.success());
    let dis = Command::new("llvm-dis-19").arg(bc_dir.join("module0.bc")).arg("-o").arg("-").output().expect("llvm-dis-19");
    assert!(dis.status.success(), "{}", String::from_utf8_lossy(&dis.stderr));
    let ir = String::from_utf8_lossy(&dis.stdout);
    assert!(ir.contains("define") && ir.contains("@apply("), "apply not defined in the embedded bitcode");
    assert!(!ir.contains("__drti_runtime"), "embedded bitcode must be the clean module");
}

#[test]
fn inspect_exit_codes() {
    let out = Command::new(tool("drti")).args(["inspect", "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drti metadata"));
    let out = Command::new(tool("drti")).args(["inspect"]).arg(repo().join("README.md")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(tool("drti")).args(["inspect", "/nonexistent/file"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn drti_cc_errors_are_clangs() {
    let dir = scratch("errors");
    std::fs::write(dir.join("bad.c"), "int main(void) { return undefined_thing; }\n").unwrap();
    let ours = Command::new(tool("drti-cc")).args(["-c", "bad.c", "-o", "bad.o"]).current_dir(&dir).output().unwrap();
    let theirs = Command::new("clang-19").args(["-c", "bad.c", "-o", "bad.o"]).current_dir(&dir).output().unwrap();
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(String::from_utf8_lossy(&ours.stderr), String::from_utf8_lossy(&theirs.stderr));
    // Not LLVM 19: a clear error.
    let out = Command::new(tool("drti-cc")).env("DRTI_CLANG", "/bin/true").args(["-c", "bad.c"]).current_dir(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LLVM 19"));
}

#[test]
fn compile_and_link_in_one_command_with_depfile() {
    let dir = scratch("onecmd");
    std::fs::write(dir.join("a.c"), "int twice(int x);\nint (*volatile fp)(int) = twice;\nint main(void) { return fp(20) == 40 ? 0 : 1; }\n").unwrap();
    std::fs::write(dir.join("b.c"), "int twice(int x) { return 2 * x; }\n").unwrap();
    std::fs::write(dir.join("rsp"), "-O2 -MD a.c b.c -o app").unwrap();
    let out = Command::new(tool("drti-cc")).arg("@rsp").current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(Command::new(dir.join("app")).status().unwrap().success());
    let d = std::fs::read_to_string(dir.join("a.d")).expect("a.d written");
    assert!(d.contains("a.c") && !d.contains(".bc"), "{d}");
    let out = Command::new(tool("drti")).args(["inspect", "--json"]).arg(dir.join("app")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["modules"].as_array().unwrap().len(), 2, "one module per source");
}

#[test]
fn functions_can_be_opted_out() {
    let dir = scratch("skip");
    std::fs::write(
        dir.join("s.c"),
        "int inc(int x) { return x + 1; }\n\
         __attribute__((annotate(\"drti_skip\"))) int by_attr(int (*f)(int), int x) { return f(x); }\n\
         int by_env(int (*f)(int), int x) { return f(x) * 2; }\n\
         int kept(int (*f)(int), int x) { return f(x) * 3; }\n\
         int main(void) { return by_attr(inc, 1) + by_env(inc, 1) + kept(inc, 1) == 12 ? 0 : 1; }\n",
    )
    .unwrap();
    let out = Command::new(tool("drti-cc")).env("DRTI_SKIP", "by_env").args(["-O1", "s.c", "-o", "s"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(Command::new(dir.join("s")).status().unwrap().success());
    let out = Command::new(tool("drti")).args(["inspect", "--json"]).arg(dir.join("s")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |name: &str| v["modules"][0]["functions"].as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap();
    for skipped in ["by_attr", "by_env"] {
        assert_eq!(f(skipped)["sites"], 0, "{skipped} must not be profiled");
        assert!(f(skipped)["flags"].as_array().unwrap().iter().any(|x| x == "skipped"), "{skipped}");
    }
    assert_eq!(f("kept")["sites"], 1);
}
