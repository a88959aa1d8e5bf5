//! Process integration: the preload constructor, the dlopen/dlclose interposers, exit and
//! fork handling.
//!
//! Start-up is a small state machine on one atomic (uninitialised → starting → enabled or
//! disabled), so a dlopen that arrives from another constructor while the agent starts
//! sees a defined state. The agent does nothing in a setuid/setgid process (AT_SECURE)
//! or with `DRTI_DISABLE=1`.
//!
//! Exit: LLVM's static destructors must never run while the agent thread compiles, and
//! glibc (2.36) corrupts its exit-handler list when another thread registers handlers
//! while `exit` runs them — which loading libLLVM (hundreds of `__cxa_atexit` calls)
//! would do if the program exits during the load. So `__cxa_atexit` is interposed:
//! registrations made on the agent thread (LLVM's static destructors) are dropped. The
//! JIT's memory is the process's until it ends; nothing needs tearing down.
//!
//! fork(): the child keeps its parent's patches (the JIT'd code is mapped in it too) but
//! profiles nothing: its sites are detached, because the agent thread does not survive
//! fork. It writes its own dump to `<DRTI_DUMP>.<pid>`.

// The interposers and the constructor are left out of unit-test builds (they would
// interpose the test harness's own process), so their helpers look unused there.
#![cfg_attr(test, allow(dead_code))]

use crate::{config::Config, dump, profile, state, worker};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const UNINIT: usize = 0;
const STARTING: usize = 1;
const ENABLED: usize = 2;
const DISABLED: usize = 3;

static PHASE: AtomicUsize = AtomicUsize::new(UNINIT);
static EXITING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set on the agent thread only (no destructor: readable until the thread is gone).
    static AGENT_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Set on the agent thread and inside our own interposers: dlopen/dlclose made there
    /// (LLVM, the JIT library, a plugin's constructor) skip the agent's bookkeeping.
    static IN_AGENT: Cell<bool> = const { Cell::new(false) };
    /// The state lock held across fork() (taken in prepare, released in parent/child).
    static FORK_GUARD: std::cell::RefCell<Option<std::sync::MutexGuard<'static, state::Agent>>> = const { std::cell::RefCell::new(None) };
}

/// Marks the current thread as the agent's own.
pub fn mark_agent_thread() {
    set_in_agent(true);
    AGENT_THREAD.with(|c| c.set(true));
}

/// Whether this thread is inside the agent; also true once its thread-locals are gone
/// (process exit), when no bookkeeping may run.
fn in_agent() -> bool {
    IN_AGENT.try_with(Cell::get).unwrap_or(true)
}

fn set_in_agent(v: bool) {
    let _ = IN_AGENT.try_with(|c| c.set(v));
}

fn enabled() -> bool {
    PHASE.load(Ordering::Acquire) == ENABLED
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

#[cfg_attr(test, allow(dead_code))]
extern "C" fn constructor() {
    if PHASE.compare_exchange(UNINIT, STARTING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let started = std::panic::catch_unwind(start).unwrap_or(false);
    PHASE.store(if started { ENABLED } else { DISABLED }, Ordering::Release);
}

/// Reads the configuration, finds decorated modules, starts the agent thread if any.
fn start() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return false;
    }
    let (config, mut warnings) = Config::from_env(|k| std::env::var(k).ok());
    if config.disable {
        return false;
    }
    if let Err(e) = crate::guardrails::preflight() {
        crate::guardrails::note(&e);
        return false;
    }
    warnings.extend(dump::init_logging(&config));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(threshold = config.hot_threshold, period = config.sample_period(), jit = config.jit,
        max_targets = config.max_targets, perf_map = config.perf_map, dump = ?config.dump, "drti agent starting");
    profile::init(config.sample_period());
    state::init(config);
    // SAFETY: registering plain extern "C" handlers with libc.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    set_in_agent(true);
    if let Some(mut agent) = state::lock() {
        if agent.reconcile() > 0 {
            worker::start(&mut agent);
        }
    }
    set_in_agent(false);
    true
}

/// Writes the dump once and parks the agent: the state lock is kept for the rest of the
/// process, so the agent thread never again enters LLVM while static destructors run.
pub extern "C" fn at_exit() {
    if !enabled() || EXITING.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(mut agent) = state::lock() {
        worker::drain(&mut agent);
        if let Some(path) = agent.config.dump.clone() {
            dump::write(&agent, &path);
        }
        std::mem::forget(agent);
    }
}

extern "C" fn fork_prepare() {
    if enabled() && !in_agent() {
        let _ = FORK_GUARD.try_with(|g| *g.borrow_mut() = state::lock());
    }
}

extern "C" fn fork_parent() {
    let _ = FORK_GUARD.try_with(|g| drop(g.borrow_mut().take()));
}

extern "C" fn fork_child() {
    let _ = FORK_GUARD.try_with(|g| {
        if let Some(agent) = g.borrow_mut().as_mut() {
            for e in &agent.modules {
                if let Some(m) = &e.live {
                    // SAFETY: the runtime area of a live module is mapped in the child too.
                    unsafe { profile::detach(m.runtime) };
                }
            }
            agent.config.jit = false;
            if let Some(d) = &agent.config.dump {
                agent.config.dump = Some(format!("{d}.{}", std::process::id()));
            }
        }
        drop(g.borrow_mut().take());
    });
}

