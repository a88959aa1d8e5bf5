//! libdrti_agent.so — see DESIGN.md.
pub mod patch;
