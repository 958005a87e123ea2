//! jwtdeny's core: everything about tokens, keys and key names that needs no Redis server.
//!
//! The module (the cdylib at the repository root) adds storage, caching, configs and commands.

pub mod dpop;
pub mod error;
pub mod fetch;
pub mod issuers;
pub mod keys;
pub mod keyscheme;
pub mod logout;
pub mod token;
