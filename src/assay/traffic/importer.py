"""``assay traffic import``: captured logs from elsewhere become inferences.

Two line shapes, recognised per line:

* **OpenAI batch output** ``{"id", "custom_id", "response": {"status_code", "body"} | null,
  "error"}``. The request is taken from a ``request`` key on the line, or from the batch input
  file (``{"custom_id", "method", "url", "body"}``) passed as ``requests``, matched on
  ``custom_id``; without either the inference is stored with no request body.
* **Assay export** ``{"request", "response", "metadata"?, ...}`` plus any inference field
  (``uid``, ``started_at``, ``environment``, ``task``, ``provider``, ``model``,
  ``status_code``, ``error``, ``duration_ms``, ...).

Each inference gets a deterministic ``uid`` (the batch line id, the export's uid, or a hash of
the line), so importing the same file twice adds nothing the second time. The file streams in
batches inside one transaction: a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import OperationalError

from assay.capture.records import prompt_hash
from assay.datasets._anthropic import uses_anthropic
from assay.datasets.formats import LineError, load_line
from assay.datasets.service import LineIssue
from assay.errors import ImportFileError, StoreError
from assay.store import Store
from assay.store.db import describe_failure
from assay.store.models import Inference, InferenceTag

BATCH_ROWS = 1000
MAX_REPORTED_ERRORS = 10
MAX_TAG_VALUE = 1000
_UID_NAMESPACE = uuid.UUID("6f1c2a5e-3d1b-4b7a-9a43-0c1e2f3a4b5c")
_OPTIONAL_NUMBERS = ("duration_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd")
_DEFAULTS: dict[str, Any] = dict.fromkeys(_OPTIONAL_NUMBERS)
_PATHS = {
    "chat.completion": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "list": "/v1/embeddings",
    "response": "/v1/responses",
    "message": "/v1/messages",
}

_inf = Inference.__table__
_tags = InferenceTag.__table__

ProgressCallback = Callable[[int, int], None]


class TrafficImportReport(BaseModel):
    """What an import did. Field names are stable (``--json``, API)."""

    file: str
    inferences_imported: int
    already_present: int  # lines whose uid was already stored (re-import): skipped
    lines_read: int
    lines_skipped: int
    errors: list[LineIssue]


def import_traffic(
    store: Store,
    path: str | Path,
    *,
    requests: str | Path | None = None,
    environment: str | None = None,
    task: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrafficImportReport:
    """Import a JSONL log as inferences; ``environment``/``task`` fill lines that lack them."""
    path = Path(path)
    size = _check_file(path)
    paired = _load_requests(Path(requests)) if requests is not None else {}
    run = _Run(paired, environment, task)
    try:
        with store.engine.begin() as conn, path.open("rb") as file:
            done = 0
            for line_no, raw in enumerate(file, start=1):
                run.lines_read = line_no
                done += len(raw)
                if raw.isspace():
                    continue
                run.nonblank += 1
                try:
                    run.pending.append(to_inference(load_line(raw), raw, paired, environment, task))
                except LineError as exc:
                    run.skip(line_no, exc.reason)
                    continue
                if len(run.pending) >= BATCH_ROWS:
                    run.flush(conn)
                    if progress is not None:
                        progress(done, size)
            run.flush(conn)
            if run.imported + run.present == 0:
                raise ImportFileError(run.nothing_valid(path.name))
    except OperationalError as exc:  # disk full, connection lost, locked: all rolled back
        failure = describe_failure(exc, store.engine)
        raise StoreError(f"{path.name} was not imported: {failure}") from exc
    if progress is not None:
        progress(size, size)
    return TrafficImportReport(
        file=path.name,
        inferences_imported=run.imported,
        already_present=run.present,
        lines_read=run.lines_read,
        lines_skipped=run.skipped,
        errors=run.errors,
    )


def _check_file(path: Path) -> int:
    if not path.is_file():
        raise ImportFileError(f"file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError(f"{path.name} is empty: expected one JSON object per line")
    return size


def _load_requests(path: Path) -> dict[str, dict[str, Any]]:
    """The batch input file, by ``custom_id`` (a batch holds at most 50,000 requests)."""
    _check_file(path)
    out: dict[str, dict[str, Any]] = {}
    with path.open("rb") as file:
        for line_no, raw in enumerate(file, start=1):
            if raw.isspace():
                continue
            try:
                obj = load_line(raw)
            except LineError as exc:
                raise ImportFileError(f"{path.name} line {line_no}: {exc.reason}") from None
            custom_id = obj.get("custom_id")
            if not isinstance(custom_id, str) or not isinstance(obj.get("body"), dict):
                raise ImportFileError(
                    f"{path.name} line {line_no}: expected a batch input line "
                    '{"custom_id", "method", "url", "body"}'
                )
            out[custom_id] = obj
    return out


class _Run:
    def __init__(self, paired: dict[str, Any], environment: str | None, task: str | None) -> None:
        self.paired, self.environment, self.task = paired, environment, task
        self.pending: list[dict[str, Any]] = []
        self.lines_read = self.nonblank = self.imported = self.present = self.skipped = 0
        self.errors: list[LineIssue] = []

    def skip(self, line_no: int, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineIssue(line=line_no, reason=reason))

    def flush(self, conn: Connection) -> None:
        rows, self.pending = self.pending, []
        if not rows:
            return
        uids = {row["uid"] for row in rows}
        stored = set(conn.execute(select(_inf.c.uid).where(_inf.c.uid.in_(uids))).scalars())
        fresh: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["uid"] in stored or row["uid"] in fresh:
                self.present += 1
            else:
                fresh[row["uid"]] = row
        if not fresh:
            return
        ids = conn.execute(
            insert(_inf).returning(_inf.c.id, _inf.c.uid), list(fresh.values())
        ).all()
        tags = [
            {"inference_id": id_, "key": key, "value": value}
            for id_, uid in ids
            for key, value in _tags_of(fresh[uid]["metadata"]).items()
        ]
        if tags:
            conn.execute(insert(_tags), tags)
        self.imported += len(fresh)

    def nothing_valid(self, name: str) -> str:
        if self.nonblank == 0:
            return f"{name} is empty: expected one JSON object per line"
        shown = "\n".join(f"  line {e.line}: {e.reason}" for e in self.errors)
        rest = self.skipped - len(self.errors)
        more = f"\n  ... and {rest:,} more" if rest > 0 else ""
        return f"no valid inferences in {name} ({self.skipped:,} lines rejected):\n{shown}{more}"


def _tags_of(metadata: dict[str, Any]) -> dict[str, str]:
    """Tag rows by key; keys cut to the column's 200 characters may meet: the last one wins."""
    return {str(key)[:200]: _tag_value(value) for key, value in metadata.items()}


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:MAX_TAG_VALUE]


