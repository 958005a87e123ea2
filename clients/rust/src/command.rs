//! jwtdeny's commands, standalone or keyed (Redis Cluster), and how to read their replies.
//! The sync and async clients share all of it; they only send.

use redis::{Cmd, Value};

use crate::error::Error;
use crate::keys;
use crate::{CheckOptions, Checked, Claims, Inspection};

/// How the commands are built: the plain forms, or the keyed forms with the server's prefix.
#[derive(Debug, Clone)]
pub(crate) struct Commands {
    pub(crate) keyed: bool,
    pub(crate) prefix: String,
    /// The server's issuer registry, for the scoped keys of its issuers' subjects.
    pub(crate) issuers: Option<std::sync::Arc<keys::Issuers>>,
}

/// A command from its words (the first is the name).
fn with<S: redis::ToRedisArgs>(words: &[S]) -> Cmd {
    let mut c = Cmd::new();
    for w in words {
        c.arg(w);
    }
    c
}

impl Commands {
    fn options(extra: &mut Vec<String>, options: &CheckOptions) {
        if options.with_claims {
            extra.push("WITHCLAIMS".into());
        }
        if let Some(cert) = &options.cert {
            extra.push("CERT".into());
            extra.push(cert.clone());
        }
    }

    /// CHECK, KSCHECK for a cluster: every key it reads declared (the token's session key, or
    /// its subject's sid-less key), so ACL key patterns and slot migrations cover them all.
    pub(crate) fn check(&self, token: &str, options: &CheckOptions) -> Result<Cmd, Error> {
        let mut words: Vec<String> = if self.keyed {
            let k = keys::keys_for_issuers(&self.prefix, self.issuers.as_deref(), token)?;
            vec!["JWTDENY.KSCHECK".into(), k.entry, k.subject, k.third]
        } else {
            vec!["JWTDENY.CHECK".into()]
        };
        words.push(token.into());
        Self::options(&mut words, options);
        Ok(with(&words))
    }

    /// CHECKDPOP, KCHECKDPOP for a cluster (a write: the proof is used up).
    pub(crate) fn check_dpop(
        &self,
        token: &str,
        proof: &str,
        method: &str,
        url: &str,
        options: &CheckOptions,
    ) -> Result<Cmd, Error> {
        let mut words: Vec<String> = if self.keyed {
            let mut w = vec!["JWTDENY.KCHECKDPOP".to_owned()];
            w.extend(keys::dpop_keys_for_issuers(
                &self.prefix,
                self.issuers.as_deref(),
                token,
                proof,
            )?);
            w
        } else {
            vec!["JWTDENY.CHECKDPOP".into()]
        };
        words.extend([token.into(), proof.into(), method.into(), url.into()]);
        Self::options(&mut words, options);
        Ok(with(&words))
    }

    pub(crate) fn revoke(&self, token: &str) -> Result<Cmd, Error> {
        Ok(if self.keyed {
            let k = keys::keys_for_issuers(&self.prefix, self.issuers.as_deref(), token)?;
            with(&["JWTDENY.KREVOKE", &k.entry, &k.subject, token])
        } else {
            with(&["JWTDENY.REVOKE", token])
        })
    }

    pub(crate) fn inspect(&self, token: &str) -> Result<Cmd, Error> {
        Ok(if self.keyed {
            let k = keys::keys_for_issuers(&self.prefix, self.issuers.as_deref(), token)?;
            with(&["JWTDENY.KSINSPECT", &k.entry, &k.subject, &k.third, token])
        } else {
            with(&["JWTDENY.INSPECT", token])
        })
    }

    /// `issuer`: whose `sub` (an issuer's name, or an `iss`, of `jwtdeny.issuers-file`;
    /// `None` the default issuer).
    pub(crate) fn revoke_all(
        &self,
        sub: &str,
        at: Option<i64>,
        issuer: Option<&str>,
    ) -> Result<Cmd, Error> {
        let mut c = if self.keyed {
            let scope = keys::scope_named(self.issuers.as_deref(), issuer).map_err(usage)?;
            with(&[
                "JWTDENY.KREVOKEALL",
                &keys::scoped_subject_key(&self.prefix, &scope, sub),
                sub,
            ])
        } else {
            with(&["JWTDENY.REVOKEALL", sub])
        };
        if let Some(at) = at {
            c.arg("AT").arg(at);
        }
        if let Some(issuer) = issuer {
            c.arg("ISSUER").arg(issuer);
        }
        Ok(c)
    }

