"""Jwtdeny (redis.Redis, redis.RedisCluster) and AsyncJwtdeny (their redis.asyncio twins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar, overload

from . import _core, _http
from ._core import CheckResult, Token
from ._keys import DEFAULT_PREFIX, Issuers

if TYPE_CHECKING:
    from .fastapi import AsyncDependency, Dependency, GetToken, OnUnavailable

F = TypeVar("F", bound=Callable[..., Any])


class _Over:
    """A client and the command forms it gets: keyed on a cluster client, standalone otherwise
    (``cluster`` forces one); ``prefix`` is the server's ``jwtdeny.prefix``; ``issuers`` its
    issuer registry (``jwtdeny.issuers-file``: the parsed JSON, its path, or ``Issuers``), which
    the keyed forms need to derive the keys of a registry issuer's subjects."""

    def __init__(self, client: Any, prefix: str = DEFAULT_PREFIX, cluster: Optional[bool] = None,
                 issuers: Any = None) -> None:
        self.client = client
        keyed = _core.is_cluster(client) if cluster is None else bool(cluster)
        if issuers is not None and not isinstance(issuers, Issuers):
            issuers = Issuers(issuers)
        self._cmd = _core.Commands(keyed, prefix, issuers)

    @property
    def cluster(self) -> bool:
        return self._cmd.keyed


class Jwtdeny(_Over):
    """jwtdeny's commands over a redis-py ``Redis`` or ``RedisCluster``.

    A cluster client gets the keyed forms (``JWTDENY.KSCHECK <entry-key> <subject-key> <third-key>
    <token>`` and the like), whose keys route each command to the node that holds them.
    ``prefix`` is the server's ``jwtdeny.prefix``; ``cluster`` forces the keyed (True) or
    standalone (False) forms.
    """

    def _run(self, args: _core.Command) -> Any:
        try:
            return self.client.execute_command(*args)
        except Exception as e:
            err = _core.token_error(e)
            if err is not None:
                raise err from e
            raise

    def check(self, token: Token, with_claims: bool = False, cert: Optional[str] = None) -> CheckResult:
        """JWTDENY.CHECK. Raises JwtdenyError (``.code``) for a refused token. ``cert``: the
        SHA-256 thumbprint of the client certificate, for a token bound to one (mTLS)."""
        return _core.read_check(self._run(self._cmd.check(token, with_claims, cert)), with_claims)

    def check_dpop(self, token: Token, proof: Token, method: str, url: str, with_claims: bool = False,
                   cert: Optional[str] = None) -> CheckResult:
        """JWTDENY.CHECKDPOP: a DPoP-bound token with its proof, for the request's method and
        absolute URL. A write (the proof is used up): it goes to a primary."""
        cmd = self._cmd.check_dpop(token, proof, method, url, with_claims, cert)
        return _core.read_check(self._run(cmd), with_claims)

    def revoke(self, token: Token) -> bool:
        """JWTDENY.REVOKE: True revoked now, False already revoked."""
        return int(self._run(self._cmd.token("REVOKE", token))) == 1

    def revoke_all(self, sub: str, at: Optional[int] = None, issuer: Optional[str] = None) -> int:
        """JWTDENY.REVOKEALL: every token of ``sub`` issued at or before ``at`` (default now).
        ``issuer``: whose ``sub`` (an issuer's name, or an ``iss``, of ``jwtdeny.issuers-file``;
        default the default issuer). Returns the cutoff in force."""
        return int(self._run(self._cmd.revoke_all(sub, at, issuer)))

    def inspect(self, token: Token) -> dict[str, Any]:
        """JWTDENY.INSPECT: status, reason, alg, kid, sub, iat, exp, key, revoked_by, expires_at_ms."""
        return _core.read_inspect(self._run(self._cmd.token("INSPECT", token)))

    def logout(self, logout_token: Token) -> bool:
        """JWTDENY.LOGOUT: ends what an OIDC back-channel logout token names (its ``sid``, or
        every session of its ``sub``). True ended now, False already ended."""
        return int(self._run(self._cmd.logout(logout_token))) == 1

    def revoke_session(self, sub: str, sid: str, issuer: Optional[str] = None) -> bool:
        """JWTDENY.REVOKESESSION: every token of ``sub`` carrying ``sid``, issued until now.
        ``issuer`` as for ``revoke_all``."""
        return int(self._run(self._cmd.revoke_session(sub, sid, issuer))) == 1

    def require(
        self,
        *,
        get_token: Optional["GetToken"] = None,
        on_unavailable: Optional["OnUnavailable"] = None,
        timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
        retry_after: int = _http.DEFAULT_RETRY_AFTER,
        trust_proxy: bool = False,
        dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
        auto_error: bool = True,
        scopes: Sequence[str] = (),
        claim_check: Optional[Callable[[dict[str, Any]], bool]] = None,
        get_cert: Optional[Callable[[Any], Optional[str]]] = None,
    ) -> "Dependency":
        """A FastAPI dependency: ``claims = Depends(jd.require())``; see jwtdeny.fastapi."""
        from .fastapi import _bearer, require

        return require(self, get_token or _bearer, on_unavailable, timeout, retry_after, trust_proxy,
                       dpop_algs, auto_error, scopes, claim_check, get_cert)

    @overload
    def flask(self, view: F) -> F: ...

    @overload
    def flask(
        self,
        *,
        get_token: Optional[Callable[[], Optional[str]]] = None,
        on_unavailable: Optional[Callable[[Exception], Any]] = None,
        timeout: Optional[float] = None,
        retry_after: Optional[int] = None,
        trust_proxy: Optional[bool] = None,
        dpop_algs: Optional[str] = None,
        optional: Optional[bool] = None,
        scopes: Optional[Sequence[str]] = None,
        claim_check: Optional[Callable[[dict[str, Any]], bool]] = None,
        get_cert: Optional[Callable[[], Optional[str]]] = None,
    ) -> Callable[[F], F]: ...

    def flask(self, view: Optional[F] = None, **options: Any) -> Any:
        """A Flask view decorator, ``@jd.flask`` or ``@jd.flask(get_token=...)``; see jwtdeny.flask."""
        from .flask import protect

        return protect(self, view, **{k: v for k, v in options.items() if v is not None})


