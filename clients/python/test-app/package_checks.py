"""Tests of the installed jwtdeny wheel (run by ../run-tests.sh in a fresh venv, from a copy of
this directory, so ``import jwtdeny`` is what a user gets; the name is not test_*.py so that
pytest in clients/python does not collect it against the source tree).

  standalone: starts its own redis-server with $JWTDENY_MODULE loaded
  cluster:    JWTDENY_CLUSTER_NODES=host:port[,...] (tests/cluster/test_packages.py sets it)
  JWTDENY_TEST_KEYS_FILE, JWTDENY_TEST_HS256_FILE, JWTDENY_TEST_KID: the server's keys file,
  the HS256 secret of one of its keys and its kid.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

import flask
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.retry
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import jwtdeny
from jwtdeny import AsyncJwtdeny, Jwtdeny, JwtdenyError
from jwtdeny.asgi import JwtdenyMiddleware


def env(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        pytest.exit(f"{name} is not set (run clients/python/run-tests.sh)", returncode=2)
    return v


SECRET = pathlib.Path(env("JWTDENY_TEST_HS256_FILE")).read_bytes()
KID = env("JWTDENY_TEST_KID")
NODES = [(h, int(p)) for h, p in (hp.rsplit(":", 1) for hp in os.environ.get("JWTDENY_CLUSTER_NODES", "").split(",") if hp)]
MODE = "cluster" if NODES else "standalone"
_serial = itertools.count()
# The server's jwtdeny.logout-audience (the standalone server below and test_packages.py set it).
# Only the standalone server has a jwtdeny.max-lifetime, which a session's logout needs to revoke
# that session alone; without one (the cluster) it revokes by subject.
LOGOUT_AUDIENCE = "jwtdeny-package-tests"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims: dict[str, Any], secret: bytes = SECRET, typ: str = "JWT") -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": typ, "kid": KID}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def logout_token(**claims: Any) -> str:
    now = int(time.time())
    return mint({"aud": LOGOUT_AUDIENCE, "iat": now, "exp": now + 120, "jti": f"j-{next(_serial)}-{os.getpid()}",
                 "events": {LOGOUT_EVENT: {}}, **claims}, SECRET, "logout+jwt")


def fresh(**extra: Any) -> tuple[str, str]:
    """A token of a subject no other test uses: (sub, token)."""
    sub = f"py-{MODE}-{os.getpid()}-{next(_serial)}@example.com"
    now = int(time.time())
    return sub, mint({"sub": sub, "iat": now - 60, "exp": now + 3600, **extra})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[str, int]]:
    if NODES:
        yield NODES[0]
        return
    d = tempfile.mkdtemp(prefix="jwtdeny-py-pkg-")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
         "--appendonly", "no", "--loadmodule", env("JWTDENY_MODULE"),
         "keys-file", env("JWTDENY_TEST_KEYS_FILE"),
         "logout-audience", LOGOUT_AUDIENCE, "max-lifetime", "86400"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)


# Servers nobody listens on: their clients fail at once instead of retrying with backoff.
DOWN: set[tuple[str, int]] = set()


def no_retry(server: tuple[str, int], kw: dict[str, Any], retry: Any) -> dict[str, Any]:
    if server in DOWN:
        kw = {**kw, "retry": retry, "socket_connect_timeout": 1}
    return kw


def sync_client(server: tuple[str, int], **kw: Any) -> Any:
    kw = no_retry(server, kw, redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    if NODES:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in NODES], **kw)
    return redis.Redis(host=server[0], port=server[1], **kw)


def async_client(server: tuple[str, int], **kw: Any) -> Any:
    kw = no_retry(server, kw, redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0))
    if NODES:
        return AsyncRedisCluster(startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in NODES], **kw)
    return redis.asyncio.Redis(host=server[0], port=server[1], **kw)


# -- the methods, sync and async, bytes and decoded replies -------------------------------------


class Sync:
    """The async API's shape over a sync Jwtdeny, so one test body covers both."""

    def __init__(self, jd: Jwtdeny) -> None:
        self.jd = jd

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.jd, name)

        async def call(*a: Any, **kw: Any) -> Any:
            return fn(*a, **kw)

        return call


FLAVOURS = ["sync", "sync-decoded", "async", "async-decoded"]


