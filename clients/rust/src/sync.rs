//! The sync client.

use redis::{ConnectionLike, Value};

use crate::command::{self, Commands};
use crate::{CheckOptions, Checked, Claims, Error, Inspection, Topology, DEFAULT_PREFIX};

/// jwtdeny's commands over a sync connection: `redis::Connection` (the plain forms) or
/// `redis::cluster::ClusterConnection` (the keyed forms, routed by their keys).
///
/// ```no_run
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let mut jd = jwtdeny::Jwtdeny::new(client.get_connection()?);
/// # let token = "";
/// if let Some(claims) = jd.check_claims(token)? {
///     println!("hello {}", claims.sub().unwrap_or("?"));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Jwtdeny<C> {
    conn: C,
    commands: Commands,
}

impl<C: ConnectionLike> Jwtdeny<C> {
    /// The keyed forms for a cluster connection, the plain ones otherwise.
    pub fn new(conn: C) -> Self
    where
        C: Topology,
    {
        let keyed = conn.is_cluster();
        Self::with_mode(conn, keyed)
    }

    /// The plain forms (`JWTDENY.CHECK <token>`), whatever the connection.
    pub fn standalone(conn: C) -> Self {
        Self::with_mode(conn, false)
    }

    /// The keyed forms (`JWTDENY.KSCHECK <entry-key> <subject-key> <third-key> <token>`),
    /// whatever the connection.
    pub fn cluster(conn: C) -> Self {
        Self::with_mode(conn, true)
    }

    fn with_mode(conn: C, keyed: bool) -> Self {
        Jwtdeny {
            conn,
            commands: Commands {
                keyed,
                prefix: DEFAULT_PREFIX.into(),
                issuers: None,
            },
        }
    }

    /// The server's `jwtdeny.prefix`, when it is not `jwtdeny:` (the keyed forms name it).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.commands.prefix = prefix.into();
        self
    }

    /// The server's issuer registry (`jwtdeny.issuers-file`), so that the keyed forms name the
    /// scoped keys of its issuers' subjects.
    pub fn issuers(mut self, issuers: crate::keys::Issuers) -> Self {
        self.commands.issuers = Some(std::sync::Arc::new(issuers));
        self
    }

    /// Whether the keyed forms are sent.
    pub fn is_keyed(&self) -> bool {
        self.commands.keyed
    }

    pub fn connection(&mut self) -> &mut C {
        &mut self.conn
    }

    pub fn into_connection(self) -> C {
        self.conn
    }

    fn send(&mut self, cmd: redis::Cmd) -> Result<Value, Error> {
        Ok(cmd.query::<Value>(&mut self.conn)?)
    }

    /// `true`: authentic, valid now, not revoked; `false`: revoked. A refused token is
    /// [`Error::Token`].
    pub fn check(&mut self, token: &str) -> Result<bool, Error> {
        Ok(self.check_with(token, &CheckOptions::default())?.active)
    }

    /// The verified claims of an active token, `None` for a revoked one.
    pub fn check_claims(&mut self, token: &str) -> Result<Option<Claims>, Error> {
        Ok(self.check_with(token, &CheckOptions::with_claims())?.claims)
    }

    /// `CHECK` with its options (`WITHCLAIMS`, `CERT`).
    pub fn check_with(&mut self, token: &str, options: &CheckOptions) -> Result<Checked, Error> {
        let cmd = self.commands.check(token, options)?;
        command::read_check(self.send(cmd)?, options.with_claims)
    }

    /// `CHECKDPOP`: a DPoP-bound token with its proof, for the request's method and its
    /// absolute URL as the client addressed it. A write: the proof is used up.
    pub fn check_dpop(
        &mut self,
        token: &str,
        proof: &str,
        method: &str,
        url: &str,
        options: &CheckOptions,
    ) -> Result<Checked, Error> {
        let cmd = self
            .commands
            .check_dpop(token, proof, method, url, options)?;
        command::read_check(self.send(cmd)?, options.with_claims)
    }

    /// `true`: revoked now; `false`: it was already revoked.
    pub fn revoke(&mut self, token: &str) -> Result<bool, Error> {
        let cmd = self.commands.revoke(token)?;
        command::read_flag(self.send(cmd)?)
    }

    /// Revokes every token of `sub` issued at or before `at` (unix seconds; default now).
    /// Returns the cutoff in force.
    pub fn revoke_all(&mut self, sub: &str, at: Option<i64>) -> Result<i64, Error> {
        self.revoke_all_of(None, sub, at)
    }

    /// [`Jwtdeny::revoke_all`] of the subject of `issuer`: an issuer's name, or an `iss`, of
    /// the server's `jwtdeny.issuers-file` (`None`: the default issuer).
    pub fn revoke_all_of(
        &mut self,
        issuer: Option<&str>,
        sub: &str,
        at: Option<i64>,
    ) -> Result<i64, Error> {
        let cmd = self.commands.revoke_all(sub, at, issuer)?;
        command::read_int(self.send(cmd)?)
    }

    /// `INSPECT`: how far the token gets, never changing anything.
    pub fn inspect(&mut self, token: &str) -> Result<Inspection, Error> {
        let cmd = self.commands.inspect(token)?;
        command::read_inspect(self.send(cmd)?)
    }

    /// An OpenID Connect back-channel logout token, as the identity provider POSTed it.
    /// `true`: ended now; `false`: already ended.
    pub fn logout(&mut self, logout_token: &str) -> Result<bool, Error> {
        let cmd = self.commands.logout(logout_token)?;
        command::read_flag(self.send(cmd)?)
    }

    /// Ends one OIDC session of `sub`. `true`: ended now; `false`: already ended.
    pub fn revoke_session(&mut self, sub: &str, sid: &str) -> Result<bool, Error> {
        self.revoke_session_of(None, sub, sid)
    }

    /// [`Jwtdeny::revoke_session`] of the subject of `issuer` (as [`Jwtdeny::revoke_all_of`]).
    pub fn revoke_session_of(
        &mut self,
        issuer: Option<&str>,
        sub: &str,
        sid: &str,
    ) -> Result<bool, Error> {
        let cmd = self.commands.revoke_session(sub, sid, issuer)?;
        command::read_flag(self.send(cmd)?)
    }
}
