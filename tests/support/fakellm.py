"""A fast, deterministic OpenAI-compatible (and Anthropic-compatible) LLM server for tests.

A plain ASGI app served by uvicorn on loopback: real HTTP, so the provider clients are tested
end to end, with faults a real provider produces.

Endpoints:
  POST /v1/chat/completions   OpenAI chat completions (JSON, or SSE when ``stream`` is true)
  POST /v1/messages           Anthropic messages
  GET  /v1/models             the models configured or seen so far
  GET  /stats                 per model: attempts, ok, errors by kind, unique requests,
                              retries, in-flight and peak in-flight, tokens; POST /stats/reset
  POST /control/configure     ``{"model": "m" | "*", <ModelConfig fields>}`` (merged)
  POST /control/reset         forget configuration, counters and recorded requests
  GET  /control/requests      recorded requests (``?model=m``): body, auth header, attempt,
                              arrival time (``time.monotonic()`` of the server process)
  GET  /health

Determinism: answers are a function of (model, messages) (see ``fakellm_replies``); the fate
of the n-th attempt of a request (identified by its body bytes) is a function of
(seed, request, n), or of ``script[n-1]`` when a script is set, so "fail the first K attempts
of every request with 429" is ``configure(model, script=["429"] * K)``.

Serve it from a thread (``fakellm_server.ServerThread``, what the ``fake_llm`` fixture does)
or standalone, so that its CPU is not the client's (the benchmarks do):
  PYTHONPATH=tests python -m support.fakellm_server --port 0 --port-file /tmp/port
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

from support import fakellm_replies as r

_STATUS_TEXT = {"429": "rate limited", "500": "internal error", "503": "overloaded",
                "529": "overloaded", "400": "bad request", "401": "invalid api key",
                "408": "request timeout"}  # fmt: skip
_OK = b'{"ok":true}'


@dataclass
class ModelStats:
    attempts: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unique_requests: int = 0
    retries: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Attempt:
    """One attempt of one request, with everything needed to answer it."""

    body: dict[str, Any]
    size: int
    model: str
    config: r.ModelConfig
    rid: int
    number: int
    outcome: str
    stats: ModelStats
    anthropic: bool
    auth: str | None


class FakeLLM:
    """The ASGI application. One instance per server; state lives in memory."""

    def __init__(self) -> None:
        self.reset()
        self._stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def reset(self) -> None:
        self.overrides: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, r.ModelConfig] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats: dict[str, ModelStats] = {}
        self.attempts_seen: dict[int, int] = {}
        self.recorded: deque[dict[str, Any]] = deque(maxlen=2000)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.paths: Counter[str] = Counter()

    def configure(self, model: str, values: dict[str, Any]) -> None:
        r.check_config(values)
        self.overrides.setdefault(model, {}).update(values)
        self._configs.clear()

    def config_for(self, model: str) -> r.ModelConfig:
        config = self._configs.get(model)
        if config is None:
            merged = {**self.overrides.get("*", {}), **self.overrides.get(model, {})}
            config = self._configs[model] = r.ModelConfig(**merged)
        return config

    def stats_json(self) -> dict[str, Any]:
        models = {
            name: dataclasses.asdict(st) | {"errors": dict(st.errors)}
            for name, st in self.stats.items()
        }
        return {
            "models": models,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "paths": dict(self.paths),
        }

    def release_hung(self) -> None:
        """Let every hung request finish (callable from any thread, before stopping)."""
        if self.loop is not None and self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        self.paths[path] += 1
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            await self._complete(scope, receive, send, anthropic=False)
        elif method == "POST" and path == "/v1/messages":
            await self._complete(scope, receive, send, anthropic=True)
        elif path in ("/v1/models", "/models"):
            names = sorted((set(self.overrides) - {"*"}) | set(self.stats))
            data = [{"id": n, "object": "model", "owned_by": "fakellm"} for n in names]
            await _respond(send, 200, orjson.dumps({"object": "list", "data": data}))
        elif path == "/stats" and method == "GET":
            await _respond(send, 200, orjson.dumps(self.stats_json()))
        elif path == "/stats/reset" and method == "POST":
            self.reset_stats()
            await _respond(send, 200, _OK)
        elif path.startswith("/control/"):
            await self._control(scope, receive, send)
        elif path == "/health":
            await _respond(send, 200, _OK)
        else:
            await _respond(send, 404, orjson.dumps(r.openai_error(404, f"no route {path}")))

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                self._stopping = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        body = await _read_body(receive)
        if path == "/control/configure":
            values = orjson.loads(body or b"{}")
            try:
                self.configure(str(values.pop("model", "*")), values)
            except (ValueError, TypeError) as exc:
                await _respond(send, 400, orjson.dumps({"error": str(exc)}))
                return
            await _respond(send, 200, _OK)
        elif path == "/control/reset":
            self.reset()
            await _respond(send, 200, _OK)
        elif path == "/control/requests":
            query = parse_qs(scope.get("query_string", b"").decode())
            model = (query.get("model") or [None])[0]
            items = [x for x in self.recorded if model is None or x["model"] == model]
            await _respond(send, 200, orjson.dumps(items))
        else:
            await _respond(send, 404, b'{"error":"unknown control path"}')

    async def _complete(
        self, scope: dict[str, Any], receive: Any, send: Any, *, anthropic: bool
    ) -> None:
        raw = await _read_body(receive)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await _respond(send, 400, orjson.dumps(r.openai_error(400, "body is not JSON")))
            return
        model = str(body.get("model", ""))
        config = self.config_for(model)
        rid = r.digest(model.encode(), raw)
        number = self.attempts_seen.get(rid, 0) + 1
        self.attempts_seen[rid] = number
        st = self.stats.get(model) or self.stats.setdefault(model, ModelStats())
        st.attempts += 1
        if number == 1:
            st.unique_requests += 1
        else:
            st.retries += 1
        auth = _auth_header(scope)
        self.recorded.append(
            {
                "model": model,
                "path": scope["path"],
                "attempt": number,
                "body": body,
                "auth": auth,
                "received_at": time.monotonic(),
            }
        )
        outcome = r.fate(config, rid, number)
        attempt = Attempt(body, len(raw), model, config, rid, number, outcome, st, anthropic, auth)
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await self._answer(attempt, receive, send)
        finally:
            st.in_flight -= 1
            self.in_flight -= 1

    async def _answer(self, attempt: Attempt, receive: Any, send: Any) -> None:
        outcome, st = attempt.outcome, attempt.stats
        if outcome != "ok":
            st.errors[outcome] += 1
        if outcome == "reset":
            await _reset(send)
            return
        if outcome == "hang":
            await self._hang(receive)
            return
        if outcome in ("429", "401", "400"):  # refused at once, no model time spent
            await _error(send, attempt)
            return
        config = attempt.config
        delay = (
            config.slow_ms
            if outcome == "slow"
            else r.latency_ms(config, attempt.rid, attempt.number)
        )
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if outcome in _STATUS_TEXT:
            await _error(send, attempt)
            return
        if outcome == "empty":
            await _respond(send, 200, b"{}")
            return
        answer = r.anthropic_answer if attempt.anthropic else r.openai_answer
        payload = answer(attempt.body, attempt.size, config, attempt.rid, outcome == "refusal")
        usage = payload["usage"]
        st.input_tokens += usage.get("prompt_tokens", usage.get("input_tokens", 0))
        st.output_tokens += usage.get("completion_tokens", usage.get("output_tokens", 0))
        if outcome == "truncated":
            data = orjson.dumps(payload)
            await _respond(send, 200, data[: len(data) // 2])
            return
        st.ok += 1
        if attempt.body.get("stream") and not attempt.anthropic:
            include = bool((attempt.body.get("stream_options") or {}).get("include_usage"))
            await _respond(send, 200, r.openai_sse(payload, include), b"text/event-stream")
        else:
            await _respond(send, 200, orjson.dumps(payload))

    async def _hang(self, receive: Any) -> None:
        """Wait until the client disconnects or the server stops; never answer."""
        stopping = self._stopping or asyncio.Event()

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiters = [asyncio.ensure_future(disconnected()), asyncio.ensure_future(stopping.wait())]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()


def _auth_header(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name in (b"authorization", b"x-api-key"):
            return value.decode()
    return None


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, attempt: Attempt) -> None:
    status = int(attempt.outcome)
    message = f"fake {_STATUS_TEXT[attempt.outcome]}"
    if status == 401:  # like real providers, echo the key that was refused
        message = f"Incorrect API key provided: {(attempt.auth or '').removeprefix('Bearer ')}"
    build = r.anthropic_error if attempt.anthropic else r.openai_error
    headers = []
    retry_after = attempt.config.retry_after
    if status in (429, 503, 529) and retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    payload = build(status, message)
    await _respond(send, status, orjson.dumps(payload), headers=headers)


async def _reset(send: Any) -> None:
    """Close the connection without a response (uvicorn's protocol object holds the socket)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("fakellm: cannot reach the transport to reset it")
    transport.abort()
    await asyncio.sleep(0)  # let uvicorn see the disconnect, so it does not answer 500
