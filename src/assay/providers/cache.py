"""The response cache: a rerun or a resumed run never pays twice for the same call.

Key: sha256 of the canonical JSON (sorted keys, no whitespace) of ``[base_url, model_id,
params, messages, tools]``, where ``params`` are the effective request params (endpoint defaults
merged with request overrides, ``response_format`` included). The API key is not part of it.
Value: the provider-independent answer (``message``, ``finish_reason``, token counts, latency,
provider ``model``/``id``), stored in the ``response_cache`` table. Only successful answers are
cached.

Batching (what an engine running thousands of calls should do):

* **Reads**: ``lookup(keys)`` answers many keys in one query (chunked under the parameter
  limit). The engine looks up a batch of pending items, turns hits into results with
  ``ModelCaller.result_from_cache`` and calls ``ModelCaller.complete(..., lookup=False)`` only
  for the misses.
* **Writes**: ``store_many(entries, session=...)`` inserts many entries in one statement,
  ignoring keys already present, inside the caller's transaction when a session is given. An
  engine builds ``ModelCaller(..., write_cache=False)`` and persists ``caller.cache_entry(result)``
  in the same transaction as the generation it belongs to: one transaction per batch, never
  one per call.
* Used standalone (``write_cache=True``), ``ModelCaller`` buffers entries in a
  ``CacheWriter`` that writes them in batches from a worker thread and flushes on
  ``aclose()``; an entry still buffered when the process dies is lost, which for a cache
  only means paying for that call again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from assay.store import Store
from assay.store.models import ResponseCache as CacheRow
from assay.store.models import utcnow

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500  # well under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    response: dict[str, Any]
    endpoint_id: int | None = None


def cache_key(
    base_url: str,
    model_id: str,
    params: dict[str, Any],
    messages: list[Any],
    tools: list[Any] | None,
) -> str:
    """The cache key of one call (hex sha256 of its canonical JSON)."""
    canonical = orjson.dumps(
        [base_url.rstrip("/"), model_id, params, messages, tools or None],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


class ResponseCache:
    """Reads and writes cached responses in a store. Synchronous: call from a thread (or the
    engine's own writer) when running inside an event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def lookup(
        self, keys: Iterable[str], session: Session | None = None
    ) -> dict[str, dict[str, Any]]:
        """The cached responses for the keys that have one."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        if not unique:
            return found
        if session is None:  # a read: safe to redo if the connection drops meanwhile
            return self.store.retrying(lambda own: self.lookup(unique, own))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            rows = session.execute(
                select(CacheRow.key, CacheRow.response).where(CacheRow.key.in_(chunk))
            )
            found.update((key, response) for key, response in rows)
        return found

    def get(self, key: str) -> dict[str, Any] | None:
        return self.lookup([key]).get(key)

    def store_many(self, entries: Sequence[CacheEntry], session: Session | None = None) -> None:
        """Insert entries in one statement; keys already cached are left as they are."""
        if not entries:
            return
        if session is None:
            with self.store.session() as own:
                self._insert(entries, own)
        else:
            self._insert(entries, session)

    def _insert(self, entries: Sequence[CacheEntry], session: Session) -> None:
        now = utcnow()
        seen: set[str] = set()
        rows = []
        for entry in entries:
            if entry.key not in seen:
                seen.add(entry.key)
                row = {"key": entry.key, "endpoint_id": entry.endpoint_id, "created_at": now}
                rows.append(row | {"response": entry.response})
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(CacheRow).on_conflict_do_nothing(index_elements=["key"])
        session.execute(statement, rows)

    def put(self, entry: CacheEntry) -> None:
        self.store_many([entry])


class CacheWriter:
    """Write-behind buffer: entries go to the store in batches, from a worker thread.

    A batch is written when ``batch_size`` entries are waiting or the oldest has waited
    ``max_delay_s`` (checked when an entry is added); ``flush()`` writes the rest.
    """

    def __init__(
        self, cache: ResponseCache, batch_size: int = 200, max_delay_s: float = 2.0
    ) -> None:
        self.cache = cache
        self.batch_size = batch_size
        self.max_delay_s = max_delay_s
        self._pending: list[CacheEntry] = []
        self._oldest = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, entry: CacheEntry) -> None:
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(entry)
        if (
            len(self._pending) >= self.batch_size
            or time.monotonic() - self._oldest > self.max_delay_s
        ):
            self._start_write()

    def _start_write(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._write(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[CacheEntry]) -> None:
        try:
            await asyncio.to_thread(self.cache.store_many, batch)
        except Exception as exc:  # a cache write failing must not fail the call it caches
            log.warning("could not write %d response cache entries: %s", len(batch), exc)

    async def flush(self) -> None:
        """Write everything buffered and wait for every write in progress."""
        if self._pending:
            self._start_write()
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
