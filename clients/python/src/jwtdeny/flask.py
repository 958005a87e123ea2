"""Flask: a view decorator.

    jd = Jwtdeny(redis.Redis())

    @app.get("/me")
    @jd.flask
    def me():
        return flask.g.auth          # the verified claims

401 (RFC 6750 ``WWW-Authenticate``) for a missing, refused or revoked token, 503 with
``Retry-After: <retry_after>`` (default 5) when Redis cannot answer, or not within ``timeout``
seconds (default 2; the check runs on a small pool of daemon threads so that the view stops
waiting at the deadline). ``on_unavailable(err)`` replaces the 503: a response it returns is sent, None
lets the request in unchecked while Redis is down (revoked tokens too). Dangerous.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from flask import g, jsonify, request

from . import _http

if TYPE_CHECKING:
    from ._client import Jwtdeny

F = TypeVar("F", bound=Callable[..., Any])


def _bearer() -> Optional[str]:
    return _http.bearer_token(request.headers.get("Authorization"))


def _response(denial: _http.Denial) -> Any:
    return jsonify(denial.body), denial.status, denial.headers


def protect(
    jd: "Jwtdeny",
    view: Optional[F] = None,
    get_token: Callable[[], Optional[str]] = _bearer,
    on_unavailable: Optional[Callable[[Exception], Any]] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
) -> Any:
    """``@protect(jd)``, ``@protect(jd, get_token=...)``, or ``protect(jd, view)``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = get_token()
            if not token:
                return _response(_http.MISSING)
            try:
                result = _http.check_within(jd, token, timeout)
            except Exception as e:
                denial = _http.judge_error(e)
                if denial is not None:
                    return _response(denial)
                if on_unavailable is None:
                    return _response(_http.unavailable(retry_after))
                reply = on_unavailable(e)
                if reply is not None:
                    return reply
                return fn(*args, **kwargs)
            claims = _http.judge(result)
            if isinstance(claims, _http.Denial):
                return _response(claims)
            g.auth = claims
            g.jwtdeny_token = token
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate
