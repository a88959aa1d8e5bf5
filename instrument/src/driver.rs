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
//!
//! Options are read the way clang reads them: by exact name or by the joined forms of
//! clang's option kinds, longest name first (the table `OPTIONS`, audited against clang-19 by the
//! unit tests). Each option goes to the steps that use it; what clang diagnoses once per
//! command (unused link options under `-c`, a `-x` after the last input) goes to the first
//! compile, so the user sees clang's own diagnostics once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How an option carries its value: clang's option kinds. An argument matches the longest
/// table name it starts with whose kind accepts it, as in clang's own option parser, so
/// `-undef` is `-undef` and not `-u ndef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Exactly the name (`-c`).
    Flag,
    /// The value follows in the same argument (`-std=c11`, `-Wl,x`).
    Joined,
    /// The name alone, then this many values as separate arguments (`-Xclang X`).
    Separate(usize),
    /// `-Idir` or `-I dir`.
    JoinedOrSeparate,
    /// Part of the value joined and one more argument (`-Xarch_x86_64 -O2`).
    JoinedAndSeparate,
    /// Every option whose name starts with this one has the same role (`-print-*`).
    Family,
}

impl Kind {
    /// Whether this kind matches an argument longer than its name.
    fn joins(self) -> bool {
        !matches!(self, Kind::Flag | Kind::Separate(_))
    }

    /// How many following arguments belong to an option written as its bare name
    /// (`exact`) or with a joined value.
    fn values(self, exact: bool) -> usize {
        match self {
            Kind::Separate(n) => n,
            Kind::JoinedOrSeparate if exact => 1,
            Kind::JoinedAndSeparate => 1,
            _ => 0,
        }
    }
}

/// What drti-cc does with an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Given to every step (also what an option drti-cc does not know gets).
    Compile,
    /// Used when making bitcode from the source, not when compiling the bitcode (include
    /// paths, macros, files that describe the source: dependencies, diagnostics).
    Preprocess,
    /// Used only when linking: clang's compile step does not read it.
    Link,
    /// `-o`.
    Output,
    /// `-x`.
    Language,
    /// `-c`.
    CompileOnly,
    /// No C/C++ compile to an object follows: the command goes to clang unchanged.
    Passthrough,
    /// `-flto`, undone by a later `-fno-lto`.
    Lto,
    /// `-fno-lto`.
    NoLto,
}

/// One clang-19 driver option drti-cc needs to know: one that takes separate values, one
/// with a role other than [`Role::Compile`], or one whose name starts with the name of a
/// joined option of this table (so it is not mistaken for that option with a value). The
/// unit tests `option_names_do_not_collide` and `option_table_matches_clang` check the
/// table against clang-19 itself.
struct Opt {
    name: &'static str,
    kind: Kind,
    role: Role,
}

const fn o(name: &'static str, kind: Kind, role: Role) -> Opt {
    Opt { name, kind, role }
}

use Kind::{Family, Flag as F, Joined as J, JoinedAndSeparate as JAS, JoinedOrSeparate as JS, Separate as S};
use Role::{Compile as C, CompileOnly, Language, Link as L, Lto, NoLto, Output, Passthrough as P, Preprocess as Pre};