def to_inference(
    obj: dict[str, Any],
    raw: bytes,
    paired: dict[str, Any] | None = None,
    environment: str | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """One decoded line as the column values of an ``inferences`` row; raises ``LineError``."""
    if "custom_id" in obj:
        row = _from_batch(obj, paired or {})
    elif "request" in obj:
        row = _from_export(obj, raw)
    else:
        raise LineError(
            "expected an OpenAI batch output line ('custom_id', 'response', 'error') or an "
            "Assay export line ('request', 'response')"
        )
    row.setdefault("environment", environment or "default")
    row.setdefault("task", task or "default")
    metadata = row["metadata"]
    if not isinstance(metadata, dict):
        raise LineError(f"metadata: expected an object, got {type(metadata).__name__}")
    request = row["request_body"]
    row["prompt_hash"] = prompt_hash(request) if request else None
    # executemany needs the same keys on every row.
    row = {**_DEFAULTS, **row}
    _check_columns(row)
    return row


_TEXT_COLUMNS = {
    "environment": 200,
    "task": 200,
    "provider": 50,
    "model": 200,
    "method": 10,
    "path": 200,
}
_INT_COLUMNS = ("status_code", "input_tokens", "output_tokens")
_MAX_INT = 2**31 - 1  # a Postgres INTEGER


def _check_columns(row: dict[str, Any]) -> None:
    """Refuse values the columns cannot hold, as a line error rather than a failed insert."""
    for key, limit in _TEXT_COLUMNS.items():
        value = row[key]
        if value is None and key == "model":
            continue
        if not isinstance(value, str):
            raise LineError(f"{key}: expected a string, got {type(value).__name__}")
        if len(value) > limit:
            raise LineError(f"{key}: at most {limit} characters, got {len(value)}")
    for key in _INT_COLUMNS:
        value = row[key]
        if isinstance(value, float) and value.is_integer():
            value = row[key] = int(value)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT
        ):
            raise LineError(f"{key}: expected a whole number from 0 to {_MAX_INT}, got {value!r}")


