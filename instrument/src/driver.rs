//! `drti-cc` / `drti-c++`: drop-in replacements for clang-19 / clang++-19.
//!
//! Each C or C++ compile step becomes three: clang emits bitcode with the user's flags,
//! [`crate::decorate`] decorates it in process, and clang compiles the decorated bitcode
//! to the requested object with the user's code-generation flags and
//! `-Xclang -disable-llvm-optzns` (the IR is already optimised; a second pipeline would
//! only inline decorated functions into their callers and hide their sites). Everything
//! that is not a C/C++ compile to an object (link steps, assembly, `-E`, `-S`,
//! `-emit-llvm`, `-flto`, `--version`, ...) is handed to clang unchanged, so errors and
//! exit statuses are clang's own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options whose value is the next argument.
const TAKES_VALUE: &[&str] = &[
    "-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-iprefix",
    "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-MF", "-MT", "-MQ", "-Xclang", "-Xlinker",
    "-Xpreprocessor", "-Xassembler", "-L", "-l", "-T", "-target", "-arch", "-u", "-z", "-e", "--param",
    "-mllvm", "-aux-triple", "-F", "-framework", "-install_name", "-rpath", "-dependency-file",
    "-MJ", "-ivfsoverlay", "-Xopenmp-target", "-Xoffload-linker",
];

/// Flags after which clang does no C/C++ compile to an object: pass the command through.
const PASSTHROUGH: &[&str] = &[
    "-E", "-S", "-M", "-MM", "-fsyntax-only", "-emit-llvm", "-###", "--version", "-v", "--help", "-help",
    "-dumpversion", "-dumpmachine", "-dumpspecs", "-print-search-dirs", "-print-libgcc-file-name",
    "-print-resource-dir", "-print-prog-name", "-print-file-name", "-print-multi-directory",
    "-print-target-triple", "-print-effective-triple", "-emit-ast", "-emit-interface-stubs", "-cc1", "-cc1as",
];

/// Preprocessor and dependency flags: used when making bitcode, dropped when compiling it.
const PREPROCESSOR_ONLY: &[&str] = &[
    "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-iprefix", "-iwithprefix",
    "-iwithprefixbefore", "-MF", "-MT", "-MQ", "-MD", "-MMD", "-MP", "-MG", "-Xpreprocessor", "-nostdinc",
    "-nostdinc++", "-MJ", "-dependency-file",
];

/// Link-step flags, dropped from compile steps.
const LINK_ONLY: &[&str] = &["-L", "-l", "-Xlinker", "-T", "-u", "-z", "-e", "-rpath", "-shared", "-static", "-pie", "-no-pie", "-rdynamic", "-static-pie", "-nostdlib", "-nodefaultlibs", "-nostartfiles"];

/// One command-line element, keeping its value attached.
#[derive(Clone, Debug)]
enum Arg {
    /// An option with its value, if any (`["-I", "dir"]` or `["-Idir"]`).
    Flag(Vec<String>),
    /// An input file and the language it was given under `-x`.
    Input { path: String, lang: Option<String> },
}

/// Whether `flag` is `opt` or `opt` with its value joined (`-Idir`, `-std=c11` for `-std`).
fn is_flag(flag: &str, opts: &[&str]) -> bool {
    opts.iter().any(|o| flag == *o || (o.len() > 2 && flag.starts_with(o) && !TAKES_VALUE.contains(&flag)) || (o.len() == 2 && flag.starts_with(o)))
}

/// The parsed command.
struct Parsed {
    args: Vec<Arg>,
    output: Option<String>,
    compile_only: bool,
}

/// Expands `@file` response files (clang's GNU quoting), recursively.
pub fn expand_response_files(args: Vec<String>, depth: u32) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for a in args {
        match a.strip_prefix('@') {
            Some(path) if depth < 16 => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read response file '{path}': {e}"))?;
                out.extend(expand_response_files(split_response(&text), depth + 1)?);
            }
            _ => out.push(a),
        }
    }
    Ok(out)
}

