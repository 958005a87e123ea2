"""FastAPI: ``claims: dict = Depends(jd.require())``.

The dependency returns the verified claims of the request's bearer token, or raises
HTTPException: 401 (with an RFC 6750 ``WWW-Authenticate`` header) for a missing, refused or
revoked token, 503 with ``Retry-After: <retry_after>`` (default 5) when Redis cannot answer, or
not within ``timeout`` seconds (default 2; None for no limit: the check then waits as long as
the client does). ``on_unavailable(err, request)`` replaces the 503:
whatever it returns is used as the claims, so returning instead of raising lets requests in
unchecked while Redis is down (revoked tokens too). Dangerous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, NoReturn, Optional

from fastapi import HTTPException, Request

from . import _http

if TYPE_CHECKING:
    from ._client import AsyncJwtdeny, Jwtdeny

GetToken = Callable[[Request], Optional[str]]
OnUnavailable = Callable[[Exception, Request], Any]
Dependency = Callable[[Request], dict[str, Any]]
AsyncDependency = Callable[[Request], Awaitable[dict[str, Any]]]


def _bearer(request: Request) -> Optional[str]:
    return _http.bearer_token(request.headers.get("authorization"))


def _raise(denial: _http.Denial) -> NoReturn:
    raise HTTPException(status_code=denial.status, detail=denial.body, headers=denial.headers or None)


def require(
    jd: "Jwtdeny",
    get_token: GetToken = _bearer,
    on_unavailable: Optional[OnUnavailable] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
) -> Dependency:
    """The dependency for a sync ``Jwtdeny`` (FastAPI runs it in its thread pool)."""

    def jwtdeny_claims(request: Request) -> dict[str, Any]:
        token = get_token(request)
        if not token:
            _raise(_http.MISSING)
        try:
            result = _http.check_within(jd, token, timeout)
        except Exception as e:
            denial = _http.judge_error(e)
            if denial is not None:
                _raise(denial)
            if on_unavailable is not None:
                let_in: dict[str, Any] = on_unavailable(e, request)
                return let_in
            _raise(_http.unavailable(retry_after))
        claims = _http.judge(result)
        if isinstance(claims, _http.Denial):
            _raise(claims)
        request.state.jwtdeny_token = token
        return claims

    return jwtdeny_claims


def require_async(
    jd: "AsyncJwtdeny",
    get_token: GetToken = _bearer,
    on_unavailable: Optional[OnUnavailable] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
) -> AsyncDependency:
    """The dependency for an ``AsyncJwtdeny``."""

    async def jwtdeny_claims(request: Request) -> dict[str, Any]:
        token = get_token(request)
        if not token:
            _raise(_http.MISSING)
        try:
            result = await _http.check_within_async(jd, token, timeout)
        except Exception as e:
            denial = _http.judge_error(e)
            if denial is not None:
                _raise(denial)
            if on_unavailable is not None:
                let_in: dict[str, Any] = on_unavailable(e, request)
                return let_in
            _raise(_http.unavailable(retry_after))
        claims = _http.judge(result)
        if isinstance(claims, _http.Denial):
            _raise(claims)
        request.state.jwtdeny_token = token
        return claims

    return jwtdeny_claims
