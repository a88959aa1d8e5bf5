//! The agent's state: configuration, known modules, edges, compiles and patches, behind
//! one lock. The agent thread holds it for short bookkeeping steps only — never across a
//! compile, a wait or a loader call — and the exit handler takes it once to write the
//! dump. Application threads never take it (they post through `lifecycle`).

use crate::config::Config;
use crate::discover::{modules_of, Module};
use crate::edges::{Callee, EdgeTable};
use crate::profile;
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// One module seen during the run; `live` is None once unloaded (kept for the dump).
pub struct ModuleEntry {
    /// The module while it is loaded.
    pub live: Option<Module>,
    /// Path of its object.
    pub path: String,
    /// Source file of the module.
    pub source: String,
    /// Functions in its table.
    pub functions: u32,
    /// Profiled sites.
    pub sites: u32,
    /// Compressed bitcode size.
    pub bitcode_bytes: u64,
    /// SHA-256 of the embedded (compressed) bitcode, once a compile needed it: how the
    /// compiler process and the code cache know the module.
    pub hash: Option<bitcode_embed::protocol::Hash>,
    /// Function names (kept after unload, for the dump).
    pub function_names: Vec<String>,
    /// Per site: (function index, ordinal) (kept after unload, for the dump).
    pub site_info: Vec<(u32, u32)>,
}

/// A finished compile, kept as the dump records it (one type for both).
pub type CompileRecord = bitcode_embed::dump::DumpCompile;

/// A patch, for the dump and for reverting.
pub struct PatchEntry {
    /// Function patched.
    pub function: String,
    /// Module and function index of F.
    pub owner: (usize, u32),
    /// Modules whose code was inlined into the target (revert when any goes away).
    pub depends_on: Vec<usize>,
    /// The patcher's record.
    pub record: crate::patch::PatchRecord,
    /// Whether the jump is in place.
    pub active: bool,
    /// Miss counters of the guarded sites (leaked: JIT'd code may still reference them).
    pub misses: Vec<&'static std::sync::atomic::AtomicU64>,
    /// Misses seen at the last check.
    pub misses_seen: u64,
    /// The functions whose bodies F+ inlined (module, function).
    pub inlined: Vec<(usize, u32)>,
}

/// Per-function JIT status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FnStatus {
    /// Profiling.
    #[default]
    Profiling,
    /// Queued for a compile.
    Queued,
    /// F+ active.
    Optimised,
    /// Never again (rejected or failed).
    Given,
}

