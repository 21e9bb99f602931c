"""When to try a failed call again, and how long to wait first.

Retried: 429, 408, 409, 5xx, connection errors and timeouts (the kinds in
``RETRYABLE_KINDS``). Not retried: every other 4xx (the request itself is wrong, or the key is),
refusals and malformed bodies. Waits grow exponentially with *full jitter* (a uniform draw in
``[0, min(max_backoff, base * 2**(attempt-1))]``) so that many callers hit by the same outage do
not come back in lockstep; a ``Retry-After`` / ``retry-after-ms`` header from the server wins
over the computed wait (capped, so a server cannot park a run for an hour).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from assay.providers.types import ErrorKind, ProviderError


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts every HTTP attempt, the first included (so 5 = 1 + 4 retries).
    Tests shrink ``base_s`` to keep backoff in the milliseconds."""

    max_attempts: int = 5
    base_s: float = 0.5
    max_backoff_s: float = 30.0
    retry_after_cap_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.max_backoff_s < 0 or self.retry_after_cap_s < 0:
            raise ValueError("backoff durations cannot be negative")

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        ceiling = min(self.max_backoff_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def kind_for_status(status: int) -> ErrorKind:
    """The error kind of an HTTP error status."""
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    if status in (401, 403):
        return "auth"
    if status == 409 or status >= 500:
        return "server_error"
    return "bad_request"


def parse_retry_after(
    retry_after: str | None, retry_after_ms: str | None = None, now: datetime | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Unparseable values are ignored (``None``): the computed backoff applies instead.
    """
    if retry_after_ms:
        try:
            return max(float(retry_after_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    if not retry_after:
        return None
    value = retry_after.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def error_from_exception(
    exc: BaseException, *, timeout_s: float, secret: str | None = None
) -> ProviderError:
    """Translate an ``openai`` / ``anthropic`` SDK exception into a ``ProviderError``.

    Both SDKs share one shape (``APIStatusError`` with ``status_code``, ``response``, ``body``;
    connection errors wrapping the transport's exception), so this works by duck typing. The
    transport error at the root of the chain decides timeout vs connection: the aiohttp
    transport reports a dropped connection as a "connect timeout", which it is not.
    """
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if isinstance(status, int) and status < 400:
        return ProviderError("malformed_response", f"unusable answer with HTTP {status}")
    if isinstance(status, int) and response is not None:
        headers = response.headers
        wait = parse_retry_after(headers.get("retry-after"), headers.get("retry-after-ms"))
        detail = _body_message(getattr(exc, "body", None)) or f"HTTP {status}"
        return ProviderError(
            kind_for_status(status), scrub(detail, secret), status=status, retry_after=wait
        )
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, TimeoutError) or "Timeout" in type(root).__name__:
        return ProviderError("timeout", f"no answer within {timeout_s:g} s")
    if root is exc and not type(exc).__name__.endswith("ConnectionError"):
        return ProviderError("malformed_response", scrub(f"{type(exc).__name__}: {exc}", secret))
    return ProviderError("connection", scrub(f"{type(root).__name__}: {root}", secret))


def _body_message(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:500]
        return str(error)[:500]
    if body:
        return str(body)[:500]
    return None


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret (and its first 8 characters, which providers echo) from a message."""
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***").replace(secret[:8], "***")
    return text
