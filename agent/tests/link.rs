//! The agent's in-process linker (agent/src/link) on objects clang-19 compiles at test time
//! from tests/progs/link_*: calls, data, bss, jump tables, far symbols, C++ exceptions,
//! refused inputs, and the mapping gone after release. No LLVM in this process.

use drti_agent::link::{link, LinkedObject};
use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// Link tests place mappings near the same address and read /proc/self/maps: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn have_clang() -> bool {
    let ok = |c: &str| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success());
    if ok("clang-19") && ok("clang++-19") {
        return true;
    }
    println!("skip: clang-19/clang++-19 not found");
    false
}

fn progs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/progs")
}

/// Compile `src` (in tests/progs) with `flags` into a relocatable object; its bytes.
fn compile(src: &str, flags: &[&str]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("drti-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tag: String = flags.join("").chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let out = dir.join(format!("{src}.{tag}.o"));
    let compiler = if src.ends_with(".cpp") { "clang++-19" } else { "clang-19" };
    let st = Command::new(compiler).args(["-c", "-O2"]).args(flags).arg(progs().join(src)).arg("-o").arg(&out).status().unwrap();
    assert!(st.success(), "{compiler} {flags:?} {src} failed");
    std::fs::read(&out).unwrap()
}

fn dlsym(name: &str) -> Option<u64> {
    let c = CString::new(name).ok()?;
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other preconditions.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    (!p.is_null()).then_some(p as u64)
}

static SINK: AtomicI32 = AtomicI32::new(0);
/// The process's definition of link_basic.c's weak `shared_counter`.
static SHARED_COUNTER: AtomicI32 = AtomicI32::new(40);
extern "C" fn sink(v: c_int) {
    SINK.store(v, Ordering::SeqCst);
}

/// A page of code and data mapped anywhere (the kernel puts it far above a PIE
/// executable): `far_function(x) = x + 1000` at its start, `far_data = 77` at +64.
struct FarPage(u64);

impl FarPage {
    fn new() -> FarPage {
        // SAFETY: a fresh anonymous mapping, written before being made read+execute.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert_ne!(p, libc::MAP_FAILED);
            let code: [u8; 8] = [0x48, 0x8d, 0x87, 0xe8, 0x03, 0x00, 0x00, 0xc3]; // lea 1000(%rdi),%rax; ret
            std::ptr::copy_nonoverlapping(code.as_ptr(), p.cast::<u8>(), code.len());
            *(p.cast::<u8>().add(64).cast::<i32>()) = 77;
            assert_eq!(libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
            FarPage(p as u64)
        }
    }
}

impl Drop for FarPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing linked to it runs any more.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, 4096) };
    }
}

/// The address the linker should stay near: code of this test binary.
fn near() -> u64 {
    near as *const () as usize as u64
}

fn f<T: Copy>(obj: &LinkedObject, name: &str) -> T {
    let addr = obj.symbol(name).unwrap_or_else(|| panic!("{name} not defined"));
    assert_eq!(std::mem::size_of::<T>(), 8);
    // SAFETY: T is the function pointer type of the C function `name`; the object is alive.
    unsafe { std::mem::transmute_copy(&(addr as usize)) }
}

/// Lines of /proc/self/maps overlapping `[start, end)`.
fn maps_overlapping(start: u64, end: u64) -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
            a < end && start < b
        })
        .map(str::to_string)
        .collect()
}

fn link_basic(flags: &[&str], far: &FarPage) -> Result<LinkedObject, drti_agent::link::LinkError> {
    let obj = compile("link_basic.c", flags);
    link(&obj, Some(near()), |name| match name {
        "sink" => Some(sink as *const () as usize as u64),
        "far_function" => Some(far.0),
        "far_data" => Some(far.0 + 64),
        "shared_counter" => Some(SHARED_COUNTER.as_ptr() as u64),
        _ => dlsym(name),
    })
}

