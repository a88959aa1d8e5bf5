//! drti-jit: recompiles a function F with its hot indirect-call targets inlined behind
//! guards (F+), through the C ABI of `bitcode_embed::jit_abi`; linked into the compiler
//! process `drti-jitd`, which asks for portable objects ([`object`], [`symbolic`]).
//! Depends on bitcode-embed and drti-llvm-ir; links LLVM.
//!
//! Steps of one compile: load F's and the targets' bodies from their modules' clean
//! bitcode, each module parsed lazily and once per process ([`cache`]); check F and
//! every target can be copied faithfully ([`checks`]); copy each into a small module of
//! its own and bind that to the running program ([`bind`]); link the targets into F's
//! module; replace each hot site by a guard chain ([`guard`]); optimise with the O2
//! pipeline sized to what is compiled ([`pipeline`]; guards and copies are always
//! inlined); compile with ORC LLJIT ([`orc`]).
//! Sites may belong to F or to a target: a target's sites are guarded inside its copy
//! before the copy is inlined, so F+ composes the specialisations of everything it
//! inlines (the agent bounds the depth). Unguarded sites named by the request keep
//! sampling ([`probe`]).
//! A request may ask for an OSR continuation of F instead of F+ ([`osr`]): F's body
//! entered at a loop header with the header's live values as parameters; the same steps
//! then run on it.
//! The time of each phase goes back in the result. Everything the JIT or LLVM has to
//! say goes to the caller's log ([`report`]). The perf map is the agent's (it links the
//! code).

pub mod bind;
pub mod cache;
pub mod checks;
pub mod guard;
pub mod object;
pub mod orc;
pub mod osr;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod symbolic;

use bitcode_embed::jit_abi::*;
use drti_llvm_ir::ir;
use llvm_sys::core::*;
use llvm_sys::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static SESSION: Mutex<Option<orc::Session>> = Mutex::new(None);
/// The loaded modules and their context (created by the first compile).
static CACHE: Mutex<Option<cache::Cache>> = Mutex::new(None);
static TRACKERS: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// Why a compile did not produce code.
enum Failure {
    /// The function cannot be compiled faithfully (TLS, setjmp, ...).
    Rejected(String),
    /// Target `k` (flattened over the sites) cannot be inlined.
    RejectedTarget(usize, String),
    /// Something went wrong (LLVM error, bad input).
    Error(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Error(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Error(s.to_owned())
    }
}

/// ABI version of this library.
#[no_mangle]
pub extern "C" fn drti_jit_abi_version() -> u32 {
    JIT_ABI_VERSION
}

/// Creates the LLJIT session. Returns 0 on success, else fills `err`. `log` receives
/// every message of the JIT and of LLVM from now on.
///
/// # Safety
/// `err` must be null or point at a writable `JitResult`; `log`, if given, must be
/// callable from any thread for the life of the process.
#[no_mangle]
pub unsafe extern "C" fn drti_jit_init(_flags: u32, log: Option<LogFn>, err: *mut JitResult) -> i32 {
    report::set_log(log);
    report::install_fatal_handler();
    report::install_panic_hook();
    let made = report::in_jit(|| std::panic::catch_unwind(orc::Session::new)).unwrap_or_else(|_| Err("panic while creating the JIT".into()));
    match made {
        Ok(s) => {
            *SESSION.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
            0
        }
        Err(e) => {
            // SAFETY: the caller passes a valid result buffer or null.
            if let Some(out) = unsafe { err.as_mut() } {
                out.set_error(&e);
            }
            1
        }
    }
}

/// Compiles one request into `out`.
///
/// # Safety
/// `req` must point at a valid request whose pointers are valid for the call; `out` at a
/// writable `JitResult`.
#[no_mangle]
pub unsafe extern "C" fn drti_jit_compile(req: *const JitRequest, out: *mut JitResult) {
    // SAFETY: per the function contract.
    let (req, out) = unsafe { (&*req, &mut *out) };
    run(req, out, None);
}

/// F+ (or an OSR continuation) as a relocatable object: its bytes and its entry symbol.
pub struct ObjectCode {
    /// An x86-64 ELF relocatable object.
    pub bytes: Vec<u8>,
    /// The symbol of F+, or of the continuation when the request asked for one.
    pub entry: String,
}

/// Compiles `req` to a relocatable object instead of code in this process (what a
/// compiler process sends back; the agent links it, `drti_agent::link`). The result says
/// what `drti_jit_compile`'s would (ok, rejections, phases; no code address or handle);
/// on success the object comes with it. The object's undefined symbols are the program's
/// globals (`bind::abs_name` names) and the process's own symbols; with `portable`, every
/// address of this process the code would hold is a symbol named after its place in the
/// request instead (`bitcode_embed::symbols::object_symbols` gives their values here), so the object serves any
/// process that makes the same request.
///
/// # Safety
/// Every pointer of `req` must be valid for the call.
pub unsafe fn compile_object(req: &JitRequest, portable: bool) -> (JitResult, Option<ObjectCode>) {
    let mut out = JitResult::default();
    let mut object = ObjectRequest { portable, code: None };
    run(req, &mut out, Some(&mut object));
    (out, object.code)
}

/// Where an object compile leaves its object, and whether it must be process-independent.
struct ObjectRequest {
    /// Addresses become symbols named after the request ([`symbolic`], `bitcode_embed::symbols`).
    portable: bool,
    code: Option<ObjectCode>,
}

/// Runs one compile (in process, or to `object`) and fills `out`.
fn run(req: &JitRequest, out: &mut JitResult, object: Option<&mut ObjectRequest>) {
    *out = JitResult::default();
    if report::dead() {
        out.set_error("the JIT is off after an LLVM fatal error");
        return;
    }
    let mut phases = Phases::default();
    let cpu_started = thread_cpu_ms();
    let result = report::in_jit(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(req, &mut phases, object))))
        .unwrap_or_else(|p| Err(Failure::Error(format!("panic in the JIT: {}", panic_text(&p)))));
    out.parse_ms = phases.parse;
    out.bind_ms = phases.bind;
    out.optimise_ms = phases.optimise;
    out.codegen_ms = phases.codegen;
    out.cpu_ms = thread_cpu_ms() - cpu_started;
    match result {
        Ok((code, size, handle)) => {
            out.ok = 1;
            out.code = code;
            out.code_size = size;
            out.handle = handle;
        }
        Err(Failure::Rejected(e)) => {
            out.rejected = 1;
            out.set_error(&e);
        }
        Err(Failure::RejectedTarget(k, e)) => {
            out.rejected = 1;
            out.rejected_target = k as i32;
            out.set_error(&e);
        }
        Err(Failure::Error(e)) => out.set_error(&e),
    }
}

