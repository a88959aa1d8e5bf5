//! An OSR continuation meets the code drti-cc made: a library built with drti-cc, its
//! function's redirect slot pointed at the profiled twin (as the agent does while it
//! profiles), the continuation of the twin's loop compiled by the JIT from the module's
//! own metadata (clean bitcode, address table, recorded point), and stored in the point's
//! OSR slot while the loop runs: the running activation moves into the continuation at
//! its next iteration and the call returns what the original computes.

use bitcode_embed::format::runtime_slots_offset;
use bitcode_embed::jit_abi::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

const SOURCE: &str = r#"
typedef long (*op_t)(long);
typedef void (*tick_t)(long);
long twice(long x) { return 2 * x; }
long negate(long x) { return -x; }
long run(op_t f, tick_t tick, const long *a, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    s += f(a[i]);
    tick(i);
  }
  return s;
}
"#;

/// Where the test's tick stores the continuation, and the slot it arms.
static FC: AtomicU64 = AtomicU64::new(0);
static OSR_SLOT: AtomicU64 = AtomicU64::new(0);
/// The tests share the two words above: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// The iteration whose tick arms the slot.
const ARM_AT: i64 = 37;

extern "C" fn tick(i: i64) {
    if i == ARM_AT {
        // SAFETY: OSR_SLOT is the 8-aligned OSR slot of the loaded library's runtime area.
        let slot = unsafe { &*(OSR_SLOT.load(Ordering::Relaxed) as *const AtomicU64) };
        slot.store(FC.load(Ordering::Relaxed), Ordering::Release);
    }
}

fn tool(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release").join(name)
}

type Op = extern "C" fn(i64) -> i64;
type Run = extern "C" fn(Op, extern "C" fn(i64), *const i64, i32) -> i64;

/// `source` built with drti-cc (drti-c++ when `cxx`) as a library, loaded; None (after
/// saying why) when the tools are missing.
fn load(tag: &str, source: &str, cxx: bool) -> Option<Vec<drti_agent::discover::Module>> {
    let cc = tool(if cxx { "drti-c++" } else { "drti-cc" });
    if !cc.exists() {
        println!("skip: {} is not built (make build)", cc.display());
        return None;
    }
    let dir = std::env::temp_dir().join(format!("drti-jitd-osr-twin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = if cxx { "m.cpp" } else { "m.c" };
    std::fs::write(dir.join(file), source).unwrap();
    let lib_name = format!("libosrtwin{tag}.so");
    let built = Command::new(&cc).args(["-O2", "-fPIC", "-shared", file, "-o", &lib_name]).current_dir(&dir).status().map(|s| s.success()).unwrap_or(false);
    if !built {
        println!("skip: {} cannot build the library (clang-19 missing?)", cc.display());
        return None;
    }
    let path = std::ffi::CString::new(dir.join(&lib_name).to_str().unwrap()).unwrap();
    // SAFETY: loads the library built above (no constructors of note); never closed.
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!lib.is_null());
    let _ = std::fs::remove_dir_all(&dir);
    let obj = drti_agent::discover::loaded_objects().into_iter().find(|o| o.path.ends_with(&lib_name)).expect("the library is loaded");
    let (modules, warnings) = drti_agent::discover::modules_of(&obj);
    assert!(warnings.is_empty(), "{warnings:?}");
    Some(modules)
}

/// What [`arm`] set up.
struct Armed {
    /// `run`'s entry (its calls go to the twin) and the twin's address.
    run: Run,
    twin: u64,
    redirect: &'static AtomicU64,
    twice: Op,
}

/// Compiles `run`'s continuation at its recorded OSR point (the request the agent would
/// make: the module's clean bitcode and address table) with site 0 (f) guarding twice and
/// site 1 (tick) guarding negate, which never matches, so its misses count the iterations
/// the continuation runs; stores it where `tick` arms the point; points run's redirect
/// slot at the twin (as while the agent profiles).
fn arm(m: &drti_agent::discover::Module, misses: &mut [u64; 2]) -> Armed {
    let blob = &m.blob;
    let f = (0..blob.header().n_functions).find(|&i| blob.function_name(i) == "run").expect("run is decorated");
    let point = blob.osr_points().find(|p| p.function == f).expect("run's loop is an OSR point");
    let live: Vec<u32> = blob.osr_live(&point).collect();
    let slots = m.runtime as u64 + runtime_slots_offset(blob.header().n_sites);
    OSR_SLOT.store(slots + 8 * point.slot as u64, Ordering::Relaxed);
    let bc = blob.bitcode().unwrap();
    let names: Vec<String> = (0..blob.header().n_globals).map(|i| blob.global_name(i).to_owned()).collect();
    let syms: Vec<JitSymbol> = names.iter().enumerate().map(|(i, n)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: m.global_address(i as u32) }).collect();
    let addr_of = |name: &str| syms[names.iter().position(|n| n == name).unwrap()].address;
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let target = |name: &'static str| [JitTarget { address: addr_of(name), module: 0, name: name.as_ptr(), name_len: name.len(), slot: std::ptr::null() }];
    let (twice_t, negate_t) = (target("twice"), target("negate"));
    let [m0, m1] = misses;
    let sites = [
        JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 1, targets: twice_t.as_ptr(), miss_counter: m0, site: 0, area: 0 },
        JitSite { owner: JitOwner::F, ordinal: 1, n_targets: 1, targets: negate_t.as_ptr(), miss_counter: m1, site: 0, area: 0 },
    ];
    let req = JitRequest {
        abi_version: JIT_ABI_VERSION,
        opt_level: 2,
        modules: &module,
        n_modules: 1,
        function_module: 0,
        function_name: "run".as_ptr(),
        function_name_len: 3,
        sites: sites.as_ptr(),
        n_sites: sites.len(),
        probes: std::ptr::null(),
        n_probes: 0,
        sample_fn: 0,
        count_fn: 0,
        countdown_offset: 0,
        countdown_static: 0,
        inject_failure: 0,
        osr_header: point.header,
        osr_live: live.as_ptr(),
        n_osr_live: live.len(),
    };
    let mut err = JitResult::default();
    // SAFETY: a valid result buffer; no log.
    assert_eq!(unsafe { drti_jit::drti_jit_init(0, None, &mut err) }, 0, "{}", err.error_text());
    let mut res = JitResult::default();
    // SAFETY: the request points at locals of this function, alive until it returns.
    unsafe { drti_jit::drti_jit_compile(&req, &mut res) };
    assert_eq!(res.ok, 1, "{}", res.error_text());
    FC.store(res.code, Ordering::Relaxed);
    let redirect = m.redirect_slot(f).expect("run has a redirect slot");
    let twin = m.profiled_entry(f).expect("run has a profiled twin");
    // SAFETY: the redirect slot is an 8-aligned word of the library's runtime area, which
    // stays mapped (the library is never closed).
    let redirect: &'static AtomicU64 = unsafe { &*(redirect as *const AtomicU64) };
    redirect.store(twin, Ordering::Release);
    // SAFETY: run's and twice's addresses in the library, with their C types.
    let (run, twice) = unsafe { (std::mem::transmute::<usize, Run>(m.function_address(f) as usize), std::mem::transmute::<usize, Op>(addr_of("twice") as usize)) };
    Armed { run, twin, redirect, twice }
}

