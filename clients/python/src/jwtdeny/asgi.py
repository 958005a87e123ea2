"""A pure ASGI middleware (Starlette, FastAPI, any ASGI app):

    app.add_middleware(JwtdenyMiddleware, jwtdeny=AsyncJwtdeny(redis.asyncio.Redis()))

Every HTTP request needs an active bearer token; its claims are put in ``scope["state"]["auth"]``
(``request.state.auth`` in Starlette) and the token in ``scope["state"]["jwtdeny_token"]``.
401 / 503 (with ``Retry-After``, also at the ``timeout`` deadline) as in jwtdeny.fastapi. ``exclude`` lists paths let through unchecked (``/login``,
``/health``). ``on_unavailable(err, scope)`` returning True lets a request in unchecked while
Redis is down: dangerous.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Optional

from . import _http

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _bearer(scope: Scope) -> Optional[str]:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            return _http.bearer_token(value)
    return None


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
    ) -> None:
        self.app = app
        self.jwtdeny = jwtdeny
        self.get_token = get_token
        self.on_unavailable = on_unavailable
        self.exclude = frozenset(exclude)
        self.timeout = timeout
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        token = self.get_token(scope)
        if not token:
            await self._deny(send, _http.MISSING)
            return
        try:
            # An AsyncJwtdeny awaits; a sync Jwtdeny runs off the event loop.
            result = await _http.check_within_async(self.jwtdeny, token, self.timeout)
        except Exception as e:
            denial = _http.judge_error(e)
            if denial is None:
                if self.on_unavailable is not None and self.on_unavailable(e, scope):
                    await self.app(scope, receive, send)
                    return
                denial = _http.unavailable(self.retry_after)
            await self._deny(send, denial)
            return
        claims = _http.judge(result)
        if isinstance(claims, _http.Denial):
            await self._deny(send, claims)
            return
        state = scope.setdefault("state", {})
        state["auth"] = claims
        state["jwtdeny_token"] = token
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(send: Send, denial: _http.Denial) -> None:
        body = json.dumps(denial.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in denial.headers.items()]
        await send({"type": "http.response.start", "status": denial.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
