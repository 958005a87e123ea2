"""End-to-end test of jwtdeny_example.py against a redis-server this test starts.

JWTDENY_MODULE: path of libjwtdeny.so (default ../../target/release/libjwtdeny.so from examples/python).
REDIS_SERVER: redis-server binary (default: redis-server on PATH).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jwtdeny_example import (
    DEFAULT_KID,
    Unauthorized,
    Unavailable,
    authenticate,
    backchannel_logout,
    backchannel_logout_app,
    backchannel_logout_response,
    load_signing_key,
    login,
    logout,
    logout_all,
    mint_token,
)

EXAMPLE_DIR = Path(__file__).resolve().parent
MODULE = (EXAMPLE_DIR / os.environ.get(
    "JWTDENY_MODULE", "../../target/release/libjwtdeny.so")).resolve()
SHARED_JWKS = EXAMPLE_DIR.parent / "jwks.json"
PASSWORDS = {"alice": "wonderland", "bob": "builder"}
# The OIDC client id the provider names in its logout tokens' aud (jwtdeny.logout-audience).
CLIENT_ID = "jwtdeny-example"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def wait_until_after(seconds: int) -> None:
    """Sleeps until the wall clock is past the NumericDate `seconds`."""
    while int(time.time()) <= seconds:
        time.sleep(1.01 - time.time() % 1)


@pytest.fixture(scope="module")
def server():
    """A redis-server with jwtdeny loaded: yields (port, jwks path); stopped afterwards."""
    if not MODULE.exists():
        pytest.fail(f"jwtdeny module not found at {MODULE}: run `cargo build --release` "
                    "in the repository root or set JWTDENY_MODULE")
    tmp = Path(tempfile.mkdtemp(prefix="jwtdeny-python-"))
    jwks = SHARED_JWKS
    if not jwks.exists():
        jwks = tmp / "jwks.json"
        k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        jwks.write_text(json.dumps(
            {"keys": [{"kty": "oct", "kid": DEFAULT_KID, "alg": "HS256", "k": k}]}))
    port = free_port()
    log_path = tmp / "redis.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [os.environ.get("REDIS_SERVER", "redis-server"),
             "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
             "--save", "", "--appendonly", "no",
             # Module arguments are name/value pairs after the .so path.
             "--loadmodule", str(MODULE), "keys-file", str(jwks),
             # A session's revocation needs a bound on token lifetimes to expire by; without
             # one jwtdeny ends every session of the user instead.
             "logout-audience", CLIENT_ID, "max-lifetime", "3600"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited ({proc.returncode}):\n{log_path.read_text()}")
            try:
                probe.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server not ready in 10 s:\n{log_path.read_text()}")
                time.sleep(0.05)
        probe.close()
        yield port, jwks
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def r(server):
    client = redis.Redis(port=server[0])
    yield client
    client.close()


@pytest.fixture(scope="module")
def secret(server):
    return load_signing_key(server[1])


def test_login_authenticate_logout(r, secret):
    token = login(secret, "alice", PASSWORDS["alice"])

    claims = authenticate(r, token)
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 900

    assert logout(r, token) is True
    with pytest.raises(Unauthorized) as refused:
        authenticate(r, token)
    assert refused.value.code == "revoked"
    assert logout(r, token) is False  # already revoked
    # Straight from Redis too: CHECK answers 0 for a revoked token.
    assert r.execute_command("JWTDENY.CHECK", token) == 0


def test_logout_all(r, secret):
    now = int(time.time())
    # jwtdeny keys a token by sub and iat: two sessions have different iats.
    # (Not `now`: the first test revoked alice's token of this second, and with it every
    # alice token whose iat is this second.)
    older = mint_token(secret, {"sub": "alice", "iat": now - 60, "exp": now + 600})
    newer = mint_token(secret, {"sub": "alice", "iat": now - 30, "exp": now + 600})
    other = mint_token(secret, {"sub": "bob", "iat": now, "exp": now + 600})
    for token in (older, newer, other):
        authenticate(r, token)

    cutoff = logout_all(r, authenticate(r, newer)["sub"])
    assert cutoff >= now

    for token in (older, newer):
        with pytest.raises(Unauthorized) as refused:
            authenticate(r, token)
        assert refused.value.code == "revoked"
    assert authenticate(r, other)["sub"] == "bob"  # only alice is logged out

    # A login after the cutoff second gives a token that works again.
    wait_until_after(cutoff)
    fresh = login(secret, "alice", PASSWORDS["alice"])
    assert authenticate(r, fresh)["iat"] > cutoff


def _refused_tokens(secret):
    now = int(time.time())
    return {
        "EXPIRED": mint_token(secret, {"sub": "alice", "iat": now - 120, "exp": now - 60}),
        "BADSIG": mint_token(secrets.token_bytes(32), {"sub": "alice", "iat": now, "exp": now + 60}),
        "NOTYET": mint_token(secret, {"sub": "alice", "iat": now, "nbf": now + 600,
                                      "exp": now + 900}),
        "MALFORMED": "not-a-jwt",
    }


@pytest.mark.parametrize("code", ["EXPIRED", "BADSIG", "NOTYET", "MALFORMED"])
def test_refused_token_codes(r, secret, code):
    token = _refused_tokens(secret)[code]

    # What the helpers do: branch on the first word of the ResponseError.
    with pytest.raises(redis.exceptions.ResponseError) as err:
        r.execute_command("JWTDENY.CHECK", token, "WITHCLAIMS")
    assert str(err.value).split(" ", 1)[0] == code

    with pytest.raises(Unauthorized) as refused:
        authenticate(r, token)
    assert refused.value.code == code
    with pytest.raises(Unauthorized) as refused:
        logout(r, token)
    assert refused.value.code == code


def test_bad_credentials(secret):
    with pytest.raises(Unauthorized) as refused:
        login(secret, "alice", "nope")
    assert refused.value.code == "bad credentials"


def test_unavailable_when_redis_is_unreachable(secret):
    token = login(secret, "alice", PASSWORDS["alice"])
    # Nothing listens there. No retries, so that the test does not wait for redis-py's backoff.
    down = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(Unavailable):
        authenticate(down, token)
    with pytest.raises(Unavailable):
        logout_all(down, "alice")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def logout_token(secret: bytes, typ: str | None = "logout+jwt", **claims) -> str:
    """A logout token as a provider signs it; ``claims`` override a valid set (None removes)."""
    now = int(time.time())
    body = {"iss": "https://idp.example", "aud": CLIENT_ID, "iat": now, "exp": now + 120,
            "jti": str(uuid.uuid4()), "events": {LOGOUT_EVENT: {}}}
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    header = {"alg": "HS256", "kid": DEFAULT_KID}
    if typ is not None:
        header["typ"] = typ
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint(r):
    """The WSGI app on a free loopback port: yields a function posting a form to it."""
    httpd = make_server("127.0.0.1", 0, backchannel_logout_app(r), handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_port}/backchannel-logout"

    def post(form=None, body=None, content_type="application/x-www-form-urlencoded"):
        data = body if body is not None else urllib.parse.urlencode(form or {}).encode()
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                status, headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, headers, raw = err.code, err.headers, err.read()
        return status, headers.get("Cache-Control"), json.loads(raw)

    yield post
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def test_backchannel_logout_of_one_session_leaves_the_others_active(r, secret, endpoint):
    first = login(secret, "alice", PASSWORDS["alice"])
    second = login(secret, "alice", PASSWORDS["alice"])
    sid = claims_of(first)["sid"]
    assert sid != claims_of(second)["sid"], "each login is its own session"

    token = logout_token(secret, sub="alice", sid=sid)
    assert endpoint({"logout_token": token}) == (200, "no-store", {"ended": True})
    with pytest.raises(Unauthorized) as refused:
        authenticate(r, first)
    assert refused.value.code == "revoked"
    assert authenticate(r, second)["sid"] == claims_of(second)["sid"]
    # Providers retry: the same token again is harmless.
    assert endpoint({"logout_token": token}) == (200, "no-store", {"ended": False})
    assert backchannel_logout(r, token) is False
    fields = r.execute_command("JWTDENY.INSPECT", first)
    inspected = dict(zip(fields[::2], fields[1::2]))
    assert inspected[b"revoked_by"] == b"session"


def test_backchannel_logout_without_sid_ends_every_session(r, secret, endpoint):
    first = login(secret, "bob", PASSWORDS["bob"])
    second = login(secret, "bob", PASSWORDS["bob"])
    alice = login(secret, "alice", PASSWORDS["alice"])
    token = logout_token(secret, sub="bob", iat=claims_of(second)["iat"])
    assert endpoint({"logout_token": token}) == (200, "no-store", {"ended": True})
    for t in (first, second):
        with pytest.raises(Unauthorized):
            authenticate(r, t)
    assert authenticate(r, alice)["sub"] == "alice"
    assert endpoint({"logout_token": token})[2] == {"ended": False}


REFUSED_LOGOUTS = {
    "missing events": ({"sub": "alice", "sid": "s", "events": None}, "logout+jwt", "BADCLAIMS"),
    "wrong event": ({"sub": "alice", "events": {"urn:other": {}}}, "logout+jwt", "BADCLAIMS"),
    "nonce": ({"sub": "alice", "sid": "s", "nonce": "n"}, "logout+jwt", "BADCLAIMS"),
    "typ at+jwt": ({"sub": "alice", "sid": "s"}, "at+jwt", "BADCLAIMS"),
    "wrong aud": ({"sub": "alice", "aud": "someone-else"}, "logout+jwt", "BADCLAIMS"),
    "expired": ({"sub": "alice", "iat": 1000, "exp": 2000}, "logout+jwt", "EXPIRED"),
    "neither sub nor sid": ({}, "logout+jwt", "BADCLAIMS"),
    "sid without sub": ({"sid": "s"}, None, "BADCLAIMS"),
}


@pytest.mark.parametrize("name", list(REFUSED_LOGOUTS))
def test_refused_logout_tokens_answer_400(secret, endpoint, name):
    claims, typ, code = REFUSED_LOGOUTS[name]
    status, cache_control, body = endpoint({"logout_token": logout_token(secret, typ, **claims)})
    assert (status, cache_control, body["error"]) == (400, "no-store", "invalid_request")
    assert body["error_description"].startswith(f"{code} "), body


def test_malformed_logout_requests_answer_400(secret, endpoint):
    missing = {"error": "invalid_request", "error_description": "logout_token is missing"}
    assert endpoint({}) == (400, "no-store", missing)
    token = logout_token(secret, sub="alice")
    assert endpoint(body=json.dumps({"logout_token": token}).encode(),
                    content_type="application/json") == (400, "no-store", missing)
    # Two logout_token fields: which one would the provider mean?
    assert endpoint(body=f"logout_token={token}&logout_token={token}".encode())[0] == 400
    wrong_key = logout_token(secrets.token_bytes(32), sub="alice")
    status, _, body = endpoint({"logout_token": wrong_key})
    assert status == 400 and body["error_description"].startswith("BADSIG ")


def test_backchannel_logout_unavailable_is_400(secret):
    down = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(Unavailable):
        backchannel_logout(down, logout_token(secret, sub="alice"))
    status, headers, body = backchannel_logout_response(
        down, "application/x-www-form-urlencoded",
        urllib.parse.urlencode({"logout_token": logout_token(secret, sub="alice")}).encode())
    assert status.startswith("400")
    assert ("Cache-Control", "no-store") in headers
    assert json.loads(body)["error"] == "temporarily_unavailable"