def run_with(server: tuple[str, int], flavour: str, body: Callable[[Any], Any]) -> None:
    kw = {"decode_responses": True} if flavour.endswith("decoded") else {}

    async def main() -> None:
        if flavour.startswith("async"):
            client = async_client(server, **kw)
            try:
                jd = AsyncJwtdeny(client)
                assert jd.cluster is bool(NODES)
                await body(jd)
            finally:
                await client.aclose() if hasattr(client, "aclose") else await client.close()
        else:
            client = sync_client(server, **kw)
            try:
                jd = Jwtdeny(client)
                assert jd.cluster is bool(NODES)
                await body(Sync(jd))
            finally:
                client.close()

    asyncio.run(main())


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_check_revoke(server: tuple[str, int], flavour: str) -> None:
    async def body(jd: Any) -> None:
        sub, token = fresh(role="admin")
        assert await jd.check(token) == jwtdeny.CheckResult(active=True)
        r = await jd.check(token, with_claims=True)
        assert r.active and r.claims is not None and r.claims["sub"] == sub and r.claims["role"] == "admin"
        assert await jd.revoke(token) is True
        assert await jd.revoke(token.encode()) is False
        assert await jd.check(token) == jwtdeny.CheckResult(active=False)
        assert await jd.check(token, with_claims=True) == jwtdeny.CheckResult(active=False)

    run_with(server, flavour, body)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_revoke_all_and_inspect(server: tuple[str, int], flavour: str) -> None:
    async def body(jd: Any) -> None:
        sub, _ = fresh()
        now = int(time.time())
        older = mint({"sub": sub, "iat": now - 100, "exp": now + 3600})
        newer = mint({"sub": sub, "iat": now - 10, "exp": now + 3600})
        info = await jd.inspect(older)
        assert info["status"] == "active" and info["sub"] == sub
        assert info["key"] == jwtdeny.keys_for(older)[0]
        assert await jd.revoke_all(sub, at=now - 50) == now - 50
        assert (await jd.check(older)).active is False
        assert (await jd.check(newer)).active is True
        assert (await jd.inspect(older))["revoked_by"] == "subject"
        assert await jd.revoke_all(sub) >= now
        assert (await jd.check(newer)).active is False

    run_with(server, flavour, body)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_logout_and_revoke_session(server: tuple[str, int], flavour: str) -> None:
    async def body(jd: Any) -> None:
        sub, _ = fresh()
        now = int(time.time())
        s1 = mint({"sub": sub, "sid": "s-1", "iat": now - 60, "exp": now + 3600})
        s2 = mint({"sub": sub, "sid": "s-2", "iat": now - 60, "exp": now + 3600})
        plain = mint({"sub": sub, "iat": now - 60, "exp": now + 3600})
        assert jwtdeny.session_key_for(s1) == jwtdeny.subject_key(sub) + ":sid:s-1"
        assert jwtdeny.session_key_for(plain) is None
        for t in (s1, s2, plain):
            assert (await jd.check(t)).active

        lo = logout_token(sub=sub, sid="s-1")
        assert await jd.logout(lo) is True
        assert await jd.logout(lo.encode()) is False  # replayed
        assert (await jd.check(s1)).active is False
        assert (await jd.check(s1, with_claims=True)) == jwtdeny.CheckResult(active=False)
        assert (await jd.inspect(s1))["status"] == "revoked"
        if NODES:
            # No max-lifetime: the logout revoked every token of sub up to its iat.
            assert not (await jd.check(s2)).active and not (await jd.check(plain)).active
            other, _ = fresh()
            o = mint({"sub": other, "sid": "x", "iat": now - 60, "exp": now + 3600})
            assert await jd.revoke_session(other, "x") is True
            assert not (await jd.check(o)).active
        else:
            # A token without sid cannot be told apart by session: any session's end revokes it.
            assert (await jd.check(s2)).active and not (await jd.check(plain)).active
            assert await jd.revoke_session(sub, "s-2") is True
            assert await jd.revoke_session(sub, "s-2") is False
            assert not (await jd.check(s2)).active
            assert await jd.logout(logout_token(sub=sub)) is True  # no sid: every session of sub
            assert not (await jd.check(plain)).active

        with pytest.raises(JwtdenyError) as e:  # no back-channel event: not a logout token
            await jd.logout(mint({"sub": sub, "aud": LOGOUT_AUDIENCE, "iat": now, "exp": now + 60}, SECRET, "logout+jwt"))
        assert e.value.code == "BADCLAIMS"

    run_with(server, flavour, body)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_refused_tokens_raise_jwtdeny_error(server: tuple[str, int], flavour: str) -> None:
    now = int(time.time())
    cases = [
        ("EXPIRED", mint({"sub": fresh()[0], "iat": now - 7200, "exp": now - 3600})),
        ("BADSIG", mint({"sub": fresh()[0], "iat": now - 60, "exp": now + 60}, b"wrong")),
        ("NOTYET", mint({"sub": fresh()[0], "iat": now - 60, "nbf": now + 3600, "exp": now + 7200})),
        ("MALFORMED", "not-a-token"),
    ]

    async def body(jd: Any) -> None:
        for code, token in cases:
            for call in (jd.check, jd.revoke):
                with pytest.raises(JwtdenyError) as e:
                    await call(token)
                assert e.value.code == code, (code, str(e.value))

    run_with(server, flavour, body)


def test_keys_and_api() -> None:
    assert sorted(jwtdeny.TOKEN_ERROR_CODES) == ["BADALG", "BADCLAIMS", "BADSIG", "DPOP", "EXPIRED", "MALFORMED", "NOKEY", "NOTYET"]
    token = mint({"sub": "a{b}", "iat": 1767225600.5, "exp": 4102444800})
    assert jwtdeny.keys_for(token) == ("jwtdeny:{a%7Bb%7D}:1767225600", "jwtdeny:{a%7Bb%7D}")
    assert jwtdeny.bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert jwtdeny.bearer_token("Basic abc") is None
    # The wheel ships its type information.
    assert (pathlib.Path(jwtdeny.__file__).parent / "py.typed").is_file()


# -- guards ------------------------------------------------------------------------------------


def guard_cases(get: Callable[[str | None, str], Any]) -> None:
    """get(token, path) -> response with .status_code, .headers, .json()."""
    sub, token = fresh(scope="read")
    ok = get(token, "/me")
    assert ok.status_code == 200, ok.text
    assert ok.json()["sub"] == sub and ok.json()["scope"] == "read"

    none = get(None, "/me")
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"

    now = int(time.time())
    expired = get(mint({"sub": sub, "iat": now - 7200, "exp": now - 3600}), "/me")
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token", error_description="EXPIRED"'

    forged = get(mint({"sub": sub, "iat": now - 60, "exp": now + 60}, b"x"), "/me")
    assert forged.headers["www-authenticate"] == 'Bearer error="invalid_token", error_description="BADSIG"'

    assert get(token, "/logout").json() == {"revoked": True}
    revoked = get(token, "/me")
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"] == 'Bearer error="invalid_token", error_description="REVOKED"'


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def fastapi_app(server: tuple[str, int], asynchronous: bool, **kw: Any) -> FastAPI:
    app = FastAPI()
    if asynchronous:
        ajd = AsyncJwtdeny(async_client(server))
        dep = ajd.require(**kw)

        @app.get("/me")
        async def me(claims: dict[str, Any] = Depends(dep)) -> dict[str, Any]:
            return claims

        @app.get("/logout")
        async def logout(request: Request, claims: dict[str, Any] = Depends(dep)) -> dict[str, Any]:
            return {"revoked": await ajd.revoke(request.state.jwtdeny_token)}
    else:
        jd = Jwtdeny(sync_client(server))

        @app.get("/me")
        def me_sync(claims: dict[str, Any] = Depends(jd.require(**kw))) -> dict[str, Any]:
            return claims

        @app.get("/logout")
        def logout_sync(request: Request, claims: dict[str, Any] = Depends(jd.require(**kw))) -> dict[str, Any]:
            return {"revoked": jd.revoke(request.state.jwtdeny_token)}

    return app


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_fastapi_dependency(server: tuple[str, int], asynchronous: bool) -> None:
    with TestClient(fastapi_app(server, asynchronous)) as c:
        guard_cases(lambda token, path: c.get(path, headers=headers(token)))


