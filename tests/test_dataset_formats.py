"""One JSONL line: both formats, OpenAI and Anthropic source lines, every rejection, the hash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from assay.datasets import LineError, ParsedRow, content_hash, parse_line

DATA = Path(__file__).parent / "data" / "datasets"


def parse(obj: Any) -> ParsedRow:
    return parse_line(orjson.dumps(obj))


def rejected(obj: Any) -> str:
    with pytest.raises(LineError) as info:
        parse_line(obj if isinstance(obj, bytes) else orjson.dumps(obj))
    return info.value.reason


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str | None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def lines(name: str) -> list[ParsedRow]:
    return [parse_line(line) for line in (DATA / name).read_bytes().splitlines()]


# --- chat ---------------------------------------------------------------------------------------


def test_chat_last_assistant_turn_is_the_reference_and_id_goes_to_metadata() -> None:
    row = parse({"id": "r1", "messages": [user("Hi"), assistant("Hello!")], "metadata": {"k": 1}})
    assert row.format == "chat"
    assert row.messages == [user("Hi")]
    assert row.reference == assistant("Hello!")
    assert row.metadata == {"k": 1, "id": "r1"}
    assert row.tools is None and row.params is None
    assert row.content_hash == content_hash([user("Hi")], None)


def test_chat_without_final_assistant_turn_has_no_reference() -> None:
    row = parse({"messages": [{"role": "system", "content": "S"}, user("Hi")]})
    assert row.reference is None
    assert [m["role"] for m in row.messages] == ["system", "user"]


def test_chat_explicit_null_reference_keeps_a_final_assistant_turn_as_context() -> None:
    row = parse({"messages": [user("Write"), assistant("Once")], "reference": None})
    assert row.reference is None
    assert row.messages[-1] == assistant("Once")


def test_chat_top_level_keys_are_metadata_and_params_are_kept() -> None:
    row = parse(
        {
            "messages": [user("Hi"), assistant("Yo")],
            "category": "greeting",
            "metadata": {"category": "overridden", "x": 1},
            "params": {"model": "m", "temperature": 0.5},
        }
    )
    assert row.metadata == {"category": "greeting", "x": 1}
    assert row.params == {"model": "m", "temperature": 0.5}


def test_chat_rich_fixture_parses_tools_calls_parts_and_ids() -> None:
    rows = lines("chat_rich.jsonl")
    assert [r.metadata.get("id") for r in rows] == [
        "faq-1",
        "tool-1",
        3,
        None,
        "open-1",
        "prefill-1",
    ]
    orders = rows[1]
    assert [m["role"] for m in orders.messages] == ["user", "assistant", "tool"]
    assert orders.messages[1]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert orders.tools is not None and orders.tools[0]["function"]["name"] == "lookup_order"
    assert orders.reference == assistant("Order A123 has shipped and should arrive in 2 days.")
    # A reference can be a tool call; the context then ends with the user turn.
    assert rows[3].reference is not None and rows[3].reference["tool_calls"]
    assert rows[3].metadata == {"task": "weather", "source": "prod-log"}
    assert rows[4].reference is None
    assert rows[5].reference is None and rows[5].messages[-1]["role"] == "assistant"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b'{"messages": [}', "not valid JSON"),
        (b'{"messages": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at column 18)"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b'{"prompt": "hi"}', "missing 'messages' (chat format) or 'request' (source-backed"),
        (b'{"messages": [], "request": {}}', "has both 'messages' (chat format) and 'request'"),
        (b'{"messages": []}', "messages: expected a non-empty list of messages, got an empty"),
        (b'{"messages": "hi"}', "messages: expected a non-empty list of messages, got string"),
        (b'{"messages": [1]}', "messages[0]: expected a message object, got number"),
    ],
)
def test_malformed_lines_are_rejected_with_a_reason(line: bytes, reason: str) -> None:
    assert reason in rejected(line)


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([{"role": "robot", "content": "x"}], "messages[0].role: 'robot' is not a valid role"),
        ([{"content": "x"}], "messages[0].role: missing 'role' (expected system, developer"),
        (
            [user("q"), {"role": "tool", "content": "r"}],
            "messages[1]: a tool message needs a 'tool_call_id'",
        ),
        ([{"role": "user"}], "messages[0].content: missing"),
        ([{"role": "user", "content": 5}], "messages[0].content: expected a string or a list"),
        (
            [{"role": "user", "content": [{"text": "x"}]}],
            "messages[0].content[0]: expected a content part",
        ),
        (
            [{"role": "user", "content": [{"type": "text"}]}],
            "messages[0].content[0].text: expected a string",
        ),
        (
            [user("q"), assistant(None)],
            "messages[1]: an assistant message needs content or tool_calls",
        ),
        (
            [user("q"), {"role": "user", "content": "x", "tool_calls": []}],
            "only assistant messages have tool_calls",
        ),
        (
            [user("q"), assistant(None, tool_calls=[{"function": {"arguments": "{}"}}])],
            "tool_calls[0].function.name",
        ),
        ([assistant("only")], "no context before the final assistant message"),
        (
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
            "'tool_result' is an Anthropic content block",
        ),
    ],
)
def test_bad_chat_messages_are_rejected_with_the_field_path(
    messages: list[Any], reason: str
) -> None:
    assert reason in rejected({"messages": messages})


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"metadata": [1]}, "metadata: expected an object, got array"),
        ({"tools": {"a": 1}}, "tools: expected a list of tool definitions, got object"),
        ({"tools": [{"name": "t", "input_schema": {}}]}, "tools[0]: an Anthropic tool definition"),
        ({"params": {"messages": []}}, "params.messages: not a request setting"),
        ({"reference": user("x")}, "reference.role: expected 'assistant', got 'user'"),
    ],
)
def test_bad_chat_fields_are_rejected(extra: dict[str, Any], reason: str) -> None:
    assert reason in rejected({"messages": [user("q")], **extra})


def test_nul_characters_are_rejected_because_postgres_cannot_store_them() -> None:
    reason = rejected(b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}')
    assert "NUL character" in reason
    # An escaped backslash followed by "u0000" is ordinary text.
    assert parse_line(b'{"messages": [{"role": "user", "content": "a\\\\u0000b"}]}')


# --- source-backed: OpenAI -----------------------------------------------------------------------


def test_openai_source_lines_keep_params_and_clean_the_reference() -> None:
    extract, tool, open_ = lines("openai_source.jsonl")
    assert extract.format == "source"
    assert extract.params == {
        "model": "gpt-4o",
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    assert extract.reference == assistant(
        '{"city": "Lyon"}'
    )  # refusal: null, annotations: [] dropped
    assert [m["role"] for m in extract.messages] == ["system", "user"]
    assert tool.tools is not None and tool.reference is not None
    assert tool.reference["tool_calls"][0]["function"]["arguments"] == '{"city":"Rome"}'
    assert tool.metadata == {"env": "prod"}
    assert open_.reference is None and open_.params == {"model": "gpt-4o-mini"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            {"request": "x", "response": None},
            "request: expected the provider request object, got string",
        ),
        ({"request": {"messages": [user("q")]}}, "missing 'response'"),
        ({"request": {"model": "m"}, "response": None}, "request: missing 'messages'"),
        (
            {"request": {"messages": [user("q")]}, "response": []},
            "response: expected an object or null",
        ),
        (
            {
                "request": {"messages": [user("q")]},
                "response": {"error": {"message": "Rate limit reached"}},
            },
            "response is an error object (Rate limit reached)",
        ),
        (
            {
                "request": {"messages": [user("q")]},
                "response": {"type": "error", "error": {"message": "Overloaded"}},
            },
            "response is an error object (Overloaded)",
        ),
        (
            {"request": {"messages": [user("q")]}, "response": {"choices": []}},
            "response has no choices",
        ),
        ({"request": {"messages": [user("q")]}, "response": {}}, "response has no choices"),
        (
            {"request": {"messages": [{"role": "bot", "content": "x"}]}, "response": None},
            "request.messages[0].role: 'bot' is not a valid role",
        ),
    ],
)
def test_bad_source_lines_are_rejected(line: dict[str, Any], reason: str) -> None:
    assert reason in rejected(line)


# --- source-backed: Anthropic --------------------------------------------------------------------


def test_anthropic_requests_and_responses_map_to_openai_messages() -> None:
    simple, orders, image, no_response = lines("anthropic.jsonl")
    assert simple.messages == [
        {"role": "system", "content": "You are a careful assistant."},
        user("What is 2+2?"),
    ]
    assert simple.reference == assistant("4")
    assert simple.params == {"model": "claude-sonnet-4-5", "max_tokens": 1024}
    assert simple.metadata == {"task": "math"}

    assert orders.messages == [
        {"role": "system", "content": "You answer order questions."},
        user("Where is A123?"),
        {
            "role": "assistant",
            "content": "Let me check.",  # the thinking block is dropped
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id":"A123"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "shipped"},
        user("And when will it arrive?"),
    ]
    assert orders.tools == [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Look up an order.",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
    assert orders.params == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tool_choice": {"type": "auto"},
    }
    assert orders.reference == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "It has shipped; "},
            {"type": "text", "text": "expect it in 2 days."},
        ],
    }
    assert orders.metadata == {"request_id": "req_42"}

    assert image.messages[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGVsbG8="}},
        {"type": "text", "text": "What is this?"},
    ]
    assert image.reference is not None and image.reference["content"] is None
    assert image.reference["tool_calls"][0]["function"]["name"] == "classify"
    assert no_response.reference is None and no_response.messages[0]["role"] == "system"


@pytest.mark.parametrize(
    ("request_", "response", "reason"),
    [
        (
            {"system": "s", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]},
            None,
            "request mixes OpenAI (role 'tool') and Anthropic (top-level 'system') conventions",
        ),
        (
            {"system": "s", "messages": [{"role": "system", "content": "x"}]},
            None,
            "request mixes OpenAI",
        ),
        (
            {"system": "s", "messages": [{"role": "bot", "content": "x"}]},
            None,
            "'bot' is not valid in an Anthropic request",
        ),
        (
            {
                "system": "s",
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            None,
            "content block type 'document' is not supported in a user turn",
        ),
        (
            {"system": "s", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            None,
            "a tool_result block needs a 'tool_use_id'",
        ),
        ({"system": "s", "messages": []}, None, "request.messages: expected a non-empty list"),
        (
            {"messages": [user("q")]},
            {"type": "message", "content": "x"},
            "response.content: expected a list",
        ),
        (
            {"messages": [user("q")]},
            {"type": "message", "content": []},
            "needs text or tool_use blocks",
        ),
    ],
)
def test_bad_anthropic_lines_are_rejected(
    request_: dict[str, Any], response: dict[str, Any] | None, reason: str
) -> None:
    assert reason in rejected({"request": request_, "response": response})


# --- content hash --------------------------------------------------------------------------------


def call(arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


def test_content_hash_ignores_formatting_ids_and_part_splitting() -> None:
    base = [
        {"role": "system", "content": "Be  brief.\n"},
        {"role": "user", "content": "Hello   world"},
        assistant(None, tool_calls=[call('{"a": 1, "b": [1, 2]}')]),
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]
    same = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}],
        },
        assistant(None, tool_calls=[call('{"b":[1,2],"a":1}', call_id="call_XYZ")]),
        {"role": "tool", "tool_call_id": "call_XYZ", "content": " ok "},
    ]
    assert content_hash(base, None) == content_hash(same, [])


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.__setitem__(1, user("Hello there")),
        lambda m: m.__setitem__(1, {"role": "assistant", "content": "Hello world"}),
        lambda m: m.__setitem__(2, assistant(None, tool_calls=[call('{"a": 2}')])),
        lambda m: m.__setitem__(
            1,
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hello world"},
                    {"type": "image_url", "image_url": {"url": "u"}},
                ],
            },
        ),
        lambda m: m.pop(0),
    ],
)
def test_content_hash_changes_with_what_the_model_sees(change: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        user("Hello world"),
        assistant(None, tool_calls=[call('{"a": 1}')]),
    ]
    before = content_hash(messages, None)
    change(messages)
    assert content_hash(messages, None) != before


def test_content_hash_covers_tools_and_is_pinned() -> None:
    messages = [user("Hi")]
    tool = {"type": "function", "function": {"name": "t", "parameters": {}}}
    assert content_hash(messages, [tool]) != content_hash(messages, None)
    # Pinned: later issues store this hash (overlap, dedupe); changing it is a migration.
    canonical = b'{"messages":[{"role":"user","text":"Hi"}],"tools":[]}'
    assert content_hash(messages, None) == hashlib.sha256(canonical).hexdigest()
