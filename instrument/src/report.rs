//! `drti report [--svg OUT] [--html OUT] DUMP.json`: the agent's dump as tables a person
//! can read, and optionally the hot call graph drawn as SVG (see [`crate::graph`]).

use serde_json::Value;

/// Dump versions this report understands.
pub const READS_VERSIONS: &[u64] = &[1];

/// Where `drti report` writes pictures besides the text on stdout.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// `--svg OUT`: the call graph as SVG.
    pub svg: Option<String>,
    /// `--html OUT`: the SVG and the text report in one HTML page.
    pub html: Option<String>,
}

/// Runs `drti report`; returns the exit status (2: unreadable or unknown version; 1: an
/// output file could not be written).
pub fn run(path: &str, outputs: &Outputs) -> i32 {
    let dump: Value = match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("drti report: cannot read {path}: {e}");
            return 2;
        }
    };
    match dump["drti_dump_version"].as_u64() {
        Some(v) if READS_VERSIONS.contains(&v) => {}
        Some(v) => {
            eprintln!("drti report: {path} is dump version {v}; this drti reads versions {READS_VERSIONS:?} — use the drti that wrote it");
            return 2;
        }
        None => {
            eprintln!("drti report: {path} is not a drti dump (no drti_dump_version)");
            return 2;
        }
    }
    let text = render(&dump);
    print!("{text}");
    if outputs.svg.is_none() && outputs.html.is_none() {
        return 0;
    }
    let svg = crate::graph::render_svg(&dump);
    let mut status = 0;
    if let Some(out) = &outputs.svg {
        status |= write_out(out, &svg, "call graph SVG");
    }
    if let Some(out) = &outputs.html {
        status |= write_out(out, &crate::graph::render_html(&dump, &svg, &text), "HTML report");
    }
    status
}

fn write_out(path: &str, contents: &str, what: &str) -> i32 {
    match std::fs::write(path, contents) {
        Ok(()) => {
            eprintln!("drti report: wrote {what} to {path}");
            0
        }
        Err(e) => {
            eprintln!("drti report: cannot write {what} to {path}: {e}");
            1
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The report text.
pub fn render(dump: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "drti dump: pid {} exe {} threshold {}", s(&dump["pid"]), s(&dump["exe"]), s(&dump["threshold"]));
    let _ = writeln!(out, "\nmodules:");
    for m in dump["modules"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}  ({} functions, {} sites, {} bitcode bytes)", s(&m["path"]), s(&m["functions"]), s(&m["sites"]), s(&m["bitcode_bytes"]));
    }
    let mut edges: Vec<&Value> = dump["edges"].as_array().into_iter().flatten().collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e["calls"].as_u64().unwrap_or(0)));
    let _ = writeln!(out, "\nedges (hottest first):");
    let _ = writeln!(out, "  {:<28} {:>4}  {:<28} {:>14}  {:<12} modules", "caller", "site", "callee", "calls", "state");
    for e in edges {
        let modules = format!("{} -> {}", s(&e["caller_module"]), s(&e["callee_module"]));
        let _ = writeln!(out, "  {:<28} {:>4}  {:<28} {:>14}  {:<12} {}", s(&e["caller"]), s(&e["site"]), s(&e["callee"]), s(&e["calls"]), s(&e["state"]), modules);
    }
    let compiles = dump["compiles"].as_array().cloned().unwrap_or_default();
    if !compiles.is_empty() {
        let _ = writeln!(out, "\ncompiles:");
        for c in &compiles {
            let inlined: Vec<String> = c["inlined"].as_array().into_iter().flatten().map(s).collect();
            let status = if c["ok"].as_bool() == Some(true) { "ok".to_owned() } else { format!("failed: {}", s(&c["error"])) };
            let ms = c["ms"].as_f64().map(|v| format!("{v:.1}")).unwrap_or_else(|| s(&c["ms"]));
            let _ = writeln!(out, "  {:<28} inlined [{}]  {ms} ms  {} bytes  {}", s(&c["function"]), inlined.join(", "), s(&c["code_bytes"]), status);
        }
    }
    let patches = dump["patches"].as_array().cloned().unwrap_or_default();
    if !patches.is_empty() {
        let _ = writeln!(out, "\npatches:");
        for p in &patches {
            let active = if p["active"].as_bool() == Some(true) { "active" } else { "reverted" };
            let _ = writeln!(out, "  {:<28} {} -> {}  {}", s(&p["function"]), s(&p["from"]), s(&p["to"]), active);
        }
    }
    out
}