#[rustfmt::skip]
const OPTIONS: &[Opt] = &[
    // The command's shape.
    o("-c", F, CompileOnly), o("--compile", F, CompileOnly),
    o("-o", JS, Output), o("--output", S(1), Output), o("--output=", J, Output),
    o("-x", JS, Language), o("--language", S(1), Language), o("--language=", J, Language),
    o("-flto", F, Lto), o("-flto=", J, Lto), o("-fno-lto", F, NoLto),
    // Actions other than compiling to an object.
    o("-E", F, P), o("--preprocess", F, P), o("-S", F, P), o("--assemble", F, P), o("-M", F, P),
    o("--dependencies", F, P), o("-MM", F, P), o("--user-dependencies", F, P), o("-fsyntax-only", F, P),
    o("-emit-llvm", F, P), o("-emit-ast", F, P), o("-emit-interface-stubs", F, P), o("-emit-merged-ifs", F, P),
    o("-extract-api", F, P), o("--precompile", F, P), o("--analyze", F, P), o("--migrate", F, P),
    o("-fdriver-only", F, P), o("-###", F, P), o("--version", F, P), o("--help", F, P), o("-help", F, P),
    o("--help-hidden", F, P), o("-dumpversion", F, P), o("-dumpmachine", F, P), o("-dumpspecs", F, P),
    o("-print-", Family, P), o("--print-", Family, P), o("-cc1", F, P), o("-cc1as", F, P),
    // Preprocessor and dependency-file options.
    o("-I", JS, Pre), o("-I-", F, Pre), o("--include-directory", S(1), Pre), o("--include-directory=", J, Pre),
    o("--include-directory-after", S(1), Pre), o("--include-directory-after=", J, Pre),
    o("-D", JS, Pre), o("--define-macro", S(1), Pre), o("--define-macro=", J, Pre),
    o("-U", JS, Pre), o("--undefine-macro", S(1), Pre), o("--undefine-macro=", J, Pre),
    o("-A", JS, Pre), o("--assert", S(1), Pre), o("--assert=", J, Pre), o("-undef", F, Pre),
    o("-include", JS, Pre), o("--include", S(1), Pre), o("--include=", J, Pre), o("-include-pch", S(1), Pre),
    o("-imacros", JS, Pre), o("--imacros", S(1), Pre), o("--imacros=", J, Pre),
    o("-isystem", JS, Pre), o("-isystem-after", JS, Pre), o("-iquote", JS, Pre), o("-idirafter", JS, Pre),
    o("-iprefix", JS, Pre), o("--include-prefix", S(1), Pre), o("--include-prefix=", J, Pre),
    o("-iwithprefix", JS, Pre), o("--include-with-prefix", S(1), Pre), o("--include-with-prefix=", J, Pre),
    o("--include-with-prefix-after", S(1), Pre), o("--include-with-prefix-after=", J, Pre),
    o("-iwithprefixbefore", JS, Pre), o("--include-with-prefix-before", S(1), Pre),
    o("--include-with-prefix-before=", J, Pre), o("-iwithsysroot", JS, Pre), o("-iframework", JS, Pre),
    o("-iframeworkwithsysroot", JS, Pre), o("-cxx-isystem", JS, Pre), o("-stdlib++-isystem", JS, Pre),
    o("-nostdinc", F, Pre), o("--no-standard-includes", F, Pre), o("-nostdinc++", F, Pre),
    o("-nostdlibinc", F, Pre), o("-nobuiltininc", F, Pre),
    o("-MD", F, Pre), o("--write-dependencies", F, Pre), o("-MMD", F, Pre), o("--write-user-dependencies", F, Pre),
    o("-MP", F, Pre), o("-MG", F, Pre), o("--print-missing-file-dependencies", F, Pre), o("-MV", F, Pre),
    o("-MF", JS, Pre), o("-MT", JS, Pre), o("-MQ", JS, Pre), o("-MJ", JS, Pre), o("-dependency-file", JS, Pre),
    o("-dependency-dot", S(1), Pre), o("-Xpreprocessor", S(1), Pre), o("-Wp,", J, Pre),
    // Link-step options (clang's compile step does not read them).
    o("-L", JS, L), o("--library-directory", S(1), L), o("--library-directory=", J, L),
    o("-l", JS, L), o("-Wl,", J, L), o("-Xlinker", S(1), L), o("--for-linker", S(1), L), o("--for-linker=", J, L),
    o("--force-link", S(1), L), o("--force-link=", J, L), o("-T", JS, L), o("-u", JS, L), o("-e", S(1), L),
    o("-z", S(1), L), o("-rpath", S(1), L), o("-b", JS, L), o("-filelist", S(1), L),
    o("-undefined", JS, L), o("-unwindlib=", J, L), o("--unwindlib=", J, L), o("-rtlib=", J, L),
    o("--rtlib=", J, L), o("-fuse-ld=", J, L), o("--ld-path=", J, L),
    o("-shared", F, L), o("--shared", F, L), o("-pie", F, L), o("-no-pie", F, L), o("-static-pie", F, L),
    o("-rdynamic", F, L), o("-nostdlib", F, L), o("--no-standard-libraries", F, L), o("-nodefaultlibs", F, L),
    o("-nostartfiles", F, L), o("-nolibc", F, L), o("-nostdlib++", F, L), o("-static-libgcc", F, L),
    o("-static-libstdc++", F, L), o("-shared-libgcc", F, L), o("-r", F, L), o("-s", F, L), o("-t", F, L),
    o("-Z", F, L),
    // Darwin linker options with separate values.
    o("-arch", S(1), L), o("-framework", S(1), L), o("-install_name", S(1), L), o("-seg1addr", S(1), L),
    o("-exported_symbols_list", S(1), L), o("-bundle_loader", S(1), L), o("-init", S(1), L),
    o("-weak_framework", S(1), L), o("-weak_library", S(1), L), o("-lazy_framework", S(1), L),
    o("-lazy_library", S(1), L), o("-image_base", S(1), L), o("-sectalign", S(3), L), o("-segaddr", S(2), L),
    o("-sectcreate", S(3), L),
    // Other options that take separate values (clang-19 says `argument to 'X' is missing`).
    o("--analyzer-output", S(1), C), o("--param", S(1), C), o("--serialize-diagnostics", S(1), Pre),
    o("--vfsoverlay", S(1), C), o("-B", JS, C), o("-F", JS, C), o("-G", JS, C), o("-Xanalyzer", S(1), C),
    o("-Xarch_", JAS, C), o("-Xarch_device", S(1), C), o("-Xarch_host", S(1), C), o("-Xassembler", S(1), C),
    o("-Xclang", S(1), C), o("-Xcuda-fatbinary", S(1), C), o("-Xcuda-ptxas", S(1), C),
    o("-Xoffload-linker", S(1), C), o("-Xopenmp-target", S(1), C), o("-Xopenmp-target=", JAS, C),
    o("-arcmt-migrate-report-output", S(1), C), o("-ccc-arcmt-migrate", S(1), C), o("-ccc-gcc-name", S(1), C),
    o("-ccc-install-dir", S(1), C), o("-ccc-objcmt-migrate", S(1), C), o("-darwin-target-variant", S(1), C),
    o("-darwin-target-variant-triple", S(1), C), o("-dsym-dir", S(1), C), o("-dumpdir", S(1), C),
    o("-fdebug-compilation-dir", S(1), C), o("-fexperimental-openacc-macro-override", S(1), C),
    o("-fmodules-user-build-path", S(1), C), o("-ftrapv-handler", S(1), C), o("-gen-cdb-fragment-path", S(1), Pre),
    o("-hlsl-entry", S(1), C), o("-iapinotes-modules", S(1), C), o("-imultilib", S(1), C), o("-isysroot", JS, C),
    o("--sysroot", S(1), C), o("-ivfsoverlay", JS, C), o("-meabi", S(1), C), o("-mllvm", S(1), C),
    o("-mmlir", S(1), C), o("-module-dependency-dir", S(1), C), o("-mthread-model", S(1), C),
    o("-resource-dir", S(1), C), o("-serialize-diagnostics", S(1), Pre), o("-validator-version", S(1), C),
    o("-vfsoverlay", S(1), C), o("-working-directory", S(1), C), o("-target", S(1), C), o("--prefix", S(1), C),
    o("--encoding", S(1), C), o("--resource", S(1), C), o("--output-class-directory", S(1), C),
    o("--dyld-prefix", S(1), C),
    // Options that start with the name of a joined option above but are not that option.
    o("-unwindlib", F, C), o("-objcmt-", Family, C), o("-object-file-name=", J, C), o("-Mach", F, L),
    o("-ObjC", F, C), o("-ObjC++", F, C), o("-flto-jobs=", J, C),
    o("-flto=auto", F, Lto), o("-flto=jobserver", F, Lto),
    o("-A-", J, Pre), o("-G=", J, C),
];