/// CPU time of the calling thread, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// The message of a caught panic.
fn panic_text(p: &Box<dyn std::any::Any + Send>) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("unknown")
}

/// Frees the code of compile `handle`.
#[no_mangle]
pub extern "C" fn drti_jit_release(handle: u64) {
    // After a fatal error LLVM is never entered again (its thread may hold the session).
    if report::dead() {
        return;
    }
    let mut trackers = TRACKERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = trackers.iter().position(|(h, _)| *h == handle) {
        let (_, rt) = trackers.remove(i);
        if let Some(s) = SESSION.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            s.release(rt as LLVMOrcResourceTrackerRef);
        }
    }
}

type LLVMOrcResourceTrackerRef = llvm_sys::orc2::LLVMOrcResourceTrackerRef;

/// A guarded target: its address, the index of its module, its IR name, its slot (0:
/// none).
type PlannedTarget = (u64, usize, String, u64);

/// The function holding a site: `None` for F, else a target's (module index, IR name).
type Owner = Option<(usize, String)>;

/// A guarded site of the request.
struct PlannedSite {
    owner: Owner,
    ordinal: u32,
    targets: Vec<PlannedTarget>,
    /// Address of the miss counter.
    misses: u64,
    /// The site's index in its owner's module and the module's runtime area (0: misses
    /// are not sampled).
    site: u32,
    area: u64,
}

/// A sampled site of the request.
struct PlannedProbe {
    owner: Owner,
    ordinal: u32,
    site: u32,
    area: u64,
}

/// A request copied into Rust values.
struct Plan {
    modules: Vec<(Vec<u8>, HashMap<String, u64>)>,
    function_module: usize,
    function: String,
    sites: Vec<PlannedSite>,
    probes: Vec<PlannedProbe>,
    sampler: probe::Sampler,
    inject_failure: bool,
    opt_level: u32,
    /// Some: compile the continuation of this OSR point (header block, live values).
    osr: Option<(u32, Vec<u32>)>,
}

/// The owner a request names.
///
/// # Safety
/// `o.name` must be valid for `o.name_len` bytes.
unsafe fn owner_of(o: &JitOwner) -> Owner {
    // SAFETY: per the function contract.
    (o.name_len != 0).then(|| (o.module as usize, unsafe { text(o.name, o.name_len) }))
}

