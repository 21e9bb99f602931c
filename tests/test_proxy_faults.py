"""The recording proxy under load and faults (reliability: "proxy under load and faults").

Everything is real: a local OpenAI-shaped upstream streaming SSE (some answers dropped
mid-stream by closing the connection, some HTTP errors), the proxy served by uvicorn, up to
200 concurrent streaming httpx clients, and the store on SQLite or Postgres. The store outage
is real too: SQLite's database held by another connection's ``BEGIN EXCLUSIVE``, Postgres
reached through a TCP link that is cut (``support.tcpproxy``).

What must hold: each client gets exactly what the upstream sent (or the same mid-stream
failure), and every call ends up recorded exactly once, keyed by its
``x-assay-metadata-req`` id, the dropped ones as errors.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from assay.capture import CaptureProxy, Recorder, create_proxy, default_spool_path
from assay.capture.records import Capture
from assay.store import Store, open_store
from assay.store.models import Inference, InferenceTag
from support.served import Served, http_request_body
from support.tcpproxy import TcpProxy

CLIENTS = 200
PATH = "/v1/chat/completions"


# --- the upstream ----------------------------------------------------------------------------


def kind_of(i: int) -> str:
    """What the upstream does with call ``i``: 10% drops, 10% HTTP 500, 5% 429, else a stream."""
    if i % 10 == 3:
        return "drop"
    if i % 10 == 7:
        return "500"
    if i % 20 == 9:
        return "429"
    return "ok"


def sse_chunks(i: int) -> list[bytes]:
    words = [f"w{j}-{i} " for j in range(4 + i % 7)]
    chunks = [
        {"id": f"c{i}", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
        for w in words
    ]  # fmt: skip
    chunks.append({"id": f"c{i}", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": len(words),
                             "total_tokens": 7 + len(words)}})  # fmt: skip
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def sent_chunks(i: int) -> int:
    """How many chunks the upstream sends before dropping call ``i`` (all if not dropped)."""
    return 1 + i % 3 if kind_of(i) == "drop" else len(sse_chunks(i))


class _Drop(Exception):
    """Raised mid-response: uvicorn then closes the connection without ending the body."""


class _QuietDrops(logging.Filter):
    """uvicorn logs each ``_Drop`` with a traceback; they are the test's doing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Drop))


class FaultyUpstream:
    """An OpenAI-compatible chat endpoint with deterministic faults, chosen by call number."""

    def __init__(self) -> None:
        self.served = Counter[str]()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await http_request_body(scope, receive, send)
        if body is None:
            return
        i = int(orjson.loads(body)["messages"][0]["content"].split("-")[1])
        kind = kind_of(i)
        self.served[kind] += 1
        if kind in ("500", "429"):
            error = {"error": {"message": f"upstream says {kind} to {i}", "type": "server_error"}}
            headers = [(b"content-type", b"application/json")]
            if kind == "429":
                headers.append((b"retry-after", b"1"))
            await send({"type": "http.response.start", "status": int(kind), "headers": headers})
            await send({"type": "http.response.body", "body": orjson.dumps(error)})
            return
        sse = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        for chunk in sse_chunks(i)[: sent_chunks(i)]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0.003)
        if kind == "drop":
            raise _Drop(f"call {i} dropped")
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    app = FaultyUpstream()
    quiet = _QuietDrops()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    served = Served(app)
    try:
        yield app, served.url
    finally:
        served.stop()
        logging.getLogger("uvicorn.error").removeFilter(quiet)


# --- the clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one application saw: status, the headers that matter, every byte, the failure."""

    status: int
    content_type: str
    retry_after: str | None
    body: bytes
    failure: str | None
    seconds: float = 0.0

    def same_as(self, other: Outcome) -> bool:
        keys = ("status", "content_type", "retry_after", "body", "failure")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def request_body(i: int) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"q-{i}"}]}


async def call(client: httpx.AsyncClient, base: str, i: int) -> Outcome:
    headers = {"authorization": "Bearer sk-fault-test-key-0001", "x-assay-metadata-req": str(i)}
    start = time.perf_counter()
    body = bytearray()
    status, content_type, retry_after, failure = 0, "", None, None
    try:
        async with client.stream("POST", base + PATH, json=request_body(i), headers=headers) as r:
            status, content_type = r.status_code, r.headers.get("content-type", "")
            retry_after = r.headers.get("retry-after")
            async for chunk in r.aiter_raw():
                body += chunk
    except httpx.TransportError as exc:
        failure = type(exc).__name__
    return Outcome(
        status, content_type, retry_after, bytes(body), failure, time.perf_counter() - start
    )


