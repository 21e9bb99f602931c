"""``assay proxy``: serve the recording proxy (the lead registers the command)."""

from __future__ import annotations

import typer

from assay.capture import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_UPSTREAMS, create_proxy
from assay.cli._output import info
from assay.errors import ValidationError


def proxy(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8788, "--port", help="Port to listen on."),
    upstream: str | None = typer.Option(
        None,
        "--upstream",
        help=(
            "Base URL every call is forwarded to (default: "
            f"{DEFAULT_UPSTREAMS['openai']} for OpenAI paths, "
            f"{DEFAULT_UPSTREAMS['anthropic']} for /v1/messages). "
            "A request's x-assay-upstream header overrides it."
        ),
    ),
    max_request_kb: int = typer.Option(
        DEFAULT_MAX_REQUEST_BYTES // 1024,
        "--max-request-kb",
        help="Request bodies above this size are stored truncated (and flagged).",
    ),
) -> None:
    """Forward LLM API calls to the provider and record each one as an inference.

    Point the application's SDK at http://HOST:PORT/v1. Tag calls with the headers
    x-assay-environment, x-assay-task and x-assay-metadata-<key>; they are not forwarded.
    API keys are forwarded, never stored.
    """
    import uvicorn

    if upstream is not None and not upstream.startswith(("http://", "https://")):
        raise ValidationError(f"--upstream {upstream!r} is not an http:// or https:// URL")
    if max_request_kb < 1:
        raise ValidationError(f"--max-request-kb must be at least 1, got {max_request_kb}")
    app = create_proxy(upstream, max_request_bytes=max_request_kb * 1024)
    info(f"assay proxy on http://{host}:{port}/v1 -> {upstream or 'provider defaults'}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
    )
