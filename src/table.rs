//! The command table: one row per command, read by registration (`lib.rs`), by `COMMAND INFO`
//! and `COMMAND DOCS` (`command_info::declare`) and by a blocked client's re-run. Adding a
//! command is one row here and one handler in `commands`; nothing matches a command by its name.

use crate::command_info::*;
use crate::commands;
use crate::dpop;
use crate::route::KeyArgs;

/// What Redis calls for the row `$row`: its arguments lent to its handler (`commands::run`).
macro_rules! entry {
    ($row:ident) => {{
        unsafe extern "C" fn entry(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::os::raw::c_int,
        ) -> std::os::raw::c_int {
            // SAFETY: Redis calls it as a command, on the main thread.
            unsafe { commands::run(ctx, argv, argc, &$row) }
        }
        Some(entry as unsafe extern "C" fn(_, _, _) -> _)
    }};
}

/// The reply and timeout callback of a client of the row `$row` that waited: the command again,
/// answering at once (`commands::answer`).
macro_rules! answer {
    ($row:ident) => {{
        unsafe extern "C" fn answer(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::os::raw::c_int,
        ) -> std::os::raw::c_int {
            // SAFETY: Redis calls it as a blocked client's callback, on the main thread.
            unsafe { commands::answer(ctx, argv, argc, &$row) }
        }
        answer
    }};
}

/// Every command, in the order they are registered.
pub static COMMANDS: [&Command; 19] = [
    &CHECK,
    &INSPECT,
    &REVOKE,
    &REVOKEALL,
    &KEYS,
    &KCHECK,
    &KINSPECT,
    &KREVOKE,
    &KREVOKEALL,
    &LOGOUT,
    &REVOKESESSION,
    &KSCHECK,
    &KSINSPECT,
    &KLOGOUT,
    &KREVOKESESSION,
    &CHECKDPOP,
    &KCHECKDPOP,
    &DPOPNONCE,
    &ISSUERS,
];

pub static CHECK: Command = Command {
    name: c"jwtdeny.check",
    handler: commands::check,
    keys: KeyArgs::None,
    flags: c"readonly fast",
    acl: "read fast",
    arity: -2,
    summary: c"Verifies a JWT and tells whether it is revoked",
    complexity: VERIFIES_CACHED,
    key_specs: &[],
    args: &[TOKEN, WITHCLAIMS, CERT],
    entry: entry!(CHECK),
    answer: answer!(CHECK),
};

pub static INSPECT: Command = Command {
    name: c"jwtdeny.inspect",
    handler: commands::inspect,
    keys: KeyArgs::None,
    flags: c"readonly fast",
    acl: "read fast",
    arity: 2,
    summary: c"Describes a JWT and why it is or is not active, changing nothing",
    complexity: VERIFIES,
    key_specs: &[],
    args: &[TOKEN],
    entry: entry!(INSPECT),
    answer: answer!(INSPECT),
};

pub static REVOKE: Command = Command {
    name: c"jwtdeny.revoke",
    handler: commands::revoke,
    keys: KeyArgs::None,
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: 2,
    summary: c"Revokes a verified JWT until it expires",
    complexity: VERIFIES_CACHED,
    key_specs: &[],
    args: &[TOKEN],
    entry: entry!(REVOKE),
    answer: answer!(REVOKE),
};

pub static REVOKEALL: Command = Command {
    name: c"jwtdeny.revokeall",
    handler: commands::revokeall,
    keys: KeyArgs::None,
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -2,
    summary: c"Revokes every JWT of a subject issued at or before a cutoff",
    complexity: c"O(1)",
    key_specs: &[],
    args: &[SUB, AT, ISSUER],
    entry: entry!(REVOKEALL),
    answer: answer!(REVOKEALL),
};

pub static KEYS: Command = Command {
    name: c"jwtdeny.keys",
    handler: commands::keys,
    keys: KeyArgs::None,
    flags: c"admin deny-script",
    acl: "admin dangerous",
    arity: 2,
    summary: c"Reloads or lists the verification keys",
    complexity: c"O(N) where N is the number of keys",
    key_specs: &[],
    args: &[arg(
        c"subcommand",
        ArgKind::OneOf(&[
            keyword(
                c"reload",
                c"RELOAD",
                c"read jwtdeny.keys-file again and refetch the identity provider's JWKS; what fails keeps the old keys",
            ),
            keyword(
                c"list",
                c"LIST",
                c"list the keys in force (kid, kty, algorithms, source: file or uri), never their material",
            ),
        ]),
        c"what to do with the keys",
    )],
    entry: entry!(KEYS),
    answer: answer!(KEYS),
};

