"""The proxy routes a deployment alias to its current model, and the loop closes:
capture (through the alias) -> eval dataset from that traffic -> run group -> gate ->
promote -> capture again (now served by the promoted model) -> rollback.

Real HTTP on loopback throughout: the official openai SDK calls ``assay proxy`` (uvicorn in a
thread), which forwards to two small OpenAI-compatible upstreams standing for two deployed
models; the judge is the fake LLM server; the store is a SQLite file or a Postgres schema.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import select

from assay.capture import CaptureProxy, create_proxy
from assay.capture.records import Capture
from assay.capture.routing import AliasRouter
from assay.providers.endpoints import add_model
from assay.store import Store
from assay.store.models import Inference
from support.fixtures import FakeLLMHandle
from support.served import Served, http_request_body

CLIENT_KEY = "sk-client-Hq27vLm9CLIENTkey4410"
UPSTREAM2_KEY = "sk-deploy-Pz55wQ1nDEPLOYkey8812"
KEY_ENV = "ASSAY_TEST_ROUTING_KEY"
HELLO: Any = {"role": "user", "content": "hi"}


class Upstream:
    """An OpenAI-compatible model server that says who it is (and, for the judge, how good)."""

    def __init__(self, label: str, score_hint: int) -> None:
        self.label = label
        self.score_hint = score_hint
        self.seen: list[dict[str, Any]] = []  # model and authorization of every call

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await http_request_body(scope, receive, send)
        if body is None:
            return
        request = orjson.loads(body)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"model": request.get("model"), "auth": headers.get("authorization")})
        content = f"served by {self.label} SCORE_HINT={self.score_hint}"
        answer = {
            "id": f"chatcmpl-{len(self.seen)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": request.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        }  # fmt: skip
        await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream, str, str]]:
    one, two = Upstream("one", 6), Upstream("two", 9)
    served = [Served(one), Served(two)]
    try:
        yield one, two, f"{served[0].url}/v1", f"{served[1].url}/v1"
    finally:
        for s in served:
            s.stop()


@pytest.fixture
def proxy(
    fake_llm: FakeLLMHandle, database_url: str, assay_home: Path
) -> Iterator[tuple[CaptureProxy, openai.OpenAI]]:
    app = create_proxy(fake_llm.root_url, database_url=database_url, home=assay_home)
    served = Served(app)
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    try:
        yield app, client
    finally:
        served.stop()


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _ask(client: openai.OpenAI, question: str) -> str:
    got = client.chat.completions.create(
        model="prod-chat",
        messages=[{"role": "user", "content": question}],
        extra_headers={"x-assay-task": "support"},
    )
    return got.choices[0].message.content or ""


def _until_served_by(client: openai.OpenAI, label: str) -> None:
    """Ask until ``label`` answers: the proxy re-reads aliases every couple of seconds."""
    deadline = time.monotonic() + 20
    while f"served by {label}" not in _ask(client, "Still there?"):
        if time.monotonic() > deadline:
            pytest.fail(f"the proxy never routed prod-chat to upstream {label}")
        time.sleep(0.1)


def _records(store: Store) -> list[Inference]:
    with store.session() as session:
        return list(session.scalars(select(Inference).order_by(Inference.id)))


@pytest.mark.slow
def test_capture_eval_gate_promote_capture_rollback(
    cli: Any,
    store: Store,
    fake_llm: FakeLLMHandle,
    upstreams: tuple[Upstream, Upstream, str, str],
    proxy: tuple[CaptureProxy, openai.OpenAI],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, two, url_one, url_two = upstreams
    app, client = proxy
    monkeypatch.setenv(KEY_ENV, UPSTREAM2_KEY)  # the proxy's (and the engine's) environment
    _ok(cli("model", "add", "m1", "--base-url", url_one, "--model-id", "model-one"))
    _ok(cli("model", "add", "m2", "--base-url", url_two, "--model-id", "model-two",
            "--api-key-env", KEY_ENV))  # fmt: skip
    _ok(cli("model", "add", "judge", "--base-url", fake_llm.base_url, "--model-id", "judge"))
    _ok(cli("alias", "set", "prod-chat", "m1"))

    # Capture: the application asks for the alias; upstream one (model-one) answers.
    for i in range(12):
        assert _ask(client, f"Question {i}?").startswith("served by one")
    assert {s["model"] for s in one.seen} == {"model-one"} and two.seen == []
    assert {s["auth"] for s in one.seen} == {f"Bearer {CLIENT_KEY}"}  # m1 names no key
    assert app.flush(20)
    records = _records(store)
    assert len(records) == 12
    assert {(r.model, r.metadata_.get("alias"), r.success) for r in records} == {
        ("model-one", "prod-chat", True)
    }
    assert all(r.request_body["model"] == "model-one" for r in records)

    # Eval on that traffic, gate, promote the candidate that passed.
    _ok(cli("dataset", "create", "live", "--type", "eval", "--from-traffic",
            "--metadata", "alias=prod-chat"))  # fmt: skip
    _ok(cli("rubric", "create", "right", "--template", "correctness"))
    _ok(cli("eval", "create", "e", "--dataset", "live", "--rubric", "right", "--judge", "judge",
            "--baseline", "m1", "--candidate", "m2"))  # fmt: skip
    _ok(cli("run", "start", "e"))
    policy = tmp_path / "policy.yaml"
    policy.write_text("default:\n  min_paired_rows: 10\n")
    gate = cli("gate", "1", "--policy", str(policy), "--resamples", "1000")
    assert gate.exit_code == 0, (gate.stdout, gate.stderr)
    _ok(cli("promote", "1", "--candidate", "m2", "--alias", "prod-chat", "--actor", "ci"))

    # Capture again: the alias now reaches upstream two, with the deployment's own key.
    _until_served_by(client, "two")
    before = len(two.seen)
    assert _ask(client, "And now?").startswith("served by two")
    assert two.seen[before:] == [{"model": "model-two", "auth": f"Bearer {UPSTREAM2_KEY}"}]
    assert app.flush(20)
    latest = _records(store)[-1]
    assert (latest.model, latest.metadata_["alias"], latest.success) == (
        "model-two", "prod-chat", True
    )  # fmt: skip
    stored = json.dumps([r.request_body for r in _records(store)], default=str)
    assert UPSTREAM2_KEY not in stored and CLIENT_KEY not in stored

    # Rollback: back to upstream one.
    _ok(cli("alias", "rollback", "prod-chat", "--reason", "complaints"))
    _until_served_by(client, "one")
    before = len(one.seen)
    assert _ask(client, "Back?").startswith("served by one")
    assert one.seen[before:] == [{"model": "model-one", "auth": f"Bearer {CLIENT_KEY}"}]
    history = json.loads(_ok(cli("alias", "history", "prod-chat", "--json")).stdout)
    assert [e["action"] for e in history] == ["rollback", "promote", "set"]


def test_other_models_pass_through_and_unroutable_aliases_answer_clearly(
    cli: Any,
    store: Store,
    fake_llm: FakeLLMHandle,
    proxy: tuple[CaptureProxy, openai.OpenAI],
) -> None:
    app, client = proxy
    add_model(store, "tiny", provider="local")
    add_model(store, "claude", provider="anthropic", base_url="http://127.0.0.1:9/",
              model_id="claude-x")  # fmt: skip
    _ok(cli("alias", "set", "edge", "tiny"))
    _ok(cli("alias", "set", "prod-claude", "claude"))
    # Not an alias: forwarded untouched to the proxy's upstream (the fake LLM).
    plain = client.chat.completions.create(model="plain-model", messages=[HELLO])
    assert plain.model == "plain-model" and fake_llm.requests("plain-model")
    # An alias on a local in-process model cannot be routed: a JSON error saying what to do.
    base = str(client.base_url).rstrip("/")
    local = httpx.post(f"{base}/chat/completions", json={"model": "edge", "messages": []})
    assert local.status_code == 502
    message = local.json()["error"]["message"]
    assert "alias 'edge' points at model 'tiny'" in message and "assay alias set edge" in message
    # An Anthropic model asked through the OpenAI API: refused, not mistranslated.
    with pytest.raises(openai.BadRequestError, match="does not translate between APIs"):
        client.chat.completions.create(model="prod-claude", messages=[HELLO])
    assert app.flush(20)
    refused = [r for r in _records(store) if r.metadata_.get("alias")]
    assert sorted((r.metadata_["alias"], r.status_code) for r in refused) == [
        ("edge", 502),
        ("prod-claude", 400),
    ]


def test_router_refreshes_its_table_after_the_ttl(cli: Any, store: Store) -> None:
    """The table in memory follows the store within one TTL, and the first request loads it."""
    add_model(store, "a", base_url="http://127.0.0.1:9/v1", model_id="model-a")
    add_model(store, "b", base_url="http://127.0.0.1:9/v1", model_id="model-b")
    _ok(cli("alias", "set", "live", "a"))
    router = AliasRouter(lambda: store, ttl_seconds=0.05)

    async def model_for(alias: str) -> str | None:
        capture = Capture(
            uid="u",
            started_at=datetime.now(UTC),
            method="POST",
            path="/v1/chat/completions",
            provider="openai",
            request_body=b"",
        )
        routed = await router.route(orjson.dumps({"model": alias}), [], capture)
        return None if routed is None else orjson.loads(routed.body)["model"]

    async def scenario() -> None:
        assert await model_for("live") == "model-a"
        assert await model_for("not-an-alias") is None
        _ok(cli("alias", "set", "live", "b"))
        deadline = time.monotonic() + 10
        while await model_for("live") != "model-b":
            assert time.monotonic() < deadline, "the router never saw the new target"
            await asyncio.sleep(0.02)

    asyncio.run(scenario())
