"""Storing captured inferences: queued off the request path, batched, spooled if the store is down.

The proxy only calls ``Recorder.submit`` (a thread-safe queue put); one worker thread turns
captures into rows and writes them in batches. If the store cannot be opened or written, the
batch is appended to a JSONL spool file under ASSAY_HOME and replayed once the store answers
again. Every record carries a client-generated ``uid`` and inserts skip uids already present,
so a batch that was written *and* spooled (a commit whose acknowledgement was lost) or a
replay interrupted half-way is never stored twice.

Memory stays bounded however long the store is down: at most ``max_queued`` captures wait in
memory for the worker (which may be stuck for a while in a write the database does not
answer); beyond that, ``submit`` hands captures to a second thread that only spools them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite

from assay.capture.records import Capture, build_record
from assay.store import Store, open_store
from assay.store.models import Inference, InferenceTag, ModelEndpoint

log = logging.getLogger("assay.capture")

SPOOL_NAME = "inferences.jsonl"
# Captures waiting in memory for the worker; more go straight to the spool (a few MB at most).
DEFAULT_MAX_QUEUED = 5000
# The live recorder replays at most half of the time (see ``replay_spool``).
REPLAY_PAUSE_RATIO = 1.0
_INFERENCES = Inference.__table__
_TAGS = InferenceTag.__table__


def default_spool_path(home: Path) -> Path:
    return home / "spool" / SPOOL_NAME


def write_records(store: Store, records: list[dict[str, Any]]) -> int:
    """Insert records and tags in one transaction, skipping known uids; returns rows inserted."""
    if not records:
        return 0
    _fill_costs(store, records)
    dialect = postgresql if store.dialect == "postgresql" else sqlite
    rows = [{k: v for k, v in r.items() if k != "tags"} for r in records]
    tags_by_uid = {r["uid"]: r.get("tags") or {} for r in records}
    stmt = (
        dialect.insert(_INFERENCES)
        .on_conflict_do_nothing(index_elements=["uid"])
        .returning(_INFERENCES.c.id, _INFERENCES.c.uid)
    )
    with store.engine.begin() as conn:
        inserted = conn.execute(stmt, rows).all()
        tags = [
            {"inference_id": row_id, "key": key, "value": value}
            for row_id, uid in inserted
            for key, value in tags_by_uid[uid].items()
        ]
        if tags:
            conn.execute(insert(_TAGS), tags)
    return len(inserted)


def _fill_costs(store: Store, records: list[dict[str, Any]]) -> None:
    """Cost from the price table of a registered endpoint with this model id, else None."""
    models = {r["model"] for r in records if r.get("model") and r.get("cost_usd") is None}
    if not models:
        return
    query = (
        select(
            ModelEndpoint.model_id,
            ModelEndpoint.price_input_per_mtok,
            ModelEndpoint.price_output_per_mtok,
        )
        .where(ModelEndpoint.model_id.in_(models))
        .order_by(ModelEndpoint.id.desc())  # the oldest endpoint wins when several match
    )
    with store.engine.connect() as conn:
        prices = {model: (p_in, p_out) for model, p_in, p_out in conn.execute(query)}
    for record in records:
        price = prices.get(record.get("model"))
        tokens_in, tokens_out = record.get("input_tokens"), record.get("output_tokens")
        if price is not None and record.get("cost_usd") is None and tokens_in is not None:
            record["cost_usd"] = (tokens_in * price[0] + (tokens_out or 0) * price[1]) / 1e6


# --- spool -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every proxy process using this spool directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spool_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records to the spool file and fsync: once this returns they survive a crash."""
    data = b"".join(orjson.dumps(_for_spool(r)) + b"\n" for r in records)
    with _locked(path), open(path, "ab") as handle:
        handle.write(_separator(path) + data)
        handle.flush()
        os.fsync(handle.fileno())


