//! The denylist's key scheme: where a token's revocation, its subject's cutoff and its
//! session's cutoff are stored.
//!
//! An entry is the string key `<prefix>{<sub>}:<iat>`; a subject's cutoff is `<prefix>{<sub>}`;
//! a session's cutoff is `<prefix>{<sub>}:sid:<sid>`; the cutoff of a subject's tokens without
//! `sid` (any session's end) is `<prefix>{<sub>}:nosid`; a DPoP proof's one-time record is
//! `<prefix>{<sub>}:dpop:<digest>`. Keys come from verified claims only, never
//! from the token's bytes, so every re-encoding of one token (a different signature, another
//! NumericDate spelling) finds the same entry. The subject is the hash tag, so all of a
//! subject's keys share one Redis Cluster slot.
//!
//! A subject of an issuer of the registry (`jwtdeny.issuers-file`) is scoped by the issuer's
//! id: its tag is `%<id>:<sub>` (see [`scope`]), so the same `sub` at two issuers has two sets
//! of keys, each in one slot, while the default issuer's keys stay as they always were.
//!
//! The five shapes never meet: the prefix has no braces and the encoded subject none either,
//! so the first `}` ends the tag; after it a cutoff has nothing, an entry `:` and an integer
//! (a digit or `-`), a session `:sid:`, a sid-less cutoff `:nosid` and nothing more, a proof's
//! record `:dpop:` and a digest.

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

/// The scope of an issuer's subjects: `%<id>:`, put before the encoded subject in the hash
/// tag. An id is `[a-z][a-z0-9_-]*`, optionally `.<tenant>` (`issuers::check_name`), so the
/// scope never contains `:` before its end, and after `%` an encoded subject of the default
/// issuer only ever has `25`, `7B` or `7D`: no scoped tag equals an unscoped one, and no two
/// ids share one. `""` is the default issuer's.
pub fn scope(id: &str) -> String {
    format!("%{id}:")
}

/// A token's two keys, built once in one buffer: its subject's cutoff key
/// `<prefix>{<sub>}` is a prefix of its entry key `<prefix>{<sub>}:<iat>`.
pub struct DenyKeys {
    entry: String,
    subject_len: usize,
}

impl DenyKeys {
    pub fn new(prefix: &str, sub: &str, iat: i64) -> DenyKeys {
        DenyKeys::scoped(prefix, "", sub, iat)
    }

    /// The keys of a subject of the issuer whose [`scope`] is `scope`.
    pub fn scoped(prefix: &str, scope: &str, sub: &str, iat: i64) -> DenyKeys {
        let sub = encode_subject(sub);
        let mut digits = itoa::Buffer::new();
        let iat = digits.format(iat);
        let mut entry =
            String::with_capacity(prefix.len() + scope.len() + sub.len() + iat.len() + 3);
        entry.push_str(prefix);
        entry.push('{');
        entry.push_str(scope);
        entry.push_str(&sub);
        entry.push('}');
        let subject_len = entry.len();
        entry.push(':');
        entry.push_str(iat);
        DenyKeys { entry, subject_len }
    }

    pub fn entry(&self) -> &str {
        &self.entry
    }

    pub fn subject(&self) -> &str {
        self.entry.get(..self.subject_len).unwrap_or(&self.entry)
    }
}

/// The key of the entry for a token of `sub` issued at `iat` (canonical whole seconds). The
/// subject is the hash tag, so all of a subject's entries share one cluster slot.
pub fn entry_key(prefix: &str, sub: &str, iat: i64) -> String {
    DenyKeys::new(prefix, sub, iat).entry
}

/// The key of a subject's cutoff (`JWTDENY.REVOKEALL`): the same hash tag as its entries, so
/// one command can read both atomically, in one cluster slot.
pub fn subject_key(prefix: &str, sub: &str) -> String {
    scoped_subject_key(prefix, "", sub)
}

