//! `drti-jitd`: the compiler process. The agent starts one per process (`--stdin`), or
//! connects to a shared one (`--listen PATH`, `DRTI_JIT_SERVER=PATH` in the agent).

use drti_jitd::compile::JitCompiler;
use drti_jitd::{serve, Store};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

const HELP: &str = "\
drti-jitd — compiles for the drti agent, outside the application

Usage:
  drti-jitd --stdin [--for PID]
                           serve the one session whose socket is standard input (how the
                           agent starts a private compiler: it detaches, closes every other
                           inherited file descriptor, and ends when the session does;
                           --for names the application's process id, for ps)
  drti-jitd --listen PATH  serve every agent of this user that connects to the Unix socket
                           PATH (created with mode 0600; agents use DRTI_JIT_SERVER=PATH)
  drti-jitd --version | --help
";

/// The JIT's log: each message goes back to the agent with the compile it belongs to;
/// errors are also printed on this process's stderr (a shared server's log).
unsafe extern "C" fn log(level: u32, msg: *const u8, len: usize) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the JIT passes `len` valid bytes.
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) }).into_owned();
    if level == bitcode_embed::jit_abi::JIT_LOG_ERROR {
        eprintln!("drti-jitd: {text}");
    }
    drti_jitd::messages::push(level, text);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        // `--for PID` only names the application served (for ps and for tests).
        ["--stdin"] | ["--stdin", "--for", _] => stdin_session(),
        ["--listen", path] => listen(path),
        ["--version"] => {
            println!("drti-jitd {}", env!("CARGO_PKG_VERSION"));
            0
        }
        ["--help"] | ["-h"] => {
            print!("{HELP}");
            0
        }
        _ => {
            eprint!("drti-jitd: expected --stdin or --listen PATH\n\n{HELP}");
            2
        }
    };
    std::process::exit(code);
}

fn compiler() -> Option<JitCompiler> {
    match JitCompiler::new(Some(log)) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("drti-jitd: cannot start the JIT: {e}");
            None
        }
    }
}

/// Detaches (the agent's process must never see this one as its child) and serves fd 0.
fn stdin_session() -> i32 {
    // SAFETY: single-threaded at this point: closing descriptors this process inherited
    // (all but the standard ones) and forking are safe; the parent exits at once.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        match libc::fork() {
            -1 => return 1,
            0 => {
                libc::setsid();
            }
            _ => libc::_exit(0),
        }
    }
    let Some(compiler) = compiler() else { return 1 };
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 is the session's socket, handed to this process; it is owned from now on.
    let mut stream = unsafe { UnixStream::from_raw_fd(0) };
    let store = Store::new(drti_jitd::store::DEFAULT_MAX_BYTES);
    if let Some(why) = serve(&mut stream, &store, &compiler) {
        eprintln!("drti-jitd: session ended: {why}");
    }
    0
}

/// Serves every connection to `path`, each in a thread, sharing modules.
fn listen(path: &str) -> i32 {
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("drti-jitd: cannot listen on {path}: {e}");
            return 1;
        }
    };
    let Some(compiler) = compiler() else { return 1 };
    let compiler = Arc::new(compiler);
    let store = Arc::new(Store::new(drti_jitd::store::DEFAULT_MAX_BYTES));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        let (store, compiler) = (store.clone(), compiler.clone());
        std::thread::spawn(move || {
            if let Some(why) = serve(&mut stream, &store, compiler.as_ref()) {
                eprintln!("drti-jitd: session ended: {why}");
            }
        });
    }
    0
}
