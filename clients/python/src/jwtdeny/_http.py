"""The HTTP rules every guard follows (RFC 6750): 401 for a missing, refused or revoked bearer
token, 503 with ``Retry-After`` when Redis cannot answer, or not within the guard's own
deadline (fail closed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ._core import CheckResult, JwtdenyError

#: How long a guard waits for its check by default (seconds), and its 503's Retry-After.
DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRY_AFTER = 5


class CheckTimeout(Exception):
    """A guard's check did not complete within its ``timeout`` (given to ``on_unavailable``)."""


class _Runner:
    """A few daemon threads that run sync checks, so that a guard can stop waiting for one at
    its deadline. A check stuck on a Redis that never answers holds one thread until the
    client's own socket timeout ends it (the quick starts set one); when every thread is stuck,
    new checks wait in the queue and still get their 503 at the deadline. Daemon threads never
    keep the process from exiting."""

    def __init__(self, threads: int = 8) -> None:
        self._jobs: "queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]" = (
            queue.SimpleQueue()
        )
        self._threads = threads
        self._started = False
        self._lock = threading.Lock()

    def _work(self) -> None:
        while True:
            fut, job = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(job())
            except BaseException as e:  # handed to the waiting guard, never lost
                fut.set_exception(e)

    def submit(self, job: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        with self._lock:
            if not self._started:
                for i in range(self._threads):
                    threading.Thread(target=self._work, name=f"jwtdeny-check-{i}", daemon=True).start()
                self._started = True
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fut, job))
        return fut


_RUNNER = _Runner()


def check_within(jd: Any, token: str, timeout: Optional[float]) -> CheckResult:
    """``jd.check(token, with_claims=True)`` for a sync client, or CheckTimeout at ``timeout``."""
    if not timeout:
        result: CheckResult = jd.check(token, with_claims=True)
        return result
    fut = _RUNNER.submit(lambda: jd.check(token, with_claims=True))
    try:
        done: CheckResult = fut.result(timeout=timeout)
        return done
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise CheckTimeout(f"the jwtdeny check did not complete within {timeout} s") from None


async def check_within_async(jd: Any, token: str, timeout: Optional[float]) -> CheckResult:
    """The same for an async client (its command is cancelled at the deadline); a sync client
    given to an async guard runs on the runner's threads, never on the event loop."""
    if not asyncio.iscoroutinefunction(jd.check):
        return await asyncio.wrap_future(_RUNNER.submit(lambda: check_within(jd, token, timeout)))
    try:
        if not timeout:
            return await jd.check(token, with_claims=True)  # type: ignore[no-any-return]
        done: CheckResult = await asyncio.wait_for(jd.check(token, with_claims=True), timeout)
        return done
    except asyncio.TimeoutError:
        raise CheckTimeout(f"the jwtdeny check did not complete within {timeout} s") from None


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


def unavailable(retry_after: int = DEFAULT_RETRY_AFTER) -> Denial:
    """Fail closed: Redis could not answer (in time), so no token is taken for active."""
    return Denial(503, {"error": "unavailable"}, {"Retry-After": str(int(retry_after))})


UNAVAILABLE = unavailable()


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
