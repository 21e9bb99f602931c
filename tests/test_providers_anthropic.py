"""OpenAI <-> Anthropic conversion: unit-level, then a round trip over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from assay.providers import ChatRequest, ChatResult, ModelCaller, ProviderError
from assay.providers.anthropic_client import DEFAULT_MAX_TOKENS, from_anthropic, to_anthropic

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "not json"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "And this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ],
    },
]


def test_request_conversion() -> None:
    params = {
        "temperature": 0,
        "seed": 7,
        "max_completion_tokens": 300,
        "stop": "END",
        "top_p": 0.5,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "presence_penalty": 0.1,
    }
    body = to_anthropic("claude-x", CONVERSATION, [TOOL], params)
    assert body["model"] == "claude-x"
    assert body["system"] == "Be brief.\n\nUse tools."
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0 and body["top_p"] == 0.5
    assert body["stop_sequences"] == ["END"]
    for dropped in (
        "seed",
        "presence_penalty",
        "max_completion_tokens",
        "stop",
        "parallel_tool_calls",
    ):
        assert dropped not in body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city.",
            "input_schema": TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    user, assistant, results = body["messages"]
    assert user == {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in Paris and Rome?"}],
    }
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {
            "type": "tool_use",
            "id": "call_2",
            "name": "get_weather",
            "input": {"_arguments": "not json"},
        },
    ]
    # Tool results and the next user turn merge into one user message (roles must alternate).
    assert results["role"] == "user"
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
        {"type": "text", "text": "And this picture?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = to_anthropic("c", [{"role": "user", "content": "x"}], [TOOL], {"tool_choice": choice})
    assert body["tool_choice"] == expected


def test_defaults_and_structured_output() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "v", "schema": schema}}
    body = to_anthropic(
        "c",
        [{"role": "user", "content": "x"}],
        None,
        {"response_format": fmt, "tool_choice": "auto"},
    )
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "response_format" not in body and "tool_choice" not in body and "tools" not in body
    assert "system" not in body
    json_object = to_anthropic(
        "c", [{"role": "user", "content": "x"}], None, {"response_format": {"type": "json_object"}}
    )
    assert "output_config" not in json_object and "response_format" not in json_object


def answer(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": content,
            "stop_reason": stop_reason,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
        }
    )


def test_response_conversion() -> None:
    data = answer(
        [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Let me check. "},
            {"type": "text", "text": "One moment."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}},
        ],
        "tool_use",
        cache_read_input_tokens=100,
    )
    out = from_anthropic(data)
    assert out["message"] == {
        "role": "assistant",
        "content": "Let me check. One moment.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            }
        ],
    }
    assert out["finish_reason"] == "tool_calls"
    assert (out["input_tokens"], out["output_tokens"]) == (110, 5)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length")],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    out = from_anthropic(answer([{"type": "text", "text": "hi"}], stop_reason))
    assert out["finish_reason"] == finish
    assert out["message"] == {"role": "assistant", "content": "hi"}


def test_refusal_and_malformed_answers() -> None:
    with pytest.raises(ProviderError) as refusal:
        from_anthropic(answer([], "refusal"))
    assert refusal.value.kind == "refusal"
    for bad in (b'{"content": "nope"}', b"[1, 2]", b'{"id": "msg'):
        with pytest.raises(ProviderError) as malformed:
            from_anthropic(bad)
        assert malformed.value.kind == "malformed_response"


# --- over HTTP --------------------------------------------------------------------------------


def complete(caller_args: Any, requests: list[ChatRequest]) -> list[ChatResult]:
    async def go() -> list[ChatResult]:
        async with ModelCaller(caller_args) as caller:
            return [await caller.complete(r) for r in requests]

    return asyncio.run(go())


def test_tool_round_trip_over_http(fake_llm) -> None:
    info = fake_llm.model_info(
        "claude", "anthropic", price_input_per_mtok=3, price_output_per_mtok=15
    )
    first_turn = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    (first,) = complete(info, [ChatRequest(messages=first_turn, tools=[TOOL])])
    assert first.finish_reason == "tool_calls"
    call = first.message["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"x"}'}
    assert first.text.startswith("[claude] ")
    assert first.cost_usd == pytest.approx(first.input_tokens * 3e-6 + first.output_tokens * 15e-6)

    second_turn = [
        *first_turn,
        first.message,
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"},
    ]
    (second,) = complete(info, [ChatRequest(messages=second_turn, tools=[TOOL])])
    assert second.finish_reason == "stop" and "tool_calls" not in second.message
    sent = fake_llm.requests("claude")[1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "Be brief."
    assert sent["body"]["messages"][1]["content"][-1]["type"] == "tool_use"
    assert sent["body"]["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}
    ]


def test_judge_with_structured_output_over_http(fake_llm) -> None:
    schema = {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "score": {"type": "integer", "minimum": 0, "maximum": 3},
        },
    }
    request = ChatRequest(
        messages=[
            {"role": "system", "content": 'Answer in JSON with "reasoning" and "score".'},
            {"role": "user", "content": "The response: SCORE_HINT=2"},
        ],
        params={"temperature": 0, "seed": 1},
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}},
    )
    (result,) = complete(fake_llm.model_info("judge", "anthropic"), [request])
    assert orjson.loads(result.text)["score"] == 2
    body = fake_llm.requests("judge")[0]["body"]
    assert body["output_config"]["format"]["schema"] == schema
    assert body["temperature"] == 0 and "seed" not in body


def test_base_url_with_v1_is_accepted(fake_llm) -> None:
    info = fake_llm.model_info("c", "anthropic").model_copy(update={"base_url": fake_llm.base_url})
    (result,) = complete(info, [ChatRequest(messages=[{"role": "user", "content": "hi"}])])
    assert result.text.startswith("[c] ")
    assert fake_llm.requests("c")[0]["path"] == "/v1/messages"
