"""Streamed (SSE) answers rebuilt into the final message the non-streamed call would return.

A captured inference stores one response body whatever the transport, so that datasets and
the explorer never need to know whether the application streamed. Runs in the recorder's
worker thread, never on the request path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


def sse_events(raw: bytes) -> Iterator[tuple[str | None, str]]:
    """(event name, data) for each server-sent event in ``raw`` (multi-line data joined)."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            yield event, "\n".join(data)


def _json_events(raw: bytes) -> Iterator[tuple[str | None, dict[str, Any]]]:
    for event, data in sse_events(raw):
        if data.strip() == "[DONE]":
            continue
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield event, value


def reassemble(path: str, raw: bytes) -> dict[str, Any]:
    """The final message for a streamed answer on ``path`` (OpenAI or Anthropic)."""
    if path.endswith("/messages"):
        return _anthropic(raw)
    if path.endswith("/responses"):
        return _responses(raw)
    return _openai(raw)


def _openai(raw: bytes) -> dict[str, Any]:
    """Chat completions (``delta``) and legacy completions (``text``) chunks, merged."""
    final: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for _, chunk in _json_events(raw):
        if "error" in chunk:
            final["error"] = chunk["error"]
            continue
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                final[key] = chunk[key]
        if chunk.get("usage"):
            final["usage"] = chunk["usage"]
        for part in chunk.get("choices") or []:
            index = int(part.get("index", 0))
            choice = choices.setdefault(index, {"index": index, "finish_reason": None})
            if part.get("finish_reason") is not None:
                choice["finish_reason"] = part["finish_reason"]
            if "text" in part:  # /v1/completions
                choice["text"] = choice.get("text", "") + (part.get("text") or "")
            if isinstance(part.get("delta"), dict):
                _merge_delta(choice.setdefault("message", {"role": "assistant"}), part["delta"])
            if part.get("logprobs") is not None:
                choice["logprobs"] = part["logprobs"]
    is_chat = any("message" in c for c in choices.values())
    final["object"] = "chat.completion" if is_chat else "text_completion"
    final["choices"] = [_finish_choice(choices[i]) for i in sorted(choices)]
    return final


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            continue
        if key == "tool_calls":
            calls: list[dict[str, Any]] = message.setdefault("tool_calls", [])
            for call in value:
                _merge_tool_call(calls, call)
        elif key in ("content", "refusal", "reasoning_content") and isinstance(value, str):
            message[key] = (message.get(key) or "") + value
        else:
            message[key] = value


def _merge_tool_call(calls: list[dict[str, Any]], part: dict[str, Any]) -> None:
    index = int(part.get("index", len(calls)))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if part.get("id"):
        call["id"] = part["id"]
    if part.get("type"):
        call["type"] = part["type"]
    function = part.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _finish_choice(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message")
    if message is not None:
        message.setdefault("content", None)
    return choice


def _anthropic(raw: bytes) -> dict[str, Any]:
    """Messages API events: ``message_start``, content block deltas, ``message_delta``."""
    message: dict[str, Any] = {"type": "message", "role": "assistant", "content": []}
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, str] = {}
    for event, data in _json_events(raw):
        kind = data.get("type") or event
        if kind == "message_start":
            message.update({k: v for k, v in (data.get("message") or {}).items() if k != "content"})
        elif kind == "content_block_start":
            blocks[int(data.get("index", len(blocks)))] = dict(data.get("content_block") or {})
        elif kind == "content_block_delta":
            index = int(data.get("index", 0))
            _anthropic_delta(blocks.setdefault(index, {}), partial_json, index, data)
        elif kind == "message_delta":
            message.update({k: v for k, v in (data.get("delta") or {}).items()})
            usage = data.get("usage") or {}
            message["usage"] = {**(message.get("usage") or {}), **usage}
        elif kind == "error":
            message["error"] = data.get("error", data)
    for index, text in partial_json.items():
        try:
            blocks[index]["input"] = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            blocks[index]["input"] = text
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _anthropic_delta(
    block: dict[str, Any], partial_json: dict[int, str], index: int, data: dict[str, Any]
) -> None:
    delta = data.get("delta") or {}
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + delta.get("partial_json", "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature")
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))


def _responses(raw: bytes) -> dict[str, Any]:
    """Responses API: the ``response.completed`` (or failed/incomplete) event has it all."""
    final: dict[str, Any] = {}
    for _, data in _json_events(raw):
        if isinstance(data.get("response"), dict):
            final = data["response"]
        elif data.get("type") == "error":
            final = {**final, "error": data}
    return final