/// Everything the agent knows.
pub struct Agent {
    /// The configuration.
    pub config: Config,
    /// Modules by id (index).
    pub modules: Vec<ModuleEntry>,
    /// Runtime area address → module id.
    pub by_area: HashMap<usize, usize>,
    /// The edges.
    pub edges: EdgeTable,
    /// Edges of unloaded modules (for the dump).
    pub retired_edges: Vec<(crate::edges::EdgeKey, crate::edges::Edge)>,
    /// Per function: status, deopt count, when it got hot.
    pub functions: HashMap<(usize, u32), (FnStatus, u32, Option<std::time::Instant>)>,
    /// Functions waiting for the JIT, in the order they got hot.
    pub pending: Vec<(usize, u32)>,
    /// Compiles so far.
    pub compiles: Vec<CompileRecord>,
    /// Patches so far.
    pub patches: Vec<PatchEntry>,
    /// The compiler (process, cache, linker), once started; `Err` when it could not be
    /// (then nothing is compiled).
    pub compiler: Option<Result<std::sync::Arc<std::sync::Mutex<crate::compiler::Compiler>>, String>>,
    /// The patcher, once created.
    pub patcher: Option<Result<crate::patch::Patcher, String>>,
    /// How long starting the compiler took on the agent thread (once per process).
    pub jit_load_ms: Option<f64>,
    /// OSR points whose slot holds a continuation: (module, point index).
    pub osr_armed: std::collections::HashSet<(usize, u32)>,
    /// Compiled functions with an activation still in their twin (see `worker::record`),
    /// waiting for an OSR continuation; and each compiled function's watch for that.
    pub osr_wanted: std::collections::HashSet<(usize, u32)>,
    pub stuck: HashMap<(usize, u32), crate::osr::StuckWatch>,
    /// (module, site) pairs compiled code has ever sampled (unguarded sites of F+ and of
    /// the copies inlined in it): their samples may not come from a twin.
    pub probed_sites: std::collections::HashSet<(usize, u32)>,
    /// Every F+ installed or retired, until released.
    pub code: crate::code_owner::CodeOwner,
    /// Set in a fork child that could not inherit its parent's state.
    pub fork_child_note: Option<String>,
    /// A drti note was seen (even one that failed validation): this process's dump is
    /// worth writing.
    pub saw_drti_note: bool,
    /// Warnings about bad modules already given (each is given once).
    pub warned: std::collections::HashSet<String>,
    /// When the agent started (the policy's clock).
    pub started: std::time::Instant,
    /// CPU milliseconds spent in compiles so far.
    pub jit_cpu_ms: f64,
    /// What compiles of each module cost so far.
    pub compile_cost: HashMap<usize, crate::policy::CostModel>,
    /// Functions with hot edges the policy did not compile (yet), and why.
    pub deferred: HashMap<(usize, u32), String>,
    /// Functions whose F+ inlined a function that has since got compiled code of its
    /// own: planned again first, so the specialised code becomes reachable.
    pub replan: Vec<(usize, u32)>,
    /// The policy deferred every waiting compile: do not ask again before this.
    pub policy_wait_until: Option<std::time::Instant>,
    /// Decorated functions run their profiled twins while they wait for a decision
    /// (false in a fork child, whose modules are detached).
    pub profiling: bool,
    /// Functions with a profiled entry whose slot rests at null (F runs unprofiled), and why.
    pub slot_off: HashMap<(usize, u32), String>,
    /// Functions whose sites' words say "decided" (F.prof stops counting; see
    /// `discover::Module::set_sites_off`).
    pub sites_off: std::collections::HashSet<(usize, u32)>,
    /// Functions whose profiling stopped because every site calls outside decorated code
    /// (`policy::profiling_decided`), and the log's wording of why.
    pub decided: HashMap<(usize, u32), String>,
    /// Samples a site had when its function's profiling last restarted (a new module may
    /// be what its sites call now): the decision counts only later ones.
    pub site_baseline: HashMap<(usize, u32), u64>,
    /// When `decide_profiling` last ran.
    pub last_decide: Option<std::time::Instant>,
}

/// How often the agent looks for functions whose profiling can stop.
const DECIDE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The state, leaked once created; a fork child may swap in a fresh one (see `after_fork`).
static STATE: AtomicPtr<Mutex<Agent>> = AtomicPtr::new(std::ptr::null_mut());

fn fresh(config: Config) -> Agent {
    Agent {
        config,
        modules: Vec::new(),
        by_area: HashMap::new(),
        edges: EdgeTable::default(),
        retired_edges: Vec::new(),
        functions: HashMap::new(),
        pending: Vec::new(),
        compiles: Vec::new(),
        patches: Vec::new(),
        compiler: None,
        patcher: None,
        jit_load_ms: None,
        code: crate::code_owner::CodeOwner::default(),
        fork_child_note: None,
        saw_drti_note: false,
        warned: Default::default(),
        started: std::time::Instant::now(),
        jit_cpu_ms: 0.0,
        compile_cost: HashMap::new(),
        deferred: HashMap::new(),
        policy_wait_until: None,
        replan: Vec::new(),
        profiling: true,
        slot_off: HashMap::new(),
        sites_off: Default::default(),
        osr_armed: Default::default(),
        osr_wanted: Default::default(),
        stuck: Default::default(),
        probed_sites: Default::default(),
        decided: HashMap::new(),
        site_baseline: HashMap::new(),
        last_decide: None,
    }
}

/// The configuration read at start (for a fork child that starts afresh).
static INITIAL_CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// Creates the state (once, from the constructor).
pub fn init(config: Config) {
    let _ = INITIAL_CONFIG.set(config.clone());
    let m = Box::into_raw(Box::new(Mutex::new(fresh(config))));
    if STATE.compare_exchange(std::ptr::null_mut(), m, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // SAFETY: `m` was never published.
        drop(unsafe { Box::from_raw(m) });
    }
}

