"""One JSONL line of a dataset file: parsing, validation, normalisation and the content hash.

Two formats, one per file, recognised by their top-level key:

* **chat** ``{"messages": [...], "tools"?: [...], "id"?: ..., "metadata"?: {...},
  "params"?: {...}, "reference"?: {...} | null}``. Messages are OpenAI-style chat messages
  (roles system, developer, user, assistant, tool; string or content-part content; assistant
  ``tool_calls``; tool messages need ``tool_call_id``). When the conversation ends with an
  assistant turn, that turn is the reference response and the earlier turns are the context.
  Two Assay extensions, written by ``export`` so that every row round-trips: ``params`` (request
  settings such as model or temperature) and an explicit ``reference`` (when present, every
  message is context; ``null`` means "no reference", needed when the context itself ends with
  an assistant turn).
* **source-backed** ``{"request": {...}, "response": {...} | null, "metadata"?: {...}}``: a raw
  provider request and response, OpenAI chat completions or Anthropic messages (see
  ``assay.datasets._anthropic`` for the mapping). Everything is stored as OpenAI-style messages;
  the request fields other than messages/tools (and Anthropic ``system``) are the row's params.

In both formats any other top-level key (``id`` included) is kept in the row's metadata, and
wins over a key of the same name inside ``metadata``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson

from assay.datasets._anthropic import from_anthropic, is_anthropic_block, uses_anthropic

CHAT = "chat"
SOURCE = "source"
FORMAT_LABELS = {CHAT: 'chat ({"messages": ...})', SOURCE: 'source-backed ({"request": ...})'}

ROLES = ("system", "developer", "user", "assistant", "tool")
CHAT_KEYS = frozenset({"messages", "tools", "metadata", "params", "reference"})
SOURCE_KEYS = frozenset({"request", "response", "metadata"})
# Params are request settings; these never are, so an exported row re-imports the same way.
RESERVED_PARAMS = frozenset({"messages", "tools", "system"})
# Deeper JSON cannot be stored (orjson writes at most 255 levels) nor walked by the recursive
# code that reads rows back (transcripts, hashing); real conversations nest a dozen levels.
MAX_DEPTH = 100

_UTF8_BOM = b"\xef\xbb\xbf"


class LineError(ValueError):
    """One line is invalid; ``reason`` says where (field path) and what was expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ParsedRow:
    """A valid line, normalised to what a ``DatasetRow`` stores."""

    format: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    reference: dict[str, Any] | None
    params: dict[str, Any] | None
    metadata: dict[str, Any]
    content_hash: str


# --- reading a line ---------------------------------------------------------------------------


def load_line(raw: bytes | str) -> dict[str, Any]:
    """Decode one line into a JSON object, with a user-facing reason when it is not one."""
    if isinstance(raw, bytes) and raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                byte = raw[uexc.start]
                raise LineError(
                    f"not valid UTF-8 (byte 0x{byte:02x} at column {uexc.start + 1}); "
                    "save the file as UTF-8"
                ) from None
        raise LineError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {_kind(obj)}")
    if isinstance(raw, bytes):
        brackets = raw.count(b"[") + raw.count(b"{")
    else:
        brackets = raw.count("[") + raw.count("{")
    if brackets > MAX_DEPTH and _too_deep(obj):  # counting is cheap: most lines skip the walk
        raise LineError(f"nested more than {MAX_DEPTH} levels deep")
    nul = b"\\u0000" if isinstance(raw, bytes) else "\\u0000"
    if nul in raw and _has_nul(obj):  # type: ignore[operator]
        raise LineError("contains a NUL character (\\u0000), which the database cannot store")
    return obj


def line_format(obj: dict[str, Any]) -> str:
    """Which format a line is written in, from its keys (whether or not it is otherwise valid)."""
    if "messages" in obj and "request" in obj:
        raise LineError("has both 'messages' (chat format) and 'request' (source-backed format)")
    if "messages" in obj:
        return CHAT
    if "request" in obj:
        return SOURCE
    raise LineError("missing 'messages' (chat format) or 'request' (source-backed format)")


def parse_line(raw: bytes | str) -> ParsedRow:
    """Parse and validate one line in either format; raises ``LineError``."""
    return parse_object(load_line(raw))


