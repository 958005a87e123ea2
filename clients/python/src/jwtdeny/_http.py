"""The HTTP rules every guard follows (RFC 6750): 401 for a missing, refused or revoked bearer
token, 503 with ``Retry-After`` when Redis cannot answer, or not within the guard's own
deadline (fail closed). A request with ``Authorization: DPoP <token>`` and one ``DPoP`` header
is checked with its proof (RFC 9449), and refused with the ``DPoP`` challenge."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

from ._core import CheckResult, JwtdenyError

#: How long a guard waits for its check by default (seconds), and its 503's Retry-After.
DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRY_AFTER = 5


class CheckTimeout(Exception):
    """A guard's check did not complete within its ``timeout`` (given to ``on_unavailable``)."""


class _Runner:
    """A few daemon threads that run sync checks, so that a guard can stop waiting for one at
    its deadline. A check stuck on a Redis that never answers holds one thread until the
    client's own socket timeout ends it (the quick starts set one); when every thread is stuck,
    new checks wait in the queue and still get their 503 at the deadline. Daemon threads never
    keep the process from exiting."""

    def __init__(self, threads: int = 8) -> None:
        self._jobs: "queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]" = (
            queue.SimpleQueue()
        )
        self._threads = threads
        self._started = False
        self._lock = threading.Lock()

    def _work(self) -> None:
        while True:
            fut, job = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(job())
            except BaseException as e:  # handed to the waiting guard, never lost
                fut.set_exception(e)

    def submit(self, job: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        with self._lock:
            if not self._started:
                for i in range(self._threads):
                    threading.Thread(target=self._work, name=f"jwtdeny-check-{i}", daemon=True).start()
                self._started = True
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fut, job))
        return fut


_RUNNER = _Runner()


@dataclass(frozen=True)
class Dpop:
    """A DPoP request's proof and what it must be for: the method and the absolute URL."""

    proof: str
    method: str
    url: str


def _check(jd: Any, token: str, dpop: Optional[Dpop], cert: Optional[str] = None) -> Any:
    if dpop is None:
        return jd.check(token, with_claims=True, cert=cert)
    return jd.check_dpop(token, dpop.proof, dpop.method, dpop.url, with_claims=True, cert=cert)


def check_within(jd: Any, token: str, timeout: Optional[float], dpop: Optional[Dpop] = None,
                 cert: Optional[str] = None) -> CheckResult:
    """``jd.check(token, with_claims=True)`` (or ``check_dpop``) for a sync client, or
    CheckTimeout at ``timeout``."""
    if not timeout:
        result: CheckResult = _check(jd, token, dpop, cert)
        return result
    fut = _RUNNER.submit(lambda: _check(jd, token, dpop, cert))
    try:
        done: CheckResult = fut.result(timeout=timeout)
        return done
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise CheckTimeout(f"the jwtdeny check did not complete within {timeout} s") from None


async def check_within_async(jd: Any, token: str, timeout: Optional[float],
                             dpop: Optional[Dpop] = None, cert: Optional[str] = None) -> CheckResult:
    """The same for an async client (its command is cancelled at the deadline); a sync client
    given to an async guard runs on the runner's threads, never on the event loop."""
    if not asyncio.iscoroutinefunction(jd.check):
        return await asyncio.wrap_future(_RUNNER.submit(lambda: check_within(jd, token, timeout, dpop, cert)))
    try:
        if not timeout:
            return await _check(jd, token, dpop, cert)  # type: ignore[no-any-return]
        done: CheckResult = await asyncio.wait_for(_check(jd, token, dpop, cert), timeout)
        return done
    except asyncio.TimeoutError:
        raise CheckTimeout(f"the jwtdeny check did not complete within {timeout} s") from None


_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)


