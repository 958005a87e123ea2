//! Revocation rules beyond a single token's entry: subject cutoffs (`REVOKEALL`) and session
//! ends (`LOGOUT`, `REVOKESESSION`), when their cutoffs expire, and which keys they write.
//! Where the keys are is `keyscheme`'s; how they are read and written is `denylist`'s.

use crate::clock::now_ms;
use crate::denylist;
use crate::route::{self, Route};
use jwtdeny_core::error::Error;
use jwtdeny_core::keyscheme::{scoped_session_key, scoped_sidless_key, scoped_subject_key};

/// When a cutoff at `at` may expire: once no token it revokes can still be valid, which takes
/// `max_lifetime` (plus leeway). `None` without max-lifetime: such a cutoff never expires.
pub fn cutoff_expiry_ms(at: i64, max_lifetime: i64, leeway: i64) -> Option<i64> {
    (max_lifetime > 0).then(|| {
        at.saturating_add(max_lifetime)
            .saturating_add(leeway)
            .saturating_mul(1000)
    })
}

/// What a LOGOUT or a REVOKESESSION did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Wrote the session's cutoff (and the subject's sid-less cutoff).
    Session,
    /// Wrote the subject's cutoff: the logout named no session.
    Subject,
    /// Wrote the subject's cutoff for a session: no max-lifetime bounds a session's cutoff.
    SessionAsSubject,
    /// Changed nothing: already revoked, or nothing left to revoke.
    Already,
}

/// A session's end, as LOGOUT (from a logout token) and REVOKESESSION (from its arguments) ask.
pub struct EndSession<'a> {
    pub prefix: &'a str,
    /// The subject's issuer's `keyscheme::scope`; `""` for the default issuer.
    pub scope: &'a str,
    pub max_lifetime: i64,
    pub leeway: i64,
    pub sub: &'a str,
    /// The session; `None` ends every session of `sub`.
    pub sid: Option<&'a str>,
    /// Up to when: the logout token's `iat`, or now.
    pub at: i64,
    /// The command, for routing errors (`LOGOUT`, `REVOKESESSION`).
    pub command: &'a str,
    /// The keyspace event of its writes.
    pub event: &'a str,
}

impl EndSession<'_> {
    /// Ends the session (or, without `sid`, every session of `sub`) up to `at`, in one atomic
    /// step.
    ///
    /// A session's cutoff can expire only once no token it revokes can still be valid, which
    /// takes max-lifetime; without one the subject's cutoff is raised instead (over-revoking,
    /// never under-revoking). A session's end also raises the subject's sid-less cutoff: its
    /// tokens that carry no `sid` (most providers' access tokens) cannot be told apart by
    /// session, so any session's end revokes those issued up to it. Nothing is written when the
    /// subject's cutoff covers `at` already, nor when the cutoff would be born expired (every
    /// token it covers has expired).
    pub fn apply(&self, ctx: &redis_module::Context, route: Route) -> Result<SessionEnd, Error> {
        let subject = scoped_subject_key(self.prefix, self.scope, self.sub);
        let session = self
            .sid
            .map(|sid| scoped_session_key(self.prefix, self.scope, self.sub, sid));
        let sidless = scoped_sidless_key(self.prefix, self.scope, self.sub);
        // The keyed forms declare the subject key, the session key (the subject key again
        // without sid) and, in their three-key form, the sid-less key: which ones are written
        // depends on the token and on max-lifetime.
        let second = session.as_deref().unwrap_or(&subject);
        route::check(route, &[&subject, second, &sidless], self.command)?;
        let expires_at_ms = cutoff_expiry_ms(self.at, self.max_lifetime, self.leeway);
        if expires_at_ms.is_some_and(|ms| ms <= now_ms()) {
            return Ok(SessionEnd::Already);
        }
        let subject_cutoff = denylist::cutoff(ctx, &subject)?;
        if subject_cutoff.is_some_and(|c| c >= self.at) {
            return Ok(SessionEnd::Already);
        }
        let moved = match (&session, expires_at_ms) {
            (Some(key), Some(_)) => {
                let moved = self.advance(ctx, key, expires_at_ms)?;
                // Forward only, like every cutoff: a later session end may have moved it further.
                self.advance(ctx, &sidless, expires_at_ms)?;
                moved.then_some(SessionEnd::Session)
            }
            // By subject: its cutoff was read above and is below `at`, so it moves.
            (sid, _) => {
                denylist::write_cutoff(ctx, &subject, self.at, expires_at_ms, self.event)?;
                Some(if sid.is_some() {
                    SessionEnd::SessionAsSubject
                } else {
                    SessionEnd::Subject
                })
            }
        };
        Ok(moved.unwrap_or(SessionEnd::Already))
    }

    /// Moves the cutoff at `key` forward to `at`; whether it moved.
    fn advance(
        &self,
        ctx: &redis_module::Context,
        key: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<bool, Error> {
        Ok(denylist::advance_cutoff(ctx, key, self.at, expires_at_ms, self.event)?.is_none())
    }
}