fn check_basic(flags: &[&str]) {
    let far = FarPage::new();
    let obj = link_basic(flags, &far).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    let (start, end) = obj.range();
    assert!(obj.in_reach(), "{flags:?}: mapping {start:#x} not within 2 GiB of {:#x}", near());
    assert!(start.abs_diff(near()) < 1 << 31 && end.abs_diff(near()) < 1 << 31);
    // The far symbols really are out of reach of a 32-bit displacement from the object.
    assert!(far.0.abs_diff(start) > 1 << 32 && far.0.abs_diff(end) > 1 << 32, "far page {:#x} is near {start:#x}", far.0);

    let add_twice: extern "C" fn(c_int) -> c_int = f(&obj, "add_twice");
    let get_hits: extern "C" fn() -> c_int = f(&obj, "get_hits");
    let get_buf: extern "C" fn(c_int) -> c_int = f(&obj, "get_buf");
    let set_counter: extern "C" fn(c_int) = f(&obj, "set_counter");
    let dispatch: extern "C" fn(c_int, c_int) -> c_int = f(&obj, "dispatch");
    let fmt: extern "C" fn(*mut c_char, c_int) -> c_int = f(&obj, "fmt");
    let call_far: extern "C" fn(i64) -> i64 = f(&obj, "call_far");
    let bump_shared: extern "C" fn() -> c_int = f(&obj, "bump_shared");

    assert_eq!(add_twice(3), (9 + 5) + (12 + 5));
    assert_eq!(get_hits(), 1, "bss starts at zero and is written");
    assert_eq!(get_buf(3), 3);
    set_counter(10);
    assert_eq!(add_twice(3), (9 + 10) + (12 + 10));
    assert_eq!(get_buf(3), 6);
    // SAFETY: `counter` is an int in the object's data, read after the calls above.
    assert_eq!(unsafe { *(obj.symbol("counter").unwrap() as *const c_int) }, 10);
    SINK.store(0, Ordering::SeqCst);
    assert_eq!(dispatch(0, 9), 1);
    assert_eq!(SINK.load(Ordering::SeqCst), 9);
    assert_eq!(dispatch(1, 2), 16);
    assert_eq!(dispatch(2, 1), 3, "strlen(names[1]) through a pointer in data");
    assert_eq!(dispatch(3, 1), 78, "far_data through the GOT");
    assert_eq!(dispatch(4, 5), 1005, "far_function through a stub");
    assert_eq!(dispatch(5, 1), 6);
    assert_eq!(SINK.load(Ordering::SeqCst), 3);
    assert_eq!(dispatch(6, 4), 204);
    assert_eq!(dispatch(42, 0), -1);
    assert_eq!(call_far(1), 1078);
    SHARED_COUNTER.store(40, Ordering::SeqCst);
    assert_eq!(bump_shared(), 4107, "the process's shared_counter and the object's own_weak");
    assert_eq!(SHARED_COUNTER.load(Ordering::SeqCst), 41);
    assert_eq!(obj.symbol("shared_counter"), Some(SHARED_COUNTER.as_ptr() as u64));
    let mut out = [0 as c_char; 64];
    let n = fmt(out.as_mut_ptr(), 2);
    // SAFETY: snprintf wrote a NUL-terminated string into `out`.
    let s = unsafe { std::ffi::CStr::from_ptr(out.as_ptr()) }.to_str().unwrap();
    assert_eq!((n, s), (7, "n=2 two"));

    // Code size per function, from the symbol table; inside the executable part.
    let (addr, size) = obj.function("dispatch").unwrap();
    let (t0, t1) = obj.text();
    assert!(size > 20 && addr >= t0 && addr + size <= t1, "{addr:#x}+{size} in {t0:#x}..{t1:#x}");
    assert!(obj.function("counter").is_none(), "data is not a function");
    assert!(obj.function("helper").is_some(), "local functions are found too");

    // Never writable and executable; the code part is r-x.
    let maps = maps_overlapping(start, end);
    assert!(!maps.is_empty());
    for l in &maps {
        let perms = l.split_whitespace().nth(1).unwrap();
        assert!(!(perms.contains('w') && perms.contains('x')), "W+X mapping: {l}");
    }
    assert!(maps.iter().any(|l| l.contains(&format!("{t0:x}-")) && l.contains(" r-xp ")), "{maps:?}");
    // SAFETY: no linked code runs any more.
    unsafe { obj.release() };
}

#[test]
fn c_calls_data_bss_jump_tables_and_far_symbols_pic() {
    let _g = serial();
    if have_clang() {
        check_basic(&["-fPIC"]);
    }
}

#[test]
fn c_calls_data_bss_jump_tables_and_far_symbols_default_pie() {
    let _g = serial();
    if have_clang() {
        check_basic(&[]);
    }
}

/// -fno-plt: calls through `call *f@GOTPCREL(%rip)` (R_X86_64_GOTPCRELX).
#[test]
fn c_calls_data_bss_jump_tables_and_far_symbols_pic_no_plt() {
    let _g = serial();
    if have_clang() {
        check_basic(&["-fPIC", "-fno-plt"]);
    }
}

/// Without an address to stay near the mapping goes anywhere; PIC code reaches everything
/// outside it through the GOT and stubs.
#[test]
fn pic_object_linked_anywhere() {
    let _g = serial();
    if !have_clang() {
        return;
    }
    let far = FarPage::new();
    let obj = compile("link_basic.c", &["-fPIC"]);
    let linked = link(&obj, None, |name| match name {
        "sink" => Some(sink as *const () as usize as u64),
        "far_function" => Some(far.0),
        "far_data" => Some(far.0 + 64),
        _ => dlsym(name),
    })
    .unwrap();
    assert!(!linked.in_reach());
    let dispatch: extern "C" fn(c_int, c_int) -> c_int = f(&linked, "dispatch");
    SINK.store(0, Ordering::SeqCst);
    assert_eq!(dispatch(0, 5), 1);
    assert_eq!(SINK.load(Ordering::SeqCst), 5);
    assert_eq!(dispatch(2, 3), 5, "strlen(\"three\")");
    assert_eq!(dispatch(4, 1), 1001);
    // SAFETY: no linked code runs any more.
    unsafe { linked.release() };
}

