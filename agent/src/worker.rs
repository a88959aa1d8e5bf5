//! The agent thread: drains samples into the edge table, marks edges hot, compiles the
//! functions that hold hot sites (through the JIT) and patches them, and watches guard
//! misses.
//!
//! Plan: a site is compiled once one of its edges is hot; its targets are the decorated
//! ones past the threshold or with at least 5% of the site's calls, hottest first, up to
//! DRTI_MAX_TARGETS.
//!
//! Deopt rule: F+ counts the calls at its guarded sites that match no guard. When one
//! compile's misses since its last check exceed max(threshold, 1000) within one check
//! interval (100 ms), the guards no longer describe the site: the patch is reverted, the
//! inlined edges become `invalidated`, their recent counts restart, and F profiles again;
//! it is recompiled once new edges get hot. After 3 deopts F stays unoptimised.

use crate::edges::{Callee, Edge, EdgeState};
use crate::profile::{self, Sample};
use crate::state::{self, Agent, CompileRecord, FnStatus, PatchEntry};
use bitcode_embed::jit_abi::*;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Deopts after which a function is left alone.
const MAX_DEOPTS: u32 = 3;
/// A target below the threshold is still guarded if it has 1/MIN_SHARE of its site's calls.
const MIN_SHARE: u64 = 20;
/// Interval between guard-miss checks.
const MISS_CHECK: Duration = Duration::from_millis(100);