/// [`subject_key`] of a subject of the issuer whose [`scope`] is `scope`.
pub fn scoped_subject_key(prefix: &str, scope: &str, sub: &str) -> String {
    format!("{prefix}{{{scope}{}}}", encode_subject(sub))
}

/// The key of a session's cutoff (`JWTDENY.LOGOUT`, `JWTDENY.REVOKESESSION`): every token of
/// `sub` carrying this `sid` and issued at or before the cutoff is revoked. The session id comes
/// last, after the hash tag, so it is kept verbatim: any bytes in it (braces, `:`, NUL) can
/// neither move the tag nor make two sessions share a key, and clients derive it by plain
/// concatenation.
pub fn session_key(prefix: &str, sub: &str, sid: &str) -> String {
    scoped_session_key(prefix, "", sub, sid)
}

/// [`session_key`] of a subject of the issuer whose [`scope`] is `scope`.
pub fn scoped_session_key(prefix: &str, scope: &str, sub: &str, sid: &str) -> String {
    let sub = encode_subject(sub);
    let mut key = String::with_capacity(prefix.len() + scope.len() + sub.len() + sid.len() + 7);
    key.push_str(prefix);
    key.push('{');
    key.push_str(scope);
    key.push_str(&sub);
    key.push_str("}:sid:");
    key.push_str(sid);
    key
}

/// The key of a subject's sid-less cutoff: the last instant any session of `sub` ended
/// (`JWTDENY.LOGOUT` with a `sid`, `JWTDENY.REVOKESESSION`). Tokens of `sub` that carry no
/// `sid` cannot be attributed to a session, so any session's end revokes those issued up to
/// it: over-revocation, never under-revocation. In the subject's slot like its other keys.
pub fn sidless_key(prefix: &str, sub: &str) -> String {
    scoped_sidless_key(prefix, "", sub)
}

/// [`sidless_key`] of a subject of the issuer whose [`scope`] is `scope`.
pub fn scoped_sidless_key(prefix: &str, scope: &str, sub: &str) -> String {
    let mut key = scoped_subject_key(prefix, scope, sub);
    key.push_str(SIDLESS_SUFFIX);
    key
}

/// The key recording a DPoP proof's one-time use: `<prefix>{<sub>}:dpop:<replay_id>`, where
/// `replay_id` is `dpop::replay_id(jkt, jti)` (43 base64url characters, whatever the client
/// sent). In the subject's slot; `:dpop:` meets none of the other shapes.
pub fn proof_key(prefix: &str, sub: &str, replay_id: &str) -> String {
    proof_key_under(&subject_key(prefix, sub), replay_id)
}

/// [`proof_key`] from the subject's key `<prefix>{<sub>}`.
pub fn proof_key_under(subject_key: &str, replay_id: &str) -> String {
    format!("{subject_key}:dpop:{replay_id}")
}

