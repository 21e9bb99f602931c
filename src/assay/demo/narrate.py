"""How the demo talks: numbered steps, one line per fact, compact renderings of tool calls."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from assay.rubrics.transcript import format_message_body

MAX_SHOWN = 160


class Narrator:
    """Prints the demo as it goes. Text passed to ``fact``/``note``/``warn`` is plain (escaped
    here); markup belongs to the narrator alone."""

    def __init__(self, console: Console, total_steps: int) -> None:
        self.console = console
        self.total = total_steps
        self.number = 0
        self.started = time.monotonic()
        self._step_started: float | None = None

    def step(self, title: str) -> None:
        self._close_step()
        self.number += 1
        self._step_started = time.monotonic()
        self.console.print(f"\n[bold cyan][{self.number}/{self.total}] {escape(title)}[/]")

    def fact(self, text: str) -> None:
        self.console.print(f"  {escape(text)}")

    def note(self, text: str) -> None:
        self.console.print(f"  [dim]{escape(text)}[/]")

    def warn(self, text: str) -> None:
        self.console.print(f"  [yellow]{escape(text)}[/]")

    def decision(self, label: str, decision: str) -> None:
        style = {"PASS": "bold green", "FAIL": "bold red"}.get(decision, "bold yellow")
        self.console.print(f"  {escape(label)}: [{style}]{escape(decision)}[/]")

    def _close_step(self) -> None:
        """Print how long the step that is ending took."""
        if self._step_started is not None:
            self.note(f"({time.monotonic() - self._step_started:.1f} s)")
            self._step_started = None

    def finish(self) -> float:
        """Close the last step; the demo's wall time so far, in seconds."""
        self._close_step()
        return time.monotonic() - self.started


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call_text(message: Mapping[str, Any] | None) -> str:
    """An assistant message as ``name(arg=value, ...)`` per tool call, or its text."""
    if not message:
        return "(no output)"
    calls = message.get("tool_calls") or []
    if not calls:
        return clip(format_message_body(message)) or "(empty answer)"
    shown = []
    for call in calls:
        function = call.get("function") or {}
        raw = function.get("arguments") or ""
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            shown.append(f"{function.get('name')}(<invalid JSON: {clip(str(raw), 60)}>)")
            continue
        if isinstance(arguments, dict):
            args = ", ".join(
                f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items()
            )
        else:
            args = json.dumps(arguments, ensure_ascii=False)
        shown.append(f"{function.get('name')}({args})")
    return clip("; ".join(shown))


def question_text(messages: list[Any]) -> str:
    """The last user message of a conversation, on one line."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return clip(content if isinstance(content, str) else json.dumps(content))
    return "(no user message)"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
