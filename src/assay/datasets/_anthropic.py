"""Anthropic Messages requests and responses, mapped to the OpenAI-style messages Assay stores.

The mapping (one direction: rows are always stored, compared and exported in the OpenAI form):

* ``system`` (string or text blocks) -> a first ``{"role": "system"}`` message.
* a ``text`` block -> ``{"type": "text", "text": ...}``; content that is a single text block
  becomes a plain string, several blocks stay a list of parts.
* an ``image`` block -> ``{"type": "image_url", "image_url": {"url": ...}}``, a ``data:`` URL
  for base64 sources.
* assistant ``tool_use`` blocks -> ``tool_calls`` ``{"id", "type": "function",
  "function": {"name", "arguments": <input as a JSON string>}}``.
* user ``tool_result`` blocks -> ``{"role": "tool", "tool_call_id": tool_use_id, "content"}``
  messages, placed before the rest of that user turn (OpenAI wants tool results right after
  the assistant turn that called them). ``is_error`` is not kept.
* ``thinking`` / ``redacted_thinking`` blocks are dropped (they are not part of the answer);
  ``cache_control`` markers are dropped. Other block types are rejected as unsupported.
* tools ``{"name", "description", "input_schema"}`` -> ``{"type": "function", "function":
  {"name", "description", "parameters"}}``; server tools (no ``input_schema``) are kept as given.
* the response's ``content`` blocks -> the reference assistant message, by the same rules.
* every other request field (model, max_tokens, temperature, tool_choice, ...) -> params.

Functions here raise ``ValueError`` with a user-facing reason; ``formats`` turns it into a
line error.
"""

from __future__ import annotations

from typing import Any

import orjson

ANTHROPIC_ONLY_BLOCKS = frozenset(
    {"tool_use", "tool_result", "thinking", "redacted_thinking", "server_tool_use"}
)
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_OPENAI_ONLY_ROLES = frozenset({"system", "developer", "tool"})


def is_anthropic_block(part: dict[str, Any]) -> bool:
    """A content block only the Anthropic API uses (an OpenAI message never contains one)."""
    kind = part.get("type")
    if not isinstance(kind, str):  # a list or object here is invalid, and unhashable
        return False
    return kind in ANTHROPIC_ONLY_BLOCKS or (kind in ("image", "document") and "source" in part)


def uses_anthropic(request: dict[str, Any], response: dict[str, Any] | None) -> bool:
    """Whether a source-backed line is an Anthropic Messages call rather than OpenAI's.

    Decided from unambiguous markers on either side; a line carrying markers of both is an
    error. A line with no marker at all (plain user/assistant strings, no response) reads the
    same either way and is treated as OpenAI.
    """
    anthropic: list[str] = []
    openai: list[str] = []
    if response is not None:
        if "choices" in response:
            openai.append("response.choices")
        elif response.get("type") == "message" or isinstance(response.get("content"), list):
            anthropic.append("response.content blocks")
    if "system" in request:
        anthropic.append("top-level 'system'")
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and "input_schema" in tool:
            anthropic.append("tools with input_schema")
            break
        if isinstance(tool, dict) and tool.get("type") == "function":
            openai.append("tools of type 'function'")
            break
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if (isinstance(role, str) and role in _OPENAI_ONLY_ROLES) or message.get("tool_calls"):
            openai.append(
                f"role {message.get('role')!r}" if not message.get("tool_calls") else "tool_calls"
            )
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and is_anthropic_block(p) for p in content
        ):
            anthropic.append("Anthropic content blocks")
        if openai and anthropic:
            break
    if openai and anthropic:
        raise ValueError(
            f"request mixes OpenAI ({openai[0]}) and Anthropic ({anthropic[0]}) conventions"
        )
    return bool(anthropic)


