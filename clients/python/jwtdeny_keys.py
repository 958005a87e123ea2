"""Client-side key derivation for jwtdeny's keyed commands (Redis Cluster).

In Redis Cluster a command reaches the node that owns the slot of its *declared* keys. The
standalone ``JWTDENY.CHECK <token>`` has none (its key is derived from the token inside the
server), so in cluster mode jwtdeny answers it with an error and expects the keyed forms::

    JWTDENY.KCHECK          <entry-key> <subject-key> <token> [WITHCLAIMS]
    JWTDENY.KSCHECK         <entry-key> <subject-key> <session-key> <token> [WITHCLAIMS]
    JWTDENY.KREVOKE         <entry-key> <subject-key> <token>
    JWTDENY.KINSPECT        <entry-key> <subject-key> <token>
    JWTDENY.KSINSPECT       <entry-key> <subject-key> <session-key> <token>
    JWTDENY.KREVOKEALL      <subject-key> <sub> [AT <unix-seconds>]
    JWTDENY.KLOGOUT         <subject-key> <session-key or subject-key> <sidless-key> <logout_token>
    JWTDENY.KREVOKESESSION  <subject-key> <session-key> <sidless-key> <sub> <sid>
    JWTDENY.KCHECKDPOP      <entry-key> <subject-key> <third-key> <replay-key> <token> <proof>
                            <method> <url> [WITHCLAIMS] [CERT <thumbprint>]

This module derives those keys from a token exactly as the server does::

    entry-key   = <prefix>{<enc(sub)>}:<iat>
    subject-key = <prefix>{<enc(sub)>}
    session-key = <prefix>{<enc(sub)>}:sid:<sid>
    replay-key  = <prefix>{<enc(sub)>}:dpop:<base64url(SHA-256(<cnf.jkt> ":" <proof jti>))>

With several issuers (the server's ``jwtdeny.issuers-file``), a subject of an issuer of that
registry has ``%<name>:`` (``%<name>.<tenant>:`` for a template's tenant) before ``enc(sub)`` in
the tag: give the same registry as ``Issuers(...)`` (``issuers=`` below) and the keys follow.

``enc`` percent-encodes only ``%``, ``{`` and ``}`` (as ``%25``, ``%7B``, ``%7D``), so the hash
tag is unambiguous for any ``sub``; ``iat`` is the floor of the NumericDate (``1767225600``,
``1767225600.0`` and ``1.7672256e9`` are all ``1767225600``); ``sid`` follows the tag verbatim.

A token with a ``sid`` claim (a non-empty string; any other value is no session) is also
revoked when its OIDC session is ended: ``kcheck``/``kinspect`` then send the ``KS`` forms,
which declare its session key too. A logout token without ``sid`` ends every session of its
``sub``: ``KLOGOUT`` then takes the subject key twice.

Nothing here verifies the token: the server verifies it, recomputes the keys from the verified
claims and refuses a command whose declared keys differ. A forged token therefore gains
nothing from this module. Standard library only.

    from redis.cluster import RedisCluster
    from jwtdeny_keys import keys_for, kcheck

    rc = RedisCluster(host="127.0.0.1", port=7000)
    entry, subject = keys_for(token)
    rc.execute_command("JWTDENY.KCHECK", entry, subject, token)   # 1 active, 0 revoked
    kcheck(rc, token)                                             # the same, in one call
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re

__all__ = [
    "DEFAULT_PREFIX",
    "Issuers",
    "encode_subject",
    "entry_key",
    "subject_key",
    "session_key",
    "keys_for",
    "claims_of",
    "sid_of",
    "session_key_for",
    "logout_keys_for",
    "kcheck",
    "krevoke",
    "kinspect",
    "krevokeall",
    "klogout",
    "krevokesession",
    "dpop_replay_key",
    "dpop_keys_for",
    "kcheckdpop",
]

DEFAULT_PREFIX = "jwtdeny:"

# jwtdeny refuses NumericDates outside this range (year 9999) as BADCLAIMS.
MAX_NUMERIC_DATE = 253_402_300_799

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def encode_subject(sub: str) -> str:
    """``sub`` with only ``%``, ``{`` and ``}`` percent-encoded (identity for ordinary subjects)."""
    return sub.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def subject_key(sub: str, prefix: str = DEFAULT_PREFIX, scope: str = "") -> str:
    """The key of a subject's REVOKEALL cutoff: ``<prefix>{<scope><enc(sub)>}``; ``scope`` is
    the subject's issuer's (``Issuers.scope_of``), ``""`` for the default issuer.

    It is also the first argument of ``JWTDENY.KREVOKEALL <subject-key> <sub> [AT <secs>]``.
    """
    if not isinstance(sub, str) or not sub:
        raise ValueError("sub must be a non-empty string")
    return f"{prefix}{{{scope}{encode_subject(sub)}}}"


def entry_key(sub: str, iat: int, prefix: str = DEFAULT_PREFIX, scope: str = "") -> str:
    """The key of one token's denylist entry: ``<prefix>{<scope><enc(sub)>}:<iat>``."""
    return f"{subject_key(sub, prefix, scope)}:{int(iat)}"


