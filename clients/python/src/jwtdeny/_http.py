"""The HTTP rules every guard follows (RFC 6750): 401 for a missing, refused or revoked bearer
token, 503 when Redis cannot answer (fail closed)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._core import CheckResult, JwtdenyError

_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)


def bearer_token(authorization: Union[str, bytes, None]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    if not authorization:
        return None
    m = _BEARER.fullmatch(authorization)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Denial:
    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


# RFC 6750 §3.1: a request without credentials gets no error code.
MISSING = Denial(401, {"error": "missing_token"}, {"WWW-Authenticate": "Bearer"})
UNAVAILABLE = Denial(503, {"error": "unavailable"})


def refused(code: str) -> Denial:
    return Denial(
        401,
        {"error": "invalid_token", "error_description": code},
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{code}"'},
    )


def judge(result: CheckResult) -> Union[dict[str, Any], Denial]:
    if not result.active or result.claims is None:
        return refused("REVOKED")
    return result.claims


def judge_error(err: Exception) -> Optional[Denial]:
    """The 401 of a refused token; None when the error means Redis could not answer."""
    return refused(err.code) if isinstance(err, JwtdenyError) else None
