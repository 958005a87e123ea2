//! Tests that start no server: property tests of the core (`props`) and the module's layout
//! rules read from its source (`structure`).

#[path = "../common/mod.rs"]
mod common;

#[path = "../props.rs"]
mod props;
#[path = "../structure.rs"]
mod structure;