pub static ISSUERS: Command = Command {
    name: c"jwtdeny.issuers",
    handler: commands::issuers,
    keys: KeyArgs::None,
    flags: c"admin deny-script",
    acl: "admin dangerous",
    arity: 2,
    summary: c"Reloads or lists the issuers of jwtdeny.issuers-file",
    complexity: c"O(N) where N is the number of issuers and their keys",
    key_specs: &[],
    args: &[arg(
        c"subcommand",
        ArgKind::OneOf(&[
            keyword(
                c"reload",
                c"RELOAD",
                c"read jwtdeny.issuers-file and its keys files again; anything wrong keeps the issuers in force, whole",
            ),
            keyword(
                c"list",
                c"LIST",
                c"list the issuers in force (name, issuer, tenants, keys file, keys loaded)",
            ),
        ]),
        c"what to do with the issuers",
    )],
    entry: entry!(ISSUERS),
    answer: answer!(ISSUERS),
};

pub static KCHECK: Command = Command {
    name: c"jwtdeny.kcheck",
    handler: commands::check,
    keys: KeyArgs::Leading(2),
    flags: c"readonly fast",
    acl: "read fast",
    arity: -4,
    summary:
        c"JWTDENY.CHECK with the token's keys declared, for Redis Cluster and ACL key patterns",
    complexity: VERIFIES_CACHED,
    key_specs: READ_BOTH,
    args: &[ENTRY_KEY, subject_key(0), TOKEN, WITHCLAIMS, CERT],
    entry: entry!(KCHECK),
    answer: answer!(KCHECK),
};

pub static KINSPECT: Command = Command {
    name: c"jwtdeny.kinspect",
    handler: commands::inspect,
    keys: KeyArgs::Leading(2),
    flags: c"readonly fast",
    acl: "read fast",
    arity: 4,
    summary:
        c"JWTDENY.INSPECT with the token's keys declared, for Redis Cluster and ACL key patterns",
    complexity: VERIFIES,
    key_specs: READ_BOTH,
    args: &[ENTRY_KEY, subject_key(0), TOKEN],
    entry: entry!(KINSPECT),
    answer: answer!(KINSPECT),
};

pub static KREVOKE: Command = Command {
    name: c"jwtdeny.krevoke",
    handler: commands::revoke,
    keys: KeyArgs::Leading(2),
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: 4,
    summary:
        c"JWTDENY.REVOKE with the token's keys declared, for Redis Cluster and ACL key patterns",
    complexity: VERIFIES_CACHED,
    key_specs: &[
        // Created when absent (SET NX), never changed once there: INSERT. Like SETNX it only
        // tests the key's presence before writing, so no ACCESS.
        KeySpec {
            notes: c"the token's entry key, created when absent",
            flags: RW | INSERT,
            first: 1,
            count: 1,
        },
        // Only read: a cutoff covering the token means it is already revoked (reply 0).
        KeySpec {
            notes: c"the subject's cutoff key, only read",
            flags: RO | ACCESS,
            first: 2,
            count: 1,
        },
    ],
    args: &[ENTRY_KEY, subject_key(1), TOKEN],
    entry: entry!(KREVOKE),
    answer: answer!(KREVOKE),
};

pub static KREVOKEALL: Command = Command {
    name: c"jwtdeny.krevokeall",
    handler: commands::revokeall,
    keys: KeyArgs::Leading(1),
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -3,
    summary:
        c"JWTDENY.REVOKEALL with the subject's key declared, for Redis Cluster and ACL key patterns",
    complexity: c"O(1)",
    // The new cutoff depends on the old (it only moves forward) and the reply may be the old
    // one: ACCESS and UPDATE. Creating the key is an update too; Redis allows only one of
    // INSERT, UPDATE and DELETE.
    key_specs: &[KeySpec {
        notes: c"the subject's cutoff key, created or moved forward",
        flags: RW | ACCESS | UPDATE,
        first: 1,
        count: 1,
    }],
    args: &[subject_key(0), SUB, AT, ISSUER],
    entry: entry!(KREVOKEALL),
    answer: answer!(KREVOKEALL),
};

pub static LOGOUT: Command = Command {
    name: c"jwtdeny.logout",
    handler: commands::logout,
    keys: KeyArgs::None,
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: 2,
    summary: c"Ends the OIDC session (or every session of the subject) an OpenID Connect \
        Back-Channel Logout token names",
    complexity: VERIFIES,
    key_specs: &[],
    args: &[LOGOUT_TOKEN],
    entry: entry!(LOGOUT),
    answer: answer!(LOGOUT),
};

