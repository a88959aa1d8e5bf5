//! Composed specialisations (issue 11 item 3): a site of an inlined target is guarded
//! inside the target's copy in F+, and unguarded sites of F+ keep sampling through the
//! agent's countdown (fs-relative when it has a fixed offset, a call otherwise).

mod common;

use bitcode_embed::jit_abi::*;
use std::cell::Cell;
use std::sync::Mutex;

/// The program's functions at the targets' addresses: distinguishable from the inlined
/// copies (leaf: 3x, mid: g(x) + 1).
extern "C" fn real_leaf(x: i64) -> i64 {
    1000 + x
}
extern "C" fn real_mid(g: extern "C" fn(i64) -> i64, x: i64) -> i64 {
    g(x) + 2000
}
extern "C" fn negate(x: i64) -> i64 {
    -x
}
extern "C" fn ident(x: i64) -> i64 {
    x
}
extern "C" fn other_mid(g: extern "C" fn(i64) -> i64, x: i64) -> i64 {
    g(x) - 1
}

const IR: &str = r#"
define i64 @leaf(i64 %x) {
  %r = mul i64 %x, 3
  ret i64 %r
}
define i64 @mid(ptr %g, i64 %x) {
  %r = call i64 %g(i64 %x)
  %s = add i64 %r, 1
  ret i64 %s
}
define i64 @top(ptr %f, ptr %g, ptr %h, i64 %x) {
  %r = call i64 %f(ptr %g, i64 %x)
  %q = call i64 %h(i64 %r)
  ret i64 %q
}
"#;

type Mid = extern "C" fn(extern "C" fn(i64) -> i64, i64) -> i64;
type Top = extern "C" fn(Mid, extern "C" fn(i64) -> i64, extern "C" fn(i64) -> i64, i64) -> i64;

/// Samples taken: (area, site, target).
static SAMPLES: Mutex<Vec<(u64, u32, u64)>> = Mutex::new(Vec::new());

thread_local! {
    static COUNTDOWN: Cell<i32> = const { Cell::new(0) };
}

extern "C" fn sample(area: u64, site: u32, target: u64) {
    SAMPLES.lock().unwrap().push((area, site, target));
    COUNTDOWN.with(|c| c.set(2));
}

extern "C" fn count(area: u64, site: u32, target: u64) {
    let c = COUNTDOWN.with(|c| {
        c.set(c.get() - 1);
        c.get()
    });
    if c < 0 {
        sample(area, site, target);
    }
}

/// Offset of this thread's COUNTDOWN from the thread pointer (the test binary's TLS is
/// static).
fn countdown_offset() -> i64 {
    let tp: usize;
    // SAFETY: reads the thread pointer (%fs:0 holds it on x86-64 Linux).
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    COUNTDOWN.with(|c| c.as_ptr() as i64) - tp as i64
}

const AREA: u64 = 0xa4ea;

/// Compiles `top` with mid inlined at its site 0 (misses sampled as site 8), leaf guarded
/// inside mid's copy (misses sampled as site 9), and top's site 1 sampled as site 7.
fn compile(offset: Option<i64>, top_misses: &mut u64, mid_misses: &mut u64) -> JitResult {
    let bc = common::bitcode(IR);
    let syms = [("leaf", real_leaf as *const () as usize as u64), ("mid", real_mid as *const () as usize as u64), ("top", ident as *const () as usize as u64)];
    let syms: Vec<JitSymbol> = syms.iter().map(|(n, a)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: *a }).collect();
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let target = |name: &'static str, addr: u64| JitTarget { address: addr, module: 0, name: name.as_ptr(), name_len: name.len(), slot: std::ptr::null() };
    let mid_t = [target("mid", syms[1].address)];
    let leaf_t = [target("leaf", syms[0].address)];
    let mid_owner = JitOwner { module: 0, name: "mid".as_ptr(), name_len: 3 };
    let sites = [
        JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 1, targets: mid_t.as_ptr(), miss_counter: top_misses, site: 8, area: AREA },
        JitSite { owner: mid_owner, ordinal: 0, n_targets: 1, targets: leaf_t.as_ptr(), miss_counter: mid_misses, site: 9, area: AREA },
    ];
    let probes = [JitProbe { owner: JitOwner::F, ordinal: 1, site: 7, area: AREA }];
    let req = JitRequest {
        sample_fn: sample as *const () as usize as u64,
        count_fn: count as *const () as usize as u64,
        countdown_offset: offset.unwrap_or(0),
        countdown_static: offset.is_some() as u32,
        ..common::request(&module, "top", &sites, &probes)
    };
    // SAFETY: the request points at locals of this function, alive until it returns.
    unsafe { common::run(&req) }
}

