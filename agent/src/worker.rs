//! The agent thread: drains samples into the edge table, marks edges hot, compiles the
//! functions that hold hot sites (through the JIT) and patches them, watches guard
//! misses, and frees JIT code no thread can be inside any more.
//!
//! Locking: the state lock is taken for short steps only. A compile is prepared under it
//! (the request owns copies of everything it needs), runs without it, and its result is
//! applied under it again after checking that the world did not change meanwhile (the
//! modules involved are still there and no guard slot was cleared). Loading the JIT and
//! reading the loader's object list happen without it too. So dlopen, dlclose, fork and
//! exit never wait for a compile.
//!
//! Plan: a site is compiled once one of its edges is hot; its targets are the decorated
//! ones past the threshold or with at least 5% of the site's calls, hottest first, up to
//! DRTI_MAX_TARGETS. A target outside the main program is guarded through a guard slot
//! (`guard_slots`) that dlclose clears, so address reuse cannot fool the guard.
//!
//! Composition (issue 11 item 3): the plan goes [`NEST_LEVELS`] levels deep. The sites of
//! each inlined target G are planned from the same edge table as G's own compile would
//! be, and the JIT guards them inside G's copy, so F+ carries G's specialisation instead
//! of G's original body (each function once per plan: a cycle F -> G -> F stops). Every
//! site of F+ left unguarded (F's and the copies', any level) keeps sampling into the
//! edge table under its owner's site id, through the agent's thread-local countdown
//! (`profile::jit_sample`); misses at guarded sites stay the deopt rule's. A new hot edge at a site of G queues G and every F whose
//! installed F+ considered G's sites ([`Coverage`]); a compile of G makes callers plan
//! again only when their F+ lacks one of G's guarded edges, so a new edge costs one
//! recompile per function and nothing loops.
//!
//! Deopt rule: F+ counts the calls at its guarded sites that match no guard. When one
//! compile's misses since its last check exceed max(threshold, 1000) within one check
//! interval (100 ms), the guards no longer describe the site: the patch is reverted, the
//! inlined edges become `invalidated`, their recent counts restart, and F profiles again;
//! it is recompiled once new edges get hot. After 3 deopts F stays unoptimised.

use crate::edges::{Callee, Edge, EdgeState};
use crate::guard_slots::{self, GuardSlot};
use crate::lifecycle;
use crate::profile::{self, Sample};
use crate::state::{self, Agent, CompileRecord, FnStatus, PatchEntry};
use bitcode_embed::dump::DumpNested;
use bitcode_embed::jit_abi::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::compiler::{CacheUse, Compiler};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deopts after which a function is left alone.
const MAX_DEOPTS: u32 = 3;
/// A target below the threshold is still guarded if it has 1/MIN_SHARE of its site's calls.
const MIN_SHARE: u64 = 20;
/// Interval between guard-miss checks (and attempts to free retired code).
const MISS_CHECK: Duration = Duration::from_millis(100);

static STARTED: AtomicBool = AtomicBool::new(false);
/// A compile is running (set around the unlocked part of a compile).
static IN_FLIGHT: AtomicBool = AtomicBool::new(false);

/// Whether the agent thread is in the middle of a compile.
pub fn compile_in_flight() -> bool {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Whether nothing the agent would do now is left: no compile running or waiting (other
/// than those the policy deferred), no sample unread. For `DRTI_TEST_EXIT_WAIT_MS`.
pub fn quiet(agent: &Agent) -> bool {
    !compile_in_flight() && profile::queued() == 0 && agent.replan.is_empty() && agent.pending.iter().all(|f| agent.deferred.contains_key(f))
}

/// `DRTI_TEST_JIT_DELAY_MS` (tests only): every compile takes at least this long, to show
/// that nothing in the application waits for compiles.
fn test_compile_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| std::env::var("DRTI_TEST_JIT_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis))
}

/// Starts the agent thread once.
pub fn start() {
    spawn();
}

/// From the dlopen interposer: starts the agent thread if a decorated module appeared.
pub fn start_from_application() {
    if !STARTED.load(Ordering::Acquire) && crate::discover::any_drti_note() {
        spawn();
    }
}

fn spawn() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    lifecycle::AGENT_STARTED.store(true, Ordering::SeqCst);
    let spawned = std::thread::Builder::new().name("drti-agent".into()).spawn(|| {
        crate::preload::mark_agent_thread();
        let _ = lifecycle::AGENT_THREAD.set(std::thread::current());
        if std::panic::catch_unwind(run).is_err() {
            // Nothing waits for this thread: the program runs on with what is patched.
            tracing::warn!("the drti agent thread stopped after an internal error; the program runs on");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the agent thread ({e}); the program runs unoptimised");
    }
}

/// In a fork child: the agent thread did not survive.
pub fn forget_after_fork() {
    STARTED.store(false, Ordering::Release);
    IN_FLIGHT.store(false, Ordering::SeqCst);
}

/// Adds `increment` to the agent thread's nice value (draining samples, compiling; threads
/// it starts inherit it), never above 19 and never below the program's. Failing is
/// harmless: the thread runs at the application's priority.
fn lower_priority(increment: i32) {
    if increment == 0 {
        return;
    }
    // SAFETY: getpriority/setpriority on this thread's own id read and change only this
    // thread's nice value (getpriority's -1 is a valid value too, hence errno is not checked:
    // a wrong base only changes how low the priority goes).
    let r = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let base = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (base + increment).clamp(base, 19))
    };
    if r != 0 {
        tracing::debug!("agent thread keeps its priority: {}", std::io::Error::last_os_error());
    }
}

fn run() {
    let (jit, nice) = state::lock().map(|a| (a.config.jit, a.config.jit_nice)).unwrap_or((false, 0));
    lower_priority(nice);
    if jit {
        let t = Instant::now();
        let patcher = crate::patch::Patcher::new().map_err(|e| e.to_string());
        // Measured once (it starts a thread): ahead of the first compile, not during it.
        let _ = profile::jit_countdown_offset();
        tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, "patcher ready");
        if let Some(mut agent) = state::lock() {
            if let Err(e) = &patcher {
                tracing::warn!("live patching unavailable: {e}");
            }
            agent.patcher.get_or_insert(patcher);
        }
        // Cheap (no process yet): the first hot function does not wait for it.
        start_compiler();
    }
    let mut seen = (u64::MAX, u64::MAX);
    let mut last_check = Instant::now();
    let mut last_release = Instant::now();
    let mut idle_streak = 0u32;
    let mut warm = state::lock().and_then(|a| WarmStart::open(&a.config));
    loop {
        if crate::preload::exiting() {
            // The exit handler owns the state from now on.
            loop {
                std::thread::park();
            }
        }
        let mut idle = true;
        let now = (lifecycle::LOADS.load(Ordering::SeqCst), lifecycle::UNLOADS.load(Ordering::SeqCst));
        if now != seen {
            seen = now;
            let view = lifecycle::LoaderView::take();
            if let Some(mut agent) = state::lock() {
                agent.reconcile(&view);
                if let Some(w) = &mut warm {
                    w.recall(&mut agent);
                }
            }
            idle = false;
        }
        let mut job = None;
        if let Some(mut agent) = state::lock() {
            // Samples are popped only under the lock, so none is lost when the exit
            // handler takes the lock for good.
            let now_s = agent.started.elapsed().as_secs_f64();
            let mut popped = 0;
            for _ in 0..4096 {
                let Some(s) = profile::pop() else { break };
                record(&mut agent, &s, now_s);
                popped += 1;
            }
            // A trickle of samples (the adaptive period keeps it to thousands a second)
            // does not need a busy agent thread; a backlog does.
            if popped >= 256 {
                idle = false;
            }
            profile::adapt();
            agent.settle_slots();
            if let Some(w) = &mut warm {
                w.inject(&mut agent, now_s);
            }
            if agent.config.jit && crate::guardrails::out_of_memory() {
                jit_off(&mut agent, "the agent ran out of memory");
            }
            if agent.config.jit {
                while job.is_none() {
                    let Some(f) = next_compile(&mut agent) else { break };
                    job = prepare(&mut agent, f);
                }
                if last_check.elapsed() >= MISS_CHECK {
                    check_misses(&mut agent);
                    last_check = Instant::now();
                }
            }
        }
        if let Some(job) = job {
            IN_FLIGHT.store(true, Ordering::SeqCst);
            let (res, ms, cache, unavailable) = job.run();
            if let Some(mut agent) = state::lock() {
                // The compiler measures each compile's CPU time (JitResult::cpu_ms); code
                // from the cache cost none and says nothing about what compiles cost.
                agent.jit_cpu_ms += res.cpu_ms;
                if cache != CacheUse::Hit {
                    agent.compile_cost.entry(job.modules[0]).or_default().observe(res.cpu_ms);
                }
                let (module, ok) = (job.f.0, res.ok != 0);
                apply(&mut agent, job, (res, ms), cache);
                if let (Some(w), true) = (&warm, ok) {
                    w.remember(&mut agent, module);
                }
                if let Some(why) = unavailable {
                    jit_off(&mut agent, &why);
                }
            }
            IN_FLIGHT.store(false, Ordering::SeqCst);
            idle = false;
        }
        if last_release.elapsed() >= MISS_CHECK {
            release_code();
            last_release = Instant::now();
        }
        // An idle agent thread sleeps longer and longer (1 to 16 ms): it costs the program
        // next to nothing, and dlopen/dlclose wake it at once.
        idle_streak = if idle { (idle_streak + 1).min(4) } else { 0 };
        if idle {
            std::thread::park_timeout(Duration::from_millis(1 << idle_streak));
        }
    }
}