fn cell() -> Option<&'static Mutex<Agent>> {
    // SAFETY: the pointer is null or a leaked, never freed Mutex.
    unsafe { STATE.load(Ordering::Acquire).as_ref() }
}

/// Locks the state; `None` before init. A poisoned lock (a panic on the agent thread) is
/// still usable: every update leaves the state consistent between statements.
pub fn lock() -> Option<MutexGuard<'static, Agent>> {
    cell().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The state if it is free right now.
pub fn try_lock() -> Option<MutexGuard<'static, Agent>> {
    match cell()?.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// In a fork child (only the forking thread exists): adapts the inherited state — JIT off,
/// dump to `<path>.<pid>` — or, if the parent's agent thread held the lock at the fork,
/// replaces it with a fresh state (the old lock would never be released).
pub fn after_fork() {
    if cell().is_none() {
        return;
    }
    let child = |c: &mut Config| {
        c.jit = false;
        if let Some(d) = &c.dump {
            c.dump = Some(format!("{d}.{}", std::process::id()));
        }
    };
    match try_lock() {
        Some(mut a) => {
            child(&mut a.config);
            a.profiling_off_in_child();
            // The compiler's session socket is the parent's. If the parent's agent thread
            // was inside the compiler at the fork, its lock stays taken here: leave it.
            if let Some(Ok(c)) = &a.compiler {
                if let Ok(mut c) = c.try_lock() {
                    c.forget_session();
                }
            }
        }
        None => {
            // The inherited state may be mid-update: do not read it.
            let mut config = INITIAL_CONFIG.get().cloned().unwrap_or_default();
            child(&mut config);
            let mut a = fresh(config);
            a.fork_child_note = Some("forked while the agent thread was busy: the parent's history is in its own dump".into());
            STATE.store(Box::into_raw(Box::new(Mutex::new(a))), Ordering::Release);
        }
    }
}