def bearer_token(authorization: Union[str, bytes, None]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    if not authorization:
        return None
    m = _BEARER.fullmatch(authorization)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Denial:
    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


#: What a guard's error bodies say, by their stable ``code``.
DESCRIPTIONS = {
    "MISSING": "no access token was presented",
    "MALFORMED": "the token is malformed",
    "BADALG": "the token's algorithm is not accepted",
    "NOKEY": "no key of the server verifies the token",
    "BADSIG": "the token's signature does not verify",
    "BADCLAIMS": "the token's claims are not accepted",
    "EXPIRED": "the token has expired",
    "NOTYET": "the token is not valid yet",
    "REVOKED": "the token has been revoked",
    "CERT": "the client certificate's thumbprint is not usable",
    "DPOP": "the token or its DPoP proof is refused",
    "INSUFFICIENT_SCOPE": "the token lacks a scope this resource requires",
    "CLAIM_CHECK": "the token's claims do not allow this request",
    "UNAVAILABLE": "the token cannot be checked now; try again later",
}


def body(error: str, code: str) -> dict[str, str]:
    """One body shape for every refusal: RFC 6750's ``error``, a sentence, the stable ``code``."""
    return {"error": error, "error_description": DESCRIPTIONS.get(code, code), "code": code}


# RFC 6750 §3.1: a request without credentials gets no error code.
MISSING = Denial(401, body("missing_token", "MISSING"), {"WWW-Authenticate": "Bearer"})


def unavailable(retry_after: int = DEFAULT_RETRY_AFTER) -> Denial:
    """Fail closed: Redis could not answer (in time), so no token is taken for active."""
    return Denial(503, body("unavailable", "UNAVAILABLE"), {"Retry-After": str(int(retry_after))})


UNAVAILABLE = unavailable()


def refused(code: str) -> Denial:
    return Denial(
        401,
        body("invalid_token", code),
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{code}"'},
    )


def judge(result: CheckResult, dpop: Optional["DpopRules"] = None) -> Union[dict[str, Any], Denial]:
    if not result.active or result.claims is None:
        return dpop.refused("invalid_token", "REVOKED") if dpop else refused("REVOKED")
    return result.claims


_LOG = logging.getLogger("jwtdeny")
_CERT_BOUND = re.compile(r"cnf\.x5t#S256|client certificate")
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}|[0-9A-Fa-f]{64}")


def cert_of(get_cert: Optional[Callable[[], Optional[str]]]) -> Union[Optional[str], Denial]:
    """The client certificate's SHA-256 thumbprint a guard's ``get_cert`` gives (for tokens bound
    to one, RFC 8705), or the 401 of one that is not a thumbprint."""
    cert = get_cert() if get_cert is not None else None
    if cert is not None and not _THUMBPRINT.fullmatch(cert):
        return refused("CERT")
    return cert
_SAID: set[str] = set()


def _say_once(what: str, message: str) -> None:
    if what not in _SAID:
        _SAID.add(what)
        _LOG.warning("jwtdeny: %s", message)


def notice(err: BaseException) -> None:
    """Says once per process, on the ``jwtdeny`` logger, the two misconfigurations that otherwise
    show only as every request refused: a server without the module (503) and one without the
    tokens' keys (401 NOKEY)."""
    if isinstance(err, JwtdenyError) and err.code == "NOKEY":
        _say_once("nokey", "a token was refused with NOKEY: the server has no key for it. Check "
                  "JWTDENY.KEYS LIST, jwtdeny.keys-file, or INFO jwtdeny (jwks_last_fetch_result). Said once.")
    elif "unknown command" in str(err).lower() and "jwtdeny" in str(err).lower():
        _say_once("module", "the Redis server does not know the JWTDENY commands: the jwtdeny module is "
                  "not loaded there (MODULE LIST, loadmodule). Requests are answered 503 until it is. Said once.")


def judge_error(err: Exception, rules: Optional["DpopRules"] = None, dpop: bool = False) -> Optional[Denial]:
    """The 401 of a refused token; None when the error means Redis could not answer. With the
    guard's DPoP ``rules``, a ``DPOP`` refusal (a DPoP-bound token sent as a bearer token
    included) and any refusal of a DPoP request (``dpop``) get the DPoP challenge."""
    notice(err)
    if not isinstance(err, JwtdenyError):
        return None
    if err.code == "DPOP" and _CERT_BOUND.search(str(err)):
        return refused("DPOP")  # a token bound to a client certificate: RFC 8705's bearer challenge
    if rules is not None and err.code == "DPOP":
        error = err.dpop_error or "invalid_token"
        return rules.refused(error, error, err.nonce)
    if rules is not None and dpop:
        return rules.refused("invalid_token", err.code)
    return refused(err.code)


#: The algorithms a guard's DPoP challenge names by default (the server's default list).
DEFAULT_DPOP_ALGS = "ES256 ES384 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA"

