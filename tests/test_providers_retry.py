"""Retries, backoff and error kinds, over real HTTP against the fake LLM server."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from assay.providers import ChatRequest, ChatResult, ModelCaller, ModelInfo, ProviderError
from assay.providers.retry import RetryPolicy, kind_for_status, parse_retry_after

FAST = RetryPolicy(base_s=0.01, max_backoff_s=0.05)
HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}])


def call(info: ModelInfo, request: ChatRequest = HELLO, **options: Any) -> ChatResult:
    async def go() -> ChatResult:
        async with ModelCaller(info, **{"retry": FAST, **options}) as caller:
            return await caller.complete(request)

    return asyncio.run(go())


def fails(info: ModelInfo, **options: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(info, **options)
    return caught.value


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_429_waits_for_retry_after(fake_llm, provider: str) -> None:
    fake_llm.configure("m", script=["429"], retry_after="1")
    started = time.monotonic()
    result = call(fake_llm.model_info("m", provider))
    assert time.monotonic() - started >= 1.0
    assert result.attempts == 2
    stats = fake_llm.stats("m")
    assert (stats["attempts"], stats["ok"], stats["errors"]) == (2, 1, {"429": 1})


def test_retry_after_as_http_date(fake_llm) -> None:
    when = datetime.now(UTC) + timedelta(seconds=2)
    fake_llm.configure("m", script=["503"], retry_after=format_datetime(when, usegmt=True))
    started = time.monotonic()
    assert call(fake_llm.model_info("m")).attempts == 2
    assert 1.0 <= time.monotonic() - started < 5  # the date has a 1-second resolution


def test_retry_after_is_capped(fake_llm) -> None:
    fake_llm.configure("m", script=["429"], retry_after="3600")
    started = time.monotonic()
    policy = RetryPolicy(base_s=0.01, retry_after_cap_s=0.2)
    assert call(fake_llm.model_info("m"), retry=policy).attempts == 2
    assert time.monotonic() - started < 3


def test_500_then_success(fake_llm) -> None:
    fake_llm.configure("m", script=["500"])
    result = call(fake_llm.model_info("m"))
    assert result.attempts == 2
    assert result.text.startswith("[m] ")
    assert fake_llm.stats("m")["errors"] == {"500": 1}


def test_every_transient_failure_is_retried(fake_llm) -> None:
    fake_llm.configure(
        "m", script=["503", "reset", "hang", "slow", "429", "408"], retry_after="0", slow_ms=2000
    )
    result = call(fake_llm.model_info("m"), timeout_s=0.3, max_attempts=7)
    assert result.attempts == 7
    assert fake_llm.stats("m")["attempts"] == 7


@pytest.mark.parametrize(
    ("outcome", "kind", "status"),
    [
        ("429", "rate_limited", 429),
        ("500", "server_error", 500),
        ("503", "server_error", 503),
        ("reset", "connection", None),
        ("hang", "timeout", None),
        ("408", "timeout", 408),
    ],
)
def test_exhausted_attempts(fake_llm, outcome: str, kind: str, status: int | None) -> None:
    fake_llm.configure("m", script=[outcome] * 3, retry_after="0")
    error = fails(fake_llm.model_info("m"), max_attempts=3, timeout_s=0.3)
    assert (error.kind, error.status, error.attempts) == (kind, status, 3)
    assert error.endpoint == "m"
    assert str(error).startswith(f"model 'm': {kind}: ")
    assert "3 attempts" in str(error)
    assert fake_llm.stats("m")["attempts"] == 3


def test_default_is_five_attempts(fake_llm) -> None:
    fake_llm.configure("m", script=["500"] * 9)
    assert fails(fake_llm.model_info("m")).attempts == 5
    assert fake_llm.stats("m")["attempts"] == 5


@pytest.mark.parametrize(
    ("outcome", "kind", "status"),
    [
        ("400", "bad_request", 400),
        ("401", "auth", 401),
        ("truncated", "malformed_response", None),
        ("empty", "malformed_response", None),
        ("refusal", "refusal", None),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_not_retried(fake_llm, provider: str, outcome: str, kind: str, status: int | None) -> None:
    fake_llm.configure("m", script=[outcome] * 5)
    error = fails(fake_llm.model_info("m", provider))
    assert (error.kind, error.status, error.attempts) == (kind, status, 1)
    assert fake_llm.stats("m")["attempts"] == 1


def test_truncated_json_is_malformed(fake_llm) -> None:
    fake_llm.configure("m", script=["truncated"])
    error = fails(fake_llm.model_info("m"))
    assert error.kind == "malformed_response"
    assert "not valid JSON" in error.message


def test_timeout_is_the_per_attempt_limit(fake_llm) -> None:
    fake_llm.configure("m", script=["hang"])
    started = time.monotonic()
    error = fails(fake_llm.model_info("m"), timeout_s=0.3, max_attempts=1)
    assert 0.3 <= time.monotonic() - started < 2
    assert error.kind == "timeout"
    assert "no answer within 0.3 s" in error.message


def test_refused_connection(fake_llm) -> None:
    info = ModelInfo(name="gone", provider="openai", base_url="http://127.0.0.1:9/v1", model_id="x")
    error = fails(info, max_attempts=2)
    assert (error.kind, error.attempts) == ("connection", 2)


def test_529_overloaded_is_a_retried_server_error_on_anthropic(fake_llm) -> None:
    fake_llm.configure("c", script=["529", "529"], retry_after="0")
    assert call(fake_llm.model_info("c", "anthropic")).attempts == 3
    assert fake_llm.stats("c")["errors"] == {"529": 2}


# --- the policy itself ------------------------------------------------------------------------


def test_backoff_is_full_jitter_within_exponential_bounds() -> None:
    policy = RetryPolicy(base_s=0.5, max_backoff_s=4.0)
    rng = random.Random(1)
    for attempt in range(1, 8):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread, not fixed


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(base_s=0.5, retry_after_cap_s=30)
    assert policy.delay(1, retry_after=7) == 7
    assert policy.delay(1, retry_after=900) == 30


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None, "1500") == 1.5
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "rate_limited"),
        (408, "timeout"),
        (409, "server_error"),
        (500, "server_error"),
        (529, "server_error"),
        (401, "auth"),
        (403, "auth"),
        (400, "bad_request"),
        (404, "bad_request"),
        (422, "bad_request"),
    ],
)
def test_kind_for_status(status: int, kind: str) -> None:
    assert kind_for_status(status) == kind


def test_provider_error_survives_pickling() -> None:
    import pickle

    error = ProviderError("rate_limited", "slow down", status=429, attempts=5, endpoint="m")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.status, copy.attempts, str(copy)) == (
        "rate_limited",
        429,
        5,
        "model 'm': rate_limited: slow down (HTTP 429, 5 attempts)",
    )
