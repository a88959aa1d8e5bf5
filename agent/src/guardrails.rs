//! Guardrails: conditions under which the agent must not run (or must not load LLVM),
//! checked before it is too late to back out, and an allocator that keeps an allocation
//! failure in the agent from aborting the application.
//!
//! - [`preflight`] (agent start): a sanitizer runtime in the process (the agent's
//!   uninstrumented threads, leaked counters and LLVM trip ASan/TSan/MSan reports), or a
//!   finite `RLIMIT_AS` / `RLIMIT_DATA` that leaves too little room for the agent thread.
//! - [`jit_headroom`] (before the compiler is started and before each compile): LLVM runs
//!   in the compiler process, but receiving, caching and linking its code takes memory
//!   here, so a compile is refused when the limits leave less than that.
//! - [`Guarded`], the agent's `#[global_allocator]`: forwards to the system allocator;
//!   when that fails, serves the request from a small static reserve and raises
//!   [`out_of_memory`], so the agent thread can stop its work instead of the process
//!   aborting with "memory allocation of N bytes failed".
//!
//! The checks read the current usage from `/proc/self/status` (VmSize is what the kernel
//! compares with RLIMIT_AS, VmData with RLIMIT_DATA) at the moment of the check: the
//! application may allocate afterwards, hence the margins.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MIB: u64 = 1 << 20;

// The needs below were measured here (demo/kernel and tests/progs/limits_hot.c, threshold
// 100, VmSize / VmData from /proc at each check; smallest `ulimit -v` / `ulimit -d` that
// still works with the checks disabled):
// - the agent mapped and idle: VmSize 5.3 MiB, VmData 0.8 MiB. With its thread running
//   and profiling (DRTI_JIT=0): 9.5 / 5.0 MiB; it runs at `ulimit -v 10000`, and its
//   thread cannot start at 8000.
// - glibc gives the agent thread a malloc arena of its own: a 64 MiB reservation, made
//   through a transient 128 MiB mapping. When RLIMIT_AS leaves no room
//   for that, the thread's allocations are served by one mmap each (at least a page).
// - LLVM runs in the compiler process (issue 12): here a compile is a socket exchange,
//   maybe a cache read, and linking an object of a few KiB to a few hundred KiB. The
//   link needs below are generous bounds for that, not measurements of LLVM.
// So the needs depend on whether the agent thread has an arena (read from glibc's chunk
// header, `thread_has_arena`): with one, its heap grows inside a reservation VmSize
// already counts; without, the no-arena numbers apply, and they are the answer for other
// allocators too.

/// Address space the agent itself needs beyond what is mapped when its constructor runs
/// (its thread's 2 MiB stack, tables, per-allocation mmaps when it has no arena).
const AGENT_AS: u64 = 8 * MIB;
/// Data (private writable memory, RLIMIT_DATA) the agent itself needs.
const AGENT_DATA: u64 = 6 * MIB;
/// Receiving one compiled object, reading it from the cache and linking it (the object,
/// its mapping, the linker's tables); LLVM itself runs in the compiler process.
const LINK_AS: u64 = 4 * MIB;
const LINK_DATA: u64 = 2 * MIB;
/// Extra data when the agent thread has no arena (every small allocation takes a page).
const NO_ARENA_DATA: u64 = 4 * MIB;
/// Slack for what the application maps meanwhile (address space, data).
const MARGIN_AS: u64 = 8 * MIB;
const MARGIN_DATA: u64 = 2 * MIB;

/// Sanitizer runtimes, each recognised by a symbol its runtime exports to the dynamic
/// symbol table (checked with clang-19: `nm -D` of `-fsanitize=X` programs). ASan's
/// runtime contains LSan, so ASan is tested first; standalone LSan exports `__lsan_init`.
const SANITIZERS: &[(&std::ffi::CStr, &str)] = &[
    (c"__asan_init", "AddressSanitizer"),
    (c"__hwasan_init", "HWAddressSanitizer"),
    (c"__tsan_init", "ThreadSanitizer"),
    (c"__msan_init", "MemorySanitizer"),
    (c"dfsan_set_label", "DataFlowSanitizer"),
    (c"__nsan_init", "NumericalStabilitySanitizer"),
    (c"__lsan_init", "LeakSanitizer"),
];

