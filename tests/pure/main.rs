//! Tests that start no server and need the module's own source: its layout rules
//! (`structure`). The core's property tests are the core crate's (`core/tests/props.rs`).

#[path = "../structure.rs"]
mod structure;