def expected(i: int) -> Outcome:
    """What the upstream does, by construction (the load test checks it against the wire)."""
    kind = kind_of(i)
    if kind in ("500", "429"):
        error = {"error": {"message": f"upstream says {kind} to {i}", "type": "server_error"}}
        retry = "1" if kind == "429" else None
        return Outcome(int(kind), "application/json", retry, orjson.dumps(error), None)
    body = b"".join(sse_chunks(i)[: sent_chunks(i)])
    failure = "RemoteProtocolError" if kind == "drop" else None
    return Outcome(200, "text/event-stream", None, body, failure)


def client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0))


# --- the records -----------------------------------------------------------------------------


def records_by_req(store: Store) -> dict[str, list[Inference]]:
    by_req: dict[str, list[Inference]] = {}
    with store.session() as session:
        rows = session.execute(
            select(InferenceTag.value, Inference)
            .join(Inference, Inference.id == InferenceTag.inference_id)
            .where(InferenceTag.key == "req")
        ).all()
        for req, row in rows:
            by_req.setdefault(req, []).append(row)
    return by_req


def check_record(i: int, rows: list[Inference]) -> None:
    """Exactly one row for call ``i``, saying what happened to it."""
    assert len(rows) == 1, f"call {i} recorded {len(rows)} times"
    [row] = rows
    kind = kind_of(i)
    assert row.metadata_ == {"req": str(i)} and row.streamed is (kind in ("ok", "drop"))
    if kind == "ok":
        assert row.success is True and row.error is None
        content = row.response_body["choices"][0]["message"]["content"]
        assert content == "".join(f"w{j}-{i} " for j in range(4 + i % 7))
        assert (row.input_tokens, row.output_tokens) == (7, 4 + i % 7)
    elif kind == "drop":
        assert row.success is False and row.status_code == 200
        assert row.error.startswith("upstream stream broke: ClientPayloadError")
    else:
        assert row.success is False and row.status_code == int(kind)
        assert row.error == f"HTTP {kind}: upstream says {kind} to {i}"
    assert "sk-fault-test-key-0001" not in orjson.dumps(row.request_body).decode()


# --- 200 concurrent streams with drops and errors --------------------------------------------


def test_200_concurrent_streams_with_drops_pass_through_unchanged_and_record_once(
    upstream: tuple[FaultyUpstream, str], database_url: str, assay_home: Path, store: Store
) -> None:
    app, upstream_url = upstream
    proxy = create_proxy(upstream_url, database_url=database_url, home=assay_home)
    served = Served(proxy)

    async def both() -> tuple[list[Outcome], list[Outcome]]:
        async with client() as http:
            direct = asyncio.gather(*(call(http, upstream_url, i) for i in range(CLIENTS)))
            proxied = asyncio.gather(*(call(http, served.url, i) for i in range(CLIENTS)))
            return await direct, await proxied

    try:
        direct, proxied = asyncio.run(both())
        assert proxy.flush(60)
    finally:
        served.stop()

    drops = [i for i in range(CLIENTS) if kind_of(i) == "drop"]
    assert app.served["drop"] == 2 * len(drops) == 40  # direct + proxied
    assert app.served["500"] == 40 and app.served["429"] == 20
    for i in range(CLIENTS):
        assert proxied[i].same_as(direct[i]), f"call {i}: {proxied[i]} != {direct[i]}"
        assert direct[i].same_as(expected(i)), f"call {i}: the upstream misbehaved"
    assert {proxied[i].failure for i in drops} == {"RemoteProtocolError"}

    by_req = records_by_req(store)
    assert sorted(by_req, key=int) == [str(i) for i in range(CLIENTS)]
    for i in range(CLIENTS):
        check_record(i, by_req[str(i)])
    assert proxy.recorder.spooled == 0 and proxy.recorder.written == CLIENTS


# --- the recorder's queue stays bounded ------------------------------------------------------


def capture(i: int) -> Capture:
    return Capture(
        uid=f"00000000-0000-4000-8000-{i:012d}",
        started_at=datetime.now(UTC),
        method="POST",
        path=PATH,
        provider="openai",
        request_body=orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        metadata={"req": str(i)},
        status_code=200,
        response_body=b'{"choices": []}',
        content_type="application/json",
        duration_ms=1.0,
    )


def test_a_store_that_does_not_answer_fills_the_spool_not_memory(
    database_url: str, assay_home: Path, store: Store
) -> None:
    answering = threading.Event()

    def hanging_store() -> Store:  # like a database host that accepts and never answers
        answering.wait(30)
        return open_store(database_url, assay_home)

    recorder = Recorder(
        default_spool_path(assay_home), hanging_store, batch_size=10, retry_seconds=0.1,
        max_queued=25,
    )  # fmt: skip
    recorder.start()
    try:
        for i in range(500):
            recorder.submit(capture(i))
            time.sleep(0.0005 if i < 10 else 0)
        deadline = time.monotonic() + 20
        while recorder.spooled < recorder.overflowed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.peak_queued <= 25
        assert recorder.overflowed >= 500 - 25 - 10  # the worker holds at most one batch
        assert recorder.spooled == recorder.overflowed and recorder.written == 0
        answering.set()
        assert recorder.flush(30)
        deadline = time.monotonic() + 30
        while recorder.written < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
            recorder.flush(5)
    finally:
        recorder.stop()
    assert recorder.written == 500
    by_req = records_by_req(store)
    assert sorted(by_req, key=int) == [str(i) for i in range(500)]
    assert all(len(rows) == 1 for rows in by_req.values())
    assert not default_spool_path(assay_home).exists()