fn read_request(req: &JitRequest) -> Result<Plan, String> {
    if req.abi_version != JIT_ABI_VERSION {
        return Err(format!("request ABI {} (JIT speaks {JIT_ABI_VERSION})", req.abi_version));
    }
    // SAFETY: the agent keeps every array and string of the request alive for the call
    // and sizes them with the counts it passes.
    unsafe {
        let mods = array(req.modules, req.n_modules);
        let modules = mods
            .iter()
            .map(|m| {
                let syms = array(m.symbols, m.n_symbols);
                let table = syms.iter().map(|s| (text(s.name, s.name_len), s.address)).collect();
                (array(m.bitcode, m.bitcode_len).to_vec(), table)
            })
            .collect();
        let sites = array(req.sites, req.n_sites)
            .iter()
            .map(|s| {
                let targets = array(s.targets, s.n_targets as usize)
                    .iter()
                    .map(|t| (t.address, t.module as usize, text(t.name, t.name_len), t.slot as u64))
                    .collect();
                PlannedSite { owner: owner_of(&s.owner), ordinal: s.ordinal, targets, misses: s.miss_counter as u64, site: s.site, area: s.area }
            })
            .collect();
        let probes = array(req.probes, req.n_probes)
            .iter()
            .map(|p| PlannedProbe { owner: owner_of(&p.owner), ordinal: p.ordinal, site: p.site, area: p.area })
            .collect();
        let sampler = probe::Sampler {
            sample_fn: req.sample_fn,
            count_fn: req.count_fn,
            countdown_offset: (req.countdown_static != 0).then_some(req.countdown_offset),
        };
        let plan = Plan {
            modules,
            function_module: req.function_module as usize,
            function: text(req.function_name, req.function_name_len),
            sites,
            probes,
            sampler,
            inject_failure: req.inject_failure != 0,
            opt_level: req.opt_level,
            osr: (req.osr_header != NO_OSR).then(|| (req.osr_header, array(req.osr_live, req.n_osr_live).to_vec())),
        };
        let n = plan.modules.len();
        let bad_owner = |o: &Owner| o.as_ref().is_some_and(|(m, _)| *m >= n);
        if plan.function_module >= n
            || plan.sites.iter().any(|s| bad_owner(&s.owner) || s.targets.iter().any(|t| t.1 >= n))
            || plan.probes.iter().any(|p| bad_owner(&p.owner))
        {
            return Err("module index out of range".into());
        }
        let mut seen = std::collections::HashSet::new();
        if !plan.sites.iter().all(|s| seen.insert((s.owner.clone(), s.ordinal))) {
            return Err("a site is named twice".into());
        }
        let sampled = !plan.probes.is_empty() || plan.sites.iter().any(|s| s.area != 0);
        if sampled && (plan.sampler.sample_fn == 0 || plan.sampler.count_fn == 0) {
            return Err("sampled sites without a sampler".into());
        }
        Ok(plan)
    }
}

/// A module being built; disposed unless handed over.
struct Owned(LLVMModuleRef);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a module we still own.
            unsafe { LLVMDisposeModule(self.0) }
        }
    }
}

fn named_function(m: LLVMModuleRef, name: &str) -> Option<LLVMValueRef> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `m` is live.
    let f = unsafe { LLVMGetNamedFunction(m, c.as_ptr()) };
    (!f.is_null()).then_some(f)
}

/// Milliseconds spent in each phase of one compile.
#[derive(Default)]
struct Phases {
    parse: f64,
    bind: f64,
    optimise: f64,
    codegen: f64,
}

/// Runs `f`, adding its milliseconds to `slot`.
fn timed<T>(slot: &mut f64, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    *slot += t.elapsed().as_secs_f64() * 1e3;
    r
}

/// Function `name` of a loaded module, with its body loaded: the time loading goes to
/// `parse`.
fn body_of(cache: &mut cache::Cache, bitcode: &[u8], name: &str, parse: &mut f64) -> Result<Option<LLVMValueRef>, String> {
    let m = timed(parse, || cache.module(bitcode))?;
    let Some(f) = named_function(m, name) else { return Ok(None) };
    if !ir::is_declaration(f) {
        // SAFETY: `f` is a live function of a module of the cache.
        timed(parse, || unsafe { cache::materialize(f) })?;
    }
    Ok(Some(f))
}

