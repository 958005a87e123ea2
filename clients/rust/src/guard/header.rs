//! Reading the credentials of a request, as the other guards read them.

/// `<scheme> +<token68> *`, the scheme case-insensitive (RFC 6750 §2.1, RFC 9449 §7.1).
pub(super) fn scheme_token<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let head = header.get(..scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let rest = &header[scheme.len()..];
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() {
        return None; // no space after the scheme
    }
    let token = token.trim_end_matches(' ');
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~+/-".contains(&b));
    ok.then_some(token)
}

pub(super) fn is_dpop_scheme(header: &str) -> bool {
    header
        .get(..4)
        .is_some_and(|s| s.eq_ignore_ascii_case("DPoP"))
        && header[4..].chars().next().is_none_or(char::is_whitespace)
}

pub(super) fn is_compact_jws(s: &str) -> bool {
    let b64 = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let parts: Vec<&str> = s.split('.').collect();
    matches!(parts[..], [h, p, sig] if !h.is_empty() && !p.is_empty() && b64(h) && b64(p) && b64(sig))
}

/// A SHA-256 thumbprint as CERT takes it: base64url (43 characters) or hex (64).
pub(super) fn is_thumbprint(s: &str) -> bool {
    (s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_as_the_other_guards_read_them() {
        assert_eq!(
            scheme_token("Bearer abc.def.ghi", "Bearer"),
            Some("abc.def.ghi")
        );
        assert_eq!(
            scheme_token("bearer   a-b_c~+/==  ", "Bearer"),
            Some("a-b_c~+/==")
        );
        assert_eq!(scheme_token("Bearerabc", "Bearer"), None);
        assert_eq!(scheme_token("Bearer ", "Bearer"), None);
        assert_eq!(scheme_token("Bearer a b", "Bearer"), None);
        assert_eq!(scheme_token("Bearer =", "Bearer"), None);
        assert_eq!(scheme_token("Basic abc", "Bearer"), None);
        assert_eq!(scheme_token("Bé", "Bearer"), None);
        assert!(is_dpop_scheme("DPoP x") && is_dpop_scheme("dpop") && !is_dpop_scheme("DPoPx"));
        assert!(
            is_compact_jws("a.b.") && !is_compact_jws("a..c") && !is_compact_jws("a.b.c, d.e.f")
        );
        assert!(is_thumbprint(&"A".repeat(43)) && is_thumbprint(&"f".repeat(64)));
        assert!(!is_thumbprint(&"g".repeat(64)) && !is_thumbprint("abc"));
    }
}
