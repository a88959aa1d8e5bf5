//! Patching real code in this test process. Each test patches its own functions, since
//! tests run in parallel; `drti_patch_test_b`/`_c` are only ever targets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::procmem::ProcMem;
use super::trampoline::{Trampolines, SLOT};
use super::*;

core::arch::global_asm!(
    ".pushsection .text.drti_patch_test,\"ax\",@progbits",
    // clang's patchable entry: 5-byte NOP, then the body.
    ".p2align 4",
    ".globl drti_patch_test_a",
    "drti_patch_test_a:",
    ".byte 0x0f,0x1f,0x44,0x00,0x08",
    "mov eax, 1",
    "ret",
    ".p2align 4",
    ".globl drti_patch_test_far",
    "drti_patch_test_far:",
    ".byte 0x0f,0x1f,0x44,0x00,0x08",
    "mov eax, 1",
    "ret",
    ".p2align 4",
    ".globl drti_patch_test_stress",
    "drti_patch_test_stress:",
    ".byte 0x0f,0x1f,0x44,0x00,0x08",
    "mov eax, 1",
    "ret",
    ".p2align 4",
    ".globl drti_patch_test_wx",
    "drti_patch_test_wx:",
    ".byte 0x0f,0x1f,0x44,0x00,0x08",
    "mov eax, 1",
    "ret",
    // -fcf-protection: endbr64 first, so on an 8-aligned entry the NOP straddles an
    // 8-byte boundary (bytes 4..9).
    ".p2align 4",
    ".globl drti_patch_test_cet",
    "drti_patch_test_cet:",
    ".byte 0xf3,0x0f,0x1e,0xfa",
    ".byte 0x0f,0x1f,0x44,0x00,0x08",
    "mov eax, 1",
    "ret",
    // gcc's patchable entry: five 1-byte NOPs, not safely patchable.
    ".p2align 4",
    ".globl drti_patch_test_gcc",
    "drti_patch_test_gcc:",
    "nop",
    "nop",
    "nop",
    "nop",
    "nop",
    "mov eax, 1",
    "ret",
    // Targets without a patchable entry.
    ".p2align 4",
    ".globl drti_patch_test_b",
    "drti_patch_test_b:",
    "mov eax, 2",
    "ret",
    ".p2align 4",
    ".globl drti_patch_test_c",
    "drti_patch_test_c:",
    "mov eax, 4",
    "ret",
    ".popsection",
);

extern "C" {
    fn drti_patch_test_a() -> u32;
    fn drti_patch_test_far() -> u32;
    fn drti_patch_test_stress() -> u32;
    fn drti_patch_test_wx() -> u32;
    fn drti_patch_test_cet() -> u32;
    fn drti_patch_test_gcc() -> u32;
    fn drti_patch_test_b() -> u32;
    fn drti_patch_test_c() -> u32;
}

type Fn0 = unsafe extern "C" fn() -> u32;

fn addr(f: Fn0) -> u64 {
    f as usize as u64
}

fn call(f: Fn0) -> u32 {
    // SAFETY: the test functions take nothing, touch only eax, and return; patched, they
    // jump to another such function.
    unsafe { f() }
}

/// An r-x page far (≥ 4 GiB) from `near`, holding `code`; written while RW, then sealed.
struct FarCode {
    addr: u64,
}

impl FarCode {
    fn new(near: u64, code: &[u8]) -> FarCode {
        let mut hint = (near + (8 << 30)) & !0xfff;
        for _ in 0..64 {
            // SAFETY: MAP_FIXED_NOREPLACE maps fresh anonymous memory or fails.
            let p = unsafe {
                libc::mmap(
                    hint as *mut libc::c_void,
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                // SAFETY: p is a fresh RW page of 4096 bytes; code is shorter.
                unsafe {
                    std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len());
                    assert_eq!(
                        libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC),
                        0
                    );
                }
                assert!(p as u64 - near > 4 << 30);
                return FarCode { addr: p as u64 };
            }
            hint += 1 << 30;
        }
        panic!("no far page near {near:#x}");
    }
}

const MOV_EAX_3_RET: [u8; 6] = [0xb8, 3, 0, 0, 0, 0xc3];
const MOV_EAX_5_RET: [u8; 6] = [0xb8, 5, 0, 0, 0, 0xc3];

fn code_at(addr: u64) -> [u8; 5] {
    ProcMem::open().unwrap().read_exact(addr).unwrap()
}