def replay_spool(store: Store, path: Path, batch_size: int = 500, pause_ratio: float = 0.0) -> int:
    """Write every spooled record to the store, then remove the spool; returns rows inserted.

    The spool is first renamed aside (``.replaying``), so records spooled meanwhile go to a
    fresh file; if the replay fails the renamed file stays and the next replay starts it over
    (uids already written are skipped). A torn last line (a crash mid-append) is skipped.
    ``pause_ratio``: after each batch, sleep that many times as long as the batch took. The
    running proxy replays in its own process, and a replay busy all the time would hold the
    GIL against the event loop (each socket call then waits for it): live calls come first.
    """
    replaying = path.with_suffix(path.suffix + ".replaying")
    with _locked(path):
        if path.exists() and not replaying.exists():
            path.rename(replaying)
        elif path.exists():  # an earlier replay failed: append the newer records to it
            with open(replaying, "ab") as out, open(path, "rb") as extra:
                out.write(_separator(replaying) + extra.read())
                out.flush()
                os.fsync(out.fileno())
            path.unlink()
    if not replaying.exists():
        return 0
    inserted = 0
    batch: list[dict[str, Any]] = []
    started = time.perf_counter()
    with open(replaying, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                batch.append(_from_spool(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, ValueError):
                log.warning("spool %s line %d is unreadable, skipped", replaying, number)
                continue
            if len(batch) >= batch_size:
                inserted += write_records(store, batch)
                batch = []
                if pause_ratio:
                    time.sleep((time.perf_counter() - started) * pause_ratio)
                    started = time.perf_counter()
    inserted += write_records(store, batch)
    replaying.unlink()
    return inserted


def _separator(path: Path) -> bytes:
    """A newline if the file ends in a torn line, so the next record starts a line of its own."""
    if not path.exists() or path.stat().st_size == 0:
        return b""
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return b"" if handle.read(1) == b"\n" else b"\n"


def _for_spool(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "started_at": record["started_at"].isoformat()}


def _from_spool(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "started_at": datetime.fromisoformat(record["started_at"])}


# --- the worker ------------------------------------------------------------------------------


class Recorder:
    """Queue + worker thread + spool. ``submit`` never blocks and never raises.

    ``open_store_fn`` opens the store (lazily, and again after a failure, at most every
    ``retry_seconds``); by default the one ``ASSAY_*`` points at.
    """

    def __init__(
        self,
        spool_path: Path,
        open_store_fn: Callable[[], Store] = open_store,
        *,
        batch_size: int = 200,
        flush_seconds: float = 0.1,
        retry_seconds: float = 5.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self.spool_path = spool_path
        self._open_store = open_store_fn
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.max_queued = max_queued
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._overflow: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._store: Store | None = None
        self._next_attempt = 0.0
        self._thread: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._spool_lock = threading.Lock()  # the two threads share ``spooled``
        self.written = 0  # rows inserted (live or replayed)
        self.spooled = 0  # records appended to the spool
        self.overflowed = 0  # captures that found the queue full and went straight to the spool
        self.peak_queued = 0  # the most captures ever waiting in memory for the worker

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="assay-recorder", daemon=True)
            self._thread.start()
            self._spiller = threading.Thread(
                target=self._spill, name="assay-recorder-spill", daemon=True
            )
            self._spiller.start()

    def submit(self, capture: Capture) -> None:
        queued = self._queue.qsize()
        if queued >= self.max_queued:
            self.overflowed += 1
            self._overflow.put(capture)
            return
        if queued >= self.peak_queued:
            self.peak_queued = queued + 1
        self._queue.put(capture)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is written or spooled."""
        deadline = time.monotonic() + timeout
        done, spilled = threading.Event(), threading.Event()
        self._queue.put(done)
        self._overflow.put(spilled)
        return done.wait(timeout) and spilled.wait(max(deadline - time.monotonic(), 0.0))

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the worker (and close the store)."""
        if self._thread is None:
            return
        self._overflow.put(None)
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._spiller is not None:
            self._spiller.join(timeout)
            self._spiller = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def _spill(self) -> None:
        """The overflow thread: captures the full queue refused go to the spool, in batches."""
        running = True
        while running:
            item = self._overflow.get()
            items = [item]
            while len(items) < self.batch_size:
                try:
                    items.append(self._overflow.get_nowait())
                except queue.Empty:
                    break
            running = None not in items
            batch = [_build(i) for i in items if isinstance(i, Capture)]
            if batch:
                self._spool(batch)
            for marker in items:
                if isinstance(marker, threading.Event):
                    marker.set()

    def _run(self) -> None:
        running = True
        while running:
            batch, markers, running = self._collect()
            if batch:
                self._persist(batch)
            else:  # idle: a good moment to bring the spool home
                self._maybe_replay()
            for marker in markers:
                marker.set()

    def _collect(self) -> tuple[list[dict[str, Any]], list[threading.Event], bool]:
        """Up to ``batch_size`` records: the first one waited for, the rest gathered for
        ``flush_seconds`` while the worker sleeps. Sleeping rather than waiting on the queue
        means one wake-up per batch, not one per call: each wake-up is a GIL hand-off that the
        proxy's event loop would pay for in latency."""
        batch: list[dict[str, Any]] = []
        markers: list[threading.Event] = []
        try:
            item = self._queue.get(timeout=self.retry_seconds)
        except queue.Empty:
            return batch, markers, True
        if isinstance(item, Capture) and self._queue.qsize() < self.batch_size:
            time.sleep(self.flush_seconds)
        while True:
            if item is None:
                return batch, markers, False
            if isinstance(item, threading.Event):
                markers.append(item)
                break  # a flush: write what we have now
            batch.append(_build(item))
            if len(batch) >= self.batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, markers, True

    def _persist(self, batch: list[dict[str, Any]]) -> None:
        store = self._available_store()
        if store is not None:
            try:
                self.written += write_records(store, batch)
                self._maybe_replay()
                return
            except Exception as exc:
                log.warning("store unavailable (%s); spooling to %s", exc, self.spool_path)
                self._store_failed()
        self._spool(batch)

    def _spool(self, batch: list[dict[str, Any]]) -> None:
        try:
            spool_records(self.spool_path, batch)
        except OSError:
            log.exception("cannot write the spool %s: %d records lost", self.spool_path, len(batch))
            return
        with self._spool_lock:
            self.spooled += len(batch)

    def _maybe_replay(self) -> None:
        replaying = self.spool_path.with_suffix(self.spool_path.suffix + ".replaying")
        if not (self.spool_path.exists() or replaying.exists()):
            return
        store = self._available_store()
        if store is None:
            return
        try:
            self.written += replay_spool(
                store, self.spool_path, self.batch_size, pause_ratio=REPLAY_PAUSE_RATIO
            )
        except Exception as exc:
            log.warning("spool replay failed (%s); will retry", exc)
            self._store_failed()

    def _available_store(self) -> Store | None:
        if self._store is None and time.monotonic() >= self._next_attempt:
            try:
                self._store = self._open_store()
            except Exception as exc:
                log.warning("cannot open the store (%s); spooling to %s", exc, self.spool_path)
                self._next_attempt = time.monotonic() + self.retry_seconds
        return self._store

    def _store_failed(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        self._store = None
        self._next_attempt = time.monotonic() + self.retry_seconds


def _build(capture: Capture) -> dict[str, Any]:
    try:
        return build_record(capture)
    except Exception:  # a parsing bug must not lose the exchange
        log.exception("could not build a record for %s; storing it bare", capture.uid)
        return _bare_record(capture)


def _bare_record(capture: Capture) -> dict[str, Any]:
    """The minimum row for an exchange whose bodies could not be processed (no bodies kept)."""
    return {
        "uid": capture.uid,
        "started_at": capture.started_at,
        "environment": capture.environment[:200],
        "task": capture.task[:200],
        "provider": capture.provider,
        "model": None,
        "method": capture.method,
        "path": capture.path[:200],
        "status_code": capture.status_code,
        "success": False,
        "error": "assay could not process this exchange; bodies not recorded",
        "streamed": capture.streamed,
        "duration_ms": capture.duration_ms,
        "ttft_ms": capture.ttft_ms,
        "input_tokens": None,
        "output_tokens": None,
        "cost_usd": None,
        "prompt_hash": None,
        "request_body": None,
        "request_truncated": False,
        "response_body": None,
        "response_truncated": False,
        "metadata": {},
        "tags": {},
    }
