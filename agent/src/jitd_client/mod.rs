//! The agent's side of `drti-jitd`, the compiler process (issue 12): start it or connect to
//! a running one, open a session, send compile requests (and the modules the server asks
//! for), and never wait for it longer than a deadline.
//!
//! The server contract this client relies on:
//! * `drti-jitd --stdin`: fd 0 is the session's socket. The server closes every other file
//!   descriptor it inherited, detaches (forks; the process the agent started exits at once,
//!   so the application never sees the compiler as its child, and a `wait()` of the
//!   application never reaps it), and serves the session until the socket closes;
//! * `drti-jitd --listen PATH`: a shared server, reached through `DRTI_JIT_SERVER=PATH`. The
//!   agent only talks to one running as its own user (`SO_PEERCRED`): what comes back is
//!   code the process will run.
//!
//! [`restarts`] is the pure policy for a server that died; [`spawn`] starts one;
//! [`session`] speaks `bitcode_embed::protocol`.

pub mod restarts;
pub mod session;
pub mod spawn;

pub use restarts::Restarts;
pub use session::{ModuleData, Session, SessionError};
pub use spawn::Endpoint;
