//! The agent's state: configuration, known modules, edges, compiles and patches, behind
//! one lock. The agent thread holds it while it processes a batch; dlopen/dlclose take it
//! to keep the module list and patches consistent with what is mapped. Application
//! threads on the profiling path never take it.

use crate::config::Config;
use crate::discover::{loaded_objects, modules_of, Module};
use crate::edges::{Callee, EdgeTable};
use crate::profile;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

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
    /// Decompressed bitcode, once a compile needed it.
    pub bitcode: Option<std::sync::Arc<Vec<u8>>>,
    /// Function names (kept after unload, for the dump).
    pub function_names: Vec<String>,
    /// Per site: (function index, ordinal) (kept after unload, for the dump).
    pub site_info: Vec<(u32, u32)>,
}

/// A finished compile, for the dump.
#[derive(Clone, Debug)]
pub struct CompileRecord {
    /// Function compiled (F).
    pub function: String,
    /// Callees inlined.
    pub inlined: Vec<String>,
    /// Milliseconds from request to code.
    pub ms: f64,
    /// Machine code size.
    pub code_bytes: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Milliseconds from the edge turning hot to the patch being live.
    pub hot_to_patch_ms: Option<f64>,
}

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
    /// The JIT, once loaded; `Err` when it could not be (then nothing is compiled).
    pub jit: Option<Result<crate::jit_bridge::Jit, String>>,
    /// The patcher, once created.
    pub patcher: Option<Result<crate::patch::Patcher, String>>,
    /// Whether the agent thread runs.
    pub thread_started: bool,
    /// Decorated code was seen calling decorated code: load the JIT ahead of need.
    pub want_tools: bool,
    /// How long loading the JIT took (once per process).
    pub jit_load_ms: Option<f64>,
}

static STATE: OnceLock<Mutex<Agent>> = OnceLock::new();

/// Creates the state (once, from the constructor).
pub fn init(config: Config) {
    let _ = STATE.set(Mutex::new(Agent {
        config,
        modules: Vec::new(),
        by_area: HashMap::new(),
        edges: EdgeTable::default(),
        retired_edges: Vec::new(),
        functions: HashMap::new(),
        pending: Vec::new(),
        compiles: Vec::new(),
        patches: Vec::new(),
        jit: None,
        patcher: None,
        thread_started: false,
        want_tools: false,
        jit_load_ms: None,
    }));
}

/// Locks the state; `None` before init. A poisoned lock (a panic on the agent thread) is
/// still usable: every update leaves the state consistent between statements.
pub fn lock() -> Option<MutexGuard<'static, Agent>> {
    STATE.get().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

impl Agent {
    /// Brings the module list in line with what is loaded: new decorated modules are
    /// validated and attached, vanished ones retired. Returns how many are live.
    pub fn reconcile(&mut self) -> usize {
        let objects = loaded_objects();
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
        for obj in &objects {
            if obj.notes.is_empty() {
                continue;
            }
            let known: Vec<u64> = self.modules.iter().filter_map(|e| e.live.as_ref()).filter(|m| m.base == obj.base).map(|m| m.note_addr).collect();
            let (found, warnings) = modules_of(obj);
            for w in warnings {
                tracing::warn!("{w}");
            }
            for m in found {
                if known.contains(&m.note_addr) {
                    continue;
                }
                let h = *m.blob.header();
                tracing::info!(path = %m.path, source = m.blob.source_name(), functions = h.n_functions, sites = h.n_sites, "decorated module found");
                let id = self.modules.len();
                self.by_area.insert(m.runtime as usize, id);
                // SAFETY: the runtime area was validated to lie in the module's writable
                // segment with n_sites counters after the header.
                unsafe { profile::attach(m.runtime, h.n_sites) };
                self.modules.push(ModuleEntry {
                    path: m.path.clone(),
                    source: m.blob.source_name().to_owned(),
                    functions: h.n_functions,
                    sites: h.n_sites,
                    bitcode_bytes: h.bitcode_size,
                    bitcode: None,
                    function_names: (0..h.n_functions).map(|f| m.blob.function_name(f).to_owned()).collect(),
                    site_info: m.blob.sites().map(|s| (s.function, s.ordinal)).collect(),
                    live: Some(m),
                });
            }
        }
        self.modules.iter().filter(|e| e.live.is_some()).count()
    }

    /// Forgets module `id`: reverts every patch that lives in it or inlined its code,
    /// and drops its memory references. Must run before its memory can be reused.
    pub fn retire(&mut self, id: usize, why: &str) {
        self.revert_patches_touching(id, why);
        if let Some(m) = self.modules[id].live.take() {
            self.by_area.remove(&(m.runtime as usize));
            tracing::info!(path = %m.path, "module retired: {why}");
        }
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
    pub fn revert_patches_touching(&mut self, id: usize, why: &str) {
        let Some(Ok(patcher)) = &self.patcher else { return };
        for p in self.patches.iter_mut().filter(|p| p.active && (p.owner.0 == id || p.depends_on.contains(&id))) {
            // SAFETY: called before the module's memory goes away (retire, dlclose), so
            // every active patch's slot is still mapped.
            match unsafe { patcher.revert(&p.record) } {
                Ok(()) => {
                    p.active = false;
                    tracing::info!(function = %p.function, "patch reverted: {why}");
                }
                Err(e) => tracing::warn!(function = %p.function, "could not revert patch: {e}"),
            }
            // F may be compiled again for whatever it calls next (another plugin loaded
            // at the same address gets edges and a compile of its own).
            if let Some(st) = self.functions.get_mut(&p.owner) {
                st.0 = FnStatus::Profiling;
                st.2 = None;
            }
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
    // Only read code that belongs to a loaded object (dladdr knows it).
    dladdr_object(addr)?;
    // SAFETY: `addr` lies in a loaded object's mapping (checked above) and executable
    // code is readable; 16 bytes stay within the PLT section's page in practice, and the
    // decode below only looks at the prefix it needs.
    let code = unsafe { std::slice::from_raw_parts(addr as *const u8, 11) };
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
    // SAFETY: the GOT slot lies in a loaded object (checked) and is 8-byte aligned data.
    Some(unsafe { std::ptr::read_volatile(slot as *const u64) })
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
