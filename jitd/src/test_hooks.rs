//! Failures on demand, for the tests of crash isolation (never set in normal use; the
//! agent starts the compiler with the application's environment):
//! - `DRTI_TEST_JITD_DELAY_MS=N`: every compile first sleeps N ms (a slow compile, so a
//!   test can kill the compiler in the middle of one);
//! - `DRTI_TEST_JITD_ABORT=1`: every compile aborts the process (an LLVM fatal error).

use std::time::Duration;

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Called before each compile.
pub fn before_compile() {
    if let Some(ms) = env_ms("DRTI_TEST_JITD_DELAY_MS") {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if std::env::var_os("DRTI_TEST_JITD_ABORT").is_some_and(|v| v == "1") {
        eprintln!("drti-jitd: aborting on purpose (DRTI_TEST_JITD_ABORT=1)");
        std::process::abort();
    }
}
