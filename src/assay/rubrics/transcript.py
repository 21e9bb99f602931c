"""The row data a rubric template sees, as text: transcript, reference, delimited response.

Everything here is *data* for the judge. The response under test is wrapped in
``RESPONSE_START`` / ``RESPONSE_END``, and anything resembling those delimiters inside any
data (response, conversation, reference, metadata) is defused, so that no model output or
user message can close the block early or fake a second one.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

RESPONSE_START = "<<<RESPONSE_UNDER_TEST>>>"
RESPONSE_END = "<<<END_RESPONSE_UNDER_TEST>>>"

# Lenient on purpose: case, spacing, a slash or missing brackets could still fool a judge.
# Linear time on hostile text: a match starts only at the first "<" of a run, and possessive
# quantifiers never give back what they took (a run of "<" or spaces was quadratic).
_DELIMITER_LIKE = re.compile(
    r"(?<!<)<++\s*+/?\s*+(?:END[\s_-]*+)?RESPONSE[\s_-]*+UNDER[\s_-]*+TEST\s*+>*+", re.IGNORECASE
)


def neutralise_delimiters(text: str) -> str:
    """Defuse anything that looks like a response delimiter, so data cannot close its block."""
    return _DELIMITER_LIKE.sub(
        lambda m: m.group(0).replace("<", "\u2039").replace(">", "\u203a"), text
    )


def delimit_response(response: str | Mapping[str, Any] | None) -> str:
    """The response under test as one unambiguous data block."""
    body = response if isinstance(response, str) else format_message_body(response)
    return f"{RESPONSE_START}\n{neutralise_delimiters(body)}\n{RESPONSE_END}"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)
    except RecursionError:
        return "(a value nested too deeply to show)"


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return _json(content)
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" or (kind is None and isinstance(part, dict) and "text" in part):
            parts.append(str(part.get("text", "")))
        elif kind in ("image_url", "image", "input_image"):
            parts.append("[image]")
        elif kind in ("input_audio", "audio"):
            parts.append("[audio]")
        elif kind in ("file", "input_file"):
            parts.append("[file]")
        elif kind == "refusal":
            parts.append(f"[refusal] {part.get('refusal', '')}")
        else:
            parts.append(f"[{kind or 'content'}]")
    return "\n".join(parts)


def _tool_call(call: Any) -> str:
    if not isinstance(call, dict):
        return _json(call)
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # Invalid (or absurdly nested) JSON arguments are shown as the string the model produced.
        with contextlib.suppress(ValueError, RecursionError):
            arguments = json.loads(arguments)
    shown: dict[str, Any] = {}
    if call.get("id") is not None:
        shown["id"] = call["id"]
    shown["name"] = function.get("name")
    shown["arguments"] = arguments
    return _json(shown)


def format_message_body(message: Mapping[str, Any] | None) -> str:
    """An assistant message as text: its content, refusal, then one line per tool call."""
    if message is None:
        return ""
    lines = []
    text = _content_text(message.get("content"))
    if text:
        lines.append(text)
    if message.get("refusal"):
        lines.append(f"[refusal] {message['refusal']}")
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append(message["function_call"])
    lines.extend(f"Tool call: {_tool_call(call)}" for call in calls)
    return "\n".join(lines)


def format_conversation(messages: Sequence[Any]) -> str:
    """The conversation as a transcript: ``[role]`` headers, tool calls as JSON."""
    blocks = []
    for message in messages:
        if not isinstance(message, dict):
            blocks.append(f"[message]\n{_json(message)}")
            continue
        role = str(message.get("role") or "unknown")
        if role == "tool":
            label = f"[tool result for {message.get('tool_call_id') or 'unknown call'}]"
        elif role == "function":
            label = f"[function result from {message.get('name') or 'unknown function'}]"
        elif message.get("name"):
            label = f"[{role}: {message['name']}]"
        else:
            label = f"[{role}]"
        body = format_message_body(message) if role == "assistant" else None
        if body is None:
            body = _content_text(message.get("content"))
        blocks.append(f"{label}\n{body}" if body else label)
    return neutralise_delimiters("\n\n".join(blocks)) if blocks else "(empty conversation)"


def format_reference(reference: Mapping[str, Any] | None) -> str:
    if reference is None:
        return "(no reference response)"
    return neutralise_delimiters(format_message_body(reference)) or "(empty reference response)"


def _neutralise_values(value: Any) -> Any:
    if isinstance(value, str):
        return neutralise_delimiters(value)
    if isinstance(value, dict):  # keys too: a template may print them ({% for k, v in ... %})
        return {_neutralise_values(key): _neutralise_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_neutralise_values(item) for item in value]
    return value


def template_variables(
    context_messages: Sequence[Any],
    reference: Mapping[str, Any] | None,
    response: str | Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    score_min: int,
    score_max: int,
) -> dict[str, Any]:
    """The variables of DESIGN.md's judge protocol for one row and one response under test."""
    return {
        "conversation_context": format_conversation(context_messages),
        "conversation_response": format_reference(reference),
        "eval_model_response": delimit_response(response),
        "metadata": _neutralise_values(dict(metadata or {})),
        "score_min": score_min,
        "score_max": score_max,
    }
