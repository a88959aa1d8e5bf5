//! drti-cc / drti-c++: see `drti_instrument::driver`.
fn main() {
    // Like clang and other Unix tools, end quietly (by SIGPIPE) when whoever reads our
    // output goes away; Rust's runtime ignores SIGPIPE, which makes print! panic instead.
    // SAFETY: restores the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_else(|| "drti-cc".into());
    std::process::exit(drti_instrument::driver::main_os(&argv0, args.collect()));
}
