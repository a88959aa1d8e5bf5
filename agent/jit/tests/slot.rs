//! Guards with a slot (issue 10 item 2): F+ compares the call's target with an atomic
//! load of the slot, not with the address the target had at compile time, so clearing
//! (or changing) the slot sends even code compiled earlier to the real call.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

/// The "program's" function at the target's address: distinguishable from the inlined
/// copy of `twice` (2x).
extern "C" fn real_twice(x: i64) -> i64 {
    1000 + x
}

extern "C" fn other(x: i64) -> i64 {
    -x
}

extern "C" fn apply_original(f: extern "C" fn(i64) -> i64, x: i64) -> i64 {
    f(x)
}

const IR: &str = r#"
define i64 @twice(i64 %x) {
  %r = mul i64 %x, 2
  ret i64 %r
}
define i64 @apply(ptr %f, i64 %x) {
  %r = call i64 %f(i64 %x)
  ret i64 %r
}
"#;

type Apply = extern "C" fn(extern "C" fn(i64) -> i64, i64) -> i64;

#[test]
fn the_guard_reads_the_slot_at_run_time() {
    common::init();
    let bc = common::bitcode(IR);
    let twice_addr = real_twice as *const () as usize as u64;
    let symbols = [("twice", twice_addr), ("apply", apply_original as *const () as usize as u64)];
    static SLOT: AtomicU64 = AtomicU64::new(0);
    SLOT.store(twice_addr, Ordering::SeqCst);
    let mut misses = 0u64;
    let res = common::compile(&bc, &symbols, "apply", &[("twice", twice_addr, SLOT.as_ptr())], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: F+ has apply's signature.
    let plus: Apply = unsafe { std::mem::transmute(res.code as usize) };
    assert_eq!(plus(real_twice, 5), 10, "slot holds the target: the inlined copy runs");
    SLOT.store(0, Ordering::SeqCst);
    assert_eq!(plus(real_twice, 5), 1005, "cleared slot: the real call runs");
    SLOT.store(other as *const () as usize as u64, Ordering::SeqCst);
    assert_eq!(plus(real_twice, 5), 1005, "slot holds another function: the real call runs");
    assert_eq!(plus(other, 5), 10, "the slot, not the call's target, decides");
    SLOT.store(twice_addr, Ordering::SeqCst);
    assert_eq!(plus(real_twice, 6), 12);
    // SAFETY: the counter is only written by F+ on this thread.
    assert_eq!(unsafe { std::ptr::read_volatile(&misses) }, 2);
}

#[test]
fn without_a_slot_the_guard_compares_the_address() {
    common::init();
    let bc = common::bitcode(IR);
    let twice_addr = real_twice as *const () as usize as u64;
    let symbols = [("twice", twice_addr), ("apply", apply_original as *const () as usize as u64)];
    let mut misses = 0u64;
    let res = common::compile(&bc, &symbols, "apply", &[("twice", twice_addr, std::ptr::null())], &mut misses);
    assert_eq!(res.ok, 1, "{}", res.error_text());
    // SAFETY: F+ has apply's signature.
    let plus: Apply = unsafe { std::mem::transmute(res.code as usize) };
    assert_eq!(plus(real_twice, 5), 10);
    assert_eq!(plus(other, 5), -5);
}
