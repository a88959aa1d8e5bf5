//! ORC's session errors (issue 10 item 4) go to the log callback, not to stderr, and fail
//! the compile that caused them.

mod common;

extern "C" fn target(x: i64) -> i64 {
    x + 1
}

// `@nowhere` is neither in the address table nor in the process.
const IR: &str = r#"
declare i64 @nowhere(i64)
define i64 @t(i64 %x) {
  %r = add i64 %x, 1
  ret i64 %r
}
define i64 @apply(ptr %f, i64 %x) {
  %a = call i64 @nowhere(i64 %x)
  %r = call i64 %f(i64 %a)
  ret i64 %r
}
"#;

#[test]
fn an_unresolved_symbol_fails_the_compile_and_is_logged() {
    common::init();
    let bc = common::bitcode(IR);
    let t = target as *const () as usize as u64;
    let mut misses = 0u64;
    let res = common::compile(&bc, &[("t", t), ("apply", t + 16)], "apply", &[("t", t, std::ptr::null())], &mut misses);
    assert_eq!(res.ok, 0);
    assert!(res.error_text().contains("nowhere"), "{}", res.error_text());
    let logged = common::LOGGED.lock().unwrap().clone();
    assert!(logged.iter().any(|(level, m)| *level == 3 && m.contains("JIT session error") && m.contains("nowhere")), "{logged:?}");
}