impl Agent {
    /// Brings the module list in line with `objects` (a loader snapshot taken without the
    /// state lock): new decorated modules are validated and attached, vanished ones
    /// retired. Objects being closed are left alone until their dlclose has finished.
    /// Returns how many modules are live.
    pub fn reconcile(&mut self, view: &crate::lifecycle::LoaderView) -> usize {
        let (objects, closed, overflow) = (&view.objects, &view.closed[..], view.overflow);
        // An object dlclosed since the last look may be gone, still loaded (another
        // handle holds it) or replaced by another object at the same address. Its
        // modules are retired in every case; a still-loaded instance (its hook is ours)
        // first gets its entries back, and is attached afresh below.
        crate::lifecycle::forget_closed(closed);
        if let Some(token) = overflow {
            crate::lifecycle::overflow_reconciled(token);
        }
        for id in 0..self.modules.len() {
            let Some(m) = self.modules[id].live.as_ref() else { continue };
            if overflow.is_none() && !closed.iter().any(|&(_, b)| b == m.base) {
                continue;
            }
            let (base, area) = (m.base, m.runtime);
            let present = objects.iter().any(|o| o.base == base && o.path == m.path);
            if present {
                // SAFETY: the object is mapped (present in a snapshot taken after its
                // dlclose returned, and no new dlclose runs during this section).
                let ours = crate::lifecycle::touching(&[base], || unsafe { profile::is_attached(area) });
                match ours {
                    None => continue, // closing again: handled once that dlclose is done
                    Some(true) => self.revert_patches_owned_by(id),
                    Some(false) => {}
                }
            }
            self.retire(id, "its object was dlclosed");
        }
        let mut attached_any = false;
        let present: Vec<(u64, &str)> = objects.iter().map(|o| (o.base, o.path.as_str())).collect();
        for id in 0..self.modules.len() {
            let gone = match &self.modules[id].live {
                Some(m) => !present.contains(&(m.base, m.path.as_str())),
                None => false,
            };
            if gone {
                self.retire(id, "its object was unloaded");
            }
        }
        for obj in objects {
            if obj.notes.is_empty() || crate::lifecycle::is_closing(obj.base) {
                continue;
            }
            let known: Vec<u64> = self.modules.iter().filter_map(|e| e.live.as_ref()).filter(|m| m.base == obj.base).map(|m| m.note_addr).collect();
            // Reading the object's notes and metadata, and attaching its sites, happen
            // while a dlclose of it is held off.
            let profiling = self.profiling;
            let mut unprofiled = Vec::new();
            let attached = crate::lifecycle::touching(&[obj.base], || {
                let (found, warnings) = modules_of(obj);
                let mut fresh = Vec::new();
                for m in found {
                    if known.contains(&m.note_addr) {
                        continue;
                    }
                    // SAFETY: the runtime area was validated to lie in the module's
                    // writable segment with n_sites counters after the header, and the
                    // object cannot be unmapped during this section.
                    unsafe { profile::attach(m.runtime, m.blob.header().n_sites) };
                    // Only now that the hook is published may F.prof run (its hot path
                    // counts down without looking at the hook).
                    if profiling {
                        for f in 0..m.blob.header().n_functions {
                            let (Some(slot), Some(prof)) = (m.redirect_slot(f), m.profiled_entry(f)) else { continue };
                            // SAFETY: the slot is F's and `prof` its profiled entry, both
                            // in this object, mapped for this section.
                            if let Err(e) = unsafe { crate::patch::set_resting(slot, 0, prof) } {
                                tracing::warn!(path = %m.path, function = m.blob.function_name(f), "not profiled: {e}");
                                unprofiled.push((m.note_addr, f));
                            }
                        }
                    }
                    fresh.push(m);
                }
                (fresh, warnings)
            });
            let Some((found, warnings)) = attached else { continue };
            self.saw_drti_note |= !found.is_empty() || !warnings.is_empty();
            attached_any |= !found.is_empty();
            for w in warnings {
                if self.warned.insert(w.clone()) {
                    tracing::warn!("{w}");
                }
            }
            for m in found {
                let h = *m.blob.header();
                tracing::info!(path = %m.path, source = m.blob.source_name(), functions = h.n_functions, sites = h.n_sites, "decorated module found");
                let id = self.modules.len();
                self.by_area.insert(m.runtime as usize, id);
                for f in 0..h.n_functions {
                    if m.profiled_entry(f).is_some() && !profiling {
                        self.slot_off.insert((id, f), "profiling is off in a fork child".into());
                    } else if m.profiled_entry(f).is_some() && unprofiled.contains(&(m.note_addr, f)) {
                        self.slot_off.insert((id, f), "its redirect slot did not hold null at attach".into());
                    }
                }
                self.modules.push(ModuleEntry {
                    path: m.path.clone(),
                    source: m.blob.source_name().to_owned(),
                    functions: h.n_functions,
                    sites: h.n_sites,
                    bitcode_bytes: h.bitcode_size,
                    hash: None,
                    function_names: (0..h.n_functions).map(|f| m.blob.function_name(f).to_owned()).collect(),
                    site_info: m.blob.sites().map(|s| (s.function, s.ordinal)).collect(),
                    live: Some(m),
                });
            }
        }
        if attached_any {
            // Functions that called only outside code may call into the new module: they
            // are profiled again, and decide on fresh samples only.
            for (f, _) in std::mem::take(&mut self.decided) {
                let Some(rec) = self.module(f.0).and_then(|m| m.blob.function(f.1)) else { continue };
                for site in rec.first_site..rec.first_site + rec.n_sites {
                    let samples = self.edges.of_site(f.0, site).iter().map(|(_, e)| e.samples).sum();
                    self.site_baseline.insert((f.0, site), samples);
                }
                tracing::info!(function = %self.function_name(f.0, f.1), "profiling on again: a new module was loaded");
            }
            // Calls into a module that arrived after they were first seen were resolved
            // as outside code: they may be decorated now.
            let outside: Vec<(crate::edges::EdgeKey, u64)> =
                self.edges.map.iter().filter(|e| matches!(e.callee, Callee::Outside { .. })).map(|e| (*e.key(), e.key().2)).collect();
            for (key, target) in outside {
                let callee = self.resolve(target);
                if matches!(callee, Callee::Decorated { .. }) {
                    if let Some(mut e) = self.edges.map.get_mut(&key) {
                        e.callee = callee;
                        if e.state == crate::edges::EdgeState::Rejected {
                            e.state = crate::edges::EdgeState::Cold;
                            e.reason = None;
                        }
                    }
                }
            }
        }
        self.modules.iter().filter(|e| e.live.is_some()).count()
    }

