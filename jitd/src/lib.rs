//! The compiler process's server side (issue 12): module store and sessions. The compile
//! itself is behind [`Compiler`], so the server logic is tested without LLVM; the binary
//! plugs in the JIT's object-producing compile.
//!
//! A session follows `bitcode_embed::protocol`: a hello, then compile requests; a request
//! naming modules the server does not hold gets a module request first. Modules are kept
//! by the SHA-256 of their embedded bitcode, checked on arrival, and shared by every session
//! of a server (a shared server compiles for many processes running the same binaries).
//! Depends on bitcode-embed, drti-cache (hashes) and drti-jit; links LLVM.

pub mod compile;
pub mod messages;
pub mod session;
pub mod store;
pub mod test_hooks;

pub use session::serve;
pub use store::{Store, StoredModule};

use bitcode_embed::protocol::{CompileRequest, CompileResult};
use std::sync::Arc;

/// Produces the answer to one compile request whose modules are all in the store.
pub trait Compiler: Send + Sync {
    /// Compiles `req`; `module` gives a module by hash (every module the request names is
    /// there).
    fn compile(&self, req: &CompileRequest, module: &dyn Fn(&bitcode_embed::protocol::Hash) -> Option<Arc<StoredModule>>) -> CompileResult;

    /// The LLVM version the compiles use (sent in the welcome).
    fn llvm_version(&self) -> String;
}
