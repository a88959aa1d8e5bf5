//! What the JIT and LLVM say during a compile, kept per thread (each session compiles on
//! its own thread) and sent back with the compile's answer.

use std::cell::RefCell;

/// At most this many messages per compile (LLVM can be chatty on a large function).
const MAX: usize = 256;

thread_local! {
    static MESSAGES: RefCell<Vec<(u32, String)>> = const { RefCell::new(Vec::new()) };
}

/// Keeps one message of the current compile on this thread.
pub fn push(level: u32, text: String) {
    MESSAGES.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < MAX {
            m.push((level, text));
        }
    });
}

/// The messages kept on this thread since the last call.
pub fn take() -> Vec<(u32, String)> {
    MESSAGES.with(|m| std::mem::take(&mut *m.borrow_mut()))
}
