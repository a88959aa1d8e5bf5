//! The OSR points drti-cc records are the ones the JIT will recompute from the embedded
//! clean bitcode (same headers, live values, sites), and only the profiled twin checks
//! their slots: F keeps clang's code apart from its redirect entry.

use bitcode_embed::Blob;
use drti_instrument::decorate::Options;
use drti_instrument::module::{decorate_bitcode, Context};
use drti_llvm_ir::{ir, osr};
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::path::Path;
use std::process::Command;

/// clang-19 `flags` -emit-llvm of tests/progs/`src`, or `None` (after saying so) without clang-19.
fn bitcode(src: &str, flags: &[&str]) -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("drti-osr-{}-{src}-{}.bc", std::process::id(), flags.join("")));
    let clang = if src.ends_with(".cpp") { "clang++-19" } else { "clang-19" };
    let st = match Command::new(clang).args(flags).args(["-c", "-emit-llvm"]).arg(root.join("tests/progs").join(src)).arg("-o").arg(&out).status() {
        Ok(st) => st,
        Err(e) => {
            println!("skip: {clang} not runnable: {e}");
            return None;
        }
    };
    assert!(st.success(), "{clang} {src} failed");
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    Some(bytes)
}

/// The bytes of the constant byte-array global `name` of `m`.
fn global_bytes(m: LLVMModuleRef, name: &std::ffi::CStr) -> Vec<u8> {
    // SAFETY: `m` is live; the global's initialiser is a constant data array whose bytes
    // LLVM returns with their length; they are copied before the module goes away.
    unsafe {
        let g = LLVMGetNamedGlobal(m, name.as_ptr());
        assert!(!g.is_null(), "no {name:?}");
        let mut len = 0usize;
        let p = LLVMGetAsString(LLVMGetInitializer(g), &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
    }
}

/// The function `name` of `m`.
fn function(m: LLVMModuleRef, name: &str) -> LLVMValueRef {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: `m` is live.
    let f = unsafe { LLVMGetNamedFunction(m, c.as_ptr()) };
    assert!(!f.is_null(), "no function {name}");
    f
}

/// The acquire loads of `f` (the redirect entry's and the OSR checks'; sampling code loads
/// monotonic, clang's code non-atomic).
fn acquire_loads(f: LLVMValueRef) -> usize {
    ir::instructions(f)
        .into_iter()
        // SAFETY: live instructions of a live function, only inspected.
        .filter(|&i| unsafe { !LLVMIsALoadInst(i).is_null() && LLVMGetOrdering(i) == llvm_sys::LLVMAtomicOrdering::LLVMAtomicOrderingAcquire })
        .count()
}

/// Decorates `src` built with `flags`; checks the recorded points against the clean
/// bitcode and the checks against the twin; returns the number of points.
fn check(src: &str, flags: &[&str]) -> Option<usize> {
    let bc = bitcode(src, flags)?;
    let (decorated, stats) = decorate_bitcode(&bc, &Options { source_name: src.into(), skip: vec![] }).expect("decorates");
    let ctx = Context::new();
    let m = ctx.parse(&decorated, "decorated").unwrap();
    let blob_bytes = global_bytes(m.raw(), c"__drti_blob");
    let blob = Blob::parse(&blob_bytes).expect("valid metadata");
    assert_eq!(blob.osr_points().count(), stats.osr_points);
    let clean_ctx = Context::new();
    let clean = clean_ctx.parse(&blob.bitcode().unwrap(), "clean").unwrap();
    let mut by_function: std::collections::BTreeMap<u32, Vec<bitcode_embed::format::OsrRecord>> = Default::default();
    for p in blob.osr_points() {
        by_function.entry(p.function).or_default().push(p);
    }
    for (fi, recorded) in by_function {
        let name = blob.function_name(fi);
        let f = function(clean.raw(), name);
        // What the JIT will compute from the clean bitcode.
        let points = osr::osr_points(f);
        assert_eq!(points.len(), recorded.len(), "{src} {flags:?} {name}");
        for (p, r) in points.iter().zip(&recorded) {
            assert_eq!(p.header, r.header, "{src} {flags:?} {name}");
            assert_eq!(p.live.iter().map(|l| l.encode()).collect::<Vec<_>>(), blob.osr_live(r).collect::<Vec<_>>(), "{src} {flags:?} {name}");
            assert_eq!(p.sites, blob.osr_sites(r).collect::<Vec<_>>(), "{src} {flags:?} {name}");
        }
        // The twin checks every point's slot; F only its redirect slot, and its body is
        // clang's: the clean F's instructions plus the redirect entry's five.
        let twin = function(m.raw(), &format!("{name}{}", bitcode_embed::format::PROFILED_SUFFIX));
        let decorated_f = function(m.raw(), name);
        assert_eq!(acquire_loads(twin), recorded.len(), "{src} {flags:?}: the twin's OSR checks");
        assert_eq!(acquire_loads(decorated_f), 1, "{src} {flags:?}: {name} has more than its redirect check");
        assert_eq!(ir::instructions(decorated_f).len(), ir::instructions(f).len() + 5, "{src} {flags:?}: {name} changed beyond its entry");
    }
    Some(stats.osr_points)
}

#[test]
fn recorded_points_are_those_of_the_clean_bitcode_and_only_the_twin_checks_them() {
    for (src, flags, expect) in [
        ("osr_main.c", &["-O2"][..], 1),
        ("osr_main.c", &["-O2", "-g"][..], 1),
        // -O0: the live values are allocas (the loop variables live in memory).
        ("osr_main.c", &["-O0", "-g"][..], 1),
        ("osr_main.cpp", &["-O2"][..], 2),
        ("osr_main.cpp", &["-O2", "-g"][..], 2),
        ("osr_main.cpp", &["-O1", "-g", "-fno-exceptions"][..], 2),
    ] {
        let Some(n) = check(src, flags) else { return };
        assert_eq!(n, expect, "{src} {flags:?}");
    }
}