fn disarm(a: &Armed) {
    // SAFETY: OSR_SLOT is the library's OSR slot (see `arm`).
    unsafe { &*(OSR_SLOT.load(Ordering::Relaxed) as *const AtomicU64) }.store(0, Ordering::Release);
    a.redirect.store(0, Ordering::Release);
}

fn read(counter: &u64) -> u64 {
    // SAFETY: a counter the continuation bumps on this thread only.
    unsafe { std::ptr::read_volatile(counter) }
}

#[test]
fn the_twins_running_loop_moves_into_the_continuation() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(modules) = load("c", SOURCE, false) else { return };
    let mut misses = [0u64; 2];
    let armed = arm(&modules[0], &mut misses);
    let a: Vec<i64> = (0..100).map(|k| 5 * k - 222).collect();
    let got = (armed.run)(armed.twice, tick, a.as_ptr(), 100);
    disarm(&armed);
    assert_eq!(got, a.iter().map(|x| 2 * x).sum::<i64>(), "the activation's result");
    assert_eq!(read(&misses[1]) as i64, 100 - (ARM_AT + 1), "the continuation ran the iterations after the arming one");
    assert_eq!(read(&misses[0]), 0, "twice took the inlined path");
    // Unarmed, the twin finishes the loop itself.
    armed.redirect.store(armed.twin, Ordering::Release);
    assert_eq!((armed.run)(armed.twice, tick_never, a.as_ptr(), 100), got);
    armed.redirect.store(0, Ordering::Release);
}

extern "C" fn tick_never(_: i64) {}

const SOURCE_CXX: &str = r#"
typedef long (*op_t)(long);
typedef void (*tick_t)(long);
struct Boom { long at; };
extern "C" long twice(long x) { if (x > 1000) throw Boom{x}; return 2 * x; }
extern "C" long negate(long x) { return -x; }
extern "C" __attribute__((noinline)) long run(op_t f, tick_t tick, const long *a, int n) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    s += f(a[i]);
    tick(i);
  }
  return s;
}
extern "C" long call_run(op_t f, tick_t tick, const long *a, int n) {
  try { return run(f, tick, a, n); } catch (const Boom &b) { return -b.at; }
}
"#;

#[test]
fn an_exception_thrown_in_the_continuation_unwinds_through_the_twin_to_the_caller() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(modules) = load("cxx", SOURCE_CXX, true) else { return };
    let m = &modules[0];
    let mut misses = [0u64; 2];
    let armed = arm(m, &mut misses);
    let call_run_at = (0..m.blob.header().n_globals).find(|&i| m.blob.global_name(i) == "call_run").map(|i| m.global_address(i)).unwrap();
    // SAFETY: call_run's address in the library, with run's C type.
    let call_run = unsafe { std::mem::transmute::<usize, Run>(call_run_at as usize) };
    let mut a: Vec<i64> = (0..100).map(|k| 3 * k).collect();
    a[60] = 5000;
    // The inlined twice throws in iteration 60, inside the continuation.
    let got = call_run(armed.twice, tick, a.as_ptr(), 100);
    disarm(&armed);
    assert_eq!(got, -5000, "the caller caught the exception");
    assert_eq!(read(&misses[1]) as i64, 60 - (ARM_AT + 1), "ticks of iterations 38..59 ran in the continuation");
    assert_eq!(read(&misses[0]), 0);
    // The same without the agent's doing: plain run.
    assert_eq!(call_run(armed.twice, tick_never, a.as_ptr(), 100), -5000);
}