fn check(offset: Option<i64>) {
    common::init();
    let (mut top_misses, mut mid_misses) = (0u64, 0u64);
    let res = compile(offset, &mut top_misses, &mut mid_misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: F+ has top's signature.
    let plus: Top = unsafe { std::mem::transmute(res.code as usize) };
    SAMPLES.lock().unwrap().retain(|s| s.0 != AREA);
    COUNTDOWN.with(|c| c.set(2));
    // mid's copy with leaf's copy guarded inside: 3x + 1, then h.
    assert_eq!(plus(real_mid, real_leaf, ident, 5), 16);
    assert_eq!(plus(real_mid, real_leaf, negate, 5), -16);
    // The nested guard misses: mid's copy calls the real target.
    assert_eq!(plus(real_mid, negate, ident, 5), -4);
    // The outer guard misses: the real mid (which calls the real leaf).
    assert_eq!(plus(other_mid, real_leaf, ident, 5), 1004);
    // SAFETY: the counters are written only by F+ on this thread.
    let (tm, mm) = unsafe { (std::ptr::read_volatile(&top_misses), std::ptr::read_volatile(&mid_misses)) };
    assert_eq!((tm, mm), (1, 1), "misses at the outer and at the nested site");
    // SAFETY: as above.
    let tm_after = || unsafe { std::ptr::read_volatile(&top_misses) };
    // One countdown over all sampled calls, reset to 2 by each sample: h's calls of
    // rounds 1-2 count it down, the nested miss of round 3 is sampled, h's call of round 4
    // is (after round 4's outer miss and round 3's h call); then rounds 5-6 sample the
    // outer miss.
    assert_eq!(plus(other_mid, real_leaf, ident, 1), 1000);
    assert_eq!(plus(other_mid, real_leaf, ident, 1), 1000);
    assert_eq!(tm_after(), 3);
    let got: Vec<_> = SAMPLES.lock().unwrap().iter().copied().filter(|s| s.0 == AREA).collect();
    let addr = |f: *const ()| f as usize as u64;
    let want = vec![(AREA, 9, addr(negate as *const ())), (AREA, 7, addr(ident as *const ())), (AREA, 8, addr(other_mid as *const ()))];
    assert_eq!(got, want, "offset {offset:?}");
}

#[test]
fn nested_guards_and_sampling_with_a_thread_local_countdown() {
    check(Some(countdown_offset()));
}

#[test]
fn nested_guards_and_sampling_through_the_counting_call() {
    check(None);
}

#[test]
fn a_site_owner_that_is_not_a_target_is_refused() {
    common::init();
    let bc = common::bitcode(IR);
    let syms: Vec<JitSymbol> = ["leaf", "mid", "top"].iter().map(|n| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: ident as *const () as usize as u64 }).collect();
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let mut misses = 0u64;
    let leaf_t = [JitTarget { address: 1, module: 0, name: "leaf".as_ptr(), name_len: 4, slot: std::ptr::null() }];
    let sites = [JitSite { owner: JitOwner { module: 0, name: "mid".as_ptr(), name_len: 3 }, ordinal: 0, n_targets: 1, targets: leaf_t.as_ptr(), miss_counter: &mut misses, site: 0, area: 0 }];
    // SAFETY: the request points at locals of this function, alive until it returns.
    let out = unsafe { common::run(&common::request(&module, "top", &sites, &[])) };
    assert_eq!(out.ok, 0);
    assert!(out.error_text().contains("not an inlined target"), "{}", out.error_text());
}
