//! drti-jitd as the agent meets it: started by the agent's client (`--stdin`, detached),
//! sent a module and a compile request, it answers with a portable object that the
//! agent's linker links against this process's addresses; the code runs.

use bitcode_embed::jit_abi::*;
use bitcode_embed::protocol::*;
use drti_agent::jitd_client::{Endpoint, ModuleData, Session};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const SOURCE: &str = "long twice(long x) { return 2 * x; }\n\
long apply(long (*f)(long), long n) { long s = 0; for (long i = 0; i < n; i++) s += f(i); return s; }\n";

/// This process's `twice`, told apart from the inlined copy (which doubles).
extern "C" fn real_twice(x: i64) -> i64 {
    1_000_000 + x
}
extern "C" fn negate(x: i64) -> i64 {
    -x
}
type Apply = extern "C" fn(extern "C" fn(i64) -> i64, i64) -> i64;

fn bitcode() -> Option<Vec<u8>> {
    // One directory per call: the tests run in parallel and each removes its own.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("drti-jitd-e2e-{}-{k}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.c"), SOURCE).unwrap();
    let ok = Command::new("clang-19").args(["-O2", "-emit-llvm", "-c", "m.c", "-o", "m.bc"]).current_dir(&dir).status().ok()?.success();
    let bc = ok.then(|| std::fs::read(dir.join("m.bc")).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    bc
}

#[test]
fn the_compiler_process_compiles_a_portable_object_the_agent_links() {
    let Some(bc) = bitcode() else {
        println!("skip: clang-19 is not installed");
        return;
    };
    let compressed = zstd::bulk::compress(&bc, 3).unwrap();
    let hash = drti_cache::key::sha256(&compressed);
    let globals = vec!["twice".to_string(), "apply".to_string()];
    let req = apply_request(hash, None);
    let ep = Endpoint::Spawn { program: env!("CARGO_BIN_EXE_drti-jitd").into() };
    let conn = ep.open(None).expect("start drti-jitd");
    let mut session = Session::open(conn.stream, Duration::from_secs(30)).expect("session");
    let data = ModuleData { compressed: Arc::new(compressed), raw_size: bc.len() as u64, globals: Arc::new(globals.clone()) };
    let mut asked = 0;
    let res = session
        .compile(
            &req,
            &mut |h| {
                asked += 1;
                (*h == hash).then(|| data.clone())
            },
            Duration::from_secs(60),
        )
        .expect("compile");
    assert_eq!(asked, 1, "the module is sent once, when asked");
    let Outcome::Object { bytes, entry } = res.outcome else { panic!("{:?}", res.outcome) };
    assert!(res.phases.cpu_ms > 0.0);

    // The same request with this process's addresses names the object's symbols.
    let mut misses = 0u64;
    let linked = link_here(&bc, &globals, &bytes, &mut misses, None);
    let (code, _) = linked.function(&entry).unwrap();
    // SAFETY: `code` is F+ of `apply`, every symbol resolved; it has apply's type.
    let apply: Apply = unsafe { std::mem::transmute::<usize, Apply>(code as usize) };
    assert_eq!(apply(real_twice, 100), (0..100).map(|i| 2 * i).sum::<i64>());
    assert_eq!(apply(negate, 100), -(0..100).sum::<i64>());
    assert_eq!(misses, 100);
    // SAFETY: no thread runs the linked code any more.
    unsafe { linked.release() };
}

/// `apply`'s continuation at its loop header (block 2): f, n, i, s.
type ApplyFc = extern "C" fn(extern "C" fn(i64) -> i64, i64, i64, i64) -> i64;

#[test]
fn the_compiler_process_compiles_an_osr_continuation() {
    let Some(bc) = bitcode() else {
        println!("skip: clang-19 is not installed");
        return;
    };
    let compressed = zstd::bulk::compress(&bc, 3).unwrap();
    let hash = drti_cache::key::sha256(&compressed);
    let globals = vec!["twice".to_string(), "apply".to_string()];
    // clang-19 -O2: block 2 is the loop; f and n, then the PHIs of i (instruction 4) and s (5).
    let osr = OsrReq { header: 2, live: vec![OSR_LIVE_ARG, OSR_LIVE_ARG | 1, 4, 5] };
    let req = apply_request(hash, Some(osr.clone()));
    let ep = Endpoint::Spawn { program: env!("CARGO_BIN_EXE_drti-jitd").into() };
    let conn = ep.open(None).expect("start drti-jitd");
    let mut session = Session::open(conn.stream, Duration::from_secs(30)).expect("session");
    let data = ModuleData { compressed: Arc::new(compressed), raw_size: bc.len() as u64, globals: Arc::new(globals.clone()) };
    let res = session.compile(&req, &mut |h| (*h == hash).then(|| data.clone()), Duration::from_secs(60)).expect("compile");
    let Outcome::Object { bytes, entry } = res.outcome else { panic!("{:?}", res.outcome) };
    assert!(entry.starts_with("drti.osr.") && entry.ends_with(".apply"), "the object's entry is the continuation: {entry}");
    // Another live list is refused by the server's JIT.
    let wrong = CompileRequest { id: 2, osr: Some(OsrReq { header: 2, live: vec![OSR_LIVE_ARG, 4, 5] }), ..req.clone() };
    let res = session.compile(&wrong, &mut |h| (*h == hash).then(|| data.clone()), Duration::from_secs(60)).expect("compile");
    assert!(matches!(&res.outcome, Outcome::Rejected { target: -1, reason } if reason.contains("the request names")), "{:?}", res.outcome);

    let mut misses = 0u64;
    let linked = link_here(&bc, &globals, &bytes, &mut misses, Some(&osr));
    let (code, _) = linked.function(&entry).unwrap();
    // SAFETY: `code` is apply's continuation, every symbol resolved; it has ApplyFc's type.
    let fc: ApplyFc = unsafe { std::mem::transmute::<usize, ApplyFc>(code as usize) };
    // An activation after 37 of 100 iterations with the inlined twice (which doubles).
    let s37: i64 = (0..37).map(|i| 2 * i).sum();
    assert_eq!(fc(real_twice, 100, 37, s37), (0..100).map(|i| 2 * i).sum::<i64>());
    assert_eq!(misses, 0);
    assert_eq!(fc(negate, 100, 37, 5), 5 - (37..100).sum::<i64>());
    assert_eq!(misses, 63);
    // SAFETY: no thread runs the linked code any more.
    unsafe { linked.release() };
}

/// Links `object` (compiled for `apply` of `bc`, `twice` inlined, continuation of `osr` if
/// given) with this process's addresses, named as the same request made here would name
/// them: `twice` is `real_twice`, the miss counter is `misses`.
fn link_here(bc: &[u8], globals: &[String], object: &[u8], misses: &mut u64, osr: Option<&OsrReq>) -> drti_agent::link::LinkedObject {
    let twice_addr = real_twice as *const () as usize as u64;
    let syms: Vec<JitSymbol> = globals.iter().map(|n| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: twice_addr }).collect();
    let module = JitModule { bitcode: bc.as_ptr(), bitcode_len: bc.len(), symbols: syms.as_ptr(), n_symbols: syms.len() };
    let targets = [JitTarget { address: twice_addr, module: 0, name: "twice".as_ptr(), name_len: 5, slot: std::ptr::null() }];
    let site = JitSite { owner: JitOwner::F, ordinal: 0, n_targets: 1, targets: targets.as_ptr(), miss_counter: misses, site: 0, area: 0 };
    let mirror = JitRequest {
        abi_version: JIT_ABI_VERSION,
        opt_level: 2,
        modules: &module,
        n_modules: 1,
        function_module: 0,
        function_name: "apply".as_ptr(),
        function_name_len: 5,
        sites: &site,
        n_sites: 1,
        probes: std::ptr::null(),
        n_probes: 0,
        sample_fn: 0,
        count_fn: 0,
        countdown_offset: 0,
        countdown_static: 0,
        inject_failure: 0,
        osr_header: osr.map_or(NO_OSR, |o| o.header),
        osr_live: osr.map_or(std::ptr::null(), |o| o.live.as_ptr()),
        n_osr_live: osr.map_or(0, |o| o.live.len()),
    };
    // SAFETY: the request points at locals of this function, alive until it returns.
    let table = unsafe { bitcode_embed::symbols::object_symbols(&mirror) };
    drti_agent::link::link(object, Some(twice_addr), |name| table.get(name).copied()).unwrap_or_else(|e| panic!("link: {e:?}"))
}

/// The request for `apply` of module `hash` with `twice` inlined (its continuation at
/// `osr` if given).
fn apply_request(hash: Hash, osr: Option<OsrReq>) -> CompileRequest {
    let f = |name: &str| FnRef { module: hash, name: name.into() };
    CompileRequest {
        id: 1,
        opt_level: 2,
        modules: vec![ModuleUse { hash, null_globals: vec![] }],
        function: f("apply"),
        sites: vec![SiteReq { owner: None, ordinal: 0, targets: vec![TargetReq { function: f("twice"), slot: false }], sample_site: None }],
        probes: vec![],
        countdown_static: false,
        inject_failure: false,
        osr,
    }
}
