//! Cluster routing: which Redis keys a command declares, and whether it may act on the keys it
//! derives from the token. A keyed form (`JWTDENY.K…`) declares its keys as its leading
//! arguments, so Redis Cluster routes it, follows slot migrations and applies ACL key patterns
//! by them; the server never trusts them, and refuses any that are not the token's own.

use crate::denylist::Place;
use jwtdeny_core::error::{quote, Error};
use redis_module::{Context, ContextFlags, RedisError, RedisString};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the server runs Redis Cluster: fixed before modules load, so read once, not on
/// every command.
static IN_CLUSTER: AtomicBool = AtomicBool::new(false);

/// Reads what routing needs to know of the server once, as the module loads.
pub fn init(ctx: &Context) {
    let cluster = ctx.get_flags().contains(ContextFlags::CLUSTER);
    IN_CLUSTER.store(cluster, Ordering::Relaxed);
}

pub fn in_cluster() -> bool {
    IN_CLUSTER.load(Ordering::Relaxed)
}

/// Where a command's declared keys are among its arguments: its row of the command table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyArgs {
    /// None: the standalone forms derive every key from the token or subject.
    None,
    /// The first `n` arguments.
    Leading(usize),
    /// Every argument up to the last `trailing` ones (the token, or `<sub> <sid>`), from `min`
    /// to `max` keys: the end-session forms' optional sid-less key.
    BeforeLast {
        trailing: usize,
        min: usize,
        max: usize,
    },
}

impl KeyArgs {
    /// The legacy (first, last, step) Redis routes by where it has no key specs; a negative
    /// last key counts from the end.
    pub fn legacy(self) -> (c_int, c_int, c_int) {
        let n = |v: usize| c_int::try_from(v).unwrap_or(0);
        match self {
            KeyArgs::None => (0, 0, 0),
            KeyArgs::Leading(count) => (1, n(count), 1),
            KeyArgs::BeforeLast { trailing, .. } => (1, -n(trailing) - 1, 1),
        }
    }

    /// Takes the declared keys off a command's arguments. The rest keeps one leading element
    /// (the last key, or the command name) standing in for the command name, so that one parser
    /// serves the standalone and the keyed form.
    pub fn split(self, args: &[RedisString]) -> Result<(Route<'_>, &[RedisString]), RedisError> {
        let n = match self {
            KeyArgs::None => return Ok((Route::Derived, args)),
            KeyArgs::Leading(n) => n,
            KeyArgs::BeforeLast { trailing, min, max } => {
                args.len().saturating_sub(trailing + 1).clamp(min, max)
            }
        };
        match (args.get(1..=n), args.get(n..)) {
            (Some(keys), Some(rest)) if rest.len() >= 2 => Ok((Route::Declared(keys), rest)),
            _ => Err(RedisError::WrongArity),
        }
    }
}

/// Where a command's Redis keys come from, and so how Redis routed it.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// Derived from the token or subject alone: the standalone forms.
    Derived,
    /// Also given as the leading arguments of a keyed form.
    Declared(&'a [RedisString]),
}

impl Route<'_> {
    fn declares(&self, n: usize) -> bool {
        matches!(self, Route::Declared(d) if d.len() == n)
    }
}

/// Refuses to act on keys other than the ones Redis routed the command by. A keyed form must
/// declare exactly the token's own keys (no pointing a revocation at someone else's entry); a
/// standalone form in a cluster could be on the wrong node, so it names the keyed form instead.
pub fn check(route: Route, derived: &[&str], command: &str) -> Result<(), Error> {
    match route {
        Route::Declared(declared) => {
            for (given, want) in declared.iter().zip(derived) {
                if given.as_slice() != want.as_bytes() {
                    return Err(Error::Usage(format!(
                        "key {} does not match the derived key {}",
                        quote(&given.to_string_lossy()),
                        quote(want)
                    )));
                }
            }
            Ok(())
        }
        Route::Derived if in_cluster() => Err(Error::Usage(format!(
            "in Redis Cluster use the keyed form JWTDENY.K{command} {} ... so the command \
                 reaches the node that holds its keys",
            derived
                .iter()
                .map(|k| quote(k))
                .collect::<Vec<_>>()
                .join(" ")
        ))),
        Route::Derived => Ok(()),
    }
}

/// Checks the command may act where a verified token's revocation lives.
pub fn locate(place: &Place, route: Route, command: &str) -> Result<(), Error> {
    if matches!(route, Route::Derived) && !in_cluster() {
        return Ok(()); // a standalone server holds every key: nothing to compare
    }
    match place.session() {
        // Every token without sid: the two keys, exactly as before sessions existed.
        None if !route.declares(3) => check(route, &[place.entry(), place.subject()], command),
        _ => check_token(route, place, command),
    }
}

/// [`check`] for a token's keys. The three-key forms (`KSCHECK`, `KSINSPECT`) declare the third
/// cutoff a token is looked up in too: its session's, or for a token without `sid` its
/// subject's sid-less cutoff. The two-key forms may leave it undeclared: it shares the
/// subject's slot, and Redis runs a two-key command in a migrating slot only where both
/// declared keys are, which holds the token's entry (a revoked token). A standalone CHECK or
/// INSPECT of a token with a `sid` in a cluster names the form that declares every key it reads.
#[cold]
pub fn check_token(route: Route, place: &Place, command: &str) -> Result<(), Error> {
    let (entry, subject, third) = (place.entry(), place.subject(), place.session_cutoff());
    match place.session() {
        _ if route.declares(3) => check(route, &[entry, subject, third], command),
        Some(_) if matches!(route, Route::Derived) && matches!(command, "CHECK" | "INSPECT") => {
            check(route, &[entry, subject, third], &format!("S{command}"))
        }
        _ => check(route, &[entry, subject], command),
    }
}
