"""Exporting a dataset to JSONL: in either import format (re-importing round-trips), or in
the chat JSONL that fine-tuning stacks read.

* ``chat``: ``{"id"?, "messages": context + [reference], "tools"?, "params"?, "metadata"?}``;
  ``"reference": null`` is written only when the context itself ends with an assistant turn
  and there is no reference (otherwise that turn would come back as the reference).
* ``source``: an OpenAI chat-completions request (params + messages + tools) and a minimal
  response whose ``choices[0].message`` is the reference (``null`` without one). Anthropic
  input was normalised at import, so it comes out in the OpenAI form.
* ``openai``: OpenAI fine-tuning. A row whose reference is the target (an ``sft`` training set,
  or any dataset whose every row has a reference) becomes ``{"messages": context + [target],
  "tools"?}``; a ``preference`` row becomes the DPO line ``{"input": {"messages", "tools"?},
  "preferred_output": [chosen], "non_preferred_output": [rejected]}``.
* ``trl``: Hugging Face TRL's conversational types: ``{"messages", "tools"?}`` (language
  modelling, for ``SFTTrainer``) or ``{"prompt", "chosen", "rejected", "tools"?}`` (preference,
  for ``DPOTrainer``).

The training formats carry no metadata (the trainers refuse or ignore unknown keys); the
provenance stays in Assay, and the ``chat`` export keeps it. An ``sft`` line is itself a valid
``chat`` line, so it re-imports as the same conversation and target.

Rows stream from the database to a temporary file next to the target, renamed into place at
the end: a failure leaves no partial file, and an existing file is only replaced with ``force``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from assay.datasets.service import DatasetRowInfo, get_dataset, iter_rows
from assay.errors import AlreadyExistsError, StoreError, ValidationError
from assay.store import Store
from assay.store.models import Dataset, DatasetRow

EXPORT_FORMATS = ("chat", "source", "openai", "trl")
TRAINING_FORMATS = ("openai", "trl")


def chat_line(row: DatasetRowInfo) -> dict[str, Any]:
    """A row as a chat-format line."""
    metadata = dict(row.metadata)
    line: dict[str, Any] = {}
    if "id" in metadata:
        line["id"] = metadata.pop("id")
    messages = list(row.messages)
    if row.reference is not None:
        messages.append(row.reference)
    line["messages"] = messages
    if row.reference is None and messages and messages[-1].get("role") == "assistant":
        line["reference"] = None
    if row.tools:
        line["tools"] = row.tools
    if row.params:
        line["params"] = row.params
    if metadata:
        line["metadata"] = metadata
    return line


def source_line(row: DatasetRowInfo) -> dict[str, Any]:
    """A row as a source-backed line (OpenAI chat-completions request and response)."""
    request: dict[str, Any] = {**(row.params or {}), "messages": row.messages}
    if row.tools:
        request["tools"] = row.tools
    response = None
    if row.reference is not None:
        finish = "tool_calls" if row.reference.get("tool_calls") else "stop"
        choice = {"index": 0, "message": row.reference, "finish_reason": finish}
        response = {"object": "chat.completion", "choices": [choice]}
    line: dict[str, Any] = {"request": request, "response": response}
    if row.metadata:
        line["metadata"] = row.metadata
    return line


def openai_sft_line(row: DatasetRowInfo) -> dict[str, Any]:
    """OpenAI supervised fine-tuning: the conversation ending with the target."""
    line: dict[str, Any] = {"messages": [*row.messages, _target(row)]}
    if row.tools:
        line["tools"] = row.tools
    return line


def openai_preference_line(row: DatasetRowInfo) -> dict[str, Any]:
    """OpenAI preference fine-tuning (DPO): the context, then one preferred and one not."""
    prompt: dict[str, Any] = {"messages": row.messages}
    if row.tools:
        prompt["tools"] = row.tools
    return {
        "input": prompt,
        "preferred_output": [_target(row)],
        "non_preferred_output": [_rejected(row)],
    }


def trl_sft_line(row: DatasetRowInfo) -> dict[str, Any]:
    """TRL conversational language modelling (``SFTTrainer``)."""
    return openai_sft_line(row)  # the same shape: {"messages", "tools"?}


def trl_preference_line(row: DatasetRowInfo) -> dict[str, Any]:
    """TRL conversational preference with an explicit prompt (``DPOTrainer``)."""
    line: dict[str, Any] = {
        "prompt": row.messages,
        "chosen": [_target(row)],
        "rejected": [_rejected(row)],
    }
    if row.tools:
        line["tools"] = row.tools
    return line


def _target(row: DatasetRowInfo) -> dict[str, Any]:
    if row.reference is None:  # checked before the export starts; a row added since is not
        raise StoreError(f"row {row.position} has no reference to train on; nothing was written")
    return row.reference


def _rejected(row: DatasetRowInfo) -> dict[str, Any]:
    rejected = row.metadata.get("rejected")
    if not isinstance(rejected, dict):
        raise StoreError(
            f"row {row.position} of this preference dataset has no rejected output "
            "(metadata.rejected); nothing was written"
        )
    return rejected


LineBuilder = Callable[[DatasetRowInfo], dict[str, Any]]
_LINE_BUILDERS: dict[str, LineBuilder] = {"chat": chat_line, "source": source_line}
_TRAINING_BUILDERS: dict[tuple[str, str], LineBuilder] = {
    ("openai", "sft"): openai_sft_line,
    ("openai", "preference"): openai_preference_line,
    ("trl", "sft"): trl_sft_line,
    ("trl", "preference"): trl_preference_line,
}


def _line_builder(store: Store, name: str, format: str) -> LineBuilder:
    """The builder for ``format`` and this dataset's rows; a training format is refused, before
    anything is written, for a dataset with rows that have nothing to train on."""
    if format not in EXPORT_FORMATS:
        raise ValidationError(
            f"unknown export format {format!r} (expected one of {', '.join(EXPORT_FORMATS)})"
        )
    info = get_dataset(store, name)
    if format not in TRAINING_FORMATS:
        return _LINE_BUILDERS[format]
    table, rows = Dataset.__table__, DatasetRow.__table__
    with store.engine.connect() as conn:
        row_format = conn.execute(
            select(table.c.row_format).where(table.c.id == info.id)
        ).scalar_one()
        missing = conn.execute(
            select(func.count()).where(rows.c.dataset_id == info.id, rows.c.reference.is_(None))
        ).scalar_one()
    if missing:
        raise ValidationError(
            f"{missing:,} of the {info.row_count:,} rows of '{name}' have no reference, so there "
            f"is no target to train on; export it as chat, or build a training set from a run "
            f"group with `assay dataset from-run`"
        )
    return _TRAINING_BUILDERS[(format, row_format or "sft")]


def export_lines(store: Store, name: str, format: str) -> Iterator[bytes]:
    """Every row of dataset ``name`` as JSONL lines, streamed (a download, not a file).

    The format and the dataset are checked now, before the first line is asked for, so a
    caller can still answer with an error instead of a truncated stream.
    """
    build = _line_builder(store, name, format)

    def lines() -> Iterator[bytes]:
        for row in iter_rows(store, name):
            yield orjson.dumps(build(row)) + b"\n"

    return lines()


def export_dataset(
    store: Store, name: str, path: str | Path, format: str, *, force: bool = False
) -> int:
    """Write every row of dataset ``name`` to ``path`` as JSONL; returns the number of rows."""
    build = _line_builder(store, name, format)
    path = Path(path)
    info = get_dataset(store, name)
    if path.is_dir():
        raise ValidationError(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise AlreadyExistsError(f"{path} already exists; use --force to overwrite it")
    if not path.parent.is_dir():
        raise ValidationError(f"directory {path.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        count = 0
        with os.fdopen(fd, "wb") as out:
            for row in iter_rows(store, name):
                out.write(orjson.dumps(build(row)))
                out.write(b"\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        if count != info.row_count:
            raise StoreError(
                f"dataset '{name}' changed during the export ({count} rows read, "
                f"{info.row_count} expected); nothing was written"
            )
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _file_mode(path: Path) -> int:
    """Keep an overwritten file's mode; a new file gets the usual mode (mkstemp's is 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
