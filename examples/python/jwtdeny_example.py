"""The "JWT + Redis denylist" pattern on the jwtdeny module, with its Python package.

The application does not verify tokens nor build `user_id + iat` keys itself: the jwtdeny
package (clients/python) hands the bearer token to Redis, and jwtdeny verifies it, consults the
denylist and returns the claims in one round trip. Framework-free; for FastAPI, ASGI and Flask
the package has ready guards (`Depends(jd.require())`, `jwtdeny.asgi`, `@jd.flask`).

    claims = authenticate(r, token)       # Jwtdeny(r).check(token, with_claims=True)
    logout(r, token)                      # Jwtdeny(r).revoke(token)
    logout_all(r, claims["sub"])          # Jwtdeny(r).revoke_all(sub)
    backchannel_logout(r, logout_token)   # Jwtdeny(r).logout(logout_token)

`backchannel_logout_app(r)` is a WSGI app (standard library only) serving the OpenID Connect
Back-Channel Logout endpoint `POST /backchannel-logout`: the identity provider posts a signed
logout token there when a user signs out at the provider, and jwtdeny validates it and ends
that session (`sid`) or every session of the user (`sub` only).

authenticate/logout raise Unauthorized (answer 401, `err.code` says why) or Unavailable
(answer 503). `login` mints an HS256 token with the key redis-server loads, so the example is
self-contained; `python3 jwtdeny_example.py` runs the whole flow against REDIS_URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from jwtdeny import Jwtdeny, JwtdenyError

DEFAULT_JWKS = Path(__file__).resolve().parent.parent / "jwks.json"
DEFAULT_KID = "demo-hs256"

# Demo users for login(). A real app checks a password hash from its user store.
DEMO_USERS = {"alice": "wonderland", "bob": "builder"}


class Unauthorized(Exception):
    """The token is refused: answer 401. `code` is "revoked" or a jwtdeny error code."""

    def __init__(self, code: str, message: str | None = None):
        super().__init__(message or code)
        self.code = code


class Unavailable(Exception):
    """Redis cannot answer (down, loading, module missing...): answer 503."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_signing_key(jwks_path: str | Path = DEFAULT_JWKS, kid: str = DEFAULT_KID) -> bytes:
    """The secret of the HS256 `oct` key `kid` in the JWKS that redis-server also loads."""
    jwks = json.loads(Path(jwks_path).read_text(encoding="utf-8"))
    for jwk in jwks.get("keys", []):
        if jwk.get("kid") == kid:
            if jwk.get("kty") != "oct" or jwk.get("alg", "HS256") != "HS256":
                raise ValueError(f"key {kid!r} in {jwks_path} is not an HS256 oct key")
            k = jwk["k"]
            return base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))
    raise ValueError(f"no key with kid {kid!r} in {jwks_path}")


