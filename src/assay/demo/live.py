"""Live capture: the recording proxy in front of the local model, called with the OpenAI SDK.

The local model runs in-process and has no URL, so it is given one (``local_server``); the
proxy forwards to it and records every exchange, exactly as it would for a hosted provider.
The requests are production requests from the shipped sample, sent as an application would:
the official ``openai`` SDK, its base URL pointed at the proxy, tagged with Assay's headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assay.capture import create_proxy
from assay.demo.servers import BackgroundServer
from assay.providers.endpoints import ModelInfo
from assay.providers.local_server import create_local_server

LIVE_ENVIRONMENT = "demo-live"
LIVE_TASK = "function-calling"
RECORD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LiveCall:
    """What the application saw for one request (the store's record is read separately)."""

    bfcl_id: str
    seconds: float  # wall time of the SDK call, through the proxy
    answer: dict[str, Any] | None  # the assistant message, or None on error
    error: str | None


def send_live(
    model: ModelInfo,
    requests: list[tuple[str, dict[str, Any]]],
    *,
    database_url: str,
    home: str,
    on_call: Callable[[int, LiveCall], None] | None = None,
) -> tuple[str, list[LiveCall]]:
    """Serve ``model`` over HTTP, put the proxy in front, send ``requests`` (bfcl id, body)
    through it, wait until every exchange is recorded; returns the proxy's URL and the calls."""
    from openai import OpenAI, OpenAIError

    calls: list[LiveCall] = []
    with BackgroundServer(create_local_server(model)) as upstream:
        proxy = create_proxy(upstream.url, database_url=database_url, home=home)
        with BackgroundServer(proxy, lifespan="on") as front:
            client = OpenAI(
                base_url=f"{front.url}/v1", api_key="demo-no-key", max_retries=0, timeout=300.0
            )
            for bfcl_id, body in requests:
                headers = {
                    "x-assay-environment": LIVE_ENVIRONMENT,
                    "x-assay-task": LIVE_TASK,
                    "x-assay-metadata-bfcl_id": bfcl_id,
                }
                started = time.perf_counter()
                try:
                    reply = client.chat.completions.create(
                        **{**body, "model": model.model_id}, extra_headers=headers
                    )
                    answer: dict[str, Any] | None = reply.choices[0].message.model_dump(
                        exclude_none=True
                    )
                    error = None
                except OpenAIError as exc:
                    answer, error = None, f"{type(exc).__name__}: {exc}"
                call = LiveCall(bfcl_id, time.perf_counter() - started, answer, error)
                calls.append(call)
                if on_call is not None:
                    on_call(len(calls), call)
            client.close()
            proxy.flush(RECORD_TIMEOUT_S)
            front_url = front.url
    return front_url, calls
