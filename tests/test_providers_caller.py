"""ModelCaller end to end over HTTP: what is sent, what comes back, what it costs, and where
the API key goes (the request header, and nowhere else)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from assay.providers import (
    ChatRequest,
    ChatResult,
    ModelCaller,
    ModelInfo,
    ProviderError,
    add_model,
)
from assay.providers.endpoints import DUMMY_API_KEY
from assay.store import open_store

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]
JUDGE_SYSTEM = (
    'You are a strict grader. Reply with a JSON object with keys "reasoning" and "score", '
    "the score an integer from 1 to 5."
)
SECRET = "sk-test-SECRET-0123456789abcdefABCDEF"


def complete(info: ModelInfo, request: ChatRequest, **options: Any) -> ChatResult:
    async def go() -> ChatResult:
        async with ModelCaller(info, **options) as caller:
            return await caller.complete(request)

    return asyncio.run(go())


def test_usage_and_cost_come_from_the_response_and_prices(fake_llm) -> None:
    info = fake_llm.model_info("m", price_input_per_mtok=2.0, price_output_per_mtok=8.0)
    result = complete(info, ChatRequest(messages=[{"role": "user", "content": "price me"}]))
    stats = fake_llm.stats("m")
    assert (result.input_tokens, result.output_tokens) == (
        stats["input_tokens"],
        stats["output_tokens"],
    )
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert result.cost_usd == pytest.approx(
        result.input_tokens * 2e-6 + result.output_tokens * 8e-6
    )
    assert result.finish_reason == "stop"
    assert result.message["role"] == "assistant" and result.text == result.message["content"]
    assert result.latency_ms > 0


def test_free_endpoint_costs_nothing(fake_llm) -> None:
    result = complete(
        fake_llm.model_info("m"), ChatRequest(messages=[{"role": "user", "content": "x"}])
    )
    assert result.cost_usd == 0.0


def test_request_params_override_endpoint_params(fake_llm) -> None:
    info = fake_llm.model_info("m", params={"temperature": 0.7, "max_tokens": 50, "top_p": 0.9})
    request = ChatRequest(
        messages=[{"role": "user", "content": "hi"}], params={"temperature": 0, "seed": 42}
    )
    complete(info, request)
    body = fake_llm.requests("m")[0]["body"]
    assert body == {
        "temperature": 0,
        "max_tokens": 50,
        "top_p": 0.9,
        "seed": 42,
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_tools_are_sent_and_tool_calls_come_back(fake_llm) -> None:
    info = fake_llm.model_info("m", params={"tool_choice": "auto"})
    result = complete(
        info, ChatRequest(messages=[{"role": "user", "content": "order 7?"}], tools=TOOLS)
    )
    assert fake_llm.requests("m")[0]["body"]["tools"] == TOOLS
    assert result.finish_reason == "tool_calls"
    call = result.message["tool_calls"][0]
    assert call["function"] == {"name": "lookup_order", "arguments": '{"order_id":"x"}'}
    assert result.text == ""


def test_tool_choice_is_dropped_when_a_row_has_no_tools(fake_llm) -> None:
    info = fake_llm.model_info("m", params={"tool_choice": "auto", "parallel_tool_calls": False})
    complete(info, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    body = fake_llm.requests("m")[0]["body"]
    assert "tool_choice" not in body and "parallel_tool_calls" not in body and "tools" not in body


def test_response_format_is_passed_through_for_a_judge(fake_llm) -> None:
    schema = {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
        },
    }
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }
    request = ChatRequest(
        messages=[
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": "Response: SCORE_HINT=4"},
        ],
        params={"temperature": 0, "seed": 0},
        response_format=fmt,
    )
    result = complete(fake_llm.model_info("judge"), request)
    assert fake_llm.requests("judge")[0]["body"]["response_format"] == fmt
    assert result.text.startswith('{"reasoning":') and result.text.endswith('"score":4}')


# --- the API key ------------------------------------------------------------------------------


def test_key_is_read_from_the_environment_at_call_time(fake_llm, monkeypatch) -> None:
    monkeypatch.delenv("ASSAY_TEST_KEY", raising=False)
    info = fake_llm.model_info("m", api_key_env="ASSAY_TEST_KEY")
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])

    async def go() -> None:
        async with ModelCaller(info) as caller:  # built before the variable exists
            monkeypatch.setenv("ASSAY_TEST_KEY", "key-one")
            await caller.complete(request)
            monkeypatch.setenv("ASSAY_TEST_KEY", "key-two")
            await caller.complete(request.model_copy(update={"params": {"seed": 1}}))

    asyncio.run(go())
    assert [r["auth"] for r in fake_llm.requests("m")] == ["Bearer key-one", "Bearer key-two"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_missing_key_variable_is_a_clear_error_without_a_call(
    fake_llm, monkeypatch, provider
) -> None:
    monkeypatch.delenv("ASSAY_TEST_MISSING", raising=False)
    info = fake_llm.model_info("m", provider, api_key_env="ASSAY_TEST_MISSING")
    with pytest.raises(ProviderError) as caught:
        complete(info, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    error = caught.value
    assert (error.kind, error.attempts, error.endpoint) == ("auth", 0, "m")
    assert "environment variable ASSAY_TEST_MISSING is not set" in str(error)
    assert fake_llm.stats("m")["attempts"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_endpoint_without_key_variable_sends_a_dummy_key(fake_llm, provider) -> None:
    complete(
        fake_llm.model_info("m", provider),
        ChatRequest(messages=[{"role": "user", "content": "hi"}]),
    )
    assert fake_llm.requests("m")[0]["auth"] == f"Bearer {DUMMY_API_KEY}"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_rejected_key_never_appears_in_the_error(fake_llm, monkeypatch, provider) -> None:
    monkeypatch.setenv("ASSAY_TEST_KEY", SECRET)
    fake_llm.configure("m", script=["401"])  # the server echoes the key, like real providers
    info = fake_llm.model_info("m", provider, api_key_env="ASSAY_TEST_KEY")
    with pytest.raises(ProviderError) as caught:
        complete(info, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    error = caught.value
    assert SECRET in fake_llm.requests("m")[0]["auth"]  # it was sent...
    for text in (str(error), error.message, repr(error), repr(error.args)):
        assert SECRET not in text and SECRET[:8] not in text  # ...and never repeated
    assert error.kind == "auth" and "***" in error.message


def test_the_key_never_reaches_the_database(fake_llm, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASSAY_TEST_KEY", SECRET)
    with open_store(f"sqlite:///{tmp_path / 'assay.db'}", home=tmp_path) as store:
        info = add_model(
            store, "m", base_url=fake_llm.base_url, model_id="m", api_key_env="ASSAY_TEST_KEY"
        )

        async def go() -> None:
            async with ModelCaller(info, store) as caller:
                for i in range(5):
                    await caller.complete(
                        ChatRequest(messages=[{"role": "user", "content": f"{i}"}])
                    )
                fake_llm.configure("m", script=["401"])
                with pytest.raises(ProviderError):
                    await caller.complete(ChatRequest(messages=[{"role": "user", "content": "x"}]))

        asyncio.run(go())
    assert all(r["auth"] == f"Bearer {SECRET}" for r in fake_llm.requests("m"))
    files = sorted(tmp_path.glob("assay.db*"))
    assert files and sum(f.stat().st_size for f in files) > 0
    for file in files:  # the database, and its WAL/SHM files
        data = file.read_bytes()
        assert SECRET.encode() not in data and SECRET[8:24].encode() not in data
    assert b"ASSAY_TEST_KEY" in b"".join(f.read_bytes() for f in files)  # the name is stored
