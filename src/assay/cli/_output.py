"""Console output shared by every command: JSON for scripts, Rich tables for people."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: Any) -> None:
    """Stable, indented JSON on stdout (``--json``), pydantic models included."""
    text = orjson.dumps(data, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z)
    # Bypass Rich: JSON must reach a pipe byte for byte, without markup or wrapping.
    console.file.write(text.decode() + "\n")


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
) -> None:
    table = Table(*columns, title=title, header_style="bold", title_justify="left")
    for row in rows:
        table.add_row(*(escape(_cell(value)) for value in row))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def info(message: str) -> None:
    """A status line for people, on stderr so stdout stays clean for pipes."""
    err_console.print(message, markup=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/] {message}", markup=True)
