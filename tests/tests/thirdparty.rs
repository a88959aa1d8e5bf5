//! A real third-party C project through drti: zlib (as vendored in the crates.io package
//! libz-sys 1.1.8) built with its own `./configure && make` and `CC=drti-cc`, its own tests
//! run plain and with the agent preloaded at a low threshold. `scripts/thirdparty.sh` does
//! the work (fetch with cargo, both builds, comparisons, report); this test runs it and
//! checks the agent dumps it leaves behind.

use drti_tests::*;
use std::process::Command;
use std::time::Instant;

#[test]
fn zlib_builds_with_drti_cc_and_passes_its_tests_under_the_agent() {
    // The script needs the build products; fail clearly when they are missing.
    tool("drti-cc");
    tool("drti");
    agent();
    tool("drti-jitd");
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("scripts/thirdparty.sh"))
        .current_dir(repo())
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run scripts/thirdparty.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "scripts/thirdparty.sh failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("thirdparty: OK"), "no OK line:\n{stdout}");

    // At least one edge of zlib's own code was inlined by the JIT and its patch is live.
    let dumps = repo().join("target/thirdparty/dumps/agent");
    let mut inlined = Vec::new();
    for entry in std::fs::read_dir(&dumps).expect("dump directory") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let v = read_dump_typed(&path);
        for e in &v.edges {
            if e.state == "inlined" {
                inlined.push(format!("{} -> {}", e.caller, e.callee));
                assert!(
                    v.patches.iter().any(|p| p.function == e.caller),
                    "{}: inlined edge {e} without a patch of its caller",
                    path.display()
                );
            }
        }
    }
    assert!(!inlined.is_empty(), "no inlined edge in {}:\n{stdout}", dumps.display());
    assert!(
        inlined.iter().any(|e| e.starts_with("deflate -> deflate_")),
        "expected deflate -> deflate_fast/deflate_slow among {inlined:?}"
    );
    eprintln!("inlined: {inlined:?}; script took {:.1} s", start.elapsed().as_secs_f64());
}
