"""The recording proxy: a plain ASGI app that forwards LLM API calls and captures each one.

Applications change only their base URL. The request goes upstream unchanged except for
Assay's own tagging headers (``x-assay-*``, stripped); the answer comes back unchanged, SSE
streams chunk by chunk as they arrive. Capturing costs the request path a few list appends
and one queue put: parsing, redaction and storage happen in the recorder's thread.

Upstream calls go through aiohttp rather than httpx: on this project's 2-core machine an
httpx.AsyncClient request costs ~1.9 ms of CPU against ~0.24 ms for aiohttp (measured on the
fake LLM server), and that CPU is the proxy's added latency under load.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from assay.capture.guard import TOKEN_HEADER, UpstreamGuard
from assay.capture.recorder import Recorder
from assay.capture.records import MAX_RESPONSE_BYTES, Capture, is_secret_header, secret_values
from assay.capture.routing import AliasRouter

DEFAULT_UPSTREAMS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = MAX_RESPONSE_BYTES
# Connection-level headers belong to one hop, never forwarded (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
        b"trailer", b"upgrade", b"host", b"content-length",
    }
)  # fmt: skip
_TAG_PREFIX = b"x-assay-"
# The recorder can read these; asking for br or zstd would leave unreadable bodies.
_READABLE_ENCODINGS = frozenset({"gzip", "deflate", "identity"})
_METADATA_PREFIX = "x-assay-metadata-"


def provider_for(path: str) -> str:
    """Anthropic's Messages API lives at ``/v1/messages``; everything else is OpenAI-shaped."""
    return "anthropic" if path.rstrip("/").endswith("/messages") else "openai"


def upstream_url(base: str, path: str, query: bytes) -> str:
    """``base`` + ``path``, without doubling ``/v1`` when the base already ends with it."""
    base = base.rstrip("/")
    if urlsplit(base).path.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    url = base + path
    return f"{url}?{query.decode('latin-1')}" if query else url


