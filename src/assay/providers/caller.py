"""``ModelCaller``: the one object the engine uses to call a model.

One caller per endpoint (and per purpose: a judge caller may carry different options). A call
goes: effective params (endpoint defaults, then the request's overrides, then
``response_format``) -> cache key -> cache read (unless bypassed) -> API key from the
environment -> encode once -> up to ``max_attempts`` attempts (HTTP, or in-process for a local
model), each inside the endpoint's shared limits (slot, RPM, TPM), with backoff between
retryable failures -> result with usage, cost and latency -> cache write (buffered, or left to
the engine; see ``cache.py``).

Usage::

    async with ModelCaller(info, store, timeout_s=60) as caller:
        result = await caller.complete(ChatRequest(messages=[...], params={"temperature": 0}))
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from assay.providers.cache import CacheEntry, CacheWriter, ResponseCache, cache_key
from assay.providers.endpoints import ModelInfo, cache_scope, read_api_key
from assay.providers.limits import EndpointLimiter, estimate_tokens, limiter_for
from assay.providers.retry import RetryPolicy
from assay.providers.types import (
    ChatRequest,
    ChatResult,
    ProviderClient,
    ProviderError,
    message_text,
)
from assay.store import Store

log = logging.getLogger(__name__)


class ModelCaller:
    """Calls one model endpoint with retries, shared limits, a response cache and accounting.

    Args:
        model: the endpoint (``get_model(store, name)``).
        store: where the response cache lives; ``None`` disables caching entirely.
        timeout_s: per HTTP attempt (default 120 s); a call that exceeds it is a ``timeout``.
        max_attempts: HTTP attempts per call, the first included (default 5, or the policy's).
        use_cache: ``False`` skips cache reads (answers are still written, for the next run).
        write_cache: ``False`` leaves writing to the caller of ``complete``, which persists
            ``cache_entry(result)`` in its own batched transaction.
        retry: backoff policy (tests shrink ``base_s``).
        burst_s: seconds of RPM/TPM budget that may be spent at once.
    """

    def __init__(
        self,
        model: ModelInfo,
        store: Store | None = None,
        *,
        timeout_s: float = 120.0,
        max_attempts: int | None = None,
        use_cache: bool = True,
        write_cache: bool = True,
        retry: RetryPolicy | None = None,
        burst_s: float = 1.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        if max_attempts is not None:
            self.retry = dataclasses.replace(self.retry, max_attempts=max_attempts)
        self.use_cache = use_cache
        self.burst_s = burst_s
        self.client: ProviderClient = _client_for(model, timeout_s)
        self._cache_scope = cache_scope(model)
        self.cache = ResponseCache(store) if store is not None else None
        self._writer = CacheWriter(self.cache) if self.cache is not None and write_cache else None
        self._price_in = model.price_input_per_mtok / 1e6
        self._price_out = model.price_output_per_mtok / 1e6
        self._limiter: EndpointLimiter | None = None
        self._limiter_loop: asyncio.AbstractEventLoop | None = None

    # --- what a call is -------------------------------------------------------------------

    def params_for(self, request: ChatRequest) -> dict[str, Any]:
        """Endpoint params, overridden by the request's, plus its ``response_format``."""
        params = {**self.model.params, **request.params} if request.params else self.model.params
        if request.response_format is not None:
            params = {**params, "response_format": request.response_format}
        return params

    def cache_key(self, request: ChatRequest) -> str:
        return cache_key(
            self._cache_scope,
            self.model.model_id,
            self.params_for(request),
            request.messages,
            request.tools,
        )

    # --- calling --------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, *, lookup: bool = True) -> ChatResult:
        """The model's answer, from the cache or the endpoint; ``ProviderError`` if none.

        ``lookup=False`` skips the cache read (an engine that already batch-looked-up the key).
        """
        params = self.params_for(request)
        key = None
        if self.cache is not None:
            key = cache_key(
                self._cache_scope, self.model.model_id, params, request.messages, request.tools
            )
            if lookup and self.use_cache:
                hit = await asyncio.to_thread(self.cache.get, key)
                if hit is not None:
                    return self.result_from_cache(hit, key)
        try:
            api_key = read_api_key(self.model)
        except ProviderError as exc:
            exc.endpoint = self.model.name
            raise
        content = self.client.encode(request.messages, request.tools, params)
        estimate = estimate_tokens(
            len(content), params.get("max_tokens") or params.get("max_completion_tokens")
        )
        answer, attempts = await self._send(content, api_key, estimate)
        result = self._result(answer, attempts, cached=False, key=key)
        if self._writer is not None and key is not None:
            self._writer.add(CacheEntry(key, answer, self.model.id))
        return result

    async def _send(
        self, content: bytes, api_key: str, estimate: int
    ) -> tuple[dict[str, Any], int]:
        limiter = self._limiter_here()
        attempt = 0
        while True:
            attempt += 1
            await limiter.acquire(estimate)
            started = time.perf_counter()
            try:
                answer = await self.client.send(content, api_key)
            except ProviderError as exc:
                failure = exc
            else:
                # A local client measures its own (without the wait for its model's thread).
                if answer.get("latency_ms") is None:
                    answer["latency_ms"] = (time.perf_counter() - started) * 1000.0
                used = (answer["input_tokens"] or 0) + (answer["output_tokens"] or 0)
                limiter.settle(estimate, used or None)
                return answer, attempt
            finally:
                limiter.release()
            failure.attempts = attempt
            failure.endpoint = self.model.name
            if not failure.retryable or attempt >= self.retry.max_attempts:
                raise failure
            delay = self.retry.delay(attempt, failure.retry_after)
            log.info("%s; retrying in %.2f s", failure, delay)
            await asyncio.sleep(delay)

    def _limiter_here(self) -> EndpointLimiter:
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter_loop is not loop:
            self._limiter = limiter_for(self.model, self.burst_s)
            self._limiter_loop = loop
        return self._limiter

    # --- results and the cache ------------------------------------------------------------

    def _result(
        self, answer: dict[str, Any], attempts: int, *, cached: bool, key: str | None
    ) -> ChatResult:
        input_tokens, output_tokens = answer.get("input_tokens"), answer.get("output_tokens")
        cost = 0.0
        if not cached:
            cost = (input_tokens or 0) * self._price_in + (output_tokens or 0) * self._price_out
        message = answer["message"]
        # Built without validation: every field comes from our own parsing, on the hot path.
        return ChatResult.model_construct(
            message=message,
            text=message_text(message),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=answer.get("latency_ms") or 0.0,
            cost_usd=cost,
            attempts=attempts,
            cached=cached,
            finish_reason=answer.get("finish_reason"),
            cache_key=key,
            response=answer,
        )

    def result_from_cache(self, response: dict[str, Any], key: str | None = None) -> ChatResult:
        """A cached answer as a result: original tokens and latency, no cost, no attempts."""
        return self._result(response, 0, cached=True, key=key)

    def cache_entry(self, result: ChatResult) -> CacheEntry | None:
        """What to persist for ``result`` (``None`` for a cached result or without a store)."""
        if result.cached or result.cache_key is None or result.response is None:
            return None
        return CacheEntry(result.cache_key, result.response, self.model.id)

    async def flush(self) -> None:
        """Write buffered cache entries now."""
        if self._writer is not None:
            await self._writer.flush()

    async def aclose(self) -> None:
        await self.flush()
        await self.client.aclose()

    async def __aenter__(self) -> ModelCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _client_for(model: ModelInfo, timeout_s: float) -> ProviderClient:
    """Import only the SDK this endpoint needs: each costs a second or more to import."""
    if model.provider == "local":
        from assay.providers.local_client import LocalClient

        return LocalClient(model, timeout_s)
    if model.provider == "anthropic":
        from assay.providers.anthropic_client import AnthropicClient

        return AnthropicClient(model, timeout_s)
    from assay.providers.openai_client import OpenAIClient

    return OpenAIClient(model, timeout_s)
