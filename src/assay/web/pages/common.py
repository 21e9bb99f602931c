"""What several pages share: chat messages made readable (tool calls, non-text parts), pagers,
refused forms, form numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from assay.errors import AssayError, ValidationError
from assay.web.errors import status_for
from assay.web.pages.render import render

TRAFFIC_FILTER_KEYS = ("environment", "task", "provider", "model", "status", "since", "until")
"""The `assay traffic list` filters a traffic page (and a dataset built from one) carries."""

FORM_ERROR_HEADER = "X-Assay-Form-Error"
"""Marks the answer to a form as a refusal (the fragment says why)."""

# --- conversation views ----------------------------------------------------------------------


_PART_LABELS = {
    "image_url": "image", "image": "image", "input_image": "image",
    "input_audio": "audio", "audio": "audio", "file": "file", "input_file": "file",
}  # fmt: skip
EN_DASH = "\u2013"  # between the two ends of a range ("Rows 1-20", typeset)


@dataclass
class ToolCallView:
    name: str
    id: str | None
    arguments: str  # pretty JSON when the arguments parse, else as the model wrote them


@dataclass
class MessageView:
    role: str
    label: str
    # In order: ("text", text), ("json", pretty JSON), ("part", "image" / "audio" / ...).
    blocks: list[tuple[str, str]] = field(default_factory=list)
    tool_calls: list[ToolCallView] = field(default_factory=list)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        try:
            return _pretty(json.loads(value))
        except ValueError:
            return value
    return _pretty(value)


def _tool_call(call: Any) -> ToolCallView:
    if not isinstance(call, dict):
        return ToolCallView(name="(tool call)", id=None, arguments=_pretty(call))
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    return ToolCallView(
        name=str(function.get("name") or "(unnamed)"),
        id=str(call["id"]) if call.get("id") is not None else None,
        arguments=_arguments(function.get("arguments")),
    )


def _part(part: Any) -> tuple[str, str]:
    if isinstance(part, str):
        return ("text", part)
    kind = part.get("type") if isinstance(part, dict) else None
    if isinstance(part, dict) and (kind == "text" or (kind is None and "text" in part)):
        return ("text", str(part.get("text", "")))
    if isinstance(part, dict) and kind == "refusal":
        return ("text", f"[refusal] {part.get('refusal', '')}")
    return ("part", _PART_LABELS.get(str(kind), str(kind or "content")))


def message_view(message: Any, label: str | None = None) -> MessageView:
    """One chat message (OpenAI style, as datasets store them) ready to show."""
    if not isinstance(message, dict):
        return MessageView(
            role="other", label=label or "message", blocks=[("json", _pretty(message))]
        )
    role = str(message.get("role") or "unknown")
    if label is None:
        label = role
        if role == "tool":
            label = f"tool result · {message.get('tool_call_id') or 'unknown call'}"
        elif message.get("name"):
            label = f"{role} · {message['name']}"
    view = MessageView(role=role, label=label)
    content = message.get("content")
    if isinstance(content, str):
        view.blocks.append(("text", content))
    elif isinstance(content, list):
        view.blocks.extend(_part(part) for part in content)
    elif content is not None:
        view.blocks.append(("json", _pretty(content)))
    if message.get("refusal"):
        view.blocks.append(("text", f"[refusal] {message['refusal']}"))
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append(message["function_call"])
    view.tool_calls = [_tool_call(call) for call in calls]
    return view


def conversation_view(messages: Any) -> list[MessageView]:
    return [message_view(m) for m in messages or []]


def preview(messages: Any, limit: int = 160) -> str:
    """The last user turn as one line: what a row is about, at a glance."""
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            texts = [t for kind, t in message_view(message).blocks if kind == "text"]
            line = " ".join(" ".join(texts).split())
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


@dataclass
class Pager:
    label: str
    prev_url: str | None
    next_url: str | None


def pager(
    request: Request, path: str, offset: int, limit: int, shown: int, total: int | None, noun: str
) -> Pager:
    """Previous/next links to ``path`` (already URL-quoted) that keep every other query
    parameter (filters, page size) as it is."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]

    def at(start: int) -> str:
        return f"{path}?{urlencode([*kept, ('offset', str(start))])}"

    if shown == 0:
        label = f"No {noun} here" if offset else f"No {noun}"
    else:
        label = f"{noun.capitalize()} {offset + 1:,}{EN_DASH}{offset + shown:,}"
        if total is not None:
            label += f" of {total:,}"
    more = shown == limit and (total is None or offset + shown < total)
    return Pager(
        label=label,
        prev_url=at(max(0, offset - limit)) if offset > 0 else None,
        next_url=at(offset + limit) if more else None,
    )


def form_error(request: Request, exc: AssayError, title: str) -> HTMLResponse:
    """A refused form: the service's message, shown where the result would have been.

    htmx swaps only 2xx answers (and the browser logs every 4xx as a console error), so an
    htmx request gets the fragment with 200, marked by ``X-Assay-Form-Error``; any other
    client gets the status the error maps to everywhere else (422, 404, 409, ...).
    """
    status = 200 if request.headers.get("hx-request") == "true" else status_for(exc)[0]
    context = {"title": title, "message": str(exc)}
    response = render(request, "_page_refused.html", context, status)
    response.headers[FORM_ERROR_HEADER] = "1"
    return response


def whole(value: str, what: str) -> int | None:
    """A form's optional whole number: blank is None, anything else must parse."""
    text = value.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"{what}: expected a whole number, got {text!r}") from None