def parse_object(obj: dict[str, Any], fmt: str | None = None) -> ParsedRow:
    """Validate a decoded line and normalise it into a row."""
    fmt = fmt or line_format(obj)
    if fmt == CHAT:
        messages, tools, reference, params = _parse_chat(obj)
        metadata = _metadata(obj, CHAT_KEYS)
    else:
        messages, tools, reference, params = _parse_source(obj)
        metadata = _metadata(obj, SOURCE_KEYS)
    return ParsedRow(
        fmt, messages, tools, reference, params, metadata, content_hash(messages, tools)
    )


# --- chat ---------------------------------------------------------------------------------------


def _parse_chat(obj: dict[str, Any]) -> tuple[list[Any], list[Any] | None, Any, Any]:
    messages = obj["messages"]
    check_messages(messages, "messages")
    tools = check_tools(obj.get("tools"), "tools")
    params = obj.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise LineError(f"params: expected an object, got {_kind(params)}")
        reserved = sorted(RESERVED_PARAMS & params.keys())
        if reserved:
            raise LineError(f"params.{reserved[0]}: not a request setting (see messages/tools)")
    if "reference" in obj:
        reference, context = obj["reference"], messages
        if reference is not None:
            check_message(reference, "reference")
            if reference["role"] != "assistant":
                raise LineError(f"reference.role: expected 'assistant', got {reference['role']!r}")
    elif messages[-1]["role"] == "assistant":
        reference, context = messages[-1], messages[:-1]
    else:
        reference, context = None, messages
    if not context:
        raise LineError("messages: no context before the final assistant message (the reference)")
    ref = clean_reference(reference) if reference is not None else None
    return context, tools, ref, params or None


def check_messages(messages: Any, where: str) -> None:
    """Validate a list of OpenAI-style chat messages."""
    if not isinstance(messages, list) or not messages:
        raise LineError(f"{where}: expected a non-empty list of messages, got {_kind(messages)}")
    for i, message in enumerate(messages):
        check_message(message, f"{where}[{i}]")


def check_message(message: Any, where: str) -> None:
    """Validate one OpenAI-style chat message."""
    if not isinstance(message, dict):
        raise LineError(f"{where}: expected a message object, got {_kind(message)}")
    role = message.get("role")
    if role not in ROLES:
        got = "missing 'role'" if role is None else f"{role!r} is not a valid role"
        raise LineError(f"{where}.role: {got} (expected {', '.join(ROLES)})")
    calls = message.get("tool_calls")
    if role == "assistant":
        if calls is not None:
            _check_tool_calls(calls, f"{where}.tool_calls")
        _check_content(message.get("content"), f"{where}.content", allow_none=True)
        if message.get("content") is None and not calls and not message.get("refusal"):
            raise LineError(f"{where}: an assistant message needs content or tool_calls")
        return
    if calls is not None:
        raise LineError(f"{where}.tool_calls: only assistant messages have tool_calls")
    _check_content(message.get("content"), f"{where}.content", allow_none=False)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise LineError(
                f"{where}: a tool message needs a 'tool_call_id' "
                "(the id of the assistant tool call it answers)"
            )


