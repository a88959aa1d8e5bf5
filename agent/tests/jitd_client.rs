//! The agent's compiler-process client against a fake `drti-jitd`: this test binary is
//! also the fake server (run with `--stdin`, behaviour from `DRTI_FAKE_JITD`), so the
//! client's real spawn path is exercised: socket on standard input, detaching server,
//! handshake, modules on request, a server that dies, hangs or speaks another version.

use bitcode_embed::protocol::*;
use drti_agent::jitd_client::{Endpoint, ModuleData, Session, SessionError};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODULE: Hash = [7; 32];

/// A test case: Err says what went wrong.
type Case = fn() -> Result<(), String>;

fn main() {
    if std::env::args().any(|a| a == "--stdin") {
        fake_server();
    }
    let tests: &[(&str, Case)] = &[
        ("a_spawned_server_compiles_after_asking_for_the_module", spawned_compile),
        ("a_server_that_dies_mid_compile_is_gone_at_once", server_dies),
        ("a_server_that_hangs_is_gone_after_the_deadline", server_hangs),
        ("another_protocol_version_is_refused", old_protocol),
        ("garbage_from_the_server_is_a_protocol_error", garbage),
        ("a_shared_server_of_the_same_user_is_accepted", shared_server),
    ];
    let mut failed = 0;
    for (name, t) in tests {
        match t() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    println!("test result: {} passed; {failed} failed", tests.len() - failed);
    std::process::exit((failed > 0) as i32);
}

/// The fake server: detaches like drti-jitd, then serves fd 0.
fn fake_server() -> ! {
    // SAFETY: fork in a single-threaded process (the test binary's main, before any test
    // thread); the child only runs this function's Rust code.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => std::process::exit(70),
        _ => std::process::exit(0),
    }
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 is the socket the client passed; this process owns it from now on.
    let stream = unsafe { UnixStream::from_raw_fd(0) };
    serve(stream, &std::env::var("DRTI_FAKE_JITD").unwrap_or_default());
    std::process::exit(0);
}

fn serve(mut s: UnixStream, mode: &str) {
    let mut have = false;
    while let Ok(Some(m)) = Message::read_from(&mut s) {
        let reply = match m {
            Message::Hello { .. } if mode == "garbage" => {
                use std::io::Write;
                let _ = s.write_all(b"this is not a frame at all");
                return;
            }
            Message::Hello { .. } => Message::Welcome {
                protocol: if mode == "old" { PROTOCOL_VERSION + 1 } else { PROTOCOL_VERSION },
                drti: "fake".into(),
                llvm: "19".into(),
                pid: std::process::id(),
            },
            Message::PutModule { hash, compressed, raw_size, globals } => {
                have = hash == MODULE && compressed == b"clean bitcode" && raw_size == 99 && globals == ["run", "op"];
                continue;
            }
            Message::Compile(_) if mode == "die" => std::process::exit(9),
            Message::Compile(_) if mode == "hang" => loop {
                std::thread::sleep(Duration::from_secs(60));
            },
            Message::Compile(r) if !have => Message::NeedModules { id: r.id, hashes: vec![r.function.module] },
            Message::Compile(r) => Message::Compiled(CompileResult {
                id: r.id,
                phases: Phases { cpu_ms: 1.0, ..Phases::default() },
                outcome: Outcome::Object { bytes: b"\x7fELF".to_vec(), entry: format!("drti.plus.{}", r.function.name) },
                messages: vec![],
            }),
            _ => Message::Error { text: "unexpected".into() },
        };
        if reply.write_to(&mut s).is_err() {
            return;
        }
    }
}

fn request() -> CompileRequest {
    CompileRequest {
        id: 1,
        opt_level: 2,
        modules: vec![ModuleUse { hash: MODULE, null_globals: vec![] }],
        function: FnRef { module: MODULE, name: "run".into() },
        sites: vec![SiteReq { owner: None, ordinal: 0, targets: vec![TargetReq { function: FnRef { module: MODULE, name: "op".into() }, slot: false }], sample_site: None }],
        probes: vec![],
        countdown_static: false,
        inject_failure: false,
        osr: None,
    }
}

