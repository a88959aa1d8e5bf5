//! drti's persistent code cache (issue 12): compiled code stored under a key made of
//! everything that determines it (module bitcode hash, compile plan, drti and LLVM
//! versions, CPU features), so a second run of a program, or another process running the
//! same code, patches from the cache instead of compiling.
//! Depends on no other drti crate and not on LLVM (the agent, `drti-jitd` and the `drti`
//! tool may all use it).
//!
//! Layout: `<dir>/v1/<2 hex>/<64 hex>.entry`, one file per key ([`entry`] format: header,
//! key, length and SHA-256 of the payload, payload). Many processes share a directory
//! without locks:
//! - a writer writes a private temporary file in the entry's directory and renames it
//!   over the entry, so a reader opens either a whole old entry or a whole new one;
//! - a reader checks the header, key, length and checksum before returning anything, and
//!   removes an entry that fails (a torn write after a crash, a stray file);
//! - eviction removes the least recently used entries (a hit touches the entry's
//!   modification time) once the directory is over its size bound; a reader that already
//!   opened an evicted entry still reads it whole.
//!
//! Cached entries become code in the process, so the cache trusts only what its user could
//! have written: the directory and every entry must belong to the effective user and be
//! writable by nobody else ([`store`]).

pub mod entry;
pub mod key;
pub mod settings;
pub mod store;

pub use key::{Key, KeyBuilder};
pub use settings::{Settings, DEFAULT_MAX_BYTES};
pub use store::{Cache, Lookup, Stats};