/// Warm start (`DRTI_WARM=1`, see `warm`): the agent thread's view of the stored edges.
struct WarmStart {
    cache: drti_cache::Cache,
    /// Modules whose stored edges were read.
    seen: std::collections::HashSet<usize>,
    /// Stored edges whose target module is not loaded yet: (caller module, edge).
    pending: Vec<(usize, crate::warm::WarmEdge)>,
}

impl WarmStart {
    /// Warm start as configured; None when off or without a cache (one warning).
    fn open(config: &crate::config::Config) -> Option<WarmStart> {
        if !config.warm || !config.jit {
            return None;
        }
        let Some(dir) = &config.cache.dir else {
            tracing::warn!("DRTI_WARM=1 needs the code cache (DRTI_CACHE=0, or no cache directory): no warm start");
            return None;
        };
        match drti_cache::Cache::open(dir, config.cache.max_bytes) {
            Ok(cache) => Some(WarmStart { cache, seen: Default::default(), pending: Vec::new() }),
            Err(e) => {
                tracing::warn!("no warm start: {e}");
                None
            }
        }
    }

    /// Reads the stored edges of modules loaded since the last look.
    fn recall(&mut self, agent: &mut Agent) {
        for id in 0..agent.modules.len() {
            if agent.module(id).is_none() || !self.seen.insert(id) {
                continue;
            }
            let Some(hash) = hash_of(agent, id) else { continue };
            if let drti_cache::Lookup::Hit(bytes) = self.cache.get(&crate::warm::key(&hash)) {
                let edges = crate::warm::decode(&bytes);
                tracing::debug!(module = %agent.modules[id].path, edges = edges.len(), "warm start: edges of earlier runs");
                self.pending.extend(edges.into_iter().map(|e| (id, e)));
            }
        }
    }