fn bitcode(h: &Hash) -> Option<ModuleData> {
    (*h == MODULE).then(|| ModuleData { compressed: Arc::new(b"clean bitcode".to_vec()), raw_size: 99, globals: Arc::new(vec!["run".into(), "op".into()]) })
}

/// A session with a fresh fake server in `mode`.
fn spawned(mode: &str) -> Result<Session, SessionError> {
    // SAFETY (set_var): this test binary runs its tests one after another on one thread.
    std::env::set_var("DRTI_FAKE_JITD", mode);
    let me = std::env::current_exe().unwrap();
    let ep = Endpoint::Spawn { program: me };
    let conn = ep.open(None).map_err(SessionError::Gone)?;
    if !conn.spawned {
        return Err(SessionError::Protocol("not spawned".into()));
    }
    Session::open(conn.stream, Duration::from_secs(10))
}

fn spawned_compile() -> Result<(), String> {
    let mut s = spawned("ok").map_err(|e| e.to_string())?;
    let mut asked = 0;
    let r = s
        .compile(
            &request(),
            &mut |h| {
                asked += 1;
                bitcode(h)
            },
            Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?;
    if asked != 1 || r.outcome != (Outcome::Object { bytes: b"\x7fELF".to_vec(), entry: "drti.plus.run".into() }) {
        return Err(format!("asked {asked} times, got {r:?}"));
    }
    // The server is detached: not a child of this process.
    // SAFETY: waitpid on a pid only reads its status; the pid comes from the server.
    let child = unsafe { libc::waitpid(s.server_pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
    if child != -1 {
        return Err(format!("the server {} is still this process's child", s.server_pid));
    }
    Ok(())
}

fn server_dies() -> Result<(), String> {
    let mut s = spawned("die").map_err(|e| e.to_string())?;
    let t = Instant::now();
    match s.compile(&request(), &mut bitcode, Duration::from_secs(20)) {
        Err(SessionError::Gone(_)) if t.elapsed() < Duration::from_secs(5) => Ok(()),
        other => Err(format!("{other:?} after {:?}", t.elapsed())),
    }
}

fn server_hangs() -> Result<(), String> {
    let mut s = spawned("hang").map_err(|e| e.to_string())?;
    let t = Instant::now();
    let r = s.compile(&request(), &mut bitcode, Duration::from_millis(300));
    // SAFETY: kill of the fake server this test started (its pid from its welcome).
    unsafe { libc::kill(s.server_pid as i32, libc::SIGKILL) };
    match r {
        Err(SessionError::Gone(m)) if m.contains("in time") && t.elapsed() < Duration::from_secs(5) => Ok(()),
        other => Err(format!("{other:?} after {:?}", t.elapsed())),
    }
}

fn old_protocol() -> Result<(), String> {
    match spawned("old") {
        Err(SessionError::Protocol(m)) if m.contains("protocol") => Ok(()),
        other => Err(format!("{:?}", other.map(|s| s.server_pid))),
    }
}

fn garbage() -> Result<(), String> {
    match spawned("garbage") {
        Err(SessionError::Protocol(m)) if m.contains("magic") => Ok(()),
        other => Err(format!("{:?}", other.map(|s| s.server_pid))),
    }
}

fn shared_server() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("drti-jitd-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("jitd.sock");
    let listener = UnixListener::bind(&path).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || {
        if let Ok((s, _)) = listener.accept() {
            serve(s, "ok");
        }
    });
    let ep = Endpoint::choose(Some(path.as_os_str()), None)?;
    let conn = ep.open(None)?;
    let mut s = Session::open(conn.stream, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let r = s.compile(&request(), &mut bitcode, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    drop(s);
    server.join().map_err(|_| "server thread panicked".to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if conn.spawned || !matches!(r.outcome, Outcome::Object { .. }) {
        return Err(format!("{r:?}"));
    }
    Ok(())
}
