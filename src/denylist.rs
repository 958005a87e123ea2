//! The denylist: how an entry's key is derived, and how entries are read and written.
//!
//! An entry is the string key `<prefix>{<sub>}:<iat>` holding `1`, expiring at the token's own
//! expiry. The key comes from verified claims only, never from the token's bytes, so every
//! re-encoding of one token (a different signature, another NumericDate spelling) finds it.

use crate::error::Error;
use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context};

/// Percent-encodes the characters that would make the hash tag ambiguous: `{` and `}` delimit
/// it, and `%` is the escape itself. Ordinary subjects are left exactly as they are.
pub fn encode_subject(sub: &str) -> std::borrow::Cow<'_, str> {
    if !sub.contains(['%', '{', '}']) {
        return sub.into();
    }
    let mut out = String::with_capacity(sub.len() + 8);
    for c in sub.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The key of the entry for a token of `sub` issued at `iat` (canonical whole seconds). The
/// subject is the hash tag, so all of a subject's entries share one cluster slot.
pub fn entry_key(prefix: &str, sub: &str, iat: i64) -> String {
    format!("{prefix}{{{}}}:{iat}", encode_subject(sub))
}

/// Whether an entry exists. Redis's own lookup applies expiry, so a logically expired entry
/// is not found, on a master and on a replica alike.
pub fn contains(ctx: &Context, key: &str) -> bool {
    !ctx.open_key(&ctx.create_string(key)).is_null()
}

/// Adds an entry expiring at `expires_at_ms` (absolute, ms). Returns false when it was there.
///
/// The write goes through `SET key 1 NX PXAT ms` with replication on: replicas and the AOF get
/// that deterministic effect with its absolute expiry (never the REVOKE command, which would be
/// verified again against another clock and key set), and only when the SET changed something.
pub fn insert(ctx: &Context, key: &str, expires_at_ms: i64) -> Result<bool, Error> {
    let options = CallOptionsBuilder::new()
        .replicate()
        .errors_as_replies()
        .build();
    let at = expires_at_ms.to_string();
    let reply: CallResult = ctx.call_ext("SET", &options, &[key, "1", "NX", "PXAT", &at]);
    match reply {
        Ok(CallReply::Null(_)) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(Error::Internal(format!(
            "SET of the denylist entry failed: {}",
            e.to_utf8_string().unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_subjects_are_kept_verbatim() {
        assert_eq!(
            entry_key("jwtdeny:", "user-hs256", 1767225600),
            "jwtdeny:{user-hs256}:1767225600"
        );
        assert_eq!(entry_key("p:", "a:b@c.d", -1), "p:{a:b@c.d}:-1");
    }

    #[test]
    fn braces_and_percent_are_encoded() {
        assert_eq!(
            entry_key("jwtdeny:", "a{b}c%", 5),
            "jwtdeny:{a%7Bb%7Dc%25}:5"
        );
        // Distinct subjects never share a key, even ones that look like encodings.
        assert_ne!(entry_key("p:", "%7B", 1), entry_key("p:", "{", 1));
    }

    #[test]
    fn the_hash_tag_is_the_whole_subject() {
        for sub in ["}", "{", "a}b", "{x}", "%", "}{"] {
            let key = entry_key("jwtdeny:", sub, 1);
            let open = key.find('{').unwrap();
            let close = open + 1 + key[open + 1..].find('}').unwrap();
            assert_eq!(&key[open + 1..close], encode_subject(sub), "{sub}");
        }
    }
}
