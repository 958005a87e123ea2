//! The integration tests that need a real redis-server (or valkey-server, `JWTDENY_SERVER_BIN`)
//! with the module loaded, one module per concern. One test binary: each binary links the whole
//! harness and its dependencies again, so the suite is a few binaries, not one per file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../faults/mod.rs"]
mod faults;
#[path = "../support/mod.rs"]
mod support;

#[path = "../acl.rs"]
mod acl;
#[path = "../cache.rs"]
mod cache;
#[path = "../claims.rs"]
mod claims;
#[path = "../command_info.rs"]
mod command_info;
#[path = "../commands.rs"]
mod commands;
#[path = "../config.rs"]
mod config;
#[path = "../database.rs"]
mod database;
#[path = "../denylist.rs"]
mod denylist;
#[path = "../dpop.rs"]
mod dpop;
#[path = "../durability.rs"]
mod durability;
#[path = "../forgery.rs"]
mod forgery;
#[path = "../info.rs"]
mod info;
#[path = "../inspect.rs"]
mod inspect;
#[path = "../issuers.rs"]
mod issuers;
#[path = "../keys.rs"]
mod keys;
#[path = "../keys_file_limits.rs"]
mod keys_file_limits;
#[path = "../log_safety.rs"]
mod log_safety;
#[path = "../logout.rs"]
mod logout;
#[path = "../notifications.rs"]
mod notifications;
#[path = "../persistence.rs"]
mod persistence;
#[path = "../prometheus.rs"]
mod prometheus;
#[path = "../reference.rs"]
mod reference;
#[path = "../replication.rs"]
mod replication;
#[path = "../revokeall.rs"]
mod revokeall;
#[path = "../storm.rs"]
mod storm;
#[path = "../vectors.rs"]
mod vectors;
#[path = "../withclaims.rs"]
mod withclaims;
#[path = "../workers.rs"]
mod workers;
