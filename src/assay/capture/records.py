"""From a raw captured exchange to an ``inferences`` row: parse, reassemble, redact, hash.

The proxy hands over bytes and timings only (cheap on the request path); everything here runs
in the recorder's worker thread. Secrets are scrubbed from every byte before a record exists,
so neither the database nor the spool file can ever hold one.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from assay.capture.reassemble import reassemble

REDACTED = "[redacted]"
# Header names whose values are credentials: forwarded upstream, never recorded.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})
_SECRET_WORDS = ("key", "token", "secret", "cookie", "password")
# Responses are capped too (embeddings answers run to megabytes of floats): above this the
# stored body is a prefix and ``response_truncated`` is set (tokens and errors are read first).
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# Column widths of ``inferences`` / ``inference_tags``: longer values are clipped, so a long
# header can never make a batch fail (and spool forever).
_WIDTHS = {"environment": 200, "task": 200, "provider": 50, "model": 200, "path": 200}


def is_secret_header(name: str) -> bool:
    """Credentials by name: the known ones, and any header that mentions a key or a token."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


def secret_values(name: str, value: str) -> list[str]:
    """The strings to scrub for one secret header (``Bearer X`` gives both forms)."""
    values = [value]
    scheme, _, token = value.partition(" ")
    if token and scheme.lower() in ("bearer", "basic", "token"):
        values.append(token.strip())
    return [v for v in values if len(v) >= 8]  # short values would scrub ordinary words


@dataclass
class Capture:
    """One exchange as the proxy saw it: raw bytes and timings, nothing parsed yet."""

    uid: str
    started_at: datetime
    method: str
    path: str
    provider: str
    request_body: bytes
    environment: str = "default"
    task: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    status_code: int | None = None
    response_body: bytes = b""
    content_type: str = ""
    content_encoding: str = ""
    streamed: bool = False
    duration_ms: float | None = None
    ttft_ms: float | None = None
    error: str | None = None
    max_request_bytes: int = 1024 * 1024
    max_response_bytes: int = MAX_RESPONSE_BYTES
    # ``x-assay-token``: checked by the proxy (upstream override), never part of a record.
    assay_token: str | None = field(default=None, repr=False)


def build_record(capture: Capture) -> dict[str, Any]:
    """The row for one capture, keyed by ``inferences`` column names, plus ``tags``."""
    scrub = _scrubber(capture.secrets)
    raw_request = scrub(capture.request_body)
    request = _loads(raw_request)
    raw_response = scrub(_decode(capture.response_body, capture.content_encoding))
    if capture.streamed and "event-stream" in capture.content_type:
        response: dict[str, Any] | None = reassemble(capture.path, raw_response)
    else:
        response = _as_object(raw_response, 0)
    status = capture.status_code
    error = capture.error
    if error is None and status is not None and not 200 <= status < 300:
        error = f"HTTP {status}: {_error_message(response, raw_response)}"
    if error is None and response is not None and response.get("error"):
        error = f"stream error: {_error_message(response, raw_response)}"
    input_tokens, output_tokens = usage_tokens(response)
    truncated = len(raw_request) > capture.max_request_bytes
    model = (request or {}).get("model") or (response or {}).get("model")
    response, response_truncated = _capped(response, raw_response, capture)
    metadata = {k: scrub(v.encode()).decode() for k, v in capture.metadata.items()}
    record: dict[str, Any] = {
        "uid": capture.uid,
        "started_at": capture.started_at,
        "environment": capture.environment,
        "task": capture.task,
        "provider": capture.provider,
        "model": str(model) if model is not None else None,
        "method": capture.method,
        "path": capture.path,
        "status_code": status,
        "success": error is None and status is not None and 200 <= status < 300,
        "error": scrub(error.encode()).decode() if error else None,
        "streamed": capture.streamed,
        "duration_ms": capture.duration_ms,
        "ttft_ms": capture.ttft_ms,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": None,
        "prompt_hash": prompt_hash(request),
        "request_body": _truncated(raw_request, capture.max_request_bytes)
        if truncated
        else (request if request is not None else _as_object(raw_request, 0)),
        "request_truncated": truncated,
        "response_body": response,
        "response_truncated": response_truncated,
        "metadata": metadata,
    }
    for key, width in _WIDTHS.items():
        if isinstance(record[key], str):
            record[key] = record[key][:width]
    record["tags"] = {k[:200]: v[:1000] for k, v in metadata.items()}
    return record


def prompt_hash(request: dict[str, Any] | None) -> str | None:
    """sha256 of the system prompt, so prompt versions can be told apart; None if none."""
    if not request:
        return None
    parts: list[str] = []
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            parts.append(_text(message.get("content")))
    if request.get("system"):  # Anthropic
        parts.append(_text(request["system"]))
    if isinstance(request.get("instructions"), str):  # Responses API
        parts.append(request["instructions"])
    if not parts:
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def usage_tokens(response: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(input, output) tokens from an OpenAI or Anthropic ``usage`` object."""
    usage = (response or {}).get("usage")
    if not isinstance(usage, dict):
        return None, None
    tokens_in = usage.get("prompt_tokens", usage.get("input_tokens"))
    tokens_out = usage.get("completion_tokens", usage.get("output_tokens"))
    if tokens_in is not None and tokens_out is None and "total_tokens" in usage:
        tokens_out = 0  # embeddings: nothing generated
    return _int(tokens_in), _int(tokens_out)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _scrubber(secrets: list[str]) -> Any:
    needles = [s.encode() for s in sorted(set(secrets), key=len, reverse=True)]

    def scrub(data: bytes) -> bytes:
        for needle in needles:
            if needle in data:
                data = data.replace(needle, REDACTED.encode())
        return data

    return scrub


def _decode(body: bytes, encoding: str) -> bytes:
    """Undo gzip/deflate (passed through to the client as they came); others left alone."""
    encoding = encoding.lower().strip()
    if not body or encoding in ("", "identity"):
        return body
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        pass
    return orjson.dumps({"undecoded_encoding": encoding, "bytes": len(body)})


def _loads(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _as_object(raw: bytes, limit: int) -> dict[str, Any] | None:
    """A JSON object body as is; anything else (text, a list, too big) wrapped in one."""
    if not raw:
        return None
    if limit and len(raw) > limit:
        return _truncated(raw, limit)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"text": raw.decode("utf-8", errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


def _capped(
    response: dict[str, Any] | None, raw: bytes, capture: Capture
) -> tuple[dict[str, Any] | None, bool]:
    """The body to store and whether it was cut to ``max_response_bytes``.

    A streamed answer is measured as its reassembled JSON (the SSE framing is not stored).
    """
    limit = capture.max_response_bytes
    if response is None or len(raw) <= limit:
        return response, False
    serialized = orjson.dumps(response) if capture.streamed else raw
    if len(serialized) <= limit:
        return response, False
    return _truncated(serialized, limit), True


def _truncated(raw: bytes, limit: int) -> dict[str, Any]:
    return {
        "truncated": True,
        "original_bytes": len(raw),
        "prefix": raw[:limit].decode("utf-8", errors="ignore"),
    }


def _error_message(response: dict[str, Any] | None, raw: bytes) -> str:
    error = (response or {}).get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return raw[:500].decode("utf-8", errors="replace") or "(empty body)"
