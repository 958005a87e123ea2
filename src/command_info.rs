//! What `COMMAND INFO` and `COMMAND DOCS` say about each command: its true arity, its keys as key
//! specs with their access flags, a summary and its arguments, declared through
//! `RedisModule_SetCommandInfo` (Redis 7.0+, Valkey).
//!
//! Key specs, not only the command table's legacy (first, last, step): Redis reads a legacy range
//! as read-write access, so a read-only ACL pattern (`%R~jwtdeny:*`) would refuse KCHECK. ACL
//! checks a key by its spec's ACCESS flag (read permission) and INSERT/UPDATE/DELETE (write
//! permission); RO/RW/OW/RM only describe the key to `COMMAND INFO`. The legacy ranges stay in the
//! table for servers without this API; Redis derives them again from the key specs.
//!
//! Redis copies everything it is given here (strings, key specs, arguments), so the C structs
//! are temporaries built from the table below.

use crate::log;
use redis_module::{raw, Context};
use std::ffi::CStr;
use std::mem::size_of;
use std::os::raw::c_int;
use std::ptr;

/// The module version every command appeared in.
const SINCE: &CStr = c"0.1.0";

const RO: u64 = raw::REDISMODULE_CMD_KEY_RO as u64;
const RW: u64 = raw::REDISMODULE_CMD_KEY_RW as u64;
const ACCESS: u64 = raw::REDISMODULE_CMD_KEY_ACCESS as u64;
const UPDATE: u64 = raw::REDISMODULE_CMD_KEY_UPDATE as u64;
const INSERT: u64 = raw::REDISMODULE_CMD_KEY_INSERT as u64;

/// One command's metadata.
struct Command {
    name: &'static CStr,
    /// Counting the command name; negative for "at least" (optional arguments follow).
    arity: c_int,
    summary: &'static CStr,
    complexity: &'static CStr,
    keys: &'static [KeySpec],
    args: &'static [Arg],
}

/// `count` keys from argv index `first` on, all used the same way; a negative `count` runs up
/// to that many arguments from the end (`-2`: every argument but the last is a key).
struct KeySpec {
    notes: &'static CStr,
    flags: u64,
    first: c_int,
    count: c_int,
}

struct Arg {
    name: &'static CStr,
    kind: Kind,
    /// The keyword before the value (`AT` in `AT <unix-seconds>`), or the whole argument of a
    /// [`Kind::Token`].
    token: Option<&'static CStr>,
    summary: &'static CStr,
    optional: bool,
}

enum Kind {
    /// A key, described by the command's key spec at this index.
    Key(c_int),
    Text,
    UnixTime,
    /// A keyword standing alone (`WITHCLAIMS`).
    Token,
    /// Exactly one of these.
    OneOf(&'static [Arg]),
}

const fn arg(name: &'static CStr, kind: Kind, summary: &'static CStr) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        summary,
        optional: false,
    }
}

const fn keyword(name: &'static CStr, token: &'static CStr, summary: &'static CStr) -> Arg {
    Arg {
        token: Some(token),
        ..arg(name, Kind::Token, summary)
    }
}

const fn optional(arg: Arg) -> Arg {
    Arg {
        optional: true,
        ..arg
    }
}

const TOKEN: Arg = arg(c"token", Kind::Text, c"a compact JWS");
const WITHCLAIMS: Arg = optional(keyword(
    c"withclaims",
    c"WITHCLAIMS",
    c"also reply with the token's payload JSON (nil when revoked)",
));
const SUB: Arg = arg(c"sub", Kind::Text, c"the subject: the tokens' sub claim");
const AT: Arg = optional(Arg {
    token: Some(c"AT"),
    ..arg(
        c"unix-seconds",
        Kind::UnixTime,
        c"the cutoff (default now; never in the future)",
    )
});
const ENTRY_KEY: Arg = arg(
    c"entry-key",
    Kind::Key(0),
    c"the token's entry key: <prefix>{<sub>}:<iat>",
);

/// The subject key is the second key spec of KREVOKE, the first of the others.
const fn subject_key(spec: c_int) -> Arg {
    arg(
        c"subject-key",
        Kind::Key(spec),
        c"the subject's cutoff key: <prefix>{<sub>}",
    )
}

const SID: Arg = arg(
    c"sid",
    Kind::Text,
    c"the OIDC session id: the tokens' sid claim",
);
const LOGOUT_TOKEN: Arg = arg(
    c"logout_token",
    Kind::Text,
    c"an OpenID Connect Back-Channel Logout token, as the identity provider posted it",
);

/// The session key is the third key of KSCHECK and KSINSPECT, the second of KLOGOUT and
/// KREVOKESESSION; its key spec is the command's only one.
const fn session_key(notes: &'static CStr) -> Arg {
    arg(c"session-key", Kind::Key(0), notes)
}

