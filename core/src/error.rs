//! The one error type of the module and the one place that turns it into a Redis reply.
//!
//! The first word of every error reply is a stable code that clients branch on; the rest is a
//! message for humans. Messages may quote client input (a `kid`, an `alg`) but never key material.

use std::fmt;

/// The codes a token is refused with, in the order the checks run (the order INFO counts
/// them in). Every other refusal is `ERR`.
pub const CODES: [&str; 8] = [
    "MALFORMED",
    "BADALG",
    "NOKEY",
    "BADSIG",
    "BADCLAIMS",
    "EXPIRED",
    "NOTYET",
    "DPOP",
];

/// Why a token, a keys file or a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a compact JWS we can even look at: size, segments, base64url, JSON shape.
    Malformed(String),
    /// `alg` missing, `none`, not allowed, or not fitting the key its `kid` names.
    BadAlg(String),
    /// No key for the token's `kid`/`alg`, or no keys loaded at all.
    NoKey(String),
    /// The signature does not verify.
    BadSig(String),
    /// Authentic, but its claims are unusable (`sub`, `iat`, `exp`, `iss`, `aud`).
    BadClaims(String),
    /// The token is past `exp` (+ leeway).
    Expired(String),
    /// The token is before `nbf` (− leeway).
    NotYet(String),
    /// A sender-constrained token presented without what binds it (a DPoP proof, a client
    /// certificate), or a DPoP proof refused. The message's first word is the OAuth error code a
    /// resource server answers with (RFC 9449 §7.1, RFC 6750 §3.1): `invalid_token`,
    /// `invalid_dpop_proof`, or `use_dpop_nonce` followed by a fresh nonce.
    Dpop(String),
    /// A usage error of a command (unknown subcommand, missing configuration).
    Usage(String),
    /// A keys file that cannot be used; the message says what is wrong with it.
    KeysFile(String),
    /// A bug in the module turned into an error instead of an abort.
    Internal(String),
}

impl Error {
    /// The stable first word of the reply.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "MALFORMED",
            Error::BadAlg(_) => "BADALG",
            Error::NoKey(_) => "NOKEY",
            Error::BadSig(_) => "BADSIG",
            Error::BadClaims(_) => "BADCLAIMS",
            Error::Expired(_) => "EXPIRED",
            Error::NotYet(_) => "NOTYET",
            Error::Dpop(_) => "DPOP",
            Error::Usage(_) | Error::KeysFile(_) | Error::Internal(_) => "ERR",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::Malformed(m)
            | Error::BadAlg(m)
            | Error::NoKey(m)
            | Error::BadSig(m)
            | Error::BadClaims(m)
            | Error::Expired(m)
            | Error::NotYet(m)
            | Error::Dpop(m)
            | Error::Usage(m)
            | Error::KeysFile(m)
            | Error::Internal(m) => m,
        }
    }
}

impl Error {
    /// A token refused for what binds it: `DPOP invalid_token …`.
    pub fn unbound(why: impl fmt::Display) -> Error {
        Error::Dpop(format!("invalid_token {why}"))
    }

    /// A DPoP proof refused: `DPOP invalid_dpop_proof …`, the message naming the rule.
    pub fn bad_proof(why: impl fmt::Display) -> Error {
        Error::Dpop(format!("invalid_dpop_proof {why}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeysFile(m) => write!(f, "ERR bad keys file: {m}"),
            Error::Internal(m) => write!(f, "ERR jwtdeny internal error: {m}"),
            _ => write!(f, "{} {}", self.code(), self.message()),
        }
    }
}

impl Error {
    /// The text of the error reply: one line of printable ASCII, whatever the message quotes.
    pub fn reply_text(&self) -> String {
        printable(&self.to_string(), usize::MAX)
    }
}

#[cfg(feature = "redis")]
impl From<Error> for redis_module::RedisError {
    fn from(e: Error) -> Self {
        redis_module::RedisError::String(e.reply_text())
    }
}

/// `text` as one line of printable ASCII, at most `max_chars` characters of it (then `...`).
///
/// Error replies go through this: besides being what clients expect, it is load-bearing, since
/// redis-module writes error text one byte per `char`, so U+0100 would become a NUL byte and
/// abort the server from outside any guard of ours. Log lines go through it too, so that text
/// from a client, a file or the network can neither forge log lines nor flood the log.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_add(3)));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Quotes a piece of client input for an error message: bounded in length and printable, so a
/// hostile value can neither flood a reply nor smuggle control bytes into it or into the log.
pub fn quote(input: &str) -> String {
    format!("'{}'", printable(input, 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_starts_with_the_code() {
        assert_eq!(
            Error::BadSig("signature does not verify".into()).to_string(),
            "BADSIG signature does not verify"
        );
        assert!(Error::KeysFile("x".into()).to_string().starts_with("ERR "));
        assert!(Error::Internal("x".into()).to_string().starts_with("ERR "));
    }

    #[test]
    fn replies_are_printable_ascii_whatever_the_input() {
        for input in [
            "\u{100}", "\u{4e00}", "\u{ac00}", "é", "\0", "\u{fffd}", "a\r\nb",
        ] {
            let text = Error::NoKey(format!("kid {}", quote(input))).reply_text();
            assert!(
                text.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{text:?}"
            );
            let text = Error::Usage(input.to_string()).reply_text();
            assert!(
                text.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{text:?}"
            );
        }
    }

    #[test]
    fn quote_bounds_and_escapes() {
        assert_eq!(quote("a\0b\r\n"), "'a\\u{0}b\\r\\n'");
        let long = "x".repeat(1000);
        assert_eq!(quote(&long).len(), 64 + 2 + 3);
    }
}