pub static REVOKESESSION: Command = Command {
    name: c"jwtdeny.revokesession",
    handler: commands::revokesession,
    keys: KeyArgs::None,
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -3,
    summary: c"Revokes every JWT of an OIDC session issued up to now",
    complexity: c"O(1)",
    key_specs: &[],
    args: &[SUB, SID, ISSUER],
    entry: entry!(REVOKESESSION),
    answer: answer!(REVOKESESSION),
};

pub static KSCHECK: Command = Command {
    name: c"jwtdeny.kscheck",
    handler: commands::check,
    keys: KeyArgs::Leading(3),
    flags: c"readonly fast",
    acl: "read fast",
    arity: -5,
    summary: c"JWTDENY.CHECK with every key it reads declared: the entry, the subject's and the \
        session's cutoffs (the sid-less cutoff for a token without sid)",
    complexity: VERIFIES_CACHED,
    key_specs: READ_THREE,
    args: &[
        ENTRY_KEY,
        subject_key(0),
        THIRD_KEY,
        TOKEN,
        WITHCLAIMS,
        CERT,
    ],
    entry: entry!(KSCHECK),
    answer: answer!(KSCHECK),
};

pub static KSINSPECT: Command = Command {
    name: c"jwtdeny.ksinspect",
    handler: commands::inspect,
    keys: KeyArgs::Leading(3),
    flags: c"readonly fast",
    acl: "read fast",
    arity: 5,
    summary: c"JWTDENY.INSPECT with every key it reads declared (as JWTDENY.KSCHECK)",
    complexity: VERIFIES,
    key_specs: READ_THREE,
    args: &[ENTRY_KEY, subject_key(0), THIRD_KEY, TOKEN],
    entry: entry!(KSINSPECT),
    answer: answer!(KSINSPECT),
};

pub static KLOGOUT: Command = Command {
    name: c"jwtdeny.klogout",
    handler: commands::logout,
    keys: KeyArgs::BeforeLast {
        trailing: 1,
        min: 2,
        max: 3,
    },
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -4,
    summary: c"JWTDENY.LOGOUT with the subject's and the session's keys declared, for Redis \
        Cluster and ACL key patterns",
    complexity: VERIFIES,
    key_specs: KLOGOUT_KEYS,
    args: &[
        subject_key(0),
        session_key(
            c"the session's cutoff key <prefix>{<sub>}:sid:<sid>; the subject key again for \
            a logout token without sid",
        ),
        SIDLESS_KEY,
        LOGOUT_TOKEN,
    ],
    entry: entry!(KLOGOUT),
    answer: answer!(KLOGOUT),
};

pub static KREVOKESESSION: Command = Command {
    name: c"jwtdeny.krevokesession",
    handler: commands::revokesession,
    keys: KeyArgs::BeforeLast {
        trailing: 2,
        min: 2,
        max: 3,
    },
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -5,
    summary: c"JWTDENY.REVOKESESSION with the subject's and the session's keys declared, for \
        Redis Cluster and ACL key patterns",
    complexity: c"O(1)",
    key_specs: KREVOKESESSION_KEYS,
    args: &[
        subject_key(0),
        session_key(c"the session's cutoff key: <prefix>{<sub>}:sid:<sid>"),
        SIDLESS_KEY,
        SUB,
        SID,
    ],
    entry: entry!(KREVOKESESSION),
    answer: answer!(KREVOKESESSION),
};

pub static CHECKDPOP: Command = Command {
    name: c"jwtdeny.checkdpop",
    handler: dpop::checkdpop,
    keys: KeyArgs::None,
    // A write: the proof's jti is recorded. On a primary only; refused when out of memory,
    // since a proof that cannot be recorded could be replayed.
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -5,
    summary: c"Verifies a DPoP-bound JWT with its DPoP proof (RFC 9449), uses the proof once, \
        and tells whether the token is revoked",
    complexity: CHECKS_PROOF,
    key_specs: &[],
    args: &[TOKEN, PROOF, METHOD, URL, WITHCLAIMS, CERT],
    entry: entry!(CHECKDPOP),
    answer: answer!(CHECKDPOP),
};

pub static KCHECKDPOP: Command = Command {
    name: c"jwtdeny.kcheckdpop",
    handler: dpop::checkdpop,
    keys: KeyArgs::Leading(4),
    flags: c"write deny-oom fast",
    acl: "write fast",
    arity: -9,
    summary: c"JWTDENY.CHECKDPOP with every key it touches declared, for Redis Cluster and ACL \
        key patterns",
    complexity: CHECKS_PROOF,
    key_specs: CHECKDPOP_KEYS,
    args: &[
        ENTRY_KEY,
        subject_key(0),
        THIRD_KEY,
        REPLAY_KEY,
        TOKEN,
        PROOF,
        METHOD,
        URL,
        WITHCLAIMS,
        CERT,
    ],
    entry: entry!(KCHECKDPOP),
    answer: answer!(KCHECKDPOP),
};

