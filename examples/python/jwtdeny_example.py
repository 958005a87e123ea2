"""The "JWT + Redis denylist" pattern on the jwtdeny module, with redis-py.

The application does not verify tokens nor build `user_id + iat` keys itself: it hands the
bearer token to Redis, and jwtdeny verifies it, consults the denylist and returns the claims
in one round trip. Framework-free: call these from a Flask/Django/FastAPI view or middleware.

    claims = authenticate(r, token)   # JWTDENY.CHECK <token> WITHCLAIMS
    logout(r, token)                  # JWTDENY.REVOKE <token>
    logout_all(r, claims["sub"])      # JWTDENY.REVOKEALL <sub>

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
from pathlib import Path

import redis

DEFAULT_JWKS = Path(__file__).resolve().parent.parent / "jwks.json"
DEFAULT_KID = "demo-hs256"

# First word of the error replies jwtdeny gives for a token it refuses. Any other error
# (unknown command, READONLY, NOPERM, LOADING, connection errors) is the server's problem.
TOKEN_ERRORS = frozenset(
    {"MALFORMED", "BADALG", "NOKEY", "BADSIG", "BADCLAIMS", "EXPIRED", "NOTYET"}
)

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
    return mint_token(secret, {"sub": username, "iat": iat, "exp": iat + ttl})


def _call(r: redis.Redis, *args):
    """Runs a jwtdeny command, turning its error replies into Unauthorized/Unavailable."""
    try:
        return r.execute_command(*args)
    except redis.exceptions.ResponseError as err:
        code = str(err).split(" ", 1)[0]
        if code in TOKEN_ERRORS:
            raise Unauthorized(code, str(err)) from err
        raise Unavailable(str(err)) from err
    except redis.exceptions.RedisError as err:  # ConnectionError, TimeoutError, BusyLoadingError
        raise Unavailable(str(err)) from err


def authenticate(r: redis.Redis, token: str) -> dict:
    """The claims of an authentic, valid, unrevoked token; raises Unauthorized otherwise."""
    active, claims = _call(r, "JWTDENY.CHECK", token, "WITHCLAIMS")
    if active != 1:
        raise Unauthorized("revoked")
    return json.loads(claims)


def logout(r: redis.Redis, token: str) -> bool:
    """Revokes this token: True if revoked now, False if it already was."""
    return _call(r, "JWTDENY.REVOKE", token) == 1


def logout_all(r: redis.Redis, sub: str) -> int:
    """Revokes every token of `sub` issued up to now; returns the cutoff (a NumericDate)."""
    return int(_call(r, "JWTDENY.REVOKEALL", sub))


def main() -> None:
    r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6390"))
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