#[test]
fn patch_redirect_revert_retarget() {
    let p = Patcher::new().expect("patching works here");
    let (a, b, c) = (
        addr(drti_patch_test_a),
        addr(drti_patch_test_b),
        addr(drti_patch_test_c),
    );
    assert_eq!(Patcher::patch_point(a).unwrap(), a);
    assert_eq!(call(drti_patch_test_a), 1);

    let mut rec = p.redirect(a, b).unwrap();
    assert_eq!((rec.entry, rec.patch_point, rec.target), (a, a, b));
    assert_eq!(rec.original, [0x0f, 0x1f, 0x44, 0x00, 0x08]);
    assert_eq!(rec.trampoline, None);
    assert_eq!(code_at(a)[0], 0xE9);
    assert_eq!(call(drti_patch_test_a), 2);
    // A patched entry still has a patch point, but cannot be redirected again.
    assert_eq!(Patcher::patch_point(a).unwrap(), a);
    assert!(matches!(
        p.redirect(a, c),
        Err(PatchError::UnexpectedBytes { .. })
    ));

    p.retarget(&mut rec, c).unwrap();
    assert_eq!(rec.target, c);
    assert_eq!(call(drti_patch_test_a), 4);

    // A record that does not describe what is written is refused.
    let mut forged = rec.clone();
    forged.target = b;
    assert!(matches!(
        p.revert(&forged),
        Err(PatchError::BadRecord { .. })
    ));
    assert_eq!(call(drti_patch_test_a), 4);

    p.revert(&rec).unwrap();
    assert_eq!(code_at(a), rec.original);
    assert_eq!(call(drti_patch_test_a), 1);
    // The jump is gone: reverting or retargeting the same record again is refused.
    assert!(matches!(
        p.revert(&rec),
        Err(PatchError::UnexpectedBytes { .. })
    ));
    assert!(matches!(
        p.retarget(&mut rec, b),
        Err(PatchError::UnexpectedBytes { .. })
    ));
    assert_eq!(call(drti_patch_test_a), 1);
}

#[test]
fn patch_endbr64_entry() {
    let p = Patcher::new().unwrap();
    let e = addr(drti_patch_test_cet);
    assert_eq!(Patcher::patch_point(e).unwrap(), e + 4);
    let rec = p.redirect(e, addr(drti_patch_test_b)).unwrap();
    assert_eq!(rec.patch_point, e + 4);
    assert_eq!(
        code_at(e)[..4],
        [0xf3, 0x0f, 0x1e, 0xfa],
        "endbr64 untouched"
    );
    assert_eq!(call(drti_patch_test_cet), 2);
    p.revert(&rec).unwrap();
    assert_eq!(call(drti_patch_test_cet), 1);
}

#[test]
fn patch_refuses_entries_without_nop() {
    let b = addr(drti_patch_test_b);
    let err = Patcher::patch_point(b).unwrap_err();
    assert!(matches!(err, PatchError::NotPatchable { entry, .. } if entry == b));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{b:#x}")) && msg.contains("unoptimised"),
        "{msg}"
    );

    let g = addr(drti_patch_test_gcc);
    assert!(Patcher::patch_point(g).is_err());
    let p = Patcher::new().unwrap();
    assert!(p.redirect(g, b).is_err());
    assert_eq!(call(drti_patch_test_gcc), 1);
    assert!(
        Patcher::patch_point(0).is_err(),
        "unmapped address is an error, not a crash"
    );
}

#[test]
fn patch_far_target_uses_trampoline() {
    let p = Patcher::new().unwrap();
    let f = addr(drti_patch_test_far);
    let three = FarCode::new(f, &MOV_EAX_3_RET);
    let five = FarCode::new(three.addr, &MOV_EAX_5_RET);

    let mut rec = p.redirect(f, three.addr).unwrap();
    let t1 = rec.trampoline.expect("far target needs a trampoline");
    assert!(t1.abs_diff(f) < 1 << 31);
    assert_eq!(call(drti_patch_test_far), 3);

    // Far to far: a new slot; the old one is left as it was (a thread may be in it).
    p.retarget(&mut rec, five.addr).unwrap();
    let t2 = rec.trampoline.unwrap();
    assert_ne!(t1, t2);
    assert_eq!(call(drti_patch_test_far), 5);
    let old: [u8; 16] = ProcMem::open().unwrap().read_exact(t1).unwrap();
    assert_eq!(old, trampoline::slot_bytes(three.addr));

    // Far to near: direct jump, no trampoline.
    p.retarget(&mut rec, addr(drti_patch_test_b)).unwrap();
    assert_eq!(rec.trampoline, None);
    assert_eq!(call(drti_patch_test_far), 2);

    p.revert(&rec).unwrap();
    assert_eq!(call(drti_patch_test_far), 1);
}

