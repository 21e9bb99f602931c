"""A minimal OpenAI-compatible HTTP server in front of one registered model endpoint.

The recording proxy forwards HTTP; a local model (``--provider local``) runs in-process and
has no URL. This app gives it one: ``POST /v1/chat/completions`` (non-streaming) and
``GET /v1/models``, answering through the same ``ModelCaller`` as a run group (retries,
limits, token counts; no response cache, so every request really runs). ``assay demo`` puts
the proxy in front of it to show live capture.

Serve it with any ASGI server, e.g. ``uvicorn.run(create_local_server(model), port=8080)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assay.providers.caller import ModelCaller
from assay.providers.endpoints import ModelInfo
from assay.providers.types import ChatRequest, ProviderError

# Request fields that are not sampling params: the caller sets or rejects them.
_NOT_PARAMS = frozenset({"model", "messages", "tools", "stream", "stream_options"})
_STATUS = {
    "bad_request": 400,
    "auth": 401,
    "refusal": 400,
    "rate_limited": 429,
    "timeout": 504,
    "connection": 502,
    "malformed_response": 502,
}


def create_local_server(model: ModelInfo, *, timeout_s: float = 120.0) -> Starlette:
    """The ASGI app answering OpenAI chat completions with ``model``."""
    callers: dict[int, ModelCaller] = {}  # one per event loop (limiters are per loop)

    def caller() -> ModelCaller:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in callers:
            callers[loop_id] = ModelCaller(model, None, timeout_s=timeout_s)
        return callers[loop_id]

    async def chat_completions(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_request_error", f"the body is not JSON: {exc}")
        problem = _invalid(body)
        if problem is not None:
            return _error(400, "invalid_request_error", problem)
        params = {k: v for k, v in body.items() if k not in _NOT_PARAMS}
        response_format = params.pop("response_format", None)
        chat = ChatRequest(
            messages=body["messages"],
            tools=body.get("tools") or None,
            params=params,
            response_format=response_format,
        )
        try:
            result = await caller().complete(chat)
        except ProviderError as exc:
            return _error(_STATUS.get(exc.kind, 500), exc.kind, exc.message)
        usage = {
            "prompt_tokens": result.input_tokens or 0,
            "completion_tokens": result.output_tokens or 0,
            "total_tokens": (result.input_tokens or 0) + (result.output_tokens or 0),
        }
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model.model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": result.message,
                        "finish_reason": result.finish_reason or "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def models(request: Request) -> Response:
        entry = {"id": model.model_id, "object": "model", "created": 0, "owned_by": "assay"}
        return JSONResponse({"object": "list", "data": [entry]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for opened in callers.values():
            await opened.aclose()  # HTTP clients of a remote endpoint (a local one has none)
        callers.clear()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _invalid(body: Any) -> str | None:
    """Why a request body cannot be answered, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of chat messages"
    if not all(isinstance(m, dict) for m in messages):
        return "every message must be an object"
    if body.get("stream"):
        return "streaming is not supported by this server; send stream=false"
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "'tools' must be a list"
    return None


def _error(status: int, kind: str, message: str) -> JSONResponse:
    """An OpenAI-shaped error, so SDKs raise it like any provider's."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)
