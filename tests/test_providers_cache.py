"""The response cache, on SQLite and Postgres: hits skip HTTP, only successes are stored,
and writes are batched."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from assay.providers import (
    CacheEntry,
    ChatRequest,
    ChatResult,
    ModelCaller,
    ModelInfo,
    ProviderError,
    ResponseCache,
    add_model,
    cache_key,
)
from assay.store import Store
from assay.store.models import ResponseCache as CacheRow

HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}])


def registered(store: Store, fake_llm: Any, name: str = "m", **fields: Any) -> ModelInfo:
    return add_model(store, name, base_url=fake_llm.base_url, model_id=name, **fields)


def complete(
    info: ModelInfo, store: Store | None, request: ChatRequest = HELLO, **options: Any
) -> ChatResult:
    async def go() -> ChatResult:
        async with ModelCaller(info, store, **options) as caller:
            return await caller.complete(request)

    return asyncio.run(go())


def rows(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(CacheRow)) or 0


def test_a_cache_hit_makes_no_http_call(store: Store, fake_llm) -> None:
    info = registered(store, fake_llm, price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    first = complete(info, store)
    assert not first.cached and first.cost_usd > 0 and first.attempts == 1
    assert rows(store) == 1
    second = complete(info, store)
    assert fake_llm.stats("m")["attempts"] == 1  # no second HTTP call
    assert second.cached and second.cost_usd == 0.0 and second.attempts == 0
    assert second.message == first.message and second.text == first.text
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    assert second.latency_ms == pytest.approx(first.latency_ms)
    assert second.finish_reason == first.finish_reason


def test_use_cache_false_calls_again_but_still_writes(store: Store, fake_llm) -> None:
    info = registered(store, fake_llm)
    complete(info, store, use_cache=False)
    again = complete(info, store, use_cache=False)
    assert not again.cached
    assert fake_llm.stats("m")["attempts"] == 2
    assert rows(store) == 1  # same key, kept once
    assert complete(info, store).cached


def test_failures_are_not_cached(store: Store, fake_llm) -> None:
    info = registered(store, fake_llm)
    for outcome in ("400", "refusal", "truncated"):
        fake_llm.configure("m", script=[outcome])
        with pytest.raises(ProviderError):
            complete(info, store)
        fake_llm.reset()
    assert rows(store) == 0


def test_different_calls_do_not_share_an_entry(store: Store, fake_llm) -> None:
    info = registered(store, fake_llm, params={"temperature": 0.7})
    complete(info, store)
    complete(info, store, ChatRequest(messages=HELLO.messages, params={"temperature": 0}))
    complete(
        info, store, ChatRequest(messages=HELLO.messages, response_format={"type": "json_object"})
    )
    assert fake_llm.stats("m")["attempts"] == 3
    assert rows(store) == 3


def test_the_key_covers_what_changes_the_answer() -> None:
    base = (
        "http://h/v1",
        "m",
        {"temperature": 0, "seed": 1},
        [{"role": "user", "content": "x"}],
        None,
    )
    key = cache_key(*base)
    assert len(key) == 64
    assert cache_key("http://h/v1/", "m", {"seed": 1, "temperature": 0}, *base[3:]) == key
    tool = [{"type": "function", "function": {"name": "f"}}]
    variants = [
        ("http://other/v1", *base[1:]),
        (base[0], "m2", *base[2:]),
        (*base[:2], {"temperature": 1, "seed": 1}, *base[3:]),
        (*base[:3], [{"role": "user", "content": "y"}], None),
        (*base[:4], tool),
    ]
    assert len({cache_key(*v) for v in variants} | {key}) == 6


def test_batch_lookup_and_store_many(store: Store) -> None:
    cache = ResponseCache(store)
    entries = [CacheEntry(f"{i:064x}", {"message": {"content": str(i)}}) for i in range(1200)]
    cache.store_many(entries + entries[:10])  # duplicates in one batch are fine
    cache.store_many([CacheEntry(entries[0].key, {"message": {"content": "overwritten?"}})])
    found = cache.lookup([e.key for e in entries] + ["f" * 64])
    assert len(found) == 1200
    assert found[entries[0].key] == {"message": {"content": "0"}}  # first write wins
    assert cache.get("f" * 64) is None
    assert cache.lookup([]) == {}


def test_engine_style_batching(store: Store, fake_llm) -> None:
    """write_cache=False: the engine persists cache_entry(result) in its own transaction."""
    info = registered(store, fake_llm)
    requests = [ChatRequest(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(5)]

    async def go() -> list[ChatResult]:
        async with ModelCaller(info, store, write_cache=False) as caller:
            keys = [caller.cache_key(r) for r in requests]
            assert ResponseCache(store).lookup(keys) == {}
            results = await asyncio.gather(*(caller.complete(r, lookup=False) for r in requests))
            assert rows(store) == 0  # nothing written behind the engine's back
            entries = [caller.cache_entry(r) for r in results]
            assert [e.key for e in entries if e] == keys
            with store.session() as session:  # the engine's own batch transaction
                ResponseCache(store).store_many([e for e in entries if e], session=session)
            hits = ResponseCache(store).lookup(keys)
            cached = [caller.result_from_cache(hits[k], k) for k in keys]
            assert all(c.cached and c.cost_usd == 0 for c in cached)
            assert caller.cache_entry(cached[0]) is None
            return results

    results = asyncio.run(go())
    assert rows(store) == 5
    assert [r.text for r in results] == [
        complete(info, store, r).text for r in requests
    ]  # all hits now
    assert fake_llm.stats("m")["attempts"] == 5


def test_caller_writes_in_batches_not_per_call(store: Store, fake_llm, monkeypatch) -> None:
    info = registered(store, fake_llm)
    batches: list[int] = []
    original = ResponseCache.store_many

    def spy(self: ResponseCache, entries: Any, session: Any = None) -> None:
        batches.append(len(entries))
        original(self, entries, session)

    monkeypatch.setattr(ResponseCache, "store_many", spy)

    async def go() -> None:
        async with ModelCaller(info, store, use_cache=False) as caller:
            await asyncio.gather(
                *(
                    caller.complete(ChatRequest(messages=[{"role": "user", "content": f"q{i}"}]))
                    for i in range(30)
                )
            )

    asyncio.run(go())
    assert batches == [30]
    assert rows(store) == 30


def test_result_json_has_no_cache_internals(fake_llm) -> None:
    result = complete(fake_llm.model_info("m"), None)
    assert result.cache_key is None  # no store, no cache
    dumped = result.model_dump()
    assert set(dumped) == {
        "message",
        "text",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "cost_usd",
        "attempts",
        "cached",
        "finish_reason",
    }


def test_removing_a_model_drops_its_cache(store: Store, fake_llm) -> None:
    from assay.providers import remove_model

    info = registered(store, fake_llm)
    complete(info, store)
    assert rows(store) == 1
    remove_model(store, "m")
    assert rows(store) == 0
