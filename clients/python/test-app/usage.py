"""Checked with ``mypy --strict`` against the installed wheel (run-tests.sh): the documented calls
type-check, and a misuse is an error (the ``type: ignore`` comments must be needed, which
``warn_unused_ignores`` in --strict verifies)."""

from __future__ import annotations

from typing import Any, Optional

import redis
import redis.asyncio
import flask
from fastapi import Depends, FastAPI
from starlette.applications import Starlette

from jwtdeny import AsyncJwtdeny, CheckResult, Jwtdeny, JwtdenyError
from jwtdeny.asgi import JwtdenyMiddleware

jd = Jwtdeny(redis.Redis(), prefix="jwtdeny:")
ajd = AsyncJwtdeny(redis.asyncio.Redis())
app = FastAPI()


def sync_use(token: str) -> None:
    r: CheckResult = jd.check(token, with_claims=True)
    sub: Any = r.claims["sub"] if r.claims else None
    now: bool = jd.revoke(token.encode())
    cutoff: int = jd.revoke_all("alice", at=1767225600)
    fields: dict[str, Any] = jd.inspect(token)
    ended: bool = jd.logout(token) and jd.revoke_session("alice", "sid-1")
    print(ended)
    print(sub, now, cutoff, fields)
    try:
        jd.check(token)
    except JwtdenyError as e:
        code: str = e.code
        nonce: Optional[str] = e.nonce if e.dpop_error == "use_dpop_nonce" else None
        print(code, nonce)
    bound: CheckResult = jd.check_dpop(token, "proof", "GET", "https://api.example.com/x", with_claims=True)
    mtls: CheckResult = jd.check(token, cert="x5t")
    print(bound.active, mtls.active)
    jd.check(42)  # type: ignore[arg-type]
    bad: str = jd.revoke(token)  # type: ignore[assignment]
    print(bad)


async def async_use(token: str) -> bool:
    bound = await ajd.check_dpop(token, "proof", "POST", "https://api.example.com/x")
    return (await ajd.check(token)).active and bound.active


@app.get("/me")
async def me(claims: dict[str, Any] = Depends(ajd.require())) -> dict[str, Any]:
    return claims


sync_app = FastAPI()


@sync_app.get("/me")
def me_sync(claims: dict[str, Any] = Depends(jd.require())) -> dict[str, Any]:
    return claims


star = Starlette()
star.add_middleware(JwtdenyMiddleware, jwtdeny=ajd, exclude=["/login"])
star.add_middleware(JwtdenyMiddleware, jwtdeny=ajd, trust_proxy=True, dpop_algs="ES256 EdDSA")

web = flask.Flask(__name__)


@web.get("/me")
@jd.flask
def flask_me() -> dict[str, Any]:
    claims: dict[str, Any] = flask.g.auth
    return claims


@web.get("/other")
@jd.flask(get_token=lambda: flask.request.headers.get("X-Token"))
def flask_other() -> str:
    return "ok"


def flask_misuse() -> None:
    n: int = flask_other()  # type: ignore[assignment]
    print(n)