/// Splits response-file text into arguments: whitespace separates, quotes and backslash group.
fn split_response(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    have = true;
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                have = true;
            }
            (None, c) if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            (None, c) => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

/// `None` when the command must go to clang unchanged.
fn parse(args: &[String]) -> Option<Parsed> {
    let mut out = Parsed { args: Vec::new(), output: None, compile_only: false };
    let mut lang: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if PASSTHROUGH.contains(&a.as_str()) || a.starts_with("-flto") || a.starts_with("-print-") || a == "-" {
            return None;
        }
        if a == "-c" {
            out.compile_only = true;
        } else if a == "-o" || a == "-x" {
            let v = args.get(i + 1)?.clone();
            i += 1;
            if a == "-o" {
                out.output = Some(v);
            } else {
                lang = (v != "none").then_some(v);
            }
        } else if let Some(v) = a.strip_prefix("-o").filter(|v| !v.is_empty()) {
            out.output = Some(v.to_owned());
        } else if let Some(v) = a.strip_prefix("-x").filter(|v| !v.is_empty()) {
            lang = (v != "none").then(|| v.to_owned());
        } else if a.starts_with('-') && a.len() > 1 {
            if TAKES_VALUE.contains(&a.as_str()) {
                out.args.push(Arg::Flag(vec![a.clone(), args.get(i + 1)?.clone()]));
                i += 1;
            } else {
                out.args.push(Arg::Flag(vec![a.clone()]));
            }
        } else {
            out.args.push(Arg::Input { path: a.clone(), lang: lang.clone() });
        }
        i += 1;
    }
    Some(out)
}

/// The language clang would compile `path` as, if it is C or C++ source drti decorates.
fn source_language(path: &str, lang: Option<&str>) -> Option<&'static str> {
    if let Some(l) = lang {
        return match l {
            "c" => Some("c"),
            "c++" => Some("c++"),
            "cpp-output" => Some("cpp-output"),
            "c++-cpp-output" => Some("c++-cpp-output"),
            _ => None,
        };
    }
    let ext = Path::new(path).extension()?.to_str()?;
    match ext {
        "c" => Some("c"),
        "cc" | "cpp" | "cxx" | "c++" | "C" | "CC" | "cp" | "CPP" => Some("c++"),
        "i" => Some("cpp-output"),
        "ii" => Some("c++-cpp-output"),
        _ => None,
    }
}

