"""End-to-end test of jwtdeny_example.py against a redis-server this test starts.

JWTDENY_MODULE: path of libjwtdeny.so (default ../../target/release/libjwtdeny.so from examples/python).
REDIS_SERVER: redis-server binary (default: redis-server on PATH).
"""

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jwtdeny_example import (
    DEFAULT_KID,
    Unauthorized,
    Unavailable,
    authenticate,
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
             "--loadmodule", str(MODULE), "keys-file", str(jwks)],
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
