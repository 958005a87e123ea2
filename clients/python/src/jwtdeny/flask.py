"""Flask: a view decorator.

    jd = Jwtdeny(redis.Redis())

    @app.get("/me")
    @jd.flask
    def me():
        return flask.g.auth          # the verified claims

A DPoP request (``Authorization: DPoP`` with one ``DPoP`` proof header) is checked with its proof
and ``flask.g.dpop_jkt`` is the key's thumbprint; ``trust_proxy=True`` takes the URL's scheme
and host from X-Forwarded-Proto / X-Forwarded-Host (only behind a proxy that sets them).
401 (RFC 6750 ``WWW-Authenticate``, or RFC 9449's ``DPoP`` challenge) for a missing, refused or revoked token, 503 with
``Retry-After: <retry_after>`` (default 5) when Redis cannot answer, or not within ``timeout``
seconds (default 2; the check runs on a small pool of daemon threads so that the view stops
waiting at the deadline). ``on_unavailable(err)`` replaces the 503: a response it returns is sent, None
lets the request in unchecked while Redis is down (revoked tokens too). Dangerous.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import quote
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

from flask import current_app, g, jsonify, request

from . import _http

if TYPE_CHECKING:
    from ._client import Jwtdeny

F = TypeVar("F", bound=Callable[..., Any])
_LOG = logging.getLogger("jwtdeny")


def _bearer() -> Optional[str]:
    return _http.bearer_token(request.headers.get("Authorization"))


def _response(denial: _http.Denial) -> Any:
    return jsonify(denial.body), denial.status, denial.headers


def _url(rules: _http.DpopRules) -> str:
    env = request.environ
    # The path as the client sent it, where the server keeps it; else the decoded one, quoted.
    raw = env.get("REQUEST_URI") or env.get("RAW_URI")
    path = raw if isinstance(raw, str) and raw.startswith("/") else quote(request.script_root + request.path)
    h = request.headers
    return rules.url(request.scheme, h.get("Host"), path, h.get("X-Forwarded-Proto"), h.get("X-Forwarded-Host"))


def protect(
    jd: "Jwtdeny",
    view: Optional[F] = None,
    get_token: Callable[[], Optional[str]] = _bearer,
    on_unavailable: Optional[Callable[[Exception], Any]] = None,
    timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
    retry_after: int = _http.DEFAULT_RETRY_AFTER,
    trust_proxy: bool = False,
    dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
    optional: bool = False,
    scopes: Sequence[str] = (),
    claim_check: Optional[Callable[[dict[str, Any]], bool]] = None,
    get_cert: Optional[Callable[[], Optional[str]]] = None,
) -> Any:
    """``@protect(jd)``, ``@protect(jd, get_token=...)``, or ``protect(jd, view)``.
    ``optional=True``: a request without a token runs the view with ``g.auth = None``.
    ``scopes`` must be granted (``scope`` or ``scp``) and ``claim_check(claims)`` must hold,
    else 403 ``insufficient_scope``."""
    rules = _http.DpopRules(trust_proxy, dpop_algs)

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            got = _http.credentials(request.headers.get("Authorization"), lambda: request.headers.getlist("DPoP"),
                                    request.method, lambda: _url(rules), rules, get_token)
            if got is _http.MISSING and optional:
                g.auth = None
                return fn(*args, **kwargs)
            if isinstance(got, _http.Denial):
                return _response(got)
            token, dpop = got
            cert = _http.cert_of(get_cert)
            if isinstance(cert, _http.Denial):
                return _response(cert)
            try:
                result = _http.check_within(jd, token, timeout, dpop, cert)
            except Exception as e:
                denial = _http.judge_error(e, rules, dpop is not None)
                if denial is not None:
                    return _response(denial)
                if on_unavailable is None:
                    return _response(_http.unavailable(retry_after))
                reply = on_unavailable(e)
                if reply is not None:
                    return reply
                return fn(*args, **kwargs)
            claims = _http.judge(result, rules if dpop else None)
            if isinstance(claims, _http.Denial):
                return _response(claims)
            denied = _http.authorize(claims, scopes, claim_check)
            if denied is not None:
                return _response(denied)
            g.auth = claims
            g.jwtdeny_token = token
            if dpop is not None:
                g.dpop_jkt = _http.jkt_of(claims)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate


class FlaskJwtdeny:
    """A Flask extension object, for the app-factory pattern::

        guard = FlaskJwtdeny()                       # module level
        guard.init_app(app, jwtdeny=Jwtdeny(redis.Redis()))

        @app.get("/me")
        @guard.required(scopes=["read"])             # under the route decorator
        def me(): return flask.g.auth

    ``defaults`` are options of ``protect`` every ``required()`` starts from. A view decorated
    with ``required()`` *above* ``@app.route`` would be registered unguarded; the extension
    notices that at its first request and answers 500 instead of serving it (fail closed)."""

    def __init__(self, app: Any = None, jwtdeny: Optional["Jwtdeny"] = None, **defaults: Any) -> None:
        self.jwtdeny = jwtdeny
        self.defaults = defaults
        self._originals: set[Any] = set()
        if app is not None:
            self.init_app(app, jwtdeny)

    def init_app(self, app: Any, jwtdeny: Optional["Jwtdeny"] = None) -> None:
        if jwtdeny is not None:
            self.jwtdeny = jwtdeny
        app.extensions["jwtdeny"] = self
        app.before_request(self._refuse_unguarded)

    def required(self, view: Optional[F] = None, **options: Any) -> Any:
        """``@guard.required`` or ``@guard.required(scopes=[...], optional=True, ...)``."""

        def decorate(fn: F) -> F:
            self._originals.add(fn)
            guarded: F = protect(self, fn, **{**self.defaults, **options})  # type: ignore[arg-type]
            return guarded

        return decorate(view) if view is not None else decorate

    # The guards call these: the client is the one init_app was given, when the request comes.
    def check(self, *args: Any, **kwargs: Any) -> Any:
        return self._client().check(*args, **kwargs)

    def check_dpop(self, *args: Any, **kwargs: Any) -> Any:
        return self._client().check_dpop(*args, **kwargs)

    def _client(self) -> "Jwtdeny":
        if self.jwtdeny is None:
            raise RuntimeError("FlaskJwtdeny has no client: call init_app(app, jwtdeny=Jwtdeny(...))")
        return self.jwtdeny

    def _refuse_unguarded(self) -> Any:
        view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
        if view is not None and view in self._originals:
            _LOG.error("jwtdeny: the view %s is registered without its guard: put @guard.required "
                       "under @app.route, not above it", request.endpoint)
            return jsonify({"error": "server_error", "error_description": "a guarded view is "
                            "registered without its guard", "code": "MISCONFIGURED"}), 500
        return None