    /// Forgets module `id`, whose object is gone (or was reset by the caller): reverts
    /// every patch that inlined its code and drops its patches and edges.
    pub fn retire(&mut self, id: usize, why: &str) {
        // Taken out first: the object's memory is not written again (its own patches
        // went with it, or were reverted by the caller while it was still mapped).
        if let Some(m) = self.modules[id].live.take() {
            self.by_area.remove(&(m.runtime as usize));
            profile::forget(m.runtime);
            tracing::info!(path = %m.path, "module retired: {why}");
        }
        self.revert_patches_touching(id, why);
        self.slot_off.retain(|f, _| f.0 != id);
        self.sites_off.retain(|f| f.0 != id);
        self.decided.retain(|f, _| f.0 != id);
        self.osr_armed.retain(|p| p.0 != id);
        self.osr_wanted.retain(|f| f.0 != id);
        self.stuck.retain(|f, _| f.0 != id);
        self.probed_sites.retain(|p| p.0 != id);
        // Edges from or into the module leave the table (kept for the dump): another object
        // may later be loaded at the same addresses and must get edges of its own.
        let gone: Vec<crate::edges::EdgeKey> = self
            .edges
            .map
            .iter()
            .filter(|e| e.key().0 == id || matches!(e.callee, Callee::Decorated { module, .. } if module == id))
            .map(|e| *e.key())
            .collect();
        for key in gone {
            if let Some((key, mut e)) = self.edges.map.remove(&key) {
                if e.state == crate::edges::EdgeState::Inlined {
                    e.state = crate::edges::EdgeState::Invalidated;
                    e.reason = Some(format!("module {why}"));
                }
                self.retired_edges.push((key, e));
            }
        }
    }

    /// Reverts active patches of functions in module `id` or with code inlined from it.
    /// A patch whose F lives in `id` is only marked inactive when `id` is no longer live
    /// (its entry went away with the object); see `unpatch`.
    pub fn revert_patches_touching(&mut self, id: usize, why: &str) {
        let touching: Vec<usize> = (0..self.patches.len()).filter(|&i| self.patches[i].active && (self.patches[i].owner.0 == id || self.patches[i].depends_on.contains(&id))).collect();
        for i in touching {
            self.unpatch(i, why);
        }
    }

    /// Puts F's entry back for every active patch of a function of module `id` (which is
    /// still mapped and attached).
    fn revert_patches_owned_by(&mut self, id: usize) {
        let owned: Vec<usize> = (0..self.patches.len()).filter(|&i| self.patches[i].active && self.patches[i].owner.0 == id).collect();
        for i in owned {
            self.unpatch(i, "dlclose");
        }
    }