def mint_token(secret: bytes, claims: dict, kid: str = DEFAULT_KID) -> str:
    """A compact HS256 JWS over `claims` as given (sub, iat, exp, ...)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def login(secret: bytes, username: str, password: str, ttl: int = 900,
          users: dict[str, str] = DEMO_USERS) -> str:
    """Checks the demo credentials and mints a token for `username` (raises Unauthorized)."""
    expected = users.get(username)
    if expected is None or not hmac.compare_digest(expected.encode(), str(password).encode()):
        raise Unauthorized("bad credentials")
    iat = int(time.time())
    # Like an identity provider, each login is a session with its own id: a back-channel
    # logout naming it ends this login's tokens and no other.
    sid = str(uuid.uuid4())
    return mint_token(secret, {"sub": username, "sid": sid, "iat": iat, "exp": iat + ttl})


def _call(command):
    """Runs a jwtdeny package call, turning its JwtdenyError (a refused token) into Unauthorized
    and any other Redis error (connection, READONLY, unknown command, ...) into Unavailable."""
    try:
        return command()
    except JwtdenyError as err:
        raise Unauthorized(err.code, str(err)) from err
    except redis.exceptions.RedisError as err:
        raise Unavailable(str(err)) from err


def authenticate(r: redis.Redis, token: str) -> dict:
    """The claims of an authentic, valid, unrevoked token; raises Unauthorized otherwise."""
    result = _call(lambda: Jwtdeny(r).check(token, with_claims=True))
    if not result.active:
        raise Unauthorized("revoked")
    return result.claims


def logout(r: redis.Redis, token: str) -> bool:
    """Revokes this token: True if revoked now, False if it already was."""
    return _call(lambda: Jwtdeny(r).revoke(token))


def logout_all(r: redis.Redis, sub: str) -> int:
    """Revokes every token of `sub` issued up to now; returns the cutoff (a NumericDate)."""
    return _call(lambda: Jwtdeny(r).revoke_all(sub))


def backchannel_logout(r: redis.Redis, logout_token: str) -> bool:
    """Ends what a provider's logout token names: True if ended now, False if it already was (a
    replayed token is harmless). Raises Unauthorized when jwtdeny refuses the token (`code` is
    the reason: BADSIG, BADCLAIMS, EXPIRED, ...) and Unavailable when Redis cannot record it.

    The server needs jwtdeny.logout-audience (the OIDC client id in the token's aud), and
    jwtdeny.max-lifetime to end one session rather than all of the user's."""
    return _call(lambda: Jwtdeny(r).logout(logout_token))


# Form bodies larger than this are refused before parsing; a logout token is a few hundred bytes.
MAX_LOGOUT_BODY = 64 * 1024


def backchannel_logout_response(r: redis.Redis, content_type: str, body: bytes):
    """``(status, headers, json_body)`` for a Back-Channel Logout request (section 2.8): 200 when
    the logout is recorded, 400 with an OAuth-style error body when it is not. Neither answer
    may be cached."""
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]

    def answer(status: str, payload: dict):
        return status, headers, json.dumps(payload).encode()

    token = None
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=False)
        except UnicodeDecodeError:
            fields = {}
        values = fields.get("logout_token", [])
        token = values[0] if len(values) == 1 else None
    if not token:
        return answer("400 Bad Request", {"error": "invalid_request",
                                          "error_description": "logout_token is missing"})
    try:
        ended = backchannel_logout(r, token)
    except Unauthorized as err:
        return answer("400 Bad Request", {"error": "invalid_request",
                                          "error_description": str(err)})
    except Unavailable as err:
        # Not the provider's fault, but still a failed logout, which section 2.8 answers 400;
        # the details go to the log only.
        print(f"jwtdeny example: back-channel logout failed: {err}")
        return answer("400 Bad Request", {"error": "temporarily_unavailable",
                                          "error_description": "the logout could not be recorded"})
    return answer("200 OK", {"ended": ended})


def backchannel_logout_app(r: redis.Redis):
    """A WSGI app serving ``POST /backchannel-logout`` (form field ``logout_token``)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/backchannel-logout":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST")])
            return [b""]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_LOGOUT_BODY:
            body, content_type = b"", ""
        else:
            body = environ["wsgi.input"].read(length)
            content_type = environ.get("CONTENT_TYPE", "")
        status, headers, payload = backchannel_logout_response(r, content_type, body)
        start_response(status, headers)
        return [payload]

    return app


def main() -> None:
    # Fail fast: bounded connect and read, one quick retry (redis-py's defaults would make a
    # dead or hung Redis cost a request tens of seconds, or for ever without a socket timeout).
    r = redis.Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6390"),
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
    )
    secret = load_signing_key(os.environ.get("JWKS_FILE", DEFAULT_JWKS))
    token = login(secret, "alice", "wonderland")
    print("login         ->", token)
    print("authenticate  ->", authenticate(r, token))
    print("logout        ->", logout(r, token))
    try:
        authenticate(r, token)
    except Unauthorized as err:
        print("authenticate  -> 401", err.code)
    print("logout_all    -> cutoff", logout_all(r, "alice"))


if __name__ == "__main__":
    main()