def _from_batch(obj: dict[str, Any], paired: dict[str, Any]) -> dict[str, Any]:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str):
        raise LineError("custom_id: expected a string")
    line_id = obj.get("id") if isinstance(obj.get("id"), str) else custom_id
    request_line = obj.get("request") or paired.get(custom_id)
    if request_line is not None and not isinstance(request_line, dict):
        raise LineError("request: expected an object")
    request = (request_line or {}).get("body", request_line)
    if request is not None and not isinstance(request, dict):
        raise LineError("request.body: expected an object")
    response = obj.get("response")
    if response is not None and not isinstance(response, dict):
        raise LineError("response: expected an object or null")
    status = (response or {}).get("status_code")
    if status is not None and not isinstance(status, int):
        raise LineError("response.status_code: expected an integer")
    body = (response or {}).get("body")
    if body is not None and not isinstance(body, dict):
        raise LineError("response.body: expected an object")
    error = _error_text(obj.get("error")) or _error_text((body or {}).get("error"))
    if status is None and error is None and body is None:
        raise LineError("neither a response nor an error")
    success = error is None and status is not None and 200 <= status < 300
    if not success and error is None:
        error = f"HTTP {status}"
    path = (request_line or {}).get("url") or _path_of(body)
    return {
        "uid": str(uuid.uuid5(_UID_NAMESPACE, f"openai-batch:{line_id}")),
        "started_at": _created((body or {}).get("created")),
        "provider": "openai",
        "model": (request or {}).get("model") or (body or {}).get("model"),
        "method": (request_line or {}).get("method", "POST"),
        "path": path or "/v1/chat/completions",
        "status_code": status,
        "success": success,
        "error": error,
        "streamed": False,
        "request_body": request,
        "request_truncated": False,
        "response_truncated": False,
        "response_body": body,
        "metadata": {"custom_id": custom_id},
        **_usage(body),
    }


def _from_export(obj: dict[str, Any], raw: bytes) -> dict[str, Any]:
    request, response = obj["request"], obj.get("response")
    if not isinstance(request, dict):
        raise LineError("request: expected the provider request object")
    if response is not None and not isinstance(response, dict):
        raise LineError("response: expected an object or null")
    error = _error_text(obj.get("error")) or _error_text((response or {}).get("error"))
    status = obj.get("status_code", 200 if response is not None and error is None else None)
    if status is not None and not isinstance(status, int):
        raise LineError("status_code: expected an integer")
    success = obj.get("success")
    if success is None:
        success = error is None and response is not None and 200 <= (status or 0) < 300
    try:
        anthropic = uses_anthropic(request, response)
    except ValueError as exc:  # a request that mixes both APIs' conventions
        raise LineError(str(exc)) from None
    row: dict[str, Any] = {
        "uid": str(obj.get("uid") or uuid.uuid5(_UID_NAMESPACE, hashlib.sha256(raw).hexdigest())),
        "started_at": _time(obj.get("started_at")),
        "provider": obj.get("provider") or ("anthropic" if anthropic else "openai"),
        "model": obj.get("model") or request.get("model") or (response or {}).get("model"),
        "method": obj.get("method", "POST"),
        "path": obj.get("path")
        or ("/v1/messages" if anthropic else _path_of(response))
        or "/v1/chat/completions",
        "status_code": status,
        "success": bool(success),
        "error": error,
        "streamed": bool(obj.get("streamed", False)),
        "request_body": request,
        "request_truncated": bool(obj.get("request_truncated", False)),
        "response_truncated": bool(obj.get("response_truncated", False)),
        "response_body": response,
        "metadata": obj.get("metadata") or {},
        **_usage(response),
    }
    for key in ("environment", "task"):
        if isinstance(obj.get(key), str) and obj[key]:
            row[key] = obj[key]
    for key in _OPTIONAL_NUMBERS:
        if key in obj:
            if obj[key] is not None and not isinstance(obj[key], int | float):
                raise LineError(f"{key}: expected a number")
            # float(): a 64-bit unsigned integer fits a REAL column but not SQLite's binding
            row[key] = None if obj[key] is None else float(obj[key])
    if len(row["uid"]) > 36:
        raise LineError("uid: at most 36 characters")
    return row


def _path_of(body: dict[str, Any] | None) -> str:
    """The endpoint a response body came from, by its ``object`` (any JSON value)."""
    kind = (body or {}).get("object")
    return _PATHS.get(kind, "") if isinstance(kind, str) else ""


def _created(value: Any) -> datetime:
    """A batch body's ``created`` (Unix seconds); now when there is none."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise LineError(f"response.body.created: {value!r} is not a Unix time") from None


def _time(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise LineError("started_at: expected an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted to UTC
        raise LineError(f"started_at: expected an ISO 8601 time, got {value!r}") from None


def _error_text(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or orjson.dumps(error).decode())
    return str(error)


def _usage(body: dict[str, Any] | None) -> dict[str, Any]:
    usage = (body or {}).get("usage")
    if not isinstance(usage, dict):
        return {"input_tokens": None, "output_tokens": None}
    return {
        "input_tokens": usage.get("prompt_tokens", usage.get("input_tokens")),
        "output_tokens": usage.get("completion_tokens", usage.get("output_tokens")),
    }
