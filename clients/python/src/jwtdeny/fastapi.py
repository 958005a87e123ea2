"""FastAPI: ``claims: dict = Depends(jd.require())``.

The dependency returns the verified claims of the request's bearer token (or of its DPoP-bound
token, ``Authorization: DPoP`` with its ``DPoP`` proof header; the key's thumbprint is then
``request.state.dpop_jkt``; ``trust_proxy=True`` takes the URL's scheme and host from
X-Forwarded-Proto / X-Forwarded-Host, only behind a proxy that sets them), or raises
HTTPException: 401 (with an RFC 6750 ``WWW-Authenticate`` header) for a missing, refused or
revoked token, 503 with ``Retry-After: <retry_after>`` (default 5) when Redis cannot answer, or
not within ``timeout`` seconds (default 2; None for no limit: the check then waits as long as
the client does). ``on_unavailable(err, request)`` replaces the 503:
whatever it returns is used as the claims, so returning instead of raising lets requests in
unchecked while Redis is down (revoked tokens too). Dangerous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, NoReturn, Optional, Sequence

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from . import _http

if TYPE_CHECKING:
    from ._client import AsyncJwtdeny, Jwtdeny

GetToken = Callable[[Request], Optional[str]]
OnUnavailable = Callable[[Exception, Request], Any]
ClaimCheck = Callable[[dict[str, Any]], bool]
Dependency = Callable[..., Optional[dict[str, Any]]]
AsyncDependency = Callable[..., Awaitable[Optional[dict[str, Any]]]]

# Declared by every dependency, so that /openapi.json names the bearer scheme and Swagger UI's
# Authorize button works. auto_error=False: the dependency itself answers (RFC 6750 bodies,
# DPoP requests, optional authentication).
_SCHEME = HTTPBearer(auto_error=False, bearerFormat="JWT", description="A JWT checked by jwtdeny")


def _bearer(request: Request) -> Optional[str]:
    return _http.bearer_token(request.headers.get("authorization"))


def _raise(denial: _http.Denial) -> NoReturn:
    raise HTTPException(status_code=denial.status, detail=denial.body, headers=denial.headers or None)


def _credentials(request: Request, get_token: GetToken, rules: _http.DpopRules,
                 auto_error: bool) -> Optional[tuple[str, Optional[_http.Dpop]]]:
    def url() -> str:
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
        h = request.headers
        return rules.url(request.url.scheme, h.get("host"), path, h.get("x-forwarded-proto"),
                         h.get("x-forwarded-host"))

    got = _http.credentials(request.headers.get("authorization"), lambda: request.headers.getlist("dpop"),
                            request.method, url, rules, lambda: get_token(request))
    if got is _http.MISSING and not auto_error:
        return None
    if isinstance(got, _http.Denial):
        _raise(got)
    return got


def _cert(request: Request, get_cert: Optional[Callable[[Request], Optional[str]]]) -> Optional[str]:
    cert = _http.cert_of((lambda: get_cert(request)) if get_cert is not None else None)
    if isinstance(cert, _http.Denial):
        _raise(cert)
    return cert


def _accept(request: Request, result: Any, token: str, dpop: Optional[_http.Dpop],
            rules: _http.DpopRules, scopes: Sequence[str], claim_check: Optional[ClaimCheck]) -> dict[str, Any]:
    claims = _http.judge(result, rules if dpop else None)
    if isinstance(claims, _http.Denial):
        _raise(claims)
    denied = _http.authorize(claims, scopes, claim_check)
    if denied is not None:
        _raise(denied)
    request.state.jwtdeny_token = token
    if dpop is not None:
        request.state.dpop_jkt = _http.jkt_of(claims)
    return claims


def require(
    jd: "Jwtdeny",
    get_token: GetToken = _bearer,
    on_unavailable: Optional[OnUnavailable] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
    trust_proxy: bool = False,
    dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
    auto_error: bool = True,
    scopes: Sequence[str] = (),
    claim_check: Optional[ClaimCheck] = None,
    get_cert: Optional[Callable[[Request], Optional[str]]] = None,
) -> Dependency:
    """The dependency for a sync ``Jwtdeny`` (FastAPI runs it in its thread pool).
    ``auto_error=False``: a request without a token gets None instead of a 401 (optional
    authentication). ``scopes`` (and those of ``Security(dep, scopes=[...])``) must be granted
    by the token's ``scope`` or ``scp``, and ``claim_check(claims)`` must hold, else 403
    ``insufficient_scope``."""
    rules = _http.DpopRules(trust_proxy, dpop_algs)

    def jwtdeny_claims(
        request: Request,
        security_scopes: SecurityScopes,
        _bearer: Optional[HTTPAuthorizationCredentials] = Security(_SCHEME),
    ) -> Optional[dict[str, Any]]:
        got = _credentials(request, get_token, rules, auto_error)
        if got is None:
            return None
        token, dpop = got
        cert = _cert(request, get_cert)
        try:
            result = _http.check_within(jd, token, timeout, dpop, cert)
        except Exception as e:
            denial = _http.judge_error(e, rules, dpop is not None)
            if denial is not None:
                _raise(denial)
            if on_unavailable is not None:
                let_in: dict[str, Any] = on_unavailable(e, request)
                return let_in
            _raise(_http.unavailable(retry_after))
        return _accept(request, result, token, dpop, rules, [*scopes, *security_scopes.scopes], claim_check)

    return jwtdeny_claims


def require_async(
    jd: "AsyncJwtdeny",
    get_token: GetToken = _bearer,
    on_unavailable: Optional[OnUnavailable] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
    trust_proxy: bool = False,
    dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
    auto_error: bool = True,
    scopes: Sequence[str] = (),
    claim_check: Optional[ClaimCheck] = None,
    get_cert: Optional[Callable[[Request], Optional[str]]] = None,
) -> AsyncDependency:
    """The dependency for an ``AsyncJwtdeny``; the options of ``require``."""
    rules = _http.DpopRules(trust_proxy, dpop_algs)

    async def jwtdeny_claims(
        request: Request,
        security_scopes: SecurityScopes,
        _bearer: Optional[HTTPAuthorizationCredentials] = Security(_SCHEME),
    ) -> Optional[dict[str, Any]]:
        got = _credentials(request, get_token, rules, auto_error)
        if got is None:
            return None
        token, dpop = got
        cert = _cert(request, get_cert)
        try:
            result = await _http.check_within_async(jd, token, timeout, dpop, cert)
        except Exception as e:
            denial = _http.judge_error(e, rules, dpop is not None)
            if denial is not None:
                _raise(denial)
            if on_unavailable is not None:
                let_in: dict[str, Any] = on_unavailable(e, request)
                return let_in
            _raise(_http.unavailable(retry_after))
        return _accept(request, result, token, dpop, rules, [*scopes, *security_scopes.scopes], claim_check)

    return jwtdeny_claims
