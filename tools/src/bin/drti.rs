//! `drti`: inspect decorated binaries, read agent dumps, manage the code cache.
use drti_tools::{cache_cmd, help, inspect, report};

fn main() {
    // `drti inspect FILE | head` ends like any Unix tool: quietly, by SIGPIPE, when the
    // reader goes away; Rust's runtime ignores SIGPIPE, which makes println! panic instead.
    // SAFETY: restores the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(bad) => std::process::exit(usage(&format!("argument {bad:?} is not valid UTF-8"))),
    };
    let code = match args.first().map(String::as_str) {
        Some("inspect") => {
            let json = args.iter().any(|a| a == "--json");
            let extract = args.iter().position(|a| a == "--extract").and_then(|i| args.get(i + 1)).map(String::as_str);
            let files: Vec<&String> = args[1..].iter().enumerate().filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[*i] != "--extract")).map(|(_, a)| a).collect();
            match files.as_slice() {
                [file] => inspect::run(file, json, extract),
                _ => usage("inspect takes exactly one FILE"),
            }
        }
        Some("report") => match report_args(&args[1..]) {
            Ok((dump, outputs)) => report::run(&dump, &outputs),
            Err(msg) => usage(&msg),
        },
        Some("cache") => cache_cmd::run(&args[1..]),
        Some("--version") | Some("-V") => {
            println!("drti {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help") | Some("-h") | Some("help") => {
            print!("{}", help::DRTI);
            0
        }
        Some(other) => usage(&format!("unknown command '{other}'")),
        None => usage("missing command"),
    };
    std::process::exit(code);
}

/// `drti report [--svg OUT] [--html OUT] DUMP` (also `--svg=OUT`), options in any order.
fn report_args(args: &[String]) -> Result<(String, report::Outputs), String> {
    let mut outputs = report::Outputs::default();
    let mut dumps = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let slot = match flag {
            "--svg" => &mut outputs.svg,
            "--html" => &mut outputs.html,
            f if f.starts_with("--") => return Err(format!("report: unknown option '{a}'")),
            _ => {
                dumps.push(a.clone());
                continue;
            }
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("report: {flag} needs an output FILE"))?,
        };
        if value.is_empty() {
            return Err(format!("report: {flag} needs an output FILE"));
        }
        if slot.replace(value).is_some() {
            return Err(format!("report: {flag} given twice"));
        }
    }
    match <[String; 1]>::try_from(dumps) {
        Ok([dump]) => Ok((dump, outputs)),
        Err(_) => Err("report takes exactly one DUMP.json (and optionally --svg OUT, --html OUT)".into()),
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("drti: {msg}\n\n{}", help::DRTI);
    2
}