class CaptureProxy:
    """The ASGI application. ``upstream`` overrides the per-provider defaults for every call."""

    def __init__(
        self,
        recorder: Recorder,
        upstream: str | None = None,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        timeout_seconds: float = 600.0,
        upstream_guard: UpstreamGuard | None = None,
        router: AliasRouter | None = None,
    ) -> None:
        self.recorder = recorder
        self.upstream = upstream
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        self.upstream_guard = upstream_guard  # set: x-assay-upstream needs x-assay-token
        self.router = router  # set: a request's model may name a deployment alias
        self.timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=timeout_seconds)
        self._client: aiohttp.ClientSession | None = None
        self._in_flight = 0

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _tune_process()
                self.recorder.start()
                self._client_now()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close upstream connections and write what is queued (spooling if need be)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self.upstream_guard is not None:
            self.upstream_guard.close()
        if self.router is not None:
            self.router.close()
        self.recorder.stop()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait (from another thread) until every exchange answered so far is stored or spooled.

        The client may hold its whole answer before the proxy's handler returns (the body is
        complete at ``content-length``), so exchanges still in flight are waited for first.
        """
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.recorder.flush(max(deadline - time.monotonic(), 0.1))

    def _client_now(self) -> aiohttp.ClientSession:
        if self._client is None:
            self.recorder.start()  # also when served without lifespan events
            self._client = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                auto_decompress=False,  # bytes pass through exactly as the upstream sent them
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),  # a shared jar would mix applications
            )
        return self._client

    # --- one exchange --------------------------------------------------------------------

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self._in_flight += 1
        try:
            await self._exchange(scope, receive, send)
        finally:
            self._in_flight -= 1

    async def _exchange(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = time.perf_counter()
        path: str = scope["path"]
        provider = provider_for(path)
        capture = Capture(
            uid=str(uuid.uuid4()),
            started_at=datetime.now(UTC),
            method=scope["method"],
            path=path,
            provider=provider,
            request_body=b"",
            max_request_bytes=self.max_request_bytes,
            max_response_bytes=self.max_response_bytes,
        )
        headers, override = self._read_headers(scope["headers"], capture)
        if override is not None and self.upstream_guard is not None:
            refusal = await self.upstream_guard.refusal(capture.assay_token)
            if refusal is not None:  # not forwarded, so not an inference: nothing recorded
                await _respond_error(send, *refusal)
                return
        capture.request_body = body = await _read_body(receive)
        base = override or self.upstream or DEFAULT_UPSTREAMS[provider]
        if self.router is not None and (routed := await self.router.route(body, headers, capture)):
            if routed.refusal is not None:  # recorded: traffic shows the alias that failed
                capture.status_code, capture.error = routed.refusal
                self._finish(capture, start)
                await _respond_error(send, *routed.refusal)
                return
            capture.request_body = body = routed.body  # model = the endpoint's model id
            base, headers = routed.base_url, routed.headers
        url = upstream_url(base, path, scope.get("query_string", b""))
        client = self._client_now()
        try:
            response = await client.request(
                scope["method"], url, headers=headers, data=body, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            capture.error = f"upstream {url.split('?')[0]} failed: {type(exc).__name__}: {exc}"
            capture.status_code = 502
            self._finish(capture, start)
            await _respond_error(send, 502, capture.error)
            return
        try:
            await self._relay(response, send, capture, start)
        finally:
            response.release()

    def _read_headers(
        self, raw_headers: list[tuple[bytes, bytes]], capture: Capture
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Headers to forward; tags, metadata, secrets to scrub and the upstream override."""
        forwarded: list[tuple[str, str]] = []
        override: str | None = None
        for name, value in raw_headers:
            if name in _HOP_BY_HOP:
                continue
            if name.startswith(_TAG_PREFIX):
                text_name, text = name.decode("latin-1"), value.decode("utf-8", "replace")
                if text_name == "x-assay-environment":
                    capture.environment = text or "default"
                elif text_name == "x-assay-task":
                    capture.task = text or "default"
                elif text_name == "x-assay-upstream":
                    override = text
                elif text_name == TOKEN_HEADER:
                    capture.assay_token = text
                    capture.secrets.extend(secret_values(text_name, text))
                elif text_name.startswith(_METADATA_PREFIX):
                    capture.metadata[text_name[len(_METADATA_PREFIX) :]] = text
                continue
            text_name, text = name.decode("latin-1"), value.decode("latin-1")
            if name == b"accept-encoding":
                text = _readable_encodings(text)
                if not text:
                    continue
            elif is_secret_header(text_name):
                capture.secrets.extend(secret_values(text_name, text))
            forwarded.append((text_name, text))
        return forwarded, override

    async def _relay(
        self, response: aiohttp.ClientResponse, send: Any, capture: Capture, start: float
    ) -> None:
        """Send the upstream answer on, chunk by chunk, keeping a copy for the record."""
        capture.status_code = response.status
        capture.content_type = response.headers.get("content-type", "")
        capture.content_encoding = response.headers.get("content-encoding", "")
        capture.streamed = "text/event-stream" in capture.content_type
        out_headers = [
            (name.lower(), value)
            for name, value in response.raw_headers
            if name.lower() not in _HOP_BY_HOP
        ]
        length = response.headers.get("content-length")
        if length is not None and not capture.streamed:
            out_headers.append((b"content-length", length.encode()))
        await send(
            {"type": "http.response.start", "status": response.status, "headers": out_headers}
        )
        chunks: list[bytes] = []
        try:
            async for chunk in response.content.iter_any():
                if not chunks and capture.streamed:
                    capture.ttft_ms = (time.perf_counter() - start) * 1000
                chunks.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            capture.error = f"upstream stream broke: {type(exc).__name__}: {exc}"
        except OSError as exc:  # the client went away
            capture.error = f"client disconnected: {exc}"
        finally:
            capture.response_body = b"".join(chunks)
            # Queued before the last send: once the client has its answer, the record exists.
            self._finish(capture, start)
        if capture.error is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif not capture.error.startswith("client"):
            # The upstream dropped the connection mid-answer: drop the client's too, so the
            # application sees the same failure (not a clean, silently shortened answer).
            raise UpstreamBroke(capture.error)

    def _finish(self, capture: Capture, start: float) -> None:
        capture.duration_ms = (time.perf_counter() - start) * 1000
        self.recorder.submit(capture)


class UpstreamBroke(Exception):
    """Raised after the response started: the ASGI server then closes the connection."""


class _AbortFilter(logging.Filter):
    """uvicorn logs an app exception with a traceback; a passed-on upstream drop is not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UpstreamBroke))


def _tune_process() -> None:
    """Once per process: a short GIL switch interval, and quiet passed-on upstream drops."""
    # The recorder's thread does CPU work (parsing, storing); when the event loop wants the
    # GIL back it waits up to the switch interval, 5 ms by default: too much of a p99 budget
    # of 10 ms. 1 ms bounds that wait for a few more switches per second.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _AbortFilter) for f in logger.filters):
        logger.addFilter(_AbortFilter())


def _readable_encodings(accept: str) -> str:
    """``accept-encoding`` without the codings the recorder cannot decode (q-values kept)."""
    parts = [p.strip() for p in accept.split(",")]
    kept = [p for p in parts if p.split(";")[0].strip().lower() in _READABLE_ENCODINGS]
    return ", ".join(kept)


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond_error(send: Any, status: int, message: str) -> None:
    """An OpenAI-shaped error, so SDKs surface it like any provider error."""
    body = orjson.dumps({"error": {"message": message, "type": "assay_proxy_error"}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
