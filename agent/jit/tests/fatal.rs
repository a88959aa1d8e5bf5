//! An LLVM fatal error (issue 10 item 3) does not end the process: the JIT logs it,
//! marks itself off and parks the thread that hit it; later requests fail at once.
//! Its own test binary: the JIT stays off for the rest of the process.

mod common;

use std::time::{Duration, Instant};

extern "C" fn target(x: i64) -> i64 {
    x + 1
}

// An AArch64 intrinsic cannot be selected by the x86 back end: "Cannot select", a fatal
// error inside code generation.
const IR: &str = r#"
declare void @llvm.aarch64.hint(i32)
define i64 @t(i64 %x) {
  %r = add i64 %x, 1
  ret i64 %r
}
define i64 @apply(ptr %f, i64 %x) {
  call void @llvm.aarch64.hint(i32 1)
  %r = call i64 %f(i64 %x)
  ret i64 %r
}
"#;

#[test]
fn a_fatal_llvm_error_parks_the_thread_and_turns_the_jit_off() {
    common::init();
    let bc = common::bitcode(IR);
    let t = target as *const () as usize as u64;
    let symbols = vec![("t", t), ("apply", t + 16)];
    let (bc2, symbols2) = (bc.clone(), symbols.clone());
    let worker = std::thread::spawn(move || {
        let mut misses = 0u64;
        common::compile(&bc2, &symbols2, "apply", &[("t", t, std::ptr::null())], &mut misses).ok
    });
    let start = Instant::now();
    while !drti_jit::report::dead() {
        assert!(!worker.is_finished(), "the compile returned: {:?}", worker.join());
        assert!(start.elapsed() < Duration::from_secs(60), "no fatal error after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let logged = common::LOGGED.lock().unwrap().clone();
    assert!(logged.iter().any(|(level, m)| *level == 1 && m.contains("LLVM fatal error") && m.contains("Cannot select")), "{logged:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!worker.is_finished(), "the thread that hit the fatal error must not return into LLVM");
    // The JIT refuses further work instead of touching LLVM again.
    let mut misses = 0u64;
    let res = common::compile(&bc, &symbols, "apply", &[("t", t, std::ptr::null())], &mut misses);
    assert_eq!(res.ok, 0);
    assert!(res.error_text().contains("JIT is off"), "{}", res.error_text());
}
