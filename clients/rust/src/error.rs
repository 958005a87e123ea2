//! A refused token, told apart from trouble reaching Redis.

use std::fmt;

use crate::keys::KeyError;

/// The first word of an error reply jwtdeny sends for a token it refuses: stable, branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not a compact JWS jwtdeny can read (shape, base64url, JSON, duplicate members, `crit`).
    Malformed,
    /// `alg` missing, `none`, unsupported, not allowed, or not fitting its key.
    BadAlg,
    /// No key for the token's `kid` (or for its `alg`).
    NoKey,
    /// The signature does not verify.
    BadSig,
    /// A claim is missing or not accepted (`sub`, `iat`, `iss`, `aud`, lifetime, …).
    BadClaims,
    /// `exp` has passed.
    Expired,
    /// `nbf` (or `iat`) is in the future.
    NotYet,
    /// A sender-constrained token without its proof, or a refused DPoP proof.
    Dpop,
}

impl Code {
    /// Every code, in the order the server checks a token.
    pub const ALL: [Code; 8] = [
        Code::Malformed,
        Code::BadAlg,
        Code::NoKey,
        Code::BadSig,
        Code::BadClaims,
        Code::Expired,
        Code::NotYet,
        Code::Dpop,
    ];

    /// The code as the server writes it: `MALFORMED`, `BADALG`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Malformed => "MALFORMED",
            Code::BadAlg => "BADALG",
            Code::NoKey => "NOKEY",
            Code::BadSig => "BADSIG",
            Code::BadClaims => "BADCLAIMS",
            Code::Expired => "EXPIRED",
            Code::NotYet => "NOTYET",
            Code::Dpop => "DPOP",
        }
    }

    /// The code of an error reply's first word, `None` for any other word (`ERR`, `READONLY`, …).
    pub fn parse(word: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token jwtdeny refuses: its [`Code`] and the server's message (for people; it may change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    code: Code,
    message: String,
}

impl TokenError {
    /// `message` is the whole error reply, starting with the code.
    pub(crate) fn new(code: Code, message: String) -> TokenError {
        TokenError { code, message }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The whole error reply, e.g. `EXPIRED token expired at 1795942256 (exp) with 0s leeway`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`Code::Dpop`], the OAuth error the server named: `invalid_token`,
    /// `invalid_dpop_proof` or `use_dpop_nonce`.
    pub fn dpop_error(&self) -> Option<&str> {
        (self.code == Code::Dpop).then(|| self.message.split(' ').nth(1).unwrap_or("invalid_token"))
    }

    /// For `use_dpop_nonce`, the fresh nonce to send back in a `DPoP-Nonce` header.
    pub fn nonce(&self) -> Option<&str> {
        if self.dpop_error() == Some("use_dpop_nonce") {
            self.message.split(' ').nth(2)
        } else {
            None
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenError {}

impl From<KeyError> for TokenError {
    // In cluster mode the keys come before anything is sent; the server would have refused
    // the token with the same code.
    fn from(e: KeyError) -> TokenError {
        let code = Code::parse(e.code()).unwrap_or(Code::Malformed);
        TokenError::new(code, e.to_string())
    }
}

/// What a jwtdeny call can fail with.
#[derive(Debug)]
pub enum Error {
    /// The server refused the token: reject it (401). Branch on [`TokenError::code`].
    Token(TokenError),
    /// Anything else: Redis unreachable, a timeout, `READONLY`, `NOPERM`, an `ERR` (a usage
    /// error, or a server without the module: `unknown command`). The token's fate is unknown.
    Redis(redis::RedisError),
    /// A reply of an unexpected shape (a server that is not jwtdeny's).
    Reply(String),
}

impl Error {
    /// The refused token's error, `None` when the token's fate is unknown.
    pub fn token(&self) -> Option<&TokenError> {
        match self {
            Error::Token(e) => Some(e),
            _ => None,
        }
    }

    /// The refused token's code, `None` when the token's fate is unknown.
    pub fn code(&self) -> Option<Code> {
        self.token().map(TokenError::code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token(e) => e.fmt(f),
            Error::Redis(e) => write!(f, "redis: {e}"),
            Error::Reply(what) => write!(f, "unexpected reply from jwtdeny: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Token(e) => Some(e),
            Error::Redis(e) => Some(e),
            Error::Reply(_) => None,
        }
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        Error::Token(e.into())
    }
}

impl From<redis::RedisError> for Error {
    /// A refused token's error reply becomes [`Error::Token`]; a connection or server failure
    /// never starts with one of the codes, so the first word alone tells them apart.
    fn from(e: redis::RedisError) -> Error {
        let code = e.code().and_then(Code::parse);
        match code {
            Some(code) => {
                let message = match e.detail() {
                    Some(detail) => format!("{code} {detail}"),
                    None => code.to_string(),
                };
                Error::Token(TokenError::new(code, message))
            }
            None => Error::Redis(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("ERR"), None);
        assert_eq!(Code::parse("badsig"), None);
    }

    #[test]
    fn dpop_details() {
        let e = TokenError::new(Code::Dpop, "DPOP use_dpop_nonce n0nce the proof ...".into());
        assert_eq!(e.dpop_error(), Some("use_dpop_nonce"));
        assert_eq!(e.nonce(), Some("n0nce"));
        let e = TokenError::new(Code::Dpop, "DPOP invalid_token bound".into());
        assert_eq!((e.dpop_error(), e.nonce()), (Some("invalid_token"), None));
        let e = TokenError::new(Code::BadSig, "BADSIG x".into());
        assert_eq!(e.dpop_error(), None);
    }

    #[test]
    fn server_errors_are_told_apart() {
        let e = redis::make_extension_error("BADSIG".into(), Some("HS256 no".into()));
        let Error::Token(t) = Error::from(e) else {
            panic!("not a token error")
        };
        assert_eq!((t.code(), t.message()), (Code::BadSig, "BADSIG HS256 no"));
        let e = redis::make_extension_error("NOTJWTDENY".into(), None);
        assert!(matches!(Error::from(e), Error::Redis(_)));
    }
}
