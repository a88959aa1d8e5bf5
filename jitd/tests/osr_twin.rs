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

#[test]
fn the_twins_running_loop_moves_into_the_continuation() {
    let cc = tool("drti-cc");
    if !cc.exists() {
        println!("skip: {} is not built (make build)", cc.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("drti-jitd-osr-twin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.c"), SOURCE).unwrap();
    let built = Command::new(&cc).args(["-O2", "-fPIC", "-shared", "m.c", "-o", "libosrtwin.so"]).current_dir(&dir).status().map(|s| s.success()).unwrap_or(false);
    if !built {
        println!("skip: drti-cc cannot build the library (clang-19 missing?)");
        return;
    }
    let path = std::ffi::CString::new(dir.join("libosrtwin.so").to_str().unwrap()).unwrap();
    // SAFETY: loads the library built above (no constructors of note); never closed.
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!lib.is_null());
    let _ = std::fs::remove_dir_all(&dir);

    let obj = drti_agent::discover::loaded_objects().into_iter().find(|o| o.path.ends_with("libosrtwin.so")).expect("the library is loaded");
    let (modules, warnings) = drti_agent::discover::modules_of(&obj);
    assert!(warnings.is_empty(), "{warnings:?}");
    let m = &modules[0];
    let blob = &m.blob;
    let f = (0..blob.header().n_functions).find(|&i| blob.function_name(i) == "run").expect("run is decorated");
    let point = blob.osr_points().find(|p| p.function == f).expect("run's loop is an OSR point");
    let live: Vec<u32> = blob.osr_live(&point).collect();
    let slots = m.runtime as u64 + runtime_slots_offset(blob.header().n_sites);
    OSR_SLOT.store(slots + 8 * point.slot as u64, Ordering::Relaxed);

    // The request the agent would make: the module's clean bitcode and address table,
    // site 0 (f) guarding twice, site 1 (tick) guarding negate, which never matches, so
    // its misses count the iterations the continuation runs.
    let bc = blob.bitcode().unwrap();
    let names: Vec<String> = (0..blob.header().n_globals).map(|i| blob.global_name(i).to_owned()).collect();
    let syms: Vec<JitSymbol> = names.iter().enumerate().map(|(i, n)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: m.global_address(i as u32) }).collect();
    let addr_of = |name: &str| syms[names.iter().position(|n| n == name).unwrap()].address;
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let target = |name: &'static str| [JitTarget { address: addr_of(name), module: 0, name: name.as_ptr(), name_len: name.len(), slot: std::ptr::null() }];
    let (twice_t, negate_t) = (target("twice"), target("negate"));
    let mut misses = [0u64; 2];
    let [m0, m1] = &mut misses;
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

    // Calls of run go to the twin, as while the agent profiles.
    let redirect = m.redirect_slot(f).expect("run has a redirect slot");
    let twin = m.profiled_entry(f).expect("run has a profiled twin");
    // SAFETY: the redirect slot is an 8-aligned word of the library's runtime area.
    let redirect = unsafe { &*(redirect as *const AtomicU64) };
    redirect.store(twin, Ordering::Release);
    // SAFETY: run's address in the library, with run's C type.
    let run: Run = unsafe { std::mem::transmute::<usize, Run>(m.global_address(blob.function(f).unwrap().global) as usize) };
    // SAFETY: twice's address in the library, with its C type.
    let twice: Op = unsafe { std::mem::transmute::<usize, Op>(addr_of("twice") as usize) };
    let a: Vec<i64> = (0..100).map(|k| 5 * k - 222).collect();
    let got = run(twice, tick, a.as_ptr(), 100);
    // SAFETY: the counters are bumped by the continuation on this thread only.
    let (miss0, miss1) = unsafe { (std::ptr::read_volatile(&misses[0]), std::ptr::read_volatile(&misses[1])) };
    // Disarm before anything else can run the library.
    // SAFETY: as above.
    unsafe { &*(OSR_SLOT.load(Ordering::Relaxed) as *const AtomicU64) }.store(0, Ordering::Release);
    redirect.store(0, Ordering::Release);
    assert_eq!(got, a.iter().map(|x| 2 * x).sum::<i64>(), "the activation's result");
    assert_eq!(miss1 as i64, 100 - (ARM_AT + 1), "the continuation ran the iterations after the arming one");
    assert_eq!(miss0, 0, "twice took the inlined path");
    // Unarmed, the twin finishes the loop itself.
    redirect.store(twin, Ordering::Release);
    assert_eq!(run(twice, tick_never, a.as_ptr(), 100), got);
    redirect.store(0, Ordering::Release);
}

extern "C" fn tick_never(_: i64) {}