_DPOP_AUTH = re.compile(r"DPoP +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)
_DPOP_SCHEME = re.compile(r"DPoP(\s|$)", re.IGNORECASE)
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class DpopRules:
    """How a guard treats DPoP: whether forwarded headers name the URL (``trust_proxy``, only
    behind a proxy that sets them), and the ``algs`` its challenge names."""

    trust_proxy: bool = False
    algs: str = DEFAULT_DPOP_ALGS

    def refused(self, error: str, description: str, nonce: Optional[str] = None) -> Denial:
        headers = {"WWW-Authenticate": f'DPoP error="{error}", error_description="{description}", algs="{self.algs}"'}
        if error == "use_dpop_nonce" and nonce:
            headers["DPoP-Nonce"] = nonce
        return Denial(401, body(error, "DPOP" if description == error else description), headers)

    def url(self, scheme: str, host: Optional[str], path: str, forwarded_proto: Optional[str],
            forwarded_host: Optional[str]) -> str:
        """The URL the client addressed: the connection's scheme and Host, or with trust_proxy
        the first X-Forwarded-Proto / X-Forwarded-Host. Query and fragment do not matter."""
        if self.trust_proxy and forwarded_proto:
            scheme = forwarded_proto.split(",")[0].strip().lower()
        if self.trust_proxy and forwarded_host:
            host = forwarded_host.split(",")[0].strip()
        return f"{scheme}://{host or ''}{path.split('?')[0].split('#')[0] or '/'}"


def credentials(
    authorization: Union[str, bytes, None],
    proofs: Callable[[], list[str]],
    method: str,
    url: Callable[[], str],
    rules: DpopRules,
    bearer: Callable[[], Optional[str]],
) -> Union[Denial, tuple[str, Optional[Dpop]]]:
    """What a request presents: ``(token, Dpop)`` for the DPoP scheme, ``(token, None)`` for a
    bearer token (``bearer``: the guard's ``get_token``), or the 401 to answer."""
    if is_dpop(authorization):
        return dpop_request(authorization, proofs(), method, url(), rules)
    token = bearer()
    return (token, None) if token else MISSING


def scopes_of(claims: dict[str, Any]) -> set[str]:
    """The scopes a token grants: ``scope`` (RFC 9068, space-separated) or ``scp`` (a list:
    Okta, Entra)."""
    scope, scp = claims.get("scope"), claims.get("scp")
    if isinstance(scope, str):
        return set(scope.split())
    if isinstance(scp, list):
        return {x for x in scp if isinstance(x, str)}
    if isinstance(scp, str):
        return set(scp.split())
    return set()


def authorize(claims: dict[str, Any], scopes: Iterable[str],
              claim_check: Optional[Callable[[dict[str, Any]], bool]]) -> Optional[Denial]:
    """403 (RFC 6750 §3.1) for an authentic token that may not do this, else None."""
    wanted = list(dict.fromkeys(scopes))
    granted = scopes_of(claims)
    if any(x not in granted for x in wanted):
        code = "INSUFFICIENT_SCOPE"
    elif claim_check is not None and not claim_check(claims):
        code = "CLAIM_CHECK"
    else:
        return None
    challenge = 'Bearer error="insufficient_scope"' + (f', scope="{" ".join(wanted)}"' if wanted else "")
    return Denial(403, body("insufficient_scope", code), {"WWW-Authenticate": challenge})


def jkt_of(claims: dict[str, Any]) -> Optional[str]:
    """The DPoP key thumbprint a verified token is bound to (``cnf.jkt``)."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


def is_dpop(authorization: Union[str, bytes, None]) -> bool:
    """Whether an Authorization header value uses the DPoP scheme."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    return bool(authorization) and _DPOP_SCHEME.match(authorization or "") is not None


def dpop_request(authorization: Union[str, bytes, None], proofs: list[str], method: str,
                 url: str, rules: DpopRules) -> Union[tuple[str, Dpop], Denial]:
    """The token and proof of an ``Authorization: DPoP`` request, or its 401: exactly one
    ``DPoP`` header holding one compact JWS (RFC 9449 §4.3)."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    m = _DPOP_AUTH.fullmatch(authorization or "")
    if not m:
        return rules.refused("invalid_token", "MALFORMED")
    if len(proofs) != 1 or not _COMPACT_JWS.fullmatch(proofs[0]):
        return rules.refused("invalid_dpop_proof", "invalid_dpop_proof")
    return m.group(1), Dpop(proofs[0], method, url)
