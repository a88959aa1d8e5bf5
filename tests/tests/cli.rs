//! The command-line tools behave like the Unix tools they stand in for: drti-cc passes
//! every clang option to the step that needs it (and clang's diagnostics through as clang
//! prints them), decorates whatever it compiles, warns about unreadable DRTI_* values, and
//! neither drti nor drti-cc panics when its reader goes away.

use drti_tests::*;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The test program (an indirect call, output depending on `__linux__`).
fn prog() -> PathBuf {
    repo().join("tests/progs/cli_prog.c")
}

/// `b"\xff"`: a value that is not UTF-8.
fn not_utf8() -> OsString {
    OsString::from_vec(vec![b'a', 0xff, b'1'])
}

/// A command in `dir` with no DRTI_* variables from the test's own environment.
fn cmd(program: impl AsRef<OsStr>, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DRTI_") || k == "LD_PRELOAD" {
            c.env_remove(k);
        }
    }
    c
}

fn output<C: std::borrow::BorrowMut<Command>>(mut c: C) -> Output {
    let c = c.borrow_mut();
    c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `exe` carries a drti-decorated module (`drti inspect` exit 0) listing `main`.
fn decorated(exe: &Path) -> bool {
    let out = output(Command::new(tool("drti")).args(["inspect", "--json"]).arg(exe));
    if out.status.code() != Some(0) {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    v["modules"][0]["functions"].as_array().into_iter().flatten().any(|f| f["name"] == "main")
}

/// Links `obj` into `exe` with plain clang.
fn link(dir: &Path, obj: &str, exe: &str) {
    ok(&output(cmd("clang-19", dir).args([obj, "-o", exe])), "link");
}

fn have_clang() -> bool {
    Command::new("clang-19").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn undef_reaches_the_compile_like_clang() {
    if !have_clang() {
        println!("skip: clang-19 not installed");
        return;
    }
    let dir = scratch("cli-undef");
    ok(&output(cmd("clang-19", &dir).arg("-undef").arg(prog()).args(["-o", "plain"])), "clang-19 -undef");
    let want = ok(&output(cmd(dir.join("plain"), &dir)), "plain");
    assert!(want.contains("__linux__ not defined"), "clang-19 -undef keeps __linux__? {want}");

    // Link mode and compile-only mode.
    ok(&output(cmd(tool("drti-cc"), &dir).arg("-undef").arg(prog()).args(["-o", "drti"])), "drti-cc -undef");
    assert_eq!(ok(&output(cmd(dir.join("drti"), &dir)), "drti"), want, "drti-cc -undef (link) compiles differently from clang-19 -undef");
    ok(&output(cmd(tool("drti-cc"), &dir).args(["-c", "-undef"]).arg(prog()).args(["-o", "drti.o"])), "drti-cc -c -undef");
    link(&dir, "drti.o", "drti_c");
    assert_eq!(ok(&output(cmd(dir.join("drti_c"), &dir)), "drti_c"), want, "drti-cc -c -undef compiles differently from clang-19 -undef");
    assert!(decorated(&dir.join("drti_c")), "-undef build not decorated");
}

#[test]
fn stdin_source_is_decorated() {
    let dir = scratch("cli-stdin");
    let source = std::fs::File::open(prog()).unwrap();
    let out = output(cmd(tool("drti-cc"), &dir).args(["-x", "c", "-c", "-", "-o", "in.o"]).stdin(source));
    ok(&out, "drti-cc -x c - -c");
    assert_eq!(stderr(&out), "", "compiling from stdin printed something");
    link(&dir, "in.o", "in");
    assert!(decorated(&dir.join("in")), "object compiled from stdin is not decorated");
    assert_eq!(ok(&output(cmd(dir.join("in"), &dir)), "in"), "__linux__ defined\nhello\n");

    // Link mode, and clang's default object name for stdin (-.o) in compile-only mode.
    let source = std::fs::File::open(prog()).unwrap();
    ok(&output(cmd(tool("drti-cc"), &dir).args(["-x", "c", "-", "-o", "in_link"]).stdin(source)), "drti-cc -x c - -o");
    assert!(decorated(&dir.join("in_link")), "program compiled from stdin is not decorated");
    let source = std::fs::File::open(prog()).unwrap();
    ok(&output(cmd(tool("drti-cc"), &dir).args(["-c", "-x", "c", "-"]).stdin(source)), "drti-cc -c -x c -");
    assert!(dir.join("-.o").exists(), "clang names the object of stdin -.o");
}

#[test]
fn verbose_still_decorates_and_shows_clang_output() {
    let dir = scratch("cli-verbose");
    let out = output(cmd(tool("drti-cc"), &dir).args(["-v", "-c"]).arg(prog()).args(["-o", "v.o"]));
    ok(&out, "drti-cc -v -c");
    let err = stderr(&out);
    assert!(err.contains("clang version 19") && err.contains("-cc1"), "clang's -v output missing:\n{err}");
    link(&dir, "v.o", "v");
    assert!(decorated(&dir.join("v")), "-v turned decoration off");
}

#[test]
fn clang_diagnostics_reach_the_user_as_clang_prints_them() {
    if !have_clang() {
        println!("skip: clang-19 not installed");
        return;
    }
    let dir = scratch("cli-diag");
    std::fs::copy(prog(), dir.join("a.c")).unwrap();
    std::fs::copy(prog(), dir.join("b.c")).unwrap();
    // (flags, expect a non-empty stderr)
    let cases: &[(&[&str], bool)] = &[
        (&["-c", "a.c", "-lm"], true),
        (&["-c", "a.c", "b.c", "-lm", "-L/nonexistent"], true),
        (&["-c", "a.c", "-Wl,--as-needed", "-o", "x.o"], true),
        (&["a.c", "-lm", "-Wl,--as-needed", "-o", "x"], false),
        (&["-c", "a.c", "-x", "c"], true),
        (&["a.c", "-o", "x", "-x", "c"], true),
        (&["-c", "a.c", "-undef", "-MD", "-MF", "a.d", "-o", "a.o"], false),
    ];
    for (flags, noisy) in cases {
        let plain = output(cmd("clang-19", &dir).args(*flags));
        ok(&plain, &format!("clang-19 {flags:?}"));
        let drti = output(cmd(tool("drti-cc"), &dir).args(*flags));
        ok(&drti, &format!("drti-cc {flags:?}"));
        assert_eq!(stderr(&drti), stderr(&plain), "drti-cc {flags:?}: diagnostics differ from clang-19's");
        assert_eq!(!stderr(&plain).is_empty(), *noisy, "clang-19 {flags:?}: {}", stderr(&plain));
    }
    // -Werror makes the unused linker input an error, for drti-cc as for clang.
    let plain = output(cmd("clang-19", &dir).args(["-Werror", "-c", "a.c", "-lm"]));
    let drti = output(cmd(tool("drti-cc"), &dir).args(["-Werror", "-c", "a.c", "-lm"]));
    assert_eq!((drti.status.code(), stderr(&drti)), (plain.status.code(), stderr(&plain)));
    assert_ne!(plain.status.code(), Some(0));
}

/// Runs `c` with a stdout pipe whose reader is already closed; the tool must neither
/// panic nor print anything, and end either normally or by SIGPIPE like other tools.
fn assert_quiet_on_broken_pipe(c: &mut Command, what: &str) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = c.stdout(writer).stderr(Stdio::piped()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let err = stderr(&out);
    assert!(!err.contains("panicked") && err.is_empty(), "{what}: output to a closed pipe printed:\n{err}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc_sigpipe()),
        "{what}: closed pipe ends with {:?}",
        out.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn tools_exit_quietly_when_the_reader_goes_away() {
    let dir = scratch("cli-pipe");
    ok(&output(cmd(tool("drti-cc"), &dir).arg(prog()).args(["-o", "p"])), "drti-cc");
    let dump = dir.join("dump.json");
    std::fs::write(
        &dump,
        r#"{"drti_dump_version":1,"pid":1,"exe":"p","threshold":1,
            "modules":[{"path":"p","functions":2,"sites":1,"bitcode_bytes":10}],
            "edges":[{"caller":"main","site":0,"callee":"hello","calls":5,"state":"cold"}],
            "compiles":[],"patches":[]}"#,
    )
    .unwrap();
    assert_quiet_on_broken_pipe(cmd(tool("drti"), &dir).args(["inspect", "p"]), "drti inspect");
    assert_quiet_on_broken_pipe(cmd(tool("drti"), &dir).args(["inspect", "--json", "p"]), "drti inspect --json");
    assert_quiet_on_broken_pipe(cmd(tool("drti"), &dir).arg("report").arg(&dump), "drti report");
    assert_quiet_on_broken_pipe(cmd(tool("drti"), &dir).arg("--help"), "drti --help");
    assert_quiet_on_broken_pipe(cmd(tool("drti-cc"), &dir).arg("--drti-help"), "drti-cc --drti-help");
    assert_quiet_on_broken_pipe(cmd(tool("drti-cc"), &dir).arg("--version"), "drti-cc --version");
}

#[test]
fn non_utf8_agent_variable_warns_once_and_output_is_unchanged() {
    let dir = scratch("cli-agent-env");
    ok(&output(cmd(tool("drti-cc"), &dir).arg(prog()).args(["-o", "p"])), "drti-cc");
    let plain = ok(&output(cmd(dir.join("p"), &dir)), "p without the agent");
    let out = output(cmd(dir.join("p"), &dir).env("LD_PRELOAD", agent()).env("DRTI_HOT_THRESHOLD", not_utf8()));
    assert_eq!(ok(&out, "p with a non-UTF-8 DRTI_HOT_THRESHOLD"), plain, "output changed");
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("DRTI_HOT_THRESHOLD")).collect();
    assert_eq!(warnings.len(), 1, "want one warning naming DRTI_HOT_THRESHOLD, stderr:\n{err}");
    assert_eq!(err.lines().count(), 1, "more than the warning on stderr:\n{err}");
}

#[test]
fn non_utf8_build_variables_warn_once_and_use_the_default() {
    let dir = scratch("cli-build-env");
    for var in ["DRTI_SKIP", "DRTI_CLANG"] {
        let out = output(cmd(tool("drti-cc"), &dir).env(var, not_utf8()).arg("-c").arg(prog()).args(["-o", "p.o"]));
        ok(&out, &format!("drti-cc with a non-UTF-8 {var}"));
        let err = stderr(&out);
        assert_eq!(err.lines().filter(|l| l.contains(var)).count(), 1, "{var}: want one warning naming it, stderr:\n{err}");
        assert_eq!(err.lines().count(), 1, "{var}: more than the warning on stderr:\n{err}");
        link(&dir, "p.o", "p");
        assert!(decorated(&dir.join("p")), "{var}: not decorated");
    }
}

#[test]
fn non_utf8_arguments_are_handled_not_panicked_on() {
    let dir = scratch("cli-args");
    let name = OsString::from_vec(b"prog\xff.c".to_vec());
    std::fs::copy(prog(), dir.join(&name)).unwrap();
    // clang takes the file; drti-cc compiles it as clang would and says it is not decorated.
    let out = output(cmd(tool("drti-cc"), &dir).arg("-c").arg(&name).args(["-o", "p.o"]));
    ok(&out, "drti-cc with a non-UTF-8 file name");
    let err = stderr(&out);
    assert!(!err.contains("panicked") && err.lines().count() == 1 && err.contains("not valid UTF-8"), "{err}");
    link(&dir, "p.o", "p");
    assert_eq!(ok(&output(cmd(dir.join("p"), &dir)), "p"), "__linux__ defined\nhello\n");
    // drti reports a usage error.
    let out = output(cmd(tool("drti"), &dir).arg("inspect").arg(&name));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked") && stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
}