def _check_content(content: Any, where: str, *, allow_none: bool) -> None:
    if content is None:
        if allow_none:
            return
        raise LineError(f"{where}: missing (expected a string or a list of content parts)")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise LineError(
            f"{where}: expected a string or a list of content parts, got {_kind(content)}"
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise LineError(f"{where}[{j}]: expected a content part object with a 'type'")
        if is_anthropic_block(part):
            raise LineError(
                f"{where}[{j}]: {part['type']!r} is an Anthropic content block; chat messages "
                "use the OpenAI format (put Anthropic requests in the source-backed format)"
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise LineError(f"{where}[{j}].text: expected a string")


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise LineError(f"{where}: expected a list, got {_kind(calls)}")
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise LineError(f"{where}[{k}]: expected {{'id', 'type': 'function', 'function'}}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise LineError(f"{where}[{k}].function.name: expected a non-empty string")
        if not isinstance(fn.get("arguments"), str | dict):
            raise LineError(f"{where}[{k}].function.arguments: expected a JSON string")


def check_tools(tools: Any, where: str) -> list[dict[str, Any]] | None:
    """Validate OpenAI-style tool definitions; an empty list is stored as no tools."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise LineError(f"{where}: expected a list of tool definitions, got {_kind(tools)}")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise LineError(f"{where}[{i}]: expected a tool object, got {_kind(tool)}")
        if "input_schema" in tool:
            raise LineError(
                f"{where}[{i}]: an Anthropic tool definition; use the OpenAI form "
                "{'type': 'function', 'function': {...}} or the source-backed format"
            )
        if tool.get("type") == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise LineError(f"{where}[{i}].function.name: expected a string")
    return tools or None


def clean_reference(message: dict[str, Any]) -> dict[str, Any]:
    """The reference as stored: role and content first, empty provider fields dropped.

    Idempotent, so a reference that went out through ``export`` comes back identical.
    """
    ref: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    for key, value in message.items():
        if key not in ("role", "content") and value is not None and value != []:
            ref[key] = value
    return ref


# --- source-backed ------------------------------------------------------------------------------


def _parse_source(obj: dict[str, Any]) -> tuple[list[Any], list[Any] | None, Any, Any]:
    request = obj["request"]
    if not isinstance(request, dict):
        raise LineError(f"request: expected the provider request object, got {_kind(request)}")
    if "response" not in obj:
        raise LineError("missing 'response' (the provider response, or null when there is none)")
    response = obj["response"]
    if response is not None:
        if not isinstance(response, dict):
            raise LineError(f"response: expected an object or null, got {_kind(response)}")
        _reject_error_response(response)
    try:
        if uses_anthropic(request, response):
            return from_anthropic(request, response)
    except ValueError as exc:
        raise LineError(str(exc)) from None
    if "messages" not in request:
        raise LineError("request: missing 'messages'")
    check_messages(request["messages"], "request.messages")
    tools = check_tools(request.get("tools"), "request.tools")
    params = {k: v for k, v in request.items() if k not in ("messages", "tools")}
    reference = _openai_reference(response) if response is not None else None
    return request["messages"], tools, reference, params or None


def _reject_error_response(response: dict[str, Any]) -> None:
    error = response.get("error")
    if error is None and response.get("type") != "error":
        return
    detail = error.get("message") if isinstance(error, dict) else error
    raise LineError(
        f"response is an error object ({detail or 'no message'}); only successful responses "
        "can be imported (use null for a request without a response)"
    )


def _openai_reference(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise LineError("response has no choices (expected an OpenAI chat completion)")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise LineError("response.choices[0].message: missing")
    if message.get("role", "assistant") != "assistant":
        raise LineError("response.choices[0].message.role: expected 'assistant'")
    reference = clean_reference(message)
    check_message(reference, "response.choices[0].message")
    return reference


# --- metadata and hashing -----------------------------------------------------------------------


def _metadata(obj: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise LineError(f"metadata: expected an object, got {_kind(metadata)}")
    extra = {key: value for key, value in obj.items() if key not in known}
    return {**metadata, **extra} if extra else metadata


def normalize_context(messages: list[Any], tools: list[Any] | None) -> dict[str, Any]:
    """What the content hash covers: what the model sees, not ids or formatting.

    Per message: the role (``developer`` counts as ``system``), the text (string content, or
    the text parts joined by a space) with whitespace collapsed, non-text parts as they are,
    and tool calls as name + arguments parsed from JSON (so key order and spacing do not
    matter). Tool call ids are left out: they are random per call. Tools are compared as JSON.
    """
    return {"messages": [_normalize_message(m) for m in messages], "tools": tools or []}


def content_hash(messages: list[Any], tools: list[Any] | None) -> str:
    """sha256 hex of the normalised context: equal for conversations a model would see alike.

    Used for duplicate detection within a dataset, train/eval overlap and traffic dedupe.
    """
    normalised = normalize_context(messages, tools)
    try:
        data = orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, from a source other than orjson
        data = json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def _normalize_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"value": message}
    role = message.get("role")
    out: dict[str, Any] = {"role": "system" if role == "developer" else role}
    content = message.get("content")
    if isinstance(content, list):
        texts, others = [], []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                others.append(part)
        text = " ".join(texts)
        if others:
            out["parts"] = others
    else:
        text = content if isinstance(content, str) else ""
    out["text"] = " ".join(text.split())
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_normalize_call(call) for call in calls]
    return out


def _normalize_call(call: Any) -> Any:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return call
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            arguments = " ".join(arguments.split())
    return {"name": fn.get("name"), "arguments": arguments}


def _too_deep(value: Any) -> bool:
    """Whether a decoded value nests more than ``MAX_DEPTH`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _kind(value: Any) -> str:
    """A JSON-ish name for a Python value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array" if value else "an empty array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
