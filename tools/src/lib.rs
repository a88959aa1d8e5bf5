//! The `drti` command line: `inspect` (what drti-cc put into a binary), `report` (an agent
//! dump as a table, an SVG or HTML call graph) and `cache` (the persistent code cache).
//! It reads files only: no LLVM; it depends on `bitcode-embed` (metadata, dump) and
//! `drti-cache`.

pub mod cache_cmd;
pub mod graph;
pub mod help;
pub mod inspect;
pub mod report;