#[test]
fn cxx_exception_thrown_and_caught_in_linked_code() {
    let _g = serial();
    if !have_clang() {
        return;
    }
    // The test binary is Rust: load libstdc++ so the object's C++ runtime symbols resolve.
    if !load_libstdcxx() {
        return;
    }
    for flags in [&["-fPIC"][..], &[]] {
        let obj = compile("link_eh.cpp", flags);
        let t = std::time::Instant::now();
        let linked = link(&obj, Some(near()), dlsym).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        println!("linked {} bytes of object in {:?}", obj.len(), t.elapsed());
        assert_eq!(linked.unwind_tables(), 1);
        let catcher: extern "C" fn(c_int) -> c_int = f(&linked, "catcher");
        assert_eq!(catcher(5), 22, "no exception");
        assert_eq!(catcher(123), 123, "LinkErr caught by type, through a frame with a cleanup");
        assert_eq!(catcher(-1), -1000, "std::runtime_error caught as std::exception");
        for i in 0..100 {
            assert_eq!(catcher(200 + i), 200 + i);
        }
        // SAFETY: no linked code runs any more.
        unsafe { linked.release() };
    }
}

#[test]
fn refused_inputs_give_errors() {
    let _g = serial();
    if !have_clang() {
        return;
    }
    let good = compile("link_basic.c", &["-fPIC"]);
    let resolve = |n: &str| dlsym(n).or(Some(0x1000));
    // Truncated and corrupt objects.
    for cut in [0, 10, 64, 200, good.len() / 2, good.len() - 1] {
        let e = link(&good[..cut], Some(near()), resolve);
        assert!(e.is_err(), "truncated to {cut} bytes");
    }
    let mut wrong_machine = good.clone();
    wrong_machine[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = EM_AARCH64
    let e = link(&wrong_machine, Some(near()), resolve).unwrap_err();
    assert!(e.0.contains("not x86-64"), "{e}");
    let mut garbage = good.clone();
    for b in garbage.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5a;
    }
    let _ = link(&garbage, Some(near()), resolve); // anything but a crash

    let cases: &[(&[&str], &str)] = &[
        (&["-DCASE_TLS", "-fPIC"], "thread-local"),
        (&["-DCASE_TLS"], "thread-local"),
        (&["-DCASE_COMMON", "-fcommon"], "COMMON"),
        (&["-DCASE_CTOR", "-fPIC"], "not supported"),
    ];
    for (flags, want) in cases {
        let e = link(&compile("link_bad.c", flags), Some(near()), resolve).unwrap_err();
        assert!(e.0.contains(want), "{flags:?}: {e}");
    }
    let e = link(&compile("link_bad.c", &["-DCASE_UNDEFINED", "-fPIC"]), Some(near()), dlsym).unwrap_err();
    assert!(e.0.contains("undefined symbol \"no_such_function_anywhere\""), "{e}");

    // Non-PIC code addresses its data with 32-bit absolute fields, which cannot hold an
    // address near this (PIE) executable: every such field is overflow-checked.
    if near() > 1 << 32 {
        let far = FarPage::new();
        let e = link_basic(&["-fno-pic"], &far).unwrap_err();
        assert!(e.0.contains("does not fit"), "{e}");
    } else {
        println!("skip: this test binary is not position-independent, -fno-pic code may fit");
    }
}

#[test]
fn release_unmaps_and_deregisters() {
    let _g = serial();
    if !have_clang() {
        return;
    }
    let far = FarPage::new();
    let registered = drti_agent::link::gdb_entries();
    let obj = link_basic(&["-fPIC"], &far).unwrap();
    assert_eq!(drti_agent::link::gdb_entries(), registered + 1);
    let (start, end) = obj.range();
    assert!(!maps_overlapping(start, end).is_empty());

    // GDB's copy of the object says where its sections were loaded.
    let image = obj.gdb_symfile().expect("registered with GDB").to_vec();
    let file = object::File::parse(&image[..]).unwrap();
    use object::{Object, ObjectSection};
    let text = file.section_by_name(".text").unwrap();
    let (addr, size) = obj.function("add_twice").unwrap();
    assert!(text.address() <= addr && addr + size <= text.address() + text.size(), "{:#x} {addr:#x}", text.address());

    // SAFETY: no linked code runs any more.
    unsafe { obj.release() };
    assert_eq!(maps_overlapping(start, end), Vec::<String>::new(), "mapping still present after release");
    assert_eq!(drti_agent::link::gdb_entries(), registered, "still on GDB's list after release");
}

