//! drti's metadata ABI, shared by the instrumenter (which writes it into every decorated
//! object file) and the agent (which reads it from process memory). No LLVM here.
//! Depends on no other drti crate; it is all that the agent and the compiler process
//! (`drti-jitd`) share.
//!
//! * [`format`] — the records, constants and the note that locates them;
//! * [`writer`] — builds the read-only blob;
//! * [`reader`] — validates a blob, never trusting an offset;
//! * [`image`] — finds notes and blobs in a set of segments (memory or file);
//! * [`elf`] — the same from an ELF file on disk;
//! * [`dump`] — the agent's JSON dump (`DRTI_DUMP`) as typed records, for writer and readers;
//! * [`protocol`] — the messages between the agent and the compiler process `drti-jitd`;
//! * [`symbols`] — the names of a portable F+ object's symbols.

pub mod dump;
pub mod elf;
pub mod format;
pub mod image;
pub mod jit_abi;
pub mod portable;
pub mod protocol;
pub mod reader;
pub mod symbols;
pub mod writer;

pub use format::*;
pub use reader::{Blob, Error};
pub use writer::BlobWriter;