class AsyncJwtdeny(_Over):
    """The same over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``."""

    async def _run(self, args: _core.Command) -> Any:
        try:
            return await self.client.execute_command(*args)
        except Exception as e:
            err = _core.token_error(e)
            if err is not None:
                raise err from e
            raise

    async def check(self, token: Token, with_claims: bool = False, cert: Optional[str] = None) -> CheckResult:
        return _core.read_check(await self._run(self._cmd.check(token, with_claims, cert)), with_claims)

    async def check_dpop(self, token: Token, proof: Token, method: str, url: str,
                         with_claims: bool = False, cert: Optional[str] = None) -> CheckResult:
        cmd = self._cmd.check_dpop(token, proof, method, url, with_claims, cert)
        return _core.read_check(await self._run(cmd), with_claims)

    async def revoke(self, token: Token) -> bool:
        return int(await self._run(self._cmd.token("REVOKE", token))) == 1

    async def revoke_all(self, sub: str, at: Optional[int] = None, issuer: Optional[str] = None) -> int:
        return int(await self._run(self._cmd.revoke_all(sub, at, issuer)))

    async def inspect(self, token: Token) -> dict[str, Any]:
        return _core.read_inspect(await self._run(self._cmd.token("INSPECT", token)))

    async def logout(self, logout_token: Token) -> bool:
        return int(await self._run(self._cmd.logout(logout_token))) == 1

    async def revoke_session(self, sub: str, sid: str, issuer: Optional[str] = None) -> bool:
        return int(await self._run(self._cmd.revoke_session(sub, sid, issuer))) == 1

    def require(
        self,
        *,
        get_token: Optional["GetToken"] = None,
        on_unavailable: Optional["OnUnavailable"] = None,
        timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
        retry_after: int = _http.DEFAULT_RETRY_AFTER,
        trust_proxy: bool = False,
        dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
        auto_error: bool = True,
        scopes: Sequence[str] = (),
        claim_check: Optional[Callable[[dict[str, Any]], bool]] = None,
        get_cert: Optional[Callable[[Any], Optional[str]]] = None,
    ) -> "AsyncDependency":
        """A FastAPI dependency: ``claims = Depends(jd.require())``; see jwtdeny.fastapi."""
        from .fastapi import _bearer, require_async

        return require_async(self, get_token or _bearer, on_unavailable, timeout, retry_after, trust_proxy,
                             dpop_algs, auto_error, scopes, claim_check, get_cert)
