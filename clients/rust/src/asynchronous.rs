//! The async client (tokio).

use redis::aio::ConnectionLike;
use redis::Value;

use crate::command::{self, Commands};
use crate::{CheckOptions, Checked, Claims, Error, Inspection, Topology, DEFAULT_PREFIX};

/// jwtdeny's commands over a tokio connection: `MultiplexedConnection` or `ConnectionManager`
/// (the plain forms), `cluster_async::ClusterConnection` (the keyed forms, routed by their
/// keys). The connection is cloned for each call (they are handles to one shared
/// connection), so `AsyncJwtdeny` is `Clone` and its methods take `&self`.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let jd = jwtdeny::AsyncJwtdeny::new(client.get_multiplexed_async_connection().await?);
/// # let token = "";
/// let active = jd.check(token).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncJwtdeny<C> {
    conn: C,
    commands: Commands,
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> AsyncJwtdeny<C> {
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

    /// The keyed forms, whatever the connection.
    pub fn cluster(conn: C) -> Self {
        Self::with_mode(conn, true)
    }

    fn with_mode(conn: C, keyed: bool) -> Self {
        AsyncJwtdeny {
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

    /// A handle to the connection.
    pub fn connection(&self) -> C {
        self.conn.clone()
    }

    async fn send(&self, cmd: redis::Cmd) -> Result<Value, Error> {
        let mut conn = self.conn.clone();
        Ok(cmd.query_async::<Value>(&mut conn).await?)
    }

    /// `true`: authentic, valid now, not revoked; `false`: revoked. A refused token is
    /// [`Error::Token`].
    pub async fn check(&self, token: &str) -> Result<bool, Error> {
        Ok(self
            .check_with(token, &CheckOptions::default())
            .await?
            .active)
    }

    /// The verified claims of an active token, `None` for a revoked one.
    pub async fn check_claims(&self, token: &str) -> Result<Option<Claims>, Error> {
        Ok(self
            .check_with(token, &CheckOptions::with_claims())
            .await?
            .claims)
    }

    /// `CHECK` with its options (`WITHCLAIMS`, `CERT`).
    pub async fn check_with(&self, token: &str, options: &CheckOptions) -> Result<Checked, Error> {
        let cmd = self.commands.check(token, options)?;
        command::read_check(self.send(cmd).await?, options.with_claims)
    }

    /// `CHECKDPOP`: a DPoP-bound token with its proof, for the request's method and its
    /// absolute URL as the client addressed it. A write: the proof is used up.
    pub async fn check_dpop(
        &self,
        token: &str,
        proof: &str,
        method: &str,
        url: &str,
        options: &CheckOptions,
    ) -> Result<Checked, Error> {
        let cmd = self
            .commands
            .check_dpop(token, proof, method, url, options)?;
        command::read_check(self.send(cmd).await?, options.with_claims)
    }

    /// `true`: revoked now; `false`: it was already revoked.
    pub async fn revoke(&self, token: &str) -> Result<bool, Error> {
        let cmd = self.commands.revoke(token)?;
        command::read_flag(self.send(cmd).await?)
    }

    /// Revokes every token of `sub` issued at or before `at` (unix seconds; default now).
    /// Returns the cutoff in force.
    pub async fn revoke_all(&self, sub: &str, at: Option<i64>) -> Result<i64, Error> {
        self.revoke_all_of(None, sub, at).await
    }

    /// [`AsyncJwtdeny::revoke_all`] of the subject of `issuer`: an issuer's name, or an `iss`,
    /// of the server's `jwtdeny.issuers-file` (`None`: the default issuer).
    pub async fn revoke_all_of(
        &self,
        issuer: Option<&str>,
        sub: &str,
        at: Option<i64>,
    ) -> Result<i64, Error> {
        let cmd = self.commands.revoke_all(sub, at, issuer)?;
        command::read_int(self.send(cmd).await?)
    }

    /// `INSPECT`: how far the token gets, never changing anything.
    pub async fn inspect(&self, token: &str) -> Result<Inspection, Error> {
        let cmd = self.commands.inspect(token)?;
        command::read_inspect(self.send(cmd).await?)
    }

    /// An OpenID Connect back-channel logout token. `true`: ended now; `false`: already ended.
    pub async fn logout(&self, logout_token: &str) -> Result<bool, Error> {
        let cmd = self.commands.logout(logout_token)?;
        command::read_flag(self.send(cmd).await?)
    }

    /// Ends one OIDC session of `sub`. `true`: ended now; `false`: already ended.
    pub async fn revoke_session(&self, sub: &str, sid: &str) -> Result<bool, Error> {
        self.revoke_session_of(None, sub, sid).await
    }

    /// [`AsyncJwtdeny::revoke_session`] of the subject of `issuer` (as
    /// [`AsyncJwtdeny::revoke_all_of`]).
    pub async fn revoke_session_of(
        &self,
        issuer: Option<&str>,
        sub: &str,
        sid: &str,
    ) -> Result<bool, Error> {
        let cmd = self.commands.revoke_session(sub, sid, issuer)?;
        command::read_flag(self.send(cmd).await?)
    }
}
