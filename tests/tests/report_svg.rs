//! `drti report --svg / --html`: the hot call graph drawn from a dump.

use drti_tests::*;
use std::path::Path;
use std::process::Command;

/// Two modules, every state, a name with XML metacharacters, two sites of one pair; the
/// compile has phases, and fields no drti writes yet (a newer agent's) are ignored.
const DUMP: &str = r#"{
  "drti_dump_version": 1, "pid": 4242, "exe": "/opt/app/host", "threshold": 50, "from_the_future": {"a": [1]},
  "modules": [
    {"path": "/opt/app/host", "functions": 9, "sites": 4, "bitcode_bytes": 1000},
    {"path": "/opt/app/plugin<&>.so", "functions": 2, "sites": 0, "bitcode_bytes": 300}
  ],
  "edges": [
    {"caller": "apply", "site": 0, "callee": "plugin_fn", "calls": 120000, "state": "inlined",
     "caller_module": "/opt/app/host", "callee_module": "/opt/app/plugin<&>.so"},
    {"caller": "_ZNK6Square4areaEv", "site": 1, "callee": "cmp<int>&co", "calls": 900, "state": "rejected",
     "caller_module": "/opt/app/host", "callee_module": "/opt/app/host"},
    {"caller": "apply", "site": 2, "callee": "_ZNK6Square4areaEv", "calls": 5000, "state": "hot",
     "caller_module": "/opt/app/host", "callee_module": "/opt/app/host"},
    {"caller": "apply", "site": 3, "callee": "_ZNK6Square4areaEv", "calls": 7, "state": "cold",
     "caller_module": "/opt/app/host", "callee_module": "/opt/app/host"},
    {"caller": "plugin_fn", "site": 0, "callee": "logger", "calls": 60, "state": "invalidated",
     "caller_module": "/opt/app/plugin<&>.so", "callee_module": "/opt/app/host"}
  ],
  "compiles": [{"function": "apply", "inlined": ["plugin_fn"], "ms": 11.5, "code_bytes": 600, "ok": true, "error": null,
                "phases": {"parse_ms": 1.5, "bind_ms": 0.25, "optimise_ms": 6, "codegen_ms": 3.75, "future_ms": 1}, "tier": 2}],
  "patches": [{"function": "apply", "from": "0x5555", "to": "0x7f00", "active": true}]
}"#;

/// Checks that tags are balanced (a small XML well-formedness check: no parser crate).
fn assert_balanced(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let end = after.find('>').expect("unterminated tag");
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        assert!(!tag.contains('<'), "raw '<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("close </{name}> without open"));
            assert_eq!(open, name.trim(), "mismatched tags");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_owned());
        }
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    // every '&' starts an entity
    for (i, _) in doc.match_indices('&') {
        let ent = &doc[i..doc[i..].find(';').map(|j| i + j + 1).unwrap_or(doc.len())];
        assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent), "bad entity {ent:?}");
    }
}

fn report(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(tool("drti")).args(args).current_dir(dir).output().expect("run drti report")
}

#[test]
fn svg_and_html_of_a_synthetic_dump() {
    let dir = scratch("report-svg");
    std::fs::write(dir.join("dump.json"), DUMP).unwrap();
    let out = report(&dir, &["report", "--svg", "out.svg", "--html=out.html", "dump.json"]);
    assert!(out.status.success(), "drti report failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("edges (hottest first)"), "text report still printed: {stdout}");
    assert!(stdout.contains("(parse 1.5, bind 0.2, optimise 6.0, codegen 3.8 ms)"), "compile phases: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("out.svg") && stderr.contains("out.html"), "says where it wrote: {stderr}");

    let svg = std::fs::read_to_string(dir.join("out.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_balanced(&svg);
    for name in ["apply", "plugin_fn", "logger", "Square::area", "cmp&lt;int&gt;&amp;co", "plugin&lt;&amp;&gt;.so"] {
        assert!(svg.contains(name), "{name} missing from the SVG");
    }
    assert!(!svg.contains("cmp<int>"), "unescaped name in the SVG");
    for colour in ["#9e9e9e", "#f57c00", "#2e7d32", "#d32f2f", "#7b1fa2"] {
        assert!(svg.contains(colour), "state colour {colour} missing");
    }
    // apply -> Square::area is one arrow over two sites, shown in its hotter-ranked state
    assert_eq!(svg.matches("<g class=\"edge ").count(), 4, "one arrow per caller/callee pair");
    assert!(svg.contains("5,007 (2 sites)"), "aggregated calls label");
    assert!(svg.contains("120,000"));

    let html = std::fs::read_to_string(dir.join("out.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("<pre>") && html.contains("edges (hottest first)"));
    assert_balanced(html.trim_start_matches("<!DOCTYPE html>").replace("<meta charset=\"utf-8\">", "").as_str());

    // plain `drti report DUMP` unchanged: no files, same text
    let plain = report(&dir, &["report", "dump.json"]);
    assert!(plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout), stdout);
    // bad uses
    assert_eq!(report(&dir, &["report", "--svg"]).status.code(), Some(2));
    assert_eq!(report(&dir, &["report", "--png", "x", "dump.json"]).status.code(), Some(2));
    assert_eq!(report(&dir, &["report", "--svg", "/nonexistent/dir/x.svg", "dump.json"]).status.code(), Some(1));
}

#[test]
fn svg_of_a_real_run() {
    let dir = scratch("report-svg-real");
    build_demos(&dir, true, &["-O2"]);
    let dump = dir.join("poly.json");
    let out = run(&dir, "virtual", &["poly", "300"], Some(&[("DRTI_HOT_THRESHOLD", "50"), ("DRTI_DUMP", dump.to_str().unwrap())]));
    stdout_ok(&out, "virtual");
    read_dump_typed(&dump); // the dump types hold everything the agent wrote
    let out = report(&dir, &["report", "--svg", "poly.svg", dump.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(dir.join("poly.svg")).unwrap();
    assert_balanced(&svg);
    for name in ["total_area", "Square::area", "Circle::area", "Triangle::area", "module virtual"] {
        assert!(svg.contains(name), "{name} missing from the SVG of a real run");
    }
}
