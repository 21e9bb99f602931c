"""Concurrency and rate limits: measured by the fake server, shared across callers."""

from __future__ import annotations

import asyncio
import time

import pytest

from assay.providers import ChatRequest, ModelCaller, ModelInfo
from assay.providers.limits import EndpointLimiter, TokenBucket, estimate_tokens, limiter_for


def request(i: int, **params: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"question {i}"}], params=params)


async def run_calls(callers: list[ModelCaller], per_caller: int) -> None:
    async def calls(caller: ModelCaller, offset: int) -> None:
        await asyncio.gather(*(caller.complete(request(offset + i)) for i in range(per_caller)))

    await asyncio.gather(*(calls(c, 1000 * n) for n, c in enumerate(callers)))
    for caller in callers:
        await caller.aclose()


def test_concurrency_limit_is_never_exceeded(fake_llm) -> None:
    fake_llm.configure("m", latency_ms=40)
    info = fake_llm.model_info("m", max_concurrency=3)
    asyncio.run(run_calls([ModelCaller(info)], 24))
    stats = fake_llm.stats("m")
    assert stats["ok"] == 24
    assert stats["peak_in_flight"] == 3  # reached, never exceeded


def test_concurrency_limit_is_shared_by_callers_of_one_endpoint(fake_llm) -> None:
    fake_llm.configure("m", latency_ms=40)
    info = fake_llm.model_info("m", max_concurrency=4)
    asyncio.run(run_calls([ModelCaller(info), ModelCaller(info), ModelCaller(info)], 8))
    assert fake_llm.stats("m")["peak_in_flight"] == 4


def test_endpoints_have_separate_limits(fake_llm) -> None:
    fake_llm.configure("*", latency_ms=40)
    a = ModelCaller(fake_llm.model_info("a", max_concurrency=2))
    b = ModelCaller(fake_llm.model_info("b", max_concurrency=3))
    asyncio.run(run_calls([a, b], 12))
    assert fake_llm.stats("a")["peak_in_flight"] == 2
    assert fake_llm.stats("b")["peak_in_flight"] == 3
    assert fake_llm.stats()["peak_in_flight"] == 5


def test_unlimited_endpoint_runs_everything_at_once(fake_llm) -> None:
    fake_llm.configure("m", latency_ms=100)
    asyncio.run(run_calls([ModelCaller(fake_llm.model_info("m"))], 20))
    assert fake_llm.stats("m")["peak_in_flight"] == 20


def test_rpm_limit_is_respected_in_every_window(fake_llm) -> None:
    # 600 rpm = 10 per second, at most 1 s of budget (10 requests) banked.
    info = fake_llm.model_info("m", rpm=600)
    started = time.monotonic()
    asyncio.run(run_calls([ModelCaller(info)], 25))
    elapsed = time.monotonic() - started
    assert elapsed >= 1.4  # 25 requests: 10 at once, then 15 at 10/s
    arrivals = sorted(r["received_at"] for r in fake_llm.requests("m"))
    assert len(arrivals) == 25
    for i, first in enumerate(arrivals):  # bucket bound: burst + rate * window
        assert sum(1 for t in arrivals[i:] if t < first + 0.5) <= 10 + 5 + 1


def test_tpm_limit_waits_for_token_budget(fake_llm) -> None:
    # 6000 tpm = 100 tokens/s; each call is estimated at > 100 tokens (max_tokens=100 plus
    # the prompt), so after the first each must wait for the bucket to refill.
    info = fake_llm.model_info("m", tpm=6000)

    async def go() -> None:
        async with ModelCaller(info) as caller:
            for i in range(3):
                await caller.complete(request(i, max_tokens=100))

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started >= 0.6
    assert fake_llm.stats("m")["ok"] == 3


def test_limits_do_not_slow_an_endpoint_without_them(fake_llm) -> None:
    started = time.monotonic()
    asyncio.run(run_calls([ModelCaller(fake_llm.model_info("m"))], 25))
    assert time.monotonic() - started < 1.0


# --- the pieces -------------------------------------------------------------------------------


def test_token_bucket_waits_and_allows_debt() -> None:
    async def go() -> list[float]:
        bucket = TokenBucket(rate_per_minute=600)  # 10/s, capacity 10
        marks = []
        start = time.monotonic()
        await bucket.take(10)
        marks.append(time.monotonic() - start)  # immediate
        await bucket.take(5)
        marks.append(time.monotonic() - start)  # ~0.5 s
        bucket.give_back(-5)  # usage was 5 more than estimated: debt
        await bucket.take(1)
        marks.append(time.monotonic() - start)  # ~0.5 + 0.6 s
        await bucket.take(50)  # more than the bucket holds: waits for a full bucket
        marks.append(time.monotonic() - start)
        return marks

    marks = asyncio.run(go())
    assert marks[0] < 0.05
    assert 0.45 <= marks[1] < 0.8
    assert 1.0 <= marks[2] < 1.5
    assert marks[3] - marks[2] >= 0.9


def test_token_bucket_serves_waiters_in_order() -> None:
    async def go() -> list[int]:
        bucket = TokenBucket(rate_per_minute=1200)  # 20/s, capacity 20
        await bucket.take(20)
        order: list[int] = []

        async def taker(i: int, amount: float) -> None:
            await bucket.take(amount)
            order.append(i)

        await asyncio.gather(taker(0, 15), taker(1, 1), taker(2, 1))
        return order

    assert asyncio.run(go()) == [0, 1, 2]  # the big request is not starved by small ones


def test_limiter_settle_replaces_the_estimate() -> None:
    async def go() -> float:
        limiter = EndpointLimiter(tpm=60_000)  # 1000/s, capacity 1000
        await limiter.acquire(800)
        limiter.release()
        limiter.settle(800, 100)
        assert limiter.tokens is not None
        return limiter.tokens.tokens

    assert asyncio.run(go()) >= 899


def test_registry_shares_per_endpoint_and_loop() -> None:
    info = ModelInfo(name="x", provider="openai", base_url="http://h/v1", model_id="m", rpm=5)

    async def go() -> EndpointLimiter:
        first = limiter_for(info)
        assert limiter_for(info) is first
        assert limiter_for(info.model_copy(update={"name": "y"})) is not first
        changed = limiter_for(info.model_copy(update={"rpm": 10}))
        assert changed is not first and limiter_for(info.model_copy(update={"rpm": 10})) is changed
        return first

    one, two = asyncio.run(go()), asyncio.run(go())
    assert one is not two  # asyncio primitives belong to one event loop


@pytest.mark.parametrize(("size", "max_tokens", "expected"), [(400, 50, 150), (400, None, 356)])
def test_estimate_tokens(size: int, max_tokens: int | None, expected: int) -> None:
    assert estimate_tokens(size, max_tokens) == expected
