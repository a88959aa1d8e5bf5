//! `drti`: inspect decorated binaries, read agent dumps.
use drti_instrument::{help, inspect, report};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        Some("report") => match args.get(1..).unwrap_or_default() {
            [dump] => report::run(dump),
            _ => usage("report takes exactly one DUMP.json"),
        },
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

fn usage(msg: &str) -> i32 {
    eprintln!("drti: {msg}\n\n{}", help::DRTI);
    2
}
