//! What a row of the command table (`table`) holds, and what `COMMAND INFO` and `COMMAND DOCS`
//! say about each command: its true arity, its keys as key specs with their access flags, a
//! summary and its arguments, declared through `RedisModule_SetCommandInfo` (Redis 7.0+, Valkey).
//!
//! Key specs, not only the command table's legacy (first, last, step): Redis reads a legacy range
//! as read-write access, so a read-only ACL pattern (`%R~jwtdeny:*`) would refuse KCHECK. ACL
//! checks a key by its spec's ACCESS flag (read permission) and INSERT/UPDATE/DELETE (write
//! permission); RO/RW/OW/RM only describe the key to `COMMAND INFO`. The legacy ranges stay in the
//! table for servers without this API; Redis derives them again from the key specs.
//!
//! Redis copies everything it is given here (strings, key specs, arguments), so the C structs
//! are temporaries built from the table below.

use crate::blocked::Callback;
use crate::log;
use crate::route::{KeyArgs, Route};
use redis_module::{raw, Context, RedisResult, RedisString};
use std::ffi::CStr;
use std::mem::size_of;
use std::os::raw::c_int;
use std::ptr;

/// The module version every command appeared in.
const SINCE: &CStr = c"0.1.0";

pub const RO: u64 = raw::REDISMODULE_CMD_KEY_RO as u64;
pub const RW: u64 = raw::REDISMODULE_CMD_KEY_RW as u64;
pub const ACCESS: u64 = raw::REDISMODULE_CMD_KEY_ACCESS as u64;
pub const UPDATE: u64 = raw::REDISMODULE_CMD_KEY_UPDATE as u64;
pub const INSERT: u64 = raw::REDISMODULE_CMD_KEY_INSERT as u64;

/// What runs a command: its arguments (the declared keys taken off, see [`KeyArgs::split`]), how
/// Redis routed it, and its row (for the callbacks of a client it blocks).
pub type Handler = fn(&Context, &[RedisString], Route, &'static Command) -> RedisResult;

/// One row of the command table: everything registration, `COMMAND INFO`/`COMMAND DOCS` and a
/// blocked client's re-run read of a command.
pub struct Command {
    pub name: &'static CStr,
    pub handler: Handler,
    /// Where its declared keys are (Redis routes by them; legacy positions derive from it).
    pub keys: KeyArgs,
    /// `RedisModule_CreateCommand`'s flags.
    pub flags: &'static CStr,
    /// Built-in ACL categories (and `jwtdeny` where modules may add one).
    pub acl: &'static str,
    /// Counting the command name; negative for "at least" (optional arguments follow).
    pub arity: c_int,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub key_specs: &'static [KeySpec],
    pub args: &'static [Arg],
    /// What Redis calls: runs `handler` (generated per row by `table`).
    pub entry: raw::RedisModuleCmdFunc,
    /// A blocked client's reply and timeout callback: runs `handler` again, answering at once.
    pub answer: Callback,
}

/// `count` keys from argv index `first` on, all used the same way; a negative `count` runs up
/// to that many arguments from the end (`-2`: every argument but the last is a key).
pub struct KeySpec {
    pub notes: &'static CStr,
    pub flags: u64,
    pub first: c_int,
    pub count: c_int,
}

pub struct Arg {
    pub name: &'static CStr,
    pub kind: ArgKind,
    /// The keyword before the value (`AT` in `AT <unix-seconds>`), or the whole argument of a
    /// [`ArgKind::Token`].
    pub token: Option<&'static CStr>,
    pub summary: &'static CStr,
    pub optional: bool,
}

pub enum ArgKind {
    /// A key, described by the command's key spec at this index.
    Key(c_int),
    Text,
    UnixTime,
    /// A keyword standing alone (`WITHCLAIMS`).
    Token,
    /// Exactly one of these.
    OneOf(&'static [Arg]),
}

pub const fn arg(name: &'static CStr, kind: ArgKind, summary: &'static CStr) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        summary,
        optional: false,
    }
}

pub const fn keyword(name: &'static CStr, token: &'static CStr, summary: &'static CStr) -> Arg {
    Arg {
        token: Some(token),
        ..arg(name, ArgKind::Token, summary)
    }
}

pub const fn optional(arg: Arg) -> Arg {
    Arg {
        optional: true,
        ..arg
    }
}

pub const TOKEN: Arg = arg(c"token", ArgKind::Text, c"a compact JWS");
pub const WITHCLAIMS: Arg = optional(keyword(
    c"withclaims",
    c"WITHCLAIMS",
    c"also reply with the token's payload JSON (nil when revoked)",
));
pub const CERT: Arg = optional(Arg {
    token: Some(c"CERT"),
    ..arg(
        c"sha256-thumbprint",
        ArgKind::Text,
        c"the SHA-256 thumbprint (base64url or hex) of the client certificate the TLS \
        terminator saw: required for a token bound to one (cnf.x5t#S256)",
    )
});
pub const PROOF: Arg = arg(
    c"proof",
    ArgKind::Text,
    c"the DPoP proof: the request's DPoP header",
);
pub const METHOD: Arg = arg(c"method", ArgKind::Text, c"the request's HTTP method");
pub const URL: Arg = arg(
    c"url",
    ArgKind::Text,
    c"the request's absolute URL as the client addressed it (query and fragment are ignored)",
);
pub const REPLAY_KEY: Arg = arg(
    c"replay-key",
    ArgKind::Key(1),
    c"the proof's one-time record <prefix>{<sub>}:dpop:<base64url SHA-256 of jkt:jti>",
);