def session_key(sub: str, sid: str, prefix: str = DEFAULT_PREFIX, scope: str = "") -> str:
    """The key of an OIDC session's cutoff: ``<prefix>{<scope><enc(sub)>}:sid:<sid>``."""
    if not isinstance(sid, str) or not sid:
        raise ValueError("sid must be a non-empty string")
    _check_unicode(sid, "sid")
    return f"{subject_key(sub, prefix, scope)}:sid:{sid}"


class Issuers:
    """The server's issuer registry (``jwtdeny.issuers-file``): places a token by its ``iss``
    exactly as the server does, to derive its subject's scoped keys.

    ``registry`` is the file's parsed JSON (``{"issuers": {...}}``) or its path. An exact
    issuer's subjects are scoped ``%<name>:``; a template's (``{tenant}`` in ``issuer``)
    ``%<name>.<tenant>:`` for each listed tenant; any other ``iss`` is the default issuer's,
    unscoped.
    """

    def __init__(self, registry) -> None:
        if not isinstance(registry, dict):
            with open(registry, encoding="utf-8") as f:
                registry = json.load(f)
        entries = registry.get("issuers") if isinstance(registry, dict) else None
        if not isinstance(entries, dict):
            raise ValueError('the registry has no "issuers" object')
        self._by_iss: dict[str, str] = {}
        self._by_name: dict[str, str | None] = {}
        for name, entry in entries.items():
            iss = entry.get("issuer") if isinstance(entry, dict) else None
            if not isinstance(iss, str) or not iss:
                raise ValueError(f"issuer {name!r} has no issuer")
            if "{tenant}" in iss:
                self._by_name[name] = None  # a template: its tenants' iss name them
                for tenant in entry.get("tenants") or []:
                    self._by_iss[iss.replace("{tenant}", tenant)] = f"%{name}.{tenant}:"
            else:
                self._by_name[name] = f"%{name}:"
                self._by_iss[iss] = f"%{name}:"

    def scope_of(self, iss) -> str:
        """The scope of the subjects of ``iss`` (``""``: the default issuer's)."""
        return self._by_iss.get(iss, "") if isinstance(iss, str) else ""

    def scope_for(self, token) -> str:
        """The scope of a token's subject, by its (unverified) ``iss``."""
        return self.scope_of(_payload(token).get("iss"))

    def scope_named(self, issuer: str) -> str:
        """The scope ``ISSUER <issuer>`` names: ``default``, an exact issuer's name, or an
        ``iss`` the registry accepts (a template's tenant needs its ``iss``)."""
        if issuer == "default":
            return ""
        if issuer in self._by_iss:
            return self._by_iss[issuer]
        if issuer in self._by_name:
            scope = self._by_name[issuer]
            if scope is None:
                raise ValueError(f"issuer {issuer!r} has a tenant per iss: name the iss")
            return scope
        raise ValueError(f"{issuer!r} is neither default, an issuer of the registry nor an iss it accepts")


def _scope(token, issuers: Issuers | None) -> str:
    return issuers.scope_for(token) if issuers is not None else ""