/// Starts the agent thread once.
pub fn start(agent: &mut Agent) {
    if agent.thread_started {
        return;
    }
    agent.thread_started = true;
    let spawned = std::thread::Builder::new().name("drti-agent".into()).spawn(|| {
        crate::preload::mark_agent_thread();
        run();
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the agent thread ({e}); the program runs unoptimised");
    }
}

fn run() {
    // Registering for membarrier waits for an RCU grace period (~15 ms): do it now, off the
    // hot-to-patch path and without holding the state lock.
    let jit = state::lock().map(|a| a.config.jit).unwrap_or(false);
    if jit {
        let t = Instant::now();
        let patcher = crate::patch::Patcher::new().map_err(|e| e.to_string());
        tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, "patcher ready");
        if let Some(mut agent) = state::lock() {
            if let Err(e) = &patcher {
                tracing::warn!("live patching unavailable: {e}");
            }
            agent.patcher.get_or_insert(patcher);
        }
    }
    let mut last_check = Instant::now();
    loop {
        let mut idle = true;
        if let Some(mut agent) = state::lock() {
            // Samples are popped only under the lock, so none is lost when the exit
            // handler takes the lock for good.
            for _ in 0..4096 {
                let Some(s) = profile::pop() else { break };
                record(&mut agent, &s);
                idle = false;
            }
            if agent.config.jit {
                if agent.want_tools && agent.jit.is_none() {
                    let _ = ensure_tools(&mut agent);
                }
                while let Some(f) = (!agent.pending.is_empty()).then(|| agent.pending.remove(0)) {
                    compile(&mut agent, f);
                }
                if last_check.elapsed() >= MISS_CHECK {
                    check_misses(&mut agent);
                    last_check = Instant::now();
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Records every queued sample (at exit, so the dump counts them all).
pub fn drain(agent: &mut Agent) {
    while let Some(s) = profile::pop() {
        record(agent, &s);
    }
}

/// Adds one sample to the edge table; queues the caller when an edge gets hot.
fn record(agent: &mut Agent, s: &Sample) {
    let Some(&id) = agent.by_area.get(&s.area) else { return };
    let key = (id, s.site, s.target);
    if !agent.edges.map.contains_key(&key) {
        let callee = agent.resolve(s.target);
        agent.edges.map.insert(key, Edge { calls: 0, recent: 0, samples: 0, state: EdgeState::Cold, callee, reason: None });
    }
    let threshold = agent.config.hot_threshold;
    // Edges of a function given up on (after repeated deopts) keep the state and reason
    // of their last compile instead of turning hot again for nothing.
    let caller = agent.module(id).and_then(|m| m.blob.site(s.site)).map(|site| (id, site.function));
    let given_up = caller.and_then(|f| agent.functions.get(&f)).is_some_and(|st| st.0 == FnStatus::Given);
    let mut got_hot = false;
    if let Some(mut e) = agent.edges.map.get_mut(&key) {
        e.calls += s.weight as u64;
        e.recent += s.weight as u64;
        e.samples += 1;
        // An edge into an unloaded module stays invalidated (late samples still count).
        let callee_live = match e.callee {
            Callee::Decorated { module, .. } => agent.module(module).is_some(),
            Callee::Outside { .. } => true,
        };
        if matches!(e.callee, Callee::Decorated { .. }) {
            // Decorated code calls decorated code through a pointer: an edge may get hot.
            // Loading LLVM takes tens of milliseconds; start now so that, where the edge
            // warms up over more than one batch, hot-to-patch is only the compile.
            agent.want_tools = true;
        }
        let may_heat = e.state == EdgeState::Cold || (e.state == EdgeState::Invalidated && !given_up);
        if may_heat && e.recent >= threshold && callee_live {
            e.state = EdgeState::Hot;
            got_hot = true;
        }
    }
    if !got_hot {
        return;
    }
    let Some(f) = caller else { return };
    tracing::debug!(caller = %agent.function_name(f.0, f.1), target = format!("{:#x}", s.target), "edge hot");
    let st = agent.functions.entry(f).or_default();
    if matches!(st.0, FnStatus::Profiling | FnStatus::Optimised) && agent.config.jit {
        st.0 = FnStatus::Queued;
        st.2.get_or_insert_with(Instant::now);
        agent.pending.push(f);
    }
}

/// Loads the JIT and the patcher on first use.
fn ensure_tools(agent: &mut Agent) -> Result<(), String> {
    if agent.patcher.is_none() {
        agent.patcher = Some(crate::patch::Patcher::new().map_err(|e| e.to_string()));
        if let Some(Err(e)) = &agent.patcher {
            tracing::warn!("live patching unavailable: {e}");
        }
    }
    if agent.jit.is_none() {
        let t = Instant::now();
        agent.jit = Some(crate::jit_bridge::Jit::load(agent.config.perf_map));
        agent.jit_load_ms = Some(t.elapsed().as_secs_f64() * 1e3);
        match &agent.jit {
            Some(Ok(_)) => tracing::info!(ms = agent.jit_load_ms, "JIT loaded"),
            Some(Err(e)) => tracing::warn!("JIT unavailable: {e}; the program runs unoptimised"),
            None => {}
        }
    }
    match (&agent.patcher, &agent.jit) {
        (Some(Ok(_)), Some(Ok(_))) => Ok(()),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.clone()),
        _ => Err("not initialised".into()),
    }
}

/// What one compile inlines at one site.
struct SitePlan {
    ordinal: u32,
    targets: Vec<(u64, usize, u32)>,
    edges: Vec<(crate::edges::EdgeKey, bool)>,
}

/// Compiles function `f` with its hot targets inlined and patches it in.
fn compile(agent: &mut Agent, f: (usize, u32)) {
    let (id, fi) = f;
    let name = agent.function_name(id, fi);
    if name == "main" {
        // main runs once; without on-stack replacement a new main would never be entered.
        let why = "main is entered only once (no on-stack replacement)".to_owned();
        if let Some(rec) = agent.module(id).and_then(|m| m.blob.function(fi)) {
            for s in rec.first_site..rec.first_site + rec.n_sites {
                for (key, _) in agent.edges.of_site(id, s) {
                    agent.edges.set_state(key, EdgeState::Rejected, Some(why.clone()));
                }
            }
        }
        give_up(agent, f, &name, &why, true);
        return;
    }
    if let Err(e) = ensure_tools(agent) {
        give_up(agent, f, &name, &format!("JIT unavailable: {e}"), false);
        return;
    }
    let Some(m) = agent.module(id) else { return };
    let Some(rec) = m.blob.function(fi) else { return };
    let max_targets = agent.config.max_targets;
    let threshold = agent.config.hot_threshold;

    // Plan: per site, the hottest decorated targets past the threshold.
    let mut plans: Vec<SitePlan> = Vec::new();
    let mut modules: Vec<usize> = vec![id];
    for s in rec.first_site..rec.first_site + rec.n_sites {
        let Some(site) = m.blob.site(s) else { continue };
        let mut plan = SitePlan { ordinal: site.ordinal, targets: Vec::new(), edges: Vec::new() };
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
                    tracing::info!(caller = %agent.function_name(id, fi), "edge rejected: {why}");
                    agent.edges.set_state(key, EdgeState::Rejected, Some(why));
                }
            }
        }
        if !plan.targets.is_empty() {
            plans.push(plan);
        }
    }
    if plans.is_empty() {
        tracing::debug!(function = %name, "nothing to inline (no hot decorated target)");
        agent.functions.entry(f).or_default().0 = FnStatus::Profiling;
        return;
    }

    // Bitcode and address tables of every module involved.
    let mut bitcodes = Vec::new();
    for &mid in &modules {
        match bitcode_of(agent, mid) {
            Ok(b) => bitcodes.push(b),
            Err(e) => {
                give_up(agent, f, &name, &format!("bitcode of module {}: {e}", agent.modules[mid].path), false);
                return;
            }
        }
    }
    let symbols: Vec<Vec<JitSymbol>> = modules
        .iter()
        .map(|&mid| {
            let m = agent.module(mid).expect("planned modules are live");
            (0..m.blob.header().n_globals)
                .map(|g| {
                    let n = m.blob.global_name(g);
                    JitSymbol { name: n.as_ptr(), name_len: n.len(), address: m.global_address(g) }
                })
                .collect()
        })
        .collect();
    let jit_modules: Vec<JitModule> = bitcodes
        .iter()
        .zip(&symbols)
        .map(|(b, s)| JitModule { bitcode: b.as_ptr(), bitcode_len: b.len(), symbols: s.as_ptr(), n_symbols: s.len() })
        .collect();
    let target_names: Vec<Vec<String>> =
        plans.iter().map(|p| p.targets.iter().map(|&(_, mid, tf)| agent.function_name(mid, tf)).collect()).collect();
    let targets: Vec<Vec<JitTarget>> = plans
        .iter()
        .zip(&target_names)
        .map(|(p, names)| {
            p.targets
                .iter()
                .zip(names)
                .map(|(&(addr, mid, _), n)| JitTarget { address: addr, module: modules.iter().position(|&x| x == mid).unwrap() as u32, name: n.as_ptr(), name_len: n.len() })
                .collect()
        })
        .collect();
    // Miss counters outlive any F+ (leaked on purpose: retired code may still run).
    let misses: Vec<&'static AtomicU64> = plans.iter().map(|_| &*Box::leak(Box::new(AtomicU64::new(0)))).collect();
    let sites: Vec<JitSite> = plans
        .iter()
        .zip(&targets)
        .zip(&misses)
        .map(|((p, t), m)| JitSite { ordinal: p.ordinal, n_targets: t.len() as u32, targets: t.as_ptr(), miss_counter: m.as_ptr() })
        .collect();
    let req = JitRequest {
        abi_version: JIT_ABI_VERSION,
        opt_level: 2,
        modules: jit_modules.as_ptr(),
        n_modules: jit_modules.len(),
        function_module: 0,
        function_name: name.as_ptr(),
        function_name_len: name.len(),
        sites: sites.as_ptr(),
        n_sites: sites.len(),
        inject_failure: agent.config.test_jit_fail.contains(&name) as u32,
    };
    tracing::debug!(ms = agent.functions.get(&f).and_then(|s| s.2).map(|t| t.elapsed().as_secs_f64() * 1e3), "request ready (since hot)");
    let started = Instant::now();
    let res = match &agent.jit {
        Some(Ok(jit)) => jit.compile(&req),
        _ => return,
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let inlined: Vec<String> = target_names.iter().flatten().cloned().collect();
    if res.ok == 0 && res.rejected_target >= 0 {
        // One target cannot be inlined: reject its edge and compile again without it.
        let err = res.error_text();
        let key = plans.iter().flat_map(|p| p.edges.iter().filter(|(_, inc)| *inc).map(|(k, _)| *k)).nth(res.rejected_target as usize);
        if let Some(key) = key {
            tracing::info!(function = %name, "edge rejected: {err}");
            agent.compiles.push(CompileRecord { function: name.clone(), inlined: inlined.clone(), ms, code_bytes: 0, ok: false, error: Some(err.clone()), hot_to_patch_ms: None });
            agent.edges.set_state(key, EdgeState::Rejected, Some(err));
            agent.functions.entry(f).or_default().0 = FnStatus::Queued;
            agent.pending.push(f);
            return;
        }
    }
    if res.ok == 0 {
        let err = res.error_text();
        agent.compiles.push(CompileRecord { function: name.clone(), inlined, ms, code_bytes: 0, ok: false, error: Some(err.clone()), hot_to_patch_ms: None });
        for p in &plans {
            for &(k, _) in &p.edges {
                agent.edges.set_state(k, EdgeState::Rejected, Some(err.clone()));
            }
        }
        give_up(agent, f, &name, &err, res.rejected != 0);
        return;
    }

    // Patch F's entry to F+ (or re-point an existing patch).
    let entry = agent.module(id).map(|m| m.function_address(fi)).unwrap_or(0);
    let slot = agent.module(id).and_then(|m| m.redirect_slot(fi));
    let Some(Ok(patcher)) = agent.patcher else { return };
    let patch_started = Instant::now();
    let existing = agent.patches.iter_mut().find(|p| p.owner == f && p.active);
    // SAFETY: the slot is F's, in module `id`, which is live under the state lock (a module
    // is retired only after its patches are reverted, `Agent::retire`); `res.code` is F+,
    // compiled from F's clean bitcode with F's type, calling convention and attributes,
    // and its code is never freed while a patch points at it.
    let patched = match existing {
        Some(p) => unsafe { patcher.retarget(&mut p.record, res.code) }.map(|_| None),
        None => match slot {
            Some(slot) => unsafe { patcher.redirect(entry, slot, res.code) }.map(Some),
            None => Err(crate::patch::PatchError::NoSlot { entry }),
        },
    };
    let hot_since = agent.functions.get(&f).and_then(|s| s.2);
    let hot_to_patch_ms = hot_since.map(|t| t.elapsed().as_secs_f64() * 1e3);
    tracing::debug!(ms = patch_started.elapsed().as_secs_f64() * 1e3, "patch written");
    match patched {
        Ok(new_record) => {
            let depends_on: Vec<usize> = modules.iter().copied().filter(|&m| m != id).collect();
            match new_record {
                Some(record) => agent.patches.push(PatchEntry { function: name.clone(), owner: f, depends_on, record, active: true, misses, misses_seen: 0 }),
                None => {
                    if let Some(p) = agent.patches.iter_mut().find(|p| p.owner == f && p.active) {
                        p.misses = misses;
                        p.misses_seen = 0;
                        p.depends_on = depends_on;
                    }
                }
            }
            agent.compiles.push(CompileRecord { function: name.clone(), inlined: inlined.clone(), ms, code_bytes: res.code_size, ok: true, error: None, hot_to_patch_ms });
            for p in &plans {
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
            let err = format!("patch failed: {e}");
            agent.compiles.push(CompileRecord { function: name.clone(), inlined, ms, code_bytes: res.code_size, ok: false, error: Some(err.clone()), hot_to_patch_ms: None });
            give_up(agent, f, &name, &err, false);
        }
    }
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

/// The module's decompressed clean bitcode (cached).
fn bitcode_of(agent: &mut Agent, id: usize) -> Result<std::sync::Arc<Vec<u8>>, String> {
    if let Some(b) = &agent.modules[id].bitcode {
        return Ok(b.clone());
    }
    let m = agent.module(id).ok_or("module unloaded")?;
    let b = std::sync::Arc::new(m.blob.bitcode().map_err(|e| e.to_string())?);
    agent.modules[id].bitcode = Some(b.clone());
    Ok(b)
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
        let Some(Ok(patcher)) = agent.patcher else { return };
        // SAFETY: an active patch belongs to a live module (retiring a module reverts its
        // patches first).
        if let Err(e) = unsafe { patcher.revert(&agent.patches[i].record) } {
            tracing::warn!(function = %name, "deopt: cannot revert patch: {e}");
            continue;
        }
        agent.patches[i].active = false;
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