    /// Takes patch `i` out: F's entry goes back to F — written only while F's object is
    /// mapped and not closing — and F+ is retired (freed once no thread is inside). When
    /// F's object is gone, its entry went with it. Returns whether the patch is out; if
    /// F's object is closing right now the patch stays active and is handled once that
    /// dlclose has finished.
    pub fn unpatch(&mut self, i: usize, why: &str) -> bool {
        let p = &self.patches[i];
        if !p.active {
            return true;
        }
        let owner = self.modules.get(p.owner.0).and_then(|e| e.live.as_ref()).map(|m| m.base);
        // F may be compiled again: back to F.prof while profiling is on, else to F.
        let rest = self.resting_value(p.owner, FnStatus::Profiling);
        if let (Some(base), Some(Ok(patcher))) = (owner, &self.patcher) {
            // SAFETY: the slot lies in F's object, which is mapped and not closing for the
            // duration of this `touching` section; `rest` is null or F's profiled entry.
            match crate::lifecycle::touching(&[base], || unsafe { patcher.revert_to(&p.record, rest) }) {
                None => return false,
                Some(Err(e)) => {
                    tracing::warn!(function = %p.function, "could not revert patch: {e}");
                    return false;
                }
                Some(Ok(())) => {}
            }
        }
        let p = &mut self.patches[i];
        p.active = false;
        tracing::info!(function = %p.function, "patch reverted: {why}");
        let (owner, target) = (p.owner, p.record.target);
        let has_twin = self.module(owner.0).and_then(|m| m.profiled_entry(owner.1)).is_some();
        if rest == 0 && has_twin {
            let why = self.off_reason(owner, FnStatus::Profiling);
            self.slot_off.insert(owner, why);
        } else {
            self.slot_off.remove(&owner);
        }
        self.code.retire(target);
        let p = &self.patches[i];
        // F may be compiled again for whatever it calls next (another plugin loaded at
        // the same address gets edges and a compile of its own).
        if let Some(st) = self.functions.get_mut(&p.owner) {
            st.0 = FnStatus::Profiling;
            st.2 = None;
        }
        true
    }

    /// What F's slot should hold while F has no F+, were F's status `status`: F.prof
    /// while F is being profiled, null once the agent has decided about F (given up,
    /// rejected, every site calls outside decorated code) or profiling is off.
    pub fn resting_value(&self, f: (usize, u32), status: FnStatus) -> u64 {
        let Some(m) = self.module(f.0) else { return 0 };
        if !self.profiling || status == FnStatus::Given || self.decided.contains_key(&f) {
            return 0;
        }
        m.profiled_entry(f.1).unwrap_or(0)
    }

    /// Why F's slot rests at null, were F's status `status` (for the log and the dump).
    fn off_reason(&self, f: (usize, u32), status: FnStatus) -> String {
        if !self.profiling {
            return "profiling is off in a fork child".into();
        }
        if status == FnStatus::Given {
            let name = self.function_name(f.0, f.1);
            return match self.compiles.iter().rev().find(|c| c.function == name && !c.ok).and_then(|c| c.error.clone()) {
                Some(e) => format!("not compiled: {e}"),
                None => "not compiled (given up)".into(),
            };
        }
        self.decided.get(&f).cloned().unwrap_or_else(|| "no profiled entry".into())
    }

    /// What F's slot holds while F has no F+ (what a redirect replaces).
    pub fn resting_now(&self, f: (usize, u32)) -> u64 {
        if self.slot_off.contains_key(&f) {
            return 0;
        }
        self.module(f.0).and_then(|m| m.profiled_entry(f.1)).unwrap_or(0)
    }

    /// Brings F's slot in line with F's status (see [`Self::resting_value`]), unless an F+
    /// is in it (its revert stores the right value).
    fn settle(&mut self, f: (usize, u32), patched: &std::collections::HashSet<(usize, u32)>) {
        if patched.contains(&f) {
            return;
        }
        let Some(m) = self.module(f.0) else { return };
        let (Some(slot), Some(_)) = (m.redirect_slot(f.1), m.profiled_entry(f.1)) else { return };
        let base = m.base;
        let status = self.functions.get(&f).map(|s| s.0).unwrap_or_default();
        let (now, want) = (self.resting_now(f), self.resting_value(f, status));
        // An activation that never returns keeps running F.prof whatever the slot says:
        // its sites' words stop its counting once F is decided, and restart it if not.
        let decided = want == 0;
        // Written only while F's object is mapped and not closing (else left for the look
        // after that dlclose, which retires the module anyway).
        if decided != self.sites_off.contains(&f) && crate::lifecycle::touching(&[base], || {
            // SAFETY: F's object is mapped and not closing during this `touching` section.
            unsafe { m.set_sites_off(f.1, decided) }
        })
        .is_some() {
            if decided {
                self.sites_off.insert(f);
            } else {
                self.sites_off.remove(&f);
            }
        }
        if now == want {
            return;
        }
        // SAFETY: the slot is F's and both values are null or F's profiled entry, in F's
        // object, mapped and not closing during this `touching` section.
        match crate::lifecycle::touching(&[base], || unsafe { crate::patch::set_resting(slot, now, want) }) {
            None => {} // closing: the module is retired once that dlclose is done
            Some(Err(e)) => tracing::warn!(function = %self.function_name(f.0, f.1), "profiling slot: {e}"),
            Some(Ok(())) => {
                if want == 0 {
                    let why = self.off_reason(f, status);
                    tracing::info!(function = %self.function_name(f.0, f.1), "profiling off: {why}");
                    self.slot_off.insert(f, why);
                } else {
                    tracing::info!(function = %self.function_name(f.0, f.1), "profiling on: it may be compiled again");
                    self.slot_off.remove(&f);
                }
            }
        }
    }