def from_anthropic(
    request: dict[str, Any], response: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any] | None, Any]:
    """(messages, tools, reference, params) of an Anthropic request/response pair."""
    messages: list[dict[str, Any]] = []
    if "system" in request and request["system"] is not None:
        system = request["system"]
        if isinstance(system, str):
            messages.append({"role": "system", "content": system})
        else:
            parts = _parts(system, "request.system", "system")
            messages.append({"role": "system", "content": _as_content(parts) or ""})
    raw_messages = request.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        got = "missing 'messages'" if raw_messages is None else "expected a non-empty list"
        raise ValueError(f"request.messages: {got}")
    for i, message in enumerate(raw_messages):
        messages.extend(_message(message, f"request.messages[{i}]"))
    tools = _tools(request.get("tools"))
    params = {k: v for k, v in request.items() if k not in ("messages", "tools", "system")}
    reference = None
    if response is not None:
        content = response.get("content")
        if not isinstance(content, list):
            raise ValueError("response.content: expected a list of content blocks")
        reference = _assistant(content, "response.content")
    return messages, tools, reference, params or None


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise ValueError(f"{where}: expected a message object")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise ValueError(
            f"{where}.role: {role!r} is not valid in an Anthropic request (expected user or "
            "assistant; the system prompt goes in the top-level 'system')"
        )
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise ValueError(f"{where}.content: expected a string or a list of content blocks")
    if role == "assistant":
        return [_assistant(content, f"{where}.content")]
    tool_messages: list[dict[str, Any]] = []
    others: list[Any] = []
    for j, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            tool_messages.append(_tool_result(block, f"{where}.content[{j}]"))
        else:
            others.append(block)
    out = tool_messages
    if others or not tool_messages:
        out.append(
            {
                "role": "user",
                "content": _as_content(_parts(others, f"{where}.content", "user")) or "",
            }
        )
    return out


def _assistant(blocks: list[Any], where: str) -> dict[str, Any]:
    calls = []
    texts = []
    for j, block in enumerate(blocks):
        if isinstance(block, dict) and block.get("type") == "tool_use":
            name, call_id = block.get("name"), block.get("id")
            if not isinstance(name, str) or not name or not isinstance(call_id, str):
                raise ValueError(f"{where}[{j}]: a tool_use block needs a string 'id' and 'name'")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        else:
            texts.append(block)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": _as_content(_parts(texts, where, "assistant")),
    }
    if calls:
        message["tool_calls"] = calls
    if message["content"] is None and not calls:
        raise ValueError(f"{where}: an assistant turn needs text or tool_use blocks")
    return message


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise ValueError(f"{where}: a tool_result block needs a 'tool_use_id'")
    content = block.get("content", "")
    if isinstance(content, list):
        content = _as_content(_parts(content, f"{where}.content", "tool")) or ""
    elif not isinstance(content, str):
        raise ValueError(f"{where}.content: expected a string or a list of content blocks")
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _parts(blocks: list[Any], where: str, role: str) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        raise ValueError(f"{where}: expected a string or a list of content blocks")
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            kind = None  # a list or object is no type (and cannot be looked up in a set)
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise ValueError(f"{where}[{j}].text: expected a string")
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role != "assistant":
            parts.append(
                {"type": "image_url", "image_url": {"url": _image_url(block, f"{where}[{j}]")}}
            )
        elif kind in _DROPPED_BLOCKS:
            continue
        elif kind is None:
            raise ValueError(f"{where}[{j}]: expected a content block object with a 'type'")
        else:
            raise ValueError(
                f"{where}[{j}]: content block type {kind!r} is not supported in a {role} turn"
            )
    return parts


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    if (
        isinstance(source, dict)
        and source.get("type") == "url"
        and isinstance(source.get("url"), str)
    ):
        return source["url"]
    raise ValueError(f"{where}.source: expected a base64 or url image source")


def _as_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    """One text part reads better as a plain string; no part at all is no content."""
    if not parts:
        return None
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise ValueError("request.tools: expected a list of tool definitions")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ValueError(f"request.tools[{i}]: expected a tool object")
        if "input_schema" not in tool:
            out.append(tool)  # a server tool (web search, ...): nothing to translate
            continue
        if not isinstance(tool.get("name"), str):
            raise ValueError(f"request.tools[{i}].name: expected a string")
        function: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        function["parameters"] = tool["input_schema"]
        out.append({"type": "function", "function": function})
    return out or None
