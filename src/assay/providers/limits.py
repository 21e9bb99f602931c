"""Per-endpoint concurrency and rate limits, shared by everything in the process.

Two run groups calling the same endpoint at once must share its limits, so limiters live in a
registry keyed by endpoint name (per event loop: asyncio primitives belong to one loop).

* ``max_concurrency``: an ``asyncio.Semaphore``; a call holds a slot for its HTTP attempt only
  (not while backing off).
* ``rpm`` / ``tpm``: token buckets refilled continuously at ``limit / 60`` per second, holding at
  most ``burst_s`` seconds' worth, so a limit is respected over any window (not only on
  average over a minute). A call takes one request token and an *estimate* of its tokens
  before it is sent (request size / 4 + ``max_tokens``); once the usage is known the estimate
  is corrected (``settle``), and the bucket may go into debt that later calls wait out.
  A call needing more tokens than the bucket holds waits for a full bucket, then goes.
* Waiters are served in order (the bucket's lock is FIFO), so a large request is not starved.

The order is slot, then request token, then token budget, then send: a call never holds a
rate token while queueing for a slot, so sends follow grants immediately.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from assay.providers.endpoints import ModelInfo


class TokenBucket:
    """``rate_per_minute`` tokens per minute, at most ``burst_s`` seconds' worth banked."""

    def __init__(self, rate_per_minute: float, burst_s: float = 1.0) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` tokens (at most a full bucket) are there, then take them."""
        need = min(amount, self.capacity)
        self._refill()
        if not self._lock.locked() and self.tokens >= need:
            self.tokens -= amount
            return
        async with self._lock:
            self._refill()
            while self.tokens < need:
                await asyncio.sleep((need - self.tokens) / self.rate)
                self._refill()
            self.tokens -= amount

    def give_back(self, amount: float) -> None:
        """Correct an estimate: negative ``amount`` takes more (debt), positive returns some."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens + amount)


class EndpointLimiter:
    """The limits of one endpoint. ``None`` for a limit means unlimited."""

    def __init__(
        self,
        max_concurrency: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        burst_s: float = 1.0,
    ) -> None:
        self.key = (max_concurrency, rpm, tpm, burst_s)
        self.slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self.requests = TokenBucket(rpm, burst_s) if rpm else None
        self.tokens = TokenBucket(tpm, burst_s) if tpm else None

    async def acquire(self, estimated_tokens: int) -> None:
        """Take a slot and the rate budget for one HTTP attempt; pair with ``release``."""
        if self.slots is not None:
            await self.slots.acquire()
        try:
            if self.requests is not None:
                await self.requests.take(1.0)
            if self.tokens is not None:
                await self.tokens.take(float(estimated_tokens))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """Replace a token estimate by the real usage once the provider reported it."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.give_back(float(estimated_tokens - actual_tokens))


_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, EndpointLimiter]] = (
    weakref.WeakKeyDictionary()
)


def limiter_for(model: ModelInfo, burst_s: float = 1.0) -> EndpointLimiter:
    """The limiter shared by every caller of ``model`` in this process (and event loop).

    If the endpoint's limits changed since the limiter was made (the model was edited), a new
    limiter with the new limits replaces it for calls starting from now.
    """
    per_loop = _registry.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(model.name)
    key = (model.max_concurrency, model.rpm, model.tpm, burst_s)
    if limiter is None or limiter.key != key:
        limiter = per_loop[model.name] = EndpointLimiter(*key)
    return limiter


def estimate_tokens(request_bytes: int, max_tokens: object) -> int:
    """A TPM estimate made before the call: ~4 bytes of JSON per token, plus the output cap."""
    output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 256
    return request_bytes // 4 + output