    /// Marks hot the stored edges whose both ends are loaded.
    fn inject(&mut self, agent: &mut Agent, now_s: f64) {
        if self.pending.is_empty() {
            return;
        }
        let live: Vec<usize> = (0..agent.modules.len()).filter(|&id| agent.module(id).is_some()).collect();
        let mut hashes = Vec::new();
        for &id in &live {
            if let Some(h) = hash_of(agent, id) {
                hashes.push((h, id));
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (id, e) in pending {
            if agent.module(id).is_none() {
                continue; // the caller's module went away
            }
            let Some(&(_, tid)) = hashes.iter().find(|(h, _)| *h == e.target_module) else {
                self.pending.push((id, e));
                continue;
            };
            let Some(m) = agent.module(tid) else { continue };
            let Some(tf) = (0..m.blob.header().n_functions).find(|&f| m.blob.function_name(f) == e.target) else { continue };
            let target = m.function_address(tf);
            let Some(caller) = agent.module(id).and_then(|m| m.blob.site(e.site)).map(|s| (id, s.function)) else { continue };
            let key = (id, e.site, target);
            if !agent.edges.map.contains_key(&key) {
                let callee = agent.resolve(target);
                agent.edges.map.insert(key, Edge { calls: 0, recent: 0, samples: 0, state: EdgeState::Cold, callee, reason: None, rate: Default::default() });
            }
            let threshold = crate::policy::evidence_needed(agent.config.hot_threshold, 0);
            let Some(mut edge) = agent.edges.map.get_mut(&key) else { continue };
            if edge.state != EdgeState::Cold {
                continue;
            }
            // The evidence of the earlier run: hot, at its last rate.
            edge.state = EdgeState::Hot;
            edge.recent = edge.recent.max(threshold);
            edge.rate.observe(e.calls_per_s, now_s, 1.0);
            drop(edge);
            tracing::debug!(caller = %agent.function_name(caller.0, caller.1), target = %e.target, "edge hot (warm start)");
            queue(agent, caller);
        }
    }

    /// Stores the edges module `id` has inlined now, for later runs.
    fn remember(&self, agent: &mut Agent, id: usize) {
        // (site, target module, target function, calls/s) of each inlined edge.
        let inlined: Vec<(u32, usize, u32, f64)> = agent
            .edges
            .map
            .iter()
            .filter(|e| e.key().0 == id && e.state == EdgeState::Inlined)
            .filter_map(|e| match e.callee {
                Callee::Decorated { module, function } => Some((e.key().1, module, function, e.rate.per_s)),
                Callee::Outside { .. } => None,
            })
            .collect();
        let Some(hash) = hash_of(agent, id) else { return };
        let mut edges = Vec::new();
        for (site, module, function, calls_per_s) in inlined {
            let Some(target_module) = hash_of(agent, module) else { continue };
            edges.push(crate::warm::WarmEdge { site, target_module, target: agent.function_name(module, function), calls_per_s });
        }
        edges.sort_by(|a, b| (a.site, &a.target).cmp(&(b.site, &b.target)));
        if let Err(e) = self.cache.put(&crate::warm::key(&hash), &crate::warm::encode(&edges)) {
            tracing::debug!("warm start: cannot store the edges: {e}");
        }
    }
}

/// Frees retired JIT code no thread can be inside (the scan runs without the lock).
fn release_code() {
    let (mut owner, compiler) = match state::lock() {
        Some(mut a) if a.code.retired() > 0 => (std::mem::take(&mut a.code), a.compiler.as_ref().and_then(|j| j.as_ref().ok()).cloned()),
        _ => return,
    };
    let n = owner.release_quiescent(&mut |h| {
        if let Some(c) = &compiler {
            // SAFETY: the code owner calls this only for code no slot points at and no
            // thread is inside (its quiescence scan).
            unsafe { lock_compiler(c).release(h) };
        }
    });
    if let Some(mut a) = state::lock() {
        let fresh = std::mem::replace(&mut a.code, owner);
        a.code.absorb(fresh);
        if n > 0 {
            tracing::debug!(released = n, waiting = a.code.retired(), "JIT code freed");
        }
    }
}

/// The compiler, locked (only the agent thread uses it; a panic inside left it usable).
fn lock_compiler(c: &Mutex<Compiler>) -> std::sync::MutexGuard<'_, Compiler> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the compiler up (and the patcher), without the state lock. The compiler process
/// itself is started by the first compile the cache does not serve.
fn start_compiler() {
    let Some((perf_map, cache, server)) = state::lock().map(|a| (a.config.perf_map, a.config.cache.clone(), a.config.jit_server.clone())) else { return };
    if let Err(e) = crate::guardrails::jit_headroom() {
        if let Some(mut agent) = state::lock() {
            jit_off(&mut agent, &format!("not starting the compiler: {e}"));
            agent.compiler = Some(Err(e));
        }
        return;
    }
    let t = Instant::now();
    let compiler = crate::jitd_client::Endpoint::choose(server.as_deref(), crate::discover::agent_dir().as_deref())
        .and_then(|endpoint| Compiler::new(endpoint, &cache, perf_map))
        .map(|c| Arc::new(Mutex::new(c)));
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(mut agent) = state::lock() {
        match &compiler {
            Ok(_) => tracing::info!(ms, "compiler ready"),
            // One warning; nothing is compiled from now on.
            Err(e) => jit_off(&mut agent, &format!("no compiler: {e}")),
        }
        agent.jit_load_ms = Some(ms);
        agent.compiler = Some(compiler);
        if agent.patcher.is_none() {
            agent.patcher = Some(crate::patch::Patcher::new().map_err(|e| e.to_string()));
            if let Some(Err(e)) = &agent.patcher {
                tracing::warn!("live patching unavailable: {e}");
            }
        }
    }
}

/// Records every queued sample (at exit, so the dump counts them all).
pub fn drain(agent: &mut Agent) {
    let now_s = agent.started.elapsed().as_secs_f64();
    while let Some(s) = profile::pop() {
        record(agent, &s, now_s);
    }
}

/// Adds one sample to the edge table; queues the caller when an edge gets hot.
fn record(agent: &mut Agent, s: &Sample, now_s: f64) {
    let Some(&id) = agent.by_area.get(&s.area) else { return };
    let key = (id, s.site, s.target);
    if !agent.edges.map.contains_key(&key) {
        let callee = agent.resolve(s.target);
        agent.edges.map.insert(key, Edge { calls: 0, recent: 0, samples: 0, state: EdgeState::Cold, callee, reason: None, rate: Default::default() });
    }
    // Edges of a function given up on (after repeated deopts) keep the state and reason
    // of their last compile instead of turning hot again for nothing; after each deopt a
    // function needs twice the evidence.
    let caller = agent.module(id).and_then(|m| m.blob.site(s.site)).map(|site| (id, site.function));
    let st = caller.and_then(|f| agent.functions.get(&f)).copied().unwrap_or_default();
    let given_up = st.0 == FnStatus::Given;
    let threshold = crate::policy::evidence_needed(agent.config.hot_threshold, st.1);
    let mut got_hot = false;
    let mut was_inlined = false;
    if let Some(mut e) = agent.edges.map.get_mut(&key) {
        was_inlined = e.state == EdgeState::Inlined;
        e.calls += s.weight as u64;
        e.recent += s.weight as u64;
        e.samples += 1;
        e.rate.observe(s.weight as f64, now_s, s.span_ms as f64 / 1e3);
        // An edge into an unloaded module stays invalidated (late samples still count).
        let callee_live = match e.callee {
            Callee::Decorated { module, .. } => agent.module(module).is_some(),
            Callee::Outside { .. } => true,
        };
        let may_heat = e.state == EdgeState::Cold || (e.state == EdgeState::Invalidated && !given_up);
        if may_heat && e.recent >= threshold && callee_live {
            e.state = EdgeState::Hot;
            got_hot = true;
        }
    }
    // A sample of a site the installed F+ guards for this target comes from F's twin: an
    // activation that entered F before the patch and has not returned. Unless compiled
    // code samples the site too (a copy of F inlined elsewhere, its site left unguarded):
    // its samples cannot be told apart.
    if let (true, FnStatus::Optimised, Some(f)) = (was_inlined, st.0, caller) {
        let stuck = !agent.probed_sites.contains(&(id, s.site)) && agent.stuck.entry(f).or_default().observe(now_s);
        if stuck && !agent.osr_wanted.contains(&f) && agent.module(f.0).is_some_and(|m| !m.osr_points(f.1).is_empty()) {
            tracing::debug!(function = %agent.function_name(f.0, f.1), "an activation from before the patch is still running: on-stack replacement");
            agent.osr_wanted.insert(f);
            queue(agent, f);
        }
    }
    if !got_hot {
        return;
    }
    let Some(f) = caller else { return };
    tracing::debug!(caller = %agent.function_name(f.0, f.1), target = format!("{:#x}", s.target), "edge hot");
    queue(agent, f);
    if !agent.config.jit {
        return;
    }
    // F+ of other functions that inlined f with its sites considered (sampled there, or
    // guarded for other targets) can guard the new edge too: one recompile each.
    let covering: Vec<(usize, u32)> = with_coverage(|c| {
        agent.patches.iter().filter(|p| p.active && p.owner != f && c.get(&p.owner).is_some_and(|cov| cov.owners.contains(&f))).map(|p| p.owner).collect()
    });
    for g in covering {
        queue(agent, g);
    }
}

/// Queues `f` for a compile unless it waits already or was given up.
fn queue(agent: &mut Agent, f: (usize, u32)) {
    let jit = agent.config.jit;
    let st = agent.functions.entry(f).or_default();
    if matches!(st.0, FnStatus::Profiling | FnStatus::Optimised) && jit {
        st.0 = FnStatus::Queued;
        st.2.get_or_insert_with(Instant::now);
        agent.pending.push(f);
    }
}

/// CPU milliseconds the whole process has used.
fn process_cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// The waiting function the policy compiles next, taken off the queue; `None` when none
/// should be compiled now (each waiting function's reason is kept for the dump). A
/// function whose compiled code bypasses a newer specialisation is planned first.
fn next_compile(agent: &mut Agent) -> Option<(usize, u32)> {
    if let Some(f) = (!agent.replan.is_empty()).then(|| agent.replan.remove(0)) {
        agent.pending.retain(|&p| p != f);
        agent.deferred.remove(&f);
        return Some(f);
    }
    if agent.pending.is_empty() || agent.policy_wait_until.is_some_and(|t| Instant::now() < t) {
        return None;
    }
    let now_s = agent.started.elapsed().as_secs_f64();
    // Calls per second of each waiting function's hot edges, and of the hot edges at
    // sites its installed F+ covers (inlined copies whose sites it would guard).
    let mut rate: std::collections::HashMap<(usize, u32), f64> = agent.pending.iter().map(|&f| (f, 0.0)).collect();
    let mut covering: std::collections::HashMap<(usize, u32), Vec<(usize, u32)>> = Default::default();
    with_coverage(|c| {
        for &f in &agent.pending {
            if !agent.patches.iter().any(|p| p.active && p.owner == f) {
                continue;
            }
            for &o in c.get(&f).map_or(&[][..], |cov| &cov.owners[..]) {
                if o != f {
                    covering.entry(o).or_default().push(f);
                }
            }
        }
    });
    for e in agent.edges.map.iter() {
        let (mid, site, _) = *e.key();
        let Some(&(fi, _)) = agent.modules.get(mid).and_then(|m| m.site_info.get(site as usize)) else { continue };
        // A function waiting for an OSR continuation is worth its inlined edges' calls: the
        // stuck activation makes them in the twin.
        let counts = e.state == EdgeState::Hot || (e.state == EdgeState::Inlined && agent.osr_wanted.contains(&(mid, fi)));
        if !counts {
            continue;
        }
        let r = e.rate.at(now_s);
        if let Some(x) = rate.get_mut(&(mid, fi)) {
            *x += r;
        }
        for g in covering.get(&(mid, fi)).into_iter().flatten() {
            if let Some(x) = rate.get_mut(g) {
                *x += r;
            }
        }
    }
    let cands: Vec<crate::policy::Candidate> = agent
        .pending
        .iter()
        .map(|f| crate::policy::Candidate { calls_per_s: rate[f], cost_ms: agent.compile_cost.get(&f.0).copied().unwrap_or_default().expected_ms })
        .collect();
    let knobs = crate::policy::Knobs { threshold: agent.config.hot_threshold, budget_share: agent.config.jit_budget, require_payback: !agent.config.threshold_given };
    let process = crate::policy::Process { run_s: now_s, cpu_ms: process_cpu_ms(), jit_cpu_ms: agent.jit_cpu_ms };
    match crate::policy::decide(&knobs, &cands, &process) {
        crate::policy::Decision::Compile(i) => {
            let f = agent.pending.remove(i);
            agent.deferred.remove(&f);
            Some(f)
        }
        d => {
            // Rates and budgets change slowly: look again in a while, not every loop.
            agent.policy_wait_until = Some(Instant::now() + Duration::from_millis(50));
            for (f, c) in agent.pending.clone().into_iter().zip(&cands) {
                let why = match d {
                    crate::policy::Decision::OverBudget => format!("JIT CPU budget spent ({:.0} ms of compiles; DRTI_JIT_BUDGET={})", agent.jit_cpu_ms, agent.config.jit_budget),
                    _ => format!("does not pay back yet: {:.0} calls/s would repay a {:.0} ms compile in {:.1} s", c.calls_per_s, c.cost_ms, c.payback_s()),
                };
                if agent.deferred.insert(f, why.clone()).is_none() {
                    tracing::debug!(function = %agent.function_name(f.0, f.1), "compile deferred: {why}");
                }
            }
            None
        }
    }
}

/// Levels of guarded sites in one compile: F's own and those of the targets inlined into
/// F+ (whose copies carry their guards). Targets of the last level are inlined with
/// their sites unguarded but sampled.
const NEST_LEVELS: usize = 2;

/// What an installed F+ covers: the functions whose sites its plan considered (F and the
/// targets of the nested levels) and the edges it guards. A new hot edge at a site of one
/// of them can be guarded by compiling F again; a compile of one of them with no edge
/// beyond these makes nothing new reachable from F+.
#[derive(Clone, Debug, Default)]
struct Coverage {
    owners: Vec<(usize, u32)>,
    edges: Vec<crate::edges::EdgeKey>,
}

/// Coverage of the installed F+ of each function (agent thread and exit, always under the
/// state lock, so never contended; consulted only for active patches).
static COVERAGE: std::sync::Mutex<Option<std::collections::HashMap<(usize, u32), Coverage>>> = std::sync::Mutex::new(None);

/// Runs `f` on the coverage table. Under the state lock the table is free; only a fork
/// child whose parent's agent thread held it at the fork finds it taken for good, and
/// gets an empty one (the child compiles nothing).
fn with_coverage<T>(f: impl FnOnce(&mut std::collections::HashMap<(usize, u32), Coverage>) -> T) -> T {
    match COVERAGE.try_lock() {
        Ok(mut g) => f(g.get_or_insert_with(Default::default)),
        Err(std::sync::TryLockError::Poisoned(p)) => f(p.into_inner().get_or_insert_with(Default::default)),
        Err(std::sync::TryLockError::WouldBlock) => f(&mut Default::default()),
    }
}

/// Whether F+ samples the calls of guarded sites that match no guard. Off: the deopt rule
/// owns misses (a site whose guards stop matching goes back to F and is planned afresh,
/// so a target that is no longer called is not kept guarded); the JIT supports it.
const SAMPLE_MISSES: bool = false;

/// An unguarded site of F+ that keeps sampling.
struct ProbePlan {
    owner: (usize, u32),
    ordinal: u32,
    /// Site index in the owner's module.
    site: u32,
    /// The owner module's runtime area.
    area: u64,
}

/// Plans the sites of `g` (F or a function inlined into F+): per site with a hot edge,
/// the hottest decorated targets past the threshold or with a share of the site's calls.
/// Adds the targets' modules to `modules`.
fn plan_sites(agent: &mut Agent, g: (usize, u32), modules: &mut Vec<usize>) -> Vec<SitePlan> {
    let (id, gi) = g;
    let max_targets = agent.config.max_targets;
    let threshold = agent.config.hot_threshold;
    let Some(m) = agent.module(id) else { return Vec::new() };
    let Some(rec) = m.blob.function(gi) else { return Vec::new() };
    let area = m.runtime as u64;
    let sites: Vec<(u32, u32)> = (rec.first_site..rec.first_site + rec.n_sites).filter_map(|s| m.blob.site(s).map(|site| (s, site.ordinal))).collect();
    let mut plans = Vec::new();
    for (s, ordinal) in sites {
        let mut plan = SitePlan { owner: g, ordinal, site: s, area, targets: Vec::new(), edges: Vec::new() };
        // A site is compiled once one of its edges is hot; every target with at least
        // 1/MIN_SHARE of the site's recent calls is guarded too, so a mostly-monomorphic
        // site does not deopt over and over on its second-hottest target.
        let edges = agent.edges.of_site(id, s);
        let site_total: u64 = edges.iter().map(|(_, e)| e.recent).sum();
        if edges.first().is_none_or(|(_, e)| e.recent < threshold) {
            continue;
        }
        for (key, e) in edges {
            if (e.recent < threshold && e.recent * MIN_SHARE < site_total) || e.state == EdgeState::Rejected {
                continue;
            }
            match &e.callee {
                // A target is inlined with its own hot sites guarded inside its copy
                // (nested levels), so F+ does not bypass the target's specialisation.
                Callee::Decorated { module, function } if plan.targets.len() < max_targets => {
                    if !modules.contains(module) {
                        modules.push(*module);
                    }
                    plan.targets.push((key.2, *module, *function));
                    plan.edges.push((key, true));
                }
                Callee::Decorated { .. } => plan.edges.push((key, false)),
                Callee::Outside { name, object } => {
                    let why = format!("target {name} in {object} is not drti-decorated code (no bitcode)");
                    tracing::info!(caller = %agent.function_name(id, gi), "edge rejected: {why}");
                    agent.edges.set_state(key, EdgeState::Rejected, Some(why));
                }
            }
        }
        if !plan.targets.is_empty() {
            plans.push(plan);
        }
    }
    plans
}

/// What one compile inlines at one site.
struct SitePlan {
    /// The function holding the site: F, or a target inlined into F+.
    owner: (usize, u32),
    ordinal: u32,
    /// The site's index in the owner's module, and that module's runtime area (misses
    /// are sampled as this site).
    site: u32,
    area: u64,
    /// (target address, module id, function index).
    targets: Vec<(u64, usize, u32)>,
    edges: Vec<(crate::edges::EdgeKey, bool)>,
}

/// A compile prepared under the lock, run without it: it owns everything the request
/// points to.
struct Job {
    f: (usize, u32),
    name: String,
    plans: Vec<SitePlan>,
    modules: Vec<usize>,
    /// Load address of each module in `modules`.
    bases: Vec<u64>,
    symbol_names: Vec<Vec<String>>,
    symbol_addrs: Vec<Vec<u64>>,
    target_names: Vec<Vec<String>>,
    /// Per site, per target: the guard slot (None: the main program's, never unloaded).
    slots: Vec<Vec<Option<GuardSlot>>>,
    /// Miss counters (leaked: F+ may run until its code is released; 8 bytes each).
    misses: Vec<&'static AtomicU64>,
    inject_failure: bool,
    compiler: Arc<Mutex<Compiler>>,
    /// Per module: the hash of its embedded bitcode.
    hashes: Vec<bitcode_embed::protocol::Hash>,
    /// When the earliest inlined edge was first sampled (seconds since the agent started).
    first_seen_s: Option<f64>,
    /// Per plan: the owner's IR name, empty for F.
    owner_names: Vec<String>,
    /// Unguarded sites that keep sampling, and their owners' IR names (empty for F).
    probes: Vec<ProbePlan>,
    probe_names: Vec<String>,
    /// The nested sites, for the dump.
    nested: Vec<DumpNested>,
    /// What F+ covers (see [`Coverage`]).
    coverage: Coverage,
    /// A continuation for this OSR point of F instead of F+.
    osr: Option<OsrJob>,
}

/// An OSR continuation to compile and arm.
struct OsrJob {
    point: crate::osr::Point,
    /// Address of the point's slot in F's runtime area.
    slot: u64,
}

impl Job {
    /// Runs the compile (no lock held): the result, its wall time, whether the cache
    /// served it, and why no compiler can be had any more, if so.
    fn run(&self) -> (JitResult, f64, CacheUse, Option<String>) {
        let symbols: Vec<Vec<JitSymbol>> = self
            .symbol_names
            .iter()
            .zip(&self.symbol_addrs)
            .map(|(names, addrs)| names.iter().zip(addrs).map(|(n, &a)| JitSymbol { name: n.as_ptr(), name_len: n.len(), address: a }).collect())
            .collect();
        // The bitcode goes to the compiler by hash (sent only if it asks).
        let jit_modules: Vec<JitModule> = symbols.iter().map(|s| JitModule { bitcode: std::ptr::null(), bitcode_len: 0, symbols: s.as_ptr(), n_symbols: s.len() }).collect();
        let targets: Vec<Vec<JitTarget>> = self
            .plans
            .iter()
            .zip(&self.target_names)
            .zip(&self.slots)
            .map(|((p, names), slots)| {
                p.targets
                    .iter()
                    .zip(names)
                    .zip(slots)
                    .map(|((&(addr, mid, _), n), slot)| JitTarget {
                        address: addr,
                        module: self.modules.iter().position(|&x| x == mid).unwrap_or(0) as u32,
                        name: n.as_ptr(),
                        name_len: n.len(),
                        slot: slot.map_or(std::ptr::null(), |s| s.address() as *const u64),
                    })
                    .collect()
            })
            .collect();
        let owner = |o: (usize, u32), name: &String| {
            if o == self.f {
                JitOwner::F
            } else {
                JitOwner { module: self.modules.iter().position(|&x| x == o.0).unwrap_or(0) as u32, name: name.as_ptr(), name_len: name.len() }
            }
        };
        let sites: Vec<JitSite> = self
            .plans
            .iter()
            .zip(&targets)
            .zip(&self.misses)
            .zip(&self.owner_names)
            .map(|(((p, t), m), on)| JitSite { owner: owner(p.owner, on), ordinal: p.ordinal, n_targets: t.len() as u32, targets: t.as_ptr(), miss_counter: m.as_ptr(), site: p.site, area: if SAMPLE_MISSES { p.area } else { 0 } })
            .collect();
        let probes: Vec<JitProbe> =
            self.probes.iter().zip(&self.probe_names).map(|(p, on)| JitProbe { owner: owner(p.owner, on), ordinal: p.ordinal, site: p.site, area: p.area }).collect();
        let offset = profile::jit_countdown_offset();
        let req = JitRequest {
            abi_version: JIT_ABI_VERSION,
            opt_level: 2,
            modules: jit_modules.as_ptr(),
            n_modules: jit_modules.len(),
            function_module: 0,
            function_name: self.name.as_ptr(),
            function_name_len: self.name.len(),
            sites: sites.as_ptr(),
            n_sites: sites.len(),
            probes: probes.as_ptr(),
            n_probes: probes.len(),
            sample_fn: profile::jit_sample as *const () as usize as u64,
            count_fn: profile::jit_count as *const () as usize as u64,
            countdown_offset: offset.unwrap_or(0),
            countdown_static: offset.is_some() as u32,
            inject_failure: self.inject_failure as u32,
            osr_header: self.osr.as_ref().map_or(NO_OSR, |o| o.point.header),
            osr_live: self.osr.as_ref().map_or(std::ptr::null(), |o| o.point.live.as_ptr()),
            n_osr_live: self.osr.as_ref().map_or(0, |o| o.point.live.len()),
        };
        let started = Instant::now();
        if let Some(ms) = test_compile_delay() {
            std::thread::sleep(ms);
        }
        let inlined: Vec<&str> = self.target_names.iter().flatten().map(String::as_str).collect();
        let map_name = match &self.osr {
            Some(o) => format!("drti:{}@osr{}+[{}]", self.name, o.point.header, inlined.join(",")),
            None => format!("drti:{}+[{}]", self.name, inlined.join(",")),
        };
        let mut data = |h: &bitcode_embed::protocol::Hash| self.module_data(h);
        let modules = crate::compiler::Modules { hashes: &self.hashes, data: &mut data };
        let out = lock_compiler(&self.compiler).compile(&req, modules, self.bases.first().copied(), &map_name);
        (out.result, started.elapsed().as_secs_f64() * 1e3, out.cache, out.unavailable)
    }

    /// What the compiler process needs of module `hash` (it asks once per module): the
    /// embedded bitcode, copied under the lock while the module is still the one planned.
    fn module_data(&self, hash: &bitcode_embed::protocol::Hash) -> Option<crate::jitd_client::ModuleData> {
        let k = self.hashes.iter().position(|h| h == hash)?;
        let agent = state::lock()?;
        let m = agent.module(self.modules[k]).filter(|m| m.base == self.bases[k])?;
        Some(crate::jitd_client::ModuleData {
            compressed: Arc::new(m.blob.bitcode_compressed().to_vec()),
            raw_size: m.blob.header().bitcode_raw_size,
            globals: Arc::new(self.symbol_names[k].clone()),
        })
    }

    /// Gives back what the job holds when its code is not installed.
    fn discard(&self, res: &JitResult) {
        if res.ok != 0 {
            // SAFETY: the code was never installed: nothing points at it.
            unsafe { lock_compiler(&self.compiler).release(res.handle) };
        }
        for s in self.slots.iter().flatten().flatten() {
            guard_slots::release(*s);
        }
    }
}

/// Turns compiling off for the rest of the process, with one warning.
fn jit_off(agent: &mut Agent, why: &str) {
    if agent.config.jit {
        tracing::warn!("{why}; the program runs on without further optimisation");
    }
    agent.config.jit = false;
    for f in std::mem::take(&mut agent.pending) {
        agent.functions.entry(f).or_default().0 = FnStatus::Given;
    }
}

/// Plans the compile of `f` (under the lock): `None` when there is nothing to compile.
fn prepare(agent: &mut Agent, f: (usize, u32)) -> Option<Job> {
    if let Err(e) = crate::guardrails::jit_headroom() {
        agent.functions.entry(f).or_default().0 = FnStatus::Given;
        jit_off(agent, &format!("not compiling: {e}"));
        return None;
    }
    let (id, fi) = f;
    let name = agent.function_name(id, fi);
    // main runs once: a new main would never be entered, so its hot loops move by
    // on-stack replacement (`osr`) instead, or it is not compiled at all. So do those of
    // a compiled F whose twin keeps sampling sites its F+ guards (`record`): an
    // activation from before the patch is still in its loop.
    let stuck = agent.osr_wanted.remove(&f);
    let entered_once = name == "main" || stuck;
    let compiler = match &agent.compiler {
        Some(Ok(j)) => j.clone(),
        Some(Err(e)) => {
            let e = e.clone();
            give_up(agent, f, &name, &format!("no compiler: {e}"), false);
            return None;
        }
        None => {
            // The agent thread sets the compiler up before it compiles anything; a
            // process whose JIT was off at that point compiles nothing.
            give_up(agent, f, &name, "no compiler was set up", false);
            return None;
        }
    };
    if let Some(Err(e)) = &agent.patcher {
        let e = e.clone();
        give_up(agent, f, &name, &format!("live patching unavailable: {e}"), false);
        return None;
    }
    agent.module(id)?.blob.function(fi)?;

    // Plan level by level: F's sites, then the sites of the targets inlined into F+
    // (each function once: a cycle F -> G -> F stops at F).
    let mut plans: Vec<SitePlan> = Vec::new();
    let mut modules: Vec<usize> = vec![id];
    let mut planned: Vec<(usize, u32)> = vec![f];
    let mut considered: Vec<(usize, u32)> = Vec::new();
    let mut level = vec![f];
    for _ in 0..NEST_LEVELS {
        let mut next = Vec::new();
        for g in level {
            considered.push(g);
            for p in plan_sites(agent, g, &mut modules) {
                for &(_, mid, tf) in &p.targets {
                    if !planned.contains(&(mid, tf)) && !next.contains(&(mid, tf)) {
                        next.push((mid, tf));
                    }
                }
                plans.push(p);
            }
        }
        planned.extend(next.iter().copied());
        level = next;
    }
    let osr = if entered_once {
        let hot: Vec<u32> = plans.iter().filter(|p| p.owner == f).map(|p| p.ordinal).collect();
        let points = agent.module(id).map(|m| m.osr_points(fi)).unwrap_or_default();
        let armed: Vec<u32> = agent.osr_armed.iter().filter(|(m, _)| *m == id).map(|&(_, i)| i).collect();
        match crate::osr::choose(&points, &hot, &armed) {
            Some(i) => {
                let p = points[i].clone();
                let slot = agent.module(id).and_then(|m| m.osr_slot(p.slot));
                slot.map(|slot| OsrJob { point: p, slot })
            }
            None if stuck => {
                // F+ stays as it is; only the activation in the twin cannot be moved.
                let patched = agent.patches.iter().any(|p| p.owner == f && p.active);
                agent.functions.entry(f).or_default().0 = if patched { FnStatus::Optimised } else { FnStatus::Profiling };
                return None;
            }
            None => {
                let why = if hot.is_empty() {
                    "main is entered only once".to_owned()
                } else if points.is_empty() {
                    // drti-cc places no point in a function with setjmp, varargs, dynamic
                    // allocas, stacksave, musttail or token values (`drti inspect` lists them).
                    "main is entered only once and has no OSR point (no loop with an indirect call, or setjmp, varargs, dynamic allocas and the like)".to_owned()
                } else {
                    "main is entered only once and no loop with an OSR point holds its hot sites".to_owned()
                };
                if let Some(rec) = agent.module(id).and_then(|m| m.blob.function(fi)) {
                    for s in rec.first_site..rec.first_site + rec.n_sites {
                        for (key, _) in agent.edges.of_site(id, s) {
                            if agent.edges.map.get(&key).is_some_and(|e| e.state != EdgeState::Inlined) {
                                agent.edges.set_state(key, EdgeState::Rejected, Some(why.clone()));
                            }
                        }
                    }
                }
                give_up(agent, f, &name, &why, true);
                return None;
            }
        }
    } else {
        None
    };
    if !plans.iter().any(|p| p.owner == f) {
        tracing::debug!(function = %name, "nothing to inline (no hot decorated target)");
        if let Some(i) = agent.patches.iter().position(|p| p.owner == f && p.active) {
            agent.unpatch(i, "none of its sites has a hot target left");
        }
        agent.functions.entry(f).or_default().0 = FnStatus::Profiling;
        return None;
    }
    // Every other site of F and of the copies inlined into F+ keeps sampling, but for
    // sites decided already: every target seen is outside decorated code.
    let mut probes = Vec::new();
    for &(mid, g) in &planned {
        let Some(m) = agent.module(mid) else { continue };
        let Some(rec) = m.blob.function(g) else { continue };
        for s in rec.first_site..rec.first_site + rec.n_sites {
            let Some(site) = m.blob.site(s) else { continue };
            let edges = agent.edges.of_site(mid, s);
            let decided = !edges.is_empty() && edges.iter().all(|(_, e)| matches!(e.callee, Callee::Outside { .. }));
            if !decided && !plans.iter().any(|p| p.owner == (mid, g) && p.ordinal == site.ordinal) {
                probes.push(ProbePlan { owner: (mid, g), ordinal: site.ordinal, site: s, area: m.runtime as u64 });
            }
        }
    }
    let nested: Vec<DumpNested> = plans
        .iter()
        .filter(|p| p.owner != f)
        .map(|p| DumpNested { owner: agent.function_name(p.owner.0, p.owner.1), ordinal: p.ordinal, targets: p.targets.iter().map(|&(_, mid, tf)| agent.function_name(mid, tf)).collect() })
        .collect();
    let owner_names: Vec<String> = plans.iter().map(|p| if p.owner == f { String::new() } else { agent.function_name(p.owner.0, p.owner.1) }).collect();
    let probe_names: Vec<String> = probes.iter().map(|p| if p.owner == f { String::new() } else { agent.function_name(p.owner.0, p.owner.1) }).collect();

    // Bitcode hashes and address tables of every module involved (copies: the compile
    // runs without the lock, while modules may come and go).
    let mut hashes = Vec::new();
    for &mid in &modules {
        hashes.push(hash_of(agent, mid)?);
    }
    let mut symbol_names = Vec::new();
    let mut symbol_addrs = Vec::new();
    let mut bases = Vec::new();
    for &mid in &modules {
        let m = agent.module(mid)?;
        let n = m.blob.header().n_globals;
        symbol_names.push((0..n).map(|g| m.blob.global_name(g).to_owned()).collect::<Vec<_>>());
        symbol_addrs.push((0..n).map(|g| m.global_address(g)).collect::<Vec<_>>());
        bases.push(m.base);
    }
    let target_names: Vec<Vec<String>> = plans.iter().map(|p| p.targets.iter().map(|&(_, mid, tf)| agent.function_name(mid, tf)).collect()).collect();
    // Guard slots for targets that can be unloaded; published before the closing check,
    // so a dlclose either sees the slot or is seen here (see `lifecycle`).
    let main_base = crate::discover::main_program_base();
    let mut slots: Vec<Vec<Option<GuardSlot>>> = Vec::new();
    let mut out_of_slots = false;
    for p in &plans {
        let mut v = Vec::new();
        for &(addr, mid, _) in &p.targets {
            let base = bases[modules.iter().position(|&x| x == mid).unwrap_or(0)];
            if Some(base) == main_base {
                v.push(None);
            } else {
                let s = guard_slots::allocate(addr, base);
                out_of_slots |= s.is_none();
                v.push(s);
            }
        }
        slots.push(v);
    }
    let closing = bases.iter().any(|&b| lifecycle::is_closing(b));
    if out_of_slots || closing {
        for s in slots.iter().flatten().flatten() {
            guard_slots::release(*s);
        }
        if out_of_slots {
            give_up(agent, f, &name, "no free guard slot", false);
        } else {
            // A module involved is going away: plan again once it is reconciled.
            agent.functions.entry(f).or_default().0 = FnStatus::Profiling;
        }
        return None;
    }
    let included: Vec<crate::edges::EdgeKey> = plans.iter().flat_map(|p| p.edges.iter().filter(|(_, inc)| *inc).map(|(k, _)| *k)).collect();
    let misses: Vec<&'static AtomicU64> = plans.iter().map(|_| &*Box::leak(Box::new(AtomicU64::new(0)))).collect();
    tracing::debug!(ms = agent.functions.get(&f).and_then(|s| s.2).map(|t| t.elapsed().as_secs_f64() * 1e3), "request ready (since hot)");
    let first_seen_s = plans
        .iter()
        .flat_map(|p| p.edges.iter().filter(|(_, inc)| *inc))
        .filter_map(|(k, _)| agent.edges.map.get(k).map(|e| e.rate.since_s))
        .min_by(f64::total_cmp);
    Some(Job {
        first_seen_s,
        f,
        inject_failure: agent.config.test_jit_fail.contains(&name),
        name,
        plans,
        modules,
        bases,
        hashes,
        symbol_names,
        symbol_addrs,
        target_names,
        slots,
        misses,
        compiler,
        owner_names,
        probes,
        probe_names,
        nested,
        coverage: Coverage { owners: considered, edges: included },
        osr,
    })
}

/// Applies a compile's result (under the lock): records it and patches F's entry, unless
/// the program is exiting, a module involved went away, or a guard slot was cleared.
fn apply(agent: &mut Agent, job: Job, (res, ms): (JitResult, f64), cache: CacheUse) {
    let f = job.f;
    let name = job.name.clone();
    let stale = crate::preload::exiting()
        || job.modules.iter().zip(&job.bases).any(|(&mid, &b)| agent.module(mid).is_none_or(|m| m.base != b) || lifecycle::is_closing(b))
        || job.slots.iter().flatten().flatten().any(|s| s.is_cleared());
    if stale {
        job.discard(&res);
        tracing::debug!(function = %name, "compile result dropped: a module involved went away");
        if let Some(st) = agent.functions.get_mut(&f) {
            st.0 = FnStatus::Profiling;
        }
        return;
    }
    let plans = &job.plans;
    // F's own sites' targets; the nested ones are listed apart.
    let inlined: Vec<String> = plans.iter().zip(&job.target_names).filter(|(p, _)| p.owner == f).flat_map(|(_, n)| n.iter().cloned()).collect();
    let extra = || CompileRecord {
        nested: job.nested.clone(),
        sampled_sites: job.probes.len() as u32,
        cache: cache.dump_name().map(str::to_owned),
        osr_header: job.osr.as_ref().map(|o| o.point.header),
        ..Default::default()
    };
    if res.ok == 0 {
        job.discard(&res);
    }
    if res.ok == 0 && res.rejected_target >= 0 {
        // One target cannot be inlined: reject its edge and compile again without it.
        let err = res.error_text();
        let key = plans.iter().flat_map(|p| p.edges.iter().filter(|(_, inc)| *inc).map(|(k, _)| *k)).nth(res.rejected_target as usize);
        if let Some(key) = key {
            tracing::info!(function = %name, "edge rejected: {err}");
            agent.compiles.push(CompileRecord { function: name.clone(), inlined: inlined.clone(), ms, code_bytes: 0, ok: false, error: Some(err.clone()), hot_to_patch_ms: None, seen_to_patch_ms: None, phases: Some((&res).into()), ..extra() });
            agent.edges.set_state(key, EdgeState::Rejected, Some(err));
            agent.functions.entry(f).or_default().0 = FnStatus::Queued;
            agent.pending.push(f);
            return;
        }
    }
    if res.ok == 0 {
        let err = res.error_text();
        agent.compiles.push(CompileRecord { function: name.clone(), inlined, ms, code_bytes: 0, ok: false, error: Some(err.clone()), hot_to_patch_ms: None, seen_to_patch_ms: None, phases: Some((&res).into()), ..extra() });
        for p in plans {
            for &(k, _) in &p.edges {
                agent.edges.set_state(k, EdgeState::Rejected, Some(err.clone()));
            }
        }
        give_up(agent, f, &name, &err, res.rejected != 0);
        return;
    }

    if job.osr.is_some() {
        let record = extra();
        arm(agent, job, (res, ms), record);
        return;
    }
    // Point F's entry at F+ (or re-point an existing patch), while F's object is held.
    let (id, fi) = f;
    let entry = agent.module(id).map(|m| m.function_address(fi)).unwrap_or(0);
    let slot = agent.module(id).and_then(|m| m.redirect_slot(fi));
    let Some(Ok(patcher)) = agent.patcher else {
        job.discard(&res);
        return;
    };
    let patch_started = Instant::now();
    let resting = agent.resting_now(f);
    let existing = agent.patches.iter_mut().find(|p| p.owner == f && p.active);
    let old_code = existing.as_ref().map(|p| p.record.target);
    // SAFETY: the slot is F's, in module `id`, which is live under the state lock and not
    // closing during this `touching` section, so its memory stays mapped; `res.code` is
    // F+, compiled from F's clean bitcode with F's type, calling convention and
    // attributes, and its code is freed only after the patch stopped pointing at it.
    let patched = lifecycle::touching(&[job.bases[0]], || match existing {
        Some(p) => unsafe { patcher.retarget(&mut p.record, res.code) }.map(|_| None),
        None => match slot {
            Some(slot) => unsafe { patcher.redirect_from(entry, slot, resting, res.code) }.map(Some),
            None => Err(crate::patch::PatchError::NoSlot { entry }),
        },
    });
    let hot_since = agent.functions.get(&f).and_then(|s| s.2);
    let hot_to_patch_ms = hot_since.map(|t| t.elapsed().as_secs_f64() * 1e3);
    let seen_to_patch_ms = job.first_seen_s.map(|s| (agent.started.elapsed().as_secs_f64() - s) * 1e3);
    tracing::debug!(ms = patch_started.elapsed().as_secs_f64() * 1e3, "patch written");
    let Some(patched) = patched else {
        // F's object is closing: never installed.
        job.discard(&res);
        agent.functions.entry(f).or_default().0 = FnStatus::Profiling;
        return;
    };
    match patched {
        Ok(new_record) => {
            let depends_on: Vec<usize> = job.modules.iter().copied().filter(|&m| m != id).collect();
            let inlined_fns: Vec<(usize, u32)> = plans.iter().flat_map(|p| p.targets.iter().map(|&(_, m, g)| (m, g))).collect();
            let slots: Vec<GuardSlot> = job.slots.iter().flatten().flatten().copied().collect();
            agent.code.install(res.handle, res.code, res.code_size, slots);
            agent.probed_sites.extend(job.probes.iter().map(|p| (p.owner.0, p.site)));
            if let Some(old) = old_code {
                agent.code.retire(old);
            }
            match new_record {
                Some(record) => agent.patches.push(PatchEntry { function: name.clone(), owner: f, depends_on, record, active: true, misses: job.misses.clone(), misses_seen: 0, inlined: inlined_fns.clone() }),
                None => {
                    if let Some(p) = agent.patches.iter_mut().find(|p| p.owner == f && p.active) {
                        p.misses = job.misses.clone();
                        p.misses_seen = 0;
                        p.depends_on = depends_on;
                        p.inlined = inlined_fns.clone();
                    }
                }
            }
            // Compiled code that inlined F with fewer guards than F+ has now would bypass
            // them: plan it again, where its plan covers F's sites (a copy of F at the
            // last level stays unguarded whatever it is compiled again with).
            let mine: Vec<crate::edges::EdgeKey> = plans.iter().filter(|p| p.owner == f).flat_map(|p| p.edges.iter().filter(|(_, inc)| *inc).map(|(k, _)| *k)).collect();
            let stale: Vec<(usize, u32)> = with_coverage(|c| {
                c.insert(f, job.coverage.clone());
                agent
                    .patches
                    .iter()
                    .filter(|p| p.active && p.owner != f && p.inlined.contains(&f))
                    .filter(|p| c.get(&p.owner).is_none_or(|cov| cov.owners.contains(&f) && !mine.iter().all(|k| cov.edges.contains(k))))
                    .map(|p| p.owner)
                    .collect()
            });
            for g in stale {
                if !agent.replan.contains(&g) {
                    agent.replan.push(g);
                }
            }
            agent.compiles.push(CompileRecord { function: name.clone(), inlined: inlined.clone(), ms, code_bytes: res.code_size, ok: true, error: None, hot_to_patch_ms, seen_to_patch_ms, phases: Some((&res).into()), ..extra() });
            for p in plans {
                for &(k, included) in &p.edges {
                    if included {
                        agent.edges.set_state(k, EdgeState::Inlined, None);
                    }
                }
            }
            let st = agent.functions.entry(f).or_default();
            st.0 = FnStatus::Optimised;
            st.2 = None;
            tracing::info!(function = %name, inlined = ?inlined, compile_ms = ms, hot_to_patch_ms, code_bytes = res.code_size, "patched to {:#x}", res.code);
        }
        Err(e) => {
            job.discard(&res);
            let err = format!("patch failed: {e}");
            agent.compiles.push(CompileRecord { function: name.clone(), inlined, ms, code_bytes: res.code_size, ok: false, error: Some(err.clone()), hot_to_patch_ms: None, seen_to_patch_ms: None, phases: Some((&res).into()), ..extra() });
            give_up(agent, f, &name, &err, false);
        }
    }
}

/// Stores a compiled OSR continuation in its point's slot (under the lock): every
/// activation of F running the twin's loop moves into it at its next iteration. The code is
/// never freed (an activation may stay in it for the rest of the process).
fn arm(agent: &mut Agent, job: Job, (res, ms): (JitResult, f64), record: CompileRecord) {
    let (f, name) = (job.f, job.name.clone());
    let Some(osr) = &job.osr else { return };
    let inlined: Vec<String> = job.plans.iter().zip(&job.target_names).filter(|(p, _)| p.owner == f).flat_map(|(_, n)| n.iter().cloned()).collect();
    let hot_to_patch_ms = agent.functions.get(&f).and_then(|s| s.2).map(|t| t.elapsed().as_secs_f64() * 1e3);
    let seen_to_patch_ms = job.first_seen_s.map(|s| (agent.started.elapsed().as_secs_f64() - s) * 1e3);
    // SAFETY: the slot is the point's, in F's runtime area, mapped while F's object is not
    // closing (this `touching` section); `res.code` is the continuation compiled for this
    // point's live values with F's return type, and it is never freed.
    let armed = lifecycle::touching(&[job.bases[0]], || unsafe { (*(osr.slot as *const std::sync::atomic::AtomicU64)).store(res.code, Ordering::Release) });
    if armed.is_none() {
        // F's object is closing: nothing to move.
        job.discard(&res);
        return;
    }
    agent.osr_armed.insert((f.0, osr.point.index));
    agent.probed_sites.extend(job.probes.iter().map(|p| (p.owner.0, p.site)));
    agent.compiles.push(CompileRecord { function: name.clone(), inlined: inlined.clone(), ms, code_bytes: res.code_size, ok: true, error: None, hot_to_patch_ms, seen_to_patch_ms, phases: Some((&res).into()), ..record });
    for p in &job.plans {
        for &(k, included) in &p.edges {
            if included {
                agent.edges.set_state(k, EdgeState::Inlined, None);
            }
        }
    }
    // F's entry is as it was: F+ if F was compiled, else its twin (main's is never called
    // again); a hot loop elsewhere in F gets the next point's continuation.
    let patched = agent.patches.iter().any(|p| p.owner == f && p.active);
    let st = agent.functions.entry(f).or_default();
    st.0 = if patched { FnStatus::Optimised } else { FnStatus::Profiling };
    st.2 = None;
    tracing::info!(function = %name, header = osr.point.header, inlined = ?inlined, compile_ms = ms, hot_to_patch_ms, "OSR continuation armed at {:#x}", res.code);
}

/// Marks `f` as never to be compiled again, with one log line.
fn give_up(agent: &mut Agent, f: (usize, u32), name: &str, why: &str, rejected: bool) {
    if rejected {
        tracing::info!(function = %name, "not compiled (rejected): {why}");
    } else {
        tracing::warn!(function = %name, "not compiled: {why}; it runs unoptimised");
    }
    agent.functions.entry(f).or_default().0 = FnStatus::Given;
}

/// The SHA-256 of the module's embedded bitcode (once per module; the bitcode is never
/// decompressed in the application). None when the module is gone.
fn hash_of(agent: &mut Agent, id: usize) -> Option<bitcode_embed::protocol::Hash> {
    if let Some(h) = agent.modules[id].hash {
        return Some(h);
    }
    let h = drti_cache::key::sha256(agent.module(id)?.blob.bitcode_compressed());
    agent.modules[id].hash = Some(h);
    Some(h)
}

/// Applies the deopt rule to every active patch.
fn check_misses(agent: &mut Agent) {
    let limit = agent.config.hot_threshold.max(1000);
    let mut deopt = Vec::new();
    for (i, p) in agent.patches.iter_mut().enumerate().filter(|(_, p)| p.active) {
        let total: u64 = p.misses.iter().map(|m| m.load(std::sync::atomic::Ordering::Relaxed)).sum();
        if total - p.misses_seen > limit {
            deopt.push(i);
        }
        p.misses_seen = total;
    }
    for i in deopt {
        let owner = agent.patches[i].owner;
        let name = agent.patches[i].function.clone();
        if !agent.unpatch(i, "deopt") {
            tracing::debug!(function = %name, "deopt postponed: F's object is closing");
            continue;
        }
        let st = agent.functions.entry(owner).or_default();
        st.1 += 1;
        let deopts = st.1;
        st.0 = if deopts >= MAX_DEOPTS { FnStatus::Given } else { FnStatus::Profiling };
        tracing::info!(function = %name, deopts, "deopt: guard misses dominate; back to the original code");
        let Some(m) = agent.module(owner.0) else { continue };
        let Some(rec) = m.blob.function(owner.1) else { continue };
        for mut e in agent.edges.map.iter_mut() {
            let (mid, site, _) = *e.key();
            if mid == owner.0 && (rec.first_site..rec.first_site + rec.n_sites).contains(&site) {
                e.recent = 0;
                if matches!(e.state, EdgeState::Inlined | EdgeState::Hot) {
                    e.state = EdgeState::Invalidated;
                    e.reason = Some("deopt: guard misses dominated".into());
                }
            }
        }
    }
}