type CxaAtexitFn = unsafe extern "C" fn(extern "C" fn(*mut libc::c_void), *mut libc::c_void, *mut libc::c_void) -> libc::c_int;

/// Interposes `__cxa_atexit`: drops exit handlers registered on the agent thread (see
/// the module documentation), forwards every other registration unchanged.
///
/// # Safety
/// As for `__cxa_atexit`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn __cxa_atexit(f: extern "C" fn(*mut libc::c_void), arg: *mut libc::c_void, dso: *mut libc::c_void) -> libc::c_int {
    if AGENT_THREAD.with(Cell::get) {
        return 0;
    }
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let real = next_symbol(&REAL, c"__cxa_atexit");
    if real == 0 {
        return -1;
    }
    // SAFETY: `real` is libc's __cxa_atexit; arguments are forwarded unchanged.
    unsafe { std::mem::transmute::<usize, CxaAtexitFn>(real)(f, arg, dso) }
}

type DlopenFn = unsafe extern "C" fn(*const libc::c_char, libc::c_int) -> *mut libc::c_void;
type DlcloseFn = unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// The next definition of `name` after this library (libc's), looked up once and kept in
/// `cache`; 0 if there is none.
fn next_symbol(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let f = cache.load(Ordering::Relaxed);
    if f != 0 {
        return f;
    }
    // SAFETY: RTLD_NEXT lookup of a libc function by name.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    cache.store(f, Ordering::Relaxed);
    f
}

/// The dynamic loader's dlopen, bypassing our interposer.
///
/// # Safety
/// As for `dlopen(3)`.
pub unsafe fn real_dlopen(file: *const libc::c_char, flags: libc::c_int) -> *mut libc::c_void {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let f = next_symbol(&REAL, c"dlopen");
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: `f` is libc's dlopen (the next definition after ours, or libc's own).
    unsafe { std::mem::transmute::<usize, DlopenFn>(f)(file, flags) }
}

/// The loader's dlclose (`-1` if it cannot be found, which glibc never does).
unsafe fn real_dlclose(handle: *mut libc::c_void) -> libc::c_int {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let f = next_symbol(&REAL, c"dlclose");
    if f == 0 {
        return -1;
    }
    // SAFETY: `f` is libc's dlclose.
    unsafe { std::mem::transmute::<usize, DlcloseFn>(f)(handle) }
}

/// Runs `f` as agent bookkeeping unless this thread is already inside the agent.
fn bookkeeping(f: impl FnOnce()) {
    if !enabled() || EXITING.load(Ordering::Acquire) || in_agent() {
        return;
    }
    set_in_agent(true);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    set_in_agent(false);
}

/// Interposes dlopen: after a successful load, new decorated modules are attached.
///
/// # Safety
/// As for `dlopen(3)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const libc::c_char, flags: libc::c_int) -> *mut libc::c_void {
    // SAFETY: forwarded unchanged.
    let handle = unsafe { real_dlopen(file, flags) };
    if !handle.is_null() {
        bookkeeping(|| {
            if let Some(mut agent) = state::lock() {
                if agent.reconcile() > 0 {
                    worker::start(&mut agent);
                }
            }
        });
    }
    handle
}

/// `struct link_map`'s leading field (glibc).
#[repr(C)]
struct LinkMapHead {
    l_addr: u64,
}

/// Interposes dlclose: patches that live in the closing object or inlined its code are
/// reverted before the loader can unmap it; afterwards vanished modules are retired.
///
/// # Safety
/// As for `dlclose(3)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut libc::c_void) -> libc::c_int {
    let mut result = None;
    bookkeeping(|| {
        let Some(mut agent) = state::lock() else { return };
        // Samples taken while the object was loaded are attributed before it goes.
        worker::drain(&mut agent);
        let mut lm: *mut LinkMapHead = std::ptr::null_mut();
        // SAFETY: RTLD_DI_LINKMAP stores the handle's link_map pointer into `lm`.
        let ok = unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut lm as *mut *mut LinkMapHead).cast()) } == 0;
        if ok && !lm.is_null() {
            // SAFETY: a link_map returned by the loader for a live handle.
            let base = unsafe { (*lm).l_addr };
            // The main program (dlopen(NULL) handles) never unloads.
            let main_base = crate::discover::loaded_objects().first().map(|o| o.base);
            let closing: Vec<usize> =
                agent.modules.iter().enumerate().filter(|(_, e)| Some(base) != main_base && e.live.as_ref().is_some_and(|m| m.base == base)).map(|(i, _)| i).collect();
            for id in closing {
                agent.revert_patches_touching(id, "dlclose");
            }
        }
        // SAFETY: forwarded unchanged, with the state locked so the agent thread cannot
        // patch or compile against the object while it goes away.
        result = Some(unsafe { real_dlclose(handle) });
        agent.reconcile();
    });
    match result {
        Some(r) => r,
        // SAFETY: forwarded unchanged.
        None => unsafe { real_dlclose(handle) },
    }
}