/// Checks made once at agent start; `Err` is the one warning to print (with [`note`]:
/// logging is not set up yet), and the agent then stays off for the whole process.
pub fn preflight() -> Result<(), String> {
    if let Some(name) = sanitizer() {
        return Err(format!("drti agent off: the program runs under {name}, which would report the agent's own threads and memory; build without -fsanitize to optimise it"));
    }
    check(AGENT_AS, AGENT_DATA, "the agent")
        .map_err(|e| format!("drti agent off: {e}; the program runs unoptimised"))
}

/// Writes one warning line to stderr without the logging machinery, which is not set up
/// when [`preflight`] refuses (and whose buffers MemorySanitizer would report).
pub fn note(msg: &str) {
    let line = format!(" WARN {msg}\n");
    // SAFETY: dlsym only looks the name up.
    let unpoison = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__msan_unpoison".as_ptr()) };
    if !unpoison.is_null() {
        // MSan takes bytes written by uninstrumented code for uninitialised: declare them.
        // SAFETY: MSan's `void __msan_unpoison(const volatile void *, size_t)` over our buffer.
        unsafe { std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(*const u8, usize)>(unpoison)(line.as_ptr(), line.len()) };
    }
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes bytes of a live buffer to fd 2.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        } else {
            break;
        }
    }
}

/// Whether linking a compiled object fits in the process's memory limits. `Err` is the
/// warning to print; the caller must then not compile.
pub fn jit_headroom() -> Result<(), String> {
    // With an arena of its own, the agent thread's heap grows inside a reservation VmSize
    // already counts; without, every allocation is an mmap of its own.
    let (as_need, data_need) = if thread_has_arena() { (0, LINK_DATA) } else { (LINK_AS, LINK_DATA + NO_ARENA_DATA) };
    check(as_need, data_need, "the JIT").map_err(|e| format!("JIT off: {e}; the program runs unoptimised"))
}

/// Whether glibc's malloc serves the calling thread from an arena of its own (not the
/// main one, not one mmap per allocation). Read from the header glibc keeps before each
/// chunk (its size word: bit 1 = mmapped, bit 2 = non-main arena), and only when `malloc`
/// is glibc's; false (the conservative answer) otherwise.
fn thread_has_arena() -> bool {
    let mut info = libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    // SAFETY: dlsym and dladdr only read the loader's tables.
    let glibc = unsafe {
        let m = libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr());
        !m.is_null() && libc::dladdr(m, &mut info) != 0 && !info.dli_fname.is_null() && std::ffi::CStr::from_ptr(info.dli_fname).to_bytes().ends_with(b"/libc.so.6")
    };
    if !glibc {
        return false;
    }
    // SAFETY: a chunk from glibc's malloc is preceded by its 8-byte size word, which is
    // inside the chunk's header (readable); the block is freed right after.
    unsafe {
        // Larger than glibc's per-thread cache serves (1032 bytes): a cached block may be
        // one another thread allocated, from its arena.
        let p = libc::malloc(2048) as *const usize;
        if p.is_null() {
            return false;
        }
        // black_box: the compiler must not reason about the block (reading before it is
        // outside the allocation as far as it knows) nor elide the malloc/free pair.
        let size = std::hint::black_box(p).sub(1).read_volatile();
        libc::free(p as *mut libc::c_void);
        size & 2 == 0 && size & 4 != 0
    }
}

/// The sanitizer whose runtime is in the process, if any.
pub fn sanitizer() -> Option<&'static str> {
    SANITIZERS.iter().find_map(|&(sym, name)| {
        // SAFETY: dlsym only looks the name up in the loaded objects.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, sym.as_ptr()) };
        (!p.is_null()).then_some(name)
    })
}

