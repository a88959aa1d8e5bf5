//! F+ as a relocatable object (issue 12): the JIT compiles a request to an ELF object
//! instead of linking it into this process, and the agent's own linker
//! (`drti_agent::link`) links it (here, in the compiler process's crate, the one that
//! depends on both); the result computes what F computes, with the guarded
//! target inlined, and falls back to the real call for another target.

// The JIT's own test helpers (requests built by hand, bitcode from IR text).
#[path = "../../agent/jit/tests/common/mod.rs"]
mod common;

use bitcode_embed::jit_abi::*;

/// The program's function at the guarded target's address: distinguishable from the
/// inlined copy (which doubles).
extern "C" fn real_twice(x: i64) -> i64 {
    1_000_000 + x
}
extern "C" fn negate(x: i64) -> i64 {
    -x
}

const IR: &str = r#"
define i64 @twice(i64 %x) {
  %r = mul i64 %x, 2
  ret i64 %r
}
define i64 @apply(ptr %f, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s1, %loop ]
  %v = call i64 %f(i64 %i)
  %s1 = add i64 %s, %v
  %i1 = add i64 %i, 1
  %done = icmp eq i64 %i1, %n
  br i1 %done, label %exit, label %loop
exit:
  ret i64 %s1
}
"#;

type Apply = extern "C" fn(extern "C" fn(i64) -> i64, i64) -> i64;

#[test]
fn f_plus_as_an_object_links_and_runs_with_the_agents_linker() {
    common::init();
    let bc = common::bitcode(IR);
    let twice_addr = real_twice as *const () as usize as u64;
    let names = ["twice", "apply"];
    let syms: Vec<JitSymbol> = names.iter().map(|n| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: twice_addr }).collect();
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let mut misses = 0u64;
    let targets = [JitTarget { address: twice_addr, module: 0, name: "twice".as_ptr(), name_len: 5, slot: std::ptr::null() }];
    let site = JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 1, targets: targets.as_ptr(), miss_counter: &mut misses, site: 0, area: 0 };
    let req = common::request(&module, "apply", std::slice::from_ref(&site), &[]);
    // SAFETY: the request points at locals of this function, alive until it returns.
    let (res, object) = unsafe { drti_jit::compile_object(&req, false) };
    assert_eq!(res.ok, 1, "{}", res.error_text());
    let object = object.expect("an object on success");
    assert!(object.bytes.starts_with(b"\x7fELF") && res.code_size == object.bytes.len() as u64);
    assert!(res.codegen_ms > 0.0 && res.cpu_ms > 0.0);

    let mut unresolved = Vec::new();
    let linked = drti_agent::link::link(&object.bytes, Some(twice_addr), |name| {
        drti_jit::bind::parse_abs_name(name).or_else(|| {
            unresolved.push(name.to_owned());
            None
        })
    })
    .unwrap_or_else(|e| panic!("link: {e:?}"));
    let (entry, size) = linked.function(&object.entry).unwrap_or_else(|| panic!("{} not in the object", object.entry));
    assert!(size > 0, "{unresolved:?}");
    // SAFETY: `entry` is F+ of `apply`, linked with every symbol resolved; it has apply's type.
    let apply: Apply = unsafe { std::mem::transmute::<usize, Apply>(entry as usize) };
    // The guarded target runs inlined (its clean body doubles); another target is called.
    assert_eq!(apply(real_twice, 10), (0..10).map(|i| 2 * i).sum::<i64>());
    assert_eq!(misses, 0);
    assert_eq!(apply(negate, 10), -(0..10).sum::<i64>());
    assert_eq!(misses, 10);
    // SAFETY: no thread runs the linked code any more.
    unsafe { linked.release() };
}

extern "C" fn real_twice_elsewhere(x: i64) -> i64 {
    2_000_000 + x
}

/// The request of `apply` with `twice` guarded at `twice_addr`, counting misses in `misses`.
fn portable_request(module_bc: &[u8], twice_addr: u64, misses: &mut u64) -> (Vec<JitSymbol>, JitModule, [JitTarget; 1], JitSite) {
    let names: [&'static str; 2] = ["twice", "apply"];
    let syms: Vec<JitSymbol> = names.iter().map(|n| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: twice_addr }).collect();
    let module = JitModule { bitcode: module_bc.as_ptr(), bitcode_len: module_bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let targets = [JitTarget { address: twice_addr, module: 0, name: "twice".as_ptr(), name_len: 5, slot: std::ptr::null() }];
    let site = JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 1, targets: std::ptr::null(), miss_counter: misses, site: 0, area: 0 };
    (syms, module, targets, site)
}

#[test]
fn a_portable_object_links_in_a_process_with_other_addresses() {
    common::init();
    let bc = common::bitcode(IR);
    // "This process": twice at real_twice.
    let mut misses = 0u64;
    let (_syms, module, targets, mut site) = portable_request(&bc, real_twice as *const () as usize as u64, &mut misses);
    site.targets = targets.as_ptr();
    let req = common::request(&module, "apply", std::slice::from_ref(&site), &[]);
    // SAFETY: the request points at locals of this function, alive until it returns.
    let (res, object) = unsafe { drti_jit::compile_object(&req, true) };
    assert_eq!(res.ok, 1, "{}", res.error_text());
    let object = object.unwrap();
    let text = String::from_utf8_lossy(&object.bytes);
    assert!(!text.contains("__drti_abs_"), "an absolute address is left in the portable object");

    // "Another process": the same modules and plan, other addresses; the same bytes.
    let mut misses2 = 0u64;
    let (_syms2, module2, targets2, mut site2) = portable_request(&bc, real_twice_elsewhere as *const () as usize as u64, &mut misses2);
    site2.targets = targets2.as_ptr();
    let req2 = common::request(&module2, "apply", std::slice::from_ref(&site2), &[]);
    // SAFETY: as above.
    let table = unsafe { bitcode_embed::symbols::object_symbols(&req2) };
    let linked = drti_agent::link::link(&object.bytes, None, |name| table.get(name).copied()).unwrap_or_else(|e| panic!("link: {e:?}"));
    let (entry, _) = linked.function(&object.entry).unwrap();
    // SAFETY: `entry` is F+ of `apply`, every symbol resolved; it has apply's type.
    let apply: Apply = unsafe { std::mem::transmute::<usize, Apply>(entry as usize) };
    // The guard now names real_twice_elsewhere: that one runs inlined (doubling), the old
    // address is a miss counted in the second request's counter.
    assert_eq!(apply(real_twice_elsewhere, 10), (0..10).map(|i| 2 * i).sum::<i64>());
    assert_eq!(apply(real_twice, 10), (0..10).map(|i| 1_000_000 + i).sum::<i64>());
    assert_eq!((misses, misses2), (0, 10));
    // SAFETY: no thread runs the linked code any more.
    unsafe { linked.release() };
}