/// KCHECKDPOP reads the token's three keys (as KSCHECK) and creates the proof's record when
/// absent (SET NX, as KREVOKE's entry): INSERT.
pub const CHECKDPOP_KEYS: &[KeySpec] = &[
    KeySpec {
        notes: c"the token's entry key, its subject's cutoff key and its session's cutoff key",
        flags: RO | ACCESS,
        first: 1,
        count: 3,
    },
    KeySpec {
        notes: c"the proof's one-time record, created when absent",
        flags: RW | INSERT,
        first: 4,
        count: 1,
    },
];

pub const SUB: Arg = arg(c"sub", ArgKind::Text, c"the subject: the tokens' sub claim");
pub const AT: Arg = optional(Arg {
    token: Some(c"AT"),
    ..arg(
        c"unix-seconds",
        ArgKind::UnixTime,
        c"the cutoff (default now; never in the future)",
    )
});
pub const ISSUER: Arg = optional(Arg {
    token: Some(c"ISSUER"),
    ..arg(
        c"issuer",
        ArgKind::Text,
        c"whose subject: default (the default), the name of an issuer of jwtdeny.issuers-file, \
        or an iss one of them accepts",
    )
});
pub const ENTRY_KEY: Arg = arg(
    c"entry-key",
    ArgKind::Key(0),
    c"the token's entry key: <prefix>{<sub>}:<iat>",
);

/// The subject key is the second key spec of KREVOKE, the first of the others.
pub const fn subject_key(spec: c_int) -> Arg {
    arg(
        c"subject-key",
        ArgKind::Key(spec),
        c"the subject's cutoff key: <prefix>{<sub>}",
    )
}

pub const SID: Arg = arg(
    c"sid",
    ArgKind::Text,
    c"the OIDC session id: the tokens' sid claim",
);
pub const LOGOUT_TOKEN: Arg = arg(
    c"logout_token",
    ArgKind::Text,
    c"an OpenID Connect Back-Channel Logout token, as the identity provider posted it",
);

/// The session key is the third key of KSCHECK and KSINSPECT, the second of KLOGOUT and
/// KREVOKESESSION; its key spec is the command's only one.
pub const fn session_key(notes: &'static CStr) -> Arg {
    arg(c"session-key", ArgKind::Key(0), notes)
}

/// The third key of KSCHECK, KSINSPECT and KCHECKDPOP: every cutoff a token is looked up in.
pub const THIRD_KEY: Arg = session_key(
    c"the session's cutoff key <prefix>{<sub>}:sid:<sid>, or for a token without sid the \
    sid-less cutoff key <prefix>{<sub>}:nosid",
);

pub const VERIFIES: &CStr = c"O(N) where N is the token's length, plus one signature verification";
// INSPECT always verifies; the others go through the verification cache.
pub const VERIFIES_CACHED: &CStr = c"O(N) where N is the token's length, plus one signature \
    verification (none on a verification-cache hit)";

pub const CHECKS_PROOF: &CStr = c"O(N) where N is the length of the token and the proof, plus \
    the proof's signature verification and the token's (none on a verification-cache hit)";

/// KCHECK and KINSPECT only read, and their replies are what the keys hold (an entry, and for
/// KINSPECT its expiry; a cutoff's value): ACCESS. One spec covers both keys, as LCS's does.
pub const READ_BOTH: &[KeySpec] = &[KeySpec {
    notes: c"the token's entry key and its subject's cutoff key",
    flags: RO | ACCESS,
    first: 1,
    count: 2,
}];

/// KSCHECK and KSINSPECT: READ_BOTH and the session's cutoff key.
pub const READ_THREE: &[KeySpec] = &[KeySpec {
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
pub const fn end_session(count: c_int) -> [KeySpec; 1] {
    [KeySpec {
        notes: c"the subject's cutoff key, the session's cutoff key and (optional) the subject's \
            sid-less cutoff key, read; cutoffs created or moved forward",
        flags: RW | ACCESS | UPDATE,
        first: 1,
        count,
    }]
}
pub const KLOGOUT_KEYS: &[KeySpec] = &end_session(-2);
pub const KREVOKESESSION_KEYS: &[KeySpec] = &end_session(-3);

/// The third key of the end-session forms, optional for the clients that declare two.
pub const SIDLESS_KEY: Arg = optional(arg(
    c"sidless-key",
    ArgKind::Key(0),
    c"the subject's sid-less cutoff key <prefix>{<sub>}:nosid, which a session's end also moves \
    (the tokens without sid)",
));

static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: size_of::<raw::RedisModuleCommandArg>(),
};

/// Declares every command's info. A server without the API (Redis 6) or refusing one command's
/// info keeps that command's defaults: the module works, only `%R~` patterns and docs do not.
pub fn declare(ctx: &Context, commands: &[&Command]) {
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
    for command in commands {
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
        let mut specs: Vec<_> = command.key_specs.iter().map(key_spec).collect();
        specs.push(END_OF_KEY_SPECS);
        let info = raw::RedisModuleCommandInfo {
            version: &VERSION,
            summary: command.summary.as_ptr(),
            complexity: command.complexity.as_ptr(),
            since: SINCE.as_ptr(),
            history: ptr::null_mut(),
            tips: ptr::null(),
            arity: command.arity,
            key_specs: if command.key_specs.is_empty() {
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
        ArgKind::Key(spec) => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
            spec,
            None,
        ),
        ArgKind::Text => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            -1,
            None,
        ),
        ArgKind::UnixTime => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
            -1,
            None,
        ),
        ArgKind::Token => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
            -1,
            None,
        ),
        ArgKind::OneOf(sub) => (
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