/// Memory in use (bytes), from /proc/self/status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// VmSize: the whole address space (what RLIMIT_AS limits).
    pub address_space: u64,
    /// VmData: private writable memory (what RLIMIT_DATA limits).
    pub data: u64,
}

/// Parses `/proc/<pid>/status` text; None if a field is missing.
pub fn parse_status(text: &str) -> Option<Usage> {
    Some(Usage { address_space: status_kb(text, "VmSize:")? * 1024, data: status_kb(text, "VmData:")? * 1024 })
}

/// The value in KiB of field `name` (with its colon, e.g. `VmHWM:`) of `/proc/<pid>/status`
/// text.
pub fn status_kb(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].trim().strip_suffix("kB")?.trim().parse().ok()
}

fn usage() -> Option<Usage> {
    parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The soft limit of `resource`, None when unlimited.
fn limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into `r`.
    let ok = unsafe { libc::getrlimit(resource, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// `Err` naming the limit when `need` (+ margin) does not fit above the current usage.
fn check(as_need: u64, data_need: u64, what: &str) -> Result<(), String> {
    let (as_limit, data_limit) = (limit(libc::RLIMIT_AS), limit(libc::RLIMIT_DATA));
    if as_limit.is_none() && data_limit.is_none() {
        return Ok(());
    }
    let Some(used) = usage() else {
        return Err("memory is limited and /proc/self/status is unreadable".into());
    };
    tracing::debug!(what, used_as = used.address_space, used_data = used.data, as_need, data_need, ?as_limit, ?data_limit, "memory limits");
    fits(used, as_limit, data_limit, as_need, data_need, what)
}

/// The decision of [`check`], apart from reading the process's state.
fn fits(used: Usage, as_limit: Option<u64>, data_limit: Option<u64>, as_need: u64, data_need: u64, what: &str) -> Result<(), String> {
    let mib = |b: u64| b.div_ceil(MIB);
    for (limit, used, need, name) in [
        (as_limit, used.address_space, as_need + MARGIN_AS, "RLIMIT_AS (ulimit -v)"),
        (data_limit, used.data, data_need + MARGIN_DATA, "RLIMIT_DATA (ulimit -d)"),
    ] {
        if let Some(limit) = limit {
            if used.saturating_add(need) > limit {
                return Err(format!("{what} needs about {} MiB more memory, but {name} is {} MiB with {} MiB in use", mib(need), mib(limit), mib(used)));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The allocator.

/// Bytes the emergency reserve holds: enough for the agent thread to log one warning and
/// wind down (a few hundred small allocations), small enough to cost nothing (.bss: no
/// memory is used until touched).
pub const RESERVE_BYTES: usize = 512 * 1024;

/// A static bump area: allocation is one compare-and-swap, frees are ignored (the memory
/// is never reused), so it is lock-free and safe to use from any thread at any time.
#[repr(C, align(64))]
pub struct Reserve<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    used: AtomicUsize,
    /// Set the first time the allocator behind it failed.
    failed: AtomicBool,
}

// SAFETY: the bytes are handed out in disjoint ranges by an atomic bump pointer; the
// reserve itself never reads or writes them.
unsafe impl<const N: usize> Sync for Reserve<N> {}

impl<const N: usize> Reserve<N> {
    /// An empty reserve.
    pub const fn new() -> Self {
        Reserve { bytes: UnsafeCell::new([0; N]), used: AtomicUsize::new(0), failed: AtomicBool::new(false) }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    /// Whether `p` points into the reserve.
    pub fn contains(&self, p: *const u8) -> bool {
        (self.base()..self.base() + N).contains(&(p as usize))
    }

    /// `layout.size()` fresh, zeroed bytes aligned as asked, or null when they do not fit.
    pub fn take(&self, layout: Layout) -> *mut u8 {
        let base = self.base();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            // Offsets, not addresses, so the arithmetic cannot overflow for N < usize::MAX/2.
            let Some(start) = (base + used).checked_next_multiple_of(layout.align()).map(|a| a - base) else {
                return std::ptr::null_mut();
            };
            let end = match start.checked_add(layout.size().max(1)) {
                Some(e) if e <= N => e,
                _ => return std::ptr::null_mut(),
            };
            match self.used.compare_exchange_weak(used, end, Ordering::AcqRel, Ordering::Relaxed) {
                // SAFETY: start + size <= N: the pointer stays inside the reserve.
                Ok(_) => return unsafe { (self.bytes.get() as *mut u8).add(start) },
                Err(now) => used = now,
            }
        }
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl<const N: usize> Default for Reserve<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The reserve of the agent's global allocator.
static RESERVE: Reserve<RESERVE_BYTES> = Reserve::new();

/// Whether an allocation of the agent failed since the process started (the request was
/// then served from the reserve, or, if that was exhausted too, the process aborted).
///
/// Contract for the agent thread: check it once per batch; once it is true, log one
/// warning (`"out of memory: the agent stops; the program runs on"`), stop compiling
/// and profiling work (patches in place stay valid), and allocate as little as possible.
/// Application-side paths (profiling, interposers) do not allocate on the hot path.
pub fn out_of_memory() -> bool {
    RESERVE.failed.load(Ordering::Relaxed)
}

/// An allocator that forwards to `inner` and falls back to a [`Reserve`] when `inner`
/// fails, recording the failure. Memory from the reserve is never freed.
pub struct Guarded<A: 'static, const N: usize> {
    inner: A,
    reserve: &'static Reserve<N>,
}

/// The type of the agent's `#[global_allocator]` (lib.rs).
pub type AgentAllocator = Guarded<System, RESERVE_BYTES>;

impl Guarded<System, RESERVE_BYTES> {
    /// The agent's global allocator: the system allocator over [`out_of_memory`]'s reserve.
    pub const fn system() -> Self {
        Guarded { inner: System, reserve: &RESERVE }
    }
}

impl<A: GlobalAlloc, const N: usize> Guarded<A, N> {
    /// `inner` over `reserve` (tests build their own).
    pub const fn new(inner: A, reserve: &'static Reserve<N>) -> Self {
        Guarded { inner, reserve }
    }

    fn emergency(&self, layout: Layout) -> *mut u8 {
        self.reserve.failed.store(true, Ordering::Relaxed);
        self.reserve.take(layout)
    }
}

// SAFETY: every pointer returned is either `inner`'s (and handed back to `inner` only) or
// a fresh, disjoint, suitably aligned range of the reserve that is never handed out again.
unsafe impl<A: GlobalAlloc, const N: usize> GlobalAlloc for Guarded<A, N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if p.is_null() {
            self.emergency(layout)
        } else {
            p
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if p.is_null() {
            // Reserve bytes start zeroed and are never reused.
            self.emergency(layout)
        } else {
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.reserve.contains(ptr) {
            // SAFETY: not from the reserve, so it came from `inner` with this layout.
            unsafe { self.inner.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.reserve.contains(ptr) {
            // SAFETY: `ptr` came from `inner` with `layout`; forwarded.
            let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                return p;
            }
        }
        // From the reserve, or `inner` could not grow it: move it (the caller guarantees
        // new_size with layout's alignment is a valid layout).
        // SAFETY: see above.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: new_layout has a non-zero size (GlobalAlloc::realloc's contract).
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks are valid for min(old, new) bytes and do not overlap; the
            // old block is freed (ignored if it is reserve memory) only after the copy.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An allocator that fails every request, counting them.
    struct Failing(AtomicUsize);
    // SAFETY: returns null for every request (never memory).
    unsafe impl GlobalAlloc for Failing {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::ptr::null_mut()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
            panic!("dealloc of memory it never gave");
        }
    }

    #[test]
    fn failure_is_served_from_the_reserve_and_flagged() {
        static R: Reserve<4096> = Reserve::new();
        let g = Guarded::new(Failing(AtomicUsize::new(0)), &R);
        let l = Layout::from_size_align(8, 8).unwrap();
        assert!(!R.failed.load(Ordering::Relaxed));
        // SAFETY: valid layouts; the pointers are used within their sizes.
        unsafe {
            let a = g.alloc(l);
            assert!(!a.is_null() && R.contains(a) && (a as usize).is_multiple_of(8));
            assert!(R.failed.load(Ordering::Relaxed));
            let b = g.alloc_zeroed(Layout::from_size_align(100, 64).unwrap());
            assert!((b as usize).is_multiple_of(64) && b as usize >= a as usize + 8);
            assert!((0..100).all(|i| *b.add(i) == 0));
            a.write_bytes(7, 8);
            let c = g.realloc(a, l, 16);
            assert!(R.contains(c) && (0..8).all(|i| *c.add(i) == 7));
            g.dealloc(c, Layout::from_size_align(16, 8).unwrap()); // ignored
            // Exhausted: null, never memory outside the reserve.
            assert!(g.alloc(Layout::from_size_align(8192, 8).unwrap()).is_null());
        }
        assert!(g.inner.0.load(Ordering::Relaxed) >= 4);
    }

    #[test]
    fn reserve_hands_out_disjoint_ranges_across_threads() {
        static R: Reserve<65536> = Reserve::new();
        let l = Layout::from_size_align(24, 8).unwrap();
        let got: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| (0..1000).map(|_| R.take(l) as usize).collect::<Vec<_>>())).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut live: Vec<usize> = got.into_iter().filter(|&p| p != 0).collect();
        assert_eq!(live.len(), 65536 / 24, "every slot that fits is handed out once");
        live.sort();
        assert!(live.windows(2).all(|w| w[1] - w[0] >= 24));
    }

    #[test]
    fn system_allocations_pass_through() {
        static R: Reserve<64> = Reserve::new();
        let g = Guarded::new(System, &R);
        let l = Layout::from_size_align(1 << 20, 16).unwrap();
        // SAFETY: valid layout, freed with the same layout.
        unsafe {
            let p = g.alloc(l);
            assert!(!p.is_null() && !R.contains(p));
            let q = g.realloc(p, l, 2 << 20);
            assert!(!q.is_null() && !R.contains(q));
            g.dealloc(q, Layout::from_size_align(2 << 20, 16).unwrap());
        }
        assert!(!R.failed.load(Ordering::Relaxed) && R.used() == 0);
    }

    #[test]
    fn limits_decision() {
        let used = Usage { address_space: 50 * MIB, data: 5 * MIB };
        assert!(fits(used, None, None, 100 * MIB, 100 * MIB, "x").is_ok());
        assert!(fits(used, Some(200 * MIB), None, 100 * MIB, 1, "x").is_ok());
        let e = fits(used, Some(100 * MIB), None, 72 * MIB, 1, "the agent").unwrap_err();
        assert!(e.contains("RLIMIT_AS") && e.contains("100 MiB") && e.contains("50 MiB in use"), "{e}");
        let e = fits(used, None, Some(10 * MIB), 1, 8 * MIB, "the JIT").unwrap_err();
        assert!(e.contains("RLIMIT_DATA"), "{e}");
    }

    #[test]
    fn status_parsing() {
        let s = "Name:\tx\nVmPeak:\t  9999 kB\nVmSize:\t    6092 kB\nVmLck:\t0 kB\nVmData:\t     468 kB\n";
        assert_eq!(parse_status(s), Some(Usage { address_space: 6092 * 1024, data: 468 * 1024 }));
        assert_eq!(parse_status("VmSize: 1 kB\n"), None);
        assert_eq!(status_kb(s, "VmPeak:"), Some(9999));
        assert_eq!(status_kb(s, "VmHWM:"), None);
    }

    #[test]
    fn a_spawned_thread_has_its_own_arena() {
        // glibc gives a new thread an arena (or shares a non-main one past its limit).
        let r = std::thread::spawn(thread_has_arena).join().unwrap();
        assert!(r);
    }

    #[test]
    fn no_sanitizer_in_the_test_process() {
        assert_eq!(sanitizer(), None);
    }
}