    pub(crate) fn logout(&self, logout_token: &str) -> Result<Cmd, Error> {
        Ok(if self.keyed {
            let [subject, session, sidless] =
                keys::logout_keys_for_issuers(&self.prefix, self.issuers.as_deref(), logout_token)?;
            with(&[
                "JWTDENY.KLOGOUT",
                &subject,
                &session,
                &sidless,
                logout_token,
            ])
        } else {
            with(&["JWTDENY.LOGOUT", logout_token])
        })
    }

    /// `issuer` as for [`Commands::revoke_all`]; the keyed form has no `ISSUER`: the server
    /// reads the issuer from the keys' scope.
    pub(crate) fn revoke_session(
        &self,
        sub: &str,
        sid: &str,
        issuer: Option<&str>,
    ) -> Result<Cmd, Error> {
        Ok(if self.keyed {
            let scope = keys::scope_named(self.issuers.as_deref(), issuer).map_err(usage)?;
            let subject = keys::scoped_subject_key(&self.prefix, &scope, sub);
            with(&[
                "JWTDENY.KREVOKESESSION",
                &subject,
                &format!("{subject}:sid:{sid}"),
                &format!("{subject}:nosid"),
                sub,
                sid,
            ])
        } else {
            let mut c = with(&["JWTDENY.REVOKESESSION", sub, sid]);
            if let Some(issuer) = issuer {
                c.arg("ISSUER").arg(issuer);
            }
            c
        })
    }
}

/// An `ISSUER` the registry does not know: what the server answers it, an `ERR` (not a token's
/// refusal).
fn usage(e: keys::KeyError) -> Error {
    // Built as the server's own error reply would parse, so that `code()` is `Some("ERR")`.
    let line: String = e
        .message()
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    match redis::parse_redis_value(format!("-ERR {line}\r\n").as_bytes()) {
        Ok(redis::Value::ServerError(err)) => Error::Redis(err.into()),
        _ => Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "ERR",
            line,
        ))),
    }
}

fn unexpected(what: &str, v: &Value) -> Error {
    Error::Reply(format!("{what}: {v:?}"))
}

/// An integer reply (`1`/`0`, a cutoff).
pub(crate) fn read_int(v: Value) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(i),
        Value::ServerError(e) => Err(redis::RedisError::from(e).into()),
        other => Err(unexpected("expected an integer", &other)),
    }
}

pub(crate) fn read_flag(v: Value) -> Result<bool, Error> {
    read_int(v).map(|i| i == 1)
}

fn text(v: Value) -> Result<Option<String>, Error> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| Error::Reply("a reply that is not UTF-8".into())),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Ok(Some(s)),
        Value::Int(i) => Ok(Some(i.to_string())),
        other => Err(unexpected("expected a string", &other)),
    }
}

/// CHECK's reply: `1`/`0`, or with WITHCLAIMS `[1, "<payload>"]` / `[0, nil]`.
pub(crate) fn read_check(v: Value, with_claims: bool) -> Result<Checked, Error> {
    if !with_claims {
        return Ok(Checked {
            active: read_flag(v)?,
            claims: None,
        });
    }
    let Value::Array(items) = v else {
        return Err(match v {
            Value::ServerError(e) => redis::RedisError::from(e).into(),
            other => unexpected("expected [active, claims]", &other),
        });
    };
    let mut items = items.into_iter();
    let (Some(active), Some(payload)) = (items.next(), items.next()) else {
        return Err(Error::Reply(
            "a WITHCLAIMS reply of fewer than 2 items".into(),
        ));
    };
    if !read_flag(active)? {
        return Ok(Checked {
            active: false,
            claims: None,
        });
    }
    let payload = text(payload)?.ok_or_else(|| Error::Reply("active without claims".into()))?;
    let claims = match serde_json::from_str(&payload) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(Error::Reply("claims that are not a JSON object".into())),
    };
    Ok(Checked {
        active: true,
        claims: Some(Claims(claims)),
    })
}

/// INSPECT's field/value pairs, in the server's order (RESP2 array or RESP3 map).
pub(crate) fn read_inspect(v: Value) -> Result<Inspection, Error> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(pairs) => pairs,
        Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
        other => return Err(unexpected("expected field/value pairs", &other)),
    };
    let mut fields = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let name = text(k)?.ok_or_else(|| Error::Reply("a nil field name".into()))?;
        fields.push((name, text(v)?));
    }
    Ok(Inspection { fields })
}