def starlette_app(server: tuple[str, int], **kw: Any) -> Starlette:
    ajd = AsyncJwtdeny(async_client(server))

    async def me(request: Any) -> JSONResponse:
        return JSONResponse(request.state.auth)

    async def logout(request: Any) -> JSONResponse:
        return JSONResponse({"revoked": await ajd.revoke(request.state.jwtdeny_token)})

    app = Starlette(routes=[Route("/me", me), Route("/logout", logout), Route("/health", lambda r: JSONResponse({}))])
    app.add_middleware(JwtdenyMiddleware, jwtdeny=ajd, exclude=["/health"], **kw)
    return app


def test_asgi_middleware(server: tuple[str, int]) -> None:
    with TestClient(starlette_app(server)) as c:
        guard_cases(lambda token, path: c.get(path, headers=headers(token)))
        assert c.get("/health").status_code == 200


def flask_app(server: tuple[str, int], **kw: Any) -> flask.Flask:
    jd = Jwtdeny(sync_client(server))
    app = flask.Flask(__name__)

    @app.get("/me")
    @jd.flask(**kw)
    def me() -> Any:
        return flask.g.auth

    @app.get("/logout")
    @jd.flask
    def logout() -> Any:
        return {"revoked": jd.revoke(flask.g.jwtdeny_token)}

    return app


def test_flask_decorator(server: tuple[str, int]) -> None:
    c = flask_app(server).test_client()
    guard_cases(lambda token, path: _FlaskResponse(c.get(path, headers=headers(token))))


class _FlaskResponse:
    def __init__(self, r: Any) -> None:
        self.status_code = r.status_code
        self.headers = {k.lower(): v for k, v in r.headers.items()}
        self.text = r.get_data(as_text=True)
        self._json = r.get_json()

    def json(self) -> Any:
        return self._json


@pytest.mark.skipif(bool(NODES), reason="standalone only: a client of a port nobody listens on")
def test_unavailable_is_503_and_on_unavailable_decides() -> None:
    down = ("127.0.0.1", free_port())
    DOWN.add(down)
    _, token = fresh()
    with TestClient(fastapi_app(down, True)) as c:
        r = c.get("/me", headers=headers(token))
        assert r.status_code == 503 and r.json()["detail"]["code"] == "UNAVAILABLE"
        assert r.json()["detail"]["error"] == "unavailable"
    with TestClient(fastapi_app(down, False)) as c:
        assert c.get("/me", headers=headers(token)).status_code == 503
    with TestClient(starlette_app(down)) as c:
        assert c.get("/me", headers=headers(token)).status_code == 503
    assert flask_app(down).test_client().get("/me", headers=headers(token)).status_code == 503

    seen: list[Exception] = []

    def let_in(err: Exception, *_: Any) -> Any:
        seen.append(err)
        return {"sub": "unchecked"}

    with TestClient(fastapi_app(down, False, on_unavailable=let_in)) as c:
        assert c.get("/me", headers=headers(token)).json() == {"sub": "unchecked"}
    assert seen and isinstance(seen[0], redis.ConnectionError)
    r = flask_app(down, on_unavailable=lambda e: ({"error": "custom"}, 500)).test_client().get("/me", headers=headers(token))
    assert r.status_code == 500
    # ASGI: True lets the request reach the app unchecked (its route then finds no claims).
    with TestClient(starlette_app(down, on_unavailable=lambda e, scope: True), raise_server_exceptions=False) as c:
        assert c.get("/me", headers=headers(token)).status_code == 500
    with TestClient(starlette_app(down, on_unavailable=lambda e, scope: False)) as c:
        assert c.get("/me", headers=headers(token)).status_code == 503


def _kcheck_stats() -> tuple[int, int, int]:
    """KSCHECK calls (every token's keyed check), KSCHECKs answered MOVED, and COMMAND GETKEYS
    calls, over every node."""
    calls = rejected = getkeys = 0
    for host, port in NODES:
        with redis.Redis(host=host, port=port) as direct:
            stats = direct.info("commandstats")
        stat = stats.get("cmdstat_jwtdeny.kscheck")
        if stat:
            calls += int(stat["calls"])
            rejected += int(stat.get("rejected_calls", 0))
        getkeys += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return calls, rejected, getkeys


def _calls(cmd: str) -> int:
    total = 0
    for host, port in NODES:
        with redis.Redis(host=host, port=port) as direct:
            total += int(direct.info("commandstats").get(f"cmdstat_jwtdeny.{cmd}", {}).get("calls", 0))
    return total


@pytest.mark.skipif(not NODES, reason="cluster only")
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_token_with_a_session_goes_through_kscheck(server: tuple[str, int], flavour: str) -> None:
    sub, _ = fresh()
    now = int(time.time())
    token = mint({"sub": sub, "sid": "ks", "iat": now - 60, "exp": now + 3600})

    async def body(jd: Any) -> None:
        before = (_calls("kscheck"), _calls("ksinspect"))
        r = await jd.check(token, with_claims=True)
        assert r.claims is not None and r.claims["sid"] == "ks"
        assert (await jd.inspect(token))["status"] == "active"
        assert (_calls("kscheck") - before[0], _calls("ksinspect") - before[1]) == (1, 1)

    run_with(server, flavour, body)