/// The clang to run: `DRTI_CLANG` / `DRTI_CLANGXX`, checked to be LLVM 19, or the default.
fn clang_for(cxx: bool) -> Result<String, String> {
    let var = if cxx { "DRTI_CLANGXX" } else { "DRTI_CLANG" };
    match std::env::var(var) {
        Ok(path) if !path.is_empty() => {
            let out = Command::new(&path)
                .arg("--version")
                .output()
                .map_err(|e| format!("{var}={path}: cannot run it: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.contains("version 19.") {
                let first = text.lines().next().unwrap_or("no version output");
                return Err(format!("{var}={path}: drti needs clang from LLVM 19, this is '{first}'"));
            }
            Ok(path)
        }
        _ => Ok(if cxx { "clang++-19" } else { "clang-19" }.to_owned()),
    }
}

/// Runs a command; returns its exit status (127 if it could not start, with a message).
fn run(tool: &str, cmd: &mut Command) -> i32 {
    match cmd.status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("{tool}: error: cannot run {:?}: {e} (install clang-19 or set DRTI_CLANG)", cmd.get_program());
            127
        }
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let p = base.join(format!("drti-cc-{}-{n}", std::process::id()));
            if std::fs::create_dir(&p).is_ok() {
                return Ok(Scratch(p));
            }
        }
        Err(std::io::Error::other("cannot create a scratch directory"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `foo/bar.c` → `bar.<ext>`.
fn with_ext(path: &str, ext: &str) -> String {
    Path::new(path).with_extension(ext).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("out.{ext}"))
}

/// Entry point of drti-cc / drti-c++. `argv0` decides C or C++ (a name ending in `++`).
pub fn main(argv0: &str, args: Vec<String>) -> i32 {
    let tool = Path::new(argv0).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "drti-cc".into());
    let cxx = tool.ends_with("++");
    if args.iter().any(|a| a == "--drti-help") {
        print!("{}", crate::help::DRTI_CC);
        return 0;
    }
    if args.iter().any(|a| a == "--drti-version") {
        println!("{tool} (drti) {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let clang = match clang_for(cxx) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return 1;
        }
    };
    let args = match expand_response_files(args, 0) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return 1;
        }
    };
    let passthrough = |args: &[String]| run(&tool, Command::new(&clang).args(args));
    if args.len() == 1 && (args[0] == "--version" || args[0] == "--help") {
        let status = passthrough(&args);
        if args[0] == "--version" {
            println!("{tool} (drti) {}: decorates C/C++ for drti; see {tool} --drti-help", env!("CARGO_PKG_VERSION"));
        } else {
            print!("\n{}", crate::help::DRTI_CC);
        }
        return status;
    }
    let Some(p) = parse(&args) else {
        if args.iter().any(|a| a.starts_with("-flto")) && args.iter().any(|a| a == "-c") {
            eprintln!("{tool}: note: -flto: LTO objects are compiled without drti decoration; drti will not optimise them");
        }
        return passthrough(&args);
    };
    let sources: Vec<(usize, &'static str)> = p
        .args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Arg::Input { path, lang } => source_language(path, lang.as_deref()).map(|l| (i, l)),
            _ => None,
        })
        .collect();
    let n_inputs = p.args.iter().filter(|a| matches!(a, Arg::Input { .. })).count();
    if sources.is_empty() || (p.compile_only && p.output.is_some() && n_inputs > 1) {
        return passthrough(&args);
    }
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return 1;
        }
    };
    let skip: Vec<String> = std::env::var("DRTI_SKIP").unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut objects: Vec<(usize, String)> = Vec::new();
    for (n, &(i, lang)) in sources.iter().enumerate() {
        let Arg::Input { path, .. } = &p.args[i] else { unreachable!() };
        let object = if p.compile_only {
            p.output.clone().unwrap_or_else(|| with_ext(path, "o"))
        } else {
            scratch.0.join(format!("{n}-{}", with_ext(path, "o"))).to_string_lossy().into_owned()
        };
        let status = compile_one(&tool, &clang, &p, path, lang, &object, &scratch.0.join(n.to_string()), &skip);
        if status != 0 {
            return status;
        }
        objects.push((i, object));
    }
    if p.compile_only {
        // Inputs that are not C/C++ (assembly, ...) in a -c command still need compiling.
        let others: Vec<&Arg> = p.args.iter().filter(|a| matches!(a, Arg::Input { path, lang } if source_language(path, lang.as_deref()).is_none())).collect();
        if others.is_empty() {
            return 0;
        }
        let mut cmd = Command::new(&clang);
        for a in &p.args {
            match a {
                Arg::Flag(v) => {
                    cmd.args(v);
                }
                Arg::Input { path, lang } if source_language(path, lang.as_deref()).is_none() => {
                    push_input(&mut cmd, path, lang.as_deref());
                }
                Arg::Input { .. } => {}
            }
        }
        return run(&tool, &mut cmd);
    }
    let mut cmd = Command::new(&clang);
    for (i, a) in p.args.iter().enumerate() {
        match a {
            Arg::Flag(v) => {
                cmd.args(v);
            }
            Arg::Input { path, lang } => match objects.iter().find(|(j, _)| *j == i) {
                Some((_, obj)) => {
                    cmd.arg(obj);
                }
                None => push_input(&mut cmd, path, lang.as_deref()),
            },
        }
    }
    if let Some(o) = &p.output {
        cmd.arg("-o").arg(o);
    }
    run(&tool, &mut cmd)
}

fn push_input(cmd: &mut Command, path: &str, lang: Option<&str>) {
    match lang {
        Some(l) => cmd.args(["-x", l, path, "-x", "none"]),
        None => cmd.arg(path),
    };
}

