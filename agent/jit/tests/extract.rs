//! Compile cost in proportion to what is compiled (issue 11): a module's bitcode is
//! loaded once, lazily; a compile loads only the bodies it copies and extracts them into
//! a module holding just what they refer to.

mod common;

use drti_jit::cache::{self, Cache};
use llvm_sys::core::*;
use llvm_sys::prelude::*;

/// `apply` (a hot site, a string literal, a table, a counter, an internal helper) among
/// many functions and globals it never touches.
fn module_text(unrelated: usize) -> String {
    let mut s = String::from(
        r#"
@.str = private unnamed_addr constant [6 x i8] c"hello\00"
@table = internal constant [2 x ptr] [ptr @helper, ptr @.str]
@counter = global i64 0
declare i64 @strlen(ptr)
define internal i64 @helper(i64 %x) {
  %r = add i64 %x, 1
  ret i64 %r
}
define linkonce_odr i64 @inl(i64 %x) {
  ret i64 %x
}
define i64 @apply(ptr %f, i64 %x) {
  %i = call i64 @inl(i64 0)
  %n = call i64 @strlen(ptr @.str)
  %h = call i64 @helper(i64 %n)
  %t = load ptr, ptr @table
  store i64 %h, ptr @counter
  %r = call i64 %f(i64 %x)
  ret i64 %r
}
"#,
    );
    for k in 0..unrelated {
        s.push_str(&format!("@g{k} = global i64 {k}\n@s{k} = private unnamed_addr constant [3 x i8] c\"ab\\00\"\ndefine i64 @unrelated{k}(i64 %x) {{\n  %v = load i64, ptr @g{k}\n  %r = add i64 %x, %v\n  %c = call i64 @strlen(ptr @s{k})\n  %q = add i64 %r, %c\n  ret i64 %q\n}}\n"));
    }
    s
}

fn name(v: LLVMValueRef) -> String {
    let mut len = 0;
    // SAFETY: `v` is live; the name is copied out.
    unsafe { String::from_utf8_lossy(std::slice::from_raw_parts(LLVMGetValueName2(v, &mut len) as *const u8, len)).into_owned() }
}

/// Names of the functions and global variables of `m`, and whether each has a body or
/// initializer.
fn globals(m: LLVMModuleRef) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    // SAFETY: iterating the globals of a live module.
    unsafe {
        let mut f = LLVMGetFirstFunction(m);
        while !f.is_null() {
            out.push((name(f), LLVMIsDeclaration(f) == 0));
            f = LLVMGetNextFunction(f);
        }
        let mut g = LLVMGetFirstGlobal(m);
        while !g.is_null() {
            out.push((name(g), LLVMIsDeclaration(g) == 0));
            g = LLVMGetNextGlobal(g);
        }
    }
    out
}

fn function(m: LLVMModuleRef, n: &str) -> LLVMValueRef {
    let c = std::ffi::CString::new(n).unwrap();
    // SAFETY: `m` is live.
    let f = unsafe { LLVMGetNamedFunction(m, c.as_ptr()) };
    assert!(!f.is_null(), "no function {n}");
    f
}

#[test]
fn a_module_is_loaded_once_and_only_the_copied_bodies_are_materialised() {
    common::init();
    let bc = common::bitcode(&module_text(300));
    let mut cache = Cache::new();
    cache.begin();
    let m = cache.module(&bc).unwrap();
    assert_eq!(cache.module(&bc.clone()).unwrap(), m, "the same bitcode is loaded once");
    let apply = function(m, "apply");
    // SAFETY (this block and the next): `apply`, `m` and the unrelated functions belong to
    // the live module this test loaded through the cache.
    unsafe {
        assert!(cache::is_materializable(apply), "nothing is loaded before it is needed");
        cache::materialize(apply).unwrap();
        assert!(!cache::is_materializable(apply));
    }
    for k in [0, 150, 299] {
        assert!(unsafe { cache::is_materializable(function(m, &format!("unrelated{k}"))) }, "unrelated{k} was loaded");
    }

    let copy = unsafe { cache::extract(m, &[apply]) }.unwrap();
    let mut got = globals(copy);
    got.sort();
    // The copy, declarations of what it refers to, and the string literal it reads (kept
    // as a copy so it folds); nothing of the 300 unrelated functions and globals.
    let want = [("apply", true), ("counter", false), ("helper", false), ("inl", false), ("strlen", false), ("table", false), (".str", true)];
    let mut want: Vec<(String, bool)> = want.iter().map(|(n, b)| (n.to_string(), *b)).collect();
    want.sort();
    assert_eq!(got, want);
    // A declaration keeps a local linkage (bind requires an address for it); linkonce,
    // valid only on a definition, becomes external.
    use llvm_sys::LLVMLinkage::*;
    // SAFETY: reading the linkage of live functions.
    unsafe {
        assert_eq!(LLVMGetLinkage(function(copy, "helper")), LLVMInternalLinkage);
        assert_eq!(LLVMGetLinkage(function(copy, "inl")), LLVMExternalLinkage);
    }
    // SAFETY: the extracted module is ours.
    unsafe { LLVMDisposeModule(copy) };
}

#[test]
fn a_function_in_a_large_module_compiles_and_runs() {
    common::init();
    extern "C" fn plus_two(x: i64) -> i64 {
        x + 2
    }
    extern "C" fn ident(x: i64) -> i64 {
        x
    }
    let bc = common::bitcode(&module_text(2000));
    let helper = plus_two as *const () as usize as u64;
    let counter = Box::leak(Box::new(0i64)) as *mut i64 as u64;
    let table = Box::leak(Box::new([0u64; 2])).as_ptr() as u64;
    let symbols = [("apply", 0x1000), ("helper", helper), ("counter", counter), ("table", table), ("inl", ident as *const () as usize as u64)];
    let mut misses = 0u64;
    let res = common::compile(&bc, &symbols, "apply", &[("helper", helper, std::ptr::null())], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    for (what, ms) in [("parse", res.parse_ms), ("bind", res.bind_ms), ("optimise", res.optimise_ms), ("codegen", res.codegen_ms), ("cpu", res.cpu_ms)] {
        assert!(ms.is_finite() && ms >= 0.0, "{what}: {ms}");
    }
    assert!(res.codegen_ms > 0.0 && res.cpu_ms > 0.0, "phases not measured");
    type Apply = extern "C" fn(extern "C" fn(i64) -> i64, i64) -> i64;
    // SAFETY: F+ has apply's signature.
    let f: Apply = unsafe { std::mem::transmute(res.code as usize) };
    // The guard matches plus_two's address (given as helper's) and runs the inlined copy
    // of helper's IR body (x + 1), not the program's function (x + 2).
    assert_eq!(f(plus_two, 40), 41);
    // The direct call helper(strlen("hello")) is bound to the program's function: 7.
    // SAFETY: the counter is a leaked i64.
    assert_eq!(unsafe { *(counter as *const i64) }, 7);
    eprintln!("apply in a module of 2000 functions: parse {:.1} bind {:.1} optimise {:.1} codegen {:.1} ms, cpu {:.1} ms", res.parse_ms, res.bind_ms, res.optimise_ms, res.codegen_ms, res.cpu_ms);
}