@pytest.mark.skipif(not NODES, reason="cluster only")
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_keyed_commands_go_straight_to_the_owner(server: tuple[str, int], flavour: str) -> None:
    tokens = [fresh()[1] for _ in range(24)]

    async def body(jd: Any) -> None:
        for t in tokens:
            await jd.check(t)  # slots and connections are known from here on
        before = _kcheck_stats()
        for t in tokens:
            assert (await jd.check(t)).active
        after = _kcheck_stats()
        # Every check routed by its declared keys alone: no MOVED, no COMMAND GETKEYS round trip.
        assert tuple(a - b for a, b in zip(after, before)) == (len(tokens), 0, 0)

    run_with(server, flavour, body)


# -- issue 17 §1.11: the guards' own deadline ---------------------------------------------------


def within(bound: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing (not hanging) if it takes longer than ``bound`` seconds."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    started = time.monotonic()
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"no answer within {bound} s"
    assert box, "the request raised"
    took = time.monotonic() - started
    assert took < bound, took
    return box[0]


@pytest.fixture()
def silent() -> Iterator[tuple[str, int]]:
    """A server that accepts connections and never answers (a hung Redis)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(lsock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield ("127.0.0.1", int(lsock.getsockname()[1]))
    stop.set()
    t.join(5)
    for s in held:
        s.close()
    lsock.close()


@pytest.mark.skipif(bool(NODES), reason="standalone only: a server of its own")
def test_every_guard_answers_503_at_its_deadline_when_redis_hangs(silent: tuple[str, int]) -> None:
    """Clients with redis-py's defaults (no socket timeout) on a Redis that never answers: each
    guard answers 503 with Retry-After at its deadline instead of waiting with the client."""
    _, token = fresh()
    kw = {"timeout": 0.3, "retry_after": 7}
    for asynchronous in (False, True):
        with TestClient(fastapi_app(silent, asynchronous, **kw)) as c:
            r = within(5, lambda: c.get("/me", headers=headers(token)))
            assert r.status_code == 503 and r.headers["retry-after"] == "7", asynchronous
    with TestClient(starlette_app(silent, timeout=0.3)) as c:
        r = within(5, lambda: c.get("/me", headers=headers(token)))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
    f = flask_app(silent, **kw).test_client()
    r = within(5, lambda: f.get("/me", headers=headers(token)))
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    seen: list[Exception] = []

    def let_in(err: Exception, *_: Any) -> Any:
        seen.append(err)
        return {"sub": "unchecked"}

    with TestClient(fastapi_app(silent, True, timeout=0.3, on_unavailable=let_in)) as c:
        within(5, lambda: c.get("/me", headers=headers(token)))
    assert seen and isinstance(seen[0], jwtdeny.CheckTimeout)


def own_redis(port: int) -> subprocess.Popen[bytes]:
    d = tempfile.mkdtemp(prefix="jwtdeny-py-down-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
         "--appendonly", "no", "--loadmodule", env("JWTDENY_MODULE"),
         "keys-file", env("JWTDENY_TEST_KEYS_FILE")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            assert proc.poll() is None and time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)


@pytest.mark.skipif(bool(NODES), reason="standalone only: a server of its own")
def test_the_quick_start_client_fails_fast_and_recovers() -> None:
    """The client exactly as the README's quick start builds it: 503 within the deadline when
    Redis stops, 200 again once it is back."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    port = free_port()
    proc = own_redis(port)
    jd = AsyncJwtdeny(redis.asyncio.Redis(
        host="127.0.0.1", port=port,
        socket_connect_timeout=1, socket_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
    ))
    app = FastAPI()

    @app.get("/me")
    async def me(claims: dict[str, Any] = Depends(jd.require())) -> dict[str, Any]:
        return claims

    _, token = fresh()
    try:
        with TestClient(app) as c:
            assert c.get("/me", headers=headers(token)).status_code == 200
            proc.kill()
            proc.wait(10)
            r = within(5, lambda: c.get("/me", headers=headers(token)))
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            proc = own_redis(port)
            status = 0
            for _ in range(100):
                status = c.get("/me", headers=headers(token)).status_code
                if status == 200:
                    break
                time.sleep(0.1)
            assert status == 200, "requests succeed again once Redis is back"
    finally:
        proc.kill()
        proc.wait(10)


# -- DPoP (RFC 9449): proofs by PyJWT and cryptography ------------------------------------------

URL = "https://api.example.com/orders"


class Holder:
    """A client's DPoP key pair (cryptography), its public JWK and RFC 7638 thumbprint."""

    def __init__(self, alg: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        self.alg = alg
        key: Any
        if alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        self.key = key
        self.jwk = json.loads(pyjwt.get_algorithm_by_name(alg).to_jwk(key.public_key()))
        required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
        canonical = json.dumps({m: self.jwk[m] for m in required[self.jwk["kty"]]}, separators=(",", ":"), sort_keys=True)
        self.jkt = b64(hashlib.sha256(canonical.encode()).digest())

    def proof(self, token: str, method: str = "GET", url: str = URL, **claims: Any) -> str:
        body = {"jti": f"p-{os.getpid()}-{next(_serial)}-{time.time()}", "htm": method, "htu": url,
                "iat": int(time.time()), "ath": b64(hashlib.sha256(token.encode()).digest()), **claims}
        return str(pyjwt.encode(body, self.key, algorithm=self.alg, headers={"typ": "dpop+jwt", "jwk": self.jwk}))

    def token(self) -> str:
        return fresh(cnf={"jkt": self.jkt})[1]


import jwt as pyjwt  # noqa: E402  (PyJWT, a test dependency)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_check_dpop(server: tuple[str, int], flavour: str, alg: str) -> None:
    h = Holder(alg)

    async def body(jd: Any) -> None:
        token = h.token()
        proof = h.proof(token, "POST")
        r = await jd.check_dpop(token, proof, "POST", URL + "?q=1", with_claims=True)
        assert r.active and r.claims["cnf"]["jkt"] == h.jkt
        with pytest.raises(JwtdenyError) as e:
            await jd.check_dpop(token, proof, "POST", URL)
        assert e.value.code == "DPOP" and e.value.dpop_error == "invalid_dpop_proof"
        with pytest.raises(JwtdenyError) as e:
            await jd.check_dpop(token, h.proof(token, "GET"), "POST", URL)
        assert e.value.dpop_error == "invalid_dpop_proof" and "htm" in str(e.value)
        with pytest.raises(JwtdenyError) as e:
            await jd.check(token)
        assert e.value.code == "DPOP" and e.value.dpop_error == "invalid_token"

    run_with(server, flavour, body)


def dpop_guard_cases(get: Callable[[dict[str, str], str], Any], base: str, trust_proxy: bool) -> None:
    """get(headers, path) -> response; ``base``: the URL the test client addresses."""
    h = Holder("ES256")
    token = h.token()
    here = f"{base}/me"
    ok = get({"Authorization": f"DPoP {token}", "DPoP": h.proof(token, "GET", here)}, "/me?x=1")
    assert ok.status_code == 200, ok.text
    assert ok.json()["claims"]["cnf"]["jkt"] == h.jkt and ok.json()["jkt"] == h.jkt

    proof = h.proof(token, "GET", here)
    assert get({"Authorization": f"DPoP {token}", "DPoP": proof}, "/me").status_code == 200
    replay = get({"Authorization": f"DPoP {token}", "DPoP": proof}, "/me")
    assert replay.status_code == 401
    assert replay.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    assert 'algs="ES256 ' in replay.headers["www-authenticate"]

    missing = get({"Authorization": f"DPoP {token}"}, "/me")
    assert missing.status_code == 401 and 'error="invalid_dpop_proof"' in missing.headers["www-authenticate"]
    two = get({"Authorization": f"DPoP {token}", "DPoP": f"{h.proof(token, 'GET', here)}, {h.proof(token, 'GET', here)}"}, "/me")
    assert two.status_code == 401

    wrong = get({"Authorization": f"DPoP {token}", "DPoP": h.proof(token, "POST", here)}, "/me")
    assert wrong.status_code == 401

    bearer = get({"Authorization": f"Bearer {token}"}, "/me")
    assert bearer.status_code == 401 and bearer.headers["www-authenticate"].startswith('DPoP error="invalid_token"')

    forwarded = {"Authorization": f"DPoP {token}", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com",
                 "DPoP": h.proof(token, "GET", "https://api.example.com/me")}
    assert get(forwarded, "/me").status_code == (200 if trust_proxy else 401)

    sub, plain = fresh()
    b = get({"Authorization": f"Bearer {plain}"}, "/me")
    assert b.status_code == 200 and b.json()["claims"]["sub"] == sub and b.json()["jkt"] is None


def dpop_fastapi_app(server: tuple[str, int], asynchronous: bool, **kw: Any) -> FastAPI:
    app = FastAPI()
    dep = AsyncJwtdeny(async_client(server)).require(**kw) if asynchronous else Jwtdeny(sync_client(server)).require(**kw)

    @app.get("/me")
    def me(request: Request, claims: dict[str, Any] = Depends(dep)) -> dict[str, Any]:
        return {"claims": claims, "jkt": getattr(request.state, "dpop_jkt", None)}

    return app


@pytest.mark.parametrize("trust_proxy", [False, True])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_fastapi_dpop(server: tuple[str, int], asynchronous: bool, trust_proxy: bool) -> None:
    with TestClient(dpop_fastapi_app(server, asynchronous, trust_proxy=trust_proxy)) as c:
        dpop_guard_cases(lambda hd, path: c.get(path, headers=hd), "http://testserver", trust_proxy)


@pytest.mark.parametrize("trust_proxy", [False, True])
def test_asgi_dpop(server: tuple[str, int], trust_proxy: bool) -> None:
    async def me(request: Any) -> JSONResponse:
        return JSONResponse({"claims": request.state.auth, "jkt": getattr(request.state, "dpop_jkt", None)})

    app = Starlette(routes=[Route("/me", me)])
    app.add_middleware(JwtdenyMiddleware, jwtdeny=AsyncJwtdeny(async_client(server)), trust_proxy=trust_proxy)
    with TestClient(app) as c:
        dpop_guard_cases(lambda hd, path: c.get(path, headers=hd), "http://testserver", trust_proxy)


@pytest.mark.parametrize("trust_proxy", [False, True])
def test_flask_dpop(server: tuple[str, int], trust_proxy: bool) -> None:
    jd = Jwtdeny(sync_client(server))
    app = flask.Flask(__name__)

    @app.get("/me")
    @jd.flask(trust_proxy=trust_proxy)
    def me() -> Any:
        return {"claims": flask.g.auth, "jkt": getattr(flask.g, "dpop_jkt", None)}

    c = app.test_client()
    dpop_guard_cases(lambda hd, path: _FlaskResponse(c.get(path, headers=hd)), "http://localhost", trust_proxy)


@pytest.mark.skipif(bool(NODES), reason="standalone: the cluster's nodes keep their own configs")
def test_guards_ask_for_a_server_nonce(server: tuple[str, int]) -> None:
    admin = redis.Redis(host=server[0], port=server[1])
    admin.config_set("jwtdeny.dpop-nonce", "yes")
    try:
        with TestClient(dpop_fastapi_app(server, True)) as c:
            h = Holder("EdDSA")
            token = h.token()
            here = "http://testserver/me"
            first = c.get("/me", headers={"Authorization": f"DPoP {token}", "DPoP": h.proof(token, "GET", here)})
            assert first.status_code == 401
            assert first.headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"')
            nonce = first.headers["dpop-nonce"]
            again = c.get("/me", headers={"Authorization": f"DPoP {token}", "DPoP": h.proof(token, "GET", here, nonce=nonce)})
            assert again.status_code == 200, again.text
    finally:
        admin.config_set("jwtdeny.dpop-nonce", "no")
        admin.close()


def test_each_dpop_rule_broken_alone(server: tuple[str, int]) -> None:
    """Proofs made by PyJWT, each breaking one rule of RFC 9449 §4.3; the valid one passes last,
    so none of the refusals spent its jti."""
    h, other = Holder("ES256"), Holder("EdDSA")
    token = h.token()
    now = int(time.time())
    jti = f"shared-{os.getpid()}-{now}"
    good = {"jti": jti, "htm": "GET", "htu": URL, "iat": now, "ath": b64(hashlib.sha256(token.encode()).digest())}
    head = {"typ": "dpop+jwt", "jwk": h.jwk}

    def signed(claims: dict[str, Any], headers: dict[str, Any] = head, key: Any = None, alg: str = "ES256") -> str:
        return str(pyjwt.encode(claims, h.key if key is None else key, algorithm=alg, headers=headers))

    private = dict(h.jwk, d=b64(b"\x01" * 32))
    cases = {
        "typ missing": signed(good, {"jwk": h.jwk}),
        "typ JWT": signed(good, {"typ": "JWT", "jwk": h.jwk}),
        "alg none": str(pyjwt.encode(good, None, algorithm="none", headers=head)),
        "alg HS256": signed(good, {"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": b64(b"k" * 32)}}, key=b"k" * 32, alg="HS256"),
        "a private key in jwk": signed(good, {"typ": "dpop+jwt", "jwk": private}),
        "wrong htm": signed(dict(good, htm="POST")),
        "another path": signed(dict(good, htu=URL + "/7")),
        "another host": signed(dict(good, htu="https://evil.example.com/orders")),
        "iat too old": signed(dict(good, iat=now - 600)),
        "iat too new": signed(dict(good, iat=now + 600)),
        "wrong ath": signed(dict(good, ath=b64(hashlib.sha256(b"other").digest()))),
        "another key's thumbprint": str(pyjwt.encode(good, other.key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": other.jwk})),
    }
    client = sync_client(server)
    try:
        jd = Jwtdeny(client)
        for name, proof in cases.items():
            with pytest.raises(JwtdenyError) as e:
                jd.check_dpop(token, proof, "GET", URL)
            assert e.value.code == "DPOP" and e.value.dpop_error == "invalid_dpop_proof", name
        # Query and fragment are ignored, and RFC 3986 normalisation applies to both sides.
        for htu, url in [(URL + "?a=1#f", URL), ("HTTPS://API.example.com:443/./orders", URL + "?b=2")]:
            assert jd.check_dpop(token, signed(dict(good, htu=htu, jti=f"{jti}-{htu}")), "GET", url).active
        assert jd.check_dpop(token, signed(good), "GET", URL).active
        with pytest.raises(JwtdenyError):
            jd.check(token)
    finally:
        client.close()



# -- the options users know from FastAPI's HTTPBearer, authlib and flask-jwt-extended --------------


def options_cases(get: Callable[[str, str | None], Any], body_of: Callable[[Any], Any]) -> None:
    """get(path, token) -> response; body_of(response) -> the error body (FastAPI nests it in
    ``detail``, its own convention)."""
    anon = get("/optional", None)
    assert anon.status_code == 200 and anon.json() == {"auth": None}
    bad = get("/optional", "not-a-token")
    assert bad.status_code == 401
    assert body_of(bad) == {"error": "invalid_token", "error_description": "the token is malformed", "code": "MALFORMED"}

    _, read_write = fresh(scope="read write")
    _, scp = fresh(scp=["write", "read"])
    _, read = fresh(scope="read")
    assert get("/scoped", read_write).status_code == 200
    assert get("/scoped", scp).status_code == 200
    lacking = get("/scoped", read)
    assert lacking.status_code == 403
    assert lacking.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="read write"'
    assert body_of(lacking) == {"error": "insufficient_scope",
                                "error_description": "the token lacks a scope this resource requires",
                                "code": "INSUFFICIENT_SCOPE"}
    _, admin = fresh(role="admin")
    _, user = fresh(role="user")
    assert get("/admin", admin).status_code == 200
    denied = get("/admin", user)
    assert denied.status_code == 403 and body_of(denied)["code"] == "CLAIM_CHECK"
    missing = get("/scoped", None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert body_of(missing)["code"] == "MISSING"


def is_admin(claims: dict[str, Any]) -> bool:
    return claims.get("role") == "admin"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_fastapi_options(server: tuple[str, int], asynchronous: bool) -> None:
    from fastapi import Security

    jd: Any = AsyncJwtdeny(async_client(server)) if asynchronous else Jwtdeny(sync_client(server))
    app = FastAPI()

    @app.get("/optional")
    def optional(claims: dict[str, Any] | None = Depends(jd.require(auto_error=False))) -> dict[str, Any]:
        return {"auth": claims}

    @app.get("/scoped")
    def scoped(claims: dict[str, Any] = Security(jd.require(scopes=["read"]), scopes=["write"])) -> dict[str, Any]:
        return claims

    @app.get("/admin")
    def admin(claims: dict[str, Any] = Depends(jd.require(claim_check=is_admin))) -> dict[str, Any]:
        return claims

    with TestClient(app) as c:
        options_cases(lambda path, token: c.get(path, headers=headers(token)), lambda r: r.json()["detail"])
        # The dependency declares its security scheme: Swagger's Authorize button works.
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert spec["paths"]["/admin"]["get"]["security"] == [{"HTTPBearer": []}]
        assert spec["paths"]["/scoped"]["get"]["security"] == [{"HTTPBearer": ["write"]}]


def test_flask_options(server: tuple[str, int]) -> None:
    jd = Jwtdeny(sync_client(server))
    app = flask.Flask(__name__)

    @app.get("/optional")
    @jd.flask(optional=True)
    def optional() -> Any:
        return {"auth": flask.g.auth}

    @app.get("/scoped")
    @jd.flask(scopes=["read", "write"])
    def scoped() -> Any:
        return flask.g.auth

    @app.get("/admin")
    @jd.flask(claim_check=is_admin)
    def admin() -> Any:
        return flask.g.auth

    c = app.test_client()
    options_cases(lambda path, token: _FlaskResponse(c.get(path, headers=headers(token))), lambda r: r.json())


def test_asgi_options(server: tuple[str, int]) -> None:
    ajd = AsyncJwtdeny(async_client(server))

    async def auth(request: Any) -> JSONResponse:
        return JSONResponse({"auth": getattr(request.state, "auth", "unchecked")})

    def guarded(**kw: Any) -> Any:
        inner = Starlette(routes=[Route("/", auth, methods=["GET", "OPTIONS"])])
        inner.add_middleware(JwtdenyMiddleware, jwtdeny=ajd, **kw)
        return inner

    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/optional", guarded(optional=True)), Mount("/scoped", guarded(scopes=["read", "write"])),
                            Mount("/admin", guarded(claim_check=is_admin))])
    with TestClient(app) as c:
        options_cases(lambda path, token: c.get(path + "/", headers=headers(token)), lambda r: r.json())
        # CORS preflights pass unchecked.
        preflight = c.options("/scoped/")
        assert preflight.status_code == 200 and preflight.json() == {"auth": "unchecked"}


@pytest.mark.skipif(bool(NODES), reason="standalone: a server of its own without the module")
def test_misconfiguration_is_said_once(server: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    d = tempfile.mkdtemp(prefix="jwtdeny-py-nomod-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert time.time() < deadline, "redis-server did not start"
                time.sleep(0.05)
        caplog.set_level("WARNING", logger="jwtdeny")
        bare = ("127.0.0.1", port)
        with TestClient(fastapi_app(bare, False)) as c:
            for _ in range(3):
                assert c.get("/me", headers=headers(fresh()[1])).status_code == 503
        said = [r.getMessage() for r in caplog.records if r.name == "jwtdeny"]
        assert sum("module is not loaded" in m for m in said) == 1, said
        # A token no key of the server verifies: 401 NOKEY, said once.
        head = b64(json.dumps({"alg": "HS256", "kid": "nope"}).encode())
        rest = fresh()[1].split(".", 1)[1]
        with TestClient(fastapi_app(server, False)) as c:
            for _ in range(2):
                r = c.get("/me", headers=headers(f"{head}.{rest}"))
                assert r.status_code == 401 and r.json()["detail"]["code"] == "NOKEY"
        said = [r.getMessage() for r in caplog.records if r.name == "jwtdeny"]
        assert sum("NOKEY" in m for m in said) == 1, said
    finally:
        proc.terminate()
        proc.wait(10)


def test_flask_extension_and_decorator_order(server: tuple[str, int]) -> None:
    from jwtdeny.flask import FlaskJwtdeny

    guard = FlaskJwtdeny(scopes=["read"])
    app = flask.Flask(__name__)
    guard.init_app(app, jwtdeny=Jwtdeny(sync_client(server)))

    @app.get("/me")
    @guard.required
    def me() -> Any:
        return flask.g.auth

    @guard.required(optional=True)
    @app.get("/swapped")
    def swapped() -> Any:
        return {"served": "unguarded"}

    c = app.test_client()
    _, token = fresh(scope="read")
    assert c.get("/me", headers=headers(token)).status_code == 200
    assert c.get("/me", headers=headers(fresh(scope="write")[1])).status_code == 403
    assert c.get("/me").status_code == 401
    # Above the route decorator, the guard is not on the registered view: refused, never served.
    r = c.get("/swapped", headers=headers(token))
    assert r.status_code == 500 and r.get_json()["code"] == "MISCONFIGURED"
    assert app.extensions["jwtdeny"] is guard


@pytest.mark.skipif(bool(NODES), reason="standalone: the quick start talks to one server")
def test_the_quick_start_runs_as_written(server: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's quick start, as written: its first ```python block, saved as app.py and
    imported with REDIS_URL pointing at the test server, then a token through its app."""
    import importlib.util
    import re

    readme = (pathlib.Path(env("JWTDENY_TEST_KEYS_FILE")).parents[2] / "clients/python/README.md").read_text()
    block = re.search(r"## Quick start\s+```python\n(.*?)```", readme, re.S)
    assert block, "the README has a quick start"
    d = pathlib.Path(tempfile.mkdtemp(prefix="jwtdeny-py-qs-"))
    (d / "app.py").write_text(block.group(1))
    monkeypatch.setenv("REDIS_URL", f"redis://{server[0]}:{server[1]}")
    spec = importlib.util.spec_from_file_location("quickstart_app", d / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sub, token = fresh()
    with TestClient(module.app) as c:
        r = c.get("/me", headers=headers(token))
        assert r.status_code == 200 and r.json()["sub"] == sub
        assert c.get("/me").status_code == 401


def test_get_cert_checks_mtls_bound_tokens(server: tuple[str, int]) -> None:
    """A token bound to a client certificate (cnf.x5t#S256, RFC 8705): each guard passes the
    thumbprint get_cert gives (here a header a TLS terminator would set) to CHECK."""
    thumb = b64(b"\x5a" * 32)
    _, bound = fresh(**{"cnf": {"x5t#S256": thumb}})
    app = FastAPI()
    dep = Jwtdeny(sync_client(server)).require(get_cert=lambda request: request.headers.get("x-client-cert-sha256"))

    @app.get("/me")
    def me(claims: dict[str, Any] = Depends(dep)) -> dict[str, Any]:
        return claims

    jd = Jwtdeny(sync_client(server))
    fapp = flask.Flask(__name__)

    @fapp.get("/me")
    @jd.flask(get_cert=lambda: flask.request.headers.get("X-Client-Cert-Sha256"))
    def fme() -> Any:
        return flask.g.auth

    async def ame(request: Any) -> JSONResponse:
        return JSONResponse(request.state.auth)

    sapp = Starlette(routes=[Route("/me", ame)])
    sapp.add_middleware(JwtdenyMiddleware, jwtdeny=AsyncJwtdeny(async_client(server)),
                        get_cert=lambda scope: dict(scope["headers"]).get(b"x-client-cert-sha256", b"").decode() or None)
    fc = fapp.test_client()
    with TestClient(app) as c, TestClient(sapp) as sc:
        for name, get in [("fastapi", lambda h: c.get("/me", headers=h)),
                          ("asgi", lambda h: sc.get("/me", headers=h)),
                          ("flask", lambda h: _FlaskResponse(fc.get("/me", headers=h)))]:
            auth = {"Authorization": f"Bearer {bound}"}
            assert get({**auth, "X-Client-Cert-Sha256": thumb}).status_code == 200, name
            assert get({**auth, "X-Client-Cert-Sha256": (b"\x5a" * 32).hex()}).status_code == 200, name
            none = get(auth)
            assert none.status_code == 401, name
            assert none.headers["www-authenticate"] == 'Bearer error="invalid_token", error_description="DPOP"', name
            assert get({**auth, "X-Client-Cert-Sha256": b64(b"\x01" * 32)}).status_code == 401, name
            bad = get({**auth, "X-Client-Cert-Sha256": "not-a-thumbprint"})
            assert bad.status_code == 401, name
            body = bad.json()["detail"] if name == "fastapi" else bad.json()
            assert body["code"] == "CERT", name


# -- several issuers (jwtdeny.issuers-file) ------------------------------------------------------

ACME = "https://acme.example/"
KC = "https://sso.example/realms/{tenant}"


def issuer_secret(name: str) -> bytes:
    return f"{name}-secret-of-at-least-thirty-two-bytes!".encode()


@pytest.mark.skipif(bool(NODES), reason="standalone only: a server with a registry of its own")
@pytest.mark.parametrize("keyed", [False, True])
def test_issuers_scope_the_keys_of_their_subjects(keyed: bool) -> None:
    """Two issuers beside the default one, the same kid at all three: with the registry the
    client places each token as the server does, so the keyed forms (forced here on a standalone
    server) name the scoped keys the server derives, and revocations never cross issuers."""
    d = tempfile.mkdtemp(prefix="jwtdeny-py-issuers-")
    registry: dict[str, Any] = {"issuers": {
        # Its own max-lifetime (the default issuer's is not its): a session's end is then its own.
        "acme": {"issuer": ACME, "max-lifetime": 86400},
        "kc": {"issuer": KC, "tenants": ["t1", "t2"]},
    }}
    for name, entry in registry["issuers"].items():
        path = os.path.join(d, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"keys": [{"kty": "oct", "kid": KID, "alg": "HS256",
                                 "k": b64(issuer_secret(name))}]}, f)
        entry["keys-file"] = path
    registry_path = os.path.join(d, "issuers.json")
    with open(registry_path, "w") as f:
        json.dump(registry, f)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
         "--appendonly", "no", "--loadmodule", env("JWTDENY_MODULE"),
         "keys-file", env("JWTDENY_TEST_KEYS_FILE"), "issuers-file", registry_path,
         "max-lifetime", "86400"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        r = redis.Redis(port=port, decode_responses=True)
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None and time.time() < deadline, "redis-server did not start"
                time.sleep(0.05)
        # The registry as a path here, as the parsed JSON in the helpers below.
        jd = Jwtdeny(r, cluster=keyed, issuers=registry_path)
        now = int(time.time())
        sub = f"py-issuers-{keyed}"

        def token(of: str, iss: str | None, **extra: Any) -> str:
            claims = {"sub": sub, "iat": now - 60, "exp": now + 3600, **extra}
            if iss is not None:
                claims["iss"] = iss
            return mint(claims, issuer_secret(of) if of != "default" else SECRET)

        t1, t2 = KC.replace("{tenant}", "t1"), KC.replace("{tenant}", "t2")
        acme, default = token("acme", ACME), token("default", None)
        kc1, kc2 = token("kc", t1), token("kc", t2)
        issuers = jwtdeny.Issuers(registry)
        assert [issuers.scope_for(t) for t in (acme, default, kc1, kc2)] == [
            "%acme:", "", "%kc.t1:", "%kc.t2:"]
        assert jwtdeny.keys_for(acme, issuers=issuers) == (
            f"jwtdeny:{{%acme:{sub}}}:{now - 60}", f"jwtdeny:{{%acme:{sub}}}")
        for t in (acme, default, kc1, kc2):
            assert jd.check(t).active, t
        # The same kid under another issuer's key: refused.
        with pytest.raises(JwtdenyError):
            jd.check(token("acme", t1))
        assert jd.revoke(acme) is True
        assert f"jwtdeny:{{%acme:{sub}}}:{now - 60}" in r.keys("*")
        assert not jd.check(acme).active
        assert jd.check(default).active and jd.check(kc1).active
        # By issuer: a template's tenant by its iss, an exact one by name.
        assert jd.revoke_all(sub, issuer=t1) >= now
        assert not jd.check(kc1).active and jd.check(kc2).active
        with pytest.raises((ValueError, redis.ResponseError)):
            jd.revoke_all(sub, issuer="kc")  # a template needs its tenant's iss
        with pytest.raises((ValueError, redis.ResponseError)):
            jd.revoke_all(sub, issuer="nobody")
        with_sid = token("acme", ACME, sid="s1", iat=now - 30)  # not the revoked one's iat
        assert jd.check(with_sid).active
        assert jd.revoke_session(sub, "s1", issuer="acme") is True
        assert not jd.check(with_sid).active
        assert f"jwtdeny:{{%acme:{sub}}}:sid:s1" in r.keys("*")
        assert jd.check(default).active, "the default issuer's subject untouched"
        assert jd.revoke_all(sub) >= now and not jd.check(default).active
        assert jd.check(kc2).active, "t2's subject untouched by the default's cutoff"
    finally:
        proc.terminate()
        proc.wait(10)
