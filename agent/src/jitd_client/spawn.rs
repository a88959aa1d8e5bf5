//! Reaching a compiler process: start a private one, or connect to a shared one.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Name of the compiler binary, installed next to `libdrti_agent.so`.
pub const PROGRAM: &str = "drti-jitd";

/// Where the compiler is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Start `program --stdin` for this process alone.
    Spawn {
        /// Path of `drti-jitd`.
        program: PathBuf,
    },
    /// Connect to a running server's socket (`DRTI_JIT_SERVER`).
    Connect {
        /// The Unix socket path.
        socket: PathBuf,
    },
}

/// A connection to a compiler, and whether this agent started it.
pub struct Connection {
    /// The session's socket (close-on-exec).
    pub stream: UnixStream,
    /// True for a private server (the agent may kill it when it stops answering).
    pub spawned: bool,
    /// The process started (it detaches and exits within milliseconds): reap it with
    /// [`reap`] so it leaves no zombie. Nothing waits for it here.
    pub starter: Option<std::process::Child>,
}

/// Reaps the started processes that have exited; keeps the others.
pub fn reap(children: &mut Vec<std::process::Child>) {
    // An error is ECHILD: the application reaped it (a SIGCHLD handler waiting for any child).
    children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
}

impl Endpoint {
    /// `DRTI_JIT_SERVER` if set (it must be an absolute path), else the `drti-jitd` in
    /// `agent_dir` (the directory of the agent library).
    pub fn choose(server: Option<&OsStr>, agent_dir: Option<&Path>) -> Result<Endpoint, String> {
        if let Some(s) = server {
            let p = PathBuf::from(s);
            if !p.is_absolute() {
                return Err(format!("DRTI_JIT_SERVER={s:?} is not an absolute socket path"));
            }
            return Ok(Endpoint::Connect { socket: p });
        }
        let dir = agent_dir.ok_or("the agent library's directory is unknown, so drti-jitd cannot be found")?;
        Ok(Endpoint::Spawn { program: dir.join(PROGRAM) })
    }

    /// Opens a connection; a started server gets `stderr` (e.g. a copy of the agent's log
    /// descriptor) as its standard error, or none.
    pub fn open(&self, stderr: Option<OwnedFd>) -> Result<Connection, String> {
        match self {
            Endpoint::Spawn { program } => spawn(program, stderr).map(|(stream, child)| Connection { stream, spawned: true, starter: Some(child) }),
            Endpoint::Connect { socket } => connect(socket).map(|stream| Connection { stream, spawned: false, starter: None }),
        }
    }
}

/// Starts `program --stdin` with one end of a socket pair as its standard input. No
/// `pre_exec`, so the standard library uses `posix_spawn` and none of the application's
/// `pthread_atfork` handlers run; the server closes what else it inherited itself.
fn spawn(program: &Path, stderr: Option<OwnedFd>) -> Result<(UnixStream, std::process::Child), String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(["--stdin", "--for", &std::process::id().to_string()])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(stderr.map(Stdio::from).unwrap_or_else(Stdio::null))
        // Its own process group: a ^C or a signal to the application's group is not its.
        .process_group(0)
        // The compiler must not load the agent (or anything else the program preloads).
        .env_remove("LD_PRELOAD");
    let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    Ok((ours, child))
}

/// Connects to a shared server, which must run as this process's effective user.
fn connect(socket: &Path) -> Result<UnixStream, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let uid = peer_uid(&stream).map_err(|e| format!("{}: cannot read the server's credentials: {e}", socket.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if uid != me {
        return Err(format!("{}: the server runs as uid {uid}, not as this user (uid {me}); its code is not trusted", socket.display()));
    }
    Ok(stream)
}

/// The user id of the process at the other end of `stream`.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into `cred`, a ucred on our stack.
    let r = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_variable_wins_and_must_be_absolute() {
        let e = Endpoint::choose(Some(OsStr::new("/run/user/1/drti.sock")), Some(Path::new("/opt/drti"))).unwrap();
        assert_eq!(e, Endpoint::Connect { socket: "/run/user/1/drti.sock".into() });
        assert!(Endpoint::choose(Some(OsStr::new("drti.sock")), None).unwrap_err().contains("absolute"));
        let e = Endpoint::choose(None, Some(Path::new("/opt/drti"))).unwrap();
        assert_eq!(e, Endpoint::Spawn { program: "/opt/drti/drti-jitd".into() });
        assert!(Endpoint::choose(None, None).is_err());
    }

    #[test]
    fn a_missing_program_or_socket_is_an_error_naming_it() {
        let e = Endpoint::Spawn { program: "/nonexistent/drti-jitd".into() };
        assert!(e.open(None).err().unwrap().contains("/nonexistent/drti-jitd"));
        let e = Endpoint::Connect { socket: "/nonexistent/drti.sock".into() };
        assert!(e.open(None).err().unwrap().contains("/nonexistent/drti.sock"));
    }
}