/// Source → bitcode → decorated bitcode → object. Returns clang's status (0 on success).
#[allow(clippy::too_many_arguments)]
fn compile_one(tool: &str, clang: &str, p: &Parsed, src: &str, lang: &str, object: &str, scratch: &Path, skip: &[String]) -> i32 {
    let bc = scratch.with_extension("bc");
    let dec = scratch.with_extension("drti.bc");
    let flags: Vec<&Vec<String>> = p.args.iter().filter_map(|a| if let Arg::Flag(v) = a { Some(v) } else { None }).collect();

    let mut front = Command::new(clang);
    for v in &flags {
        if !is_flag(&v[0], LINK_ONLY) {
            front.args(v.iter());
        }
    }
    // Dependency files name the real object, not our scratch bitcode.
    let has = |o: &str| flags.iter().any(|v| v[0] == o);
    if has("-MD") || has("-MMD") {
        if !has("-MF") {
            let d = if p.compile_only { p.output.as_deref().map(|o| Path::new(o).with_extension("d").to_string_lossy().into_owned()) } else { None };
            front.arg("-MF").arg(d.unwrap_or_else(|| with_ext(src, "d")));
        }
        if !has("-MT") && !has("-MQ") {
            front.arg("-MT").arg(if p.compile_only { object.to_owned() } else { with_ext(src, "o") });
        }
    }
    front.args(["-c", "-emit-llvm", "-x", lang, src, "-o"]).arg(&bc);
    let status = run(tool, &mut front);
    if status != 0 {
        return status;
    }

    let mut input: OsString = dec.clone().into_os_string();
    let decorated = std::fs::read(&bc).map_err(|e| e.to_string()).and_then(|bytes| {
        let opts = crate::decorate::Options { source_name: src.to_owned(), skip: skip.to_vec() };
        crate::module::decorate_bitcode(&bytes, &opts)
    });
    match decorated.and_then(|(bytes, _)| std::fs::write(&dec, bytes).map_err(|e| e.to_string())) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("{tool}: warning: {src}: not decorated ({e}); compiled as plain clang would, drti will not optimise it");
            input = bc.into_os_string();
        }
    }

    let mut back = Command::new(clang);
    for v in &flags {
        if !is_flag(&v[0], PREPROCESSOR_ONLY) && !is_flag(&v[0], LINK_ONLY) {
            back.args(v.iter());
        }
    }
    back.args(["-Wno-unused-command-line-argument", "-Xclang", "-disable-llvm-optzns", "-c", "-x", "ir"]).arg(&input).arg("-o").arg(object);
    run(tool, &mut back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn response_files_split_like_clang() {
        assert_eq!(split_response("-O2 \"a b\" 'c\"d' e\\ f\n-g"), s(&["-O2", "a b", "c\"d", "e f", "-g"]));
    }

    #[test]
    fn preprocessing_and_version_pass_through() {
        assert!(parse(&s(&["-E", "a.c"])).is_none());
        assert!(parse(&s(&["--version"])).is_none());
        assert!(parse(&s(&["-flto", "-c", "a.c"])).is_none());
    }

    #[test]
    fn inputs_outputs_and_languages() {
        let p = parse(&s(&["-c", "-I", "inc", "-x", "c", "a.txt", "-x", "none", "b.cpp", "-o", "out.o", "c.s"])).unwrap();
        assert!(p.compile_only);
        assert_eq!(p.output.as_deref(), Some("out.o"));
        let langs: Vec<_> = p
            .args
            .iter()
            .filter_map(|a| if let Arg::Input { path, lang } = a { Some(source_language(path, lang.as_deref())) } else { None })
            .collect();
        assert_eq!(langs, vec![Some("c"), Some("c++"), None]);
        assert!(matches!(&p.args[0], Arg::Flag(v) if v[0] == "-I"));
    }

    #[test]
    fn flag_classes() {
        assert!(is_flag("-Iinc", PREPROCESSOR_ONLY));
        assert!(is_flag("-DX=1", PREPROCESSOR_ONLY));
        assert!(!is_flag("-O2", PREPROCESSOR_ONLY));
        assert!(is_flag("-lm", LINK_ONLY));
        assert!(!is_flag("-fPIC", LINK_ONLY));
    }
}
