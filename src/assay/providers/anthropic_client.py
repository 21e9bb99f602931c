"""Anthropic endpoints through the official ``anthropic`` SDK, speaking OpenAI shapes outside.

``to_anthropic`` converts an OpenAI-style request (system messages, tool calls and tool results,
image parts, tools, ``tool_choice``, ``response_format``, ``stop``, ``max_tokens``) into a
Messages API body; ``from_anthropic`` converts the answer back into an OpenAI-style assistant
message (``content`` and ``tool_calls``) with an OpenAI ``finish_reason``. OpenAI-only params
without an Anthropic equivalent (``seed``, penalties, ``logprobs``, ``n``...) are dropped;
anything else passes through, so Anthropic-native params (``thinking``, ``top_k``) work.

Like the OpenAI client, the body is posted pre-encoded through ``client.post`` and the answer
parsed once with orjson; the SDK's own retries are off.
"""

from __future__ import annotations

from typing import Any

import anthropic
import orjson

from assay.providers.endpoints import ModelInfo
from assay.providers.openai_client import SDKClient, post_raw
from assay.providers.types import ProviderError

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens; OpenAI requests often omit it
DROPPED_PARAMS = frozenset(
    {
        "seed",
        "n",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "stream_options",
        "store",
        "parallel_tool_calls",
        "user",
        "reasoning_effort",
        "max_completion_tokens",
        "response_format",
        "tool_choice",
        "stop",
        "max_tokens",
    }
)
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}


def to_anthropic(
    model_id: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """An OpenAI-style chat request -> an Anthropic Messages API request body."""
    body: dict[str, Any] = {k: v for k, v in params.items() if k not in DROPPED_PARAMS}
    body["model"] = model_id
    body["max_tokens"] = (
        params.get("max_tokens") or params.get("max_completion_tokens") or (DEFAULT_MAX_TOKENS)
    )
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        if role in ("tool", "function"):
            role, blocks = "user", [_tool_result(message)]
        elif role == "assistant":
            blocks = _blocks(message.get("content")) + [
                _tool_use(call) for call in message.get("tool_calls") or []
            ]
        else:
            role, blocks = "user", _blocks(message.get("content"))
        if turns and turns[-1]["role"] == role:  # Anthropic wants user/assistant alternation
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if system:
        body["system"] = "\n\n".join(s for s in system if s)
    body["messages"] = turns
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
        choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    schema = _json_schema(params.get("response_format"))
    if schema is not None:
        body["output_config"] = {**body.get("output_config", {}), "format": schema}
    return body


def from_anthropic(data: bytes) -> dict[str, Any]:
    """An Anthropic Messages API answer -> the normalized OpenAI-style answer."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(
            "malformed_response", f"the response is not valid JSON ({len(data)} bytes)"
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise ProviderError("malformed_response", "the response has no content list")
    stop_reason = body.get("stop_reason")
    if stop_reason == "refusal":
        raise ProviderError("refusal", "the model refused (stop_reason: refusal)")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    usage = body.get("usage") or {}
    input_tokens = usage.get("input_tokens")
    if input_tokens is not None:  # cached prompt tokens are input tokens too
        input_tokens += (usage.get("cache_creation_input_tokens") or 0) + (
            usage.get("cache_read_input_tokens") or 0
        )
    return {
        "message": message,
        "finish_reason": _STOP_REASONS.get(stop_reason, stop_reason),
        "input_tokens": input_tokens,
        "output_tokens": usage.get("output_tokens"),
        "model": body.get("model"),
        "id": body.get("id"),
    }


class AnthropicClient(SDKClient):
    """Calls one Anthropic endpoint."""

    def __init__(self, model: ModelInfo, timeout_s: float = 120.0) -> None:
        super().__init__(model, timeout_s)
        base = model.base_url.rstrip("/")
        self._base_url = base[:-3] if base.endswith("/v1") else base  # the SDK adds /v1

    def _new_client(self) -> anthropic.AsyncAnthropic:
        return self._make(anthropic, anthropic.AsyncAnthropic, self._base_url)

    def encode(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> bytes:
        return orjson.dumps(to_anthropic(self.model.model_id, messages, tools, params))

    async def send(self, content: bytes, api_key: str) -> dict[str, Any]:
        data = await post_raw(
            self._sdk(), "/v1/messages", content, api_key, self.timeout_s, anthropic.AnthropicError
        )
        return from_anthropic(data)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content -> Anthropic content blocks (empty text is dropped: refused)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image((part.get("image_url") or {}).get("url", "")))
        elif isinstance(part, dict) and kind not in ("text", None):
            blocks.append(part)  # already an Anthropic block (image, document...)
    return blocks


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        arguments = {"_arguments": raw}  # keep what the model said, even if not JSON
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments if isinstance(arguments, dict) else {"value": arguments},
    }


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id") or message.get("name"),
        "content": _text(message.get("content")),
    }


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if "input_schema" in tool:  # already Anthropic-shaped
        return tool
    function = tool.get("function") or {}
    converted = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        converted = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        converted = {"type": {"required": "any", "none": "none"}.get(str(choice), "auto")}
    if parallel is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    return converted


def _json_schema(response_format: Any) -> dict[str, Any] | None:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return {"type": "json_schema", "schema": schema}
    return None