pub static DPOPNONCE: Command = Command {
    name: c"jwtdeny.dpopnonce",
    handler: dpop::dpopnonce,
    keys: KeyArgs::None,
    flags: c"readonly fast",
    acl: "read fast",
    arity: 1,
    summary: c"The DPoP nonce JWTDENY.CHECKDPOP accepts now (jwtdeny.dpop-nonce), for a \
        DPoP-Nonce response header",
    complexity: c"O(1)",
    key_specs: &[],
    args: &[],
    entry: entry!(DPOPNONCE),
    answer: answer!(DPOPNONCE),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_info::{ArgKind, ACCESS, INSERT, RO, RW, UPDATE};
    use redis_module::raw;
    use std::os::raw::c_int;

    /// The arguments a command takes at least, counting its name; and whether it takes more.
    fn arity_of(args: &[Arg]) -> (c_int, bool) {
        let required = args.iter().filter(|a| !a.optional).count();
        let required = c_int::try_from(required).unwrap_or(c_int::MAX);
        (1 + required, args.iter().any(|a| a.optional))
    }

    #[test]
    fn arity_matches_the_documented_arguments() {
        for c in COMMANDS {
            let (at_least, more) = arity_of(c.args);
            let want = if more { -at_least } else { at_least };
            assert_eq!(c.arity, want, "{:?}", c.name);
        }
    }

    /// What RM_SetCommandInfo would refuse, checked here so a bad edit fails a unit test rather
    /// than leaving a command undeclared on every server.
    #[test]
    fn key_specs_are_what_redis_accepts() {
        for c in COMMANDS {
            for k in c.key_specs {
                let access = k.flags & (RO | RW | raw::REDISMODULE_CMD_KEY_OW as u64);
                assert_eq!(access.count_ones(), 1, "{:?}: one of RO, RW, OW", c.name);
                assert!(
                    (k.flags & (INSERT | UPDATE)).count_ones() <= 1,
                    "{:?}",
                    c.name
                );
                // A negative count runs to an argument from the end (at least the last).
                assert!(k.first >= 1 && k.count != 0, "{:?}", c.name);
                // A spec without ACCESS, INSERT or UPDATE would pass any key pattern.
                assert_ne!(k.flags & (ACCESS | INSERT | UPDATE), 0, "{:?}", c.name);
            }
        }
    }

    /// Every key argument points at a key spec that covers its position.
    #[test]
    fn key_arguments_match_their_key_specs() {
        for c in COMMANDS {
            let mut keys = 0;
            for (position, a) in (1..).zip(c.args) {
                match a.kind {
                    ArgKind::Key(i) => {
                        keys += 1;
                        let spec = usize::try_from(i).ok().and_then(|i| c.key_specs.get(i));
                        let spec = spec.unwrap_or_else(|| panic!("{:?}: spec {i}", c.name));
                        // A spec running to the end covers every argument from its first on.
                        let end = if spec.count > 0 {
                            spec.first + spec.count
                        } else {
                            c_int::MAX
                        };
                        assert!(
                            (spec.first..end).contains(&position),
                            "{:?}: key argument {position} outside spec {i}",
                            c.name
                        );
                    }
                    _ => assert!(a.token.is_some() || !matches!(a.kind, ArgKind::Token)),
                }
            }
            // A spec running to the end covers as many key arguments as are documented (an
            // optional last one included).
            if c.key_specs.iter().all(|k| k.count > 0) {
                let declared: c_int = c.key_specs.iter().map(|k| k.count).sum();
                assert_eq!(keys, declared, "{:?}: key arguments", c.name);
            }
        }
    }

    #[test]
    fn every_command_has_docs() {
        for c in COMMANDS {
            assert!(!c.summary.is_empty() && !c.complexity.is_empty());
            assert!(c.name.to_bytes().starts_with(b"jwtdeny."));
        }
    }

    /// The positions Redis routes by where it has no key specs agree with the key specs.
    #[test]
    fn legacy_key_positions_are_the_key_specs() {
        for c in COMMANDS {
            let (first, last, _) = c.keys.legacy();
            match c.key_specs {
                [] => assert_eq!((first, last), (0, 0), "{:?}", c.name),
                specs => {
                    assert_eq!(first, specs[0].first, "{:?}", c.name);
                    let spec_last = specs
                        .iter()
                        .map(|k| {
                            if k.count > 0 {
                                k.first + k.count - 1
                            } else {
                                k.count
                            }
                        })
                        .max()
                        .unwrap_or(0);
                    assert_eq!(last, spec_last, "{:?}", c.name);
                }
            }
        }
    }
}