#[test]
fn patch_trampoline_pool_fills_pages() {
    let mem = ProcMem::open().unwrap();
    let from = addr(drti_patch_test_b);
    let mut pool = Trampolines::default();
    let slots: Vec<u64> = (0..257)
        .map(|i| pool.make(&mem, from, 0x1000 + i).unwrap())
        .collect();
    let page = slots[0];
    assert_eq!(page % 4096, 0);
    for (i, &s) in slots[..256].iter().enumerate() {
        assert_eq!(s, page + i as u64 * SLOT, "one page serves 256 slots");
        assert!(s.abs_diff(from) < 1 << 31);
    }
    assert_ne!(
        slots[256] & !0xfff,
        page,
        "a full page gives way to a new one"
    );
    let s7: [u8; 16] = mem.read_exact(slots[7]).unwrap();
    assert_eq!(s7, trampoline::slot_bytes(0x1007));
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.starts_with(&format!("{page:x}-")))
        .expect("trampoline page mapped");
    assert!(
        line.split_whitespace().nth(1).unwrap().starts_with("r-x"),
        "{line}"
    );
}

#[test]
fn patch_stress_concurrent_callers() {
    let p = Patcher::new().unwrap();
    let f = addr(drti_patch_test_stress);
    let b = addr(drti_patch_test_b);
    let stop = AtomicBool::new(false);
    let (ones, twos, bad) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let traps_before = Patcher::traps_handled();
    let start = Instant::now();
    let mut cycles = 0u32;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (mut n1, mut n2, mut nbad) = (0, 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    match call(drti_patch_test_stress) {
                        1 => n1 += 1,
                        2 => n2 += 1,
                        _ => nbad += 1,
                    }
                }
                ones.fetch_add(n1, Ordering::Relaxed);
                twos.fetch_add(n2, Ordering::Relaxed);
                bad.fetch_add(nbad, Ordering::Relaxed);
            });
        }
        while cycles < 2000 || start.elapsed() < Duration::from_secs(1) {
            let rec = p.redirect(f, b).unwrap();
            p.revert(&rec).unwrap();
            cycles += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (ones, twos, bad) = (ones.into_inner(), twos.into_inner(), bad.into_inner());
    eprintln!(
        "stress: {cycles} redirect/revert cycles, results 1:{ones} 2:{twos} bad:{bad}, \
         int3 traps handled (all tests): {}",
        Patcher::traps_handled() - traps_before
    );
    assert_eq!(bad, 0);
    assert!(ones > 0 && twos > 0, "callers saw both versions");
    assert_eq!(call(drti_patch_test_stress), 1);
}

#[test]
fn patch_never_writable_and_executable() {
    let p = Patcher::new().unwrap();
    let w = addr(drti_patch_test_wx);
    let far = FarCode::new(w, &MOV_EAX_3_RET);
    let stop = AtomicBool::new(false);
    let patched = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let to = if i.is_multiple_of(2) {
                    addr(drti_patch_test_b)
                } else {
                    far.addr
                };
                let rec = p.redirect(w, to).unwrap();
                p.revert(&rec).unwrap();
                i += 1;
            }
            patched.store(i, Ordering::Relaxed);
        });
        for _ in 0..300 {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            for line in maps.lines() {
                let perms = line.split_whitespace().nth(1).unwrap_or("");
                assert!(
                    !(perms.contains('w') && perms.contains('x')),
                    "writable and executable mapping: {line}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(patched.into_inner() > 0);
    assert_eq!(call(drti_patch_test_wx), 1);
}

#[test]
fn patch_foreign_int3_keeps_default_action() {
    Patcher::new().unwrap();
    // SAFETY: the child only makes async-signal-safe calls (setrlimit, int3, _exit), as
    // required after fork in a multi-threaded process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above; the int3 is not at a patch point, so our handler must pass
        // it on to SIG_DFL and the child must die of SIGTRAP (without a core file).
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            core::arch::asm!("int3");
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status), "child exited with {status:#x}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGTRAP);
}
