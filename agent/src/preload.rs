//! Process integration: the preload constructor, the dlopen/dlclose interposers, exit and
//! fork handling.
//!
//! Start-up is a small state machine on one atomic (uninitialised → starting → enabled or
//! disabled), so a dlopen that arrives from another constructor while the agent starts
//! sees a defined state. The agent does nothing in a setuid/setgid process (AT_SECURE)
//! or with `DRTI_DISABLE=1`.
//!
//! Application paths never take an agent lock and never wait for a compile (DESIGN.md
//! invariant 2): dlopen bumps a counter and wakes the agent thread; dlclose clears the
//! guard slots naming the closing object and waits only until the agent thread is out of
//! module memory (see `lifecycle`); fork handlers flip atomics. The exit handler waits for
//! the state lock, which the agent thread holds only for short bookkeeping (never across a
//! compile or a loader call), with a deadline.
//!
//! Exit: glibc (2.36) corrupts its exit-handler list when another thread registers
//! handlers while `exit` runs them — which loading libLLVM (hundreds of `__cxa_atexit`
//! calls) would do if the program exits during the load. So `__cxa_atexit` is
//! interposed: registrations made on the agent thread (LLVM's static destructors) are
//! dropped, and LLVM's statics stay valid while a compile may still run during exit. The
//! JIT's memory is the process's until it ends; nothing needs tearing down. Thread-locals
//! of the exiting thread are gone by the time exit handlers run, so the exit handler logs
//! with `dump::emit` (no thread-locals) instead of tracing.
//!
//! fork(): the child keeps its parent's patches (the JIT'd code is mapped in it too) but
//! profiles nothing: its sites are detached, because the agent thread does not survive
//! fork. It writes its own dump to `<DRTI_DUMP>.<pid>`. If the agent thread held the state
//! lock when the parent forked, the child starts from a fresh state instead of waiting
//! for a lock nobody will release.

// The interposers and the constructor are left out of unit-test builds (they would
// interpose the test harness's own process), so their helpers look unused there.
#![cfg_attr(test, allow(dead_code))]

use crate::{config::Config, dump, lifecycle, profile, state, worker};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Whether the process is exiting (the exit handler ran): the agent thread stops work.
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
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
    let (config, mut warnings) = Config::from_env(|k| std::env::var_os(k));
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
        libc::pthread_atfork(None, None, Some(fork_child));
    }
    set_in_agent(true);
    let view = lifecycle::LoaderView::at_start();
    if state::lock().is_some_and(|mut agent| agent.reconcile(&view) > 0) {
        worker::start();
    }
    set_in_agent(false);
    true
}

/// How long the exit handler waits for the agent thread's current bookkeeping step.
const EXIT_LOCK_DEADLINE: Duration = Duration::from_secs(2);

/// Writes the dump once and parks the agent: the state lock is kept for the rest of the
/// process, so the agent thread never again patches or records anything. A compile in
/// progress is not waited for (its result is dropped).
pub extern "C" fn at_exit() {
    if !enabled() || exiting() {
        return;
    }
    wait_for_quiet_agent_in_tests();
    if EXITING.swap(true, Ordering::AcqRel) {
        return;
    }
    dump::exit_started();
    // Objects loaded since the agent thread last looked still belong in the dump.
    let view = lifecycle::LoaderView::take();
    let deadline = Instant::now() + EXIT_LOCK_DEADLINE;
    let agent = loop {
        match state::try_lock() {
            Some(a) => break Some(a),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let Some(mut agent) = agent else {
        dump::emit(tracing::Level::WARN, "the agent was busy at exit for 2 s; no dump written");
        return;
    };
    agent.reconcile(&view);
    worker::drain(&mut agent);
    if let Some(path) = agent.config.dump.clone() {
        if !agent.saw_drti_note {
            // A process that saw no decorated code (a shell or `time` carrying the same
            // LD_PRELOAD) must not overwrite the dump of the program it ran.
            dump::emit(tracing::Level::DEBUG, &format!("no decorated module seen; DRTI_DUMP={path} left alone"));
        } else {
            dump::write(&agent, &path);
        }
    }
    std::mem::forget(agent);
}

/// `DRTI_TEST_EXIT_WAIT_MS=N` (tests only): exit waits up to N ms until the agent thread
/// has nothing left to do, so tests that check what got compiled do not race the
/// program's exit. Without it, exit never waits for compiles.
fn wait_for_quiet_agent_in_tests() {
    let Some(ms) = std::env::var("DRTI_TEST_EXIT_WAIT_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|&ms| ms > 0) else { return };
    // Only a process whose agent thread runs (not a fork child) has anything to wait for.
    if !lifecycle::AGENT_STARTED.load(Ordering::SeqCst) {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        // Settled twice in a row, 10 ms apart: nothing was between two steps.
        let settled = || state::try_lock().is_some_and(|a| worker::quiet(&a));
        if settled() {
            std::thread::sleep(Duration::from_millis(10));
            if settled() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

extern "C" fn fork_child() {
    if !enabled() {
        return;
    }
    lifecycle::reset_after_fork();
    // SAFETY: areas of unloaded objects are forgotten before their memory is reused;
    // one being unloaded by another thread of the parent at the fork is still mapped here.
    unsafe { profile::detach_all() };
    state::after_fork();
    worker::forget_after_fork();
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

/// Interposes dlopen: after a successful load the agent thread is told (it attaches new
/// decorated modules); nothing here waits for the agent.
///
/// # Safety
/// As for `dlopen(3)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const libc::c_char, flags: libc::c_int) -> *mut libc::c_void {
    // SAFETY: forwarded unchanged.
    let handle = unsafe { real_dlopen(file, flags) };
    if !handle.is_null() && enabled() && !exiting() && !in_agent() {
        lifecycle::LOADS.fetch_add(1, Ordering::SeqCst);
        if !lifecycle::wake_agent() {
            worker::start_from_application();
        }
    }
    handle
}

/// `struct link_map`'s leading field (glibc).
#[repr(C)]
struct LinkMapHead {
    l_addr: u64,
}

/// Interposes dlclose: before the loader may unmap the object, the guard slots naming its
/// code are cleared (frames still inside F+ fall back to the real call) and the agent
/// thread is kept out of its memory; the agent thread reverts patches and retires the
/// module afterwards. No agent lock is held around the real dlclose.
///
/// # Safety
/// As for `dlclose(3)`.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut libc::c_void) -> libc::c_int {
    if !enabled() || in_agent() {
        // SAFETY: forwarded unchanged.
        return unsafe { real_dlclose(handle) };
    }
    let mut lm: *mut LinkMapHead = std::ptr::null_mut();
    // SAFETY: RTLD_DI_LINKMAP stores the handle's link_map pointer into `lm`.
    let ok = unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut lm as *mut *mut LinkMapHead).cast()) } == 0;
    // SAFETY: a link_map returned by the loader for a live handle.
    let base = if ok && !lm.is_null() { Some(unsafe { (*lm).l_addr }) } else { None };
    // The main program (dlopen(NULL) handles, base 0 for non-PIE) never unloads.
    let closing = base.filter(|&b| b != 0 && Some(b) != crate::discover::main_program_base()).map(|b| {
        let c = lifecycle::begin_close(b);
        crate::guard_slots::clear_object(b);
        c
    });
    // SAFETY: forwarded unchanged.
    let r = unsafe { real_dlclose(handle) };
    if let Some(c) = closing {
        c.done();
    }
    r
}