const VERIFIES: &CStr = c"O(N) where N is the token's length, plus one signature verification";
// INSPECT always verifies; the others go through the verification cache.
const VERIFIES_CACHED: &CStr = c"O(N) where N is the token's length, plus one signature \
    verification (none on a verification-cache hit)";

/// KCHECK and KINSPECT only read, and their replies are what the keys hold (an entry, and for
/// KINSPECT its expiry; a cutoff's value): ACCESS. One spec covers both keys, as LCS's does.
const READ_BOTH: &[KeySpec] = &[KeySpec {
    notes: c"the token's entry key and its subject's cutoff key",
    flags: RO | ACCESS,
    first: 1,
    count: 2,
}];

/// KSCHECK and KSINSPECT: READ_BOTH and the session's cutoff key.
const READ_THREE: &[KeySpec] = &[KeySpec {
    notes: c"the token's entry key, its subject's cutoff key and its session's cutoff key",
    flags: RO | ACCESS,
    first: 1,
    count: 3,
}];

/// KLOGOUT and KREVOKESESSION read the subject's cutoff (one that covers the logout already
/// means `0`, nothing written) and move cutoffs forward: which ones depends on the token and on
/// max-lifetime, so all are RW, ACCESS and UPDATE, like KREVOKEALL's. Their keys run from the
/// first argument to the last before the token (KLOGOUT) or `<sub> <sid>` (KREVOKESESSION):
/// two, or three with the sid-less cutoff key.
const fn end_session(count: c_int) -> [KeySpec; 1] {
    [KeySpec {
        notes: c"the subject's cutoff key, the session's cutoff key and (optional) the subject's \
            sid-less cutoff key, read; cutoffs created or moved forward",
        flags: RW | ACCESS | UPDATE,
        first: 1,
        count,
    }]
}
const KLOGOUT_KEYS: &[KeySpec] = &end_session(-2);
const KREVOKESESSION_KEYS: &[KeySpec] = &end_session(-3);

/// The third key of the end-session forms, optional for the clients that declare two.
const SIDLESS_KEY: Arg = optional(arg(
    c"sidless-key",
    Kind::Key(0),
    c"the subject's sid-less cutoff key <prefix>{<sub>}:nosid, which a session's end also moves \
    (the tokens without sid)",
));