def _check_unicode(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate escape such as "\ud800"
        raise ValueError(f"{name} is not valid Unicode") from e


def _b64url_decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("token payload is not base64url without padding")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError("token payload is not base64url without padding") from e


class _Object(dict):
    """A JSON object that remembers which member names it saw twice."""

    duplicates: frozenset = frozenset()


def _object(pairs):
    obj = _Object()
    seen = set()
    for k, v in pairs:
        if k in obj:
            seen.add(k)
        obj[k] = v
    if seen:
        obj.duplicates = frozenset(seen)
    return obj


def _numeric_date(value) -> int:
    # bool is an int in Python but not a JSON number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("iat is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("iat is out of range")
        value = math.floor(value)
    if not -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE:
        raise ValueError("iat is out of range")
    return int(value)


def _payload(token) -> _Object:
    """The token's payload as a JSON object, unverified."""
    if isinstance(token, (bytes, bytearray)):
        token = bytes(token).decode("ascii", errors="strict")
    if not isinstance(token, str):
        raise TypeError("token must be str or bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"token has {len(parts)} segments, expected 3")
    payload = _b64url_decode(parts[1])
    try:
        claims = json.loads(payload.decode("utf-8"), object_pairs_hook=_object)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError("token payload is not JSON") from e
    if not isinstance(claims, dict):
        raise ValueError("token payload is not a JSON object")
    # The server refuses a payload naming a claim it reads twice (two parsers must never read
    # two different tokens); Python's json would silently keep the last one.
    if claims.duplicates & {"sub", "iat", "sid"}:
        raise ValueError("token payload has a duplicate sub, iat or sid")
    return claims


def claims_of(token) -> tuple[str, int]:
    """``(sub, iat)`` read from the token's payload, unverified. Raises ValueError when the token
    could not be one the server accepts (the server would answer MALFORMED or BADCLAIMS)."""
    claims = _payload(token)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ValueError("sub is missing or not a non-empty string")
    _check_unicode(sub, "sub")
    if "iat" not in claims:
        raise ValueError("iat is missing")
    return sub, _numeric_date(claims["iat"])


def keys_for(token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None) -> tuple[str, str]:
    """``(entry_key, subject_key)`` of a token, as the server derives them from its claims.

    ``prefix`` must be the server's ``jwtdeny.prefix`` (default ``jwtdeny:``); ``issuers`` its
    registry, if it has one.
    """
    sub, iat = claims_of(token)
    scope = _scope(token, issuers)
    return entry_key(sub, iat, prefix, scope), subject_key(sub, prefix, scope)


def sid_of(token) -> str | None:
    """The access token's OIDC session id as the server reads it: its ``sid`` claim when that
    is a non-empty string, else None (a token of no session)."""
    sid = _payload(token).get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    _check_unicode(sid, "sid")
    return sid


def sidless_key(sub: str, prefix: str = DEFAULT_PREFIX, scope: str = "") -> str:
    """The key of a subject's sid-less cutoff: ``<prefix>{<scope><enc(sub)>}:nosid``. Any
    session's end (LOGOUT with a ``sid``, REVOKESESSION) moves it, revoking the subject's tokens
    without ``sid``."""
    return sidless_of(subject_key(sub, prefix, scope))


def third_key_for(token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None) -> str:
    """The third key ``KSCHECK``/``KSINSPECT`` declare for an access token: its session key, or
    for a token without ``sid`` its subject's sid-less key."""
    session = session_key_for(token, prefix, issuers)
    if session is not None:
        return session
    return sidless_key(claims_of(token)[0], prefix, _scope(token, issuers))


def session_key_for(token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None) -> str | None:
    """The session key an access token is also checked against, or None when it has no ``sid``."""
    sub, _ = claims_of(token)
    sid = sid_of(token)
    return None if sid is None else session_key(sub, sid, prefix, _scope(token, issuers))


def logout_keys_for(logout_token, prefix: str = DEFAULT_PREFIX,
                    issuers: Issuers | None = None) -> tuple[str, str]:
    """``(subject_key, session_key)`` to declare for ``JWTDENY.KLOGOUT``, read from a logout
    token's payload (unverified); its third key is ``sidless_of(subject_key)``. Without ``sid``
    the second is the subject key again. Raises
    ValueError for a token the server refuses to place: no ``sub`` (even with a ``sid``), or a
    ``sub``/``sid`` that is not a non-empty string."""
    claims = _payload(logout_token)
    for name in ("sub", "sid"):
        value = claims.get(name, "")
        if name in claims and (not isinstance(value, str) or not value):
            raise ValueError(f"{name} is not a non-empty string")
    if "sub" not in claims:
        raise ValueError("the logout token has no sub (the server refuses a sid without sub)")
    _check_unicode(claims["sub"], "sub")
    scope = issuers.scope_of(claims.get("iss")) if issuers is not None else ""
    subject = subject_key(claims["sub"], prefix, scope)
    if "sid" not in claims:
        return subject, subject
    return subject, session_key(claims["sub"], claims["sid"], prefix, scope)


def sidless_of(subject_key_: str) -> str:
    """The sid-less cutoff key of the subject whose cutoff key is ``subject_key_``."""
    return subject_key_ + ":nosid"


# Thin wrappers: the exact calls for redis-py's RedisCluster (they work with a plain
# redis.Redis too). redis-py routes by the first declared key and follows MOVED/ASK/TRYAGAIN.


def kcheck(client, token, prefix: str = DEFAULT_PREFIX, withclaims: bool = False,
           issuers: Issuers | None = None):
    """``JWTDENY.KSCHECK``, every key it reads declared: 1 active, 0 revoked; token errors raise
    redis.ResponseError."""
    entry, subject = keys_for(token, prefix, issuers)
    extra = ("WITHCLAIMS",) if withclaims else ()
    third = third_key_for(token, prefix, issuers)
    return client.execute_command("JWTDENY.KSCHECK", entry, subject, third, token, *extra)


def krevoke(client, token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None):
    """``JWTDENY.KREVOKE``: 1 revoked now, 0 already revoked."""
    entry, subject = keys_for(token, prefix, issuers)
    return client.execute_command("JWTDENY.KREVOKE", entry, subject, token)


def kinspect(client, token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None):
    """``JWTDENY.KSINSPECT``, every key it reads declared: the flat field/value array of
    JWTDENY.INSPECT."""
    entry, subject = keys_for(token, prefix, issuers)
    third = third_key_for(token, prefix, issuers)
    return client.execute_command("JWTDENY.KSINSPECT", entry, subject, third, token)


def _named(issuer: str | None, issuers: Issuers | None) -> str:
    """The scope of ``ISSUER <issuer>``; a registry is needed for any but the default."""
    if issuer is None or issuer == "default":
        return ""
    if issuers is None:
        raise ValueError(f"issuer {issuer!r} needs the registry (issuers=Issuers(...))")
    return issuers.scope_named(issuer)


def krevokeall(client, sub: str, at: int | None = None, prefix: str = DEFAULT_PREFIX,
               issuer: str | None = None, issuers: Issuers | None = None):
    """``JWTDENY.KREVOKEALL``: revokes every token of ``sub`` (of ``issuer``: its name, an
    ``iss`` of the registry, or the default issuer without one) issued at or before ``at``
    (default: now). Returns the cutoff in force."""
    extra = ("AT", int(at)) if at is not None else ()
    scope = _named(issuer, issuers)
    extra += ("ISSUER", issuer) if issuer is not None else ()
    return client.execute_command("JWTDENY.KREVOKEALL", subject_key(sub, prefix, scope), sub, *extra)


def klogout(client, logout_token, prefix: str = DEFAULT_PREFIX, issuers: Issuers | None = None):
    """``JWTDENY.KLOGOUT``: ends what an OIDC back-channel logout token names (its ``sid``, or
    every session of its ``sub``). 1 ended now, 0 already ended."""
    subject, session = logout_keys_for(logout_token, prefix, issuers)
    return client.execute_command("JWTDENY.KLOGOUT", subject, session, sidless_of(subject), logout_token)


def krevokesession(client, sub: str, sid: str, prefix: str = DEFAULT_PREFIX,
                   issuer: str | None = None, issuers: Issuers | None = None):
    """``JWTDENY.KREVOKESESSION``: ends one OIDC session of ``sub`` (of ``issuer``, as
    ``krevokeall``; the server reads the issuer from the keys). 1 ended now, 0 already."""
    scope = _named(issuer, issuers)
    return client.execute_command(
        "JWTDENY.KREVOKESESSION",
        subject_key(sub, prefix, scope),
        session_key(sub, sid, prefix, scope),
        sidless_key(sub, prefix, scope),
        sub,
        sid,
    )


def dpop_replay_key(sub: str, jkt: str, jti: str, prefix: str = DEFAULT_PREFIX, scope: str = "") -> str:
    """The key of a DPoP proof's one-time record: its key's thumbprint (the token's
    ``cnf.jkt``) and its ``jti``, hashed to a fixed size, in the subject's slot."""
    digest = hashlib.sha256(f"{jkt}:{jti}".encode("utf-8")).digest()
    return f"{subject_key(sub, prefix, scope)}:dpop:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def dpop_keys_for(token, proof, prefix: str = DEFAULT_PREFIX,
                  issuers: Issuers | None = None) -> tuple[str, str, str, str]:
    """The four keys ``JWTDENY.KCHECKDPOP`` declares for a DPoP-bound token and its proof (both
    read unverified): entry, subject, third (as KSCHECK's) and the proof's record."""
    entry, subject = keys_for(token, prefix, issuers)
    sub, _ = claims_of(token)
    cnf = _payload(token).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    jti = _payload(proof).get("jti")
    if not isinstance(jkt, str) or not isinstance(jti, str):
        raise ValueError("the token has no cnf.jkt or the proof no jti: not a DPoP request")
    scope = _scope(token, issuers)
    return (entry, subject, third_key_for(token, prefix, issuers),
            dpop_replay_key(sub, jkt, jti, prefix, scope))


def kcheckdpop(client, token, proof, method: str, url: str, prefix: str = DEFAULT_PREFIX,
               withclaims: bool = False, issuers: Issuers | None = None):
    """``JWTDENY.KCHECKDPOP``: a DPoP-bound token with its proof, every key declared. 1 active
    (the proof is now used), 0 revoked; a refused token or proof raises redis.ResponseError
    (``DPOP invalid_dpop_proof ...`` and the like)."""
    extra = ("WITHCLAIMS",) if withclaims else ()
    return client.execute_command(
        "JWTDENY.KCHECKDPOP", *dpop_keys_for(token, proof, prefix, issuers), token, proof, method, url,
        *extra)
