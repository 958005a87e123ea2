//! The crate against real redis-servers with the jwtdeny module: a standalone server per test
//! and one 3-master Redis Cluster. One test binary (each links the whole dependency tree).
//! `JWTDENY_MODULE` names the module (default `<repo>/target/release/libjwtdeny.so`).

#![cfg(all(feature = "cluster-async", feature = "axum"))]

mod cluster;
mod guard;
mod issuers;
mod quickstart;
mod standalone;
mod support;