/// What follows the hash tag in a sid-less cutoff's key: neither an integer (an entry) nor
/// `:sid:` (a session), so it meets no other shape.
const SIDLESS_SUFFIX: &str = ":nosid";

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
    fn a_subject_cutoff_shares_the_hash_tag_of_its_entries() {
        let keys = DenyKeys::new("jwtdeny:", "a{b", -7);
        assert_eq!(keys.entry(), "jwtdeny:{a%7Bb}:-7");
        assert_eq!(keys.subject(), subject_key("jwtdeny:", "a{b"));
        assert_eq!(subject_key("jwtdeny:", "a{b"), "jwtdeny:{a%7Bb}");
        assert!(entry_key("jwtdeny:", "a{b", 7).starts_with(&subject_key("jwtdeny:", "a{b")));
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

    /// Splits a key into (encoded subject, what follows the tag), as Redis Cluster finds the tag.
    fn tag_and_rest<'k>(key: &'k str, prefix: &str) -> (&'k str, &'k str) {
        let rest = key.strip_prefix(prefix).unwrap().strip_prefix('{').unwrap();
        rest.split_once('}').unwrap()
    }

    #[test]
    fn a_session_key_is_in_its_subject_slot_and_kept_verbatim() {
        assert_eq!(
            session_key("jwtdeny:", "alice", "sess-1"),
            "jwtdeny:{alice}:sid:sess-1"
        );
        assert_eq!(
            session_key("jwtdeny:", "a{b}", "}{:1\0"),
            "jwtdeny:{a%7Bb%7D}:sid:}{:1\0"
        );
        for (sub, sid) in [
            ("a", "x"),
            ("{", "}"),
            ("a}b", "{c}"),
            ("%", "\0"),
            ("u", ""),
        ] {
            let key = session_key("p:", sub, sid);
            let (tag, rest) = tag_and_rest(&key, "p:");
            assert_eq!(tag, encode_subject(sub), "{sub:?}");
            assert_eq!(rest, format!(":sid:{sid}"));
            assert!(key.starts_with(&subject_key("p:", sub)));
        }
    }

    #[test]
    fn sessions_never_meet_entries_or_cutoffs() {
        let subs = ["a", "a}", "a}:sid:x", "a:sid:x", "{a", "%7D", "-", "1", ""];
        let sids = ["x", "1", "-1", ":1", "", "sid:1", "}"];
        let mut all = std::collections::HashMap::new();
        let mut add = |key: String, what: String| {
            if let Some(other) = all.insert(key.clone(), what.clone()) {
                panic!("{key:?} is both {other} and {what}");
            }
        };
        for sub in subs {
            add(subject_key("p:", sub), format!("cutoff {sub:?}"));
            for iat in [-1, 0, 1, 1767225600] {
                add(entry_key("p:", sub, iat), format!("entry {sub:?} {iat}"));
            }
            for sid in sids {
                add(
                    session_key("p:", sub, sid),
                    format!("session {sub:?} {sid:?}"),
                );
            }
        }
        // What follows the tag tells the three apart, whatever the subject.
        for sub in subs {
            for iat in [-5, 7] {
                let entry = entry_key("p:", sub, iat);
                let (_, rest) = tag_and_rest(&entry, "p:");
                assert!(
                    rest.starts_with(":-") || rest[1..].starts_with(|c: char| c.is_ascii_digit())
                );
            }
            let session = session_key("p:", sub, "9");
            assert!(tag_and_rest(&session, "p:").1.starts_with(":sid:"));
        }
    }

    #[test]
    fn scoped_subjects_never_meet_the_default_issuers_or_each_other() {
        let (a, b) = (scope("acme"), scope("acme.t1"));
        assert_eq!(
            DenyKeys::scoped("jwtdeny:", &a, "123", 5).entry(),
            "jwtdeny:{%acme:123}:5"
        );
        assert_eq!(scoped_subject_key("p:", &b, "x{"), "p:{%acme.t1:x%7B}");
        assert_eq!(scoped_session_key("p:", &a, "u", "s"), "p:{%acme:u}:sid:s");
        assert_eq!(scoped_sidless_key("p:", &a, "u"), "p:{%acme:u}:nosid");
        let subs = [
            "123",
            "%acme:123",
            "acme:123",
            "%",
            "%25acme:1",
            ":",
            "a.t1:1",
            "",
        ];
        let mut all = std::collections::HashMap::new();
        for sub in subs {
            for s in ["", a.as_str(), b.as_str()] {
                let key = scoped_subject_key("p:", s, sub);
                if let Some(other) = all.insert(key.clone(), (s, sub)) {
                    panic!("{key:?} is both {other:?} and {:?}", (s, sub));
                }
            }
        }
    }

    #[test]
    fn the_sidless_cutoff_meets_no_other_shape() {
        assert_eq!(sidless_key("jwtdeny:", "alice"), "jwtdeny:{alice}:nosid");
        assert_eq!(sidless_key("jwtdeny:", "a{b}"), "jwtdeny:{a%7Bb%7D}:nosid");
        assert_ne!(sidless_key("p:", "a"), session_key("p:", "a", "nosid"));
        assert_ne!(sidless_key("p:", "a"), entry_key("p:", "a", 0));
    }
}