    /// Agent thread, every [`DECIDE_EVERY`]: turns off the profiling of functions decided
    /// about since the last look and back on for those that may be compiled again.
    pub fn settle_slots(&mut self) {
        if self.last_decide.is_some_and(|t| t.elapsed() < DECIDE_EVERY) {
            return;
        }
        self.last_decide = Some(std::time::Instant::now());
        self.decide_profiling();
        let patched: std::collections::HashSet<(usize, u32)> = self.patches.iter().filter(|p| p.active).map(|p| p.owner).collect();
        let mut fs: Vec<(usize, u32)> = self.functions.keys().chain(self.decided.keys()).chain(self.slot_off.keys()).copied().collect();
        fs.sort_unstable();
        fs.dedup();
        for f in fs {
            self.settle(f, &patched);
        }
    }

    /// Marks the functions being profiled whose every site, by now, calls only code
    /// outside decorated modules (`policy::profiling_decided`).
    fn decide_profiling(&mut self) {
        use crate::policy::{profiling_decided, SiteEvidence};
        // Without the JIT the profile is the product (the dump's counts): keep it whole.
        if !self.config.jit {
            return;
        }
        let mut evidence: HashMap<(usize, u32), SiteEvidence> = HashMap::new();
        for e in self.edges.map.iter() {
            let (id, site, _) = *e.key();
            let x = evidence.entry((id, site)).or_default();
            x.samples += e.samples;
            x.open |= matches!(e.callee, Callee::Decorated { .. }) && e.state != crate::edges::EdgeState::Rejected;
        }
        let mut candidates: Vec<(usize, u32)> =
            evidence.keys().filter_map(|&(id, site)| self.module(id).and_then(|m| m.blob.site(site)).map(|s| (id, s.function))).collect();
        candidates.sort_unstable();
        candidates.dedup();
        for f in candidates {
            // A queued function may wait for good (its hot edges call outside code and
            // the policy defers it): it is decided as well.
            let status = self.functions.get(&f).map(|s| s.0).unwrap_or_default();
            if !matches!(status, FnStatus::Profiling | FnStatus::Queued) || self.decided.contains_key(&f) || self.slot_off.contains_key(&f) {
                continue;
            }
            let Some(rec) = self.module(f.0).and_then(|m| m.blob.function(f.1)) else { continue };
            let sites: Vec<SiteEvidence> = (rec.first_site..rec.first_site + rec.n_sites)
                .map(|s| {
                    let mut x = evidence.get(&(f.0, s)).copied().unwrap_or_default();
                    x.samples = x.samples.saturating_sub(self.site_baseline.get(&(f.0, s)).copied().unwrap_or(0));
                    x
                })
                .collect();
            if profiling_decided(&sites) {
                self.decided.insert(f, "every site calls only code outside decorated modules".into());
                self.pending.retain(|&p| p != f);
                self.deferred.remove(&f);
                if let Some(st) = self.functions.get_mut(&f) {
                    st.0 = FnStatus::Profiling;
                }
            }
        }
    }