fn have_gdb() -> bool {
    Command::new("gdb").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Not a test on its own: the program `gdb_backtrace_names_linked_functions` runs under
/// gdb (it does nothing unless DRTI_LINK_GDB_CHILD is set). Links link_trap.c and traps
/// inside it.
#[test]
fn gdb_child_traps_in_linked_code() {
    if std::env::var_os("DRTI_LINK_GDB_CHILD").is_none() {
        return;
    }
    let obj = compile("link_trap.c", &["-fPIC", "-g"]);
    let linked = link(&obj, Some(near()), dlsym).unwrap();
    let outer: extern "C" fn(c_int) -> c_int = f(&linked, "linked_outer");
    assert_eq!(outer(0), 1);
    println!("about to trap in linked code");
    outer(1);
    unreachable!("linked_trap_here did not trap");
}

#[test]
fn gdb_backtrace_names_linked_functions() {
    let _g = serial();
    if !have_clang() {
        return;
    }
    if !have_gdb() {
        println!("skip: gdb is not installed");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("gdb")
        .env("DRTI_LINK_GDB_CHILD", "1")
        .args(["-batch", "-nx", "-ex", "run", "-ex", "bt", "--args"])
        .arg(exe)
        .args(["gdb_child_traps_in_linked_code", "--exact", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("about to trap in linked code"), "the child did not run:\n{text}");
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(frames.first().is_some_and(|l| l.contains("linked_trap_here")), "gdb does not name the linked function:\n{text}");
    assert!(frames.iter().any(|l| l.contains("linked_outer")), "gdb does not unwind into the linked caller:\n{text}");
}

fn load_libstdcxx() -> bool {
    let lib = CString::new("libstdc++.so.6").unwrap();
    // SAFETY: loading the system C++ runtime library; it stays loaded.
    let ok = !unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }.is_null();
    if !ok {
        println!("skip: libstdc++.so.6 cannot be loaded");
    }
    ok
}

/// Corrupt objects (bytes flipped anywhere) are refused or linked, never a crash or a
/// panic; nothing from them is ever called, but while each accepted one is linked (its
/// .eh_frame registered) a good linked object throws and catches, so the unwinder meets
/// whatever the bad one registered.
#[test]
fn corrupted_objects_never_crash_the_linker() {
    let _g = serial();
    if !have_clang() || !load_libstdcxx() {
        return;
    }
    let good = link(&compile("link_eh.cpp", &["-fPIC"]), Some(near()), dlsym).unwrap();
    let catcher: extern "C" fn(c_int) -> c_int = f(&good, "catcher");
    let objects = [compile("link_basic.c", &["-fPIC"]), compile("link_eh.cpp", &["-fPIC"])];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut refused, mut linked) = (0, 0);
    for round in 0..1500 {
        let mut obj = objects[round % 2].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % obj.len() as u64) as usize;
            obj[at] = next() as u8;
        }
        match link(&obj, Some(near()), |n| dlsym(n).or(Some(0x1000))) {
            Ok(l) => {
                linked += 1;
                assert_eq!(catcher(123), 123);
                assert_eq!(catcher(-1), -1000);
                // SAFETY: nothing of it was called.
                unsafe { l.release() };
            }
            Err(_) => refused += 1,
        }
    }
    println!("corrupted objects: {refused} refused, {linked} linked (flips in unused bytes)");
    assert!(refused > 100);
    // SAFETY: no linked code runs any more.
    unsafe { good.release() };
}

/// The agent links and releases on its own thread while application threads throw:
/// registration and deregistration of unwind info race with unwinding elsewhere.
#[test]
fn exceptions_while_other_objects_are_linked_and_released() {
    let _g = serial();
    if !have_clang() || !load_libstdcxx() {
        return;
    }
    let obj = compile("link_eh.cpp", &["-fPIC"]);
    let thrower = link(&obj, Some(near()), dlsym).unwrap();
    let catcher: extern "C" fn(c_int) -> c_int = f(&thrower, "catcher");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let throwing: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(catcher(150), 150);
                        assert_eq!(catcher(-3), -1000);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for _ in 0..300 {
            let other = link(&obj, Some(near()), dlsym).unwrap();
            let c: extern "C" fn(c_int) -> c_int = f(&other, "catcher");
            assert_eq!(c(101), 101);
            // SAFETY: only this thread ran `other`'s code, and it returned.
            unsafe { other.release() };
        }
        stop.store(true, Ordering::Relaxed);
        let throws: u64 = throwing.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(throws > 0);
    });
    // SAFETY: the throwing threads have ended.
    unsafe { thrower.release() };
}