# --- a store outage of a minute under load ---------------------------------------------------

OUTAGE_SECONDS = 60.0
OUTAGE_CLIENTS = 40


class Outage:
    """Takes the store down and brings it back: SQLite locked, Postgres link cut."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url)
        self.link: TcpProxy | None = None
        self.lock: sqlite3.Connection | None = None
        if self.url.get_backend_name() == "postgresql":
            self.link = TcpProxy(self.url.port or 5432, self.url.host or "127.0.0.1")
            self.proxy_url = self.url.set(host="127.0.0.1", port=self.link.port)
        else:
            self.proxy_url = self.url

    @property
    def proxy_database_url(self) -> str:
        return self.proxy_url.render_as_string(hide_password=False)

    def begin(self) -> None:
        if self.link is not None:
            self.link.cut()
        else:
            self.lock = sqlite3.connect(str(self.url.database), isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")  # every writer now waits, then fails

    def end(self) -> None:
        if self.link is not None:
            self.link.restore()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.end()
        if self.link is not None:
            self.link.close()


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@pytest.mark.slow
def test_a_minute_of_store_outage_under_load_loses_and_duplicates_nothing(
    upstream: tuple[FaultyUpstream, str], database_url: str, assay_home: Path, store: Store
) -> None:
    _, upstream_url = upstream
    outage = Outage(database_url)
    proxy: CaptureProxy = create_proxy(
        upstream_url, database_url=outage.proxy_database_url, home=assay_home,
        retry_seconds=1.0, max_queued=200,
    )  # fmt: skip
    served = Served(proxy)
    outcomes: dict[int, tuple[str, Outcome]] = {}
    counter = iter(range(10**9))

    async def load(phase: str, seconds: float) -> None:
        """OUTAGE_CLIENTS streaming clients calling back to back (with a short pause)."""
        end = time.monotonic() + seconds

        async def one_client(http: httpx.AsyncClient) -> None:
            while time.monotonic() < end:
                i = next(counter)
                outcomes[i] = (phase, await call(http, served.url, i))
                await asyncio.sleep(0.05)

        async with client() as http:
            await asyncio.gather(*(one_client(http) for _ in range(OUTAGE_CLIENTS)))

    try:
        asyncio.run(load("before", 5))
        assert proxy.flush(30) and proxy.recorder.spooled == 0
        outage.begin()
        started = time.monotonic()
        asyncio.run(load("outage", OUTAGE_SECONDS))
        during = len(outcomes)
        outage.end()
        outage_seconds = time.monotonic() - started
        asyncio.run(load("after", 5))
        total = len(outcomes)
        deadline = time.monotonic() + 180
        while proxy.recorder.written < total and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proxy.flush(60)
    finally:
        served.stop()
        outage.close()

    recorder = proxy.recorder
    for i, (_, seen) in outcomes.items():
        assert seen.same_as(expected(i)), f"call {i}: {seen} != {expected(i)}"
    by_req = records_by_req(store)
    lost = [i for i in range(total) if str(i) not in by_req]
    duplicated = [req for req, rows in by_req.items() if len(rows) > 1]
    assert not lost and not duplicated and len(by_req) == total
    for i in range(total):
        check_record(i, by_req[str(i)])
    assert recorder.spooled > 0 and recorder.written == total
    assert recorder.peak_queued <= 200
    assert not default_spool_path(assay_home).exists()
    with store.session() as session:
        assert len(session.scalars(select(Inference.uid)).all()) == total

    seconds = {
        ph: [o.seconds for f, o in outcomes.values() if f == ph]
        for ph in ("before", "outage", "after")
    }
    drops = sum(1 for i in range(total) if kind_of(i) == "drop")
    errors = sum(1 for i in range(total) if kind_of(i) in ("500", "429"))
    print(
        f"\n[{store.dialect}] outage {outage_seconds:.1f} s, {OUTAGE_CLIENTS} clients, "
        f"{total} calls ({during} before+during), {drops} dropped mid-stream, {errors} HTTP "
        f"errors; spooled {recorder.spooled} (overflow {recorder.overflowed}), written "
        f"{recorder.written}, peak queue {recorder.peak_queued}; lost {len(lost)}, "
        f"duplicated {len(duplicated)}; latency ms p50/p99 "
        + ", ".join(
            f"{ph} {p(v, 0.5):.1f}/{p(v, 0.99):.1f} (median {statistics.median(v) * 1000:.1f})"
            for ph, v in seconds.items()
        )
    )
