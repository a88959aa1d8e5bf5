//! libdrti_agent.so — loaded with LD_PRELOAD, it finds drti-decorated modules, profiles
//! their indirect call sites, and (through libdrti_jit.so, loaded on demand) replaces hot
//! functions by versions with their hot targets inlined. See DESIGN.md.
//!
//! One module per job: `config` (environment), `preload` (constructor, dlopen/dlclose,
//! exit, fork), `discover` (modules and metadata), `profile` (the application threads'
//! path), `edges` (the edge table), `state` (what the agent knows, under one lock),
//! `worker` (the agent thread), `jit_bridge` (the JIT's C ABI), `patch` (the only code
//! that writes code), `dump` (logging and the JSON dump).

pub mod code_owner;
pub mod config;
pub mod discover;
pub mod dump;
pub mod edges;
pub mod guard_slots;
pub mod guardrails;
pub mod jit_bridge;
pub mod jitd_client;
pub mod lifecycle;
pub mod link;
pub mod patch;
pub mod policy;
pub mod preload;
pub mod profile;
pub mod state;
pub mod worker;

#[global_allocator]
static ALLOCATOR: guardrails::AgentAllocator = guardrails::Guarded::system();
