"""jwtdeny for Python: check and revoke JWTs with the jwtdeny Redis module over redis-py
(``Redis``, ``RedisCluster`` and their ``redis.asyncio`` twins), with a FastAPI dependency
(jwtdeny.fastapi), an ASGI middleware (jwtdeny.asgi) and a Flask decorator (jwtdeny.flask).

    import redis
    from jwtdeny import Jwtdeny

    jd = Jwtdeny(redis.Redis())
    jd.check(token, with_claims=True)   # CheckResult(active=True, claims={...})
    jd.revoke(token)                    # True: revoked now
    jd.revoke_all("alice")              # the cutoff: every older token of alice is refused
    jd.logout(logout_token)             # an OIDC back-channel logout: True ended now
    jd.check_dpop(token, proof, "GET", "https://api.example.com/x")   # DPoP: the proof used once
"""

from ._client import AsyncJwtdeny, Jwtdeny
from ._core import TOKEN_ERROR_CODES, CheckResult, JwtdenyError, Token
from ._http import DEFAULT_DPOP_ALGS, CheckTimeout, bearer_token
from ._keys import (
    DEFAULT_PREFIX,
    Issuers,
    claims_of,
    dpop_keys_for,
    dpop_replay_key,
    encode_subject,
    entry_key,
    keys_for,
    logout_keys_for,
    session_key,
    session_key_for,
    sidless_key,
    third_key_for,
    sid_of,
    subject_key,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncJwtdeny",
    "CheckResult",
    "CheckTimeout",
    "DEFAULT_DPOP_ALGS",
    "DEFAULT_PREFIX",
    "Issuers",
    "Jwtdeny",
    "JwtdenyError",
    "TOKEN_ERROR_CODES",
    "Token",
    "bearer_token",
    "claims_of",
    "dpop_keys_for",
    "dpop_replay_key",
    "encode_subject",
    "entry_key",
    "keys_for",
    "logout_keys_for",
    "session_key",
    "session_key_for",
    "sidless_key",
    "third_key_for",
    "sid_of",
    "subject_key",
]