    /// Fork child (only this thread exists; modules are detached): every slot resting at
    /// F.prof goes to null, so the child runs F without sampling code.
    fn profiling_off_in_child(&mut self) {
        self.profiling = false;
        for id in 0..self.modules.len() {
            let Some(m) = self.module(id) else { continue };
            let mut off = Vec::new();
            for f in 0..m.blob.header().n_functions {
                let (Some(slot), Some(prof)) = (m.redirect_slot(f), m.profiled_entry(f)) else { continue };
                if self.slot_off.contains_key(&(id, f)) || self.patches.iter().any(|p| p.active && p.owner == (id, f)) {
                    continue;
                }
                // SAFETY: no other thread exists, so no dlclose can unmap the object
                // (an object being unloaded at the fork is still mapped); the values are
                // F's profiled entry and null.
                if unsafe { crate::patch::set_resting(slot, prof, 0) }.is_ok() {
                    off.push((id, f));
                }
            }
            self.slot_off.extend(off.into_iter().map(|f| (f, "profiling is off in a fork child".to_owned())));
        }
    }

    /// The live module with id `id`.
    pub fn module(&self, id: usize) -> Option<&Module> {
        self.modules.get(id).and_then(|e| e.live.as_ref())
    }

    /// Name of function `f` of module `id`.
    pub fn function_name(&self, id: usize, f: u32) -> String {
        self.modules.get(id).and_then(|e| e.function_names.get(f as usize)).cloned().unwrap_or_else(|| format!("<module {id} fn {f}>"))
    }

    /// Which function a call target is: a decorated function (directly or through a PLT
    /// stub), or code outside drti's reach.
    pub fn resolve(&self, target: u64) -> Callee {
        for hop in 0..2 {
            let addr = if hop == 0 { target } else { match plt_target(target) { Some(a) => a, None => break } };
            for (id, e) in self.modules.iter().enumerate() {
                if let Some(&f) = e.live.as_ref().and_then(|m| m.function_at.get(&addr)) {
                    return Callee::Decorated { module: id, function: f };
                }
            }
        }
        let (name, object) = dladdr_name(target);
        Callee::Outside { name, object }
    }
}

/// If `addr` is a PLT stub (`jmp *GOT(%rip)`, optionally after endbr64 / with a bnd
/// prefix), the address its GOT slot holds.
fn plt_target(addr: u64) -> Option<u64> {
    // Only read code that belongs to a loaded object (dladdr knows it), and read it so
    // that an object unloaded meanwhile makes the read fail instead of faulting.
    dladdr_object(addr)?;
    let code: [u8; 11] = read_own(addr)?;
    let mut i = 0;
    if code[..4] == [0xf3, 0x0f, 0x1e, 0xfa] {
        i = 4;
    }
    if code[i] == 0xf2 {
        i += 1;
    }
    if code[i] != 0xff || code[i + 1] != 0x25 {
        return None;
    }
    let disp = i32::from_le_bytes(code[i + 2..i + 6].try_into().ok()?) as i64;
    let slot = (addr as i64 + (i + 6) as i64 + disp) as u64;
    dladdr_object(slot)?;
    read_own::<8>(slot).map(u64::from_le_bytes)
}

/// `N` bytes of this process's memory at `addr`, or `None` if they are not mapped.
fn read_own<const N: usize>(addr: u64) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: N };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: N };
    // SAFETY: copies from our own address space into `buf` (valid for N bytes); unmapped
    // source memory makes the call fail, never fault.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == N as isize).then_some(buf)
}

fn dladdr_object(addr: u64) -> Option<libc::Dl_info> {
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let ok = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    (ok != 0).then_some(info)
}

fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() }
}

/// Symbol and object names of an address outside decorated code.
fn dladdr_name(addr: u64) -> (String, String) {
    let cstr = |p: *const libc::c_char| {
        // SAFETY: dladdr's strings are NUL-terminated and owned by the loader.
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    match dladdr_object(addr) {
        Some(info) => (
            cstr(info.dli_sname).unwrap_or_else(|| format!("{addr:#x}")),
            cstr(info.dli_fname).unwrap_or_else(|| "?".into()),
        ),
        None => (format!("{addr:#x}"), "?".into()),
    }
}
