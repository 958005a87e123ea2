"""What the sync and async clients share: the commands to send and how to read the replies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar, Union

import redis

from . import _keys

Token = Union[str, bytes]

#: The first word of an error reply jwtdeny sends for a token it refuses.
TOKEN_ERROR_CODES = ("MALFORMED", "BADALG", "NOKEY", "BADSIG", "BADCLAIMS", "EXPIRED", "NOTYET", "DPOP")
_TOKEN_ERRORS = frozenset(TOKEN_ERROR_CODES)


class JwtdenyError(Exception):
    """A token jwtdeny refuses; ``code`` is one of TOKEN_ERROR_CODES. For ``DPOP``,
    ``dpop_error`` is the OAuth error the server named (``invalid_token``,
    ``invalid_dpop_proof``, ``use_dpop_nonce``) and, for ``use_dpop_nonce``, ``nonce`` the fresh
    nonce to send back in a ``DPoP-Nonce`` header."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.dpop_error: Optional[str] = None
        self.nonce: Optional[str] = None
        if code == "DPOP":
            words = message.split(" ")
            self.dpop_error = words[1] if len(words) > 1 else "invalid_token"
            if self.dpop_error == "use_dpop_nonce" and len(words) > 2:
                self.nonce = words[2]


@dataclass(frozen=True)
class CheckResult:
    """``active``: authentic, valid now and not revoked. ``claims``: the verified payload of an
    active token, when asked for with ``with_claims``."""

    active: bool
    claims: Optional[dict[str, Any]] = None


def token_error(err: BaseException) -> Optional[JwtdenyError]:
    """The JwtdenyError of a refused token's error reply, None for anything else."""
    if not isinstance(err, redis.ResponseError):
        return None
    message = str(err)
    code = message.split(" ", 1)[0]
    # A connection or server failure never starts with one of these words.
    return JwtdenyError(code, message) if code in _TOKEN_ERRORS else None


T = TypeVar("T")


def _or_refuse(derive: Callable[[], T]) -> T:
    try:
        return derive()
    except (ValueError, TypeError) as e:
        # The server would refuse this token the same way; in cluster mode the keys are needed
        # before anything can be sent.
        msg = str(e)
        code = "BADCLAIMS" if any(c in msg for c in ("sub", "sid", "iat")) else "MALFORMED"
        raise JwtdenyError(code, f"{code} {msg}") from e


Command = Tuple[Any, ...]


class Commands:
    """The argument lists of jwtdeny's commands, standalone or keyed (Redis Cluster)."""

    def __init__(self, keyed: bool, prefix: str, issuers: Optional[_keys.Issuers] = None) -> None:
        self.keyed = keyed
        self.prefix = prefix
        self.issuers = issuers

    def token(self, name: str, token: Token, *extra: str) -> Command:
        if not self.keyed:
            return (f"JWTDENY.{name}", token, *extra)
        entry, subject = _or_refuse(lambda: _keys.keys_for(token, self.prefix, self.issuers))
        # CHECK and INSPECT get KSCHECK / KSINSPECT, which declare every key they read: the
        # token's session key, or its subject's sid-less key for a token without sid (so ACL key
        # patterns cover them all); KREVOKE has no such form.
        if name == "REVOKE":
            return (f"JWTDENY.K{name}", entry, subject, token, *extra)
        third = _or_refuse(lambda: _keys.third_key_for(token, self.prefix, self.issuers))
        return (f"JWTDENY.KS{name}", entry, subject, third, token, *extra)

    def logout(self, logout_token: Token) -> Command:
        if not self.keyed:
            return ("JWTDENY.LOGOUT", logout_token)
        subject, session = _or_refuse(
            lambda: _keys.logout_keys_for(logout_token, self.prefix, self.issuers))
        return ("JWTDENY.KLOGOUT", subject, session, _keys.sidless_of(subject), logout_token)

    def revoke_session(self, sub: str, sid: str, issuer: Optional[str] = None) -> Command:
        if not self.keyed:
            extra = ("ISSUER", issuer) if issuer is not None else ()
            return ("JWTDENY.REVOKESESSION", sub, sid, *extra)
        # The keyed form has no ISSUER: the server reads the issuer from the keys' scope.
        scope = _keys._named(issuer, self.issuers)
        subject = _keys.subject_key(sub, self.prefix, scope)
        session = _keys.session_key(sub, sid, self.prefix, scope)
        return ("JWTDENY.KREVOKESESSION", subject, session, _keys.sidless_key(sub, self.prefix, scope), sub, sid)

    def check(self, token: Token, with_claims: bool, cert: Optional[str] = None) -> Command:
        return self.token("CHECK", token, *_options(with_claims, cert))

    def check_dpop(self, token: Token, proof: Token, method: str, url: str, with_claims: bool,
                   cert: Optional[str] = None) -> Command:
        extra = _options(with_claims, cert)
        if not self.keyed:
            return ("JWTDENY.CHECKDPOP", token, proof, method, url, *extra)
        keys = _or_refuse(lambda: _keys.dpop_keys_for(token, proof, self.prefix, self.issuers))
        return ("JWTDENY.KCHECKDPOP", *keys, token, proof, method, url, *extra)

    def revoke_all(self, sub: str, at: Optional[int], issuer: Optional[str] = None) -> Command:
        extra: Tuple[Any, ...] = ("AT", int(at)) if at is not None else ()
        extra += ("ISSUER", issuer) if issuer is not None else ()
        if not self.keyed:
            return ("JWTDENY.REVOKEALL", sub, *extra)
        scope = _keys._named(issuer, self.issuers)
        return ("JWTDENY.KREVOKEALL", _keys.subject_key(sub, self.prefix, scope), sub, *extra)


def _options(with_claims: bool, cert: Optional[str]) -> Tuple[str, ...]:
    return (("WITHCLAIMS",) if with_claims else ()) + (("CERT", cert) if cert else ())


def _text(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else v


def read_check(reply: Any, with_claims: bool) -> CheckResult:
    if not with_claims:
        return CheckResult(active=int(reply) == 1)
    active, claims = reply[0], reply[1]
    if int(active) != 1:
        return CheckResult(active=False)
    return CheckResult(active=True, claims=json.loads(_text(claims)))


def read_inspect(reply: Sequence[Any]) -> dict[str, Any]:
    it = iter(reply)
    return {_text(k): _text(v) for k, v in zip(it, it)}


def is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        return True
    try:
        from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    except ImportError:  # pragma: no cover - redis-py without asyncio cluster support
        return False
    return isinstance(client, AsyncRedisCluster)