/// The table entry `arg` stands for, if drti-cc needs to know the option.
fn lookup(arg: &str) -> Option<&'static Opt> {
    OPTIONS
        .iter()
        .filter(|o| arg.starts_with(o.name) && (arg.len() == o.name.len() || o.kind.joins()))
        .max_by_key(|o| o.name.len())
}

/// One command-line element, keeping its value attached.
#[derive(Clone, Debug)]
enum Arg {
    /// An option with its values, if any (`["-I", "dir"]` or `["-Idir"]`); `name` is the
    /// table entry it matched ("" for an option drti-cc does not need to know).
    Opt { name: &'static str, role: Role, args: Vec<String> },
    /// An input file (`-` is standard input) and the language it was given under `-x`.
    Input { path: String, lang: Option<String> },
}

/// The parsed command.
struct Parsed {
    args: Vec<Arg>,
    output: Option<String>,
    compile_only: bool,
    /// The last of `-flto` / `-fno-lto` was `-flto`: clang makes bitcode objects itself.
    lto: bool,
    /// A `-x` after the last input, which clang warns has no effect.
    trailing_language: Vec<String>,
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

/// `None` when the command must go to clang unchanged (an action other than compiling to
/// an object, or an option missing its value, which clang then reports).
fn parse(args: &[String]) -> Option<Parsed> {
    let mut out = Parsed { args: Vec::new(), output: None, compile_only: false, lto: false, trailing_language: Vec::new() };
    let mut lang: Option<String> = None;
    let mut inputs_only = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if inputs_only || a == "-" || !a.starts_with('-') {
            out.args.push(Arg::Input { path: a.clone(), lang: lang.clone() });
            out.trailing_language.clear();
            continue;
        }
        if a == "--" {
            inputs_only = true;
            continue;
        }
        let Some(opt) = lookup(a) else {
            out.args.push(Arg::Opt { name: "", role: Role::Compile, args: vec![a.clone()] });
            continue;
        };
        let exact = a.len() == opt.name.len();
        let n = opt.kind.values(exact);
        let values = args.get(i..i + n)?;
        i += n;
        // The option's value: the joined part, else the first separate argument.
        let value = || if exact { values[0].clone() } else { a[opt.name.len()..].to_owned() };
        match opt.role {
            Role::Passthrough => return None,
            Role::CompileOnly => out.compile_only = true,
            Role::Lto => out.lto = true,
            Role::NoLto => out.lto = false,
            Role::Output => out.output = Some(value()),
            Role::Language => {
                lang = Some(value()).filter(|l| l != "none");
                out.trailing_language = [&[a.clone()][..], values].concat();
            }
            role => {
                let mut v = vec![a.clone()];
                v.extend_from_slice(values);
                out.args.push(Arg::Opt { name: opt.name, role, args: v });
            }
        }
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

/// A build-time DRTI_* variable as text. A value that is not UTF-8 is one warning naming
/// the variable and counts as unset, so the default (`default` in the warning) is used.
fn env_text(tool: &str, name: &str, default: &str) -> Option<String> {
    match std::env::var_os(name)?.into_string() {
        Ok(v) => Some(v),
        Err(raw) => {
            eprintln!("{tool}: warning: {name}={raw:?} is not valid UTF-8; using the default ({default})");
            None
        }
    }
}

/// The clang to run: `DRTI_CLANG` / `DRTI_CLANGXX`, checked to be LLVM 19, or the default.
fn clang_for(tool: &str, cxx: bool) -> Result<String, String> {
    let var = if cxx { "DRTI_CLANGXX" } else { "DRTI_CLANG" };
    let default = if cxx { "clang++-19" } else { "clang-19" };
    match env_text(tool, var, default) {
        Some(path) if !path.is_empty() => {
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
        _ => Ok(default.to_owned()),
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

/// Entry point with the raw arguments. Clang takes any bytes (file names are bytes);
/// drti-cc decorates commands it can read as text and hands the others to clang as they
/// are, with one warning when that leaves a C/C++ compile undecorated.
pub fn main_os(argv0: &str, args: Vec<OsString>) -> i32 {
    let bad = match args.iter().map(|a| a.clone().into_string()).collect::<Result<Vec<String>, OsString>>() {
        Ok(text) => return main(argv0, text),
        Err(bad) => bad,
    };
    let tool = Path::new(argv0).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "drti-cc".into());
    let clang = match clang_for(&tool, tool.ends_with("++")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return 1;
        }
    };
    let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let compiles = parse(&lossy).is_some_and(|p| !p.lto && p.args.iter().any(|a| matches!(a, Arg::Input { path, lang } if source_language(path, lang.as_deref()).is_some())));
    if compiles {
        eprintln!("{tool}: warning: argument {bad:?} is not valid UTF-8; compiled as plain clang would, drti will not optimise it");
    }
    run(&tool, Command::new(&clang).args(&args))
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
    let clang = match clang_for(&tool, cxx) {
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
        return passthrough(&args);
    };
    if p.lto {
        if p.compile_only {
            eprintln!("{tool}: note: -flto: LTO objects are compiled without drti decoration; drti will not optimise them");
        }
        return passthrough(&args);
    }
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
    let n_stdin = p.args.iter().filter(|a| matches!(a, Arg::Input { path, .. } if path == "-")).count();
    if sources.is_empty() || (p.compile_only && p.output.is_some() && n_inputs > 1) || n_stdin > 1 {
        return passthrough(&args);
    }
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return 1;
        }
    };
    let skip: Vec<String> = env_text(&tool, "DRTI_SKIP", "skip nothing").unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut objects: Vec<(usize, String)> = Vec::new();
    for (n, &(i, lang)) in sources.iter().enumerate() {
        let Arg::Input { path, .. } = &p.args[i] else { unreachable!() };
        let object = if p.compile_only {
            p.output.clone().unwrap_or_else(|| with_ext(path, "o"))
        } else {
            scratch.0.join(format!("{n}-{}", with_ext(path, "o"))).to_string_lossy().into_owned()
        };
        let step = Step { src: path, lang, object: &object, scratch: &scratch.0.join(n.to_string()), first: n == 0 };
        let status = compile_one(&tool, &clang, &p, &step, &skip);
        if status != 0 {
            return status;
        }
        objects.push((i, object));
    }
    if p.compile_only {
        // Inputs that are not C/C++ (assembly, ...) in a -c command still need compiling;
        // the unused link options were already reported by the first compile.
        let others: Vec<&Arg> = p.args.iter().filter(|a| matches!(a, Arg::Input { path, lang } if source_language(path, lang.as_deref()).is_none())).collect();
        if others.is_empty() {
            return 0;
        }
        let mut cmd = Command::new(&clang);
        for a in &p.args {
            match a {
                Arg::Opt { role: Role::Link, .. } => {}
                Arg::Opt { args, .. } => {
                    cmd.args(args);
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
            Arg::Opt { args, .. } => {
                cmd.args(args);
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

/// One source's compile.
struct Step<'a> {
    /// The source (`-` is standard input).
    src: &'a str,
    lang: &'a str,
    object: &'a str,
    /// Scratch path stem for the bitcode files.
    scratch: &'a Path,
    /// The first compile of the command: it also gets what clang diagnoses once per
    /// command (see [`compile_one`]).
    first: bool,
}

/// Source → bitcode → decorated bitcode → object. Returns clang's status (0 on success).
fn compile_one(tool: &str, clang: &str, p: &Parsed, step: &Step, skip: &[String]) -> i32 {
    let bc = step.scratch.with_extension("bc");
    let dec = step.scratch.with_extension("drti.bc");
    let options: Vec<(&str, Role, &Vec<String>)> = p.args.iter().filter_map(|a| if let Arg::Opt { name, role, args } = a { Some((*name, *role, args)) } else { None }).collect();

    // Clang reports some things once per command: unused link options in a compile-only
    // command (when linking they belong to the link step alone) and a `-x` after the last
    // input. The first compile gets them, so the user sees clang's own diagnostics once.
    let report_command = step.first;
    let mut front = Command::new(clang);
    for (_, role, v) in &options {
        if *role != Role::Link || (report_command && p.compile_only) {
            front.args(v.iter());
        }
    }
    // Dependency files name the real object, not our scratch bitcode.
    let has = |names: &[&str]| options.iter().any(|(name, ..)| names.contains(name));
    if has(&["-MD", "-MMD", "--write-dependencies", "--write-user-dependencies"]) {
        if !has(&["-MF"]) {
            let d = if p.compile_only { p.output.as_deref().map(|o| Path::new(o).with_extension("d").to_string_lossy().into_owned()) } else { None };
            front.arg("-MF").arg(d.unwrap_or_else(|| with_ext(step.src, "d")));
        }
        if !has(&["-MT", "-MQ"]) {
            front.arg("-MT").arg(if p.compile_only { step.object.to_owned() } else { with_ext(step.src, "o") });
        }
    }
    // `-` makes clang read the source from our standard input, as it would for the user.
    front.args(["-c", "-emit-llvm", "-x", step.lang, step.src]);
    if report_command {
        front.args(&p.trailing_language);
    }
    front.arg("-o").arg(&bc);
    let status = run(tool, &mut front);
    if status != 0 {
        return status;
    }

    let source_name = if step.src == "-" { "<stdin>" } else { step.src };
    let mut input: OsString = dec.clone().into_os_string();
    let decorated = std::fs::read(&bc).map_err(|e| e.to_string()).and_then(|bytes| {
        let opts = crate::decorate::Options { source_name: source_name.to_owned(), skip: skip.to_vec() };
        crate::module::decorate_bitcode(&bytes, &opts)
    });
    match decorated.and_then(|(bytes, _)| std::fs::write(&dec, bytes).map_err(|e| e.to_string())) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("{tool}: warning: {source_name}: not decorated ({e}); compiled as plain clang would, drti will not optimise it");
            input = bc.into_os_string();
        }
    }

    let mut back = Command::new(clang);
    for (_, role, v) in &options {
        if !matches!(role, Role::Preprocess | Role::Link) {
            back.args(v.iter());
        }
    }
    back.args(["-Wno-unused-command-line-argument", "-Xclang", "-disable-llvm-optzns", "-c", "-x", "ir"]).arg(&input).arg("-o").arg(step.object);
    run(tool, &mut back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// The role drti-cc gives `arg` (unknown options are compile options).
    fn role(arg: &str) -> Role {
        lookup(arg).map_or(Role::Compile, |o| o.role)
    }

    fn opts(p: &Parsed) -> Vec<Vec<String>> {
        p.args.iter().filter_map(|a| if let Arg::Opt { args, .. } = a { Some(args.clone()) } else { None }).collect()
    }

    fn inputs(p: &Parsed) -> Vec<(String, Option<String>)> {
        p.args.iter().filter_map(|a| if let Arg::Input { path, lang } = a { Some((path.clone(), lang.clone())) } else { None }).collect()
    }

    #[test]
    fn response_files_split_like_clang() {
        assert_eq!(split_response("-O2 \"a b\" 'c\"d' e\\ f\n-g"), s(&["-O2", "a b", "c\"d", "e f", "-g"]));
    }

    #[test]
    fn actions_other_than_compiling_pass_through() {
        for cmd in [&["-E", "a.c"][..], &["--version"], &["-S", "a.c"], &["-print-file-name=libc.so"], &["-###", "-c", "a.c"], &["-c", "-I"]] {
            assert!(parse(&s(cmd)).is_none(), "{cmd:?}");
        }
        assert!(parse(&s(&["-flto", "-c", "a.c"])).unwrap().lto);
        assert!(!parse(&s(&["-flto=thin", "-fno-lto", "-c", "a.c"])).unwrap().lto);
        assert!(!parse(&s(&["-flto-jobs=4", "-c", "a.c"])).unwrap().lto);
    }

    #[test]
    fn inputs_outputs_and_languages() {
        let p = parse(&s(&["-c", "-I", "inc", "-x", "c", "a.txt", "-x", "none", "b.cpp", "-o", "out.o", "c.s"])).unwrap();
        assert!(p.compile_only);
        assert_eq!(p.output.as_deref(), Some("out.o"));
        let langs: Vec<_> = inputs(&p).iter().map(|(path, lang)| source_language(path, lang.as_deref())).collect();
        assert_eq!(langs, vec![Some("c"), Some("c++"), None]);
        assert_eq!(opts(&p), vec![s(&["-I", "inc"])]);
        // Joined and GNU spellings; `-` is standard input; after `--` everything is an input.
        let p = parse(&s(&["-xc", "-", "--output=o.o", "-c", "--", "-odd.c"])).unwrap();
        assert_eq!(p.output.as_deref(), Some("o.o"));
        assert_eq!(inputs(&p), vec![("-".into(), Some("c".into())), ("-odd.c".into(), Some("c".into()))]);
    }

    #[test]
    fn options_keep_their_separate_values() {
        let p = parse(&s(&["-c", "a.c", "-include-pch", "x.pch", "-Xclang", "-foo", "-sectalign", "a", "b", "c", "-Xarch_x86_64", "-O2", "-MF", "a.d"])).unwrap();
        assert_eq!(inputs(&p), vec![("a.c".into(), None)]);
        assert_eq!(opts(&p), vec![s(&["-include-pch", "x.pch"]), s(&["-Xclang", "-foo"]), s(&["-sectalign", "a", "b", "c"]), s(&["-Xarch_x86_64", "-O2"]), s(&["-MF", "a.d"])]);
    }

    #[test]
    fn options_are_classified_by_name_not_by_loose_prefix() {
        use Role::*;
        for (arg, want) in [
            ("-undef", Preprocess), ("-u", Link), ("-usym", Link), ("-unwindlib=libgcc", Link), ("-Iinc", Preprocess),
            ("-I-", Preprocess), ("-DX=1", Preprocess), ("-include-pch", Preprocess), ("-O2", Compile), ("-lm", Link),
            ("-fPIC", Compile), ("-static", Compile), ("-nostdlibinc", Preprocess), ("-nostdlib", Link),
            ("-nostdlib++", Link), ("-object-file-name=x", Compile), ("-objcmt-migrate-all", Compile), ("-ofoo", Output),
            ("-emit-llvm", Passthrough), ("-Wl,--as-needed", Link), ("-Wp,-MD,x.d", Preprocess), ("-v", Compile),
            ("-MFdeps.d", Preprocess), ("-Mach", Link), ("-MV", Preprocess), ("-ObjC", Compile), ("-flto-unit", Compile),
            ("--include-directory=inc", Preprocess), ("-emit-symbol-graph", Compile), ("-extract-api-ignores=x", Compile),
        ] {
            assert_eq!(role(arg), want, "{arg}");
        }
    }

    /// Runs clang-19; `None` (and a skip note) when it is not installed.
    fn clang(args: &[&str]) -> Option<std::process::Output> {
        match Command::new("clang-19").args(args).output() {
            Ok(o) => Some(o),
            Err(e) => {
                println!("skip: clang-19: {e}");
                None
            }
        }
    }

    /// Every option name clang-19's driver knows, as its completion lists them.
    fn clang_option_names() -> Option<Vec<String>> {
        let mut names = Vec::new();
        for prefix in ["-", "--"] {
            let out = clang(&[&format!("--autocomplete={prefix}")])?;
            names.extend(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split('\t').next()).map(str::to_owned));
        }
        assert!(names.len() > 1000, "clang-19 --autocomplete listed only {} options", names.len());
        Some(names)
    }

    /// The audit the `-undef` bug called for: no clang option is taken for a shorter
    /// option of the table with a joined value.
    #[test]
    fn option_names_do_not_collide() {
        let Some(names) = clang_option_names() else { return };
        let collisions: Vec<String> = names
            .iter()
            .filter_map(|n| lookup(n).filter(|o| o.name != n && o.kind != Kind::Family).map(|o| format!("{n} taken for {}", o.name)))
            .collect();
        assert!(collisions.is_empty(), "clang options taken for other table entries:\n{}", collisions.join("\n"));
    }

    /// An example of `opt` on a command line, with values.
    fn example(opt: &Opt) -> Vec<String> {
        let mut v = vec![if matches!(opt.kind, Kind::Joined | Kind::JoinedAndSeparate) { format!("{}x", opt.name) } else { opt.name.to_owned() }];
        v.extend((0..opt.kind.values(true)).map(|i| format!("v{i}")));
        v
    }

    /// The table's names and kinds are clang-19's: each name is known to clang, and takes
    /// separate values exactly when the table says so.
    #[test]
    fn option_table_matches_clang() {
        let mut wrong = Vec::new();
        for opt in OPTIONS.iter().filter(|o| !matches!(o.role, Role::Passthrough) && o.kind != Kind::Family) {
            let Some(out) = clang(&["-###", "-c", "-x", "c", "/dev/null", opt.name]) else { return };
            let err = String::from_utf8_lossy(&out.stderr);
            let missing = err.contains(&format!("argument to '{}' is missing", opt.name));
            if err.contains("unknown argument") || missing != (opt.kind.values(true) > 0) {
                wrong.push(format!("{} ({:?}): {}", opt.name, opt.kind, err.lines().next().unwrap_or("")));
            }
            if !matches!(opt.kind, Kind::Separate(2..) | Kind::JoinedAndSeparate) {
                continue;
            }
            // Options with several values: the count is right.
            let with_values = example(opt);
            let out = clang(&[&["-###", "-c", "-x", "c", "/dev/null"][..], &with_values.iter().map(String::as_str).collect::<Vec<_>>()].concat()).unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("unknown argument") || err.contains("is missing") {
                wrong.push(format!("{with_values:?}: {}", err.lines().next().unwrap_or("")));
            }
        }
        assert!(wrong.is_empty(), "table entries clang-19 disagrees with:\n{}", wrong.join("\n"));
    }

    /// What drti-cc keeps from compile steps (link options) is what clang's own compile
    /// step ignores: the cc1 command does not change.
    #[test]
    fn link_options_do_not_change_the_compile() {
        let cc1 = |extra: &[String]| -> Option<String> {
            let out = clang(&[&["-###", "-c", "-x", "c", "/dev/null", "-o", "x.o"][..], &extra.iter().map(String::as_str).collect::<Vec<_>>()].concat())?;
            Some(String::from_utf8_lossy(&out.stderr).lines().find(|l| l.contains("\"-cc1\"")).unwrap_or("").to_owned())
        };
        let Some(base) = cc1(&[]) else { return };
        assert!(!base.is_empty());
        for opt in OPTIONS.iter().filter(|o| o.role == Role::Link) {
            assert_eq!(cc1(&example(opt)).unwrap(), base, "{:?} changes clang's compile step", example(opt));
        }
    }
}
