//! `drti report [--svg OUT] [--html OUT] DUMP.json`: the agent's dump as tables a person
//! can read, and optionally the hot call graph drawn as SVG (see [`crate::graph`]).

use bitcode_embed::dump::Dump;

/// Where `drti report` writes pictures besides the text on stdout.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// `--svg OUT`: the call graph as SVG.
    pub svg: Option<String>,
    /// `--html OUT`: the SVG and the text report in one HTML page.
    pub html: Option<String>,
}

/// Runs `drti report`; returns the exit status (2: unreadable, malformed or unknown
/// version; 1: an output file could not be written).
pub fn run(path: &str, outputs: &Outputs) -> i32 {
    let dump = match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| Dump::from_json(&t).map_err(|e| e.to_string())) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("drti report: cannot read {path}: {e}");
            return 2;
        }
    };
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

/// An optional text, `-` when absent.
fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// The report text.
pub fn render(dump: &Dump) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "drti dump: pid {} exe {} threshold {}", dump.pid, dump.exe, dump.threshold);
    let _ = writeln!(out, "\nmodules:");
    for m in &dump.modules {
        let _ = writeln!(out, "  {}  ({} functions, {} sites, {} bitcode bytes)", m.path, m.functions, m.sites, m.bitcode_bytes);
    }
    let mut edges: Vec<_> = dump.edges.iter().collect();
    edges.sort_by_key(|e| std::cmp::Reverse(e.calls));
    let _ = writeln!(out, "\nedges (hottest first):");
    let _ = writeln!(out, "  {:<28} {:>4}  {:<28} {:>14}  {:<12} modules", "caller", "site", "callee", "calls", "state");
    let module = |m: &str| if m.is_empty() { "-".to_owned() } else { m.to_owned() };
    for e in edges {
        let modules = format!("{} -> {}", module(&e.caller_module), module(&e.callee_module));
        let _ = writeln!(out, "  {:<28} {:>4}  {:<28} {:>14}  {:<12} {}", e.caller, e.site, e.callee, e.calls, e.state, modules);
    }
    if !dump.compiles.is_empty() {
        let _ = writeln!(out, "\ncompiles:");
        for c in &dump.compiles {
            let status = if c.ok { "ok".to_owned() } else { format!("failed: {}", or_dash(&c.error)) };
            let phases = match (&c.phases, c.cache.as_deref()) {
                (_, Some("hit")) => "  (from the code cache)".to_owned(),
                (Some(p), _) => format!("  (parse {:.1}, bind {:.1}, optimise {:.1}, codegen {:.1} ms)", p.parse_ms, p.bind_ms, p.optimise_ms, p.codegen_ms),
                (None, _) => String::new(),
            };
            // An on-stack-replacement continuation enters F at a loop header.
            let name = match c.osr_header {
                Some(h) => format!("{} @loop {h}", c.function),
                None => c.function.clone(),
            };
            let _ = writeln!(out, "  {:<28} inlined [{}]  {:.1} ms  {} bytes  {}{phases}", name, c.inlined.join(", "), c.ms, c.code_bytes, status);
        }
    }
    if !dump.patches.is_empty() {
        let _ = writeln!(out, "\npatches:");
        for p in &dump.patches {
            let active = if p.active { "active" } else { "reverted" };
            let _ = writeln!(out, "  {:<28} {} -> {}  {}", p.function, p.from, p.to, active);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcode_embed::dump::DumpCompile;

    #[test]
    fn compiles_say_where_their_code_came_from() {
        let mut d = Dump::default();
        d.compiles.push(DumpCompile { function: "apply".into(), inlined: vec!["twice".into()], ok: true, cache: Some("hit".into()), ..Default::default() });
        d.compiles.push(DumpCompile { function: "main".into(), inlined: vec!["add".into()], ok: true, cache: Some("miss".into()), osr_header: Some(4), ..Default::default() });
        let text = render(&d);
        assert!(text.contains("apply") && text.contains("(from the code cache)"), "{text}");
        assert!(text.contains("main @loop 4"), "{text}");
    }
}