const COMMANDS: &[Command] = &[
    Command {
        name: c"jwtdeny.check",
        arity: -2,
        summary: c"Verifies a JWT and tells whether it is revoked",
        complexity: VERIFIES_CACHED,
        keys: &[],
        args: &[TOKEN, WITHCLAIMS],
    },
    Command {
        name: c"jwtdeny.inspect",
        arity: 2,
        summary: c"Describes a JWT and why it is or is not active, changing nothing",
        complexity: VERIFIES,
        keys: &[],
        args: &[TOKEN],
    },
    Command {
        name: c"jwtdeny.revoke",
        arity: 2,
        summary: c"Revokes a verified JWT until it expires",
        complexity: VERIFIES_CACHED,
        keys: &[],
        args: &[TOKEN],
    },
    Command {
        name: c"jwtdeny.revokeall",
        arity: -2,
        summary: c"Revokes every JWT of a subject issued at or before a cutoff",
        complexity: c"O(1)",
        keys: &[],
        args: &[SUB, AT],
    },
    Command {
        name: c"jwtdeny.keys",
        arity: 2,
        summary: c"Reloads or lists the verification keys",
        complexity: c"O(N) where N is the number of keys",
        keys: &[],
        args: &[arg(
            c"subcommand",
            Kind::OneOf(&[
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
    },
    Command {
        name: c"jwtdeny.kcheck",
        arity: -4,
        summary: c"JWTDENY.CHECK with the token's keys declared, for Redis Cluster and ACL key patterns",
        complexity: VERIFIES_CACHED,
        keys: READ_BOTH,
        args: &[ENTRY_KEY, subject_key(0), TOKEN, WITHCLAIMS],
    },
    Command {
        name: c"jwtdeny.kinspect",
        arity: 4,
        summary: c"JWTDENY.INSPECT with the token's keys declared, for Redis Cluster and ACL key patterns",
        complexity: VERIFIES,
        keys: READ_BOTH,
        args: &[ENTRY_KEY, subject_key(0), TOKEN],
    },
    Command {
        name: c"jwtdeny.krevoke",
        arity: 4,
        summary: c"JWTDENY.REVOKE with the token's keys declared, for Redis Cluster and ACL key patterns",
        complexity: VERIFIES_CACHED,
        keys: &[
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
    },
    Command {
        name: c"jwtdeny.krevokeall",
        arity: -3,
        summary: c"JWTDENY.REVOKEALL with the subject's key declared, for Redis Cluster and ACL key patterns",
        complexity: c"O(1)",
        // The new cutoff depends on the old (it only moves forward) and the reply may be the old
        // one: ACCESS and UPDATE. Creating the key is an update too; Redis allows only one of
        // INSERT, UPDATE and DELETE.
        keys: &[KeySpec {
            notes: c"the subject's cutoff key, created or moved forward",
            flags: RW | ACCESS | UPDATE,
            first: 1,
            count: 1,
        }],
        args: &[subject_key(0), SUB, AT],
    },
    Command {
        name: c"jwtdeny.logout",
        arity: 2,
        summary: c"Ends the OIDC session (or every session of the subject) an OpenID Connect \
            Back-Channel Logout token names",
        complexity: VERIFIES,
        keys: &[],
        args: &[LOGOUT_TOKEN],
    },
    Command {
        name: c"jwtdeny.revokesession",
        arity: 3,
        summary: c"Revokes every JWT of an OIDC session issued up to now",
        complexity: c"O(1)",
        keys: &[],
        args: &[SUB, SID],
    },
    Command {
        name: c"jwtdeny.kscheck",
        arity: -5,
        summary: c"JWTDENY.CHECK with every key it reads declared: the entry, the subject's and the \
            session's cutoffs (the sid-less cutoff for a token without sid)",
        complexity: VERIFIES_CACHED,
        keys: READ_THREE,
        args: &[
            ENTRY_KEY,
            subject_key(0),
            session_key(
                c"the session's cutoff key <prefix>{<sub>}:sid:<sid>, or for a token without sid \
                the sid-less cutoff key <prefix>{<sub>}:nosid",
            ),
            TOKEN,
            WITHCLAIMS,
        ],
    },
    Command {
        name: c"jwtdeny.ksinspect",
        arity: 5,
        summary: c"JWTDENY.INSPECT with every key it reads declared (as JWTDENY.KSCHECK)",
        complexity: VERIFIES,
        keys: READ_THREE,
        args: &[
            ENTRY_KEY,
            subject_key(0),
            session_key(
                c"the session's cutoff key <prefix>{<sub>}:sid:<sid>, or for a token without sid \
                the sid-less cutoff key <prefix>{<sub>}:nosid",
            ),
            TOKEN,
        ],
    },
    Command {
        name: c"jwtdeny.klogout",
        arity: -4,
        summary: c"JWTDENY.LOGOUT with the subject's and the session's keys declared, for Redis \
            Cluster and ACL key patterns",
        complexity: VERIFIES,
        keys: KLOGOUT_KEYS,
        args: &[
            subject_key(0),
            session_key(
                c"the session's cutoff key <prefix>{<sub>}:sid:<sid>; the subject key again for \
                a logout token without sid",
            ),
            SIDLESS_KEY,
            LOGOUT_TOKEN,
        ],
    },
    Command {
        name: c"jwtdeny.krevokesession",
        arity: -5,
        summary: c"JWTDENY.REVOKESESSION with the subject's and the session's keys declared, for \
            Redis Cluster and ACL key patterns",
        complexity: c"O(1)",
        keys: KREVOKESESSION_KEYS,
        args: &[
            subject_key(0),
            session_key(c"the session's cutoff key: <prefix>{<sub>}:sid:<sid>"),
            SIDLESS_KEY,
            SUB,
            SID,
        ],
    },
];

static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: size_of::<raw::RedisModuleCommandArg>(),
};

/// Declares [`COMMANDS`]. A server without the API (Redis 6) or refusing one command's info
/// keeps that command's defaults: the module works, only `%R~` patterns and docs do not.
pub fn declare(ctx: &Context) {
    // SAFETY: reads of the API pointers, filled in before OnLoad runs.
    let (Some(get), Some(set)) = (unsafe { raw::RedisModule_GetCommand }, unsafe {
        raw::RedisModule_SetCommandInfo
    }) else {
        log::notice(
            "jwtdeny: this server cannot declare command info; the keyed forms keep \
             read-write legacy key positions and COMMAND DOCS has no jwtdeny entries",
        );
        return;
    };
    for command in COMMANDS {
        let name = command.name.to_string_lossy();
        // SAFETY: called during OnLoad with a name that is a valid C string.
        let handle = unsafe { get(ctx.get_raw(), command.name.as_ptr()) };
        if handle.is_null() {
            log::notice(&format!(
                "jwtdeny: no command {name} to declare the command info of"
            ));
            continue;
        }
        let mut keep = Vec::new();
        let mut specs: Vec<_> = command.keys.iter().map(key_spec).collect();
        specs.push(END_OF_KEY_SPECS);
        let info = raw::RedisModuleCommandInfo {
            version: &VERSION,
            summary: command.summary.as_ptr(),
            complexity: command.complexity.as_ptr(),
            since: SINCE.as_ptr(),
            history: ptr::null_mut(),
            tips: ptr::null(),
            arity: command.arity,
            key_specs: if command.keys.is_empty() {
                ptr::null_mut()
            } else {
                specs.as_mut_ptr()
            },
            args: c_args(command.args, &mut keep),
        };
        // SAFETY: `handle` is our command; every pointer in `info` lives in `COMMANDS`,
        // `VERSION`, `specs` or `keep` until after the call, and Redis copies what it keeps.
        if unsafe { set(handle, &info) } != raw::REDISMODULE_OK as c_int {
            log::notice(&format!(
                "jwtdeny: the server refused the command info of {name}; it keeps its defaults"
            ));
        }
    }
}

/// A begin-search of INVALID ends the array.
const END_OF_KEY_SPECS: raw::RedisModuleCommandKeySpec = raw::RedisModuleCommandKeySpec {
    notes: ptr::null(),
    flags: 0,
    begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INVALID,
    bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
        index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 0 },
    },
    find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_OMITTED,
    fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
        range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
            lastkey: 0,
            keystep: 0,
            limit: 0,
        },
    },
};

