//! Live code patching (being written).
