//! One session with a compiler process, over `bitcode_embed::protocol`.

use bitcode_embed::protocol::{CompileRequest, CompileResult, Hash, Message, WireError, PROTOCOL_VERSION};
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Why a session cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The server is gone or stopped answering (died, closed, timed out): start another
    /// one if the restart budget allows.
    Gone(String),
    /// The server answered something this agent cannot use (another protocol version, a
    /// malformed or unexpected message, an error): do not retry with the same server.
    Protocol(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Gone(m) => write!(f, "the compiler process is gone: {m}"),
            SessionError::Protocol(m) => write!(f, "the compiler process answered wrongly: {m}"),
        }
    }
}

/// What the server needs of a module: its clean bitcode as embedded and its global names
/// in address-table order.
#[derive(Clone)]
pub struct ModuleData {
    /// The embedded (compressed) clean bitcode.
    pub compressed: std::sync::Arc<Vec<u8>>,
    /// Its size decompressed.
    pub raw_size: u64,
    /// Global names, address-table order.
    pub globals: std::sync::Arc<Vec<String>>,
}

/// An open session.
pub struct Session {
    stream: UnixStream,
    /// The server's process id, from its welcome.
    pub server_pid: u32,
    /// The LLVM version it compiles with.
    pub llvm: String,
    /// Who it is (`protocol::compiler_identity`), from its welcome.
    pub identity: String,
}

fn wire(e: WireError) -> SessionError {
    match e {
        WireError::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => SessionError::Gone("no answer in time".into()),
        WireError::Io(e) => SessionError::Gone(e.to_string()),
        WireError::Malformed(m) => SessionError::Protocol(m),
    }
}

impl Session {
    /// Greets the server on `stream`; it must welcome this protocol version within `timeout`.
    pub fn open(stream: UnixStream, timeout: Duration) -> Result<Session, SessionError> {
        let mut s = Session { stream, server_pid: 0, llvm: String::new(), identity: String::new() };
        s.send(&Message::Hello { protocol: PROTOCOL_VERSION, drti: env!("CARGO_PKG_VERSION").into(), pid: std::process::id() })?;
        match s.receive(Instant::now() + timeout)? {
            Message::Welcome { protocol, pid, llvm, drti } if protocol == PROTOCOL_VERSION => {
                s.server_pid = pid;
                s.llvm = llvm;
                s.identity = drti;
                Ok(s)
            }
            Message::Welcome { protocol, .. } => Err(SessionError::Protocol(format!("server speaks protocol {protocol}, the agent {PROTOCOL_VERSION}"))),
            Message::Error { text } => Err(SessionError::Protocol(format!("server refused the session: {text}"))),
            other => Err(SessionError::Protocol(format!("expected a welcome, got {}", kind(&other)))),
        }
    }

    fn send(&mut self, m: &Message) -> Result<(), SessionError> {
        m.write_to(&mut self.stream).map_err(wire)
    }

    fn receive(&mut self, deadline: Instant) -> Result<Message, SessionError> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).map_err(|e| SessionError::Gone(e.to_string()))?;
        match Message::read_from(&mut self.stream).map_err(wire)? {
            Some(m) => Ok(m),
            None => Err(SessionError::Gone("the server closed the session".into())),
        }
    }

    /// Compiles `req`, sending the modules the server asks for (`module_of` gives a
    /// module's embedded bitcode and global names by hash); the whole exchange ends within
    /// `timeout`.
    pub fn compile(&mut self, req: &CompileRequest, module_of: &mut dyn FnMut(&Hash) -> Option<ModuleData>, timeout: Duration) -> Result<CompileResult, SessionError> {
        let deadline = Instant::now() + timeout;
        self.send(&Message::Compile(req.clone()))?;
        // One round of modules is all a correct server needs; a second request for the
        // same compile means it does not keep what it is sent.
        let mut rounds = 0;
        loop {
            match self.receive(deadline)? {
                Message::Compiled(r) if r.id == req.id => return Ok(r),
                Message::NeedModules { id, hashes } if id == req.id && rounds == 0 => {
                    rounds += 1;
                    for h in &hashes {
                        let Some(m) = module_of(h) else {
                            return Err(SessionError::Protocol("the server asked for a module this process does not have".into()));
                        };
                        self.send(&Message::PutModule { hash: *h, compressed: m.compressed.to_vec(), raw_size: m.raw_size, globals: m.globals.to_vec() })?;
                    }
                    self.send(&Message::Compile(req.clone()))?;
                }
                Message::Error { text } => return Err(SessionError::Protocol(text)),
                other => return Err(SessionError::Protocol(format!("unexpected {} while compiling request {}", kind(&other), req.id))),
            }
        }
    }
}

/// A message's name, for errors.
fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Welcome { .. } => "welcome",
        Message::PutModule { .. } => "module",
        Message::Compile(_) => "compile request",
        Message::NeedModules { .. } => "module request",
        Message::Compiled(_) => "compile result",
        Message::Error { .. } => "error",
    }
}