fn key_spec(spec: &KeySpec) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: spec.notes.as_ptr(),
        flags: spec.flags,
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: spec.first },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                // Relative to `first`, or (negative) to the end of the arguments.
                lastkey: if spec.count > 0 {
                    spec.count - 1
                } else {
                    spec.count
                },
                keystep: 1,
                limit: 0,
            },
        },
    }
}

/// A null name ends the array.
const END_OF_ARGS: raw::RedisModuleCommandArg = raw::RedisModuleCommandArg {
    name: ptr::null(),
    type_: 0,
    key_spec_index: -1,
    token: ptr::null(),
    summary: ptr::null(),
    since: ptr::null(),
    flags: 0,
    deprecated_since: ptr::null(),
    subargs: ptr::null_mut(),
    display_text: ptr::null(),
};

/// The C array for `args`, terminated, stored in `keep` (moving a `Vec` keeps its buffer where
/// it is, so the pointer stays valid as long as `keep` does).
fn c_args(
    args: &[Arg],
    keep: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> *mut raw::RedisModuleCommandArg {
    if args.is_empty() {
        return ptr::null_mut();
    }
    let mut out: Vec<_> = args.iter().map(|a| c_arg(a, keep)).collect();
    out.push(END_OF_ARGS);
    let p = out.as_mut_ptr();
    keep.push(out);
    p
}

fn c_arg(arg: &Arg, keep: &mut Vec<Vec<raw::RedisModuleCommandArg>>) -> raw::RedisModuleCommandArg {
    let (type_, key_spec_index, subargs) = match arg.kind {
        Kind::Key(spec) => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
            spec,
            None,
        ),
        Kind::Text => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            -1,
            None,
        ),
        Kind::UnixTime => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
            -1,
            None,
        ),
        Kind::Token => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
            -1,
            None,
        ),
        Kind::OneOf(sub) => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
            -1,
            Some(sub),
        ),
    };
    raw::RedisModuleCommandArg {
        name: arg.name.as_ptr(),
        type_,
        key_spec_index,
        token: arg.token.map_or(ptr::null(), CStr::as_ptr),
        summary: arg.summary.as_ptr(),
        since: ptr::null(),
        flags: if arg.optional {
            raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int
        } else {
            raw::REDISMODULE_CMD_ARG_NONE as c_int
        },
        deprecated_since: ptr::null(),
        subargs: subargs.map_or(ptr::null_mut(), |sub| c_args(sub, keep)),
        display_text: ptr::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            for k in c.keys {
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
                    Kind::Key(i) => {
                        keys += 1;
                        let spec = usize::try_from(i).ok().and_then(|i| c.keys.get(i));
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
                    _ => assert!(a.token.is_some() || !matches!(a.kind, Kind::Token)),
                }
            }
            // A spec running to the end covers as many key arguments as are documented (an
            // optional last one included).
            if c.keys.iter().all(|k| k.count > 0) {
                let declared: c_int = c.keys.iter().map(|k| k.count).sum();
                assert_eq!(keys, declared, "{:?}: key arguments", c.name);
            }
        }
    }

    #[test]
    fn every_command_has_docs() {
        assert_eq!(COMMANDS.len(), 15);
        for c in COMMANDS {
            assert!(!c.summary.is_empty() && !c.complexity.is_empty());
            assert!(c.name.to_bytes().starts_with(b"jwtdeny."));
        }
    }
}
