//! libdrti_agent.so — loaded with LD_PRELOAD, it finds drti-decorated modules, profiles
//! their indirect call sites, and replaces hot functions by versions with their hot
//! targets inlined, compiled by the compiler process `drti-jitd` (or taken from the code
//! cache) and linked here. No LLVM in the application: depends on bitcode-embed and
//! drti-cache only. See DESIGN.md.
//!
//! One module per job: `config` (environment), `preload` (constructor, dlopen/dlclose,
//! exit, fork), `discover` (modules and metadata), `profile` (the application threads'
//! path), `edges` (the edge table), `state` (what the agent knows, under one lock),
//! `worker` (the agent thread), `compiler` (cache, compiler process, linking: `jitd_client`,
//! `link`, `perf_map`), `patch` (the only code that writes code), `dump` (logging and the
//! JSON dump).

pub mod code_owner;
pub mod compiler;
pub mod config;
pub mod discover;
pub mod dump;
pub mod edges;
pub mod guard_slots;
pub mod guardrails;
pub mod jitd_client;
pub mod lifecycle;
pub mod link;
pub mod osr;
pub mod patch;
pub mod perf_map;
pub mod policy;
pub mod preload;
pub mod profile;
pub mod state;
pub mod warm;
pub mod worker;

#[global_allocator]
static ALLOCATOR: guardrails::AgentAllocator = guardrails::Guarded::system();
