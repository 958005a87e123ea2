"""A pure ASGI middleware (Starlette, FastAPI, any ASGI app):

    app.add_middleware(JwtdenyMiddleware, jwtdeny=AsyncJwtdeny(redis.asyncio.Redis()))

Every HTTP request needs an active bearer token; its claims are put in ``scope["state"]["auth"]``
(``request.state.auth`` in Starlette) and the token in ``scope["state"]["jwtdeny_token"]``.
401 / 503 (with ``Retry-After``, also at the ``timeout`` deadline) as in jwtdeny.fastapi. ``exclude`` lists paths let through unchecked (``/login``,
``/health``); CORS preflights (``OPTIONS``) pass too unless ``guard_preflight``. ``optional``: a
request without a token goes on with ``auth`` None. ``scopes`` and ``claim_check``: 403
``insufficient_scope`` as in jwtdeny.fastapi. ``on_unavailable(err, scope)`` returning True lets a request in unchecked while
Redis is down: dangerous. A DPoP request (``Authorization: DPoP`` with one ``DPoP`` header) is
checked with its proof; ``scope["state"]["dpop_jkt"]`` is then the key's thumbprint, and
``trust_proxy=True`` takes the URL's scheme and host from X-Forwarded-Proto / X-Forwarded-Host.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Optional, Sequence

from . import _http

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _bearer(scope: Scope) -> Optional[str]:
    return _http.bearer_token(_header(scope, b"authorization"))


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


def _header(scope: Scope, name: bytes) -> Optional[str]:
    found = _headers(scope, name)
    return found[0] if found else None


def _url(scope: Scope, rules: _http.DpopRules) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else scope.get("root_path", "") + scope.get("path", "/")
    return rules.url(scope.get("scheme", "http"), _header(scope, b"host"), path,
                     _header(scope, b"x-forwarded-proto"), _header(scope, b"x-forwarded-host"))


class JwtdenyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        jwtdeny: Any,
        get_token: Callable[[Scope], Optional[str]] = _bearer,
        on_unavailable: Optional[Callable[[Exception, Scope], bool]] = None,
        exclude: Iterable[str] = (),
        timeout: Optional[float] = _http.DEFAULT_TIMEOUT,
        retry_after: int = _http.DEFAULT_RETRY_AFTER,
        trust_proxy: bool = False,
        dpop_algs: str = _http.DEFAULT_DPOP_ALGS,
        optional: bool = False,
        scopes: Sequence[str] = (),
        claim_check: Optional[Callable[[dict[str, Any]], bool]] = None,
        guard_preflight: bool = False,
        get_cert: Optional[Callable[[Scope], Optional[str]]] = None,
    ) -> None:
        self.app = app
        self.jwtdeny = jwtdeny
        self.get_token = get_token
        self.on_unavailable = on_unavailable
        self.exclude = frozenset(exclude)
        self.timeout = timeout
        self.retry_after = retry_after
        self.rules = _http.DpopRules(trust_proxy, dpop_algs)
        self.optional = optional
        self.scopes = tuple(scopes)
        self.claim_check = claim_check
        self.guard_preflight = guard_preflight
        self.get_cert = get_cert

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        preflight = scope.get("method") == "OPTIONS" and not self.guard_preflight
        if scope["type"] != "http" or scope.get("path") in self.exclude or preflight:
            await self.app(scope, receive, send)
            return
        got = _http.credentials(_header(scope, b"authorization"), lambda: _headers(scope, b"dpop"),
                                scope.get("method", "GET"), lambda: _url(scope, self.rules), self.rules,
                                lambda: self.get_token(scope))
        if got is _http.MISSING and self.optional:
            scope.setdefault("state", {})["auth"] = None
            await self.app(scope, receive, send)
            return
        if isinstance(got, _http.Denial):
            await self._deny(send, got)
            return
        token, dpop = got
        get_cert = self.get_cert
        cert = _http.cert_of((lambda: get_cert(scope)) if get_cert is not None else None)
        if isinstance(cert, _http.Denial):
            await self._deny(send, cert)
            return
        try:
            # An AsyncJwtdeny awaits; a sync Jwtdeny runs off the event loop.
            result = await _http.check_within_async(self.jwtdeny, token, self.timeout, dpop, cert)
        except Exception as e:
            denial = _http.judge_error(e, self.rules, dpop is not None)
            if denial is None:
                if self.on_unavailable is not None and self.on_unavailable(e, scope):
                    await self.app(scope, receive, send)
                    return
                denial = _http.unavailable(self.retry_after)
            await self._deny(send, denial)
            return
        claims = _http.judge(result, self.rules if dpop else None)
        if isinstance(claims, _http.Denial):
            await self._deny(send, claims)
            return
        denied = _http.authorize(claims, self.scopes, self.claim_check)
        if denied is not None:
            await self._deny(send, denied)
            return
        state = scope.setdefault("state", {})
        state["auth"] = claims
        state["jwtdeny_token"] = token
        if dpop is not None:
            state["dpop_jkt"] = _http.jkt_of(claims)
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(send: Send, denial: _http.Denial) -> None:
        body = json.dumps(denial.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in denial.headers.items()]
        await send({"type": "http.response.start", "status": denial.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