/// Compiles `req`: into this process (returns F+'s address, code size and handle), or,
/// with `object`, into a relocatable object left there (returns 0, the object's size, 0).
fn compile(req: &JitRequest, phases: &mut Phases, object: Option<&mut ObjectRequest>) -> Result<(u64, u64, u64), Failure> {
    let plan = read_request(req)?;
    if plan.inject_failure {
        return Err(Failure::Error(format!("injected failure for {} (DRTI_TEST_JIT_FAIL)", plan.function)));
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let plus = format!("drti.plus.{n}.{}", plan.function);
    // The object's entry: F+, or the continuation that replaces it.
    let entry = if plan.osr.is_some() { format!("drti.osr.{n}.{}", plan.function) } else { plus.clone() };
    let mut cache_guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache_guard.get_or_insert_with(cache::Cache::new);
    cache.begin();
    report::clear_errors();

    let f = body_of(cache, &plan.modules[plan.function_module].0, &plan.function, &mut phases.parse)?
        .ok_or_else(|| format!("{} is not in its module's bitcode", plan.function))?;
    checks::check(f).map_err(Failure::Rejected)?;
    if let Some((header, live)) = &plan.osr {
        osr::check_point(f, &plan.function, *header, live).map_err(osr_failure)?;
    }
    let src = ir_module(f);
    // SAFETY: `src` is the cache's live module holding `f`, whose body was loaded above.
    let mut main = Owned(timed(&mut phases.bind, || unsafe { cache::extract(src, &[f]) }).map_err(Failure::Rejected)?);

    // One copy per target, each in a module of its own, so a target that cannot be
    // copied is named and the agent can compile without it.
    let mut bodies: HashMap<(usize, String), String> = HashMap::new();
    let mut providers = Vec::new();
    for (k, (_, mi, tname, _)) in plan.sites.iter().flat_map(|s| s.targets.iter()).enumerate() {
        if bodies.contains_key(&(*mi, tname.clone())) {
            continue;
        }
        let body = format!("drti.inl.{n}.{k}");
        let reject = |why: String| Failure::RejectedTarget(k, format!("target {tname}: {why}"));
        let tf = body_of(cache, &plan.modules[*mi].0, tname, &mut phases.parse)?.ok_or_else(|| reject("not in its module's bitcode".into()))?;
        if ir::is_declaration(tf) {
            return Err(reject("no body in its module".into()));
        }
        checks::check(tf).map_err(&reject)?;
        // SAFETY: `tf` is a live, loaded function of the cache's module `ir_module(tf)`.
        let tm = Owned(timed(&mut phases.bind, || unsafe { cache::extract(ir_module(tf), &[tf]) }).map_err(&reject)?);
        let keep: HashMap<String, String> = [(tname.clone(), body.clone())].into();
        timed(&mut phases.bind, || bind::bind(tm.0, &keep, &plan.modules[*mi].1)).map_err(&reject)?;
        bodies.insert((*mi, tname.clone()), body);
        providers.push(tm);
    }
    let bind_started = std::time::Instant::now();
    let keep_f: HashMap<String, String> = [(plan.function.clone(), plus.clone())].into();
    bind::bind(main.0, &keep_f, &plan.modules[plan.function_module].1).map_err(Failure::Rejected)?;
    for mut tm in providers {
        // SAFETY: both modules live in the cache's context; LinkModules2 consumes the
        // source.
        let failed = unsafe { llvm_sys::linker::LLVMLinkModules2(main.0, tm.0) };
        tm.0 = std::ptr::null_mut();
        if failed != 0 {
            return Err(Failure::Error("linking the targets' bitcode failed".into()));
        }
    }
    for body in bodies.values() {
        let b = named_function(main.0, body).ok_or("inlined copy vanished while linking")?;
        // SAFETY: `b` is a live function of the merged module.
        unsafe { LLVMSetLinkage(b, llvm_sys::LLVMLinkage::LLVMInternalLinkage) };
        ir::add_fn_attr(b, "alwaysinline");
    }

    let fplus = named_function(main.0, &plus).ok_or("F+ vanished")?;
    // The indirect calls of every function holding a site (F+ or a target's copy),
    // listed before guards and probes change them; None: a call of F that the
    // continuation does not reach.
    let mut calls: HashMap<Owner, (String, Vec<Option<LLVMValueRef>>)> = HashMap::new();
    let fplus = match &plan.osr {
        None => fplus,
        Some((header, live)) => {
            if ir::instructions(fplus).len() != ir::instructions(f).len() {
                return Err(Failure::Error(format!("the copy of {} does not have its instructions", plan.function)));
            }
            let c = osr::build(fplus, &plan.function, *header, live, &entry).map_err(osr_failure)?;
            calls.insert(None, (plan.function.clone(), c.calls));
            c.function
        }
    };
    for owner in plan.sites.iter().map(|s| &s.owner).chain(plan.probes.iter().map(|p| &p.owner)) {
        if calls.contains_key(owner) {
            continue;
        }
        let (holder, label) = match owner {
            None => (fplus, plan.function.clone()),
            Some(key) => {
                let body = bodies.get(key).ok_or_else(|| format!("site owner {} is not an inlined target", key.1))?;
                (named_function(main.0, body).ok_or("inlined copy vanished while linking")?, key.1.clone())
            }
        };
        calls.insert(owner.clone(), (label, ir::indirect_calls(holder).into_iter().map(Some).collect()));
    }
    // A site's call; Ok(None) when a continuation left it out (nothing to guard there).
    let site_call = |owner: &Owner, ordinal: u32| -> Result<Option<LLVMValueRef>, Failure> {
        let (label, list) = &calls[owner];
        Ok(*list.get(ordinal as usize).ok_or_else(|| format!("site #{ordinal} not found in {label}"))?)
    };
    for p in &plan.probes {
        if let Some(call) = site_call(&p.owner, p.ordinal)? {
            probe::probe_site(main.0, call, &plan.sampler, p.area, p.site);
        }
    }
    for (i, s) in plan.sites.iter().enumerate() {
        let Some(call) = site_call(&s.owner, s.ordinal)? else { continue };
        let guarded: Vec<guard::Guarded> = s
            .targets
            .iter()
            .map(|(addr, mi, name, slot)| guard::Guarded { address: *addr, slot: *slot, body: named_function(main.0, &bodies[&(*mi, name.clone())]).unwrap() })
            .collect();
        let sample = (s.area != 0).then_some((&plan.sampler, s.area, s.site));
        guard::guard_site(main.0, call, &guarded, s.misses, sample, i);
    }
    if object.as_ref().is_some_and(|o| o.portable) {
        let mut by_addr: HashMap<u64, String> = HashMap::new();
        // SAFETY: `req`'s pointers are valid for the call (compile's contract).
        for (name, addr) in unsafe { bitcode_embed::symbols::request_symbols(req) } {
            by_addr.entry(addr).or_insert(name);
        }
        symbolic::rewrite(main.0, &by_addr)?;
    }
    drti_llvm_ir::ir::verify(main.0).map_err(|e| format!("F+ does not verify: {e}"))?;
    phases.bind += bind_started.elapsed().as_secs_f64() * 1e3;
    timed(&mut phases.optimise, || pipeline::optimise(main.0, plan.opt_level));

    let codegen_started = std::time::Instant::now();
    if let Some(slot) = object {
        let slot = &mut slot.code;
        let module = std::mem::replace(&mut main.0, std::ptr::null_mut());
        let bytes = object::emit(module)?;
        phases.codegen = codegen_started.elapsed().as_secs_f64() * 1e3;
        if let Some(errors) = report::take_errors() {
            return Err(Failure::Error(format!("LLVM error while compiling: {errors}")));
        }
        let size = bytes.len() as u64;
        *slot = Some(ObjectCode { bytes, entry });
        return Ok((0, size, 0));
    }
    let session = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    let session = session.as_ref().ok_or("JIT not initialised")?;
    let module = std::mem::replace(&mut main.0, std::ptr::null_mut());
    let (addr, rt) = session.add_and_lookup(cache.tsc(), module, &entry)?;
    phases.codegen = codegen_started.elapsed().as_secs_f64() * 1e3;
    if let Some(errors) = report::take_errors() {
        // LLVM reported an error but went on (e.g. bad inline assembly is left out of
        // the object): the code may not do what F does.
        session.release(rt);
        return Err(Failure::Error(format!("LLVM error while compiling: {errors}")));
    }
    let size = orc::code_size(&entry);
    TRACKERS.lock().unwrap_or_else(|p| p.into_inner()).push((n, rt as usize));
    Ok((addr, size, n))
}

fn osr_failure(e: osr::OsrError) -> Failure {
    match e {
        osr::OsrError::Rejected(why) => Failure::Rejected(why),
        osr::OsrError::Error(why) => Failure::Error(why),
    }
}

/// The module holding global `g`.
fn ir_module(g: LLVMValueRef) -> LLVMModuleRef {
    // SAFETY: `g` is a live global value.
    unsafe { LLVMGetGlobalParent(g) }
}
