"""The recording proxy end to end: the official SDKs -> ``assay proxy`` -> a local LLM server.

Real HTTP on loopback all the way: the proxy is served by uvicorn in a thread, the upstream is
the fake LLM (or, for what it cannot show, a tiny echo server below), records land in a real
SQLite file or Postgres schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from sqlalchemy import func, select

from assay.auth.tokens import create_token, revoke_token
from assay.capture import CaptureProxy, create_proxy, default_spool_path, replay_spool
from assay.capture.recorder import spool_records, write_records
from assay.providers.endpoints import add_model
from assay.store import Store, open_store
from assay.store.models import Inference, InferenceTag
from support.fixtures import FakeLLMHandle
from support.served import Served

API_KEY = "sk-test-Zq81vXb3SECRETkey7731"
SYSTEM = "You are a terse assistant for an online shop."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is it?"}]


# --- servers ---------------------------------------------------------------------------------


ANTHROPIC_EVENTS = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message",
     "role": "assistant", "model": "claude-x", "content": [], "stop_reason": None,
     "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
     "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
     "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
     "delta": {"type": "text_delta", "text": " there"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
     "delta": {"type": "input_json_delta", "partial_json": '{"order": '}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
     "delta": {"type": "input_json_delta", "partial_json": "42}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use",
     "stop_sequence": None}, "usage": {"output_tokens": 9}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip


class EchoUpstream:
    """What the fake LLM cannot show: the headers it got, a slow SSE stream, Anthropic SSE."""

    def __init__(self) -> None:
        self.release = threading.Event()  # lets the slow stream send its second chunk
        self.second_sent = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (message := await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        sse = [(b"content-type", b"text/event-stream")]
        if scope["path"] == "/v1/slow":
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
            for _ in range(500):  # until the test saw the first chunk (at most 5 s)
                if self.release.is_set():
                    break
                await asyncio.sleep(0.01)
            self.second_sent.set()
            await send({"type": "http.response.body", "body": b"data: two\n\n"})
        elif scope["path"] == "/v1/messages":
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            for name, data in ANTHROPIC_EVENTS:
                event = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            payload = orjson.dumps({"headers": headers, "body": body.decode()})
            json_head = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": json_head})
            await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def echo() -> Iterator[tuple[EchoUpstream, str]]:
    app = EchoUpstream()
    served = Served(app)
    try:
        yield app, served.url
    finally:
        app.release.set()
        served.stop()


class Running:
    """A proxy in front of ``upstream``, recording into ``database_url``."""

    def __init__(self, upstream: str, database_url: str, home: Path, **kwargs: Any) -> None:
        self.app: CaptureProxy = create_proxy(
            upstream, database_url=database_url, home=home, **kwargs
        )
        self.served = Served(self.app)
        self.base_url = f"{self.served.url}/v1"

    def flush(self) -> None:
        assert self.app.flush(20)

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=API_KEY, max_retries=0, **kwargs)

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture
def proxy(fake_llm: FakeLLMHandle, database_url: str, assay_home: Path) -> Iterator[Running]:
    running = Running(fake_llm.root_url, database_url, assay_home)
    try:
        yield running
    finally:
        running.stop()


def inferences(store: Store) -> list[Inference]:
    with store.session() as session:
        return list(session.scalars(select(Inference).order_by(Inference.id)))


def tags_of(store: Store, inference_id: int) -> dict[str, str]:
    with store.session() as session:
        rows = session.execute(
            select(InferenceTag.key, InferenceTag.value).where(
                InferenceTag.inference_id == inference_id
            )
        )
        return dict(rows.all())


# --- forwarding and recording ----------------------------------------------------------------


def test_non_streaming_call_is_forwarded_unchanged_and_recorded_with_tags(
    proxy: Running, fake_llm: FakeLLMHandle, store: Store
) -> None:
    add_model(store, "shop-model", base_url="http://x/v1", model_id="m1",
              price_input_per_mtok=2.0, price_output_per_mtok=8.0)  # fmt: skip
    direct = openai.OpenAI(base_url=fake_llm.base_url, api_key=API_KEY, max_retries=0)
    expected = direct.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
    client = proxy.openai(
        default_headers={
            "x-assay-environment": "prod",
            "x-assay-task": "support",
            "x-assay-metadata-customer": "acme",
            "x-assay-metadata-release": "2026.11",
        }
    )
    got = client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
    assert got.model_dump() == expected.model_dump()
    sent = fake_llm.requests("m1")[-1]
    assert sent["auth"] == f"Bearer {API_KEY}"  # the key is forwarded
    assert sent["body"]["messages"] == MESSAGES
    proxy.flush()

    [row] = inferences(store)
    assert (row.environment, row.task, row.provider, row.model) == (
        "prod",
        "support",
        "openai",
        "m1",
    )
    assert (row.method, row.path, row.status_code, row.success, row.error) == (
        "POST", "/v1/chat/completions", 200, True, None
    )  # fmt: skip
    assert row.streamed is False and row.ttft_ms is None and row.duration_ms > 0
    assert row.input_tokens == expected.usage.prompt_tokens  # type: ignore[union-attr]
    assert row.output_tokens == expected.usage.completion_tokens  # type: ignore[union-attr]
    assert row.cost_usd == pytest.approx((row.input_tokens * 2 + row.output_tokens * 8) / 1e6)
    assert row.prompt_hash == hashlib.sha256(SYSTEM.encode()).hexdigest()
    assert row.request_body["messages"] == MESSAGES and row.request_truncated is False
    assert row.response_body == expected.model_dump(exclude_unset=True)
    assert row.response_truncated is False
    assert row.metadata_ == {"customer": "acme", "release": "2026.11"}
    assert tags_of(store, row.id) == {"customer": "acme", "release": "2026.11"}
    assert len(row.uid) == 36


def test_untagged_call_goes_to_default_task_and_unknown_model_has_no_cost(
    proxy: Running, store: Store
) -> None:
    proxy.openai().chat.completions.create(model="m2", messages=MESSAGES[1:])  # type: ignore[arg-type]
    proxy.flush()
    [row] = inferences(store)
    assert (row.environment, row.task, row.metadata_) == ("default", "default", {})
    assert row.cost_usd is None and row.input_tokens is not None
    assert row.prompt_hash is None  # no system message


def test_tag_headers_are_stripped_and_upstream_header_overrides(
    proxy: Running, echo: tuple[EchoUpstream, str], store: Store
) -> None:
    _, echo_url = echo
    response = httpx.post(
        f"{proxy.base_url}/embeddings",
        json={"model": "e1", "input": "hi"},
        headers={
            "authorization": f"Bearer {API_KEY}",
            "x-assay-upstream": echo_url,
            "x-assay-task": "search",
            "x-assay-metadata-k": "v",
            "x-custom": "kept",
            "accept-encoding": "br, gzip;q=0.9, zstd",
        },
    )
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert not [name for name in seen if name.startswith("x-assay-")]
    assert seen["x-custom"] == "kept" and seen["authorization"] == f"Bearer {API_KEY}"
    assert seen["accept-encoding"] == "gzip;q=0.9"  # only codings the recorder can read
    assert orjson.loads(response.json()["body"]) == {"model": "e1", "input": "hi"}
    proxy.flush()
    [row] = inferences(store)
    assert (row.task, row.path, row.model) == ("search", "/v1/embeddings", "e1")


def test_streaming_is_passed_through_and_reassembled(
    proxy: Running, fake_llm: FakeLLMHandle, store: Store
) -> None:
    direct = openai.OpenAI(base_url=fake_llm.base_url, api_key=API_KEY, max_retries=0)
    expected = direct.chat.completions.create(model="m3", messages=MESSAGES)  # type: ignore[arg-type]
    stream = proxy.openai().chat.completions.create(
        model="m3",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert chunks[-1].usage is not None
    proxy.flush()
    [row] = inferences(store)
    assert row.streamed is True and row.success is True and row.ttft_ms is not None
    assert row.ttft_ms <= row.duration_ms
    message = row.response_body["choices"][0]["message"]
    assert message["content"] == expected.choices[0].message.content
    assert message["role"] == "assistant"
    assert row.response_body["choices"][0]["finish_reason"] == "stop"
    assert row.response_body["object"] == "chat.completion"
    assert row.input_tokens == chunks[-1].usage.prompt_tokens
    assert row.output_tokens == chunks[-1].usage.completion_tokens


def test_stream_chunks_reach_the_client_before_the_upstream_finishes(
    proxy: Running, echo: tuple[EchoUpstream, str]
) -> None:
    app, echo_url = echo
    with httpx.stream(
        "POST", f"{proxy.base_url}/slow", json={}, headers={"x-assay-upstream": echo_url}
    ) as response:
        lines = response.iter_lines()
        first = next(lines)
        # The upstream holds its second chunk until released: the proxy did not buffer.
        assert first == "data: one" and not app.second_sent.is_set()
        app.release.set()
        assert "data: two" in list(lines)


def test_anthropic_stream_through_the_sdk_is_reassembled(
    proxy: Running, echo: tuple[EchoUpstream, str], store: Store
) -> None:
    _, echo_url = echo
    client = anthropic.Anthropic(
        base_url=proxy.served.url,
        api_key=API_KEY,
        max_retries=0,
        default_headers={"x-assay-upstream": echo_url},
    )
    with client.messages.stream(
        model="claude-x", max_tokens=50, system=SYSTEM, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello there"  # type: ignore[union-attr]
    proxy.flush()
    [row] = inferences(store)
    assert (row.provider, row.model, row.streamed, row.success) == (
        "anthropic", "claude-x", True, True
    )  # fmt: skip
    assert row.response_body["content"] == [
        {"type": "text", "text": "Hello there"},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"order": 42}},
    ]
    assert row.response_body["stop_reason"] == "tool_use"
    assert (row.input_tokens, row.output_tokens) == (12, 9)
    assert row.prompt_hash == hashlib.sha256(SYSTEM.encode()).hexdigest()
    assert API_KEY not in orjson.dumps(row.request_body).decode()


def test_anthropic_non_streaming_call(
    proxy: Running, fake_llm: FakeLLMHandle, store: Store
) -> None:
    client = anthropic.Anthropic(base_url=proxy.served.url, api_key=API_KEY, max_retries=0)
    message = client.messages.create(
        model="c1", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert API_KEY in fake_llm.requests("c1")[-1]["auth"]  # the key is forwarded
    proxy.flush()
    [row] = inferences(store)
    assert (row.provider, row.path, row.success) == ("anthropic", "/v1/messages", True)
    assert row.output_tokens == message.usage.output_tokens


# --- errors ----------------------------------------------------------------------------------


def test_upstream_error_is_forwarded_unchanged_and_recorded(
    proxy: Running, fake_llm: FakeLLMHandle, store: Store
) -> None:
    fake_llm.configure("bad", script=["500", "500"])
    direct = httpx.post(
        f"{fake_llm.base_url}/chat/completions", json={"model": "bad", "messages": MESSAGES}
    )
    with pytest.raises(openai.InternalServerError) as caught:
        proxy.openai().chat.completions.create(model="bad", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 500
    assert caught.value.response.content == direct.content
    proxy.flush()
    [row] = inferences(store)
    assert (row.status_code, row.success) == (500, False)
    assert row.error == "HTTP 500: fake internal error"
    assert row.response_body == direct.json()


def test_unreachable_upstream_answers_502_and_is_recorded(proxy: Running, store: Store) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = proxy.openai(default_headers={"x-assay-upstream": f"http://127.0.0.1:{port}"})
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert f"upstream http://127.0.0.1:{port}/v1/chat/completions failed" in str(caught.value)
    proxy.flush()
    [row] = inferences(store)
    assert (row.status_code, row.success) == (502, False)
    assert row.error.startswith(f"upstream http://127.0.0.1:{port}/v1/chat/completions failed")


def test_api_key_is_nowhere_in_the_database_file(fake_llm: FakeLLMHandle, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'assay.db'}"
    running = Running(fake_llm.root_url, url, tmp_path / "home")
    try:
        fake_llm.configure("denied", script=["401"])  # echoes the refused key, like OpenAI
        client = running.openai(default_headers={"x-api-key": API_KEY, "x-assay-metadata-n": "1"})
        client.chat.completions.create(model="ok", messages=MESSAGES)  # type: ignore[arg-type]
        client.chat.completions.create(
            model="ok",
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
        ).close()
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="denied", messages=MESSAGES)  # type: ignore[arg-type]
        assert API_KEY in caught.value.message  # the application still sees the real answer
        running.flush()
    finally:
        running.stop()
    with open_store(url, home=tmp_path / "home") as store:
        rows = inferences(store)
        assert len(rows) == 3
        assert rows[2].error == "HTTP 401: Incorrect API key provided: [redacted]"
    data = b"".join(p.read_bytes() for p in (tmp_path / "db").iterdir())
    assert b"assay.db" not in data and len(data) > 10_000
    assert API_KEY.encode() not in data
    assert b"Zq81vXb3SECRET" not in data


def test_large_request_body_is_stored_truncated_with_a_flag(
    fake_llm: FakeLLMHandle, database_url: str, assay_home: Path, store: Store
) -> None:
    running = Running(fake_llm.root_url, database_url, assay_home, max_request_bytes=300)
    try:
        long = [MESSAGES[0], {"role": "user", "content": "x" * 2000}]
        running.openai().chat.completions.create(model="m1", messages=long)  # type: ignore[arg-type]
        assert fake_llm.requests("m1")[-1]["body"]["messages"] == long  # forwarded whole
        running.flush()
    finally:
        running.stop()
    [row] = inferences(store)
    assert row.request_truncated is True and row.success is True
    assert row.request_body["truncated"] is True and row.request_body["original_bytes"] > 2000
    assert len(row.request_body["prefix"]) == 300
    assert row.model == "m1" and row.prompt_hash == hashlib.sha256(SYSTEM.encode()).hexdigest()


# --- store outage, spool, replay -------------------------------------------------------------


def test_store_outage_spools_and_replays_exactly_once(
    fake_llm: FakeLLMHandle, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")  # the database's directory cannot be created: down
    url = f"sqlite:///{blocker / 'assay.db'}"
    running = Running(fake_llm.root_url, url, home, retry_seconds=0.2)
    spool = default_spool_path(home)
    try:
        client = running.openai(default_headers={"x-assay-metadata-batch": "outage"})
        for i in range(5):
            messages = [{"role": "user", "content": f"q{i}"}]
            client.chat.completions.create(model="m1", messages=messages)  # type: ignore[arg-type]
        running.flush()
        assert running.app.recorder.spooled == 5 and running.app.recorder.written == 0
        lines = spool.read_bytes().splitlines()
        assert len(lines) == 5 and API_KEY.encode() not in spool.read_bytes()

        blocker.unlink()  # the store is back
        blocker.mkdir()
        deadline = time.monotonic() + 15
        while running.app.recorder.written < 5:
            assert time.monotonic() < deadline, "the spool was not replayed"
            time.sleep(0.05)
        client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
        running.flush()
    finally:
        running.stop()
    assert not spool.exists()
    with open_store(url, home=home) as store:
        rows = inferences(store)
        assert len(rows) == 6 and len({r.uid for r in rows}) == 6
        assert sorted(r.request_body["messages"][0]["content"] for r in rows[:5]) == [
            f"q{i}" for i in range(5)
        ]
        assert tags_of(store, rows[0].id) == {"batch": "outage"}
        # A replay of the same records (a crash after commit, before the spool was removed)
        spool.parent.mkdir(parents=True, exist_ok=True)
        spool.write_bytes(b"\n".join(lines) + b"\n")
        assert replay_spool(store, spool) == 0
        assert len(inferences(store)) == 6 and not spool.exists()


def test_interrupted_replay_resumes_without_duplicates(store: Store, assay_home: Path) -> None:
    from datetime import UTC, datetime

    def record(i: int) -> dict[str, Any]:
        return {
            "uid": f"00000000-0000-0000-0000-{i:012d}", "started_at": datetime.now(UTC),
            "environment": "e", "task": "t", "provider": "openai", "model": "m", "method": "POST",
            "path": "/v1/chat/completions", "status_code": 200, "success": True, "error": None,
            "streamed": False, "duration_ms": 1.0, "ttft_ms": None, "input_tokens": 3,
            "output_tokens": 4, "cost_usd": None, "prompt_hash": None, "request_body": {"i": i},
            "request_truncated": False, "response_body": None, "metadata": {"i": str(i)},
            "tags": {"i": str(i)},
        }  # fmt: skip

    records = [record(i) for i in range(10)]
    spool = default_spool_path(assay_home)
    spool_records(spool, records)
    spool.with_suffix(".jsonl.replaying").write_bytes(spool.read_bytes())  # a replay died...
    spool.unlink()
    assert write_records(store, records[:4]) == 4  # ...after writing its first batch
    spool_records(spool, [record(10)])  # and the proxy spooled one more meanwhile
    with spool.open("ab") as handle:
        handle.write(b'{"uid": "torn')  # a crash mid-append
    assert replay_spool(store, spool, batch_size=3) == 7
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Inference)) == 11
        assert session.scalar(select(func.count()).select_from(InferenceTag)) == 11
    assert not spool.exists() and not spool.with_suffix(".jsonl.replaying").exists()


# --- large responses -------------------------------------------------------------------------


def test_large_responses_are_stored_truncated_with_a_flag_tokens_read_first(
    fake_llm: FakeLLMHandle,
    echo: tuple[EchoUpstream, str],
    database_url: str,
    assay_home: Path,
    store: Store,
    cli: Any,
) -> None:
    _, echo_url = echo
    running = Running(fake_llm.root_url, database_url, assay_home, max_response_bytes=150)
    try:
        client = running.openai()
        whole = client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
        big = httpx.post(  # the echo answer holds the request body: ~3 kB
            f"{running.base_url}/embeddings",
            json={"model": "e1", "input": "y" * 3000},
            headers={"x-assay-upstream": echo_url},
        )
        assert len(big.content) > 3000 and big.json()["body"].endswith("y" * 10 + '"}')
        stream = client.chat.completions.create(
            model="m1",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content  # the client gets it all
        running.flush()
    finally:
        running.stop()
    rows = inferences(store)
    assert [r.response_truncated for r in rows] == [True, True, True]
    assert [r.success for r in rows] == [True, True, True]
    plain, embedded, streamed = (r.response_body for r in rows)
    assert plain["truncated"] is True and len(plain["prefix"]) == 150
    assert plain["prefix"].startswith('{"id":') and plain["original_bytes"] > 150
    assert rows[0].output_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert embedded["original_bytes"] == len(big.content)
    assert embedded["prefix"] == big.content[:150].decode()
    # A stream is measured and cut as its reassembled JSON, not as the SSE it came in.
    assert streamed["truncated"] is True and streamed["prefix"].startswith('{"id":')
    usage = chunks[-1].usage
    assert usage is not None
    assert (rows[2].input_tokens, rows[2].output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )

    shown = cli("traffic", "show", str(rows[1].id))
    assert shown.exit_code == 0
    assert "response_truncated" in shown.stdout and "True" in shown.stdout
    as_json = orjson.loads(cli("traffic", "show", str(rows[1].id), "--json").stdout)
    assert as_json["response_truncated"] is True and as_json["request_truncated"] is False


# --- x-assay-upstream on a network bind ------------------------------------------------------


def test_upstream_override_on_a_network_bind_needs_an_assay_token(
    fake_llm: FakeLLMHandle,
    echo: tuple[EchoUpstream, str],
    database_url: str,
    assay_home: Path,
    store: Store,
) -> None:
    _, echo_url = echo
    token = create_token(store, "app").token
    revoked = create_token(store, "old").token
    revoke_token(store, "old")
    running = Running(fake_llm.root_url, database_url, assay_home, guard_upstream=True)
    body = {"model": "e1", "input": "hi"}
    url = f"{running.base_url}/embeddings"
    try:
        refused = [
            httpx.post(url, json=body, headers={"x-assay-upstream": echo_url, **extra})
            for extra in ({}, {"x-assay-token": "not-a-token-at-all"}, {"x-assay-token": revoked})
        ]
        allowed = httpx.post(
            url,
            json=body,
            headers={"x-assay-upstream": echo_url, "x-assay-token": token, "x-n": "1"},
        )
        plain = running.openai().chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
        running.flush()
    finally:
        running.stop()
    assert [r.status_code for r in refused] == [403, 403, 403]
    errors = [r.json()["error"] for r in refused]
    assert "needs an Assay API token in x-assay-token" in errors[0]["message"]
    assert errors[1]["message"].endswith("x-assay-token is not an active Assay token")
    assert errors[2]["message"] == errors[1]["message"]
    assert {e["type"] for e in errors} == {"assay_proxy_error"}
    assert allowed.status_code == 200
    seen = allowed.json()["headers"]
    assert seen["x-n"] == "1" and not [name for name in seen if name.startswith("x-assay-")]
    assert plain.choices[0].message.content  # no override: no token needed
    rows = inferences(store)  # the refused calls were not forwarded, so not recorded
    assert [r.path for r in rows] == ["/v1/embeddings", "/v1/chat/completions"]
    dumped = orjson.dumps([[r.request_body, r.response_body, r.metadata_] for r in rows])
    assert token.encode() not in dumped


def test_proxy_help_explains_the_upstream_override_rule(cli: Any) -> None:
    result = cli("proxy", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "x-assay-token" in text and "non-loopback" in text and "403" in text
    assert "--max-response-kb" in text
    refused = cli("proxy", "--max-response-kb", "0")
    assert refused.exit_code == 1
    assert "--max-response-kb must be at least 1, got 0" in refused.stderr


def test_proxy_on_a_network_address_refuses_an_unauthenticated_upstream_override(
    tmp_path: Path, echo: tuple[EchoUpstream, str]
) -> None:
    import os
    import subprocess
    import sys

    _, echo_url = echo
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ASSAY_HOME": str(tmp_path), "ASSAY_DATABASE_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "assay", "proxy", "--host", "0.0.0.0", "--port", str(port),
         "--upstream", echo_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                plain = httpx.post(url, json={"model": "e1", "input": "hi"}, timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "assay proxy did not start"
                time.sleep(0.2)
        overridden = httpx.post(
            url, json={"model": "e1", "input": "hi"}, headers={"x-assay-upstream": echo_url}
        )
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert plain.status_code == 200 and plain.json()["body"]
    assert overridden.status_code == 403
    assert "x-assay-token" in overridden.json()["error"]["message"]
